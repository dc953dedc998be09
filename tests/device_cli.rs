//! `--device`: bad values and `cuda` on a build without the `cuda` feature are refused with exit
//! code 1 and a message naming the option, before anything is written; `--device cpu` trains
//! exactly as the default does on a CPU build.
mod common;

use common::{norbvae, outcome, setup, text, tiny_run};

#[test]
fn device_refused_values_exit_1_naming_the_option() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (spec, _) = setup(dir);
    std::fs::write(dir.join("tiny.toml"), tiny_run()).unwrap();
    let train = |device: &str, out: &str| {
        norbvae(
            &[
                "train",
                "--config",
                "tiny.toml",
                "--data",
                &spec,
                "--out",
                out,
                "--device",
                device,
            ],
            dir,
        )
    };
    let o = train("gpu", "bad");
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(
        t.contains("--device \"gpu\"") && t.contains("auto, cpu, cuda or cuda:N"),
        "{t}"
    );
    assert!(!dir.join("bad").exists(), "{t}");
    if !cfg!(feature = "cuda") {
        for device in ["cuda", "cuda:1"] {
            let o = train(device, "gpu_run");
            let t = text(&o);
            assert_eq!(o.status.code(), Some(1), "{t}");
            assert!(
                t.contains("without CUDA support") && t.contains("--features cuda"),
                "{t}"
            );
            assert!(!t.contains("panicked"), "{t}");
            assert!(!dir.join("gpu_run").exists(), "{t}");
        }
    }
}

#[test]
fn device_cpu_trains_as_the_default_on_a_cpu_build() {
    if cfg!(feature = "cuda") {
        return; // the default may be a GPU there
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (spec, _) = setup(dir);
    std::fs::write(dir.join("tiny.toml"), tiny_run()).unwrap();
    let base = ["train", "--config", "tiny.toml", "--data", &spec, "--out"];
    let o = norbvae(&[&base[..], &["default"]].concat(), dir);
    assert!(o.status.success(), "{}", text(&o));
    let o = norbvae(&[&base[..], &["cpu", "--device", "cpu"]].concat(), dir);
    assert!(o.status.success(), "{}", text(&o));
    assert!(outcome(&dir.join("cpu")) == outcome(&dir.join("default")));
}
