//! `metrics.json` (one per run: [`RunMetrics`]) and the lines of `metrics.jsonl` ([`EpochRecord`]).
use super::checkpoint::StopReason;
use super::{version_0, Versioned, FORMAT_VERSION};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `metrics.json`: its `kind` says which layout it has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RunMetrics {
    Vae(VaeMetrics),
    Pca(PcaMetrics),
}

impl Versioned for RunMetrics {
    fn format_version(&self) -> u32 {
        match self {
            RunMetrics::Vae(m) => m.format_version,
            RunMetrics::Pca(m) => m.format_version,
        }
    }
}

/// A VAE run's results: written by the trainer at the end of training, extended by `eval`
/// (split entries gain [`SplitEval`] fields, and [`EvalInfo`] is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeMetrics {
    #[serde(default = "version_0")]
    pub format_version: u32,
    /// Epochs trained in total (over every resume).
    pub epochs_run: usize,
    /// The epoch of the best checkpoint (lowest validation loss).
    pub best_epoch: usize,
    pub stopped_because: StopReason,
    /// Per split ("train", "val", "test"; empty splits are left out), from the best checkpoint.
    pub metrics: BTreeMap<String, VaeSplitMetrics>,
    /// Trainable scalars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_parameters: Option<usize>,
    /// Latent scalars per image over every group (the code size PCA is compared at; for a
    /// hierarchy more than `model.latent_dim`, which is its top group).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent_dim: Option<usize>,
    /// The likelihood's kind as written by the trainer (e.g. "GaussianFixed").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub likelihood: Option<String>,
    /// Mean training throughput over the epochs of the last `train` invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_images_per_second: Option<f64>,
    /// Settings of the last evaluation and the classifier it scored samples with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalInfo>,
}

impl VaeMetrics {
    pub fn new(
        epochs_run: usize,
        best_epoch: usize,
        stopped_because: StopReason,
        metrics: BTreeMap<String, VaeSplitMetrics>,
    ) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            epochs_run,
            best_epoch,
            stopped_because,
            metrics,
            num_parameters: None,
            latent_dim: None,
            likelihood: None,
            train_images_per_second: None,
            eval: None,
        }
    }

    pub fn split(&self, name: &str) -> Option<&VaeSplitMetrics> {
        self.metrics.get(name)
    }
}

/// One split of a VAE run. The trainer's fields come from one posterior sample per image over
/// the whole split; `eval` adds [`SplitEval`] and replaces `mse` / `psnr` with its own
/// reconstruction of the same images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaeSplitMetrics {
    /// rec + kl, nats per image (one posterior sample per image).
    pub neg_elbo: f64,
    /// -log p(x|z), nats per image (in model space: pixels, or PCA coefficients).
    pub rec: f64,
    /// KL(q(z|x) || p(z)), nats per image.
    pub kl: f64,
    /// Negative ELBO of the pixels, nats per image: equals `neg_elbo` for image models; for the
    /// PCA-coefficient VAE it adds PPCA's density of the discarded directions (see
    /// `InputMap::pixel_nll_offset`), so it compares with the conv VAEs and with PCA.
    /// Always written by the trainer; absent only in hand-made files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub neg_elbo_pixels: Option<f64>,
    /// `neg_elbo_pixels` in bits per dimension (`util::units::bits_per_dim`); continuous
    /// likelihoods only (Bernoulli is not a density on grey levels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits_per_dim: Option<f64>,
    /// Mean squared error of the decoder mean at z = mu, pixels in [0,1].
    pub mse: f64,
    /// 10 log10(1 / mse).
    pub psnr: f64,
    /// Learned variances: fraction of decoder outputs sitting on the log-variance floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_floor: Option<f64>,
    /// Hierarchical VAE: KL per group, nats per image (top group first, then coarse to fine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_groups: Option<Vec<f64>>,
    #[serde(flatten)]
    pub eval: SplitEval,
}

impl VaeSplitMetrics {
    /// The pixels' negative ELBO, falling back to the model-space one (the same for image models).
    pub fn neg_elbo_pixels_or_model(&self) -> f64 {
        self.neg_elbo_pixels.unwrap_or(self.neg_elbo)
    }
}

