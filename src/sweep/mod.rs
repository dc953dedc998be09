//! Sweeps: one training run per point of a grid of config overrides and per seed, each in its own
//! run directory under one sweep directory with a manifest (`format::sweep`), run by an executor:
//! child processes on this machine ([`local`]) or one Slurm job array ([`slurm`]).
//!
//! Everything is checked before anything runs: every grid key must be a config key (checked by
//! applying the override to the base config, as `norbvae train --set` does), no value list may be
//! empty, the number of runs must fit `max_runs`, and every run's config must pass the trainer's
//! checks. Re-running a sweep skips finished runs and resumes unfinished ones from their
//! checkpoints; a run directory made from a different config is never reused.
pub mod local;
pub mod slurm;
pub mod spec;

use crate::format::sweep::{
    ExecutorKind, GridAxis, RunEntry, RunStatus, SweepManifest, SWEEP_MANIFEST_VERSION,
};
use crate::train::TrainConfig;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use spec::{SlurmOptions, SweepFile, SweepSpec};

/// Written into a run directory after a failed attempt: `exit code N`, then the log's end.
pub const FAILED_FILE: &str = "sweep_failed.txt";
/// The trainer's stdout and stderr, appended across attempts.
pub const LOG_FILE: &str = "train.log";

/// One run of a planned sweep: its manifest entry and resolved config.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub entry: RunEntry,
    pub config: TrainConfig,
}

/// Check the spec and expand it into runs; nothing is written.
pub fn plan(spec: &SweepSpec) -> Result<Vec<PlannedRun>> {
    let base_path = &spec.base_config;
    let base_text = std::fs::read_to_string(base_path)
        .with_context(|| format!("reading base config {}", base_path.display()))?;
    TrainConfig::from_toml_str(&base_text, &spec.set)
        .with_context(|| format!("config {} with --set {:?}", base_path.display(), spec.set))?;

    let mut axes: Vec<GridAxis> = spec.grid.clone();
    axes.sort_by(|a, b| a.key.cmp(&b.key));
    for w in axes.windows(2) {
        if w[0].key == w[1].key {
            bail!("--grid {}: the key is given twice", w[0].key);
        }
    }
    for axis in &axes {
        if axis.key == "seed" {
            bail!("--grid seed=...: sweep seeds with --seeds (or `seeds` in the sweep file)");
        }
        if axis.values.is_empty() || axis.values.iter().any(|v| v.trim().is_empty()) {
            bail!(
                "--grid {}: empty value list (give values as {}=A,B,C)",
                axis.key,
                axis.key
            );
        }
        // An unknown key fails here, before any run exists: the override lands in the config
        // table and deserialising it rejects unknown fields.
        for v in &axis.values {
            let mut set = spec.set.clone();
            set.push(format!("{}={}", axis.key, v));
            TrainConfig::from_toml_str(&base_text, &set).with_context(|| {
                format!(
                    "--grid {}={v}: not a valid setting of {} (base config {})",
                    axis.key,
                    axis.key,
                    base_path.display()
                )
            })?;
        }
    }
    let base_seed = TrainConfig::from_toml_str(&base_text, &spec.set)?.seed;
    let seeds = spec.seeds.clone().unwrap_or_else(|| vec![base_seed]);
    if seeds.is_empty() {
        bail!("--seeds: empty list");
    }
    let mut sorted_seeds = seeds.clone();
    sorted_seeds.sort_unstable();
    sorted_seeds.dedup();
    if sorted_seeds.len() != seeds.len() {
        bail!("--seeds {seeds:?}: a seed is repeated");
    }
    let points: usize = axes.iter().map(|a| a.values.len()).product();
    let total = points.saturating_mul(seeds.len());
    if total > spec.max_runs {
        let sizes: Vec<String> = axes
            .iter()
            .map(|a| format!("{} values of {}", a.values.len(), a.key))
            .collect();
        bail!(
            "the sweep has {total} runs ({} x {} seeds), more than --max-runs {}: shrink the grid or raise --max-runs",
            if sizes.is_empty() { "1 point".to_string() } else { sizes.join(" x ") },
            seeds.len(),
            spec.max_runs
        );
    }

    let labels = short_labels(&axes);
    let mut runs = Vec::with_capacity(total);
    let mut names = BTreeMap::new();
    for p in 0..points {
        // Mixed-radix digits of p, the last axis fastest.
        let mut rem = p;
        let mut choice = vec![0usize; axes.len()];
        for (i, a) in axes.iter().enumerate().rev() {
            choice[i] = rem % a.values.len();
            rem /= a.values.len();
        }
        for &seed in &seeds {
            let mut set = spec.set.clone();
            let mut params = BTreeMap::new();
            let mut name_parts = Vec::new();
            for (i, a) in axes.iter().enumerate() {
                let v = &a.values[choice[i]];
                set.push(format!("{}={v}", a.key));
                params.insert(a.key.clone(), v.clone());
                name_parts.push(format!("{}={}", labels[i], name_value(v)));
            }
            set.push(format!("seed={seed}"));
            params.insert("seed".to_string(), seed.to_string());
            name_parts.push(format!("seed={seed}"));
            let name = name_parts.join(",");
            let mut config = TrainConfig::from_toml_str(&base_text, &set)?;
            if let Some(d) = &spec.data {
                config.data.spec = d.clone();
            }
            config
                .check()
                .with_context(|| format!("run {name}: config {}", base_path.display()))?;
            if let Some(other) = names.insert(name.clone(), runs.len()) {
                bail!(
                    "runs {other} and {} would share the directory name {name}",
                    runs.len()
                );
            }
            let index = runs.len();
            runs.push(PlannedRun {
                entry: RunEntry {
                    index,
                    dir: PathBuf::from("runs").join(&name),
                    name,
                    params,
                    seed,
                    status: RunStatus::Queued,
                    error: None,
                },
                config,
            });
        }
    }
    Ok(runs)
}

