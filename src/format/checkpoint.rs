//! The state half of a checkpoint, `checkpoints/{best,last}.json`: everything besides the
//! tensors that a resumed run needs to continue exactly where it stopped.
use super::metrics::EpochRecord;
use super::{version_0, Versioned, FORMAT_VERSION};
use crate::util::SeededRng;
use serde::{Deserialize, Serialize};

/// Why training stopped (`metrics.json` `stopped_because`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The validation loss did not improve by min_delta for `patience` epochs.
    Patience,
    /// `max_epochs` reached.
    MaxEpochs,
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    Diverged,
}

impl StopReason {
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Patience => "patience",
            StopReason::MaxEpochs => "max_epochs",
            StopReason::Diverged => "diverged",
        }
    }
}

/// Early stopping's memory (its rule is `train::early_stop`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub best_val: Option<f64>,
    pub best_epoch: Option<usize>,
    pub epochs_since_improvement: usize,
}

/// Everything needed to continue a run exactly where it stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    #[serde(default = "version_0")]
    pub format_version: u32,
    pub epochs_done: usize,
    /// Optimizer steps taken (Adam's bias correction continues from it).
    pub steps: u64,
    pub early_stopping: EarlyStopping,
    pub shuffle_rng: SeededRng,
    pub noise_rng: SeededRng,
    pub history: Vec<EpochRecord>,
    pub stopped_because: Option<StopReason>,
    /// The gradient guard's memory (`train.grad_clip` / `train.grad_skip_threshold` set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_guard: Option<GradGuardState>,
}

/// What `train::grad_guard::GradGuard` carries from one update to the next, saved so a resumed
/// run skips and clips exactly as an uninterrupted one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GradGuardState {
    /// Exponential average of the accepted (clipped) gradient norms.
    pub running_norm: Option<f64>,
    /// Updates applied so far.
    pub accepted: u64,
    /// Updates skipped so far (non-finite norm, or above the threshold times the running norm).
    pub skipped: u64,
}

impl TrainState {
    /// The state before the first epoch of a run seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            epochs_done: 0,
            steps: 0,
            early_stopping: EarlyStopping::default(),
            shuffle_rng: SeededRng::derived(seed, "shuffle"),
            noise_rng: SeededRng::derived(seed, "noise"),
            history: Vec::new(),
            stopped_because: None,
            grad_guard: None,
        }
    }
}

impl Versioned for TrainState {
    fn format_version(&self) -> u32 {
        self.format_version
    }
}
