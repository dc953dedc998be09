//! Benchmarks of the real model's training step and of its weight average (`norbvae bench
//! --workload residual|hierarchy|ema`), for the side-by-side comparison with PyTorch.
//!
//! The model is the one `norbvae train` builds from the same config (a [`Vae`] in a seeded
//! [`ParamStore`]), and a step is the trainer's step ([`super::trainer`]'s `train_step`) on one
//! fixed batch: the loss at the config's KL weight in training mode, its value read back, the
//! backward pass with Adam inside it ([`Adam::backward_step`]), the batch's KL terms read back,
//! and the weight average's update when the config has `train.ema_decay`. It leaves out only the
//! data loader's gather of the batch and the progress display. The images are uniform random
//! pixels of the config's size with one channel (NORB and Fashion-MNIST are grey): the step's
//! cost does not depend on the pixel values.
use super::config::ValidTrainConfig;
use super::ema::Ema;
use super::optim::Adam;
use crate::kernels::AdamHyper;
use crate::model::{InputShape, Mode, ParamStore, Vae};
use crate::util::SeededRng;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, Var};
use std::path::Path;
use std::time::Instant;

/// Image channels of the benchmark's batch (the grey NORB images).
pub const CHANNELS: usize = 1;

/// A model built from a training config, as `norbvae train` builds it.
pub struct BenchModel {
    pub cfg: ValidTrainConfig,
    pub store: ParamStore,
    pub vae: Vae,
    pub input: InputShape,
}

impl BenchModel {
    /// Reads and checks the config at `path` and builds its model on the CPU.
    pub fn from_config(path: &Path) -> Result<Self> {
        let cfg = super::TrainConfig::load(path, &[])?
            .check()
            .with_context(|| format!("config {}", path.display()))?;
        Self::new(cfg).with_context(|| format!("building the model of {}", path.display()))
    }

    pub fn new(cfg: ValidTrainConfig) -> Result<Self> {
        if cfg.model.kind == crate::model::ModelKind::PcaDense {
            bail!("the model benchmark is for image models (model.kind conv or hierarchical), not pca_dense");
        }
        let Some(side) = cfg.data.image_size else {
            bail!("the model benchmark needs data.image_size (the image side it trains at)");
        };
        let input = InputShape::Image {
            channels: CHANNELS,
            height: side,
            width: side,
        };
        let store = ParamStore::new(cfg.seed, &Device::Cpu);
        let vae = Vae::new(&cfg.model, &cfg.likelihood, input, store.var_builder())?;
        Ok(Self {
            cfg,
            store,
            vae,
            input,
        })
    }

    pub fn batch(&self) -> usize {
        self.cfg.train.batch_size
    }

    pub fn num_trainable(&self) -> usize {
        self.store.num_trainable()
    }

    /// A fixed batch of uniform random images [batch, channels, side, side].
    pub fn random_batch(&self, seed: u64) -> Result<Tensor> {
        let InputShape::Image {
            channels,
            height,
            width,
        } = self.input
        else {
            bail!("not an image model");
        };
        let n = self.batch() * channels * height * width;
        let mut rng = SeededRng::derived(seed, "bench-data");
        Ok(Tensor::from_vec(
            rng.uniform_vec(n),
            (self.batch(), channels, height, width),
            &Device::Cpu,
        )?)
    }
}

/// Throughput and loss trajectory of one run of the model's training step.
#[derive(Clone, Debug)]
pub struct ModelStepReport {
    pub batch: usize,
    pub steps: usize,
    pub params: usize,
    pub samples_per_sec: f64,
    /// Samples per second of CPU time of all threads.
    pub samples_per_cpu_sec: f64,
    pub first_loss: f64,
    pub last_loss: f64,
}

