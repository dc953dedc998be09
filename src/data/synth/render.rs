//! The software renderer: a z-buffered triangle rasteriser with perspective-correct interpolation,
//! Lambertian shading from one directional light plus ambient, and shadows (on the toy and on the
//! ground plane) from an orthographic shadow map. Output is 8-bit grayscale, supersampled.
use super::geometry::{v3, Mesh, Vec3};

/// One of the six lighting conditions: a directional light plus ambient.
#[derive(Debug, Clone, Copy)]
pub struct Light {
    /// Unit vector pointing towards the light.
    pub dir: Vec3,
    pub intensity: f32,
    pub ambient: f32,
}

/// Light direction from azimuth and elevation in degrees (y up, azimuth 0 along +z, towards the camera).
fn light(az_deg: f32, el_deg: f32, intensity: f32, ambient: f32) -> Light {
    let (az, el) = (az_deg.to_radians(), el_deg.to_radians());
    Light {
        dir: v3(el.cos() * az.sin(), el.sin(), el.cos() * az.cos()).normalized(),
        intensity,
        ambient,
    }
}

/// The six lighting conditions (index = smallNORB lighting 0..5): different directions and strengths.
pub fn lighting(index: usize) -> Light {
    match index {
        0 => light(-50.0, 55.0, 0.75, 0.30),
        1 => light(40.0, 60.0, 0.85, 0.25),
        2 => light(-120.0, 40.0, 0.70, 0.35),
        3 => light(140.0, 50.0, 0.80, 0.28),
        4 => light(10.0, 75.0, 0.65, 0.40),
        _ => light(90.0, 35.0, 0.95, 0.20),
    }
}

/// A pinhole camera looking at a target.
#[derive(Debug, Clone, Copy)]
pub struct Camera {
    pub pos: Vec3,
    pub right: Vec3,
    pub up: Vec3,
    pub fwd: Vec3,
    /// Focal length in units of the image half-width (1 / tan(half field of view)).
    pub focal: f32,
}

impl Camera {
    pub fn look_at(pos: Vec3, target: Vec3, focal: f32) -> Camera {
        let fwd = (target - pos).normalized();
        let right = fwd.cross(v3(0.0, 1.0, 0.0)).normalized();
        let up = right.cross(fwd);
        Camera {
            pos,
            right,
            up,
            fwd,
            focal,
        }
    }
}

/// Depth of the toy as seen from the light, over a square patch around the toy.
#[derive(Debug, Clone)]
pub struct ShadowMap {
    res: usize,
    right: Vec3,
    up: Vec3,
    fwd: Vec3,
    /// Light-space (u, v) of the map's centre and the half-size of the covered patch.
    center: (f32, f32),
    half: f32,
    depth: Vec<f32>,
}

impl ShadowMap {
    /// Rasterise the toy's faces that point away from the light (for a closed mesh these are the
    /// far side, so lit surfaces never shadow themselves and no depth bias tuning is needed).
    pub fn build(tris: &[[u32; 3]], pos: &[Vec3], light: &Light, target: Vec3, res: usize) -> ShadowMap {
        let fwd = -light.dir;
        let helper = if fwd.y.abs() < 0.95 {
            v3(0.0, 1.0, 0.0)
        } else {
            v3(1.0, 0.0, 0.0)
        };
        let right = fwd.cross(helper).normalized();
        let up = right.cross(fwd);
        let half = 1.1;
        let center = (target.dot(right), target.dot(up));
        let mut sm = ShadowMap {
            res,
            right,
            up,
            fwd,
            center,
            half,
            depth: vec![f32::INFINITY; res * res],
        };
        let proj: Vec<(f32, f32, f32)> = pos
            .iter()
            .map(|&p| {
                let (x, y) = sm.texel(p);
                (x, y, p.dot(fwd))
            })
            .collect();
        for (t, tri) in tris.iter().enumerate() {
            let [a, b, c] = tri.map(|i| pos[i as usize]);
            if (b - a).cross(c - a).dot(fwd) < 0.0 {
                continue; // faces the light
            }
            let _ = t;
            let [pa, pb, pc] = tri.map(|i| proj[i as usize]);
            raster_triangle(pa, pb, pc, res, res, |idx, l0, l1, l2| {
                let z = l0 * pa.2 + l1 * pb.2 + l2 * pc.2;
                if z < sm.depth[idx] {
                    sm.depth[idx] = z;
                }
            });
        }
        sm
    }

