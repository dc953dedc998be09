//! The PCA baseline as a workflow (`norbvae pca`, `reproduce`): fit on the training split for
//! the largest k (or load a saved model), then evaluate every requested k on train/val/test:
//! MSE, PSNR, PPCA likelihood, reconstruction grids and the explained-variance curve, written
//! into a run directory (layout in `crate::format`).
use super::{PcaModel, PcaParams, PcaSolver};
use crate::data::{self, DataOptions, ImageSet, Split};
use crate::format::run_dir::{claim, Intent, RunKind};
use crate::format::{PcaFitInfo, PcaKMetrics, PcaMetrics, FORMAT_VERSION};
use crate::util::RunDir;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// Images shown per reconstruction grid (original beside reconstruction), pairs per row.
const GRID_IMAGES: usize = 16;
const GRID_COLS: usize = 4;

/// What [`run_baseline`] does. Messages name the `norbvae pca` options these come from.
#[derive(Debug, Clone)]
pub struct BaselineOptions {
    pub data: DataOptions,
    /// Numbers of components to evaluate; the fit uses the largest.
    pub components: Vec<usize>,
    /// Run directory.
    pub out: PathBuf,
    /// Record that consumers (the PCA-VAE) should use whitened coefficients.
    pub whiten: bool,
    pub solver: PcaSolver,
    pub power_iters: Option<usize>,
    pub oversample: Option<usize>,
    /// Seed of the randomized solver.
    pub seed: u64,
    /// Evaluate this saved model (pca.safetensors) instead of fitting one.
    pub model: Option<PathBuf>,
    /// Replace a run already in `out` (it is cleared first); without it such a directory is refused.
    pub force: bool,
}

impl BaselineOptions {
    /// The defaults of `norbvae pca` for `data`, written to `out`.
    pub fn new(data: DataOptions, components: Vec<usize>, out: PathBuf) -> Self {
        Self {
            data,
            components,
            out,
            whiten: false,
            solver: PcaSolver::Auto,
            power_iters: None,
            oversample: None,
            seed: 0,
            model: None,
            force: false,
        }
    }
}

/// The resolved configuration saved as `config.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PcaRunConfig {
    pub kind: String,
    pub components: Vec<usize>,
    pub whiten: bool,
    pub model: Option<PathBuf>,
    pub fit: PcaParams,
    pub data: DataOptions,
}

