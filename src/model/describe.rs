//! The architecture of a VAE as `model.json` describes it ([`crate::format::model`]): the same
//! layers, in the same order, with the same tensor names as [`super::conv_vae`],
//! [`super::dense_vae`], [`super::hierarchical`], [`super::likelihood`] and [`super::prior`] build
//! (a test checks the names against the parameter store of each model kind).
use super::config::{
    ConvConfig, DenseConfig, LikelihoodConfig, LikelihoodKind, ModelConfig, ModelKind, OutputActivation,
    PriorKind,
};
use super::conv_vae::ConvGeometry;
use super::hierarchical::LV_CLAMP;
use super::layers::{Activation, BN_EPS, BN_MOMENTUM, LEAKY_SLOPE};
use crate::format::model::{
    ActivationSpec, Architecture, InputSpec, LatentGroup, Layer, LikelihoodSpec, PriorSpec,
};

fn snake<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn activation(a: Activation) -> ActivationSpec {
    match a {
        Activation::Relu => ActivationSpec::Relu,
        Activation::LeakyRelu => ActivationSpec::LeakyRelu { slope: LEAKY_SLOPE },
        Activation::Silu => ActivationSpec::Silu,
    }
}

fn act(a: Activation) -> Layer {
    Layer::Activation {
        activation: activation(a),
    }
}

fn linear(name: &str, in_features: usize, out_features: usize) -> Layer {
    Layer::Linear {
        in_features,
        out_features,
        weight: format!("{name}.weight"),
        bias: format!("{name}.bias"),
    }
}

fn conv(name: &str, c_in: usize, c_out: usize, kernel: usize, stride: usize, padding: usize) -> Layer {
    Layer::Conv2d {
        in_channels: c_in,
        out_channels: c_out,
        kernel,
        stride,
        padding,
        weight: format!("{name}.weight"),
        bias: format!("{name}.bias"),
    }
}

fn batch_norm(name: &str, features: usize) -> Layer {
    Layer::BatchNorm {
        features,
        eps: BN_EPS,
        momentum: BN_MOMENTUM,
        weight: format!("{name}.weight"),
        bias: format!("{name}.bias"),
        running_mean: format!("{name}.running_mean"),
        running_var: format!("{name}.running_var"),
    }
}

/// `batch_norm` (when configured) then the activation.
fn norm_act(out: &mut Vec<Layer>, bn: Option<String>, features: usize, a: Activation) {
    if let Some(name) = bn {
        out.push(batch_norm(&name, features));
    }
    out.push(act(a));
}

/// `blocks_per_stage` residual cells on `c` channels named `{prefix}{j}` (see `residual.rs`).
fn cells(out: &mut Vec<Layer>, cfg: &ConvConfig, prefix: &str, c: usize) {
    for j in 0..cfg.blocks_per_stage {
        let p = format!("{prefix}{j}");
        let mut body = vec![conv(&format!("{p}.conv1"), c, c, 3, 1, 1)];
        norm_act(
            &mut body,
            cfg.batch_norm.then(|| format!("{p}.bn1")),
            c,
            cfg.activation,
        );
        body.push(conv(&format!("{p}.conv2"), c, c, 3, 1, 1));
        if cfg.batch_norm {
            body.push(batch_norm(&format!("{p}.bn2"), c));
        }
        out.push(Layer::Residual {
            body,
            activation: activation(cfg.activation),
        });
    }
}

struct Networks {
    encoder: Vec<Layer>,
    mu: Layer,
    logvar: Layer,
    decoder: Vec<Layer>,
    groups: Vec<LatentGroup>,
}

