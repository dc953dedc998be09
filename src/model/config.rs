//! Model configuration: which VAE, its sizes, its decoder likelihood and its KL term. Part of the
//! TOML training config (`[model]`, `[model.conv]`, `[model.dense]`, `[likelihood]`, `[kl]`).
use super::layers::Activation;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Convolutional VAE on images.
    #[default]
    Conv,
    /// Dense VAE on PCA coefficients.
    PcaDense,
    /// Conv encoder with latent groups at several resolutions and a top-down decoder
    /// (`[model.hierarchical]`, the stages from `[model.conv]`).
    Hierarchical,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub kind: ModelKind,
    pub latent_dim: usize,
    pub conv: ConvConfig,
    pub dense: DenseConfig,
    pub hierarchical: HierarchicalConfig,
    pub prior: PriorConfig,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            kind: ModelKind::Conv,
            latent_dim: 10,
            conv: ConvConfig::default(),
            dense: DenseConfig::default(),
            hierarchical: HierarchicalConfig::default(),
            prior: PriorConfig::default(),
        }
    }
}

/// The spatial latent groups of `model.kind = "hierarchical"` (the top group is `latent_dim`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HierarchicalConfig {
    /// Spatial latent groups, one per resolution from the bottleneck up (1..=downsizings).
    pub spatial_groups: usize,
    /// Channels of each spatial group.
    pub latent_channels: usize,
    /// KL warm-up per group in epochs (top group first; empty: every group follows `kl`). Each
    /// at most `kl.warmup_epochs`: group g's weight is `kl.beta * min(1, epoch / this)`.
    pub group_warmup_epochs: Vec<f64>,
}

impl Default for HierarchicalConfig {
    fn default() -> Self {
        Self {
            spatial_groups: 2,
            latent_channels: 8,
            group_warmup_epochs: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PriorKind {
    /// N(0, I).
    #[default]
    Standard,
    /// VampPrior (Tomczak & Welling 2018): the mixture of the posteriors of `pseudo_inputs`
    /// learned inputs, for the flat VAEs (`conv`, `pca_dense`).
    Vamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PriorConfig {
    pub kind: PriorKind,
    /// vamp: number of pseudo-inputs (mixture components).
    pub pseudo_inputs: usize,
}

impl Default for PriorConfig {
    fn default() -> Self {
        Self {
            kind: PriorKind::Standard,
            pseudo_inputs: 50,
        }
    }
}

/// How an image whose side is not a multiple of 2^downsizings enters the conv encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SizeRule {
    /// Zero-pad the input (bottom/right get the extra pixel) up to the next multiple of
    /// 2^downsizings and crop the decoder output back to the image size. 96 with 6 downsizings
    /// becomes 128 -> 2x2 at the bottleneck; 28 with 5 becomes 32 -> 1x1.
    #[default]
    Pad,
    /// Refuse sizes that are not a multiple of 2^downsizings.
    Strict,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConvConfig {
    /// Stride-2 convolutions (kernel 4, padding 1), each halving the side.
    pub downsizings: usize,
    /// Filters at the first step, doubling at each step up to `max_filters`.
    pub first_filters: usize,
    pub max_filters: usize,
    /// Width of the dense layer between the flattened features and the latent.
    pub intermediate: usize,
    pub batch_norm: bool,
    pub activation: Activation,
    pub size_rule: SizeRule,
    /// 3x3 stride-1 residual cells after each downsizing, mirrored in the decoder (0: none).
    pub blocks_per_stage: usize,
}

impl Default for ConvConfig {
    fn default() -> Self {
        Self {
            downsizings: 6,
            first_filters: 16,
            max_filters: 512,
            intermediate: 256,
            batch_norm: true,
            activation: Activation::Relu,
            size_rule: SizeRule::Pad,
            blocks_per_stage: 0,
        }
    }
}

impl ConvConfig {
    /// Filters after each downsizing step.
    pub fn filters(&self) -> Vec<usize> {
        (0..self.downsizings)
            .map(|i| (self.first_filters << i.min(30)).min(self.max_filters))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OutputActivation {
    #[default]
    None,
    Sigmoid,
    Tanh,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DenseConfig {
    /// PCA components the VAE sees (the saved PCA model must have at least this many).
    pub components: usize,
    /// A PCA model saved by `norbvae pca` (pca.safetensors). None: fit one on the training split.
    pub pca_model: Option<PathBuf>,
    /// Divide coefficients by the square root of their explained variance.
    pub whiten: bool,
    pub hidden_layers: usize,
    pub width: usize,
    pub batch_norm: bool,
    pub activation: Activation,
}

impl Default for DenseConfig {
    fn default() -> Self {
        Self {
            components: 500,
            pca_model: None,
            whiten: false,
            hidden_layers: 4,
            width: 512,
            batch_norm: true,
            activation: Activation::Relu,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LikelihoodKind {
    /// Bernoulli on [0,1] pixels: binary cross-entropy on logits.
    #[default]
    Bernoulli,
    /// Gaussian with a fixed variance (`variance`): MSE plus constants.
    GaussianFixed,
    /// Gaussian whose decoder also outputs a log-variance per pixel ("fitted variance").
    GaussianPerPixel,
    /// Gaussian with one learned variance shared by all pixels.
    GaussianShared,
    /// Gaussian with the batch-optimal variance (sigma-VAE, Rybkin et al. 2021).
    GaussianOptimal,
    /// Discretized logistic on 8-bit pixels (PixelCNN++): a probability mass over the 256 levels.
    DiscretizedLogistic,
    /// A mixture of `components` discretized logistics per pixel.
    DiscretizedLogisticMixture,
}

impl LikelihoodKind {
    /// A probability mass over the 256 pixel levels (bits/dim without a dequantization term).
    pub fn is_discrete_pixels(self) -> bool {
        matches!(
            self,
            LikelihoodKind::DiscretizedLogistic | LikelihoodKind::DiscretizedLogisticMixture
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LikelihoodConfig {
    pub kind: LikelihoodKind,
    /// Mean activation for Gaussian decoders (Bernoulli always uses logits).
    pub output_activation: OutputActivation,
    /// gaussian_fixed: the variance (0.5 makes the loss the plain sum of squared errors).
    pub variance: f64,
    /// Learned variances: lower bound on the log-variance (soft: floor + softplus(raw - floor)).
    pub logvar_floor: f64,
    /// gaussian_optimal: log sigma is soft-clipped below at this value.
    pub min_log_sigma: f64,
    /// discretized_logistic_mixture: logistics per pixel.
    pub components: usize,
    /// discretized_logistic*: the log-scale is soft-floored at this value (PixelCNN++ clips at -7).
    pub min_log_scale: f64,
}

impl Default for LikelihoodConfig {
    fn default() -> Self {
        Self {
            kind: LikelihoodKind::Bernoulli,
            output_activation: OutputActivation::None,
            variance: 1.0,
            logvar_floor: -9.0,
            min_log_sigma: -6.0,
            components: 5,
            min_log_scale: -7.0,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KlConfig {
    /// KL weight.
    pub beta: f64,
    /// Linear warm-up of the KL weight from 0 to beta over this many epochs (0: none).
    pub warmup_epochs: f64,
    /// Free bits: nats per latent dimension below which the (batch-averaged) KL is not penalised.
    pub free_bits: f64,
}

impl Default for KlConfig {
    fn default() -> Self {
        Self {
            beta: 1.0,
            warmup_epochs: 0.0,
            free_bits: 0.0,
        }
    }
}