/// What `norbvae eval` adds to a split (every field absent until it ran).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitEval {
    /// The ELBO with K samples on the first `likelihood_images` images, pixel space, nats/image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iwae_neg_elbo: Option<f64>,
    /// -IWAE bound (K samples), pixel space, nats per image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iwae: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iwae_bits_per_dim: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iwae_samples: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub likelihood_images: Option<usize>,
    /// Always "pixels".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub likelihood_space: Option<String>,
    /// PCA-coefficient VAEs: PPCA's NLL of the discarded directions included in the bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pca_tail_nll: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssim: Option<f64>,
    /// Latent dimensions whose posterior mean varies across images (Burda's criterion), over
    /// every latent group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_units: Option<usize>,
    /// Hierarchical VAE: active units of each group (top first, as `kl_groups`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_units_groups: Option<Vec<usize>>,
    /// The code size: latent scalars per image over every group (for a hierarchy more than the
    /// top group's `model.latent_dim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent_dim: Option<usize>,
    /// Per sampler (prior, gmm, two_stage, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samples: Option<BTreeMap<String, SampleScores>>,
    /// The reconstructions of the split's first images scored like samples: the best any sampler
    /// can do through this decoder, so a sample FD splits into the decoder's blur (this FD) and the
    /// sampler's miss of the codes (the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconstructions: Option<SampleScores>,
    /// Real training images scored like samples against the split: what a perfect sampler scores
    /// (its `fd` is the classifier's `fd_train_vs_test`; its precision and recall the yardstick of
    /// the samplers').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_vs_real: Option<SampleScores>,
    /// The real images precision and recall are measured against: this many of the split's, a
    /// seeded random subset disjoint from the reconstructed ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_real_images: Option<usize>,
}

/// One sampler's samples scored against the split's real images. The classifier's scores are
/// absent when eval ran without sample quality.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleScores {
    /// Frechet distance between real and sample classifier features (lower is better).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<f64>,
    /// Mean max-softmax probability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// Mean per-sample predictive entropy, nats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean_entropy: Option<f64>,
    /// Entropy of the mean class distribution, nats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_entropy: Option<f64>,
    /// ln(classes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_class_entropy: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_samples: Option<usize>,
    /// Frechet distance of the sampler's codes to q(z|x)'s codes over the split, latent space.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latent_fd: Option<f64>,
    /// Improved precision (Kynkäänniemi et al. 2019; k-NN balls, k = `EvalInfo::pr_k`) in the
    /// classifier's feature space: the fraction of samples within the k-NN ball of some real image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision_features: Option<f64>,
    /// Improved recall in feature space: the fraction of real images within the k-NN ball of some
    /// sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall_features: Option<f64>,
    /// Precision on the raw pixel vectors (no classifier involved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision_pixels: Option<f64>,
    /// Recall on the raw pixel vectors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recall_pixels: Option<f64>,
}

/// `metrics.json` `eval`: how the last evaluation ran.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<ClassifierInfo>,
    /// "best" or "last".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// What each fitted sampler reports about itself (free-form per sampler kind).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub samplers: Option<BTreeMap<String, serde_json::Value>>,
    /// The k of the precision / recall k-nearest-neighbour balls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_k: Option<usize>,
}

/// The sample-quality classifier of the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierInfo {
    pub test_accuracy: f64,
    pub train_images: usize,
    /// FD of real training images against the split: what a perfect sampler would score.
    pub fd_train_vs_test: f64,
    /// Mean max-softmax probability on the split's real images: the confidence samples should
    /// reach (absent in evaluations before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_confidence: Option<f64>,
    /// Entropy of the mean class distribution on the split's real images, nats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real_class_entropy: Option<f64>,
}

/// A PCA run's results, per number of components.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcaMetrics {
    #[serde(default = "version_0")]
    pub format_version: u32,
    /// The evaluated component counts, ascending.
    pub components: Vec<usize>,
    /// Keyed by k (as text: JSON keys are strings).
    pub metrics: BTreeMap<String, PcaKMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fit: Option<PcaFitInfo>,
}

impl PcaMetrics {
    /// Component counts with metrics, ascending.
    pub fn ks(&self) -> Vec<usize> {
        let mut ks: Vec<usize> = self.metrics.keys().filter_map(|k| k.parse().ok()).collect();
        ks.sort_unstable();
        ks
    }

    pub fn at(&self, k: usize) -> Option<&PcaKMetrics> {
        self.metrics.get(&k.to_string())
    }
}

/// The metrics of one k: each non-empty split, and the explained variance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcaKMetrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<PcaSplitMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<PcaSplitMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<PcaSplitMetrics>,
    pub explained_variance_ratio: f64,
}

impl PcaKMetrics {
    pub fn split(&self, name: &str) -> Option<&PcaSplitMetrics> {
        match name {
            "train" => self.train.as_ref(),
            "val" => self.val.as_ref(),
            "test" => self.test.as_ref(),
            _ => None,
        }
    }

