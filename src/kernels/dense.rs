//! A dense block in training mode, `act(batch_norm(x W^T + b))` with batch statistics, as one
//! custom op with a hand-written backward pass: candle's autograd holds one node per block (no
//! separate linear, batch-norm and activation nodes, each with its own zero-filled gradient
//! buffer and add).
//!
//! Inside, the pre-activation is kept feature-major (`z^T = W x^T`, one contiguous row of batch
//! values per feature): the gemm crate runs that product faster than the batch-major one
//! (`gemm_probe`: 95 against 85 GFLOP/s at 512 x 512, batch 128), and batch norm then reads each
//! feature's batch as one row. Candle sees batch-major tensors; `transpose` converts.
//!
//! Threads split the output features: each one computes its rows of `z^T`, their batch
//! statistics and activations without waiting for the others (batch norm is per feature). The
//! backward pass has two phases: per output feature (batch-norm backward, bias and weight
//! gradients), then per input feature (the input gradient, which needs every output feature).
use super::batchnorm::{with_act, ActFn, Activation, IdentityFn, LeakyFn, ReluFn};
use super::gemm::{matmul_raw, split_ranges, Mat};
use super::transpose::transpose_raw;
use super::util::{f32_data, filled_vec, profiled, with_f32, with_scratch, SyncPtr};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Block boundaries at multiples of 16 features keep whole GEMM vectors (the f32 AVX2
/// micro-kernel is 16 rows tall; the AVX-512 ones are multiples of 16).
const ALIGN: usize = 16;

/// `0..len` split over the current rayon pool.
pub(crate) fn thread_ranges(len: usize) -> Vec<Range<usize>> {
    split_ranges(len, rayon::current_num_threads(), ALIGN)
}

/// Runs `f(k, range_k)` for every range, in parallel when there are several.
pub(crate) fn for_ranges(ranges: &[Range<usize>], f: impl Fn(usize, Range<usize>) + Sync) {
    match ranges {
        [] => {}
        [r] => f(0, r.clone()),
        _ => ranges.par_iter().enumerate().for_each(|(k, r)| f(k, r.clone())),
    }
}

/// Rows `r` of the feature-major product `z^T = W x^T` into `zt` ([len, n]), for x [n, i] and
/// W [o, i]: the order in which the gemm crate runs this product fastest (see the module comment).
pub(crate) fn feature_major_product(
    zt: &mut [f32],
    w: &[f32],
    x: &[f32],
    n: usize,
    i: usize,
    r: &Range<usize>,
) {
    let len = r.len();
    assert!(zt.len() >= len * n, "feature-major product: output too short");
    // SAFETY: zt holds len x n floats (checked above).
    unsafe {
        matmul_raw(
            zt.as_mut_ptr(),
            n,
            1,
            Mat::rows(&w[r.start * i..r.end * i], len, i),
            Mat::rows(x, n, i).t(),
            false,
        )
    };
}

/// Rows `r` of the weight gradient `dW = dz^T x` ([o, i] at `dw`), from `g`, the gradient of
/// those features feature-major ([len, n]), and x [n, i].
///
/// # Safety
/// `dw` must point to an [o, i] buffer whose rows `r` no one else accesses meanwhile.
pub(crate) unsafe fn weight_grad_rows(
    dw: SyncPtr,
    g: &[f32],
    x: &[f32],
    n: usize,
    i: usize,
    r: &Range<usize>,
) {
    unsafe {
        matmul_raw(
            dw.at(r.start * i),
            i,
            1,
            Mat::rows(g, r.len(), n),
            Mat::rows(x, n, i),
            false,
        )
    };
}

/// (batch n, inputs i, outputs o) of x [n, i], W [o, i] and the packed per-feature parameters
/// [3 * o] (bias, gamma, beta).
fn block_dims(x: &Shape, w: &Shape, p: &Shape) -> Result<(usize, usize, usize)> {
    let (n, i) = x.dims2()?;
    let (o, wi) = w.dims2()?;
    if wi != i {
        bail!("dense block: input has {i} features but the weight expects {wi}");
    }
    if p.dims() != [3 * o] {
        bail!(
            "dense block: packed bias/gamma/beta shape {p:?}, expected [{}]",
            3 * o
        );
    }
    if n == 0 {
        bail!("dense block: empty batch");
    }
    Ok((n, i, o))
}

/// What the forward pass keeps for the backward pass: the linear output z = x W^T + b,
/// feature-major ([o, n]: each feature's batch is one contiguous row), and per feature the batch
/// mean, biased variance and 1 / sqrt(var + eps).
#[derive(Default)]
struct Saved {
    z: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    invstd: Vec<f32>,
}

/// Calls `$plain(args)`, or its AVX2 + FMA twin `$avx2(args)` where the CPU has them (the same
/// arithmetic: no fused multiply-adds are formed, only wider vectors).
macro_rules! dispatch_simd {
    ($plain:ident, $avx2:ident($($arg:expr),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU supports the enabled features.
                unsafe { $avx2($($arg),*) }
            } else {
                $plain($($arg),*)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $plain($($arg),*)
        }
    }};
}

