//! Fuzz the run-directory files' readers: a checkpoint's weights (safetensors, read by
//! `ParamStore::load`) and a checkpoint unit's manifest (`util::atomic_dir::load_unit`), truncated,
//! bit-flipped, garbage or with bytes appended. No input may panic; each gives a clean error
//! naming the file or loads a model of the right shapes.
//! The JSON and TOML files of a run directory (the v0 fixture's metrics.json, model.json,
//! metrics.jsonl, checkpoint state and config.toml), damaged the same ways, go through their
//! typed readers and the report's run loader: an error naming the file, or a load, never a panic.
//! Default: 256 cases for the weights, 64 for the units and the run files; PROPTEST_CASES=N runs N
//! and N/4.
use norbvae::model::{InputShape, ParamStore, Vae};
use norbvae::train::TrainConfig;
use norbvae::util::atomic_dir::{load_unit, UnitWriter};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// A tiny conv VAE's parameter store and the bytes of its saved weights.
fn tiny_model() -> (ParamStore, Vec<u8>) {
    let cfg = TrainConfig::from_toml_str(
        "[model]\nlatent_dim = 2\n[model.conv]\ndownsizings = 2\nfirst_filters = 2\nmax_filters = 4\nintermediate = 4\n",
        &[],
    )
    .unwrap();
    let dev = candle_core::Device::Cpu;
    let store = ParamStore::new(3, &dev);
    let shape = InputShape::Image {
        channels: 1,
        height: 8,
        width: 8,
    };
    Vae::new(&cfg.model, &cfg.likelihood, shape, store.var_builder()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.safetensors");
    store.save(&p).unwrap();
    let bytes = std::fs::read(&p).unwrap();
    (store, bytes)
}

#[derive(Debug, Clone)]
enum Damage {
    Truncate(usize),
    Flip(usize, u8),
    /// A little-endian u64 written over 8 bytes (the header length, an offset).
    Huge(usize, u64),
    Append(Vec<u8>),
    Garbage(Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        any::<usize>().prop_map(Damage::Truncate),
        (any::<usize>(), 1u8..=255).prop_map(|(i, b)| Damage::Flip(i, b)),
        (any::<usize>(), any::<u64>()).prop_map(|(i, v)| Damage::Huge(i, v)),
        prop::collection::vec(any::<u8>(), 1..32).prop_map(Damage::Append),
        prop::collection::vec(any::<u8>(), 0..256).prop_map(Damage::Garbage),
    ]
}

fn apply(mut b: Vec<u8>, d: &[Damage]) -> Vec<u8> {
    for d in d {
        match d {
            Damage::Truncate(i) if !b.is_empty() => b.truncate(i % b.len()),
            Damage::Flip(i, x) if !b.is_empty() => {
                let i = i % b.len();
                b[i] ^= x;
            }
            Damage::Huge(i, v) if b.len() >= 8 => {
                // Mostly the header's start, where the lengths and offsets are.
                let i = i % (b.len() - 7).min(256);
                b[i..i + 8].copy_from_slice(&v.to_le_bytes());
            }
            Damage::Append(x) => b.extend_from_slice(x),
            Damage::Garbage(x) => b = x.clone(),
            _ => {}
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn damaged_weights_give_an_error_not_a_panic(d in prop::collection::vec(damage(), 1..4)) {
        thread_local! {
            static MODEL: (ParamStore, Vec<u8>) = tiny_model();
            static DIR: tempfile::TempDir = tempfile::tempdir().unwrap();
        }
        MODEL.with(|(store, good)| DIR.with(|dir| {
            let bytes = apply(good.clone(), &d);
            let p = dir.path().join("last.safetensors");
            std::fs::write(&p, &bytes).unwrap();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| store.load(&p)));
            match r {
                Err(_) => panic!("ParamStore::load panicked on {d:?}"),
                Ok(Err(e)) => {
                    let msg = format!("{e:#}");
                    assert!(msg.contains("last.safetensors"), "error does not name the file: {msg}");
                }
                // Damage that leaves a valid file with the same names and shapes (a flipped
                // weight byte) loads: that is what the unit manifest's hash is for.
                Ok(Ok(())) => {}
            }
            // The store is reloaded from the good bytes for the next case.
            std::fs::write(&p, good).unwrap();
            store.load(&p).unwrap();
        }));
    }

}

proptest! {
    // Each case writes a unit with its fsyncs (~50 ms on a busy disk): fewer cases.
    #![proptest_config(ProptestConfig { cases: cases() / 4, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn damaged_checkpoint_units_give_an_error_not_a_panic(
        which in 0usize..3,
        d in prop::collection::vec(damage(), 1..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let unit = dir.path().join("last");
        let mut w = UnitWriter::begin(&unit, 3).unwrap();
        w.write("weights.safetensors", &[1u8; 64]).unwrap();
        w.write("state.json", b"{\"epoch\": 3}").unwrap();
        let original = w.commit().unwrap();
        let name = ["manifest.json", "weights.safetensors", "state.json"][which];
        let p = unit.join(name);
        let good = std::fs::read(&p).unwrap();
        let bytes = apply(good.clone(), &d);
        std::fs::write(&p, &bytes).unwrap();
        match std::panic::catch_unwind(|| load_unit(&unit)) {
            Err(_) => panic!("load_unit panicked on {d:?}"),
            // A data file loads only unchanged (its hash is checked). A manifest may still parse
            // after damage to its whitespace or epoch digits; it then lists the same files.
            Ok(Ok(u)) if name == "manifest.json" => prop_assert_eq!(u.manifest.files, original.files),
            Ok(Ok(u)) => prop_assert_eq!(bytes, good, "damaged {} loaded as epoch {}", name, u.epoch()),
            Ok(Err(e)) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(&*unit.to_string_lossy()), "{}", msg);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases() / 4, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn damaged_run_files_give_an_error_not_a_panic(
        which in 0usize..6,
        d in prop::collection::vec(damage(), 1..4),
    ) {
        use norbvae::format::{read_json, ModelMeta, RunMetrics, TrainState};
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/run-v0/vae");
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("vae");
        copy_dir(&fixture, &run);
        let name = [
            "metrics.json",
            "model.json",
            "metrics.jsonl",
            "config.toml",
            "checkpoints/last.json",
            "checkpoints/best.json",
        ][which];
        let p = run.join(name);
        let good = std::fs::read(&p).unwrap();
        std::fs::write(&p, apply(good, &d)).unwrap();
        let outcome = std::panic::catch_unwind(|| -> Vec<String> {
            let mut errors = Vec::new();
            let mut note = |r: Result<(), String>| {
                if let Err(e) = r {
                    errors.push(e);
                }
            };
            note(RunMetrics::read(&run.join("metrics.json")).map(|_| ()).map_err(|e| e.to_string()));
            note(read_json::<ModelMeta>(&run.join("model.json")).map(|_| ()).map_err(|e| e.to_string()));
            for ck in ["checkpoints/last.json", "checkpoints/best.json"] {
                note(read_json::<TrainState>(&run.join(ck)).map(|_| ()).map_err(|e| e.to_string()));
            }
            note(TrainConfig::load(&run.join("config.toml"), &[]).map(|_| ()).map_err(|e| format!("{e:#}")));
            note(norbvae::report::runs::RunInfo::load(&run).map(|_| ()).map_err(|e| format!("{e:#}")));
            errors
        });
        let errors = match outcome {
            Ok(errors) => errors,
            Err(_) => panic!("a run-file reader panicked on damaged {name}: {d:?}"),
        };
        let file = name.rsplit('/').next().unwrap();
        for e in &errors {
            prop_assert!(e.contains(file) || e.contains("metrics.json"), "error does not name the file: {e}");
        }
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
