//! The machine's single-precision FMA peak per core, measured: the yardstick for "what fraction
//! of the machine do the training steps use" in `norbvae bench`.
//!
//! Twelve independent chains of fused multiply-adds keep both FMA pipes of a core busy (latency
//! 4 x 2 pipes needs at least 8 in flight). On AVX-512 CPUs the chains are 16 lanes wide (32
//! FLOPs per FMA), since the GEMM then runs AVX-512 micro-kernels (the `gemm` crate's `x86-v4`
//! feature); elsewhere 8 lanes (16 FLOPs). Whether a 512-bit FMA is worth one or two 256-bit
//! ones (Zen 4 splits them, many Xeons do not) is what the measurement finds out.

/// The widest FMA vectors this CPU offers, as the peak measures them: "AVX-512", "AVX2" or "none".
pub fn fma_isa() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "AVX-512";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return "AVX2";
        }
    }
    "none"
}

/// Measured single-thread f32 FMA throughput in GFLOP/s (about `millis` of work, best of three
/// tries), or `None` on CPUs without AVX2 and FMA.
pub fn fma_peak_gflops(millis: u64) -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports the enabled feature.
            return Some(best_of_three(millis, 32.0, |iters| unsafe {
                fma_chains_512(iters)
            }));
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the enabled features.
            return Some(best_of_three(millis, 16.0, |iters| unsafe { fma_chains(iters) }));
        }
    }
    let _ = millis;
    None
}

/// GFLOP/s of `chains(iters)` (12 FMAs of `flops_per_fma` per iteration), best of three runs of
/// about `millis / 3` each.
#[cfg(target_arch = "x86_64")]
fn best_of_three(millis: u64, flops_per_fma: f64, chains: impl Fn(u64) -> f32) -> f64 {
    let mut best = 0f64;
    for _ in 0..3 {
        let iters = 1u64 << 20;
        let mut done = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed().as_millis() < (millis / 3).max(1) as u128 {
            std::hint::black_box(chains(iters));
            done += iters;
        }
        let secs = start.elapsed().as_secs_f64();
        best = best.max(done as f64 * 12.0 * flops_per_fma / secs / 1e9);
    }
    best
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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_chains_512(iters: u64) -> f32 {
    use std::arch::x86_64::*;
    let mul = _mm512_set1_ps(std::hint::black_box(0.999_999));
    let add = _mm512_set1_ps(std::hint::black_box(1e-6));
    let mut acc: [__m512; 12] = std::array::from_fn(|i| _mm512_set1_ps(std::hint::black_box(i as f32)));
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, mul, add);
        }
    }
    let mut total = _mm512_setzero_ps();
    for a in acc {
        total = _mm512_add_ps(total, a);
    }
    _mm512_reduce_add_ps(total)
}

#[cfg(test)]
mod tests {
    #[test]
    fn peak_is_a_plausible_figure() {
        if let Some(g) = super::fma_peak_gflops(30) {
            // Any AVX2 core of the last decade: 1 to 8 GHz times 16-32 FLOPs per cycle (64 with
            // two AVX-512 FMA units).
            assert!(g > 5.0 && g < 600.0, "{g} GFLOP/s");
        }
    }
}
