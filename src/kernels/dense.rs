//! A dense block in training mode, `act(batch_norm(x W^T + b))` with batch statistics, as one
//! custom op with a hand-written backward pass: candle's autograd holds one node per block (no
//! separate linear, batch-norm and activation nodes, each with its own zero-filled gradient
//! buffer and add).
//!
//! Threads split the output features: each one computes its columns of `x W^T + b`, their batch
//! statistics and activations without waiting for the others (batch norm is per feature). The
//! backward pass has two phases: per output feature (batch-norm backward, bias and weight
//! gradients), then per input feature (the input gradient, which needs every output feature).
use super::batchnorm::{with_act, ActFn, Activation, IdentityFn, LeakyFn, ReluFn};
use super::gemm::{matmul_raw, split_ranges, Mat};
use super::util::{f32_data, filled_vec, profiled, with_f32, SyncPtr};
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

/// What the forward pass keeps for the backward pass: the linear output z = x W^T + b [n, o]
/// and per feature the batch mean, biased variance and 1 / sqrt(var + eps).
#[derive(Default)]
struct Saved {
    z: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    invstd: Vec<f32>,
}

/// Columns `r` of row-major [n, o] matrices: one thread's share of a block's features.
#[derive(Clone)]
struct ColBlock {
    n: usize,
    o: usize,
    r: Range<usize>,
}

