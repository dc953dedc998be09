//! The benchmark's reference workloads, replicas of bench/pytorch_workloads.py built
//! from the project kernels and candle: same layers, initialisation scheme, losses and Adam.
//!
//! - conv: 64x64x1, 6 x (Conv2d k4 s2 p1 16..512 + BN + ReLU), Linear 512->256 + BN + ReLU,
//!   latent 10, mirror decoder with ConvTranspose2d, BCE-with-logits summed + KL, batch 64.
//! - mlp: 500-d, 4 x (Linear 512 + BN + ReLU), latent 128, mirror decoder, MSE summed + KL,
//!   batch 128.
use super::{
    batch_norm_train, bce_with_logits_sum, conv2d, conv_transpose2d, dense_bn_act_train, Activation,
    AdamHyper, FusedAdam,
};
use crate::util::SeededRng;
use candle_core::{Device, Result, Tensor, Var};
use std::time::Instant;

/// Which reference model to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Conv,
    Mlp,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Conv => "conv",
            Workload::Mlp => "mlp",
        }
    }

    /// The reference batch size.
    pub fn batch(self) -> usize {
        match self {
            Workload::Conv => 64,
            Workload::Mlp => 128,
        }
    }
}

/// A weight drawn as PyTorch's kaiming_normal_ (std sqrt(2 / fan_in)) and a bias as PyTorch's
/// default (uniform in +-1/sqrt(fan_in)), fan_in taken from dims 1.. of the weight as PyTorch does.
fn he_param(rng: &mut SeededRng, shape: &[usize], bias_len: usize, dev: &Device) -> Result<(Var, Var)> {
    let fan_in: usize = shape[1..].iter().product();
    let std = (2.0 / fan_in as f64).sqrt() as f32;
    let n: usize = shape.iter().product();
    let w: Vec<f32> = rng.normal_vec(n).into_iter().map(|v| v * std).collect();
    let bound = 1.0 / (fan_in as f32).sqrt();
    let b: Vec<f32> = rng
        .uniform_vec(bias_len)
        .into_iter()
        .map(|u| (2.0 * u - 1.0) * bound)
        .collect();
    Ok((Var::from_vec(w, shape, dev)?, Var::from_vec(b, bias_len, dev)?))
}

struct Linear {
    w: Var,
    b: Var,
}

impl Linear {
    fn new(rng: &mut SeededRng, i: usize, o: usize, dev: &Device, vars: &mut Vec<Var>) -> Result<Self> {
        let (w, b) = he_param(rng, &[o, i], o, dev)?;
        vars.extend([w.clone(), b.clone()]);
        Ok(Self { w, b })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::linear(x, &self.w, &self.b)
    }
}

/// Batch norm (training mode) fused with ReLU, keeping PyTorch's running statistics.
struct BnRelu {
    gamma: Var,
    beta: Var,
    running_mean: Vec<f32>,
    running_var: Vec<f32>,
}

impl BnRelu {
    fn new(c: usize, dev: &Device, vars: &mut Vec<Var>) -> Result<Self> {
        let gamma = Var::ones(c, candle_core::DType::F32, dev)?;
        let beta = Var::zeros(c, candle_core::DType::F32, dev)?;
        vars.extend([gamma.clone(), beta.clone()]);
        Ok(Self {
            gamma,
            beta,
            running_mean: vec![0.0; c],
            running_var: vec![1.0; c],
        })
    }

    fn forward(&mut self, x: &Tensor) -> Result<Tensor> {
        let (y, mean, var) = batch_norm_train(x, &self.gamma, &self.beta, 1e-5, Activation::Relu)?;
        self.update_running(x.dims(), &mean, &var)?;
        Ok(y)
    }

    /// Linear layer, batch norm and ReLU as one fused op.
    fn forward_dense(&mut self, lin: &Linear, x: &Tensor) -> Result<Tensor> {
        let (y, mean, var) =
            dense_bn_act_train(x, &lin.w, &lin.b, &self.gamma, &self.beta, 1e-5, Activation::Relu)?;
        self.update_running(&[x.dim(0)?, 1], &mean, &var)?;
        Ok(y)
    }

    /// PyTorch's running statistics (momentum 0.1, unbiased variance) from the batch ones of an
    /// input of shape `d`.
    fn update_running(&mut self, d: &[usize], mean: &Tensor, var: &Tensor) -> Result<()> {
        let m = (d[0] * d[2..].iter().product::<usize>()) as f32;
        let unbias = m / (m - 1.0).max(1.0);
        for (r, v) in self.running_mean.iter_mut().zip(mean.to_vec1::<f32>()?) {
            *r = 0.9 * *r + 0.1 * v;
        }
        for (r, v) in self.running_var.iter_mut().zip(var.to_vec1::<f32>()?) {
            *r = 0.9 * *r + 0.1 * v * unbias;
        }
        Ok(())
    }
}

