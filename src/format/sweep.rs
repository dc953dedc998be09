//! `SWEEP_DIR/sweep.json`, the manifest of a sweep (`norbvae sweep`), version 1.
//!
//! A sweep directory holds:
//! - `sweep.json`: this manifest: what was swept (base config, overrides, grid, seeds), the
//!   executor, the Slurm job if one was submitted, and one entry per run with its parameters,
//!   status and directory (relative to the sweep directory);
//! - `runs/<name>/`: one ordinary run directory per run (`config.toml` is the run's resolved
//!   config, written before training; then what `norbvae train` writes), plus `train.log` (the
//!   trainer's output, appended across attempts) and, after a failed attempt, `sweep_failed.txt`
//!   (first line `exit code N`, then the end of the log);
//! - `slurm/sweep.sbatch` and `slurm/<job>_<task>.out` for the Slurm and print executors.
//!
//! The run directories are the truth: a run is done when its `metrics.json` exists; the status
//! here is refreshed from them (and from `squeue`) by every `norbvae sweep` and
//! `norbvae sweep status`.
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const SWEEP_MANIFEST_VERSION: u32 = 1;
pub const SWEEP_MANIFEST_FILE: &str = "sweep.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepManifest {
    /// [`SWEEP_MANIFEST_VERSION`] when written.
    pub version: u32,
    /// The base training config (absolute path).
    pub base_config: PathBuf,
    /// `--data` given to the sweep (applied over every run's `data.spec`).
    pub data: Option<String>,
    /// `key=value` overrides applied to every run before the grid's.
    pub set: Vec<String>,
    /// The swept keys, sorted by key, with their values as TOML literals.
    pub grid: Vec<GridAxis>,
    /// One run per grid point and seed (the config's top-level `seed`).
    pub seeds: Vec<u64>,
    pub executor: ExecutorKind,
    /// The last job array submitted for this sweep.
    pub slurm_job: Option<SlurmJob>,
    pub runs: Vec<RunEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GridAxis {
    /// A config key path, e.g. `model.latent_dim`; or `preset` in the sweep that
    /// `norbvae reproduce --executor` makes of its presets (each value names a config in
    /// `base_config`, which is then that directory).
    pub key: String,
    /// Values as TOML literals (`10`, `"sigmoid"`, `true`), each applied as `key=value`.
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Child `norbvae train` processes on this machine.
    Local,
    /// One Slurm job array, one task per run.
    Slurm,
    /// Write the run configs and the batch script, submit nothing.
    Print,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlurmJob {
    /// The array's job id as sbatch printed it.
    pub job_id: String,
    /// The batch script (absolute path).
    pub script: PathBuf,
    /// Run indices submitted as array task ids.
    pub tasks: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEntry {
    /// Position in the sweep; the Slurm array task id.
    pub index: usize,
    /// Stable name built from the parameters, e.g. `first_filters=16,latent_dim=10,seed=0`.
    pub name: String,
    /// The run directory, relative to the sweep directory.
    pub dir: PathBuf,
    /// Swept key -> value (TOML literal), the seed included as `seed`.
    pub params: BTreeMap<String, String>,
    pub seed: u64,
    pub status: RunStatus,
    /// For a failed run: the trainer's error (end of its log).
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Not started (or waiting in the Slurm queue).
    Queued,
    Running,
    /// Stopped with a checkpoint to resume from (interrupted, preempted, requeued).
    Partial,
    /// `metrics.json` written.
    Done,
    /// The last attempt exited with an error (see `error`).
    Failed,
}

impl RunStatus {
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Partial => "partial",
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("reading sweep manifest {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("sweep manifest {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error(
        "sweep manifest {path} has version {found}; this norbvae reads version {SWEEP_MANIFEST_VERSION}"
    )]
    Version { path: PathBuf, found: u64 },
}

impl SweepManifest {
    pub fn path(sweep_dir: &Path) -> PathBuf {
        sweep_dir.join(SWEEP_MANIFEST_FILE)
    }

    /// Read `sweep_dir/sweep.json`, refusing other versions with a message naming the version.
    pub fn load(sweep_dir: &Path) -> Result<Self, ManifestError> {
        let path = Self::path(sweep_dir);
        let text = std::fs::read_to_string(&path).map_err(|source| ManifestError::Io {
            path: path.clone(),
            source,
        })?;
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| ManifestError::Parse {
            path: path.clone(),
            message: e.to_string(),
        })?;
        let found = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if found != SWEEP_MANIFEST_VERSION as u64 {
            return Err(ManifestError::Version { path, found });
        }
        serde_json::from_value(value).map_err(|e| ManifestError::Parse {
            path,
            message: e.to_string(),
        })
    }

    /// Write atomically to `sweep_dir/sweep.json`.
    pub fn save(&self, sweep_dir: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        crate::util::write_atomic(&Self::path(sweep_dir), text.as_bytes())
    }

    /// Runs per status, in [`RunStatus`] order.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut c = BTreeMap::new();
        for r in &self.runs {
            *c.entry(r.status.name()).or_insert(0) += 1;
        }
        c
    }
}
