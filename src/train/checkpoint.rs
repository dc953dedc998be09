//! Checkpoints: `checkpoints/best/` and `checkpoints/last/`, each one atomic unit
//! ([`crate::util::atomic_dir`]): `model.safetensors` (model tensors, buffers included),
//! `state.json` ([`crate::format::TrainState`]: epoch, counters, RNG states, history) and, in
//! `last/` only, `optim.safetensors` (Adam moments: only a resume needs them, and a resume
//! continues from `last/`).
//!
//! Runs that keep an average of the weights (`train.ema_decay`): `best/model.safetensors` holds
//! the averaged weights (what validation chose, and what `eval`, `sample` and the final metrics
//! use), with the model's own batch-norm running statistics; `last/model.safetensors` holds the
//! raw training weights and `last/ema.safetensors` the average of every tensor, so a resume
//! continues both exactly. A `manifest.json` with the epoch and the SHA-256 of every file is
//! written last and checked on load, so a reader gets the whole previous checkpoint or the whole
//! new one, never weights of one epoch with the state of another.
//!
//! With `train.keep_resume_state = false` a finished run removes `last/` ([`drop_resume_state`]);
//! `--resume` (and `eval --last`) then refuse it with [`dropped_resume_state_message`].
//!
//! Run directories from before the units (flat `checkpoints/{best,last}.safetensors`,
//! `.optim.safetensors`, `.json`) still load; the next save writes a unit beside them, which then
//! takes precedence.
use super::ema::Ema;
use super::optim::Adam;
use crate::format::{tensors, StopReason, TrainState, FORMAT_VERSION};
use crate::model::params::{safetensors_bytes, ParamStore};
use crate::util::atomic_dir::{self, Step, UnitWriter};
use anyhow::{Context, Result};
use candle_core::Device;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

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

/// File names inside a checkpoint unit.
pub const PARAMS_FILE: &str = "model.safetensors";
pub const OPTIM_FILE: &str = "optim.safetensors";
pub const STATE_FILE: &str = "state.json";
/// `last/` of a run with `train.ema_decay`: the weight average ([`Ema::tensors`]).
pub const EMA_FILE: &str = "ema.safetensors";

/// The unit directory of a checkpoint: `RUN/checkpoints/{best,last}`.
pub fn unit_dir(run_dir: &Path, kind: CheckpointKind) -> PathBuf {
    run_dir.join("checkpoints").join(kind.name())
}

/// The flat files of a checkpoint written before the units (read only).
pub struct LegacyPaths {
    pub params: PathBuf,
    pub optim: PathBuf,
    pub state: PathBuf,
}

pub fn legacy_paths(run_dir: &Path, kind: CheckpointKind) -> LegacyPaths {
    let dir = run_dir.join("checkpoints");
    let n = kind.name();
    LegacyPaths {
        params: dir.join(format!("{n}.safetensors")),
        optim: dir.join(format!("{n}.optim.safetensors")),
        state: dir.join(format!("{n}.json")),
    }
}

fn legacy_exists(run_dir: &Path, kind: CheckpointKind) -> bool {
    let p = legacy_paths(run_dir, kind);
    p.state.is_file() && p.params.is_file()
}

fn unit_exists(run_dir: &Path, kind: CheckpointKind) -> bool {
    unit_dir(run_dir, kind).join(atomic_dir::MANIFEST).is_file()
}

/// Whether the run has a complete checkpoint of this kind (a unit, or the flat layout).
pub fn exists(run_dir: &Path, kind: CheckpointKind) -> bool {
    unit_exists(run_dir, kind) || legacy_exists(run_dir, kind)
}

/// Whether the run finished and then removed its `last/` checkpoint (`train.keep_resume_state =
/// false` in its `config.toml`): nothing to resume or evaluate as `last` from.
pub fn resume_state_dropped(run_dir: &Path) -> bool {
    run_dir.join("metrics.json").is_file()
        && !exists(run_dir, CheckpointKind::Last)
        && crate::train::TrainConfig::load(&run_dir.join("config.toml"), &[])
            .is_ok_and(|c| !c.train.keep_resume_state)
}

