//! Synthetic street scenes: a pinhole camera on a pole above a road, vehicles (car or
//! van boxes with bumper, lights, grille, windscreen) that drive towards or away from it
//! carrying rendered Dutch plates, plus road texture, lane markings, verge, shadows,
//! a lighting gradient, mild blur and sensor noise. Also the ground truth of every plate
//! fully in view.
//!
//! Rendering is a pure function of the [`Scenario`] and the frame index (all randomness
//! is seeded from `Scenario::seed`). Never touches files, the clock or global state.

use std::f32::consts::PI;

use image::{Rgb, RgbImage, RgbaImage};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use super::plate::{format_dutch, render_plate};
use super::SynthError;

/// Which way a vehicle drives relative to the camera. `Towards` shows its front plate
/// growing over frames, `Away` its rear plate shrinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Direction {
    Towards,
    Away,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VehicleKind {
    Car,
    Van,
}

/// One vehicle in a scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vehicle {
    /// Six plate characters without dashes, e.g. `"GB123K"`, valid for `sidecode`.
    pub plate: String,
    /// Dutch sidecode 1..=14 deciding where the dashes go.
    pub sidecode: u8,
    /// Lane index, 0 = leftmost in the image.
    pub lane: u8,
    pub direction: Direction,
    /// Frame at which the plate starts to enter the image (top edge for `Towards`,
    /// bottom edge for `Away`). The body may show a little earlier.
    pub first_frame: u32,
    pub speed_kmh: f32,
    pub kind: VehicleKind,
}

/// Camera pose and lens. The road runs along +Z; X is across the road (0 = road centre),
/// Y is up (0 = road surface).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Camera {
    pub height_m: f32,
    /// Downward tilt below the horizon.
    pub pitch_deg: f32,
    /// Turn to the right (towards +X).
    pub yaw_deg: f32,
    /// Lateral position of the pole.
    pub x_m: f32,
    /// Focal length in pixels; enforcement cameras use long lenses so plates are 100-200 px.
    pub focal_px: f32,
}

/// A reproducible scene: frame geometry, camera, road and vehicles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub width: u32,
    pub height: u32,
    pub frames: u32,
    pub fps: f32,
    pub seed: u64,
    pub camera: Camera,
    pub lanes: u8,
    pub lane_width_m: f32,
    pub vehicles: Vec<Vehicle>,
}

/// Where a plate is in a frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlateTruth {
    /// Index into `Scenario::vehicles`.
    pub vehicle: usize,
    /// Six characters, no dashes.
    pub text: String,
    /// As printed, with the sidecode's dashes.
    pub formatted: String,
    /// Image corners: top-left, top-right, bottom-right, bottom-left.
    pub corners: [(f32, f32); 4],
    /// Axis-aligned box around the corners: (x1, y1, x2, y2).
    pub bbox: (f32, f32, f32, f32),
}

impl Default for Camera {
    fn default() -> Self {
        Camera {
            height_m: 5.0,
            pitch_deg: 16.0,
            yaw_deg: 0.0,
            x_m: 0.0,
            focal_px: 4300.0,
        }
    }
}

impl Scenario {
    /// The demo scene: 1920x1080 at 12 fps, 64 frames, six vehicles on two lanes, both
    /// directions, two of them in view at the same time.
    pub fn demo() -> Scenario {
        use Direction::*;
        use VehicleKind::*;
        let v = |plate: &str, sidecode, lane, direction, first_frame, speed_kmh, kind| Vehicle {
            plate: plate.to_string(),
            sidecode,
            lane,
            direction,
            first_frame,
            speed_kmh,
            kind,
        };
        Scenario {
            width: 1920,
            height: 1080,
            frames: 64,
            fps: 12.0,
            seed: 0x5EED_2024,
            camera: Camera::default(),
            lanes: 2,
            lane_width_m: 3.5,
            vehicles: vec![
                v("GB123K", 9, 0, Towards, 0, 60.0, Car),
                v("52RNX7", 7, 1, Away, 4, 55.0, Car),
                v("VDL84S", 11, 0, Towards, 16, 70.0, Van),
                v("3TKF88", 8, 1, Towards, 24, 65.0, Car),
                v("ZN394H", 9, 0, Away, 36, 58.0, Car),
                v("7ZX103", 13, 1, Towards, 46, 62.0, Van),
            ],
        }
    }

    /// A cheap scene for tests: 1280x720, 24 frames, three vehicles (two in view at
    /// once), plates roughly 100-180 px wide while fully in view.
    pub fn small_test() -> Scenario {
        Scenario {
            width: 1280,
            height: 720,
            frames: 24,
            fps: 12.0,
            seed: 42,
            camera: Camera {
                pitch_deg: 15.5,
                ..Camera::default()
            },
            lanes: 2,
            lane_width_m: 3.0,
            vehicles: vec![
                Vehicle {
                    plate: "HX449B".into(),
                    sidecode: 9,
                    lane: 0,
                    direction: Direction::Towards,
                    first_frame: 0,
                    speed_kmh: 60.0,
                    kind: VehicleKind::Car,
                },
                Vehicle {
                    plate: "8KFS27".into(),
                    sidecode: 8,
                    lane: 1,
                    direction: Direction::Away,
                    first_frame: 3,
                    speed_kmh: 55.0,
                    kind: VehicleKind::Car,
                },
                Vehicle {
                    plate: "61TJB4".into(),
                    sidecode: 7,
                    lane: 1,
                    direction: Direction::Towards,
                    first_frame: 13,
                    speed_kmh: 65.0,
                    kind: VehicleKind::Van,
                },
            ],
        }
    }

