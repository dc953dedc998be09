//! Where a model's tensors live: a seeded `VarBuilder` backend. candle's own `VarMap` draws its
//! initial values from candle's unseedable RNG; this store draws them from [`SeededRng`] in the
//! (deterministic) order the model asks for them, so the same seed gives the same network.
//!
//! Names ending in `running_mean` / `running_var` (batch-norm statistics) and `buffer.*` are
//! buffers: saved in checkpoints but never handed to the optimizer.
use crate::format::tensors;
use crate::util::SeededRng;
use candle_core::{DType, Device, Result, Shape, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct ParamStore {
    vars: Arc<Mutex<BTreeMap<String, Var>>>,
    rng: Arc<Mutex<SeededRng>>,
    device: Device,
}

/// Is this name a buffer (state updated outside the optimizer)?
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var") || name.contains("buffer.")
}

impl ParamStore {
    pub fn new(seed: u64, device: &Device) -> Self {
        Self {
            vars: Arc::new(Mutex::new(BTreeMap::new())),
            rng: Arc::new(Mutex::new(SeededRng::derived(seed, "init"))),
            device: device.clone(),
        }
    }

    pub fn var_builder(&self) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, self.device.clone())
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The trainable variables (buffers excluded), sorted by name.
    pub fn trainable(&self) -> Vec<(String, Var)> {
        let vars = self.vars.lock().expect("param store lock");
        vars.iter()
            .filter(|(n, _)| !is_buffer(n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    }

    /// Every tensor (trainable and buffers), sorted by name.
    pub fn all(&self) -> Vec<(String, Var)> {
        let vars = self.vars.lock().expect("param store lock");
        vars.iter().map(|(n, v)| (n.clone(), v.clone())).collect()
    }

    /// Number of trainable scalars.
    pub fn num_trainable(&self) -> usize {
        self.trainable().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Save every tensor as safetensors (atomically).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let map: std::collections::HashMap<String, Tensor> = self
            .all()
            .into_iter()
            .map(|(n, v)| (n, v.as_tensor().clone()))
            .collect();
        let bytes = safetensors_bytes(&map, tensors::WEIGHTS_FORMAT)?;
        crate::util::write_atomic(path, &bytes)
    }

    /// Overwrite every tensor from a safetensors file saved by [`save`]; the file must hold exactly
    /// this model's tensors with the same shapes.
    pub fn load(&self, path: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let bytes = std::fs::read(path).with_context(|| format!("reading checkpoint {}", path.display()))?;
        tensors::check_header(&bytes, tensors::WEIGHTS_FORMAT, path)?;
        let loaded = candle_core::safetensors::load_buffer(&bytes, &self.device)
            .with_context(|| format!("reading checkpoint {}", path.display()))?;
        self.load_tensors(&loaded, path)
    }

    /// Overwrite every tensor from `loaded` (read from `path`, named in errors). Every name and
    /// shape is checked before the first tensor is set, so a mismatch changes nothing.
    pub fn load_tensors(
        &self,
        loaded: &std::collections::HashMap<String, Tensor>,
        path: &Path,
    ) -> anyhow::Result<()> {
        use anyhow::Context;
        let vars = self.vars.lock().expect("param store lock");
        for (name, var) in vars.iter() {
            let t = loaded.get(name).with_context(|| {
                format!(
                    "checkpoint {} has no tensor '{name}' (was it written by another model config?)",
                    path.display()
                )
            })?;
            if t.shape() != var.shape() {
                anyhow::bail!(
                    "checkpoint {}: tensor '{name}' has shape {:?}, the model expects {:?}",
                    path.display(),
                    t.dims(),
                    var.dims()
                );
            }
        }
        for (name, var) in vars.iter() {
            var.set(&loaded[name].to_dtype(DType::F32)?)?;
        }
        Ok(())
    }
}

/// Serialise named tensors to safetensors bytes (for atomic writes), the header naming `format`
/// (one of [`tensors`]' formats) and this build's version.
pub fn safetensors_bytes(
    map: &std::collections::HashMap<String, Tensor>,
    format: &str,
) -> anyhow::Result<Vec<u8>> {
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    let data: Vec<(&str, &Tensor)> = names.iter().map(|n| (n.as_str(), &map[*n])).collect();
    let bytes = safetensors::tensor::serialize(data, Some(tensors::header(format)))?;
    Ok(tensors::canonical(bytes))
}

impl ParamStore {
    fn init_values(&self, shape: &Shape, init: Init) -> Result<Tensor> {
        let n = shape.elem_count();
        let values: Vec<f32> = match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Randn { mean, stdev } => {
                let mut rng = self.rng.lock().expect("rng lock");
                rng.normal_vec(n)
                    .into_iter()
                    .map(|v| (mean + stdev * v as f64) as f32)
                    .collect()
            }
            Init::Uniform { lo, up } => {
                let mut rng = self.rng.lock().expect("rng lock");
                rng.uniform_vec(n)
                    .into_iter()
                    .map(|v| (lo + (up - lo) * v as f64) as f32)
                    .collect()
            }
            Init::Kaiming { .. } => {
                candle_core::bail!("use Init::Randn with an explicit He std: the store needs the fan-in")
            }
        };
        Tensor::from_vec(values, shape.clone(), &self.device)
    }
}

impl candle_nn::var_builder::SimpleBackend for ParamStore {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> Result<Tensor> {
        if let Some(v) = self.vars.lock().expect("param store lock").get(name) {
            if v.shape() != &s {
                candle_core::bail!(
                    "parameter {name} requested with shape {s:?}, exists as {:?}",
                    v.shape()
                );
            }
            return Ok(v.as_tensor().clone());
        }
        let t = self.init_values(&s, h)?.to_dtype(dtype)?.to_device(dev)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        self.vars
            .lock()
            .expect("param store lock")
            .insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(&self, name: &str, _dtype: DType, _dev: &Device) -> Result<Tensor> {
        match self.vars.lock().expect("param store lock").get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("no parameter named {name}"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.vars.lock().expect("param store lock").contains_key(name)
    }
}
