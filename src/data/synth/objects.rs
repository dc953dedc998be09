//! The five NORB categories as parametric toy models built from primitives. Every instance's
//! proportions are drawn deterministically from (seed, category, instance).
use super::geometry::{v3, Mat3, Mesh, Placement, Vec3};
use crate::util::SeededRng;
use rand::Rng;
use std::f32::consts::FRAC_PI_2;

/// smallNORB's category order.
pub const CATEGORY_NAMES: [&str; 5] = ["animal", "human", "airplane", "truck", "car"];

const ELLIPSOID_SEG: usize = 16;
const ROD_SEG: usize = 10;
const WHEEL_SEG: usize = 14;

/// One toy: its mesh standing on the ground (normalised to a unit bounding sphere) and its paint.
#[derive(Debug, Clone)]
pub struct Toy {
    pub mesh: Mesh,
    /// Height after normalisation (the camera aims at half of it).
    pub height: f32,
    /// Diffuse reflectance of the (uniform) paint.
    pub albedo: f32,
}

struct Draw<'a>(&'a mut SeededRng);

impl Draw<'_> {
    fn u(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.0.rng().random::<f32>()
    }
    fn pick(&mut self, n: usize) -> usize {
        self.0.below(n)
    }
    fn chance(&mut self, p: f32) -> bool {
        self.0.rng().random::<f32>() < p
    }
}

/// Build toy `instance` of `category` (0..5) for `seed`.
pub fn build_toy(seed: u64, category: usize, instance: usize) -> Toy {
    let mut rng = SeededRng::derived(seed, &format!("synth/toy/{category}/{instance}"));
    let mut d = Draw(&mut rng);
    let mut mesh = Mesh::default();
    match category {
        0 => animal(&mut d, &mut mesh),
        1 => human(&mut d, &mut mesh),
        2 => airplane(&mut d, &mut mesh),
        3 => truck(&mut d, &mut mesh),
        _ => car(&mut d, &mut mesh),
    }
    let albedo = d.u(0.55, 0.85);
    let height = mesh.normalize_on_ground();
    Toy { mesh, height, albedo }
}

fn ellipsoid(m: &mut Mesh, at: Vec3, r: Vec3) {
    m.add_ellipsoid(Placement::new(at, r), ELLIPSOID_SEG);
}

fn boxed(m: &mut Mesh, at: Vec3, half: Vec3) {
    m.add_box(Placement::new(at, half));
}

/// A wheel centred at `at` with its axle along z.
fn wheel(m: &mut Mesh, at: Vec3, radius: f32, half_width: f32) {
    let pl = Placement::new(at, v3(radius, half_width, radius)).rotated(Mat3::rot_x(FRAC_PI_2));
    m.add_cylinder(pl, WHEEL_SEG);
}

/// Four-legged animal facing +x: body, four legs, neck, head with snout and ears, tail.
fn animal(d: &mut Draw, m: &mut Mesh) {
    let body_len = d.u(0.9, 1.6);
    let body_h = d.u(0.18, 0.32);
    let body_w = d.u(0.28, 0.5);
    let leg_len = d.u(0.3, 0.85);
    let leg_r = d.u(0.05, 0.09);
    let neck_len = d.u(0.1, 0.75);
    let neck_angle = d.u(0.3, 1.2);
    let head_len = d.u(0.22, 0.42);
    let head_r = d.u(0.1, 0.17);
    let tail_len = d.u(0.1, 0.6);
    let tail_angle = d.u(-0.8, 0.9);
    let by = leg_len + body_h * 0.6;
    // Chest and haunch as two overlapping ellipsoids: a barrel body rather than a sausage.
    let chest = d.u(0.9, 1.2);
    ellipsoid(
        m,
        v3(body_len * 0.18, by + body_h * 0.05 * chest, 0.0),
        v3(body_len * 0.34, body_h * chest, body_w * 0.5 * chest),
    );
    ellipsoid(
        m,
        v3(-body_len * 0.2, by, 0.0),
        v3(body_len * 0.32, body_h * 0.95, body_w * 0.48),
    );
    let lx = body_len * 0.33;
    let lz = body_w * 0.3;
    let spread = d.u(0.0, 0.12);
    for (sx, sz) in [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)] {
        let top = v3(sx * lx, by, sz * lz);
        let foot = v3(sx * (lx + spread), 0.0, sz * lz * 1.1);
        m.add_rod(top, foot, leg_r, ROD_SEG);
        ellipsoid(
            m,
            foot + v3(0.03 * sx, leg_r * 0.6, 0.0),
            v3(leg_r * 1.4, leg_r * 0.7, leg_r * 1.2),
        );
    }
    let neck_base = v3(body_len * 0.42, by + body_h * 0.3, 0.0);
    let neck_top = neck_base + v3(neck_angle.cos(), neck_angle.sin(), 0.0) * neck_len;
    m.add_rod(neck_base, neck_top, head_r * 0.75, ROD_SEG);
    let head = neck_top + v3(head_len * 0.3, head_r * 0.2, 0.0);
    ellipsoid(m, head, v3(head_len * 0.5, head_r, head_r * 0.85));
    ellipsoid(
        m,
        head + v3(head_len * 0.45, -head_r * 0.25, 0.0),
        v3(head_len * 0.3, head_r * 0.55, head_r * 0.55),
    );
    let ear = d.u(0.04, 0.11);
    for sz in [1.0, -1.0] {
        ellipsoid(
            m,
            head + v3(-head_len * 0.15, head_r * 0.9, sz * head_r * 0.55),
            v3(ear * 0.5, ear, ear * 0.35),
        );
    }
    let tail_base = v3(-body_len * 0.48, by + body_h * 0.2, 0.0);
    let tail_end = tail_base + v3(-tail_angle.cos(), tail_angle.sin(), 0.0) * tail_len;
    m.add_rod(tail_base, tail_end, leg_r * 0.5, ROD_SEG);
}

