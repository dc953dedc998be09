//! Synthetic NORB: a small software renderer that writes a dataset with exactly smallNORB's
//! structure and files. Five categories of toy-like objects (animal, human, airplane, truck, car),
//! ten instances each with their own proportions, photographed on a turntable: 9 camera elevations
//! (30..70 degrees), 18 azimuths (0..340 degrees), 6 lighting conditions, and a stereo pair of
//! grayscale cameras. Training instances are 4, 6, 7, 8, 9 and testing 0, 1, 2, 3, 5, as published.
//!
//! Every image is a pure function of (seed, category, instance, elevation, azimuth, lighting, camera,
//! size): a subset renders exactly the same pixels as the full set, and the output is identical
//! whatever the number of threads.
use crate::data::norb::{self, NorbPart};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use std::path::Path;

pub mod geometry;
pub mod objects;
pub mod render;

use geometry::{v3, Vec3};
use objects::Toy;
pub use objects::CATEGORY_NAMES;
use render::{Camera, Scratch, ShadowMap, ViewScene};

pub const NUM_CATEGORIES: usize = 5;
pub const NUM_INSTANCES: usize = 10;
pub const NUM_ELEVATIONS: usize = 9;
pub const NUM_AZIMUTHS: usize = 18;
pub const NUM_LIGHTINGS: usize = 6;
pub const TRAINING_INSTANCES: [usize; 5] = [4, 6, 7, 8, 9];
pub const TESTING_INSTANCES: [usize; 5] = [0, 1, 2, 3, 5];

/// Camera distance from the toy's centre, in units of the toy's bounding-sphere radius.
const CAMERA_DISTANCE: f32 = 5.5;
/// Focal length relative to the image half-width: the bounding sphere fills about 85% of the frame.
const FOCAL: f32 = 5.2;
/// Distance between the two cameras (same units); both aim at the toy's centre.
const STEREO_BASELINE: f32 = 0.3;
const SUPERSAMPLE: usize = 2;
const SHADOW_MAP_RES: usize = 192;
/// Standard deviation-like amplitude of the sensor noise, in 8-bit levels.
const NOISE_LEVELS: f32 = 2.0;

/// What to render. `Default` is the full smallNORB-sized set at 96 x 96.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthParams {
    pub seed: u64,
    /// Image side in pixels.
    pub side: usize,
    /// Instances 0..=9 to render (each goes to its published half).
    pub instances: Vec<usize>,
    /// Elevation indices 0..=8 (30 + 5 * index degrees).
    pub elevations: Vec<usize>,
    /// Azimuths in smallNORB's units: 0, 2, ..., 34 (times 10 degrees).
    pub azimuths: Vec<usize>,
    /// Lighting conditions 0..=5.
    pub lightings: Vec<usize>,
    /// Write `.mat.gz` (as published) rather than plain `.mat`.
    pub gzip: bool,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for SynthParams {
    fn default() -> Self {
        Self {
            seed: 0,
            side: 96,
            instances: (0..NUM_INSTANCES).collect(),
            elevations: (0..NUM_ELEVATIONS).collect(),
            azimuths: (0..NUM_AZIMUTHS).map(|a| 2 * a).collect(),
            lightings: (0..NUM_LIGHTINGS).collect(),
            gzip: true,
            progress: false,
        }
    }
}

/// Checked [`SynthParams`]: lists sorted, deduplicated and in range; both halves non-empty.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidSynthParams(SynthParams);

impl ValidSynthParams {
    pub fn params(&self) -> &SynthParams {
        &self.0
    }

    /// The instances of `part` that will be rendered.
    pub fn instances_of(&self, part: NorbPart) -> Vec<usize> {
        let published: &[usize] = match part {
            NorbPart::Training => &TRAINING_INSTANCES,
            NorbPart::Testing => &TESTING_INSTANCES,
        };
        self.0
            .instances
            .iter()
            .copied()
            .filter(|i| published.contains(i))
            .collect()
    }

