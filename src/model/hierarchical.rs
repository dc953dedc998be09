//! The hierarchical VAE (`model.kind = "hierarchical"`, LVAE / NVAE style): the conv VAE's
//! bottom-up encoder (stride-2 stages with residual cells, `model.conv`) ends in a flat top latent
//! group of `model.latent_dim`; its top-down decoder adds spatial latent groups of
//! `model.hierarchical.latent_channels` channels at the `spatial_groups` coarsest resolutions.
//!
//! At each spatial group the top-down state `d` gives the conditional prior
//! `p(z_g | z_<g) = N(mu_p, e^lv_p)` (a 3x3 convolution of `d`); the posterior is parameterised
//! relative to it from `d` and the encoder's features `h` at that resolution:
//! `mu_q = mu_p + dmu`, `lv_q = lv_p + dlv` (a 3x3 convolution of `[d, h]`), so the decoder is the
//! same network for prior and posterior. The sample `z_g` is merged back by a 1x1 convolution
//! added to `d`. Log-variances are soft-clamped to (-5, 5) per output (`5 tanh(x / 5)`).
//!
//! The prior and posterior heads start at zero weights, so a fresh model's groups are
//! `N(0, 1)` with the posterior equal to the prior (zero KL). With He-initialised heads on the
//! unnormalised top-down state the log-variances started near the clamps (posterior up to
//! e^10), the merged codes reached hundreds and so did the decoder's outputs.
//!
//! The KL of each group is the analytic KL between the Gaussians of the posterior and the
//! conditional prior at the sampled upper groups (a single-sample estimate of the hierarchical KL
//! `E_q[ln q(z|x) - ln p(z)]`, exact in expectation).
//!
//! Latent order everywhere (noise vectors, per-group KL): the top group first, then the spatial
//! groups from coarse to fine, each flattened as [channels, height, width].
use super::config::{ConvConfig, HierarchicalConfig};
use super::conv_vae::{ConvGeometry, ConvVae};
use super::layers::{Conv, Mode};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

pub const LV_CLAMP: f64 = 5.0;

fn soft_clamp(x: &Tensor) -> Result<Tensor> {
    (x / LV_CLAMP)?.tanh()? * LV_CLAMP
}

/// One spatial latent group.
struct Group {
    channels: usize,
    height: usize,
    width: usize,
    /// Encoder level (stage index) whose features the posterior sees.
    level: usize,
    prior: Conv,
    posterior: Conv,
    merge: Conv,
}

/// A group's distributions and sample in one top-down pass, each [b, c, h, w].
pub struct GroupState {
    pub mu_p: Tensor,
    pub lv_p: Tensor,
    /// Present when the pass saw an encoder (inference); absent for generation.
    pub mu_q: Option<Tensor>,
    pub lv_q: Option<Tensor>,
    pub z: Tensor,
}

impl GroupState {
    /// KL(q || p) per latent scalar, [b, c*h*w]:
    /// 0.5 (lv_p - lv_q + (e^lv_q + (mu_q - mu_p)^2) e^-lv_p - 1).
    pub fn kl_per_dim(&self) -> Result<Tensor> {
        let (mu_q, lv_q) = match (&self.mu_q, &self.lv_q) {
            (Some(m), Some(l)) => (m, l),
            _ => candle_core::bail!("a generation pass has no posterior to take the KL of"),
        };
        let dlv = (lv_q - &self.lv_p)?;
        let dmu2 = (mu_q - &self.mu_p)?.sqr()?;
        let t = ((dlv.exp()? - &dlv)? + dmu2.mul(&self.lv_p.neg()?.exp()?)?)?;
        t.affine(0.5, -0.5)?.flatten_from(1)
    }

    /// ln p(z) - ln q(z|x) per item [b] at this group's sample (2 pi cancels).
    pub fn log_ratio(&self) -> Result<Tensor> {
        let (mu_q, lv_q) = match (&self.mu_q, &self.lv_q) {
            (Some(m), Some(l)) => (m, l),
            _ => candle_core::bail!("a generation pass has no posterior"),
        };
        let lp = ((&self.z - &self.mu_p)?.sqr()?.mul(&self.lv_p.neg()?.exp()?)? + &self.lv_p)?;
        let lq = ((&self.z - mu_q)?.sqr()?.mul(&lv_q.neg()?.exp()?)? + lv_q)?;
        ((lq - lp)? * 0.5)?.flatten_from(1)?.sum(1)
    }
}

