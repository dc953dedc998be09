//! The run format against run directories written before it existed (tests/fixtures/run-v0,
//! written by norbvae at 28f7bc3: a PCA run and an evaluated VAE run on a tiny synthetic NORB,
//! without their tensors), and against files from a newer norbvae.
use super::*;
use std::path::PathBuf;

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/run-v0")
        .join(rel)
}

/// `T` read from `rel`, written back, equals the file's JSON (plus `format_version`): the types
/// hold every field the old writers wrote.
fn round_trip<T: serde::de::DeserializeOwned + Serialize + Versioned>(rel: &str) -> T {
    let path = fixture(rel);
    let value: T = read_json(&path).unwrap();
    assert_eq!(value.format_version(), 0, "{rel} has no version: it is version 0");
    let mut original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut written = serde_json::to_value(&value).unwrap();
    written.as_object_mut().unwrap().remove("format_version");
    original.as_object_mut().unwrap().remove("format_version");
    assert_eq!(written, original, "{rel}: fields lost or changed");
    value
}

#[test]
fn version_0_run_directories_load_completely() {
    let vae = match round_trip::<RunMetrics>("vae/metrics.json") {
        RunMetrics::Vae(m) => m,
        other => panic!("not a VAE run: {other:?}"),
    };
    let test = vae.split("test").unwrap();
    assert!(test.eval.iwae.is_some() && test.eval.active_units.is_some());
    assert!(!test.eval.samples.as_ref().unwrap().is_empty());
    assert!(vae.eval.as_ref().unwrap().checkpoint.is_some());
    assert_eq!(vae.epochs_run, 2);

    let pca = match round_trip::<RunMetrics>("pca/metrics.json") {
        RunMetrics::Pca(m) => m,
        other => panic!("not a PCA run: {other:?}"),
    };
    assert_eq!(pca.ks(), pca.components);
    assert!(pca.at(pca.components[0]).unwrap().test.is_some());

    let meta: ModelMeta = round_trip("vae/model.json");
    assert!(meta.num_parameters > 0);
    let state: TrainState = round_trip("vae/checkpoints/last.json");
    assert_eq!(state.epochs_done, 2);
    assert_eq!(state.history.len(), 2);
    let best: TrainState = round_trip("vae/checkpoints/best.json");
    assert_eq!(best.early_stopping.best_epoch, Some(best.epochs_done));
}

#[test]
fn newer_versions_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    for rel in ["vae/metrics.json", "vae/model.json", "vae/checkpoints/last.json"] {
        let mut v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture(rel)).unwrap()).unwrap();
        v["format_version"] = serde_json::json!(FORMAT_VERSION + 1);
        let path = tmp.path().join(rel.replace('/', "_"));
        std::fs::write(&path, v.to_string()).unwrap();
        let err = match rel {
            "vae/metrics.json" => RunMetrics::read(&path).map(|_| ()).unwrap_err(),
            "vae/model.json" => read_json::<ModelMeta>(&path).map(|_| ()).unwrap_err(),
            _ => read_json::<TrainState>(&path).map(|_| ()).unwrap_err(),
        }
        .to_string();
        assert!(
            err.contains(&format!("format_version {}", FORMAT_VERSION + 1))
                && err.contains(&path.display().to_string()),
            "{err}"
        );
    }
}

#[test]
fn current_files_carry_the_version_and_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("model.json");
    std::fs::write(&path, to_json(&ModelMeta::new((1, 8, 8), 42)).unwrap()).unwrap();
    let meta: ModelMeta = read_json(&path).unwrap();
    assert_eq!((meta.format_version, meta.num_parameters), (FORMAT_VERSION, 42));
    // A metrics.json of another kind of run is named as such.
    std::fs::write(&path, "{\"kind\": \"gan\"}").unwrap();
    let err = RunMetrics::read(&path).unwrap_err().to_string();
    assert!(err.contains("\"kind\" must be"), "{err}");
}
