"""Trains the project's own plate reader (a small CRNN with CTC).

    python train.py                                  # the CPU recipe (README.md)
    python train.py --steps 200 --out /tmp/x.onnx    # a quick smoke run
    python train.py --device cuda --workers 15 --batch 512 --budget-s 450   # a GPU

Steps: (1) render the synthetic data set (plates.py) with a fixed seed; (2)
train with torch for a fixed number of steps; (3) export to ONNX (opset 17,
input [N,1,32,128] float32 in -1..1, output [N,32,37] softmax over blank +
A-Z + 0-9) and check the export against torch with onnxruntime; (4) print the
sha256 and the figures on the held-out synthetic set.

Rendering and training overlap: training starts once `--warm` samples are
rendered, and step s draws its batch from the samples that the fixed schedule
`available(s)` says are there (the trainer waits for them when rendering is
slower). So what a step sees is a function of the arguments alone, never of
the machine's speed, and a run is reproduced by its printed arguments.
With `--warm` left at its default (all samples) everything is rendered first.

`--budget-s S` picks `--train` and `--steps` to fit S seconds of wall time on
this machine (it times the first rendered chunks and a few training steps) and
prints the arguments that reproduce the run without it.

Everything random is seeded from --seed: the data (per sample), torch's
initialisation, the batch order and the batch augmentation. On the CPU with
one thread the run is deterministic; on a GPU up to its kernels' rounding
(and CUDA's random numbers differ from the CPU's, so a GPU run is reproduced
on a GPU).
"""

from __future__ import annotations

import argparse
import hashlib
import math
import multiprocessing as mp
import os
import sys
import time

import numpy as np

import plates

HERE = os.path.dirname(os.path.abspath(__file__))
CHUNK = 500  # samples per rendering job
MAX_LABEL = 10  # longest label any format in plates.py makes, with room


def jobs_for(seed: int, start: int, count: int):
    return [(seed, s, min(CHUNK, start + count - s)) for s in range(start, start + count, CHUNK)]


def augment(xb, gen):
    """Float model input [N,1,32,128] from uint8 crops [N,32,128], varied
    per sample."""
    import torch
    import torch.nn.functional as F

    dev = xb.device
    # Cheap extra variety on top of the rendered degradations, per sample:
    # a small affine warp (corner error, tilt, a box a little too wide or
    # narrow), contrast, brightness, some inverted (light characters on
    # dark, as old Dutch plates), sensor noise.
    n = xb.shape[0]
    x = (xb.float() / 127.5 - 1.0).unsqueeze(1)

    def u(lo, hi, *shape):
        return torch.rand(*(shape or (n,)), generator=gen, device=dev) * (hi - lo) + lo

    a = u(-0.04, 0.04)
    sx, sy = u(0.92, 1.08), u(0.9, 1.1)
    theta = torch.stack(
        [
            torch.stack([sx * torch.cos(a), -torch.sin(a) * 0.25, u(-0.06, 0.06)], 1),
            torch.stack([torch.sin(a) * 4.0, sy * torch.cos(a), u(-0.12, 0.12)], 1),
        ],
        1,
    )  # the sine terms scaled by the 4:1 aspect of the normalised grid
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    c = u(0.6, 1.2, n, 1, 1, 1)
    b = u(-0.2, 0.2, n, 1, 1, 1)
    flip = (u(0, 1, n, 1, 1, 1) < 0.1).float()
    x = x * (1 - 2 * flip)
    noise = u(0, 0.08, n, 1, 1, 1) * (u(0, 1, n, 1, 1, 1) < 0.3).float()
    x = x * c + b + noise * torch.randn(x.shape, generator=gen, device=dev)
    return x.clamp(-1, 1)


