//! Minimal 3-D geometry for the renderer: vectors, rotations, and triangle meshes built from
//! primitives (boxes, ellipsoids, cylinders) with per-vertex normals.

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Vec3 {
    pub x: f32,
    pub y: f32,
    pub z: f32,
}

pub const fn v3(x: f32, y: f32, z: f32) -> Vec3 {
    Vec3 { x, y, z }
}

impl Vec3 {
    pub fn dot(self, o: Vec3) -> f32 {
        self.x * o.x + self.y * o.y + self.z * o.z
    }
    pub fn cross(self, o: Vec3) -> Vec3 {
        v3(
            self.y * o.z - self.z * o.y,
            self.z * o.x - self.x * o.z,
            self.x * o.y - self.y * o.x,
        )
    }
    pub fn len(self) -> f32 {
        self.dot(self).sqrt()
    }
    pub fn normalized(self) -> Vec3 {
        let l = self.len();
        if l > 0.0 {
            self * (1.0 / l)
        } else {
            self
        }
    }
    /// Component-wise product.
    pub fn hadamard(self, o: Vec3) -> Vec3 {
        v3(self.x * o.x, self.y * o.y, self.z * o.z)
    }
}

impl std::ops::Add for Vec3 {
    type Output = Vec3;
    fn add(self, o: Vec3) -> Vec3 {
        v3(self.x + o.x, self.y + o.y, self.z + o.z)
    }
}
impl std::ops::Sub for Vec3 {
    type Output = Vec3;
    fn sub(self, o: Vec3) -> Vec3 {
        v3(self.x - o.x, self.y - o.y, self.z - o.z)
    }
}
impl std::ops::Mul<f32> for Vec3 {
    type Output = Vec3;
    fn mul(self, s: f32) -> Vec3 {
        v3(self.x * s, self.y * s, self.z * s)
    }
}
impl std::ops::Neg for Vec3 {
    type Output = Vec3;
    fn neg(self) -> Vec3 {
        v3(-self.x, -self.y, -self.z)
    }
}

/// A 3x3 matrix stored as rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mat3 {
    pub r: [Vec3; 3],
}

impl Mat3 {
    pub const IDENTITY: Mat3 = Mat3 {
        r: [v3(1.0, 0.0, 0.0), v3(0.0, 1.0, 0.0), v3(0.0, 0.0, 1.0)],
    };
    pub fn apply(&self, v: Vec3) -> Vec3 {
        v3(self.r[0].dot(v), self.r[1].dot(v), self.r[2].dot(v))
    }
    pub fn transpose(&self) -> Mat3 {
        let [a, b, c] = self.r;
        Mat3 {
            r: [v3(a.x, b.x, c.x), v3(a.y, b.y, c.y), v3(a.z, b.z, c.z)],
        }
    }
    pub fn mul(&self, o: &Mat3) -> Mat3 {
        let t = o.transpose();
        Mat3 {
            r: [0, 1, 2].map(|i| {
                v3(
                    self.r[i].dot(t.r[0]),
                    self.r[i].dot(t.r[1]),
                    self.r[i].dot(t.r[2]),
                )
            }),
        }
    }
    /// Rotation about the vertical (y) axis.
    pub fn rot_y(a: f32) -> Mat3 {
        let (s, c) = a.sin_cos();
        Mat3 {
            r: [v3(c, 0.0, s), v3(0.0, 1.0, 0.0), v3(-s, 0.0, c)],
        }
    }
    pub fn rot_x(a: f32) -> Mat3 {
        let (s, c) = a.sin_cos();
        Mat3 {
            r: [v3(1.0, 0.0, 0.0), v3(0.0, c, -s), v3(0.0, s, c)],
        }
    }
    pub fn rot_z(a: f32) -> Mat3 {
        let (s, c) = a.sin_cos();
        Mat3 {
            r: [v3(c, -s, 0.0), v3(s, c, 0.0), v3(0.0, 0.0, 1.0)],
        }
    }
}

/// An indexed triangle mesh with smooth (or per-face, via duplicated vertices) normals.
#[derive(Debug, Clone, Default)]
pub struct Mesh {
    pub pos: Vec<Vec3>,
    pub normal: Vec<Vec3>,
    pub tris: Vec<[u32; 3]>,
}

/// Where a primitive goes: scaled by `scale` (half-extents / radii), then rotated, then moved to `at`.
#[derive(Debug, Clone, Copy)]
pub struct Placement {
    pub at: Vec3,
    pub scale: Vec3,
    pub rot: Mat3,
}

