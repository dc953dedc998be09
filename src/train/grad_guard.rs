//! Gradient-norm clipping and VDVAE's update skipping (Child 2021): an update whose gradient norm
//! is non-finite or more than `skip_threshold` times the running norm is skipped (and counted), so
//! one bad batch cannot throw the weights off; the others are scaled down to at most `clip`.
//! The running norm is an exponential average of the raw (pre-clip) norms of the applied updates:
//! "far above the running norm" compares raw with raw. Averaging the clipped norms instead made
//! the running norm `clip` whenever gradients usually exceed it, and with a clip far below the
//! typical norm every update after the warm-up was then skipped. Skipped updates stay out of it.
use crate::format::GradGuardState;
use candle_core::backprop::GradStore;
use candle_core::{Result, Var};

/// Accepted norms before skipping starts (the running norm needs a few to mean anything).
const SKIP_AFTER: u64 = 20;
const RUNNING_MOMENTUM: f64 = 0.98;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum GradDecision {
    /// Apply the update with the gradients multiplied by `scale` (1: unchanged).
    Apply { scale: f64 },
    /// Drop this update.
    Skip,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GradGuard {
    pub clip: Option<f64>,
    pub skip_threshold: Option<f64>,
    running_norm: Option<f64>,
    accepted: u64,
    /// Updates skipped so far.
    pub skipped: u64,
}

impl GradGuard {
    pub fn new(clip: Option<f64>, skip_threshold: Option<f64>) -> Self {
        Self {
            clip,
            skip_threshold,
            running_norm: None,
            accepted: 0,
            skipped: 0,
        }
    }

    /// A guard that continues from a saved memory (a resumed run).
    pub fn resumed(clip: Option<f64>, skip_threshold: Option<f64>, saved: &GradGuardState) -> Self {
        Self {
            clip,
            skip_threshold,
            running_norm: saved.running_norm,
            accepted: saved.accepted,
            skipped: saved.skipped,
        }
    }

    /// The memory to save in a checkpoint.
    pub fn state(&self) -> GradGuardState {
        GradGuardState {
            running_norm: self.running_norm,
            accepted: self.accepted,
            skipped: self.skipped,
        }
    }

    pub fn running_norm(&self) -> Option<f64> {
        self.running_norm
    }

    /// What to do with an update whose global gradient norm is `norm`.
    pub fn decide(&mut self, norm: f64) -> GradDecision {
        if !norm.is_finite() {
            self.skipped += 1;
            return GradDecision::Skip;
        }
        if let (Some(t), Some(run)) = (self.skip_threshold, self.running_norm) {
            if self.accepted >= SKIP_AFTER && norm > t * run {
                self.skipped += 1;
                return GradDecision::Skip;
            }
        }
        let scale = match self.clip {
            Some(c) if norm > c => c / norm,
            _ => 1.0,
        };
        self.running_norm = Some(match self.running_norm {
            None => norm,
            Some(r) => RUNNING_MOMENTUM * r + (1.0 - RUNNING_MOMENTUM) * norm,
        });
        self.accepted += 1;
        GradDecision::Apply { scale }
    }
}

/// The global L2 norm of the gradients of `vars` (missing gradients count as zero).
pub fn global_norm(grads: &GradStore, vars: &[Var]) -> Result<f64> {
    let mut sq = 0.0f64;
    for v in vars {
        if let Some(g) = grads.get(v) {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
    }
    Ok(sq.sqrt())
}

/// Multiply every gradient of `vars` in `grads` by `scale` (clipping).
pub fn scale_grads(grads: &mut GradStore, vars: &[Var], scale: f64) -> Result<()> {
    for v in vars {
        if let Some(g) = grads.remove(v) {
            grads.insert(v, (g * scale)?);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::SeededRng;
    use candle_core::{Device, Tensor};

    /// Gradient descent on a quadratic 0.5 |w - target|^2 with noisy gradients and one huge
    /// spike: the spike is skipped and counted, the others applied, and the weights converge.
    #[test]
    fn a_spike_gradient_is_skipped_and_counted_on_a_toy_problem() {
        let dev = Device::Cpu;
        let target = Tensor::new(&[1.0f32, -2.0, 0.5], &dev).unwrap();
        let w = Var::from_tensor(&Tensor::zeros(3, candle_core::DType::F32, &dev).unwrap()).unwrap();
        let mut guard = GradGuard::new(Some(10.0), Some(5.0));
        let mut rng = SeededRng::new(3);
        let mut applied = 0;
        for step in 0..200 {
            let loss = ((w.as_tensor() - &target)
                .unwrap()
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                * 0.5)
                .unwrap();
            let noise = Tensor::from_vec(rng.normal_vec(3), 3, &dev).unwrap();
            // The spike: this batch's loss is scaled by 1e4.
            let loss = if step == 100 { (loss * 1e4).unwrap() } else { loss };
            let loss = (loss
                + (w.as_tensor() * (&noise * 0.01).unwrap())
                    .unwrap()
                    .sum_all()
                    .unwrap())
            .unwrap();
            let grads = loss.backward().unwrap();
            let norm = global_norm(&grads, std::slice::from_ref(&w)).unwrap();
            match guard.decide(norm) {
                GradDecision::Skip => assert_eq!(step, 100, "skipped step {step} with norm {norm}"),
                GradDecision::Apply { scale } => {
                    applied += 1;
                    let g = grads.get(&w).unwrap();
                    w.set(&(w.as_tensor() - (g * (0.1 * scale)).unwrap()).unwrap())
                        .unwrap();
                }
            }
        }
        assert_eq!(guard.skipped, 1);
        assert_eq!(applied, 199);
        let err: f32 = (w.as_tensor() - &target)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        assert!(err < 0.05, "did not converge: {err}");
        // Non-finite norms are always skipped; clipping scales large ones down.
        assert_eq!(guard.decide(f64::NAN), GradDecision::Skip);
        assert_eq!(guard.skipped, 2);
        let mut clip_only = GradGuard::new(Some(2.0), None);
        assert_eq!(clip_only.decide(8.0), GradDecision::Apply { scale: 0.25 });
        assert_eq!(clip_only.decide(1.0), GradDecision::Apply { scale: 1.0 });
        assert_eq!(clip_only.decide(1e9), GradDecision::Apply { scale: 2e-9 });
        assert_eq!(clip_only.skipped, 0);
    }

    /// A clip far below the typical norm clips every update but skips none of the ordinary
    /// ones: the running norm follows the raw norms (about 10 here), not the clip. A spike far
    /// above them is still skipped and stays out of the average.
    #[test]
    fn a_clip_below_the_typical_norm_clips_but_does_not_skip() {
        let mut guard = GradGuard::new(Some(0.1), Some(3.0));
        let mut rng = SeededRng::new(4);
        let norms: Vec<f64> = rng
            .uniform_vec(200)
            .iter()
            .map(|u| 8.0 + 4.0 * *u as f64)
            .collect();
        for (i, &n) in norms.iter().enumerate() {
            match guard.decide(n) {
                GradDecision::Apply { scale } => assert!((scale - 0.1 / n).abs() < 1e-12),
                GradDecision::Skip => panic!("update {i} with norm {n} skipped"),
            }
        }
        assert_eq!(guard.skipped, 0);
        let run = guard.running_norm().unwrap();
        assert!((8.0..12.0).contains(&run), "running norm {run}");
        assert_eq!(guard.decide(100.0), GradDecision::Skip);
        assert_eq!(guard.running_norm(), Some(run));
        assert_eq!(guard.skipped, 1);
        assert_eq!(guard.decide(10.0), GradDecision::Apply { scale: 0.01 });
    }
}
