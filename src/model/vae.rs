//! A VAE: one of the two networks plus its likelihood, and the loss they make together.
use super::config::{KlConfig, LikelihoodConfig, ModelConfig, ModelKind};
use super::conv_vae::{ConvGeometry, ConvVae};
use super::dense_vae::DenseVae;
use super::kl;
use super::layers::Mode;
use super::likelihood::Likelihood;
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// What the encoder eats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputShape {
    Image {
        channels: usize,
        height: usize,
        width: usize,
    },
    Vector {
        dim: usize,
    },
}

pub enum Network {
    Conv(ConvVae),
    Dense(DenseVae),
}

pub struct Vae {
    pub network: Network,
    pub likelihood: Likelihood,
    pub latent_dim: usize,
    pub input: InputShape,
}

/// One batch's loss and its parts. `loss` is what is minimised (beta, free bits applied);
/// `rec` and `kl` are per item (nats), so rec + kl is the negative ELBO.
pub struct LossParts {
    pub loss: Tensor,
    pub rec: Tensor,
    pub kl: Tensor,
    pub dec: Tensor,
}

impl Vae {
    pub fn new(
        model: &ModelConfig,
        lik: &LikelihoodConfig,
        input: InputShape,
        vb: VarBuilder,
    ) -> anyhow::Result<Self> {
        let likelihood = Likelihood::new(lik, vb.pp("likelihood"))?;
        let k = likelihood.outputs_per_dim();
        let network = match (model.kind, input) {
            (
                ModelKind::Conv,
                InputShape::Image {
                    channels,
                    height,
                    width,
                },
            ) => {
                let g =
                    ConvGeometry::new(&model.conv, channels, height, width).map_err(anyhow::Error::msg)?;
                Network::Conv(ConvVae::new(&model.conv, g, model.latent_dim, k, vb.clone())?)
            }
            (ModelKind::PcaDense, InputShape::Vector { dim }) => {
                Network::Dense(DenseVae::new(&model.dense, dim, model.latent_dim, k, vb.clone())?)
            }
            (kind, input) => anyhow::bail!("model kind {kind:?} cannot take input {input:?}"),
        };
        Ok(Self {
            network,
            likelihood,
            latent_dim: model.latent_dim,
            input,
        })
    }

    pub fn encode(&self, x: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        match &self.network {
            Network::Conv(n) => n.encode(x, mode),
            Network::Dense(n) => n.encode(x, mode),
        }
    }

    pub fn decode(&self, z: &Tensor, mode: Mode) -> Result<Tensor> {
        match &self.network {
            Network::Conv(n) => n.decode(z, mode),
            Network::Dense(n) => n.decode(z, mode),
        }
    }

    /// z = mu + exp(lv / 2) * eps with the caller's noise (from the seeded RNG).
    pub fn reparameterise(mu: &Tensor, logvar: &Tensor, eps: &Tensor) -> Result<Tensor> {
        mu + (logvar * 0.5)?.exp()?.mul(eps)?
    }

    /// Forward pass and loss for a batch. `eps` [b, latent] standard normal noise.
    pub fn loss(
        &self,
        x: &Tensor,
        eps: &Tensor,
        kl_cfg: &KlConfig,
        beta: f64,
        mode: Mode,
    ) -> Result<LossParts> {
        let (mu, lv) = self.encode(x, mode)?;
        let z = Self::reparameterise(&mu, &lv, eps)?;
        let dec = self.decode(&z, mode)?;
        let rec = self.likelihood.nll(x, &dec, mode)?;
        let kl_dims = kl::kl_per_dim(&mu, &lv)?;
        let kl = kl_dims.sum(1)?;
        let kl_term = kl::kl_training_term(&kl_dims, kl_cfg.free_bits)?;
        let loss = (rec.mean_all()? + (kl_term * beta)?)?;
        Ok(LossParts { loss, rec, kl, dec })
    }
}