impl Placement {
    pub fn new(at: Vec3, scale: Vec3) -> Self {
        Self {
            at,
            scale,
            rot: Mat3::IDENTITY,
        }
    }
    pub fn rotated(mut self, rot: Mat3) -> Self {
        self.rot = rot;
        self
    }
    fn point(&self, p: Vec3) -> Vec3 {
        self.rot.apply(p.hadamard(self.scale)) + self.at
    }
    /// Normals transform by the inverse transpose: divide by the scale, then rotate.
    fn normal(&self, n: Vec3) -> Vec3 {
        let inv = v3(1.0 / self.scale.x, 1.0 / self.scale.y, 1.0 / self.scale.z);
        self.rot.apply(n.hadamard(inv)).normalized()
    }
}

impl Mesh {
    fn push_vertex(&mut self, pl: &Placement, p: Vec3, n: Vec3) -> u32 {
        self.pos.push(pl.point(p));
        self.normal.push(pl.normal(n));
        (self.pos.len() - 1) as u32
    }

    /// A box with half-extents `pl.scale` (flat faces: 4 vertices per face).
    pub fn add_box(&mut self, pl: Placement) {
        let faces: [(Vec3, Vec3, Vec3); 6] = [
            (v3(1.0, 0.0, 0.0), v3(0.0, 1.0, 0.0), v3(0.0, 0.0, 1.0)),
            (v3(-1.0, 0.0, 0.0), v3(0.0, 0.0, 1.0), v3(0.0, 1.0, 0.0)),
            (v3(0.0, 1.0, 0.0), v3(0.0, 0.0, 1.0), v3(1.0, 0.0, 0.0)),
            (v3(0.0, -1.0, 0.0), v3(1.0, 0.0, 0.0), v3(0.0, 0.0, 1.0)),
            (v3(0.0, 0.0, 1.0), v3(1.0, 0.0, 0.0), v3(0.0, 1.0, 0.0)),
            (v3(0.0, 0.0, -1.0), v3(0.0, 1.0, 0.0), v3(1.0, 0.0, 0.0)),
        ];
        for (n, u, v) in faces {
            // u x v == n, so (0,1,2) winds counter-clockwise seen from outside.
            let corners = [n - u - v, n + u - v, n + u + v, n - u + v];
            let base = self.pos.len() as u32;
            for c in corners {
                self.push_vertex(&pl, c, n);
            }
            self.tris.push([base, base + 1, base + 2]);
            self.tris.push([base, base + 2, base + 3]);
        }
    }

    /// An ellipsoid with radii `pl.scale`, as a UV sphere of `seg` segments around and `seg/2` rings.
    pub fn add_ellipsoid(&mut self, pl: Placement, seg: usize) {
        let rings = (seg / 2).max(3);
        let base = self.pos.len() as u32;
        for i in 0..=rings {
            let th = std::f32::consts::PI * i as f32 / rings as f32;
            let (st, ct) = th.sin_cos();
            for j in 0..=seg {
                let ph = std::f32::consts::TAU * j as f32 / seg as f32;
                let (sp, cp) = ph.sin_cos();
                let p = v3(st * cp, ct, st * sp);
                self.push_vertex(&pl, p, p);
            }
        }
        let row = (seg + 1) as u32;
        for i in 0..rings as u32 {
            for j in 0..seg as u32 {
                let a = base + i * row + j;
                let b = a + row;
                // Winding: outward-facing counter-clockwise.
                self.tris.push([a, a + 1, b]);
                self.tris.push([a + 1, b + 1, b]);
            }
        }
    }

    /// A capped cylinder along the local y axis: radius `pl.scale.x`/`pl.scale.z`, half-length `pl.scale.y`.
    pub fn add_cylinder(&mut self, pl: Placement, seg: usize) {
        let base = self.pos.len() as u32;
        for j in 0..=seg {
            let ph = std::f32::consts::TAU * j as f32 / seg as f32;
            let (sp, cp) = ph.sin_cos();
            let n = v3(cp, 0.0, sp);
            self.push_vertex(&pl, v3(cp, -1.0, sp), n);
            self.push_vertex(&pl, v3(cp, 1.0, sp), n);
        }
        for j in 0..seg as u32 {
            let a = base + 2 * j;
            self.tris.push([a, a + 1, a + 2]);
            self.tris.push([a + 1, a + 3, a + 2]);
        }
        for (y, flip) in [(1.0f32, false), (-1.0, true)] {
            let n = v3(0.0, y, 0.0);
            let center = self.push_vertex(&pl, v3(0.0, y, 0.0), n);
            let ring = self.pos.len() as u32;
            for j in 0..seg {
                let ph = std::f32::consts::TAU * j as f32 / seg as f32;
                let (sp, cp) = ph.sin_cos();
                self.push_vertex(&pl, v3(cp, y, sp), n);
            }
            for j in 0..seg as u32 {
                let a = ring + j;
                let b = ring + (j + 1) % seg as u32;
                self.tris.push(if flip { [center, a, b] } else { [center, b, a] });
            }
        }
    }

