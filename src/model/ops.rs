//! The layer operations every model goes through: convolution, transposed convolution, dense
//! layers and batch norm (alone or fused with a dense layer). They are written with candle's own ops; the kernels module may replace their insides with
//! faster CPU kernels, so the signatures are the contract (the kernels must keep them) and models must not
//! call candle's conv / norm ops directly.
//!
//! On CPU with f32 tensors they dispatch to the project kernels (`crate::kernels`: im2row + GEMM
//! convolutions, fused batch norm), which compute the same functions with gradients through
//! candle's autograd; other devices (CUDA) keep candle's ops.
use crate::kernels;
use candle_core::{DType, Result, Tensor};

/// Whether the project CPU kernels handle this tensor.
fn on_cpu_kernels(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// The bias to hand to a kernel: the given one, or zeros (the kernels always add a bias).
fn bias_or_zeros(b: Option<&Tensor>, c_out: usize, x: &Tensor) -> Result<Tensor> {
    match b {
        Some(b) => Ok(b.clone()),
        None => Tensor::zeros(c_out, DType::F32, x.device()),
    }
}

/// 2-D convolution, weight [c_out, c_in, k, k], optional bias [c_out], dilation 1, one group.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, stride: usize, pad: usize) -> Result<Tensor> {
    if on_cpu_kernels(x) {
        return kernels::conv2d(x, w, &bias_or_zeros(b, w.dim(0)?, x)?, stride, pad);
    }
    let y = x.conv2d(w, pad, stride, 1, 1)?;
    add_channel_bias(y, b)
}

/// 2-D transposed convolution, weight [c_in, c_out, k, k] (PyTorch layout), optional bias [c_out],
/// no output padding, dilation 1.
pub fn conv_transpose2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    pad: usize,
) -> Result<Tensor> {
    if on_cpu_kernels(x) {
        return kernels::conv_transpose2d(x, w, &bias_or_zeros(b, w.dim(1)?, x)?, stride, pad);
    }
    let y = x.conv_transpose2d(w, pad, 0, stride, 1)?;
    add_channel_bias(y, b)
}

fn add_channel_bias(y: Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    match b {
        Some(b) => {
            let c = b.elem_count();
            y.broadcast_add(&b.reshape((1, c, 1, 1))?)
        }
        None => Ok(y),
    }
}

/// Reduction dims and the broadcast shape of per-channel statistics: channels of a 4-D [b,c,h,w]
/// tensor, features of a 2-D [b,f] tensor.
fn stat_layout(x: &Tensor) -> Result<(Vec<usize>, Vec<usize>)> {
    match x.rank() {
        4 => Ok((vec![0, 2, 3], vec![1, x.dim(1)?, 1, 1])),
        2 => Ok((vec![0], vec![1, x.dim(1)?])),
        r => candle_core::bail!("batch norm expects a 2-D or 4-D tensor, got rank {r}"),
    }
}

/// Batch norm in training mode: normalise with the batch statistics. Returns the output and the
/// batch mean and (biased) variance per channel, shape [c], for the running statistics.
pub fn batch_norm_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    batch_norm_act_train(x, gamma, beta, eps, kernels::Activation::Identity)
}

/// Training-mode batch norm followed by an activation, fused into one pass forward and one
/// backward on CPU: `act(batch_norm_train(x).0)` with the same batch mean and biased variance.
pub fn batch_norm_act_train(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: kernels::Activation,
) -> Result<(Tensor, Tensor, Tensor)> {
    if on_cpu_kernels(x) && matches!(x.rank(), 2 | 4) {
        return kernels::batch_norm_train(x, gamma, beta, eps, act);
    }
    let (y, mean, var) = batch_norm_train_candle(x, gamma, beta, eps)?;
    Ok((candle_activation(&y, act)?, mean, var))
}

/// candle's composite batch norm (the path for non-CPU devices).
fn batch_norm_train_candle(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (dims, shape) = stat_layout(x)?;
    let mean = x.mean_keepdim(dims.as_slice())?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(dims.as_slice())?;
    let inv_std = (var.clone() + eps)?.sqrt()?.recip()?;
    let y = xc
        .broadcast_mul(&inv_std)?
        .broadcast_mul(&gamma.reshape(shape.as_slice())?)?
        .broadcast_add(&beta.reshape(shape.as_slice())?)?;
    Ok((y, mean.flatten_all()?.detach(), var.flatten_all()?.detach()))
}

/// An activation element-wise; on CPU one kernel forward and one backward.
pub fn activation(x: &Tensor, act: kernels::Activation) -> Result<Tensor> {
    if on_cpu_kernels(x) {
        return kernels::activation(x, act);
    }
    candle_activation(x, act)
}

/// `act(x + h)`, a residual cell's output; on CPU one kernel forward and one backward.
pub fn add_activation(x: &Tensor, h: &Tensor, act: kernels::Activation) -> Result<Tensor> {
    if on_cpu_kernels(x) && h.dtype() == DType::F32 && h.device().is_cpu() {
        return kernels::add_activation(x, h, act);
    }
    candle_activation(&(x + h)?, act)
}

fn candle_activation(y: &Tensor, act: kernels::Activation) -> Result<Tensor> {
    match act {
        kernels::Activation::Identity => Ok(y.clone()),
        kernels::Activation::Relu => y.relu(),
        kernels::Activation::LeakyRelu(a) => candle_nn::ops::leaky_relu(y, a as f64),
        kernels::Activation::Silu => y.silu(),
    }
}

/// Batch norm in evaluation mode: normalise with the running statistics.
pub fn batch_norm_eval(
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
) -> Result<Tensor> {
    let (_, shape) = stat_layout(x)?;
    let scale = (running_var + eps)?.sqrt()?.recip()?.mul(gamma)?;
    let shift = (beta - running_mean.mul(&scale)?)?;
    x.broadcast_mul(&scale.reshape(shape.as_slice())?)?
        .broadcast_add(&shift.reshape(shape.as_slice())?)
}

/// Dense layer y = x W^T + b (W [out, in], x [n, in]); on CPU one fused kernel with its backward.
pub fn linear(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    if on_cpu_kernels(x) && x.rank() == 2 {
        return kernels::linear(x, w, b);
    }
    x.matmul(&w.t()?)?.broadcast_add(b)
}

/// A dense layer followed by training-mode batch norm and an activation:
/// `act(batch_norm_train(x W^T + b, gamma, beta))`, returning the output and the batch mean and
/// biased variance per feature [out]. On CPU one fused kernel (one autograd node per block);
/// elsewhere candle's ops as in [`linear`] and [`batch_norm_act_train`].
pub fn dense_bn_act_train(
    x: &Tensor,
    w: &Tensor,
    b: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    eps: f64,
    act: kernels::Activation,
) -> Result<(Tensor, Tensor, Tensor)> {
    if on_cpu_kernels(x) && x.rank() == 2 {
        return kernels::dense_bn_act_train(x, w, b, gamma, beta, eps, act);
    }
    batch_norm_act_train(&linear(x, w, b)?, gamma, beta, eps, act)
}