/// How the top-down pass picks each spatial group's code.
#[derive(Clone, Copy)]
pub enum Codes<'a> {
    /// z = mu + sigma * eps with one noise tensor per group (posterior if features are given,
    /// else the conditional prior).
    Sample(&'a [Tensor]),
    /// z = the mean (posterior mean, or conditional prior mean for generation).
    Mean,
    /// z given for every group, each [b, c * h * w] or [b, c, h, w] (decoding a full code).
    Given(&'a [Tensor]),
}

pub struct HierVae {
    /// The conv VAE whose encoder ends in the top group and whose decoder carries the top-down
    /// state (same parameter names as a flat conv VAE).
    backbone: ConvVae,
    /// Indexed by decoder step (resolution `n - 1 - i`).
    groups: Vec<Option<Group>>,
    top_dim: usize,
}

impl HierVae {
    pub fn new(
        cfg: &ConvConfig,
        hcfg: &HierarchicalConfig,
        geometry: ConvGeometry,
        latent: usize,
        out_per_pixel: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let filters = cfg.filters();
        let n = filters.len();
        if hcfg.spatial_groups == 0 || hcfg.spatial_groups > n {
            candle_core::bail!(
                "model.hierarchical.spatial_groups must be 1..=model.conv.downsizings ({n}), got {}",
                hcfg.spatial_groups
            );
        }
        let backbone = ConvVae::new(cfg, geometry, latent, out_per_pixel, vb.clone())?;
        let cz = hcfg.latent_channels;
        let mut groups = Vec::with_capacity(n);
        for i in 0..n {
            let level = n - 1 - i;
            // Decoder step i starts from the encoder's resolution `level`, with its filters.
            let c_in = filters[level];
            groups.push(if i < hcfg.spatial_groups {
                let vg = vb.pp(format!("group{i}"));
                let side = 1usize << (level + 1);
                Some(Group {
                    channels: cz,
                    height: geometry.padded_height / side,
                    width: geometry.padded_width / side,
                    level,
                    prior: Conv::zeroed(vg.pp("prior"), c_in, 2 * cz, 3, 1, 1)?,
                    posterior: Conv::zeroed(vg.pp("posterior"), 2 * c_in, 2 * cz, 3, 1, 1)?,
                    merge: Conv::new(vg.pp("merge"), cz, c_in, 1, 1, 0)?,
                })
            } else {
                None
            });
        }
        Ok(Self {
            backbone,
            groups,
            top_dim: latent,
        })
    }

    /// Latent scalars per spatial group, coarse to fine.
    pub fn group_dims(&self) -> Vec<usize> {
        self.groups
            .iter()
            .flatten()
            .map(|g| g.channels * g.height * g.width)
            .collect()
    }

    /// All latent scalars: the top group and every spatial group.
    pub fn total_dim(&self) -> usize {
        self.top_dim + self.group_dims().iter().sum::<usize>()
    }

    /// Split noise [b, total_dim] into the top group's [b, top] and one [b, c, h, w] per group.
    pub fn split_noise(&self, eps: &Tensor) -> Result<(Tensor, Vec<Tensor>)> {
        let b = eps.dim(0)?;
        let top = eps.narrow(1, 0, self.top_dim)?;
        let mut at = self.top_dim;
        let mut out = Vec::new();
        for g in self.groups.iter().flatten() {
            let d = g.channels * g.height * g.width;
            out.push(
                eps.narrow(1, at, d)?
                    .reshape((b, g.channels, g.height, g.width))?,
            );
            at += d;
        }
        Ok((top, out))
    }

    /// The bottom-up pass: the features at each level and the top group's (mu, logvar).
    pub fn bottom_up(&self, x: &Tensor, mode: Mode) -> Result<(Vec<Tensor>, Tensor, Tensor)> {
        let mut feats = Vec::new();
        let (mu, logvar) = self.backbone.encode_stages(x, mode, |h| feats.push(h.clone()))?;
        Ok((feats, mu, logvar))
    }

    /// The top-down pass from the top group's code: decoder output [b, c * out, h, w] and each
    /// spatial group's state. `feats` (from [`bottom_up`]) makes it inference, None generation.
    pub fn top_down(
        &self,
        z_top: &Tensor,
        feats: Option<&[Tensor]>,
        codes: Codes,
        mode: Mode,
    ) -> Result<(Tensor, Vec<GroupState>)> {
        let mut states = Vec::new();
        let out = self.backbone.decode_stages(z_top, mode, |i, d| {
            let Some(grp) = &self.groups[i] else {
                return Ok(d);
            };
            let cz = grp.channels;
            let p = grp.prior.forward(&d)?;
            let mu_p = p.narrow(1, 0, cz)?;
            let lv_p = soft_clamp(&p.narrow(1, cz, cz)?)?;
            let (mu_q, lv_q) = match feats {
                Some(f) => {
                    let q = grp.posterior.forward(&Tensor::cat(&[&d, &f[grp.level]], 1)?)?;
                    (
                        Some((&mu_p + q.narrow(1, 0, cz)?)?),
                        Some((&lv_p + soft_clamp(&q.narrow(1, cz, cz)?)?)?),
                    )
                }
                None => (None, None),
            };
            let (mu, lv) = match (&mu_q, &lv_q) {
                (Some(m), Some(l)) => (m, l),
                _ => (&mu_p, &lv_p),
            };
            let z = match codes {
                Codes::Mean => mu.clone(),
                Codes::Sample(eps) => {
                    let e = &eps[states.len()];
                    (mu + (lv * 0.5)?.exp()?.mul(e)?)?
                }
                Codes::Given(zs) => zs[states.len()].reshape(mu.shape())?,
            };
            let d = (d + grp.merge.forward(&z)?)?;
            states.push(GroupState {
                mu_p,
                lv_p,
                mu_q,
                lv_q,
                z,
            });
            Ok(d)
        })?;
        Ok((out, states))
    }
}