/// Fit (or load) and evaluate; returns what it wrote to `metrics.json`.
pub fn run_baseline(opts: &BaselineOptions) -> Result<PcaMetrics> {
    let mut components = opts.components.clone();
    components.sort_unstable();
    components.dedup();
    if components.is_empty() || components[0] == 0 {
        bail!("--components: give positive numbers of components, e.g. 100,500");
    }
    let kmax = *components.last().unwrap_or(&1);
    let fit = PcaParams {
        n_components: kmax,
        solver: opts.solver,
        power_iters: opts.power_iters,
        oversample: opts.oversample,
        seed: opts.seed,
    };
    let valid = fit.check().context("--components/--power-iters")?;
    let config = PcaRunConfig {
        kind: "pca".into(),
        components: components.clone(),
        whiten: opts.whiten,
        model: opts.model.clone(),
        fit,
        data: opts.data.clone(),
    };

    let splits = data::load(&opts.data)?;
    let train = &splits.train;
    let d = train.dim();
    if train.n == 0 {
        bail!(
            "{}: the training split is empty; PCA needs training images",
            splits.name
        );
    }
    let shape = format!("{}x{}x{}", train.channels, train.height, train.width);
    let max = train.n.min(d);
    if opts.model.is_none() && kmax > max {
        bail!(
            "--components: {kmax} components requested, but at most min(n_samples = {}, n_pixels = {d} \
             ({shape})) = {max} exist",
            train.n
        );
    }
    // A saved model is checked against the data before anything is written.
    let loaded = match &opts.model {
        Some(path) => {
            let model = PcaModel::load(path)?;
            model
                .check_image_size(d, &shape)
                .with_context(|| format!("--model {}", path.display()))?;
            if kmax > model.k() {
                bail!(
                    "--components: {kmax} requested but the model {} has {}",
                    path.display(),
                    model.k()
                );
            }
            Some(model)
        }
        None => None,
    };
    let intent = if opts.force { Intent::Replace } else { Intent::New };
    let _lock = claim(&opts.out, RunKind::Pca, intent)?;
    let run = RunDir::create(&opts.out)?;
    run.write_toml("config.toml", &config)?;

    let t = Instant::now();
    let (model, solver_used) = match loaded {
        Some(model) => (model, "loaded".to_string()),
        None => {
            let solver = match opts.solver {
                PcaSolver::Auto => super::choose_solver(train.n, d, kmax, &valid),
                s => s,
            };
            eprintln!(
                "fitting PCA ({solver:?}) with {kmax} components on {} x {d} ({shape}) images",
                train.n
            );
            let model = super::fit_pca(&train.images, train.n, d, &valid)
                .with_context(|| format!("fitting PCA on the training split of {}", splits.name))?;
            model.save(&run.path("pca.safetensors"))?;
            let name = clap::ValueEnum::to_possible_value(&solver)
                .map(|v| v.get_name().to_string())
                .unwrap_or_else(|| format!("{solver:?}"));
            (model, name)
        }
    };
    let fit_seconds = t.elapsed().as_secs_f64();

    let cumulative: Vec<f64> = (1..=model.k())
        .map(|k| model.explained_variance_ratio(k))
        .collect();
    super::plot::explained_variance_png(&run.path("explained_variance.png"), &cumulative, &components)?;

    let present: Vec<Split> = Split::ALL.into_iter().filter(|&s| splits.get(s).n > 0).collect();
    for s in Split::ALL.iter().filter(|s| !present.contains(s)) {
        eprintln!(
            "note: the {} split is empty; it is left out of metrics.json",
            s.name()
        );
    }
    let bar = crate::util::progress::bar(
        (components.len() * present.len()) as u64,
        "evaluating",
        "evaluations",
    );
    let mut per_k = BTreeMap::new();
    for &k in &components {
        let mut entry = PcaKMetrics {
            train: None,
            val: None,
            test: None,
            explained_variance_ratio: model.explained_variance_ratio(k),
        };
        for &split in &present {
            let set = splits.get(split);
            let m = super::evaluate(&model, &set.images, set.n, k)
                .with_context(|| format!("evaluating k = {k} on the {} split", split.name()))?;
            if let Some(slot) = entry.split_mut(split.name()) {
                *slot = Some(m);
            }
            save_grid(&run, &model, set, k, split)?;
            bar.inc(1);
        }
        per_k.insert(k.to_string(), entry);
    }
    bar.finish_and_clear();
    let metrics = PcaMetrics {
        format_version: FORMAT_VERSION,
        components,
        metrics: per_k,
        fit: Some(PcaFitInfo {
            solver: solver_used,
            seconds: fit_seconds,
            n_train: train.n,
            image_shape: [train.channels, train.height, train.width],
            total_variance: model.total_variance,
        }),
    };
    run.write_json("metrics.json", &crate::format::RunMetrics::Pca(metrics.clone()))?;
    Ok(metrics)
}

/// `recon_k<k>_<split>.png`: the split's first images beside their k-component reconstructions.
fn save_grid(run: &RunDir, model: &PcaModel, set: &ImageSet, k: usize, split: Split) -> Result<()> {
    let n = set.n.min(GRID_IMAGES);
    let head = &set.images[..n * set.dim()];
    let coefs = model.try_transform(head, n, k, false)?;
    let mut recon = model.try_inverse_transform(&coefs, n, k, false)?;
    recon.iter_mut().for_each(|v| *v = v.clamp(0.0, 1.0));
    let path = run.path(&format!("recon_k{k}_{}.png", split.name()));
    data::grid::save_recon_grid(
        &path,
        head,
        &recon,
        n,
        set.channels,
        set.height,
        set.width,
        GRID_COLS,
    )
}

/// What `norbvae pca` prints: per k the explained variance and each split's MSE.
pub fn summary_text(m: &PcaMetrics, out: &std::path::Path) -> String {
    let mut lines = Vec::new();
    for &k in &m.components {
        let Some(entry) = m.at(k) else { continue };
        let splits: Vec<String> = Split::ALL
            .iter()
            .filter_map(|s| {
                entry
                    .split(s.name())
                    .map(|q| format!("{} mse {:.5}", s.name(), q.mse))
            })
            .collect();
        lines.push(format!(
            "k = {k:>5}: explained {:.4}, {}",
            entry.explained_variance_ratio,
            splits.join(", ")
        ));
    }
    lines.push(format!("wrote {}", out.display()));
    lines.join("\n")
}
