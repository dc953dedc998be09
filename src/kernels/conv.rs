//! 2-D convolution and transposed convolution (NCHW, f32, CPU) as im2row/row2im + GEMM,
//! forward and both backward passes, as candle custom ops so candle's autograd uses them.
//!
//! Work is split over groups of images: each group's im2row matrix is sized to stay in cache,
//! groups run in parallel on the current rayon pool, and each group does one GEMM whose columns
//! are all the output pixels of its images (so deep layers with 1x1 or 2x2 outputs still get a
//! wide GEMM). Weight gradients are summed per thread and reduced once.
use super::conv3x3;
use super::gemm::{matmul, matmul_strided, Mat};
use super::taps::{backward_on_live_taps, forward_on_live_taps};
use super::transpose::transpose_into;
use super::util::{
    f32_data, filled_vec, plan_groups, profiled, run_groups, sum, with_f32, with_scratch, SyncPtr,
};
use candle_core::{bail, CpuStorage, CustomOp3, Layout, Result, Shape, Tensor};

/// Geometry of a convolution from an image [c, h, w] to an output map [ho, wo].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geom {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
    pub ho: usize,
    pub wo: usize,
}

impl Geom {
    pub(super) fn conv(
        c: usize,
        h: usize,
        w: usize,
        kh: usize,
        kw: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        if stride == 0 {
            bail!("convolution stride must be at least 1");
        }
        if h + 2 * pad < kh || w + 2 * pad < kw {
            bail!("convolution kernel {kh}x{kw} larger than padded input {h}x{w} (+{pad})");
        }
        let ho = (h + 2 * pad - kh) / stride + 1;
        let wo = (w + 2 * pad - kw) / stride + 1;
        Ok(Self {
            c,
            h,
            w,
            kh,
            kw,
            stride,
            pad,
            ho,
            wo,
        })
    }

    /// Rows of the im2col matrix.
    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output pixels per image.
    fn p(&self) -> usize {
        self.ho * self.wo
    }

    fn img(&self) -> usize {
        self.c * self.h * self.w
    }
}

/// Writes image `img` [c, h, w] as `p` rows of `rows` [p, k] (one row per output pixel, the
/// receptive field in weight order (ci, ki, kj)): "im2row". Each kernel row is a contiguous run
/// of the input, so the copy moves `kw` floats at a time; the GEMMs on this layout are also the
/// fast orientation for the `gemm` crate when channels are few and pixels many.
fn im2row(img: &[f32], g: &Geom, rows: &mut [f32]) {
    // The VAEs' kernels are 4 wide: with the width known at compile time each kernel row is one
    // 16-byte move instead of a call to memcpy (im2row and row2im were 18% of the conv step).
    match g.kw {
        4 => im2row_kw::<4>(img, g, rows),
        _ => im2row_kw::<0>(img, g, rows),
    }
}

/// `im2row` for kernel width `KW` (0: the geometry's width, known only at run time).
fn im2row_kw<const KW: usize>(img: &[f32], g: &Geom, rows: &mut [f32]) {
    let (s, p, k) = (g.stride as isize, g.pad as isize, g.k());
    let kw = if KW > 0 { KW } else { g.kw };
    let (h, w) = (g.h as isize, g.w as isize);
    for oy in 0..g.ho {
        for ox in 0..g.wo {
            let r = &mut rows[(oy * g.wo + ox) * k..(oy * g.wo + ox + 1) * k];
            let ix0 = ox as isize * s - p;
            let inside_x = ix0 >= 0 && ix0 + kw as isize <= w;
            for ci in 0..g.c {
                for ki in 0..g.kh {
                    let iy = oy as isize * s + ki as isize - p;
                    let d = &mut r[(ci * g.kh + ki) * kw..(ci * g.kh + ki + 1) * kw];
                    if iy < 0 || iy >= h {
                        d.fill(0.0);
                        continue;
                    }
                    let src = &img[(ci * g.h + iy as usize) * g.w..(ci * g.h + iy as usize + 1) * g.w];
                    if inside_x {
                        d.copy_from_slice(&src[ix0 as usize..ix0 as usize + kw]);
                    } else {
                        for (kj, dv) in d.iter_mut().enumerate() {
                            let ix = ix0 + kj as isize;
                            *dv = if ix >= 0 && ix < w { src[ix as usize] } else { 0.0 };
                        }
                    }
                }
            }
        }
    }
}

