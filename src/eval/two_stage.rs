//! The two-stage VAE sampler (Dai & Wipf 2019): a second, small dense VAE trained on the first
//! VAE's latent codes z ~ q(z|x). Where the aggregate posterior of the first stage does not fill
//! N(0, I) (the "prior holes" behind nonsense samples), the second stage learns the map from a
//! true N(0, I) to it: u ~ N(0, I) -> z = second decoder mean -> first decoder -> image.
//!
//! Built from the VAE engine's own pieces (`model::Vae` with a dense network on vector input,
//! `train::optim::Adam`, `ParamStore` seeding). One departure from the paper: the paper's single
//! learned variance gamma only reaches its optimum (gamma -> 0) after long training, and a short
//! run leaves the codes' spread in one shared noise level that cannot match dimensions of different
//! scales; a learned per-dimension variance (the engine's `gaussian_per_pixel`) fits them within a
//! thousand steps, so that is what this stage uses.
use crate::model::{DenseConfig, InputShape, LikelihoodConfig, LikelihoodKind, Mode, ModelConfig, ModelKind};
use crate::model::{KlConfig, ParamStore, Vae};
use crate::train::optim::{Adam, AdamHyper};
use crate::util::SeededRng;
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TwoStageParams {
    pub hidden_layers: usize,
    pub width: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
}

impl Default for TwoStageParams {
    fn default() -> Self {
        Self {
            hidden_layers: 2,
            width: 256,
            steps: 1500,
            batch_size: 128,
            lr: 2e-3,
            seed: 0,
        }
    }
}

pub struct TwoStageVae {
    _store: ParamStore,
    vae: Vae,
    pub latent_dim: usize,
    /// Per-dimension mean and standard deviation of the codes: the second stage sees them
    /// standardised (a hierarchy's lower groups sit at scales of tens, where Adam at the
    /// default rate diverged in the first steps) and its samples are mapped back.
    shift: Vec<f32>,
    scale: Vec<f32>,
    /// Negative ELBO (nats per code) of the last 50 training steps, for the record.
    pub final_loss: f64,
    device: Device,
}

/// Train the second stage on codes `z` ([n, l]).
pub fn fit(z: &[f32], n: usize, l: usize, params: &TwoStageParams) -> Result<TwoStageVae> {
    if n < 2 || z.len() != n * l || l == 0 {
        bail!(
            "two-stage VAE: need at least 2 latent codes of size {l}, got {} values",
            z.len()
        );
    }
    if params.steps == 0 || params.batch_size < 2 {
        bail!("two-stage VAE: steps must be >= 1 and batch_size >= 2");
    }
    let (shift, scale) = column_moments(z, n, l);
    let z: Vec<f32> = z
        .iter()
        .enumerate()
        .map(|(k, &v)| (v - shift[k % l]) / scale[k % l])
        .collect();
    let z = &z[..];
    let device = crate::util::device::selected();
    let store = ParamStore::new(params.seed, &device);
    let model = ModelConfig {
        kind: ModelKind::PcaDense,
        latent_dim: l,
        dense: DenseConfig {
            components: l,
            hidden_layers: params.hidden_layers,
            width: params.width,
            batch_norm: false,
            ..Default::default()
        },
        ..Default::default()
    };
    let lik = LikelihoodConfig {
        kind: LikelihoodKind::GaussianPerPixel,
        ..Default::default()
    };
    let vae = Vae::new(&model, &lik, InputShape::Vector { dim: l }, store.var_builder())?;
    let vars = store.trainable().into_iter().map(|(_, v)| v).collect();
    let mut opt = Adam::new(
        vars,
        AdamHyper {
            lr: params.lr,
            ..Default::default()
        },
    )?;
    let mut rng = SeededRng::derived(params.seed, "two-stage");
    let b = params.batch_size.min(n);
    let kl = KlConfig::default();
    let mut recent = Vec::new();
    for step in 0..params.steps {
        let mut batch = Vec::with_capacity(b * l);
        for _ in 0..b {
            let i = rng.below(n);
            batch.extend_from_slice(&z[i * l..(i + 1) * l]);
        }
        let x = Tensor::from_vec(batch, (b, l), &device)?;
        let eps = Tensor::from_vec(rng.normal_vec(b * l), (b, l), &device)?;
        let _awake = crate::kernels::keep_workers_awake();
        let parts = vae.loss(&x, &eps, &kl, 1.0, Mode::Train)?;
        let loss = parts.loss.to_scalar::<f32>()? as f64;
        if !loss.is_finite() {
            bail!("two-stage VAE diverged (loss {loss}) at step {step}");
        }
        if step + 50 >= params.steps {
            recent.push(loss);
        }
        opt.backward_step(&parts.loss)?;
    }
    let final_loss = recent.iter().sum::<f64>() / recent.len().max(1) as f64;
    Ok(TwoStageVae {
        _store: store,
        vae,
        latent_dim: l,
        shift,
        scale,
        final_loss,
        device,
    })
}