/// Standing human figure facing +x: legs, hips, torso, arms in a pose, head, optional hat or skirt.
fn human(d: &mut Draw, m: &mut Mesh) {
    let leg_len = d.u(0.75, 1.0);
    let torso_h = d.u(0.55, 0.75);
    let shoulder = d.u(0.2, 0.32);
    let depth = d.u(0.1, 0.16);
    let limb_r = d.u(0.045, 0.075);
    let stance = d.u(0.04, 0.2);
    let head_r = d.u(0.11, 0.15);
    let arm_len = d.u(0.6, 0.8);
    // Arm pose: angle away from the body (sideways) and forward swing, per arm.
    let pose = d.pick(4);
    let hip_y = leg_len;
    for sz in [1.0f32, -1.0] {
        let hip = v3(0.0, hip_y, sz * shoulder * 0.45);
        let foot = v3(0.0, 0.06, sz * (shoulder * 0.45 + stance));
        m.add_rod(hip, foot, limb_r * 1.3, ROD_SEG);
        boxed(m, foot + v3(0.06, -0.03, 0.0), v3(0.12, 0.035, limb_r * 1.2));
    }
    let torso_c = v3(0.0, hip_y + torso_h * 0.5, 0.0);
    if d.chance(0.3) {
        // Skirt or coat: a wide ellipsoid over the hips.
        ellipsoid(
            m,
            v3(0.0, hip_y, 0.0),
            v3(depth * 1.6, leg_len * 0.35, shoulder * 1.1),
        );
    }
    ellipsoid(m, torso_c, v3(depth, torso_h * 0.55, shoulder));
    let shoulder_y = hip_y + torso_h * 0.88;
    for (k, sz) in [1.0f32, -1.0].into_iter().enumerate() {
        let (side, fwd): (f32, f32) = match pose {
            0 => (0.15, 0.0),
            1 => (0.9, 0.0),
            2 => (0.3, if k == 0 { 1.2 } else { -0.4 }),
            _ => {
                if k == 0 {
                    (2.6, 0.0)
                } else {
                    (0.2, 0.3)
                }
            }
        };
        let s = v3(0.0, shoulder_y, sz * shoulder * 1.05);
        let dir = v3(fwd.sin() * side.cos(), -side.cos() * fwd.cos(), sz * side.sin()).normalized();
        m.add_rod(s, s + dir * arm_len, limb_r, ROD_SEG);
        ellipsoid(m, s + dir * arm_len, v3(limb_r * 1.3, limb_r * 1.3, limb_r * 1.3));
    }
    let neck_top = shoulder_y + 0.08;
    m.add_rod(
        v3(0.0, shoulder_y - 0.05, 0.0),
        v3(0.0, neck_top, 0.0),
        limb_r,
        ROD_SEG,
    );
    let head_c = v3(0.0, neck_top + head_r * 0.9, 0.0);
    ellipsoid(m, head_c, v3(head_r * 1.05, head_r * 1.15, head_r));
    match d.pick(3) {
        0 => {
            let brim = d.u(0.18, 0.28);
            m.add_cylinder(
                Placement::new(head_c + v3(0.0, head_r * 0.8, 0.0), v3(brim, 0.015, brim)),
                WHEEL_SEG,
            );
            m.add_cylinder(
                Placement::new(
                    head_c + v3(0.0, head_r * 1.2, 0.0),
                    v3(head_r, head_r * 0.5, head_r),
                ),
                WHEEL_SEG,
            );
        }
        1 => ellipsoid(
            m,
            head_c + v3(-head_r * 0.3, head_r * 0.3, 0.0),
            v3(head_r, head_r, head_r),
        ),
        _ => {}
    }
}