struct Conv {
    w: Var,
    b: Var,
    transpose: bool,
}

impl Conv {
    fn new(
        rng: &mut SeededRng,
        i: usize,
        o: usize,
        transpose: bool,
        dev: &Device,
        vars: &mut Vec<Var>,
    ) -> Result<Self> {
        let (w, b) = if transpose {
            he_param(rng, &[i, o, 4, 4], o, dev)?
        } else {
            he_param(rng, &[o, i, 4, 4], o, dev)?
        };
        vars.extend([w.clone(), b.clone()]);
        Ok(Self { w, b, transpose })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.transpose {
            conv_transpose2d(x, &self.w, &self.b, 2, 1)
        } else {
            conv2d(x, &self.w, &self.b, 2, 1)
        }
    }
}

/// 0.5 * sum(mu^2 + exp(lv) - lv - 1) and the reparameterised sample.
fn kl_and_sample(mu: &Tensor, lv: &Tensor, rng: &mut SeededRng) -> Result<(Tensor, Tensor)> {
    let eps = Tensor::from_vec(rng.normal_vec(mu.elem_count()), mu.shape(), mu.device())?;
    let z = (mu + (lv * 0.5)?.exp()?.mul(&eps)?)?;
    let kl = ((mu.sqr()? + lv.exp()? - lv)? - 1.0)?
        .sum_all()?
        .affine(0.5, 0.0)?;
    Ok((kl, z))
}

pub struct ConvVae {
    enc: Vec<(Conv, BnRelu)>,
    enc_fc: (Linear, BnRelu),
    mu: Linear,
    lv: Linear,
    dec_fc1: (Linear, BnRelu),
    dec_fc2: Linear,
    dec: Vec<(Conv, Option<BnRelu>)>,
    vars: Vec<Var>,
}

impl ConvVae {
    pub fn new(seed: u64, dev: &Device) -> Result<Self> {
        let mut rng = SeededRng::derived(seed, "bench-conv-init");
        let mut vars = Vec::new();
        let ch = [1, 16, 32, 64, 128, 256, 512];
        let mut enc = Vec::new();
        for i in 0..6 {
            enc.push((
                Conv::new(&mut rng, ch[i], ch[i + 1], false, dev, &mut vars)?,
                BnRelu::new(ch[i + 1], dev, &mut vars)?,
            ));
        }
        let enc_fc = (
            Linear::new(&mut rng, 512, 256, dev, &mut vars)?,
            BnRelu::new(256, dev, &mut vars)?,
        );
        let mu = Linear::new(&mut rng, 256, 10, dev, &mut vars)?;
        let lv = Linear::new(&mut rng, 256, 10, dev, &mut vars)?;
        let dec_fc1 = (
            Linear::new(&mut rng, 10, 256, dev, &mut vars)?,
            BnRelu::new(256, dev, &mut vars)?,
        );
        let dec_fc2 = Linear::new(&mut rng, 256, 512, dev, &mut vars)?;
        let d = [512, 256, 128, 64, 32, 16, 1];
        let mut dec = Vec::new();
        for i in 0..6 {
            let conv = Conv::new(&mut rng, d[i], d[i + 1], true, dev, &mut vars)?;
            let bn = if i < 5 {
                Some(BnRelu::new(d[i + 1], dev, &mut vars)?)
            } else {
                None
            };
            dec.push((conv, bn));
        }
        Ok(Self {
            enc,
            enc_fc,
            mu,
            lv,
            dec_fc1,
            dec_fc2,
            dec,
            vars,
        })
    }

    fn loss(&mut self, x: &Tensor, rng: &mut SeededRng) -> Result<Tensor> {
        let b = x.dim(0)?;
        let mut h = x.clone();
        for (conv, bn) in &mut self.enc {
            h = bn.forward(&conv.forward(&h)?)?;
        }
        let h = h.flatten_from(1)?;
        let h = self.enc_fc.1.forward(&self.enc_fc.0.forward(&h)?)?;
        let (mu, lv) = (self.mu.forward(&h)?, self.lv.forward(&h)?);
        let (kl, z) = kl_and_sample(&mu, &lv, rng)?;
        let h = self.dec_fc1.1.forward(&self.dec_fc1.0.forward(&z)?)?;
        let mut h = self.dec_fc2.forward(&h)?.relu()?.reshape((b, 512, 1, 1))?;
        for (conv, bn) in &mut self.dec {
            h = conv.forward(&h)?;
            if let Some(bn) = bn {
                h = bn.forward(&h)?;
            }
        }
        let rec = bce_with_logits_sum(&h, x)?;
        (rec + kl)? / b as f64
    }
}

pub struct MlpVae {
    enc: Vec<(Linear, BnRelu)>,
    mu: Linear,
    lv: Linear,
    dec: Vec<(Linear, BnRelu)>,
    out: Linear,
    vars: Vec<Var>,
}

