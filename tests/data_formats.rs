//! smallNORB / IDX files on disk: every kind of bad input fails with one line naming the file, and
//! the real Fashion-MNIST (when installed) loads with its published counts.
use norbvae::data::norb::{file_name, write_split, MatHeader, MatType, NorbFile, NorbPart};
use norbvae::data::{idx, load, DataOptions};
use std::path::{Path, PathBuf};

const N: usize = 12;
const SIDE: usize = 16;

/// A valid set (both halves) in `dir`; the training half gzipped if `gzip`.
fn write_valid(dir: &Path, gzip: bool) {
    let dat: Vec<u8> = (0..N * 2 * SIDE * SIDE).map(|i| (i % 256) as u8).collect();
    let cat: Vec<i32> = (0..N as i32).map(|i| i % 5).collect();
    let train_info: Vec<[i32; 4]> = (0..N as i32)
        .map(|i| [[4, 6, 7, 8, 9][i as usize % 5], 1, 2, 3])
        .collect();
    let test_info: Vec<[i32; 4]> = (0..N as i32)
        .map(|i| [[0, 1, 2, 3, 5][i as usize % 5], 8, 34, 5])
        .collect();
    write_split(dir, NorbPart::Training, &dat, SIDE, &cat, &train_info, gzip).unwrap();
    write_split(dir, NorbPart::Testing, &dat, SIDE, &cat, &test_info, false).unwrap();
}

fn norb_opts(dir: &Path) -> DataOptions {
    DataOptions {
        spec: format!("norb:{}", dir.display()),
        ..DataOptions::default()
    }
}

fn train_path(dir: &Path, file: NorbFile, gzip: bool) -> PathBuf {
    dir.join(file_name(NorbPart::Training, file, gzip))
}

/// Load must fail with a one-line message naming `file` and containing `problem`.
fn assert_fails(dir: &Path, file: &Path, problem: &str) {
    let err = match load(&norb_opts(dir)) {
        Ok(_) => panic!("loading {} should fail with '{problem}'", file.display()),
        Err(e) => format!("{e:#}"),
    };
    println!("{err}");
    assert!(!err.contains('\n'), "not one line: {err}");
    let name = file.file_name().unwrap().to_string_lossy();
    assert!(err.contains(&*name), "error does not name {name}: {err}");
    assert!(err.contains(problem), "error does not say '{problem}': {err}");
}

#[test]
fn valid_set_loads_from_plain_and_gzip() {
    for gzip in [false, true] {
        let d = tempfile::tempdir().unwrap();
        write_valid(d.path(), gzip);
        let s = load(&norb_opts(d.path())).unwrap();
        assert_eq!((s.train.n + s.val.n, s.test.n), (N, N));
        let f = s.test.factors.as_ref().unwrap()[0];
        assert_eq!((f.instance, f.elevation, f.azimuth, f.lighting), (0, 8, 34, 5));
    }
}

#[test]
fn truncated_plain_and_gzip_files() {
    for gzip in [false, true] {
        let d = tempfile::tempdir().unwrap();
        write_valid(d.path(), gzip);
        let p = train_path(d.path(), NorbFile::Dat, gzip);
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() * 2 / 3]).unwrap();
        assert_fails(d.path(), &p, if gzip { "gzip" } else { "truncated" });
        // Cut inside the header too.
        std::fs::write(&p, &bytes[..10]).unwrap();
        assert_fails(d.path(), &p, if gzip { "gzip" } else { "truncated" });
    }
}

#[test]
fn wrong_magic() {
    let d = tempfile::tempdir().unwrap();
    write_valid(d.path(), false);
    let p = train_path(d.path(), NorbFile::Cat, false);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[0] = 0x99;
    std::fs::write(&p, &bytes).unwrap();
    assert_fails(d.path(), &p, "wrong magic");
}

#[test]
fn mismatched_dimensions() {
    let d = tempfile::tempdir().unwrap();
    write_valid(d.path(), false);
    // dat with three views per sample.
    let p = train_path(d.path(), NorbFile::Dat, false);
    let h = MatHeader {
        dtype: MatType::U8,
        dims: vec![N, 3, SIDE, SIDE],
    };
    let mut bytes = h.to_bytes();
    bytes.resize(bytes.len() + N * 3 * SIDE * SIDE, 0);
    std::fs::write(&p, &bytes).unwrap();
    assert_fails(d.path(), &p, "dimension mismatch");
    write_valid(d.path(), false);
    // info with 3 fields per record.
    let p = train_path(d.path(), NorbFile::Info, false);
    let h = MatHeader {
        dtype: MatType::I32,
        dims: vec![N, 3],
    };
    let mut bytes = h.to_bytes();
    bytes.resize(bytes.len() + N * 3 * 4, 0);
    std::fs::write(&p, &bytes).unwrap();
    assert_fails(d.path(), &p, "dimension mismatch");
    // A header whose size does not match the file length.
    write_valid(d.path(), false);
    let p = train_path(d.path(), NorbFile::Cat, false);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes.extend_from_slice(&[0; 8]);
    std::fs::write(&p, &bytes).unwrap();
    assert_fails(d.path(), &p, "trailing");
}

#[test]
fn huge_header_claim_is_rejected_before_allocating() {
    let d = tempfile::tempdir().unwrap();
    write_valid(d.path(), true);
    for gzip in [false, true] {
        let p = train_path(d.path(), NorbFile::Dat, gzip);
        let h = MatHeader {
            dtype: MatType::U8,
            dims: vec![i32::MAX as usize, 2, 30000, 30000],
        };
        write_raw(&p, &h.to_bytes(), gzip);
        if gzip {
            // Only one variant may exist at a time.
            let _ = std::fs::remove_file(train_path(d.path(), NorbFile::Dat, false));
        }
        assert_fails(
            d.path(),
            &p,
            if gzip {
                "more than this gzip file can hold"
            } else {
                "truncated"
            },
        );
    }
}

