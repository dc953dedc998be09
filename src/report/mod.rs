//! The experiment report: every run side by side in one self-contained HTML page, and written
//! answers to the experiment log's questions.
pub mod answers;
pub mod html;
pub mod ladder;
pub mod runs;
pub mod sweep;

pub use html::ReportOptions;
pub use runs::{discover_runs, RunInfo, RunKind};

use anyhow::Result;
use std::path::{Path, PathBuf};

/// Read the runs in `dirs` (run directories, or directories holding them), sorted by name
/// within each directory.
pub fn load_runs(dirs: &[PathBuf]) -> Result<Vec<RunInfo>> {
    discover_runs(dirs)?.iter().map(|d| RunInfo::load(d)).collect()
}

/// Write the report of `runs` to `out` atomically.
pub fn write_report(runs: &[RunInfo], out: &Path, opts: &ReportOptions) -> Result<()> {
    let page = html::render(runs, opts)?;
    crate::util::write_atomic(out, page.as_bytes())
}

/// Read the runs in `dirs` (run directories, or directories holding them) and write the report
/// to `out` atomically. Returns the runs it shows.
pub fn build_report(dirs: &[PathBuf], out: &Path, opts: &ReportOptions) -> Result<Vec<RunInfo>> {
    let runs = load_runs(dirs)?;
    write_report(&runs, out, opts)?;
    Ok(runs)
}

#[cfg(test)]
mod tests;
