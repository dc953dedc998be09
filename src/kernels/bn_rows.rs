//! Batch norm + activation on feature-major rows (one feature's batch a contiguous row), forward
//! and backward, for the fused dense block (`dense`).
//!
//! One driver (`forward_rows`, `backward_rows`) holds the arithmetic per row; the loops over a
//! row's first multiple of 32 elements are `Lanes`, plain or AVX2 intrinsics, which do the same
//! operations in the same order (32 f32 lanes, the same f64 fold), so both give bit-identical
//! results. The AVX2 lanes are written with intrinsics: compiled from plain loops, the sums came
//! out 2 lanes wide, and batch norm cost 3% of the dense training step.
use super::batchnorm::ActFn;
#[cfg(test)]
use std::ops::Range;

/// Per-feature parameters of one block, as slices over the same feature range.
pub(super) struct FeatureParams<'a> {
    pub(super) bias: &'a [f32],
    pub(super) gamma: &'a [f32],
    pub(super) beta: &'a [f32],
}

impl<'a> FeatureParams<'a> {
    /// Features `r` of the packed [bias, gamma, beta] vector of `o` features.
    pub(super) fn of(p: &'a [f32], o: usize, r: &std::ops::Range<usize>) -> Self {
        Self {
            bias: &p[r.clone()],
            gamma: &p[o + r.start..o + r.end],
            beta: &p[2 * o + r.start..2 * o + r.end],
        }
    }
}

/// Lanes of the row sums: four AVX vectors, so consecutive adds do not wait on each other.
const LANES: usize = 32;

/// Rows go through the driver's phases a group at a time: each row's statistics end in a chain
/// of f64 divisions and conversions that its next pass waits for, and other rows' work overlaps
/// it.
const GROUP: usize = 8;

/// The loops over the first `full` elements of a row (`full` a multiple of `LANES`). Sums are
/// kept in `LANES` f32 lanes (element k in lane k % 32) and returned folded as `fold` does.
///
/// # Safety
/// `full` must be a multiple of `LANES` and at most the length of every row passed (an
/// implementation may access the first `full` elements of each without checking), and an
/// implementation may need CPU features: `Avx2` runs only where the CPU has AVX2 and FMA.
trait Lanes {
    /// Adds `bias` to the elements; returns their sum.
    unsafe fn add_and_sum(zr: &mut [f32], full: usize, bias: f32) -> f64;
    /// The sum of (z - mu)^2.
    unsafe fn squares_sum(zr: &[f32], full: usize, mu: f32) -> f64;
    /// h = act((z - mu) * a + c).
    unsafe fn activate<A: ActFn>(zr: &[f32], hr: &mut [f32], full: usize, affine: (f32, f32, f32), act: A);
    /// g = g * act'(y), y recomputed from z as `activate` does; returns the sums of the new g
    /// and of g * (z - mu).
    unsafe fn through_activation<A: ActFn>(
        gr: &mut [f32],
        zr: &[f32],
        full: usize,
        affine: (f32, f32, f32),
        act: A,
    ) -> (f64, f64);
    /// g = k1 * g + k2 * (z - mu) + k3; returns the sum of the new g.
    unsafe fn input_grad(gr: &mut [f32], zr: &[f32], full: usize, mu: f32, k: (f32, f32, f32)) -> f64;
}

/// The f64 total of f32 lanes: the four vectors are added first, then eight lanes as a tree
/// (a row is short, so a sequential fold of 32 lanes would cost as much as the row itself).
#[inline(always)]
fn fold(acc: &[f32; LANES]) -> f64 {
    let mut r = [0f32; 8];
    for q in acc.chunks_exact(8) {
        r.iter_mut().zip(q).for_each(|(a, &v)| *a += v);
    }
    let d = r.map(|v| v as f64);
    ((d[0] + d[4]) + (d[2] + d[6])) + ((d[1] + d[5]) + (d[3] + d[7]))
}

