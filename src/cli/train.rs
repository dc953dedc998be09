//! `norbvae train`: train a VAE from a TOML config (see `configs/`).
use crate::cli::common::DataArgs;
use crate::cli::common::DeviceArgs;
use crate::format::run_dir::Intent;
use crate::train::{self, TrainConfig};
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Training config (TOML). With --resume it may be left out: the run's config.toml is used.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Run directory (default: runs/<config name>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Override a config key, e.g. --set model.latent_dim=32 --set train.max_epochs=5 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Replace the run already in --out (its files are deleted first).
    #[arg(long, conflicts_with = "resume")]
    pub force: bool,
}

pub fn run(args: Args) -> Result<()> {
    args.device.select()?;
    let out = match (&args.out, &args.config) {
        (Some(o), _) => o.clone(),
        (None, Some(c)) => {
            let stem = c
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or("run".into());
            PathBuf::from("runs").join(stem)
        }
        (None, None) => anyhow::bail!("give --config FILE (or --out RUN_DIR with --resume)"),
    };
    let config_path = match (&args.config, args.resume) {
        (Some(c), _) => c.clone(),
        (None, true) => out.join("config.toml"),
        (None, false) => anyhow::bail!("--config FILE is required (only --resume can reuse a run's config)"),
    };
    let mut cfg = TrainConfig::load(&config_path, &args.set)?;
    cfg.data = args.data.apply(cfg.data);
    let cfg = cfg
        .check()
        .with_context(|| format!("config {}", config_path.display()))?;
    let intent = match (args.resume, args.force) {
        (true, true) => anyhow::bail!("--resume continues the run in --out, --force replaces it: give one"),
        (true, false) => Intent::Resume,
        (false, true) => Intent::Replace,
        (false, false) => Intent::New,
    };
    crate::util::signals::install().context("installing signal handlers")?;
    let summary = train::train_from_config_with(&cfg, &out, intent).map_err(|e| {
        if e.downcast_ref::<crate::util::signals::Interrupted>().is_none() {
            e
        } else if train::checkpoint::exists(&out, train::CheckpointKind::Last) {
            e.context(format!(
                "training {} stopped; its unfinished epoch is dropped: resume with `norbvae train --out {} --resume`",
                out.display(),
                out.display()
            ))
        } else {
            e.context(format!(
                "training {} stopped before its first epoch finished: start it again (without --resume)",
                out.display()
            ))
        }
    })?;
    println!("{}", train::summary_text(&summary, &out));
    // Where the steps' time went, per kernel (NORBVAE_KERNEL_PROFILE=1; empty otherwise).
    eprint!("{}", crate::kernels::profile_report());
    Ok(())
}
