//! The sample-quality classifier: a small CNN trained once per dataset on the dataset's own labels
//! (NORB category, Fashion-MNIST class), standing in for Inception on grayscale images. Its
//! penultimate features give the Frechet distance between real and generated images; its softmax
//! says how confidently (and how diversely) samples are recognised as classes. Its test accuracy is
//! recorded beside every score so the score can be trusted (or not).
//!
//! Trained models are cached under `cache_dir/classifier-<key>.safetensors` (+ `.json`), the key
//! hashing the data options (spec, camera, image size, split, limit) and the architecture version,
//! so every run on the same data is scored by the same network.
use super::frechet::{frechet_distance, GaussianStats};
use crate::data::{DataOptions, ImageSet, Splits};
use crate::model::ops;
use crate::train::optim::{Adam, AdamHyper};
use crate::util::SeededRng;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Bumped whenever the architecture or training recipe changes, so old caches are not reused.
const ARCH_VERSION: u32 = 2;
/// Width of the penultimate (feature) layer.
pub const FEATURE_DIM: usize = 64;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierParams {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    /// Train on at most this many training images (a random subset), to bound the one-off cost.
    pub max_train: usize,
    /// Fewest optimisation steps in all: small datasets get more epochs.
    pub min_steps: usize,
    pub seed: u64,
}

impl Default for ClassifierParams {
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 64,
            lr: 2e-3,
            max_train: 20_000,
            min_steps: 400,
            seed: 0,
        }
    }
}

/// What is saved beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClassifierInfo {
    pub arch_version: u32,
    pub data: DataOptions,
    pub params: ClassifierParams,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub num_classes: usize,
    pub blocks: usize,
    pub test_accuracy: f64,
    pub train_images: usize,
    pub seconds: f64,
}

/// Conv blocks (3x3 conv, ReLU, 2x2 max-pool) until the side is at most 8, then a dense feature
/// layer with ReLU and the class logits.
pub struct Classifier {
    pub info: ClassifierInfo,
    vars: Vec<(String, Var)>,
    device: Device,
}

const BLOCK_FILTERS: [usize; 5] = [16, 32, 32, 64, 64];

fn n_blocks(h: usize, w: usize) -> usize {
    let mut s = h.min(w);
    let mut b = 0;
    while s > 8 && b < BLOCK_FILTERS.len() {
        s /= 2;
        b += 1;
    }
    b
}

impl Classifier {
    fn new(info: ClassifierInfo, rng: &mut SeededRng, device: &Device) -> Result<Self> {
        let mut vars = Vec::new();
        let mut he = |name: String, shape: Vec<usize>, fan_in: usize| -> Result<()> {
            let n: usize = shape.iter().product();
            let std = (2.0 / fan_in as f32).sqrt();
            let w: Vec<f32> = rng.normal_vec(n).into_iter().map(|v| v * std).collect();
            vars.push((name, Var::from_vec(w, shape, device)?));
            Ok(())
        };
        let (mut c, mut h, mut w) = (info.channels, info.height, info.width);
        for b in 0..info.blocks {
            let f = BLOCK_FILTERS[b];
            he(format!("conv{b}.weight"), vec![f, c, 3, 3], c * 9)?;
            c = f;
            h /= 2;
            w /= 2;
        }
        he("fc.weight".into(), vec![FEATURE_DIM, c * h * w], c * h * w)?;
        he(
            "out.weight".into(),
            vec![info.num_classes, FEATURE_DIM],
            FEATURE_DIM,
        )?;
        for b in 0..info.blocks {
            vars.push((
                format!("conv{b}.bias"),
                Var::zeros(BLOCK_FILTERS[b], DType::F32, device)?,
            ));
        }
        vars.push(("fc.bias".into(), Var::zeros(FEATURE_DIM, DType::F32, device)?));
        vars.push((
            "out.bias".into(),
            Var::zeros(info.num_classes, DType::F32, device)?,
        ));
        Ok(Self {
            info,
            vars,
            device: device.clone(),
        })
    }

