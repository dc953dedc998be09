//! Adam (Kingma & Ba, in PyTorch's exact update order) fused into one multi-threaded pass that
//! updates parameters, first and second moments in place: no temporaries per step.
use super::util::{f32_data, profiled, SyncPtr};
use candle_core::backprop::GradStore;
use candle_core::{bail, CpuStorage, InplaceOp1, InplaceOp2, Layout, Result, Storage, Tensor, Var};
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

/// Adam's per-step constants.
#[derive(Clone, Copy)]
struct Consts {
    step_size: f32,
    inv_bc2_sqrt: f32,
    b1c: f32,
    b2: f32,
    b2c: f32,
    eps: f32,
}

impl Consts {
    fn new(step: u64, h: &AdamHyper) -> Self {
        let t = step.max(1) as i32;
        let bc1 = 1.0 - h.beta1.powi(t);
        let bc2_sqrt = (1.0 - h.beta2.powi(t)).sqrt();
        Self {
            step_size: (h.lr / bc1) as f32,
            inv_bc2_sqrt: (1.0 / bc2_sqrt) as f32,
            b1c: (1.0 - h.beta1) as f32,
            b2: h.beta2 as f32,
            b2c: (1.0 - h.beta2) as f32,
            eps: h.eps as f32,
        }
    }
}

#[inline(always)]
fn update_body(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: Consts) {
    for (((pi, &gi), mi), vi) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let mn = *mi + c.b1c * (gi - *mi);
        let vn = c.b2 * *vi + c.b2c * gi * gi;
        *mi = mn;
        *vi = vn;
        *pi -= c.step_size * mn / (vn.sqrt() * c.inv_bc2_sqrt + c.eps);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn update_avx2(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: Consts) {
    update_body(p, g, m, v, c)
}

/// The element loop, 8 lanes wide where the CPU has AVX2 (same results: no fused multiply-adds
/// are formed, and sqrt and division are exact in both).
fn update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], c: Consts) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU supports the enabled features.
        return unsafe { update_avx2(p, g, m, v, c) };
    }
    update_body(p, g, m, v, c)
}

/// One Adam step on plain slices; `step` counts from 1.
pub fn adam_update_slices(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], step: u64, h: &AdamHyper) {
    assert!(
        p.len() == g.len() && p.len() == m.len() && p.len() == v.len(),
        "Adam: length mismatch"
    );
    let c = Consts::new(step, h);
    if p.len() >= 2 * CHUNK && rayon::current_num_threads() > 1 {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(m.par_chunks_mut(CHUNK))
            .zip(v.par_chunks_mut(CHUNK))
            .for_each(|(((pc, gc), mc), vc)| update(pc, gc, mc, vc, c));
    } else {
        update(p, g, m, v, c);
    }
}

/// What runs while every variable's storage is held: a pointer and length per variable.
type WhileLocked<'a> = dyn Fn(&[(SyncPtr, usize)]) -> Result<()> + 'a;

/// Takes the storage of every variable in turn (candle's in-place op hands out `&mut` storage
/// one tensor at a time, so the calls nest) and, holding them all, runs `then` with a pointer and
/// length per variable.
struct LockAll<'a> {
    rest: &'a [&'a Var],
    ptrs: &'a RefCell<Vec<(SyncPtr, usize)>>,
    then: &'a WhileLocked<'a>,
}

impl InplaceOp1 for LockAll<'_> {
    fn name(&self) -> &'static str {
        "norbvae-adam-lock"
    }

    fn cpu_fwd(&self, s: &mut CpuStorage, l: &Layout) -> Result<()> {
        let CpuStorage::F32(data) = s else {
            bail!("Adam: parameters must be f32")
        };
        let Some((a, b)) = l.contiguous_offsets() else {
            bail!("Adam: parameter is not contiguous")
        };
        self.ptrs
            .borrow_mut()
            .push((SyncPtr(data[a..b].as_mut_ptr()), b - a));
        lock_all(self.rest, self.ptrs, self.then)
    }
}

fn lock_all(vars: &[&Var], ptrs: &RefCell<Vec<(SyncPtr, usize)>>, then: &WhileLocked<'_>) -> Result<()> {
    match vars.split_first() {
        None => then(&ptrs.borrow()),
        Some((v, rest)) => v.as_tensor().inplace_op1(&LockAll { rest, ptrs, then }),
    }
}

