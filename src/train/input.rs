//! What the encoder eats, and the way back to pixels: images as they are (conv VAE), or PCA
//! coefficients (dense VAE), whose decoder means return to pixel space through the PCA inverse.
use crate::data::ImageSet;
use crate::model::{InputShape, ModelKind};
use crate::pca::PcaModel;
use crate::util::RunDir;
use anyhow::Context;
use candle_core::{Device, Tensor};

/// The mapping between pixels and model space for one run.
pub enum InputMap {
    Pixels {
        channels: usize,
        height: usize,
        width: usize,
    },
    /// The first `model.k()` PCA coefficients (whitened or not) of the images.
    Pca {
        model: PcaModel,
        whiten: bool,
        image: (usize, usize, usize),
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
            InputMap::Pca { model, .. } => InputShape::Vector { dim: model.k() },
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
            InputMap::Pca { image, .. } => *image,
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
            InputMap::Pca { model, whiten, .. } => Ok(ModelData {
                values: model.try_transform(&set.images, set.n, model.k(), *whiten)?,
                n: set.n,
                dim: model.k(),
            }),
        }
    }

    /// Model-space means [n, dim] -> pixels [n, c, h, w] clamped to [0, 1].
    pub fn to_pixels(&self, model: Vec<f32>, n: usize) -> Vec<f32> {
        let mut px = match self {
            InputMap::Pixels { .. } => model,
            InputMap::Pca {
                model: pca, whiten, ..
            } => pca.inverse_transform(&model, n, pca.k(), *whiten),
        };
        for v in px.iter_mut() {
            *v = v.clamp(0.0, 1.0);
        }
        px
    }

    /// Nats per image to add to a model-space NLL to get the NLL of the pixels: zero for images;
    /// for PCA coefficients, PPCA's isotropic Gaussian on the discarded directions (variance = the
    /// mean discarded eigenvalue) plus, when whitened, the log-determinant of the whitening. The
    /// components are orthonormal, so this is an exact change of variables.
    pub fn pixel_nll_offset(&self, set: &ImageSet) -> anyhow::Result<Vec<f64>> {
        self.check_images(set)?;
        match self {
            InputMap::Pixels { .. } => Ok(vec![0.0; set.n]),
            InputMap::Pca { model, whiten, .. } => {
                let (k, d) = (model.k(), model.dim());
                let coefs = model.try_transform(&set.images, set.n, k, false)?;
                let log_det: f64 = if *whiten {
                    model
                        .explained_variance
                        .iter()
                        .map(|&v| 0.5 * (v.max(1e-30) as f64).ln())
                        .sum()
                } else {
                    0.0
                };
                let var = model.noise_variance(k);
                let tail_dims = (d - k) as f64;
                Ok((0..set.n)
                    .map(|i| {
                        let x = set.image(i);
                        let centred: f64 = x
                            .iter()
                            .zip(&model.mean)
                            .map(|(a, m)| ((a - m) as f64).powi(2))
                            .sum();
                        let kept: f64 = coefs[i * k..(i + 1) * k]
                            .iter()
                            .map(|c| (*c as f64).powi(2))
                            .sum();
                        let resid = (centred - kept).max(0.0);
                        let tail = if var > 0.0 && tail_dims > 0.0 {
                            0.5 * (tail_dims * (2.0 * std::f64::consts::PI * var).ln() + resid / var)
                        } else {
                            0.0
                        };
                        tail + log_det
                    })
                    .collect())
            }
        }
    }
}

/// The input map for a new run: pixels for the conv VAE; for the dense VAE a PCA model (loaded
/// from `model.dense.pca_model`, or fitted on the training split) truncated to
/// `model.dense.components` and saved as `pca.safetensors` in the run directory.
pub fn build(
    cfg: &crate::train::TrainConfig,
    splits: &crate::data::Splits,
    run: &RunDir,
) -> anyhow::Result<InputMap> {
    let train = &splits.train;
    match cfg.model.kind {
        ModelKind::Conv | ModelKind::Hierarchical => Ok(InputMap::for_images(train)),
        ModelKind::PcaDense => {
            let dc = &cfg.model.dense;
            let k = dc.components;
            let model = match &dc.pca_model {
                Some(path) => {
                    let m = PcaModel::load(path)
                        .with_context(|| format!("model.dense.pca_model {}", path.display()))?;
                    let what = format!("{}x{}x{}", train.channels, train.height, train.width);
                    m.check_image_size(train.dim(), &what)
                        .with_context(|| format!("model.dense.pca_model {}", path.display()))?;
                    if m.k() < k {
                        anyhow::bail!(
                            "model.dense.components = {k}, but the PCA model {} has only {} components",
                            path.display(),
                            m.k()
                        );
                    }
                    m
                }
                None => {
                    eprintln!("fitting a {k}-component PCA on {} training images", train.n);
                    let params = crate::pca::PcaParams {
                        n_components: k,
                        seed: cfg.seed,
                        ..Default::default()
                    }
                    .check()?;
                    crate::pca::fit_pca(&train.images, train.n, train.dim(), &params)
                        .context("fitting the PCA for model.dense")?
                }
            };
            let model = model.truncated(k);
            model.save(&run.path("pca.safetensors"))?;
            Ok(InputMap::Pca {
                model,
                whiten: dc.whiten,
                image: (train.channels, train.height, train.width),
            })
        }
    }
}

/// The input map of a saved run.
pub fn load(
    cfg: &crate::train::TrainConfig,
    meta: &crate::format::ModelMeta,
    run: &RunDir,
) -> anyhow::Result<InputMap> {
    let (channels, height, width) = meta.image_shape;
    match cfg.model.kind {
        ModelKind::Conv | ModelKind::Hierarchical => Ok(InputMap::Pixels {
            channels,
            height,
            width,
        }),
        ModelKind::PcaDense => {
            let p = run.path("pca.safetensors");
            let model =
                PcaModel::load(&p).with_context(|| format!("loading the run's PCA model {}", p.display()))?;
            Ok(InputMap::Pca {
                model,
                whiten: cfg.model.dense.whiten,
                image: meta.image_shape,
            })
        }
    }
}