    /// Number of stereo pairs per instance.
    pub fn poses_per_instance(&self) -> usize {
        self.0.elevations.len() * self.0.azimuths.len() * self.0.lightings.len()
    }

    /// Number of stereo pairs in `part`.
    pub fn count(&self, part: NorbPart) -> usize {
        NUM_CATEGORIES * self.instances_of(part).len() * self.poses_per_instance()
    }
}

fn checked_list(
    name: &str,
    values: &[usize],
    valid: impl Fn(usize) -> bool,
    what: &str,
) -> Result<Vec<usize>> {
    if values.is_empty() {
        bail!("--{name}: the list is empty");
    }
    if let Some(bad) = values.iter().find(|&&v| !valid(v)) {
        bail!("--{name}: {bad} is out of range ({what})");
    }
    let mut v = values.to_vec();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

impl SynthParams {
    pub fn check(&self) -> Result<ValidSynthParams> {
        if !(8..=512).contains(&self.side) {
            bail!("--size: {} is out of range (8 to 512 pixels)", self.side);
        }
        let mut p = self.clone();
        p.instances = checked_list("instances", &self.instances, |v| v < NUM_INSTANCES, "0 to 9")?;
        p.elevations = checked_list("elevations", &self.elevations, |v| v < NUM_ELEVATIONS, "0 to 8")?;
        p.azimuths = checked_list(
            "azimuths",
            &self.azimuths,
            |v| v % 2 == 0 && v < 2 * NUM_AZIMUTHS,
            "even numbers 0 to 34, in tens of degrees",
        )?;
        p.lightings = checked_list("lightings", &self.lightings, |v| v < NUM_LIGHTINGS, "0 to 5")?;
        let valid = ValidSynthParams(p);
        if valid.instances_of(NorbPart::Training).is_empty()
            || valid.instances_of(NorbPart::Testing).is_empty()
        {
            bail!(
                "--instances: choose at least one training instance (4, 6, 7, 8, 9) and one testing \
                 instance (0, 1, 2, 3, 5), so that both halves of the dataset exist"
            );
        }
        Ok(valid)
    }
}

/// One half of the dataset in memory, laid out as in the smallNORB files.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderedPart {
    pub n: usize,
    pub side: usize,
    /// uint8 [n, 2, side, side]: left then right camera.
    pub dat: Vec<u8>,
    pub cat: Vec<i32>,
    /// [instance, elevation, azimuth (0, 2, .., 34), lighting] per pair.
    pub info: Vec<[i32; 4]>,
}

/// Render one half. Pairs are ordered by category, instance, elevation, azimuth, lighting.
pub fn render_part(p: &ValidSynthParams, part: NorbPart, bar: &indicatif::ProgressBar) -> RenderedPart {
    let sp = p.params();
    let side = sp.side;
    let pair = 2 * side * side;
    let instances = p.instances_of(part);
    let per = p.poses_per_instance();
    let n = NUM_CATEGORIES * instances.len() * per;
    let mut dat = vec![0u8; n * pair];
    let mut cat = Vec::with_capacity(n);
    let mut info = Vec::with_capacity(n);
    let mut blocks = dat.chunks_mut(per * pair);
    for c in 0..NUM_CATEGORIES {
        for &inst in &instances {
            for &e in &sp.elevations {
                for &a in &sp.azimuths {
                    for &l in &sp.lightings {
                        cat.push(c as i32);
                        info.push([inst as i32, e as i32, a as i32, l as i32]);
                    }
                }
            }
            let block = blocks.next().expect("one block per instance");
            render_instance(sp, c, inst, block, bar);
        }
    }
    RenderedPart {
        n,
        side,
        dat,
        cat,
        info,
    }
}

/// The toy and everything shared by its views: turntable poses and shadow maps per (azimuth, lighting).
struct Stage {
    toy: Toy,
    target: Vec3,
    posed: Vec<(Vec<Vec3>, Vec<Vec3>)>,
    lights: Vec<render::Light>,
    shadows: Vec<ShadowMap>,
}

