//! Dense layer y = x W^T + b (PyTorch's Linear, W [out, in]) as one custom op with its backward:
//! one GEMM each for y, dx and dW and a column sum for db, instead of candle's matmul, transpose
//! and broadcast-add nodes (each of which costs a zero-filled gradient buffer and an add in
//! candle's backward pass).
use super::gemm::{matmul, Mat};
use super::util::{f32_data, profiled, with_f32};
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
            || {
                let mut y = Vec::with_capacity(n * o);
                for _ in 0..n {
                    y.extend_from_slice(b);
                }
                matmul(
                    &mut y,
                    o,
                    Mat::rows(x, n, i),
                    Mat::rows(w, o, i).t(),
                    true,
                    rayon::current_num_threads(),
                );
                y
            },
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
        let threads = rayon::current_num_threads();
        let (dx, dw, db) = profiled(
            || format!("linear bwd  {i}->{o}"),
            || {
                with_f32(x, |xs| {
                    with_f32(w, |ws| {
                        with_f32(dy, |dys| {
                            let dx = want_dx.then(|| {
                                let mut dx = vec![0f32; n * i];
                                matmul(
                                    &mut dx,
                                    i,
                                    Mat::rows(dys, n, o),
                                    Mat::rows(ws, o, i),
                                    false,
                                    threads,
                                );
                                dx
                            });
                            let mut dw = vec![0f32; o * i];
                            matmul(
                                &mut dw,
                                i,
                                Mat::rows(dys, n, o).t(),
                                Mat::rows(xs, n, i),
                                false,
                                threads,
                            );
                            let mut db = vec![0f64; o];
                            for row in dys.chunks_exact(o) {
                                db.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64);
                            }
                            (dx, dw, db.into_iter().map(|v| v as f32).collect::<Vec<f32>>())
                        })
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
