//! smallNORB `.mat` / `.mat.gz` reader and writer.
//!
//! File layout (NYU's "binary matrix" format): int32 little-endian magic giving the element type,
//! int32 `ndim`, then `max(3, ndim)` int32 dimensions (unused ones are 1), then the elements,
//! row-major, little-endian. One half (training or testing) is three files: `dat` uint8
//! [n, 2, side, side] (the stereo pair), `cat` int32 [n] (category 0-4) and `info` int32 [n, 4]
//! (instance 0-9, elevation 0-8, azimuth 0,2,..,34, lighting 0-5).
//!
//! Reading streams the images: `cat` and `info` are read whole (they are small), then [`DatStream`]
//! hands out one stereo pair at a time, so callers can convert straight into their own buffers
//! without ever holding a second decoded copy.
use super::error::{DataError, DataResult};
use super::source::{check_data_file, Source};
use crate::util::fs::write_atomic_with;
use flate2::write::GzEncoder;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which of the two published halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NorbPart {
    Training,
    Testing,
}

impl NorbPart {
    /// The published file-name stem (fixed even when the images are not 96x96).
    pub fn stem(self) -> &'static str {
        match self {
            NorbPart::Training => "smallnorb-5x46789x9x18x6x2x96x96-training",
            NorbPart::Testing => "smallnorb-5x01235x9x18x6x2x96x96-testing",
        }
    }
}

/// One of the three files of a half.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NorbFile {
    Dat,
    Cat,
    Info,
}

impl NorbFile {
    pub fn name(self) -> &'static str {
        match self {
            NorbFile::Dat => "dat",
            NorbFile::Cat => "cat",
            NorbFile::Info => "info",
        }
    }
}

/// The published file name, e.g. `smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat.gz`.
pub fn file_name(part: NorbPart, file: NorbFile, gzip: bool) -> String {
    format!(
        "{}-{}.mat{}",
        part.stem(),
        file.name(),
        if gzip { ".gz" } else { "" }
    )
}

/// Find a file in `dir`, plain `.mat` preferred over `.mat.gz`.
pub fn locate(dir: &Path, part: NorbPart, file: NorbFile) -> DataResult<PathBuf> {
    let plain = dir.join(file_name(part, file, false));
    if check_data_file(&plain)? {
        return Ok(plain);
    }
    let gz = dir.join(file_name(part, file, true));
    if check_data_file(&gz)? {
        return Ok(gz);
    }
    Err(DataError::Missing {
        path: plain,
        hint: " (nor its .gz)".into(),
    })
}

/// Element types of the binary matrix format, by magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatType {
    U8,
    I32,
    F32,
    F64,
    I16,
}

impl MatType {
    pub fn magic(self) -> u32 {
        match self {
            MatType::U8 => 0x1E3D4C55,
            MatType::I32 => 0x1E3D4C54,
            MatType::F32 => 0x1E3D4C51,
            MatType::F64 => 0x1E3D4C53,
            MatType::I16 => 0x1E3D4C56,
        }
    }

    pub fn from_magic(m: u32) -> Option<Self> {
        [
            MatType::U8,
            MatType::I32,
            MatType::F32,
            MatType::F64,
            MatType::I16,
        ]
        .into_iter()
        .find(|t| t.magic() == m)
    }

    pub fn elem_size(self) -> usize {
        match self {
            MatType::U8 => 1,
            MatType::I16 => 2,
            MatType::I32 | MatType::F32 => 4,
            MatType::F64 => 8,
        }
    }
}

/// More dimensions than any sane matrix has; bounds the header read.
const MAX_NDIM: usize = 16;

/// A parsed header: the element type and the `ndim` used dimensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatHeader {
    pub dtype: MatType,
    pub dims: Vec<usize>,
}

impl MatHeader {
    /// Number of elements, or None on overflow.
    pub fn elements(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
    }

    /// Header bytes on disk.
    pub fn header_len(&self) -> usize {
        8 + 4 * self.dims.len().max(3)
    }

    /// The header as written on disk.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.header_len());
        out.extend_from_slice(&self.dtype.magic().to_le_bytes());
        out.extend_from_slice(&(self.dims.len() as i32).to_le_bytes());
        for i in 0..self.dims.len().max(3) {
            let d = self.dims.get(i).copied().unwrap_or(1);
            out.extend_from_slice(&(d as i32).to_le_bytes());
        }
        out
    }
}