    pub fn split_mut(&mut self, name: &str) -> Option<&mut Option<PcaSplitMetrics>> {
        match name {
            "train" => Some(&mut self.train),
            "val" => Some(&mut self.val),
            "test" => Some(&mut self.test),
            _ => None,
        }
    }
}

/// Metrics of a k-component PCA on one split.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PcaSplitMetrics {
    /// Mean squared reconstruction error over images and pixels (pixels in [0, 1]).
    pub mse: f64,
    /// 10 log10(1 / mse).
    pub psnr: f64,
    /// Mean PPCA negative log-likelihood, nats per image (None when PPCA is degenerate at this k).
    pub ppca_nll: Option<f64>,
    /// The same in bits per dimension (`util::units::bits_per_dim`).
    pub ppca_bits_per_dim: Option<f64>,
}

/// How the PCA was obtained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PcaFitInfo {
    /// The solver's name, or "loaded" for a saved model.
    pub solver: String,
    pub seconds: f64,
    pub n_train: usize,
    /// [channels, height, width].
    pub image_shape: [usize; 3],
    /// Sum of the training pixels' variances.
    pub total_variance: f64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    /// The minimised objective (beta, warm-up and free bits applied), nats per image.
    pub train_loss: f64,
    pub train_rec: f64,
    pub train_kl: f64,
    /// Validation loss as monitored: rec + beta * kl (full beta, no free bits), nats per image.
    pub val_loss: f64,
    pub val_neg_elbo: f64,
    pub val_rec: f64,
    pub val_kl: f64,
    /// KL weight at the end of the epoch.
    pub beta: f64,
    pub seconds: f64,
    pub train_images_per_second: f64,
    /// Learned variances: fraction of validation outputs on the log-variance floor.
    pub val_on_floor: Option<f64>,
    /// Hierarchical VAE: KL per group, nats per image (top group first, then coarse to fine),
    /// over the epoch's training batches (as trained) and the validation split. `metrics.csv`
    /// spells them out as `train_kl_group_0`, ... (see `train::epoch_log::write_csv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_kl_groups: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_kl_groups: Option<Vec<f64>>,
    /// Gradient guard (`train.grad_clip` / `train.grad_skip_threshold` set): updates of this epoch
    /// skipped, updates whose gradients were scaled down, and the mean global gradient norm of the
    /// finite ones before clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped_updates: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clipped_updates: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
}

/// The part of a `metrics.jsonl` line the loss charts read; lenient, so that a history with
/// other fields (or fewer) still draws what it has.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EpochLosses {
    #[serde(default)]
    pub epoch: Option<f64>,
    #[serde(default)]
    pub train_loss: Option<f64>,
    #[serde(default)]
    pub val_loss: Option<f64>,
}

impl EpochLosses {
    /// A run's loss history from its `metrics.jsonl`, for charts: empty when the file is missing,
    /// and lines that do not parse (a line cut by an interrupted write) are left out.
    pub fn read_history(run_dir: &std::path::Path) -> Vec<Self> {
        std::fs::read_to_string(run_dir.join("metrics.jsonl"))
            .map(|t| {
                t.lines()
                    .filter(|l| !l.trim().is_empty())
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl RunMetrics {
    /// Read a run's `metrics.json`: its `kind` is checked first, so that a file of another kind
    /// of run is named as such rather than as a missing field.
    pub fn read(path: &std::path::Path) -> Result<Self, super::FormatError> {
        let text = std::fs::read_to_string(path).map_err(|source| super::FormatError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        #[derive(Deserialize)]
        struct KindOnly {
            #[serde(default)]
            kind: Option<serde_json::Value>,
        }
        if let Ok(k) = serde_json::from_str::<KindOnly>(&text) {
            match k.kind.as_ref().and_then(|v| v.as_str()) {
                Some("vae") | Some("pca") => {}
                other => {
                    return Err(super::FormatError::Invalid {
                        path: path.to_path_buf(),
                        msg: format!(
                            "\"kind\" must be \"vae\" or \"pca\", found {}",
                            other
                                .map(|s| format!("\"{s}\""))
                                .unwrap_or_else(|| "nothing".into())
                        ),
                    })
                }
            }
        }
        super::parse_json(&text, path)
    }

    pub fn vae(&self) -> Option<&VaeMetrics> {
        match self {
            RunMetrics::Vae(m) => Some(m),
            RunMetrics::Pca(_) => None,
        }
    }

    pub fn pca(&self) -> Option<&PcaMetrics> {
        match self {
            RunMetrics::Pca(m) => Some(m),
            RunMetrics::Vae(_) => None,
        }
    }
}
