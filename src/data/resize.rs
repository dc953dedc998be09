//! Area-averaging resize (each output pixel is the mean of the input area it covers, with fractional
//! weights at the edges), done separably. Exact block means for integer factors (96 -> 48, 32) and
//! correct area weights otherwise (96 -> 64).

/// For each output index, the input indices it covers and their weights (summing to 1).
fn area_weights(n_in: usize, n_out: usize) -> Vec<Vec<(usize, f32)>> {
    let scale = n_in as f64 / n_out as f64;
    (0..n_out)
        .map(|j| {
            let (lo, hi) = (j as f64 * scale, (j + 1) as f64 * scale);
            let mut w = Vec::new();
            let mut i = lo.floor() as usize;
            while (i as f64) < hi && i < n_in {
                let overlap = (hi.min(i as f64 + 1.0) - lo.max(i as f64)).max(0.0);
                if overlap > 1e-12 {
                    w.push((i, (overlap / scale) as f32));
                }
                i += 1;
            }
            w
        })
        .collect()
}

/// A resize from `in_h x in_w` u8 planes to `out_h x out_w` f32 planes in [0, 1].
#[derive(Debug, Clone)]
pub struct AreaResize {
    in_h: usize,
    in_w: usize,
    out_h: usize,
    out_w: usize,
    rows: Vec<Vec<(usize, f32)>>,
    cols: Vec<Vec<(usize, f32)>>,
}

impl AreaResize {
    pub fn new(in_h: usize, in_w: usize, out_h: usize, out_w: usize) -> Self {
        Self {
            in_h,
            in_w,
            out_h,
            out_w,
            rows: area_weights(in_h, out_h),
            cols: area_weights(in_w, out_w),
        }
    }

    pub fn out_len(&self) -> usize {
        self.out_h * self.out_w
    }

    /// Resize one plane; `src` is `in_h * in_w` bytes, `dst` is `out_h * out_w` floats.
    pub fn apply(&self, src: &[u8], dst: &mut [f32]) {
        debug_assert_eq!(src.len(), self.in_h * self.in_w);
        debug_assert_eq!(dst.len(), self.out_len());
        const INV: f32 = 1.0 / 255.0;
        if self.in_h == self.out_h && self.in_w == self.out_w {
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = s as f32 * INV;
            }
            return;
        }
        // Horizontal pass into a [in_h, out_w] buffer, then vertical.
        let mut tmp = vec![0f32; self.in_h * self.out_w];
        for (src_row, tmp_row) in src.chunks_exact(self.in_w).zip(tmp.chunks_exact_mut(self.out_w)) {
            for (t, ws) in tmp_row.iter_mut().zip(&self.cols) {
                *t = ws.iter().map(|&(i, w)| src_row[i] as f32 * w).sum::<f32>() * INV;
            }
        }
        for (dst_row, ws) in dst.chunks_exact_mut(self.out_w).zip(&self.rows) {
            dst_row.fill(0.0);
            for &(i, w) in ws {
                let t = &tmp[i * self.out_w..(i + 1) * self.out_w];
                for (d, &v) in dst_row.iter_mut().zip(t) {
                    *d += w * v;
                }
            }
        }
        for d in dst.iter_mut() {
            *d = d.clamp(0.0, 1.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_factor_is_the_block_mean() {
        // 4x4 -> 2x2: each output is the mean of a 2x2 block.
        let src: Vec<u8> = (0..16).map(|i| (i * 10) as u8).collect();
        let mut dst = vec![0f32; 4];
        AreaResize::new(4, 4, 2, 2).apply(&src, &mut dst);
        let expect = [(10 + 40 + 50) as f32, 180.0, 420.0, 500.0].map(|s| s / 4.0 / 255.0);
        for (d, e) in dst.iter().zip(expect) {
            assert!((d - e).abs() < 1e-6, "{d} vs {e}");
        }
    }

    #[test]
    fn fractional_factor_uses_overlap_weights_and_preserves_the_mean() {
        // 3 -> 2 in one dimension: out0 = (a + b/2) / 1.5, out1 = (b/2 + c) / 1.5.
        let src = [30u8, 60, 90];
        let mut dst = vec![0f32; 2];
        AreaResize::new(1, 3, 1, 2).apply(&src, &mut dst);
        assert!(
            (dst[0] * 255.0 - 40.0).abs() < 1e-4 && (dst[1] * 255.0 - 80.0).abs() < 1e-4,
            "{dst:?}"
        );
        // 96 -> 64 keeps the image mean.
        let src: Vec<u8> = (0..96 * 96).map(|i| ((i * 37) % 256) as u8).collect();
        let mut dst = vec![0f32; 64 * 64];
        AreaResize::new(96, 96, 64, 64).apply(&src, &mut dst);
        let m_in = src.iter().map(|&v| v as f64).sum::<f64>() / (96.0 * 96.0 * 255.0);
        let m_out = dst.iter().map(|&v| v as f64).sum::<f64>() / (64.0 * 64.0);
        assert!((m_in - m_out).abs() < 1e-5, "{m_in} vs {m_out}");
    }

    #[test]
    fn same_size_is_a_plain_scale() {
        let mut dst = vec![0f32; 2];
        AreaResize::new(1, 2, 1, 2).apply(&[0, 255], &mut dst);
        assert_eq!(dst, vec![0.0, 1.0]);
    }
}
