//! Direct 3x3 convolution with stride 1 and padding 1 (the residual cells' convolutions),
//! forward and both backward passes, in AVX2 + FMA without an im2row matrix.
//!
//! On few channels (16-32) the im2row + GEMM path spends its time copying nine taps per pixel
//! and in GEMMs with only 16-32 output rows. Here each channel of an image is copied once into a
//! zero-bordered plane `wp = w + 2` floats wide, and outputs are computed on "wide" rows: position
//! `j` of a plane's `h * wp` positions is pixel (j / wp, j % wp - 1), and tap (ky, kx) of every
//! position reads the padded plane at `j + ky * wp + kx`, one shifted contiguous run for all of
//! them. The two positions per row that fall on the border are computed and thrown away (11% of
//! the work at 16x16, 20% at 8x8), which keeps the inner loops free of edge cases:
//!
//! - forward: 4 output channels x 24 positions in 12 vector accumulators, weights broadcast;
//! - input gradient: the same kernel on the output gradient with the kernel flipped and its
//!   channel axes swapped;
//! - weight gradient: 4 output channels x 3 taps of one kernel row, summed over the positions of
//!   a group of images (the output gradient's border positions are zero in its padded plane).
//!
//! Used only when the CPU has AVX2 and FMA (`applies`); `conv` keeps im2row + GEMM otherwise.
use super::conv::Geom;
use super::taps::ConvGrads;
use super::util::{plan_groups_within, run_groups, sum, with_scratch, SyncPtr};

/// Largest channel count (in or out) sent here: at 64 channels (the 4x4 cells) the GEMM path is as
/// fast (bench/TRAINING_SPEED.md), and beyond it faster.
const MAX_CHANNELS: usize = 32;

/// Output channels per tile.
const MR: usize = 4;

/// Whether `conv2d` with this geometry and `o` output channels runs here.
pub(super) fn applies(g: &Geom, o: usize) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.stride == 1
        && g.pad == 1
        && g.h >= 2
        && g.w >= 2
        && g.c <= MAX_CHANNELS
        && o <= MAX_CHANNELS
        && avx2_available()
}

pub(super) fn avx2_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The padded planes and wide rows of one `h x w` image channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Planes {
    h: usize,
    w: usize,
    /// Padded row width, `w + 2`.
    wp: usize,
    /// Positions computed per plane: `h * wp` rounded up to whole vectors.
    span: usize,
    /// Floats per padded plane: every read of every position, `span + 2 * wp + 2`, rounded up.
    ps: usize,
}

impl Planes {
    fn new(h: usize, w: usize) -> Self {
        let wp = w + 2;
        let span = (h * wp).next_multiple_of(8);
        let ps = (span + 2 * wp + 2).next_multiple_of(8);
        Self { h, w, wp, span, ps }
    }

    /// Index in a padded plane of pixel (y, x): position `y * wp + x + 1` plus the `wp + 1`
    /// floats before position 0's centre tap.
    fn at(&self, y: usize, x: usize) -> usize {
        (y + 1) * self.wp + x + 2
    }

    /// Offset of wide row position 0 in a padded plane (its centre tap).
    fn centre(&self) -> usize {
        self.wp + 1
    }
}

/// Copies `chans` planes [h, w] of `src` into padded planes of `dst` [chans, ps], zero around.
fn pad_planes(src: &[f32], chans: usize, pl: &Planes, dst: &mut [f32]) {
    let plane = pl.h * pl.w;
    for (s, d) in src[..chans * plane]
        .chunks_exact(plane)
        .zip(dst[..chans * pl.ps].chunks_exact_mut(pl.ps))
    {
        d.fill(0.0);
        for (y, row) in s.chunks_exact(pl.w).enumerate() {
            let at = pl.at(y, 0);
            d[at..at + pl.w].copy_from_slice(row);
        }
    }
}