/// Batch norm + activation forward on feature-major rows (`z` [len, n], one feature a row): adds
/// the bias to z, takes each row's mean and biased variance (two passes), writes the activations
/// feature-major into `h` [len, n].
///
/// # Safety
/// As for `L`.
#[inline(always)]
unsafe fn forward_rows<L: Lanes, A: ActFn>(
    z: &mut [f32],
    h: &mut [f32],
    n: usize,
    fp: &FeatureParams,
    eps: f64,
    (mo, vo, io): (&mut [f32], &mut [f32], &mut [f32]),
    act: A,
) {
    let full = n / LANES * LANES;
    let groups = z.chunks_mut(n * GROUP).zip(h.chunks_mut(n * GROUP));
    for (first, (zg, hg)) in groups.enumerate().map(|(g, zh)| (g * GROUP, zh)) {
        for (j, zr) in (first..).zip(zg.chunks_exact_mut(n)) {
            let bias = fp.bias[j];
            // SAFETY: `full` <= n = zr.len(); L's CPU features are this function's precondition.
            let lanes = unsafe { L::add_and_sum(zr, full, bias) };
            let sum = zr[full..].iter_mut().fold(lanes, |s, v| {
                *v += bias;
                s + *v as f64
            });
            mo[j] = (sum / n as f64) as f32;
        }
        for (j, zr) in (first..).zip(zg.chunks_exact(n)) {
            let mu = mo[j];
            // SAFETY: as for `add_and_sum` above.
            let squares = unsafe { L::squares_sum(zr, full, mu) };
            let v = zr[full..]
                .iter()
                .fold(squares, |s, &v| s + ((v - mu) * (v - mu)) as f64)
                / n as f64;
            (vo[j], io[j]) = (v as f32, (1.0 / (v + eps).sqrt()) as f32);
        }
        for (j, (zr, hr)) in (first..).zip(zg.chunks_exact(n).zip(hg.chunks_exact_mut(n))) {
            // (z - mean) * scale + beta: no cancellation when the variance is tiny.
            let (mu, a, c) = (mo[j], fp.gamma[j] * io[j], fp.beta[j]);
            // SAFETY: `full` <= n, the length of both rows; L's CPU features as above.
            unsafe { L::activate(zr, hr, full, (mu, a, c), act) };
            for (hv, &zv) in hr[full..].iter_mut().zip(&zr[full..]) {
                *hv = act.apply((zv - mu) * a + c);
            }
        }
    }
}

