//! The explained-variance PNG: cumulative fraction of variance against the number of
//! components, each requested k marked with its value, drawn by `crate::plot`.
use std::path::Path;

/// Write the curve of `cumulative[i]` (fraction after i+1 components) with markers at `marks`.
pub fn explained_variance_png(path: &Path, cumulative: &[f64], marks: &[usize]) -> anyhow::Result<()> {
    crate::plot::explained_variance(cumulative, marks).save_png(path)
}
