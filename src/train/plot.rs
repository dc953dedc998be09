//! The loss-curve PNG: training and validation loss per epoch, the best epoch (lowest
//! validation loss) marked, drawn by `crate::plot` (a y range that covers every epoch).
use crate::format::EpochRecord;
use anyhow::Result;
use std::path::Path;

pub fn loss_curve(path: &Path, history: &[EpochRecord]) -> Result<()> {
    let series = |get: fn(&EpochRecord) -> f64| -> Vec<(f64, f64)> {
        history.iter().map(|r| (r.epoch as f64, get(r))).collect()
    };
    let best = history
        .iter()
        .filter(|r| r.val_loss.is_finite())
        .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss))
        .map(|r| (r.epoch as f64, r.val_loss));
    crate::plot::loss_curves(
        "Training and validation loss",
        "loss (nats per image)",
        &[
            ("train (minimised objective)", series(|r| r.train_loss)),
            ("validation (rec + beta KL)", series(|r| r.val_loss)),
        ],
        best,
    )
    .save_png(path)
}
