//! The building blocks of both VAEs: dense, convolution, transposed convolution and batch norm
//! layers with He initialisation. Convolutions and batch norm go through [`super::ops`].
use super::ops;
use candle_core::{Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

/// He (Kaiming) normal initialisation for ReLU networks: std = sqrt(2 / fan_in).
fn he(fan_in: usize) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: (2.0 / fan_in as f64).sqrt(),
    }
}

/// Training mode uses batch statistics and updates running ones; eval mode uses running ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Train,
    Eval,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    #[default]
    Relu,
    /// Leaky ReLU with slope 0.2.
    LeakyRelu,
    /// x * sigmoid(x) (swish), as NVAE's residual cells use.
    Silu,
}

impl Activation {
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        ops::activation(x, kernel_act(Some(self)))
    }

    /// `self(x + h)`: a residual cell's output (one fused kernel on CPU).
    pub fn apply_to_sum(self, x: &Tensor, h: &Tensor) -> Result<Tensor> {
        ops::add_activation(x, h, kernel_act(Some(self)))
    }
}

pub const LEAKY_SLOPE: f64 = 0.2;

/// y = x W^T + b, W [out, in].
pub struct Dense {
    w: Tensor,
    b: Tensor,
}

impl Dense {
    pub fn new(vb: VarBuilder, input: usize, output: usize) -> Result<Self> {
        Ok(Self {
            w: vb.get_with_hints((output, input), "weight", he(input))?,
            b: vb.get_with_hints(output, "bias", Init::Const(0.0))?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::linear(x, &self.w, &self.b)
    }
}

/// Stride-s convolution, weight [c_out, c_in, k, k].
pub struct Conv {
    w: Tensor,
    b: Tensor,
    stride: usize,
    pad: usize,
}

impl Conv {
    pub fn new(
        vb: VarBuilder,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        Self::with_init(vb, (c_in, c_out, k, stride, pad), he(c_in * k * k))
    }

    /// A convolution whose weights start at zero: an output head that starts at its neutral
    /// value (the hierarchical VAE's prior and posterior heads) and learns from there.
    pub fn zeroed(
        vb: VarBuilder,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        Self::with_init(vb, (c_in, c_out, k, stride, pad), Init::Const(0.0))
    }

    /// `(c_in, c_out, kernel, stride, pad)` with the weights drawn from `init`, the bias at zero.
    fn with_init(
        vb: VarBuilder,
        (c_in, c_out, k, stride, pad): (usize, usize, usize, usize, usize),
        init: Init,
    ) -> Result<Self> {
        Ok(Self {
            w: vb.get_with_hints((c_out, c_in, k, k), "weight", init)?,
            b: vb.get_with_hints(c_out, "bias", Init::Const(0.0))?,
            stride,
            pad,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::conv2d(x, &self.w, Some(&self.b), self.stride, self.pad)
    }
}

/// Stride-s transposed convolution, weight [c_in, c_out, k, k]. He fan-in as PyTorch computes it
/// for this layout (c_out * k * k), so initial scales match the reference workload.
pub struct ConvTranspose {
    w: Tensor,
    b: Tensor,
    stride: usize,
    pad: usize,
}

impl ConvTranspose {
    pub fn new(
        vb: VarBuilder,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> Result<Self> {
        Ok(Self {
            w: vb.get_with_hints((c_in, c_out, k, k), "weight", he(c_out * k * k))?,
            b: vb.get_with_hints(c_out, "bias", Init::Const(0.0))?,
            stride,
            pad,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        ops::conv_transpose2d(x, &self.w, Some(&self.b), self.stride, self.pad)
    }
}

/// Batch norm over channels (4-D) or features (2-D). Running statistics are buffers in the param
/// store (never optimised) updated here with PyTorch's momentum 0.1 and unbiased variance.
pub struct BatchNorm {
    gamma: Tensor,
    beta: Tensor,
    running_mean: Var,
    running_var: Var,
}

pub const BN_EPS: f64 = 1e-5;
pub const BN_MOMENTUM: f64 = 0.1;

impl BatchNorm {
    pub fn new(vb: VarBuilder, c: usize) -> Result<Self> {
        Ok(Self {
            gamma: vb.get_with_hints(c, "weight", Init::Const(1.0))?,
            beta: vb.get_with_hints(c, "bias", Init::Const(0.0))?,
            running_mean: Var::from_tensor(&vb.get_with_hints(c, "running_mean", Init::Const(0.0))?)?,
            running_var: Var::from_tensor(&vb.get_with_hints(c, "running_var", Init::Const(1.0))?)?,
        })
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_act(x, mode, None)
    }

    /// Batch norm followed by `act` (fused into one kernel in training mode on CPU).
    pub fn forward_act(&self, x: &Tensor, mode: Mode, act: Option<Activation>) -> Result<Tensor> {
        match mode {
            Mode::Eval => {
                let y = ops::batch_norm_eval(
                    x,
                    &self.gamma,
                    &self.beta,
                    self.running_mean.as_tensor(),
                    self.running_var.as_tensor(),
                    BN_EPS,
                )?;
                match act {
                    Some(a) => a.apply(&y),
                    None => Ok(y),
                }
            }
            Mode::Train => {
                let kact = kernel_act(act);
                let (y, mean, var) = ops::batch_norm_act_train(x, &self.gamma, &self.beta, BN_EPS, kact)?;
                self.update_running(&mean, &var, x.elem_count() / x.dim(1)?)?;
                Ok(y)
            }
        }
    }

    /// `dense` followed by this batch norm and `act`: in training mode on CPU one fused kernel
    /// (the same function as `self.forward_act(&dense.forward(x)?, mode, act)`).
    pub fn forward_dense_act(
        &self,
        dense: &Dense,
        x: &Tensor,
        mode: Mode,
        act: Option<Activation>,
    ) -> Result<Tensor> {
        match mode {
            Mode::Eval => self.forward_act(&dense.forward(x)?, mode, act),
            Mode::Train => {
                let (y, mean, var) = ops::dense_bn_act_train(
                    x,
                    &dense.w,
                    &dense.b,
                    &self.gamma,
                    &self.beta,
                    BN_EPS,
                    kernel_act(act),
                )?;
                self.update_running(&mean, &var, x.dim(0)?)?;
                Ok(y)
            }
        }
    }

    /// PyTorch's running statistics update from the batch mean and biased variance over `n`
    /// values per channel (momentum 0.1, unbiased variance).
    fn update_running(&self, mean: &Tensor, var: &Tensor, n: usize) -> Result<()> {
        let unbias = if n > 1 { n as f64 / (n - 1) as f64 } else { 1.0 };
        let rm = ((self.running_mean.as_tensor() * (1.0 - BN_MOMENTUM))? + (mean * BN_MOMENTUM)?)?;
        let rv = ((self.running_var.as_tensor() * (1.0 - BN_MOMENTUM))? + (var * (BN_MOMENTUM * unbias))?)?;
        self.running_mean.set(&rm)?;
        self.running_var.set(&rv)?;
        Ok(())
    }
}

fn kernel_act(act: Option<Activation>) -> crate::kernels::Activation {
    match act {
        None => crate::kernels::Activation::Identity,
        Some(Activation::Relu) => crate::kernels::Activation::Relu,
        Some(Activation::LeakyRelu) => crate::kernels::Activation::LeakyRelu(LEAKY_SLOPE as f32),
        Some(Activation::Silu) => crate::kernels::Activation::Silu,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::params::ParamStore;
    use crate::util::SeededRng;
    use candle_core::{DType, Device};

    fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    }

    #[test]
    fn fused_dense_block_matches_dense_then_batch_norm_in_both_modes() {
        let store = ParamStore::new(3, &Device::Cpu);
        let vb = store.var_builder();
        let dense = Dense::new(vb.pp("dense"), 7, 5).unwrap();
        let fused_bn = BatchNorm::new(vb.pp("fused"), 5).unwrap();
        let plain_bn = BatchNorm::new(vb.pp("plain"), 5).unwrap();
        let x = Tensor::from_vec(SeededRng::new(1).normal_vec(6 * 7), (6, 7), &Device::Cpu).unwrap();
        let act = Some(Activation::LeakyRelu);
        for _ in 0..3 {
            let fused = fused_bn.forward_dense_act(&dense, &x, Mode::Train, act).unwrap();
            let plain = plain_bn
                .forward_act(&dense.forward(&x).unwrap(), Mode::Train, act)
                .unwrap();
            assert!(max_diff(&fused, &plain) < 1e-5);
        }
        // Same running statistics, so the same evaluation-mode outputs.
        assert!(
            max_diff(
                fused_bn.running_mean.as_tensor(),
                plain_bn.running_mean.as_tensor()
            ) < 1e-6
        );
        assert!(max_diff(fused_bn.running_var.as_tensor(), plain_bn.running_var.as_tensor()) < 1e-6);
        assert!(
            max_diff(
                fused_bn.running_mean.as_tensor(),
                &Tensor::zeros(5, DType::F32, &Device::Cpu).unwrap()
            ) > 1e-3
        );
        let fused = fused_bn.forward_dense_act(&dense, &x, Mode::Eval, act).unwrap();
        let plain = plain_bn
            .forward_act(&dense.forward(&x).unwrap(), Mode::Eval, act)
            .unwrap();
        assert!(max_diff(&fused, &plain) < 1e-5);
        let train = fused_bn.forward_dense_act(&dense, &x, Mode::Train, act).unwrap();
        assert!(
            max_diff(&fused, &train) > 1e-3,
            "eval mode must use the running statistics"
        );
    }
}