def render_all(pool, seed: int, count: int, cache: str | None):
    """Renders a whole set at once (the held-out set, or the CPU recipe's
    training set), cached under `cache` keyed by seed and size."""
    path = os.path.join(cache, f"plates-s{seed}-n{count}-z{plates.ZERO_AS_O}-v2.npz") if cache else None
    if path and os.path.exists(path):
        z = np.load(path)
        return z["x"], list(z["y"])
    t = time.time()
    parts = pool.map(plates.make_batch, jobs_for(seed, 0, count))
    x = np.concatenate([p[0] for p in parts])
    y = [l for p in parts for l in p[1]]
    print(f"rendered {count} samples (seed {seed}) in {time.time() - t:.0f} s", flush=True)
    if path:
        os.makedirs(cache, exist_ok=True)
        np.savez(path, x=x, y=np.array(y))
    return x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=20261130)
    ap.add_argument("--train", type=int, default=40000, help="training samples rendered")
    ap.add_argument("--val", type=int, default=2000, help="held-out samples (own seed)")
    ap.add_argument("--warm", type=int, default=0, help="samples rendered before training starts (0: all)")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=1e-4)
    ap.add_argument("--workers", type=int, default=2, help="processes rendering data")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads on the CPU")
    ap.add_argument("--zero-as-o", type=float, default=plates.ZERO_AS_O, help="share of Dutch plates with O-shaped zeros")
    ap.add_argument("--init", help="start from these weights (a .pt this script saved) instead of random ones")
    ap.add_argument("--budget-s", type=float, default=0, help="fit the run into this many seconds (see above)")
    ap.add_argument("--out", default=os.path.join(HERE, "..", "plate_crnn.onnx"))
    ap.add_argument("--cache", default=os.path.join(HERE, ".cache"), help="'' for none")
    args = ap.parse_args()

    t0 = time.time()
    plates.check_fonts()
    plates.ZERO_AS_O = args.zero_as_o  # before the rendering processes fork
    import torch
    import torch.nn.functional as F

    from model import PlateCRNN, ctc_targets, greedy_decode

    import onnxruntime as ort

    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, onnxruntime {ort.__version__}", flush=True)
    dev = torch.device(args.device)
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
    pool = mp.get_context("fork").Pool(args.workers)

    xva, yva = render_all(pool, args.seed + 1, args.val, args.cache or None)
    warm = args.train if args.warm <= 0 else min(args.warm, args.train)
    if warm == args.train and not args.budget_s:
        xw, yw = render_all(pool, args.seed, args.train, args.cache or None)
    else:
        t = time.time()
        parts = pool.map(plates.make_batch, jobs_for(args.seed, 0, warm))
        xw = np.concatenate([p[0] for p in parts])
        yw = [l for p in parts for l in p[1]]
        render_rate = warm / (time.time() - t)
        print(f"rendered {warm} warm samples in {time.time() - t:.0f} s ({render_rate:.0f}/s)", flush=True)

    def new_model():
        model = PlateCRNN().to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
        return model, opt

    # Every training sample lives on the device: images as uint8, labels
    # padded to MAX_LABEL class indices with their lengths.
    def encode(labels):
        t, n = ctc_targets(labels)
        pad = torch.zeros(len(labels), MAX_LABEL, dtype=torch.long)
        off = 0
        for k, ln in enumerate(n.tolist()):
            pad[k, :ln] = t[off : off + ln]
            off += ln
        return pad, n

    gen = torch.Generator(device=dev)

    ctc = torch.nn.CTCLoss(blank=0, zero_infinity=True)

    def train_step(model, opt, xs, tg, ln, idx):
        xb = augment(xs[idx], gen)
        logp = model.log_probs(xb)  # [T, N, C]
        in_len = torch.full((xb.shape[0],), logp.shape[0], dtype=torch.long, device=dev)
        loss = ctc(logp, tg[idx], in_len, ln[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return loss

    if args.budget_s:
        # Time training steps on a throw-away model, then size the run.
        gen.manual_seed(1)
        xs = torch.from_numpy(xw).to(dev)
        tg, ln = (t.to(dev) for t in encode(yw))
        model, opt = new_model()
        for k in range(45):
            if k == 15:
                if args.device == "cuda":
                    torch.cuda.synchronize()
                tc = time.time()
            idx = torch.randint(0, len(yw), (args.batch,), generator=gen, device=dev)
            train_step(model, opt, xs, tg, ln, idx)
        if args.device == "cuda":
            torch.cuda.synchronize()
        step_s = (time.time() - tc) / 30
        del model, opt
        reserve = 45.0  # held-out figures, export, check
        left = args.budget_s - (time.time() - t0) - reserve
        # A step also waits on fetching rendered chunks: keep a margin.
        args.steps = max(100, int(left * 0.9 / step_s))
        args.train = max(warm, int(min(render_rate * left * 0.8, 2_000_000)) // CHUNK * CHUNK)
        print(
            f"budget: {left:.0f} s of training left, {step_s * 1000:.2f} ms a step, "
            f"{render_rate:.0f} samples/s rendered -> --train {args.train} --steps {args.steps}",
            flush=True,
        )
    print(
        "reproduce with: python train.py "
        f"--seed {args.seed} --train {args.train} --val {args.val} --warm {warm} --steps {args.steps} "
        f"--batch {args.batch} --lr {args.lr} --wd {args.wd} --zero-as-o {args.zero_as_o} --device {args.device}"
        + (f" --init {args.init}" if args.init else ""),
        flush=True,
    )

    xs = torch.zeros((args.train, plates.INPUT_H, plates.INPUT_W), dtype=torch.uint8, device=dev)
    tg = torch.zeros((args.train, MAX_LABEL), dtype=torch.long, device=dev)
    ln = torch.ones(args.train, dtype=torch.long, device=dev)
    xs[:warm] = torch.from_numpy(xw).to(dev)
    tg[:warm], ln[:warm] = (t.to(dev) for t in encode(yw))
    have = warm
    rest = pool.imap(plates.make_batch, jobs_for(args.seed, warm, args.train - warm))
    # The schedule: all samples are there at 80 % of the steps, in even steps.
    ready_at = max(1, int(args.steps * 0.8))

    def available(step: int) -> int:
        if args.train == warm:
            return warm
        n = warm + (args.train - warm) * min(1.0, step / ready_at)
        return int(n) // CHUNK * CHUNK if n < args.train else args.train

    torch.manual_seed(args.seed)
    gen.manual_seed(args.seed)
    model, opt = new_model()
    if args.init:
        model.load_state_dict(torch.load(args.init, map_location=dev))
        print(f"started from {args.init}", flush=True)
    print(f"parameters: {sum(p.numel() for p in model.parameters())}", flush=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)

    t1 = time.time()
    waited = 0.0
    model.train()
    for step in range(args.steps):
        need = max(available(step), CHUNK)
        if have < need:
            tw = time.time()
            while have < need:
                bx, by = next(rest)
                xs[have : have + len(by)] = torch.from_numpy(bx).to(dev)
                tg[have : have + len(by)], ln[have : have + len(by)] = (t.to(dev) for t in encode(by))
                have += len(by)
            waited += time.time() - tw
        idx = torch.randint(0, need, (args.batch,), generator=gen, device=dev)
        loss = train_step(model, opt, xs, tg, ln, idx)
        sched.step()
        if step % 1000 == 0 or step == args.steps - 1:
            print(
                f"step {step} loss {loss.item():.3f} samples {need} {time.time() - t1:.0f} s "
                f"(waited for data {waited:.0f} s)",
                flush=True,
            )
    t_train = time.time() - t1
    pool.close()

    model.eval()
    with torch.no_grad():
        xv = torch.from_numpy(xva).float().div(127.5).sub(1.0).unsqueeze(1)
        probs = torch.cat([model(xv[i : i + 256].to(dev)).cpu() for i in range(0, len(xv), 256)])
    reads = greedy_decode(probs.numpy())
    exact = sum(r == y for r, y in zip(reads, yva)) / len(yva)
    nl = [(r, y) for r, y in zip(reads, yva) if len(y) == 6]
    print(
        f"held-out synthetic exact (greedy): {exact:.4f} on {len(yva)}; "
        f"six-char plates {sum(r == y for r, y in nl) / max(1, len(nl)):.4f} on {len(nl)}",
        flush=True,
    )

    # Export on the CPU: batch is dynamic, the rest fixed. The weights are
    # kept beside it first, so that a failed export does not lose the run.
    model = model.cpu()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(model.state_dict(), os.path.splitext(args.out)[0] + ".pt")
    dummy = torch.zeros(1, 1, plates.INPUT_H, plates.INPUT_W)
    torch.onnx.export(
        model, (dummy,), args.out, input_names=["image"], output_names=["probs"],
        dynamic_axes={"image": {0: "n"}, "probs": {0: "n"}}, opset_version=17, dynamo=False,
    )
    sess = ort.InferenceSession(args.out, providers=["CPUExecutionProvider"])
    ox = sess.run(None, {"image": xv[:64].numpy()})[0]
    # Against torch on the CPU in fp32: a GPU's output differs by its own
    # rounding (TF32 convolutions), not by the export.
    with torch.no_grad():
        ref = model(xv[:64]).numpy()
    diff = float(np.abs(ox - ref).max())
    print(f"onnx vs torch max abs diff: {diff:.2e}")
    assert diff < 1e-3, "export disagrees with torch"
    digest = hashlib.sha256(open(args.out, "rb").read()).hexdigest()
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes) sha256 {digest}")
    print(f"time: training {t_train:.0f} s, total {time.time() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