/// One Adam step for many variables at once, in place: a single pass over all their elements,
/// split into chunks over the current rayon pool (rather than one parallel loop per tensor).
/// `items`: (variable, gradient, first moment, second moment) per variable; the variables must be
/// distinct f32 CPU tensors.
pub fn adam_update_all(
    items: &mut [(&Var, &Tensor, &mut [f32], &mut [f32])],
    step: u64,
    hyper: &AdamHyper,
) -> Result<()> {
    let c = Consts::new(step, hyper);
    let mut seen = std::collections::HashSet::new();
    if !items.iter().all(|(v, _, _, _)| seen.insert(v.id())) {
        bail!("Adam: a variable is listed twice");
    }
    let grads: Vec<Tensor> = items
        .iter()
        .map(|(_, g, _, _)| g.contiguous())
        .collect::<Result<_>>()?;
    let guards: Vec<_> = grads.iter().map(|g| g.storage_and_layout()).collect();
    let mut gslices: Vec<&[f32]> = Vec::with_capacity(items.len());
    for (st, l) in &guards {
        match &**st {
            Storage::Cpu(s) => gslices.push(f32_data(s, l)?),
            _ => bail!("Adam: gradients must be CPU tensors"),
        }
    }
    let mut moments: Vec<(SyncPtr, SyncPtr)> = Vec::with_capacity(items.len());
    for ((var, _, m, v), g) in items.iter_mut().zip(&gslices) {
        if var.elem_count() != g.len() || m.len() != g.len() || v.len() != g.len() {
            bail!("Adam: parameter, gradient and moments differ in size");
        }
        moments.push((SyncPtr(m.as_mut_ptr()), SyncPtr(v.as_mut_ptr())));
    }
    // Tasks of at most CHUNK elements over all variables.
    let mut tasks: Vec<(usize, usize, usize)> = Vec::new();
    for (k, g) in gslices.iter().enumerate() {
        let mut a = 0;
        while a < g.len() {
            let b = (a + CHUNK).min(g.len());
            tasks.push((k, a, b));
            a = b;
        }
    }
    let total: usize = gslices.iter().map(|g| g.len()).sum();
    let vars: Vec<&Var> = items.iter().map(|(v, _, _, _)| *v).collect();
    let run = |params: &[(SyncPtr, usize)]| -> Result<()> {
        let task = |&(k, a, b): &(usize, usize, usize)| {
            let len = b - a;
            // SAFETY: tasks cover disjoint ranges of distinct buffers; the parameters' storages
            // are held mutably by the enclosing in-place ops.
            let (p, m, v) = unsafe {
                (
                    params[k].0.slice(a, len),
                    moments[k].0.slice(a, len),
                    moments[k].1.slice(a, len),
                )
            };
            update(p, &gslices[k][a..b], m, v, c);
        };
        profiled(
            || "adam".to_string(),
            || {
                if total >= 2 * CHUNK && rayon::current_num_threads() > 1 {
                    tasks.par_iter().for_each(task);
                } else {
                    tasks.iter().for_each(task);
                }
            },
        );
        Ok(())
    };
    lock_all(&vars, &RefCell::new(Vec::with_capacity(vars.len())), &run)
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

/// `loss`'s backward pass ([`super::backward_with_update`]) with Adam step `step` applied to each
/// of `vars` in place as soon as its gradient is complete, while that gradient (and the weight,
/// just read by its layer's backward pass) are still in cache. `m`, `v`: the moments, per
/// variable. Returns the gradients that were not consumed (of tensors not in `vars`).
pub fn backward_with_adam(
    loss: &Tensor,
    vars: &[Var],
    m: &mut [Vec<f32>],
    v: &mut [Vec<f32>],
    step: u64,
    hyper: &AdamHyper,
) -> Result<GradStore> {
    if m.len() != vars.len() || v.len() != vars.len() {
        bail!(
            "Adam: {} variables but {} / {} moments",
            vars.len(),
            m.len(),
            v.len()
        );
    }
    let index: std::collections::HashMap<_, _> = vars.iter().enumerate().map(|(k, v)| (v.id(), k)).collect();
    // Small variables (biases, batch-norm scales) are gathered and updated together after the
    // pass, in one call: one by one, the per-call cost would outweigh their few elements.
    let mut small: Vec<(usize, Tensor)> = Vec::new();
    let rest = super::backward_with_update(loss, &mut |var, g| {
        let Some(&k) = index.get(&var.id()) else {
            return Ok(false);
        };
        if var.elem_count() < 2 * CHUNK {
            small.push((k, g.clone()));
        } else {
            adam_update(&vars[k], g, &mut m[k], &mut v[k], step, hyper)?;
        }
        Ok(true)
    })?;
    let mut mv: Vec<_> = m
        .iter_mut()
        .zip(v.iter_mut())
        .map(|(a, b)| Some((a, b)))
        .collect();
    let mut items = Vec::with_capacity(small.len());
    for (k, g) in &small {
        let Some((mk, vk)) = mv[*k].take() else {
            bail!("Adam: variable {k} reached twice in one backward pass");
        };
        items.push((&vars[*k], g, &mut mk[..], &mut vk[..]));
    }
    adam_update_all(&mut items, step, hyper)?;
    Ok(rest)
}

/// A complete fused Adam over a list of variables (used by the benchmark's reference models;
/// the training engine's `train::optim::Adam` calls `adam_update_all` the same way).
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
        let mut items: Vec<_> = self
            .vars
            .iter()
            .zip(&mut self.m)
            .zip(&mut self.v)
            .filter_map(|((var, m), v)| grads.get(var).map(|g| (var, g, &mut m[..], &mut v[..])))
            .collect();
        adam_update_all(&mut items, self.step, &self.hyper)
    }

    /// `loss`'s backward pass and one Adam step, each variable updated as soon as its gradient
    /// is complete ([`backward_with_adam`]): the same update as `step(&loss.backward()?)`.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        self.step += 1;
        backward_with_adam(loss, &self.vars, &mut self.m, &mut self.v, self.step, &self.hyper)?;
        Ok(())
    }
}
