//! Memory a command will need, estimated from the config before anything is allocated, so that an
//! absurd size (`model.latent_dim = 1e12`, `train.grid_images = 1e8`, `sample --n 1e8`) is refused
//! with a message naming the option instead of aborting in the allocator or taking the machine's
//! memory until the kernel kills the process.
//!
//! The estimate is a lower bound: parameters four times (weights, gradients, Adam's two moments),
//! the activations one training step keeps for its backward pass (each layer's output and its
//! gradient) at the batch size, the images and latents of the picture grids and of the samples.
//! Allocator slack, the dataset itself and temporary buffers come on top, so a refusal is never a
//! false alarm; a config that passes may still be close to the limit.
use super::config::{ConvConfig, DenseConfig, LikelihoodConfig, LikelihoodKind, ModelConfig, ModelKind};
use crate::util::mem::{available_bytes, human_bytes};

/// The image shape the model sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageShape {
    fn pixels(&self) -> f64 {
        self.channels as f64 * self.height as f64 * self.width as f64
    }
}

/// What the command does with the model, each with the option that sets it (for the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Training batch size (0: no training, e.g. `sample`).
    pub batch_size: usize,
    /// Images per reconstruction grid and per prior-sample grid (`train.grid_images`).
    pub grid_images: usize,
    /// Samples drawn at once, and the option that asks for them (e.g. `sample --n`).
    pub samples: usize,
    pub samples_option: &'static str,
}

impl Workload {
    /// `train`: steps at `batch_size`, grids of `grid_images`.
    pub fn training(batch_size: usize, grid_images: usize) -> Self {
        Self {
            batch_size,
            grid_images,
            samples: 0,
            samples_option: "",
        }
    }

    /// Drawing `n` samples at once, asked for by `option` (e.g. "sample --n").
    pub fn sampling(n: usize, option: &'static str) -> Self {
        Self {
            batch_size: 0,
            grid_images: 0,
            samples: n,
            samples_option: option,
        }
    }
}

/// One part of the estimate and the option that makes it large.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub what: &'static str,
    pub bytes: f64,
    /// `key = value` of the option that dominates this part.
    pub option: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MemoryEstimate {
    pub parts: Vec<Part>,
}

/// A command that cannot fit in this machine's memory; the message names the option.
#[derive(Debug, thiserror::Error)]
#[error(
    "{option}: {command} would need at least {} of memory ({what} alone {}), more than the {} \
     this machine has available; use a smaller value",
    human_bytes(*total as u64),
    human_bytes(*part as u64),
    human_bytes(*available)
)]
pub struct BudgetError {
    pub command: String,
    pub option: String,
    pub what: &'static str,
    pub total: f64,
    pub part: f64,
    pub available: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> f64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }

    /// The largest part.
    pub fn largest(&self) -> Option<&Part> {
        self.parts.iter().max_by(|a, b| a.bytes.total_cmp(&b.bytes))
    }

    /// Refuse when the estimate exceeds `available` bytes.
    pub fn check_against(&self, available: u64, command: &str) -> Result<(), BudgetError> {
        let total = self.total();
        if total <= available as f64 {
            return Ok(());
        }
        let largest = self.largest().expect("a total above zero has parts");
        Err(BudgetError {
            command: command.to_string(),
            option: largest.option.clone(),
            what: largest.what,
            total,
            part: largest.bytes,
            available,
        })
    }

    /// Refuse when the estimate exceeds the machine's available memory (`MemAvailable`); passes
    /// where the kernel does not say.
    pub fn check_available(&self, command: &str) -> Result<(), BudgetError> {
        match available_bytes() {
            Some(a) => self.check_against(a, command),
            None => Ok(()),
        }
    }
}

const F32: f64 = 4.0;

/// A weight matrix (or kernel) between two sizes, each set by an option.
struct Layer {
    params: f64,
    /// Outputs per image (activations kept for backward).
    outputs: f64,
    option: String,
}

fn larger(a: (f64, &str), b: (f64, &str)) -> String {
    if a.0 >= b.0 { a.1 } else { b.1 }.to_string()
}

