//! Dense layer y = x W^T + b (PyTorch's Linear, W [out, in]) as one custom op with its backward:
//! one GEMM each for y, dx and dW and a column sum for db, instead of candle's matmul, transpose
//! and broadcast-add nodes (each of which costs a zero-filled gradient buffer and an add in
//! candle's backward pass). Threads split the output columns of each product (see `dense`).
use super::dense::{feature_major_product, for_ranges, thread_ranges, weight_grad_rows};
use super::gemm::{matmul_raw, Mat};
use super::transpose::transpose_raw;
use super::util::{f32_data, filled_vec, profiled, sum, with_f32, with_scratch, SyncPtr};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

fn dims(x: &Shape, w: &Shape, b: &Shape) -> Result<(usize, usize, usize)> {
    let (n, i) = x.dims2()?;
    let (o, wi) = w.dims2()?;
    if wi != i {
        bail!("linear: input has {i} features but the weight expects {wi}");
    }
    if b.dims() != [o] {
        bail!("linear: bias shape {b:?}, expected [{o}]");
    }
    Ok((n, i, o))
}

struct LinearOp;

/// y = x W^T + b, [n, o].
fn linear_forward(x: &[f32], w: &[f32], b: &[f32], n: usize, i: usize, o: usize) -> Vec<f32> {
    let fill = |yp: SyncPtr| {
        for_ranges(&thread_ranges(o), |_, r| {
            let len = r.len();
            // y^T = W x^T feature-major in scratch, plus the bias, then transposed into this
            // task's columns of y.
            with_scratch(len * n, |yt| {
                feature_major_product(yt, w, x, n, i, &r);
                for (row, &bv) in yt.chunks_exact_mut(n).zip(&b[r.clone()]) {
                    row.iter_mut().for_each(|v| *v += bv);
                }
                // SAFETY: columns r of the [n, o] output, written by this task alone.
                unsafe { transpose_raw(yt.as_ptr(), n, len, n, yp.at(r.start), o) };
            });
        })
    };
    // SAFETY: the ranges cover 0..o and each task writes its columns r of all n rows (the
    // transpose of its [len, n] block), reading none of the output.
    unsafe { filled_vec(n * o, fill) }
}

/// (dx if wanted, dW, db) for y = x W^T + b: all three products split over the pool at once
/// (dW and db by output feature, dx by input feature; they do not depend on each other).
#[allow(clippy::too_many_arguments)]
fn linear_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    n: usize,
    i: usize,
    o: usize,
    want_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let ro = thread_ranges(o);
    let ri = if want_dx { thread_ranges(i) } else { Vec::new() };
    let tasks: Vec<(bool, std::ops::Range<usize>)> = ro
        .iter()
        .map(|r| (true, r.clone()))
        .chain(ri.iter().map(|r| (false, r.clone())))
        .collect();
    let task_ranges: Vec<_> = (0..tasks.len()).map(|t| t..t + 1).collect();
    let mut db = vec![0f32; o];
    let dbp = SyncPtr(db.as_mut_ptr());
    let mut dx_buf: Vec<f32> = Vec::with_capacity(if want_dx { n * i } else { 0 });
    let dxp = SyncPtr(dx_buf.as_mut_ptr());
    let fill_dw = |dwp: SyncPtr| {
        for_ranges(&task_ranges, |t, _| {
            let (is_dw, r) = tasks[t].clone();
            let len = r.len();
            if is_dw {
                // dW[r, :] = dy[:, r]^T x, db[r] = column sums of dy.
                // dy[:, r] feature-major, so that dW[r, :] = dy[:, r]^T x reads both operands
                // in the GEMM's preferred order; its rows' sums are the bias gradient.
                with_scratch(len * n, |dyt| {
                    // SAFETY: dy is [n, o] and dyt holds len x n floats.
                    unsafe { transpose_raw(dy.as_ptr().add(r.start), o, n, len, dyt.as_mut_ptr(), n) };
                    // SAFETY: this task alone writes rows r of dW and entries r of db.
                    unsafe { weight_grad_rows(dwp, dyt, x, n, i, &r) };
                    // SAFETY: as above; db is initialised (zeros).
                    let dbr = unsafe { dbp.slice(r.start, len) };
                    for (d, row) in dbr.iter_mut().zip(dyt.chunks_exact(n)) {
                        *d = sum(row) as f32;
                    }
                });
            } else {
                // dx[:, r] = dy W[:, r]
                let wv = Mat {
                    data: &w[r.start..],
                    rows: o,
                    cols: len,
                    rs: i,
                    cs: 1,
                };
                // SAFETY: this task alone writes columns r of dx.
                unsafe { matmul_raw(dxp.at(r.start), i, 1, Mat::rows(dy, n, o), wv, false) };
            }
        });
    };
    // SAFETY: the dW tasks' ranges cover 0..o and each writes all i columns of its rows r
    // (`weight_grad_rows` overwrites), without reading dW.
    let dw = unsafe { filled_vec(o * i, fill_dw) };
    let dx = want_dx.then(|| {
        // SAFETY: the capacity is n * i, and the dx tasks' ranges cover 0..i, each writing its
        // columns of all n rows (`matmul_raw` without accumulation overwrites).
        unsafe { dx_buf.set_len(n * i) };
        dx_buf
    });
    (dx, dw, db)
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "norbvae-linear"
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
        let (n, i, o) = dims(l1.shape(), l2.shape(), l3.shape())?;
        let (x, w, b) = (f32_data(s1, l1)?, f32_data(s2, l2)?, f32_data(s3, l3)?);
        let y = profiled(
            || format!("linear fwd  {i}->{o}"),
            || linear_forward(x, w, b, n, i, o),
        );
        Ok((CpuStorage::F32(y), Shape::from((n, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, i, o) = dims(x.shape(), w.shape(), b.shape())?;
        let want_dx = x.track_op();
        let (dx, dw, db) = profiled(
            || format!("linear bwd  {i}->{o}"),
            || {
                with_f32(x, |xs| {
                    with_f32(w, |ws| {
                        with_f32(dy, |dys| linear_backward(xs, ws, dys, n, i, o, want_dx))
                    })
                })
            },
        )???;
        let dev = x.device();
        let dx = dx.map(|v| Tensor::from_vec(v, (n, i), dev)).transpose()?;
        Ok((
            dx,
            Some(Tensor::from_vec(dw, (o, i), dev)?),
            Some(Tensor::from_vec(db, o, dev)?),
        ))
    }
}

/// y = x W^T + b for x [n, in], W [out, in], b [out], differentiable through candle's autograd.
/// CPU, f32.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, LinearOp)
}
