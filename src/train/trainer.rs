//! The training loop: Adam on the (beta-weighted) negative ELBO, validation after every epoch,
//! early stopping with patience / min-delta (and the reason recorded), best / last checkpoints,
//! exact resume, and divergence detection that keeps the last good checkpoint.
//!
//! Training aids ([`Aids`]): with `train.grad_clip` / `train.grad_skip_threshold` each update is a
//! backward pass, the global gradient norm, then the guard's decision and Adam's step
//! ([`Adam::backward_guarded_step`]); without them Adam runs inside the backward pass
//! ([`Adam::backward_step`]), unchanged. A skipped update changes no weight, moment, step count,
//! learning rate or weight average; its batch still counts in the epoch's losses. A non-finite
//! loss is divergence either way (the guard skips non-finite gradients of a finite loss). With
//! `train.ema_decay` the average is updated after every applied update and used for validation
//! (so for early stopping and the best checkpoint), the TensorBoard pictures and everything
//! evaluated from `best/` (see `train::checkpoint`); batch-norm running statistics are the
//! model's own, not averaged.
use super::checkpoint::{self, CheckpointKind};
use super::config::ValidTrainConfig;
use super::ema::Ema;
use super::grad_guard::{GradDecision, GradGuard};
use super::input::ModelData;
use super::metrics;
use super::optim::{Adam, GuardedStep};
use super::schedule::LrSchedule;
use super::session::{default_device, Session};
use crate::data::{Split, Splits};
use crate::format::run_dir::{claim, Intent, RunKind};
use crate::format::{EpochRecord, StopReason, TrainState, VaeMetrics};
use crate::kernels::AdamHyper;
use crate::model::{kl, Mode};
use crate::util::{RunDir, SeededRng};
use anyhow::{Context, Result};
use candle_core::Tensor;
use std::path::Path;
use std::time::Instant;

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
pub fn train(cfg: &ValidTrainConfig, splits: &Splits, run_dir: &Path, resume: bool) -> Result<VaeMetrics> {
    train_with(
        cfg,
        splits,
        run_dir,
        if resume { Intent::Resume } else { Intent::New },
    )
}

/// [`train`] with the directory's use spelled out ([`Intent::Replace`] is `--force`). Holds the
/// run directory's lock throughout; nothing is written into the directory before the config is
/// known to fit the data, the memory and (on resume) the checkpoint.
/// A conv decoder without batch norm used to skip its activation between transposed
/// convolutions; runs from then (model.json before version 2) hold weights of that linear decoder,
/// and resuming one with today's decoder would continue a different model.
fn refuse_linear_decoder_runs(run_dir: &Path, cfg: &ValidTrainConfig) -> Result<()> {
    let model = &cfg.config().model;
    if model.kind == crate::model::config::ModelKind::PcaDense || model.conv.batch_norm {
        return Ok(());
    }
    let path = run_dir.join("model.json");
    let meta: crate::format::ModelMeta = crate::format::read_json(&path)?;
    if meta.architecture.is_none() {
        anyhow::bail!(
            "resuming {}: this run was trained by a norbvae whose conv decoder without batch norm \
             had no activation between its transposed convolutions ({} is from before version 2); \
             resuming it would continue a different model. Start a new run (the run is left as it was)",
            run_dir.display(),
            path.display()
        );
    }
    Ok(())
}

