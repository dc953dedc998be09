//! The layer operations every model goes through: convolution, transposed convolution and batch
//! norm. They are written with candle's own ops; the kernels module may replace their insides with
//! faster CPU kernels, so the signatures are the contract (see CONTRACTS.md) and models must not
//! call candle's conv / norm ops directly.
use candle_core::{Result, Tensor};

/// 2-D convolution, weight [c_out, c_in, k, k], optional bias [c_out], dilation 1, one group.
pub fn conv2d(x: &Tensor, w: &Tensor, b: Option<&Tensor>, stride: usize, pad: usize) -> Result<Tensor> {
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
