//! Units shared by every likelihood in norbvae: PPCA, and every continuous-decoder VAE.
//!
//! # The dequantization convention
//!
//! Pixels are 8-bit integers `k` in `0..=255`, stored as `x = k / 255` in `[0, 1]` (the data layer's
//! scaling). Models with a continuous density `p(x)` over `R^D` are evaluated at those `x` and their
//! negative log-likelihood is reported in **nats per image**: `nll = -ln p(x)`.
//!
//! To put a density on the same axis as a discrete model (and as the literature's bits/dim), the
//! probability of the 8-bit image is taken as the density times the volume of the image's
//! quantization bin. On the `k / 255` grid neighbouring levels are `1/255` apart, so each pixel's
//! bin has width `1/255` and
//!
//! ```text
//! P(k) ~= p(x) * (1/255)^D
//! -log2 P(k) = (nll + D ln 255) / ln 2
//! bits/dim  = (nll + D ln 255) / (D ln 2) = nll / (D ln 2) + log2(255)
//! ```
//!
//! This equals the usual flow convention (density over `y = 255 x`, i.e. raw 0..255 pixel units,
//! `bits/dim = -log2 p_Y(y) / D`) because `p_Y(y) = p(x) / 255^D`. It is an exact change of units
//! for any density; it is a faithful bound on the discrete likelihood when the density is nearly
//! constant across a bin (or when the model was trained with uniform noise of width 1/255), and it
//! can go below 0 bits/dim for a density that piles up on exact pixel values (a decoder variance far
//! below the bin width), which is a sign of overfitting the quantization, not of a good model.
use std::f64::consts::LN_2;

/// Number of intensity levels of the source pixels.
pub const PIXEL_LEVELS: u32 = 256;

/// Width of one quantization bin in the `[0, 1]` pixel scale used everywhere (`k / 255`).
pub const BIN_WIDTH: f64 = 1.0 / 255.0;

/// Bits per dimension of an image's negative log-density `nll_nats` (nats per image, density over
/// `[0,1]`-scaled pixels), for `d` pixels per image. See the module docs for the convention.
pub fn bits_per_dim(nll_nats: f64, d: usize) -> f64 {
    let d = d as f64;
    (nll_nats - d * BIN_WIDTH.ln()) / (d * LN_2)
}

/// Bits per dimension of a probability mass over the 8-bit levels (the discretized logistic):
/// `nll_nats` is already -ln P(k) of the image, so no bin volume is added.
pub fn discrete_bits_per_dim(nll_nats: f64, d: usize) -> f64 {
    nll_nats / (d as f64 * LN_2)
}

/// Peak signal-to-noise ratio in dB for a mean squared error on pixels in `[0, 1]`.
pub fn psnr(mse: f64) -> f64 {
    if mse <= 0.0 {
        f64::INFINITY
    } else {
        -10.0 * mse.log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_per_dim_matches_uniform_density_and_bin_counting() {
        // The uniform density on [0,1]^D has nll 0 and gives each image probability (1/255)^D
        // under the convention: log2(255) bits per pixel.
        let d = 784;
        assert!((bits_per_dim(0.0, d) - 255f64.log2()).abs() < 1e-12);
        // A density 255^D times higher than uniform puts all mass in one bin: 0 bits.
        let nll = -(d as f64) * 255f64.ln();
        assert!(bits_per_dim(nll, d).abs() < 1e-9);
        // Linear in nll with slope 1/(D ln 2).
        let a = bits_per_dim(100.0, d) - bits_per_dim(0.0, d);
        assert!((a - 100.0 / (d as f64 * LN_2)).abs() < 1e-12);
        assert!((psnr(0.01) - 20.0).abs() < 1e-12);
        // A mass putting 1/256 on every level: exactly 8 bits per pixel.
        assert!((discrete_bits_per_dim(d as f64 * 256f64.ln(), d) - 8.0).abs() < 1e-12);
    }
}
