//! python/norbvae_torch.py against norbvae: for every model kind (the conv VAE under each
//! likelihood, residual stages with SiLU, the hierarchical VAE, the dense VAE on PCA coefficients,
//! the VampPrior), a tiny run trains a few steps on a small synthetic NORB at 20x20 (padded to 24
//! inside the conv nets, so the size rule's padding and cropping are exercised), then PyTorch
//! rebuilds it from model.json and model.safetensors alone and reconstructs a fixed batch; the
//! reconstructions must match norbvae's (train::metrics' reconstruct: decoder mean at the
//! posterior mean, in pixels) to 1e-5, as must the decoder means of fixed codes; the codes' mean
//! and log-variance must match to 1e-4, and PyTorch's samples be pixels of the right shape.
//!
//! The interpreter: NORBVAE_TORCH_PYTHON, else .venv-torch/bin/python (scripts/torch_venv.sh).
//! Without one the test is skipped with a message, unless NORBVAE_REQUIRE_TORCH=1 (CI).
mod common;

use common::{blobs, no_data_args};
use norbvae::model::Mode;
use norbvae::train::{load_run, CheckpointKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const SIDE: usize = 20;
const RECON_TOLERANCE: f32 = 1e-5;
/// Every case's code width (`model.latent_dim`), and the fixed codes decoded by both sides.
const LATENT: usize = 3;
const CODES: usize = 4;

fn codes() -> Vec<f32> {
    norbvae::util::SeededRng::new(21).normal_vec(CODES * LATENT)
}

fn python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NORBVAE_TORCH_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-torch/bin/python");
    venv.is_file().then_some(venv)
}

