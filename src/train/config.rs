//! The training config: one TOML file (see `configs/`) with `seed`, `[data]`, `[model]`
//! (+ `[model.conv]` / `[model.dense]`), `[likelihood]`, `[kl]` and `[train]`. Unknown keys are
//! errors; `--set key.path=value` overrides any key before validation.
use crate::data::DataOptions;
use crate::model::{KlConfig, LikelihoodConfig};
use crate::model::{LikelihoodKind, ModelConfig, ModelKind, PriorKind, SizeRule};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct TrainConfig {
    /// Seeds initial weights, shuffling, noise and samples (the data split has its own `data.seed`).
    pub seed: u64,
    pub data: DataOptions,
    pub model: ModelConfig,
    pub likelihood: LikelihoodConfig,
    pub kl: KlConfig,
    pub train: TrainOptions,
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
    /// TensorBoard event files under the run's `tb/`.
    pub tensorboard: super::epoch_log::TensorBoardOptions,
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
    /// Keep `checkpoints/last/` (weights, Adam moments, weight average) after the run has finished
    /// (default true). False removes it once `metrics.json` is written: the run's results and its
    /// best checkpoint stay, about half its size goes, and `--resume` refuses the run, naming this
    /// key. For runs whose results are final, such as the demo's.
    pub keep_resume_state: bool,
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
            tensorboard: Default::default(),
            lr_warmup_steps: 0,
            lr_schedule: super::schedule::LrScheduleKind::Constant,
            grad_clip: None,
            grad_skip_threshold: None,
            ema_decay: None,
            keep_resume_state: true,
        }
    }
}

