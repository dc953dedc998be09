//! PCA benchmark: fit time, reconstruction MSE against the exact PCA, and peak memory, for the
//! solvers of `norbvae::pca` on one data matrix. Run beside `bench/pca_sklearn.py` on the same
//! matrix (`--dump` writes it as raw little-endian f32 for the Python side).
//!
//! ```text
//! cargo run --release --example pca_bench -- --source fashion-mnist --k 50,100,200 --dump /tmp/fm.f32
//! cargo run --release --example pca_bench -- --source synthetic:24300x9216 --k 100,500,1000,2000
//! cargo run --release --example pca_bench -- --source norb:DIR --k 100,500,1000,2000
//! ```
use anyhow::{bail, Context, Result};
use clap::Parser;
use norbvae::pca::{exact_eigenvalues, fit_pca, PcaParams, PcaSolver};
use std::io::Read;
use std::time::Instant;

#[derive(Parser)]
struct Args {
    /// `fashion-mnist` (train split, 60000x784), `synthetic:NxD` (power-law low-rank + noise),
    /// `norb:DIR` (training split, left camera), or `raw:PATH:NxD` (little-endian f32).
    #[arg(long)]
    source: String,
    /// Numbers of components.
    #[arg(long, value_delimiter = ',', default_value = "50,100,200")]
    k: Vec<usize>,
    /// Solvers to time.
    #[arg(long, value_delimiter = ',', default_value = "randomized")]
    solvers: Vec<PcaSolver>,
    /// Subspace iterations (default: the solver's own, see `PcaParams::power_iters`).
    #[arg(long)]
    power_iters: Option<usize>,
    #[arg(long)]
    oversample: Option<usize>,
    /// Skip the exact reference (all covariance eigenvalues in f64; minutes at d = 9216).
    #[arg(long)]
    no_exact: bool,
    /// Cache of the exact eigenvalues (raw f64): read when present (and of the right length),
    /// otherwise computed and written there.
    #[arg(long)]
    exact_cache: Option<std::path::PathBuf>,
    /// Write the matrix as raw f32 here, for bench/pca_sklearn.py.
    #[arg(long)]
    dump: Option<std::path::PathBuf>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let t = Instant::now();
    let (x, n, d, what) = load(&args.source, args.seed)?;
    println!(
        "data: {what}: {n} x {d} ({:.0} MB f32), ready in {:.1} s",
        mb(n * d * 4),
        t.elapsed().as_secs_f64()
    );
    if let Some(p) = &args.dump {
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))?;
        println!("wrote {}", p.display());
    }
    let data_rss = peak_rss_reset();
    let cached = args.exact_cache.as_ref().and_then(|p| {
        let bytes = std::fs::read(p).ok()?;
        (bytes.len() == d * 8).then(|| {
            bytes
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect::<Vec<f64>>()
        })
    });
    let exact = if args.no_exact {
        None
    } else if let Some(ev) = cached {
        println!(
            "exact: eigenvalues read from {}",
            args.exact_cache.as_ref().unwrap().display()
        );
        Some(ev)
    } else {
        let t = Instant::now();
        let ev = exact_eigenvalues(&x, n, d)?;
        let secs = t.elapsed().as_secs_f64();
        let peak = peak_rss_reset();
        println!(
            "exact: all {d} eigenvalues (f64 covariance) in {secs:.1} s, peak RSS {:.0} MB",
            mb(peak)
        );
        if let Some(p) = &args.exact_cache {
            let bytes: Vec<u8> = ev.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(p, bytes).with_context(|| format!("writing {}", p.display()))?;
        }
        Some(ev)
    };
    let scale = (n - 1) as f64 / (n as f64 * d as f64); // variance (1/(n-1)) -> mean squared error
    println!(
        "{:<11} {:>6} {:>9} {:>12} {:>12} {:>9} {:>10} {:>8}",
        "solver", "k", "time_s", "mse", "exact_mse", "rel_err%", "peak_MB", "x_data"
    );
    for &solver in &args.solvers {
        for &k in &args.k {
            let params = PcaParams {
                n_components: k,
                solver,
                power_iters: args.power_iters,
                oversample: args.oversample,
                seed: args.seed,
            }
            .check()?;
            peak_rss_reset();
            let t = Instant::now();
            let model = fit_pca(&x, n, d, &params)?;
            let secs = t.elapsed().as_secs_f64();
            let peak = peak_rss_reset();
            let mse = norbvae::pca::evaluate(&model, &x, n, k)?.mse;
            let exact_mse = exact.as_ref().map(|ev| ev[k..].iter().sum::<f64>() * scale);
            let name = match solver {
                PcaSolver::Auto => format!("auto:{:?}", norbvae::pca::choose_solver(n, d, k, &params)),
                s => format!("{s:?}"),
            };
            println!(
                "{:<11} {:>6} {:>9.2} {:>12.6e} {:>12} {:>9} {:>10.0} {:>8.2}",
                name.to_lowercase(),
                k,
                secs,
                mse,
                exact_mse.map(|e| format!("{e:.6e}")).unwrap_or("-".into()),
                exact_mse
                    .map(|e| format!("{:.3}", 100.0 * (mse - e) / e))
                    .unwrap_or("-".into()),
                mb(peak),
                peak as f64 / (n * d * 4) as f64,
            );
        }
    }
    let _ = data_rss;
    Ok(())
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / 1e6
}

