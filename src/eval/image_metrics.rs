//! Pixel-space reconstruction quality: MSE, PSNR and SSIM for images with pixels in [0, 1].
//!
//! SSIM follows Wang, Bovik, Sheikh & Simoncelli (2004) as in their reference MATLAB code:
//! an 11x11 Gaussian window with sigma 1.5 (weights normalised to sum 1), statistics weighted
//! by that window (population form, no N/(N-1) correction), C1 = (0.01 L)^2 and C2 = (0.03 L)^2
//! with data range L = 1, evaluated at every position where the window fits inside the image
//! ('valid'), and averaged over positions. Multi-channel images (NORB's two views) are scored per
//! channel and averaged. `SsimWindow::Uniform(7)` gives scikit-image's default 7x7 box window
//! instead (again with population statistics).
use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum MetricError {
    #[error("image sets differ in size: {0} vs {1} values")]
    SizeMismatch(usize, usize),
    #[error("image of {height}x{width} pixels is smaller than the {window}x{window} SSIM window")]
    TooSmall {
        height: usize,
        width: usize,
        window: usize,
    },
    #[error("no images to score")]
    Empty,
}

/// Mean squared error over all values (pixels in [0, 1]).
pub fn mse(a: &[f32], b: &[f32]) -> Result<f64, MetricError> {
    if a.len() != b.len() {
        return Err(MetricError::SizeMismatch(a.len(), b.len()));
    }
    if a.is_empty() {
        return Err(MetricError::Empty);
    }
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = x as f64 - y as f64;
            d * d
        })
        .sum();
    Ok(s / a.len() as f64)
}

/// PSNR in dB for data range 1, from an MSE. Infinite for identical images.
pub fn psnr_from_mse(mse: f64) -> f64 {
    if mse <= 0.0 {
        f64::INFINITY
    } else {
        -10.0 * mse.log10()
    }
}

/// Mean over images of each image's PSNR (the convention of most VAE papers), layout [n, d].
pub fn mean_psnr(a: &[f32], b: &[f32], n: usize) -> Result<f64, MetricError> {
    if a.len() != b.len() {
        return Err(MetricError::SizeMismatch(a.len(), b.len()));
    }
    if n == 0 || a.is_empty() {
        return Err(MetricError::Empty);
    }
    let d = a.len() / n;
    let mut total = 0.0;
    for i in 0..n {
        let m = mse(&a[i * d..(i + 1) * d], &b[i * d..(i + 1) * d])?;
        // Cap identical images at 100 dB so one perfect image does not make the mean infinite.
        total += psnr_from_mse(m).min(100.0);
    }
    Ok(total / n as f64)
}

/// The SSIM window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SsimWindow {
    /// Wang et al. 2004: 11x11 Gaussian, sigma 1.5.
    Gaussian11,
    /// A box window of this side (scikit-image's default is 7).
    Uniform(usize),
}

impl SsimWindow {
    pub fn side(self) -> usize {
        match self {
            SsimWindow::Gaussian11 => 11,
            SsimWindow::Uniform(s) => s,
        }
    }

    /// Separable 1-D weights, summing to 1.
    fn weights_1d(self) -> Vec<f64> {
        match self {
            SsimWindow::Gaussian11 => {
                let sigma = 1.5f64;
                let w: Vec<f64> = (0..11)
                    .map(|i| {
                        let x = i as f64 - 5.0;
                        (-x * x / (2.0 * sigma * sigma)).exp()
                    })
                    .collect();
                let s: f64 = w.iter().sum();
                w.into_iter().map(|v| v / s).collect()
            }
            SsimWindow::Uniform(side) => vec![1.0 / side as f64; side],
        }
    }
}

const C1: f64 = 0.01 * 0.01;
const C2: f64 = 0.03 * 0.03;

