//! The training loop: Adam on the (beta-weighted) negative ELBO, validation after every epoch,
//! early stopping with patience / min-delta (and the reason recorded), best / last checkpoints,
//! exact resume, and divergence detection that keeps the last good checkpoint.
use super::checkpoint::{self, CheckpointKind};
use super::config::TrainConfig;
use super::early_stop::EarlyStopping;
use super::input::{InputMap, ModelData};
use super::metrics::{self, SplitMetrics};
use super::optim::{Adam, AdamParams};
use crate::data::{Split, Splits};
use crate::model::{kl, Mode, ParamStore, Vae};
use crate::util::{RunDir, SeededRng};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The validation loss did not improve by min_delta for `patience` epochs.
    Patience,
    /// `max_epochs` reached.
    MaxEpochs,
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    Diverged,
}

impl StopReason {
    pub fn name(self) -> &'static str {
        match self {
            StopReason::Patience => "patience",
            StopReason::MaxEpochs => "max_epochs",
            StopReason::Diverged => "diverged",
        }
    }
}

/// One line of metrics.jsonl.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// The minimised objective (beta, warm-up and free bits applied), nats per image.
    pub train_loss: f64,
    pub train_rec: f64,
    pub train_kl: f64,
    /// Validation loss as monitored: rec + beta * kl (full beta, no free bits), nats per image.
    pub val_loss: f64,
    pub val_neg_elbo: f64,
    pub val_rec: f64,
    pub val_kl: f64,
    /// KL weight at the end of the epoch.
    pub beta: f64,
    pub seconds: f64,
    pub train_images_per_second: f64,
    /// Learned variances: fraction of validation outputs on the log-variance floor.
    pub val_on_floor: Option<f64>,
}

/// Everything needed to continue a run exactly where it stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub epochs_done: usize,
    pub steps: u64,
    pub early_stopping: EarlyStopping,
    pub shuffle_rng: SeededRng,
    pub noise_rng: SeededRng,
    pub history: Vec<EpochRecord>,
    pub stopped_because: Option<StopReason>,
}

impl TrainState {
    fn new(seed: u64) -> Self {
        Self {
            epochs_done: 0,
            steps: 0,
            early_stopping: EarlyStopping::default(),
            shuffle_rng: SeededRng::derived(seed, "shuffle"),
            noise_rng: SeededRng::derived(seed, "noise"),
            history: Vec::new(),
            stopped_because: None,
        }
    }
}

/// What a finished `train` call reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainSummary {
    pub kind: String,
    pub epochs_run: usize,
    pub best_epoch: usize,
    pub stopped_because: StopReason,
    pub metrics: std::collections::BTreeMap<String, SplitMetrics>,
    pub num_parameters: usize,
    pub latent_dim: usize,
    pub likelihood: String,
    /// Mean training throughput over the epochs of this invocation.
    pub train_images_per_second: f64,
}

pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    {
        if let Ok(d) = Device::new_cuda(0) {
            return d;
        }
    }
    Device::Cpu
}

/// A model with its parameters and input mapping: what training and loading a run share.
pub struct Session {
    pub config: TrainConfig,
    pub device: Device,
    pub store: ParamStore,
    pub vae: Vae,
    pub input: InputMap,
}

impl Session {
    pub fn new(config: TrainConfig, input: InputMap, device: Device) -> Result<Self> {
        let store = ParamStore::new(config.seed, &device);
        let vae = Vae::new(
            &config.model,
            &config.likelihood,
            input.shape(),
            store.var_builder(),
        )?;
        Ok(Self {
            config,
            device,
            store,
            vae,
            input,
        })
    }
}

fn progress_bar(len: u64, epoch: usize, max: usize) -> indicatif::ProgressBar {
    let pb = indicatif::ProgressBar::new(len);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {msg}",
        )
        .expect("static progress template")
        .progress_chars("=> "),
    );
    pb.set_prefix(format!("{epoch}/{max}"));
    pb
}

/// Batches of one epoch: a seeded shuffle, full batches only (batch norm needs more than one
/// item; a trailing partial batch is dropped), capped at `max_steps`.
fn epoch_batches(n: usize, batch: usize, max_steps: Option<usize>, rng: &mut SeededRng) -> Vec<Vec<usize>> {
    let mut idx: Vec<usize> = (0..n).collect();
    rng.shuffle(&mut idx);
    let b = batch.min(n);
    let mut out: Vec<Vec<usize>> = idx
        .chunks(b)
        .filter(|c| c.len() == b)
        .map(|c| c.to_vec())
        .collect();
    if let Some(m) = max_steps {
        out.truncate(m);
    }
    out
}

