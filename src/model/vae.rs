//! A VAE: one of the networks plus its likelihood and prior, and the loss they make together.
//!
//! Two widths matter. `latent_dim` is the number of latent scalars per item, i.e. the width of
//! the noise `loss`, `elbo_terms` and `log_weights` take (every group for the hierarchical VAE).
//! [`Vae::code_dim`] is the width of the codes `encode` returns and `decode` takes, the code the
//! samplers, traversals and pictures work on: the same for the flat VAEs, the top group for the
//! hierarchical one (whose `decode` sets the lower groups to their conditional prior means).
use super::config::{KlConfig, LikelihoodConfig, ModelConfig, ModelKind, PriorKind};
use super::conv_vae::{ConvGeometry, ConvVae};
use super::dense_vae::DenseVae;
use super::hierarchical::{Codes, HierVae};
use super::kl;
use super::layers::Mode;
use super::likelihood::Likelihood;
use super::prior::{self, VampPrior};
use crate::util::SeededRng;
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
    Hierarchical(HierVae),
}

pub enum Prior {
    /// N(0, I) (the hierarchical VAE's top group; its lower groups have conditional priors).
    Standard,
    Vamp(VampPrior),
}

pub struct Vae {
    pub network: Network,
    pub likelihood: Likelihood,
    pub prior: Prior,
    /// Latent scalars per item (all groups): the width of the noise the loss takes.
    pub latent_dim: usize,
    code_dim: usize,
    pub input: InputShape,
    group_warmup_epochs: Vec<f64>,
}

/// One batch's loss and its parts. `loss` is what is minimised (beta, free bits applied);
/// `rec` and `kl` are per item (nats), so rec + kl is the negative ELBO.
pub struct LossParts {
    pub loss: Tensor,
    pub rec: Tensor,
    /// Total KL per item [b] (all groups).
    pub kl: Tensor,
    pub dec: Tensor,
    /// Hierarchical VAE: KL per item of each group [b], top group first, then coarse to fine.
    pub kl_groups: Option<Vec<Tensor>>,
}

/// A single-sample ELBO of a batch, per item: `rec` [b], `kl` [b] (nats), the decoder output.
pub struct ElboTerms {
    pub rec: Tensor,
    pub kl: Tensor,
    pub dec: Tensor,
    pub kl_groups: Option<Vec<Tensor>>,
}

