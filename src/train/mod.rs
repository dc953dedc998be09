//! Training: the TOML config, the loop with validation-based early stopping, checkpoints and
//! exact resume, metrics and pictures, and loading a finished run back ([`load_run`]).
//!
//! Imports run one way: `config` -> `input` -> `session` (the model with its parameters) ->
//! `metrics` -> `pictures`, `plot`; `optim` -> `checkpoint`; `trainer` uses them all, `run` loads
//! a finished run, `workflow` is `norbvae train`. The files' types are in [`crate::format`].
pub mod checkpoint;
pub mod config;
pub mod early_stop;
pub mod ema;
pub mod epoch_log;
pub mod grad_guard;
pub mod input;
pub mod ladder;
pub mod metrics;
pub mod optim;
pub mod pictures;
pub mod plot;
pub mod run;
pub mod schedule;
pub mod session;
pub mod step_bench;
pub mod trainer;
pub mod workflow;

pub use crate::format::{EpochRecord, StopReason, TrainState};
pub use checkpoint::CheckpointKind;
pub use config::{ConfigError, TrainConfig, TrainOptions, ValidTrainConfig};
pub use run::{load_run, LoadedRun};
pub use session::{default_device, Session};
pub use trainer::{train, train_with};
pub use workflow::{summary_text, train_from_config, train_from_config_with};
