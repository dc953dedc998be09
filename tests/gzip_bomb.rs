//! Compressed input cannot demand more memory than it holds: a `.gz` whose header claims ~2^31 rows
//! (passing the 1032:1 deflate-ratio check, as the 34 MB `info.mat.gz` did) is rejected
//! as truncated, and the process's peak RSS grows by about what the stream holds, not by the
//! claim. One test function, so no other test in this binary moves the peak meanwhile.
use norbvae::data::norb::{file_name, read_matrix, MatHeader, MatType, NorbFile, NorbPart};
use norbvae::data::source::Source;
use norbvae::data::{load, DataOptions};
use std::io::Write;
use std::path::Path;

const MIB: u64 = 1 << 20;

/// A gzip file of `header` then `zeros` zero bytes, in stored (uncompressed) blocks: the file is
/// as large as its content, so the ratio check lets a header claim ~1000x more.
fn stored_gz(path: &Path, header: &[u8], zeros: u64) {
    let f = std::fs::File::create(path).unwrap();
    let mut gz = flate2::write::GzEncoder::new(std::io::BufWriter::new(f), flate2::Compression::none());
    gz.write_all(header).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = zeros;
    while left > 0 {
        let k = left.min(chunk.len() as u64) as usize;
        gz.write_all(&chunk[..k]).unwrap();
        left -= k as u64;
    }
    gz.finish().unwrap().flush().unwrap();
}

fn idx_header(dims: &[u32]) -> Vec<u8> {
    let mut h = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        h.extend_from_slice(&d.to_be_bytes());
    }
    h
}

/// Peak resident set size (VmHWM) of this process in bytes.
fn peak_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Reset the peak to the current RSS where the kernel allows it (Linux >= 4.0).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Run `f`, return its result and how far it raised the peak RSS.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, u64) {
    reset_peak();
    let before = peak_rss();
    let r = f();
    (r, peak_rss().saturating_sub(before))
}

#[test]
fn gzip_bombs_are_rejected_with_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    // smallNORB dimensions are int32: 2^31 - 1 is the largest claim the format can make.
    let rows: u64 = i32::MAX as u64;

    // 1. NORB info.mat.gz: int32 [2^31 - 1, 4] claims 32 GiB; the file holds 34 MiB.
    let info = tmp
        .path()
        .join(file_name(NorbPart::Training, NorbFile::Info, true));
    let h = MatHeader {
        dtype: MatType::I32,
        dims: vec![rows as usize, 4],
    };
    let held = 34 * MIB;
    stored_gz(&info, &h.to_bytes(), held);
    let (r, growth) = peak_growth(|| {
        let mut src = Source::open(&info).unwrap();
        read_matrix(&mut src).map(|_| ())
    });
    let e = r.unwrap_err().to_string();
    println!("info.mat.gz: {e}; peak RSS +{} MiB", growth / MIB);
    assert!(e.contains("info.mat.gz") && e.contains("truncated"), "{e}");
    assert!(e.contains(&format!("of the {} bytes", rows * 16)), "{e}");
    assert!(
        growth < 4 * held,
        "peak RSS grew by {} MiB for a {} MiB stream",
        growth / MIB,
        held / MIB
    );

    // 2. Through `load`: a NORB half whose dat and cat agree on 2^31 records (side 1) but hold
    //    only 4 MiB and 8 MiB.
    let norb = tmp.path().join("norb");
    std::fs::create_dir(&norb).unwrap();
    let part = NorbPart::Training;
    let dat = MatHeader {
        dtype: MatType::U8,
        dims: vec![rows as usize, 2, 1, 1],
    };
    stored_gz(
        &norb.join(file_name(part, NorbFile::Dat, true)),
        &dat.to_bytes(),
        4 * MIB + 200_000,
    );
    let cat = MatHeader {
        dtype: MatType::I32,
        dims: vec![rows as usize],
    };
    let cat_path = norb.join(file_name(part, NorbFile::Cat, true));
    stored_gz(&cat_path, &cat.to_bytes(), 8 * MIB + 400_000);
    stored_gz(
        &norb.join(file_name(part, NorbFile::Info, true)),
        &h.to_bytes(),
        0,
    );
    let opts = DataOptions {
        spec: format!("norb:{}", norb.display()),
        ..DataOptions::default()
    };
    let (r, growth) = peak_growth(|| load(&opts).map(|_| ()));
    let e = r.unwrap_err().to_string();
    println!("norb load: {e}; peak RSS +{} MiB", growth / MIB);
    assert!(e.contains("cat.mat.gz") && e.contains("truncated"), "{e}");
    assert!(growth < 64 * MIB, "peak RSS grew by {} MiB", growth / MIB);

    // 3. Through `load`: IDX train images [2^31, 4, 4] claim 32 GiB; the file holds 34 MB.
    let idx = tmp.path().join("idx");
    std::fs::create_dir(&idx).unwrap();
    let images = idx.join("train-images-idx3-ubyte.gz");
    stored_gz(&images, &idx_header(&[1 << 31, 4, 4]), held);
    for name in [
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(idx.join(name), idx_header(&[0])).unwrap();
    }
    let opts = DataOptions {
        spec: format!("idx:{}", idx.display()),
        ..DataOptions::default()
    };
    let (r, growth) = peak_growth(|| load(&opts).map(|_| ()));
    let e = r.unwrap_err().to_string();
    println!("idx load: {e}; peak RSS +{} MiB", growth / MIB);
    assert!(
        e.contains("train-images-idx3-ubyte.gz") && e.contains("truncated"),
        "{e}"
    );
    assert!(
        growth < 4 * held,
        "peak RSS grew by {} MiB for a {} MiB stream",
        growth / MIB,
        held / MIB
    );
}