/// Batch norm + activation backward on feature-major rows: `g` [len, n] holds the gradient of
/// the block output on entry and the gradient of z on return; also writes the bias, gamma and
/// beta gradients of these features. The activation's derivative is taken from the output,
/// recomputed from z exactly as the forward pass computed it.
///
/// # Safety
/// As for `L`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn backward_rows<L: Lanes, A: ActFn>(
    g: &mut [f32],
    z: &[f32],
    n: usize,
    fp: &FeatureParams,
    mean: &[f32],
    invstd: &[f32],
    act: A,
    (db, dg, dbeta): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let m = n as f64;
    let full = n / LANES * LANES;
    let groups = g.chunks_mut(n * GROUP).zip(z.chunks(n * GROUP));
    for (first, (gg, zg)) in groups.enumerate().map(|(k, gz)| (k * GROUP, gz)) {
        // Per feature: sums of dy' and of dy' * (z - mean), dy' = dh through the activation.
        let mut sums = [(0f64, 0f64); GROUP];
        let rows = gg.chunks_exact_mut(n).zip(zg.chunks_exact(n));
        for ((j, (gr, zr)), s) in (first..).zip(rows).zip(&mut sums) {
            let (mu, is) = (mean[j], invstd[j]);
            let (a, c) = (fp.gamma[j] * is, fp.beta[j]);
            // SAFETY: `full` <= n, the length of both rows; L's CPU features are this function's
            // precondition.
            let (mut sdy, mut sdyx) = unsafe { L::through_activation(gr, zr, full, (mu, a, c), act) };
            for (gv, &zv) in gr[full..].iter_mut().zip(&zr[full..]) {
                *gv *= act.grad((zv - mu) * a + c);
                sdy += *gv as f64;
                sdyx += (*gv * (zv - mu)) as f64;
            }
            *s = (sdy, sdyx);
        }
        let rows = gg.chunks_exact_mut(n).zip(zg.chunks_exact(n));
        for ((j, (gr, zr)), &(sdy, sdyx)) in (first..).zip(rows).zip(&sums) {
            let (mu, gm, isd) = (mean[j], fp.gamma[j] as f64, invstd[j] as f64);
            dg[j] = (sdyx * isd) as f32;
            dbeta[j] = sdy as f32;
            // dz = k1 * dy' + k2 * (z - mean) + k3
            let k1 = (gm * isd) as f32;
            let k2 = (-gm * isd * isd * isd * sdyx / m) as f32;
            let k3 = (-gm * isd * sdy / m) as f32;
            // SAFETY: as for `through_activation` above.
            let mut sdz = unsafe { L::input_grad(gr, zr, full, mu, (k1, k2, k3)) };
            for (gv, &zv) in gr[full..].iter_mut().zip(&zr[full..]) {
                *gv = k1 * *gv + k2 * (zv - mu) + k3;
                sdz += *gv as f64;
            }
            db[j] = sdz as f32;
        }
    }
}

/// Batch norm + activation forward on feature-major rows (see `forward_rows`).
pub(super) fn forward<A: ActFn>(
    z: &mut [f32],
    h: &mut [f32],
    n: usize,
    fp: &FeatureParams,
    eps: f64,
    stats: (&mut [f32], &mut [f32], &mut [f32]),
    act: A,
) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { avx2::forward(z, h, n, fp, eps, stats, act) };
    }
    // SAFETY: the plain lanes need no CPU feature.
    unsafe { forward_rows::<Plain, A>(z, h, n, fp, eps, stats, act) }
}

/// Batch norm + activation backward on feature-major rows (see `backward_rows`).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<A: ActFn>(
    g: &mut [f32],
    z: &[f32],
    n: usize,
    fp: &FeatureParams,
    mean: &[f32],
    invstd: &[f32],
    act: A,
    grads: (&mut [f32], &mut [f32], &mut [f32]),
) {
    #[cfg(target_arch = "x86_64")]
    if avx2::available() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { avx2::backward(g, z, n, fp, mean, invstd, act, grads) };
    }
    // SAFETY: the plain lanes need no CPU feature.
    unsafe { backward_rows::<Plain, A>(g, z, n, fp, mean, invstd, act, grads) }
}

/// The lanes as plain loops over `[f32; LANES]` accumulators.
struct Plain;

impl Lanes for Plain {
    #[inline(always)]
    unsafe fn add_and_sum(zr: &mut [f32], full: usize, bias: f32) -> f64 {
        let mut acc = [0f32; LANES];
        for c in zr[..full].chunks_exact_mut(LANES) {
            for (a, v) in acc.iter_mut().zip(c) {
                *v += bias;
                *a += *v;
            }
        }
        fold(&acc)
    }

