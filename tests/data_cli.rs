//! The `norbvae data` commands run as a user would: the built binary on a small set written by the
//! smallNORB writer, and on Fashion-MNIST when installed.
use norbvae::data::norb::{write_split, NorbPart};
use std::path::Path;
use std::process::Command;

fn norbvae(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_norbvae"))
        .args(args)
        .output()
        .expect("running norbvae")
}

/// 20 training and 10 test pairs of 32x32, training half gzipped.
fn write_small(dir: &Path) {
    let side = 32;
    for (part, n, inst) in [(NorbPart::Training, 20, 4), (NorbPart::Testing, 10, 0)] {
        let mut dat = Vec::new();
        for r in 0..n {
            for cam in 0..2 {
                for y in 0..side {
                    for x in 0..side {
                        // A bright disc whose position depends on the record and camera.
                        let (cx, cy) = (8 + r % 16 + cam * 3, 16);
                        let d2 = (x as i32 - cx).pow(2) + (y as i32 - cy).pow(2);
                        dat.push(if d2 < 36 { 230 } else { 40 });
                    }
                }
            }
        }
        let cat: Vec<i32> = (0..n).map(|i| i % 5).collect();
        let info: Vec<[i32; 4]> = (0..n).map(|i| [inst, i % 9, 2 * (i % 18), i % 6]).collect();
        write_split(dir, part, &dat, side, &cat, &info, part == NorbPart::Training).unwrap();
    }
}

#[test]
fn info_json_on_a_small_norb_set() {
    let d = tempfile::tempdir().unwrap();
    write_small(d.path());
    let spec = format!("norb:{}", d.path().display());
    let out = norbvae(&[
        "data",
        "info",
        "--data",
        &spec,
        "--json",
        "--camera",
        "both-channels",
        "--image-size",
        "16",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["train"]["count"], 18);
    assert_eq!(v["val"]["count"], 2);
    assert_eq!(v["test"]["count"], 10);
    assert_eq!(v["test"]["image_shape"], serde_json::json!([2, 16, 16]));
    assert_eq!(v["test"]["label_counts"], serde_json::json!([2, 2, 2, 2, 2]));
    // Plain-text form names every split.
    let out = norbvae(&["data", "info", "--data", &spec, "--val-fraction", "0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("train:     20 images of 1x32x32"),
        "{text}"
    );
}

#[test]
fn preview_writes_a_png_grid() {
    let d = tempfile::tempdir().unwrap();
    write_small(d.path());
    let spec = format!("norb:{}", d.path().display());
    let png = d.path().join("out/grid.png");
    let png_s = png.to_string_lossy();
    let out = norbvae(&[
        "data", "preview", "--data", &spec, "--split", "test", "--out", &png_s, "--n", "9",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let img = image::open(&png).unwrap().to_rgb8();
    // 9 images of 32x32, enlarged 2x to 64x64, in 3 columns with 8-pixel gaps.
    assert_eq!(img.dimensions(), (3 * 64 + 4 * 8, 3 * 64 + 4 * 8));
    // Both the disc (230) and the background (40) appear.
    let vals: std::collections::BTreeSet<u8> = img.pixels().map(|p| p.0[0]).collect();
    assert!(vals.contains(&230) && vals.contains(&40), "{vals:?}");
    // The validation split is empty with --val-fraction 0: a clear error, no file.
    let empty = d.path().join("empty.png");
    let out = norbvae(&[
        "data",
        "preview",
        "--data",
        &spec,
        "--split",
        "val",
        "--val-fraction",
        "0",
        "--out",
        &empty.to_string_lossy(),
    ]);
    assert!(!out.status.success() && !empty.exists());
}

#[test]
fn bad_spec_and_bad_file_exit_nonzero_with_one_line() {
    let out = norbvae(&["data", "info", "--data", "nonsense"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nonsense") && err.trim().lines().count() == 1,
        "{err}"
    );

    let d = tempfile::tempdir().unwrap();
    write_small(d.path());
    let dat = d.path().join("smallnorb-5x01235x9x18x6x2x96x96-testing-dat.mat");
    std::fs::write(&dat, b"not a matrix").unwrap();
    let out = norbvae(&["data", "info", "--data", &format!("norb:{}", d.path().display())]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.contains("testing-dat.mat") && err.trim().lines().count() == 1,
        "{err}"
    );
}

#[test]
fn fashion_mnist_info_and_preview_when_installed() {
    if !Path::new(norbvae::data::spec::FASHION_MNIST_DIR).is_dir() {
        println!("note: Fashion-MNIST not installed; skipping");
        return;
    }
    let out = norbvae(&["data", "info", "--data", "fashion-mnist", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["train"]["count"], 54_000);
    assert_eq!(v["val"]["count"], 6_000);
    assert_eq!(v["test"]["count"], 10_000);
    assert_eq!(v["test"]["image_shape"], serde_json::json!([1, 28, 28]));
    let d = tempfile::tempdir().unwrap();
    let png = d.path().join("fm.png");
    let out = norbvae(&[
        "data",
        "preview",
        "--data",
        "fashion-mnist",
        "--split",
        "test",
        "--n",
        "16",
        "--out",
        &png.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        image::open(&png).unwrap().to_rgb8().dimensions(),
        // 28x28 enlarged 3x to 84x84, 4 per row, 8-pixel gaps.
        (4 * 84 + 5 * 8, 4 * 84 + 5 * 8)
    );
    let out = norbvae(&["data", "info", "--data", "fashion-mnist", "--camera", "right"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("camera"));
}

#[test]
fn info_and_preview_on_the_synthetic_set() {
    let d = tempfile::tempdir().unwrap();
    norbvae::data::synth::write_small(d.path(), 32, 3).unwrap();
    let spec = format!("norb:{}", d.path().display());
    let out = norbvae(&["data", "info", "--data", &spec, "--json", "--val-fraction", "0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let raw = norbvae::data::norb::read_split(d.path(), NorbPart::Training).unwrap();
    assert_eq!(v["train"]["count"], raw.n);
    assert_eq!(v["train"]["image_shape"], serde_json::json!([1, 32, 32]));
    let png = d.path().join("synth.png");
    let out = norbvae(&[
        "data",
        "preview",
        "--data",
        &spec,
        "--camera",
        "both-channels",
        "--out",
        &png.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(image::open(&png).is_ok());
}
