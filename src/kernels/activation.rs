//! Activations outside batch norm, as candle custom ops: `act(x)` alone, and the residual cell's
//! tail `act(x + h)` as one pass forward and one backward (instead of candle's add, its
//! activation, and for SiLU the half-dozen element-wise ops of its backward pass).
use super::batchnorm::{with_act, ActFn, Activation, IdentityFn, LeakyFn, ReluFn, SiluFn};
use super::util::{f32_data, filled_vec, profiled, simd, with_f32, SyncPtr};
use candle_core::{bail, CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel task: a few microseconds of work each.
const CHUNK: usize = 1 << 13;

/// A `len`-float output filled by `f(start, out)` for each chunk `out` = [start, start + n),
/// over the current rayon pool.
fn fill_chunks(len: usize, f: impl Fn(usize, &mut [f32]) + Sync) -> Vec<f32> {
    let fill = |p: SyncPtr| {
        (0..len.div_ceil(CHUNK)).into_par_iter().for_each(|t| {
            let start = t * CHUNK;
            let n = CHUNK.min(len - start);
            // SAFETY: chunk t is [start, start + n) of the `len` floats, in bounds and this
            // task's alone; `f` writes every element (each body below zips over all of `out`)
            // and reads none.
            let out = unsafe { p.slice(start, n) };
            simd(|| f(start, out));
        })
    };
    // SAFETY: the chunks cover 0..len, each element written once and none read.
    unsafe { filled_vec(len, fill) }
}

fn apply_all<A: ActFn>(x: &[f32], act: A) -> Vec<f32> {
    fill_chunks(x.len(), |at, out| {
        let xs = &x[at..at + out.len()];
        for (o, &v) in out.iter_mut().zip(xs) {
            *o = act.apply(v);
        }
    })
}

fn apply_sum<A: ActFn>(x: &[f32], h: &[f32], act: A) -> Vec<f32> {
    fill_chunks(x.len(), |at, out| {
        let r = at..at + out.len();
        for ((o, &v), &w) in out.iter_mut().zip(&x[r.clone()]).zip(&h[r]) {
            *o = act.apply(v + w);
        }
    })
}

/// dy * act'(pre) with pre = x (+ h).
fn through<A: ActFn>(x: &[f32], h: Option<&[f32]>, dy: &[f32], act: A) -> Vec<f32> {
    match h {
        Some(h) => fill_chunks(x.len(), |at, out| {
            let r = at..at + out.len();
            for (((o, &v), &w), &g) in out.iter_mut().zip(&x[r.clone()]).zip(&h[r.clone()]).zip(&dy[r]) {
                *o = g * act.grad(v + w);
            }
        }),
        None => fill_chunks(x.len(), |at, out| {
            let r = at..at + out.len();
            for ((o, &v), &g) in out.iter_mut().zip(&x[r.clone()]).zip(&dy[r]) {
                *o = g * act.grad(v);
            }
        }),
    }
}

struct ActOp {
    act: Activation,
}

impl CustomOp1 for ActOp {
    fn name(&self) -> &'static str {
        "norbvae-activation"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_data(s, l)?;
        let y = profiled(
            || format!("act fwd     {:?}", self.act),
            || with_act!(self.act, |a| apply_all(x, a)),
        );
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> Result<Option<Tensor>> {
        let dx = profiled(
            || format!("act bwd     {:?}", self.act),
            || {
                with_f32(x, |xs| {
                    with_f32(dy, |g| with_act!(self.act, |a| through(xs, None, g, a)))
                })
            },
        )??;
        Ok(Some(Tensor::from_vec(dx, x.shape(), x.device())?))
    }
}

struct AddActOp {
    act: Activation,
}

impl CustomOp2 for AddActOp {
    fn name(&self) -> &'static str {
        "norbvae-add-activation"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        if l1.shape() != l2.shape() {
            bail!(
                "add + activation: shapes {:?} and {:?} differ",
                l1.shape(),
                l2.shape()
            );
        }
        let (x, h) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        let y = profiled(
            || format!("add+act fwd {:?}", self.act),
            || with_act!(self.act, |a| apply_sum(x, h, a)),
        );
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        h: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = profiled(
            || format!("add+act bwd {:?}", self.act),
            || {
                with_f32(x, |xs| {
                    with_f32(h, |hs| {
                        with_f32(dy, |g| with_act!(self.act, |a| through(xs, Some(hs), g, a)))
                    })
                })
            },
        )???;
        let d = Tensor::from_vec(d, x.shape(), x.device())?;
        Ok((Some(d.clone()), Some(d)))
    }
}