fn read_i32(src: &mut Source, what: &str) -> DataResult<i32> {
    let mut b = [0u8; 4];
    src.read_exact(&mut b, what)?;
    Ok(i32::from_le_bytes(b))
}

/// Read and validate a header, and check that the data it announces fits in what is left of the
/// file (exactly, for plain files) before anyone allocates for it.
pub fn read_header(src: &mut Source) -> DataResult<MatHeader> {
    let path = src.path().to_path_buf();
    let magic = read_i32(src, "header")? as u32;
    let dtype = MatType::from_magic(magic).ok_or_else(|| {
        DataError::format(
            &path,
            format!("wrong magic 0x{magic:08X}: not a smallNORB binary matrix"),
        )
    })?;
    let ndim = read_i32(src, "header")?;
    if ndim < 1 || ndim as usize > MAX_NDIM {
        return Err(DataError::format(
            &path,
            format!("header has ndim {ndim}, expected 1..={MAX_NDIM}"),
        ));
    }
    let ndim = ndim as usize;
    let mut dims = Vec::with_capacity(ndim);
    for i in 0..ndim.max(3) {
        let d = read_i32(src, "header")?;
        if i < ndim {
            if d < 0 {
                return Err(DataError::format(
                    &path,
                    format!("header dimension {i} is negative ({d})"),
                ));
            }
            dims.push(d as usize);
        } else if d != 1 {
            return Err(DataError::format(
                &path,
                format!("header's unused dimension {i} is {d}, expected 1"),
            ));
        }
    }
    let header = MatHeader { dtype, dims };
    let bytes = header
        .elements()
        .and_then(|e| e.checked_mul(dtype.elem_size()))
        .ok_or_else(|| DataError::format(&path, format!("header dimensions {:?} overflow", header.dims)))?
        as u64;
    match src.exact_remaining() {
        Some(rest) if rest < bytes => Err(DataError::format(
            &path,
            format!(
                "truncated: header {:?} needs {bytes} data bytes, file has {rest}",
                header.dims
            ),
        )),
        Some(rest) if rest > bytes => Err(DataError::format(
            &path,
            format!(
                "{} unexpected trailing bytes after the data for header {:?}",
                rest - bytes,
                header.dims
            ),
        )),
        None if bytes > src.remaining_bound() => Err(DataError::format(
            &path,
            format!(
                "header {:?} needs {bytes} data bytes, more than this gzip file can hold ({})",
                header.dims,
                src.remaining_bound()
            ),
        )),
        _ => Ok(header),
    }
}

/// Read a whole matrix (header and data) from a source; used for the small `cat` / `info` files and
/// by the header fuzzer. The returned vector never exceeds the bound the file itself allows.
pub fn read_matrix(src: &mut Source) -> DataResult<(MatHeader, Vec<u8>)> {
    let header = read_header(src)?;
    let data = read_data(src, &header)?;
    Ok((header, data))
}

/// Read the data `header` (just read from `src`) announces, and check that nothing follows it.
/// The buffer grows with the bytes that arrive, so a gzip stream shorter than its header claims
/// is reported as truncated having cost only what it holds.
pub fn read_data(src: &mut Source, header: &MatHeader) -> DataResult<Vec<u8>> {
    // read_header has checked this product for overflow.
    let bytes = header.elements().unwrap_or(0) * header.dtype.elem_size();
    let data = src.read_vec(bytes, "data")?;
    src.expect_end()?;
    Ok(data)
}

/// A whole half read into memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NorbRaw {
    pub n: usize,
    pub side: usize,
    /// uint8 [n, 2, side, side].
    pub dat: Vec<u8>,
    pub cat: Vec<i32>,
    pub info: Vec<[i32; 4]>,
}

/// The labels of a half, read whole before the images are streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NorbLabels {
    pub n: usize,
    pub side: usize,
    pub cat: Vec<i32>,
    pub info: Vec<[i32; 4]>,
}

/// Streams the stereo pairs of a `dat` file one at a time.
pub struct DatStream {
    src: Source,
    n: usize,
    side: usize,
    next: usize,
}

