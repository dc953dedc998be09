//! The training config: one TOML file (see `configs/`) with `seed`, `[data]`, `[model]`
//! (+ `[model.conv]` / `[model.dense]`), `[likelihood]`, `[kl]` and `[train]`. Unknown keys are
//! errors; `--set key.path=value` overrides any key before validation.
use crate::data::DataOptions;
use crate::model::{KlConfig, LikelihoodConfig};
use crate::model::{LikelihoodKind, ModelConfig, ModelKind, PriorKind, SizeRule};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Seeds initial weights, shuffling, noise and samples (the data split has its own `data.seed`).
    pub seed: u64,
    pub data: DataOptions,
    pub model: ModelConfig,
    pub likelihood: LikelihoodConfig,
    pub kl: KlConfig,
    pub train: TrainOptions,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            seed: 0,
            data: DataOptions::default(),
            model: ModelConfig::default(),
            likelihood: LikelihoodConfig::default(),
            kl: KlConfig::default(),
            train: TrainOptions::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainOptions {
    pub batch_size: usize,
    pub max_epochs: usize,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Stop after this many epochs without a validation-loss improvement of at least `min_delta`
    /// (epochs inside the KL warm-up do not count).
    pub patience: usize,
    /// Minimum improvement (nats per image) that resets the patience counter.
    pub min_delta: f64,
    /// Cap on optimisation steps per epoch (quick runs); None: the whole training split.
    pub max_steps_per_epoch: Option<usize>,
    /// Images per reconstruction grid and per prior-sample grid.
    pub grid_images: usize,
    /// Linear learning-rate warm-up over this many steps (0: none). See `train::schedule`.
    pub lr_warmup_steps: usize,
    /// "constant" (default) or "cosine" decay after the warm-up.
    pub lr_schedule: super::schedule::LrScheduleKind,
    /// Scale gradients down to this global L2 norm (None: no clipping). See `train::grad_guard`.
    pub grad_clip: Option<f64>,
    /// Skip updates whose gradient norm exceeds this multiple of the running norm (None: never).
    pub grad_skip_threshold: Option<f64>,
    /// Keep an exponential moving average of the weights with this decay (None: none). See
    /// `train::ema`.
    pub ema_decay: Option<f64>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            batch_size: 64,
            max_epochs: 100,
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            patience: 10,
            min_delta: 0.0,
            max_steps_per_epoch: None,
            grid_images: 32,
            lr_warmup_steps: 0,
            lr_schedule: super::schedule::LrScheduleKind::Constant,
            grad_clip: None,
            grad_skip_threshold: None,
            ema_decay: None,
        }
    }
}

/// A config that does not make sense; the message names the key and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn bad(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

impl TrainConfig {
    /// Read a TOML config file and apply `key.path=value` overrides.
    pub fn load(path: &Path, overrides: &[String]) -> anyhow::Result<Self> {
        use anyhow::Context;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading config {}", path.display()))?;
        Self::from_toml_str(&text, overrides).with_context(|| format!("config {}", path.display()))
    }