/// 'valid' separable filtering of one [h, w] plane.
fn filter_valid(plane: &[f64], h: usize, w: usize, k: &[f64]) -> (Vec<f64>, usize, usize) {
    let s = k.len();
    let (oh, ow) = (h - s + 1, w - s + 1);
    let mut rows = vec![0.0; h * ow];
    for r in 0..h {
        for c in 0..ow {
            rows[r * ow + c] = (0..s).map(|j| k[j] * plane[r * w + c + j]).sum();
        }
    }
    let mut out = vec![0.0; oh * ow];
    for r in 0..oh {
        for c in 0..ow {
            out[r * ow + c] = (0..s).map(|i| k[i] * rows[(r + i) * ow + c]).sum();
        }
    }
    (out, oh, ow)
}

/// SSIM of one single-channel [h, w] pair.
pub fn ssim_plane(x: &[f32], y: &[f32], h: usize, w: usize, window: SsimWindow) -> Result<f64, MetricError> {
    if x.len() != y.len() || x.len() != h * w {
        return Err(MetricError::SizeMismatch(x.len(), y.len()));
    }
    let side = window.side();
    if h < side || w < side {
        return Err(MetricError::TooSmall {
            height: h,
            width: w,
            window: side,
        });
    }
    let k = window.weights_1d();
    let xf: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let yf: Vec<f64> = y.iter().map(|&v| v as f64).collect();
    let xx: Vec<f64> = xf.iter().map(|v| v * v).collect();
    let yy: Vec<f64> = yf.iter().map(|v| v * v).collect();
    let xy: Vec<f64> = xf.iter().zip(&yf).map(|(a, b)| a * b).collect();
    let (mx, oh, ow) = filter_valid(&xf, h, w, &k);
    let (my, _, _) = filter_valid(&yf, h, w, &k);
    let (exx, _, _) = filter_valid(&xx, h, w, &k);
    let (eyy, _, _) = filter_valid(&yy, h, w, &k);
    let (exy, _, _) = filter_valid(&xy, h, w, &k);
    let mut total = 0.0;
    for i in 0..oh * ow {
        let (ux, uy) = (mx[i], my[i]);
        let vx = exx[i] - ux * ux;
        let vy = eyy[i] - uy * uy;
        let cxy = exy[i] - ux * uy;
        total += ((2.0 * ux * uy + C1) * (2.0 * cxy + C2)) / ((ux * ux + uy * uy + C1) * (vx + vy + C2));
    }
    Ok(total / (oh * ow) as f64)
}

/// Mean SSIM over `n` images of layout [n, channels, h, w] (channels averaged within an image).
pub fn mean_ssim(
    x: &[f32],
    y: &[f32],
    n: usize,
    channels: usize,
    h: usize,
    w: usize,
    window: SsimWindow,
) -> Result<f64, MetricError> {
    if x.len() != y.len() || x.len() != n * channels * h * w {
        return Err(MetricError::SizeMismatch(x.len(), y.len()));
    }
    if n == 0 || channels == 0 {
        return Err(MetricError::Empty);
    }
    use rayon::prelude::*;
    let plane = h * w;
    let scores: Result<Vec<f64>, MetricError> = (0..n * channels)
        .into_par_iter()
        .map(|p| {
            let r = p * plane..(p + 1) * plane;
            ssim_plane(&x[r.clone()], &y[r], h, w, window)
        })
        .collect();
    Ok(scores?.iter().sum::<f64>() / (n * channels) as f64)
}

/// MSE, mean per-image PSNR and mean SSIM of reconstructions against originals.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReconQuality {
    pub mse: f64,
    pub psnr: f64,
    pub ssim: f64,
}

