//! Adam (Kingma & Ba), the optimiser of every run. candle-nn only has AdamW, and its state cannot
//! be saved, which exact `--resume` needs.
//!
//! When every variable is an f32 CPU tensor the moments live in plain buffers and each step is
//! the fused in-place kernel `crate::kernels::adam_update_all` (one multi-threaded pass over all
//! variables, no temporaries); otherwise (CUDA) the candle ops below run.
use super::grad_guard::{global_norm, scale_grads, GradDecision, GradGuard};
use crate::kernels;
use candle_core::backprop::GradStore;
use candle_core::{DType, Result, Tensor, Var};
use std::collections::HashMap;

/// Adam's hyper-parameters: the kernels' type, shared by both update paths.
pub use crate::kernels::AdamHyper;

pub struct Adam {
    vars: Vec<Var>,
    /// Moments as tensors (device path; empty when `cpu` is used).
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Moments as plain buffers for the fused CPU kernel.
    cpu: Option<CpuMoments>,
    params: AdamHyper,
    /// Steps taken so far (for bias correction).
    t: u64,
}

impl Adam {
    pub fn new(vars: Vec<Var>, params: AdamHyper) -> Result<Self> {
        if vars
            .iter()
            .all(|v| v.device().is_cpu() && v.dtype() == DType::F32)
        {
            let zeros = || vars.iter().map(|v| vec![0f32; v.elem_count()]).collect();
            let cpu = CpuMoments {
                m: zeros(),
                v: zeros(),
            };
            return Ok(Self {
                vars,
                m: Vec::new(),
                v: Vec::new(),
                cpu: Some(cpu),
                params,
                t: 0,
            });
        }
        let m = vars.iter().map(|v| v.zeros_like()).collect::<Result<Vec<_>>>()?;
        let v = vars.iter().map(|v| v.zeros_like()).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            vars,
            m,
            v,
            cpu: None,
            params,
            t: 0,
        })
    }

    pub fn params(&self) -> &AdamHyper {
        &self.params
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.params.lr = lr;
    }

    pub fn steps(&self) -> u64 {
        self.t
    }

    /// The trained variables, in the order of the moments.
    pub fn vars(&self) -> &[Var] {
        &self.vars
    }

    fn hyper(&self) -> AdamHyper {
        self.params
    }

    /// The backward pass of `loss` and one update: the same as `step(&loss.backward()?)`.
    /// On CPU each variable is updated in place as soon as the backward pass has its complete
    /// gradient (`kernels::backward_with_adam`), while that gradient is still in cache.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let hyper = self.hyper();
        if let Some(cpu) = &mut self.cpu {
            self.t += 1;
            // What it returns are gradients of tensors this optimizer does not train.
            kernels::backward_with_adam(loss, &self.vars, &mut cpu.m, &mut cpu.v, self.t, &hyper)?;
            return Ok(());
        }
        self.step(&loss.backward()?)
    }

    /// The backward pass of `loss`, then the global gradient norm, then `guard`'s decision: the
    /// update is skipped (no step: weights, moments and step count unchanged) or made with the
    /// gradients scaled to the clipping norm. Unlike [`Adam::backward_step`] the whole gradient
    /// store exists before the first variable changes, since the norm needs every gradient.
    pub fn backward_guarded_step(&mut self, loss: &Tensor, guard: &mut GradGuard) -> Result<GuardedStep> {
        let mut grads = loss.backward()?;
        let norm = global_norm(&grads, &self.vars)?;
        let decision = guard.decide(norm);
        if let GradDecision::Apply { scale } = decision {
            if scale != 1.0 {
                scale_grads(&mut grads, &self.vars, scale)?;
            }
            self.step(&grads)?;
        }
        Ok(GuardedStep { norm, decision })
    }

    /// One update from the gradients of the last backward pass; variables without a gradient
    /// are left alone (their moments too).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let hyper = self.hyper();
        if let Some(cpu) = &mut self.cpu {
            let mut items: Vec<_> = self
                .vars
                .iter()
                .zip(&mut cpu.m)
                .zip(&mut cpu.v)
                .filter_map(|((var, m), v)| grads.get(var).map(|g| (var, g, &mut m[..], &mut v[..])))
                .collect();
            return kernels::adam_update_all(&mut items, self.t, &hyper);
        }
        let AdamHyper {
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
        if let Some(cpu) = &self.cpu {
            for (i, var) in self.vars.iter().enumerate() {
                for (name, data) in [(format!("m.{i}"), &cpu.m[i]), (format!("v.{i}"), &cpu.v[i])] {
                    // Shapes match the variables by construction, so this cannot fail.
                    if let Ok(t) = Tensor::from_slice(data, var.shape(), var.device()) {
                        out.insert(name, t);
                    }
                }
            }
            return out;
        }
        for i in 0..self.vars.len() {
            out.insert(format!("m.{i}"), self.m[i].clone());
            out.insert(format!("v.{i}"), self.v[i].clone());
        }
        out
    }

    /// Restore moments saved by [`state_tensors`] and the step count.
    pub fn load_state(&mut self, tensors: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        if let Some(cpu) = &mut self.cpu {
            for (i, var) in self.vars.iter().enumerate() {
                for (name, slot) in [
                    (format!("m.{i}"), &mut cpu.m[i]),
                    (format!("v.{i}"), &mut cpu.v[i]),
                ] {
                    let t = tensors.get(&name).ok_or_else(|| {
                        candle_core::Error::Msg(format!("optimizer state has no tensor {name}"))
                    })?;
                    if t.shape() != var.shape() {
                        candle_core::bail!(
                            "optimizer state {name}: shape {:?}, expected {:?}",
                            t.dims(),
                            var.dims()
                        );
                    }
                    *slot = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                }
            }
            self.t = steps;
            return Ok(());
        }
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

/// What [`Adam::backward_guarded_step`] did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GuardedStep {
    /// The global L2 norm of the gradients before clipping.
    pub norm: f64,
    pub decision: GradDecision,
}

/// Adam's first and second moments per variable, flat, for the fused CPU kernel.
struct CpuMoments {
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}
