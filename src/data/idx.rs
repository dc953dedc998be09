//! IDX files (MNIST, Fashion-MNIST), plain or gzipped: two zero bytes, a type code, the number of
//! dimensions, then that many big-endian u32 dimensions and the data. Only unsigned bytes (type 0x08)
//! are needed for images and labels.
use super::error::{DataError, DataResult};
use super::source::{check_data_file, Source};
use crate::util::fs::write_atomic_with;
use std::io::Write;
use std::path::{Path, PathBuf};

const TYPE_U8: u8 = 0x08;

/// An unsigned-byte IDX array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxArray {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Read a header and check the data it announces against the file's size before allocating.
pub fn read_idx_header(src: &mut Source) -> DataResult<Vec<usize>> {
    let path = src.path().to_path_buf();
    let mut magic = [0u8; 4];
    src.read_exact(&mut magic, "header")?;
    if magic[0] != 0 || magic[1] != 0 {
        return Err(DataError::format(
            &path,
            format!("wrong magic {:02X?}: not an IDX file", magic),
        ));
    }
    if magic[2] != TYPE_U8 {
        return Err(DataError::format(
            &path,
            format!(
                "IDX element type 0x{:02X} not supported (expected 0x08, unsigned byte)",
                magic[2]
            ),
        ));
    }
    let ndim = magic[3] as usize;
    if ndim == 0 {
        return Err(DataError::format(&path, "IDX header has 0 dimensions"));
    }
    let mut dims = Vec::with_capacity(ndim);
    for _ in 0..ndim {
        let mut b = [0u8; 4];
        src.read_exact(&mut b, "header")?;
        dims.push(u32::from_be_bytes(b) as usize);
    }
    let bytes = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| DataError::format(&path, format!("IDX dimensions {dims:?} overflow")))?
        as u64;
    match src.exact_remaining() {
        Some(rest) if rest < bytes => Err(DataError::format(
            &path,
            format!("truncated: header {dims:?} needs {bytes} data bytes, file has {rest}"),
        )),
        Some(rest) if rest > bytes => Err(DataError::format(
            &path,
            format!(
                "{} unexpected trailing bytes after the data for header {dims:?}",
                rest - bytes
            ),
        )),
        None if bytes > src.remaining_bound() => Err(DataError::format(
            &path,
            format!(
                "header {dims:?} needs {bytes} data bytes, more than this gzip file can hold ({})",
                src.remaining_bound()
            ),
        )),
        _ => Ok(dims),
    }
}

/// Read a whole unsigned-byte IDX file.
pub fn read_idx(path: &Path) -> DataResult<IdxArray> {
    let mut src = Source::open(path)?;
    read_idx_from(&mut src)
}

pub fn read_idx_from(src: &mut Source) -> DataResult<IdxArray> {
    let dims = read_idx_header(src)?;
    let bytes = dims.iter().product();
    let data = src.read_vec(bytes, "data")?;
    src.expect_end()?;
    Ok(IdxArray { dims, data })
}

/// Write an unsigned-byte IDX file atomically (gzipped if the name ends in `.gz`); used by tests and
/// to export small sets.
pub fn write_idx(path: &Path, dims: &[usize], data: &[u8]) -> anyhow::Result<()> {
    anyhow::ensure!(
        !dims.is_empty() && dims.len() < 256 && dims.iter().product::<usize>() == data.len(),
        "IDX writer: {} bytes do not match dimensions {dims:?}",
        data.len()
    );
    let mut header = vec![0u8, 0, TYPE_U8, dims.len() as u8];
    for &d in dims {
        header.extend_from_slice(&u32::try_from(d)?.to_be_bytes());
    }
    let gzip = path.extension().is_some_and(|e| e == "gz");
    write_atomic_with(path, |w| {
        if gzip {
            let mut gz = flate2::write::GzEncoder::new(w, flate2::Compression::fast());
            gz.write_all(&header)?;
            gz.write_all(data)?;
            gz.finish()?;
        } else {
            w.write_all(&header)?;
            w.write_all(data)?;
        }
        Ok(())
    })
}

/// The four files of an MNIST-style directory.
#[derive(Debug, Clone)]
pub struct IdxFiles {
    pub train_images: PathBuf,
    pub train_labels: PathBuf,
    pub test_images: PathBuf,
    pub test_labels: PathBuf,
}

/// The standard names: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`,
/// `t10k-labels-idx1-ubyte`, each plain or `.gz` (plain preferred).
pub fn locate_files(dir: &Path) -> DataResult<IdxFiles> {
    let find = |stem: &str| -> DataResult<PathBuf> {
        let plain = dir.join(stem);
        if check_data_file(&plain)? {
            return Ok(plain);
        }
        let gz = dir.join(format!("{stem}.gz"));
        if check_data_file(&gz)? {
            return Ok(gz);
        }
        Err(DataError::Missing {
            path: plain,
            hint: " (nor its .gz)".into(),
        })
    };
    Ok(IdxFiles {
        train_images: find("train-images-idx3-ubyte")?,
        train_labels: find("train-labels-idx1-ubyte")?,
        test_images: find("t10k-images-idx3-ubyte")?,
        test_labels: find("t10k-labels-idx1-ubyte")?,
    })
}

/// Images [n, h, w] and their labels [n], checked to agree.
#[derive(Debug, Clone)]
pub struct IdxImages {
    pub n: usize,
    pub height: usize,
    pub width: usize,
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

pub fn read_images(images: &Path, labels: &Path) -> DataResult<IdxImages> {
    let img = read_idx(images)?;
    if img.dims.len() != 3 || img.dims.contains(&0) {
        return Err(DataError::format(
            images,
            format!(
                "dimension mismatch: expected images [n, height, width], found {:?}",
                img.dims
            ),
        ));
    }
    let lab = read_idx(labels)?;
    if lab.dims.len() != 1 {
        return Err(DataError::format(
            labels,
            format!("dimension mismatch: expected labels [n], found {:?}", lab.dims),
        ));
    }
    if lab.dims[0] != img.dims[0] {
        return Err(DataError::format(
            labels,
            format!(
                "count disagrees: {} labels but {} has {} images",
                lab.dims[0],
                images.display(),
                img.dims[0]
            ),
        ));
    }
    Ok(IdxImages {
        n: img.dims[0],
        height: img.dims[1],
        width: img.dims[2],
        pixels: img.data,
        labels: lab.data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hand_written_header() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a-idx3-ubyte", "a-idx3-ubyte.gz"] {
            let p = dir.path().join(name);
            let data: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
            write_idx(&p, &[2, 3, 4], &data).unwrap();
            assert_eq!(
                read_idx(&p).unwrap(),
                IdxArray {
                    dims: vec![2, 3, 4],
                    data
                }
            );
        }
        // Labels as published: 00 00 08 01, count 3 (big-endian), then bytes.
        let p = dir.path().join("labels");
        std::fs::write(&p, [0, 0, 8, 1, 0, 0, 0, 3, 9, 0, 4]).unwrap();
        assert_eq!(read_idx(&p).unwrap().data, vec![9, 0, 4]);
        std::fs::write(&p, [0, 0, 8, 1, 0, 0, 0, 4, 9, 0, 4]).unwrap();
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(e.contains("labels") && e.contains("truncated"), "{e}");
        std::fs::write(&p, [0, 0, 0x0D, 1, 0, 0, 0, 1, 9, 0, 4, 0]).unwrap();
        let e = read_idx(&p).unwrap_err().to_string();
        assert!(e.contains("labels") && e.contains("not supported"), "{e}");
    }
}
