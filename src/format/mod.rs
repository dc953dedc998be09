//! The run format: the files every stage writes into a run directory and every later stage (eval,
//! report, answers, resume, the sweeps) reads back. Each JSON file is one serde type defined in
//! this module, used by its writer and by all of its readers; nothing reads these files through
//! untyped JSON paths.
//!
//! # Versions
//!
//! `metrics.json`, `model.json` and each checkpoint's state JSON carry `format_version`
//! ([`FORMAT_VERSION`], written by this build; `model.json` has its own,
//! [`model::MODEL_FORMAT_VERSION`], 2 since it describes the architecture). Files written before
//! the field existed have no version and load as version 0, which has the same layout as version 1
//! (version 1 only adds the field). The safetensors files of a run (`model.safetensors`,
//! `optim.safetensors`, `pca.safetensors`) carry theirs in the header's `__metadata__`
//! ([`tensors`]). A file with a version newer than this build's is refused with an error naming the file
//! and both versions ([`FormatError::NewerVersion`]). A change that makes old files unreadable
//! bumps the version and keeps a reader for the old one.
//!
//! # A VAE run directory (`norbvae train`, extended by `norbvae eval`)
//!
//! | file | written by | type / content |
//! |---|---|---|
//! | `config.toml` | train | the resolved `train::TrainConfig` (seed, data, model, likelihood, kl, train) |
//! | `model.json` | train | [`ModelMeta`]: image shape, parameter count, the architecture layer by layer |
//! | `metrics.jsonl` | train, after every epoch | one [`EpochRecord`] per line |
//! | `checkpoints/{best,last}/model.safetensors` | train | model tensors (batch-norm buffers included) |
//! | `checkpoints/last/optim.safetensors` | train | Adam moments (only `last/`: resume starts there) |
//! | `checkpoints/{best,last}/state.json` | train | [`TrainState`] |
//! | `checkpoints/{best,last}/manifest.json` | train, last | the epoch and each file's SHA-256: each directory is one atomic unit (`util::atomic_dir`), checked on load |
//! | `.norbvae.lock` | every command writing here | `flock`ed by the one writer (`util::lock`), holds its pid |
//! | `pca.safetensors` | train (`pca_dense` models) | the PCA the model's input goes through |
//! | `metrics.json` | train at the end; eval merges into it | [`RunMetrics::Vae`] ([`VaeMetrics`]) |
//! | `*.png` | train, eval | loss curve, reconstructions, samples, traversals |
//!
//! # A PCA run directory (`norbvae pca`)
//!
//! | file | content |
//! |---|---|
//! | `config.toml` | the resolved `pca::PcaRunConfig` |
//! | `pca.safetensors` | the fitted model (mean, components, variances) |
//! | `metrics.json` | [`RunMetrics::Pca`] ([`PcaMetrics`]): per k and split MSE, PSNR, PPCA likelihood |
//! | `explained_variance.png`, `recon_k<k>_<split>.png` | pictures |
//!
//! `metrics.json` is the file that makes a directory a run: the report lists a directory when
//! it holds one, and its `kind` (`"vae"` or `"pca"`) says which layout the rest follows.
//!
//! Units: negative log-likelihoods in nats per image, bits per dimension under the convention of
//! [`crate::util::units`], MSE per pixel with pixels in [0, 1], PSNR in dB.
//!
//! A sweep's manifest (a directory of run directories) is `format/sweep.rs`; the improvement
//! ladder's (`OUT/ladder.json`, the order and descriptions of its steps) is `format/ladder.rs`.
pub mod checkpoint;
pub mod ladder;
pub mod metrics;
pub mod model;
pub mod run_dir;
pub mod tensors;

pub use checkpoint::{EarlyStopping, GradGuardState, StopReason, TrainState};
pub use metrics::{
    ClassifierInfo, EpochLosses, EpochRecord, EvalInfo, PcaFitInfo, PcaKMetrics, PcaMetrics, PcaSplitMetrics,
    RunMetrics, SampleScores, SplitEval, VaeMetrics, VaeSplitMetrics,
};
pub use model::{Architecture, ModelMeta, MODEL_FORMAT_VERSION};

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The version of the run format this build writes (and the newest it reads).
pub const FORMAT_VERSION: u32 = 1;

/// `format_version` of files written before the field existed.
pub fn version_0() -> u32 {
    0
}

/// Reading or writing one of the run format's files.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parsing {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{path} has format_version {found}, newer than this norbvae understands (up to {supported}): \
         read it with a newer norbvae"
    )]
    NewerVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

/// A file of the run format: knows its version.
pub trait Versioned {
    /// The newest version of this file this build reads (and writes).
    const NEWEST: u32 = FORMAT_VERSION;
    fn format_version(&self) -> u32;
}

/// Read and parse a JSON file of the run format, refusing versions newer than [`FORMAT_VERSION`].
pub fn read_json<T: DeserializeOwned + Versioned>(path: &Path) -> Result<T, FormatError> {
    let text = std::fs::read_to_string(path).map_err(|source| FormatError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_json(&text, path)
}

/// Parse the text of a file named `path` (the name is for messages).
pub fn parse_json<T: DeserializeOwned + Versioned>(text: &str, path: &Path) -> Result<T, FormatError> {
    // The version is checked before the layout, so that a newer file is reported as such even
    // when its layout no longer parses.
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        #[serde(default = "version_0")]
        format_version: u32,
    }
    if let Ok(v) = serde_json::from_str::<VersionOnly>(text) {
        check_version(v.format_version, T::NEWEST, path)?;
    }
    let value: T = serde_json::from_str(text).map_err(|source| FormatError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    check_version(value.format_version(), T::NEWEST, path)?;
    Ok(value)
}

fn check_version(found: u32, supported: u32, path: &Path) -> Result<(), FormatError> {
    if found > supported {
        return Err(FormatError::NewerVersion {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    Ok(())
}

/// Pretty JSON of a run-format value, as written to disk.
pub fn to_json<T: Serialize>(value: &T) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(value)
}

pub mod sweep;
#[cfg(test)]
mod tests;