/// One reparameterised pass: the decoder output and the KL of the sample.
struct Pass {
    dec: Tensor,
    /// Analytic KL per latent scalar of each group ([b, d_g]); empty for the VampPrior.
    kl_dims: Vec<Tensor>,
    /// VampPrior: ln q(z|x) - ln p(z) per item at the sample.
    kl_sample: Option<Tensor>,
    /// ln p(z) - ln q(z|x) per item at the sample (for importance weights).
    log_ratio: Tensor,
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
                ModelKind::Conv | ModelKind::Hierarchical,
                InputShape::Image {
                    channels,
                    height,
                    width,
                },
            ) => {
                let g =
                    ConvGeometry::new(&model.conv, channels, height, width).map_err(anyhow::Error::msg)?;
                if model.kind == ModelKind::Conv {
                    Network::Conv(ConvVae::new(&model.conv, g, model.latent_dim, k, vb.clone())?)
                } else {
                    Network::Hierarchical(HierVae::new(
                        &model.conv,
                        &model.hierarchical,
                        g,
                        model.latent_dim,
                        k,
                        vb.clone(),
                    )?)
                }
            }
            (ModelKind::PcaDense, InputShape::Vector { dim }) => {
                Network::Dense(DenseVae::new(&model.dense, dim, model.latent_dim, k, vb.clone())?)
            }
            (kind, input) => anyhow::bail!("model kind {kind:?} cannot take input {input:?}"),
        };
        let prior = match model.prior.kind {
            PriorKind::Standard => Prior::Standard,
            PriorKind::Vamp => {
                if let Network::Hierarchical(_) = network {
                    anyhow::bail!(
                        "model.prior.kind = \"vamp\" is for the flat VAEs (conv, pca_dense), not the hierarchical one"
                    );
                }
                let (shape, image) = match input {
                    InputShape::Image {
                        channels,
                        height,
                        width,
                    } => (vec![channels, height, width], true),
                    InputShape::Vector { dim } => (vec![dim], false),
                };
                Prior::Vamp(VampPrior::new(
                    vb.pp("prior"),
                    model.prior.pseudo_inputs,
                    &shape,
                    image,
                )?)
            }
        };
        let latent_dim = match &network {
            Network::Hierarchical(h) => h.total_dim(),
            _ => model.latent_dim,
        };
        Ok(Self {
            network,
            likelihood,
            prior,
            latent_dim,
            code_dim: model.latent_dim,
            input,
            group_warmup_epochs: model.hierarchical.group_warmup_epochs.clone(),
        })
    }

    /// Width of the codes `encode` returns and `decode` takes (the top group of a hierarchy).
    pub fn code_dim(&self) -> usize {
        self.code_dim
    }

    /// Latent scalars per group, top group first (one group for the flat VAEs).
    pub fn group_dims(&self) -> Vec<usize> {
        let mut v = vec![self.code_dim];
        if let Network::Hierarchical(h) = &self.network {
            v.extend(h.group_dims());
        }
        v
    }

    /// A hierarchical VAE (more than one latent group).
    pub fn is_hierarchical(&self) -> bool {
        matches!(self.network, Network::Hierarchical(_))
    }

    /// A flat VAE with the N(0, I) prior: every quantity has the closed forms of the basic VAE.
    pub fn is_flat_standard(&self) -> bool {
        !matches!(self.network, Network::Hierarchical(_)) && matches!(self.prior, Prior::Standard)
    }

    /// (mu, logvar) of the code, each [b, code_dim] (the top group of a hierarchy).
    pub fn encode(&self, x: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        match &self.network {
            Network::Conv(n) => n.encode(x, mode),
            Network::Dense(n) => n.encode(x, mode),
            Network::Hierarchical(n) => {
                let (_, mu, lv) = n.bottom_up(x, mode)?;
                Ok((mu, lv))
            }
        }
    }

    /// Decoder output for codes [b, code_dim]; a hierarchy's lower groups take their conditional
    /// prior means.
    pub fn decode(&self, z: &Tensor, mode: Mode) -> Result<Tensor> {
        match &self.network {
            Network::Conv(n) => n.decode(z, mode),
            Network::Dense(n) => n.decode(z, mode),
            Network::Hierarchical(n) => Ok(n.top_down(z, None, Codes::Mean, mode)?.0),
        }
    }

    /// Decoder output at the posterior means of every group (reconstructions).
    pub fn reconstruct(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match &self.network {
            Network::Hierarchical(n) => {
                let (feats, mu, _) = n.bottom_up(x, mode)?;
                Ok(n.top_down(&mu, Some(&feats), Codes::Mean, mode)?.0)
            }
            _ => self.decode(&self.encode(x, mode)?.0, mode),
        }
    }

    /// Posterior means of every group, each [b, d_g], top group first: a hierarchy's lower groups
    /// at the posterior means of the groups above (the pass [`Vae::reconstruct`] makes).
    pub fn posterior_means(&self, x: &Tensor, mode: Mode) -> Result<Vec<Tensor>> {
        match &self.network {
            Network::Hierarchical(n) => {
                let (feats, mu, _) = n.bottom_up(x, mode)?;
                let (_, states) = n.top_down(&mu, Some(&feats), Codes::Mean, mode)?;
                let b = mu.dim(0)?;
                let mut out = vec![mu];
                for s in states {
                    if let Some(m) = s.mu_q {
                        out.push(m.reshape((b, ()))?);
                    }
                }
                Ok(out)
            }
            _ => Ok(vec![self.encode(x, mode)?.0]),
        }
    }

    /// Width of the full code: every group's latents (the top group's alone for the flat VAEs).
    /// Ex-post samplers fit and draw full codes, which [`Vae::decode_full`] decodes.
    pub fn full_code_dim(&self) -> usize {
        self.group_dims().iter().sum()
    }

    /// Posterior (mu, logvar) of the full code, each [b, full_code_dim], groups in the order of
    /// [`Vae::group_dims`]: a hierarchy's lower groups at the posterior means of the groups above
    /// (the pass [`Vae::reconstruct`] makes, so `decode_full(mu)` is the reconstruction).
    pub fn posterior_full(&self, x: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        match &self.network {
            Network::Hierarchical(n) => {
                let (feats, mu, lv) = n.bottom_up(x, mode)?;
                let (_, states) = n.top_down(&mu, Some(&feats), Codes::Mean, mode)?;
                let b = mu.dim(0)?;
                let (mut mus, mut lvs) = (vec![mu], vec![lv]);
                for s in states {
                    if let (Some(m), Some(l)) = (s.mu_q, s.lv_q) {
                        mus.push(m.reshape((b, ()))?);
                        lvs.push(l.reshape((b, ()))?);
                    }
                }
                Ok((Tensor::cat(&mus, 1)?, Tensor::cat(&lvs, 1)?))
            }
            _ => self.encode(x, mode),
        }
    }

    /// Decoder output for full codes [b, full_code_dim] (every group given).
    pub fn decode_full(&self, z: &Tensor, mode: Mode) -> Result<Tensor> {
        match &self.network {
            Network::Hierarchical(n) => {
                let (top, groups) = n.split_noise(z)?;
                Ok(n.top_down(&top, None, Codes::Given(&groups), mode)?.0)
            }
            _ => self.decode(z, mode),
        }
    }

    /// Decoder output of ancestral samples from the model's prior with standard-normal noise
    /// `eps` [b, full_code_dim] scaled by `temperature` (NVAE's sampling temperature): the top
    /// group's code is `t * eps`, each lower group `mu_p + t * sigma_p * eps` from its conditional
    /// prior. For a flat VAE with the N(0, I) prior this is `decode(t * eps)`. Returns the decoder
    /// output and the full code drawn, [b, full_code_dim].
    pub fn generate(&self, eps: &Tensor, temperature: f64, mode: Mode) -> Result<(Tensor, Tensor)> {
        if matches!(self.prior, Prior::Vamp(_)) {
            candle_core::bail!(
                "ancestral sampling draws from the N(0, I) prior; a VampPrior is sampled by its components"
            );
        }
        let eps = (eps * temperature)?;
        match &self.network {
            Network::Hierarchical(n) => {
                let (top, groups) = n.split_noise(&eps)?;
                let (dec, states) = n.top_down(&top, None, Codes::Sample(&groups), mode)?;
                let b = top.dim(0)?;
                let mut codes = vec![top];
                for s in states {
                    codes.push(s.z.reshape((b, ()))?);
                }
                Ok((dec, Tensor::cat(&codes, 1)?))
            }
            _ => Ok((self.decode(&eps, mode)?, eps)),
        }
    }

    /// z = mu + exp(lv / 2) * eps with the caller's noise (from the seeded RNG).
    pub fn reparameterise(mu: &Tensor, logvar: &Tensor, eps: &Tensor) -> Result<Tensor> {
        mu + (logvar * 0.5)?.exp()?.mul(eps)?
    }

    /// The VampPrior's components (mu_k, logvar_k), each [K, code_dim].
    pub fn prior_components(&self) -> Result<Option<(Tensor, Tensor)>> {
        match &self.prior {
            Prior::Standard => Ok(None),
            Prior::Vamp(v) => Ok(Some(self.encode(&v.inputs()?, Mode::Eval)?)),
        }
    }

    /// `n` codes [n * code_dim] drawn from the prior of the code (N(0, I) draws exactly
    /// `rng.normal_vec(n * code_dim)`).
    pub fn prior_codes(&self, n: usize, rng: &mut SeededRng) -> Result<Vec<f32>> {
        let l = self.code_dim;
        match self.prior_components()? {
            None => Ok(rng.normal_vec(n * l)),
            Some((mu, lv)) => {
                let mu = mu.to_vec2::<f32>()?;
                let lv = lv.to_vec2::<f32>()?;
                let mut out = Vec::with_capacity(n * l);
                for _ in 0..n {
                    let k = rng.below(mu.len());
                    let e = rng.normal_vec(l);
                    out.extend((0..l).map(|t| mu[k][t] + (0.5 * lv[k][t]).exp() * e[t]));
                }
                Ok(out)
            }
        }
    }

    fn pass(&self, x: &Tensor, eps: &Tensor, mode: Mode) -> Result<Pass> {
        // ln p(z) - ln q(z|x) of a N(0, I) prior at z = mu + sigma eps (2 pi cancels).
        let standard_ratio = |z: &Tensor, lv: &Tensor, e: &Tensor| -> Result<Tensor> {
            ((e.sqr()? - z.sqr()?)? + lv)?.sum(1)? * 0.5
        };
        match &self.network {
            Network::Hierarchical(n) => {
                let (feats, mu, lv) = n.bottom_up(x, mode)?;
                let (e_top, e_groups) = n.split_noise(eps)?;
                let z = Self::reparameterise(&mu, &lv, &e_top)?;
                let (dec, states) = n.top_down(&z, Some(&feats), Codes::Sample(&e_groups), mode)?;
                let mut kl_dims = vec![kl::kl_per_dim(&mu, &lv)?];
                let mut log_ratio = standard_ratio(&z, &lv, &e_top)?;
                for s in &states {
                    kl_dims.push(s.kl_per_dim()?);
                    log_ratio = (log_ratio + s.log_ratio()?)?;
                }
                Ok(Pass {
                    dec,
                    kl_dims,
                    kl_sample: None,
                    log_ratio,
                })
            }
            _ => {
                let (mu, lv) = self.encode(x, mode)?;
                let z = Self::reparameterise(&mu, &lv, eps)?;
                let dec = self.decode(&z, mode)?;
                match self.prior_components()? {
                    None => Ok(Pass {
                        dec,
                        kl_dims: vec![kl::kl_per_dim(&mu, &lv)?],
                        kl_sample: None,
                        log_ratio: standard_ratio(&z, &lv, eps)?,
                    }),
                    Some((mu_k, lv_k)) => {
                        let log_ratio =
                            (prior::log_mixture(&z, &mu_k, &lv_k)? - prior::log_normal(&z, &mu, &lv)?)?;
                        Ok(Pass {
                            dec,
                            kl_dims: Vec::new(),
                            kl_sample: Some(log_ratio.neg()?),
                            log_ratio,
                        })
                    }
                }
            }
        }
    }

    /// KL weight of each group: `beta`, or with `model.hierarchical.group_warmup_epochs` each
    /// group's own linear warm-up, read off the global warm-up's progress (`beta` rises linearly
    /// to `kl.beta` over `kl.warmup_epochs`, so the epoch is `beta / kl.beta * warmup_epochs`).
    fn group_weights(&self, kl_cfg: &KlConfig, beta: f64, groups: usize) -> Vec<f64> {
        if self.group_warmup_epochs.is_empty() || kl_cfg.warmup_epochs <= 0.0 || kl_cfg.beta <= 0.0 {
            return vec![beta; groups];
        }
        let epoch = (beta / kl_cfg.beta).clamp(0.0, 1.0) * kl_cfg.warmup_epochs;
        (0..groups)
            .map(|g| match self.group_warmup_epochs.get(g) {
                Some(&w) if w > 0.0 => kl_cfg.beta * (epoch / w).min(1.0),
                Some(_) => kl_cfg.beta,
                None => beta,
            })
            .collect()
    }

    /// Forward pass and loss for a batch. `eps` [b, latent_dim] standard normal noise.
    pub fn loss(
        &self,
        x: &Tensor,
        eps: &Tensor,
        kl_cfg: &KlConfig,
        beta: f64,
        mode: Mode,
    ) -> Result<LossParts> {
        let p = self.pass(x, eps, mode)?;
        let rec = self.likelihood.nll(x, &p.dec, mode)?;
        if let Some(kl) = p.kl_sample {
            // VampPrior: the single-sample KL, batch mean (free bits are per factorised dimension
            // and are refused for this prior by the config check).
            let loss = (rec.mean_all()? + (kl.mean_all()? * beta)?)?;
            return Ok(LossParts {
                loss,
                rec,
                kl,
                dec: p.dec,
                kl_groups: None,
            });
        }
        if p.kl_dims.len() == 1 {
            let kl = p.kl_dims[0].sum(1)?;
            let kl_term = kl::kl_training_term(&p.kl_dims[0], kl_cfg.free_bits)?;
            let loss = (rec.mean_all()? + (kl_term * beta)?)?;
            return Ok(LossParts {
                loss,
                rec,
                kl,
                dec: p.dec,
                kl_groups: None,
            });
        }
        let weights = self.group_weights(kl_cfg, beta, p.kl_dims.len());
        let mut loss = rec.mean_all()?;
        let mut groups = Vec::with_capacity(p.kl_dims.len());
        for (dims, w) in p.kl_dims.iter().zip(weights) {
            loss = (loss + (kl::kl_training_term(dims, kl_cfg.free_bits)? * w)?)?;
            groups.push(dims.sum(1)?);
        }
        let mut kl = groups[0].clone();
        for g in &groups[1..] {
            kl = (kl + g)?;
        }
        Ok(LossParts {
            loss,
            rec,
            kl,
            dec: p.dec,
            kl_groups: Some(groups),
        })
    }

    /// The negative ELBO's two terms for a batch with noise `eps` [b, latent_dim].
    pub fn elbo_terms(&self, x: &Tensor, eps: &Tensor, mode: Mode) -> Result<ElboTerms> {
        let p = self.pass(x, eps, mode)?;
        let rec = self.likelihood.nll(x, &p.dec, mode)?;
        let (kl, kl_groups) = match p.kl_sample {
            Some(kl) => (kl, None),
            None => {
                let groups = p.kl_dims.iter().map(|d| d.sum(1)).collect::<Result<Vec<_>>>()?;
                let mut kl = groups[0].clone();
                for g in &groups[1..] {
                    kl = (kl + g)?;
                }
                (kl, (groups.len() > 1).then_some(groups))
            }
        };
        Ok(ElboTerms {
            rec,
            kl,
            dec: p.dec,
            kl_groups,
        })
    }

    /// Importance log-weights `ln p(x|z) + ln p(z) - ln q(z|x)` per item [b] at the sample with
    /// noise `eps` [b, latent_dim] (every group of a hierarchy), in model space.
    pub fn log_weights(&self, x: &Tensor, eps: &Tensor, mode: Mode) -> Result<Tensor> {
        let p = self.pass(x, eps, mode)?;
        let log_px = self.likelihood.nll(x, &p.dec, mode)?.neg()?;
        log_px + p.log_ratio
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{HierarchicalConfig, LikelihoodKind, PriorConfig};
    use crate::model::params::ParamStore;
    use candle_core::Device;

    fn tiny_model(kind: ModelKind, prior: PriorKind, seed: u64) -> (Vae, Tensor) {
        let mut model = ModelConfig {
            kind,
            latent_dim: 2,
            hierarchical: HierarchicalConfig {
                spatial_groups: 2,
                latent_channels: 2,
                group_warmup_epochs: Vec::new(),
            },
            prior: PriorConfig {
                kind: prior,
                pseudo_inputs: 3,
            },
            ..Default::default()
        };
        model.conv.downsizings = 3;
        model.conv.first_filters = 2;
        model.conv.max_filters = 4;
        model.conv.intermediate = 6;
        model.conv.batch_norm = false;
        model.conv.blocks_per_stage = 1;
        let lik = LikelihoodConfig {
            kind: LikelihoodKind::DiscretizedLogistic,
            output_activation: crate::model::OutputActivation::Sigmoid,
            ..Default::default()
        };
        let store = ParamStore::new(seed, &Device::Cpu);
        let input = InputShape::Image {
            channels: 1,
            height: 8,
            width: 7,
        };
        let vae = Vae::new(&model, &lik, input, store.var_builder()).unwrap();
        // The spatial groups' prior and posterior heads start at zero (posterior = prior, zero
        // KL); give them weights of a trained size so the groups' KL terms are exercised.
        let mut rng = SeededRng::new(seed + 1000);
        for (name, var) in store.trainable() {
            if name.contains("group") && (name.contains("prior.weight") || name.contains("posterior.weight"))
            {
                let w: Vec<f32> = rng.normal_vec(var.elem_count()).iter().map(|v| v * 0.3).collect();
                var.set(&Tensor::from_vec(w, var.shape(), &Device::Cpu).unwrap())
                    .unwrap();
            }
        }
        let px: Vec<f32> = SeededRng::new(seed)
            .uniform_vec(56)
            .into_iter()
            .map(|u| (u * 255.0).floor() / 255.0)
            .collect();
        (vae, Tensor::from_vec(px, (1, 1, 8, 7), &Device::Cpu).unwrap())
    }

    fn mean_and_se(v: &[f64]) -> (f64, f64) {
        let n = v.len() as f64;
        let m = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0);
        (m, (var / n).sqrt())
    }

    fn ln_normal(z: f64, mu: f64, lv: f64) -> f64 {
        -0.5 * ((2.0 * std::f64::consts::PI).ln() + lv + (z - mu).powi(2) / lv.exp())
    }

    #[test]
    fn hierarchical_kl_matches_a_monte_carlo_estimate_of_log_q_minus_log_p() {
        let (vae, x) = tiny_model(ModelKind::Hierarchical, PriorKind::Standard, 5);
        let Network::Hierarchical(net) = &vae.network else {
            panic!("not hierarchical")
        };
        // Top 2 + groups 2x1x1 (level 2) and 2x2x2 (level 1), odd width 7 padded to 8.
        assert_eq!(vae.group_dims(), vec![2, 2, 8]);
        assert_eq!(vae.latent_dim, 12);
        let n = 4000;
        let xs = x.repeat((n, 1, 1, 1)).unwrap();
        let eps = Tensor::from_vec(SeededRng::new(9).normal_vec(n * 12), (n, 12), &Device::Cpu).unwrap();
        // The analytic per-group KL the loss uses, and the same draws' ln q - ln p from the
        // Gaussian densities in f64.
        let terms = vae.elbo_terms(&xs, &eps, Mode::Eval).unwrap();
        let analytic: Vec<f64> = terms
            .kl
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap();
        let groups = terms.kl_groups.expect("per-group KL");
        assert_eq!(groups.len(), 3);
        let (feats, mu, lv) = net.bottom_up(&xs, Mode::Eval).unwrap();
        let (e_top, e_groups) = net.split_noise(&eps).unwrap();
        let z = Vae::reparameterise(&mu, &lv, &e_top).unwrap();
        let (_, states) = net
            .top_down(&z, Some(&feats), Codes::Sample(&e_groups), Mode::Eval)
            .unwrap();
        let rows = |t: &Tensor| -> Vec<Vec<f32>> { t.flatten_from(1).unwrap().to_vec2().unwrap() };
        let mut mc = vec![0.0f64; n];
        let (zr, mr, lr) = (rows(&z), rows(&mu), rows(&lv));
        for i in 0..n {
            for t in 0..2 {
                let (zv, m, l) = (zr[i][t] as f64, mr[i][t] as f64, lr[i][t] as f64);
                mc[i] += ln_normal(zv, m, l) - ln_normal(zv, 0.0, 0.0);
            }
        }
        for s in &states {
            let (zs, mq, lq, mp, lp) = (
                rows(&s.z),
                rows(s.mu_q.as_ref().unwrap()),
                rows(s.lv_q.as_ref().unwrap()),
                rows(&s.mu_p),
                rows(&s.lv_p),
            );
            for i in 0..n {
                for t in 0..zs[i].len() {
                    let zv = zs[i][t] as f64;
                    mc[i] += ln_normal(zv, mq[i][t] as f64, lq[i][t] as f64)
                        - ln_normal(zv, mp[i][t] as f64, lp[i][t] as f64);
                }
            }
        }
        let (a, a_se) = mean_and_se(&analytic);
        let (m, m_se) = mean_and_se(&mc);
        let diff: Vec<f64> = mc.iter().zip(&analytic).map(|(x, y)| x - y).collect();
        let (d, d_se) = mean_and_se(&diff);
        assert!(a > 0.5, "the tiny case must have a sizeable KL, got {a}");
        assert!(
            d.abs() < 4.0 * d_se + 1e-3,
            "analytic {a} (se {a_se}) vs Monte Carlo {m} (se {m_se}): difference {d} (se {d_se})"
        );
        // The lower groups' KLs vary with the sampled upper groups: not a constant.
        let g2: Vec<f32> = groups[2].to_vec1().unwrap();
        assert!(g2.iter().any(|v| (v - g2[0]).abs() > 1e-3));
        // Importance weights agree with the same decomposition: ln w = -rec - (ln q - ln p).
        let lw: Vec<f32> = vae.log_weights(&xs, &eps, Mode::Eval).unwrap().to_vec1().unwrap();
        let rec: Vec<f32> = terms.rec.to_vec1().unwrap();
        for i in 0..50 {
            let want = -(rec[i] as f64) - mc[i];
            assert!(
                (lw[i] as f64 - want).abs() < 1e-3 * (1.0 + want.abs()),
                "{i}: {} vs {want}",
                lw[i]
            );
        }
    }

    #[test]
    fn vamp_single_sample_kl_is_unbiased_against_a_large_sample_estimate() {
        let (vae, x) = tiny_model(ModelKind::Conv, PriorKind::Vamp, 6);
        let (mu_k, lv_k) = vae.prior_components().unwrap().expect("vamp components");
        assert_eq!(mu_k.dims(), &[3, 2]);
        // The loss's estimate, averaged over 3000 draws.
        let n = 3000;
        let xs = x.repeat((n, 1, 1, 1)).unwrap();
        let eps = Tensor::from_vec(SeededRng::new(2).normal_vec(n * 2), (n, 2), &Device::Cpu).unwrap();
        let kl_cfg = KlConfig::default();
        let parts = vae.loss(&xs, &eps, &kl_cfg, 1.0, Mode::Eval).unwrap();
        let single: Vec<f64> = parts
            .kl
            .to_dtype(candle_core::DType::F64)
            .unwrap()
            .to_vec1()
            .unwrap();
        let (s, s_se) = mean_and_se(&single);
        // An independent estimate with 200000 draws in f64 from q, ln p by the mixture's sum.
        let (mu, lv) = vae.encode(&x, Mode::Eval).unwrap();
        let (mu, lv) = (
            mu.to_vec2::<f32>().unwrap()[0].clone(),
            lv.to_vec2::<f32>().unwrap()[0].clone(),
        );
        let (mk, lk) = (mu_k.to_vec2::<f32>().unwrap(), lv_k.to_vec2::<f32>().unwrap());
        let mut rng = SeededRng::new(77);
        let big = 200_000;
        let e = rng.normal_vec(big * 2);
        let mut acc = Vec::with_capacity(big);
        for i in 0..big {
            let z: Vec<f64> = (0..2)
                .map(|t| mu[t] as f64 + (0.5 * lv[t] as f64).exp() * e[2 * i + t] as f64)
                .collect();
            let lq: f64 = (0..2).map(|t| ln_normal(z[t], mu[t] as f64, lv[t] as f64)).sum();
            let p: f64 = (0..3)
                .map(|c| {
                    (0..2)
                        .map(|t| ln_normal(z[t], mk[c][t] as f64, lk[c][t] as f64))
                        .sum::<f64>()
                        .exp()
                })
                .sum::<f64>()
                / 3.0;
            acc.push(lq - p.ln());
        }
        let (b, b_se) = mean_and_se(&acc);
        assert!(
            (s - b).abs() < 4.0 * (s_se * s_se + b_se * b_se).sqrt(),
            "single-sample {s} (se {s_se}) vs large-sample {b} (se {b_se})"
        );
        // The loss is rec + beta KL on the batch mean.
        let rec: f64 = parts.rec.mean_all().unwrap().to_scalar::<f32>().unwrap() as f64;
        let loss: f64 = parts.loss.to_scalar::<f32>().unwrap() as f64;
        assert!((loss - rec - s).abs() < 1e-3 * loss.abs());
        // Prior codes come from the mixture (finite, the right count), gradients reach the
        // pseudo-inputs.
        let codes = vae.prior_codes(10, &mut SeededRng::new(1)).unwrap();
        assert!(codes.len() == 20 && codes.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn group_warmup_weights_follow_each_groups_schedule() {
        let (mut vae, _) = tiny_model(ModelKind::Hierarchical, PriorKind::Standard, 1);
        vae.group_warmup_epochs = vec![4.0, 2.0, 0.0];
        let kl_cfg = KlConfig {
            beta: 1.0,
            warmup_epochs: 4.0,
            free_bits: 0.0,
        };
        // Epoch 1 of 4: global beta 0.25.
        assert_eq!(vae.group_weights(&kl_cfg, 0.25, 3), vec![0.25, 0.5, 1.0]);
        assert_eq!(vae.group_weights(&kl_cfg, 1.0, 3), vec![1.0, 1.0, 1.0]);
        vae.group_warmup_epochs.clear();
        assert_eq!(vae.group_weights(&kl_cfg, 0.25, 3), vec![0.25; 3]);
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar()
            .unwrap()
    }

    #[test]
    fn a_full_code_decodes_to_the_reconstruction_and_carries_every_group() {
        let (vae, x) = tiny_model(ModelKind::Hierarchical, PriorKind::Standard, 3);
        let xs = Tensor::cat(&[&x, &x.affine(0.5, 0.2).unwrap()], 0).unwrap();
        assert_eq!(vae.full_code_dim(), 12);
        let (mu, lv) = vae.posterior_full(&xs, Mode::Eval).unwrap();
        assert_eq!(mu.dims(), &[2, 12]);
        assert_eq!(lv.dims(), &[2, 12]);
        // Its parts are the top group's posterior and the lower groups' posterior means.
        let means = vae.posterior_means(&xs, Mode::Eval).unwrap();
        assert_eq!(max_abs_diff(&mu, &Tensor::cat(&means, 1).unwrap()), 0.0);
        let recon = vae.reconstruct(&xs, Mode::Eval).unwrap();
        assert!(max_abs_diff(&vae.decode_full(&mu, Mode::Eval).unwrap(), &recon) < 1e-6);
        // The lower groups matter: the top group alone (lower groups at their prior means)
        // decodes to something else.
        let top = mu.narrow(1, 0, 2).unwrap();
        assert!(max_abs_diff(&vae.decode(&top, Mode::Eval).unwrap(), &recon) > 1e-4);
        // For a flat VAE the full code is the code.
        let (flat, x) = tiny_model(ModelKind::Conv, PriorKind::Standard, 3);
        assert_eq!(flat.full_code_dim(), flat.code_dim());
        let (m, _) = flat.posterior_full(&x, Mode::Eval).unwrap();
        assert_eq!(max_abs_diff(&m, &flat.encode(&x, Mode::Eval).unwrap().0), 0.0);
    }

    #[test]
    fn ancestral_samples_follow_each_groups_conditional_prior_at_the_temperature() {
        let (vae, _) = tiny_model(ModelKind::Hierarchical, PriorKind::Standard, 4);
        let Network::Hierarchical(net) = &vae.network else {
            panic!("not hierarchical")
        };
        let n = 5;
        let eps = Tensor::from_vec(SeededRng::new(2).normal_vec(n * 12), (n, 12), &Device::Cpu).unwrap();
        for t in [1.0, 0.6] {
            let (dec, codes) = vae.generate(&eps, t, Mode::Eval).unwrap();
            assert_eq!(codes.dims(), &[n, 12]);
            // The codes decode to the samples, the top group is t * eps, and each lower group is
            // mu_p + t sigma_p eps under the prior the groups above (as drawn) give it.
            assert!(max_abs_diff(&vae.decode_full(&codes, Mode::Eval).unwrap(), &dec) < 1e-6);
            let (e_top, e_groups) = net.split_noise(&eps).unwrap();
            let top = codes.narrow(1, 0, 2).unwrap();
            assert!(max_abs_diff(&top, &(&e_top * t).unwrap()) < 1e-6);
            let (_, z_groups) = net.split_noise(&codes).unwrap();
            let (_, states) = net
                .top_down(&top, None, Codes::Given(&z_groups), Mode::Eval)
                .unwrap();
            for (g, s) in states.iter().enumerate() {
                let want = (&s.mu_p
                    + (&s.lv_p * 0.5)
                        .unwrap()
                        .exp()
                        .unwrap()
                        .mul(&(&e_groups[g] * t).unwrap())
                        .unwrap())
                .unwrap();
                assert!(max_abs_diff(&s.z, &want) < 1e-5, "group {g} at t = {t}");
                // The conditional prior is not N(0, 1): the test would not see a wrong mean.
                assert!(max_abs_diff(&s.mu_p, &s.mu_p.zeros_like().unwrap()) > 1e-3);
            }
        }
        // At a vanishing temperature every group sits at its prior mean: the old decode of a zero
        // top code.
        let (dec, _) = vae.generate(&eps, 1e-12, Mode::Eval).unwrap();
        let zero = Tensor::zeros((n, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(max_abs_diff(&dec, &vae.decode(&zero, Mode::Eval).unwrap()) < 1e-5);
        // A flat VAE's generation is decoding t * eps; a VampPrior is refused.
        let (flat, _) = tiny_model(ModelKind::Conv, PriorKind::Standard, 4);
        let e2 = eps.narrow(1, 0, 2).unwrap();
        let (dec, codes) = flat.generate(&e2, 0.5, Mode::Eval).unwrap();
        assert!(max_abs_diff(&codes, &(&e2 * 0.5).unwrap()) < 1e-7);
        assert!(max_abs_diff(&dec, &flat.decode(&codes, Mode::Eval).unwrap()) < 1e-7);
        let (vamp, _) = tiny_model(ModelKind::Conv, PriorKind::Vamp, 4);
        assert!(vamp.generate(&e2, 1.0, Mode::Eval).is_err());
    }
}