pub fn train_with(
    cfg: &ValidTrainConfig,
    splits: &Splits,
    run_dir: &Path,
    intent: Intent,
) -> Result<VaeMetrics> {
    let resume = intent == Intent::Resume;
    if splits.train.n < 2 {
        anyhow::bail!(
            "the training split has {} images; at least 2 are needed",
            splits.train.n
        );
    }
    let t = &splits.train;
    crate::model::budget::estimate(
        &cfg.model,
        &cfg.likelihood,
        crate::model::budget::ImageShape {
            channels: t.channels,
            height: t.height,
            width: t.width,
        },
        &crate::model::budget::Workload::training(cfg.train.batch_size, cfg.train.grid_images),
    )
    .check_available("train")?;
    let _lock = claim(run_dir, RunKind::Vae, intent)?;
    if resume && checkpoint::resume_state_dropped(run_dir) {
        anyhow::bail!(
            "cannot resume {}",
            checkpoint::dropped_resume_state_message(run_dir)
        );
    }
    if resume && !checkpoint::exists(run_dir, CheckpointKind::Last) {
        anyhow::bail!(
            "resuming: {} has no last checkpoint to continue from (start it without --resume)",
            run_dir.display()
        );
    }
    let run = RunDir::create(run_dir)?;
    let device = default_device();
    let input = super::input::build(cfg, splits, &run)?;
    let session = Session::new(cfg.config().clone(), input, device.clone())?;

    let hyper = AdamHyper {
        lr: cfg.train.lr,
        beta1: cfg.train.beta1,
        beta2: cfg.train.beta2,
        eps: cfg.train.eps,
    };
    let trainable: Vec<_> = session.store.trainable().into_iter().map(|(_, v)| v).collect();
    let mut opt = Adam::new(trainable, hyper)?;
    // On resume the checkpoint is loaded (and so checked against this config) before the run's
    // config.toml and model.json are replaced: a config that does not fit leaves the run as it was.
    let mut state = if resume {
        refuse_linear_decoder_runs(run_dir, cfg)?;
        let mut s = checkpoint::load(
            run_dir,
            CheckpointKind::Last,
            &session.store,
            Some(&mut opt),
            &device,
        )
        .with_context(|| {
            format!(
                "resuming {}: the checkpoint does not fit this config (the run is left as it was)",
                run_dir.display()
            )
        })?;
        s.stopped_because = None;
        s
    } else {
        TrainState::new(cfg.seed)
    };
    let mut aids = Aids::new(cfg, &session, &state)?;
    if resume {
        checkpoint::load_ema(run_dir, aids.ema.as_mut(), state.steps, &device).with_context(|| {
            format!(
                "resuming {}: the checkpoint does not fit this config (the run is left as it was)",
                run_dir.display()
            )
        })?;
    }
    run.write_toml("config.toml", cfg.config())?;
    run.write_json("model.json", &session.model_meta()?)?;
    // metrics.json marks a finished run; this one is being trained again.
    let metrics_path = run.path("metrics.json");
    if metrics_path.exists() {
        std::fs::remove_file(&metrics_path)
            .with_context(|| format!("removing {}", metrics_path.display()))?;
    }
    // habits-tb: TensorBoard events and metrics.csv (train/epoch_log.rs).
    let mut tb = super::epoch_log::EpochLogger::open(&run, cfg, state.steps)?;

    let data = TrainData {
        train: session.input.to_model(&splits.train)?,
        val: session.input.to_model(&splits.val)?,
        lr: lr_schedule(cfg, splits.train.n),
    };
    let mut stop = StopReason::MaxEpochs;
    let mut speed = Vec::new();
    while state.epochs_done < cfg.train.max_epochs {
        let epoch = state.epochs_done + 1;
        match run_epoch(&session, &mut opt, &mut aids, &mut state, &data, epoch, &mut tb)? {
            EpochOutcome::Diverged(msg) => {
                if !checkpoint::exists(run_dir, CheckpointKind::Best) {
                    anyhow::bail!(
                        "training diverged in epoch {epoch} ({msg}) before any epoch finished, so no \
                         checkpoint was written to {} (try a lower train.lr or a higher \
                         likelihood.logvar_floor)",
                        run_dir.display()
                    );
                }
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
                state.grad_guard = aids.guard.as_ref().map(GradGuard::state);
                aids.evaluating(&session, || {
                    tb.epoch(&session, splits, &rec, state.steps, opt.params().lr)
                })?;
                let patience_hit = verdict.stop;
                if patience_hit {
                    state.stopped_because = Some(StopReason::Patience);
                } else if state.epochs_done >= cfg.train.max_epochs {
                    state.stopped_because = Some(StopReason::MaxEpochs);
                }
                if verdict.improved {
                    let ema = aids.ema.as_ref();
                    checkpoint::save(run_dir, CheckpointKind::Best, &session.store, &opt, &state, ema)?;
                }
                let ema = aids.ema.as_ref();
                checkpoint::save(run_dir, CheckpointKind::Last, &session.store, &opt, &state, ema)?;
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
            "no epoch finished, so no checkpoint was written to {} (train.max_epochs is 0?)",
            run_dir.display()
        );
    }
    if stop == StopReason::Diverged {
        // Record the reason in the last good checkpoint's state (its RNG states and counters stay
        // those of that checkpoint, so a resume starts cleanly from it).
        checkpoint::mark_stopped(run_dir, CheckpointKind::Last, StopReason::Diverged)?;
    }
    tb.finish(stop)?;
    let summary = finish(&session, splits, &run, &state, stop, mean(&speed))?;
    if !cfg.train.keep_resume_state {
        checkpoint::drop_resume_state(run_dir)?;
    }
    Ok(summary)
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The optional training aids: the gradient guard and the weight average.
struct Aids {
    guard: Option<GradGuard>,
    ema: Option<Ema>,
}

impl Aids {
    /// From the config; the guard continues from `state` (a resumed run's memory). The average
    /// starts from the store's weights (on resume `checkpoint::load_ema` replaces it).
    fn new(cfg: &ValidTrainConfig, s: &Session, state: &TrainState) -> Result<Self> {
        let t = &cfg.train;
        let guard =
            (t.grad_clip.is_some() || t.grad_skip_threshold.is_some()).then(|| match &state.grad_guard {
                Some(saved) => GradGuard::resumed(t.grad_clip, t.grad_skip_threshold, saved),
                None => GradGuard::new(t.grad_clip, t.grad_skip_threshold),
            });
        let ema = t.ema_decay.map(|d| Ema::new(&s.store, d)).transpose()?;
        Ok(Self { guard, ema })
    }

    /// Run `f` on the model to evaluate: the weight average when there is one.
    fn evaluating<T>(&self, s: &Session, f: impl FnOnce() -> Result<T>) -> Result<T> {
        match &self.ema {
            Some(ema) => ema.with_averaged(&s.store, f),
            None => f(),
        }
    }
}

struct TrainData {
    train: ModelData,
    val: ModelData,
    /// The learning rate of each update, a function of the update's index alone, so a resumed run
    /// takes the same rates as an uninterrupted one.
    lr: LrSchedule,
}

/// The run's learning-rate schedule over all its updates (`max_epochs` x the epoch's full batches).
fn lr_schedule(cfg: &ValidTrainConfig, train_images: usize) -> LrSchedule {
    let t = &cfg.train;
    let batch = t.batch_size.min(train_images).max(1);
    let per_epoch = (train_images / batch).min(t.max_steps_per_epoch.unwrap_or(usize::MAX));
    LrSchedule {
        base_lr: t.lr,
        warmup_steps: t.lr_warmup_steps,
        kind: t.lr_schedule,
        total_steps: per_epoch.saturating_mul(t.max_epochs),
        min_fraction: 0.0,
    }
}

enum EpochOutcome {
    Done(EpochRecord),
    Diverged(String),
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}

/// Sums over an epoch's steps, per image.
#[derive(Default)]
struct EpochSums {
    loss: f64,
    rec: f64,
    kl: f64,
    items: usize,
    /// Seconds inside training steps (throughput leaves out the progress display).
    step_seconds: f64,
    /// Hierarchical VAE: KL per group, summed over the batches' images.
    kl_groups: Option<Vec<f64>>,
    /// Gradient guard: skipped and clipped updates, and the finite norms' sum and count.
    skipped: u64,
    clipped: u64,
    norm_sum: f64,
    norms: u64,
}

impl EpochSums {
    fn add(&mut self, step: &StepResult, images: usize, seconds: f64) {
        self.loss += step.loss * images as f64;
        self.rec += step.rec;
        self.kl += step.kl;
        self.items += images;
        self.step_seconds += seconds;
        if let Some(groups) = &step.kl_groups {
            let sums = self.kl_groups.get_or_insert_with(|| vec![0.0; groups.len()]);
            for (acc, g) in sums.iter_mut().zip(groups) {
                *acc += g;
            }
        }
        if let Some(g) = &step.guard {
            match g.decision {
                GradDecision::Skip => self.skipped += 1,
                GradDecision::Apply { scale } if scale < 1.0 => self.clipped += 1,
                GradDecision::Apply { .. } => {}
            }
            if g.norm.is_finite() {
                self.norm_sum += g.norm;
                self.norms += 1;
            }
        }
    }

    /// KL per group per image (hierarchical VAE).
    fn kl_group_means(&self) -> Option<Vec<f64>> {
        let n = self.items.max(1) as f64;
        self.kl_groups.as_ref().map(|v| v.iter().map(|s| s / n).collect())
    }

    fn means(&self) -> (f64, f64, f64) {
        let n = self.items.max(1) as f64;
        (self.loss / n, self.rec / n, self.kl / n)
    }
}

/// One step's loss (per image) and its two terms (summed over the batch).
struct StepResult {
    loss: f64,
    rec: f64,
    kl: f64,
    /// Hierarchical VAE: each group's KL summed over the batch.
    kl_groups: Option<Vec<f64>>,
    /// With a gradient guard: the norm and what was done.
    guard: Option<GuardedStep>,
}

impl StepResult {
    /// Whether the parameters were updated (false: the guard skipped the update).
    fn applied(&self) -> bool {
        !matches!(
            self.guard,
            Some(GuardedStep {
                decision: GradDecision::Skip,
                ..
            })
        )
    }
}

/// What one step did: updated the parameters, or found a non-finite loss (no update made).
enum StepOutcome {
    Done(StepResult),
    NonFinite(f64),
}

/// One optimisation step on the batch `idx`: the loss at KL weight `beta`, then Adam's update
/// (through the gradient guard when there is one) and the weight average's.
/// The other workers stay awake through it (`kernels::with_workers_awake`).
fn train_step(
    s: &Session,
    opt: &mut Adam,
    aids: &mut Aids,
    state: &mut TrainState,
    data: &ModelData,
    idx: &[usize],
    beta: f64,
) -> Result<StepOutcome> {
    let b = idx.len();
    let latent = s.vae.latent_dim;
    let x = data.batch(idx, s.input.shape(), &s.device)?;
    let eps = Tensor::from_vec(state.noise_rng.normal_vec(b * latent), (b, latent), &s.device)?;
    let parts = crate::kernels::with_workers_awake(|| -> Result<_> {
        let parts = s.vae.loss(&x, &eps, &s.config.kl, beta, Mode::Train)?;
        let loss = scalar(&parts.loss)?;
        if !loss.is_finite() {
            return Ok(Err(loss));
        }
        let guarded = match aids.guard.as_mut() {
            Some(guard) => Some(opt.backward_guarded_step(&parts.loss, guard)?),
            None => {
                opt.backward_step(&parts.loss)?;
                None
            }
        };
        Ok(Ok((parts, loss, guarded)))
    })?;
    let (parts, loss, guard) = match parts {
        Ok(p) => p,
        Err(loss) => return Ok(StepOutcome::NonFinite(loss)),
    };
    let kl_groups = match &parts.kl_groups {
        Some(groups) => Some(
            groups
                .iter()
                .map(|g| scalar(&g.sum_all()?))
                .collect::<Result<Vec<_>>>()?,
        ),
        None => None,
    };
    let step = StepResult {
        loss,
        rec: scalar(&parts.rec.sum_all()?)?,
        kl: scalar(&parts.kl.sum_all()?)?,
        kl_groups,
        guard,
    };
    if step.applied() {
        state.steps += 1;
        if let Some(ema) = aids.ema.as_mut() {
            ema.update(&s.store)?;
        }
    }
    Ok(StepOutcome::Done(step))
}

/// A parameter that went non-finite without the loss showing it yet.
fn non_finite_parameter(s: &Session) -> Result<Option<String>> {
    for (name, v) in s.store.trainable() {
        if !scalar(&v.as_tensor().abs()?.max_all()?)?.is_finite() {
            return Ok(Some(name));
        }
    }
    Ok(None)
}

fn run_epoch(
    s: &Session,
    opt: &mut Adam,
    aids: &mut Aids,
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
    let pb = crate::util::progress::bar(
        batches.len() as u64,
        &format!("epoch {epoch}/{}", cfg.train.max_epochs),
        "batches",
    );
    let mut sums = EpochSums::default();
    let mut beta = kl::beta_at(&cfg.kl, (epoch - 1) as f64);
    let n_batches = batches.len();
    for (i, idx) in batches.iter().enumerate() {
        // SIGINT/SIGTERM/SIGUSR1 (util::signals): drop this unfinished epoch; the last epoch-end
        // checkpoint on disk is what `--resume` continues from, exactly.
        crate::util::signals::check()?;
        let started = Instant::now();
        beta = kl::beta_at(&cfg.kl, (epoch - 1) as f64 + (i + 1) as f64 / n_batches as f64);
        opt.set_lr(data.lr.lr(state.steps as usize));
        let step = match train_step(s, opt, aids, state, &data.train, idx, beta)? {
            StepOutcome::Done(step) => step,
            StepOutcome::NonFinite(loss) => {
                pb.finish_and_clear();
                return Ok(EpochOutcome::Diverged(format!(
                    "loss is {loss} at step {}",
                    i + 1
                )));
            }
        };
        if step.applied() {
            tb.step(state.steps, step.loss)?;
        }
        sums.add(&step, idx.len(), started.elapsed().as_secs_f64());
        let (loss, rec, klv) = sums.means();
        let images_per_second = sums.items as f64 / sums.step_seconds.max(1e-9);
        pb.set_message(format!(
            "{images_per_second:.0} img/s, loss {loss:.1} rec {rec:.1} kl {klv:.2}"
        ));
        pb.inc(1);
    }
    pb.finish_and_clear();
    if let Some(name) = non_finite_parameter(s)? {
        return Ok(EpochOutcome::Diverged(format!("parameter {name} is not finite")));
    }
    let val = if data.val.n > 0 { &data.val } else { &data.train };
    let vm = aids.evaluating(s, || {
        metrics::likelihood_terms(s, val, SeededRng::derived(cfg.seed, "val-noise"))
    })?;
    if !vm.neg_elbo.is_finite() {
        return Ok(EpochOutcome::Diverged(format!(
            "validation loss is {}",
            vm.neg_elbo
        )));
    }
    let (train_loss, train_rec, train_kl) = sums.means();
    let rec = EpochRecord {
        epoch,
        train_loss,
        train_rec,
        train_kl,
        val_loss: vm.rec + cfg.kl.beta * vm.kl,
        val_neg_elbo: vm.neg_elbo,
        val_rec: vm.rec,
        val_kl: vm.kl,
        beta,
        seconds: t0.elapsed().as_secs_f64(),
        train_images_per_second: sums.items as f64 / sums.step_seconds.max(1e-9),
        val_on_floor: vm.on_floor,
        train_kl_groups: sums.kl_group_means(),
        val_kl_groups: vm.kl_groups,
        skipped_updates: aids.guard.is_some().then_some(sums.skipped),
        clipped_updates: aids.guard.is_some().then_some(sums.clipped),
        grad_norm: (aids.guard.is_some() && sums.norms > 0).then(|| sums.norm_sum / sums.norms as f64),
    };
    eprintln!("{}", epoch_line(&rec));
    Ok(EpochOutcome::Done(rec))
}

/// The epoch's line on stderr: losses, then per-group KL and the gradient guard's counts when
/// the run has them.
fn epoch_line(rec: &EpochRecord) -> String {
    let mut line = format!(
        "epoch {}: train loss {:.2} (rec {:.2}, kl {:.2}), val loss {:.2}",
        rec.epoch, rec.train_loss, rec.train_rec, rec.train_kl, rec.val_loss
    );
    if let Some(groups) = &rec.val_kl_groups {
        let g: Vec<String> = groups.iter().map(|k| format!("{k:.2}")).collect();
        line.push_str(&format!(", val kl per group [{}]", g.join(", ")));
    }
    if let Some(skipped) = rec.skipped_updates {
        line.push_str(&format!(
            ", {skipped} updates skipped, {} clipped",
            rec.clipped_updates.unwrap_or(0)
        ));
    }
    line.push_str(&format!(
        ", {:.0} img/s, {:.1}s",
        rec.train_images_per_second, rec.seconds
    ));
    line
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
) -> Result<VaeMetrics> {
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
    let mut summary = VaeMetrics::new(
        state.epochs_done,
        best.early_stopping.best_epoch.unwrap_or(best.epochs_done),
        stop,
        out,
    );
    summary.num_parameters = Some(s.store.num_trainable());
    summary.latent_dim = Some(s.vae.latent_dim);
    summary.likelihood = Some(format!("{:?}", s.config.likelihood.kind));
    summary.train_images_per_second = Some(speed);
    run.write_json("metrics.json", &crate::format::RunMetrics::Vae(summary.clone()))?;
    Ok(summary)
}