pub fn recon_quality(
    originals: &[f32],
    recons: &[f32],
    n: usize,
    channels: usize,
    h: usize,
    w: usize,
) -> Result<ReconQuality, MetricError> {
    let window = if h >= 11 && w >= 11 {
        SsimWindow::Gaussian11
    } else {
        SsimWindow::Uniform(h.min(w).min(7))
    };
    Ok(ReconQuality {
        mse: mse(originals, recons)?,
        psnr: mean_psnr(originals, recons, n)?,
        ssim: mean_ssim(originals, recons, n, channels, h, w, window)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkerboard(side: usize) -> Vec<f32> {
        (0..side * side)
            .map(|i| {
                if (i / side + i % side).is_multiple_of(2) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect()
    }

    #[test]
    fn ssim_of_checkerboard_against_grey_matches_hand_computation_uniform_window() {
        // 7x7 checkerboard: 25 ones, 24 zeros, against a constant 0.5 image; one window position.
        // mu_x = 25/49, var_x = (25/49)(24/49) = 600/2401, mu_y = 0.5, var_y = 0, cov = 0:
        // SSIM = (2*mu_x*0.5 + C1)/(mu_x^2 + 0.25 + C1) * C2/(var_x + C2)
        //      = (0.5102041 + 1e-4)/(0.2603082 + 0.25 + 1e-4) * 9e-4/(0.2498959 + 9e-4)
        //      = 0.9997960 * 0.0035886 = 0.0035878
        let x = checkerboard(7);
        let y = vec![0.5f32; 49];
        let s = ssim_plane(&x, &y, 7, 7, SsimWindow::Uniform(7)).unwrap();
        assert!((s - 0.0035878).abs() < 2e-7, "ssim {s}");
        // Shifting the brightness of the image keeps contrast-structure 1; only luminance moves:
        // x vs x/2 + 0.25: mu_y = 0.5051020, var_y = var_x/4, cov = var_x/2
        // luminance (2*0.5102041*0.5051020+1e-4)/(0.2603082+0.2551281+1e-4) = 0.5155102/0.5155363
        //   = 0.9999495; cs (2*cov + C2)/(var_x + var_x/4 + C2) = 0.2507959/0.3132699 = 0.8005746
        let y2: Vec<f32> = x.iter().map(|v| v * 0.5 + 0.25).collect();
        let s2 = ssim_plane(&x, &y2, 7, 7, SsimWindow::Uniform(7)).unwrap();
        assert!((s2 - 0.9999495 * 0.8005746).abs() < 2e-6, "ssim {s2}");
    }

    #[test]
    fn ssim_gaussian_window_constant_images_and_identity() {
        // Constant images: every variance is 0, so SSIM = (2ab + C1)/(a^2 + b^2 + C1) at every position.
        // a = 0.2, b = 0.6: (0.24 + 1e-4)/(0.04 + 0.36 + 1e-4) = 0.2401/0.4001 = 0.6000999...
        let x = vec![0.2f32; 12 * 13];
        let y = vec![0.6f32; 12 * 13];
        let s = ssim_plane(&x, &y, 12, 13, SsimWindow::Gaussian11).unwrap();
        assert!((s - 0.2401 / 0.4001).abs() < 1e-6, "ssim {s}");
        let z = checkerboard(16);
        assert!((ssim_plane(&z, &z, 16, 16, SsimWindow::Gaussian11).unwrap() - 1.0).abs() < 1e-12);
        let inv: Vec<f32> = z.iter().map(|v| 1.0 - v).collect();
        assert!(ssim_plane(&z, &inv, 16, 16, SsimWindow::Gaussian11).unwrap() < -0.9);
        assert_eq!(
            ssim_plane(&z[..100], &z[..100], 10, 10, SsimWindow::Gaussian11),
            Err(MetricError::TooSmall {
                height: 10,
                width: 10,
                window: 11
            })
        );
    }

    #[test]
    fn mse_and_psnr() {
        let a = [0.0f32, 0.5, 1.0, 0.25];
        let b = [0.1f32, 0.5, 0.8, 0.25];
        let m = mse(&a, &b).unwrap();
        assert!((m - (0.01 + 0.04) / 4.0).abs() < 1e-7);
        assert!((psnr_from_mse(0.01) - 20.0).abs() < 1e-12);
        assert!(mse(&a, &b[..3]).is_err());
        // Two images of two pixels: per-image MSEs 0.005 and 0.02 -> PSNR mean of 23.0103 and 16.9897 = 20.
        assert!((mean_psnr(&a, &b, 2).unwrap() - 20.0).abs() < 1e-4);
    }
}
