//! Early stopping on the validation loss: stop after `patience` epochs without an improvement of
//! at least `min_delta` over the best value so far. Epochs inside the KL warm-up never count
//! against patience (the objective is still changing under them).
//!
//! The state it keeps is saved in every checkpoint, so its type lives with the checkpoint's
//! ([`crate::format::EarlyStopping`]); the rule is here.
pub use crate::format::EarlyStopping;

/// What one epoch's validation loss means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// This epoch is the new best (save the best checkpoint).
    pub improved: bool,
    /// Patience ran out: stop.
    pub stop: bool,
}

impl EarlyStopping {
    pub fn observe(
        &mut self,
        epoch: usize,
        val: f64,
        patience: usize,
        min_delta: f64,
        in_warmup: bool,
    ) -> Verdict {
        let improved = match self.best_val {
            None => true,
            Some(b) => val < b - min_delta,
        };
        if improved {
            self.best_val = Some(val);
            self.best_epoch = Some(epoch);
            self.epochs_since_improvement = 0;
        } else if !in_warmup {
            self.epochs_since_improvement += 1;
        }
        Verdict {
            improved,
            stop: self.epochs_since_improvement >= patience,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(curve: &[f64], patience: usize, min_delta: f64, warmup: usize) -> (Option<usize>, Option<usize>) {
        let mut es = EarlyStopping::default();
        for (i, &v) in curve.iter().enumerate() {
            let epoch = i + 1;
            if es.observe(epoch, v, patience, min_delta, epoch < warmup).stop {
                return (Some(epoch), es.best_epoch);
            }
        }
        (None, es.best_epoch)
    }

    #[test]
    fn early_stopping_triggers_on_a_crafted_validation_curve() {
        let curve = [10.0, 9.0, 8.5, 8.6, 8.55, 8.7, 8.0];
        // Best at epoch 3; three epochs without improvement -> stop after epoch 6, before the late dip.
        assert_eq!(run(&curve, 3, 0.0, 0), (Some(6), Some(3)));
        // Patience 4 sees the dip at epoch 7 and never stops.
        assert_eq!(run(&curve, 4, 0.0, 0), (None, Some(7)));
        // min_delta 0.6: 9.0 -> 8.5 is not enough, so epoch 2 stays best and patience 3 stops at 5.
        assert_eq!(run(&curve, 3, 0.6, 0), (Some(5), Some(2)));
        // Epochs inside a warm-up of 6 do not count: the stop moves past the curve's end.
        assert_eq!(run(&[5.0, 6.0, 6.0, 6.0, 6.0, 6.0], 2, 0.0, 6), (None, Some(1)));
    }
}
