//! Training-mode batch normalisation with its activation fused, forward and backward, as a
//! candle custom op. Statistics are per channel over (batch, spatial) for [n, c, h, w] inputs and
//! per feature over the batch for [n, c] inputs, with the biased batch variance in the
//! normalisation (as PyTorch and candle do).
use super::util::{f32_data, filled_vec, profiled, simd, with_f32, SyncPtr};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::{Arc, Mutex};

/// The activation applied after the affine batch-norm output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Identity,
    Relu,
    /// max(x, slope * x) with 0 < slope < 1.
    LeakyRelu(f32),
    /// x * sigmoid(x) (swish), with exp from a polynomial (relative error below 3e-7).
    Silu,
}

/// An activation as a type, so the element loops are compiled (and vectorised) per activation.
///
/// The backward passes take the activation's derivative at its input (the pre-activation, which
/// they recompute from the kernel's input with the forward pass's own operations, so bit for bit
/// the same value): SiLU's derivative is not a function of its output.
pub(super) trait ActFn: Copy + Send + Sync {
    fn apply(self, v: f32) -> f32;
    /// The derivative at the pre-activation `v`.
    fn grad(self, v: f32) -> f32;
    /// `apply` on 8 lanes, with the same results.
    ///
    /// # Safety
    /// The CPU must have AVX2 (call from code compiled with it enabled).
    #[cfg(target_arch = "x86_64")]
    unsafe fn apply8(self, v: __m256) -> __m256;
    /// `grad` on 8 lanes, with the same results.
    ///
    /// # Safety
    /// As for `apply8`.
    #[cfg(target_arch = "x86_64")]
    unsafe fn grad8(self, v: __m256) -> __m256;
}

#[derive(Clone, Copy)]
pub(super) struct IdentityFn;
#[derive(Clone, Copy)]
pub(super) struct ReluFn;
#[derive(Clone, Copy)]
pub(super) struct LeakyFn(pub(super) f32);

