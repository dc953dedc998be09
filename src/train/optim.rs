//! Adam (Kingma & Ba), the optimiser of every run. Written with candle ops; the kernels module may
//! make `step` a fused in-place kernel with the same signature (see CONTRACTS.md). candle-nn only
//! has AdamW, and its state cannot be saved, which exact `--resume` needs.
use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamParams {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamParams {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

pub struct Adam {
    vars: Vec<Var>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    params: AdamParams,
    /// Steps taken so far (for bias correction).
    t: u64,
}

impl Adam {
    pub fn new(vars: Vec<Var>, params: AdamParams) -> Result<Self> {
        let m = vars.iter().map(|v| v.zeros_like()).collect::<Result<Vec<_>>>()?;
        let v = vars.iter().map(|v| v.zeros_like()).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            vars,
            m,
            v,
            params,
            t: 0,
        })
    }

    pub fn params(&self) -> &AdamParams {
        &self.params
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    pub fn steps(&self) -> u64 {
        self.t
    }

    /// One update from the gradients of the last backward pass; variables without a gradient
    /// are left alone (their moments too).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let AdamParams {
            lr,
            beta1,
            beta2,
            eps,
        } = self.params;
        let bc1 = 1.0 - beta1.powi(self.t as i32);
        let bc2 = 1.0 - beta2.powi(self.t as i32);
        for i in 0..self.vars.len() {
            let var = &self.vars[i];
            let Some(g) = grads.get(var) else { continue };
            let m = ((&self.m[i] * beta1)? + (g * (1.0 - beta1))?)?;
            let v = ((&self.v[i] * beta2)? + (g.sqr()? * (1.0 - beta2))?)?;
            let denom = ((&v * (1.0 / bc2))?.sqrt()? + eps)?;
            let update = ((&m * (lr / bc1))? / denom)?;
            var.set(&var.as_tensor().sub(&update)?)?;
            // Detached: the moments must not carry this step's autograd graph into the next.
            self.m[i] = m.detach();
            self.v[i] = v.detach();
        }
        Ok(())
    }

    /// The moments as named tensors (`m.<i>`, `v.<i>` in variable order) for checkpoints.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for i in 0..self.vars.len() {
            out.insert(format!("m.{i}"), self.m[i].clone());
            out.insert(format!("v.{i}"), self.v[i].clone());
        }
        out
    }

    /// Restore moments saved by [`state_tensors`] and the step count.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        for i in 0..self.vars.len() {
            for (name, slot) in [
                (format!("m.{i}"), &mut self.m[i]),
                (format!("v.{i}"), &mut self.v[i]),
            ] {
                let t = tensors.get(&name).ok_or_else(|| {
                    candle_core::Error::Msg(format!("optimizer state has no tensor {name}"))
                })?;
                if t.shape() != slot.shape() {
                    candle_core::bail!(
                        "optimizer state {name}: shape {:?}, expected {:?}",
                        t.dims(),
                        slot.dims()
                    );
                }
                *slot = t.clone();
            }
        }
        self.t = steps;
        Ok(())
    }
}