/// `act(x)` element-wise, with its backward pass. CPU, f32.
pub fn activation(x: &Tensor, act: Activation) -> Result<Tensor> {
    x.contiguous()?.apply_op1(ActOp { act })
}

/// `act(x + h)` element-wise (a residual cell's output), with its backward pass to both inputs.
/// CPU, f32, same shapes.
pub fn add_activation(x: &Tensor, h: &Tensor, act: Activation) -> Result<Tensor> {
    if x.shape() != h.shape() {
        bail!(
            "add + activation: shapes {:?} and {:?} differ",
            x.shape(),
            h.shape()
        );
    }
    x.contiguous()?.apply_op2(&h.contiguous()?, AddActOp { act })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::SeededRng;
    use candle_core::{Device, Var};

    /// candle's own ops for the same function.
    fn reference(x: &Tensor, act: Activation) -> Tensor {
        match act {
            Activation::Identity => x.clone(),
            Activation::Relu => x.relu().unwrap(),
            Activation::LeakyRelu(s) => x.maximum(&(x * s as f64).unwrap()).unwrap(),
            Activation::Silu => x.silu().unwrap(),
        }
    }

    fn assert_close(what: &str, a: &Tensor, b: &Tensor) {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(&b).enumerate() {
            assert!(
                (x - y).abs() <= 1e-6 * y.abs().max(1.0),
                "{what}: element {i}: {x} vs {y}"
            );
        }
    }

    #[test]
    fn activations_and_their_sum_form_match_candle_values_and_gradients() {
        // Odd sizes (one partial chunk, several chunks), values over the whole useful range
        // and beyond SiLU's exp clamps (no exact zeros: candle's ReLU takes slope 1 there,
        // PyTorch's and ours 0).
        let dev = Device::Cpu;
        for (i, shape) in [vec![3usize, 5, 7], vec![2, 3, 37, 41]].into_iter().enumerate() {
            let n: usize = shape.iter().product();
            let mut rng = SeededRng::new(40 + i as u64);
            let scaled =
                |r: &mut SeededRng, s: f32| r.normal_vec(n).into_iter().map(|v| v * s).collect::<Vec<_>>();
            let mut xv = scaled(&mut rng, 4.0);
            xv[0] = 120.0;
            xv[1] = -120.0;
            let x = Var::from_vec(xv, shape.as_slice(), &dev).unwrap();
            let h = Var::from_vec(scaled(&mut rng, 2.0), shape.as_slice(), &dev).unwrap();
            let up = Tensor::from_vec(scaled(&mut rng, 1.0), shape.as_slice(), &dev).unwrap();
            for act in [
                Activation::Identity,
                Activation::Relu,
                Activation::LeakyRelu(0.2),
                Activation::Silu,
            ] {
                let what = format!("{shape:?} {act:?}");
                let ours = activation(x.as_tensor(), act).unwrap();
                let theirs = reference(x.as_tensor(), act);
                assert_close(&format!("{what} act values"), &ours, &theirs);
                let g1 = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
                assert_close(
                    &format!("{what} act d/dx"),
                    g1.get(&x).unwrap(),
                    g2.get(&x).unwrap(),
                );

                let ours = add_activation(x.as_tensor(), h.as_tensor(), act).unwrap();
                let theirs = reference(&(x.as_tensor() + h.as_tensor()).unwrap(), act);
                assert_close(&format!("{what} add+act values"), &ours, &theirs);
                let g1 = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
                let g2 = (theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
                for (name, v) in [("x", &x), ("h", &h)] {
                    assert_close(
                        &format!("{what} add+act d/d{name}"),
                        g1.get(v).unwrap(),
                        g2.get(v).unwrap(),
                    );
                }
            }
        }
        assert!(add_activation(
            &Tensor::zeros((2, 3), candle_core::DType::F32, &dev).unwrap(),
            &Tensor::zeros((3, 2), candle_core::DType::F32, &dev).unwrap(),
            Activation::Relu
        )
        .is_err());
    }
}
