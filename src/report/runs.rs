//! Reading run directories (the VAE and PCA layouts of [`crate::format`]) into what the report
//! shows. Everything beyond `metrics.json` is optional: a run missing a picture or a curve still
//! gets its row, with a dash where the number would be.
use crate::format::{ClassifierInfo, EpochLosses, PcaMetrics, RunMetrics, VaeMetrics, VaeSplitMetrics};
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One run directory, as the report sees it.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub dir: PathBuf,
    pub name: String,
    pub kind: RunKind,
    pub metrics: RunMetrics,
    /// The resolved config (config.toml), as a generic tree.
    pub config: Option<toml::Value>,
    /// metrics.jsonl, one entry per epoch.
    pub epochs: Vec<EpochLosses>,
    /// PNG pictures in the directory, sorted by name.
    pub images: Vec<PathBuf>,
    /// Trainable parameters, counted from the best checkpoint's header (VAE runs).
    pub n_params: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunKind {
    Vae,
    Pca,
}

/// A run directory, or a directory of run directories (e.g. the output of `reproduce`), expanded
/// into the runs it holds (sorted by name).
pub fn discover_runs(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for d in dirs {
        if !d.is_dir() {
            bail!("run directory {} does not exist", d.display());
        }
        if d.join("metrics.json").is_file() {
            out.push(d.clone());
            continue;
        }
        let mut children: Vec<PathBuf> = std::fs::read_dir(d)
            .with_context(|| format!("reading {}", d.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("metrics.json").is_file())
            .collect();
        if children.is_empty() {
            bail!(
                "{} is not a run directory (no metrics.json in it or in its subdirectories)",
                d.display()
            );
        }
        children.sort();
        out.extend(children);
    }
    Ok(out)
}

impl RunInfo {
    pub fn load(dir: &Path) -> Result<Self> {
        let metrics = RunMetrics::read(&dir.join("metrics.json"))?;
        let kind = match metrics {
            RunMetrics::Vae(_) => RunKind::Vae,
            RunMetrics::Pca(_) => RunKind::Pca,
        };
        let config = std::fs::read_to_string(dir.join("config.toml"))
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .map(toml::Value::Table);
        let epochs = EpochLosses::read_history(dir);
        let mut images: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        images.sort();
        let n_params = count_checkpoint_params(
            &dir.join("checkpoints/best")
                .join(crate::train::checkpoint::PARAMS_FILE),
        )
        .or_else(|| count_checkpoint_params(&dir.join("checkpoints").join("best.safetensors")))
        .or_else(|| metrics.vae().and_then(|m| m.num_parameters).map(|n| n as u64));
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        Ok(Self {
            dir: dir.to_path_buf(),
            name,
            kind,
            metrics,
            config,
            epochs,
            images,
            n_params,
        })
    }

    pub fn vae(&self) -> Option<&VaeMetrics> {
        self.metrics.vae()
    }

    pub fn pca(&self) -> Option<&PcaMetrics> {
        self.metrics.pca()
    }

    /// A VAE run's metrics on one split ("train", "val", "test").
    pub fn split(&self, name: &str) -> Option<&VaeSplitMetrics> {
        self.vae()?.split(name)
    }

    /// A VAE run's test metrics.
    pub fn test(&self) -> Option<&VaeSplitMetrics> {
        self.split("test")
    }

    /// The sample-quality classifier a VAE run was evaluated with.
    pub fn classifier(&self) -> Option<&ClassifierInfo> {
        self.vae()?.eval.as_ref()?.classifier.as_ref()
    }

    /// Why training stopped, e.g. "patience".
    pub fn stopped_because(&self) -> Option<&'static str> {
        Some(self.vae()?.stopped_because.name())
    }

    /// A PCA run's test metric at k.
    pub fn pca_test(&self, k: usize) -> Option<&crate::format::PcaSplitMetrics> {
        self.pca()?.at(k)?.test.as_ref()
    }

    /// A value in config.toml by dotted path, as display text.
    pub fn config_str(&self, path: &str) -> Option<String> {
        let mut v = self.config.as_ref()?;
        for p in path.split('.') {
            v = v.get(p)?;
        }
        Some(match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    /// The code size: metrics.json's `latent_dim` (every latent group of a hierarchy), else the
    /// config's `model.latent_dim`.
    pub fn latent_dim(&self) -> Option<usize> {
        if let RunMetrics::Vae(m) = &self.metrics {
            if let Some(l) = m.latent_dim {
                return Some(l);
            }
        }
        self.config_str("model.latent_dim").and_then(|s| s.parse().ok())
    }

    /// "conv" / "pca_dense" (VAE) or "pca".
    pub fn model_label(&self) -> String {
        match self.kind {
            RunKind::Pca => "PCA".into(),
            RunKind::Vae => match self.config_str("model.kind").as_deref() {
                Some("conv") => "conv VAE".into(),
                Some("pca_dense") => format!(
                    "dense VAE on {} PCA coefs",
                    self.config_str("model.dense.components")
                        .unwrap_or_else(|| "?".into())
                ),
                Some(other) => format!("{other} VAE"),
                None => "VAE".into(),
            },
        }
    }

    pub fn likelihood_label(&self) -> String {
        match self.kind {
            RunKind::Pca => "Gaussian (PPCA)".into(),
            RunKind::Vae => self
                .config_str("likelihood.kind")
                .unwrap_or_else(|| "-".into())
                .replace('_', " "),
        }
    }

    /// PCA component counts with metrics, ascending.
    pub fn pca_components(&self) -> Vec<usize> {
        self.pca().map(PcaMetrics::ks).unwrap_or_default()
    }

    /// (epoch, loss) of each epoch with a finite value of `loss`.
    fn epoch_series(&self, loss: impl Fn(&EpochLosses) -> Option<f64>) -> Vec<(f64, f64)> {
        self.epochs
            .iter()
            .enumerate()
            .filter_map(|(i, e)| {
                let x = e.epoch.unwrap_or(i as f64 + 1.0);
                loss(e).filter(|y| y.is_finite()).map(|y| (x, y))
            })
            .collect()
    }

    /// The training loss per epoch.
    pub fn train_losses(&self) -> Vec<(f64, f64)> {
        self.epoch_series(|e| e.train_loss)
    }

    /// The validation loss per epoch.
    pub fn val_losses(&self) -> Vec<(f64, f64)> {
        self.epoch_series(|e| e.val_loss)
    }
}

/// Number of values in a safetensors file's tensors, from its JSON header alone (no tensor data
/// read); running statistics of batch norm are not parameters and are left out.
pub fn count_checkpoint_params(path: &Path) -> Option<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).ok()?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).ok()?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return None;
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    let mut total = 0u64;
    for (name, t) in header.as_object()? {
        if name == "__metadata__" || name.contains("running") {
            continue;
        }
        let shape = t.get("shape")?.as_array()?;
        total += shape.iter().map(|d| d.as_u64().unwrap_or(0)).product::<u64>();
    }
    Some(total)
}