    fn var(&self, name: &str) -> &Tensor {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_tensor())
            .expect("classifier variable")
    }

    /// (features [b, FEATURE_DIM], logits [b, classes]) for a batch [b, c, h, w].
    fn forward(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut h = x.clone();
        for b in 0..self.info.blocks {
            // Through model::ops, so the CPU runs the project's convolution kernels: candle's own
            // conv2d backward made training this classifier the slowest step of `eval`.
            let w = self.var(&format!("conv{b}.weight"));
            let bias = self.var(&format!("conv{b}.bias"));
            h = ops::conv2d(&h, w, Some(bias), 1, 1)?.relu()?.max_pool2d(2)?;
        }
        let h = h.flatten_from(1)?;
        let feat = ops::linear(&h, self.var("fc.weight"), self.var("fc.bias"))?.relu()?;
        let logits = ops::linear(&feat, self.var("out.weight"), self.var("out.bias"))?;
        Ok((feat, logits))
    }

    fn check_shape(&self, set_shape: (usize, usize, usize)) -> Result<()> {
        let want = (self.info.channels, self.info.height, self.info.width);
        if set_shape != want {
            bail!(
                "classifier expects images of {:?} (channels, height, width), got {:?}",
                want,
                set_shape
            );
        }
        Ok(())
    }

    /// Penultimate features [n, FEATURE_DIM] and class probabilities [n, classes] of images
    /// [n, c, h, w] with pixels in [0, 1].
    pub fn features_and_probs(&self, images: &[f32], n: usize) -> Result<(Vec<f32>, Vec<f32>)> {
        let (c, h, w) = (self.info.channels, self.info.height, self.info.width);
        let d = c * h * w;
        if images.len() != n * d {
            bail!(
                "classifier: {} values is not {n} images of {c}x{h}x{w}",
                images.len()
            );
        }
        let mut feats = Vec::with_capacity(n * FEATURE_DIM);
        let mut probs = Vec::with_capacity(n * self.info.num_classes);
        for start in (0..n).step_by(256) {
            let b = (n - start).min(256);
            let x = Tensor::from_slice(&images[start * d..(start + b) * d], (b, c, h, w), &self.device)?;
            let (f, logits) = self.forward(&x)?;
            feats.extend(f.flatten_all()?.to_vec1::<f32>()?);
            probs.extend(
                candle_nn::ops::softmax(&logits, D::Minus1)?
                    .flatten_all()?
                    .to_vec1::<f32>()?,
            );
        }
        Ok((feats, probs))
    }

    /// Fraction of `set` classified correctly.
    pub fn accuracy(&self, set: &ImageSet) -> Result<f64> {
        self.check_shape((set.channels, set.height, set.width))?;
        let (_, probs) = self.features_and_probs(&set.images, set.n)?;
        let k = self.info.num_classes;
        let correct = probs
            .chunks(k)
            .zip(&set.labels)
            .filter(|(p, &l)| argmax(p) == l as usize)
            .count();
        Ok(correct as f64 / set.n.max(1) as f64)
    }

    /// Feature statistics of real images (the reference for the Frechet distance).
    pub fn feature_stats(&self, set: &ImageSet) -> Result<GaussianStats> {
        Ok(self.reference_and_quality(set)?.0)
    }

    /// The real images' feature statistics (the reference samples are scored against) and how
    /// the classifier sees those images, from one pass over them.
    pub fn reference_and_quality(&self, set: &ImageSet) -> Result<(GaussianStats, SampleQuality)> {
        self.check_shape((set.channels, set.height, set.width))?;
        let (f, probs) = self.features_and_probs(&set.images, set.n)?;
        let stats = GaussianStats::from_rows(&f, set.n, FEATURE_DIM)?;
        let quality = self.quality(&stats, &f, &probs, set.n)?;
        Ok((stats, quality))
    }

    /// Score generated images against real-image feature statistics.
    pub fn sample_quality(
        &self,
        reference: &GaussianStats,
        samples: &[f32],
        n: usize,
    ) -> Result<SampleQuality> {
        Ok(self.features_and_quality(reference, samples, n)?.1)
    }

    /// The images' features [n, FEATURE_DIM] (the ones the FD is computed on) and their scores
    /// against real-image feature statistics, from one pass.
    pub fn features_and_quality(
        &self,
        reference: &GaussianStats,
        images: &[f32],
        n: usize,
    ) -> Result<(Vec<f32>, SampleQuality)> {
        let (f, probs) = self.features_and_probs(images, n)?;
        let q = self.quality(reference, &f, &probs, n)?;
        Ok((f, q))
    }

    /// Scores of `n` images from their features and class probabilities.
    fn quality(
        &self,
        reference: &GaussianStats,
        f: &[f32],
        probs: &[f32],
        n: usize,
    ) -> Result<SampleQuality> {
        let stats = GaussianStats::from_rows(f, n, FEATURE_DIM)?;
        let fd = frechet_distance(reference, &stats)?;
        let k = self.info.num_classes;
        let mut confidence = 0.0;
        let mut entropy = 0.0;
        let mut marginal = vec![0.0f64; k];
        for p in probs.chunks(k) {
            confidence += p.iter().cloned().fold(0.0f32, f32::max) as f64;
            for (j, &q) in p.iter().enumerate() {
                marginal[j] += q as f64;
                if q > 0.0 {
                    entropy -= q as f64 * (q as f64).ln();
                }
            }
        }
        let class_entropy: f64 = marginal
            .iter()
            .map(|m| m / n as f64)
            .filter(|&m| m > 0.0)
            .map(|m| -m * m.ln())
            .sum();
        Ok(SampleQuality {
            fd,
            confidence: confidence / n as f64,
            mean_entropy: entropy / n as f64,
            class_entropy,
            max_class_entropy: (k as f64).ln(),
            n_samples: n,
        })
    }

    fn save(&self, path: &Path) -> Result<()> {
        let map: HashMap<String, Tensor> = self
            .vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let tmp = crate::util::fs::temp_name(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        candle_core::safetensors::save(&map, &tmp).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
        crate::util::write_atomic(
            &path.with_extension("json"),
            serde_json::to_string_pretty(&self.info)?.as_bytes(),
        )
    }

    fn load(path: &Path, device: &Device) -> Result<Self> {
        let info: ClassifierInfo = serde_json::from_slice(
            &std::fs::read(path.with_extension("json"))
                .with_context(|| format!("reading {}", path.with_extension("json").display()))?,
        )?;
        let mut tensors = candle_core::safetensors::load(path, device)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut me = Self::new(info, &mut SeededRng::new(0), device)?;
        for (name, var) in me.vars.iter_mut() {
            let t = tensors
                .remove(name.as_str())
                .with_context(|| format!("{}: tensor {name} missing", path.display()))?;
            *var = Var::from_tensor(&t)?;
        }
        Ok(me)
    }
}

