"""Synthetic European plate crops for training the project's own CTC reader.

Every sample is a pure function of (seed, index): `sample(seed, i)` draws its
own generator from both, so a data set is the same whatever the number of
worker processes or the order they run in.

A sample imitates what `src/read/rectify.rs` hands the reader: the plate
rectified to an upright crop 48 px high with a margin around it, the blue EU
band mostly cut off by `strip_eu_band`, plus what goes wrong in practice
(corners off by a few per cent so an edge is cut or the bumper shows, blur,
low resolution, JPEG, glare, dirt, screws, stickers). The crop is then turned
into the model input exactly as the Rust reader does (`to_input`).

No real photo is used; see DATA.md.
"""

from __future__ import annotations

import io
import os
import string

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# The model input and the class order the Rust side (src/read/crnn.rs) relies on.
INPUT_H = 32
INPUT_W = 128
ALPHABET = string.ascii_uppercase + string.digits  # class k + 1; class 0 = CTC blank

# Dutch plate letters: consonants without C and Q (src/synth/plate.rs PLATE_LETTERS).
NL_LETTERS = "BDFGHJKLMNPRSTVWXZ"
NL_PATTERNS = [
    "XX-99-99", "99-99-XX", "99-XX-99", "XX-99-XX", "XX-XX-99", "99-XX-XX", "99-XXX-9",
    "9-XXX-99", "XX-999-X", "X-999-XX", "XXX-99-X", "X-99-XXX", "9-XX-999", "999-XX-9",
]

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# Open fonts. The Dutch "Kenteken" font and the German FE-Schrift are not
# freely licensed; these condensed sans faces are the closest open relatives
# (narrow, upright, uniform stroke). Debian packages: fonts-dejavu-core,
# fonts-liberation, fonts-urw-base35, fonts-roboto-unhinted.
FONTS = [
    os.path.join(REPO, "assets/fonts/DejaVuSansCondensed-Bold.ttf"),
    "/usr/share/fonts/truetype/liberation/LiberationSansNarrow-Bold.ttf",
    "/usr/share/fonts/opentype/urw-base35/NimbusSansNarrow-Bold.otf",
    "/usr/share/fonts/truetype/roboto/unhinted/RobotoCondensed-Bold.ttf",
    "/usr/share/fonts/truetype/roboto/unhinted/RobotoCondensed-Regular.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
    "/usr/share/fonts/opentype/urw-base35/URWGothic-Demi.otf",
]
# A machine without these packages (the lent GPU machine of README.md) gets
# the same files in one folder: PLATE_FONT_DIR=DIR looks every font up there
# by its file name.
if os.environ.get("PLATE_FONT_DIR"):
    FONTS = [os.path.join(os.environ["PLATE_FONT_DIR"], os.path.basename(f)) for f in FONTS]

_font_cache: dict = {}


def check_fonts() -> None:
    missing = [f for f in FONTS if not os.path.exists(f)]
    if missing:
        raise SystemExit(
            "missing fonts (apt-get install fonts-dejavu-core fonts-liberation "
            "fonts-urw-base35 fonts-roboto-unhinted): " + ", ".join(missing)
        )


def font(path: str, size: int) -> ImageFont.FreeTypeFont:
    key = (path, size)
    if key not in _font_cache:
        _font_cache[key] = ImageFont.truetype(path, size)
    return _font_cache[key]


# ---------------------------------------------------------------- plate texts

def _chars(rng, pool: str, n: int) -> str:
    return "".join(pool[rng.integers(len(pool))] for _ in range(n))


L = string.ascii_uppercase
D = string.digits


def dutch_text(rng) -> str:
    pat = NL_PATTERNS[rng.integers(len(NL_PATTERNS))]
    return "".join(
        NL_LETTERS[rng.integers(len(NL_LETTERS))] if c == "X" else
        D[rng.integers(10)] if c == "9" else "-"
        for c in pat
    )