/// Airplane pointing +x resting on its gear: fuselage, (swept) wings, tailplane, fin, engines.
fn airplane(d: &mut Draw, m: &mut Mesh) {
    let len = d.u(1.6, 2.2);
    let r = d.u(0.1, 0.17);
    let span = d.u(1.4, 2.2);
    let chord = d.u(0.25, 0.5);
    let sweep = d.u(0.0, 0.7);
    let wing_x = d.u(-0.1, 0.15);
    let high_wing = d.chance(0.3);
    let gear = d.u(0.08, 0.18);
    let cy = gear + r;
    ellipsoid(m, v3(0.0, cy, 0.0), v3(len * 0.5, r, r));
    let wing_y = if high_wing { cy + r * 0.7 } else { cy - r * 0.5 };
    let dihedral = d.u(-0.05, 0.12);
    for sz in [1.0f32, -1.0] {
        let half = span * 0.25;
        let c = v3(
            wing_x - sweep * half * 0.8,
            wing_y + dihedral * half,
            sz * (half + r * 0.3),
        );
        let rot = Mat3::rot_y(-sz * sweep * 0.8).mul(&Mat3::rot_x(-sz * dihedral));
        m.add_box(Placement::new(c, v3(chord * 0.5, 0.025, half)).rotated(rot));
    }
    let engines = [0, 2, 2, 4][d.pick(4)];
    for k in 0..engines {
        let sz = if k % 2 == 0 { 1.0 } else { -1.0 };
        let zoff = span * (0.18 + 0.14 * (k / 2) as f32);
        let er = r * d.u(0.45, 0.6);
        let at = v3(
            wing_x - sweep * zoff * 0.8 + chord * 0.2,
            wing_y - er * 1.1,
            sz * zoff,
        );
        let pl = Placement::new(at, v3(er, chord * 0.6, er)).rotated(Mat3::rot_z(FRAC_PI_2));
        m.add_cylinder(pl, WHEEL_SEG);
    }
    let tail_x = -len * 0.42;
    let stab = d.u(0.3, 0.55);
    let t_tail = d.chance(0.3);
    let fin_h = d.u(0.25, 0.45);
    let fin_top = cy + r * 0.5 + fin_h;
    m.add_box(
        Placement::new(
            v3(tail_x, cy + r * 0.5 + fin_h * 0.5, 0.0),
            v3(chord * 0.35, fin_h * 0.5, 0.02),
        )
        .rotated(Mat3::rot_z(0.35)),
    );
    let stab_y = if t_tail { fin_top - 0.03 } else { cy + r * 0.2 };
    m.add_box(Placement::new(
        v3(tail_x - 0.04, stab_y, 0.0),
        v3(chord * 0.28, 0.02, stab * 0.5),
    ));
    // Landing gear: nose strut and two main struts with small wheels.
    for at in [
        v3(len * 0.33, 0.0, 0.0),
        v3(wing_x - 0.05, 0.0, r * 1.2),
        v3(wing_x - 0.05, 0.0, -r * 1.2),
    ] {
        m.add_rod(at + v3(0.0, cy, 0.0), at + v3(0.0, 0.04, 0.0), 0.02, 6);
        wheel(m, at + v3(0.0, 0.04, 0.0), 0.04, 0.02);
    }
}