impl Stage {
    fn new(seed: u64, category: usize, instance: usize, azimuths: &[usize], lightings: &[usize]) -> Stage {
        let toy = objects::build_toy(seed, category, instance);
        let target = v3(0.0, toy.height * 0.5, 0.0);
        let posed: Vec<_> = azimuths
            .iter()
            .map(|&a| render::pose(&toy.mesh, (a as f32 * 10.0).to_radians()))
            .collect();
        let lights: Vec<_> = lightings.iter().map(|&l| render::lighting(l)).collect();
        let shadows = (0..azimuths.len() * lightings.len())
            .into_par_iter()
            .map(|k| {
                let (ai, li) = (k / lightings.len(), k % lightings.len());
                ShadowMap::build(&toy.mesh.tris, &posed[ai].0, &lights[li], target, SHADOW_MAP_RES)
            })
            .collect();
        Stage {
            toy,
            target,
            posed,
            lights,
            shadows,
        }
    }

    /// The left and right cameras at elevation index `e`.
    fn cameras(&self, e: usize) -> [Camera; 2] {
        let el = (30.0 + 5.0 * e as f32).to_radians();
        let eye = self.target + v3(0.0, el.sin(), el.cos()) * CAMERA_DISTANCE;
        let right = v3(1.0, 0.0, 0.0);
        [-0.5f32, 0.5].map(|s| Camera::look_at(eye + right * (s * STEREO_BASELINE), self.target, FOCAL))
    }

    /// Render the stereo pair for (azimuth index, lighting index, elevation) into `out` [2, side, side].
    #[allow(clippy::too_many_arguments)]
    fn render_pair(
        &self,
        key: u64,
        ai: usize,
        li: usize,
        e: usize,
        side: usize,
        scratch: &mut Scratch,
        out: &mut [u8],
    ) {
        let (pos, normal) = &self.posed[ai];
        let scene = ViewScene {
            mesh_tris: &self.toy.mesh.tris,
            pos,
            normal,
            albedo: self.toy.albedo,
            light: &self.lights[li],
            shadow: &self.shadows[ai * self.lights.len() + li],
        };
        for (k, (cam, view)) in self
            .cameras(e)
            .iter()
            .zip(out.chunks_mut(side * side))
            .enumerate()
        {
            render::render_view(
                &scene,
                cam,
                side,
                SUPERSAMPLE,
                mix(key, k as u64),
                NOISE_LEVELS,
                scratch,
                view,
            );
        }
    }
}

fn mix(a: u64, b: u64) -> u64 {
    let mut z = a ^ b
        .wrapping_add(0x9E3779B97F4A7C15)
        .wrapping_mul(0xD6E8FEB86659FD93);
    z = (z ^ (z >> 32)).wrapping_mul(0xD6E8FEB86659FD93);
    z ^ (z >> 32)
}

/// The noise key of one pair: a function of the factors alone, so subsets reproduce the full set.
fn pair_key(seed: u64, c: usize, inst: usize, e: usize, a: usize, l: usize) -> u64 {
    [c, inst, e, a, l]
        .iter()
        .fold(mix(seed, 0x5EED), |k, &v| mix(k, v as u64))
}

fn render_instance(sp: &SynthParams, c: usize, inst: usize, block: &mut [u8], bar: &indicatif::ProgressBar) {
    let side = sp.side;
    let stage = Stage::new(sp.seed, c, inst, &sp.azimuths, &sp.lightings);
    let (na, nl) = (sp.azimuths.len(), sp.lightings.len());
    block
        .par_chunks_mut(2 * side * side)
        .enumerate()
        .for_each_init(Scratch::default, |scratch, (j, out)| {
            let (ei, ai, li) = (j / (na * nl), (j / nl) % na, j % nl);
            let e = sp.elevations[ei];
            let key = pair_key(sp.seed, c, inst, e, sp.azimuths[ai], sp.lightings[li]);
            stage.render_pair(key, ai, li, e, side, scratch, out);
            bar.inc(1);
        });
}

