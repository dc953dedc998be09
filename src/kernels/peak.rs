//! The machine's single-precision FMA peak per core, measured: the yardstick for "what fraction
//! of the machine do the training steps use" in `norbvae bench`.
//!
//! Twelve independent chains of 8-lane fused multiply-adds keep both FMA pipes of an AVX2 core
//! busy (latency 4 x 2 pipes needs at least 8 in flight); each FMA counts 16 FLOPs.

/// Measured single-thread f32 FMA throughput in GFLOP/s (about `millis` of work, best of three
/// tries), or `None` on CPUs without AVX2 and FMA.
pub fn fma_peak_gflops(millis: u64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            let mut best = 0f64;
            for _ in 0..3 {
                let iters = 1u64 << 20;
                let mut done = 0u64;
                let start = std::time::Instant::now();
                while start.elapsed().as_millis() < (millis / 3).max(1) as u128 {
                    // SAFETY: the CPU supports the enabled features.
                    std::hint::black_box(unsafe { fma_chains(iters) });
                    done += iters;
                }
                let secs = start.elapsed().as_secs_f64();
                best = best.max(done as f64 * 12.0 * 16.0 / secs / 1e9);
            }
            return Some(best);
        }
    }
    let _ = millis;
    None
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    // Opaque operands and distinct starting values, so the compiler can neither fold the
    // chains into one nor compute them ahead.
    let mul = _mm256_set1_ps(std::hint::black_box(0.999_999));
    let add = _mm256_set1_ps(std::hint::black_box(1e-6));
    let mut acc: [__m256; 12] = std::array::from_fn(|i| _mm256_set1_ps(std::hint::black_box(i as f32)));
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm256_fmadd_ps(*a, mul, add);
        }
    }
    let mut out = [0f32; 8];
    let mut total = _mm256_setzero_ps();
    for a in acc {
        total = _mm256_add_ps(total, a);
    }
    // SAFETY: `out` holds 8 floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), total) };
    out.iter().sum()
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_is_a_plausible_figure() {
        if let Some(g) = super::fma_peak_gflops(30) {
            // Any AVX2 core of the last decade: 1 to 8 GHz times 16-32 FLOPs per cycle.
            assert!(g > 5.0 && g < 400.0, "{g} GFLOP/s");
        }
    }
}
