//! A trained run loaded back for evaluation, sampling and reports (the eval helper's entry point).
use super::checkpoint::{self, CheckpointKind};
use super::config::TrainConfig;
use super::input::to_tensor;
use super::session::{default_device, Session};
use crate::data::ImageSet;
use crate::format::ModelMeta;
use crate::model::Mode;
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};

pub struct LoadedRun {
    pub config: TrainConfig,
    pub device: Device,
    pub run_dir: PathBuf,
    pub meta: ModelMeta,
    session: Session,
}

/// Load a trained run's model from its best or last checkpoint.
pub fn load_run(run_dir: &Path, which: CheckpointKind) -> Result<LoadedRun> {
    let run = crate::util::RunDir::open(run_dir)?;
    let cfg_path = run.path("config.toml");
    let config = TrainConfig::load(&cfg_path, &[])?;
    let meta_path = run.path("model.json");
    let meta: ModelMeta = crate::format::read_json(&meta_path)?;
    if which == CheckpointKind::Last && checkpoint::resume_state_dropped(run_dir) {
        anyhow::bail!("{}", checkpoint::dropped_resume_state_message(run_dir));
    }
    if !checkpoint::exists(run_dir, which) {
        anyhow::bail!(
            "{} has no {} checkpoint (checkpoints/{}.safetensors and .json): was it trained?",
            run_dir.display(),
            which.name(),
            which.name()
        );
    }
    let device = default_device();
    let input = super::input::load(&config, &meta, &run)?;
    let session = Session::new(config.clone(), input, device.clone())?;
    checkpoint::load(run_dir, which, &session.store, None, &device)?;
    Ok(LoadedRun {
        config,
        device,
        run_dir: run_dir.to_path_buf(),
        meta,
        session,
    })
}

impl LoadedRun {
    /// Pixels -> what the encoder eats: images [b, c, h, w], or PCA coefficients [b, k].
    pub fn model_input(&self, set: &ImageSet) -> Result<Tensor> {
        let d = self.session.input.to_model(set)?;
        Ok(to_tensor(
            d.values,
            d.n,
            self.session.input.shape(),
            &self.device,
        )?)
    }

    /// Posterior mean and log-variance, each [b, latent] (eval mode).
    pub fn encode(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok(self.session.vae.encode(x, Mode::Eval)?)
    }

    /// Posterior mean and log-variance of the full code (every latent group), each
    /// [b, full_code_dim] (eval mode).
    pub fn encode_full(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        Ok(self.session.vae.posterior_full(x, Mode::Eval)?)
    }

    /// Decoder output for full codes [b, full_code_dim].
    pub fn decode_full(&self, z: &Tensor) -> Result<Tensor> {
        Ok(self.session.vae.decode_full(z, Mode::Eval)?)
    }

    /// Ancestral samples from the model's prior at `temperature` for noise [b, full_code_dim]:
    /// the decoder output and the full code drawn (see `Vae::generate`).
    pub fn generate(&self, eps: &Tensor, temperature: f64) -> Result<(Tensor, Tensor)> {
        Ok(self.session.vae.generate(eps, temperature, Mode::Eval)?)
    }

    /// Width of the full code: every latent group (= `latent_dim` for the flat VAEs).
    pub fn full_code_dim(&self) -> usize {
        self.session.vae.full_code_dim()
    }

    /// Decoder output parameters for latents [b, latent] (what `log_px_given_z` and
    /// `mean_pixels` take).
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        Ok(self.session.vae.decode(z, Mode::Eval)?)
    }

    /// log p(x | z) per item, nats, [b] (model space: pixels or PCA coefficients).
    pub fn log_px_given_z(&self, x: &Tensor, dec: &Tensor) -> Result<Tensor> {
        Ok(self.session.vae.likelihood.nll(x, dec, Mode::Eval)?.neg()?)
    }

    /// Decoder means in pixel space [b, c, h, w], clamped to [0, 1].
    pub fn mean_pixels(&self, dec: &Tensor) -> Result<Vec<f32>> {
        let b = dec.dim(0)?;
        let mean = self
            .session
            .vae
            .likelihood
            .mean(dec)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        Ok(self.session.input.to_pixels(mean, b))
    }

    /// Nats per image to add to `-log_px_given_z` to get the NLL of the pixels themselves: zero
    /// for image models; PPCA's density of the discarded directions for the PCA-coefficient VAE.
    pub fn pixel_nll_offset(&self, set: &ImageSet) -> Result<Vec<f64>> {
        self.session.input.pixel_nll_offset(set)
    }

    /// Width of the codes `encode` returns and `decode` takes (a hierarchy's top group).
    pub fn latent_dim(&self) -> usize {
        self.session.vae.code_dim()
    }

    pub fn vae(&self) -> &crate::model::Vae {
        &self.session.vae
    }

    pub fn image_shape(&self) -> (usize, usize, usize) {
        self.session.input.image_shape()
    }

    /// The first tensor of the model (parameters and buffers) holding a NaN or an infinity.
    pub fn non_finite_tensor(&self) -> Result<Option<String>> {
        for (name, v) in self.session.store.all() {
            let m = v
                .as_tensor()
                .abs()?
                .max_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
            if !m.is_finite() {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// Trainable scalars of the model.
    pub fn num_parameters(&self) -> usize {
        self.meta.num_parameters
    }
}