fn train(config: &str, out: &Path, set: &[String]) {
    let path = out.with_extension("toml");
    std::fs::write(&path, config).unwrap();
    norbvae::cli::train::run(norbvae::cli::train::Args {
        device: Default::default(),
        config: Some(path),
        data: no_data_args(),
        out: Some(out.to_path_buf()),
        set: set.to_vec(),
        resume: false,
        force: false,
    })
    .unwrap_or_else(|e| panic!("training {}: {e:#}", out.display()));
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn f32s(t: &safetensors::tensor::TensorView) -> Vec<f32> {
    assert_eq!(t.dtype(), safetensors::Dtype::F32);
    t.data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The fixed batch: blobs on the 8-bit levels.
fn batch() -> norbvae::data::ImageSet {
    let mut set = blobs(6, SIDE, 11, false);
    for v in set.images.iter_mut() {
        *v = (*v * 255.0).round() / 255.0;
    }
    set
}

struct Diff {
    recon: f32,
    decoded: f32,
    mu: f32,
    logvar: f32,
}

/// norbvae's reconstructions, posterior means and log-variances of `batch()` for a run.
struct Expected {
    recon: Vec<f32>,
    /// Decoder means in pixels of `codes()`.
    decoded: Vec<f32>,
    mu: Vec<f32>,
    logvar: Vec<f32>,
}

fn norbvae_outputs(run: &Path) -> Expected {
    let loaded = load_run(run, CheckpointKind::Best).unwrap();
    let x = loaded.model_input(&batch()).unwrap();
    let dec = loaded.vae().reconstruct(&x, Mode::Eval).unwrap();
    let recon = loaded.mean_pixels(&dec).unwrap();
    let (mu, lv) = loaded.encode(&x).unwrap();
    let flat = |t: candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let z = candle_core::Tensor::from_vec(codes(), (CODES, LATENT), &loaded.device).unwrap();
    let decoded = loaded.mean_pixels(&loaded.decode(&z).unwrap()).unwrap();
    Expected {
        recon,
        decoded,
        mu: flat(mu),
        logvar: flat(lv),
    }
}

/// Run the PyTorch loader's command line on every run in one interpreter (importing torch takes
/// seconds): each writes `torch_out.safetensors` and `torch_recon.png` into its run directory.
fn run_pytorch(py: &Path, runs: &[PathBuf], images: &Path) {
    let python_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let driver = "import json, sys, torch\n\
                  from safetensors.torch import load_file, save_file\n\
                  sys.path.insert(0, sys.argv[1])\n\
                  import norbvae_torch\n\
                  for run in json.loads(sys.argv[3]):\n\
                  \x20   code = norbvae_torch.main([run, '--which', 'best', '--images', sys.argv[2],\n\
                  \x20       '--out', run + '/torch_out.safetensors', '--grid', run + '/torch_recon.png'])\n\
                  \x20   assert code == 0, run\n\
                  \x20   vae = norbvae_torch.load_run(run)\n\
                  \x20   s = vae.sample(5, torch.Generator().manual_seed(0))\n\
                  \x20   assert s.shape == (5,) + vae.image_shape and 0 <= s.min() and s.max() <= 1, run\n\
                  \x20   z = load_file(sys.argv[2])['codes']\n\
                  \x20   save_file({'decoded': vae.decode(z).contiguous()}, run + '/torch_decoded.safetensors')\n";
    let list =
        serde_json::to_string(&runs.iter().map(|r| r.display().to_string()).collect::<Vec<_>>()).unwrap();
    let o = Command::new(py)
        .arg("-c")
        .arg(driver)
        .arg(&python_dir)
        .arg(images)
        .arg(list)
        .output()
        .expect("running the PyTorch loader");
    assert!(o.status.success(), "{}", common::text(&o));
}

fn pytorch_outputs(run: &Path) -> HashMap<String, Vec<f32>> {
    assert!(run.join("torch_recon.png").is_file());
    let mut out = HashMap::new();
    for (file, keys) in [
        ("torch_out.safetensors", &["recon", "mu", "logvar"][..]),
        ("torch_decoded.safetensors", &["decoded"][..]),
    ] {
        let bytes = std::fs::read(run.join(file)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for k in keys {
            out.insert(k.to_string(), f32s(&st.tensor(k).unwrap()));
        }
    }
    out
}

fn diff(want: &Expected, got: &HashMap<String, Vec<f32>>) -> Diff {
    Diff {
        recon: max_abs(&want.recon, &got["recon"]),
        decoded: max_abs(&want.decoded, &got["decoded"]),
        mu: max_abs(&want.mu, &got["mu"]),
        logvar: max_abs(&want.logvar, &got["logvar"]),
    }
}

#[test]
fn pytorch_rebuilds_every_model_kind_and_reconstructs_like_norbvae() {
    let Some(py) = python() else {
        if std::env::var("NORBVAE_REQUIRE_TORCH").as_deref() == Ok("1") {
            panic!(
                "NORBVAE_REQUIRE_TORCH=1 but no PyTorch interpreter: run scripts/torch_venv.sh \
                 (makes .venv-torch) or set NORBVAE_TORCH_PYTHON"
            );
        }
        eprintln!(
            "SKIPPED: no PyTorch interpreter (.venv-torch/bin/python or NORBVAE_TORCH_PYTHON); \
             run scripts/torch_venv.sh to make one"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let norb = tmp.path().join("norb");
    norbvae::data::synth::write_small(&norb, 32, 3).unwrap();
    let base = format!(
        "seed = 4
[data]
spec = \"norb:{}\"
image_size = {SIDE}
limit = 64
[model]
latent_dim = {LATENT}
[model.conv]
downsizings = 3
first_filters = 2
max_filters = 4
intermediate = 8
[model.dense]
components = 12
hidden_layers = 2
width = 8
[train]
batch_size = 16
max_epochs = 2
max_steps_per_epoch = 2
grid_images = 4
",
        norb.display()
    );
    let conv = |lik: &str, act: &str, bn: bool, extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            format!("likelihood.kind=\"{lik}\""),
            format!("likelihood.output_activation=\"{act}\""),
            format!("model.conv.batch_norm={bn}"),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("conv_bernoulli", conv("bernoulli", "none", true, &[])),
        (
            "conv_gaussian_fixed",
            conv(
                "gaussian_fixed",
                "tanh",
                false,
                &["model.conv.activation=\"leaky_relu\""],
            ),
        ),
        (
            "conv_gaussian_per_pixel",
            conv("gaussian_per_pixel", "sigmoid", true, &[]),
        ),
        ("conv_gaussian_shared", conv("gaussian_shared", "none", true, &[])),
        (
            "conv_gaussian_optimal",
            conv("gaussian_optimal", "sigmoid", true, &[]),
        ),
        (
            "conv_discretized_logistic",
            conv("discretized_logistic", "tanh", true, &[]),
        ),
        (
            "conv_logistic_mixture",
            conv(
                "discretized_logistic_mixture",
                "sigmoid",
                true,
                &["likelihood.components=3"],
            ),
        ),
        (
            "residual_silu",
            conv(
                "discretized_logistic",
                "sigmoid",
                true,
                &["model.conv.blocks_per_stage=2", "model.conv.activation=\"silu\""],
            ),
        ),
        (
            "hierarchical",
            conv(
                "gaussian_optimal",
                "sigmoid",
                true,
                &[
                    "model.kind=\"hierarchical\"",
                    "model.conv.blocks_per_stage=1",
                    "model.hierarchical.spatial_groups=2",
                    "model.hierarchical.latent_channels=2",
                ],
            ),
        ),
        (
            "pca_dense_whitened",
            vec![
                "model.kind=\"pca_dense\"".into(),
                "model.dense.whiten=true".into(),
                "likelihood.kind=\"gaussian_per_pixel\"".into(),
            ],
        ),
        (
            "conv_vamp",
            conv(
                "gaussian_optimal",
                "sigmoid",
                true,
                &["model.prior.kind=\"vamp\"", "model.prior.pseudo_inputs=4"],
            ),
        ),
        (
            "pca_dense_vamp",
            vec![
                "model.kind=\"pca_dense\"".into(),
                "model.dense.batch_norm=false".into(),
                "model.prior.kind=\"vamp\"".into(),
                "model.prior.pseudo_inputs=3".into(),
                "likelihood.kind=\"gaussian_fixed\"".into(),
            ],
        ),
    ];
    let mut runs = Vec::new();
    let mut expected = Vec::new();
    for (name, set) in &cases {
        let run = tmp.path().join(name);
        train(&base, &run, set);
        let meta = common::read_json(&run.join("model.json"));
        assert_eq!(meta["format_version"], 2, "{name}");
        assert!(meta["architecture"]["encoder"].is_array(), "{name}");
        expected.push(norbvae_outputs(&run));
        runs.push(run);
    }
    // The flat checkpoint layout of older runs: the first run's tensors in
    // checkpoints/best.safetensors, no unit directory.
    let flat = tmp.path().join("flat_layout");
    std::fs::create_dir_all(flat.join("checkpoints")).unwrap();
    std::fs::copy(runs[0].join("model.json"), flat.join("model.json")).unwrap();
    std::fs::copy(
        runs[0].join("checkpoints/best/model.safetensors"),
        flat.join("checkpoints/best.safetensors"),
    )
    .unwrap();
    runs.push(flat);

    let set = batch();
    let images = tmp.path().join("images.safetensors");
    let bytes: Vec<u8> = set.images.iter().flat_map(|v| v.to_le_bytes()).collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![set.n, 1, SIDE, SIDE], &bytes)
            .unwrap();
    let code_bytes: Vec<u8> = codes().iter().flat_map(|v| v.to_le_bytes()).collect();
    let code_view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![CODES, LATENT], &code_bytes)
            .unwrap();
    std::fs::write(
        &images,
        safetensors::serialize(vec![("images", view), ("codes", code_view)], None).unwrap(),
    )
    .unwrap();
    run_pytorch(&py, &runs, &images);

    let names: Vec<&str> = cases
        .iter()
        .map(|(n, _)| *n)
        .chain(["flat_layout (conv_bernoulli)"])
        .collect();
    let mut table = Vec::new();
    let mut failures = Vec::new();
    for (i, (name, run)) in names.iter().zip(&runs).enumerate() {
        let want = expected.get(i).unwrap_or(&expected[0]);
        let d = diff(want, &pytorch_outputs(run));
        // Codes are not clamped and PCA inputs are sums over 400 pixels: 1e-4 absolute.
        let code_tolerance = 1e-4f32;
        let line = format!(
            "{name:<28} recon {:.2e}  decode {:.2e}  mu {:.2e}  logvar {:.2e}",
            d.recon, d.decoded, d.mu, d.logvar
        );
        if d.recon > RECON_TOLERANCE
            || d.decoded > RECON_TOLERANCE
            || d.mu > code_tolerance
            || d.logvar > code_tolerance
        {
            failures.push(line.clone());
        }
        table.push(line);
    }
    eprintln!(
        "max abs difference, norbvae vs PyTorch (6 images {SIDE}x{SIDE}):\n{}",
        table.join("\n")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