fn write_raw(p: &Path, bytes: &[u8], gzip: bool) {
    use std::io::Write;
    if gzip {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        std::fs::write(p, e.finish().unwrap()).unwrap();
    } else {
        std::fs::write(p, bytes).unwrap();
    }
}

#[test]
fn corrupt_gzip_stream() {
    let d = tempfile::tempdir().unwrap();
    write_valid(d.path(), true);
    let p = train_path(d.path(), NorbFile::Dat, true);
    let mut bytes = std::fs::read(&p).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0x5A;
    }
    std::fs::write(&p, &bytes).unwrap();
    assert_fails(d.path(), &p, "gzip");
    // Not gzip at all despite the name.
    std::fs::write(&p, b"plain text, not gzip").unwrap();
    assert_fails(d.path(), &p, "gzip");
}

#[test]
fn counts_disagree() {
    let d = tempfile::tempdir().unwrap();
    write_valid(d.path(), false);
    let p = train_path(d.path(), NorbFile::Cat, false);
    let h = MatHeader {
        dtype: MatType::I32,
        dims: vec![N - 1],
    };
    let mut bytes = h.to_bytes();
    bytes.resize(bytes.len() + (N - 1) * 4, 0);
    std::fs::write(&p, &bytes).unwrap();
    assert_fails(d.path(), &p, "count disagrees");
}

#[test]
fn out_of_range_labels() {
    let d = tempfile::tempdir().unwrap();
    write_valid(d.path(), false);
    let p = train_path(d.path(), NorbFile::Cat, false);
    let mut bytes = std::fs::read(&p).unwrap();
    let off = bytes.len() - 4;
    bytes[off..].copy_from_slice(&7i32.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    assert_fails(d.path(), &p, "category is 7");
}

#[test]
fn missing_file_and_directory() {
    let d = tempfile::tempdir().unwrap();
    write_valid(d.path(), false);
    let p = train_path(d.path(), NorbFile::Info, false);
    std::fs::remove_file(&p).unwrap();
    assert_fails(d.path(), &p, "not found");
    let e = format!("{:#}", load(&norb_opts(&d.path().join("nope"))).unwrap_err());
    assert!(e.contains("nope") && e.contains("not found"), "{e}");
}

#[test]
fn unknown_spec() {
    let o = DataOptions {
        spec: "cifar:/tmp".into(),
        ..DataOptions::default()
    };
    let e = format!("{:#}", load(&o).unwrap_err());
    assert!(e.contains("cifar:/tmp") && e.contains("not recognised"), "{e}");
}

#[test]
fn idx_directory_loads_and_reports_bad_files() {
    let d = tempfile::tempdir().unwrap();
    let imgs: Vec<u8> = (0..10 * 6 * 6).map(|i| (i % 256) as u8).collect();
    idx::write_idx(&d.path().join("train-images-idx3-ubyte.gz"), &[10, 6, 6], &imgs).unwrap();
    idx::write_idx(
        &d.path().join("train-labels-idx1-ubyte"),
        &[10],
        &[0, 1, 2, 0, 1, 2, 0, 1, 2, 0],
    )
    .unwrap();
    idx::write_idx(&d.path().join("t10k-images-idx3-ubyte"), &[4, 6, 6], &imgs[..144]).unwrap();
    idx::write_idx(&d.path().join("t10k-labels-idx1-ubyte"), &[4], &[2, 2, 1, 0]).unwrap();
    let mut o = DataOptions {
        spec: format!("idx:{}", d.path().display()),
        val_fraction: 0.2,
        image_size: Some(3),
        ..DataOptions::default()
    };
    let s = load(&o).unwrap();
    assert_eq!((s.train.n, s.val.n, s.test.n, s.num_classes), (8, 2, 4, 3));
    assert_eq!((s.test.height, s.test.width), (3, 3));
    // Mean of the first 2x2 block of test image 0: pixels 0, 1, 6, 7.
    assert!((s.test.images[0] - 3.5 / 255.0).abs() < 1e-6);
    idx::write_idx(&d.path().join("t10k-labels-idx1-ubyte"), &[3], &[2, 2, 1]).unwrap();
    o.image_size = None;
    let e = format!("{:#}", load(&o).unwrap_err());
    assert!(
        e.contains("t10k-labels-idx1-ubyte") && e.contains("count disagrees"),
        "{e}"
    );
}

#[test]
fn fashion_mnist_counts_when_installed() {
    let dir = Path::new(norbvae::data::spec::FASHION_MNIST_DIR);
    if !dir.is_dir() {
        println!(
            "note: {} not installed (apt install dataset-fashion-mnist); skipping",
            dir.display()
        );
        return;
    }
    let o = DataOptions {
        spec: "fashion-mnist".into(),
        val_fraction: 0.0,
        ..DataOptions::default()
    };
    let s = load(&o).unwrap();
    assert_eq!((s.train.n, s.val.n, s.test.n), (60_000, 0, 10_000));
    assert_eq!((s.train.channels, s.train.height, s.train.width), (1, 28, 28));
    // Fashion-MNIST is balanced: 6,000 and 1,000 per class.
    assert!(s
        .label_counts(norbvae::data::Split::Train)
        .iter()
        .all(|&c| c == 6000));
    assert!(s
        .label_counts(norbvae::data::Split::Test)
        .iter()
        .all(|&c| c == 1000));
    let mean = s.test.images.iter().map(|&v| v as f64).sum::<f64>() / s.test.images.len() as f64;
    assert!(mean > 0.2 && mean < 0.4, "pixel mean {mean}");
}