/// Adds `rows` [p, k] back into image `img` [c, h, w] (the adjoint of `im2row`).
fn row2im(rows: &[f32], g: &Geom, img: &mut [f32]) {
    match g.kw {
        4 => row2im_kw::<4>(rows, g, img),
        _ => row2im_kw::<0>(rows, g, img),
    }
}

/// `row2im` for kernel width `KW` (0: known only at run time), as `im2row_kw`.
fn row2im_kw<const KW: usize>(rows: &[f32], g: &Geom, img: &mut [f32]) {
    let (s, p, k) = (g.stride as isize, g.pad as isize, g.k());
    let kw = if KW > 0 { KW } else { g.kw };
    let (h, w) = (g.h as isize, g.w as isize);
    for oy in 0..g.ho {
        for ox in 0..g.wo {
            let r = &rows[(oy * g.wo + ox) * k..(oy * g.wo + ox + 1) * k];
            let ix0 = ox as isize * s - p;
            let inside_x = ix0 >= 0 && ix0 + kw as isize <= w;
            for ci in 0..g.c {
                for ki in 0..g.kh {
                    let iy = oy as isize * s + ki as isize - p;
                    if iy < 0 || iy >= h {
                        continue;
                    }
                    let sr = &r[(ci * g.kh + ki) * kw..(ci * g.kh + ki + 1) * kw];
                    let d = &mut img[(ci * g.h + iy as usize) * g.w..(ci * g.h + iy as usize + 1) * g.w];
                    if inside_x {
                        for (dv, sv) in d[ix0 as usize..ix0 as usize + kw].iter_mut().zip(sr) {
                            *dv += *sv;
                        }
                    } else {
                        for (kj, sv) in sr.iter().enumerate() {
                            let ix = ix0 + kj as isize;
                            if ix >= 0 && ix < w {
                                d[ix as usize] += *sv;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `dst[(i * p + q) * chans + ch] = src[(i * chans + ch) * p + q]`: a group's maps
/// [gn, chans, p] as one pixel-major matrix [gn * p, chans], optionally adding per-channel sums.
fn gather_pixels(src: &[f32], chans: usize, p: usize, dst: &mut [f32], sums: Option<&mut [f32]>) {
    let gn = src.len() / (chans * p);
    if let Some(sums) = sums {
        for i in 0..gn {
            for ch in 0..chans {
                sums[ch] += sum(&src[(i * chans + ch) * p..(i * chans + ch + 1) * p]) as f32;
            }
        }
    }
    if p == 1 {
        dst[..src.len()].copy_from_slice(src);
        return;
    }
    for i in 0..gn {
        let s = &src[i * chans * p..(i + 1) * chans * p];
        let d = &mut dst[i * p * chans..(i + 1) * p * chans];
        transpose_into(s, p, chans, p, d, chans);
    }
}

/// Inverse of `gather_pixels`, adding a per-channel bias.
fn scatter_pixels(src: &[f32], chans: usize, p: usize, bias: Option<&[f32]>, dst: &mut [f32]) {
    let gn = dst.len() / (chans * p);
    for i in 0..gn {
        let s = &src[i * p * chans..(i + 1) * p * chans];
        let d = &mut dst[i * chans * p..(i + 1) * chans * p];
        transpose_into(s, chans, p, chans, d, p);
        if let Some(bias) = bias {
            for (dc, &b) in d.chunks_exact_mut(p).zip(bias) {
                dc.iter_mut().for_each(|v| *v += b);
            }
        }
    }
}

/// The transpose of a row-major [rows, cols] matrix.
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    transpose_into(a, cols, rows, cols, &mut out, rows);
    out
}

/// Image groups for a backward pass whose weight gradient is `chans x k` over `n` images of `p`
/// output pixels. Parallel groups each accumulate a private weight gradient, merged at the end:
/// for the deep layers, where that gradient is as large as the im2row data of the whole batch
/// (conv 256->512 at 2x2: 2M floats against 64 pixels x 4096), zero-filling, accumulating and
/// merging one copy per thread cost more than the parallel copy saves, so those run as one group
/// whose GEMMs use every thread (one accumulator, split by output columns).
fn plan_grad_groups(n: usize, p: usize, k: usize, chans: usize) -> (usize, usize) {
    let threads = rayon::current_num_threads();
    if threads > 1 && 2 * chans >= n * p {
        (n.max(1), 1)
    } else {
        plan_groups(n, k * p + chans * p, threads)
    }
}

type GradAcc = (Vec<f32>, Vec<f32>);

fn merge_grads(mut a: GradAcc, b: GradAcc) -> GradAcc {
    super::util::add_into(&mut a.0, &b.0);
    super::util::add_into(&mut a.1, &b.1);
    a
}

/// Shapes of a convolution call: batch, geometry over the input image, output channels.
struct ConvDims {
    n: usize,
    g: Geom,
    o: usize,
}

fn conv2d_dims(x: &Shape, w: &Shape, b: &Shape, stride: usize, pad: usize) -> Result<ConvDims> {
    let (n, c, h, wd) = x.dims4()?;
    let (o, wc, kh, kw) = w.dims4()?;
    if wc != c {
        bail!("conv2d: input has {c} channels but the kernel expects {wc}");
    }
    if b.dims() != [o] {
        bail!("conv2d: bias shape {b:?}, expected [{o}]");
    }
    Ok(ConvDims {
        n,
        g: Geom::conv(c, h, wd, kh, kw, stride, pad)?,
        o,
    })
}

/// Geometry of a transposed convolution, stated as the convolution it is the adjoint of:
/// that convolution maps the output image [co, ho, wo] back to the input's spatial size.
fn conv_t_dims(x: &Shape, w: &Shape, b: &Shape, stride: usize, pad: usize) -> Result<(usize, usize, Geom)> {
    let (n, ci, hi, wi) = x.dims4()?;
    let (wci, co, kh, kw) = w.dims4()?;
    if wci != ci {
        bail!("conv_transpose2d: input has {ci} channels but the kernel expects {wci}");
    }
    if b.dims() != [co] {
        bail!("conv_transpose2d: bias shape {b:?}, expected [{co}]");
    }
    if stride == 0 || (hi - 1) * stride + kh < 2 * pad + 1 || (wi - 1) * stride + kw < 2 * pad + 1 {
        bail!("conv_transpose2d: empty output for input {hi}x{wi}, kernel {kh}x{kw}, stride {stride}, pad {pad}");
    }
    let ho = (hi - 1) * stride + kh - 2 * pad;
    let wo = (wi - 1) * stride + kw - 2 * pad;
    let g = Geom::conv(co, ho, wo, kh, kw, stride, pad)?;
    if g.ho != hi || g.wo != wi {
        bail!("conv_transpose2d: geometry does not invert (input {hi}x{wi}, output {ho}x{wo})");
    }
    Ok((n, ci, g))
}

// ---------------------------------------------------------------------------------------------
// conv2d

/// A batch output of `n` images of `img` floats each, filled group by group: `fill` gets the
/// group's image range, its thread count, the group's output slice and a scratch buffer of
/// `per_image` floats per image, and must write every element of its slice (no zero-fill first).
///
/// # Safety
/// The output slice `fill` gets is uninitialised: `fill` must write every element of it and
/// read none before writing it (as for [`filled_vec`]).
pub(super) unsafe fn fill_by_image_groups(
    n: usize,
    img: usize,
    per_image: usize,
    fill: impl Fn(std::ops::Range<usize>, usize, &mut [f32], &mut [f32]) + Sync + Send,
) -> Vec<f32> {
    let (gsz, groups) = plan_groups(n, per_image, rayon::current_num_threads());
    let fill_groups = |yp: SyncPtr| {
        run_groups(
            groups,
            || (),
            |_, gi, threads| {
                let (n0, n1) = (gi * gsz, ((gi + 1) * gsz).min(n));
                // SAFETY: images n0..n1 <= n of the n * img buffer, this group's alone; `fill`
                // writes them before reading (this function's contract).
                let yg = unsafe { yp.slice(n0 * img, (n1 - n0) * img) };
                with_scratch(per_image * (n1 - n0), |buf| fill(n0..n1, threads, yg, buf));
            },
            |_, _| (),
        );
    };
    // SAFETY: the groups cover images 0..n (groups * gsz >= n), and `fill` writes every element
    // of each group's slice (this function's contract).
    unsafe { filled_vec(n * img, fill_groups) }
}

fn conv2d_forward(x: &[f32], w: &[f32], b: &[f32], d: &ConvDims) -> Vec<f32> {
    let ConvDims { n, g, o } = *d;
    let (k, p) = (g.k(), g.p());
    let fill = |imgs: std::ops::Range<usize>, threads: usize, yg: &mut [f32], buf: &mut [f32]| {
        let ld = imgs.len() * p;
        let (rows, out) = buf.split_at_mut(k * ld);
        for (j, i) in imgs.enumerate() {
            im2row(
                &x[i * g.img()..(i + 1) * g.img()],
                &g,
                &mut rows[j * p * k..(j + 1) * p * k],
            );
        }
        matmul(
            out,
            o,
            Mat::rows(rows, ld, k),
            Mat::rows(w, o, k).t(),
            false,
            threads,
        );
        scatter_pixels(out, o, p, Some(b), yg);
    };
    // SAFETY: `scatter_pixels` writes every element of `yg` (the transpose of the group's
    // [pixels, o] product, every pixel of every channel of every image) before adding the bias.
    unsafe { fill_by_image_groups(n, o * p, k * p + o * p, fill) }
}

/// Gradients of conv2d: (dx if wanted, dw, db).
fn conv2d_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    d: &ConvDims,
    want_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let ConvDims { n, g, o } = *d;
    let (k, p) = (g.k(), g.p());
    let mut dx = if want_dx {
        vec![0f32; n * g.img()]
    } else {
        Vec::new()
    };
    let (gsz, groups) = plan_grad_groups(n, p, k, o);
    let dxp = SyncPtr(dx.as_mut_ptr());
    // With few output channels the weight gradient is faster accumulated transposed, [k, o].
    let transposed_dw = o < 128;
    let (dwt, db) = run_groups(
        groups,
        || (vec![0f32; o * k], vec![0f32; o]),
        |(dwt, db), gi, threads| {
            let (n0, n1) = (gi * gsz, ((gi + 1) * gsz).min(n));
            let ld = (n1 - n0) * p;
            with_scratch(k * ld + o * ld, |buf| {
                let (rows, dyg) = buf.split_at_mut(k * ld);
                gather_pixels(&dy[n0 * o * p..n1 * o * p], o, p, dyg, Some(db));
                for i in n0..n1 {
                    im2row(
                        &x[i * g.img()..(i + 1) * g.img()],
                        &g,
                        &mut rows[(i - n0) * p * k..(i - n0 + 1) * p * k],
                    );
                }
                let dy_t = Mat::rows(dyg, ld, o).t();
                let (rs, cs) = if transposed_dw { (1, o) } else { (k, 1) };
                matmul_strided(dwt, rs, cs, dy_t, Mat::rows(rows, ld, k), true, threads);
                if want_dx {
                    // The im2row matrix is no longer needed: reuse it for the row gradients.
                    matmul(rows, k, Mat::rows(dyg, ld, o), Mat::rows(w, o, k), false, threads);
                    // SAFETY: images n0..n1 <= n of dx (n * g.img() zeros), this group's alone.
                    let dxg = unsafe { dxp.slice(n0 * g.img(), (n1 - n0) * g.img()) };
                    for i in 0..n1 - n0 {
                        row2im(
                            &rows[i * p * k..(i + 1) * p * k],
                            &g,
                            &mut dxg[i * g.img()..(i + 1) * g.img()],
                        );
                    }
                }
            });
        },
        merge_grads,
    );
    let dw = if transposed_dw { transpose(&dwt, k, o) } else { dwt };
    (want_dx.then_some(dx), dw, db)
}

struct Conv2dOp {
    stride: usize,
    pad: usize,
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "norbvae-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let d = conv2d_dims(l1.shape(), l2.shape(), l3.shape(), self.stride, self.pad)?;
        let y = profiled(
            || format!("conv2d fwd  c{} o{} {}x{}", d.g.c, d.o, d.g.h, d.g.w),
            || {
                let (x, w, b) = (f32_data(s1, l1)?, f32_data(s2, l2)?, f32_data(s3, l3)?);
                Ok::<_, candle_core::Error>(if conv3x3::applies(&d.g, d.o) {
                    conv3x3::forward(x, w, b, d.n, &d.g, d.o)
                } else {
                    forward_on_live_taps(&d.g, w, |g, w| conv2d_forward(x, w, b, &ConvDims { g: *g, ..d }))
                })
            },
        )?;
        Ok((CpuStorage::F32(y), Shape::from((d.n, d.o, d.g.ho, d.g.wo))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = conv2d_dims(x.shape(), w.shape(), b.shape(), self.stride, self.pad)?;
        let want_dx = x.track_op();
        let (dx, dw, db) = profiled(
            || format!("conv2d bwd  c{} o{} {}x{}", d.g.c, d.o, d.g.h, d.g.w),
            || {
                with_f32(x, |xs| {
                    with_f32(w, |ws| {
                        with_f32(dy, |dys| {
                            if conv3x3::applies(&d.g, d.o) {
                                return conv3x3::backward(xs, ws, dys, d.n, &d.g, d.o, want_dx);
                            }
                            backward_on_live_taps(&d.g, ws, |g, w| {
                                conv2d_backward(xs, w, dys, &ConvDims { g: *g, ..d }, want_dx)
                            })
                        })
                    })
                })
            },
        )???;
        grads_as_tensors(dx, dw, db, x, w, b)
    }
}

/// The (input, weight, bias) gradients of a convolution as tensors shaped like their operands.
fn grads_as_tensors(
    dx: Option<Vec<f32>>,
    dw: Vec<f32>,
    db: Vec<f32>,
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let dev = x.device();
    let dx = dx.map(|v| Tensor::from_vec(v, x.shape(), dev)).transpose()?;
    Ok((
        dx,
        Some(Tensor::from_vec(dw, w.shape(), dev)?),
        Some(Tensor::from_vec(db, b.shape(), dev)?),
    ))
}

/// 2-D convolution of `x` [n, c, h, w] with `w` [o, c, kh, kw] plus bias `b` [o] (PyTorch's
/// Conv2d with dilation 1, groups 1), differentiable through candle's autograd. CPU, f32.
pub fn conv2d(x: &Tensor, w: &Tensor, b: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    x.contiguous()?
        .apply_op3(&w.contiguous()?, &b.contiguous()?, Conv2dOp { stride, pad })
}

// ---------------------------------------------------------------------------------------------
// conv_transpose2d

fn conv_t_forward(x: &[f32], w: &[f32], b: &[f32], n: usize, ci: usize, g: &Geom) -> Vec<f32> {
    let (k, p) = (g.k(), g.p());
    let plane = g.h * g.w;
    let fill = |imgs: std::ops::Range<usize>, threads: usize, yg: &mut [f32], buf: &mut [f32]| {
        let ld = imgs.len() * p;
        let (rows, xg) = buf.split_at_mut(k * ld);
        gather_pixels(&x[imgs.start * ci * p..imgs.end * ci * p], ci, p, xg, None);
        matmul(
            rows,
            k,
            Mat::rows(xg, ld, ci),
            Mat::rows(w, ci, k),
            false,
            threads,
        );
        for (j, img) in yg.chunks_exact_mut(g.img()).enumerate() {
            for (chan, &bc) in img.chunks_exact_mut(plane).zip(b) {
                chan.fill(bc);
            }
            row2im(&rows[j * p * k..(j + 1) * p * k], g, img);
        }
    };
    // SAFETY: every output is set to its bias (each image's co planes of h * w = g.img()
    // floats) before `row2im` adds to it.
    unsafe { fill_by_image_groups(n, g.img(), k * p + ci * p, fill) }
}

fn conv_t_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    n: usize,
    ci: usize,
    g: &Geom,
    want_dx: bool,
) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
    let (k, p) = (g.k(), g.p());
    let co = g.c;
    // Every input gradient is written by `scatter_pixels`: no zero-fill first.
    let mut dx: Vec<f32> = Vec::with_capacity(if want_dx { n * ci * p } else { 0 });
    let (gsz, groups) = plan_grad_groups(n, p, k, ci);
    let dxp = SyncPtr(dx.as_mut_ptr());
    let (dw, db) = run_groups(
        groups,
        || (vec![0f32; ci * k], vec![0f32; co]),
        |(dw, db), gi, threads| {
            let (n0, n1) = (gi * gsz, ((gi + 1) * gsz).min(n));
            let ld = (n1 - n0) * p;
            let plane = g.h * g.w;
            with_scratch(k * ld + ci * ld, |buf| {
                let (rows, xg) = buf.split_at_mut(k * ld);
                for i in n0..n1 {
                    let img = &dy[i * g.img()..(i + 1) * g.img()];
                    im2row(img, g, &mut rows[(i - n0) * p * k..(i - n0 + 1) * p * k]);
                    for ch in 0..co {
                        db[ch] += sum(&img[ch * plane..(ch + 1) * plane]) as f32;
                    }
                }
                gather_pixels(&x[n0 * ci * p..n1 * ci * p], ci, p, xg, None);
                matmul(
                    dw,
                    k,
                    Mat::rows(xg, ld, ci).t(),
                    Mat::rows(rows, ld, k),
                    true,
                    threads,
                );
                if want_dx {
                    // The gathered input is no longer needed: reuse it for the input gradient.
                    matmul(
                        xg,
                        ci,
                        Mat::rows(rows, ld, k),
                        Mat::rows(w, ci, k).t(),
                        false,
                        threads,
                    );
                    // SAFETY: images n0..n1 <= n of dx (capacity n * ci * p), this group's alone;
                    // `scatter_pixels` writes all of it before reading (see `conv2d_forward`).
                    let dxg = unsafe { dxp.slice(n0 * ci * p, (n1 - n0) * ci * p) };
                    scatter_pixels(xg, ci, p, None, dxg);
                }
            });
        },
        merge_grads,
    );
    if want_dx {
        // SAFETY: the capacity is n * ci * p, and the groups, covering images 0..n, wrote all
        // n * ci * p gradients (their images' pixels, every channel).
        unsafe { dx.set_len(n * ci * p) };
    }
    (want_dx.then_some(dx), dw, db)
}

struct ConvTranspose2dOp {
    stride: usize,
    pad: usize,
}

impl CustomOp3 for ConvTranspose2dOp {
    fn name(&self) -> &'static str {
        "norbvae-conv-transpose2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, ci, g) = conv_t_dims(l1.shape(), l2.shape(), l3.shape(), self.stride, self.pad)?;
        let y = profiled(
            || format!("convT fwd   c{} o{} {}x{}", ci, g.c, g.ho, g.wo),
            || {
                let (x, b) = (f32_data(s1, l1)?, f32_data(s3, l3)?);
                Ok::<_, candle_core::Error>(forward_on_live_taps(&g, f32_data(s2, l2)?, |g, w| {
                    conv_t_forward(x, w, b, n, ci, g)
                }))
            },
        )?;
        Ok((CpuStorage::F32(y), Shape::from((n, g.c, g.h, g.w))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (n, ci, g) = conv_t_dims(x.shape(), w.shape(), b.shape(), self.stride, self.pad)?;
        let want_dx = x.track_op();
        let (dx, dw, db) = profiled(
            || format!("convT bwd   c{} o{} {}x{}", ci, g.c, g.ho, g.wo),
            || {
                with_f32(x, |xs| {
                    with_f32(w, |ws| {
                        with_f32(dy, |dys| {
                            backward_on_live_taps(&g, ws, |gl, w| {
                                conv_t_backward(xs, w, dys, n, ci, gl, want_dx)
                            })
                        })
                    })
                })
            },
        )???;
        grads_as_tensors(dx, dw, db, x, w, b)
    }
}

/// Transposed 2-D convolution of `x` [n, ci, h, w] with `w` [ci, co, kh, kw] plus bias `b` [co]
/// (PyTorch's ConvTranspose2d with output_padding 0, dilation 1, groups 1), output
/// [n, co, (h-1)*stride - 2*pad + kh, ...], differentiable through candle's autograd. CPU, f32.
pub fn conv_transpose2d(x: &Tensor, w: &Tensor, b: &Tensor, stride: usize, pad: usize) -> Result<Tensor> {
    x.contiguous()?.apply_op3(
        &w.contiguous()?,
        &b.contiguous()?,
        ConvTranspose2dOp { stride, pad },
    )
}

/// The dead-tap crop against the full im2row path (itself checked against candle in
/// `kernels::tests`), on shapes candle's own backward pass cannot size: non-square inputs whose
/// dead taps differ along the two axes.
#[cfg(test)]
mod dead_tap_tests {
    use super::*;
    use crate::util::SeededRng;

    fn close(what: &str, ours: &[f32], reference: &[f32]) {
        assert_eq!(ours.len(), reference.len(), "{what}: lengths differ");
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        let err = ours
            .iter()
            .zip(reference)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            err <= 1e-5 * scale,
            "{what}: max abs error {err} vs scale {scale}"
        );
    }

    /// (n, c, h, w, o, k, stride, pad)
    type Case = (usize, usize, usize, usize, usize, usize, usize, usize);
    const CASES: &[Case] = &[
        (2, 3, 2, 3, 4, 4, 2, 1),
        (3, 2, 3, 2, 5, 4, 2, 1),
        (2, 4, 2, 2, 3, 4, 2, 1),
        (1, 2, 1, 1, 3, 3, 1, 1),
    ];

    #[test]
    fn cropped_passes_equal_the_full_ones_on_non_square_inputs() {
        let mut rng = SeededRng::new(29);
        for &(n, c, h, w, o, k, s, p) in CASES {
            let label = format!("n{n} c{c} {h}x{w} o{o} k{k} s{s} p{p}");
            let g = Geom::conv(c, h, w, k, k, s, p).unwrap();
            assert!(
                super::super::taps::LiveTaps::of(&g).is_some(),
                "{label}: no dead taps"
            );
            // conv2d: x [n, c, h, w] -> y [n, o, ho, wo].
            let d = ConvDims { n, g, o };
            let x = rng.normal_vec(n * g.img());
            let wt = rng.normal_vec(o * g.k());
            let b = rng.normal_vec(o);
            let dy = rng.normal_vec(n * o * g.p());
            let full = conv2d_forward(&x, &wt, &b, &d);
            let cropped = forward_on_live_taps(&g, &wt, |gl, wl| {
                conv2d_forward(&x, wl, &b, &ConvDims { g: *gl, ..d })
            });
            close(&format!("conv {label} forward"), &cropped, &full);
            let (fdx, fdw, fdb) = conv2d_backward(&x, &wt, &dy, &d, true);
            let (cdx, cdw, cdb) = backward_on_live_taps(&g, &wt, |gl, wl| {
                conv2d_backward(&x, wl, &dy, &ConvDims { g: *gl, ..d }, true)
            });
            close(&format!("conv {label} dx"), &cdx.unwrap(), &fdx.unwrap());
            close(&format!("conv {label} dw"), &cdw, &fdw);
            close(&format!("conv {label} db"), &cdb, &fdb);
            // The transposed convolution over the same geometry: x [n, o, ho, wo] ->
            // y [n, o2 = c, h, w], weights [o, c, k, k].
            let xt = rng.normal_vec(n * o * g.p());
            let dyt = rng.normal_vec(n * g.img());
            let bt = rng.normal_vec(c);
            let full = conv_t_forward(&xt, &wt, &bt, n, o, &g);
            let cropped = forward_on_live_taps(&g, &wt, |gl, wl| conv_t_forward(&xt, wl, &bt, n, o, gl));
            close(&format!("convT {label} forward"), &cropped, &full);
            let (fdx, fdw, fdb) = conv_t_backward(&xt, &wt, &dyt, n, o, &g, true);
            let (cdx, cdw, cdb) =
                backward_on_live_taps(&g, &wt, |gl, wl| conv_t_backward(&xt, wl, &dyt, n, o, gl, true));
            close(&format!("convT {label} dx"), &cdx.unwrap(), &fdx.unwrap());
            close(&format!("convT {label} dw"), &cdw, &fdw);
            close(&format!("convT {label} db"), &cdb, &fdb);
        }
    }
}
