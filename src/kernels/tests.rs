//! Every kernel against candle's own ops (or a plain reference) on random shapes, values and
//! gradients. Tolerance: |ours - reference| <= 1e-4 * max|reference| per tensor.
use super::*;
use crate::util::SeededRng;
use candle_core::{Device, Tensor, Var};

fn rand_t(rng: &mut SeededRng, shape: &[usize]) -> Tensor {
    let n = shape.iter().product();
    Tensor::from_vec(rng.normal_vec(n), shape, &Device::Cpu).unwrap()
}

fn assert_close(what: &str, ours: &Tensor, reference: &Tensor) {
    assert_eq!(ours.dims(), reference.dims(), "{what}: shapes differ");
    let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
    let err = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err <= 1e-4 * scale,
        "{what}: max abs error {err} vs scale {scale}"
    );
}

/// The backward pass as training runs it (`backward_with_update`), every gradient taken at the
/// variable hook and put back into the store.
fn hooked_backward(loss: &Tensor) -> candle_core::backprop::GradStore {
    let mut seen = 0;
    let g = backward_with_update(loss, &mut |_, _| {
        seen += 1;
        Ok(false)
    })
    .unwrap();
    assert!(seen > 0, "the variable hook never ran");
    g
}

fn pool(threads: usize) -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
}

/// (n, c, h, w, o, k, stride, pad)
type ConvCase = (usize, usize, usize, usize, usize, usize, usize, usize);
const CONV_CASES: &[ConvCase] = &[
    (1, 1, 5, 7, 2, 3, 1, 0),
    (1, 1, 6, 6, 1, 3, 1, 1),
    (3, 2, 8, 6, 4, 4, 2, 1),
    (2, 3, 7, 9, 5, 3, 2, 1),
    (2, 3, 7, 9, 5, 3, 2, 0),
    (5, 2, 4, 4, 3, 4, 2, 1),
    (4, 3, 2, 2, 6, 4, 2, 1),
    (40, 4, 32, 24, 8, 4, 2, 1),
    // A deep layer: weight gradient larger than the batch's pixels (one group, parallel GEMMs).
    (6, 8, 4, 4, 24, 4, 2, 1),
    // Kernel taps that only ever read padding, dropped by the kernels: a 1x1 output from a 3x3
    // input (dead taps on one side only; 2x2 is the case above), a 3x3 kernel reduced to its
    // centre, and the transposed convolution from 1x1 to 2x2 (transposed-only: as a convolution
    // its kernel would be larger than the padded input). Non-square inputs with dead taps are
    // left to the unit tests in `conv.rs`: candle's reference backward pass cannot size their
    // input gradient.
    (3, 5, 3, 3, 7, 4, 2, 1),
    (2, 2, 1, 1, 3, 3, 1, 1),
    (5, 6, 1, 1, 4, 4, 2, 1),
];

fn check_conv(transpose: bool, threads: usize) {
    check_conv_cases(CONV_CASES, transpose, threads, if transpose { 11 } else { 7 });
}

