//! The learning rate over training: linear warm-up from lr / warmup to lr over the first
//! `train.lr_warmup_steps` steps, then constant or a cosine decay to `min_fraction * lr` at the last
//! step (Loshchilov & Hutter 2017, as NVAE and VDVAE train). Steps count optimizer updates from 0.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LrScheduleKind {
    /// The base rate after the warm-up (today's behaviour with no warm-up).
    #[default]
    Constant,
    /// Half a cosine from the base rate down to `min_fraction` of it over the remaining steps.
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub base_lr: f64,
    pub warmup_steps: usize,
    pub kind: LrScheduleKind,
    /// Steps of the whole run (warm-up included); the cosine reaches its floor at the last one.
    pub total_steps: usize,
    pub min_fraction: f64,
}

impl LrSchedule {
    /// Learning rate for the update with 0-based index `step`.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base_lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match self.kind {
            LrScheduleKind::Constant => self.base_lr,
            LrScheduleKind::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps + 1);
                let p = if span == 0 {
                    1.0
                } else {
                    ((step - self.warmup_steps) as f64 / span as f64).min(1.0)
                };
                let floor = self.min_fraction * self.base_lr;
                floor + (self.base_lr - floor) * 0.5 * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_and_cosine_values_at_the_boundaries() {
        let s = LrSchedule {
            base_lr: 1e-3,
            warmup_steps: 10,
            kind: LrScheduleKind::Cosine,
            total_steps: 110,
            min_fraction: 0.1,
        };
        assert!((s.lr(0) - 1e-4).abs() < 1e-15);
        assert!((s.lr(4) - 5e-4).abs() < 1e-15);
        // Last warm-up step and first decay step both at the base rate.
        assert!((s.lr(9) - 1e-3).abs() < 1e-15);
        assert!((s.lr(10) - 1e-3).abs() < 1e-15);
        // Half way through the decay: the mean of base and floor.
        let mid = 10 + 99 / 2;
        let p = (mid - 10) as f64 / 99.0;
        let want = 1e-4 + 9e-4 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos());
        assert!((s.lr(mid) - want).abs() < 1e-15);
        assert!((s.lr(59) - 5.5e-4).abs() < 2e-5);
        // The last step and anything after it sit on the floor.
        assert!((s.lr(109) - 1e-4).abs() < 1e-15);
        assert!((s.lr(500) - 1e-4).abs() < 1e-15);
        // Monotone after the warm-up.
        for t in 10..109 {
            assert!(s.lr(t + 1) <= s.lr(t));
        }
        let c = LrSchedule {
            kind: LrScheduleKind::Constant,
            warmup_steps: 0,
            ..s
        };
        assert_eq!(c.lr(0), 1e-3);
        assert_eq!(c.lr(10_000), 1e-3);
    }
}