    /// A cylinder of radius `r` from point `a` to point `b` (limbs, struts, tails).
    pub fn add_rod(&mut self, a: Vec3, b: Vec3, r: f32, seg: usize) {
        let d = b - a;
        let len = d.len();
        if len <= 1e-6 {
            return;
        }
        let y = d * (1.0 / len);
        let helper = if y.y.abs() < 0.9 {
            v3(0.0, 1.0, 0.0)
        } else {
            v3(1.0, 0.0, 0.0)
        };
        let x = helper.cross(y).normalized();
        let z = x.cross(y);
        // Columns x, y, z: local axes in world space.
        let rot = Mat3 {
            r: [v3(x.x, y.x, z.x), v3(x.y, y.y, z.y), v3(x.z, y.z, z.z)],
        };
        let pl = Placement::new((a + b) * 0.5, v3(r, len * 0.5, r)).rotated(rot);
        self.add_cylinder(pl, seg);
    }

    /// Axis-aligned bounds (min, max).
    pub fn bounds(&self) -> (Vec3, Vec3) {
        let mut lo = v3(f32::MAX, f32::MAX, f32::MAX);
        let mut hi = v3(f32::MIN, f32::MIN, f32::MIN);
        for p in &self.pos {
            lo = v3(lo.x.min(p.x), lo.y.min(p.y), lo.z.min(p.z));
            hi = v3(hi.x.max(p.x), hi.y.max(p.y), hi.z.max(p.z));
        }
        (lo, hi)
    }

    /// Stand the mesh on the ground (min y = 0), centre it over the origin, and scale it so its
    /// bounding sphere about (0, height/2, 0) has radius 1. Returns the scaled height.
    pub fn normalize_on_ground(&mut self) -> f32 {
        let (lo, hi) = self.bounds();
        let shift = v3(-(lo.x + hi.x) * 0.5, -lo.y, -(lo.z + hi.z) * 0.5);
        let h = hi.y - lo.y;
        let c = v3(0.0, h * 0.5, 0.0);
        let mut r: f32 = 0.0;
        for p in &mut self.pos {
            *p = *p + shift;
            r = r.max((*p - c).len());
        }
        let s = 1.0 / r.max(1e-6);
        for p in &mut self.pos {
            *p = *p * s;
        }
        h * s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sum of triangle area vectors of a closed, outward-wound mesh is zero, and the signed volume is positive.
    fn signed_volume(m: &Mesh) -> f32 {
        m.tris
            .iter()
            .map(|t| {
                let [a, b, c] = t.map(|i| m.pos[i as usize]);
                a.dot(b.cross(c)) / 6.0
            })
            .sum()
    }

    #[test]
    fn primitives_are_closed_outward_and_sized() {
        let mut b = Mesh::default();
        b.add_box(Placement::new(v3(0.0, 0.0, 0.0), v3(1.0, 2.0, 3.0)));
        assert!((signed_volume(&b) - 48.0).abs() < 1e-3);
        let mut e = Mesh::default();
        e.add_ellipsoid(Placement::new(v3(0.0, 0.0, 0.0), v3(1.0, 1.0, 1.0)), 32);
        let v = signed_volume(&e);
        assert!(v > 3.9 && v < 4.19, "sphere volume {v}");
        let mut c = Mesh::default();
        c.add_rod(v3(0.0, 0.0, 0.0), v3(0.0, 0.0, 2.0), 1.0, 32);
        let v = signed_volume(&c);
        assert!(v > 6.0 && v < 6.29, "cylinder volume {v}");
        let h = c.normalize_on_ground();
        let (lo, _) = c.bounds();
        assert!(lo.y.abs() < 1e-6 && h > 0.0);
    }
}
