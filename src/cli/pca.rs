//! `norbvae pca`: fit the PCA baseline on the training split for the largest k (or load a saved
//! model), then evaluate every requested k on train/val/test: MSE, PSNR, PPCA likelihood,
//! reconstruction grids, and the explained-variance curve.
use crate::cli::common::DataArgs;
use crate::data::{self, DataOptions, ImageSet, Split};
use crate::pca::{self, PcaModel, PcaParams, PcaSolver, SplitMetrics};
use crate::util::RunDir;
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::path::PathBuf;
use std::time::Instant;

/// Images shown per reconstruction grid (original beside reconstruction), pairs per row.
const GRID_IMAGES: usize = 16;
const GRID_COLS: usize = 4;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    /// Numbers of components to evaluate (comma-separated); the fit uses the largest.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000")]
    pub components: Vec<usize>,
    /// Run directory for metrics.json, config.toml, pca.safetensors and the pictures.
    #[arg(long)]
    pub out: PathBuf,
    /// Record that consumers (the PCA-VAE) should use whitened coefficients (unit variance per
    /// axis). Reconstructions and metrics do not depend on it.
    #[arg(long)]
    pub whiten: bool,
    /// Fitting algorithm: chosen by shape, k and memory (auto), exact covariance eigendecomposition,
    /// randomized subspace iteration on the covariance, or randomized over the data.
    #[arg(long, value_enum, default_value_t = PcaSolver::Auto)]
    pub solver: PcaSolver,
    /// Randomized solvers: subspace iterations (default 3 over the data, 5 on the covariance).
    #[arg(long)]
    pub power_iters: Option<usize>,
    /// Randomized solvers: extra basis vectors (default max(10, k/3)).
    #[arg(long)]
    pub oversample: Option<usize>,
    /// Seed of the randomized solver (the data split has its own, --data-seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate this saved model (pca.safetensors) instead of fitting one.
    #[arg(long)]
    pub model: Option<PathBuf>,
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

pub fn run(args: Args) -> Result<()> {
    let mut components = args.components.clone();
    components.sort_unstable();
    components.dedup();
    if components.is_empty() || components[0] == 0 {
        bail!("--components: give positive numbers of components, e.g. 100,500");
    }
    let kmax = *components.last().unwrap_or(&1);
    let fit = PcaParams {
        n_components: kmax,
        solver: args.solver,
        power_iters: args.power_iters,
        oversample: args.oversample,
        seed: args.seed,
    };
    let valid = fit.check().context("--components/--power-iters")?;
    let opts = args.data.apply(DataOptions::default());
    let config = PcaRunConfig {
        kind: "pca".into(),
        components: components.clone(),
        whiten: args.whiten,
        model: args.model.clone(),
        fit,
        data: opts.clone(),
    };

    let splits = data::load(&opts)?;
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
    if args.model.is_none() && kmax > max {
        bail!(
            "--components: {kmax} components requested, but at most min(n_samples = {}, n_pixels = {d} \
             ({shape})) = {max} exist",
            train.n
        );
    }
    // A saved model is checked against the data before anything is written.
    let loaded = match &args.model {
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
    let run = RunDir::create(&args.out)?;
    run.write_toml("config.toml", &config)?;

    let t = Instant::now();
    let (model, solver_used) = match loaded {
        Some(model) => (model, "loaded".to_string()),
        None => {
            let solver = match args.solver {
                PcaSolver::Auto => pca::choose_solver(train.n, d, kmax, &valid),
                s => s,
            };
            eprintln!(
                "fitting PCA ({solver:?}) with {kmax} components on {} x {d} ({shape}) images",
                train.n
            );
            let model = pca::fit_pca(&train.images, train.n, d, &valid)
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
    pca::plot::explained_variance_png(&run.path("explained_variance.png"), &cumulative, &components)?;

    let present: Vec<Split> = Split::ALL.into_iter().filter(|&s| splits.get(s).n > 0).collect();
    for s in Split::ALL.iter().filter(|s| !present.contains(s)) {
        eprintln!(
            "note: the {} split is empty; it is left out of metrics.json",
            s.name()
        );
    }
    let bar = pca::progress_bar((components.len() * present.len()) as u64, "evaluating");
    let mut per_k = Map::new();
    for &k in &components {
        let mut entry = Map::new();
        for &split in &present {
            let set = splits.get(split);
            let m = pca::evaluate(&model, &set.images, set.n, k)
                .with_context(|| format!("evaluating k = {k} on the {} split", split.name()))?;
            entry.insert(split.name().into(), metrics_json(&m));
            save_grid(&run, &model, set, k, split)?;
            bar.inc(1);
        }
        entry.insert(
            "explained_variance_ratio".into(),
            json!(model.explained_variance_ratio(k)),
        );
        per_k.insert(k.to_string(), Value::Object(entry));
    }
    bar.finish_and_clear();
    let metrics = json!({
        "kind": "pca",
        "components": components,
        "metrics": per_k,
        "fit": {
            "solver": solver_used,
            "seconds": fit_seconds,
            "n_train": train.n,
            "image_shape": [train.channels, train.height, train.width],
            "total_variance": model.total_variance,
        },
    });
    run.write_json("metrics.json", &metrics)?;
    for &k in &components {
        let line: Vec<String> = present
            .iter()
            .filter_map(|s| {
                metrics["metrics"][k.to_string()][s.name()]["mse"]
                    .as_f64()
                    .map(|m| (s, m))
            })
            .map(|(s, m)| format!("{} mse {m:.5}", s.name()))
            .collect();
        println!(
            "k = {k:>5}: explained {:.4}, {}",
            model.explained_variance_ratio(k),
            line.join(", ")
        );
    }
    println!("wrote {}", run.root().display());
    Ok(())
}

fn metrics_json(m: &SplitMetrics) -> Value {
    json!({"mse": m.mse, "psnr": m.psnr, "ppca_nll": m.ppca_nll, "ppca_bits_per_dim": m.ppca_bits_per_dim})
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