    /// Continuous texel coordinates of a world point.
    fn texel(&self, p: Vec3) -> (f32, f32) {
        let s = self.res as f32 / (2.0 * self.half);
        (
            (p.dot(self.right) - self.center.0 + self.half) * s,
            (p.dot(self.up) - self.center.1 + self.half) * s,
        )
    }

    /// Fraction of light reaching `p` (0 = fully shadowed), bilinearly filtered for soft edges.
    pub fn lit(&self, p: Vec3) -> f32 {
        let (x, y) = self.texel(p);
        let r = self.res as f32;
        // Outside the patch (plus the filter's reach) nothing casts a shadow.
        if !(x > -0.5 && y > -0.5 && x < r + 0.5 && y < r + 0.5) {
            return 1.0;
        }
        let z = p.dot(self.fwd) - 0.01;
        // Offset by one texel so truncation is floor (floorf is a libm call without SSE4.1).
        let (fx, fy) = (x + 0.5, y + 0.5);
        let (x1, y1) = (fx as usize, fy as usize);
        let (wx, wy) = (fx - x1 as f32, fy - y1 as f32);
        let res = self.res;
        let lit_at = |xi: usize, yi: usize| -> f32 {
            // (xi, yi) are texel + 1: 0 and res + 1 are outside the map.
            if xi == 0 || yi == 0 || xi > res || yi > res {
                return 1.0;
            }
            if z > self.depth[(yi - 1) * res + xi - 1] {
                0.0
            } else {
                1.0
            }
        };
        let top = lit_at(x1, y1) * (1.0 - wx) + lit_at(x1 + 1, y1) * wx;
        let bot = lit_at(x1, y1 + 1) * (1.0 - wx) + lit_at(x1 + 1, y1 + 1) * wx;
        top * (1.0 - wy) + bot * wy
    }
}

/// Visit every sample centre (x + 0.5, y + 0.5) inside the screen-space triangle, with its
/// screen-space barycentric weights. Both windings are accepted.
#[inline]
fn raster_triangle<F: FnMut(usize, f32, f32, f32)>(
    a: (f32, f32, f32),
    b: (f32, f32, f32),
    c: (f32, f32, f32),
    w: usize,
    h: usize,
    mut visit: F,
) {
    let area = (b.0 - a.0) * (c.1 - a.1) - (b.1 - a.1) * (c.0 - a.0);
    if area.abs() < 1e-12 || !area.is_finite() {
        return;
    }
    let inv = 1.0 / area;
    let xmin = a.0.min(b.0).min(c.0).floor().max(0.0) as usize;
    let ymin = a.1.min(b.1).min(c.1).floor().max(0.0) as usize;
    let xmax = (a.0.max(b.0).max(c.0).ceil() as isize).min(w as isize - 1);
    let ymax = (a.1.max(b.1).max(c.1).ceil() as isize).min(h as isize - 1);
    if xmax < xmin as isize || ymax < ymin as isize {
        return;
    }
    // Edge functions are affine in x: step them instead of recomputing.
    let e0dx = (b.1 - c.1) * inv;
    let e1dx = (c.1 - a.1) * inv;
    for y in ymin..=ymax as usize {
        let py = y as f32 + 0.5;
        let px = xmin as f32 + 0.5;
        let mut l0 = ((b.0 - px) * (c.1 - py) - (b.1 - py) * (c.0 - px)) * inv;
        let mut l1 = ((c.0 - px) * (a.1 - py) - (c.1 - py) * (a.0 - px)) * inv;
        for x in xmin..=xmax as usize {
            let l2 = 1.0 - l0 - l1;
            if l0 >= 0.0 && l1 >= 0.0 && l2 >= 0.0 {
                visit(y * w + x, l0, l1, l2);
            }
            l0 += e0dx;
            l1 += e1dx;
        }
    }
}

/// Per-thread buffers reused across renders (no allocation per image).
#[derive(Debug, Default)]
pub struct Scratch {
    inv_z: Vec<f32>,
    tri: Vec<u32>,
    bary: Vec<(f32, f32)>,
    screen: Vec<(f32, f32, f32)>,
    accum: Vec<f32>,
}

/// Everything one view needs besides the camera.
pub struct ViewScene<'a> {
    pub mesh_tris: &'a [[u32; 3]],
    /// Vertex positions and normals of the toy as posed (turntable rotation applied).
    pub pos: &'a [Vec3],
    pub normal: &'a [Vec3],
    pub albedo: f32,
    pub light: &'a Light,
    pub shadow: &'a ShadowMap,
}

pub const GROUND_ALBEDO: f32 = 0.78;

