//! What the encoder eats, and the way back to pixels: images as they are (conv VAE), or PCA
//! coefficients (dense VAE), whose decoder means return to pixel space through the PCA inverse.
use crate::data::ImageSet;
use crate::model::InputShape;
use candle_core::{Device, Tensor};

/// The mapping between pixels and model space for one run.
pub enum InputMap {
    Pixels {
        channels: usize,
        height: usize,
        width: usize,
    },
}

/// Model-space data for one split, flat [n, dim].
pub struct ModelData {
    pub values: Vec<f32>,
    pub n: usize,
    pub dim: usize,
}

impl ModelData {
    /// Items `idx` as a tensor of the model's input shape.
    pub fn batch(&self, idx: &[usize], shape: InputShape, device: &Device) -> candle_core::Result<Tensor> {
        let mut buf = Vec::with_capacity(idx.len() * self.dim);
        for &i in idx {
            buf.extend_from_slice(&self.values[i * self.dim..(i + 1) * self.dim]);
        }
        to_tensor(buf, idx.len(), shape, device)
    }
}

pub fn to_tensor(
    values: Vec<f32>,
    n: usize,
    shape: InputShape,
    device: &Device,
) -> candle_core::Result<Tensor> {
    match shape {
        InputShape::Image {
            channels,
            height,
            width,
        } => Tensor::from_vec(values, (n, channels, height, width), device),
        InputShape::Vector { dim } => Tensor::from_vec(values, (n, dim), device),
    }
}

impl InputMap {
    pub fn for_images(set: &ImageSet) -> Self {
        InputMap::Pixels {
            channels: set.channels,
            height: set.height,
            width: set.width,
        }
    }

    pub fn shape(&self) -> InputShape {
        match self {
            InputMap::Pixels {
                channels,
                height,
                width,
            } => InputShape::Image {
                channels: *channels,
                height: *height,
                width: *width,
            },
        }
    }

    /// (channels, height, width) of the images in pixel space.
    pub fn image_shape(&self) -> (usize, usize, usize) {
        match self {
            InputMap::Pixels {
                channels,
                height,
                width,
            } => (*channels, *height, *width),
        }
    }

    pub fn check_images(&self, set: &ImageSet) -> anyhow::Result<()> {
        let (c, h, w) = self.image_shape();
        if (set.channels, set.height, set.width) != (c, h, w) {
            anyhow::bail!(
                "images are {}x{}x{} but the model was built for {c}x{h}x{w}",
                set.channels,
                set.height,
                set.width
            );
        }
        Ok(())
    }

    /// Pixels -> model space.
    pub fn to_model(&self, set: &ImageSet) -> anyhow::Result<ModelData> {
        self.check_images(set)?;
        match self {
            InputMap::Pixels { .. } => Ok(ModelData {
                values: set.images.clone(),
                n: set.n,
                dim: set.dim(),
            }),
        }
    }

    /// Model-space means [n, dim] -> pixels [n, c, h, w] clamped to [0, 1].
    pub fn to_pixels(&self, model: Vec<f32>, _n: usize) -> Vec<f32> {
        let mut px = match self {
            InputMap::Pixels { .. } => model,
        };
        for v in px.iter_mut() {
            *v = v.clamp(0.0, 1.0);
        }
        px
    }
}

/// The input map for a new run: pixels for the conv VAE, a PCA model (loaded or fitted, and
/// copied into the run directory) for the dense VAE.
pub fn build(
    cfg: &crate::train::TrainConfig,
    splits: &crate::data::Splits,
    _run: &crate::util::RunDir,
) -> anyhow::Result<InputMap> {
    match cfg.model.kind {
        crate::model::ModelKind::Conv => Ok(InputMap::for_images(&splits.train)),
        crate::model::ModelKind::PcaDense => {
            anyhow::bail!(
                "model.kind = \"pca_dense\" needs the PCA module, which is not merged into this build yet"
            )
        }
    }
}

/// The input map of a saved run.
pub fn load(
    cfg: &crate::train::TrainConfig,
    meta: &crate::train::run::ModelMeta,
    _run: &crate::util::RunDir,
) -> anyhow::Result<InputMap> {
    let (channels, height, width) = meta.image_shape;
    match cfg.model.kind {
        crate::model::ModelKind::Conv => Ok(InputMap::Pixels {
            channels,
            height,
            width,
        }),
        crate::model::ModelKind::PcaDense => {
            anyhow::bail!(
                "model.kind = \"pca_dense\" needs the PCA module, which is not merged into this build yet"
            )
        }
    }
}
