//! `norbvae pca` run as a user would: Fashion-MNIST (when installed) and a small synthetic NORB,
//! producing the run directory; the error cases exit non-zero with a message naming the option.
use norbvae::pca::PcaModel;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn norbvae(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_norbvae"))
        .args(args)
        .output()
        .expect("running norbvae")
}

fn fashion_mnist_installed() -> bool {
    let ok = Path::new("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").exists();
    if !ok {
        eprintln!("Fashion-MNIST not installed (apt install dataset-fashion-mnist); skipping");
    }
    ok
}

fn metrics(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
}

#[test]
fn pca_on_fashion_mnist_writes_the_run_directory() {
    if !fashion_mnist_installed() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let o = norbvae(&[
        "pca",
        "--data",
        "fashion-mnist",
        "--limit",
        "400",
        "--components",
        "40,5",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for f in [
        "metrics.json",
        "config.toml",
        "pca.safetensors",
        "explained_variance.png",
    ] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    for k in [5, 40] {
        for s in ["train", "val", "test"] {
            let png = out.join(format!("recon_k{k}_{s}.png"));
            assert!(image::open(&png).is_ok(), "unreadable {}", png.display());
        }
    }
    let m = metrics(&out);
    assert_eq!(m["kind"], "pca");
    assert_eq!(m["components"], serde_json::json!([5, 40]));
    let get = |k: &str, s: &str, f: &str| m["metrics"][k][s][f].as_f64().unwrap();
    for s in ["train", "val", "test"] {
        assert!(
            get("40", s, "mse") < get("5", s, "mse"),
            "{s}: more components must reconstruct better"
        );
        assert!((get("40", s, "psnr") + 10.0 * get("40", s, "mse").log10()).abs() < 1e-9);
        let bpd = get("40", s, "ppca_bits_per_dim");
        assert!(bpd.is_finite() && bpd < 8.0, "{s}: PPCA bits/dim {bpd}");
    }
    let r5 = m["metrics"]["5"]["explained_variance_ratio"].as_f64().unwrap();
    let r40 = m["metrics"]["40"]["explained_variance_ratio"].as_f64().unwrap();
    assert!(0.0 < r5 && r5 < r40 && r40 < 1.0);
    let model = PcaModel::load(&out.join("pca.safetensors")).unwrap();
    assert_eq!((model.k(), model.dim(), model.n_samples), (40, 784, 400));
    // Training MSE equals the variance the model says it leaves out (n-1 -> n normalisation).
    let left_out = (model.total_variance - model.explained_variance.iter().map(|&v| v as f64).sum::<f64>())
        * 399.0
        / 400.0
        / 784.0;
    assert!((get("40", "train", "mse") - left_out).abs() < 2e-3 * left_out);
    let config = std::fs::read_to_string(out.join("config.toml")).unwrap();
    assert!(
        config.contains("fashion-mnist") && config.contains("n_components = 40"),
        "{config}"
    );
}

#[test]
fn pca_on_synthetic_norb_and_error_cases() {
    let tmp = tempfile::tempdir().unwrap();
    let norb = tmp.path().join("norb");
    norbvae::data::synth::write_small(&norb, 16, 3).unwrap();
    let spec = format!("norb:{}", norb.display());
    let out = tmp.path().join("run");
    let o = norbvae(&[
        "pca",
        "--data",
        &spec,
        "--components",
        "8,30",
        "--val-fraction",
        "0",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("val split is empty"));
    let m = metrics(&out);
    assert!(m["metrics"]["30"]["test"]["mse"].as_f64().unwrap() > 0.0);
    assert!(m["metrics"]["30"].get("val").is_none());
    assert!(out.join("recon_k8_test.png").is_file() && !out.join("recon_k8_val.png").exists());

    // More components than min(n_samples, n_pixels = 256).
    let bad = tmp.path().join("bad");
    let o = norbvae(&[
        "pca",
        "--data",
        &spec,
        "--components",
        "300",
        "--out",
        bad.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--components") && err.contains("256"),
        "{err}"
    );
    assert!(!bad.join("metrics.json").exists());

    // A saved model evaluated on images of another size.
    if fashion_mnist_installed() {
        let model = out.join("pca.safetensors");
        let o = norbvae(&[
            "pca",
            "--data",
            "fashion-mnist",
            "--limit",
            "50",
            "--components",
            "8",
            "--model",
            model.to_str().unwrap(),
            "--out",
            bad.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success() && err.contains("256 pixels") && err.contains("1x28x28"),
            "{err}"
        );
    }
    // Reusing the saved model on matching data reproduces the fitted metrics.
    let again = tmp.path().join("again");
    let o = norbvae(&[
        "pca",
        "--data",
        &spec,
        "--components",
        "8",
        "--val-fraction",
        "0",
        "--model",
        out.join("pca.safetensors").to_str().unwrap(),
        "--out",
        again.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(metrics(&again)["metrics"]["8"]["test"], m["metrics"]["8"]["test"]);
}
