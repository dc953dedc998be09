//! Training: the TOML config, the loop with validation-based early stopping, checkpoints and
//! exact resume, metrics and pictures, and loading a finished run back ([`load_run`]).
pub mod checkpoint;
pub mod config;
pub mod early_stop;
pub mod ema;
pub mod grad_guard;
pub mod input;
pub mod metrics;
pub mod optim;
pub mod pictures;
pub mod plot;
pub mod run;
pub mod schedule;
pub mod trainer;

pub use checkpoint::CheckpointKind;
pub use config::{ConfigError, TrainConfig, TrainOptions};
pub use metrics::SplitMetrics;
pub use run::{load_run, LoadedRun};
pub use trainer::{train, StopReason, TrainSummary};