    /// Checks everything rendering relies on; [`super::write_frames`] calls it first.
    pub fn validate(&self) -> Result<(), SynthError> {
        if self.width < 64 || self.height < 64 || self.width > 8192 || self.height > 8192 {
            return Err(SynthError::FrameSize(self.width, self.height));
        }
        let positive = |v: f32| v.is_finite() && v > 0.0;
        if !positive(self.fps) || !positive(self.lane_width_m) || self.lanes == 0 {
            return Err(SynthError::Geometry(
                "fps, lanes and lane width must be positive",
            ));
        }
        let c = &self.camera;
        if !positive(c.focal_px)
            || !positive(c.height_m)
            || !c.pitch_deg.is_finite()
            || !(0.0..80.0).contains(&c.pitch_deg)
            || !c.yaw_deg.is_finite()
            || c.yaw_deg.abs() > 45.0
            || !c.x_m.is_finite()
        {
            return Err(SynthError::Geometry("camera pose out of range"));
        }
        for (i, v) in self.vehicles.iter().enumerate() {
            if format_dutch(&v.plate, v.sidecode).is_none() {
                return Err(SynthError::Plate {
                    vehicle: i,
                    plate: v.plate.clone(),
                    sidecode: v.sidecode,
                });
            }
            if v.lane >= self.lanes {
                return Err(SynthError::Lane {
                    vehicle: i,
                    lane: v.lane,
                    lanes: self.lanes,
                });
            }
            if !positive(v.speed_kmh) || v.speed_kmh > 300.0 {
                return Err(SynthError::Geometry(
                    "vehicle speed must be in (0, 300] km/h",
                ));
            }
        }
        Ok(())
    }

    fn lane_x(&self, lane: u8) -> f32 {
        (f32::from(lane) + 0.5) * self.lane_width_m
            - f32::from(self.lanes) * self.lane_width_m / 2.0
    }
}

// ---------------------------------------------------------------------------
// Small vector maths.

type V3 = [f32; 3];