def foreign_text(rng, country: str) -> str:
    """Display text with separators (space, dash, '|' = a seal or crest)."""
    r = rng.integers
    if country == "DE":
        return f"{_chars(rng, L, r(1, 4))}|{_chars(rng, L, r(1, 3))} {_chars(rng, D, r(1, 5))}"
    if country == "AT":
        return f"{_chars(rng, L, r(1, 3))}|{_chars(rng, D, r(2, 6))}{_chars(rng, L, r(0, 3))}"
    if country == "BE":
        return f"{r(1, 3)}-{_chars(rng, L, 3)}-{_chars(rng, D, 3)}"
    if country == "FR":
        return f"{_chars(rng, L, 2)}-{_chars(rng, D, 3)}-{_chars(rng, L, 2)}"
    if country == "IT":
        return f"{_chars(rng, L, 2)} {_chars(rng, D, 3)}{_chars(rng, L, 2)}"
    if country == "ES":
        return f"{_chars(rng, D, 4)} {_chars(rng, 'BCDFGHJKLMNPRSTVWXYZ', 3)}"
    if country == "PL":
        return f"{_chars(rng, L, r(2, 4))} {_chars(rng, D + L, r(4, 6))}"
    if country == "HR":
        return f"{_chars(rng, L, 2)}|{_chars(rng, D, r(3, 5))}-{_chars(rng, L, r(1, 3))}"
    if country == "UA":
        return f"{_chars(rng, L, 2)} {_chars(rng, D, 4)} {_chars(rng, L, 2)}"
    if country == "HU":
        return f"{_chars(rng, L, 3)}-{_chars(rng, D, 3)}"
    if country == "GR":
        return f"{_chars(rng, L, 3)}-{_chars(rng, D, 4)}"
    if country == "GB":
        return f"{_chars(rng, L, 2)}{_chars(rng, D, 2)} {_chars(rng, L, 3)}"
    if country == "LU":
        return f"{_chars(rng, L, 2)} {_chars(rng, D, 4)}"
    # Anything else: a random alphanumeric plate, so that no format is forced.
    n = r(4, 9)
    s = _chars(rng, L + D, n)
    cut = r(1, n)
    return s[:cut] + " " + s[cut:]


# Country -> (background, ink, eu band, right band, draw weight)
STYLES = {
    "DE": ((240, 240, 235), (15, 15, 15), True, False, 8),
    "AT": ((240, 240, 235), (15, 15, 15), True, False, 4),
    "BE": ((245, 245, 245), (150, 20, 30), True, False, 5),
    "FR": ((245, 245, 245), (15, 15, 15), True, True, 5),
    "IT": ((245, 245, 245), (15, 15, 15), True, True, 6),
    "ES": ((245, 245, 245), (15, 15, 15), True, False, 4),
    "PL": ((245, 245, 245), (15, 15, 15), True, False, 4),
    "HR": ((245, 245, 245), (15, 15, 15), True, False, 5),
    "UA": ((245, 245, 245), (15, 15, 15), False, False, 5),
    "HU": ((245, 245, 245), (15, 15, 15), True, False, 3),
    "GR": ((245, 245, 245), (15, 15, 15), True, False, 3),
    "GB": ((245, 200, 30), (15, 15, 15), False, False, 3),
    "LU": ((245, 200, 30), (15, 15, 15), True, False, 2),
    "XX": ((235, 235, 235), (20, 20, 20), False, False, 4),
}
FOREIGN = list(STYLES)
FOREIGN_W = np.array([STYLES[c][4] for c in FOREIGN], dtype=float)
FOREIGN_W /= FOREIGN_W.sum()

# Share of Dutch plates: the pipeline's main job.
DUTCH_SHARE = 0.6
# Share of Dutch plates whose zeros are drawn with the letter O's glyph (see
# sample()). train.py --zero-as-o sets it; at 0 no random number is drawn for
# it, so the data is that of the renderer before the rule (the committed
# model's first stage, README.md).
ZERO_AS_O = 0.5


def label_of(display: str) -> str:
    return "".join(c for c in display if c in ALPHABET)


# ---------------------------------------------------------------- rendering

def _jitter_colour(rng, c, amount=25):
    return tuple(int(np.clip(v + rng.normal(0, amount), 0, 255)) for v in c)


