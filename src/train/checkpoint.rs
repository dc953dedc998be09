//! Checkpoints: `checkpoints/{best,last}.safetensors` (model tensors, buffers included),
//! `{best,last}.optim.safetensors` (Adam moments) and `{best,last}.json` (epoch, counters, RNG
//! states, history: [`crate::format::TrainState`]). The JSON is written last, so a checkpoint is
//! complete when its JSON exists.
use super::optim::Adam;
use crate::format::{StopReason, TrainState, FORMAT_VERSION};
use crate::model::params::{safetensors_bytes, ParamStore};
use anyhow::{Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointKind {
    Best,
    Last,
}

impl CheckpointKind {
    pub fn name(self) -> &'static str {
        match self {
            CheckpointKind::Best => "best",
            CheckpointKind::Last => "last",
        }
    }
}

pub struct CheckpointPaths {
    pub params: PathBuf,
    pub optim: PathBuf,
    pub state: PathBuf,
}

pub fn paths(run_dir: &Path, kind: CheckpointKind) -> CheckpointPaths {
    let dir = run_dir.join("checkpoints");
    let n = kind.name();
    CheckpointPaths {
        params: dir.join(format!("{n}.safetensors")),
        optim: dir.join(format!("{n}.optim.safetensors")),
        state: dir.join(format!("{n}.json")),
    }
}

pub fn exists(run_dir: &Path, kind: CheckpointKind) -> bool {
    let p = paths(run_dir, kind);
    p.state.is_file() && p.params.is_file()
}

pub fn save(
    run_dir: &Path,
    kind: CheckpointKind,
    store: &ParamStore,
    opt: &Adam,
    state: &TrainState,
) -> Result<()> {
    let p = paths(run_dir, kind);
    store.save(&p.params)?;
    crate::util::write_atomic(&p.optim, &safetensors_bytes(&opt.state_tensors())?)?;
    write_state(&p.state, state)
}

fn write_state(path: &Path, state: &TrainState) -> Result<()> {
    let mut state = state.clone();
    state.format_version = FORMAT_VERSION;
    crate::util::write_atomic(path, crate::format::to_json(&state)?.as_bytes())
}

/// Record why training stopped in a saved checkpoint's state, leaving the rest as it was.
pub fn mark_stopped(run_dir: &Path, kind: CheckpointKind, why: StopReason) -> Result<()> {
    let p = paths(run_dir, kind);
    let mut saved: TrainState = crate::format::read_json(&p.state)?;
    saved.stopped_because = Some(why);
    write_state(&p.state, &saved)
}

/// Load model tensors (and, when `opt` is given, the optimizer state); returns the saved state.
pub fn load(
    run_dir: &Path,
    kind: CheckpointKind,
    store: &ParamStore,
    opt: Option<&mut Adam>,
    device: &Device,
) -> Result<TrainState> {
    let p = paths(run_dir, kind);
    if !p.state.is_file() {
        anyhow::bail!(
            "{}: no {} checkpoint (missing {})",
            run_dir.display(),
            kind.name(),
            p.state.display()
        );
    }
    let state: TrainState = crate::format::read_json(&p.state)?;
    store.load(&p.params)?;
    if let Some(opt) = opt {
        let t = candle_core::safetensors::load(&p.optim, device)
            .with_context(|| format!("reading optimizer state {}", p.optim.display()))?;
        opt.load_state(&t, state.steps)
            .with_context(|| format!("restoring optimizer state {}", p.optim.display()))?;
    }
    Ok(state)
}
