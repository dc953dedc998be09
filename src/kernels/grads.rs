//! Weight gradients handed straight to the gradient store.
//!
//! candle's backward pass adds every gradient a node returns into a fresh zero-filled tensor of
//! the input's shape (`zeros_like` then `add`, both allocating and, above 64k elements, running on
//! candle's own thread pool). For the weights of the dense and linear kernels that is a useless
//! extra pass over every parameter per step. Inside [`backward`], those kernels instead hand the
//! gradients of their *variable* inputs to this module, and [`backward`] puts them into the
//! `GradStore` afterwards (adding to any gradient candle found for the same variable), so the
//! store holds exactly what `loss.backward()` would give. Outside [`backward`] (a plain
//! `loss.backward()`), nothing is deferred.
use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor};
use std::cell::RefCell;

thread_local! {
    static SINK: RefCell<Option<Vec<(Tensor, Tensor)>>> = const { RefCell::new(None) };
}

/// Returns `Some(grad)` for candle to accumulate as usual, or `None` when `param` is a variable
/// and a [`backward`] call on this thread has taken the gradient.
pub(crate) fn defer(param: &Tensor, grad: Tensor) -> Option<Tensor> {
    if !param.is_variable() {
        return Some(grad);
    }
    SINK.with(|s| match s.borrow_mut().as_mut() {
        Some(list) => {
            list.push((param.clone(), grad));
            None
        }
        None => Some(grad),
    })
}

/// Restores the previous sink state when dropped (also on panic or error).
struct SinkGuard(Option<Option<Vec<(Tensor, Tensor)>>>);

impl Drop for SinkGuard {
    fn drop(&mut self) {
        if let Some(prev) = self.0.take() {
            SINK.with(|s| *s.borrow_mut() = prev);
        }
    }
}

/// `loss.backward()`, with the project kernels' weight gradients delivered without candle's
/// zero-fill and add. The resulting store has the same gradients for the same tensors.
pub fn backward(loss: &Tensor) -> Result<GradStore> {
    let guard = SinkGuard(Some(SINK.with(|s| s.replace(Some(Vec::new())))));
    let result = loss.backward();
    let deferred = SINK.with(|s| s.borrow_mut().take()).unwrap_or_default();
    drop(guard);
    let mut grads = result?;
    for (param, g) in deferred {
        let g = match grads.remove(&param) {
            Some(earlier) => (earlier + g)?,
            None => g,
        };
        grads.insert(&param, g);
    }
    Ok(grads)
}