impl DatStream {
    pub fn n(&self) -> usize {
        self.n
    }

    pub fn side(&self) -> usize {
        self.side
    }

    /// Bytes per stereo pair (2 * side * side).
    pub fn pair_len(&self) -> usize {
        2 * self.side * self.side
    }

    pub fn path(&self) -> &Path {
        self.src.path()
    }

    /// Read the next pair into `buf` (`pair_len()` bytes); false once all `n` have been read, after
    /// checking that nothing follows them.
    pub fn next_pair(&mut self, buf: &mut [u8]) -> DataResult<bool> {
        if self.next == self.n {
            self.src.expect_end()?;
            return Ok(false);
        }
        debug_assert_eq!(buf.len(), self.pair_len());
        self.src.read_exact(buf, "image data")?;
        self.next += 1;
        Ok(true)
    }

    /// Read all remaining pairs into `out` (exactly the remaining pairs' bytes long), then check the end.
    pub fn read_rest(&mut self, out: &mut [u8]) -> DataResult<()> {
        let want = (self.n - self.next) * self.pair_len();
        debug_assert_eq!(out.len(), want);
        self.src.read_exact(out, "image data")?;
        self.next = self.n;
        self.src.expect_end()
    }
}

fn check_range(
    path: &Path,
    i: usize,
    field: &str,
    v: i32,
    ok: impl Fn(i32) -> bool,
    expect: &str,
) -> DataResult<()> {
    if ok(v) {
        Ok(())
    } else {
        Err(DataError::format(
            path,
            format!("record {i}: {field} is {v}, expected {expect}"),
        ))
    }
}