/// How generated images look to the classifier.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct SampleQuality {
    /// Frechet distance between real-test and sample features (lower is better).
    pub fd: f64,
    /// Mean max-softmax probability: how confidently samples are recognised as some class.
    pub confidence: f64,
    /// Mean per-sample predictive entropy (nats; low = confident).
    pub mean_entropy: f64,
    /// Entropy of the average class distribution (nats; high = samples cover the classes).
    pub class_entropy: f64,
    /// ln(classes), the largest possible class entropy.
    pub max_class_entropy: f64,
    pub n_samples: usize,
}

fn argmax(p: &[f32]) -> usize {
    p.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(0)
}

/// Where trained classifiers are kept: $NORBVAE_CACHE_DIR, else $XDG_CACHE_HOME/norbvae, else
/// ~/.cache/norbvae, else ./.norbvae-cache.
pub fn default_cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NORBVAE_CACHE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("norbvae");
    }
    if let Some(h) = std::env::var_os("HOME") {
        return PathBuf::from(h).join(".cache").join("norbvae");
    }
    PathBuf::from(".norbvae-cache")
}

fn cache_key(data: &DataOptions, params: &ClassifierParams, shape: (usize, usize, usize)) -> String {
    let text = format!(
        "{ARCH_VERSION}|{}|{}|{:?}",
        serde_json::to_string(data).unwrap_or_default(),
        serde_json::to_string(params).unwrap_or_default(),
        shape
    );
    let mut h: u64 = 0xcbf29ce484222325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

/// The cached classifier for this dataset, training (and caching) it first if there is none.
pub fn load_or_train(
    splits: &Splits,
    data: &DataOptions,
    params: &ClassifierParams,
    cache_dir: &Path,
    show_progress: bool,
) -> Result<Classifier> {
    let t = &splits.train;
    let shape = (t.channels, t.height, t.width);
    let path = cache_dir.join(format!(
        "classifier-{}.safetensors",
        cache_key(data, params, shape)
    ));
    let device = crate::util::device::selected();
    if path.is_file() && path.with_extension("json").is_file() {
        return Classifier::load(&path, &device);
    }
    let clf = train(splits, data, params, show_progress)?;
    clf.save(&path)?;
    Ok(clf)
}

/// Train a classifier on the training split and measure it on the test split.
pub fn train(
    splits: &Splits,
    data: &DataOptions,
    params: &ClassifierParams,
    show_progress: bool,
) -> Result<Classifier> {
    let started = std::time::Instant::now();
    let set = &splits.train;
    if set.n == 0 || splits.test.n == 0 {
        bail!(
            "the sample-quality classifier needs labelled training and test images ({}: {} train, {} test)",
            splits.name,
            set.n,
            splits.test.n
        );
    }
    let num_classes = splits
        .num_classes
        .max(set.labels.iter().map(|&l| l as usize + 1).max().unwrap_or(1));
    if num_classes < 2 {
        bail!(
            "the sample-quality classifier needs at least 2 classes in {}",
            splits.name
        );
    }
    if params.batch_size == 0 || params.epochs == 0 {
        bail!("classifier: batch_size and epochs must be positive");
    }
    let device = crate::util::device::selected();
    let mut rng = SeededRng::derived(params.seed, "classifier");
    let info = ClassifierInfo {
        arch_version: ARCH_VERSION,
        data: data.clone(),
        params: params.clone(),
        channels: set.channels,
        height: set.height,
        width: set.width,
        num_classes,
        blocks: n_blocks(set.height, set.width),
        test_accuracy: 0.0,
        train_images: set.n.min(params.max_train),
        seconds: 0.0,
    };
    let mut clf = Classifier::new(info, &mut rng, &device)?;
    let mut order: Vec<usize> = (0..set.n).collect();
    rng.shuffle(&mut order);
    order.truncate(params.max_train);
    let sub = set.select(&order);
    let vars: Vec<Var> = clf.vars.iter().map(|(_, v)| v.clone()).collect();
    let mut opt = Adam::new(
        vars,
        AdamHyper {
            lr: params.lr,
            ..Default::default()
        },
    )?;
    let per_epoch = sub.n.div_ceil(params.batch_size);
    let epochs = params.epochs.max(params.min_steps.div_ceil(per_epoch));
    let steps = epochs * per_epoch;
    let bar = if show_progress {
        crate::util::progress::bar(steps as u64, "classifier", "batches")
    } else {
        indicatif::ProgressBar::hidden()
    };
    let d = sub.dim();
    let (c, h, w) = (sub.channels, sub.height, sub.width);
    for _epoch in 0..epochs {
        let mut idx: Vec<usize> = (0..sub.n).collect();
        rng.shuffle(&mut idx);
        for batch in idx.chunks(params.batch_size) {
            let mut x = Vec::with_capacity(batch.len() * d);
            for &i in batch {
                x.extend_from_slice(sub.image(i));
            }
            let labels: Vec<u32> = batch.iter().map(|&i| sub.labels[i]).collect();
            let x = Tensor::from_vec(x, (batch.len(), c, h, w), &device)?;
            let y = Tensor::from_vec(labels, batch.len(), &device)?;
            let (_, logits) = clf.forward(&x)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            opt.step(&loss.backward()?)?;
            bar.set_message(format!("loss {:.3}", loss.to_scalar::<f32>()?));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    clf.info.test_accuracy = clf.accuracy(&splits.test)?;
    clf.info.seconds = started.elapsed().as_secs_f64();
    Ok(clf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two classes of 16x16 images: a bright horizontal or vertical bar at a random place, with noise.
    fn bars(n: usize, seed: u64) -> ImageSet {
        let mut rng = SeededRng::new(seed);
        let (h, w) = (16, 16);
        let mut images = Vec::with_capacity(n * h * w);
        let mut labels = Vec::with_capacity(n);
        for i in 0..n {
            let label = (i % 2) as u32;
            let pos = 2 + rng.below(12);
            let noise = rng.uniform_vec(h * w);
            for r in 0..h {
                for c in 0..w {
                    let on = if label == 0 {
                        r.abs_diff(pos) <= 1
                    } else {
                        c.abs_diff(pos) <= 1
                    };
                    images.push(if on { 0.8 } else { 0.1 } + 0.2 * noise[r * w + c]);
                }
            }
            labels.push(label);
        }
        ImageSet {
            images,
            n,
            channels: 1,
            height: h,
            width: w,
            labels,
            factors: None,
        }
    }

    #[test]
    fn classifier_learns_trains_once_and_scores_samples() {
        let splits = Splits {
            name: "bars".into(),
            train: bars(512, 1),
            val: bars(0, 2),
            test: bars(256, 3),
            num_classes: 2,
            class_names: vec!["horizontal".into(), "vertical".into()],
        };
        let cache = tempfile::tempdir().unwrap();
        let data = DataOptions {
            spec: "test:bars".into(),
            ..Default::default()
        };
        let params = ClassifierParams {
            epochs: 2,
            batch_size: 32,
            ..Default::default()
        };
        let clf = load_or_train(&splits, &data, &params, cache.path(), false).unwrap();
        assert!(
            clf.info.test_accuracy > 0.95,
            "accuracy {}",
            clf.info.test_accuracy
        );
        // The second call loads the cached network: same accuracy and the same features.
        let again = load_or_train(&splits, &data, &params, cache.path(), false).unwrap();
        assert_eq!(again.info.test_accuracy, clf.info.test_accuracy);
        let probe = splits.test.head(4);
        assert_eq!(
            clf.features_and_probs(&probe.images, 4).unwrap(),
            again.features_and_probs(&probe.images, 4).unwrap()
        );
        // Real held-out images score far better than noise, and are classified confidently.
        let reference = clf.feature_stats(&splits.test).unwrap();
        let real = bars(256, 4);
        let good = clf.sample_quality(&reference, &real.images, real.n).unwrap();
        let noise = SeededRng::new(9).uniform_vec(256 * 256);
        let bad = clf.sample_quality(&reference, &noise, 256).unwrap();
        assert!(good.fd * 5.0 < bad.fd, "real {} vs noise {}", good.fd, bad.fd);
        assert!(good.confidence > 0.9 && good.class_entropy > 0.6, "{good:?}");
        // Images of another size are refused with a clear message.
        let small = ImageSet {
            images: vec![0.5; 4 * 64],
            n: 4,
            channels: 1,
            height: 8,
            width: 8,
            labels: vec![0; 4],
            factors: None,
        };
        let err = clf.feature_stats(&small).map(|_| ()).unwrap_err();
        assert!(
            err.to_string()
                .contains("classifier expects images of (1, 16, 16)"),
            "{err}"
        );
    }
}