fn conv_layers(c: &ConvConfig, image: ImageShape, latent: usize, out_per_pixel: usize) -> Vec<Layer> {
    let n = c.downsizings.min(62);
    let m = (1u64 << n) as f64;
    let ph = (image.height as f64 / m).ceil() * m;
    let pw = (image.width as f64 / m).ceil() * m;
    let filters: Vec<f64> = (0..n)
        .map(|i| (c.first_filters as f64 * 2f64.powi(i as i32)).min(c.max_filters as f64))
        .collect();
    let ff = format!("model.conv.first_filters = {}", c.first_filters);
    let inter = format!("model.conv.intermediate = {}", c.intermediate);
    let lat = format!("model.latent_dim = {latent}");
    let (i, l) = (c.intermediate as f64, latent as f64);
    let flat = filters.last().copied().unwrap_or(image.channels as f64) * (ph / m) * (pw / m);
    let mut layers = Vec::new();
    let mut prev = image.channels as f64;
    for (k, &f) in filters.iter().enumerate() {
        let side = (ph / 2f64.powi(k as i32 + 1)) * (pw / 2f64.powi(k as i32 + 1));
        // Encoder conv k and the decoder's mirrored transposed conv (same sizes, reversed).
        let out_dec = if k == 0 {
            image.channels as f64 * out_per_pixel as f64
        } else {
            prev
        };
        for (cin, cout, outputs) in [(prev, f, f * side), (f, out_dec, out_dec * side * 4.0)] {
            layers.push(Layer {
                params: 16.0 * cin * cout + 3.0 * cout,
                outputs,
                option: ff.clone(),
            });
        }
        prev = f;
    }
    let flat_opt = ff.as_str();
    for (a, b) in [
        ((flat, flat_opt), (i, inter.as_str())),
        ((i, inter.as_str()), (l, lat.as_str())),
        ((i, inter.as_str()), (l, lat.as_str())),
        ((l, lat.as_str()), (i, inter.as_str())),
        ((i, inter.as_str()), (flat, flat_opt)),
    ] {
        layers.push(Layer {
            params: a.0 * b.0 + 3.0 * b.0,
            outputs: b.0,
            option: larger(a, b),
        });
    }
    layers
}

fn dense_layers(d: &DenseConfig, latent: usize, out_per_pixel: usize) -> Vec<Layer> {
    let comp = (
        d.components as f64,
        format!("model.dense.components = {}", d.components),
    );
    let width = (d.width as f64, format!("model.dense.width = {}", d.width));
    let lat = (latent as f64, format!("model.latent_dim = {latent}"));
    let out = (comp.0 * out_per_pixel as f64, comp.1.clone());
    let mut sizes = vec![comp.clone()];
    sizes.extend(std::iter::repeat_n(width.clone(), d.hidden_layers));
    // Encoder to mu and log-variance, then the decoder back up.
    let mut pairs: Vec<((f64, String), (f64, String))> = Vec::new();
    for w in sizes.windows(2) {
        pairs.push((w[0].clone(), w[1].clone()));
    }
    let top = sizes.last().cloned().unwrap_or(comp.clone());
    pairs.push((top.clone(), lat.clone()));
    pairs.push((top.clone(), lat.clone()));
    let mut dec = sizes.clone();
    dec.reverse();
    let mut prev = lat.clone();
    for s in dec.iter().take(dec.len().saturating_sub(1)) {
        pairs.push((prev.clone(), s.clone()));
        prev = s.clone();
    }
    pairs.push((prev, out));
    pairs
        .into_iter()
        .map(|(a, b)| Layer {
            params: a.0 * b.0 + 3.0 * b.0,
            outputs: b.0,
            option: larger((a.0, &a.1), (b.0, &b.1)),
        })
        .collect()
}

