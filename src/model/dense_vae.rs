//! The dense VAE on PCA coefficients: n hidden layers of width w (batch norm optional) to mu /
//! log-variance; the decoder mirrors them and ends in a linear layer to the coefficients.
use super::config::DenseConfig;
use super::layers::Activation;
use super::layers::{BatchNorm, Dense, Mode};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

struct Hidden {
    dense: Dense,
    bn: Option<BatchNorm>,
}

pub struct DenseVae {
    activation: Activation,
    enc: Vec<Hidden>,
    mu: Dense,
    logvar: Dense,
    dec: Vec<Hidden>,
    out: Dense,
}

fn stack(cfg: &DenseConfig, vb: &VarBuilder, input: usize) -> Result<Vec<Hidden>> {
    let mut layers = Vec::with_capacity(cfg.hidden_layers);
    let mut d = input;
    for i in 0..cfg.hidden_layers {
        layers.push(Hidden {
            dense: Dense::new(vb.pp(format!("dense{i}")), d, cfg.width)?,
            bn: if cfg.batch_norm {
                Some(BatchNorm::new(vb.pp(format!("bn{i}")), cfg.width)?)
            } else {
                None
            },
        });
        d = cfg.width;
    }
    Ok(layers)
}

impl DenseVae {
    /// `inputs`: coefficients per item; `out_per_dim`: decoder outputs per coefficient.
    pub fn new(
        cfg: &DenseConfig,
        inputs: usize,
        latent: usize,
        out_per_dim: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let hidden_out = if cfg.hidden_layers == 0 { inputs } else { cfg.width };
        let venc = vb.pp("encoder");
        let enc = stack(cfg, &venc, inputs)?;
        let mu = Dense::new(venc.pp("mu"), hidden_out, latent)?;
        let logvar = Dense::new(venc.pp("logvar"), hidden_out, latent)?;
        let vdec = vb.pp("decoder");
        let dec = stack(cfg, &vdec, latent)?;
        let dec_out = if cfg.hidden_layers == 0 { latent } else { cfg.width };
        let out = Dense::new(vdec.pp("out"), dec_out, inputs * out_per_dim)?;
        Ok(Self {
            activation: cfg.activation,
            enc,
            mu,
            logvar,
            dec,
            out,
        })
    }

    fn run(&self, layers: &[Hidden], x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut h = x.clone();
        for l in layers {
            h = match &l.bn {
                Some(bn) => bn.forward_dense_act(&l.dense, &h, mode, Some(self.activation))?,
                None => self.activation.apply(&l.dense.forward(&h)?)?,
            };
        }
        Ok(h)
    }

    pub fn encode(&self, x: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        let h = self.run(&self.enc, x, mode)?;
        Ok((self.mu.forward(&h)?, self.logvar.forward(&h)?))
    }

    pub fn decode(&self, z: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = self.run(&self.dec, z, mode)?;
        self.out.forward(&h)
    }
}