/// `warmup` untimed then `steps` timed training steps of `model` on one fixed random batch, on
/// the current rayon pool.
pub fn run_model_steps(
    model: &BenchModel,
    warmup: usize,
    steps: usize,
    seed: u64,
) -> Result<ModelStepReport> {
    let cfg = &model.cfg;
    let x = model.random_batch(seed)?;
    let b = model.batch();
    let trainable: Vec<Var> = model.store.trainable().into_iter().map(|(_, v)| v).collect();
    let mut opt = Adam::new(
        trainable,
        AdamHyper {
            lr: cfg.train.lr,
            beta1: cfg.train.beta1,
            beta2: cfg.train.beta2,
            eps: cfg.train.eps,
        },
    )?;
    let mut ema = cfg
        .train
        .ema_decay
        .map(|d| Ema::new(&model.store, d))
        .transpose()?;
    let mut noise = SeededRng::derived(seed, "bench-noise");
    let beta = crate::model::kl::beta_at(&cfg.kl, 1.0);
    let mut step = || -> Result<f64> {
        let eps = Tensor::from_vec(
            noise.normal_vec(b * model.vae.latent_dim),
            (b, model.vae.latent_dim),
            &Device::Cpu,
        )?;
        let (parts, loss) = crate::kernels::with_workers_awake(|| -> Result<_> {
            let parts = model.vae.loss(&x, &eps, &cfg.kl, beta, Mode::Train)?;
            let loss = parts.loss.to_scalar::<f32>()? as f64;
            if !loss.is_finite() {
                bail!("the loss is {loss}");
            }
            opt.backward_step(&parts.loss)?;
            Ok((parts, loss))
        })?;
        // What the trainer reads back of each step for its epoch sums.
        parts.rec.sum_all()?.to_scalar::<f32>()?;
        parts.kl.sum_all()?.to_scalar::<f32>()?;
        for g in parts.kl_groups.iter().flatten() {
            g.sum_all()?.to_scalar::<f32>()?;
        }
        if let Some(ema) = ema.as_mut() {
            ema.update(&model.store)?;
        }
        Ok(loss)
    };
    for _ in 0..warmup {
        step()?;
    }
    let start = Instant::now();
    let cpu_start = crate::kernels::process_cpu_ns();
    let (mut first_loss, mut last_loss) = (f64::NAN, f64::NAN);
    for i in 0..steps {
        last_loss = step()?;
        if i == 0 {
            first_loss = last_loss;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = crate::kernels::process_cpu_ns().saturating_sub(cpu_start) as f64 / 1e9;
    Ok(ModelStepReport {
        batch: b,
        steps,
        params: model.num_trainable(),
        samples_per_sec: (steps * b) as f64 / secs.max(1e-9),
        samples_per_cpu_sec: (steps * b) as f64 / cpu_secs.max(1e-9),
        first_loss,
        last_loss,
    })
}

/// Weight-average updates per second over a model's trainable tensors, two ways.
#[derive(Clone, Debug)]
pub struct EmaReport {
    pub tensors: usize,
    pub params: usize,
    /// The fused in-place kernel the trainer's [`Ema`] uses (`kernels::ema_update`).
    pub fused_per_sec: f64,
    /// The same update as candle tensor ops: `avg * decay + w * (1 - decay)` per tensor.
    pub candle_per_sec: f64,
}

/// `updates` timed weight-average updates (after a few untimed ones) of every trainable tensor
/// of `model`, with the fused kernel and with candle's ops; both start from the same average
/// and end bit-identical (checked).
pub fn run_ema(model: &BenchModel, updates: usize, decay: f64) -> Result<EmaReport> {
    let weights: Vec<Tensor> = model
        .store
        .trainable()
        .into_iter()
        .map(|(_, v)| v.as_tensor().detach())
        .collect();
    let fresh = || -> Result<Vec<Tensor>> {
        weights
            .iter()
            .map(|w| Ok((w * 0.5)?.contiguous()?.copy()?))
            .collect()
    };
    let warmup = 3;
    let fused = fresh()?;
    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        for _ in 0..warmup {
            f()?;
        }
        let start = Instant::now();
        for _ in 0..updates {
            f()?;
        }
        Ok(updates as f64 / start.elapsed().as_secs_f64().max(1e-9))
    };
    let fused_per_sec = time(&mut || {
        for (a, w) in fused.iter().zip(&weights) {
            crate::kernels::ema_update(a, w, decay)?;
        }
        Ok(())
    })?;
    let mut by_ops = fresh()?;
    let candle_per_sec = time(&mut || {
        for (a, w) in by_ops.iter_mut().zip(&weights) {
            *a = ((&*a * decay)? + (w * (1.0 - decay))?)?;
        }
        Ok(())
    })?;
    for (a, b) in fused.iter().zip(&by_ops) {
        let (a, b) = (
            a.flatten_all()?.to_vec1::<f32>()?,
            b.flatten_all()?.to_vec1::<f32>()?,
        );
        if a.iter().zip(&b).any(|(x, y)| x.to_bits() != y.to_bits()) {
            bail!("the fused weight average differs from candle's ops");
        }
    }
    Ok(EmaReport {
        tensors: weights.len(),
        params: weights.iter().map(|w| w.elem_count()).sum(),
        fused_per_sec,
        candle_per_sec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ladder(name: &str, overrides: &[&str]) -> BenchModel {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        let cfg = crate::train::TrainConfig::load(&path, &overrides)
            .unwrap()
            .check()
            .unwrap();
        BenchModel::new(cfg).unwrap()
    }

    #[test]
    fn the_model_step_trains_the_ladder_models_and_counts_their_parameters() {
        // Small sizes of the same architectures, so the test takes a second.
        for name in [
            "bench/configs/residual-conv-32.toml",
            "configs/ladder/5-residual.toml",
        ] {
            let m = ladder(
                name,
                &[
                    "data.image_size=16",
                    "model.conv.downsizings=4",
                    "model.conv.first_filters=4",
                    "model.conv.intermediate=16",
                    "train.batch_size=8",
                ],
            );
            let trainable: usize = m.store.trainable().iter().map(|(_, v)| v.elem_count()).sum();
            assert_eq!(m.num_trainable(), trainable);
            let r = run_model_steps(&m, 0, 6, 3).unwrap();
            assert_eq!((r.batch, r.steps, r.params), (8, 6, trainable));
            assert!(r.first_loss.is_finite() && r.last_loss.is_finite());
            assert!(
                r.last_loss < r.first_loss,
                "{name}: six Adam steps on one batch must lower its loss: {} -> {}",
                r.first_loss,
                r.last_loss
            );
        }
    }

    #[test]
    fn ema_benchmark_covers_every_trainable_tensor() {
        let m = ladder(
            "configs/ladder/5-residual.toml",
            &[
                "data.image_size=8",
                "model.conv.downsizings=3",
                "model.conv.first_filters=4",
            ],
        );
        let r = run_ema(&m, 2, 0.999).unwrap();
        assert_eq!(r.tensors, m.store.trainable().len());
        assert_eq!(r.params, m.num_trainable());
        assert!(r.fused_per_sec > 0.0 && r.candle_per_sec > 0.0);
    }
}
