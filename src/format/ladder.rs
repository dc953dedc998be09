//! `OUT/ladder.json`: written by `norbvae reproduce --ladder` into its output directory, it
//! marks the run directories beside it as the steps of an improvement ladder, in order, with what
//! each step changes. The report reads it to show the ladder (`norbvae report OUT` or
//! `norbvae report OUT/1-basic OUT/2-...`): step `S` is the run directory `S` (one seed) or
//! `S,seed=N` (several seeds) next to this file.
use super::{version_0, Versioned, FORMAT_VERSION};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const LADDER_MANIFEST_FILE: &str = "ladder.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LadderManifest {
    #[serde(default = "version_0")]
    pub format_version: u32,
    /// The steps in ladder order.
    pub steps: Vec<LadderStepEntry>,
}

/// One step of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LadderStepEntry {
    /// The step's name: its run directory (or the stem of `<name>,seed=<S>`).
    pub name: String,
    /// What the step changes, in full (its config's first comment paragraph).
    pub description: String,
    /// What changed, in a few words, for the table.
    pub short: String,
    /// The step's config as given (relative to the manifest's directory), before overrides.
    pub config: PathBuf,
}

impl Versioned for LadderManifest {
    fn format_version(&self) -> u32 {
        self.format_version
    }
}

impl LadderManifest {
    pub fn new(steps: Vec<LadderStepEntry>) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            steps,
        }
    }

    pub fn path(dir: &Path) -> PathBuf {
        dir.join(LADDER_MANIFEST_FILE)
    }

    /// The manifest in `dir`, if there is one (an unreadable one is an error naming the file).
    pub fn read_in(dir: &Path) -> Result<Option<Self>, super::FormatError> {
        let p = Self::path(dir);
        if !p.is_file() {
            return Ok(None);
        }
        super::read_json(&p).map(Some)
    }

    /// Write atomically into `dir`.
    pub fn write_in(&self, dir: &Path) -> anyhow::Result<()> {
        let text = super::to_json(self)?;
        crate::util::write_atomic(&Self::path(dir), text.as_bytes())
    }
}