/// Copies the pixels of `chans` wide rows `wide` [chans, span] into planes `dst` [chans, h, w].
fn compact(wide: &[f32], chans: usize, pl: &Planes, dst: &mut [f32]) {
    let plane = pl.h * pl.w;
    for (s, d) in wide[..chans * pl.span]
        .chunks_exact(pl.span)
        .zip(dst[..chans * plane].chunks_exact_mut(plane))
    {
        for (y, row) in d.chunks_exact_mut(pl.w).enumerate() {
            row.copy_from_slice(&s[y * pl.wp + 1..y * pl.wp + 1 + pl.w]);
        }
    }
}

/// Weights `get(m, ci, t)` for `mout` outputs, `cin` inputs and taps t = 3 ky + kx, packed for
/// the wide kernel: [mout / MR (rounded up), cin, 9, MR], zero for the outputs past `mout`.
fn pack(mout: usize, cin: usize, get: impl Fn(usize, usize, usize) -> f32) -> Vec<f32> {
    let blocks = mout.div_ceil(MR);
    let mut out = vec![0f32; blocks * cin * 9 * MR];
    for mb in 0..blocks {
        for ci in 0..cin {
            for t in 0..9 {
                for mi in 0..MR.min(mout - mb * MR) {
                    out[((mb * cin + ci) * 9 + t) * MR + mi] = get(mb * MR + mi, ci, t);
                }
            }
        }
    }
    out
}

/// `out[m, j] = bias[m] + sum over ci < cin, taps t of wr[m, ci, t] * xp[ci, j + tap offset]`
/// for the `span` positions of `mout` wide rows: a convolution of padded planes `xp` [cin, ps]
/// with weights packed by `pack`.
fn wide_conv(xp: &[f32], cin: usize, pl: &Planes, wr: &[f32], bias: &[f32], out: &mut [f32], mout: usize) {
    let blocks = mout.div_ceil(MR);
    assert!(xp.len() >= cin * pl.ps, "wide_conv: input too short");
    assert!(wr.len() >= blocks * cin * 9 * MR, "wide_conv: weights too short");
    assert!(bias.len() >= blocks * MR, "wide_conv: bias too short");
    assert!(out.len() >= mout * pl.span, "wide_conv: output too short");
    assert!(pl.span.is_multiple_of(8) && pl.ps >= pl.span + 2 * pl.wp + 2);
    assert!(avx2_available(), "wide_conv needs AVX2 and FMA");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX2 and FMA (asserted). Reads: input ci < cin at offsets j + ky * wp
    // + kx < span + 2 * wp + 2 <= ps, within the cin * ps floats asserted; weights and bias of
    // `blocks` whole tiles, asserted. Writes: rows m < mout of span floats, asserted; `out` is a
    // unique borrow and overlaps no input.
    unsafe {
        avx2::wide_conv(
            xp.as_ptr(),
            cin,
            pl,
            wr.as_ptr(),
            bias.as_ptr(),
            out.as_mut_ptr(),
            mout,
        )
    }
}