    pub fn from_toml_str(text: &str, overrides: &[String]) -> anyhow::Result<Self> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let cfg: TrainConfig = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("{}", e.message()))?;
        Ok(cfg)
    }

    /// Validate everything that can be checked without the data.
    pub fn check(&self) -> Result<(), ConfigError> {
        let m = &self.model;
        let t = &self.train;
        let l = &self.likelihood;
        if m.latent_dim == 0 {
            return Err(bad("model.latent_dim must be at least 1 (got 0)"));
        }
        if t.batch_size < 2 {
            return Err(bad(format!(
                "train.batch_size must be at least 2 (got {})",
                t.batch_size
            )));
        }
        if t.max_epochs == 0 {
            return Err(bad("train.max_epochs must be at least 1"));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(bad(format!("train.lr must be positive (got {})", t.lr)));
        }
        for (name, b) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(bad(format!("{name} must be in [0, 1) (got {b})")));
            }
        }
        if t.eps <= 0.0 {
            return Err(bad("train.eps must be positive"));
        }
        if t.patience == 0 {
            return Err(bad("train.patience must be at least 1"));
        }
        if t.min_delta < 0.0 {
            return Err(bad("train.min_delta must not be negative"));
        }
        if t.grad_clip.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
            return Err(bad("train.grad_clip must be a positive number when set"));
        }
        if t.grad_skip_threshold.is_some_and(|c| !(c > 1.0 && c.is_finite())) {
            return Err(bad(
                "train.grad_skip_threshold must be above 1 (a multiple of the running norm) when set",
            ));
        }
        if t.ema_decay.is_some_and(|d| !(0.0..1.0).contains(&d)) {
            return Err(bad("train.ema_decay must be in [0, 1) when set"));
        }
        if t.max_steps_per_epoch == Some(0) {
            return Err(bad("train.max_steps_per_epoch must be at least 1 when set"));
        }
        if self.kl.beta < 0.0 || self.kl.warmup_epochs < 0.0 || self.kl.free_bits < 0.0 {
            return Err(bad(
                "kl.beta, kl.warmup_epochs and kl.free_bits must not be negative",
            ));
        }
        if l.kind == LikelihoodKind::GaussianFixed && !(l.variance > 0.0 && l.variance.is_finite()) {
            return Err(bad(format!(
                "likelihood.variance must be positive (got {})",
                l.variance
            )));
        }
        if !l.logvar_floor.is_finite() || !l.min_log_sigma.is_finite() {
            return Err(bad(
                "likelihood.logvar_floor and likelihood.min_log_sigma must be finite",
            ));
        }
        if l.kind == LikelihoodKind::DiscretizedLogisticMixture && l.components < 2 {
            return Err(bad(format!(
                "likelihood.components must be at least 2 for discretized_logistic_mixture (got {}); use discretized_logistic for one",
                l.components
            )));
        }
        if l.kind.is_discrete_pixels() && m.kind == ModelKind::PcaDense {
            return Err(bad(
                "likelihood.kind discretized_logistic* models 8-bit pixels; PCA coefficients are not: use a gaussian_* likelihood",
            ));
        }
        if m.prior.kind == PriorKind::Vamp {
            if m.kind == ModelKind::Hierarchical {
                return Err(bad(
                    "model.prior.kind = \"vamp\" is for the flat VAEs (conv, pca_dense); the hierarchical VAE has conditional priors",
                ));
            }
            if m.prior.pseudo_inputs == 0 {
                return Err(bad("model.prior.pseudo_inputs must be at least 1"));
            }
            if self.kl.free_bits > 0.0 {
                return Err(bad(
                    "kl.free_bits is per dimension of a factorised KL; the VampPrior's KL is not: set it to 0 with model.prior.kind = \"vamp\"",
                ));
            }
        }
        if m.kind == ModelKind::Hierarchical {
            let h = &m.hierarchical;
            if h.spatial_groups == 0 || h.spatial_groups > m.conv.downsizings {
                return Err(bad(format!(
                    "model.hierarchical.spatial_groups must be 1..=model.conv.downsizings ({}), got {}",
                    m.conv.downsizings, h.spatial_groups
                )));
            }
            if h.latent_channels == 0 {
                return Err(bad("model.hierarchical.latent_channels must be at least 1"));
            }
            if h.group_warmup_epochs.len() > h.spatial_groups + 1 {
                return Err(bad(format!(
                    "model.hierarchical.group_warmup_epochs has {} entries for {} groups (the top group and {} spatial ones)",
                    h.group_warmup_epochs.len(),
                    h.spatial_groups + 1,
                    h.spatial_groups
                )));
            }
            if h.group_warmup_epochs
                .iter()
                .any(|w| !(0.0..=self.kl.warmup_epochs).contains(w))
            {
                return Err(bad(format!(
                    "model.hierarchical.group_warmup_epochs must each be in [0, kl.warmup_epochs = {}] (the group warm-ups are read off the global one)",
                    self.kl.warmup_epochs
                )));
            }
        }
        match m.kind {
            ModelKind::Conv | ModelKind::Hierarchical => {
                let c = &m.conv;
                if c.downsizings == 0 || c.downsizings > 10 {
                    return Err(bad(format!(
                        "model.conv.downsizings must be 1..=10 (got {})",
                        c.downsizings
                    )));
                }
                if c.first_filters == 0 || c.max_filters < c.first_filters {
                    return Err(bad(
                        "model.conv.first_filters must be at least 1 and model.conv.max_filters at least first_filters",
                    ));
                }
                if c.intermediate == 0 {
                    return Err(bad("model.conv.intermediate must be at least 1"));
                }
                if let Some(s) = self.data.image_size {
                    let mult = 1usize << c.downsizings;
                    if c.size_rule == SizeRule::Strict && s % mult != 0 {
                        return Err(bad(format!(
                            "data.image_size {s} is not divisible by 2^{} = {mult} (model.conv.downsizings = {}) \
                             and model.conv.size_rule is \"strict\"",
                            c.downsizings, c.downsizings
                        )));
                    }
                }
            }
            ModelKind::PcaDense => {
                let d = &m.dense;
                if d.components == 0 {
                    return Err(bad("model.dense.components must be at least 1"));
                }
                if d.hidden_layers > 0 && d.width == 0 {
                    return Err(bad("model.dense.width must be at least 1"));
                }
                if l.kind == LikelihoodKind::Bernoulli {
                    return Err(bad(
                        "likelihood.kind \"bernoulli\" needs values in [0,1]; PCA coefficients are not: use a gaussian_* likelihood",
                    ));
                }
                if let Some(p) = &d.pca_model {
                    if !p.is_file() {
                        return Err(bad(format!(
                            "model.dense.pca_model: {} does not exist (write one with `norbvae pca`, or remove the key to fit one)",
                            p.display()
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Set `a.b.c = value` in a TOML table. The value is parsed as TOML (numbers, booleans, quoted
/// strings, arrays); anything that does not parse is taken as a bare string.
pub fn apply_override(table: &mut toml::Table, assignment: &str) -> anyhow::Result<()> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--set {assignment}: expected key=value"))?;
    let key = key.trim();
    let raw = raw.trim();
    if key.is_empty() {
        anyhow::bail!("--set {assignment}: empty key");
    }
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").unwrap_or(toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.split('.').collect();
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| anyhow::anyhow!("--set {assignment}: '{p}' is not a table"))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}
