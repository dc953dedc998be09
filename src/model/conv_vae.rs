//! The convolutional VAE: n stride-2 convolutions (kernel 4, padding 1) with filters doubling up to
//! a cap, a dense layer, then mu / log-variance; the decoder mirrors it with transposed
//! convolutions. Sides that are not a multiple of 2^n are zero-padded up to one at the input and
//! the output is cropped back (see [`SizeRule`]).
use super::config::{ConvConfig, SizeRule};
use super::layers::{Activation, BatchNorm, Conv, ConvTranspose, Dense, Mode};
use super::residual::{self, ResBlock};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

/// Spatial plan of the encoder for one image shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub padded_height: usize,
    pub padded_width: usize,
    /// Spatial size at the bottleneck (padded / 2^n).
    pub bottom_height: usize,
    pub bottom_width: usize,
}

impl ConvGeometry {
    pub fn new(
        cfg: &ConvConfig,
        channels: usize,
        height: usize,
        width: usize,
    ) -> std::result::Result<Self, String> {
        let m = 1usize << cfg.downsizings;
        let round_up = |s: usize| s.div_ceil(m) * m;
        if cfg.size_rule == SizeRule::Strict && (!height.is_multiple_of(m) || !width.is_multiple_of(m)) {
            return Err(format!(
                "image size {height}x{width} is not divisible by 2^{} = {m} (model.conv.downsizings = {}); \
                 use a size that is a multiple of {m}, fewer downsizings, or model.conv.size_rule = \"pad\"",
                cfg.downsizings, cfg.downsizings
            ));
        }
        let (ph, pw) = (round_up(height), round_up(width));
        Ok(Self {
            channels,
            height,
            width,
            padded_height: ph,
            padded_width: pw,
            bottom_height: ph / m,
            bottom_width: pw / m,
        })
    }
}

struct Block<L> {
    layer: L,
    bn: Option<BatchNorm>,
}

pub struct ConvVae {
    geometry: ConvGeometry,
    activation: Activation,
    enc: Vec<Block<Conv>>,
    /// Residual cells after each encoder stage (empty with `blocks_per_stage = 0`).
    enc_res: Vec<Vec<ResBlock>>,
    enc_dense: Block<Dense>,
    mu: Dense,
    logvar: Dense,
    dec_dense0: Block<Dense>,
    dec_dense1: Dense,
    dec: Vec<Block<ConvTranspose>>,
    /// Residual cells before each decoder stage: at the bottleneck, then after each transposed
    /// convolution but the last (the encoder's resolutions in reverse).
    dec_res: Vec<Vec<ResBlock>>,
    bottom_channels: usize,
}

impl ConvVae {
    /// `out_per_pixel`: decoder output maps per image channel (2 for a per-pixel variance).
    pub fn new(
        cfg: &ConvConfig,
        geometry: ConvGeometry,
        latent: usize,
        out_per_pixel: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let filters = cfg.filters();
        let n = filters.len();
        let bn = |vb: VarBuilder, c: usize| -> Result<Option<BatchNorm>> {
            if cfg.batch_norm {
                Ok(Some(BatchNorm::new(vb, c)?))
            } else {
                Ok(None)
            }
        };
        let venc = vb.pp("encoder");
        let mut enc = Vec::with_capacity(n);
        let mut enc_res = Vec::with_capacity(n);
        let mut c_prev = geometry.channels;
        let cells = |vb: &VarBuilder, prefix: String, c: usize| {
            residual::stack(
                vb,
                &prefix,
                cfg.blocks_per_stage,
                c,
                cfg.batch_norm,
                cfg.activation,
            )
        };
        for (i, &f) in filters.iter().enumerate() {
            enc.push(Block {
                layer: Conv::new(venc.pp(format!("conv{i}")), c_prev, f, 4, 2, 1)?,
                bn: bn(venc.pp(format!("bn{i}")), f)?,
            });
            enc_res.push(cells(&venc, format!("res{i}_"), f)?);
            c_prev = f;
        }
        let bottom_channels = c_prev;
        let flat = bottom_channels * geometry.bottom_height * geometry.bottom_width;
        let enc_dense = Block {
            layer: Dense::new(venc.pp("dense"), flat, cfg.intermediate)?,
            bn: bn(venc.pp("bn_dense"), cfg.intermediate)?,
        };
        let mu = Dense::new(venc.pp("mu"), cfg.intermediate, latent)?;
        let logvar = Dense::new(venc.pp("logvar"), cfg.intermediate, latent)?;

        let vdec = vb.pp("decoder");
        let dec_dense0 = Block {
            layer: Dense::new(vdec.pp("dense0"), latent, cfg.intermediate)?,
            bn: bn(vdec.pp("bn_dense0"), cfg.intermediate)?,
        };
        let dec_dense1 = Dense::new(vdec.pp("dense1"), cfg.intermediate, flat)?;
        let mut dec = Vec::with_capacity(n);
        let mut dec_res = Vec::with_capacity(n);
        let mut c_prev = bottom_channels;
        for i in 0..n {
            dec_res.push(cells(&vdec, format!("res{i}_"), c_prev)?);
            let last = i + 1 == n;
            let c_out = if last {
                geometry.channels * out_per_pixel
            } else {
                filters[n - 2 - i]
            };
            dec.push(Block {
                layer: ConvTranspose::new(vdec.pp(format!("deconv{i}")), c_prev, c_out, 4, 2, 1)?,
                bn: if last {
                    None
                } else {
                    bn(vdec.pp(format!("bn{i}")), c_out)?
                },
            });
            c_prev = c_out;
        }
        Ok(Self {
            geometry,
            activation: cfg.activation,
            enc,
            enc_res,
            enc_dense,
            mu,
            logvar,
            dec_dense0,
            dec_dense1,
            dec,
            dec_res,
            bottom_channels,
        })
    }