impl ColBlock {
    fn at(&self, row: usize) -> Range<usize> {
        row * self.o + self.r.start..row * self.o + self.r.end
    }
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

/// Batch norm + activation forward on one column block: adds the bias to z = x W^T, takes the
/// batch mean and biased variance per feature (f64 sums, two passes), writes h.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn bn_forward_cols<A: ActFn>(
    cols: ColBlock,
    zp: SyncPtr,
    hp: SyncPtr,
    p: &[f32],
    eps: f64,
    (mo, vo, io): (&mut [f32], &mut [f32], &mut [f32]),
    act: A,
) {
    let (n, o, r) = (cols.n, cols.o, cols.r.clone());
    let len = r.len();
    let (b, gamma, beta) = (
        &p[r.clone()],
        &p[o + r.start..o + r.end],
        &p[2 * o + r.start..2 * o + r.end],
    );
    // SAFETY (all slices of zp / hp below): the caller's task alone touches columns r.
    let mut acc = vec![0f64; len];
    for row in 0..n {
        let zr = unsafe { zp.slice(cols.at(row).start, len) };
        for ((zv, a), &bv) in zr.iter_mut().zip(acc.iter_mut()).zip(b) {
            *zv += bv;
            *a += *zv as f64;
        }
    }
    let mu: Vec<f32> = acc.iter().map(|a| (a / n as f64) as f32).collect();
    acc.fill(0.0);
    for row in 0..n {
        let zr = unsafe { zp.slice(cols.at(row).start, len) };
        for ((&zv, a), &m) in zr.iter().zip(acc.iter_mut()).zip(&mu) {
            let d = zv - m;
            *a += (d * d) as f64;
        }
    }
    let mut scale = vec![0f32; len];
    for j in 0..len {
        let v = acc[j] / n as f64;
        let is = (1.0 / (v + eps).sqrt()) as f32;
        mo[j] = mu[j];
        vo[j] = v as f32;
        io[j] = is;
        scale[j] = gamma[j] * is;
    }
    // (z - mean) * scale + beta: no cancellation when the variance is tiny.
    for row in 0..n {
        let zr = unsafe { zp.slice(cols.at(row).start, len) };
        let hr = unsafe { hp.slice(cols.at(row).start, len) };
        for ((((hv, &zv), &m), &a), &c) in hr.iter_mut().zip(zr.iter()).zip(&mu).zip(&scale).zip(beta) {
            *hv = act.apply((zv - m) * a + c);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn bn_forward_cols_avx2<A: ActFn>(
    cols: ColBlock,
    zp: SyncPtr,
    hp: SyncPtr,
    p: &[f32],
    eps: f64,
    stats: (&mut [f32], &mut [f32], &mut [f32]),
    act: A,
) {
    bn_forward_cols(cols, zp, hp, p, eps, stats, act)
}

/// Batch norm + activation backward on one column block: the gradient of z into `dz` ([n, len],
/// compact) and the bias, gamma and beta gradients of these features.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn bn_backward_cols<A: ActFn>(
    cols: ColBlock,
    z: &[f32],
    h: &[f32],
    dh: &[f32],
    gamma: &[f32],
    mean: &[f32],
    invstd: &[f32],
    act: A,
    dz: &mut [f32],
    (db, dg, dbeta): (&mut [f32], &mut [f32], &mut [f32]),
) {
    let (n, r) = (cols.n, cols.r.clone());
    let len = r.len();
    let m = n as f64;
    let mu = &mean[r.clone()];
    // Per feature: sum of dy' and of dy' * (z - mean), dy' = dh through the activation.
    let mut sdy = vec![0f64; len];
    let mut sdyx = vec![0f64; len];
    for row in 0..n {
        let c = cols.at(row);
        let (zr, hr, gr) = (&z[c.clone()], &h[c.clone()], &dh[c]);
        for (((((&zv, &hv), &gv), &m), a), b) in zr
            .iter()
            .zip(hr)
            .zip(gr)
            .zip(mu)
            .zip(sdy.iter_mut())
            .zip(sdyx.iter_mut())
        {
            let g = gv * act.grad_from_output(hv);
            *a += g as f64;
            *b += (g * (zv - m)) as f64;
        }
    }
    // dz = k1 * dy' + k2 * (z - mean) + k3
    let mut k1 = vec![0f32; len];
    let mut k2 = vec![0f32; len];
    let mut k3 = vec![0f32; len];
    for j in 0..len {
        let (g, is) = (gamma[r.start + j] as f64, invstd[r.start + j] as f64);
        dg[j] = (sdyx[j] * is) as f32;
        dbeta[j] = sdy[j] as f32;
        k1[j] = (g * is) as f32;
        k2[j] = (-g * is * is * is * sdyx[j] / m) as f32;
        k3[j] = (-g * is * sdy[j] / m) as f32;
    }
    let mut sdz = vec![0f64; len];
    for row in 0..n {
        let c = cols.at(row);
        let (zr, hr, gr) = (&z[c.clone()], &h[c.clone()], &dh[c]);
        let out = &mut dz[row * len..(row + 1) * len];
        for j in 0..len {
            let g = gr[j] * act.grad_from_output(hr[j]);
            let v = k1[j] * g + k2[j] * (zr[j] - mu[j]) + k3[j];
            out[j] = v;
            sdz[j] += v as f64;
        }
    }
    for j in 0..len {
        db[j] = sdz[j] as f32;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn bn_backward_cols_avx2<A: ActFn>(
    cols: ColBlock,
    z: &[f32],
    h: &[f32],
    dh: &[f32],
    gamma: &[f32],
    mean: &[f32],
    invstd: &[f32],
    act: A,
    dz: &mut [f32],
    grads: (&mut [f32], &mut [f32], &mut [f32]),
) {
    bn_backward_cols(cols, z, h, dh, gamma, mean, invstd, act, dz, grads)
}

struct DenseBnActOp {
    eps: f64,
    act: Activation,
    saved: Arc<Mutex<Saved>>,
}

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
    let z = filled_vec(n * o, |zp| {
        h = filled_vec(n * o, |hp| {
            for_ranges(&thread_ranges(o), |_, r| {
                let len = r.len();
                // SAFETY: this task alone writes columns r of z and h, and entries r of the stats.
                unsafe {
                    matmul_raw(
                        zp.at(r.start),
                        o,
                        1,
                        Mat::rows(x, n, i),
                        Mat::rows(&w[r.start * i..r.end * i], len, i).t(),
                        false,
                    )
                };
                // SAFETY: as above.
                let stats = unsafe {
                    (
                        mp.slice(r.start, len),
                        vp.slice(r.start, len),
                        ip.slice(r.start, len),
                    )
                };
                let cols = ColBlock { n, o, r };
                dispatch_simd!(
                    bn_forward_cols,
                    bn_forward_cols_avx2(cols, zp, hp, p, eps, stats, act)
                );
            });
        });
    });
    (h, Saved { z, mean, var, invstd })
}

/// Gradients (dx if wanted, dW, d[bias, gamma, beta]) given the block output `h` and its gradient.
#[allow(clippy::too_many_arguments)]
fn block_backward<A: ActFn>(
    x: &[f32],
    w: &[f32],
    p: &[f32],
    h: &[f32],
    dh: &[f32],
    saved: &Saved,
    n: usize,
    i: usize,
    o: usize,
    want_dx: bool,
    act: A,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let gamma = &p[o..2 * o];
    let (z, mean, invstd) = (&saved.z, &saved.mean, &saved.invstd);
    let ro = thread_ranges(o);
    // Gradient of z, one compact [n, len] block per range of output features.
    let mut dz_blocks: Vec<Vec<f32>> = ro.iter().map(|r| Vec::with_capacity(n * r.len())).collect();
    let dz_ptrs: Vec<SyncPtr> = dz_blocks.iter_mut().map(|v| SyncPtr(v.as_mut_ptr())).collect();
    let mut dp = vec![0f32; 3 * o];
    let dpp = SyncPtr(dp.as_mut_ptr());
    let dw = filled_vec(o * i, |dwp| {
        for_ranges(&ro, |k, r| {
            let len = r.len();
            let dzk = unsafe { dz_ptrs[k].slice(0, n * len) };
            // SAFETY: this task alone writes entries r of the three packed gradients.
            let dps = unsafe {
                (
                    dpp.slice(r.start, len),
                    dpp.slice(o + r.start, len),
                    dpp.slice(2 * o + r.start, len),
                )
            };
            let cols = ColBlock { n, o, r: r.clone() };
            dispatch_simd!(
                bn_backward_cols,
                bn_backward_cols_avx2(cols, z, h, dh, gamma, mean, invstd, act, dzk, dps)
            );
            // dW[r, :] = dz[:, r]^T x
            unsafe {
                matmul_raw(
                    dwp.at(r.start * i),
                    i,
                    1,
                    Mat::rows(dzk, n, len).t(),
                    Mat::rows(x, n, i),
                    false,
                )
            };
        });
    });
    for (v, r) in dz_blocks.iter_mut().zip(&ro) {
        // SAFETY: phase one wrote all n * len elements of every block.
        unsafe { v.set_len(n * r.len()) };
    }
    let dx = want_dx.then(|| {
        filled_vec(n * i, |dxp| {
            for_ranges(&thread_ranges(i), |_, c| {
                for (k, (r, dzk)) in ro.iter().zip(&dz_blocks).enumerate() {
                    // dx[:, c] (+)= dz[:, r] W[r, c]
                    let wv = Mat {
                        data: &w[r.start * i + c.start..],
                        rows: r.len(),
                        cols: c.len(),
                        rs: i,
                        cs: 1,
                    };
                    // SAFETY: this task alone writes columns c of dx; k = 0 writes them first.
                    unsafe { matmul_raw(dxp.at(c.start), i, 1, Mat::rows(dzk, n, r.len()), wv, k > 0) };
                }
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
        res: &Tensor,
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
                            with_f32(res, |hs| {
                                with_f32(dy, |dhs| {
                                    with_act!(self.act, |a| block_backward(
                                        xs, ws, ps, hs, dhs, &saved, n, i, o, want_dx, a
                                    ))
                                })
                            })
                        })
                    })
                })
            },
        )?????;
        let dev = x.device();
        Ok((
            dx.map(|v| Tensor::from_vec(v, (n, i), dev)).transpose()?,
            super::grads::defer(w, Tensor::from_vec(dw, (o, i), dev)?),
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