def render_plate(rng, display: str, bg, ink, eu_band: bool, right_band: bool):
    """A flat plate image (RGB, ~520x110 aspect scaled) and the band width in px."""
    h = int(rng.integers(80, 121))
    aspect = rng.uniform(4.3, 4.9)
    w = int(h * aspect)
    img = Image.new("RGB", (w, h), _jitter_colour(rng, bg, 12))
    d = ImageDraw.Draw(img)
    # Border: a thin dark rim as on most plates.
    bw = max(1, int(h * rng.uniform(0.01, 0.035)))
    if rng.random() < 0.8:
        d.rectangle([bw // 2, bw // 2, w - 1 - bw // 2, h - 1 - bw // 2], outline=ink, width=bw)
    band_w = 0
    if eu_band:
        band_w = int(w * rng.uniform(0.07, 0.095))
        blue = _jitter_colour(rng, (20, 50, 160), 20)
        d.rectangle([0, 0, band_w, h - 1], fill=blue)
        # Twelve stars as small yellow dots in a ring, the country code below.
        cx, cy, rad = band_w / 2, h * 0.3, band_w * 0.3
        for k in range(12):
            a = 2 * np.pi * k / 12
            x, y = cx + rad * np.cos(a), cy + rad * np.sin(a)
            d.ellipse([x - 1.2, y - 1.2, x + 1.2, y + 1.2], fill=(240, 210, 40))
        code = _chars(rng, L, int(rng.integers(1, 3)))
        f = font(FONTS[0], max(8, int(h * 0.3)))
        tw = d.textlength(code, font=f)
        d.text((cx - tw / 2, h * 0.55), code, fill=(245, 245, 245), font=f)
    right_w = 0
    if right_band:
        right_w = int(w * rng.uniform(0.07, 0.095))
        d.rectangle([w - right_w, 0, w - 1, h - 1], fill=_jitter_colour(rng, (20, 50, 160), 20))

    # Characters: drawn on their own layer, then squeezed or stretched to the
    # free width, since plate fonts are narrower than any open font.
    fpath = FONTS[rng.integers(len(FONTS))]
    size = int(h * rng.uniform(0.68, 0.85))
    f = font(fpath, size)
    parts = display.split("|")
    layer_w = int(sum(d.textlength(p, font=f) for p in parts) + size * 0.6 * (len(parts) - 1)) + 4
    asc, desc = f.getmetrics()
    layer = Image.new("L", (max(layer_w, 8), asc + desc + 4), 0)
    ld = ImageDraw.Draw(layer)
    x = 2.0
    seals = []
    for k, p in enumerate(parts):
        # Letter spacing: plates space characters wider than text does.
        ld.text((x, 2), p, fill=255, font=f)
        x += ld.textlength(p, font=f)
        if k + 1 < len(parts):
            seals.append(x + size * 0.3)
            x += size * 0.6
    bbox = layer.getbbox()
    if bbox is None:
        return img, band_w
    layer = layer.crop(bbox)
    seals = [s - bbox[0] for s in seals]
    free_l = band_w + w * 0.03
    free_r = w - right_w - w * 0.03
    free_w = free_r - free_l
    text_h = int(h * rng.uniform(0.62, 0.78))
    text_w = int(min(free_w * rng.uniform(0.82, 0.99), layer.width * text_h / layer.height * rng.uniform(0.8, 1.5)))
    text_w = max(text_w, 8)
    sx = text_w / layer.width
    layer = layer.resize((text_w, text_h), Image.BILINEAR)
    x0 = int(free_l + (free_w - text_w) * rng.uniform(0.3, 0.7))
    y0 = int((h - text_h) * rng.uniform(0.35, 0.65))
    img.paste(Image.new("RGB", layer.size, _jitter_colour(rng, ink, 10)), (x0, y0), layer)
    # Seals / crests between groups (DE, AT, HR): round coloured stickers.
    for s in seals:
        cx = x0 + s * sx
        r = h * rng.uniform(0.12, 0.2)
        cy = h * rng.uniform(0.4, 0.6)
        col = tuple(int(v) for v in rng.integers(40, 230, 3))
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=col, outline=(30, 30, 30))
        if rng.random() < 0.6:
            d.ellipse([cx - r * 0.8, cy - r * 2.2, cx + r * 0.8, cy - r * 0.6], fill=tuple(int(v) for v in rng.integers(40, 230, 3)))
    # Screws: two dark or shiny dots, usually between characters near the top.
    if rng.random() < 0.5:
        for _ in range(2 if rng.random() < 0.7 else 4):
            sx_, sy_ = rng.uniform(0.15, 0.85) * w, rng.choice([0.12, 0.88]) * h + rng.normal(0, h * 0.04)
            r = h * rng.uniform(0.03, 0.06)
            c = int(rng.integers(30, 230))
            d.ellipse([sx_ - r, sy_ - r, sx_ + r, sy_ + r], fill=(c, c, c))
    return img, band_w


def _background(rng, w, h):
    """The surroundings of the plate: bumper, grille, shadow. Drawn at a
    quarter of the size and scaled up: it only has to be plausible."""
    sw, sh = max(2, w // 4), max(2, h // 4)
    base = rng.integers(0, 256, 3)
    arr = np.ones((sh, sw, 3), np.float32) * base
    # A vertical gradient and some stripes like a grille.
    arr *= np.linspace(rng.uniform(0.5, 1.2), rng.uniform(0.5, 1.2), sh)[:, None, None]
    if rng.random() < 0.4:
        period = rng.integers(2, 4)
        arr[:: int(period)] *= rng.uniform(0.3, 0.8)
    arr += rng.normal(0, 12, arr.shape)
    small = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return small.resize((w, h), Image.BILINEAR)


def _dealer_text(rng) -> str:
    """Small print on a dealer's frame: a name, a town, a phone number or a web
    address. Never part of the label."""
    r = rng.integers
    words = [_chars(rng, L, int(r(3, 9))) for _ in range(int(r(1, 4)))]
    kind = r(4)
    if kind == 0:
        return " ".join(words)
    if kind == 1:
        return f"{words[0]} {_chars(rng, D, 3)}-{_chars(rng, D, 7)}"
    if kind == 2:
        return f"WWW.{words[0]}.{rng.choice(['NL', 'COM', 'DE', 'BE'])}"
    return f"{' '.join(words)} - {_chars(rng, L, int(r(4, 10)))}"


def _dealer_frame(rng, scene: Image.Image, pad: int, pw: int, ph: int) -> None:
    """A plastic plate frame around the plate's place in `scene`, usually with
    the dealer's name in small print below (sometimes above) the plate: the
    crop's margins show it and the reader must not read it."""
    d = ImageDraw.Draw(scene)
    side = max(1, int(ph * rng.uniform(0.03, 0.1)))
    band = int(ph * rng.uniform(0.1, 0.3))
    below = rng.random() < 0.8
    top = pad - (band if not below else side)
    bottom = pad + ph + (band if below else side)
    if rng.random() < 0.6:
        frame, ink = tuple(int(v) for v in rng.integers(0, 60, 3)), (230, 230, 230)
    else:
        frame, ink = tuple(int(v) for v in rng.integers(180, 256, 3)), (20, 20, 20)
    d.rectangle([pad - side, top, pad + pw + side, bottom], fill=frame)
    if rng.random() < 0.85 and band >= 6:
        text = _dealer_text(rng)
        f = font(FONTS[rng.integers(len(FONTS))], max(6, int(band * rng.uniform(0.55, 0.85))))
        tw = max(1.0, d.textlength(text, font=f))
        ty = pad + ph + (band - f.size) / 2 if below else top + (band - f.size) / 2
        if tw > pw * 0.95:
            # Too long for the frame: shrink it on a layer of its own.
            asc, desc = f.getmetrics()
            layer = Image.new("L", (int(tw) + 2, asc + desc), 0)
            ImageDraw.Draw(layer).text((0, 0), text, fill=255, font=f)
            layer = layer.resize((int(pw * rng.uniform(0.5, 0.9)), layer.height), Image.BILINEAR)
            x = pad + (pw - layer.width) / 2
            scene.paste(Image.new("RGB", layer.size, ink), (int(x), int(ty)), layer)
        else:
            d.text((pad + (pw - tw) * rng.uniform(0.1, 0.9), ty), text, fill=ink, font=f)


def _perspective_coeffs(src, dst):
    """PIL's 8 coefficients mapping output points dst onto input points src."""
    a = []
    b = []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        b += [u, v]
    return np.linalg.solve(np.array(a, float), np.array(b, float))


def crop_like_pipeline(rng, plate: Image.Image, band_w: int) -> Image.Image:
    """Places the plate in a scene and cuts it out as rectify.rs would, with
    the corner errors a detector makes."""
    pw, ph = plate.size
    pad = int(ph * 0.5)
    scene = _background(rng, pw + 2 * pad, ph + 2 * pad)
    if rng.random() < 0.5:
        _dealer_frame(rng, scene, pad, pw, ph)
    scene.paste(plate, (pad, pad))
    # Corners as a detector reports them: the true ones with errors up to a
    # few per cent of the plate's size (sometimes inside, cutting an edge).
    ex, ey = pw * 0.025, ph * 0.08
    tl = [pad + rng.normal(0, ex), pad + rng.normal(0, ey)]
    tr = [pad + pw + rng.normal(0, ex), pad + rng.normal(0, ey)]
    br = [pad + pw + rng.normal(0, ex), pad + ph + rng.normal(0, ey)]
    bl = [pad + rng.normal(0, ex), pad + ph + rng.normal(0, ey)]
    if rng.random() < 0.15:
        # A box cut short on one side: the edge character is partly lost (it
        # stays in the label: the reader should still guess it from what shows).
        cut = pw * rng.uniform(0.02, 0.07)
        if rng.random() < 0.5:
            tl[0] += cut
            bl[0] += cut
        else:
            tr[0] -= cut
            br[0] -= cut
    # The box is a little rotated against the plate (a tilted plate, a
    # detector that does not follow the tilt): the crop shows it tilted.
    a = np.deg2rad(np.clip(rng.normal(0, 1.5), -5, 5))
    cx, cy = pad + pw / 2, pad + ph / 2
    ca, sa = np.cos(a), np.sin(a)
    tl, tr, br, bl = [
        (cx + (x - cx) * ca - (y - cy) * sa, cy + (x - cx) * sa + (y - cy) * ca) for x, y in (tl, tr, br, bl)
    ]
    # rectify.rs: 48 px high, margins 3% x and 12% y around the corners.
    out_h = 48
    inner_h = out_h / 1.24
    inner_w = inner_h * (pw / ph) * rng.uniform(0.9, 1.1)
    out_w = int(round(inner_w * 1.06))
    mx, my = (out_w - inner_w) / 2, (out_h - inner_h) / 2
    dst = [(mx, my), (mx + inner_w, my), (mx + inner_w, my + inner_h), (mx, my + inner_h)]
    coeffs = _perspective_coeffs([tl, tr, br, bl], dst)
    crop = scene.transform((out_w, out_h), Image.PERSPECTIVE, tuple(coeffs), Image.BILINEAR)
    # strip_eu_band cuts the band off the left when it sees it, leaving a sliver
    # or a little too much; sometimes it misses it (dark, grey light).
    if band_w > 0 and rng.random() < 0.75:
        scale = inner_w / pw
        cut = int(mx + band_w * scale + rng.normal(0, 2.0))
        cut = int(np.clip(cut, 0, out_w // 5))
        if cut > 0:
            crop = crop.crop((cut, 0, out_w, out_h))
    return crop


def degrade(rng, img: Image.Image) -> Image.Image:
    """Camera and distance: low resolution, blur, light, noise, JPEG, dirt."""
    w, h = img.size
    if rng.random() < 0.6:
        # A distant plate: characters only a few pixels high, upscaled by rectify.
        f = rng.uniform(0.25, 0.9)
        small = img.resize((max(8, int(w * f)), max(6, int(h * f))), Image.BILINEAR)
        img = small.resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 1.4)))
    arr = np.asarray(img).astype(np.float32)
    if rng.random() < 0.3:
        # Horizontal motion blur.
        k = int(rng.integers(2, 6))
        arr = sum(np.roll(arr, s, axis=1) for s in range(k)) / k
    # Dirt: dark blotches.
    if rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 6))):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1, h * 0.15)
            yy, xx = np.ogrid[:h, :w]
            m = ((xx - cx) ** 2 + (yy - cy) ** 2) < r * r
            arr[m] *= rng.uniform(0.3, 0.8)
    # Light: contrast, brightness, gamma, a shadow or glare across the plate.
    c = rng.uniform(0.4, 1.3)
    b = rng.uniform(-60, 60)
    arr = (arr - 128) * c + 128 + b
    if rng.random() < 0.3:
        x = np.linspace(0, 1, w)[None, :, None]
        edge = rng.uniform(0.2, 0.8)
        arr = arr * np.where(x < edge, rng.uniform(0.4, 1.0), 1.0)
    if rng.random() < 0.15:
        x = np.linspace(-1, 1, w)[None, :, None]
        arr = arr + rng.uniform(40, 120) * np.exp(-((x - rng.uniform(-1, 1)) ** 2) / 0.05)
    arr = np.clip(arr, 0, 255)
    g = rng.uniform(0.6, 1.6)
    arr = 255 * (arr / 255) ** g
    arr += rng.normal(0, rng.uniform(0, 12), arr.shape)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if rng.random() < 0.7:
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(15, 90)))
        buf.seek(0)
        img = Image.open(buf).convert("RGB")
    return img


