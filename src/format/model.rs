//! `model.json`: what the model was built for, beyond its config.
use super::{version_0, Versioned, FORMAT_VERSION};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelMeta {
    #[serde(default = "version_0")]
    pub format_version: u32,
    /// (channels, height, width) of the images.
    pub image_shape: (usize, usize, usize),
    /// Trainable scalars.
    pub num_parameters: usize,
}

impl ModelMeta {
    pub fn new(image_shape: (usize, usize, usize), num_parameters: usize) -> Self {
        Self {
            format_version: FORMAT_VERSION,
            image_shape,
            num_parameters,
        }
    }
}

impl Versioned for ModelMeta {
    fn format_version(&self) -> u32 {
        self.format_version
    }
}
