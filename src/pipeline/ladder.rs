//! `norbvae reproduce --ladder`: the improvement ladder ([`crate::train::ladder`]) as the
//! reproduction's preset list. What differs from the log's presets is decided here: the data
//! options come from the steps' shared `[data]` (the command line's over them, as
//! `norbvae train --config STEP` would apply them), PCA is evaluated at every step's code size,
//! an existing run directory is reused only when its `config.toml` is exactly the config this
//! reproduction would train, and `OUT/ladder.json` tells the report the steps' order.
use crate::data::DataOptions;
use crate::format::ladder::{LadderManifest, LadderStepEntry};
use crate::model::{InputShape, ParamStore, Vae};
use crate::train::ladder::LadderStep;
use crate::train::TrainConfig;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The `[data]` every step shares, with `apply` (the command line's data options) over it. Steps
/// with different data cannot share a PCA or be compared: refused, naming the steps and the key.
pub fn shared_data(steps: &[LadderStep], apply: impl Fn(DataOptions) -> DataOptions) -> Result<DataOptions> {
    let mut shared: Option<(String, DataOptions)> = None;
    for s in steps {
        let cfg =
            TrainConfig::from_toml_str(&s.config, &[]).with_context(|| format!("ladder step {}", s.name))?;
        let data = apply(cfg.data);
        match &shared {
            None => shared = Some((s.name.clone(), data)),
            Some((first, d)) if *d != data => {
                let a = toml::Value::try_from(d)?;
                let b = toml::Value::try_from(&data)?;
                bail!(
                    "ladder steps {first} and {} read different data ({}): every step must train on the same [data], \
                     so that PCA and the steps compare on one dataset",
                    s.name,
                    differing_keys(&a, &b, "data").join(", ")
                );
            }
            Some(_) => {}
        }
    }
    shared.map(|(_, d)| d).context("the ladder has no steps")
}

/// The code size a config trains: latent scalars per image over every group, as the trainer
/// records it in `metrics.json` (`latent_dim`). The model is built (on the CPU, not trained) to
/// count them.
pub fn code_size(cfg: &TrainConfig, channels: usize, height: usize, width: usize) -> Result<usize> {
    let store = ParamStore::new(cfg.seed, &candle_core::Device::Cpu);
    let vae = Vae::new(
        &cfg.model,
        &cfg.likelihood,
        InputShape::Image {
            channels,
            height,
            width,
        },
        store.var_builder(),
    )?;
    Ok(vae.latent_dim)
}

/// Dotted keys whose values differ between two TOML trees (a key on one side only counts).
pub fn differing_keys(a: &toml::Value, b: &toml::Value, prefix: &str) -> Vec<String> {
    match (a, b) {
        (toml::Value::Table(x), toml::Value::Table(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .flat_map(|k| {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    match (x.get(k), y.get(k)) {
                        (Some(u), Some(v)) => differing_keys(u, v, &p),
                        _ => vec![p],
                    }
                })
                .collect()
        }
        _ if a == b => vec![],
        _ => vec![prefix.to_string()],
    }
}

/// Is `run_dir` (which has a `config.toml`) a run of exactly `cfg`? A run of another config is
/// refused: reusing it would show another model under this step's name, and training into it
/// would mix two runs.
pub fn check_existing_run(run_dir: &Path, step: &str, cfg: &TrainConfig) -> Result<()> {
    let path = run_dir.join("config.toml");
    if !path.is_file() {
        return Ok(());
    }
    let existing =
        TrainConfig::load(&path, &[]).with_context(|| format!("existing run of ladder step {step}"))?;
    if existing != *cfg {
        let keys = differing_keys(
            &toml::Value::try_from(&existing)?,
            &toml::Value::try_from(cfg)?,
            "",
        );
        bail!(
            "{} holds a run of another config than ladder step {step} resolves to here (differing keys: {}); \
             reuse needs the same step config, --data/--image-size/--limit options and --set overrides: \
             use another --out, or move that run away",
            run_dir.display(),
            keys.join(", ")
        );
    }
    Ok(())
}

/// The ladder code sizes `ks` a finished PCA run in `pca_dir` has no metrics for. A PCA of other
/// data (another image size, limit, split) is refused: its MSE is not comparable with the steps'.
pub fn pca_missing(pca_dir: &Path, data: &DataOptions, ks: &[usize]) -> Result<Vec<usize>> {
    let cfg_path = pca_dir.join("config.toml");
    let text =
        std::fs::read_to_string(&cfg_path).with_context(|| format!("reading {}", cfg_path.display()))?;
    let cfg: crate::pca::PcaRunConfig =
        toml::from_str(&text).with_context(|| format!("parsing {}", cfg_path.display()))?;
    if cfg.data != *data {
        let keys = differing_keys(
            &toml::Value::try_from(&cfg.data)?,
            &toml::Value::try_from(data)?,
            "data",
        );
        bail!(
            "{} is a PCA of other data than the ladder's (differing keys: {}): use another --out, or move it away",
            pca_dir.display(),
            keys.join(", ")
        );
    }
    let metrics = match crate::format::RunMetrics::read(&pca_dir.join("metrics.json"))? {
        crate::format::RunMetrics::Pca(m) => m,
        crate::format::RunMetrics::Vae(_) => bail!("{} is a VAE run, not PCA", pca_dir.display()),
    };
    let have = metrics.ks();
    let mut missing: Vec<usize> = ks.iter().copied().filter(|k| !have.contains(k)).collect();
    missing.sort_unstable();
    missing.dedup();
    Ok(missing)
}

/// Write `OUT/ladder.json` (the steps' order and descriptions; their configs as written to
/// `OUT/configs/<step>.toml`).
pub fn write_manifest(out: &Path, steps: &[LadderStep]) -> Result<()> {
    let entries = steps
        .iter()
        .map(|s| LadderStepEntry {
            name: s.name.clone(),
            description: s.description.clone(),
            short: s.short(),
            config: Path::new("configs").join(format!("{}.toml", s.name)),
        })
        .collect();
    LadderManifest::new(entries).write_in(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differing_keys_name_the_dotted_paths() {
        let a: toml::Value = toml::from_str("seed = 1\n[model]\nlatent_dim = 4\nkind = \"conv\"\n").unwrap();
        let b: toml::Value =
            toml::from_str("seed = 1\n[model]\nlatent_dim = 8\nkind = \"conv\"\n[train]\nlr = 1.0\n")
                .unwrap();
        assert_eq!(differing_keys(&a, &b, ""), ["model.latent_dim", "train"]);
        assert!(differing_keys(&a, &a, "").is_empty());
    }

    #[test]
    fn the_code_size_counts_every_latent_group() {
        let steps = crate::train::ladder::embedded_steps();
        for s in &steps {
            let cfg = TrainConfig::from_toml_str(&s.config, &[]).unwrap();
            let k = code_size(&cfg, 1, 32, 32).unwrap();
            if cfg.model.kind == crate::model::ModelKind::Hierarchical {
                assert!(k > cfg.model.latent_dim, "{}: {k}", s.name);
            } else {
                assert_eq!(k, cfg.model.latent_dim, "{}", s.name);
            }
        }
    }
}