/// Render one view at `side` x `side` pixels, `ss` x `ss` supersampled, into `out` (8-bit grayscale,
/// gamma-encoded). `noise_key` seeds mild, deterministic sensor noise (`noise_amp` in 8-bit levels).
#[allow(clippy::too_many_arguments)]
pub fn render_view(
    scene: &ViewScene,
    cam: &Camera,
    side: usize,
    ss: usize,
    noise_key: u64,
    noise_amp: f32,
    scratch: &mut Scratch,
    out: &mut [u8],
) {
    let s = side * ss;
    let n = s * s;
    let Scratch {
        inv_z,
        tri,
        bary,
        screen,
        accum,
    } = scratch;
    inv_z.clear();
    inv_z.resize(n, 0.0);
    tri.clear();
    tri.resize(n, u32::MAX);
    bary.resize(n, (0.0, 0.0));
    let half = s as f32 * 0.5;
    let f = cam.focal * half;
    screen.clear();
    screen.extend(scene.pos.iter().map(|&p| {
        let d = p - cam.pos;
        let z = d.dot(cam.fwd);
        let iz = 1.0 / z;
        (
            half + d.dot(cam.right) * f * iz,
            half - d.dot(cam.up) * f * iz,
            iz,
        )
    }));
    for (t, tr) in scene.mesh_tris.iter().enumerate() {
        let [a, b, c] = tr.map(|i| scene.pos[i as usize]);
        if (b - a).cross(c - a).dot(a - cam.pos) >= 0.0 {
            continue; // back face
        }
        let [sa, sb, sc] = tr.map(|i| screen[i as usize]);
        raster_triangle(sa, sb, sc, s, s, |idx, l0, l1, l2| {
            let iz = l0 * sa.2 + l1 * sb.2 + l2 * sc.2;
            if iz > inv_z[idx] {
                inv_z[idx] = iz;
                tri[idx] = t as u32;
                bary[idx] = (l1, l2);
            }
        });
    }

    let light = scene.light;
    let ground_direct = light.intensity * light.dir.y.max(0.0);
    // Radiance towards the camera at sample position (sx, sy) (in supersampled pixels), which
    // falls on triangle `t` with screen weights (l1, l2), or on the ground if `t` is u32::MAX.
    let shade = |t: u32, sx: f32, sy: f32, l1: f32, l2: f32| -> f32 {
        if t == u32::MAX {
            let dir = cam.fwd + cam.right * ((sx - half) / f) + cam.up * ((half - sy) / f);
            if dir.y >= -1e-6 {
                return GROUND_ALBEDO * light.ambient;
            }
            let g = cam.pos + dir * (-cam.pos.y / dir.y);
            return GROUND_ALBEDO * (light.ambient + ground_direct * scene.shadow.lit(g));
        }
        let [ia, ib, ic] = scene.mesh_tris[t as usize].map(|i| i as usize);
        let l0 = 1.0 - l1 - l2;
        // Perspective-correct weights.
        let (wa, wb, wc) = (l0 * screen[ia].2, l1 * screen[ib].2, l2 * screen[ic].2);
        let norm = 1.0 / (wa + wb + wc);
        let (wa, wb, wc) = (wa * norm, wb * norm, wc * norm);
        let p = scene.pos[ia] * wa + scene.pos[ib] * wb + scene.pos[ic] * wc;
        let nrm = (scene.normal[ia] * wa + scene.normal[ib] * wb + scene.normal[ic] * wc).normalized();
        let ndl = nrm.dot(light.dir);
        let direct = if ndl > 0.0 {
            light.intensity * ndl * scene.shadow.lit(p)
        } else {
            0.0
        };
        // Sky-like ambient: surfaces facing up catch more of the room's light.
        let amb = light.ambient * (0.65 + 0.35 * nrm.y);
        scene.albedo * (amb + direct)
    };
    accum.clear();
    accum.resize(side * side, 0.0);
    let inv_ss = 1.0 / (ss * ss) as f32;
    for oy in 0..side {
        for ox in 0..side {
            let first = (oy * ss) * s + ox * ss;
            let t0 = tri[first];
            let uniform = (0..ss).all(|dy| (0..ss).all(|dx| tri[first + dy * s + dx] == t0));
            accum[oy * side + ox] = if uniform {
                // Shading is smooth inside one triangle (or on the ground): shade the pixel centre once.
                let (mut l1, mut l2) = (0.0, 0.0);
                if t0 != u32::MAX {
                    for dy in 0..ss {
                        for dx in 0..ss {
                            let b = bary[first + dy * s + dx];
                            l1 += b.0;
                            l2 += b.1;
                        }
                    }
                }
                let c = (
                    (ox * ss) as f32 + ss as f32 * 0.5,
                    (oy * ss) as f32 + ss as f32 * 0.5,
                );
                shade(t0, c.0, c.1, l1 * inv_ss, l2 * inv_ss)
            } else {
                let mut sum = 0.0;
                for dy in 0..ss {
                    for dx in 0..ss {
                        let i = first + dy * s + dx;
                        let (x, y) = ((ox * ss + dx) as f32 + 0.5, (oy * ss + dy) as f32 + 0.5);
                        sum += shade(tri[i], x, y, bary[i].0, bary[i].1);
                    }
                }
                sum * inv_ss
            };
        }
    }
    let lut = gamma_lut();
    for (i, (o, &a)) in out.iter_mut().zip(accum.iter()).enumerate() {
        let v = encode(lut, a) + noise_amp * noise(noise_key, i as u64);
        *o = (v.clamp(0.0, 255.0) + 0.5) as u8;
    }
}

