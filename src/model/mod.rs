//! Models: the convolutional VAE on images and the dense VAE on PCA coefficients, their decoder
//! likelihoods and the KL term. A model is built from its config and a `VarBuilder` over a
//! seeded [`params::ParamStore`]; conv and batch-norm layers go through [`ops`], the hot path.
pub mod budget;
pub mod config;
pub mod conv_vae;
pub mod dense_vae;
pub mod describe;
pub mod discretized;
pub mod hierarchical;
pub mod kl;
pub mod layers;
pub mod likelihood;
pub mod ops;
pub mod params;
pub mod prior;
pub mod residual;
pub mod vae;

pub use config::{
    ConvConfig, DenseConfig, HierarchicalConfig, KlConfig, LikelihoodConfig, LikelihoodKind, ModelConfig,
    ModelKind, OutputActivation, PriorConfig, PriorKind, SizeRule,
};
pub use layers::{Activation, Mode};
pub use likelihood::Likelihood;
pub use params::ParamStore;
pub use vae::{InputShape, LossParts, Vae};