/// Mean and standard deviation of each of the `l` columns of `z` [n, l] (a constant column gets
/// scale 1).
fn column_moments(z: &[f32], n: usize, l: usize) -> (Vec<f32>, Vec<f32>) {
    let mean = super::column_means(z, l);
    let mut var = vec![0.0f64; l];
    for row in z.chunks(l) {
        for t in 0..l {
            var[t] += (row[t] as f64 - mean[t]).powi(2);
        }
    }
    let scale = var
        .iter()
        .map(|v| {
            let sd = (v / n as f64).sqrt();
            if sd > 1e-12 {
                sd as f32
            } else {
                1.0
            }
        })
        .collect();
    (mean.iter().map(|&m| m as f32).collect(), scale)
}

impl TwoStageVae {
    /// `n` first-stage codes [n, l] drawn from the second stage's generative model: u ~ N(0, I),
    /// z ~ N(decoder mean, decoder variance). Keeping the learned observation noise matters: part
    /// of the codes' spread lives in it, and decoder means alone would be too narrow.
    pub fn sample(&self, n: usize, rng: &mut SeededRng) -> Result<Vec<f32>> {
        let l = self.latent_dim;
        let u = Tensor::from_vec(rng.normal_vec(n * l), (n, l), &self.device)?;
        let dec = self.vae.decode(&u, Mode::Eval)?;
        let mean = self.vae.likelihood.mean(&dec)?.flatten_all()?.to_vec1::<f32>()?;
        let lv = match &self.vae.likelihood {
            crate::model::Likelihood::GaussianPerPixel(g) => {
                g.log_variance(&dec)?.flatten_all()?.to_vec1::<f32>()?
            }
            _ => bail!("two-stage VAE: expected a per-dimension Gaussian likelihood"),
        };
        let eps = rng.normal_vec(n * l);
        Ok(mean
            .iter()
            .zip(lv)
            .zip(eps)
            .enumerate()
            .map(|(k, ((m, v), e))| self.shift[k % l] + self.scale[k % l] * (m + (0.5 * v).exp() * e))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_stage_maps_a_standard_normal_onto_a_shifted_scaled_code_distribution() {
        // Codes that do not look like N(0, I): mean (2, -1), standard deviations (0.5, 0.2).
        let mut rng = SeededRng::new(1);
        let n = 2000;
        let e = rng.normal_vec(2 * n);
        let z: Vec<f32> = (0..n)
            .flat_map(|i| [2.0 + 0.5 * e[2 * i], -1.0 + 0.2 * e[2 * i + 1]])
            .collect();
        let p = TwoStageParams {
            steps: 400,
            width: 64,
            ..Default::default()
        };
        let m = fit(&z, n, 2, &p).unwrap();
        let s = m.sample(2000, &mut SeededRng::new(2)).unwrap();
        let (mean, sd) = column_moments(&s, 2000, 2);
        assert!(
            (mean[0] - 2.0).abs() < 0.15 && (mean[1] + 1.0).abs() < 0.1,
            "means {mean:?}"
        );
        assert!(
            (sd[0] - 0.5).abs() < 0.1 && (sd[1] - 0.2).abs() < 0.05,
            "sds {sd:?}"
        );
    }

    #[test]
    fn codes_at_the_scale_of_a_hierarchys_lower_groups_are_fitted_in_mean_and_spread() {
        // Scales and offsets of tens, as a trained hierarchy's lower groups have.
        let mut rng = SeededRng::new(3);
        let n = 1000;
        let e = rng.normal_vec(2 * n);
        let z: Vec<f32> = (0..n)
            .flat_map(|i| [12.0 + 9.0 * e[2 * i], -20.0 + 4.0 * e[2 * i + 1]])
            .collect();
        let p = TwoStageParams {
            steps: 300,
            width: 64,
            ..Default::default()
        };
        let m = fit(&z, n, 2, &p).unwrap();
        let s = m.sample(2000, &mut SeededRng::new(4)).unwrap();
        let (mean, sd) = column_moments(&s, 2000, 2);
        assert!(
            (mean[0] - 12.0).abs() < 1.5 && (mean[1] + 20.0).abs() < 0.7,
            "means {mean:?}"
        );
        assert!(
            (sd[0] - 9.0).abs() < 2.0 && (sd[1] - 4.0).abs() < 1.0,
            "sds {sd:?}"
        );
    }
}
