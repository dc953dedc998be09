//! Adam (Kingma & Ba, in PyTorch's exact update order) fused into one multi-threaded pass that
//! updates parameters, first and second moments in place: no temporaries per step.
use super::util::{f32_data, profiled};
use candle_core::backprop::GradStore;
use candle_core::{bail, CpuStorage, InplaceOp2, Layout, Result, Tensor, Var};
use rayon::prelude::*;
use std::cell::RefCell;

/// Adam hyper-parameters (no weight decay: the project uses plain Adam).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHyper {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamHyper {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 14;

/// One Adam step on plain slices; `step` counts from 1.
pub fn adam_update_slices(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], step: u64, h: &AdamHyper) {
    assert!(
        p.len() == g.len() && p.len() == m.len() && p.len() == v.len(),
        "Adam: length mismatch"
    );
    let t = step.max(1) as i32;
    let bc1 = 1.0 - h.beta1.powi(t);
    let bc2_sqrt = (1.0 - h.beta2.powi(t)).sqrt();
    let step_size = (h.lr / bc1) as f32;
    let inv_bc2_sqrt = (1.0 / bc2_sqrt) as f32;
    let (b1c, b2, b2c, eps) = (
        (1.0 - h.beta1) as f32,
        h.beta2 as f32,
        (1.0 - h.beta2) as f32,
        h.eps as f32,
    );
    let body = |(((pc, gc), mc), vc): (((&mut [f32], &[f32]), &mut [f32]), &mut [f32])| {
        for i in 0..pc.len() {
            let gi = gc[i];
            let mi = mc[i] + b1c * (gi - mc[i]);
            let vi = b2 * vc[i] + b2c * gi * gi;
            mc[i] = mi;
            vc[i] = vi;
            pc[i] -= step_size * mi / (vi.sqrt() * inv_bc2_sqrt + eps);
        }
    };
    if p.len() >= 2 * CHUNK && rayon::current_num_threads() > 1 {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(body);
    } else {
        body((((p, g), m), v));
    }
}

struct AdamInplace<'a> {
    moments: RefCell<(&'a mut [f32], &'a mut [f32])>,
    step: u64,
    hyper: AdamHyper,
}

impl InplaceOp2 for AdamInplace<'_> {
    fn name(&self) -> &'static str {
        "norbvae-adam"
    }

    fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> Result<()> {
        let g = f32_data(s2, l2)?;
        let CpuStorage::F32(pv) = s1 else {
            bail!("Adam: parameters must be f32")
        };
        let Some((a, b)) = l1.contiguous_offsets() else {
            bail!("Adam: parameter is not contiguous")
        };
        let p = &mut pv[a..b];
        let mut mom = self.moments.borrow_mut();
        let (m, v) = &mut *mom;
        if p.len() != g.len() || p.len() != m.len() || p.len() != v.len() {
            bail!("Adam: parameter, gradient and moments differ in size");
        }
        profiled(
            || "adam".to_string(),
            || adam_update_slices(p, g, m, v, self.step, &self.hyper),
        );
        Ok(())
    }
}

/// One Adam step on a candle variable, in place, with moments kept by the caller.
pub fn adam_update(
    param: &Var,
    grad: &Tensor,
    m: &mut [f32],
    v: &mut [f32],
    step: u64,
    hyper: &AdamHyper,
) -> Result<()> {
    let grad = grad.contiguous()?;
    let op = AdamInplace {
        moments: RefCell::new((m, v)),
        step,
        hyper: *hyper,
    };
    param.as_tensor().inplace_op2(&grad, &op)
}

/// A complete fused Adam over a list of variables (used by the benchmark's reference models;
/// the training engine's `train::optim::Adam` calls `adam_update` per variable).
pub struct FusedAdam {
    vars: Vec<Var>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    step: u64,
    hyper: AdamHyper,
}

impl FusedAdam {
    pub fn new(vars: Vec<Var>, hyper: AdamHyper) -> Self {
        let m = vars.iter().map(|v| vec![0f32; v.elem_count()]).collect();
        let v = vars.iter().map(|v| vec![0f32; v.elem_count()]).collect();
        Self {
            vars,
            m,
            v,
            step: 0,
            hyper,
        }
    }

    /// Updates every variable that has a gradient in `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step += 1;
        for ((var, m), v) in self.vars.iter().zip(&mut self.m).zip(&mut self.v) {
            if let Some(g) = grads.get(var) {
                adam_update(var, g, m, v, self.step, &self.hyper)?;
            }
        }
        Ok(())
    }
}
