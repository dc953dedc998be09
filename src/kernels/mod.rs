//! The CPU hot path: project-owned kernels for the operations that dominate a VAE training step,
//! as candle custom ops (so candle's autograd uses them) and an in-place optimizer.
//!
//! - `conv`: conv2d and transposed conv2d, forward and both backward passes (im2col + GEMM),
//!   skipping kernel taps that read only padding (`taps`), and a direct 3x3 stride-1 kernel for
//!   the residual cells' few-channel convolutions (`conv3x3`);
//! - `batchnorm`: training-mode batch norm with a fused activation, forward and backward;
//! - `activation`: an activation alone, and a residual cell's `act(x + h)`, forward and backward;
//! - `linear`, `dense`: a dense layer, and a dense layer + batch norm + activation as one op
//!   (its batch norm on feature-major rows in `bn_rows`);
//! - `adam`: fused in-place Adam, also applied inside the backward pass (`backward_with_adam`);
//! - `grads`: the backward pass with each variable's gradient handed to an optimizer as soon as
//!   it is complete (`backward_with_update`);
//! - `awake`: keeps the pool's other workers spinning for the length of a training step.
//!
//! Every kernel runs on the current rayon pool: install a local `rayon::ThreadPool` to choose
//! the thread count. They are f32 and CPU only; `model::ops` keeps candle's ops for other devices.
pub mod activation;
pub mod adam;
pub mod awake;
pub mod batchnorm;
mod bn_rows;
pub mod conv;
mod conv3x3;
pub mod dense;
pub mod ema;
mod gemm;
pub mod grads;
pub mod linear;
pub mod loss;
pub mod peak;
mod taps;
mod transpose;
mod util;
pub use util::{process_cpu_ns, profile_report};
pub mod workloads;

pub use activation::{activation, add_activation};
pub use adam::{adam_update, adam_update_all, backward_with_adam, AdamHyper, FusedAdam};
pub use awake::{keep_workers_awake, with_workers_awake};
pub use batchnorm::{batch_norm_train, Activation};
pub use conv::{conv2d, conv_transpose2d};
pub use dense::dense_bn_act_train;
pub use ema::ema_update;
pub use grads::backward_with_update;
pub use loss::bce_with_logits_sum;

#[cfg(test)]
mod tests;
pub use linear::linear;
