//! Who may write into a run directory: one command at a time (the directory's lock), and one
//! run per directory. A directory that holds another kind of run, or a finished run, is refused
//! unless the caller asks to replace it (`--force`), which clears it first; `metrics.json`,
//! written last, is the mark of a finished run.
use super::RunMetrics;
use crate::util::lock::{RunLock, LOCK_FILE};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The kind of run a command writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Vae,
    Pca,
}

impl RunKind {
    fn name(self) -> &'static str {
        match self {
            RunKind::Vae => "VAE",
            RunKind::Pca => "PCA",
        }
    }
}

/// How a command means to use the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Intent {
    /// A new run: the directory must be empty, or hold only an unfinished run of the same kind
    /// with no checkpoint (one stopped before its first epoch ended).
    #[default]
    New,
    /// Continue the run that is there (`train --resume`).
    Resume,
    /// Replace whatever run is there: it is removed first.
    Replace,
}

/// What a directory holds, from the files every run writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    /// The run's kind when it can be told.
    pub kind: Option<RunKind>,
    /// `metrics.json` is there.
    pub finished: bool,
    /// A VAE checkpoint is there.
    pub checkpoint: bool,
    /// Anything besides the lock file.
    pub anything: bool,
}

/// Look at `dir` (missing: empty).
pub fn inspect(dir: &Path) -> Result<Found> {
    let mut anything = false;
    if dir.is_dir() {
        for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let e = e.with_context(|| format!("reading {}", dir.display()))?;
            if e.file_name() != LOCK_FILE {
                anything = true;
                break;
            }
        }
    }
    let metrics = dir.join("metrics.json");
    let finished = metrics.is_file();
    let checkpoint = dir.join("checkpoints").is_dir();
    let kind = if finished {
        match RunMetrics::read(&metrics) {
            Ok(RunMetrics::Vae(_)) => Some(RunKind::Vae),
            Ok(RunMetrics::Pca(_)) => Some(RunKind::Pca),
            Err(_) => None,
        }
    } else {
        None
    }
    .or_else(|| (checkpoint || dir.join("model.json").is_file()).then_some(RunKind::Vae))
    .or_else(|| dir.join("pca.safetensors").is_file().then_some(RunKind::Pca));
    Ok(Found {
        kind,
        finished,
        checkpoint,
        anything,
    })
}

/// Lock `dir` for a command writing a `kind` run, check that the directory may take it, and with
/// [`Intent::Replace`] clear it. The lock is held until the returned guard is dropped.
pub fn claim(dir: &Path, kind: RunKind, intent: Intent) -> Result<RunLock> {
    let lock = RunLock::acquire(dir)?;
    let found = inspect(dir)?;
    let shown = dir.display();
    match intent {
        Intent::Replace => {
            if found.anything && found.kind.is_none() && !dir.join("config.toml").is_file() {
                bail!(
                    "{shown} does not look like a norbvae run directory (no metrics.json, config.toml, \
                     model.json or checkpoints): --force clears only run directories"
                );
            }
            clear(dir)?;
        }
        Intent::Resume => {
            if let Some(other) = found.kind.filter(|k| *k != kind) {
                bail!(
                    "{shown} holds a {} run, not a {} run: it cannot be resumed as one",
                    other.name(),
                    kind.name()
                );
            }
        }
        Intent::New => {
            if let Some(other) = found.kind.filter(|k| *k != kind) {
                bail!(
                    "{shown} holds a {} run: refusing to write a {} run into it (choose another --out, \
                     or --force to delete it and start over)",
                    other.name(),
                    kind.name()
                );
            }
            if found.finished || found.checkpoint {
                let resume = if kind == RunKind::Vae {
                    "use --resume to continue it, "
                } else {
                    ""
                };
                bail!(
                    "{shown} already holds a {} run; {resume}choose another --out, or --force to \
                     delete it and start over",
                    if found.finished { "finished" } else { "trained" }
                );
            }
        }
    }
    Ok(lock)
}

/// Remove everything in `dir` but the lock file (the caller holds the lock).
fn clear(dir: &Path) -> Result<()> {
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e.with_context(|| format!("reading {}", dir.display()))?;
        if e.file_name() == LOCK_FILE {
            continue;
        }
        let p = e.path();
        let r = if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.with_context(|| format!("--force: removing {}", p.display()))?;
    }
    Ok(())
}
