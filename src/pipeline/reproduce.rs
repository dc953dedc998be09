//! `norbvae reproduce --executor local|slurm|print`: the presets' training runs go through the
//! sweep machinery ([`crate::sweep`]) as ONE sweep whose directory is the reproduction's output
//! directory: local child processes with `--jobs N` at once, or one Slurm job array (one task per
//! preset and seed), or the batch script only. PCA before and the evaluations and report after run
//! in this process, as without an executor.
//!
//! The sweep's only axis is the pseudo-key `preset` (see `format::sweep`); each run's resolved
//! config is exactly what the in-process path would train (the preset, its variant's overrides,
//! the PCA model and component count, `--set`, the data options), plus `seed=S` with `--seeds`.
//! Without `--seeds` each preset's run directory is `OUT/<preset>`, as without an executor, so
//! the answers and report are the same; with `--seeds` it is `OUT/<preset>,seed=<S>` and
//! `OUT/sweep_report.html` gives each preset's mean and spread over the seeds.
use crate::format::sweep::{ExecutorKind, GridAxis, RunEntry, RunStatus, SweepManifest};
use crate::sweep::{self, local, slurm, PlannedRun, SlurmOptions, SweepSpec};
use crate::train::TrainConfig;
use crate::util::device::DeviceChoice;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How `reproduce` trains its presets when not in this process.
#[derive(Debug, Clone)]
pub struct ReproduceExecutor {
    pub kind: ExecutorKind,
    /// Local: runs at once.
    pub jobs: usize,
    pub slurm: SlurmOptions,
    /// One run per preset and seed (default: the presets' own seeds, one run each).
    pub seeds: Option<Vec<u64>>,
    /// The norbvae binary the runs execute.
    pub exe: PathBuf,
    /// Slurm: seconds between looks at the queue while waiting for the array.
    pub poll_seconds: f64,
    /// Each training run's `--device` (reproduce's own).
    pub device: DeviceChoice,
}

impl ReproduceExecutor {
    pub fn new(kind: ExecutorKind, exe: PathBuf) -> Self {
        Self {
            kind,
            jobs: 1,
            slurm: SlurmOptions::default(),
            seeds: None,
            exe,
            poll_seconds: 5.0,
            device: DeviceChoice::Auto,
        }
    }
}

/// A preset's run: its name in the sweep and resolved config.
#[derive(Debug, Clone)]
pub(super) struct PresetRun {
    pub preset: String,
    pub seed: Option<u64>,
    pub config: TrainConfig,
}

/// The run directory name of a preset (and seed, with `--seeds`).
pub fn run_name(preset: &str, seed: Option<u64>) -> String {
    match seed {
        Some(s) => format!("{preset},seed={s}"),
        None => preset.to_string(),
    }
}

/// What the sweep did.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    Trained(Trained),
    /// The print executor wrote the batch script (its path): nothing trained.
    Printed(PathBuf),
}

/// The preset runs after the sweep.
#[derive(Debug, Clone, Default)]
pub(super) struct Trained {
    /// (preset, run dir) of the finished runs.
    pub done: Vec<(String, PathBuf)>,
    /// (preset, run, error) of the others.
    pub failed: Vec<(String, String, String)>,
}