def to_input(crop: Image.Image) -> np.ndarray:
    """The model input from an RGB crop, as src/read/crnn.rs builds it:
    grey (ITU-R 601 luma), resized to 32x128 with a triangle filter, uint8."""
    grey = crop.convert("L")
    return np.asarray(grey.resize((INPUT_W, INPUT_H), Image.BILINEAR), dtype=np.uint8)


def sample(seed: int, index: int):
    """(crop RGB image, label) for sample `index` of data set `seed`."""
    rng = np.random.default_rng([seed, index])
    if rng.random() < DUTCH_SHARE:
        display = dutch_text(rng)
        u = rng.random()
        # Old dark-blue plates are rare on the road but read worst (light on
        # dark), so they are drawn more often than they occur.
        if u < 0.74:
            bg, ink = (245, 200, 30), (15, 15, 15)  # yellow, the standard
        elif u < 0.84:
            bg, ink = (245, 245, 245), (15, 15, 15)  # white (export, some trailers)
        elif u < 0.96:
            bg, ink = (30, 60, 140), (240, 240, 240)  # old dark blue, white characters
        else:
            bg, ink = (40, 140, 80), (245, 245, 245)  # green/other rare variants
        eu = rng.random() < 0.9 and bg[0] > 200
        # The Dutch plate font's zero is a narrow oval that open fonts only
        # have as their letter O, and a Dutch plate has no O: half the Dutch
        # plates draw their zeros with the O glyph (the label keeps 0), so
        # that the model does not read an O on them with certainty.
        glyphs = display.replace("0", "O") if ZERO_AS_O > 0 and rng.random() < ZERO_AS_O else display
        img, band = render_plate(rng, glyphs, bg, ink, eu, False)
    else:
        country = FOREIGN[rng.choice(len(FOREIGN), p=FOREIGN_W)]
        display = foreign_text(rng, country)
        bg, ink, eu, right, _ = STYLES[country]
        img, band = render_plate(rng, display, bg, ink, eu, right)
    crop = crop_like_pipeline(rng, img, band)
    crop = degrade(rng, crop)
    return crop, label_of(display)


def make_batch(args):
    seed, start, count = args
    xs = np.empty((count, INPUT_H, INPUT_W), np.uint8)
    labels = []
    for k in range(count):
        crop, label = sample(seed, start + k)
        xs[k] = to_input(crop)
        labels.append(label)
    return xs, labels
