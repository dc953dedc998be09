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
        let newer = if rel == "vae/model.json" {
            MODEL_FORMAT_VERSION + 1
        } else {
            FORMAT_VERSION + 1
        };
        v["format_version"] = serde_json::json!(newer);
        let path = tmp.path().join(rel.replace('/', "_"));
        std::fs::write(&path, v.to_string()).unwrap();
        let err = match rel {
            "vae/metrics.json" => RunMetrics::read(&path).map(|_| ()).unwrap_err(),
            "vae/model.json" => read_json::<ModelMeta>(&path).map(|_| ()).unwrap_err(),
            _ => read_json::<TrainState>(&path).map(|_| ()).unwrap_err(),
        }
        .to_string();
        assert!(
            err.contains(&format!("format_version {newer}")) && err.contains(&path.display().to_string()),
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
    assert_eq!(
        (meta.format_version, meta.num_parameters),
        (MODEL_FORMAT_VERSION, 42)
    );
    assert!(
        meta.architecture.is_none(),
        "version 0 and 1 files have no architecture"
    );
    // A metrics.json of another kind of run is named as such.
    std::fs::write(&path, "{\"kind\": \"gan\"}").unwrap();
    let err = RunMetrics::read(&path).unwrap_err().to_string();
    assert!(err.contains("\"kind\" must be"), "{err}");
}

#[test]
fn tensor_files_carry_their_format_and_version_and_old_ones_still_read() {
    use safetensors::tensor::TensorView;
    let data = [0u8; 8];
    let bytes = |meta: Option<std::collections::HashMap<String, String>>| {
        let view = TensorView::new(safetensors::Dtype::F32, vec![2], &data).unwrap();
        safetensors::serialize(vec![("w", view)], meta).unwrap()
    };
    let path = Path::new("run/checkpoints/best/model.safetensors");
    let bytes = |meta| tensors::canonical(bytes(meta));
    let current = bytes(Some(tensors::header(tensors::WEIGHTS_FORMAT)));
    assert_eq!(
        tensors::check_header(&current, tensors::WEIGHTS_FORMAT, path).unwrap(),
        tensors::TENSORS_FORMAT_VERSION
    );
    // Written before the header carried a version: version 0.
    assert_eq!(
        tensors::check_header(&bytes(None), tensors::WEIGHTS_FORMAT, path).unwrap(),
        0
    );
    // The optimizer's file where the model's tensors are expected, and a newer version.
    let err = tensors::check_header(&current, tensors::OPTIMIZER_FORMAT, path)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("norbvae-weights") && err.contains(&path.display().to_string()),
        "{err}"
    );
    let mut newer = tensors::header(tensors::WEIGHTS_FORMAT);
    newer.insert(
        "format_version".into(),
        (tensors::TENSORS_FORMAT_VERSION + 1).to_string(),
    );
    let err = tensors::check_header(&bytes(Some(newer)), tensors::WEIGHTS_FORMAT, path)
        .unwrap_err()
        .to_string();
    assert!(err.contains("format_version 2") && err.contains("newer"), "{err}");
    // The same tensors give the same bytes (safetensors writes its metadata in HashMap order).
    for _ in 0..8 {
        assert_eq!(bytes(Some(tensors::header(tensors::WEIGHTS_FORMAT))), current);
    }
    let sorted = String::from_utf8_lossy(&current[8..80]).to_string();
    assert!(
        sorted.contains("{\"format\":\"norbvae-weights\",\"format_version\":\"1\"}"),
        "{sorted}"
    );
}