/// Train (or resume) a run. `run_dir` receives config, checkpoints, metrics and pictures.
pub fn train(cfg: &TrainConfig, splits: &Splits, run_dir: &Path, resume: bool) -> Result<TrainSummary> {
    cfg.check()?;
    let run = RunDir::create(run_dir)?;
    if !resume && checkpoint::exists(run_dir, CheckpointKind::Last) {
        anyhow::bail!(
            "{} already holds a trained run; use --resume to continue it or choose another --out",
            run_dir.display()
        );
    }
    if splits.train.n < 2 {
        anyhow::bail!(
            "the training split has {} images; at least 2 are needed",
            splits.train.n
        );
    }
    let device = default_device();
    let input = super::input::build(cfg, splits, &run)?;
    let session = Session::new(cfg.clone(), input, device.clone())?;
    run.write_toml("config.toml", cfg)?;
    run.write_json("model.json", &super::run::ModelMeta::new(&session))?;

    let opt_params = AdamParams {
        lr: cfg.train.lr,
        beta1: cfg.train.beta1,
        beta2: cfg.train.beta2,
        eps: cfg.train.eps,
    };
    let trainable: Vec<_> = session.store.trainable().into_iter().map(|(_, v)| v).collect();
    let mut opt = Adam::new(trainable, opt_params)?;
    let mut state = if resume {
        let mut s = checkpoint::load(
            run_dir,
            CheckpointKind::Last,
            &session.store,
            Some(&mut opt),
            &device,
        )
        .context("resuming")?;
        s.stopped_because = None;
        s
    } else {
        TrainState::new(cfg.seed)
    };
    // habits-tb: TensorBoard events and metrics.csv (train/epoch_log.rs).
    let mut tb = super::epoch_log::EpochLogger::open(&run, cfg, state.steps)?;

    let data = TrainData {
        train: session.input.to_model(&splits.train)?,
        val: session.input.to_model(&splits.val)?,
    };
    let mut stop = StopReason::MaxEpochs;
    let mut speed = Vec::new();
    while state.epochs_done < cfg.train.max_epochs {
        let epoch = state.epochs_done + 1;
        match run_epoch(&session, &mut opt, &mut state, &data, epoch, &mut tb)? {
            EpochOutcome::Diverged(msg) => {
                eprintln!(
                    "training diverged in epoch {epoch}: {msg}; stopping and keeping the last good checkpoint"
                );
                stop = StopReason::Diverged;
                break;
            }
            EpochOutcome::Done(rec) => {
                speed.push(rec.train_images_per_second);
                let in_warmup = (epoch as f64) < cfg.kl.warmup_epochs;
                let verdict = state.early_stopping.observe(
                    epoch,
                    rec.val_loss,
                    cfg.train.patience,
                    cfg.train.min_delta,
                    in_warmup,
                );
                state.epochs_done = epoch;
                state.history.push(rec.clone());
                tb.epoch(&session, splits, &rec, state.steps, opt.params().lr)?;
                let patience_hit = verdict.stop;
                if patience_hit {
                    state.stopped_because = Some(StopReason::Patience);
                } else if state.epochs_done >= cfg.train.max_epochs {
                    state.stopped_because = Some(StopReason::MaxEpochs);
                }
                if verdict.improved {
                    checkpoint::save(run_dir, CheckpointKind::Best, &session.store, &opt, &state)?;
                }
                checkpoint::save(run_dir, CheckpointKind::Last, &session.store, &opt, &state)?;
                write_history(&run, &state.history)?;
                if patience_hit {
                    stop = StopReason::Patience;
                    break;
                }
            }
        }
    }
    if !checkpoint::exists(run_dir, CheckpointKind::Best) {
        anyhow::bail!(
            "training diverged before the first epoch finished: no checkpoint was written to {} \
             (try a lower train.lr or a higher likelihood.logvar_floor)",
            run_dir.display()
        );
    }
    if stop == StopReason::Diverged {
        // Record the reason in the last good checkpoint's state (its RNG states and counters stay
        // those of that checkpoint, so a resume starts cleanly from it).
        let p = checkpoint::paths(run_dir, CheckpointKind::Last);
        let mut saved: TrainState = serde_json::from_str(&std::fs::read_to_string(&p.state)?)?;
        saved.stopped_because = Some(StopReason::Diverged);
        crate::util::write_atomic(&p.state, serde_json::to_string_pretty(&saved)?.as_bytes())?;
    }
    tb.finish(stop)?;
    finish(&session, splits, &run, &state, stop, mean(&speed))
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

struct TrainData {
    train: ModelData,
    val: ModelData,
}

enum EpochOutcome {
    Done(EpochRecord),
    Diverged(String),
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}

fn run_epoch(
    s: &Session,
    opt: &mut Adam,
    state: &mut TrainState,
    data: &TrainData,
    epoch: usize,
    tb: &mut super::epoch_log::EpochLogger,
) -> Result<EpochOutcome> {
    let cfg = &s.config;
    let t0 = Instant::now();
    let batches = epoch_batches(
        data.train.n,
        cfg.train.batch_size,
        cfg.train.max_steps_per_epoch,
        &mut state.shuffle_rng,
    );
    let pb = progress_bar(batches.len() as u64, epoch, cfg.train.max_epochs);
    let shape = s.input.shape();
    let latent = s.vae.latent_dim;
    let (mut sum_loss, mut sum_rec, mut sum_kl, mut items) = (0.0, 0.0, 0.0, 0usize);
    let mut beta = kl::beta_at(&cfg.kl, (epoch - 1) as f64);
    let n_batches = batches.len();
    let mut train_secs = 0.0;
    for (i, idx) in batches.iter().enumerate() {
        let ts = Instant::now();
        let b = idx.len();
        let x = data.train.batch(idx, shape, &s.device)?;
        let eps = Tensor::from_vec(state.noise_rng.normal_vec(b * latent), (b, latent), &s.device)?;
        beta = kl::beta_at(&cfg.kl, (epoch - 1) as f64 + (i + 1) as f64 / n_batches as f64);
        let awake = crate::kernels::keep_workers_awake();
        let parts = s.vae.loss(&x, &eps, &cfg.kl, beta, Mode::Train)?;
        let loss = scalar(&parts.loss)?;
        if !loss.is_finite() {
            pb.finish_and_clear();
            return Ok(EpochOutcome::Diverged(format!(
                "loss is {loss} at step {}",
                i + 1
            )));
        }
        opt.backward_step(&parts.loss)?;
        drop(awake);
        state.steps += 1;
        tb.step(state.steps, loss)?;
        let rec = scalar(&parts.rec.sum_all()?)?;
        let klv = scalar(&parts.kl.sum_all()?)?;
        train_secs += ts.elapsed().as_secs_f64();
        sum_loss += loss * b as f64;
        sum_rec += rec;
        sum_kl += klv;
        items += b;
        pb.set_message(format!(
            "loss {:.1} rec {:.1} kl {:.2}",
            sum_loss / items as f64,
            sum_rec / items as f64,
            sum_kl / items as f64
        ));
        pb.inc(1);
    }
    pb.finish_and_clear();
    // Parameters that went non-finite without the loss showing it yet.
    for (name, v) in s.store.trainable() {
        let ok = scalar(&v.as_tensor().abs()?.max_all()?)?.is_finite();
        if !ok {
            return Ok(EpochOutcome::Diverged(format!("parameter {name} is not finite")));
        }
    }
    let val = if data.val.n > 0 { &data.val } else { &data.train };
    let vm = metrics::likelihood_terms(s, val, SeededRng::derived(cfg.seed, "val-noise"))?;
    if !vm.neg_elbo.is_finite() {
        return Ok(EpochOutcome::Diverged(format!(
            "validation loss is {}",
            vm.neg_elbo
        )));
    }
    let n = items.max(1) as f64;
    let rec = EpochRecord {
        epoch,
        train_loss: sum_loss / n,
        train_rec: sum_rec / n,
        train_kl: sum_kl / n,
        val_loss: vm.rec + cfg.kl.beta * vm.kl,
        val_neg_elbo: vm.neg_elbo,
        val_rec: vm.rec,
        val_kl: vm.kl,
        beta,
        seconds: t0.elapsed().as_secs_f64(),
        train_images_per_second: items as f64 / train_secs.max(1e-9),
        val_on_floor: vm.on_floor,
    };
    eprintln!(
        "epoch {epoch}: train loss {:.2} (rec {:.2}, kl {:.2}), val loss {:.2}, {:.0} img/s, {:.1}s",
        rec.train_loss, rec.train_rec, rec.train_kl, rec.val_loss, rec.train_images_per_second, rec.seconds
    );
    Ok(EpochOutcome::Done(rec))
}

fn write_history(run: &RunDir, history: &[EpochRecord]) -> Result<()> {
    let mut text = String::new();
    for r in history {
        text.push_str(&serde_json::to_string(r)?);
        text.push('\n');
    }
    run.write("metrics.jsonl", text.as_bytes())?;
    super::epoch_log::write_csv(run, history)?;
    super::plot::loss_curve(&run.path("loss_curve.png"), history)
}

/// Reload the best checkpoint, evaluate every split, write pictures and metrics.json.
fn finish(
    s: &Session,
    splits: &Splits,
    run: &RunDir,
    state: &TrainState,
    stop: StopReason,
    speed: f64,
) -> Result<TrainSummary> {
    let best = checkpoint::load(run.root(), CheckpointKind::Best, &s.store, None, &s.device)?;
    let mut out = std::collections::BTreeMap::new();
    for split in Split::ALL {
        let set = splits.get(split);
        if set.n == 0 {
            continue;
        }
        let m = metrics::evaluate_split(s, set, SeededRng::derived(s.config.seed, split.name()))?;
        out.insert(split.name().to_string(), m);
    }
    super::pictures::write_all(s, splits, run)?;
    let summary = TrainSummary {
        kind: "vae".into(),
        epochs_run: state.epochs_done,
        best_epoch: best.early_stopping.best_epoch.unwrap_or(best.epochs_done),
        stopped_because: stop,
        metrics: out,
        num_parameters: s.store.num_trainable(),
        latent_dim: s.vae.latent_dim,
        likelihood: format!("{:?}", s.config.likelihood.kind),
        train_images_per_second: speed,
    };
    run.write_json("metrics.json", &summary)?;
    Ok(summary)
}
