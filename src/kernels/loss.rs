//! Fused, numerically stable binary cross-entropy with logits, summed over all elements:
//! sum(max(l, 0) - l * x + ln(1 + exp(-|l|))), with gradient sigmoid(l) - x. One pass forward,
//! one pass backward, multi-threaded, instead of six single-threaded candle ops each way.
use super::util::{f32_data, filled_vec, with_f32, SyncPtr};
use candle_core::{bail, CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

const CHUNK: usize = 1 << 14;

struct BceWithLogitsSum;

impl CustomOp2 for BceWithLogitsSum {
    fn name(&self) -> &'static str {
        "norbvae-bce-with-logits-sum"
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
                "bce_with_logits: logits {:?} and targets {:?} differ",
                l1.shape(),
                l2.shape()
            );
        }
        let (l, x) = (f32_data(s1, l1)?, f32_data(s2, l2)?);
        // Chunk sums are added in chunk order (not in rayon's reduction tree, whose shape
        // follows work stealing), so the loss is the same in every run.
        let chunk_sums: Vec<f64> = l
            .par_chunks(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .map(|(lc, xc)| {
                lc.iter()
                    .zip(xc)
                    .map(|(&l, &x)| (l.max(0.0) - l * x + (-l.abs()).exp().ln_1p()) as f64)
                    .sum::<f64>()
            })
            .collect();
        let total: f64 = chunk_sums.iter().sum();
        Ok((CpuStorage::F32(vec![total as f32]), Shape::from(())))
    }

    fn bwd(
        &self,
        l: &Tensor,
        x: &Tensor,
        _res: &Tensor,
        g: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = g.to_vec0::<f32>()?;
        let dl = with_f32(l, |ls| {
            with_f32(x, |xs| {
                let fill = |op: SyncPtr| {
                    // The forward pass checked the shapes; the writes below depend on it.
                    assert_eq!(xs.len(), ls.len(), "bce_with_logits: logits and targets differ");
                    // SAFETY: the whole buffer, this closure's alone; each element is written, not read.
                    let out = unsafe { op.slice(0, ls.len()) };
                    out.par_chunks_mut(CHUNK)
                        .zip(ls.par_chunks(CHUNK))
                        .zip(xs.par_chunks(CHUNK))
                        .for_each(|((o, lc), xc)| {
                            for i in 0..o.len() {
                                o[i] = scale * (1.0 / (1.0 + (-lc[i]).exp()) - xc[i]);
                            }
                        });
                };
                // SAFETY: `fill` writes every element: the chunks of `out` cover it, and logits
                // and targets are as long as `out` (asserted), so the zip leaves no chunk out.
                unsafe { filled_vec(ls.len(), fill) }
            })
        })??;
        // The targets are data in this project; their gradient (-l) is not needed.
        Ok((Some(Tensor::from_vec(dl, l.shape(), l.device())?), None))
    }
}

/// Summed binary cross-entropy between `logits` and targets `x` in [0, 1] (a scalar tensor),
/// differentiable in the logits. CPU, f32.
pub fn bce_with_logits_sum(logits: &Tensor, x: &Tensor) -> Result<Tensor> {
    logits.contiguous()?.apply_op2(&x.contiguous()?, BceWithLogitsSum)
}
