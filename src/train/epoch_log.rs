//! What a run shows while it trains, besides the progress bar: TensorBoard event files under the
//! run's `tb/` and `metrics.csv` beside `metrics.jsonl`.
//!
//! The trainer calls [`EpochLogger`] at four points: [`EpochLogger::open`] once its state is
//! known (fresh or resumed), [`EpochLogger::step`] after each optimisation step,
//! [`EpochLogger::epoch`] with each finished [`EpochRecord`], and [`EpochLogger::finish`]. Every
//! event is at the global optimisation step (1-based), so per-step and per-epoch curves share one
//! x axis and TensorBoard's restart marker drops what a killed run logged after its checkpoint.
//! Logging only reads the model (evaluation mode, its own RNG streams): a run's numbers are the
//! same with TensorBoard on or off.
use super::metrics::reconstruct;
use super::pictures::prior_samples;
use super::session::Session;
use crate::data::{ImageSet, Splits};
use crate::format::{EpochRecord, StopReason};
use crate::util::tensorboard::{flatten_hparams, EventWriter, SessionStatus};
use crate::util::{RunDir, SeededRng};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// `[train.tensorboard]` in the config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TensorBoardOptions {
    /// Write TensorBoard event files under the run's `tb/` (`tensorboard --logdir RUN/tb`, or a
    /// parent directory to compare runs).
    pub enabled: bool,
    /// Log the training loss of every this-many-th optimisation step.
    pub every_steps: usize,
    /// Log reconstructions and prior samples after epoch 1 and every this-many-th epoch.
    pub images_every_epochs: usize,
}

impl Default for TensorBoardOptions {
    fn default() -> Self {
        Self {
            enabled: true,
            every_steps: 10,
            images_every_epochs: 5,
        }
    }
}

impl TensorBoardOptions {
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.every_steps == 0 {
            return Err("train.tensorboard.every_steps must be at least 1".into());
        }
        if self.images_every_epochs == 0 {
            return Err("train.tensorboard.images_every_epochs must be at least 1".into());
        }
        Ok(())
    }
}

/// The run's TensorBoard writer (a no-op when `train.tensorboard.enabled` is false).
pub struct EpochLogger {
    writer: Option<EventWriter>,
    opts: TensorBoardOptions,
    run: RunDir,
}

impl EpochLogger {
    /// Start a new event file in `RUN/tb/`, with the resolved config as hyperparameters when the
    /// run starts. `steps_done`: optimisation steps already taken (0, or the resumed checkpoint's).
    pub fn open(run: &RunDir, config: &super::TrainConfig, steps_done: u64) -> Result<Self> {
        let opts = config.train.tensorboard.clone();
        let writer = if opts.enabled {
            let mut w = EventWriter::create(&run.path("tb"))?;
            w.restart_at(steps_done + 1)?;
            // TensorBoard keeps the first session-start record of a run: a resumed run keeps the
            // hyperparameters it started with.
            if steps_done == 0 {
                w.hparams(&flatten_hparams(config)?)?;
            }
            w.flush()?;
            Some(w)
        } else {
            None
        };
        Ok(Self {
            writer,
            opts,
            run: run.clone(),
        })
    }

    /// After optimisation step `step` (1-based, counted over the whole run).
    pub fn step(&mut self, step: u64, loss: f64) -> Result<()> {
        match &mut self.writer {
            Some(w) if step.is_multiple_of(self.opts.every_steps as u64) => {
                w.scalar("train/step_loss", step, loss)
            }
            _ => Ok(()),
        }
    }

    /// After an epoch: its losses, KL weight, learning rate and speed; every
    /// `images_every_epochs` the reconstructions of the first validation images (training images
    /// when there is no validation split) and samples from the prior. Flushed, so a live
    /// TensorBoard shows the epoch.
    pub fn epoch(
        &mut self,
        s: &Session,
        splits: &Splits,
        rec: &EpochRecord,
        step: u64,
        lr: f64,
    ) -> Result<()> {
        let Some(w) = &mut self.writer else {
            return Ok(());
        };
        let mut scalars = vec![
            ("epoch", rec.epoch as f64),
            ("train/loss", rec.train_loss),
            ("train/rec", rec.train_rec),
            ("train/kl", rec.train_kl),
            ("val/loss", rec.val_loss),
            ("val/neg_elbo", rec.val_neg_elbo),
            ("val/rec", rec.val_rec),
            ("val/kl", rec.val_kl),
            ("kl/beta", rec.beta),
            ("opt/lr", lr),
            ("speed/train_img_per_s", rec.train_images_per_second),
            ("time/epoch_seconds", rec.seconds),
        ];
        if let Some(f) = rec.val_on_floor {
            scalars.push(("val/on_floor", f));
        }
        for (tag, v) in [
            ("opt/skipped_updates", rec.skipped_updates.map(|n| n as f64)),
            ("opt/clipped_updates", rec.clipped_updates.map(|n| n as f64)),
            ("opt/grad_norm", rec.grad_norm),
        ] {
            if let Some(v) = v {
                scalars.push((tag, v));
            }
        }
        // Hierarchical VAE: `kl/group_<g>` as trained, `val/kl_group_<g>` on the validation split.
        let mut group_scalars = Vec::new();
        for (prefix, groups) in [
            ("kl/group_", &rec.train_kl_groups),
            ("val/kl_group_", &rec.val_kl_groups),
        ] {
            for (g, v) in groups.iter().flatten().enumerate() {
                group_scalars.push((format!("{prefix}{g}"), *v));
            }
        }
        scalars.extend(group_scalars.iter().map(|(t, v)| (t.as_str(), *v)));
        w.scalars(step, &scalars)?;
        let every = self.opts.images_every_epochs;
        if rec.epoch == 1 || rec.epoch.is_multiple_of(every) {
            let set = if splits.val.n > 0 {
                &splits.val
            } else {
                &splits.train
            };
            let (recon, samples) = pictures(s, set, &self.run)?;
            w.png_bytes("images/reconstructions", step, recon)?;
            w.png_bytes("images/prior_samples", step, samples)?;
        }
        w.flush()
    }

