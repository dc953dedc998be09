//! The experiment pipeline (`norbvae reproduce`, `norbvae demo` in `demo.rs`; `reproduce.rs`: its presets as a sweep): PCA at
//! the log's component counts (plus the VAEs' latent sizes, so every VAE has a PCA point to compare
//! with), the log's four VAE presets, the sigma-VAE variants and a tanh-output PCA-VAE, `eval` of
//! every VAE, written answers to the log's questions, and the report.
//!
//! Each step calls the library workflow behind its command ([`crate::pca::run_baseline`],
//! [`crate::train::train_from_config`], [`crate::eval::evaluate_run`]) with typed options, so a
//! reproduction runs exactly the documented workflow. A run directory that already has results is
//! reused, so an interrupted reproduction continues where it stopped.
pub mod demo;
pub mod ladder;
pub mod reproduce;

pub use demo::{demo, DemoOptions, DemoSummary};
pub use reproduce::ReproduceExecutor;

use crate::data::DataOptions;
use crate::eval::{evaluate_run, EvalOptions};
use crate::pca::BaselineOptions;
use crate::report::{answers, build_report, ReportOptions, RunInfo};
use crate::train::TrainConfig;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The log's experiments as shipped in `configs/` (embedded, so the binary is self-contained),
/// with any extra overrides that make a variant.
pub const PRESETS: [(&str, &str, &[&str]); 7] = [
    (
        "basic-convolutional-vae",
        include_str!("../../configs/basic-convolutional-vae.toml"),
        &[],
    ),
    (
        "fitted-variance-convolutional-vae",
        include_str!("../../configs/fitted-variance-convolutional-vae.toml"),
        &[],
    ),
    (
        "sigma-vae-convolutional-vae",
        include_str!("../../configs/sigma-vae-convolutional-vae.toml"),
        &[],
    ),
    ("pca-vae", include_str!("../../configs/pca-vae.toml"), &[]),
    (
        "pca-vae-tanh",
        include_str!("../../configs/pca-vae.toml"),
        &["likelihood.output_activation=\"tanh\""],
    ),
    (
        "pca-vae-fitted-variance",
        include_str!("../../configs/pca-vae-fitted-variance.toml"),
        &[],
    ),
    (
        "pca-vae-sigma",
        include_str!("../../configs/pca-vae-sigma.toml"),
        &[],
    ),
];

#[derive(Debug, Clone)]
pub struct ReproduceOptions {
    pub data: DataOptions,
    pub out: PathBuf,
    /// Preset names to run (default: all of [`PRESETS`]).
    pub presets: Vec<String>,
    /// PCA component counts (clamped to what the data allows).
    pub pca_components: Vec<usize>,
    /// `--set` overrides for every VAE (e.g. train.max_epochs=5).
    pub train_overrides: Vec<String>,
    /// `--set` overrides for the conv presets only (e.g. model.conv.downsizings=5 for 32x32).
    pub conv_overrides: Vec<String>,
    pub eval: EvalOptions,
    pub title: String,
    /// Train the presets through the sweep machinery (None: in this process, one by one).
    pub executor: Option<ReproduceExecutor>,
    /// The improvement ladder's steps instead of [`PRESETS`] (`reproduce --ladder`; see
    /// [`ladder`]): `presets` is then ignored, `data` should be [`ladder::shared_data`].
    pub ladder: Option<Vec<crate::train::ladder::LadderStep>>,
    /// Finished (and evaluated) runs trained outside the reproduction, shown in the report beside
    /// the presets (the demo's showcase).
    pub extra_runs: Vec<PathBuf>,
}

impl ReproduceOptions {
    pub fn new(data: DataOptions, out: PathBuf) -> Self {
        Self {
            data,
            out,
            presets: PRESETS.iter().map(|p| p.0.to_string()).collect(),
            pca_components: vec![10, 100, 128, 500, 1000, 2000],
            train_overrides: vec![],
            conv_overrides: vec![],
            eval: EvalOptions::default(),
            title: "norbvae: the experiment log, reproduced".into(),
            executor: None,
            ladder: None,
            extra_runs: vec![],
        }
    }
}

fn progress(i: usize, total: usize, what: &str, started: Instant) {
    eprintln!(
        "\n[{i}/{total}] {what}  (elapsed {:.0} s)",
        started.elapsed().as_secs_f64()
    );
}