/// Truck facing +x: chassis, cab (cab-over or with bonnet), a box, tank or open bed, 2-3 axles.
fn truck(d: &mut Draw, m: &mut Mesh) {
    let len = d.u(1.7, 2.3);
    let w = d.u(0.32, 0.42);
    let wr = d.u(0.13, 0.19);
    let cab_len = d.u(0.35, 0.5);
    let cab_h = d.u(0.45, 0.65);
    let chassis_y = wr * 1.1;
    boxed(m, v3(0.0, chassis_y, 0.0), v3(len * 0.5, 0.05, w * 0.85));
    let bonnet = d.chance(0.5);
    let front = len * 0.5;
    let cab_front = if bonnet { front - 0.35 } else { front };
    let cab_x = cab_front - cab_len * 0.5;
    if bonnet {
        boxed(
            m,
            v3(front - 0.175, chassis_y + 0.15, 0.0),
            v3(0.175, 0.12, w * 0.8),
        );
    }
    boxed(
        m,
        v3(cab_x, chassis_y + cab_h * 0.5, 0.0),
        v3(cab_len * 0.5, cab_h * 0.5, w),
    );
    let bed_front = cab_x - cab_len * 0.5 - 0.04;
    let bed_len = bed_front + len * 0.5;
    let bed_x = bed_front - bed_len * 0.5;
    match d.pick(3) {
        0 => {
            let h = d.u(0.5, 0.8);
            boxed(
                m,
                v3(bed_x, chassis_y + 0.05 + h * 0.5, 0.0),
                v3(bed_len * 0.5, h * 0.5, w * 1.05),
            );
        }
        1 => {
            let tr = d.u(0.25, 0.35);
            let pl = Placement::new(
                v3(bed_x, chassis_y + 0.05 + tr, 0.0),
                v3(tr, bed_len * 0.48, tr * 1.1),
            )
            .rotated(Mat3::rot_z(FRAC_PI_2));
            m.add_cylinder(pl, 18);
        }
        _ => {
            // Open bed: floor and three walls.
            let h = d.u(0.2, 0.35);
            let y0 = chassis_y + 0.05;
            boxed(m, v3(bed_x, y0 + 0.03, 0.0), v3(bed_len * 0.5, 0.03, w));
            for sz in [1.0f32, -1.0] {
                boxed(
                    m,
                    v3(bed_x, y0 + h * 0.5, sz * (w - 0.02)),
                    v3(bed_len * 0.5, h * 0.5, 0.02),
                );
            }
            boxed(
                m,
                v3(bed_x - bed_len * 0.5 + 0.02, y0 + h * 0.5, 0.0),
                v3(0.02, h * 0.5, w),
            );
        }
    }
    let axles: Vec<f32> = if d.chance(0.5) {
        vec![front - 0.25, -len * 0.5 + 0.3]
    } else {
        vec![front - 0.25, -len * 0.5 + 0.55, -len * 0.5 + 0.25]
    };
    for x in axles {
        for sz in [1.0f32, -1.0] {
            wheel(m, v3(x, wr, sz * (w * 0.85)), wr, 0.06);
        }
    }
}

/// Car facing +x: body, a cabin (box or rounded), bumpers, four wheels; sedan to SUV proportions.
fn car(d: &mut Draw, m: &mut Mesh) {
    let len = d.u(1.5, 2.0);
    let w = d.u(0.34, 0.42);
    let body_h = d.u(0.15, 0.26);
    let wr = d.u(0.13, 0.18);
    let clearance = wr * d.u(0.5, 0.9);
    let cabin_len = len * d.u(0.4, 0.6);
    let cabin_h = d.u(0.15, 0.3);
    let cabin_x = d.u(-0.2, 0.05) * len;
    let by = clearance + body_h * 0.5;
    boxed(m, v3(0.0, by, 0.0), v3(len * 0.5, body_h * 0.5, w));
    let top = clearance + body_h;
    if d.chance(0.5) {
        boxed(
            m,
            v3(cabin_x, top + cabin_h * 0.5, 0.0),
            v3(cabin_len * 0.5, cabin_h * 0.5, w * 0.85),
        );
    } else {
        ellipsoid(m, v3(cabin_x, top, 0.0), v3(cabin_len * 0.55, cabin_h, w * 0.85));
    }
    for sx in [1.0f32, -1.0] {
        boxed(
            m,
            v3(sx * len * 0.5, clearance + 0.04, 0.0),
            v3(0.03, 0.03, w * 0.95),
        );
    }
    let wx = len * 0.33;
    for sx in [1.0f32, -1.0] {
        for sz in [1.0f32, -1.0] {
            wheel(m, v3(sx * wx, wr, sz * w), wr, 0.06);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toys_are_deterministic_distinct_and_normalised() {
        for cat in 0..5 {
            let a = build_toy(3, cat, 1);
            let b = build_toy(3, cat, 1);
            assert_eq!(a.mesh.pos, b.mesh.pos);
            let c = build_toy(3, cat, 2);
            assert_ne!(
                a.mesh.pos, c.mesh.pos,
                "category {cat}: instances 1 and 2 identical"
            );
            let (lo, hi) = a.mesh.bounds();
            assert!(lo.y.abs() < 1e-5, "category {cat} not on the ground");
            assert!(hi.y > 0.2 && hi.y <= 2.0 + 1e-5);
            assert!(a.mesh.tris.len() > 50);
        }
    }
}
