//! `model.json`: what the model was built for, and (from version 2) its whole architecture, so a
//! reader outside norbvae (python/norbvae_torch.py) can rebuild the network from this file and
//! the tensors of `model.safetensors` alone.
//!
//! # Versions
//!
//! - 0: no `format_version` (image shape and parameter count only).
//! - 1: the same, with the field.
//! - 2: adds `architecture` ([`Architecture`]). Older files load with `architecture: None`.
//!
//! # The architecture
//!
//! Networks are lists of [`Layer`]s applied in order; a layer names the tensors it uses (keys of
//! `model.safetensors`). The encoder maps the model input (images [b, c, h, w], or PCA
//! coefficients [b, k]) to features; `mu` and `logvar` map the features to the code's mean and
//! log-variance. The decoder maps codes [b, latent_dim] to the decoder output, which the
//! [`LikelihoodSpec`] turns into a mean (and a likelihood); an [`InputSpec::Pca`] maps a mean in
//! coefficient space back to pixels. Reconstructions decode the posterior mean, take the
//! likelihood's mean, map it to pixels and clamp it to [0, 1].
use super::{version_0, Versioned};
use serde::{Deserialize, Serialize};

/// The version of `model.json` this build writes (and the newest it reads).
pub const MODEL_FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    #[serde(default = "version_0")]
    pub format_version: u32,
    /// (channels, height, width) of the images.
    pub image_shape: (usize, usize, usize),
    /// Trainable scalars.
    pub num_parameters: usize,
    /// The network, layer by layer (version 2 on; absent in older files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<Architecture>,
}

impl ModelMeta {
    pub fn new(image_shape: (usize, usize, usize), num_parameters: usize) -> Self {
        Self {
            format_version: MODEL_FORMAT_VERSION,
            image_shape,
            num_parameters,
            architecture: None,
        }
    }

    pub fn with_architecture(mut self, architecture: Architecture) -> Self {
        self.architecture = Some(architecture);
        self
    }
}

impl Versioned for ModelMeta {
    const NEWEST: u32 = MODEL_FORMAT_VERSION;
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

/// The whole network of a VAE run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    /// `model.kind` of the config: `conv`, `pca_dense` or `hierarchical`.
    pub kind: String,
    pub input: InputSpec,
    /// Width of the code `mu`/`logvar` give and the decoder takes (a hierarchy's top group).
    pub latent_dim: usize,
    /// Latent scalars per item, every group included.
    pub total_latent_dim: usize,
    /// Batch-norm constants of every `batch_norm` layer (PyTorch's convention: eps added to the
    /// variance, running statistics updated with `momentum` and the unbiased batch variance).
    pub batch_norm_eps: f64,
    pub batch_norm_momentum: f64,
    /// Model input -> features.
    pub encoder: Vec<Layer>,
    /// Features -> the code's mean and log-variance.
    pub mu: Layer,
    pub logvar: Layer,
    /// Code -> decoder output (before the likelihood).
    pub decoder: Vec<Layer>,
    /// Hierarchical VAE: the spatial latent groups the decoder's `latent_group` layers apply.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<LatentGroup>,
    pub likelihood: LikelihoodSpec,
    pub prior: PriorSpec,
}

/// What the encoder eats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputSpec {
    /// Pixels in [0, 1], [b, channels, height, width].
    Image {
        channels: usize,
        height: usize,
        width: usize,
    },
    /// The first `components` PCA coefficients of the flattened image: `(x - mean) @ components.T`,
    /// divided by `sqrt(max(explained_variance, whitening_floor))` when `whiten`, where
    /// `whitening_floor = max(total_variance / dim * whitening_floor_factor, f64::MIN_POSITIVE)`.
    /// Back to pixels: `coef (times the same scales when whiten) @ components + mean`.
    /// The tensors (`mean`, `components`, `explained_variance`, `total_variance`) are in `file`.
    Pca {
        file: String,
        components: usize,
        whiten: bool,
        whitening_floor_factor: f64,
        image_channels: usize,
        image_height: usize,
        image_width: usize,
    },
}

/// Activation functions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ActivationSpec {
    Relu,
    /// max(x, slope x).
    LeakyRelu {
        slope: f64,
    },
    /// x sigmoid(x).
    Silu,
}