/// The whole pipeline. Returns the report's path (with the print executor: the batch script's,
/// nothing trained).
pub fn reproduce(opts: &ReproduceOptions) -> Result<PathBuf> {
    let started = Instant::now();
    // (name, config text, the variant's overrides)
    let presets: Vec<(String, String, Vec<String>)> = match &opts.ladder {
        Some(steps) => steps
            .iter()
            .map(|s| (s.name.clone(), s.config.clone(), vec![]))
            .collect(),
        None => opts
            .presets
            .iter()
            .map(|name| {
                let p = PRESETS.iter().find(|p| p.0 == name).with_context(|| {
                    format!(
                        "unknown preset {name:?}; known: {}",
                        PRESETS.map(|p| p.0).join(", ")
                    )
                })?;
                Ok((
                    p.0.to_string(),
                    p.1.to_string(),
                    p.2.iter().map(|s| s.to_string()).collect(),
                ))
            })
            .collect::<Result<_>>()?,
    };
    std::fs::create_dir_all(&opts.out).with_context(|| format!("creating {}", opts.out.display()))?;
    // The presets ask for 64x64 images; smaller datasets (Fashion-MNIST, a 32x32 synthetic NORB)
    // keep their native size unless --image-size says otherwise.
    let mut data = opts.data.clone();
    let mut splits = crate::data::load(&data)?;
    if data.image_size.is_none() {
        if splits.train.height > 64 {
            data.image_size = Some(64);
            splits = crate::data::load(&data)?;
        } else {
            data.image_size = Some(splits.train.height);
        }
    }
    let (n, d) = (splits.train.n, splits.train.dim());
    eprintln!(
        "data {}: {} train / {} val / {} test images of {}x{}x{}",
        splits.name,
        n,
        splits.val.n,
        splits.test.n,
        splits.train.channels,
        splits.train.height,
        splits.train.width
    );
    let max_k = n.min(d);
    let mut ks: Vec<usize> = opts
        .pca_components
        .iter()
        .copied()
        .filter(|&k| k >= 1 && k <= max_k)
        .collect();
    if ks.is_empty() {
        ks.push(max_k.clamp(1, 10));
    }
    let configs = opts.out.join("configs");
    // The ladder: every step's resolved config, checked against a run already in its directory
    // before anything runs, and its code size among PCA's components.
    let mut ladder_ks = Vec::new();
    if let Some(steps) = &opts.ladder {
        for (name, text, extra) in &presets {
            let cfg_path = configs.join(format!("{name}.toml"));
            crate::util::write_atomic(&cfg_path, text.as_bytes())?;
            let mut sets = extra.clone();
            sets.extend(opts.conv_overrides.iter().cloned());
            sets.extend(opts.train_overrides.iter().cloned());
            let cfg = preset_config(&cfg_path, &sets, &data)?;
            let k = ladder::code_size(
                &cfg,
                splits.train.channels,
                splits.train.height,
                splits.train.width,
            )
            .with_context(|| format!("ladder step {name}: building its model"))?;
            if k > max_k {
                eprintln!("  ladder step {name}: code size {k} is more than PCA's {max_k} components");
            } else {
                ladder_ks.push(k);
            }
            let seeds: Vec<Option<u64>> = match opts.executor.as_ref().and_then(|x| x.seeds.clone()) {
                Some(seeds) => seeds.into_iter().map(Some).collect(),
                None => vec![None],
            };
            for seed in seeds {
                let mut c = cfg.clone();
                if let Some(s) = seed {
                    c.seed = s;
                }
                ladder::check_existing_run(&opts.out.join(reproduce::run_name(name, seed)), name, &c)?;
            }
        }
        ladder::write_manifest(&opts.out, steps)?;
        ks.extend(ladder_ks.iter().copied());
    }
    ks.sort_unstable();
    ks.dedup();
    let kmax = *ks.last().unwrap_or(&1);
    let total = 2 + presets.len() * 2;
    let mut step = 1;

    let mut failures = Vec::new();

    // PCA.
    let pca_dir = opts.out.join("pca");
    progress(step, total, &format!("PCA with k = {ks:?}"), started);
    let pca_done = pca_dir.join("metrics.json").is_file() && pca_dir.join("pca.safetensors").is_file();
    let pca_missing = if pca_done && opts.ladder.is_some() {
        ladder::pca_missing(&pca_dir, &data, &ladder_ks)?
    } else {
        vec![]
    };
    if pca_done && pca_missing.is_empty() {
        eprintln!("  reusing {}", pca_dir.display());
    } else {
        let mut pca_opts = BaselineOptions::new(data.clone(), ks.clone(), pca_dir.clone());
        if !pca_missing.is_empty() {
            eprintln!(
                "  {} has no components k = {pca_missing:?} (ladder code sizes): fitting it again",
                pca_dir.display()
            );
            pca_opts.force = true;
        }
        if let Err(e) = crate::pca::run_baseline(&pca_opts)
            .map(|m| println!("{}", crate::pca::summary_text(&m, &pca_dir)))
        {
            // The PCA-VAEs fit their own PCA when there is no saved model; the report says what failed.
            eprintln!("  PCA failed: {e:#}");
            failures.push(format!("pca: {e:#}"));
        }
    }
    step += 1;
    let pca_model = pca_dir.join("pca.safetensors");

    // VAE presets: train, then evaluate.
    let preset_sets = |name: &str, extra: &[String]| {
        let mut sets: Vec<String> = extra.to_vec();
        if opts.ladder.is_none() && name.starts_with("pca-vae") {
            let comps = 500.min(kmax);
            sets.push(format!("model.dense.components={comps}"));
            if pca_model.is_file() {
                sets.push(format!("model.dense.pca_model=\"{}\"", pca_model.display()));
            }
        } else {
            sets.extend(opts.conv_overrides.iter().cloned());
        }
        sets.extend(opts.train_overrides.iter().cloned());
        sets
    };
    // With an executor, every preset's run trains first, through the sweep machinery.
    let mut swept: Option<reproduce::Trained> = None;
    if let Some(x) = &opts.executor {
        progress(
            step,
            total,
            &format!("training {} presets ({:?} executor)", presets.len(), x.kind),
            started,
        );
        let mut resolved = Vec::new();
        for (name, text, extra) in &presets {
            let cfg_path = configs.join(format!("{name}.toml"));
            crate::util::write_atomic(&cfg_path, text.as_bytes())?;
            resolved.push((
                name.to_string(),
                preset_config(&cfg_path, &preset_sets(name, extra), &data)?,
            ));
        }
        let runs = reproduce::preset_runs(&resolved, x.seeds.as_deref())?;
        match reproduce::train_presets(&opts.out, &data.spec, &opts.train_overrides, x, &runs)? {
            reproduce::Outcome::Printed(script) => return Ok(script),
            reproduce::Outcome::Trained(t) => swept = Some(t),
        }
    }
    for (name, text, extra) in &presets {
        let run_dirs: Vec<PathBuf> = if let Some(reproduce::Trained { done, failed }) = &swept {
            step += 1;
            for (_, run, e) in failed.iter().filter(|f| f.0 == *name) {
                eprintln!("  {run} failed: {e}");
                failures.push(format!("{run}: training failed: {e}"));
            }
            done.iter()
                .filter(|d| d.0 == *name)
                .map(|d| d.1.clone())
                .collect()
        } else {
            let run_dir = opts.out.join(name);
            progress(step, total, &format!("training {name}"), started);
            step += 1;
            if run_dir.join("metrics.json").is_file() && run_dir.join("checkpoints").is_dir() {
                eprintln!("  reusing {}", run_dir.display());
            } else {
                let cfg_path = configs.join(format!("{name}.toml"));
                crate::util::write_atomic(&cfg_path, text.as_bytes())?;
                // A ladder step's unfinished run (its config checked equal above) resumes from its
                // last checkpoint, exactly as `norbvae train --resume` would.
                let resume = opts.ladder.is_some()
                    && crate::train::checkpoint::exists(&run_dir, crate::train::CheckpointKind::Last);
                if resume {
                    eprintln!("  resuming {} from its last checkpoint", run_dir.display());
                }
                if let Err(e) = train_preset(&cfg_path, &preset_sets(name, extra), &data, &run_dir, resume) {
                    eprintln!("  {name} failed: {e:#}");
                    failures.push(format!("{name}: training failed: {e:#}"));
                    step += 1;
                    continue;
                }
            }
            vec![run_dir]
        };
        progress(step, total, &format!("evaluating {name}"), started);
        step += 1;
        for run_dir in run_dirs {
            let has_eval =
                crate::format::read_json::<crate::format::RunMetrics>(&run_dir.join("metrics.json"))
                    .is_ok_and(|m| matches!(m, crate::format::RunMetrics::Vae(v) if v.eval.is_some()));
            if has_eval {
                eprintln!("  reusing the evaluation in {}", run_dir.display());
            } else if let Err(e) = evaluate_run(&run_dir, &opts.eval) {
                eprintln!("  evaluating {} failed: {e:#}", run_dir.display());
                failures.push(format!("{name}: evaluation failed: {e:#}"));
            }
        }
    }

    // Answers and the report.
    progress(total, total, "report", started);
    let mut dirs: Vec<PathBuf> = [pca_dir]
        .into_iter()
        .filter(|d| d.join("metrics.json").is_file())
        .collect();
    match &swept {
        Some(t) => dirs.extend(t.done.iter().map(|d| d.1.clone())),
        None => dirs.extend(
            presets
                .iter()
                .map(|p| opts.out.join(&p.0))
                .filter(|d| d.join("metrics.json").is_file()),
        ),
    }
    dirs.extend(
        opts.extra_runs
            .iter()
            .filter(|d| d.join("metrics.json").is_file())
            .cloned(),
    );
    let runs: Vec<RunInfo> = dirs.iter().map(|d| RunInfo::load(d)).collect::<Result<_>>()?;
    let mut qa = answers::answers(&runs);
    if !failures.is_empty() {
        let mut a = answers::Answer::new(
            "Runs that did not finish",
            &format!(
                "{} step(s) failed; the report shows what finished.",
                failures.len()
            ),
        );
        a.notes = failures.clone();
        qa.push(a);
    }
    let out = opts.out.join("report.html");
    let report_opts = ReportOptions {
        title: opts.title.clone(),
        subtitle: Some(format!(
            "data {} ({} train / {} val / {} test images of {}x{}x{}); {} {}; {:.0} s",
            splits.name,
            n,
            splits.val.n,
            splits.test.n,
            splits.train.channels,
            splits.train.height,
            splits.train.width,
            presets.len(),
            if opts.ladder.is_some() {
                "ladder steps"
            } else {
                "VAE presets"
            },
            started.elapsed().as_secs_f64()
        )),
        answers: qa,
    };
    build_report(&dirs, &out, &report_opts)?;
    if swept.is_some() {
        // The presets' sweep (seeds side by side, stopping conditions, PCA at k = latent_dim).
        let view = opts.out.join("sweep_report.html");
        crate::report::sweep::build_sweep_report(&opts.out, &view, &Default::default())?;
        eprintln!("sweep view of the presets: {}", view.display());
    }
    Ok(out)
}