fn le_i32s(data: &[u8]) -> Vec<i32> {
    data.chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Open one half: read and check all three headers (types, shapes, agreeing counts), read the labels,
/// and return a stream over the images.
pub fn open_split(dir: &Path, part: NorbPart) -> DataResult<(NorbLabels, DatStream)> {
    let dat_path = locate(dir, part, NorbFile::Dat)?;
    let cat_path = locate(dir, part, NorbFile::Cat)?;
    let info_path = locate(dir, part, NorbFile::Info)?;

    let mut dat = Source::open(&dat_path)?;
    let dh = read_header(&mut dat)?;
    if dh.dtype != MatType::U8 || dh.dims.len() != 4 || dh.dims[1] != 2 || dh.dims[2] != dh.dims[3] {
        return Err(DataError::format(
            &dat_path,
            format!(
                "dimension mismatch: expected uint8 [n, 2, side, side], found {:?} {:?}",
                dh.dtype, dh.dims
            ),
        ));
    }
    let (n, side) = (dh.dims[0], dh.dims[2]);
    if n == 0 || side == 0 {
        return Err(DataError::format(
            &dat_path,
            format!("empty image array {:?}", dh.dims),
        ));
    }

    // The label files' headers are checked against the images' count before their data is read.
    let mut cat_src = Source::open(&cat_path)?;
    let ch = read_header(&mut cat_src)?;
    if ch.dtype != MatType::I32 || ch.dims.len() != 1 {
        return Err(DataError::format(
            &cat_path,
            format!(
                "dimension mismatch: expected int32 [n], found {:?} {:?}",
                ch.dtype, ch.dims
            ),
        ));
    }
    if ch.dims[0] != n {
        return Err(DataError::format(
            &cat_path,
            format!(
                "count disagrees: {} labels but {} has {n} images",
                ch.dims[0],
                dat_path.display()
            ),
        ));
    }

    let cat_bytes = read_data(&mut cat_src, &ch)?;

    let mut info_src = Source::open(&info_path)?;
    let ih = read_header(&mut info_src)?;
    if ih.dtype != MatType::I32 || ih.dims.len() != 2 || ih.dims[1] != 4 {
        return Err(DataError::format(
            &info_path,
            format!(
                "dimension mismatch: expected int32 [n, 4], found {:?} {:?}",
                ih.dtype, ih.dims
            ),
        ));
    }
    if ih.dims[0] != n {
        return Err(DataError::format(
            &info_path,
            format!(
                "count disagrees: {} records but {} has {n} images",
                ih.dims[0],
                dat_path.display()
            ),
        ));
    }

    let info_bytes = read_data(&mut info_src, &ih)?;

    let cat = le_i32s(&cat_bytes);
    for (i, &c) in cat.iter().enumerate() {
        check_range(&cat_path, i, "category", c, |v| (0..5).contains(&v), "0..=4")?;
    }
    let flat = le_i32s(&info_bytes);
    let info: Vec<[i32; 4]> = flat.chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
    for (i, r) in info.iter().enumerate() {
        check_range(&info_path, i, "instance", r[0], |v| (0..10).contains(&v), "0..=9")?;
        check_range(&info_path, i, "elevation", r[1], |v| (0..9).contains(&v), "0..=8")?;
        check_range(
            &info_path,
            i,
            "azimuth",
            r[2],
            |v| (0..=34).contains(&v) && v % 2 == 0,
            "0,2,...,34",
        )?;
        check_range(&info_path, i, "lighting", r[3], |v| (0..6).contains(&v), "0..=5")?;
    }
    let labels = NorbLabels { n, side, cat, info };
    let stream = DatStream {
        src: dat,
        n,
        side,
        next: 0,
    };
    Ok((labels, stream))
}

/// Read one half whole: `dat` [n, 2, side, side], `cat` [n], `info` [n, 4].
pub fn read_split(dir: &Path, part: NorbPart) -> DataResult<NorbRaw> {
    let (labels, mut stream) = open_split(dir, part)?;
    // open_split checked n * pair_len against the file's size bound.
    let mut dat = vec![0u8; labels.n * stream.pair_len()];
    stream.read_rest(&mut dat)?;
    Ok(NorbRaw {
        n: labels.n,
        side: labels.side,
        dat,
        cat: labels.cat,
        info: labels.info,
    })
}

/// Write one matrix file atomically, gzipped if the name ends in `.gz`.
fn write_matrix(path: &Path, header: &MatHeader, payload: &[&[u8]]) -> anyhow::Result<()> {
    let gzip = path.extension().is_some_and(|e| e == "gz");
    write_atomic_with(path, |w| {
        if gzip {
            // Fast compression: the full set's dat is 448 MB and the renderer has a time budget.
            let mut gz = GzEncoder::new(w, flate2::Compression::fast());
            gz.write_all(&header.to_bytes())?;
            for p in payload {
                gz.write_all(p)?;
            }
            gz.finish()?;
        } else {
            w.write_all(&header.to_bytes())?;
            for p in payload {
                w.write_all(p)?;
            }
        }
        Ok(())
    })
}

fn i32_bytes(v: impl Iterator<Item = i32>) -> Vec<u8> {
    v.flat_map(|x| x.to_le_bytes()).collect()
}

/// Write the three files (`dat`, `cat`, `info`) of one half into `dir`, named as published
/// (`smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat` ...), gzipped (`.mat.gz`) if `gzip`.
/// `dat` is uint8 [n, 2, side, side]; `cat` is [n]; `info` is [n, 4] (instance, elevation, azimuth, lighting).
/// Each file is written atomically; a stale file of the other variant (plain vs gz) is removed so the
/// directory holds exactly one version of each.
pub fn write_split(
    dir: &Path,
    part: NorbPart,
    dat: &[u8],
    side: usize,
    cat: &[i32],
    info: &[[i32; 4]],
    gzip: bool,
) -> anyhow::Result<()> {
    let n = cat.len();
    anyhow::ensure!(
        n > 0 && side > 0,
        "smallNORB writer: nothing to write (n = {n}, side = {side})"
    );
    anyhow::ensure!(
        info.len() == n && dat.len() == n * 2 * side * side,
        "smallNORB writer: {} cat, {} info records and {} dat bytes do not describe {n} pairs of {side}x{side}",
        cat.len(),
        info.len(),
        dat.len()
    );
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, false, e))?;
    let files: [(NorbFile, MatHeader, Vec<u8>); 2] = [
        (
            NorbFile::Cat,
            MatHeader {
                dtype: MatType::I32,
                dims: vec![n],
            },
            i32_bytes(cat.iter().copied()),
        ),
        (
            NorbFile::Info,
            MatHeader {
                dtype: MatType::I32,
                dims: vec![n, 4],
            },
            i32_bytes(info.iter().flat_map(|r| r.iter().copied())),
        ),
    ];
    let dat_header = MatHeader {
        dtype: MatType::U8,
        dims: vec![n, 2, side, side],
    };
    write_matrix(
        &dir.join(file_name(part, NorbFile::Dat, gzip)),
        &dat_header,
        &[dat],
    )?;
    for (file, header, bytes) in &files {
        write_matrix(&dir.join(file_name(part, *file, gzip)), header, &[bytes])?;
    }
    for file in [NorbFile::Dat, NorbFile::Cat, NorbFile::Info] {
        let stale = dir.join(file_name(part, file, !gzip));
        if stale.exists() {
            std::fs::remove_file(&stale).map_err(|e| DataError::io(&stale, false, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize, side: usize) -> (Vec<u8>, Vec<i32>, Vec<[i32; 4]>) {
        let dat: Vec<u8> = (0..n * 2 * side * side).map(|i| (i * 7 % 251) as u8).collect();
        let cat: Vec<i32> = (0..n as i32).map(|i| i % 5).collect();
        let info: Vec<[i32; 4]> = (0..n as i32)
            .map(|i| [i % 10, i % 9, (i % 18) * 2, i % 6])
            .collect();
        (dat, cat, info)
    }

    #[test]
    fn round_trip_plain_and_gzip() {
        for gzip in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (dat, cat, info) = sample(7, 5);
            write_split(dir.path(), NorbPart::Training, &dat, 5, &cat, &info, gzip).unwrap();
            let raw = read_split(dir.path(), NorbPart::Training).unwrap();
            assert_eq!((raw.n, raw.side), (7, 5));
            assert_eq!(raw.dat, dat);
            assert_eq!(raw.cat, cat);
            assert_eq!(raw.info, info);
            // The other half was not written.
            assert!(read_split(dir.path(), NorbPart::Testing).is_err());
        }
    }

    #[test]
    fn rewriting_as_gzip_removes_the_plain_files() {
        let dir = tempfile::tempdir().unwrap();
        let (dat, cat, info) = sample(3, 4);
        write_split(dir.path(), NorbPart::Testing, &dat, 4, &cat, &info, false).unwrap();
        let (dat2, ..) = sample(3, 4);
        let dat2: Vec<u8> = dat2.iter().map(|b| b.wrapping_add(1)).collect();
        write_split(dir.path(), NorbPart::Testing, &dat2, 4, &cat, &info, true).unwrap();
        assert!(!dir
            .path()
            .join(file_name(NorbPart::Testing, NorbFile::Dat, false))
            .exists());
        assert_eq!(read_split(dir.path(), NorbPart::Testing).unwrap().dat, dat2);
    }

    #[test]
    fn hand_written_header_bytes_are_read() {
        // cat file as NYU writes it: int32 magic, ndim 1, dims 3 1 1, then 3 int32 labels.
        let mut bytes = vec![
            0x54, 0x4C, 0x3D, 0x1E, 1, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0,
        ];
        bytes.extend_from_slice(&[4, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]);
        let mut src = Source::from_bytes(Path::new("cat.mat"), false, bytes);
        let (h, data) = read_matrix(&mut src).unwrap();
        assert_eq!(h.dtype, MatType::I32);
        assert_eq!(h.dims, vec![3]);
        assert_eq!(le_i32s(&data), vec![4, 0, 2]);
        // A 5-D float64 header: 4 + 4 + 5*4 bytes, no padding dims.
        let mut b = 0x1E3D4C53u32.to_le_bytes().to_vec();
        b.extend_from_slice(&5i32.to_le_bytes());
        for d in [1i32, 2, 1, 1, 1] {
            b.extend_from_slice(&d.to_le_bytes());
        }
        b.extend_from_slice(&1.5f64.to_le_bytes());
        b.extend_from_slice(&(-2.0f64).to_le_bytes());
        let mut src = Source::from_bytes(Path::new("x.mat"), false, b);
        let (h, data) = read_matrix(&mut src).unwrap();
        assert_eq!(
            (h.dtype, h.dims.clone(), h.header_len()),
            (MatType::F64, vec![1, 2, 1, 1, 1], 28)
        );
        assert_eq!(f64::from_le_bytes(data[8..16].try_into().unwrap()), -2.0);
    }
}
