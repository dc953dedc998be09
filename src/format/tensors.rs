//! The header of the run's safetensors files: safetensors' `__metadata__` map carries
//! `{"format": FORMAT, "format_version": "N"}`, e.g. `{"format": "norbvae-weights",
//! "format_version": "1"}` in `model.safetensors`. Files written before the field existed have no
//! metadata and read as version 0 (the same layout as version 1). A newer version, or a file of
//! another format (an optimizer file where the model's tensors are expected), is refused with an
//! error naming the file.
use super::FormatError;
use std::collections::HashMap;
use std::path::Path;

/// A model's tensors (parameters and buffers): `checkpoints/*/model.safetensors`.
pub const WEIGHTS_FORMAT: &str = "norbvae-weights";
/// Adam's moments: `checkpoints/last/optim.safetensors`.
pub const OPTIMIZER_FORMAT: &str = "norbvae-optimizer";
/// A fitted PCA: `pca.safetensors` (its `kind` key, `norbvae-pca`, predates the version).
pub const PCA_FORMAT: &str = "norbvae-pca";

/// The version of the tensor files this build writes (and the newest it reads).
pub const TENSORS_FORMAT_VERSION: u32 = 1;

/// The `__metadata__` of a file of `format` written by this build.
pub fn header(format: &str) -> HashMap<String, String> {
    HashMap::from([
        ("format".to_string(), format.to_string()),
        ("format_version".to_string(), TENSORS_FORMAT_VERSION.to_string()),
    ])
}

/// Check the header of the safetensors `bytes` read from `path` against the `expected` format;
/// returns the file's version (0 without metadata).
pub fn check_header(bytes: &[u8], expected: &str, path: &Path) -> Result<u32, FormatError> {
    let invalid = |msg: String| FormatError::Invalid {
        path: path.to_path_buf(),
        msg,
    };
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| invalid(format!("not a safetensors file: {e}")))?;
    let Some(map) = meta.metadata() else {
        return Ok(0);
    };
    if let Some(found) = map.get("format") {
        if found != expected {
            return Err(invalid(format!(
                "holds {found} tensors, expected {expected} (is it the right file?)"
            )));
        }
    }
    let version = match map.get("format_version") {
        None => 0,
        Some(v) => v
            .parse::<u32>()
            .map_err(|_| invalid(format!("format_version {v:?} in the header is not a number")))?,
    };
    if version > TENSORS_FORMAT_VERSION {
        return Err(FormatError::NewerVersion {
            path: path.to_path_buf(),
            found: version,
            supported: TENSORS_FORMAT_VERSION,
        });
    }
    Ok(version)
}

/// `bytes` (a safetensors file) with its `__metadata__` entries in sorted key order.
/// safetensors writes the metadata map in `HashMap` order, which differs from run to run; sorted,
/// the same tensors always give the same bytes (reproducibility checks compare files). The
/// entries keep their length, so the header and every data offset stay as they were.
pub fn canonical(mut bytes: Vec<u8>) -> Vec<u8> {
    const START: &[u8] = b"{\"__metadata__\":";
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
    else {
        return bytes;
    };
    let Some(header) = bytes.get(8..8 + len) else {
        return bytes;
    };
    if !header.starts_with(START) {
        return bytes;
    }
    // The metadata object: string keys and values only, so it ends at its first unquoted '}'.
    let body = &header[START.len()..];
    let mut in_string = false;
    let mut escaped = false;
    let mut end = None;
    for (i, &c) in body.iter().enumerate() {
        match (in_string, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (false, _, b'"') => in_string = true,
            (false, _, b'}') => {
                end = Some(i + 1);
                break;
            }
            _ => {}
        }
    }
    let Some(end) = end else { return bytes };
    let Ok(map) = serde_json::from_slice::<std::collections::BTreeMap<String, String>>(&body[..end]) else {
        return bytes;
    };
    let Ok(sorted) = serde_json::to_vec(&map) else {
        return bytes;
    };
    if sorted.len() == end {
        let at = 8 + START.len();
        bytes[at..at + end].copy_from_slice(&sorted);
    }
    bytes
}
