//! smallNORB `.mat` / `.mat.gz` reader and writer (issue 2: to be implemented by the data layer).
//! The signature of `write_split` is fixed now so the synthetic renderer can call it.
use std::path::Path;

/// Which of the two published halves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NorbPart {
    Training,
    Testing,
}

/// Write the three files (`dat`, `cat`, `info`) of one half into `dir`, named as published
/// (`smallnorb-5x46789x9x18x6x2x96x96-training-dat.mat` ...), gzipped (`.mat.gz`) if `gzip`.
/// `dat` is uint8 [n, 2, side, side]; `cat` is [n]; `info` is [n, 4] (instance, elevation, azimuth, lighting).
pub fn write_split(
    _dir: &Path,
    _part: NorbPart,
    _dat: &[u8],
    _side: usize,
    _cat: &[i32],
    _info: &[[i32; 4]],
    _gzip: bool,
) -> anyhow::Result<()> {
    anyhow::bail!("smallNORB writer not implemented yet")
}