impl ActFn for IdentityFn {
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        v
    }
    #[inline(always)]
    fn grad(self, _: f32) -> f32 {
        1.0
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn apply8(self, v: __m256) -> __m256 {
        v
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn grad8(self, _: __m256) -> __m256 {
        // SAFETY: register-only AVX intrinsics; AVX is this function's precondition.
        unsafe { _mm256_set1_ps(1.0) }
    }
}

impl ActFn for ReluFn {
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        v.max(0.0)
    }
    #[inline(always)]
    fn grad(self, v: f32) -> f32 {
        // max(v, 0) > 0 exactly when v > 0 (NaN included): the mask the output gave.
        if v > 0.0 {
            1.0
        } else {
            0.0
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn apply8(self, v: __m256) -> __m256 {
        // maxps returns its second operand for NaN, as f32::max returns the non-NaN one.
        // SAFETY: register-only AVX intrinsics; AVX is this function's precondition.
        unsafe { _mm256_max_ps(v, _mm256_setzero_ps()) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn grad8(self, v: __m256) -> __m256 {
        // SAFETY: register-only AVX intrinsics; AVX is this function's precondition.
        unsafe {
            let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(v, _mm256_setzero_ps());
            _mm256_and_ps(positive, _mm256_set1_ps(1.0))
        }
    }
}

impl ActFn for LeakyFn {
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        if v > 0.0 {
            v
        } else {
            self.0 * v
        }
    }
    #[inline(always)]
    fn grad(self, v: f32) -> f32 {
        // With 0 < slope the output is positive exactly when v is.
        if v > 0.0 {
            1.0
        } else {
            self.0
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn apply8(self, v: __m256) -> __m256 {
        // SAFETY: register-only AVX intrinsics; AVX is this function's precondition.
        unsafe {
            let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(v, _mm256_setzero_ps());
            _mm256_blendv_ps(_mm256_mul_ps(_mm256_set1_ps(self.0), v), v, positive)
        }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn grad8(self, v: __m256) -> __m256 {
        // SAFETY: register-only AVX intrinsics; AVX is this function's precondition.
        unsafe {
            let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(v, _mm256_setzero_ps());
            _mm256_blendv_ps(_mm256_set1_ps(self.0), _mm256_set1_ps(1.0), positive)
        }
    }
}

#[derive(Clone, Copy)]
pub(super) struct SiluFn;

/// e^v for f32 by Cephes' expf: v = n ln 2 + r with |r| <= ln 2 / 2, e^r from a degree-7
/// polynomial, 2^n from the exponent bits (relative error below 3e-7 over the normal range).
/// Written so that a loop over it vectorises (no calls, rounding by the 1.5 * 2^23 trick).
#[inline(always)]
pub(super) fn exp_poly(v: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    let v = v.clamp(-87.3, 88.3);
    let n = (v * LOG2E + ROUND) - ROUND;
    let r = (v - n * LN2_HI) - n * LN2_LO;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * (r * r) + r + 1.0;
    f32::from_bits(e.to_bits().wrapping_add(((n as i32) << 23) as u32))
}

impl ActFn for SiluFn {
    #[inline(always)]
    fn apply(self, v: f32) -> f32 {
        v / (1.0 + exp_poly(-v))
    }
    #[inline(always)]
    fn grad(self, v: f32) -> f32 {
        // sigma(v) (1 + v (1 - sigma(v))).
        let s = 1.0 / (1.0 + exp_poly(-v));
        s * (1.0 + v * (1.0 - s))
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn apply8(self, v: __m256) -> __m256 {
        // SAFETY: plain loads and stores of local arrays; AVX is this function's precondition.
        unsafe { lanewise(v, |x| self.apply(x)) }
    }
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn grad8(self, v: __m256) -> __m256 {
        // SAFETY: as for `apply8`.
        unsafe { lanewise(v, |x| self.grad(x)) }
    }
}

/// `f` on each of 8 lanes, through memory (the compiler vectorises the loop when it can).
///
/// # Safety
/// The CPU must have AVX.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lanewise(v: __m256, f: impl Fn(f32) -> f32) -> __m256 {
    let mut a = [0f32; 8];
    // SAFETY: `a` holds 8 floats; unaligned load and store; AVX is the precondition.
    unsafe {
        _mm256_storeu_ps(a.as_mut_ptr(), v);
        for x in &mut a {
            *x = f(*x);
        }
        _mm256_loadu_ps(a.as_ptr())
    }
}

/// Runs `$body` with `$a` bound to the statically typed form of activation `$act`.
macro_rules! with_act {
    ($act:expr, |$a:ident| $body:expr) => {
        match $act {
            Activation::Identity => {
                let $a = IdentityFn;
                $body
            }
            Activation::Relu => {
                let $a = ReluFn;
                $body
            }
            Activation::LeakyRelu(slope) => {
                let $a = LeakyFn(slope);
                $body
            }
            Activation::Silu => {
                let $a = SiluFn;
                $body
            }
        }
    };
}
pub(super) use with_act;

/// (batch, channels, spatial size per channel) of a [n, c, ...] tensor.
fn bn_dims(shape: &Shape) -> Result<(usize, usize, usize)> {
    let d = shape.dims();
    if d.len() < 2 {
        bail!("batch norm: expected [n, c, ...], got {shape:?}");
    }
    Ok((d[0], d[1], d[2..].iter().product()))
}

/// Per-channel mean and 1/sqrt(var + eps) kept from the forward pass for the backward pass.
#[derive(Default)]
struct Saved {
    mean: Vec<f32>,
    var: Vec<f32>,
    invstd: Vec<f32>,
}

struct BatchNormTrainOp {
    eps: f64,
    act: Activation,
    saved: Arc<Mutex<Saved>>,
}

/// Mean and biased variance per channel (two passes, f64 accumulation).
fn channel_stats(x: &[f32], n: usize, c: usize, s: usize) -> (Vec<f32>, Vec<f32>) {
    let m = (n * s) as f64;
    if s == 1 {
        let mut acc = vec![0f64; c];
        for row in x.chunks_exact(c) {
            acc.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64);
        }
        let mean: Vec<f64> = acc.iter().map(|a| a / m).collect();
        let mut acc2 = vec![0f64; c];
        for row in x.chunks_exact(c) {
            acc2.iter_mut().zip(row).zip(&mean).for_each(|((a, &v), &mu)| {
                let d = v as f64 - mu;
                *a += d * d
            });
        }
        (
            mean.iter().map(|&v| v as f32).collect(),
            acc2.iter().map(|a| (a / m) as f32).collect(),
        )
    } else {
        (0..c)
            .into_par_iter()
            .map(|ch| {
                let segs = || (0..n).map(move |i| &x[(i * c + ch) * s..(i * c + ch + 1) * s]);
                let mean = segs().map(super::util::sum).sum::<f64>() / m;
                let mu = mean as f32;
                let var = segs()
                    .map(|seg| super::util::sum2(seg, seg, |v, _| (v - mu) * (v - mu)))
                    .sum::<f64>()
                    / m;
                (mean as f32, var as f32)
            })
            .unzip()
    }
}

// The kernel's inputs, dimensions and settings, each needed: a struct would only rename them.
#[allow(clippy::too_many_arguments)]
fn bn_forward<A: ActFn>(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    n: usize,
    c: usize,
    s: usize,
    eps: f64,
    act: A,
) -> (Vec<f32>, Saved) {
    let (mean, var) = channel_stats(x, n, c, s);
    let invstd: Vec<f32> = var
        .iter()
        .map(|&v| (1.0 / (v as f64 + eps).sqrt()) as f32)
        .collect();
    let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] * invstd[ch]).collect();
    let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
    let fill = |yp: SyncPtr| {
        // SAFETY: the whole buffer, this closure's alone; each element is written, not read.
        let y = unsafe { yp.slice(0, x.len()) };
        if s == 1 {
            y.par_chunks_mut(c * 64)
                .zip(x.par_chunks(c * 64))
                .for_each(|(yb, xb)| {
                    for (yr, xr) in yb.chunks_exact_mut(c).zip(xb.chunks_exact(c)) {
                        for ch in 0..c {
                            yr[ch] = act.apply(xr[ch] * scale[ch] + shift[ch]);
                        }
                    }
                });
        } else {
            y.par_chunks_mut(s)
                .zip(x.par_chunks(s))
                .enumerate()
                .for_each(|(idx, (ys, xs))| {
                    let (a, b) = (scale[idx % c], shift[idx % c]);
                    simd(|| {
                        ys.iter_mut()
                            .zip(xs)
                            .for_each(|(yv, &xv)| *yv = act.apply(xv * a + b))
                    });
                });
        }
    };
    // SAFETY: both branches of `fill` write every output (x.len() is n * c * s: whole rows of
    // c, whole planes of s) and read none.
    let y = unsafe { filled_vec(x.len(), fill) };
    (y, Saved { mean, var, invstd })
}

/// Gradients (dx, dgamma, dbeta) given the output's gradient `dy`; the activation's input is
/// recomputed from `x` as the forward pass computed it.
#[allow(clippy::too_many_arguments)]
fn bn_backward<A: ActFn>(
    x: &[f32],
    dy: &[f32],
    gamma: &[f32],
    beta: &[f32],
    saved: &Saved,
    n: usize,
    c: usize,
    s: usize,
    act: A,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let m = (n * s) as f64;
    let mean = &saved.mean;
    // The forward pass's affine map, the same operations on the same values.
    let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] * saved.invstd[ch]).collect();
    let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
    // Per channel: sum of dy' and sum of dy' * (x - mean), where dy' is dy through the activation.
    let (sdy, sdyx): (Vec<f64>, Vec<f64>) = if s == 1 {
        let mut a = vec![0f64; c];
        let mut b = vec![0f64; c];
        for i in 0..n {
            let r = i * c..(i + 1) * c;
            for (ch, (&xv, &g)) in x[r.clone()].iter().zip(&dy[r]).enumerate() {
                let gp = g * act.grad(xv * scale[ch] + shift[ch]);
                a[ch] += gp as f64;
                b[ch] += (gp * (xv - mean[ch])) as f64;
            }
        }
        (a, b)
    } else {
        (0..c)
            .into_par_iter()
            .map(|ch| {
                let mu = mean[ch];
                let (sc, sh) = (scale[ch], shift[ch]);
                simd(|| {
                    let (mut a, mut b) = (0f64, 0f64);
                    for i in 0..n {
                        let r = (i * c + ch) * s..(i * c + ch + 1) * s;
                        let (xs, gs) = (&x[r.clone()], &dy[r]);
                        let mut la = [0f32; 8];
                        let mut lb = [0f32; 8];
                        let n8 = s / 8 * 8;
                        for (x8, g8) in xs[..n8].chunks_exact(8).zip(gs[..n8].chunks_exact(8)) {
                            for j in 0..8 {
                                let gp = g8[j] * act.grad(x8[j] * sc + sh);
                                la[j] += gp;
                                lb[j] += gp * (x8[j] - mu);
                            }
                        }
                        for k in n8..s {
                            let gp = gs[k] * act.grad(xs[k] * sc + sh);
                            la[0] += gp;
                            lb[0] += gp * (xs[k] - mu);
                        }
                        a += la.iter().map(|&v| v as f64).sum::<f64>();
                        b += lb.iter().map(|&v| v as f64).sum::<f64>();
                    }
                    (a, b)
                })
            })
            .unzip()
    };
    let invstd = &saved.invstd;
    let dgamma: Vec<f32> = (0..c).map(|ch| (sdyx[ch] * invstd[ch] as f64) as f32).collect();
    let dbeta: Vec<f32> = sdy.iter().map(|&v| v as f32).collect();
    // dx = k1 * dy' + k2 * (x - mean) + k3
    let k1: Vec<f32> = (0..c).map(|ch| gamma[ch] * invstd[ch]).collect();
    let k2: Vec<f32> = (0..c)
        .map(|ch| {
            let is = invstd[ch] as f64;
            (-(gamma[ch] as f64) * is * is * is * sdyx[ch] / m) as f32
        })
        .collect();
    let k3: Vec<f32> = (0..c)
        .map(|ch| (-(gamma[ch] as f64) * invstd[ch] as f64 * sdy[ch] / m) as f32)
        .collect();
    let fill = |dxp: SyncPtr| {
        let row = |idx: usize, ch: usize, len: usize| {
            let r = idx * len..(idx + 1) * len;
            // SAFETY: in bounds (idx < x.len() / len), and each index owns its range of dx, which
            // is written, not read.
            let out = unsafe { dxp.slice(r.start, len) };
            (out, &x[r.clone()], &dy[r], ch)
        };
        if s == 1 {
            (0..n).into_par_iter().with_min_len(32).for_each(|i| {
                let (out, xs, gs, _) = row(i, 0, c);
                for ch in 0..c {
                    let gp = gs[ch] * act.grad(xs[ch] * scale[ch] + shift[ch]);
                    out[ch] = k1[ch] * gp + k2[ch] * (xs[ch] - mean[ch]) + k3[ch];
                }
            });
        } else {
            (0..n * c).into_par_iter().for_each(|idx| {
                let ch = idx % c;
                let (out, xs, gs, _) = row(idx, ch, s);
                let (a, b, d, mu) = (k1[ch], k2[ch], k3[ch], mean[ch]);
                let (sc, sh) = (scale[ch], shift[ch]);
                simd(|| {
                    for ((o, &xv), &g) in out.iter_mut().zip(xs).zip(gs) {
                        let gp = g * act.grad(xv * sc + sh);
                        *o = a * gp + b * (xv - mu) + d;
                    }
                });
            });
        }
    };
    // SAFETY: both branches of `fill` write every element of their rows (n rows of c, or n * c
    // planes of s: all of x.len()) and read none.
    let dx = unsafe { filled_vec(x.len(), fill) };
    (dx, dgamma, dbeta)
}

impl CustomOp3 for BatchNormTrainOp {
    fn name(&self) -> &'static str {
        "norbvae-batch-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, c, s) = bn_dims(l1.shape())?;
        if l2.shape().dims() != [c] || l3.shape().dims() != [c] {
            bail!(
                "batch norm: gamma {:?} / beta {:?} do not match {c} channels",
                l2.shape(),
                l3.shape()
            );
        }
        if n * s == 0 {
            bail!("batch norm: empty batch");
        }
        let (x, gamma, beta) = (f32_data(s1, l1)?, f32_data(s2, l2)?, f32_data(s3, l3)?);
        let (y, saved) = profiled(
            || format!("bn fwd      c{c} s{s}"),
            || with_act!(self.act, |a| bn_forward(x, gamma, beta, n, c, s, self.eps, a)),
        );
        *self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("batch norm state poisoned".into()))? = saved;
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        gamma: &Tensor,
        beta: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, c, s) = bn_dims(x.shape())?;
        let saved = self
            .saved
            .lock()
            .map_err(|_| candle_core::Error::Msg("batch norm state poisoned".into()))?;
        let (dx, dg, db) = profiled(
            || format!("bn bwd      c{c} s{s}"),
            || {
                with_f32(x, |xs| {
                    with_f32(beta, |bs| {
                        with_f32(dy, |dys| {
                            with_f32(gamma, |gs| {
                                with_act!(self.act, |a| bn_backward(xs, dys, gs, bs, &saved, n, c, s, a))
                            })
                        })
                    })
                })
            },
        )????;
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dg, c, dev)?),
            Some(Tensor::from_vec(db, c, dev)?),
        ))
    }
}

/// Training-mode batch norm followed by `act`: returns (output, batch mean [c], biased batch
/// variance [c]); the statistics are detached (for running averages). CPU, f32.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: Activation,
) -> Result<(Tensor, Tensor, Tensor)> {
    let saved = Arc::new(Mutex::new(Saved::default()));
    let op = BatchNormTrainOp {
        eps,
        act,
        saved: saved.clone(),
    };
    let y = x
        .contiguous()?
        .apply_op3(&gamma.contiguous()?, &beta.contiguous()?, op)?;
    let st = saved
        .lock()
        .map_err(|_| candle_core::Error::Msg("batch norm state poisoned".into()))?;
    let mean = Tensor::from_slice(&st.mean, st.mean.len(), x.device())?;
    let var = Tensor::from_slice(&st.var, st.var.len(), x.device())?;
    Ok((y, mean, var))
}
