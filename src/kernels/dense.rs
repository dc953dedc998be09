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
use super::batchnorm::{with_act, ActFn, Activation, IdentityFn, LeakyFn, ReluFn, SiluFn};
use super::bn_rows::{self, FeatureParams};
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
    // SAFETY: rows r of dW, ours by the contract; g and x are slices (bounds-checked by Mat).
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
    let fill = |zp: SyncPtr, hp: SyncPtr| {
        for_ranges(&thread_ranges(o), |_, r| {
            let len = r.len();
            // SAFETY: rows r of z [o, n], this task's alone; `feature_major_product` writes all
            // of them before anything reads them.
            let zr = unsafe { zp.slice(r.start * n, len * n) };
            feature_major_product(zr, w, x, n, i, &r);
            // SAFETY: entries r of the three [o] statistics (zeros), this task's alone.
            let stats = unsafe {
                (
                    mp.slice(r.start, len),
                    vp.slice(r.start, len),
                    ip.slice(r.start, len),
                )
            };
            let fp = FeatureParams::of(p, o, &r);
            with_scratch(len * n, |hr| {
                bn_rows::forward(zr, hr, n, &fp, eps, stats, act);
                // SAFETY: columns r of the [n, o] output, written by this task alone.
                unsafe { transpose_raw(hr.as_ptr(), n, len, n, hp.at(r.start), o) };
            });
        });
    };
    let mut h = Vec::new();
    // SAFETY: the ranges cover 0..o; each task writes its rows r of z (all n columns) and its
    // columns r of h (all n rows) and reads only what it wrote.
    let z = unsafe { filled_vec(o * n, |zp| h = filled_vec(n * o, |hp| fill(zp, hp))) };
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
    let fill = |dwp: SyncPtr, dzp: SyncPtr| {
        for_ranges(&thread_ranges(o), |_, r| {
            let len = r.len();
            // SAFETY: rows r of dz [o, n], this task's alone, all written by the transpose below
            // before anything reads them.
            let g = unsafe { dzp.slice(r.start * n, len * n) };
            // SAFETY: dh is [n, o], so its columns r are in bounds; g holds len x n floats.
            unsafe { transpose_raw(dh.as_ptr().add(r.start), o, n, len, g.as_mut_ptr(), n) };
            // SAFETY: entries r of the three packed [o] gradients (zeros), this task's alone.
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
            bn_rows::backward(g, zr, n, &fp, mr, ir, act, dps);
            // SAFETY: rows r of dW [o, i], written by this task alone.
            unsafe { weight_grad_rows(dwp, g, x, n, i, &r) };
        });
    };
    let mut dz = Vec::new();
    // SAFETY: the ranges cover 0..o; each task writes all of its rows r of dz (the transpose)
    // and of dW (`weight_grad_rows` overwrites) before reading them.
    let dw = unsafe { filled_vec(o * i, |dwp| dz = filled_vec(o * n, |dzp| fill(dwp, dzp))) };
    let fill_dx = |dxp: SyncPtr| {
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
    };
    // SAFETY: the ranges cover 0..i and each task writes its columns c of all n rows of dx
    // (`matmul_raw` without accumulation overwrites).
    let dx = want_dx.then(|| unsafe { filled_vec(n * i, fill_dx) });
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