/// `dw[(m * c + ci) * 9 + t] += sum over images and positions j of dy[img, m, j] *
/// xp[img, ci, j + tap offset]` for `gn` images of padded input planes `xp` [gn, c, ps] and padded
/// output-gradient planes `dyp` [gn, o, ps] (whose border positions are zero).
fn wide_weight_grad(xp: &[f32], dyp: &[f32], gn: usize, c: usize, o: usize, pl: &Planes, dw: &mut [f32]) {
    assert!(xp.len() >= gn * c * pl.ps, "wide_weight_grad: input too short");
    assert!(
        dyp.len() >= gn * o * pl.ps,
        "wide_weight_grad: gradient too short"
    );
    assert!(
        dw.len() >= o * c * 9,
        "wide_weight_grad: weight gradient too short"
    );
    assert!(pl.span.is_multiple_of(8) && pl.ps >= pl.span + 2 * pl.wp + 2);
    assert!(avx2_available(), "wide_weight_grad needs AVX2 and FMA");
    if gn == 0 || c == 0 || o == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX2 and FMA (asserted). Reads: image i < gn, channel < c (< o) at
    // offsets < span + 2 * wp + 2 <= ps (input) and centre + span <= ps (gradient), within the
    // lengths asserted; output rows past `o` read row o - 1 instead (o > 0 checked). Writes:
    // dw[(m * c + ci) * 9 + t] for m < o, ci < c, t < 9, within the length asserted, a unique
    // borrow.
    unsafe {
        avx2::weight_grad(xp.as_ptr(), dyp.as_ptr(), gn, c, o, pl, dw.as_mut_ptr())
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Planes, MR};
    use std::arch::x86_64::*;

    /// Positions per full tile: three vectors.
    const NR: usize = 3;

    /// `super::wide_conv` without its checks.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `xp` holds cin * ps floats, `wr` and `bias` whole tiles for
    /// `mout` outputs (as `pack` makes them), `out` mout * span writable floats that no one else
    /// touches meanwhile.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn wide_conv(
        xp: *const f32,
        cin: usize,
        pl: &Planes,
        wr: *const f32,
        bias: *const f32,
        out: *mut f32,
        mout: usize,
    ) {
        let offs: [usize; 9] = std::array::from_fn(|t| (t / 3) * pl.wp + t % 3);
        for mb in 0..mout.div_ceil(MR) {
            let rows = MR.min(mout - mb * MR);
            // Tile mb of the packed weights and bias, row mb * MR of out: in bounds by the
            // contract, and only dereferenced by `tile`.
            let w = wr.wrapping_add(mb * cin * 9 * MR);
            let b = bias.wrapping_add(mb * MR);
            let o = out.wrapping_add(mb * MR * pl.span);
            let mut j = 0;
            while j + 8 * NR <= pl.span {
                // SAFETY: positions j..j + 24 <= span, the contract's bounds.
                unsafe { tile::<NR>(xp, cin, pl, &offs, w, b, o, rows, j) };
                j += 8 * NR;
            }
            match (pl.span - j) / 8 {
                // SAFETY: as above, for the last two vectors of the span.
                2 => unsafe { tile::<2>(xp, cin, pl, &offs, w, b, o, rows, j) },
                // SAFETY: as above, for the last vector of the span.
                1 => unsafe { tile::<1>(xp, cin, pl, &offs, w, b, o, rows, j) },
                _ => {}
            }
        }
    }

    /// One tile of `wide_conv`: MR outputs (the first `rows` stored) x `R` vectors of positions
    /// from `j0`, accumulated in registers over every input channel and tap.
    ///
    /// # Safety
    /// As for `wide_conv`, with `w`, `b`, `out` at the tile's weights, bias and first row, and
    /// `j0 + 8 * R <= span`.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile<const R: usize>(
        xp: *const f32,
        cin: usize,
        pl: &Planes,
        offs: &[usize; 9],
        w: *const f32,
        b: *const f32,
        out: *mut f32,
        rows: usize,
        j0: usize,
    ) {
        // SAFETY: every pointer below stays within the bounds the contract gives: bias and
        // weights of this tile (MR and cin * 9 * MR floats), input channel ci < cin at
        // j0 + offs[t] + 8 * R <= span + 2 * wp + 2 <= ps, output rows m < rows at j0 + 8 * R <=
        // span. The loads and stores are unaligned ones.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); R]; MR];
            for (m, am) in acc.iter_mut().enumerate() {
                let bv = _mm256_broadcast_ss(&*b.add(m));
                am.iter_mut().for_each(|a| *a = bv);
            }
            for ci in 0..cin {
                let x = xp.add(ci * pl.ps + j0);
                let wc = w.add(ci * 9 * MR);
                for (t, &off) in offs.iter().enumerate() {
                    let xt = x.add(off);
                    let xv: [__m256; R] = std::array::from_fn(|r| _mm256_loadu_ps(xt.add(8 * r)));
                    for (m, am) in acc.iter_mut().enumerate() {
                        let wv = _mm256_broadcast_ss(&*wc.add(t * MR + m));
                        for (a, &xr) in am.iter_mut().zip(&xv) {
                            *a = _mm256_fmadd_ps(wv, xr, *a);
                        }
                    }
                }
            }
            for (m, am) in acc.iter().enumerate().take(rows) {
                for (r, &a) in am.iter().enumerate() {
                    _mm256_storeu_ps(out.add(m * pl.span + j0 + 8 * r), a);
                }
            }
        }
    }

    /// `super::wide_weight_grad` without its checks.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; gn, c, o > 0; `xp` holds gn * c * ps floats, `dyp` gn * o * ps,
    /// `dw` o * c * 9 writable floats no one else touches meanwhile.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn weight_grad(
        xp: *const f32,
        dyp: *const f32,
        gn: usize,
        c: usize,
        o: usize,
        pl: &Planes,
        dw: *mut f32,
    ) {
        let vectors = pl.span / 8;
        for mb in 0..o.div_ceil(MR) {
            let rows = MR.min(o - mb * MR);
            for ci in 0..c {
                for ky in 0..3 {
                    let mut acc = [[_mm256_setzero_ps(); 3]; MR];
                    for img in 0..gn {
                        // SAFETY: image img < gn; gradient rows mb * MR + m, the ones past o
                        // replaced by o - 1 (their sums are dropped); input channel ci < c at
                        // kernel row ky. Every position read below is within its plane: the
                        // gradient at centre + j < ps, the input at ky * wp + kx + j < ps.
                        unsafe {
                            let d = dyp.add(img * o * pl.ps + pl.centre());
                            let dm: [*const f32; MR] =
                                std::array::from_fn(|m| d.add((mb * MR + m).min(o - 1) * pl.ps));
                            let x = xp.add((img * c + ci) * pl.ps + ky * pl.wp);
                            for v in 0..vectors {
                                let dv: [__m256; MR] =
                                    std::array::from_fn(|m| _mm256_loadu_ps(dm[m].add(8 * v)));
                                let xv: [__m256; 3] =
                                    std::array::from_fn(|kx| _mm256_loadu_ps(x.add(kx + 8 * v)));
                                for (am, &dmv) in acc.iter_mut().zip(&dv) {
                                    for (a, &xk) in am.iter_mut().zip(&xv) {
                                        *a = _mm256_fmadd_ps(dmv, xk, *a);
                                    }
                                }
                            }
                        }
                    }
                    for (m, am) in acc.iter().enumerate().take(rows) {
                        for (kx, &a) in am.iter().enumerate() {
                            // SAFETY: m < rows keeps the output channel below o: within dw.
                            unsafe { *dw.add(((mb * MR + m) * c + ci) * 9 + ky * 3 + kx) += hsum(a) };
                        }
                    }
                }
            }
        }
    }

    /// The sum of a vector's eight lanes.
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        // SAFETY: register-only AVX operations; the caller runs with AVX enabled.
        unsafe {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
        }
    }
}