/// The conv VAE (`conv_vae.rs`); with `spatial_groups` > 0 the hierarchical VAE built on it.
fn conv_networks(
    cfg: &ConvConfig,
    g: &ConvGeometry,
    latent: usize,
    out_per_pixel: usize,
    spatial_groups: usize,
    latent_channels: usize,
) -> Networks {
    let filters = cfg.filters();
    let n = filters.len();
    let bn = |name: String| cfg.batch_norm.then_some(name);
    let hierarchical = spatial_groups > 0;
    let mut enc = Vec::new();
    if g.padded_height != g.height || g.padded_width != g.width {
        enc.push(Layer::PadBottomRight {
            bottom: g.padded_height - g.height,
            right: g.padded_width - g.width,
        });
    }
    let mut c_prev = g.channels;
    for (i, &f) in filters.iter().enumerate() {
        enc.push(conv(&format!("encoder.conv{i}"), c_prev, f, 4, 2, 1));
        norm_act(&mut enc, bn(format!("encoder.bn{i}")), f, cfg.activation);
        cells(&mut enc, cfg, &format!("encoder.res{i}_"), f);
        if hierarchical {
            enc.push(Layer::StageOutput { level: i });
        }
        c_prev = f;
    }
    let bottom = c_prev;
    let flat = bottom * g.bottom_height * g.bottom_width;
    enc.push(Layer::Flatten);
    enc.push(linear("encoder.dense", flat, cfg.intermediate));
    norm_act(
        &mut enc,
        bn("encoder.bn_dense".into()),
        cfg.intermediate,
        cfg.activation,
    );

    let mut dec = vec![linear("decoder.dense0", latent, cfg.intermediate)];
    norm_act(
        &mut dec,
        bn("decoder.bn_dense0".into()),
        cfg.intermediate,
        cfg.activation,
    );
    dec.push(linear("decoder.dense1", cfg.intermediate, flat));
    dec.push(act(cfg.activation));
    dec.push(Layer::Reshape {
        shape: vec![bottom, g.bottom_height, g.bottom_width],
    });
    let mut groups = Vec::new();
    let mut c_prev = bottom;
    for i in 0..n {
        cells(&mut dec, cfg, &format!("decoder.res{i}_"), c_prev);
        if i < spatial_groups {
            let level = n - 1 - i;
            let c_in = filters[level];
            let side = 1usize << (level + 1);
            let cz = latent_channels;
            dec.push(Layer::LatentGroup { group: groups.len() });
            groups.push(LatentGroup {
                channels: cz,
                height: g.padded_height / side,
                width: g.padded_width / side,
                level,
                logvar_clamp: LV_CLAMP,
                prior: conv(&format!("group{i}.prior"), c_in, 2 * cz, 3, 1, 1),
                posterior: conv(&format!("group{i}.posterior"), 2 * c_in, 2 * cz, 3, 1, 1),
                merge: conv(&format!("group{i}.merge"), cz, c_in, 1, 1, 0),
            });
        }
        let last = i + 1 == n;
        let c_out = if last {
            g.channels * out_per_pixel
        } else {
            filters[n - 2 - i]
        };
        dec.push(Layer::ConvTranspose2d {
            in_channels: c_prev,
            out_channels: c_out,
            kernel: 4,
            stride: 2,
            padding: 1,
            weight: format!("decoder.deconv{i}.weight"),
            bias: format!("decoder.deconv{i}.bias"),
        });
        // Between transposed convolutions: batch norm (when configured), then the activation.
        if !last {
            norm_act(&mut dec, bn(format!("decoder.bn{i}")), c_out, cfg.activation);
        }
        c_prev = c_out;
    }
    if g.padded_height != g.height || g.padded_width != g.width {
        dec.push(Layer::Crop {
            height: g.height,
            width: g.width,
        });
    }
    Networks {
        encoder: enc,
        mu: linear("encoder.mu", cfg.intermediate, latent),
        logvar: linear("encoder.logvar", cfg.intermediate, latent),
        decoder: dec,
        groups,
    }
}

/// The dense VAE on PCA coefficients (`dense_vae.rs`).
fn dense_networks(cfg: &DenseConfig, inputs: usize, latent: usize, out_per_dim: usize) -> Networks {
    let stack = |prefix: &str, input: usize| {
        let mut out = Vec::new();
        let mut d = input;
        for i in 0..cfg.hidden_layers {
            out.push(linear(&format!("{prefix}.dense{i}"), d, cfg.width));
            norm_act(
                &mut out,
                cfg.batch_norm.then(|| format!("{prefix}.bn{i}")),
                cfg.width,
                cfg.activation,
            );
            d = cfg.width;
        }
        out
    };
    let hidden_out = if cfg.hidden_layers == 0 { inputs } else { cfg.width };
    let dec_out = if cfg.hidden_layers == 0 { latent } else { cfg.width };
    let mut decoder = stack("decoder", latent);
    decoder.push(linear("decoder.out", dec_out, inputs * out_per_dim));
    Networks {
        encoder: stack("encoder", inputs),
        mu: linear("encoder.mu", hidden_out, latent),
        logvar: linear("encoder.logvar", hidden_out, latent),
        decoder,
        groups: Vec::new(),
    }
}

fn likelihood(cfg: &LikelihoodConfig, outputs_per_dim: usize) -> LikelihoodSpec {
    let discrete = cfg.kind.is_discrete_pixels();
    let mean_activation = match (cfg.kind, cfg.output_activation) {
        (LikelihoodKind::Bernoulli, _) => "sigmoid",
        (_, OutputActivation::None) => "identity",
        (_, OutputActivation::Sigmoid) => "sigmoid",
        (_, OutputActivation::Tanh) if discrete => "tanh_unit",
        (_, OutputActivation::Tanh) => "tanh",
    };
    LikelihoodSpec {
        kind: snake(&cfg.kind),
        outputs_per_dim,
        mean_activation: mean_activation.to_string(),
        output_activation: snake(&cfg.output_activation),
        variance: cfg.variance,
        logvar_floor: cfg.logvar_floor,
        min_log_sigma: cfg.min_log_sigma,
        components: match cfg.kind {
            LikelihoodKind::DiscretizedLogisticMixture => cfg.components,
            _ => 1,
        },
        min_log_scale: cfg.min_log_scale,
        raw_logvar: (cfg.kind == LikelihoodKind::GaussianShared).then(|| "likelihood.raw_logvar".into()),
        log_sigma: (cfg.kind == LikelihoodKind::GaussianOptimal)
            .then(|| "likelihood.buffer.log_sigma".into()),
    }
}