/// One layer. Tensor names are keys of `model.safetensors`; weights use PyTorch's layouts
/// (linear [out, in], conv [out, in, k, k], transposed conv [in, out, k, k]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Layer {
    /// Zero padding at the bottom and the right of an image ([`size_rule = "pad"`]).
    PadBottomRight {
        bottom: usize,
        right: usize,
    },
    /// Keep the top-left `height` x `width` pixels (undoes `pad_bottom_right`).
    Crop {
        height: usize,
        width: usize,
    },
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        weight: String,
        bias: String,
    },
    ConvTranspose2d {
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        weight: String,
        bias: String,
    },
    /// Batch norm over dim 1 (channels of [b, c, h, w] or features of [b, f]); evaluation uses
    /// the running statistics.
    BatchNorm {
        features: usize,
        eps: f64,
        momentum: f64,
        weight: String,
        bias: String,
        running_mean: String,
        running_var: String,
    },
    Activation {
        activation: ActivationSpec,
    },
    Linear {
        in_features: usize,
        out_features: usize,
        weight: String,
        bias: String,
    },
    /// [b, ...] -> [b, prod(...)].
    Flatten,
    /// [b, prod(shape)] -> [b, shape...].
    Reshape {
        shape: Vec<usize>,
    },
    /// `activation(x + body(x))`.
    Residual {
        body: Vec<Layer>,
        activation: ActivationSpec,
    },
    /// Hierarchical encoder: the features here are encoder level `level` (what the posterior of
    /// the group with that level reads).
    StageOutput {
        level: usize,
    },
    /// Hierarchical decoder: apply latent group `group` (index into `groups`) to the top-down
    /// state here.
    LatentGroup {
        group: usize,
    },
}

/// A spatial latent group of the hierarchical VAE at a `latent_group` layer with top-down
/// state `d` and (inference) encoder features `h` of level `level`:
/// `p = prior(d)`, `mu_p, lv_p = p[:, :c], soft_clamp(p[:, c:])`;
/// posterior: `q = posterior(cat([d, h], 1))`, `mu_q = mu_p + q[:, :c]`,
/// `lv_q = lv_p + soft_clamp(q[:, c:])`; `z` = the mean (or mean + exp(lv / 2) eps);
/// the state becomes `d + merge(z)`. `soft_clamp(x) = logvar_clamp * tanh(x / logvar_clamp)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatentGroup {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub level: usize,
    pub logvar_clamp: f64,
    /// 3x3 convolution, state channels -> 2 * channels.
    pub prior: Layer,
    /// 3x3 convolution, 2 * state channels -> 2 * channels.
    pub posterior: Layer,
    /// 1x1 convolution, channels -> state channels.
    pub merge: Layer,
}

/// How the decoder output becomes a distribution over the data (model space). Decoder output
/// maps per data channel (or feature): `outputs_per_dim`, in blocks along dim 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LikelihoodSpec {
    /// `likelihood.kind` of the config: bernoulli, gaussian_fixed, gaussian_per_pixel,
    /// gaussian_shared, gaussian_optimal, discretized_logistic, discretized_logistic_mixture.
    pub kind: String,
    pub outputs_per_dim: usize,
    /// The function giving the mean from the mean block: `sigmoid` (Bernoulli logits and
    /// `output_activation = "sigmoid"`), `tanh`, `tanh_unit` ((tanh + 1) / 2: the discretized
    /// logistics with tanh) or `identity`.
    pub mean_activation: String,
    /// `likelihood.output_activation` of the config.
    pub output_activation: String,
    /// gaussian_fixed: the variance.
    pub variance: f64,
    /// gaussian_per_pixel, gaussian_shared: soft floor of the log-variance
    /// (`floor + softplus(raw - floor)`).
    pub logvar_floor: f64,
    /// gaussian_optimal: soft floor of log sigma; evaluation uses the running value `log_sigma`.
    pub min_log_sigma: f64,
    /// discretized_logistic_mixture: components K (1 for discretized_logistic). Output blocks:
    /// K = 1: [means | log-scales]; K > 1: [logits (K) | means (K) | log-scales (K)]; the mean is
    /// `sum_k softmax(logits)_k mean_activation(means_k)`.
    pub components: usize,
    /// discretized_logistic*: soft floor of the log-scales.
    pub min_log_scale: f64,
    /// gaussian_shared: the raw log-variance tensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_logvar: Option<String>,
    /// gaussian_optimal: the running log sigma buffer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_sigma: Option<String>,
}

/// The prior over the code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PriorSpec {
    /// N(0, I) (for a hierarchy: the top group; the spatial groups have conditional priors).
    Standard,
    /// VampPrior: the equal-weight mixture of the encoder's posteriors (evaluation mode) at the
    /// pseudo-inputs `input_transform(tensor)` (`sigmoid` for images, `identity` for vectors).
    Vamp {
        pseudo_inputs: usize,
        tensor: String,
        input_transform: String,
    },
}
