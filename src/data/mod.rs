//! Data: file formats (smallNORB, IDX), the synthetic NORB renderer, preprocessing, splits,
//! and image grids. Every later stage reads images through [`load`] as an [`ImageSet`] per split.
//!
//! Submodules (each owns one job):
//! - `norb`: smallNORB `.mat` / `.mat.gz` reader and writer
//! - `idx`: MNIST / Fashion-MNIST IDX reader
//! - `synth`: the synthetic NORB renderer
//! - `spec`: dataset specs (`norb:DIR`, `fashion-mnist`, `idx:DIR`) and preprocessing options
//! - `split`: validation split carving
//! - `grid`: PNG image grids
use serde::{Deserialize, Serialize};

pub mod download;
pub mod error;
pub mod grid;
pub mod idx;
mod load;
pub mod norb;
pub mod resize;
pub mod source;
pub mod spec;
pub mod split;
pub mod synth;

pub use error::DataError;
pub use load::{load, summarize, DataSummary, SplitSummary};

/// NORB factors of variation for one sample (absent for other datasets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NorbFactors {
    pub instance: u8,
    pub elevation: u8,
    /// In smallNORB's units: 0, 2, ..., 34 (times 10 degrees).
    pub azimuth: u8,
    pub lighting: u8,
}

/// A set of images as f32 pixels in [0, 1], layout [n, channels, height, width] (row-major).
#[derive(Debug, Clone, Default)]
pub struct ImageSet {
    pub images: Vec<f32>,
    pub n: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// Class label per image (NORB category, Fashion-MNIST class).
    pub labels: Vec<u32>,
    /// Per-image NORB factors, when the dataset has them.
    pub factors: Option<Vec<NorbFactors>>,
}

impl ImageSet {
    /// Pixels per image (channels * height * width).
    pub fn dim(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let d = self.dim();
        &self.images[i * d..(i + 1) * d]
    }

    /// A new set holding the images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> ImageSet {
        let d = self.dim();
        let mut images = Vec::with_capacity(indices.len() * d);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        ImageSet {
            images,
            n: indices.len(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            factors: self
                .factors
                .as_ref()
                .map(|f| indices.iter().map(|&i| f[i]).collect()),
        }
    }

    /// The first `n` images (or all, if fewer).
    pub fn head(&self, n: usize) -> ImageSet {
        let idx: Vec<usize> = (0..n.min(self.n)).collect();
        self.select(&idx)
    }
}

/// The three splits of a dataset, after preprocessing.
#[derive(Debug, Clone)]
pub struct Splits {
    /// Human-readable name of the source (e.g. "norb:/data/smallnorb", "fashion-mnist").
    pub name: String,
    pub train: ImageSet,
    pub val: ImageSet,
    pub test: ImageSet,
    pub num_classes: usize,
    pub class_names: Vec<String>,
}

impl Splits {
    pub fn get(&self, split: Split) -> &ImageSet {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Val, Split::Test];
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// Which NORB camera(s) to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Camera {
    #[default]
    Left,
    Right,
    /// Both cameras as two channels of one sample.
    BothChannels,
    /// Both cameras as separate samples.
    BothSamples,
}

/// How to load and preprocess a dataset; part of every run's resolved config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataOptions {
    /// `norb:DIR`, `fashion-mnist` or `idx:DIR`.
    pub spec: String,
    pub camera: Camera,
    /// Output side in pixels (NORB: 96 -> 64/48/32 by area averaging); None keeps the native size.
    pub image_size: Option<usize>,
    /// Fraction of the training set held out for validation (seeded); 0 allowed.
    pub val_fraction: f64,
    /// NORB only: hold out these instances for validation instead of a random fraction.
    pub val_instances: Option<Vec<u8>>,
    /// Keep at most this many images per split (after splitting), for quick runs.
    pub limit: Option<usize>,
    pub seed: u64,
}

impl Default for DataOptions {
    fn default() -> Self {
        Self {
            spec: "fashion-mnist".into(),
            camera: Camera::Left,
            image_size: None,
            val_fraction: 0.1,
            val_instances: None,
            limit: None,
            seed: 0,
        }
    }
}
