//! The weight average's update `avg <- decay * avg + (1 - decay) * w` as one in-place pass per
//! tensor (instead of three candle ops and two temporaries), chunked over the rayon pool for
//! large tensors. Same f32 operations in the same order as the candle-op form, so the results
//! are bit-identical to it (no fused multiply-adds are formed).
use super::util::f32_data;
use candle_core::{bail, CpuStorage, InplaceOp2, Layout, Result, Tensor};
use rayon::prelude::*;

/// Elements per parallel task (as Adam's kernel).
const CHUNK: usize = 1 << 14;

fn update_body(avg: &mut [f32], w: &[f32], keep: f32, take: f32) {
    for (a, &x) in avg.iter_mut().zip(w) {
        *a = *a * keep + x * take;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn update_avx2(avg: &mut [f32], w: &[f32], keep: f32, take: f32) {
    update_body(avg, w, keep, take)
}

fn update(avg: &mut [f32], w: &[f32], keep: f32, take: f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports the enabled feature; the body is safe code.
        return unsafe { update_avx2(avg, w, keep, take) };
    }
    update_body(avg, w, keep, take)
}

/// The update on plain slices.
pub fn ema_update_slices(avg: &mut [f32], w: &[f32], decay: f64) {
    assert_eq!(avg.len(), w.len(), "EMA: length mismatch");
    // The scalars as candle's `tensor * f64` casts them.
    let (keep, take) = (decay as f32, (1.0 - decay) as f32);
    if avg.len() >= 2 * CHUNK && rayon::current_num_threads() > 1 {
        avg.par_chunks_mut(CHUNK)
            .zip(w.par_chunks(CHUNK))
            .for_each(|(ac, wc)| update(ac, wc, keep, take));
    } else {
        update(avg, w, keep, take);
    }
}

struct EmaInplace {
    decay: f64,
}

impl InplaceOp2 for EmaInplace {
    fn name(&self) -> &'static str {
        "norbvae-ema"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let w = f32_data(s2, l2)?;
        let CpuStorage::F32(av) = s1 else {
            bail!("EMA: the average must be f32")
        };
        let Some((a, b)) = l1.contiguous_offsets() else {
            bail!("EMA: the average is not contiguous")
        };
        if b - a != w.len() {
            bail!("EMA: average and weights differ in size");
        }
        ema_update_slices(&mut av[a..b], w, self.decay);
        Ok(())
    }
}

/// `avg <- decay * avg + (1 - decay) * w` in place on f32 CPU tensors. `avg` is modified in its
/// storage: every clone of it sees the new values.
pub fn ema_update(avg: &Tensor, w: &Tensor, decay: f64) -> Result<()> {
    let w = w.contiguous()?;
    avg.inplace_op2(&w, &EmaInplace { decay })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::SeededRng;
    use candle_core::Device;

    #[test]
    fn matches_the_candle_op_form_bit_for_bit() {
        // Small (one pass) and large (chunked over the pool) tensors.
        for (n, seed) in [(37usize, 1u64), (3 * CHUNK + 5, 2)] {
            let mut rng = SeededRng::new(seed);
            let avg0 = Tensor::from_vec(rng.normal_vec(n), n, &Device::Cpu).unwrap();
            let w = Tensor::from_vec(rng.normal_vec(n), n, &Device::Cpu).unwrap();
            for decay in [0.9, 0.999, 0.9999] {
                let want = ((&avg0 * decay).unwrap() + (&w * (1.0 - decay)).unwrap()).unwrap();
                let avg = avg0.copy().unwrap();
                ema_update(&avg, &w, decay).unwrap();
                let got: Vec<f32> = avg.to_vec1().unwrap();
                let want: Vec<f32> = want.to_vec1().unwrap();
                assert!(
                    got.iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "n {n} decay {decay}"
                );
            }
        }
    }
}