/// Working set of a weight-gradient group, in floats: the output-gradient rows of one tile
/// across the group's images, which the tile's loops re-read 3 * c times, stay in L1.
const GRAD_GROUP_FLOATS: usize = 1 << 12;

/// `conv2d` forward on `n` images `x` [n, c, h, w] with weights `w` [o, c, 3, 3] and bias `b`.
pub(super) fn forward(x: &[f32], w: &[f32], b: &[f32], n: usize, g: &Geom, o: usize) -> Vec<f32> {
    let (c, pl) = (g.c, Planes::new(g.h, g.w));
    let (img_in, img_out) = (c * g.h * g.w, o * g.h * g.w);
    let wr = pack(o, c, |m, ci, t| w[(m * c + ci) * 9 + t]);
    let mut bias = b[..o].to_vec();
    bias.resize(o.next_multiple_of(MR), 0.0);
    // The images of a group are done one by one in the first image's share of the scratch.
    let per_image = c * pl.ps + o * pl.span;
    let fill = |imgs: std::ops::Range<usize>, _threads: usize, yg: &mut [f32], buf: &mut [f32]| {
        let (xp, wide) = buf[..per_image].split_at_mut(c * pl.ps);
        for (j, i) in imgs.enumerate() {
            pad_planes(&x[i * img_in..(i + 1) * img_in], c, &pl, xp);
            wide_conv(xp, c, &pl, &wr, &bias, wide, o);
            compact(wide, o, &pl, &mut yg[j * img_out..(j + 1) * img_out]);
        }
    };
    // SAFETY: `compact` writes every pixel of every output channel of each of the group's images
    // (all of `yg`), reading none.
    unsafe { super::conv::fill_by_image_groups(n, img_out, per_image, fill) }
}

