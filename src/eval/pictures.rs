//! What the latents encode, as pictures: traversals of the most active latents, interpolations
//! between pairs of test images, and reconstructions along each NORB factor for a fixed object.
use super::latent::{decode_to_pixels, Posterior};
use crate::data::grid::{save_labelled_grid, save_recon_grid, GridLabels};
use crate::data::{ImageSet, NorbFactors};
use crate::train::LoadedRun;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// Steps of a traversal (from -3 to +3 prior standard deviations) and of an interpolation.
const STEPS: usize = 9;

/// Rows: the `rows` latents with the most varying posterior mean; columns: that latent set to
/// -3..3 with the others at the posterior mean of the first image.
pub fn traversal(run: &LoadedRun, post: &Posterior, rows: usize, path: &Path) -> Result<()> {
    let l = post.latent;
    let var = post.mean_variance_per_dim();
    let mut order: Vec<usize> = (0..l).collect();
    order.sort_by(|&a, &b| var[b].total_cmp(&var[a]));
    order.truncate(rows.min(l));
    let base = &post.mu[0..l];
    let mut z = Vec::with_capacity(order.len() * STEPS * l);
    for &dim in &order {
        for s in 0..STEPS {
            let mut code = base.to_vec();
            code[dim] = -3.0 + 6.0 * s as f32 / (STEPS - 1) as f32;
            z.extend(code);
        }
    }
    let n = order.len() * STEPS;
    let px = decode_to_pixels(run, &z, n)?;
    let (c, h, w) = run.image_shape();
    let labels = GridLabels {
        title: "Traversal: each row sets one latent to -3..+3 prior sd, the others at test image 1's mean"
            .into(),
        columns: (0..STEPS)
            .map(|s| format!("{:+}", -3.0 + 6.0 * s as f32 / (STEPS - 1) as f32))
            .collect(),
        rows: order.iter().map(|d| format!("z{d}")).collect(),
    };
    save_labelled_grid(path, &px, n, c, h, w, STEPS, &labels)
}

/// Each row: image a, decoded points on the line between the posterior means of a and b, image b.
pub fn interpolation(
    run: &LoadedRun,
    set: &ImageSet,
    post: &Posterior,
    pairs: usize,
    path: &Path,
) -> Result<()> {
    let l = post.latent;
    let pairs = pairs.min(set.n / 2);
    if pairs == 0 {
        return Ok(());
    }
    let mut z = Vec::new();
    for p in 0..pairs {
        let (a, b) = (
            &post.mu[2 * p * l..(2 * p + 1) * l],
            &post.mu[(2 * p + 1) * l..(2 * p + 2) * l],
        );
        for s in 0..STEPS {
            let t = s as f32 / (STEPS - 1) as f32;
            z.extend(a.iter().zip(b).map(|(x, y)| (1.0 - t) * x + t * y));
        }
    }
    let decoded = decode_to_pixels(run, &z, pairs * STEPS)?;
    let d = set.dim();
    let mut px = Vec::with_capacity(pairs * (STEPS + 2) * d);
    for p in 0..pairs {
        px.extend_from_slice(set.image(2 * p));
        px.extend_from_slice(&decoded[p * STEPS * d..(p + 1) * STEPS * d]);
        px.extend_from_slice(set.image(2 * p + 1));
    }
    let mut columns = vec!["image a".to_string()];
    columns.extend((0..STEPS).map(|s| format!("t={}", s as f32 / (STEPS - 1) as f32)));
    columns.push("image b".into());
    let labels = GridLabels {
        title: "Interpolation: decoded (1-t) mean(a) + t mean(b), between pairs of test images".into(),
        columns,
        rows: (1..=pairs).map(|p| format!("pair {p}")).collect(),
    };
    save_labelled_grid(
        path,
        &px,
        pairs * (STEPS + 2),
        set.channels,
        set.height,
        set.width,
        STEPS + 2,
        &labels,
    )
}

/// For the object of the first image, the images that differ from it in one factor only, sorted by
/// that factor, each beside its reconstruction. One file per factor with at least two images.
pub fn factor_reconstructions(run: &LoadedRun, set: &ImageSet, dir: &Path) -> Result<Vec<PathBuf>> {
    let Some(factors) = &set.factors else {
        return Ok(vec![]);
    };
    if set.n == 0 {
        return Ok(vec![]);
    }
    let r = factors[0];
    let label = set.labels[0];
    let same_object = |i: usize| set.labels[i] == label && factors[i].instance == r.instance;
    type Key = fn(&NorbFactors) -> u8;
    type SameRest = fn(&NorbFactors, &NorbFactors) -> bool;
    let specs: [(&str, Key, SameRest); 3] = [
        (
            "elevation",
            |f| f.elevation,
            |f, r| f.azimuth == r.azimuth && f.lighting == r.lighting,
        ),
        (
            "azimuth",
            |f| f.azimuth,
            |f, r| f.elevation == r.elevation && f.lighting == r.lighting,
        ),
        (
            "lighting",
            |f| f.lighting,
            |f, r| f.elevation == r.elevation && f.azimuth == r.azimuth,
        ),
    ];
    let mut written = Vec::new();
    for (name, key, others_equal) in specs {
        let mut idx: Vec<usize> = (0..set.n)
            .filter(|&i| same_object(i) && others_equal(&factors[i], &r))
            .collect();
        idx.sort_by_key(|&i| key(&factors[i]));
        idx.dedup_by_key(|i| key(&factors[*i]));
        if idx.len() < 2 {
            continue;
        }
        let sub = set.select(&idx);
        let recon = super::latent::reconstruct_to_pixels(run, &sub)?;
        let path = dir.join(format!("factor_{name}.png"));
        let cols = if sub.n > 9 { 6 } else { sub.n };
        save_recon_grid(
            &path,
            &sub.images,
            &recon,
            sub.n,
            sub.channels,
            sub.height,
            sub.width,
            cols,
        )?;
        written.push(path);
    }
    Ok(written)
}
