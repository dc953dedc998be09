//! `norbvae train` as a library call: a checked config in, a trained run directory out.
use super::config::ValidTrainConfig;
use crate::format::VaeMetrics;
use anyhow::Result;
use std::path::Path;

/// Load the config's data and train (or resume) into `out`.
pub fn train_from_config(cfg: &ValidTrainConfig, out: &Path, resume: bool) -> Result<VaeMetrics> {
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
    super::train(cfg, &splits, out, resume)
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