/// Peak resident set size since the last reset (bytes), then reset the peak to the current RSS.
fn peak_rss_reset() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(0);
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    kb * 1024
}

fn load(source: &str, seed: u64) -> Result<(Vec<f32>, usize, usize, String)> {
    if source == "fashion-mnist" {
        let (x, n, d) = read_idx_images("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")?;
        return Ok((x, n, d, "Fashion-MNIST train".into()));
    }
    if let Some(dir) = source.strip_prefix("norb:") {
        let opts = norbvae::data::DataOptions {
            spec: format!("norb:{dir}"),
            val_fraction: 0.0,
            ..Default::default()
        };
        let s = norbvae::data::load(&opts)?;
        let d = s.train.dim();
        return Ok((
            s.train.images,
            s.train.n,
            d,
            format!("NORB training split (left camera) from {dir}"),
        ));
    }
    if let Some(shape) = source.strip_prefix("synthetic:") {
        let (n, d) = parse_shape(shape)?;
        return Ok((
            synthetic(n, d, seed),
            n,
            d,
            "synthetic power-law low-rank + noise".into(),
        ));
    }
    if let Some(rest) = source.strip_prefix("raw:") {
        let (path, shape) = rest.rsplit_once(':').context("raw:PATH:NxD")?;
        let (n, d) = parse_shape(shape)?;
        let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        if bytes.len() != n * d * 4 {
            bail!("{path}: {} bytes, expected {n}x{d} f32", bytes.len());
        }
        let x = bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        return Ok((x, n, d, format!("raw {path}")));
    }
    bail!("--source: expected fashion-mnist, norb:DIR, synthetic:NxD or raw:PATH:NxD, got '{source}'")
}

fn parse_shape(s: &str) -> Result<(usize, usize)> {
    let (a, b) = s.split_once('x').context("shape must be NxD")?;
    Ok((a.parse()?, b.parse()?))
}

fn read_idx_images(path: &str) -> Result<(Vec<f32>, usize, usize)> {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).with_context(|| format!("opening {path}"))?)
        .read_to_end(&mut bytes)?;
    let be = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
    if bytes.len() < 16 || be(0) != 0x803 {
        bail!("{path}: not an IDX image file");
    }
    let (n, d) = (be(4), be(8) * be(12));
    Ok((
        bytes[16..16 + n * d].iter().map(|&v| v as f32 / 255.0).collect(),
        n,
        d,
    ))
}

/// Pixels in [0,1]: a mean image plus 2048 random directions with power-law scales (an image-like
/// spectrum) plus isotropic noise, clamped. Built with one matrix product.
fn synthetic(n: usize, d: usize, seed: u64) -> Vec<f32> {
    use faer::{linalg::matmul::matmul, Accum, MatMut, MatRef, Par};
    let r = 2048.min(d);
    let mut rng = norbvae::util::SeededRng::new(seed);
    let mut a = rng.normal_vec(n * r);
    for row in a.chunks_mut(r) {
        row.iter_mut()
            .enumerate()
            .for_each(|(j, v)| *v *= 0.25 / (1.0 + j as f32).powf(0.8));
    }
    let b: Vec<f32> = rng
        .normal_vec(r * d)
        .iter()
        .map(|v| v / (d as f32).sqrt())
        .collect();
    let mut x = rng.normal_vec(n * d);
    x.iter_mut().for_each(|v| *v *= 0.01);
    matmul(
        MatMut::from_row_major_slice_mut(&mut x, n, d),
        Accum::Add,
        MatRef::from_row_major_slice(&a, n, r),
        MatRef::from_row_major_slice(&b, r, d),
        1.0f32,
        Par::rayon(0),
    );
    let mean = rng.uniform_vec(d);
    for row in x.chunks_mut(d) {
        row.iter_mut()
            .zip(&mean)
            .for_each(|(v, m)| *v = (*v + 0.3 + 0.4 * m).clamp(0.0, 1.0));
    }
    x
}
