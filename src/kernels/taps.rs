//! Kernel taps that read only padding, dropped from a convolution before its GEMMs.
//!
//! Used by `conv` for every pass (forward and both backward passes, plain and transposed).
use super::conv::Geom;

/// The kernel taps some output pixel reads from inside the image, when that excludes whole
/// rows and columns of the kernel. Deep layers of the VAEs see a 2x2 input with a 4x4 kernel
/// (stride 2, pad 1): the single output pixel reads padding through 12 of its 16 taps, so 3/4 of
/// that layer's GEMM multiplies zeros (and the transposed convolution from 1x1 back to 2x2 is
/// the same). Dropping those taps leaves every sum unchanged and the layer 4x cheaper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LiveTaps {
    /// The geometry restricted to the live taps: kernel kh x kw, pad reduced by `t0`.
    g: Geom,
    /// The first live tap, the same along both axes.
    t0: usize,
}

/// Live kernel taps along one axis: `t0..t1` covers every tap `t` with some output `o` reading
/// inside the input, `0 <= o * stride + t - pad < size`.
fn live_range(size: usize, k: usize, outs: usize, stride: usize, pad: usize) -> (usize, usize) {
    let live = |t: usize| {
        (0..outs).any(|o| {
            let i = (o * stride + t) as isize - pad as isize;
            i >= 0 && i < size as isize
        })
    };
    let t0 = (0..k).find(|&t| live(t)).unwrap_or(0);
    let t1 = (0..k).rev().find(|&t| live(t)).map_or(k, |t| t + 1);
    (t0, t1)
}

impl LiveTaps {
    /// `None` when every row and column of the kernel is read somewhere, or when the dead ones
    /// would need different paddings along the two axes (one pad serves both).
    pub(super) fn of(g: &Geom) -> Option<Self> {
        let (h0, h1) = live_range(g.h, g.kh, g.ho, g.stride, g.pad);
        let (w0, w1) = live_range(g.w, g.kw, g.wo, g.stride, g.pad);
        let (kh, kw) = (h1 - h0, w1 - w0);
        if h0 != w0 || h0 > g.pad || kh * kw == g.kh * g.kw {
            return None;
        }
        Some(Self {
            g: Geom {
                kh,
                kw,
                pad: g.pad - h0,
                ..*g
            },
            t0: h0,
        })
    }

    /// The live taps of weights [outer, full.kh, full.kw] as [outer, kh, kw].
    fn crop(&self, full: &Geom, w: &[f32]) -> Vec<f32> {
        let (kh, kw, t0) = (self.g.kh, self.g.kw, self.t0);
        let mut out = Vec::with_capacity(w.len() / (full.kh * full.kw) * kh * kw);
        for taps in w.chunks_exact(full.kh * full.kw) {
            for ki in t0..t0 + kh {
                out.extend_from_slice(&taps[ki * full.kw + t0..ki * full.kw + t0 + kw]);
            }
        }
        out
    }

    /// The adjoint of `crop`: a weight gradient [outer, kh, kw] placed in [outer, full.kh,
    /// full.kw], zero at the dead taps.
    fn expand(&self, full: &Geom, dw: &[f32]) -> Vec<f32> {
        let (kh, kw, t0) = (self.g.kh, self.g.kw, self.t0);
        let mut out = vec![0f32; dw.len() / (kh * kw) * full.kh * full.kw];
        for (dst, src) in out
            .chunks_exact_mut(full.kh * full.kw)
            .zip(dw.chunks_exact(kh * kw))
        {
            for (ki, row) in src.chunks_exact(kw).enumerate() {
                let at = (t0 + ki) * full.kw + t0;
                dst[at..at + kw].copy_from_slice(row);
            }
        }
        out
    }
}

/// A convolution pass's gradients: (input gradient if wanted, weight gradient, bias gradient).
pub(super) type ConvGrads = (Option<Vec<f32>>, Vec<f32>, Vec<f32>);

/// Runs a forward pass `f(geometry, weights)` on the live taps only, when some are dead.
pub(super) fn forward_on_live_taps<R>(g: &Geom, w: &[f32], f: impl FnOnce(&Geom, &[f32]) -> R) -> R {
    match LiveTaps::of(g) {
        Some(live) => f(&live.g, &live.crop(g, w)),
        None => f(g, w),
    }
}

/// Runs a backward pass `f(geometry, weights)` on the live taps only, when some are dead, and
/// returns its weight gradient at the full kernel's shape (zero at the dead taps).
pub(super) fn backward_on_live_taps(
    g: &Geom,
    w: &[f32],
    f: impl FnOnce(&Geom, &[f32]) -> ConvGrads,
) -> ConvGrads {
    match LiveTaps::of(g) {
        Some(live) => {
            let (dx, dw, db) = f(&live.g, &live.crop(g, w));
            (dx, live.expand(g, &dw), db)
        }
        None => f(g, w),
    }
}

#[cfg(test)]
mod tests {
    use super::{Geom, LiveTaps};

    fn geom(h: usize, w: usize, k: usize, stride: usize, pad: usize) -> Geom {
        Geom::conv(1, h, w, k, k, stride, pad).unwrap()
    }

    #[test]
    fn dead_taps_are_found_only_where_every_output_reads_padding() {
        // 2x2 input, 4x4 kernel, stride 2, pad 1: the 1x1 output reads the centre 2x2 taps.
        let live = LiveTaps::of(&geom(2, 2, 4, 2, 1)).unwrap();
        assert_eq!((live.t0, live.g.kh, live.g.kw, live.g.pad), (1, 2, 2, 0));
        assert_eq!((live.g.ho, live.g.wo), (1, 1));
        // 3x3 input: the last kernel row and column are live, so only the first is dropped.
        let live = LiveTaps::of(&geom(3, 3, 4, 2, 1)).unwrap();
        assert_eq!((live.t0, live.g.kh, live.g.kw, live.g.pad), (1, 3, 3, 0));
        // From 4x4 on, every tap is read by some output pixel.
        assert_eq!(LiveTaps::of(&geom(4, 4, 4, 2, 1)), None);
        assert_eq!(LiveTaps::of(&geom(64, 64, 4, 2, 1)), None);
        // Dead rows but no dead columns would need two paddings: left alone.
        assert_eq!(LiveTaps::of(&geom(1, 5, 3, 1, 1)), None);
    }

    #[test]
    fn crop_and_expand_are_adjoint_on_the_live_taps() {
        let full = geom(2, 3, 4, 2, 1);
        let live = LiveTaps::of(&full).unwrap();
        assert_eq!((live.g.kh, live.g.kw), (2, 3));
        let w: Vec<f32> = (0..2 * 16).map(|v| v as f32).collect();
        let cropped = live.crop(&full, &w);
        // Taps (1..3, 1..4) of each 4x4 kernel.
        assert_eq!(&cropped[..6], &[5.0, 6.0, 7.0, 9.0, 10.0, 11.0]);
        assert_eq!(&cropped[6..], &[21.0, 22.0, 23.0, 25.0, 26.0, 27.0]);
        let expanded = live.expand(&full, &cropped);
        for (i, (&e, &orig)) in expanded.iter().zip(&w).enumerate() {
            let (ki, kj) = ((i % 16) / 4, i % 4);
            let is_live = (1..3).contains(&ki) && (1..4).contains(&kj);
            assert_eq!(e, if is_live { orig } else { 0.0 }, "tap {i}");
        }
    }
}
