//! `norbvae train` as a library call: a checked config in, a trained run directory out.
use super::config::ValidTrainConfig;
use crate::format::run_dir::Intent;
use crate::format::VaeMetrics;
use anyhow::Result;
use std::path::Path;

/// Load the config's data and train (or resume) into `out`.
pub fn train_from_config(cfg: &ValidTrainConfig, out: &Path, resume: bool) -> Result<VaeMetrics> {
    train_from_config_with(cfg, out, if resume { Intent::Resume } else { Intent::New })
}

/// [`train_from_config`] with `--force` ([`Intent::Replace`]) as a choice too.
pub fn train_from_config_with(cfg: &ValidTrainConfig, out: &Path, intent: Intent) -> Result<VaeMetrics> {
    let splits = crate::data::load(&cfg.data)?;
    eprintln!(
        "data {}: {} train / {} val / {} test images of {}x{}x{}",
        splits.name,
        splits.train.n,
        splits.val.n,
        splits.test.n,
        splits.train.channels,
        splits.train.height,
        splits.train.width
    );
    super::trainer::train_with(cfg, &splits, out, intent)
}

/// The lines `norbvae train` prints at the end: how training stopped, each split's metrics.
pub fn summary_text(summary: &VaeMetrics, out: &Path) -> String {
    let mut lines = vec![format!(
        "trained {} epochs (best {}), stopped because: {}",
        summary.epochs_run,
        summary.best_epoch,
        summary.stopped_because.name()
    )];
    for (split, m) in &summary.metrics {
        lines.push(format!(
            "{split:>5}: neg-ELBO {:.2} nats (rec {:.2}, KL {:.2}), MSE {:.5}, PSNR {:.2} dB",
            m.neg_elbo, m.rec, m.kl, m.mse, m.psnr
        ));
    }
    lines.push(format!("results in {}", out.display()));
    lines.join("\n")
}