/// Train `runs` as one sweep in `out`.
pub(super) fn train_presets(
    out: &Path,
    data_spec: &str,
    set: &[String],
    x: &ReproduceExecutor,
    runs: &[PresetRun],
) -> Result<Outcome> {
    let presets: Vec<String> = runs.iter().fold(Vec::new(), |mut v, r| {
        if !v.contains(&r.preset) {
            v.push(r.preset.clone());
        }
        v
    });
    let planned: Vec<PlannedRun> = runs
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let name = run_name(&r.preset, r.seed);
            let mut params = BTreeMap::new();
            params.insert("preset".to_string(), format!("{:?}", r.preset));
            params.insert("seed".to_string(), r.config.seed.to_string());
            PlannedRun {
                entry: RunEntry {
                    index,
                    dir: PathBuf::from(&name),
                    name,
                    params,
                    seed: r.config.seed,
                    status: RunStatus::Queued,
                    error: None,
                },
                config: r.config.clone(),
            }
        })
        .collect();
    let spec = SweepSpec {
        base_config: std::path::absolute(out.join("configs")).unwrap_or_else(|_| out.join("configs")),
        data: Some(data_spec.to_string()),
        set: set.to_vec(),
        grid: vec![GridAxis {
            key: "preset".into(),
            values: presets.iter().map(|p| format!("{p:?}")).collect(),
        }],
        seeds: x.seeds.clone(),
        max_runs: usize::MAX,
    };
    if x.kind == ExecutorKind::Slurm {
        slurm::require_sbatch()?;
    }
    let mut manifest = sweep::prepare(out, &spec, &planned, x.kind)?;
    match x.kind {
        ExecutorKind::Local => {
            let mut opts = local::LocalOptions::new(x.exe.clone(), x.jobs);
            opts.device = x.device;
            local::run_local(out, &mut manifest, &opts)?;
        }
        ExecutorKind::Print => {
            if manifest.runs.iter().all(|r| r.status == RunStatus::Done) {
                eprintln!("every preset run is finished: no batch script needed");
            } else {
                let workdir = std::env::current_dir()?;
                let (script, tasks) =
                    slurm::write_script(out, &manifest, &x.slurm, &x.exe, x.device, &workdir)?;
                eprintln!(
                    "wrote {} run configs and the batch script {} ({} tasks); submit with: sbatch {}, \
                     then run the same `norbvae reproduce` without --executor print to evaluate and report",
                    manifest.runs.len(),
                    script.display(),
                    tasks.len(),
                    script.display()
                );
                return Ok(Outcome::Printed(script));
            }
        }
        ExecutorKind::Slurm => run_slurm(out, &mut manifest, x)?,
    }
    sweep::refresh_from_disk(out, &mut manifest);
    manifest.save(out)?;
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for (r, p) in manifest.runs.iter().zip(runs) {
        if r.status == RunStatus::Done {
            done.push((p.preset.clone(), out.join(&r.dir)));
        } else {
            let why = r
                .error
                .clone()
                .unwrap_or_else(|| format!("not finished ({})", r.status.name()));
            failed.push((p.preset.clone(), r.name.clone(), why));
        }
    }
    Ok(Outcome::Trained(Trained { done, failed }))
}

/// Submit the unfinished runs as one job array (unless this sweep's array is still queued) and
/// wait until none of its tasks is in the queue.
fn run_slurm(out: &Path, manifest: &mut SweepManifest, x: &ReproduceExecutor) -> Result<()> {
    let still_queued = match &manifest.slurm_job {
        Some(job) => !slurm::queued_tasks(&job.job_id)?.is_empty(),
        None => false,
    };
    if still_queued {
        eprintln!("job array of this reproduction still in the queue: waiting for it");
    } else if manifest.runs.iter().any(|r| r.status != RunStatus::Done) {
        let workdir = std::env::current_dir()?;
        let (script, tasks) = slurm::write_script(out, manifest, &x.slurm, &x.exe, x.device, &workdir)?;
        let job = slurm::submit(&script, tasks)?;
        eprintln!(
            "submitted job array {} ({} tasks); waiting (interrupting this leaves the array running: \
             run the same command again to wait for it and go on)",
            job.job_id,
            job.tasks.len()
        );
        manifest.slurm_job = Some(job);
        manifest.save(out)?;
    }
    loop {
        let queued = slurm::refresh(out, manifest)?;
        manifest.save(out)?;
        if queued.is_empty() {
            return Ok(());
        }
        let counts: Vec<String> = manifest
            .counts()
            .into_iter()
            .map(|(k, v)| format!("{v} {k}"))
            .collect();
        eprintln!("  {} runs: {}", manifest.runs.len(), counts.join(", "));
        std::thread::sleep(Duration::from_secs_f64(x.poll_seconds.max(0.2)));
    }
}

/// The resolved configs of the presets' runs, one per preset and seed.
pub(super) fn preset_runs(
    configs: &[(String, TrainConfig)],
    seeds: Option<&[u64]>,
) -> Result<Vec<PresetRun>> {
    let mut out = Vec::new();
    for (preset, config) in configs {
        match seeds {
            None => out.push(PresetRun {
                preset: preset.clone(),
                seed: None,
                config: config.clone(),
            }),
            Some(seeds) => {
                for &s in seeds {
                    let mut c = config.clone();
                    c.seed = s;
                    c.check()
                        .with_context(|| format!("preset {preset} with seed {s}"))?;
                    out.push(PresetRun {
                        preset: preset.clone(),
                        seed: Some(s),
                        config: c,
                    });
                }
            }
        }
    }
    Ok(out)
}