const LUT_SIZE: usize = 4096;
const LUT_MAX: f32 = 2.0;

/// `255 * r^(1/2.2)` tabulated on [0, LUT_MAX] (powf per pixel was measurable).
fn gamma_lut() -> &'static [f32] {
    static LUT: std::sync::OnceLock<Vec<f32>> = std::sync::OnceLock::new();
    LUT.get_or_init(|| {
        (0..=LUT_SIZE + 1)
            .map(|i| 255.0 * (i as f32 * LUT_MAX / LUT_SIZE as f32).powf(1.0 / 2.2))
            .collect()
    })
}

/// Linear radiance to 8-bit display value (gamma 2.2), interpolated from the table.
fn encode(lut: &[f32], r: f32) -> f32 {
    let x = r.clamp(0.0, LUT_MAX) * (LUT_SIZE as f32 / LUT_MAX);
    let i = x as usize;
    let w = x - i as f32;
    lut[i] * (1.0 - w) + lut[i + 1] * w
}

/// Deterministic noise in [-1, 1) from a key and a pixel index (splitmix64).
fn noise(key: u64, i: u64) -> f32 {
    let mut z = key ^ i.wrapping_mul(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^= z >> 31;
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// The toy's vertices and normals after turning the turntable by `angle` radians.
pub fn pose(mesh: &Mesh, angle: f32) -> (Vec<Vec3>, Vec<Vec3>) {
    let r = super::geometry::Mat3::rot_y(angle);
    (
        mesh.pos.iter().map(|&p| r.apply(p)).collect(),
        mesh.normal.iter().map(|&n| r.apply(n)).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synth::geometry::Placement;

    /// A unit box on the ground, seen from above-front, lit from above: the toy is in the middle
    /// of the picture, its top face is brighter than its front, and its shadow darkens the ground.
    #[test]
    fn box_render_has_object_shading_and_shadow() {
        let mut m = Mesh::default();
        m.add_box(Placement::new(v3(0.0, 0.5, 0.0), v3(0.5, 0.5, 0.5)));
        // Light from the right (+x), 45 degrees up: the shadow falls one box-height to the left.
        let light = light(90.0, 45.0, 0.8, 0.2);
        let target = v3(0.0, 0.5, 0.0);
        let sm = ShadowMap::build(&m.tris, &m.pos, &light, target, 128);
        let scene = ViewScene {
            mesh_tris: &m.tris,
            pos: &m.pos,
            normal: &m.normal,
            albedo: 0.7,
            light: &light,
            shadow: &sm,
        };
        let el = 45f32.to_radians();
        let cam = Camera::look_at(target + v3(0.0, el.sin(), el.cos()) * 5.0, target, 4.0);
        let side = 64;
        let mut out = vec![0u8; side * side];
        render_view(&scene, &cam, side, 2, 1, 0.0, &mut Scratch::default(), &mut out);
        let at = |x: usize, y: usize| out[y * side + x] as i32;
        let (left, right) = (at(10, 36), at(54, 36));
        assert!(
            left < right - 20,
            "shadow left of the box: {left} vs open ground {right}"
        );
        // The box covers the centre; its top (n.l = 0.71) is brighter than its front (n.l = 0).
        let (top, front) = (at(32, 24), at(32, 40));
        assert!(
            top > front + 20,
            "top {top} should be brighter than front {front}"
        );
        assert!(
            front < right,
            "front face in its own shade: {front} vs ground {right}"
        );
        let mut again = vec![0u8; side * side];
        render_view(&scene, &cam, side, 2, 1, 0.0, &mut Scratch::default(), &mut again);
        assert_eq!(out, again);
    }
}
