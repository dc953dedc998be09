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
//!
//! [`backward_with_update`] goes one step further for the optimizer: it hands each variable's
//! complete gradient to an update function as soon as the backward pass has finished with that
//! variable, so Adam reads a layer's weight gradient while it is still in cache (and the weight
//! too, just read by the layer's backward), instead of in one pass over every parameter after
//! the backward pass, when all of them have left the cache.
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
    backward_with_update(loss, &mut |_, _| Ok(false))
}

/// Takes the deferred gradients of `param` out of the sink, summed.
fn take_deferred(param: &Tensor) -> Result<Option<Tensor>> {
    let mine: Vec<Tensor> = SINK.with(|s| {
        let mut s = s.borrow_mut();
        let list = s.as_mut().map(std::mem::take).unwrap_or_default();
        let (mine, rest): (Vec<_>, Vec<_>) = list.into_iter().partition(|(p, _)| p.id() == param.id());
        if let Some(l) = s.as_mut() {
            *l = rest;
        }
        mine.into_iter().map(|(_, g)| g).collect()
    });
    let mut sum: Option<Tensor> = None;
    for g in mine {
        sum = Some(match sum {
            Some(s) => (s + g)?,
            None => g,
        });
    }
    Ok(sum)
}

/// [`backward`], calling `update(variable, gradient)` as soon as each variable's gradient is
/// complete (candle visits the graph in topological order, so every use of the variable has
/// been differentiated by then and no later node reads it). When `update` returns true it has
/// consumed the gradient (typically by updating the variable in place) and the gradient is left
/// out of the returned store; otherwise the store keeps it.
pub fn backward_with_update(
    loss: &Tensor,
    update: &mut dyn FnMut(&Tensor, &Tensor) -> Result<bool>,
) -> Result<GradStore> {
    let guard = SinkGuard(Some(SINK.with(|s| s.replace(Some(Vec::new())))));
    let result = loss.backward_with_variable_hook(&mut |var, grads| {
        let deferred = take_deferred(var)?;
        let g = match (grads.remove(var), deferred) {
            (Some(a), Some(b)) => (a + b)?,
            (Some(g), None) | (None, Some(g)) => g,
            (None, None) => return Ok(()),
        };
        if !update(var, &g)? {
            grads.insert(var, g);
        }
        Ok(())
    });
    // Gradients deferred for tensors the pass never reached as variables (none in practice:
    // only variables are deferred, and every argument of a kernel is in the graph).
    let leftover = SINK.with(|s| s.borrow_mut().take()).unwrap_or_default();
    drop(guard);
    let mut grads = result?;
    for (param, g) in leftover {
        let g = match grads.remove(&param) {
            Some(earlier) => (earlier + g)?,
            None => g,
        };
        grads.insert(&param, g);
    }
    Ok(grads)
}
