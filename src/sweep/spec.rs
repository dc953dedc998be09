//! What a sweep is made of: the typed options ([`SweepSpec`], [`SlurmOptions`]) and the sweep
//! file (`configs/sweeps/*.toml`, [`SweepFile`]) that holds them.
use crate::format::sweep::{ExecutorKind, GridAxis};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const DEFAULT_MAX_RUNS: usize = 256;
/// Seconds before the time limit at which Slurm sends SIGUSR1 (`--signal=B:USR1@SECONDS`).
pub const DEFAULT_SIGNAL_SECONDS: u32 = 120;

/// The grid and its base: everything that decides which runs exist and their configs.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSpec {
    pub base_config: PathBuf,
    /// Replaces `data.spec` of every run.
    pub data: Option<String>,
    /// `key=value` overrides applied before the grid's.
    pub set: Vec<String>,
    pub grid: Vec<GridAxis>,
    /// None: one run per grid point with the config's seed.
    pub seeds: Option<Vec<u64>>,
    pub max_runs: usize,
}

/// Options of the Slurm executor; `None` leaves the cluster's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmOptions {
    pub cpus_per_task: Option<usize>,
    /// `--mem` per task, e.g. `4G`.
    pub mem: Option<String>,
    /// `--time` per task, e.g. `02:00:00`.
    pub time: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    /// At most this many tasks at once (`--array=...%P`).
    pub parallel: Option<usize>,
    /// `--signal=B:USR1@SECONDS` (default 120).
    pub signal_seconds: Option<u32>,
    /// Further sbatch options, each one `--name=value` string, passed through.
    pub extra: Vec<String>,
    pub job_name: Option<String>,
}

/// A sweep file: the same as the command line's options. Paths in `config` are relative to the
/// file; `data` and `out` are taken as given (relative to where norbvae runs).
///
/// ```toml
/// config = "../basic-convolutional-vae.toml"
/// data = "norb:data/smallnorb"
/// out = "sweeps/capacity"
/// set = ["train.max_epochs=30"]
/// seeds = [0, 1, 2]
/// [grid]
/// "model.latent_dim" = [10, 32, 100]
/// "model.conv.first_filters" = [16, 32]
/// [executor]
/// kind = "local"   # or "slurm", "print"
/// jobs = 2
/// [slurm]
/// cpus_per_task = 2
/// time = "02:00:00"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepFile {
    pub config: Option<PathBuf>,
    pub data: Option<String>,
    pub out: Option<PathBuf>,
    pub set: Vec<String>,
    pub seeds: Option<Vec<u64>>,
    pub max_runs: Option<usize>,
    pub grid: BTreeMap<String, Vec<toml::Value>>,
    pub executor: ExecutorSection,
    pub slurm: SlurmOptions,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorSection {
    pub kind: Option<ExecutorKind>,
    pub jobs: Option<usize>,
}

impl SweepFile {
    /// Read a sweep file; `config` comes back relative to the current directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading sweep file {}", path.display()))?;
        let mut f: SweepFile = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}", e.message()))
            .with_context(|| format!("sweep file {}", path.display()))?;
        if let Some(c) = &f.config {
            if c.is_relative() {
                let dir = path.parent().unwrap_or(Path::new("."));
                f.config = Some(dir.join(c));
            }
        }
        Ok(f)
    }

    /// The grid as axes with TOML-literal values.
    pub fn axes(&self) -> Vec<GridAxis> {
        self.grid
            .iter()
            .map(|(k, vs)| GridAxis {
                key: k.clone(),
                values: vs.iter().map(|v| v.to_string()).collect(),
            })
            .collect()
    }
}

/// Parse `--grid key=v1,v2,v3`.
pub fn parse_grid_arg(arg: &str) -> Result<GridAxis> {
    let Some((key, values)) = arg.split_once('=') else {
        bail!("--grid {arg}: expected KEY=V1,V2,... (e.g. model.latent_dim=10,32,100)");
    };
    let key = key.trim();
    if key.is_empty() {
        bail!("--grid {arg}: empty key");
    }
    let values: Vec<String> = if values.trim().is_empty() {
        Vec::new()
    } else {
        values.split(',').map(|v| v.trim().to_string()).collect()
    };
    Ok(GridAxis {
        key: key.to_string(),
        values,
    })
}

/// Parse `--seeds 0,1,2` or a range `0..3`.
pub fn parse_seeds(arg: &str) -> Result<Vec<u64>> {
    let bad = || format!("--seeds {arg}: expected a comma-separated list (0,1,2) or a range (0..3)");
    if let Some((a, b)) = arg.split_once("..") {
        let a: u64 = a.trim().parse().with_context(bad)?;
        let b: u64 = b.trim().parse().with_context(bad)?;
        if b <= a {
            bail!("--seeds {arg}: empty range");
        }
        return Ok((a..b).collect());
    }
    arg.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<u64>().with_context(bad))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_and_seed_arguments_parse() {
        let a = parse_grid_arg("model.latent_dim=10, 32,100").unwrap();
        assert_eq!(a.key, "model.latent_dim");
        assert_eq!(a.values, vec!["10", "32", "100"]);
        assert!(parse_grid_arg("model.latent_dim=").unwrap().values.is_empty());
        assert!(parse_grid_arg("model.latent_dim").is_err());
        assert_eq!(parse_seeds("0,1,2").unwrap(), vec![0, 1, 2]);
        assert_eq!(parse_seeds("3..5").unwrap(), vec![3, 4]);
        assert!(parse_seeds("a").is_err());
    }

    #[test]
    fn a_sweep_file_reads_with_its_config_relative_to_it() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("s.toml");
        std::fs::write(
            &p,
            "config = \"../base.toml\"\nseeds = [0, 1]\n[grid]\n\"model.latent_dim\" = [10, 32]\n\"likelihood.output_activation\" = [\"sigmoid\"]\n[executor]\nkind = \"slurm\"\n[slurm]\ntime = \"00:10:00\"\nextra = [\"--qos=low\"]\n",
        )
        .unwrap();
        let f = SweepFile::load(&p).unwrap();
        assert_eq!(f.config.clone().unwrap(), tmp.path().join("../base.toml"));
        assert_eq!(f.executor.kind, Some(ExecutorKind::Slurm));
        assert_eq!(f.slurm.extra, vec!["--qos=low"]);
        let axes = f.axes();
        assert_eq!(axes[0].key, "likelihood.output_activation");
        assert_eq!(axes[0].values, vec!["\"sigmoid\""]);
        assert_eq!(axes[1].values, vec!["10", "32"]);
        std::fs::write(&p, "grid_typo = 1\n").unwrap();
        let e = format!("{:#}", SweepFile::load(&p).unwrap_err());
        assert!(e.contains("s.toml") && e.contains("grid_typo"), "{e}");
    }
}