    pub fn geometry(&self) -> &ConvGeometry {
        &self.geometry
    }

    /// A dense layer, its batch norm if any and the activation (fused in training mode on CPU).
    fn dense_norm_act(&self, blk: &Block<Dense>, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match &blk.bn {
            Some(bn) => bn.forward_dense_act(&blk.layer, x, mode, Some(self.activation)),
            None => self.activation.apply(&blk.layer.forward(x)?),
        }
    }

    fn norm_act(&self, x: Tensor, bn: &Option<BatchNorm>, mode: Mode) -> Result<Tensor> {
        match bn {
            Some(bn) => bn.forward_act(&x, mode, Some(self.activation)),
            None => self.activation.apply(&x),
        }
    }

    /// Images [b, c, h, w] -> (mu, logvar), each [b, latent].
    pub fn encode(&self, x: &Tensor, mode: Mode) -> Result<(Tensor, Tensor)> {
        self.encode_stages(x, mode, |_| {})
    }

    /// [`encode`](Self::encode), handing `each_stage` the features after every stage (with its
    /// residual cells): the hierarchical VAE's posterior reads them.
    pub(super) fn encode_stages(
        &self,
        x: &Tensor,
        mode: Mode,
        mut each_stage: impl FnMut(&Tensor),
    ) -> Result<(Tensor, Tensor)> {
        let g = &self.geometry;
        let mut h = x.clone();
        if g.padded_height != g.height {
            h = h.pad_with_zeros(2, 0, g.padded_height - g.height)?;
        }
        if g.padded_width != g.width {
            h = h.pad_with_zeros(3, 0, g.padded_width - g.width)?;
        }
        for (b, cells) in self.enc.iter().zip(&self.enc_res) {
            h = self.norm_act(b.layer.forward(&h)?, &b.bn, mode)?;
            h = residual::run(cells, h, mode)?;
            each_stage(&h);
        }
        let h = h.flatten_from(1)?;
        let h = self.dense_norm_act(&self.enc_dense, &h, mode)?;
        Ok((self.mu.forward(&h)?, self.logvar.forward(&h)?))
    }

    /// Latents [b, latent] -> decoder output [b, c * out_per_pixel, h, w] (before the likelihood).
    pub fn decode(&self, z: &Tensor, mode: Mode) -> Result<Tensor> {
        self.decode_stages(z, mode, |_, h| Ok(h))
    }

    /// [`decode`](Self::decode), with `before_step(i, d)` rewriting the top-down state `d`
    /// after decoder step i's residual cells, before its transposed convolution: where the
    /// hierarchical VAE adds its spatial latent groups.
    pub(super) fn decode_stages(
        &self,
        z: &Tensor,
        mode: Mode,
        mut before_step: impl FnMut(usize, Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let g = &self.geometry;
        let b = z.dim(0)?;
        let h = self.dense_norm_act(&self.dec_dense0, z, mode)?;
        let h = self.activation.apply(&self.dec_dense1.forward(&h)?)?;
        let mut h = h.reshape((b, self.bottom_channels, g.bottom_height, g.bottom_width))?;
        for (i, (blk, cells)) in self.dec.iter().zip(&self.dec_res).enumerate() {
            h = residual::run(cells, h, mode)?;
            h = before_step(i, h)?;
            h = blk.layer.forward(&h)?;
            // Every transposed convolution but the output's is followed by (batch norm and) the
            // activation, with or without batch norm.
            if i + 1 < self.dec.len() {
                h = self.norm_act(h, &blk.bn, mode)?;
            }
        }
        if g.padded_height != g.height {
            h = h.narrow(2, 0, g.height)?;
        }
        if g.padded_width != g.width {
            h = h.narrow(3, 0, g.width)?;
        }
        Ok(h)
    }
}