/// `norbvae train --config CONFIG --out RUN_DIR [data options] --set ...` as a library call:
/// the config with its overrides, the data options over the config's `[data]`, checked once.
pub(crate) fn train_preset(
    config: &Path,
    sets: &[String],
    data: &DataOptions,
    out: &Path,
    resume: bool,
) -> Result<()> {
    let cfg = preset_config(config, sets, data)?
        .check()
        .with_context(|| format!("config {}", config.display()))?;
    let summary = crate::train::train_from_config(&cfg, out, resume)?;
    println!("{}", crate::train::summary_text(&summary, out));
    Ok(())
}

/// The config with its overrides and the data options over its `[data]`, checked.
fn preset_config(config: &Path, sets: &[String], data: &DataOptions) -> Result<TrainConfig> {
    let mut cfg = TrainConfig::load(config, sets)?;
    cfg.data = override_data(cfg.data, data);
    cfg.check()
        .with_context(|| format!("config {}", config.display()))?;
    Ok(cfg)
}

/// `data`'s options over a config's: every option `reproduce` decides replaces the config's;
/// the optional ones it leaves unset (validation instances, limit, size) keep the config's.
fn override_data(config: DataOptions, data: &DataOptions) -> DataOptions {
    DataOptions {
        spec: data.spec.clone(),
        camera: data.camera,
        image_size: data.image_size.or(config.image_size),
        val_fraction: data.val_fraction,
        val_instances: data.val_instances.clone().or(config.val_instances),
        limit: data.limit.or(config.limit),
        seed: data.seed,
    }
}