impl MlpVae {
    pub fn new(seed: u64, dev: &Device) -> Result<Self> {
        let mut rng = SeededRng::derived(seed, "bench-mlp-init");
        let mut vars = Vec::new();
        let blocks =
            |dims: &[usize], vars: &mut Vec<Var>, rng: &mut SeededRng| -> Result<Vec<(Linear, BnRelu)>> {
                dims.windows(2)
                    .map(|w| {
                        Ok((
                            Linear::new(rng, w[0], w[1], dev, vars)?,
                            BnRelu::new(w[1], dev, vars)?,
                        ))
                    })
                    .collect()
            };
        let enc = blocks(&[500, 512, 512, 512, 512], &mut vars, &mut rng)?;
        let mu = Linear::new(&mut rng, 512, 128, dev, &mut vars)?;
        let lv = Linear::new(&mut rng, 512, 128, dev, &mut vars)?;
        let dec = blocks(&[128, 512, 512, 512, 512], &mut vars, &mut rng)?;
        let out = Linear::new(&mut rng, 512, 500, dev, &mut vars)?;
        Ok(Self {
            enc,
            mu,
            lv,
            dec,
            out,
            vars,
        })
    }

    fn loss(&mut self, x: &Tensor, rng: &mut SeededRng) -> Result<Tensor> {
        let b = x.dim(0)?;
        let mut h = x.clone();
        for (lin, bn) in &mut self.enc {
            h = bn.forward_dense(lin, &h)?;
        }
        let (mu, lv) = (self.mu.forward(&h)?, self.lv.forward(&h)?);
        let (kl, mut h) = kl_and_sample(&mu, &lv, rng)?;
        for (lin, bn) in &mut self.dec {
            h = bn.forward_dense(lin, &h)?;
        }
        let r = self.out.forward(&h)?;
        let rec = (r - x)?.sqr()?.sum_all()?;
        (rec + kl)? / b as f64
    }
}

/// Throughput and loss trajectory of one benchmark run.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub workload: Workload,
    pub batch: usize,
    pub steps: usize,
    pub samples_per_sec: f64,
    /// Samples per second of CPU time used by all threads (what the run would reach with its
    /// cores to itself and no spinning; an upper bound on a loaded machine).
    pub samples_per_cpu_sec: f64,
    pub first_loss: f32,
    pub last_loss: f32,
}

/// Trains `workload` on one fixed random batch for `warmup` untimed then `steps` timed full
/// training steps (forward, backward, Adam 1e-3), on the current rayon pool.
pub fn run_workload(workload: Workload, warmup: usize, steps: usize, seed: u64) -> Result<StepReport> {
    let dev = Device::Cpu;
    let batch = workload.batch();
    let mut data_rng = SeededRng::derived(seed, "bench-data");
    let mut noise = SeededRng::derived(seed, "bench-noise");
    let x = match workload {
        Workload::Conv => Tensor::from_vec(data_rng.uniform_vec(batch * 64 * 64), (batch, 1, 64, 64), &dev)?,
        Workload::Mlp => Tensor::from_vec(data_rng.normal_vec(batch * 500), (batch, 500), &dev)?,
    };
    enum Model {
        Conv(ConvVae),
        Mlp(MlpVae),
    }
    let mut model = match workload {
        Workload::Conv => Model::Conv(ConvVae::new(seed, &dev)?),
        Workload::Mlp => Model::Mlp(MlpVae::new(seed, &dev)?),
    };
    let vars = match &model {
        Model::Conv(m) => m.vars.clone(),
        Model::Mlp(m) => m.vars.clone(),
    };
    let mut opt = FusedAdam::new(vars, AdamHyper::default());
    let mut step = |model: &mut Model| -> Result<f32> {
        let _awake = super::keep_workers_awake();
        let loss = match model {
            Model::Conv(m) => m.loss(&x, &mut noise)?,
            Model::Mlp(m) => m.loss(&x, &mut noise)?,
        };
        opt.backward_step(&loss)?;
        loss.to_scalar::<f32>()
    };
    for _ in 0..warmup {
        step(&mut model)?;
    }
    let start = Instant::now();
    let cpu_start = super::process_cpu_ns();
    let mut first_loss = f32::NAN;
    let mut last_loss = f32::NAN;
    for i in 0..steps {
        last_loss = step(&mut model)?;
        if i == 0 {
            first_loss = last_loss;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = super::process_cpu_ns().saturating_sub(cpu_start) as f64 / 1e9;
    Ok(StepReport {
        workload,
        batch,
        steps,
        samples_per_sec: (steps * batch) as f64 / secs.max(1e-9),
        samples_per_cpu_sec: (steps * batch) as f64 / cpu_secs.max(1e-9),
        first_loss,
        last_loss,
    })
}