/// The last component of each key, or the whole key where two axes share a last component.
fn short_labels(axes: &[GridAxis]) -> Vec<String> {
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    axes.iter()
        .map(|a| {
            let l = last(&a.key);
            if axes.iter().filter(|b| last(&b.key) == l).count() > 1 {
                a.key.clone()
            } else {
                l
            }
        })
        .collect()
}

/// A value as it appears in a directory name: strings unquoted, anything outside
/// `[A-Za-z0-9._+-]` replaced by `_`.
fn name_value(v: &str) -> String {
    let v = v.trim();
    let v = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v);
    v.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._+-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Create (or reopen) the sweep directory: check that existing run directories were made from the
/// same configs, write every run's `config.toml`, and the manifest with statuses read from disk.
pub fn prepare(
    sweep_dir: &Path,
    spec: &SweepSpec,
    runs: &[PlannedRun],
    executor: ExecutorKind,
) -> Result<SweepManifest> {
    let previous = if SweepManifest::path(sweep_dir).is_file() {
        Some(SweepManifest::load(sweep_dir)?)
    } else {
        None
    };
    // Check every existing run before writing anything.
    for r in runs {
        let cfg_path = sweep_dir.join(&r.entry.dir).join("config.toml");
        if cfg_path.is_file() {
            let existing = TrainConfig::load(&cfg_path, &[])
                .with_context(|| format!("existing run {}", r.entry.name))?;
            if existing != r.config {
                bail!(
                    "{} holds a run made from a different config than this sweep's run {} \
                     (compare its config.toml); use another --out",
                    sweep_dir.join(&r.entry.dir).display(),
                    r.entry.name
                );
            }
        }
    }
    let mut manifest = SweepManifest {
        version: SWEEP_MANIFEST_VERSION,
        base_config: spec.base_config.clone(),
        data: spec.data.clone(),
        set: spec.set.clone(),
        grid: {
            let mut g = spec.grid.clone();
            g.sort_by(|a, b| a.key.cmp(&b.key));
            g
        },
        seeds: runs.iter().map(|r| r.entry.seed).fold(Vec::new(), |mut v, s| {
            if !v.contains(&s) {
                v.push(s);
            }
            v
        }),
        executor,
        slurm_job: previous.and_then(|p| p.slurm_job),
        runs: runs.iter().map(|r| r.entry.clone()).collect(),
    };
    for r in runs {
        let dir = sweep_dir.join(&r.entry.dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let cfg_path = dir.join("config.toml");
        if !cfg_path.is_file() {
            let text = toml::to_string_pretty(&r.config).context("serialising a run config")?;
            crate::util::write_atomic(&cfg_path, text.as_bytes())?;
        }
    }
    refresh_from_disk(sweep_dir, &mut manifest);
    manifest.save(sweep_dir)?;
    Ok(manifest)
}

/// What a run directory says about its run: done, failed (with the error), partial (a
/// checkpoint to resume from) or queued.
pub fn disk_status(run_dir: &Path) -> (RunStatus, Option<String>) {
    if run_dir.join("metrics.json").is_file() {
        return (RunStatus::Done, None);
    }
    if let Ok(text) = std::fs::read_to_string(run_dir.join(FAILED_FILE)) {
        return (RunStatus::Failed, Some(text.trim().to_string()));
    }
    if has_checkpoint(run_dir) {
        return (RunStatus::Partial, None);
    }
    (RunStatus::Queued, None)
}

/// A last checkpoint exists: the next attempt passes `--resume`.
pub fn has_checkpoint(run_dir: &Path) -> bool {
    crate::train::checkpoint::exists(run_dir, crate::train::CheckpointKind::Last)
}

/// Epochs finished so far (lines of metrics.jsonl).
pub fn epochs_done(run_dir: &Path) -> usize {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0)
}

/// Set every run's status from its directory.
pub fn refresh_from_disk(sweep_dir: &Path, manifest: &mut SweepManifest) {
    for r in &mut manifest.runs {
        let (status, error) = disk_status(&sweep_dir.join(&r.dir));
        r.status = status;
        r.error = error;
    }
}

