//! Reading run directories (VAE and PCA layouts of CONTRACTS.md) into what the report shows.
//! Everything beyond `metrics.json` is optional: a run missing a picture or a curve still gets
//! its row, with a dash where the number would be.
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// One run directory, as the report sees it.
#[derive(Debug, Clone)]
pub struct RunInfo {
    pub dir: PathBuf,
    pub name: String,
    pub kind: RunKind,
    pub metrics: Value,
    /// The resolved config (config.toml), as a generic tree.
    pub config: Option<toml::Value>,
    /// metrics.jsonl, one object per epoch.
    pub epochs: Vec<Value>,
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
        let metrics_path = dir.join("metrics.json");
        let text = std::fs::read_to_string(&metrics_path)
            .with_context(|| format!("reading {}", metrics_path.display()))?;
        let metrics: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", metrics_path.display()))?;
        let kind = match metrics.get("kind").and_then(Value::as_str) {
            Some("vae") => RunKind::Vae,
            Some("pca") => RunKind::Pca,
            other => bail!(
                "{}: \"kind\" must be \"vae\" or \"pca\", found {}",
                metrics_path.display(),
                other
                    .map(|s| format!("\"{s}\""))
                    .unwrap_or_else(|| "nothing".into())
            ),
        };
        let config = std::fs::read_to_string(dir.join("config.toml"))
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .map(toml::Value::Table);
        let epochs = std::fs::read_to_string(dir.join("metrics.jsonl"))
            .map(|t| {
                t.lines()
                    .filter(|l| !l.trim().is_empty())
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect()
            })
            .unwrap_or_default();
        let mut images: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "png"))
            .collect();
        images.sort();
        let n_params = count_checkpoint_params(&dir.join("checkpoints").join("best.safetensors"))
            .or_else(|| metrics.get("n_params").and_then(Value::as_u64));
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

    /// A number in metrics.json by path, e.g. `["metrics", "test", "mse"]`.
    pub fn metric(&self, path: &[&str]) -> Option<f64> {
        let mut v = &self.metrics;
        for p in path {
            v = v.get(*p)?;
        }
        v.as_f64()
    }

    pub fn metric_str(&self, path: &[&str]) -> Option<String> {
        let mut v = &self.metrics;
        for p in path {
            v = v.get(*p)?;
        }
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
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

    pub fn latent_dim(&self) -> Option<usize> {
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
        let mut ks: Vec<usize> = self
            .metrics
            .get("metrics")
            .and_then(Value::as_object)
            .map(|m| m.keys().filter_map(|k| k.parse().ok()).collect())
            .unwrap_or_default();
        ks.sort_unstable();
        ks
    }

    /// The series of one per-epoch quantity, trying each candidate key (dotted paths into nested
    /// objects) in turn. Returns (epoch, value) pairs.
    pub fn epoch_series(&self, candidates: &[&str]) -> Vec<(f64, f64)> {
        for key in candidates {
            let pts: Vec<(f64, f64)> = self
                .epochs
                .iter()
                .enumerate()
                .filter_map(|(i, e)| {
                    let mut v = e;
                    for p in key.split('.') {
                        v = v.get(p)?;
                    }
                    let x = e.get("epoch").and_then(Value::as_f64).unwrap_or(i as f64 + 1.0);
                    v.as_f64().filter(|y| y.is_finite()).map(|y| (x, y))
                })
                .collect();
            if !pts.is_empty() {
                return pts;
            }
        }
        Vec::new()
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