    #[inline(always)]
    unsafe fn squares_sum(zr: &[f32], full: usize, mu: f32) -> f64 {
        let mut acc = [0f32; LANES];
        for c in zr[..full].chunks_exact(LANES) {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += (v - mu) * (v - mu);
            }
        }
        fold(&acc)
    }

    #[inline(always)]
    unsafe fn activate<A: ActFn>(
        zr: &[f32],
        hr: &mut [f32],
        full: usize,
        (mu, a, c): (f32, f32, f32),
        act: A,
    ) {
        for (hv, &zv) in hr[..full].iter_mut().zip(&zr[..full]) {
            *hv = act.apply((zv - mu) * a + c);
        }
    }

    #[inline(always)]
    unsafe fn through_activation<A: ActFn>(
        gr: &mut [f32],
        zr: &[f32],
        full: usize,
        (mu, a, c): (f32, f32, f32),
        act: A,
    ) -> (f64, f64) {
        let (mut s1, mut s2) = ([0f32; LANES], [0f32; LANES]);
        for (gk, zk) in gr[..full]
            .chunks_exact_mut(LANES)
            .zip(zr[..full].chunks_exact(LANES))
        {
            for (((gv, &zv), a1), a2) in gk.iter_mut().zip(zk).zip(s1.iter_mut()).zip(s2.iter_mut()) {
                *gv *= act.grad((zv - mu) * a + c);
                *a1 += *gv;
                *a2 += *gv * (zv - mu);
            }
        }
        (fold(&s1), fold(&s2))
    }

    #[inline(always)]
    unsafe fn input_grad(
        gr: &mut [f32],
        zr: &[f32],
        full: usize,
        mu: f32,
        (k1, k2, k3): (f32, f32, f32),
    ) -> f64 {
        let mut s3 = [0f32; LANES];
        for (gk, zk) in gr[..full]
            .chunks_exact_mut(LANES)
            .zip(zr[..full].chunks_exact(LANES))
        {
            for ((gv, &zv), a3) in gk.iter_mut().zip(zk).zip(s3.iter_mut()) {
                *gv = k1 * *gv + k2 * (zv - mu) + k3;
                *a3 += *gv;
            }
        }
        fold(&s3)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{backward_rows, forward_rows, ActFn, FeatureParams, Lanes, LANES};
    use std::arch::x86_64::*;

    pub(super) fn available() -> bool {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }

    /// `super::forward` on the AVX2 lanes.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA (`available()`).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn forward<A: ActFn>(
        z: &mut [f32],
        h: &mut [f32],
        n: usize,
        fp: &FeatureParams,
        eps: f64,
        stats: (&mut [f32], &mut [f32], &mut [f32]),
        act: A,
    ) {
        // SAFETY: this function is compiled with AVX2 and FMA, and callers check the CPU has them.
        unsafe { forward_rows::<Avx2, A>(z, h, n, fp, eps, stats, act) }
    }

    /// `super::backward` on the AVX2 lanes.
    ///
    /// # Safety
    /// As for `forward`.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn backward<A: ActFn>(
        g: &mut [f32],
        z: &[f32],
        n: usize,
        fp: &FeatureParams,
        mean: &[f32],
        invstd: &[f32],
        act: A,
        grads: (&mut [f32], &mut [f32], &mut [f32]),
    ) {
        // SAFETY: as for `forward`.
        unsafe { backward_rows::<Avx2, A>(g, z, n, fp, mean, invstd, act, grads) }
    }

    /// The lanes as four AVX vectors: lanes 8q..8q+8 of the plain accumulators are vector q.
    struct Avx2;

    /// `super::fold` of the four vectors.
    ///
    /// # Safety
    /// The CPU must have AVX.
    #[inline(always)]
    unsafe fn fold(a: &[__m256; 4]) -> f64 {
        // SAFETY: register-only intrinsics; AVX is this function's precondition.
        unsafe {
            let mut r = _mm256_setzero_ps();
            for &q in a {
                r = _mm256_add_ps(r, q);
            }
            // (d0 + d4, d1 + d5, d2 + d6, d3 + d7), then ((d0+d4) + (d2+d6)) + ((d1+d5) + (d3+d7)).
            let lo = _mm256_cvtps_pd(_mm256_castps256_ps128(r));
            let hi = _mm256_cvtps_pd(_mm256_extractf128_ps::<1>(r));
            let s = _mm256_add_pd(lo, hi);
            let t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd::<1>(s));
            _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)))
        }
    }

    // Every method's body is one unsafe block: its loads and stores reach offsets k + 8q + 8 <=
    // `full` of rows at least `full` long, and its intrinsics need AVX2 and FMA, both the trait's
    // preconditions.
    impl Lanes for Avx2 {
        #[inline(always)]
        unsafe fn add_and_sum(zr: &mut [f32], full: usize, bias: f32) -> f64 {
            // SAFETY: see the comment above this impl.
            unsafe {
                let zp = zr.as_mut_ptr();
                let b = _mm256_set1_ps(bias);
                let mut acc = [_mm256_setzero_ps(); 4];
                for k in (0..full).step_by(LANES) {
                    for (q, a) in acc.iter_mut().enumerate() {
                        let p = zp.add(k + 8 * q);
                        let v = _mm256_add_ps(_mm256_loadu_ps(p), b);
                        _mm256_storeu_ps(p, v);
                        *a = _mm256_add_ps(*a, v);
                    }
                }
                fold(&acc)
            }
        }

        #[inline(always)]
        unsafe fn squares_sum(zr: &[f32], full: usize, mu: f32) -> f64 {
            // SAFETY: see the comment above this impl.
            unsafe {
                let (zp, m) = (zr.as_ptr(), _mm256_set1_ps(mu));
                let mut acc = [_mm256_setzero_ps(); 4];
                for k in (0..full).step_by(LANES) {
                    for (q, a) in acc.iter_mut().enumerate() {
                        let d = _mm256_sub_ps(_mm256_loadu_ps(zp.add(k + 8 * q)), m);
                        *a = _mm256_add_ps(*a, _mm256_mul_ps(d, d));
                    }
                }
                fold(&acc)
            }
        }

        #[inline(always)]
        unsafe fn activate<A: ActFn>(
            zr: &[f32],
            hr: &mut [f32],
            full: usize,
            (mu, a, c): (f32, f32, f32),
            act: A,
        ) {
            // SAFETY: see the comment above this impl (here k + 8 <= `full`).
            unsafe {
                let (m, av, cv) = (_mm256_set1_ps(mu), _mm256_set1_ps(a), _mm256_set1_ps(c));
                let (zp, hp) = (zr.as_ptr(), hr.as_mut_ptr());
                for k in (0..full).step_by(8) {
                    let zv = _mm256_loadu_ps(zp.add(k));
                    let y = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(zv, m), av), cv);
                    _mm256_storeu_ps(hp.add(k), act.apply8(y));
                }
            }
        }

        #[inline(always)]
        unsafe fn through_activation<A: ActFn>(
            gr: &mut [f32],
            zr: &[f32],
            full: usize,
            (mu, a, c): (f32, f32, f32),
            act: A,
        ) -> (f64, f64) {
            // SAFETY: see the comment above this impl.
            unsafe {
                let (gp, zp) = (gr.as_mut_ptr(), zr.as_ptr());
                let (mv, av, cv) = (_mm256_set1_ps(mu), _mm256_set1_ps(a), _mm256_set1_ps(c));
                let (mut s1, mut s2) = ([_mm256_setzero_ps(); 4], [_mm256_setzero_ps(); 4]);
                for k in (0..full).step_by(LANES) {
                    for q in 0..4 {
                        let (pg, pz) = (gp.add(k + 8 * q), zp.add(k + 8 * q));
                        let d = _mm256_sub_ps(_mm256_loadu_ps(pz), mv);
                        let dy = act.grad8(_mm256_add_ps(_mm256_mul_ps(d, av), cv));
                        let gv = _mm256_mul_ps(_mm256_loadu_ps(pg), dy);
                        _mm256_storeu_ps(pg, gv);
                        s1[q] = _mm256_add_ps(s1[q], gv);
                        s2[q] = _mm256_add_ps(s2[q], _mm256_mul_ps(gv, d));
                    }
                }
                (fold(&s1), fold(&s2))
            }
        }

        #[inline(always)]
        unsafe fn input_grad(
            gr: &mut [f32],
            zr: &[f32],
            full: usize,
            mu: f32,
            (k1, k2, k3): (f32, f32, f32),
        ) -> f64 {
            // SAFETY: see the comment above this impl.
            unsafe {
                let (gp, zp) = (gr.as_mut_ptr(), zr.as_ptr());
                let mv = _mm256_set1_ps(mu);
                let (k1v, k2v, k3v) = (_mm256_set1_ps(k1), _mm256_set1_ps(k2), _mm256_set1_ps(k3));
                let mut s3 = [_mm256_setzero_ps(); 4];
                for k in (0..full).step_by(LANES) {
                    for (q, a3) in s3.iter_mut().enumerate() {
                        let (pg, pz) = (gp.add(k + 8 * q), zp.add(k + 8 * q));
                        let d = _mm256_sub_ps(_mm256_loadu_ps(pz), mv);
                        let gv = _mm256_loadu_ps(pg);
                        let dz =
                            _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(k1v, gv), _mm256_mul_ps(k2v, d)), k3v);
                        _mm256_storeu_ps(pg, dz);
                        *a3 = _mm256_add_ps(*a3, dz);
                    }
                }
                fold(&s3)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::batchnorm::{IdentityFn, LeakyFn, ReluFn};

    /// The AVX2 lanes give the plain lanes' results bit for bit (up to the sign of zero), on
    /// rows that are shorter than, equal to and longer than the 32 lanes, over more than one
    /// group of rows.
    fn check<A: ActFn>(act: A, label: &str) {
        let mut seed = 0x9e37_79b9_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed as f32 / u32::MAX as f32) * 4.0 - 1.5
        };
        for n in [1, 3, 8, 31, 32, 33, 40, 64, 100, 128] {
            let rows = 11;
            let r: Range<usize> = 0..rows;
            let p: Vec<f32> = (0..3 * rows).map(|_| next()).collect();
            let fp = FeatureParams::of(&p, rows, &r);
            let z0: Vec<f32> = (0..rows * n).map(|_| next()).collect();
            let dh: Vec<f32> = (0..rows * n).map(|_| next()).collect();
            let mut outs = Vec::new();
            for vector in [false, true] {
                let (mut z, mut h) = (z0.clone(), vec![0f32; rows * n]);
                let mut st = vec![0f32; 3 * rows];
                let (m, rest) = st.split_at_mut(rows);
                let (v, is) = rest.split_at_mut(rows);
                let mut g = dh.clone();
                let mut d = vec![0f32; 3 * rows];
                let (db, rest) = d.split_at_mut(rows);
                let (dg, dbeta) = rest.split_at_mut(rows);
                if vector {
                    forward(&mut z, &mut h, n, &fp, 1e-5, (m, v, is), act);
                    backward(&mut g, &z, n, &fp, m, is, act, (db, dg, dbeta));
                } else {
                    // SAFETY: the plain lanes need no CPU feature.
                    unsafe {
                        forward_rows::<Plain, A>(&mut z, &mut h, n, &fp, 1e-5, (m, v, is), act);
                        backward_rows::<Plain, A>(&mut g, &z, n, &fp, m, is, act, (db, dg, dbeta));
                    }
                }
                outs.push([z, h, st, g, d]);
            }
            for (k, name) in ["z", "h", "stats", "dz", "d[bias, gamma, beta]"]
                .iter()
                .enumerate()
            {
                for (e, (a, b)) in outs[0][k].iter().zip(&outs[1][k]).enumerate() {
                    assert!(a == b, "{label} n{n} {name}[{e}]: plain {a} vector {b}");
                }
            }
        }
    }

    #[test]
    fn avx2_lanes_match_the_plain_lanes_bit_for_bit() {
        check(IdentityFn, "identity");
        check(ReluFn, "relu");
        check(LeakyFn(0.2), "leaky");
    }
}