/// The end of a log: its last `error:` line and what follows it if there is one, else the last
/// `lines` lines.
pub fn log_tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    if let Some(pos) = all.iter().rposition(|l| l.starts_with("error:")) {
        return all[pos..].join("\n");
    }
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Record a failed attempt in the run directory (read back by [`disk_status`]).
pub fn write_failure(run_dir: &Path, exit: &str) -> Result<String> {
    let log = std::fs::read_to_string(run_dir.join(LOG_FILE)).unwrap_or_default();
    let tail = log_tail(&log, 8);
    let text = format!("{exit}\n{tail}\n");
    crate::util::write_atomic(&run_dir.join(FAILED_FILE), text.as_bytes())?;
    Ok(text.trim().to_string())
}

/// One line per run for the terminal: status, name, epochs, and the error of a failed run.
pub fn status_table(sweep_dir: &Path, manifest: &SweepManifest) -> String {
    let mut out = String::new();
    for r in &manifest.runs {
        let dir = sweep_dir.join(&r.dir);
        let epochs = epochs_done(&dir);
        out.push_str(&format!(
            "{:>3} {:<8} {:>3} ep  {}\n",
            r.index,
            r.status.name(),
            epochs,
            r.name
        ));
        if let Some(e) = &r.error {
            for l in e.lines() {
                out.push_str(&format!("             | {l}\n"));
            }
        }
    }
    let counts: Vec<String> = manifest
        .counts()
        .into_iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect();
    out.push_str(&format!("{} runs: {}\n", manifest.runs.len(), counts.join(", ")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path, grid: &[(&str, &[&str])], seeds: Option<Vec<u64>>, max_runs: usize) -> SweepSpec {
        let base = dir.join("base.toml");
        std::fs::write(
            &base,
            "seed = 3\n[model]\nlatent_dim = 4\n[model.conv]\ndownsizings = 2\nfirst_filters = 4\n",
        )
        .unwrap();
        SweepSpec {
            base_config: base,
            data: Some("norb:/nowhere".into()),
            set: vec!["train.max_epochs=2".into()],
            grid: grid
                .iter()
                .map(|(k, v)| GridAxis {
                    key: k.to_string(),
                    values: v.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
            seeds,
            max_runs,
        }
    }

    #[test]
    fn a_grid_expands_into_named_runs_with_resolved_configs() {
        let tmp = tempfile::tempdir().unwrap();
        let s = spec(
            tmp.path(),
            &[
                ("model.latent_dim", &["10", "32"]),
                ("model.conv.first_filters", &["8", "16", "4"]),
            ],
            Some(vec![0, 1]),
            256,
        );
        let runs = plan(&s).unwrap();
        assert_eq!(runs.len(), 12);
        assert_eq!(runs[0].entry.name, "first_filters=8,latent_dim=10,seed=0");
        assert_eq!(runs[1].entry.name, "first_filters=8,latent_dim=10,seed=1");
        assert_eq!(runs[2].entry.name, "first_filters=8,latent_dim=32,seed=0");
        let last = &runs[11];
        assert_eq!(last.entry.name, "first_filters=4,latent_dim=32,seed=1");
        assert_eq!(last.config.model.latent_dim, 32);
        assert_eq!(last.config.model.conv.first_filters, 4);
        assert_eq!(last.config.seed, 1);
        assert_eq!(last.config.train.max_epochs, 2);
        assert_eq!(last.config.data.spec, "norb:/nowhere");
        // Without --seeds: the config's seed.
        let one = plan(&spec(tmp.path(), &[("model.latent_dim", &["5"])], None, 256)).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].entry.name, "latent_dim=5,seed=3");
    }

    #[test]
    fn bad_grids_fail_before_anything_is_written() {
        let tmp = tempfile::tempdir().unwrap();
        let err = |grid: &[(&str, &[&str])], seeds: Option<Vec<u64>>, max: usize| {
            format!("{:#}", plan(&spec(tmp.path(), grid, seeds, max)).unwrap_err())
        };
        let e = err(&[("model.latent_dimm", &["3"])], None, 256);
        assert!(
            e.contains("model.latent_dimm") && e.contains("unknown field"),
            "{e}"
        );
        let e = err(&[("model.latent_dim", &[])], None, 256);
        assert!(e.contains("empty value list"), "{e}");
        let e = err(&[("model.latent_dim", &["1", "2", "3"])], Some(vec![0, 1]), 5);
        assert!(e.contains("6 runs") && e.contains("--max-runs 5"), "{e}");
        let e = err(&[("model.latent_dim", &["0"])], None, 256);
        assert!(e.contains("latent_dim must be at least 1"), "{e}");
        let e = err(&[("model.latent_dim", &["x y"])], None, 256);
        assert!(e.contains("model.latent_dim=x y"), "{e}");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }
}