/// The architecture of the VAE `Vae::new` builds from these configs for `input`
/// ([`InputSpec::Image`] for the conv and hierarchical VAEs, [`InputSpec::Pca`] for `pca_dense`);
/// `outputs_per_dim` is the likelihood's ([`super::Likelihood::outputs_per_dim`]).
pub fn architecture(
    model: &ModelConfig,
    lik: &LikelihoodConfig,
    input: InputSpec,
    outputs_per_dim: usize,
) -> Result<Architecture, String> {
    let l = model.latent_dim;
    let nets = match (model.kind, &input) {
        (
            ModelKind::Conv | ModelKind::Hierarchical,
            InputSpec::Image {
                channels,
                height,
                width,
            },
        ) => {
            let g = ConvGeometry::new(&model.conv, *channels, *height, *width)?;
            let (groups, cz) = match model.kind {
                ModelKind::Hierarchical => (
                    model.hierarchical.spatial_groups,
                    model.hierarchical.latent_channels,
                ),
                _ => (0, 0),
            };
            conv_networks(&model.conv, &g, l, outputs_per_dim, groups, cz)
        }
        (ModelKind::PcaDense, InputSpec::Pca { components, .. }) => {
            dense_networks(&model.dense, *components, l, outputs_per_dim)
        }
        (kind, input) => return Err(format!("model kind {kind:?} cannot take input {input:?}")),
    };
    let prior = match model.prior.kind {
        PriorKind::Standard => PriorSpec::Standard,
        PriorKind::Vamp => PriorSpec::Vamp {
            pseudo_inputs: model.prior.pseudo_inputs,
            tensor: "prior.pseudo_inputs".into(),
            input_transform: match input {
                InputSpec::Image { .. } => "sigmoid".into(),
                InputSpec::Pca { .. } => "identity".into(),
            },
        },
    };
    let total = l + nets
        .groups
        .iter()
        .map(|g| g.channels * g.height * g.width)
        .sum::<usize>();
    Ok(Architecture {
        kind: snake(&model.kind),
        input,
        latent_dim: l,
        total_latent_dim: total,
        batch_norm_eps: BN_EPS,
        batch_norm_momentum: BN_MOMENTUM,
        encoder: nets.encoder,
        mu: nets.mu,
        logvar: nets.logvar,
        decoder: nets.decoder,
        groups: nets.groups,
        likelihood: likelihood(lik, outputs_per_dim),
        prior,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::config::{HierarchicalConfig, PriorConfig};
    use crate::model::{InputShape, ParamStore, Vae};
    use candle_core::Device;
    use std::collections::BTreeMap;

    /// Every tensor a layer names, with the shape the layer implies.
    fn named(layers: &[Layer], out: &mut BTreeMap<String, Vec<usize>>) {
        for l in layers {
            match l {
                Layer::Conv2d {
                    in_channels,
                    out_channels,
                    kernel,
                    weight,
                    bias,
                    ..
                } => {
                    out.insert(
                        weight.clone(),
                        vec![*out_channels, *in_channels, *kernel, *kernel],
                    );
                    out.insert(bias.clone(), vec![*out_channels]);
                }
                Layer::ConvTranspose2d {
                    in_channels,
                    out_channels,
                    kernel,
                    weight,
                    bias,
                    ..
                } => {
                    out.insert(
                        weight.clone(),
                        vec![*in_channels, *out_channels, *kernel, *kernel],
                    );
                    out.insert(bias.clone(), vec![*out_channels]);
                }
                Layer::Linear {
                    in_features,
                    out_features,
                    weight,
                    bias,
                } => {
                    out.insert(weight.clone(), vec![*out_features, *in_features]);
                    out.insert(bias.clone(), vec![*out_features]);
                }
                Layer::BatchNorm {
                    features,
                    weight,
                    bias,
                    running_mean,
                    running_var,
                    ..
                } => {
                    for n in [weight, bias, running_mean, running_var] {
                        out.insert(n.clone(), vec![*features]);
                    }
                }
                Layer::Residual { body, .. } => named(body, out),
                _ => {}
            }
        }
    }

    fn check(model: &ModelConfig, lik: &LikelihoodConfig, shape: InputShape, input: InputSpec) {
        let store = ParamStore::new(1, &Device::Cpu);
        let vae = Vae::new(model, lik, shape, store.var_builder()).unwrap();
        let arch = architecture(model, lik, input, vae.likelihood.outputs_per_dim()).unwrap();
        let mut names = BTreeMap::new();
        named(&arch.encoder, &mut names);
        named(&arch.decoder, &mut names);
        named(&[arch.mu.clone(), arch.logvar.clone()], &mut names);
        for g in &arch.groups {
            named(
                &[g.prior.clone(), g.posterior.clone(), g.merge.clone()],
                &mut names,
            );
        }
        if let Some(n) = &arch.likelihood.raw_logvar {
            names.insert(n.clone(), vec![1]);
        }
        if let Some(n) = &arch.likelihood.log_sigma {
            names.insert(n.clone(), vec![1]);
        }
        if let PriorSpec::Vamp {
            tensor,
            pseudo_inputs,
            ..
        } = &arch.prior
        {
            let mut s = vec![*pseudo_inputs];
            match shape {
                InputShape::Image {
                    channels,
                    height,
                    width,
                } => s.extend([channels, height, width]),
                InputShape::Vector { dim } => s.push(dim),
            }
            names.insert(tensor.clone(), s);
        }
        let store_names: BTreeMap<String, Vec<usize>> = store
            .all()
            .into_iter()
            .map(|(n, v)| (n, v.dims().to_vec()))
            .collect();
        assert_eq!(names, store_names, "{:?} {:?}", model.kind, lik.kind);
        assert_eq!(arch.total_latent_dim, vae.latent_dim);
        assert_eq!(arch.latent_dim, vae.code_dim());
        // The description survives a JSON round trip.
        let json = serde_json::to_string(&arch).unwrap();
        assert_eq!(serde_json::from_str::<Architecture>(&json).unwrap(), arch);
    }

    #[test]
    fn described_layers_name_exactly_the_tensors_of_each_model_kind() {
        let image = |c, h, w| {
            (
                InputShape::Image {
                    channels: c,
                    height: h,
                    width: w,
                },
                InputSpec::Image {
                    channels: c,
                    height: h,
                    width: w,
                },
            )
        };
        let mut conv = ModelConfig {
            latent_dim: 3,
            ..Default::default()
        };
        conv.conv.downsizings = 3;
        conv.conv.first_filters = 2;
        conv.conv.max_filters = 4;
        conv.conv.intermediate = 5;
        let liks: Vec<LikelihoodConfig> = [
            LikelihoodKind::Bernoulli,
            LikelihoodKind::GaussianFixed,
            LikelihoodKind::GaussianPerPixel,
            LikelihoodKind::GaussianShared,
            LikelihoodKind::GaussianOptimal,
            LikelihoodKind::DiscretizedLogistic,
            LikelihoodKind::DiscretizedLogisticMixture,
        ]
        .into_iter()
        .map(|kind| LikelihoodConfig {
            kind,
            components: 3,
            ..Default::default()
        })
        .collect();
        for (bn, blocks, act) in [
            (true, 0, Activation::Relu),
            (false, 1, Activation::Silu),
            (true, 2, Activation::LeakyRelu),
        ] {
            conv.conv.batch_norm = bn;
            conv.conv.blocks_per_stage = blocks;
            conv.conv.activation = act;
            for lik in &liks {
                let (s, i) = image(2, 9, 7);
                check(&conv, lik, s, i);
            }
        }
        let mut vamp = conv.clone();
        vamp.prior = PriorConfig {
            kind: PriorKind::Vamp,
            pseudo_inputs: 3,
        };
        let (s, i) = image(1, 8, 8);
        check(&vamp, &liks[1], s, i);
        let mut hier = conv.clone();
        hier.kind = ModelKind::Hierarchical;
        hier.hierarchical = HierarchicalConfig {
            spatial_groups: 2,
            latent_channels: 2,
            group_warmup_epochs: Vec::new(),
        };
        let (s, i) = image(1, 8, 7);
        check(&hier, &liks[5], s, i);
        for hidden in [0, 2] {
            for v in [&conv, &vamp] {
                let mut dense = v.clone();
                dense.kind = ModelKind::PcaDense;
                dense.dense.hidden_layers = hidden;
                dense.dense.width = 6;
                let pca = InputSpec::Pca {
                    file: "pca.safetensors".into(),
                    components: 4,
                    whiten: false,
                    whitening_floor_factor: 1e-12,
                    image_channels: 1,
                    image_height: 8,
                    image_width: 8,
                };
                check(&dense, &liks[2], InputShape::Vector { dim: 4 }, pca);
            }
        }
    }
}