/// Per-feature parameters of one block, as slices over the same feature range.
struct FeatureParams<'a> {
    bias: &'a [f32],
    gamma: &'a [f32],
    beta: &'a [f32],
}

impl<'a> FeatureParams<'a> {
    /// Features `r` of the packed [bias, gamma, beta] vector of `o` features.
    fn of(p: &'a [f32], o: usize, r: &Range<usize>) -> Self {
        Self {
            bias: &p[r.clone()],
            gamma: &p[o + r.start..o + r.end],
            beta: &p[2 * o + r.start..2 * o + r.end],
        }
    }
}

/// Lanes of the row sums below: four AVX vectors, so consecutive adds do not wait on each other.
const LANES: usize = 32;

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

/// Adds `bias` to every element of `row` and returns their sum.
#[inline(always)]
fn add_and_sum(row: &mut [f32], bias: f32) -> f64 {
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
            *v += bias;
            *a += *v;
        }
    }
    chunks.into_remainder().iter_mut().fold(fold(&acc), |s, v| {
        *v += bias;
        s + *v as f64
    })
}

/// Sum of `f(x, y)` over two rows.
#[inline(always)]
fn pair_sum(xs: &[f32], ys: &[f32], f: impl Fn(f32, f32) -> f32) -> f64 {
    let mut acc = [0f32; LANES];
    let (cx, cy) = (xs.chunks_exact(LANES), ys.chunks_exact(LANES));
    let (rx, ry) = (cx.remainder(), cy.remainder());
    for (a, b) in cx.zip(cy) {
        for ((s, &x), &y) in acc.iter_mut().zip(a).zip(b) {
            *s += f(x, y);
        }
    }
    rx.iter()
        .zip(ry)
        .fold(fold(&acc), |s, (&x, &y)| s + f(x, y) as f64)
}