/// Estimate what a command needs with this model on images of `image` doing `work`.
pub fn estimate(
    model: &ModelConfig,
    likelihood: &LikelihoodConfig,
    image: ImageShape,
    work: &Workload,
) -> MemoryEstimate {
    let out_per_pixel = if likelihood.kind == LikelihoodKind::GaussianPerPixel {
        2
    } else {
        1
    };
    let latent = model.latent_dim;
    let (layers, input) = match model.kind {
        // The hierarchical VAE's conv stages are a lower bound on its memory, as this estimate
        // must be (its per-group cells come on top).
        ModelKind::Conv | ModelKind::Hierarchical => (
            conv_layers(&model.conv, image, latent, out_per_pixel),
            image.pixels(),
        ),
        ModelKind::PcaDense => (
            dense_layers(&model.dense, latent, out_per_pixel),
            model.dense.components as f64,
        ),
    };
    let biggest = |f: &dyn Fn(&Layer) -> f64| {
        layers
            .iter()
            .max_by(|a, b| f(a).total_cmp(&f(b)))
            .map(|l| l.option.clone())
            .unwrap_or_default()
    };
    let params: f64 = layers.iter().map(|l| l.params).sum();
    let per_image: f64 = layers.iter().map(|l| l.outputs).sum::<f64>() + input + latent as f64 * 3.0;
    // A forward pass without gradients on one image: its largest layer output, its latent and
    // the decoded image.
    let decode_one = layers.iter().map(|l| l.outputs).fold(0.0, f64::max) + latent as f64 + image.pixels();
    let mut parts = vec![Part {
        what: "parameters with gradients and Adam's moments",
        bytes: params * 4.0 * F32,
        option: biggest(&|l| l.params),
    }];
    if model.kind == ModelKind::PcaDense {
        parts.push(Part {
            what: "the PCA basis",
            bytes: model.dense.components as f64 * image.pixels() * F32,
            option: format!("model.dense.components = {}", model.dense.components),
        });
    }
    if work.batch_size > 0 {
        parts.push(Part {
            what: "activations of one training step",
            bytes: work.batch_size as f64 * per_image * 2.0 * F32,
            option: if per_image * 2.0 > work.batch_size as f64 {
                biggest(&|l| l.outputs)
            } else {
                format!("train.batch_size = {}", work.batch_size)
            },
        });
    }
    if work.grid_images > 0 {
        // The reconstruction grid and the prior-sample grid each hold their images, latents and
        // decoded outputs.
        parts.push(Part {
            what: "the picture grids",
            bytes: 2.0 * work.grid_images as f64 * (image.pixels() + decode_one) * F32,
            option: format!("train.grid_images = {}", work.grid_images),
        });
    }
    if work.samples > 0 {
        parts.push(Part {
            what: "the samples",
            bytes: work.samples as f64 * (image.pixels() + decode_one) * F32,
            option: format!("{} {}", work.samples_option, work.samples),
        });
    }
    MemoryEstimate { parts }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn shape(side: usize) -> ImageShape {
        ImageShape {
            channels: 1,
            height: side,
            width: side,
        }
    }

    #[test]
    fn default_conv_vae_counts_its_parameters() {
        // Count the default conv VAE's weights by hand at 32x32 (6 downsizings: padded to 64, 1x1
        // at the bottom): filters 16, 32, ..., 512.
        let m = ModelConfig::default();
        let e = estimate(
            &m,
            &LikelihoodConfig::default(),
            shape(32),
            &Workload::training(64, 32),
        );
        let f = [1.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
        let conv: f64 = (0..6).map(|k| 2.0 * 16.0 * f[k] * f[k + 1]).sum();
        let dense = 512.0 * 256.0 * 2.0 + 256.0 * 10.0 * 3.0;
        let p = e.parts[0].bytes / 16.0;
        assert!(
            p > conv + dense && p < (conv + dense) * 1.05,
            "{p} vs {}",
            conv + dense
        );
        // A sensible config fits in a modest machine.
        assert!(e.total() < 0.5 * GIB as f64, "{}", e.total());
        e.check_against(GIB, "train").unwrap();
    }

    #[test]
    fn absurd_sizes_are_refused_naming_the_option() {
        let base = ModelConfig::default();
        let lik = LikelihoodConfig::default();
        let train = Workload::training(64, 32);
        let avail = 24 * GIB;
        let refuse = |m: &ModelConfig, w: &Workload, option: &str| {
            let e = estimate(m, &lik, shape(32), w)
                .check_against(avail, "train")
                .unwrap_err();
            let msg = e.to_string();
            assert!(msg.starts_with(option), "expected {option}: {msg}");
            assert!(msg.contains("24.0 GiB"), "{msg}");
        };
        let mut m = base.clone();
        m.latent_dim = 1_000_000_000_000;
        refuse(&m, &train, "model.latent_dim = 1000000000000");
        let mut m = base.clone();
        m.conv.intermediate = 4_000_000_000;
        refuse(&m, &train, "model.conv.intermediate = 4000000000");
        let mut m = base.clone();
        m.conv.first_filters = 100_000_000;
        m.conv.max_filters = 100_000_000;
        refuse(&m, &train, "model.conv.first_filters = 100000000");
        refuse(
            &base,
            &Workload::training(64, 100_000_000),
            "train.grid_images = 100000000",
        );
        refuse(
            &base,
            &Workload::sampling(100_000_000, "sample --n"),
            "sample --n 100000000",
        );
        let mut m = base.clone();
        m.kind = ModelKind::PcaDense;
        m.dense.width = 10_000_000;
        refuse(&m, &train, "model.dense.width = 10000000");
    }
}
