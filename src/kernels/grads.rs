//! The backward pass of a training step, with the optimizer's update folded in.
//!
//! [`backward_with_update`] hands each variable's complete gradient to an update function as
//! soon as the backward pass has finished with that variable (the vendored candle's
//! `backward_with_variable_hook`), so Adam reads a layer's weight gradient while it is still in
//! cache (and the weight too, just read by the layer's backward), instead of in one pass over
//! every parameter after the backward pass, when all of them have left the cache.
//!
//! Gradients reach the store without candle's former zero-fill and add per edge: that is the
//! vendored candle's other patch (vendor/candle-core/NORBVAE-PATCH.md), so the kernels simply
//! return their weight gradients to candle.
use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor};

/// `loss.backward()`, calling `update(variable, gradient)` as soon as each variable's gradient is
/// complete (candle visits the graph in topological order, so every use of the variable has
/// been differentiated by then and no later node reads it). When `update` returns true it has
/// consumed the gradient (typically by updating the variable in place) and the gradient is left
/// out of the returned store; otherwise the store keeps it.
pub fn backward_with_update(
    loss: &Tensor,
    update: &mut dyn FnMut(&Tensor, &Tensor) -> Result<bool>,
) -> Result<GradStore> {
    loss.backward_with_variable_hook(&mut |var, grads| {
        if let Some(g) = grads.remove(var) {
            if !update(var, &g)? {
                grads.insert(var, g);
            }
        }
        Ok(())
    })
}