/// A config that does not make sense; each variant names the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    /// A value outside its allowed range.
    #[error("{key} must be {rule} (got {got})")]
    OutOfRange {
        key: &'static str,
        rule: &'static str,
        got: String,
    },
    /// A value that contradicts another key (or the data).
    #[error("{key}: {msg}")]
    Conflict { key: &'static str, msg: String },
    /// A file the config points at is not there.
    #[error("{key}: {} does not exist ({hint})", path.display())]
    MissingFile {
        key: &'static str,
        path: PathBuf,
        hint: &'static str,
    },
    /// A float key that is NaN or infinite (found by walking the whole config).
    #[error(transparent)]
    NonFinite(#[from] crate::util::finite::NonFinite),
}

impl ConfigError {
    /// The config key at fault, e.g. `train.lr`.
    pub fn key(&self) -> &str {
        match self {
            ConfigError::OutOfRange { key, .. }
            | ConfigError::Conflict { key, .. }
            | ConfigError::MissingFile { key, .. } => key,
            ConfigError::NonFinite(e) => &e.key,
        }
    }
}

fn conflict(key: &'static str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Conflict { key, msg: msg.into() }
}

fn out_of_range(key: &'static str, rule: &'static str, got: impl std::fmt::Display) -> ConfigError {
    ConfigError::OutOfRange {
        key,
        rule,
        got: got.to_string(),
    }
}

/// A [`TrainConfig`] that passed [`TrainConfig::check`]: what training takes.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidTrainConfig(TrainConfig);

impl ValidTrainConfig {
    pub fn config(&self) -> &TrainConfig {
        &self.0
    }

    pub fn into_inner(self) -> TrainConfig {
        self.0
    }
}

impl std::ops::Deref for ValidTrainConfig {
    type Target = TrainConfig;
    fn deref(&self) -> &TrainConfig {
        &self.0
    }
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

    /// Validate everything that can be checked without the data, once: training takes the
    /// [`ValidTrainConfig`] this returns.
    pub fn check(&self) -> Result<ValidTrainConfig, ConfigError> {
        crate::util::finite::check_finite(self)?;
        let m = &self.model;
        let t = &self.train;
        let l = &self.likelihood;
        if m.latent_dim == 0 {
            return Err(out_of_range("model.latent_dim", "at least 1", m.latent_dim));
        }
        if t.batch_size < 2 {
            return Err(out_of_range("train.batch_size", "at least 2", t.batch_size));
        }
        if t.max_epochs == 0 {
            return Err(out_of_range("train.max_epochs", "at least 1", t.max_epochs));
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return Err(out_of_range("train.lr", "positive", t.lr));
        }
        for (key, b) in [("train.beta1", t.beta1), ("train.beta2", t.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(out_of_range(key, "in [0, 1)", b));
            }
        }
        if t.eps <= 0.0 {
            return Err(out_of_range("train.eps", "positive", t.eps));
        }
        if t.patience == 0 {
            return Err(out_of_range("train.patience", "at least 1", t.patience));
        }
        if t.min_delta < 0.0 {
            return Err(out_of_range("train.min_delta", "not negative", t.min_delta));
        }
        if t.grad_clip.is_some_and(|c| !(c > 0.0 && c.is_finite())) {
            return Err(out_of_range(
                "train.grad_clip",
                "positive when set",
                t.grad_clip.unwrap_or_default(),
            ));
        }
        if t.grad_skip_threshold.is_some_and(|c| !(c > 1.0 && c.is_finite())) {
            return Err(out_of_range(
                "train.grad_skip_threshold",
                "above 1 (a multiple of the running norm) when set",
                t.grad_skip_threshold.unwrap_or_default(),
            ));
        }
        if t.ema_decay.is_some_and(|d| !(0.0..1.0).contains(&d)) {
            return Err(out_of_range(
                "train.ema_decay",
                "in [0, 1) when set",
                t.ema_decay.unwrap_or_default(),
            ));
        }
        for (key, v) in [
            ("train.tensorboard.every_steps", t.tensorboard.every_steps),
            (
                "train.tensorboard.images_every_epochs",
                t.tensorboard.images_every_epochs,
            ),
        ] {
            if v == 0 {
                return Err(out_of_range(key, "at least 1", v));
            }
        }
        if let Some(steps @ 0) = t.max_steps_per_epoch {
            return Err(out_of_range(
                "train.max_steps_per_epoch",
                "at least 1 when set",
                steps,
            ));
        }
        for (key, v) in [
            ("kl.beta", self.kl.beta),
            ("kl.warmup_epochs", self.kl.warmup_epochs),
            ("kl.free_bits", self.kl.free_bits),
        ] {
            if v < 0.0 {
                return Err(out_of_range(key, "not negative", v));
            }
        }
        if l.kind == LikelihoodKind::GaussianFixed && !(l.variance > 0.0 && l.variance.is_finite()) {
            return Err(out_of_range("likelihood.variance", "positive", l.variance));
        }
        for (key, v) in [
            ("likelihood.logvar_floor", l.logvar_floor),
            ("likelihood.min_log_sigma", l.min_log_sigma),
        ] {
            if !v.is_finite() {
                return Err(out_of_range(key, "finite", v));
            }
        }
        if l.kind == LikelihoodKind::DiscretizedLogisticMixture && l.components < 2 {
            return Err(conflict("likelihood.components", format!(
                "must be at least 2 for discretized_logistic_mixture (got {}); use discretized_logistic for one",
                l.components
            )));
        }
        if l.kind.is_discrete_pixels() && m.kind == ModelKind::PcaDense {
            return Err(conflict("likelihood.kind",
                "discretized_logistic* models 8-bit pixels; PCA coefficients are not: use a gaussian_* likelihood",
            ));
        }
        if m.prior.kind == PriorKind::Vamp {
            if m.kind == ModelKind::Hierarchical {
                return Err(conflict("model.prior.kind",
                    "\"vamp\" is for the flat VAEs (conv, pca_dense); the hierarchical VAE has conditional priors",
                ));
            }
            if m.prior.pseudo_inputs == 0 {
                return Err(out_of_range("model.prior.pseudo_inputs", "at least 1", 0));
            }
            if self.kl.free_bits > 0.0 {
                return Err(conflict("kl.free_bits",
                    "free bits are per dimension of a factorised KL; the VampPrior's KL is not: set it to 0 with model.prior.kind = \"vamp\"",
                ));
            }
        }
        if m.kind == ModelKind::Hierarchical {
            let h = &m.hierarchical;
            if h.spatial_groups == 0 || h.spatial_groups > m.conv.downsizings {
                return Err(conflict(
                    "model.hierarchical.spatial_groups",
                    format!(
                        "must be 1..=model.conv.downsizings ({}), got {}",
                        m.conv.downsizings, h.spatial_groups
                    ),
                ));
            }
            if h.latent_channels == 0 {
                return Err(out_of_range(
                    "model.hierarchical.latent_channels",
                    "at least 1",
                    0,
                ));
            }
            if h.group_warmup_epochs.len() > h.spatial_groups + 1 {
                return Err(conflict(
                    "model.hierarchical.group_warmup_epochs",
                    format!(
                        "has {} entries for {} groups (the top group and {} spatial ones)",
                        h.group_warmup_epochs.len(),
                        h.spatial_groups + 1,
                        h.spatial_groups
                    ),
                ));
            }
            if h.group_warmup_epochs
                .iter()
                .any(|w| !(0.0..=self.kl.warmup_epochs).contains(w))
            {
                return Err(conflict("model.hierarchical.group_warmup_epochs", format!(
                    "must each be in [0, kl.warmup_epochs = {}] (the group warm-ups are read off the global one)",
                    self.kl.warmup_epochs
                )));
            }
        }
        match m.kind {
            ModelKind::Conv | ModelKind::Hierarchical => {
                let c = &m.conv;
                if c.downsizings == 0 || c.downsizings > 10 {
                    return Err(out_of_range("model.conv.downsizings", "1..=10", c.downsizings));
                }
                if c.first_filters == 0 {
                    return Err(out_of_range(
                        "model.conv.first_filters",
                        "at least 1",
                        c.first_filters,
                    ));
                }
                if c.max_filters < c.first_filters {
                    return Err(out_of_range(
                        "model.conv.max_filters",
                        "at least model.conv.first_filters",
                        c.max_filters,
                    ));
                }
                if c.intermediate == 0 {
                    return Err(out_of_range(
                        "model.conv.intermediate",
                        "at least 1",
                        c.intermediate,
                    ));
                }
                if let Some(s) = self.data.image_size {
                    let mult = 1usize << c.downsizings;
                    if c.size_rule == SizeRule::Strict && s % mult != 0 {
                        return Err(ConfigError::Conflict {
                            key: "data.image_size",
                            msg: format!(
                                "{s} is not divisible by 2^{} = {mult} (model.conv.downsizings = {}) \
                                 and model.conv.size_rule is \"strict\"",
                                c.downsizings, c.downsizings
                            ),
                        });
                    }
                }
            }
            ModelKind::PcaDense => {
                let d = &m.dense;
                if d.components == 0 {
                    return Err(out_of_range("model.dense.components", "at least 1", d.components));
                }
                if d.hidden_layers > 0 && d.width == 0 {
                    return Err(out_of_range("model.dense.width", "at least 1", d.width));
                }
                if l.kind == LikelihoodKind::Bernoulli {
                    return Err(ConfigError::Conflict {
                        key: "likelihood.kind",
                        msg: "\"bernoulli\" needs values in [0,1]; PCA coefficients are not: use a gaussian_* likelihood"
                            .into(),
                    });
                }
                if let Some(p) = &d.pca_model {
                    if !p.is_file() {
                        return Err(ConfigError::MissingFile {
                            key: "model.dense.pca_model",
                            path: p.clone(),
                            hint: "write one with `norbvae pca`, or remove the key to fit one",
                        });
                    }
                }
            }
        }
        Ok(ValidTrainConfig(self.clone()))
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