fn check_conv_cases(cases: &[ConvCase], transpose: bool, threads: usize, seed: u64) {
    let mut rng = SeededRng::new(seed);
    pool(threads).install(|| {
        for &(n, c, h, w, o, k, s, p) in cases {
            if !transpose && (h + 2 * p < k || w + 2 * p < k) {
                continue;
            }
            let label = format!(
                "{} n{n} c{c} {h}x{w} o{o} k{k} s{s} p{p} t{threads}",
                if transpose { "convT" } else { "conv" }
            );
            let x = Var::from_tensor(&rand_t(&mut rng, &[n, c, h, w])).unwrap();
            let wshape = if transpose { [c, o, k, k] } else { [o, c, k, k] };
            let wt = Var::from_tensor(&rand_t(&mut rng, &wshape)).unwrap();
            let b = Var::from_tensor(&rand_t(&mut rng, &[o])).unwrap();
            let ours = if transpose {
                conv_transpose2d(&x, &wt, &b, s, p)
            } else {
                conv2d(&x, &wt, &b, s, p)
            }
            .unwrap();
            let reference = if transpose {
                x.conv_transpose2d(&wt, p, 0, s, 1)
            } else {
                x.conv2d(&wt, p, s, 1, 1)
            }
            .unwrap()
            .broadcast_add(&b.reshape((1, o, 1, 1)).unwrap())
            .unwrap();
            assert_close(&format!("{label} forward"), &ours, &reference);
            let r = rand_t(&mut rng, reference.dims());
            let g1 = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
            // The training path: each variable's gradient taken at the variable hook.
            let g1d = hooked_backward(&(ours * &r).unwrap().sum_all().unwrap());
            let g2 = (reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
            for (name, v) in [("dx", &x), ("dw", &wt), ("db", &b)] {
                assert_close(&format!("{label} {name}"), g1.get(v).unwrap(), g2.get(v).unwrap());
                assert_close(
                    &format!("{label} {name} (hooked)"),
                    g1d.get(v).unwrap(),
                    g2.get(v).unwrap(),
                );
            }
        }
    });
}

#[test]
fn conv2d_matches_candle_values_and_gradients() {
    check_conv(false, 1);
    check_conv(false, 2);
}

/// The residual cells' convolutions (3x3, stride 1, pad 1), which run on the direct kernel of
/// `conv3x3` when the CPU has AVX2 and FMA: channel counts off the kernel's tiles of 4 output
/// channels and 8 positions, odd and non-square images (wide rows that end mid-vector), 2x2
/// images, batches of 1 and 3, a group of images larger than one weight-gradient tile's.
const CONV3X3_CASES: &[ConvCase] = &[
    (1, 1, 2, 2, 1, 3, 1, 1),
    (3, 5, 2, 2, 7, 3, 1, 1),
    (3, 3, 5, 7, 6, 3, 1, 1),
    (1, 7, 3, 2, 9, 3, 1, 1),
    (2, 16, 16, 16, 16, 3, 1, 1),
    (3, 13, 8, 8, 17, 3, 1, 1),
    (5, 32, 4, 4, 32, 3, 1, 1),
    (20, 4, 9, 11, 3, 3, 1, 1),
    (2, 32, 2, 2, 31, 3, 1, 1),
    // Left to the GEMM path: 1x1 images (the kernel's live taps are its centre) and more than
    // 32 channels.
    (3, 6, 1, 1, 5, 3, 1, 1),
    (2, 40, 4, 4, 24, 3, 1, 1),
];

#[test]
fn conv2d_3x3_matches_candle_values_and_gradients() {
    let direct = CONV3X3_CASES
        .iter()
        .filter(|&&(_, c, h, w, o, k, s, p)| {
            conv3x3::applies(&conv::Geom::conv(c, h, w, k, k, s, p).unwrap(), o)
        })
        .count();
    if conv3x3::avx2_available() {
        assert_eq!(direct, CONV3X3_CASES.len() - 2, "cases not on the direct kernel");
    }
    check_conv_cases(CONV3X3_CASES, false, 1, 17);
    check_conv_cases(CONV3X3_CASES, false, 2, 19);
}

#[test]
fn conv_transpose2d_matches_candle_values_and_gradients() {
    check_conv(true, 1);
    check_conv(true, 2);
}

#[test]
fn conv_input_that_needs_no_gradient_gets_none_and_weights_still_train() {
    let mut rng = SeededRng::new(3);
    let x = rand_t(&mut rng, &[2, 1, 6, 6]);
    let w = Var::from_tensor(&rand_t(&mut rng, &[3, 1, 4, 4])).unwrap();
    let b = Var::from_tensor(&rand_t(&mut rng, &[3])).unwrap();
    let g = conv2d(&x, &w, &b, 2, 1)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    assert!(g.get(&x).is_none());
    assert!(g.get(&w).is_some() && g.get(&b).is_some());
}

#[test]
fn conv_rejects_mismatched_channels() {
    let mut rng = SeededRng::new(4);
    let x = rand_t(&mut rng, &[1, 2, 6, 6]);
    let w = rand_t(&mut rng, &[3, 1, 4, 4]);
    let b = rand_t(&mut rng, &[3]);
    let err = conv2d(&x, &w, &b, 2, 1).unwrap_err().to_string();
    assert!(err.contains("channels"), "{err}");
}

fn bn_reference(x: &Tensor, gamma: &Tensor, beta: &Tensor, act: Activation) -> (Tensor, Tensor, Tensor) {
    let dims: Vec<usize> = if x.rank() == 4 { vec![0, 2, 3] } else { vec![0] };
    let bshape: Vec<usize> = if x.rank() == 4 {
        vec![1, x.dim(1).unwrap(), 1, 1]
    } else {
        vec![1, x.dim(1).unwrap()]
    };
    let mean = x.mean_keepdim(dims.as_slice()).unwrap();
    let xc = x.broadcast_sub(&mean).unwrap();
    let var = xc.sqr().unwrap().mean_keepdim(dims.as_slice()).unwrap();
    let y = xc
        .broadcast_div(&(var.clone() + 1e-5).unwrap().sqrt().unwrap())
        .unwrap()
        .broadcast_mul(&gamma.reshape(bshape.as_slice()).unwrap())
        .unwrap()
        .broadcast_add(&beta.reshape(bshape.as_slice()).unwrap())
        .unwrap();
    let y = match act {
        Activation::Identity => y,
        Activation::Relu => y.relu().unwrap(),
        Activation::LeakyRelu(a) => y.maximum(&(&y * a as f64).unwrap()).unwrap(),
        Activation::Silu => y.silu().unwrap(),
    };
    (y, mean.flatten_all().unwrap(), var.flatten_all().unwrap())
}

#[test]
fn batch_norm_matches_candle_composite() {
    let mut rng = SeededRng::new(5);
    let shapes: &[&[usize]] = &[
        &[1, 1, 3, 5],
        &[4, 3, 5, 7],
        &[16, 8, 4, 4],
        &[8, 6],
        &[64, 33],
        &[2, 1],
    ];
    for threads in [1, 2] {
        pool(threads).install(|| {
            for &shape in shapes {
                for act in [
                    Activation::Identity,
                    Activation::Relu,
                    Activation::LeakyRelu(0.2),
                    Activation::Silu,
                ] {
                    let label = format!("{shape:?} {act:?} t{threads}");
                    let c = shape[1];
                    // An offset mean exercises the two-pass variance.
                    let x = Var::from_tensor(&rand_t(&mut rng, shape).affine(3.0, 5.0).unwrap()).unwrap();
                    let gamma = Var::from_tensor(&rand_t(&mut rng, &[c])).unwrap();
                    let beta = Var::from_tensor(&rand_t(&mut rng, &[c])).unwrap();
                    let (y, mean, var) = batch_norm_train(&x, &gamma, &beta, 1e-5, act).unwrap();
                    let (ry, rmean, rvar) = bn_reference(&x, &gamma, &beta, act);
                    assert_close(&format!("{label} y"), &y, &ry);
                    assert_close(&format!("{label} mean"), &mean, &rmean);
                    assert_close(&format!("{label} var"), &var, &rvar);
                    if shape.iter().product::<usize>() / c == 1 {
                        continue; // a single sample per channel has no gradient through the mean
                    }
                    let r = rand_t(&mut rng, shape);
                    let g1 = (y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                    let g2 = (ry * &r).unwrap().sum_all().unwrap().backward().unwrap();
                    for (name, v) in [("dx", &x), ("dgamma", &gamma), ("dbeta", &beta)] {
                        if name == "dx" && shape.iter().product::<usize>() / c == 2 {
                            // Two samples per channel normalise to -1 and +1 whatever x is: dx is
                            // zero, and both sides hold only rounding noise.
                            continue;
                        }
                        assert_close(&format!("{label} {name}"), g1.get(v).unwrap(), g2.get(v).unwrap());
                    }
                }
            }
        });
    }
}

#[test]
fn adam_matches_candle_adamw_without_decay_over_several_steps() {
    use candle_nn::Optimizer;
    let mut rng = SeededRng::new(9);
    for threads in [1, 2] {
        pool(threads).install(|| {
            // One large parameter (parallel path) and two small ones.
            let shapes: [&[usize]; 3] = [&[300, 200], &[7], &[3, 5]];
            let init: Vec<Tensor> = shapes.iter().map(|s| rand_t(&mut rng, s)).collect();
            let ours: Vec<Var> = init.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
            let theirs: Vec<Var> = init.iter().map(|t| Var::from_tensor(t).unwrap()).collect();
            let hyper = AdamHyper {
                lr: 0.01,
                beta1: 0.8,
                beta2: 0.95,
                eps: 1e-6,
            };
            let mut fused = FusedAdam::new(ours.clone(), hyper);
            let mut reference = candle_nn::AdamW::new(
                theirs.clone(),
                candle_nn::ParamsAdamW {
                    lr: 0.01,
                    beta1: 0.8,
                    beta2: 0.95,
                    eps: 1e-6,
                    weight_decay: 0.0,
                },
            )
            .unwrap();
            for _ in 0..6 {
                // loss = sum(p * r) + 0.5 * sum(p^2): gradients r + p, different each step.
                let loss = |vs: &[Var], rs: &[Tensor]| {
                    let mut total = Tensor::new(0f32, &Device::Cpu).unwrap();
                    for (v, r) in vs.iter().zip(rs) {
                        let t = ((v.as_tensor() * r).unwrap().sum_all().unwrap()
                            + (v.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap())
                        .unwrap();
                        total = (total + t).unwrap();
                    }
                    total
                };
                let rs: Vec<Tensor> = shapes.iter().map(|s| rand_t(&mut rng, s)).collect();
                fused.step(&loss(&ours, &rs).backward().unwrap()).unwrap();
                reference.step(&loss(&theirs, &rs).backward().unwrap()).unwrap();
            }
            for (a, b) in ours.iter().zip(&theirs) {
                assert_close("adam parameters", a.as_tensor(), b.as_tensor());
            }
            let moved = (ours[0].as_tensor() - &init[0])
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap();
            assert!(moved.to_scalar::<f32>().unwrap() > 1e-3);
        });
    }
}

#[test]
fn bce_with_logits_matches_candle_composite_and_stays_finite() {
    let mut rng = SeededRng::new(13);
    let l = Var::from_tensor(&(rand_t(&mut rng, &[3, 1, 7, 5]) * 30.0).unwrap()).unwrap();
    let x = Tensor::from_vec(rng.uniform_vec(105), (3, 1, 7, 5), &Device::Cpu).unwrap();
    let ours = bce_with_logits_sum(&l, &x).unwrap();
    let reference = ((l.relu().unwrap() - (l.as_tensor() * &x).unwrap()).unwrap()
        + (l.abs().unwrap().neg().unwrap().exp().unwrap() + 1.0)
            .unwrap()
            .log()
            .unwrap())
    .unwrap()
    .sum_all()
    .unwrap();
    assert!(ours.to_scalar::<f32>().unwrap().is_finite());
    assert_close("bce value", &ours, &reference);
    let g1 = (ours * 2.0).unwrap().backward().unwrap();
    let g2 = (reference * 2.0).unwrap().backward().unwrap();
    assert_close("bce grad", g1.get(&l).unwrap(), g2.get(&l).unwrap());
}

/// Not a test: prints the fused Adam pass's time per parameter over the dense workload's 2.3M
/// parameters, run on its own (the training step's own figure is in the kernel profile).
/// `RAYON_NUM_THREADS=1 cargo test --release --lib adam_probe -- --ignored --nocapture`
#[test]
#[ignore]
fn adam_probe() {
    let n = 2_300_000;
    let mut p = vec![0.01f32; n];
    let g: Vec<f32> = (0..n).map(|i| (i % 7) as f32 * 0.01).collect();
    let (mut m, mut v) = (vec![0f32; n], vec![0.1f32; n]);
    let h = AdamHyper::default();
    for step in 1..=3 {
        adam::adam_update_slices(&mut p, &g, &mut m, &mut v, step, &h);
    }
    let reps = 50;
    let t0 = std::time::Instant::now();
    for step in 4..4 + reps {
        adam::adam_update_slices(&mut p, &g, &mut m, &mut v, step, &h);
    }
    let ns = t0.elapsed().as_secs_f64() * 1e9 / (reps as f64 * n as f64);
    println!("adam: {ns:.3} ns per parameter ({n} parameters, {reps} steps)");
}

/// Not a test: prints single-thread GEMM throughput (CPU time) for the conv layers' shapes in
/// every storage order of a, b and the destination.
/// `cargo test --release --lib gemm_probe -- --ignored --nocapture`
#[test]
#[ignore]
fn gemm_probe() {
    use super::gemm::{matmul_strided, Mat};
    let shapes: Vec<(usize, usize, usize)> = std::env::var("GEMM_SHAPES")
        .unwrap_or("1024x1024x1024,32x256x16384,512x4096x64".into())
        .split(',')
        .map(|s| {
            let v: Vec<usize> = s.split('x').map(|x| x.parse().unwrap()).collect();
            (v[0], v[1], v[2])
        })
        .collect();
    for (m, k, n) in shapes {
        let mut line = format!("m{m} k{k} n{n}:");
        for code in 0..8 {
            let (ta, tb, tc) = (code & 1 != 0, code & 2 != 0, code & 4 != 0);
            let a = vec![0.5f32; m * k];
            let b = vec![0.25f32; k * n];
            let mut c = vec![0f32; m * n];
            let am = if ta {
                Mat::rows(&a, k, m).t()
            } else {
                Mat::rows(&a, m, k)
            };
            let bm = if tb {
                Mat::rows(&b, n, k).t()
            } else {
                Mat::rows(&b, k, n)
            };
            let (rs, cs) = if tc { (1, m) } else { (n, 1) };
            matmul_strided(&mut c, rs, cs, am, bm, false, 1);
            // About 10 GFLOP per layout (GEMM_GFLOP to change it): the thread CPU clock advances
            // in scheduler ticks, which quantise shorter timings.
            let gflop: f64 = std::env::var("GEMM_GFLOP")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(10.0);
            let reps = (gflop * 1e9 / (2.0 * (m * n * k) as f64)).ceil() as usize;
            let t0 = super::util::thread_cpu_ns();
            for _ in 0..reps {
                matmul_strided(&mut c, rs, cs, am, bm, false, 1);
            }
            let ns = super::util::thread_cpu_ns() - t0;
            line += &format!(
                " {}{}{}={:.0}",
                ["A", "At"][ta as usize],
                ["B", "Bt"][tb as usize],
                ["C", "Ct"][tc as usize],
                2.0 * (m * n * k * reps) as f64 / ns as f64
            );
        }
        println!("{line}");
    }
}

/// Not a test: the floor of the dense workload's training step at 1 thread, the step's GEMMs
/// alone (the same gemm crate calls, shapes and operand orders as the dense and linear kernels,
/// packing included) plus Adam over its 2.3M parameters, with nothing else (no batch norm,
/// activations, loss, graph). Compare with `norbvae bench`'s samples/s for the whole step.
/// `RAYON_NUM_THREADS=1 cargo test --release --lib dense_step_floor -- --ignored --nocapture`
#[test]
#[ignore]
fn dense_step_floor() {
    use super::dense::{feature_major_product, weight_grad_rows};
    use super::gemm::{matmul_raw, Mat};
    use super::util::SyncPtr;
    let n = 128;
    // (in, out, input gradient wanted, dense block): the encoder, both heads, the decoder, its
    // output layer. The dense blocks take the input gradient from dz feature-major, the plain
    // linear layers from dy batch-major.
    let mut layers = vec![(500, 512, false, true)];
    layers.extend([(512, 512, true, true); 3]);
    layers.extend([(512, 128, true, false); 2]);
    layers.push((128, 512, true, true));
    layers.extend([(512, 512, true, true); 3]);
    layers.push((512, 500, true, false));
    let mut rng = SeededRng::new(5);
    let bufs: Vec<_> = layers
        .iter()
        .map(|&(i, o, _, _)| {
            (
                rng.normal_vec(n * i),
                rng.normal_vec(o * i),
                rng.normal_vec(o * n),
            )
        })
        .collect();
    let params: usize = layers.iter().map(|&(i, o, _, _)| i * o).sum();
    let flops: f64 = layers
        .iter()
        .map(|&(i, o, dx, _)| 2.0 * (n * i * o) as f64 * if dx { 3.0 } else { 2.0 })
        .sum();
    let (mut out, mut dw, mut dx) = (vec![0f32; 512 * n], vec![0f32; 512 * 512], vec![0f32; 512 * n]);
    let mut step = || {
        for (&(i, o, want_dx, block), (x, w, dz)) in layers.iter().zip(&bufs) {
            feature_major_product(&mut out, w, x, n, i, &(0..o));
            // SAFETY: dw holds o x i floats, dx n x i.
            unsafe { weight_grad_rows(SyncPtr(dw.as_mut_ptr()), dz, x, n, i, &(0..o)) };
            if want_dx {
                let wv = Mat::rows(w, o, i);
                let dz = if block {
                    Mat::rows(dz, o, n).t()
                } else {
                    Mat::rows(dz, n, o)
                };
                // SAFETY: dx holds 512 x n >= n x i floats, and nothing else touches it.
                unsafe { matmul_raw(dx.as_mut_ptr(), i, 1, dz, wv, false) };
            }
        }
    };
    step();
    let steps = 200;
    let t0 = super::util::thread_cpu_ns();
    for _ in 0..steps {
        step();
    }
    let gemm_s = (super::util::thread_cpu_ns() - t0) as f64 * 1e-9 / steps as f64;
    let (mut p, g) = (rng.normal_vec(params), rng.normal_vec(params));
    let (mut m, mut v) = (vec![0f32; params], vec![0f32; params]);
    let h = AdamHyper::default();
    adam::adam_update_slices(&mut p, &g, &mut m, &mut v, 1, &h);
    let t0 = super::util::thread_cpu_ns();
    for k in 0..steps {
        adam::adam_update_slices(&mut p, &g, &mut m, &mut v, 2 + k as u64, &h);
    }
    let adam_s = (super::util::thread_cpu_ns() - t0) as f64 * 1e-9 / steps as f64;
    println!(
        "dense step floor, batch {n}, {params} parameters: GEMMs {:.2} ms ({:.1} GFLOP/s), Adam {:.2} ms; \
         GEMMs alone {:.0} samples/s, GEMMs + Adam {:.0} samples/s",
        gemm_s * 1e3,
        flops * 1e-9 / gemm_s,
        adam_s * 1e3,
        n as f64 / gemm_s,
        n as f64 / (gemm_s + adam_s)
    );
}

/// (n, in, out): batch 1, width 1, sizes that are not multiples of 16, and the workload's.
const DENSE_CASES: &[(usize, usize, usize)] = &[
    (1, 1, 1),
    (1, 5, 3),
    (2, 1, 1),
    (3, 1, 1),
    (3, 5, 2),
    (7, 64, 3),
    (5, 17, 33),
    (33, 1, 47),
    (16, 40, 1),
    (128, 500, 512),
    (64, 128, 100),
];

#[test]
fn linear_matches_candle_values_and_gradients() {
    let mut rng = SeededRng::new(17);
    for threads in [1, 2, 3] {
        pool(threads).install(|| {
            for &(n, i, o) in DENSE_CASES {
                let x = Var::from_tensor(&rand_t(&mut rng, &[n, i])).unwrap();
                let w = Var::from_tensor(&rand_t(&mut rng, &[o, i])).unwrap();
                let b = Var::from_tensor(&rand_t(&mut rng, &[o])).unwrap();
                let ours = linear(&x, &w, &b).unwrap();
                let reference = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
                let label = format!("linear n{n} {i}->{o} t{threads}");
                assert_close(&format!("{label} forward"), &ours, &reference);
                let r = rand_t(&mut rng, &[n, o]);
                // Both ways of running the backward pass give the same gradients.
                let g1 = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
                let g1d = hooked_backward(&(ours * &r).unwrap().sum_all().unwrap());
                let g2 = (reference * &r).unwrap().sum_all().unwrap().backward().unwrap();
                for (name, v) in [("dx", &x), ("dw", &w), ("db", &b)] {
                    assert_close(&format!("{label} {name}"), g1.get(v).unwrap(), g2.get(v).unwrap());
                    assert_close(
                        &format!("{label} {name} hooked"),
                        g1d.get(v).unwrap(),
                        g2.get(v).unwrap(),
                    );
                }
            }
        });
    }
}

#[test]
fn dense_bn_act_matches_candle_composite_values_and_gradients() {
    let mut rng = SeededRng::new(23);
    for threads in [1, 2, 3] {
        pool(threads).install(|| {
            for &(n, i, o) in DENSE_CASES {
                for act in [
                    Activation::Relu,
                    Activation::Identity,
                    Activation::LeakyRelu(0.2),
                    Activation::Silu,
                ] {
                    let label = format!("dense+bn n{n} {i}->{o} {act:?} t{threads}");
                    let x = Var::from_tensor(&rand_t(&mut rng, &[n, i])).unwrap();
                    // Weights of magnitude >= 0.5: with one input, a tiny weight would leave a
                    // feature's variance near eps, where both sides only compare rounding noise.
                    let w = rand_t(&mut rng, &[o, i]);
                    let w = Var::from_tensor(&(&w + (w.sign().unwrap() * 0.5).unwrap()).unwrap()).unwrap();
                    // An offset bias exercises the two-pass variance.
                    let b = Var::from_tensor(&rand_t(&mut rng, &[o]).affine(1.0, 3.0).unwrap()).unwrap();
                    let gamma = Var::from_tensor(&rand_t(&mut rng, &[o])).unwrap();
                    let beta = Var::from_tensor(&rand_t(&mut rng, &[o])).unwrap();
                    let (y, mean, var) = dense_bn_act_train(&x, &w, &b, &gamma, &beta, 1e-5, act).unwrap();
                    let z = x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap();
                    let (ry, rmean, rvar) = bn_reference(&z, &gamma, &beta, act);
                    assert_close(&format!("{label} y"), &y, &ry);
                    assert_close(&format!("{label} mean"), &mean, &rmean);
                    assert_close(&format!("{label} var"), &var, &rvar);
                    if n <= 2 {
                        // One sample has no gradient through the batch statistics; with two, any
                        // output is affine in the normalised value, so the input gradient is
                        // zero in exact arithmetic and only rounding noise would be compared.
                        continue;
                    }
                    let r = rand_t(&mut rng, &[n, o]);
                    let g1 = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
                    let g1d = hooked_backward(&(y * &r).unwrap().sum_all().unwrap());
                    let g2 = (ry * &r).unwrap().sum_all().unwrap().backward().unwrap();
                    for (name, v) in [
                        ("dx", &x),
                        ("dw", &w),
                        ("db", &b),
                        ("dgamma", &gamma),
                        ("dbeta", &beta),
                    ] {
                        let reference = g2.get(v).unwrap();
                        // db is zero in theory (batch norm removes the bias), and so is dw with
                        // one input (batch norm is invariant to that weight's scale): both sides
                        // are rounding noise, compared on the scale of the terms that cancel,
                        // n * max |gamma / sqrt(var + eps) * upstream gradient * input|.
                        if name == "db" || (name == "dw" && i == 1) {
                            let max_abs =
                                |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                            let k1 = (gamma.as_tensor() / (&rvar + 1e-5).unwrap().sqrt().unwrap()).unwrap();
                            let scale = n as f32 * max_abs(&k1) * max_abs(&r) * max_abs(&x).max(1.0);
                            for g in [&g1, &g1d] {
                                let d = (g.get(v).unwrap() - reference).unwrap().abs().unwrap();
                                let err = d.max_all().unwrap().to_scalar::<f32>().unwrap();
                                assert!(
                                    err <= 1e-4 * scale,
                                    "{label} {name}: error {err} vs scale {scale}"
                                );
                            }
                            continue;
                        }
                        assert_close(&format!("{label} {name}"), g1.get(v).unwrap(), reference);
                        assert_close(&format!("{label} {name} hooked"), g1d.get(v).unwrap(), reference);
                    }
                }
            }
        });
    }
}

#[test]
fn hooked_backward_sums_a_weights_kernel_and_candle_gradients() {
    // w feeds a kernel and a plain candle op: the hook must see the sum of both contributions.
    let mut rng = SeededRng::new(29);
    let x = rand_t(&mut rng, &[4, 6]);
    let w = Var::from_tensor(&rand_t(&mut rng, &[5, 6])).unwrap();
    let b = Var::from_tensor(&rand_t(&mut rng, &[5])).unwrap();
    let loss =
        |lin: Tensor| (lin.sum_all().unwrap() + w.as_tensor().sqr().unwrap().sum_all().unwrap()).unwrap();
    let ours = hooked_backward(&loss(linear(&x, &w, &b).unwrap()));
    let reference = loss(x.matmul(&w.t().unwrap()).unwrap().broadcast_add(&b).unwrap())
        .backward()
        .unwrap();
    assert_close("dw", ours.get(&w).unwrap(), reference.get(&w).unwrap());
    assert_close("db", ours.get(&b).unwrap(), reference.get(&b).unwrap());
    assert!(ours.get(&x).is_none());
}

#[test]
fn dense_block_input_that_needs_no_gradient_gets_none() {
    let mut rng = SeededRng::new(31);
    let x = rand_t(&mut rng, &[6, 3]);
    let w = Var::from_tensor(&rand_t(&mut rng, &[4, 3])).unwrap();
    let b = Var::from_tensor(&rand_t(&mut rng, &[4])).unwrap();
    let gamma = Var::from_tensor(&rand_t(&mut rng, &[4])).unwrap();
    let beta = Var::from_tensor(&rand_t(&mut rng, &[4])).unwrap();
    let (y, _, _) = dense_bn_act_train(&x, &w, &b, &gamma, &beta, 1e-5, Activation::Relu).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none());
    for v in [&w, &b, &gamma, &beta] {
        assert!(g.get(v).is_some());
    }
}

/// Per-thread accumulators are merged the same way every time: sums whose value depends on how
/// the groups are associated (1e8 + 1 - 1e8 ... in f32) come out identical over many runs.
#[test]
fn run_groups_sums_the_same_way_every_run() {
    use super::util::run_groups;
    let values: Vec<f32> = (0..64)
        .map(|g| match g % 4 {
            0 => 1e8,
            1 => 1.0,
            2 => -1e8,
            _ => 0.75,
        })
        .collect();
    for threads in [2, 3] {
        let results: Vec<u32> = (0..200)
            .map(|_| {
                pool(threads).install(|| {
                    run_groups(
                        values.len(),
                        || 0f32,
                        |acc, g, _| {
                            // Uneven work, so that scheduling varies from run to run.
                            if g % 7 == 0 {
                                std::thread::yield_now();
                            }
                            *acc += values[g];
                        },
                        |a, b| a + b,
                    )
                    .to_bits()
                })
            })
            .collect();
        assert!(
            results.iter().all(|&r| r == results[0]),
            "{threads} threads: {} different sums",
            results.iter().collect::<std::collections::HashSet<_>>().len()
        );
    }
}

/// The vendored candle's backward stores a tensor's first gradient as is and adds later ones
/// (vendor/candle-core/NORBVAE-PATCH.md). Checked against hand-derived gradients: x feeds five
/// ops (fan-in through both the patched and the unpatched subtracting paths), y only one, and z
/// only a broadcast (whose gradient must come back contiguous and summed).
#[test]
fn candle_backward_sums_every_use_of_a_tensor() {
    let xs = [0.5f32, -1.25, 2.0, 0.75, -0.5, 1.5];
    let ys = [1.0f32, 2.0, -3.0, 0.25, 0.5, -1.0];
    let dev = Device::Cpu;
    let x = Var::from_slice(&xs, (2, 3), &dev).unwrap();
    let y = Var::from_slice(&ys, (2, 3), &dev).unwrap();
    let z = Var::from_slice(&[0.5f32, -2.0, 1.0], 3, &dev).unwrap();
    let (xt, yt, zt) = (x.as_tensor(), y.as_tensor(), z.as_tensor());
    // L = sum(x*y) + sum(x^2) - sum(x) + sum(3 - x*2) + sum(x + z) (z broadcast over rows)
    let terms = [
        (xt * yt).unwrap(),
        xt.sqr().unwrap(),
        xt.neg().unwrap(),
        (3.0 - (xt * 2.0).unwrap()).unwrap(),
        xt.broadcast_add(zt).unwrap(),
    ];
    let loss = terms
        .iter()
        .map(|t| t.sum_all().unwrap())
        .reduce(|a, b| (a + b).unwrap())
        .unwrap();
    let g = loss.backward().unwrap();
    let dx: Vec<f32> = g.get(xt).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let dy: Vec<f32> = g.get(yt).unwrap().flatten_all().unwrap().to_vec1().unwrap();
    let dz: Vec<f32> = g.get(zt).unwrap().to_vec1().unwrap();
    for k in 0..6 {
        // d/dx: y + 2x - 1 - 2 + 1
        assert_eq!(dx[k], ys[k] + 2.0 * xs[k] - 2.0, "dx[{k}]");
        assert_eq!(dy[k], xs[k], "dy[{k}]");
    }
    assert_eq!(dz, vec![2.0; 3]);
    assert!(g.get(xt).unwrap().is_contiguous() && g.get(zt).unwrap().is_contiguous());
}

/// Adam applied during the backward pass, as each gradient completes, leaves every parameter
/// bit-identical to candle's backward then a step, for the benchmark's optimizer and the
/// trainer's, at 1 and 2 threads. The model mixes the kernels with candle ops, and
/// uses w1 twice (a kernel and a penalty), so its gradient has two contributions to sum first.
#[test]
fn adam_during_backward_matches_backward_then_step() {
    use crate::train::optim::{Adam, AdamHyper};
    let mut rng = SeededRng::new(41);
    let x = rand_t(&mut rng, &[9, 600]);
    let target = rand_t(&mut rng, &[9, 3]);
    // w1 is large enough (38,400 elements) to be updated on its own during the pass; the
    // others are gathered and updated together after it.
    let init: Vec<Tensor> = [&[64usize, 600][..], &[64], &[64], &[64], &[3, 64], &[3]]
        .iter()
        .map(|s| rand_t(&mut rng, s))
        .collect();
    let loss = |p: &[Var]| {
        let t = |k: usize| p[k].as_tensor();
        let (h, _, _) = dense_bn_act_train(&x, t(0), t(1), t(2), t(3), 1e-5, Activation::Relu).unwrap();
        let out = linear(&h, t(4), t(5)).unwrap();
        let penalty = (t(0).sqr().unwrap().sum_all().unwrap() * 0.1).unwrap();
        ((out - &target).unwrap().sqr().unwrap().sum_all().unwrap() + penalty).unwrap()
    };
    let hyper = AdamHyper {
        lr: 0.05,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
    };
    let params = AdamHyper {
        lr: 0.05,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
    };
    let fresh = || -> Vec<Var> { init.iter().map(|t| Var::from_tensor(t).unwrap()).collect() };
    let values = |p: &[Var]| -> Vec<Vec<u32>> {
        p.iter()
            .map(|v| {
                let f: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
                f.iter().map(|x| x.to_bits()).collect()
            })
            .collect()
    };
    for threads in [1, 2] {
        pool(threads).install(|| {
            let (a, b, c, d) = (fresh(), fresh(), fresh(), fresh());
            let mut after = FusedAdam::new(a.clone(), hyper);
            let mut during = FusedAdam::new(b.clone(), hyper);
            let mut trainer_after = Adam::new(c.clone(), params).unwrap();
            let mut trainer_during = Adam::new(d.clone(), params).unwrap();
            for _ in 0..4 {
                // The reference is candle's own backward pass, then a step.
                after.step(&loss(&a).backward().unwrap()).unwrap();
                during.backward_step(&loss(&b)).unwrap();
                trainer_after.step(&loss(&c).backward().unwrap()).unwrap();
                trainer_during.backward_step(&loss(&d)).unwrap();
            }
            let reference = values(&a);
            assert_ne!(
                reference,
                values(&fresh()),
                "{threads} threads: the parameters did not move"
            );
            for (name, p) in [
                ("FusedAdam", &b),
                ("trainer Adam after", &c),
                ("trainer Adam during", &d),
            ] {
                assert!(values(p) == reference, "{threads} threads: {name} differs");
            }
        });
    }
}
