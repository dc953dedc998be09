//! Residual cells: two 3x3 stride-1 convolutions (padding 1) with an optional batch norm each and
//! the configured activation, added to their input: `act(x + norm2(conv2(act(norm1(conv1(x))))))`.
//! The conv VAE puts `model.conv.blocks_per_stage` of them after each downsizing (and mirrored in
//! the decoder); the hierarchical VAE builds its bottom-up and top-down paths from them. The
//! convolutions and batch norms go through [`super::ops`] (the CPU kernels).
use super::layers::{Activation, BatchNorm, Conv, Mode};
use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

pub struct ResBlock {
    conv1: Conv,
    bn1: Option<BatchNorm>,
    conv2: Conv,
    bn2: Option<BatchNorm>,
    activation: Activation,
}

impl ResBlock {
    /// A cell on `c` channels; parameters under `vb` (`conv1`, `bn1`, `conv2`, `bn2`).
    pub fn new(vb: VarBuilder, c: usize, batch_norm: bool, activation: Activation) -> Result<Self> {
        let bn = |name: &str| -> Result<Option<BatchNorm>> {
            if batch_norm {
                Ok(Some(BatchNorm::new(vb.pp(name), c)?))
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            conv1: Conv::new(vb.pp("conv1"), c, c, 3, 1, 1)?,
            bn1: bn("bn1")?,
            conv2: Conv::new(vb.pp("conv2"), c, c, 3, 1, 1)?,
            bn2: bn("bn2")?,
            activation,
        })
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = self.conv1.forward(x)?;
        let h = match &self.bn1 {
            Some(bn) => bn.forward_act(&h, mode, Some(self.activation))?,
            None => self.activation.apply(&h)?,
        };
        let h = self.conv2.forward(&h)?;
        let h = match &self.bn2 {
            Some(bn) => bn.forward(&h, mode)?,
            None => h,
        };
        self.activation.apply_to_sum(x, &h)
    }
}

/// A stack of cells on `c` channels, named `{prefix}{i}`.
pub fn stack(
    vb: &VarBuilder,
    prefix: &str,
    n: usize,
    c: usize,
    batch_norm: bool,
    activation: Activation,
) -> Result<Vec<ResBlock>> {
    (0..n)
        .map(|i| ResBlock::new(vb.pp(format!("{prefix}{i}")), c, batch_norm, activation))
        .collect()
}

pub fn run(blocks: &[ResBlock], x: Tensor, mode: Mode) -> Result<Tensor> {
    let mut h = x;
    for b in blocks {
        h = b.forward(&h, mode)?;
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::{BN_EPS, LEAKY_SLOPE};
    use crate::model::params::ParamStore;
    use crate::util::SeededRng;
    use candle_core::{Device, Var};

    /// The same cell from candle's own ops: conv2d, composite batch norm over (0, 2, 3), the
    /// activation as a plain function.
    fn reference(store: &ParamStore, x: &Tensor, bn: bool, act: Activation) -> Tensor {
        let get = |n: &str| {
            store
                .all()
                .into_iter()
                .find(|(k, _)| k == n)
                .unwrap_or_else(|| panic!("no {n}"))
                .1
                .as_tensor()
                .clone()
        };
        let conv = |x: &Tensor, name: &str| {
            let w = get(&format!("cell.{name}.weight"));
            let b = get(&format!("cell.{name}.bias"));
            x.conv2d(&w, 1, 1, 1, 1)
                .unwrap()
                .broadcast_add(&b.reshape((1, (), 1, 1)).unwrap())
                .unwrap()
        };
        let norm = |x: &Tensor, name: &str| {
            if !bn {
                return x.clone();
            }
            let g = get(&format!("cell.{name}.weight"))
                .reshape((1, (), 1, 1))
                .unwrap();
            let b = get(&format!("cell.{name}.bias")).reshape((1, (), 1, 1)).unwrap();
            let mean = x
                .mean_keepdim(0)
                .unwrap()
                .mean_keepdim(2)
                .unwrap()
                .mean_keepdim(3)
                .unwrap();
            let xc = x.broadcast_sub(&mean).unwrap();
            let var = xc
                .sqr()
                .unwrap()
                .mean_keepdim(0)
                .unwrap()
                .mean_keepdim(2)
                .unwrap()
                .mean_keepdim(3)
                .unwrap();
            xc.broadcast_div(&(var + BN_EPS).unwrap().sqrt().unwrap())
                .unwrap()
                .broadcast_mul(&g)
                .unwrap()
                .broadcast_add(&b)
                .unwrap()
        };
        let a = |x: &Tensor| match act {
            Activation::Relu => x.maximum(0.0).unwrap(),
            Activation::LeakyRelu => x.maximum(&(x * LEAKY_SLOPE).unwrap()).unwrap(),
            Activation::Silu => (x * candle_nn::ops::sigmoid(x).unwrap()).unwrap(),
        };
        let h = a(&norm(&conv(x, "conv1"), "bn1"));
        let h = norm(&conv(&h, "conv2"), "bn2");
        a(&(x + h).unwrap())
    }

    fn close(what: &str, ours: &Tensor, reference: &Tensor) {
        assert_eq!(ours.dims(), reference.dims(), "{what}");
        let a = ours.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = reference.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
        let err = a.iter().zip(&b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            err <= 2e-4 * scale + 1e-5, // floor: gradients zero in exact arithmetic (bias before batch norm)
            "{what}: max abs error {err} vs scale {scale}"
        );
    }

    #[test]
    fn residual_cell_matches_candle_reference_values_and_gradients() {
        // Odd shapes: batch 3, 5 channels, 7x9; 2x1 with one image row.
        for (i, &(n, c, h, w)) in [(3usize, 5usize, 7usize, 9usize), (2, 3, 4, 3), (4, 2, 5, 5)]
            .iter()
            .enumerate()
        {
            for bn in [true, false] {
                for act in [Activation::Relu, Activation::Silu, Activation::LeakyRelu] {
                    let store = ParamStore::new(7 + i as u64, &Device::Cpu);
                    let cell = ResBlock::new(store.var_builder().pp("cell"), c, bn, act).unwrap();
                    let mut rng = SeededRng::new(100 + i as u64);
                    let x = Var::from_tensor(
                        &Tensor::from_vec(rng.normal_vec(n * c * h * w), (n, c, h, w), &Device::Cpu).unwrap(),
                    )
                    .unwrap();
                    let up =
                        Tensor::from_vec(rng.normal_vec(n * c * h * w), (n, c, h, w), &Device::Cpu).unwrap();
                    let ours = cell.forward(x.as_tensor(), Mode::Train).unwrap();
                    let theirs = reference(&store, x.as_tensor(), bn, act);
                    let what = format!("{n}x{c}x{h}x{w} bn {bn} {act:?}");
                    close(&format!("{what} values"), &ours, &theirs);
                    // Gradients of <y, up> with respect to the input and every parameter.
                    let g1 = (ours * &up).unwrap().sum_all().unwrap().backward().unwrap();
                    let g2 = (theirs * &up).unwrap().sum_all().unwrap().backward().unwrap();
                    close(&format!("{what} d/dx"), g1.get(&x).unwrap(), g2.get(&x).unwrap());
                    for (name, v) in store.trainable() {
                        close(
                            &format!("{what} d/d{name}"),
                            g1.get(&v).unwrap(),
                            g2.get(&v).unwrap(),
                        );
                    }
                }
            }
        }
    }
}
