//! Options shared by the commands that read a dataset.
use crate::data::{Camera, DataOptions};

/// Dataset and preprocessing options, flattened into each command that reads data.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// Dataset: `norb:DIR` (smallNORB files, real or synthetic), `fashion-mnist`, or `idx:DIR`.
    #[arg(long = "data")]
    pub spec: Option<String>,
    /// NORB camera(s).
    #[arg(long, value_enum)]
    pub camera: Option<Camera>,
    /// Resize images to this side (NORB 96 -> 64/48/32 by area averaging).
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Fraction of the training set held out for validation.
    #[arg(long)]
    pub val_fraction: Option<f64>,
    /// NORB: hold out these instances (comma-separated) for validation instead.
    #[arg(long, value_delimiter = ',')]
    pub val_instances: Option<Vec<u8>>,
    /// Keep at most this many images per split.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Seed for the validation split.
    #[arg(long)]
    pub data_seed: Option<u64>,
}

impl DataArgs {
    /// Apply the options given on the command line over `base` (a config's data section).
    pub fn apply(&self, mut base: DataOptions) -> DataOptions {
        if let Some(s) = &self.spec {
            base.spec = s.clone();
        }
        if let Some(c) = self.camera {
            base.camera = c;
        }
        if self.image_size.is_some() {
            base.image_size = self.image_size;
        }
        if let Some(v) = self.val_fraction {
            base.val_fraction = v;
        }
        if self.val_instances.is_some() {
            base.val_instances = self.val_instances.clone();
        }
        if self.limit.is_some() {
            base.limit = self.limit;
        }
        if let Some(s) = self.data_seed {
            base.seed = s;
        }
        base
    }
}

/// `--device`, flattened into each command that trains or runs a model.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceArgs {
    /// Device for every stage: auto (the first CUDA GPU when built with `--features cuda` and one
    /// is present, else the CPU), cpu, cuda or cuda:N.
    #[arg(long = "device", default_value = "auto", value_name = "auto|cpu|cuda[:N]")]
    pub device: String,
}

impl Default for DeviceArgs {
    /// `auto`, as on the command line without `--device`.
    fn default() -> Self {
        Self {
            device: "auto".into(),
        }
    }
}

impl DeviceArgs {
    /// Parse `--device` without selecting it (commands that pass it on to child processes).
    pub fn choice(&self) -> anyhow::Result<crate::util::device::DeviceChoice> {
        self.device.parse()
    }

    /// Parse `--device` and select it for the rest of this process.
    pub fn select(&self) -> anyhow::Result<candle_core::Device> {
        let choice: crate::util::device::DeviceChoice = self.device.parse()?;
        crate::util::device::select(choice)
    }
}