fn add(a: V3, b: V3) -> V3 {
    [a[0] + b[0], a[1] + b[1], a[2] + b[2]]
}
fn sub(a: V3, b: V3) -> V3 {
    [a[0] - b[0], a[1] - b[1], a[2] - b[2]]
}
fn mul(a: V3, k: f32) -> V3 {
    [a[0] * k, a[1] * k, a[2] * k]
}
fn dot(a: V3, b: V3) -> f32 {
    a[0] * b[0] + a[1] * b[1] + a[2] * b[2]
}
fn cross(a: V3, b: V3) -> V3 {
    [
        a[1] * b[2] - a[2] * b[1],
        a[2] * b[0] - a[0] * b[2],
        a[0] * b[1] - a[1] * b[0],
    ]
}
fn lerp3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}
fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Integer hash to [0, 1): cheap per-pixel randomness that needs no RNG state.
fn hash3(a: i32, b: i32, salt: u64) -> f32 {
    let mut x = (a as u32 as u64) | ((b as u32 as u64) << 32);
    x ^= salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = splitmix(x);
    (x >> 40) as f32 / (1u64 << 24) as f32
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Smooth value noise in [0, 1).
fn value_noise(x: f32, z: f32, salt: u64) -> f32 {
    let (xf, zf) = (x.floor(), z.floor());
    let (ix, iz) = (xf as i32, zf as i32);
    let (tx, tz) = (x - xf, z - zf);
    let (sx, sz) = (tx * tx * (3.0 - 2.0 * tx), tz * tz * (3.0 - 2.0 * tz));
    let a = hash3(ix, iz, salt);
    let b = hash3(ix + 1, iz, salt);
    let c = hash3(ix, iz + 1, salt);
    let d = hash3(ix + 1, iz + 1, salt);
    let top = a + (b - a) * sx;
    let bottom = c + (d - c) * sx;
    top + (bottom - top) * sz
}

// ---------------------------------------------------------------------------
// Camera.

struct View {
    c: V3,
    r: V3,
    u: V3,
    d: V3,
    f: f32,
    cx: f32,
    cy: f32,
    h: u32,
}

impl View {
    fn new(s: &Scenario) -> View {
        let (p, y) = (
            s.camera.pitch_deg * PI / 180.0,
            s.camera.yaw_deg * PI / 180.0,
        );
        let d = [y.sin() * p.cos(), -p.sin(), y.cos() * p.cos()];
        let r = [y.cos(), 0.0, -y.sin()];
        let u = cross(d, r);
        View {
            c: [s.camera.x_m, s.camera.height_m, 0.0],
            r,
            u,
            d,
            f: s.camera.focal_px,
            cx: s.width as f32 / 2.0,
            cy: s.height as f32 / 2.0,
            h: s.height,
        }
    }

    fn project(&self, p: V3) -> Option<(f32, f32)> {
        let rel = sub(p, self.c);
        let zc = dot(rel, self.d);
        if zc < 0.2 {
            return None;
        }
        Some((
            self.cx + self.f * dot(rel, self.r) / zc,
            self.cy - self.f * dot(rel, self.u) / zc,
        ))
    }

    /// Unnormalised world direction of the ray through image point (px, py).
    fn ray(&self, px: f32, py: f32) -> V3 {
        add(
            self.d,
            add(
                mul(self.r, (px - self.cx) / self.f),
                mul(self.u, -(py - self.cy) / self.f),
            ),
        )
    }

    /// Distance along the road at which a point at height `y` is seen on image row `row`
    /// (through the image centre column); `None` if that row looks at or above it.
    fn z_at_row(&self, row: f32, y: f32) -> Option<f32> {
        let dir = self.ray(self.cx, row);
        let dy = y - self.c[1];
        if dir[1] >= -1e-6 || dy >= 0.0 {
            return None;
        }
        let t = dy / dir[1];
        Some(self.c[2] + t * dir[2])
    }
}

// ---------------------------------------------------------------------------
// Vehicles.

/// Per-vehicle look, drawn from the scenario seed so it is stable across frames.
struct Look {
    body: [f32; 3],
    plate_roll: f32,
    exposure: f32,
    /// Soft diagonal shadow over the face (from a roadside object) with this strength.
    face_shadow: f32,
}

const BODY_COLOURS: [[f32; 3]; 8] = [
    [222.0, 222.0, 218.0],
    [168.0, 171.0, 175.0],
    [34.0, 34.0, 37.0],
    [32.0, 46.0, 92.0],
    [148.0, 28.0, 26.0],
    [92.0, 94.0, 98.0],
    [38.0, 62.0, 48.0],
    [120.0, 124.0, 132.0],
];

fn look(s: &Scenario, index: usize) -> Look {
    let mut rng = StdRng::seed_from_u64(splitmix(
        s.seed ^ (index as u64 + 1).wrapping_mul(0xA24B_AED4),
    ));
    let mut body = BODY_COLOURS[rng.gen_range(0..BODY_COLOURS.len())];
    if s.vehicles[index].kind == VehicleKind::Van && rng.gen_bool(0.6) {
        // Most delivery vans are white.
        body = [232.0, 232.0, 228.0];
    }
    Look {
        body,
        plate_roll: rng.gen_range(-1.5f32..1.5) * PI / 180.0,
        exposure: rng.gen_range(0.88f32..1.08),
        face_shadow: if rng.gen_bool(0.35) {
            rng.gen_range(0.15f32..0.3)
        } else {
            0.0
        },
    }
}

struct Dims {
    width: f32,
    length: f32,
    /// Top of the camera-facing face (bumper + grille / trunk).
    face_top: f32,
    plate_y: f32,
}

fn dims(v: &Vehicle) -> Dims {
    match (v.kind, v.direction) {
        (VehicleKind::Car, Direction::Towards) => Dims {
            width: 1.8,
            length: 4.3,
            face_top: 0.8,
            plate_y: 0.40,
        },
        (VehicleKind::Car, Direction::Away) => Dims {
            width: 1.8,
            length: 4.3,
            face_top: 0.92,
            plate_y: 0.52,
        },
        (VehicleKind::Van, Direction::Towards) => Dims {
            width: 2.0,
            length: 5.2,
            face_top: 1.05,
            plate_y: 0.45,
        },
        (VehicleKind::Van, Direction::Away) => Dims {
            width: 2.0,
            length: 5.2,
            face_top: 2.05,
            plate_y: 0.55,
        },
    }
}

const PLATE_W_M: f32 = 0.52;
const PLATE_H_M: f32 = 0.11;

/// Where the vehicle is in a frame: lateral centre and the Z of its camera-facing face.
#[derive(Clone, Copy)]
struct Pose {
    x: f32,
    z: f32,
}

fn pose(s: &Scenario, view: &View, v: &Vehicle, frame: u32) -> Option<Pose> {
    let d = dims(v);
    let dt = (frame as f32 - v.first_frame as f32) / s.fps;
    let speed = v.speed_kmh / 3.6;
    // Far limit when the horizon is in view: vehicles appear 120 m out.
    let z = match v.direction {
        Direction::Towards => {
            let z0 = view
                .z_at_row(0.0, d.plate_y + PLATE_H_M / 2.0)
                .map_or(120.0, |z| z.min(120.0));
            z0 - speed * dt
        }
        Direction::Away => {
            let z0 = view.z_at_row(view.h as f32, d.plate_y - PLATE_H_M / 2.0)?;
            z0 + speed * dt
        }
    };
    // Too close (under the pole) or too far to matter.
    (z > view.c[2] + 1.5 && z < 150.0).then_some(Pose {
        x: s.lane_x(v.lane),
        z,
    })
}

/// A planar parallelogram: p0 top-left, p1 top-right, p3 bottom-left as seen by the camera.
struct Quad {
    p0: V3,
    p1: V3,
    p3: V3,
}

impl Quad {
    fn p2(&self) -> V3 {
        sub(add(self.p1, self.p3), self.p0)
    }
    /// Vertical face across the road at depth z.
    fn across(x0: f32, x1: f32, y0: f32, y1: f32, z: f32) -> Quad {
        Quad {
            p0: [x0, y1, z],
            p1: [x1, y1, z],
            p3: [x0, y0, z],
        }
    }
}

fn plate_quad(v: &Vehicle, p: Pose, roll: f32) -> Quad {
    let d = dims(v);
    let (hw, hh) = (PLATE_W_M / 2.0, PLATE_H_M / 2.0);
    let (sn, cs) = roll.sin_cos();
    // Rotate in the face plane so plates are not all perfectly level.
    let at = |dx: f32, dy: f32| {
        [
            p.x + dx * cs - dy * sn,
            d.plate_y + dx * sn + dy * cs,
            p.z - 0.02,
        ]
    };
    Quad {
        p0: at(-hw, hh),
        p1: at(hw, hh),
        p3: at(-hw, -hh),
    }
}

// ---------------------------------------------------------------------------
// Canvas and quad rasteriser.

struct Canvas {
    w: u32,
    h: u32,
    px: Vec<[f32; 3]>,
}

/// Fills the image of `q` with `shade(s, t)` (s across p0->p1, t down p0->p3, both in
/// [0, 1]; alpha in the fourth channel). Each pixel's ray is intersected with the quad's
/// plane, which gives perspective-correct texture coordinates, and the distance to the
/// edges in pixels gives antialiased borders.
fn draw_quad(cv: &mut Canvas, view: &View, q: &Quad, shade: impl Fn(f32, f32) -> [f32; 4]) {
    let pts = [q.p0, q.p1, q.p2(), q.p3];
    let mut proj = [(0f32, 0f32); 4];
    for (i, p) in pts.iter().enumerate() {
        match view.project(*p) {
            Some(xy) => proj[i] = xy,
            None => return,
        }
    }
    let (mut x0, mut y0, mut x1, mut y1) = (f32::MAX, f32::MAX, f32::MIN, f32::MIN);
    for (x, y) in proj {
        x0 = x0.min(x);
        y0 = y0.min(y);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    let xs = (x0 - 1.0).floor().max(0.0) as u32;
    let ys = (y0 - 1.0).floor().max(0.0) as u32;
    let xe = ((x1 + 2.0).ceil().max(0.0) as u32).min(cv.w);
    let ye = ((y1 + 2.0).ceil().max(0.0) as u32).min(cv.h);
    if xs >= xe || ys >= ye {
        return;
    }
    let dist = |a: (f32, f32), b: (f32, f32)| ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
    let len_s = dist(proj[0], proj[1]).max(dist(proj[3], proj[2])).max(1e-3);
    let len_t = dist(proj[0], proj[3]).max(dist(proj[1], proj[2])).max(1e-3);
    let e1 = sub(q.p1, q.p0);
    let e2 = sub(q.p3, q.p0);
    let n = cross(e1, e2);
    let a = cross(e2, n);
    let b = cross(n, e1);
    let (ea, eb) = (dot(e1, a), dot(e2, b));
    let on = dot(sub(q.p0, view.c), n);
    if ea.abs() < 1e-12 || eb.abs() < 1e-12 {
        return;
    }
    for y in ys..ye {
        for x in xs..xe {
            let dir = view.ray(x as f32 + 0.5, y as f32 + 0.5);
            let dn = dot(dir, n);
            if dn.abs() < 1e-9 {
                continue;
            }
            let t = on / dn;
            if t <= 0.0 {
                continue;
            }
            let rel = sub(add(view.c, mul(dir, t)), q.p0);
            let s = dot(rel, a) / ea;
            let tt = dot(rel, b) / eb;
            let edge = (s * len_s)
                .min((1.0 - s) * len_s)
                .min(tt * len_t)
                .min((1.0 - tt) * len_t);
            let cov = (edge + 0.5).clamp(0.0, 1.0);
            if cov <= 0.0 {
                continue;
            }
            let c = shade(s.clamp(0.0, 1.0), tt.clamp(0.0, 1.0));
            let alpha = (c[3] * cov).clamp(0.0, 1.0);
            if alpha <= 0.0 {
                continue;
            }
            let dst = &mut cv.px[(y * cv.w + x) as usize];
            *dst = lerp3(*dst, [c[0], c[1], c[2]], alpha);
        }
    }
}

fn solid(c: [f32; 3], k: f32) -> [f32; 4] {
    [c[0] * k, c[1] * k, c[2] * k, 1.0]
}

/// Bilinear sample of an RGBA texture at normalised (s, t).
fn sample(tex: &RgbaImage, s: f32, t: f32) -> [f32; 4] {
    let (w, h) = (tex.width(), tex.height());
    let fx = (s * w as f32 - 0.5).clamp(0.0, (w - 1) as f32);
    let fy = (t * h as f32 - 0.5).clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (fx.floor() as u32, fy.floor() as u32);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (ax, ay) = (fx - x0 as f32, fy - y0 as f32);
    let p = |x, y| tex.get_pixel(x, y).0.map(f32::from);
    let (a, b, c, d) = (p(x0, y0), p(x1, y0), p(x0, y1), p(x1, y1));
    let mut out = [0f32; 4];
    for i in 0..4 {
        let top = a[i] + (b[i] - a[i]) * ax;
        let bot = c[i] + (d[i] - c[i]) * ax;
        out[i] = top + (bot - top) * ay;
    }
    out[3] /= 255.0;
    out
}

const GLASS: [f32; 3] = [38.0, 46.0, 56.0];
const PLASTIC: [f32; 3] = [36.0, 36.0, 38.0];
const TYRE: [f32; 3] = [22.0, 22.0, 24.0];

fn draw_vehicle(cv: &mut Canvas, view: &View, s: &Scenario, index: usize, p: Pose) {
    let v = &s.vehicles[index];
    let lk = look(s, index);
    let d = dims(v);
    let (hw, z, x) = (d.width / 2.0, p.z, p.x);
    let body = lk.body;
    let ex = lk.exposure;
    let van = v.kind == VehicleKind::Van;
    let towards = v.direction == Direction::Towards;

    // Tyres peek out under the body at the camera-facing corners.
    for sx in [-1.0f32, 1.0] {
        let xc = x + sx * (hw - 0.16);
        draw_quad(
            cv,
            view,
            &Quad::across(xc - 0.12, xc + 0.12, 0.0, 0.45, z + 0.75),
            |_, _| solid(TYRE, 1.0),
        );
    }

    // Roof and glass first (furthest), then the visible side, then the face, then the plate.
    let (roof_y, cab_front, cab_back, glass_bottom, glass_front) = if van {
        (2.05, 1.2, d.length, 1.15, 0.5)
    } else if towards {
        (1.45, 1.9, 3.3, 0.95, 1.1)
    } else {
        (1.45, 1.5, 2.9, 0.97, 0.7)
    };
    let roof_hw = if van { hw - 0.03 } else { hw - 0.15 };
    // Roof, lit from above.
    draw_quad(
        cv,
        view,
        &Quad {
            p0: [x - roof_hw, roof_y, z + cab_back],
            p1: [x + roof_hw, roof_y, z + cab_back],
            p3: [x - roof_hw, roof_y, z + cab_front],
        },
        |s, _| solid(body, ex * (1.12 - 0.1 * (s - 0.5).abs())),
    );
    if !van || towards {
        // Windscreen (towards) or rear window (away) on a body-coloured frame.
        let q = Quad {
            p0: [x - roof_hw, roof_y - 0.03, z + cab_front],
            p1: [x + roof_hw, roof_y - 0.03, z + cab_front],
            p3: [x - roof_hw - 0.05, glass_bottom, z + glass_front],
        };
        draw_quad(cv, view, &q, |s, t| {
            let inset = s.min(1.0 - s) > 0.06 && t > 0.07 && t < 0.95;
            if !inset {
                return solid(body, ex * 0.95);
            }
            // Sky reflection: a lighter diagonal band over dark glass.
            let band = smoothstep(0.25, 0.0, ((s * 0.7 + t) - 0.55).abs()) * 40.0;
            let g = lerp3(GLASS, [120.0, 130.0, 140.0], 0.25 * (1.0 - t));
            [g[0] + band, g[1] + band, g[2] + band, 1.0]
        });
        // Hood (towards) or trunk lid (away).
        let q = Quad {
            p0: [x - hw + 0.02, glass_bottom, z + glass_front],
            p1: [x + hw - 0.02, glass_bottom, z + glass_front],
            p3: [x - hw + 0.02, d.face_top, z],
        };
        draw_quad(cv, view, &q, |s, t| {
            let sheen = 1.0 + 0.12 * (1.0 - (s - 0.5).abs() * 2.0) * (1.0 - t);
            solid(body, ex * 1.05 * sheen)
        });
    }

    // The side facing the camera, darker (away from the sky).
    let side_x = if x > view.c[0] { x - hw } else { x + hw };
    let side_top = if van {
        roof_y
    } else {
        d.face_top.max(0.85) + 0.08
    };
    let side = Quad {
        p0: [side_x, side_top, z + d.length],
        p1: [side_x, side_top, z],
        p3: [side_x, 0.2, z + d.length],
    };
    let len = d.length;
    draw_quad(cv, view, &side, |s, t| {
        let along = (1.0 - s) * len; // metres from the face
        let height = side_top - t * (side_top - 0.2);
        for wheel in [0.85, len - 0.9] {
            if ((along - wheel).powi(2) + (height - 0.32).powi(2)).sqrt() < 0.33 {
                return solid(TYRE, 1.0);
            }
        }
        let window = van && height > 1.25 && height < 1.85 && along > 0.6 && along < 1.5;
        if window {
            return solid(GLASS, 1.0);
        }
        solid(body, ex * (0.72 - 0.08 * t))
    });
    if !van {
        // Side windows above the belt line.
        // The greenhouse leans inwards from the body side to the roof edge.
        let roof_x = if x > view.c[0] {
            x - roof_hw
        } else {
            x + roof_hw
        };
        let q = Quad {
            p0: [roof_x, roof_y - 0.03, z + cab_back],
            p1: [roof_x, roof_y - 0.03, z + cab_front],
            p3: [side_x, side_top, z + cab_back],
        };
        draw_quad(cv, view, &q, |s, t| {
            if !(0.06..=0.94).contains(&s) || t > 0.92 {
                solid(body, ex * 0.7)
            } else {
                solid(GLASS, 1.0 + 0.3 * (1.0 - t))
            }
        });
    }

    // Camera-facing face: bumper, grille and headlights, or tail lights and trunk.
    let face = Quad::across(x - hw, x + hw, 0.18, d.face_top, z);
    let (face_top, width) = (d.face_top, d.width);
    let plate_y = d.plate_y;
    let shadow = lk.face_shadow;
    draw_quad(cv, view, &face, |s, t| {
        let mx = (s - 0.5) * width; // metres from the centre line
        let my = face_top - t * (face_top - 0.18); // height above the road
        let ax = mx.abs();
        let mut c = body;
        let mut k = ex * (0.9 - 0.15 * t); // darker towards the ground
                                           // Rounded body: darken towards the sides.
        k *= 1.0 - 0.25 * smoothstep(0.6, 1.0, ax / (width / 2.0));
        if towards {
            let light_lo = face_top - 0.22;
            if my > light_lo
                && my < face_top - 0.06
                && ax > width / 2.0 - 0.42
                && ax < width / 2.0 - 0.08
            {
                // Headlight: bright lens with a darker reflector ring.
                let cxl = width / 2.0 - 0.25;
                let r = ((ax - cxl) / 0.17).powi(2) + ((my - (light_lo + 0.08)) / 0.07).powi(2);
                c = lerp3([235.0, 238.0, 240.0], [120.0, 125.0, 130.0], r.min(1.0));
                k = ex;
            } else if my > face_top - 0.24 && my < face_top - 0.04 && ax < width / 2.0 - 0.46 {
                // Grille with horizontal slats.
                c = PLASTIC;
                k = if ((my * 40.0).fract()) < 0.5 {
                    1.0
                } else {
                    1.6
                };
            } else if my > 0.2 && my < 0.3 && ax < width / 2.0 - 0.3 {
                c = PLASTIC; // lower air intake
                k = 0.8;
            } else if my > 0.24 && my < 0.3 && ax > width / 2.0 - 0.25 && ax < width / 2.0 - 0.12 {
                c = [200.0, 200.0, 190.0]; // fog light
                k = 0.9;
            }
        } else {
            let tail_lo = face_top - if van { 1.2 } else { 0.3 };
            if my > tail_lo
                && my < face_top - 0.06
                && ax > width / 2.0 - if van { 0.14 } else { 0.38 }
                && ax < width / 2.0 - 0.03
            {
                c = [190.0, 24.0, 22.0]; // tail light
                k = ex * (1.0 + 0.2 * (1.0 - t));
            } else if van && my > 1.3 && my < 1.9 && ax > 0.05 && ax < width / 2.0 - 0.2 {
                c = GLASS; // rear door windows
                k = 1.0;
            } else if van && ax < 0.012 && my > 0.6 {
                c = PLASTIC; // door gap
                k = 1.0;
            } else if my > 0.18 && my < 0.32 {
                c = PLASTIC; // rear bumper
                k = 1.0;
            }
        }
        // Dark recess behind the plate so its edge contrasts with the bumper.
        if ax < PLATE_W_M / 2.0 + 0.03 && (my - plate_y).abs() < PLATE_H_M / 2.0 + 0.025 {
            c = PLASTIC;
            k = 0.8;
        }
        // A soft diagonal shadow from a roadside object on some vehicles.
        if shadow > 0.0 {
            k *= 1.0 - shadow * smoothstep(-0.05, 0.05, s - 0.6 - 0.4 * t);
        }
        solid(c, k)
    });

    // The plate itself, slightly proud of the bumper.
    let Some(formatted) = format_dutch(&v.plate, v.sidecode) else {
        return; // validate() reports this; render the vehicle without a plate
    };
    let pq = plate_quad(v, p, lk.plate_roll);
    let (Some(a), Some(b)) = (view.project(pq.p0), view.project(pq.p1)) else {
        return;
    };
    let px_w = ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
    // Twice the on-screen width so the bilinear lookup never magnifies.
    let tex = render_plate(&formatted, (px_w * 2.0).clamp(64.0, 1200.0) as u32);
    draw_quad(cv, view, &pq, |s, t| {
        let c = sample(&tex, s, t);
        // Slight shade under the bumper lip at the top, and the face shadow.
        let mut k = ex * (0.9 + 0.1 * smoothstep(0.0, 0.5, t));
        if shadow > 0.0 {
            k *= 1.0 - shadow * 0.7 * smoothstep(0.3, 0.7, s);
        }
        [c[0] * k, c[1] * k, c[2] * k, c[3]]
    });
}

// ---------------------------------------------------------------------------
// Road.

struct Footprint {
    x0: f32,
    x1: f32,
    z0: f32,
    z1: f32,
}

fn ground_color(s: &Scenario, gx: f32, gz: f32, shadows: &[Footprint]) -> [f32; 3] {
    let half = f32::from(s.lanes) * s.lane_width_m / 2.0;
    let ax = gx.abs();
    let salt = s.seed;
    let fine = hash3((gx * 40.0).floor() as i32, (gz * 40.0).floor() as i32, salt) - 0.5;
    let blotch = value_noise(gx * 0.8, gz * 0.8, salt ^ 1) - 0.5;
    let c = if ax < half + 0.35 {
        // Asphalt with grain, patches and darker wheel tracks.
        let mut g = 96.0 + 22.0 * fine + 18.0 * blotch;
        let lane_pos = (gx + half).rem_euclid(s.lane_width_m) - s.lane_width_m / 2.0;
        if (lane_pos.abs() - 0.8).abs() < 0.3 {
            g -= 8.0;
        }
        let mut c = [g, g, g + 3.0];
        let wear = 0.75 + 0.25 * value_noise(gx * 6.0, gz * 1.5, salt ^ 2);
        let paint = [228.0 * wear, 228.0 * wear, 220.0 * wear];
        // Dashed separators between lanes: 3 m line, 9 m gap.
        for k in 1..s.lanes {
            let lx = -half + f32::from(k) * s.lane_width_m;
            if (gx - lx).abs() < 0.06 && gz.rem_euclid(12.0) < 3.0 {
                c = paint;
            }
        }
        // Solid edge lines.
        if (ax - (half - 0.12)).abs() < 0.08 {
            c = paint;
        }
        c
    } else if ax < half + 0.5 {
        let g = 168.0 + 14.0 * fine; // kerb
        [g, g, g - 4.0]
    } else if ax < half + 2.6 {
        // Pavement tiles with grout lines.
        let tile = hash3(
            (gx / 0.3).floor() as i32,
            (gz / 0.3).floor() as i32,
            salt ^ 3,
        ) * 14.0;
        let grout = (gx / 0.3).fract().abs() < 0.06 || (gz / 0.3).rem_euclid(1.0) < 0.06;
        let g = if grout {
            118.0
        } else {
            146.0 + tile + 10.0 * fine
        };
        [g, g - 4.0, g - 9.0]
    } else {
        let n = value_noise(gx * 2.0, gz * 2.0, salt ^ 4);
        [
            62.0 + 30.0 * n + 20.0 * fine,
            100.0 + 35.0 * n + 20.0 * fine,
            46.0 + 15.0 * n,
        ]
    };
    // Tree shadows from the right-hand verge.
    let mut k = 1.0;
    if gx > half - 2.0 {
        let n = value_noise(gx / 2.2, gz / 2.2, salt ^ 5);
        k *= 1.0 - 0.4 * smoothstep(0.55, 0.7, n);
    }
    // Vehicle shadows, soft at the edges, offset a little by a low sun from the left.
    for f in shadows {
        let inside = (gx - f.x0).min(f.x1 - gx).min(gz - f.z0).min(f.z1 - gz);
        if inside > -0.3 {
            k *= 1.0 - 0.55 * smoothstep(-0.3, 0.2, inside);
        }
    }
    [c[0] * k, c[1] * k, c[2] * k]
}

fn draw_ground(cv: &mut Canvas, view: &View, s: &Scenario, shadows: &[Footprint]) {
    let sky_top = [150.0, 175.0, 205.0];
    let sky_low = [205.0, 212.0, 218.0];
    for y in 0..cv.h {
        for x in 0..cv.w {
            let dir = view.ray(x as f32 + 0.5, y as f32 + 0.5);
            let i = (y * cv.w + x) as usize;
            let t = if dir[1] < 0.0 {
                -view.c[1] / dir[1]
            } else {
                f32::INFINITY
            };
            let gz = view.c[2] + t * dir[2];
            if !t.is_finite() || gz > 220.0 {
                // Sky above a dark tree line near the horizon.
                let e = dir[1] / (dir[0].powi(2) + dir[2].powi(2)).sqrt();
                let treeline = 0.012 + 0.01 * value_noise(dir[0] * 60.0, 0.0, s.seed ^ 6);
                cv.px[i] = if e < treeline {
                    [52.0, 70.0, 48.0]
                } else {
                    lerp3(sky_low, sky_top, (e * 6.0).min(1.0))
                };
                continue;
            }
            let gx = view.c[0] + t * dir[0];
            cv.px[i] = ground_color(s, gx, gz, shadows);
        }
    }
}

// ---------------------------------------------------------------------------
// Public entry points.

/// Renders frame `index` of the scenario. Frames past `frames` still render (vehicles
/// keep driving). An invalid plate/sidecode pair renders its vehicle without a plate;
/// call [`Scenario::validate`] to catch that.
pub fn render_frame(s: &Scenario, index: u32) -> RgbImage {
    let w = s.width.clamp(16, 8192);
    let h = s.height.clamp(16, 8192);
    let s_fixed;
    let s = if (w, h) != (s.width, s.height) {
        s_fixed = Scenario {
            width: w,
            height: h,
            ..s.clone()
        };
        &s_fixed
    } else {
        s
    };
    let view = View::new(s);
    let mut cv = Canvas {
        w,
        h,
        px: vec![[0.0; 3]; (w * h) as usize],
    };

    let mut present: Vec<(usize, Pose)> = s
        .vehicles
        .iter()
        .enumerate()
        .filter_map(|(i, v)| pose(s, &view, v, index).map(|p| (i, p)))
        .collect();
    let shadows: Vec<Footprint> = present
        .iter()
        .map(|(i, p)| {
            let d = dims(&s.vehicles[*i]);
            Footprint {
                x0: p.x - d.width / 2.0 + 0.15,
                x1: p.x + d.width / 2.0 + 0.3,
                z0: p.z - 0.05,
                z1: p.z + d.length,
            }
        })
        .collect();
    draw_ground(&mut cv, &view, s, &shadows);
    // Painter's order: furthest first.
    present.sort_by(|a, b| b.1.z.total_cmp(&a.1.z));
    for (i, p) in present {
        draw_vehicle(&mut cv, &view, s, i, p);
    }
    finish(cv, s, index)
}

/// Lighting gradient and vignette, mild optical blur, then sensor noise. The blur
/// (sigma 1.1 px) also matters for detection: the plate detector scores crisp rendered
/// plates lower than slightly soft ones, as a real lens and JPEG stream deliver.
fn finish(cv: Canvas, s: &Scenario, index: u32) -> RgbImage {
    let (w, h) = (cv.w, cv.h);
    let mut img = RgbImage::new(w, h);
    let (wf, hf) = (w as f32, h as f32);
    for (i, p) in img.pixels_mut().enumerate() {
        let x = (i as u32 % w) as f32 / wf;
        let y = (i as u32 / w) as f32 / hf;
        // Sun from the upper left plus lens fall-off.
        let g =
            (1.06 - 0.14 * x - 0.05 * y) * (1.0 - 0.22 * ((x - 0.5).powi(2) + (y - 0.5).powi(2)));
        let c = cv.px[i];
        *p = Rgb([
            (c[0] * g).clamp(0.0, 255.0) as u8,
            (c[1] * g).clamp(0.0, 255.0) as u8,
            (c[2] * g).clamp(0.0, 255.0) as u8,
        ]);
    }
    let mut img = imageproc::filter::gaussian_blur_f32(&img, 1.1);
    let frame_salt = splitmix(s.seed ^ u64::from(index).wrapping_mul(0xD1B5_4A32_D192_ED03));
    for (i, p) in img.pixels_mut().enumerate() {
        let r = splitmix(frame_salt ^ i as u64);
        // Sum of two uniforms: a cheap bell-shaped noise; luma plus a little chroma.
        let tri =
            |shift: u32| ((r >> shift) & 0xFF) as f32 + ((r >> (shift + 8)) & 0xFF) as f32 - 255.0;
        let luma = tri(0) * 0.028;
        let (cr, cb) = (tri(16) * 0.008, tri(32) * 0.008);
        let add = [luma + cr, luma, luma + cb];
        for (ch, a) in p.0.iter_mut().zip(add) {
            *ch = (f32::from(*ch) + a).round().clamp(0.0, 255.0) as u8;
        }
    }
    img
}

/// Plates fully inside frame `index`, in vehicle order. Plates hidden behind another
/// vehicle in the same lane are still listed; keep same-lane vehicles apart in time.
pub fn frame_truth(s: &Scenario, index: u32) -> Vec<PlateTruth> {
    let view = View::new(s);
    let (wf, hf) = (s.width as f32, s.height as f32);
    let mut out = Vec::new();
    for (i, v) in s.vehicles.iter().enumerate() {
        let Some(p) = pose(s, &view, v, index) else {
            continue;
        };
        let Some(formatted) = format_dutch(&v.plate, v.sidecode) else {
            continue;
        };
        let q = plate_quad(v, p, look(s, i).plate_roll);
        let mut corners = [(0f32, 0f32); 4];
        let mut inside = true;
        for (k, pt) in [q.p0, q.p1, q.p2(), q.p3].into_iter().enumerate() {
            match view.project(pt) {
                Some((x, y)) if x >= 0.0 && y >= 0.0 && x < wf && y < hf => corners[k] = (x, y),
                _ => inside = false,
            }
        }
        if !inside {
            continue;
        }
        let xs = corners.map(|c| c.0);
        let ys = corners.map(|c| c.1);
        let bbox = (
            xs.iter().copied().fold(f32::MAX, f32::min),
            ys.iter().copied().fold(f32::MAX, f32::min),
            xs.iter().copied().fold(f32::MIN, f32::max),
            ys.iter().copied().fold(f32::MIN, f32::max),
        );
        out.push(PlateTruth {
            vehicle: i,
            text: v.plate.to_ascii_uppercase(),
            formatted,
            corners,
            bbox,
        });
    }
    out
}