/// Batch norm + activation forward on feature-major rows (`z` [len, n], one feature a row): adds
/// the bias to z, takes each row's mean and biased variance (two passes), writes the activations
/// feature-major into `h` [len, n].
#[inline(always)]
fn bn_forward_rows<A: ActFn>(
    z: &mut [f32],
    h: &mut [f32],
    n: usize,
    fp: &FeatureParams,
    eps: f64,
    (mo, vo, io): (&mut [f32], &mut [f32], &mut [f32]),
    act: A,
) {
    for (j, (zr, hr)) in z.chunks_exact_mut(n).zip(h.chunks_exact_mut(n)).enumerate() {
        let mu = (add_and_sum(zr, fp.bias[j]) / n as f64) as f32;
        let v = pair_sum(zr, zr, |a, _| (a - mu) * (a - mu)) / n as f64;
        let is = (1.0 / (v + eps).sqrt()) as f32;
        (mo[j], vo[j], io[j]) = (mu, v as f32, is);
        let (a, c) = (fp.gamma[j] * is, fp.beta[j]);
        // (z - mean) * scale + beta: no cancellation when the variance is tiny.
        for (hv, &zv) in hr.iter_mut().zip(zr.iter()) {
            *hv = act.apply((zv - mu) * a + c);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bn_forward_rows_avx2<A: ActFn>(
    z: &mut [f32],
    h: &mut [f32],
    n: usize,
    fp: &FeatureParams,
    eps: f64,
    stats: (&mut [f32], &mut [f32], &mut [f32]),
    act: A,
) {
    bn_forward_rows(z, h, n, fp, eps, stats, act)
}

/// Batch norm + activation backward on feature-major rows: `g` [len, n] holds the gradient of
/// the block output on entry and the gradient of z on return; also writes the bias, gamma and
/// beta gradients of these features. The activation's derivative is taken from the output,
/// recomputed from z exactly as the forward pass computed it.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn bn_backward_rows<A: ActFn>(
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
    for (j, (gr, zr)) in g.chunks_exact_mut(n).zip(z.chunks_exact(n)).enumerate() {
        let (mu, is) = (mean[j], invstd[j]);
        let (a, c) = (fp.gamma[j] * is, fp.beta[j]);
        // Per feature: sums of dy' and of dy' * (z - mean), dy' = dh through the activation.
        let (mut s1, mut s2) = ([0f32; LANES], [0f32; LANES]);
        let mut gc = gr.chunks_exact_mut(LANES);
        let mut zc = zr.chunks_exact(LANES);
        for (gk, zk) in (&mut gc).zip(&mut zc) {
            for (((gv, &zv), a1), a2) in gk.iter_mut().zip(zk).zip(s1.iter_mut()).zip(s2.iter_mut()) {
                *gv *= act.grad_from_output(act.apply((zv - mu) * a + c));
                *a1 += *gv;
                *a2 += *gv * (zv - mu);
            }
        }
        let (mut sdy, mut sdyx) = (fold(&s1), fold(&s2));
        for (gv, &zv) in gc.into_remainder().iter_mut().zip(zc.remainder()) {
            *gv *= act.grad_from_output(act.apply((zv - mu) * a + c));
            sdy += *gv as f64;
            sdyx += (*gv * (zv - mu)) as f64;
        }
        let (gm, isd) = (fp.gamma[j] as f64, is as f64);
        dg[j] = (sdyx * isd) as f32;
        dbeta[j] = sdy as f32;
        // dz = k1 * dy' + k2 * (z - mean) + k3
        let k1 = (gm * isd) as f32;
        let k2 = (-gm * isd * isd * isd * sdyx / m) as f32;
        let k3 = (-gm * isd * sdy / m) as f32;
        let mut s3 = [0f32; LANES];
        let mut gc = gr.chunks_exact_mut(LANES);
        let mut zc = zr.chunks_exact(LANES);
        for (gk, zk) in (&mut gc).zip(&mut zc) {
            for ((gv, &zv), a3) in gk.iter_mut().zip(zk).zip(s3.iter_mut()) {
                *gv = k1 * *gv + k2 * (zv - mu) + k3;
                *a3 += *gv;
            }
        }
        let mut sdz = fold(&s3);
        for (gv, &zv) in gc.into_remainder().iter_mut().zip(zc.remainder()) {
            *gv = k1 * *gv + k2 * (zv - mu) + k3;
            sdz += *gv as f64;
        }
        db[j] = sdz as f32;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn bn_backward_rows_avx2<A: ActFn>(
    g: &mut [f32],
    z: &[f32],
    n: usize,
    fp: &FeatureParams,
    mean: &[f32],
    invstd: &[f32],
    act: A,
    grads: (&mut [f32], &mut [f32], &mut [f32]),
) {
    bn_backward_rows(g, z, n, fp, mean, invstd, act, grads)
}

struct DenseBnActOp {
    eps: f64,
    act: Activation,
    saved: Arc<Mutex<Saved>>,
}

/// Forward pass. Each thread takes a range of output features: its rows of the feature-major
/// z = W x^T, their batch norm, and the transpose of its activations into columns of the
/// batch-major output.
#[allow(clippy::too_many_arguments)]
fn block_forward<A: ActFn>(
    x: &[f32],
    w: &[f32],
    p: &[f32],
    n: usize,
    i: usize,
    o: usize,
    eps: f64,
    act: A,
) -> (Vec<f32>, Saved) {
    let mut mean = vec![0f32; o];
    let mut var = vec![0f32; o];
    let mut invstd = vec![0f32; o];
    let (mp, vp, ip) = (
        SyncPtr(mean.as_mut_ptr()),
        SyncPtr(var.as_mut_ptr()),
        SyncPtr(invstd.as_mut_ptr()),
    );
    let mut h = Vec::new();
    let z = filled_vec(o * n, |zp| {
        h = filled_vec(n * o, |hp| {
            for_ranges(&thread_ranges(o), |_, r| {
                let len = r.len();
                // SAFETY: this task alone writes rows r of z, columns r of h, entries r of the stats.
                let zr = unsafe { zp.slice(r.start * n, len * n) };
                feature_major_product(zr, w, x, n, i, &r);
                let stats = unsafe {
                    (
                        mp.slice(r.start, len),
                        vp.slice(r.start, len),
                        ip.slice(r.start, len),
                    )
                };
                let fp = FeatureParams::of(p, o, &r);
                with_scratch(len * n, |hr| {
                    dispatch_simd!(
                        bn_forward_rows,
                        bn_forward_rows_avx2(zr, hr, n, &fp, eps, stats, act)
                    );
                    // SAFETY: columns r of the [n, o] output, written by this task alone.
                    unsafe { transpose_raw(hr.as_ptr(), n, len, n, hp.at(r.start), o) };
                });
            });
        });
    });
    (h, Saved { z, mean, var, invstd })
}

/// Gradients (dx if wanted, dW, d[bias, gamma, beta]) given the gradient of the block output.
/// Phase one, per range of output features: the gradient of z, feature-major ([len, n]), then
/// those rows of dW = dz^T x. Phase two, per range of input features: dx = dz W.
#[allow(clippy::too_many_arguments)]
fn block_backward<A: ActFn>(
    x: &[f32],
    w: &[f32],
    p: &[f32],
    dh: &[f32],
    saved: &Saved,
    n: usize,
    i: usize,
    o: usize,
    want_dx: bool,
    act: A,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let (z, mean, invstd) = (&saved.z, &saved.mean, &saved.invstd);
    let mut dp = vec![0f32; 3 * o];
    let dpp = SyncPtr(dp.as_mut_ptr());
    let mut dz = Vec::new();
    let dw = filled_vec(o * i, |dwp| {
        dz = filled_vec(o * n, |dzp| {
            for_ranges(&thread_ranges(o), |_, r| {
                let len = r.len();
                // SAFETY (all raw accesses below): this task alone writes rows r of dz and dW and
                // entries r of the three packed gradients; dh is [n, o].
                let g = unsafe { dzp.slice(r.start * n, len * n) };
                unsafe { transpose_raw(dh.as_ptr().add(r.start), o, n, len, g.as_mut_ptr(), n) };
                let dps = unsafe {
                    (
                        dpp.slice(r.start, len),
                        dpp.slice(o + r.start, len),
                        dpp.slice(2 * o + r.start, len),
                    )
                };
                let fp = FeatureParams::of(p, o, &r);
                let zr = &z[r.start * n..r.end * n];
                let (mr, ir) = (&mean[r.clone()], &invstd[r.clone()]);
                dispatch_simd!(
                    bn_backward_rows,
                    bn_backward_rows_avx2(g, zr, n, &fp, mr, ir, act, dps)
                );
                unsafe { weight_grad_rows(dwp, g, x, n, i, &r) };
            });
        });
    });
    let dx = want_dx.then(|| {
        filled_vec(n * i, |dxp| {
            for_ranges(&thread_ranges(i), |_, c| {
                // dx[:, c] = dz^T W[:, c]
                let wv = Mat {
                    data: &w[c.start..],
                    rows: o,
                    cols: c.len(),
                    rs: i,
                    cs: 1,
                };
                // SAFETY: this task alone writes columns c of dx.
                unsafe { matmul_raw(dxp.at(c.start), i, 1, Mat::rows(&dz, o, n).t(), wv, false) };
            });
        })
    });
    (dx, dw, dp)
}
fn lock(saved: &Mutex<Saved>) -> Result<std::sync::MutexGuard<'_, Saved>> {
    saved
        .lock()
        .map_err(|_| candle_core::Error::Msg("dense block state poisoned".into()))
}

impl CustomOp3 for DenseBnActOp {
    fn name(&self) -> &'static str {
        "norbvae-dense-bn-act"
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
        let (n, i, o) = block_dims(l1.shape(), l2.shape(), l3.shape())?;
        let (x, w, p) = (f32_data(s1, l1)?, f32_data(s2, l2)?, f32_data(s3, l3)?);
        let (h, saved) = profiled(
            || format!("dense+bn fwd {i}->{o}"),
            || with_act!(self.act, |a| block_forward(x, w, p, n, i, o, self.eps, a)),
        );
        *lock(&self.saved)? = saved;
        Ok((CpuStorage::F32(h), Shape::from((n, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        p: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, i, o) = block_dims(x.shape(), w.shape(), p.shape())?;
        let want_dx = x.track_op();
        let saved = lock(&self.saved)?;
        let (dx, dw, dp) = profiled(
            || format!("dense+bn bwd {i}->{o}"),
            || {
                with_f32(x, |xs| {
                    with_f32(w, |ws| {
                        with_f32(p, |ps| {
                            with_f32(dy, |dhs| {
                                with_act!(self.act, |a| block_backward(
                                    xs, ws, ps, dhs, &saved, n, i, o, want_dx, a
                                ))
                            })
                        })
                    })
                })
            },
        )????;
        let dev = x.device();
        Ok((
            dx.map(|v| Tensor::from_vec(v, (n, i), dev)).transpose()?,
            Some(Tensor::from_vec(dw, (o, i), dev)?),
            Some(Tensor::from_vec(dp, 3 * o, dev)?),
        ))
    }
}

/// A dense layer followed by training-mode batch norm and `act`, fused:
/// `act(batch_norm_train(x W^T + b, gamma, beta))` for x [n, in], W [out, in] (PyTorch's Linear
/// layout), b, gamma, beta [out]. Returns (output [n, out], batch mean [out], biased batch
/// variance [out]); the statistics are detached (for running averages). CPU, f32.
pub fn dense_bn_act_train(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: Activation,
) -> Result<(Tensor, Tensor, Tensor)> {
    let saved = Arc::new(Mutex::new(Saved::default()));
    let op = DenseBnActOp {
        eps,
        act,
        saved: saved.clone(),
    };
    let p = Tensor::cat(&[b, gamma, beta], 0)?;
    let y = x.contiguous()?.apply_op3(&w.contiguous()?, &p, op)?;
    let st = lock(&saved)?;
    let mean = Tensor::from_slice(&st.mean, st.mean.len(), x.device())?;
    let var = Tensor::from_slice(&st.var, st.var.len(), x.device())?;
    Ok((y, mean, var))
}