/// Render one stereo pair ([2, side, side], left then right) outside a dataset: for previews and tests.
/// `azimuth` is in smallNORB units (0, 2, ..., 34).
pub fn render_one(
    seed: u64,
    side: usize,
    category: usize,
    instance: usize,
    elevation: usize,
    azimuth: usize,
    lighting: usize,
) -> Vec<u8> {
    let stage = Stage::new(seed, category, instance, &[azimuth], &[lighting]);
    let mut out = vec![0u8; 2 * side * side];
    let key = pair_key(seed, category, instance, elevation, azimuth, lighting);
    stage.render_pair(key, 0, 0, elevation, side, &mut Scratch::default(), &mut out);
    out
}

/// Render the dataset described by `p` and write its six smallNORB files into `out_dir`.
pub fn generate(p: &ValidSynthParams, out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let total = (p.count(NorbPart::Training) + p.count(NorbPart::Testing)) as u64;
    let bar = if p.params().progress {
        crate::util::progress::bar(total, "rendering", "pairs")
    } else {
        indicatif::ProgressBar::hidden()
    };
    for part in [NorbPart::Training, NorbPart::Testing] {
        let r = render_part(p, part, &bar);
        norb::write_split(out_dir, part, &r.dat, r.side, &r.cat, &r.info, p.params().gzip)
            .with_context(|| format!("writing the synthetic {part:?} half to {}", out_dir.display()))?;
    }
    bar.finish_and_clear();
    Ok(())
}

/// A tiny but complete-format set for tests and the demo: all 5 categories x 10 instances,
/// 3 elevations x 6 azimuths x 2 lightings (900 pairs per half), gzipped.
pub fn small_params(side: usize, seed: u64) -> SynthParams {
    SynthParams {
        seed,
        side,
        elevations: vec![0, 4, 8],
        azimuths: vec![0, 6, 12, 18, 24, 30],
        lightings: vec![0, 3],
        ..SynthParams::default()
    }
}

/// Write [`small_params`]`(side, seed)` into `dir`.
pub fn write_small(dir: &Path, side: usize, seed: u64) -> Result<()> {
    generate(&small_params(side, seed).check()?, dir)
}

/// A contact sheet of left-camera renders for looking at the generator: one row per category,
/// first the ten instances, then an azimuth sweep, an elevation sweep and the six lightings.
pub fn save_preview(path: &Path, seed: u64, side: usize) -> Result<()> {
    let cols = 10;
    let mut cells: Vec<(usize, usize, usize, usize, usize)> = Vec::new();
    for c in 0..NUM_CATEGORIES {
        cells.extend((0..10).map(|i| (c, i, 2, 6, 0)));
    }
    for c in 0..NUM_CATEGORIES {
        cells.extend((0..10).map(|k| (c, 4, 2, (k * 4).min(34), 1)));
    }
    for c in 0..NUM_CATEGORIES {
        cells.extend((0..9).map(|e| (c, 6, e, 8, 2)));
        cells.push((c, 6, 8, 8, 2));
    }
    for c in 0..NUM_CATEGORIES {
        cells.extend((0..6).map(|l| (c, 0, 4, 14, l)));
        cells.extend((0..4).map(|_| (c, 0, 4, 14, 5)));
    }
    let renders: Vec<Vec<u8>> = cells
        .par_iter()
        .map(|&(c, i, e, a, l)| render_one(seed, side, c, i, e, a, l))
        .collect();
    let rows = cells.len().div_ceil(cols);
    let pad = 2;
    let (w, h) = (cols * (side + pad) + pad, rows * (side + pad) + pad);
    let mut img = image::GrayImage::from_pixel(w as u32, h as u32, image::Luma([0]));
    for (k, r) in renders.iter().enumerate() {
        let (x0, y0) = (pad + (k % cols) * (side + pad), pad + (k / cols) * (side + pad));
        for y in 0..side {
            for x in 0..side {
                img.put_pixel((x0 + x) as u32, (y0 + y) as u32, image::Luma([r[y * side + x]]));
            }
        }
    }
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .context("encoding the preview PNG")?;
    crate::util::write_atomic(path, &bytes)
}
