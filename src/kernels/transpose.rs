//! Strided matrix transpose with an AVX 8x8 in-register kernel: the dense blocks keep their
//! pre-activations feature-major (the gemm crate's faster order for their forward product, and
//! batch norm reads each feature's batch as one contiguous row) while candle sees batch-major
//! tensors; this converts between the two at memory speed. The conv kernels' pixel-major
//! gathers use it too.

/// `dst[c * dst_ld + r] = src[r * src_ld + c]` for r < rows, c < cols.
pub(crate) fn transpose_into(
    src: &[f32],
    src_ld: usize,
    rows: usize,
    cols: usize,
    dst: &mut [f32],
    dst_ld: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        src_ld >= cols && dst_ld >= rows,
        "transpose: leading dimension too small"
    );
    assert!(
        (rows - 1) * src_ld + cols <= src.len(),
        "transpose: source out of bounds"
    );
    assert!(
        (cols - 1) * dst_ld + rows <= dst.len(),
        "transpose: destination out of bounds"
    );
    // SAFETY: bounds checked above.
    unsafe { transpose_raw(src.as_ptr(), src_ld, rows, cols, dst.as_mut_ptr(), dst_ld) }
}

/// [`transpose_into`] on raw pointers, for threads that write disjoint columns of one matrix.
///
/// # Safety
/// Every `src[r * src_ld + c]` read and `dst[c * dst_ld + r]` written must be in bounds, and no
/// one else may access the written elements meanwhile.
pub(crate) unsafe fn transpose_raw(
    src: *const f32,
    src_ld: usize,
    rows: usize,
    cols: usize,
    dst: *mut f32,
    dst_ld: usize,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the caller's contract; the CPU has AVX.
            unsafe { transpose_avx(src, src_ld, rows, cols, dst, dst_ld) };
            return;
        }
    }
    // SAFETY: the caller's contract.
    unsafe { transpose_scalar(src, src_ld, 0..rows, 0..cols, dst, dst_ld) };
}

/// # Safety
/// As for [`transpose_raw`].
unsafe fn transpose_scalar(
    src: *const f32,
    src_ld: usize,
    rows: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
    dst: *mut f32,
    dst_ld: usize,
) {
    const T: usize = 16;
    for r0 in rows.clone().step_by(T) {
        for c0 in cols.clone().step_by(T) {
            for r in r0..(r0 + T).min(rows.end) {
                for c in c0..(c0 + T).min(cols.end) {
                    // SAFETY: r < rows and c < cols: in bounds by the caller's contract.
                    unsafe { *dst.add(c * dst_ld + r) = *src.add(r * src_ld + c) };
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn transpose_avx(s: *const f32, src_ld: usize, rows: usize, cols: usize, d: *mut f32, dst_ld: usize) {
    use std::arch::x86_64::*;
    let (r8, c8) = (rows / 8 * 8, cols / 8 * 8);
    // Tiles of 32 columns keep the eight destination rows being written few and hot.
    for c0 in (0..c8).step_by(32) {
        for r in (0..r8).step_by(8) {
            for c in (c0..(c0 + 32).min(c8)).step_by(8) {
                // SAFETY: r + 8 <= rows and c + 8 <= cols: inside the caller's bounds.
                unsafe {
                    let p = s.add(r * src_ld + c);
                    let a0 = _mm256_loadu_ps(p);
                    let a1 = _mm256_loadu_ps(p.add(src_ld));
                    let a2 = _mm256_loadu_ps(p.add(2 * src_ld));
                    let a3 = _mm256_loadu_ps(p.add(3 * src_ld));
                    let a4 = _mm256_loadu_ps(p.add(4 * src_ld));
                    let a5 = _mm256_loadu_ps(p.add(5 * src_ld));
                    let a6 = _mm256_loadu_ps(p.add(6 * src_ld));
                    let a7 = _mm256_loadu_ps(p.add(7 * src_ld));
                    let t0 = _mm256_unpacklo_ps(a0, a1);
                    let t1 = _mm256_unpackhi_ps(a0, a1);
                    let t2 = _mm256_unpacklo_ps(a2, a3);
                    let t3 = _mm256_unpackhi_ps(a2, a3);
                    let t4 = _mm256_unpacklo_ps(a4, a5);
                    let t5 = _mm256_unpackhi_ps(a4, a5);
                    let t6 = _mm256_unpacklo_ps(a6, a7);
                    let t7 = _mm256_unpackhi_ps(a6, a7);
                    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
                    let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
                    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
                    let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
                    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
                    let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
                    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
                    let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
                    let q = d.add(c * dst_ld + r);
                    _mm256_storeu_ps(q, _mm256_permute2f128_ps::<0x20>(u0, u4));
                    _mm256_storeu_ps(q.add(dst_ld), _mm256_permute2f128_ps::<0x20>(u1, u5));
                    _mm256_storeu_ps(q.add(2 * dst_ld), _mm256_permute2f128_ps::<0x20>(u2, u6));
                    _mm256_storeu_ps(q.add(3 * dst_ld), _mm256_permute2f128_ps::<0x20>(u3, u7));
                    _mm256_storeu_ps(q.add(4 * dst_ld), _mm256_permute2f128_ps::<0x31>(u0, u4));
                    _mm256_storeu_ps(q.add(5 * dst_ld), _mm256_permute2f128_ps::<0x31>(u1, u5));
                    _mm256_storeu_ps(q.add(6 * dst_ld), _mm256_permute2f128_ps::<0x31>(u2, u6));
                    _mm256_storeu_ps(q.add(7 * dst_ld), _mm256_permute2f128_ps::<0x31>(u3, u7));
                }
            }
        }
    }
    // The ragged right and bottom edges.
    // SAFETY: sub-ranges of the caller's rows and columns.
    unsafe {
        transpose_scalar(s, src_ld, 0..rows, c8..cols, d, dst_ld);
        transpose_scalar(s, src_ld, r8..rows, 0..c8, d, dst_ld);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transposes_every_shape_and_stride() {
        for (rows, cols) in [
            (1, 1),
            (1, 9),
            (9, 1),
            (8, 8),
            (16, 24),
            (13, 29),
            (128, 500),
            (33, 8),
        ] {
            for pad in [0, 3] {
                let (sld, dld) = (cols + pad, rows + 2 * pad);
                let src: Vec<f32> = (0..rows * sld).map(|v| v as f32).collect();
                let mut dst = vec![-1f32; cols * dld];
                transpose_into(&src, sld, rows, cols, &mut dst, dld);
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(
                            dst[c * dld + r],
                            src[r * sld + c],
                            "{rows}x{cols} pad {pad} at ({r}, {c})"
                        );
                    }
                }
                // Padding columns of the destination are left alone.
                for c in 0..cols {
                    assert!(dst[c * dld + rows..c * dld + dld].iter().all(|&v| v == -1.0));
                }
            }
        }
    }
}
