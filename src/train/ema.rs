//! An exponential moving average of the weights (Polyak averaging), for evaluation and sampling:
//! `shadow <- decay * shadow + (1 - decay) * weights` after every update, buffers (batch-norm
//! statistics) copied as they are. NVAE and VDVAE evaluate with it (decay 0.9999 / 0.999).
use crate::model::params::{is_buffer, ParamStore};
use candle_core::{DType, Result, Tensor};

pub struct Ema {
    pub decay: f64,
    /// (name, averaged value) for every tensor of the store, sorted by name.
    shadow: Vec<(String, Tensor)>,
    pub updates: u64,
}

impl Ema {
    /// Start from the store's current values.
    pub fn new(store: &ParamStore, decay: f64) -> Result<Self> {
        let shadow = store
            .all()
            .into_iter()
            .map(|(n, v)| Ok((n, v.as_tensor().copy()?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            decay,
            shadow,
            updates: 0,
        })
    }

    /// Fold the store's current values in (call after each optimizer step).
    pub fn update(&mut self, store: &ParamStore) -> Result<()> {
        let all = store.all();
        if all.len() != self.shadow.len() {
            candle_core::bail!(
                "EMA: the store has {} tensors, the average {}",
                all.len(),
                self.shadow.len()
            );
        }
        for ((name, var), (sname, s)) in all.iter().zip(self.shadow.iter_mut()) {
            if name != sname {
                candle_core::bail!("EMA: tensor {name} where the average has {sname}");
            }
            let v = var.as_tensor().detach();
            if is_buffer(name) {
                *s = v.copy()?;
            } else if s.device().is_cpu() && s.dtype() == DType::F32 && v.dtype() == DType::F32 {
                // One fused in-place pass (bit-identical to the ops below); the average's
                // storage is its own (copied in `new` and `load`).
                crate::kernels::ema_update(s, &v, self.decay)?;
            } else {
                *s = ((&*s * self.decay)? + (v * (1.0 - self.decay))?)?;
            }
        }
        self.updates += 1;
        Ok(())
    }

    /// Every tensor of the average by name (`last/ema.safetensors`).
    pub fn tensors(&self) -> std::collections::HashMap<String, Tensor> {
        self.shadow.iter().cloned().collect()
    }

    /// The model to evaluate (what `best/model.safetensors` holds when the run keeps an average):
    /// the averaged weights with `store`'s current buffers (batch-norm running statistics are
    /// already running averages, and NVAE swaps in the averaged parameters only, too).
    pub fn model_tensors(&self, store: &ParamStore) -> std::collections::HashMap<String, Tensor> {
        store
            .all()
            .into_iter()
            .map(|(name, v)| {
                let t = if is_buffer(&name) {
                    v.as_tensor().clone()
                } else {
                    self.get(&name).cloned().unwrap_or_else(|| v.as_tensor().clone())
                };
                (name, t)
            })
            .collect()
    }

    /// Continue from saved averages (`last/ema.safetensors`), after `updates` updates. Every
    /// tensor of the model must be there with its shape; extra ones are an error too.
    pub fn load(&mut self, saved: &std::collections::HashMap<String, Tensor>, updates: u64) -> Result<()> {
        if saved.len() != self.shadow.len() {
            candle_core::bail!(
                "the weight average has {} tensors, the model {}",
                saved.len(),
                self.shadow.len()
            );
        }
        let mut next = Vec::with_capacity(self.shadow.len());
        for (name, s) in &self.shadow {
            let t = saved
                .get(name)
                .ok_or_else(|| candle_core::Error::Msg(format!("the weight average has no tensor {name}")))?;
            if t.shape() != s.shape() {
                candle_core::bail!(
                    "weight average {name}: shape {:?}, expected {:?}",
                    t.dims(),
                    s.dims()
                );
            }
            // A copy: the average is updated in place and must not share the caller's storage.
            next.push((
                name.clone(),
                t.to_dtype(s.dtype())?.to_device(s.device())?.copy()?,
            ));
        }
        self.shadow = next;
        self.updates = updates;
        Ok(())
    }

    /// Run `f` with the averaged weights in `store` (validation, pictures), then put the store's
    /// own weights back, bit for bit, whatever `f` returned. Buffers stay the store's own
    /// (as in [`Ema::model_tensors`]).
    pub fn with_averaged<T>(
        &self,
        store: &ParamStore,
        f: impl FnOnce() -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut own = Vec::new();
        for (name, var) in store.all() {
            if is_buffer(&name) {
                continue;
            }
            let avg = self
                .get(&name)
                .ok_or_else(|| anyhow::anyhow!("the weight average has no tensor {name}"))?;
            own.push((var.as_tensor().copy()?, var.clone()));
            var.set(avg)?;
        }
        let out = f();
        for (value, var) in own {
            var.set(&value)?;
        }
        out
    }

    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.shadow.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Write the averaged values into `store` (a second store of the same model for evaluation,
    /// or the training one after saving its weights).
    pub fn copy_to(&self, store: &ParamStore) -> Result<()> {
        let all = store.all();
        for ((name, var), (sname, s)) in all.iter().zip(&self.shadow) {
            if name != sname {
                candle_core::bail!("EMA: tensor {name} where the average has {sname}");
            }
            var.set(s)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::Init;

    #[test]
    fn ema_follows_the_exponential_average_and_converges_to_the_running_mean() {
        let store = ParamStore::new(1, &Device::Cpu);
        let vb = store.var_builder();
        let w = vb.get_with_hints(2, "layer.weight", Init::Const(0.0)).unwrap();
        let _rm = vb.get_with_hints(2, "bn.running_mean", Init::Const(0.0)).unwrap();
        let vars = store.all();
        let decay = 0.9;
        let mut ema = Ema::new(&store, decay).unwrap();
        // Weights oscillate around (3, -1) as SGD iterates would: the average settles on the mean.
        let mut want = [0.0f64, 0.0];
        for t in 0..400 {
            let wiggle = if t % 2 == 0 { 0.5 } else { -0.5 };
            let vals = [3.0 + wiggle, -1.0 - wiggle];
            for (name, v) in &vars {
                let val = if name.contains("running") {
                    vec![t as f32; 2]
                } else {
                    vals.map(|x| x as f32).to_vec()
                };
                v.set(&Tensor::from_vec(val, 2, &Device::Cpu).unwrap()).unwrap();
            }
            ema.update(&store).unwrap();
            for i in 0..2 {
                want[i] = decay * want[i] + (1.0 - decay) * vals[i];
            }
        }
        let got: Vec<f32> = ema.get("layer.weight").unwrap().to_vec1().unwrap();
        for i in 0..2 {
            assert!((got[i] as f64 - want[i]).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        // The oscillation +-0.5 averages out to within (1 - decay) / (1 + decay) * 0.5 of the mean.
        assert!(
            (got[0] - 3.0).abs() < 0.03 && (got[1] + 1.0).abs() < 0.03,
            "{got:?}"
        );
        // Buffers are copied, not averaged.
        let rm: Vec<f32> = ema.get("bn.running_mean").unwrap().to_vec1().unwrap();
        assert_eq!(rm, vec![399.0, 399.0]);
        // copy_to writes the average into a store of the same model.
        let other = ParamStore::new(2, &Device::Cpu);
        let ovb = other.var_builder();
        ovb.get_with_hints(2, "layer.weight", Init::Const(7.0)).unwrap();
        ovb.get_with_hints(2, "bn.running_mean", Init::Const(7.0))
            .unwrap();
        ema.copy_to(&other).unwrap();
        let ow: Vec<f32> = other.all()[1].1.as_tensor().to_vec1().unwrap();
        assert_eq!(ow, got);
        drop(w);
    }
}
