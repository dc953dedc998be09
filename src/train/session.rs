//! A model with its parameters and input mapping: what training and a loaded run share.
use super::config::TrainConfig;
use super::input::InputMap;
use crate::format::model::InputSpec;
use crate::format::ModelMeta;
use crate::model::{ParamStore, Vae};
use anyhow::Result;
use candle_core::Device;

/// The device every stage runs on: the one `--device` selected ([`crate::util::device`]), else
/// the first CUDA device when built with `cuda` and one is present, else the CPU.
pub fn default_device() -> Device {
    crate::util::device::selected()
}

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

    /// `model.json` of this model, its architecture included.
    pub fn model_meta(&self) -> Result<ModelMeta> {
        let (c, h, w) = self.input.image_shape();
        let input = match &self.input {
            InputMap::Pixels { .. } => InputSpec::Image {
                channels: c,
                height: h,
                width: w,
            },
            InputMap::Pca { model, whiten, .. } => InputSpec::Pca {
                file: "pca.safetensors".into(),
                components: model.k(),
                whiten: *whiten,
                whitening_floor_factor: crate::pca::model::WHITENING_FLOOR_FACTOR,
                image_channels: c,
                image_height: h,
                image_width: w,
            },
        };
        let arch = crate::model::describe::architecture(
            &self.config.model,
            &self.config.likelihood,
            input,
            self.vae.likelihood.outputs_per_dim(),
        )
        .map_err(anyhow::Error::msg)?;
        Ok(ModelMeta::new(self.input.image_shape(), self.store.num_trainable()).with_architecture(arch))
    }
}
