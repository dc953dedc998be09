//! Single-precision matrix product on strided views, a thin safe layer over the `gemm` crate
//! (the same GEMM candle's CPU matmul uses), with the thread policy decided by the caller.
use gemm::Parallelism;

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// A row-major matrix with `cols` contiguous elements per row.
    pub fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The same storage read as its transpose.
    pub fn t(self) -> Self {
        Self {
            data: self.data,
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
        }
    }

    fn check(&self) {
        if self.rows > 0 && self.cols > 0 {
            let last = (self.rows - 1) * self.rs + (self.cols - 1) * self.cs;
            assert!(last < self.data.len(), "matrix view out of bounds");
        }
    }
}

/// `dst[m, n] (row-major, row stride ld) (+)= a[m, k] * b[k, n]`.
/// `accumulate` adds to dst instead of overwriting; `threads > 1` lets the GEMM split the work
/// over the current rayon pool.
pub(crate) fn matmul(dst: &mut [f32], ld: usize, a: Mat, b: Mat, accumulate: bool, threads: usize) {
    matmul_strided(dst, ld, 1, a, b, accumulate, threads)
}

/// `dst (+)= a * b` with dst element (i, j) at `dst[i * rs + j * cs]`.
pub(crate) fn matmul_strided(
    dst: &mut [f32],
    rs: usize,
    cs: usize,
    a: Mat,
    b: Mat,
    accumulate: bool,
    threads: usize,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    a.check();
    b.check();
    if m == 0 || n == 0 {
        return;
    }
    assert!(
        (m - 1) * rs + (n - 1) * cs < dst.len(),
        "destination out of bounds"
    );
    let par = if threads > 1 {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: every view was bounds-checked above; dst does not alias a or b (distinct borrows).
    unsafe { gemm_into(dst.as_mut_ptr(), rs, cs, a, b, accumulate, par) }
}

/// `dst (+)= a * b` on one thread, with dst element (i, j) at `dst.add(i * rs + j * cs)`.
/// For callers that split one product's output over threads themselves (disjoint column or row
/// blocks of a shared destination).
///
/// # Safety
/// Every destination element addressed must be valid for writes and touched by no one else during
/// the call, and must not overlap `a` or `b`.
pub(crate) unsafe fn matmul_raw(dst: *mut f32, rs: usize, cs: usize, a: Mat, b: Mat, accumulate: bool) {
    // SAFETY: the same contract, passed on.
    unsafe { gemm_into(dst, rs, cs, a, b, accumulate, Parallelism::None) }
}

/// The one call into the gemm crate behind [`matmul`] and [`matmul_raw`]: `dst (+)= a * b`, with
/// dst element (i, j) at `dst.add(i * rs + j * cs)`; an empty inner dimension writes zeros.
///
/// # Safety
/// As for [`matmul_raw`].
unsafe fn gemm_into(dst: *mut f32, rs: usize, cs: usize, a: Mat, b: Mat, accumulate: bool, par: Parallelism) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "inner dimensions differ");
    a.check();
    b.check();
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                // SAFETY: element (r, j) of the destination, valid and ours by the contract.
                (0..n).for_each(|j| unsafe { *dst.add(r * rs + j * cs) = 0.0 });
            }
        }
        return;
    }
    // SAFETY: a and b were bounds-checked for their strides above and are read-only; the
    // destination elements are valid, unaliased and ours (the contract). The gemm crate reads
    // and writes exactly the m x n x k elements described by these sizes and strides, and
    // reads dst only when `accumulate` is set.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            cs as isize,
            rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

/// Splits `0..len` into at most `parts` contiguous, non-empty ranges of about equal size whose
/// inner boundaries are multiples of `align` (so each block keeps whole GEMM micro-tiles).
pub(crate) fn split_ranges(len: usize, parts: usize, align: usize) -> Vec<std::ops::Range<usize>> {
    let align = align.max(1);
    let parts = parts.clamp(1, len.div_ceil(align).max(1));
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    for p in 1..=parts {
        let end = if p == parts {
            len
        } else {
            ((len * p / parts).div_ceil(align) * align).min(len)
        };
        if end > start {
            out.push(start..end);
            start = end;
        }
    }
    if out.is_empty() {
        out.push(0..len);
    }
    out
}