    /// The HParams plugin's end-of-session record (failure when training diverged).
    pub fn finish(&mut self, stop: StopReason) -> Result<()> {
        let Some(w) = &mut self.writer else {
            return Ok(());
        };
        let status = if stop == StopReason::Diverged {
            SessionStatus::Failure
        } else {
            SessionStatus::Success
        };
        w.session_end(status)?;
        w.flush()
    }
}

/// PNG bytes of the reconstruction grid (originals beside decoder means) and of prior samples,
/// drawn as the run's own `recon_*.png` / `samples_prior.png`.
fn pictures(s: &Session, set: &ImageSet, run: &RunDir) -> Result<(Vec<u8>, Vec<u8>)> {
    let n = s.config.train.grid_images.max(1);
    let set = set.head(n);
    let (c, h, w) = s.input.image_shape();
    let cols = (n as f64).sqrt().ceil().max(1.0) as usize;
    let recon = reconstruct(s, &s.input.to_model(&set)?)?;
    // A fixed stream: the same latents every time, so the pictures show the decoder changing.
    let samples = prior_samples(s, n, &mut SeededRng::derived(s.config.seed, "tb-samples"))?;
    let scratch = run.path("tb").join(".picture.png");
    let read_back = |scratch: &std::path::Path| -> Result<Vec<u8>> {
        let bytes = std::fs::read(scratch).with_context(|| format!("reading {}", scratch.display()))?;
        std::fs::remove_file(scratch).with_context(|| format!("removing {}", scratch.display()))?;
        Ok(bytes)
    };
    crate::data::grid::save_recon_grid(&scratch, &set.images, &recon, set.n, c, h, w, cols)?;
    let recon_png = read_back(&scratch)?;
    crate::data::grid::save_grid(&scratch, &samples, n, c, h, w, cols)?;
    let samples_png = read_back(&scratch)?;
    Ok((recon_png, samples_png))
}

/// `metrics.csv`: one row per epoch, the columns of [`EpochRecord`] (an empty cell where a value
/// does not apply), rewritten whole and atomically like `metrics.jsonl`. A hierarchical VAE's
/// per-group KL lists become columns `train_kl_group_0`, ..., `val_kl_group_0`, ... at the end.
pub fn write_csv(run: &RunDir, history: &[EpochRecord]) -> Result<()> {
    run.write("metrics.csv", &csv_bytes(history)?)?;
    Ok(())
}

fn csv_bytes(history: &[EpochRecord]) -> Result<Vec<u8>> {
    let groups = |pick: fn(&EpochRecord) -> &Option<Vec<f64>>| {
        history
            .iter()
            .filter_map(|r| pick(r).as_ref().map(Vec::len))
            .max()
            .unwrap_or(0)
    };
    let (n_train, n_val) = (groups(|r| &r.train_kl_groups), groups(|r| &r.val_kl_groups));
    // The scalar columns, as serde names them (the lists are left out here).
    let mut scalars = csv::Writer::from_writer(Vec::new());
    for r in history {
        let mut r = r.clone();
        r.train_kl_groups = None;
        r.val_kl_groups = None;
        scalars.serialize(&r).context("metrics.csv")?;
    }
    let scalars = scalars
        .into_inner()
        .map_err(|e| anyhow::anyhow!("metrics.csv: {e}"))?;
    if n_train + n_val == 0 {
        return Ok(scalars);
    }
    let mut rows = csv::Reader::from_reader(scalars.as_slice());
    let mut header = rows.headers().context("metrics.csv")?.clone();
    for g in 0..n_train {
        header.push_field(&format!("train_kl_group_{g}"));
    }
    for g in 0..n_val {
        header.push_field(&format!("val_kl_group_{g}"));
    }
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&header).context("metrics.csv")?;
    for (row, r) in rows.records().zip(history) {
        let mut row = row.context("metrics.csv")?;
        for (list, n) in [(&r.train_kl_groups, n_train), (&r.val_kl_groups, n_val)] {
            for g in 0..n {
                let cell = list.as_ref().and_then(|v| v.get(g)).map(|v| v.to_string());
                row.push_field(cell.as_deref().unwrap_or(""));
            }
        }
        w.write_record(&row).context("metrics.csv")?;
    }
    w.into_inner().map_err(|e| anyhow::anyhow!("metrics.csv: {e}"))
}