/// Gradients of `conv2d` (3x3, stride 1, pad 1): (dx if wanted, dw, db).
pub(super) fn backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    n: usize,
    g: &Geom,
    o: usize,
    want_dx: bool,
) -> ConvGrads {
    let (c, pl) = (g.c, Planes::new(g.h, g.w));
    let plane = g.h * g.w;
    let (img_in, img_out) = (c * plane, o * plane);
    // The input gradient is the convolution of dy with the kernel flipped in both axes and its
    // channel axes swapped: dx[ci] = sum over m, taps of w[m, ci, 8 - t] * dy[m, tap t].
    let wr_dx = pack(c, o, |ci, m, t| w[(m * c + ci) * 9 + 8 - t]);
    let zeros = vec![0f32; c.next_multiple_of(MR)];
    let threads = rayon::current_num_threads();
    let (gsz, groups) = plan_groups_within(n, MR * pl.span, threads, GRAD_GROUP_FLOATS);
    // Every input gradient is written by `compact`: no zero-fill first.
    let mut dx: Vec<f32> = Vec::with_capacity(if want_dx { n * img_in } else { 0 });
    let dxp = SyncPtr(dx.as_mut_ptr());
    let (dw, db) = run_groups(
        groups,
        || (vec![0f32; o * c * 9], vec![0f32; o]),
        |(dw, db), gi, _threads| {
            let (n0, n1) = (gi * gsz, ((gi + 1) * gsz).min(n));
            let gn = n1 - n0;
            with_scratch(gn * (c + o) * pl.ps + c * pl.span, |buf| {
                let (xp, rest) = buf.split_at_mut(gn * c * pl.ps);
                let (dyp, wide) = rest.split_at_mut(gn * o * pl.ps);
                for (j, i) in (n0..n1).enumerate() {
                    let dyi = &dy[i * img_out..(i + 1) * img_out];
                    for (ch, s) in db.iter_mut().zip(dyi.chunks_exact(plane)) {
                        *ch += sum(s) as f32;
                    }
                    pad_planes(&x[i * img_in..(i + 1) * img_in], c, &pl, &mut xp[j * c * pl.ps..]);
                    pad_planes(dyi, o, &pl, &mut dyp[j * o * pl.ps..]);
                }
                wide_weight_grad(xp, dyp, gn, c, o, &pl, dw);
                if want_dx {
                    // SAFETY: images n0..n1 <= n of dx (capacity n * img_in), this group's
                    // alone; `compact` writes all of it before anything reads it.
                    let dxg = unsafe { dxp.slice(n0 * img_in, gn * img_in) };
                    for j in 0..gn {
                        let dyj = &dyp[j * o * pl.ps..(j + 1) * o * pl.ps];
                        wide_conv(dyj, o, &pl, &wr_dx, &zeros, wide, c);
                        compact(wide, c, &pl, &mut dxg[j * img_in..(j + 1) * img_in]);
                    }
                }
            });
        },
        |mut a, b| {
            super::util::add_into(&mut a.0, &b.0);
            super::util::add_into(&mut a.1, &b.1);
            a
        },
    );
    if want_dx {
        // SAFETY: the capacity is n * img_in, and the groups, covering images 0..n, wrote every
        // input gradient of their images.
        unsafe { dx.set_len(n * img_in) };
    }
    (want_dx.then_some(dx), dw, db)
}

#[cfg(test)]
mod tests {
    use super::Planes;

    #[test]
    fn wide_positions_map_to_pixels_and_every_tap_read_stays_in_the_plane() {
        for (h, w) in [(1, 1), (2, 2), (3, 5), (8, 8), (16, 16), (7, 2)] {
            let pl = Planes::new(h, w);
            assert_eq!(pl.span % 8, 0);
            for y in 0..h {
                for x in 0..w {
                    let j = y * pl.wp + x + 1;
                    assert!(j < pl.span);
                    // The centre tap of position j is the pixel itself.
                    assert_eq!(pl.centre() + j, pl.at(y, x));
                }
            }
            // The last tap of the last position is inside the plane.
            assert!(pl.span - 1 + 2 * pl.wp + 2 < pl.ps);
        }
    }
}