/// Why a run without its resume state cannot continue, naming the run and the option.
pub fn dropped_resume_state_message(run_dir: &Path) -> String {
    format!(
        "{}: this run finished and kept no resume state (train.keep_resume_state = false in its \
         config.toml removed checkpoints/last/, the weights and Adam moments a resume continues \
         from); its results and checkpoints/best/ are there. To train on, start a new run (or \
         --force this one) with train.keep_resume_state = true",
        run_dir.display()
    )
}

/// Remove the resume state of a FINISHED run (`train.keep_resume_state = false`): the whole
/// `last/` unit (weights, Adam moments, weight average), after `metrics.json` is written. A kill
/// before the removal leaves a finished run that resumes exactly; after it, a run that refuses to.
pub fn drop_resume_state(run_dir: &Path) -> Result<()> {
    if !run_dir.join("metrics.json").is_file() {
        anyhow::bail!(
            "{}: not finished (no metrics.json): its resume state is kept",
            run_dir.display()
        );
    }
    atomic_dir::remove_unit(&unit_dir(run_dir, CheckpointKind::Last))?;
    let p = legacy_paths(run_dir, CheckpointKind::Last);
    for f in [p.params, p.optim, p.state] {
        match std::fs::remove_file(&f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", f.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// A fault-injection point for tests: called at every step of every checkpoint write with the
/// checkpoint's kind and epoch; returning true stops the write dead there, as a kill would.
pub type FaultHook = Box<dyn FnMut(CheckpointKind, usize, &Step) -> bool + Send>;

static FAULT: Mutex<Option<FaultHook>> = Mutex::new(None);

/// Install (or with `None`, remove) the process-wide checkpoint fault hook. Tests only.
pub fn set_fault_hook(hook: Option<FaultHook>) {
    *FAULT.lock().unwrap_or_else(|e| e.into_inner()) = hook;
}

fn write_unit(run_dir: &Path, kind: CheckpointKind, epoch: usize, files: &[(&str, &[u8])]) -> Result<()> {
    let dir = unit_dir(run_dir, kind);
    let mut w = UnitWriter::begin(&dir, epoch as u64)?;
    if FAULT.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
        w.inject_fault(move |step| {
            FAULT
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_mut()
                .is_some_and(|hook| hook(kind, epoch, step))
        });
    }
    for (name, bytes) in files {
        w.write(name, bytes)?;
    }
    w.commit()
        .with_context(|| format!("writing the {} checkpoint of epoch {epoch}", kind.name()))?;
    Ok(())
}

fn state_bytes(state: &TrainState) -> Result<Vec<u8>> {
    let mut state = state.clone();
    state.format_version = FORMAT_VERSION;
    Ok(crate::format::to_json(&state)?.into_bytes())
}

fn params_bytes(store: &ParamStore) -> Result<Vec<u8>> {
    let map: std::collections::HashMap<String, candle_core::Tensor> = store
        .all()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    safetensors_bytes(&map, tensors::WEIGHTS_FORMAT)
}

/// Write a checkpoint as one unit. The optimizer moments (and the weight average, if any) go into
/// `last/` only; with an average, `best/` holds the averaged model.
pub fn save(
    run_dir: &Path,
    kind: CheckpointKind,
    store: &ParamStore,
    opt: &Adam,
    state: &TrainState,
    ema: Option<&Ema>,
) -> Result<()> {
    let st = state_bytes(state)?;
    match kind {
        CheckpointKind::Last => {
            let params = params_bytes(store)?;
            let optim = safetensors_bytes(&opt.state_tensors(), tensors::OPTIMIZER_FORMAT)?;
            let mut files: Vec<(&str, &[u8])> =
                vec![(PARAMS_FILE, &params), (OPTIM_FILE, &optim), (STATE_FILE, &st)];
            let average = ema
                .map(|e| safetensors_bytes(&e.tensors(), tensors::WEIGHTS_FORMAT))
                .transpose()?;
            if let Some(bytes) = &average {
                files.push((EMA_FILE, bytes));
            }
            write_unit(run_dir, kind, state.epochs_done, &files)
        }
        CheckpointKind::Best => {
            let params = match ema {
                Some(e) => safetensors_bytes(&e.model_tensors(store), tensors::WEIGHTS_FORMAT)?,
                None => params_bytes(store)?,
            };
            write_unit(
                run_dir,
                kind,
                state.epochs_done,
                &[(PARAMS_FILE, &params), (STATE_FILE, &st)],
            )
        }
    }
}

/// Resuming: restore the weight average from `last/ema.safetensors` into `ema` (a run with
/// `train.ema_decay`), or check that the checkpoint has none (a run without). Either mismatch
/// is an error: the average cannot be started or dropped half-way without changing the result.
pub fn load_ema(run_dir: &Path, ema: Option<&mut Ema>, steps: u64, device: &Device) -> Result<()> {
    let dir = unit_dir(run_dir, CheckpointKind::Last);
    let has_file = |unit: &atomic_dir::Unit| unit.manifest.files.contains_key(EMA_FILE);
    let unit = if dir.exists() {
        Some(atomic_dir::load_unit(&dir).context("refusing to load a damaged checkpoint")?)
    } else {
        None
    };
    match (ema, unit) {
        (Some(ema), Some(unit)) if has_file(&unit) => {
            let t = candle_core::safetensors::load_buffer(&unit.read(EMA_FILE)?, device)
                .with_context(|| format!("reading {}", unit.path(EMA_FILE).display()))?;
            ema.load(&t, steps)
                .with_context(|| format!("restoring the weight average {}", unit.path(EMA_FILE).display()))?;
            Ok(())
        }
        (Some(_), unit) => anyhow::bail!(
            "train.ema_decay is set but {} has no weight average ({EMA_FILE}): the run was \
             trained without one; resume it without train.ema_decay",
            unit.map_or(dir.clone(), |u| u.dir.clone()).display()
        ),
        (None, Some(unit)) if has_file(&unit) => anyhow::bail!(
            "{} holds a weight average ({EMA_FILE}) but train.ema_decay is not set: resume with \
             the run's own train.ema_decay",
            unit.dir.display()
        ),
        (None, _) => Ok(()),
    }
}

/// Record why training stopped in a saved checkpoint's state, leaving the rest as it was.
pub fn mark_stopped(run_dir: &Path, kind: CheckpointKind, why: StopReason) -> Result<()> {
    if !unit_exists(run_dir, kind) {
        let p = legacy_paths(run_dir, kind);
        let mut saved: TrainState = crate::format::read_json(&p.state)?;
        saved.stopped_because = Some(why);
        return crate::util::write_atomic(&p.state, &state_bytes(&saved)?);
    }
    let unit = atomic_dir::load_unit(&unit_dir(run_dir, kind))?;
    let mut saved: TrainState = serde_json::from_slice(&unit.read(STATE_FILE)?)
        .with_context(|| format!("{}", unit.path(STATE_FILE).display()))?;
    saved.stopped_because = Some(why);
    let st = state_bytes(&saved)?;
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    for name in unit.manifest.files.keys() {
        if name != STATE_FILE {
            files.push((name.clone(), unit.read(name)?));
        }
    }
    files.push((STATE_FILE.to_string(), st));
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
    write_unit(run_dir, kind, unit.epoch() as usize, &refs)
}

/// Load model tensors (and, when `opt` is given, the optimizer state); returns the saved state.
/// The unit is verified first (manifest, lengths, hashes, the epoch in the state against the
/// manifest's): a damaged or mixed checkpoint is an error naming it, and nothing is loaded.
pub fn load(
    run_dir: &Path,
    kind: CheckpointKind,
    store: &ParamStore,
    opt: Option<&mut Adam>,
    device: &Device,
) -> Result<TrainState> {
    let dir = unit_dir(run_dir, kind);
    if !dir.exists() && legacy_exists(run_dir, kind) {
        return load_legacy(run_dir, kind, store, opt, device);
    }
    let unit = match atomic_dir::load_unit(&dir) {
        Ok(u) => u,
        Err(atomic_dir::UnitError::Missing { .. })
            if kind == CheckpointKind::Last && resume_state_dropped(run_dir) =>
        {
            anyhow::bail!("{}", dropped_resume_state_message(run_dir))
        }
        Err(atomic_dir::UnitError::Missing { .. }) => anyhow::bail!(
            "{}: no {} checkpoint (missing {}): was it trained?",
            run_dir.display(),
            kind.name(),
            dir.join(atomic_dir::MANIFEST).display()
        ),
        Err(e) => return Err(e).context("refusing to load a damaged checkpoint"),
    };
    let state_path = unit.path(STATE_FILE);
    let state: TrainState = serde_json::from_slice(&unit.read(STATE_FILE)?)
        .with_context(|| format!("reading checkpoint state {}", state_path.display()))?;
    if state.epochs_done as u64 != unit.epoch() {
        anyhow::bail!(
            "{}: the state is of epoch {}, the manifest of epoch {}: refusing a mixed checkpoint",
            unit.dir.display(),
            state.epochs_done,
            unit.epoch()
        );
    }
    let param_bytes = unit.read(PARAMS_FILE)?;
    tensors::check_header(&param_bytes, tensors::WEIGHTS_FORMAT, &unit.path(PARAMS_FILE))?;
    let params = candle_core::safetensors::load_buffer(&param_bytes, device)
        .with_context(|| format!("reading checkpoint {}", unit.path(PARAMS_FILE).display()))?;
    // Check the optimizer's file before touching the model, so a failure loads nothing.
    let optim = match &opt {
        Some(_) => {
            let bytes = unit.read(OPTIM_FILE).with_context(|| {
                format!(
                    "{}: this checkpoint has no optimizer state, so training cannot resume from it",
                    unit.dir.display()
                )
            })?;
            tensors::check_header(&bytes, tensors::OPTIMIZER_FORMAT, &unit.path(OPTIM_FILE))?;
            Some(
                candle_core::safetensors::load_buffer(&bytes, device).with_context(|| {
                    format!("reading optimizer state {}", unit.path(OPTIM_FILE).display())
                })?,
            )
        }
        None => None,
    };
    store
        .load_tensors(&params, &unit.path(PARAMS_FILE))
        .with_context(|| format!("loading checkpoint {}", unit.dir.display()))?;
    if let (Some(opt), Some(t)) = (opt, optim) {
        opt.load_state(&t, state.steps)
            .with_context(|| format!("restoring optimizer state {}", unit.path(OPTIM_FILE).display()))?;
    }
    Ok(state)
}

fn load_legacy(
    run_dir: &Path,
    kind: CheckpointKind,
    store: &ParamStore,
    opt: Option<&mut Adam>,
    device: &Device,
) -> Result<TrainState> {
    let p = legacy_paths(run_dir, kind);
    let state: TrainState = crate::format::read_json(&p.state)?;
    store.load(&p.params)?;
    if let Some(opt) = opt {
        let bytes = std::fs::read(&p.optim)
            .with_context(|| format!("reading optimizer state {}", p.optim.display()))?;
        tensors::check_header(&bytes, tensors::OPTIMIZER_FORMAT, &p.optim)?;
        let t = candle_core::safetensors::load_buffer(&bytes, device)
            .with_context(|| format!("reading optimizer state {}", p.optim.display()))?;
        opt.load_state(&t, state.steps)
            .with_context(|| format!("restoring optimizer state {}", p.optim.display()))?;
    }
    Ok(state)
}
