//! Dataset specs as given on the command line or in a config: `norb:DIR`, `fashion-mnist`, `idx:DIR`.
use super::error::{DataError, DataResult};
use std::path::PathBuf;

/// Where Debian's `dataset-fashion-mnist` package installs the IDX files.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

pub const NORB_CLASSES: [&str; 5] = ["four-legged animal", "human figure", "airplane", "truck", "car"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSpec {
    /// smallNORB's six files (real or synthetic) in a directory.
    Norb(PathBuf),
    /// MNIST-style IDX files in a directory; `fashion` selects Fashion-MNIST's class names.
    Idx { dir: PathBuf, fashion: bool },
}

impl DataSpec {
    pub fn parse(spec: &str) -> DataResult<Self> {
        let spec = spec.trim();
        let dir = |rest: &str| -> DataResult<PathBuf> {
            if rest.is_empty() {
                Err(DataError::spec(spec, "missing directory after ':'"))
            } else {
                Ok(PathBuf::from(rest))
            }
        };
        if spec == "fashion-mnist" {
            Ok(DataSpec::Idx {
                dir: PathBuf::from(FASHION_MNIST_DIR),
                fashion: true,
            })
        } else if let Some(rest) = spec.strip_prefix("norb:") {
            Ok(DataSpec::Norb(dir(rest)?))
        } else if let Some(rest) = spec.strip_prefix("idx:") {
            Ok(DataSpec::Idx {
                dir: dir(rest)?,
                fashion: false,
            })
        } else {
            Err(DataError::spec(
                spec,
                "not recognised (expected norb:DIR, fashion-mnist or idx:DIR)",
            ))
        }
    }

    pub fn is_norb(&self) -> bool {
        matches!(self, DataSpec::Norb(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms_and_rejects_others() {
        assert_eq!(DataSpec::parse("norb:/d").unwrap(), DataSpec::Norb("/d".into()));
        assert!(matches!(
            DataSpec::parse("fashion-mnist").unwrap(),
            DataSpec::Idx { fashion: true, .. }
        ));
        assert_eq!(
            DataSpec::parse("idx:rel/dir").unwrap(),
            DataSpec::Idx {
                dir: "rel/dir".into(),
                fashion: false
            }
        );
        for bad in ["cifar10", "norb:", "norb", "mnist:/x", ""] {
            let e = DataSpec::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("dataset spec"), "{e}");
        }
    }
}
