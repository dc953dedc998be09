//! Short written answers to the experiment log's questions, generated from the runs' numbers.
//! Each answer quotes the numbers it rests on; a question whose runs are missing says so.
use super::runs::{RunInfo, RunKind};

fn find<'a>(runs: &'a [RunInfo], name: &str) -> Option<&'a RunInfo> {
    runs.iter().find(|r| r.name == name)
}

/// Test -ELBO of the pixels (PCA-VAEs: with PPCA's density of the discarded directions), so
/// every run is on one axis.
fn test_nll(run: &RunInfo) -> Option<f64> {
    run.test().map(|m| m.neg_elbo_pixels_or_model())
}

fn fd(run: &RunInfo, sampler: &str) -> Option<f64> {
    run.test()?.eval.samples.as_ref()?.get(sampler)?.fd
}

/// PCA test MSE at k (the closest k available at or above it), with that k.
fn pca_mse_at(runs: &[RunInfo], k: usize) -> Option<(usize, f64)> {
    let pca = runs.iter().find(|r| r.kind == RunKind::Pca)?;
    let ks = pca.pca_components();
    let kk = ks
        .iter()
        .copied()
        .find(|&c| c >= k)
        .or_else(|| ks.last().copied())?;
    Some((kk, pca.pca_test(kk)?.mse))
}

fn pct(a: f64, b: f64) -> String {
    format!("{:+.0}%", 100.0 * (a - b) / b.abs().max(1e-12))
}

/// Answers in the order of the log's questions.
pub fn answers(runs: &[RunInfo]) -> Vec<(String, String)> {
    let vaes: Vec<&RunInfo> = runs.iter().filter(|r| r.kind == RunKind::Vae).collect();
    let mut out = Vec::new();

    // 1. Capacity.
    let mut a = Vec::new();
    for r in &vaes {
        let (Some(l), Some(mse)) = (r.latent_dim(), r.test().map(|m| m.mse)) else {
            continue;
        };
        let train = r.split("train").map(|m| m.neg_elbo);
        let test = r.test().map(|m| m.neg_elbo);
        let gap = match (train, test) {
            (Some(a), Some(b)) => format!(", train/test -ELBO {a:.1}/{b:.1} nats"),
            _ => String::new(),
        };
        let vs = match pca_mse_at(runs, l) {
            Some((k, p)) => format!(
                " vs PCA with k={k}: {p:.5} ({} for the VAE)",
                if mse < p { "better" } else { "worse" }
            ),
            None => String::new(),
        };
        let kl = r
            .test()
            .map(|m| m.kl)
            .map(|k| format!(", KL {k:.1} nats ({:.2} per latent)", k / l as f64))
            .unwrap_or_default();
        a.push(format!(
            "{}: latent {l}, active units {}{kl}, test MSE {mse:.5}{vs}{gap}",
            r.name,
            r.test()
                .and_then(|m| m.eval.active_units)
                .map(|v| v as f64)
                .map(|v| format!("{v:.0}"))
                .unwrap_or("–".into())
        ));
    }
    if !a.is_empty() {
        let underfit = vaes.iter().filter(|r| {
            match (r.split("train").map(|m| m.neg_elbo), r.test().map(|m| m.neg_elbo)) {
                (Some(tr), Some(te)) => (te - tr) < 0.02 * tr.abs(),
                _ => false,
            }
        });
        let n_under = underfit.count();
        a.push(format!(
            "{n_under} of {} VAEs show a train/test gap under 2%: they underfit, so more capacity (or longer training) can still help them; where the VAE is worse than PCA at the same code size, the decoder, not the code size, is the bottleneck.",
            vaes.len()
        ));
        a.push("The KL term is the information the code carries about an image (in nats): where it is a few nats for many latents, the posterior has collapsed onto the prior and the decoder draws an average image whatever the code, so more capacity does not help until the reconstruction term weighs more (a smaller fixed variance, the sigma-VAE's optimal variance, or a KL weight below 1)".to_string());
        out.push(("More capacity?".to_string(), a.join(". ")));
    }

    // 2. Longer training, stopping condition.
    let mut a = Vec::new();
    for r in &vaes {
        let stopped = r.stopped_because().unwrap_or("?");
        let epochs = r.vae().map_or(f64::NAN, |m| m.epochs_run as f64);
        let best = r.vae().map_or(f64::NAN, |m| m.best_epoch as f64);
        let val = r.val_losses();
        let trend = if val.len() >= 4 {
            let k = val.len();
            let recent = (val[k - 1].1 - val[k - 4].1) / 3.0;
            format!(", validation loss moving {recent:+.2} nats/epoch over the last 3 epochs")
        } else {
            String::new()
        };
        let verdict = match stopped {
            "patience" => "stopping condition met (early stopping)",
            "max_epochs" if best >= epochs => "NOT converged: the best epoch is the last one, train longer",
            "max_epochs" => "hit the epoch cap, but the best epoch came earlier",
            "diverged" => "diverged (NaN/inf); the last good checkpoint is kept",
            _ => "unknown",
        };
        a.push(format!(
            "{}: {epochs} epochs, best {best}, {verdict}{trend}",
            r.name
        ));
    }
    if !a.is_empty() {
        out.push((
            "Longer training? Was the stopping condition met?".to_string(),
            a.join(". ") + ".",
        ));
    }

    // 3. tanh output on the PCA-VAE.
    if let (Some(plain), Some(tanh)) = (find(runs, "pca-vae"), find(runs, "pca-vae-tanh")) {
        if let (Some(a_mse), Some(b_mse)) = (plain.test().map(|m| m.mse), tanh.test().map(|m| m.mse)) {
            out.push((
                "tanh output?".to_string(),
                format!(
                    "PCA-VAE test MSE {a_mse:.5} with a linear output vs {b_mse:.5} with tanh ({}). PCA coefficients are not bounded to [-1, 1] (the first ones are many times larger), so tanh can only clip them: {}.",
                    pct(b_mse, a_mse),
                    if b_mse > a_mse { "keep the linear output" } else { "here tanh did not hurt, but it buys nothing the data needs" }
                ),
            ));
        }
    }

    // 4. Fitted variance.
    let pairs = [
        ("fitted-variance-convolutional-vae", "sigma-vae-convolutional-vae"),
        ("pca-vae-fitted-variance", "pca-vae-sigma"),
    ];
    let mut a = Vec::new();
    for (fitted, sigma) in pairs {
        if let (Some(f), Some(s)) = (find(runs, fitted), find(runs, sigma)) {
            let floor = f
                .test()
                .and_then(|m| m.on_floor)
                .map(|v| format!(", {:.1}% of outputs on the variance floor", 100.0 * v))
                .unwrap_or_default();
            a.push(format!(
                "{fitted}: test -ELBO {} nats, MSE {}{floor}; {sigma} (one shared, analytically optimal variance): -ELBO {} nats, MSE {}",
                fmt(test_nll(f), 1),
                fmt(f.test().map(|m| m.mse), 5),
                fmt(test_nll(s), 1),
                fmt(s.test().map(|m| m.mse), 5)
            ));
        }
    }
    if !a.is_empty() {
        a.push("A per-pixel variance lets the model buy likelihood by shrinking the variance where pixels are easy (background) instead of improving the mean, and it can collapse onto training points; the reconstructions (the mean) then get worse, which is what the log saw".to_string());
        out.push(("Why is fitted variance worse?".to_string(), a.join(". ") + "."));
    }

    // 4b. The VAEs as densities, against PPCA on the same pixels.
    if let Some(pca) = runs.iter().find(|r| r.kind == RunKind::Pca) {
        let ppca: Vec<(usize, f64)> = pca
            .pca_components()
            .into_iter()
            .filter_map(|k| Some((k, pca.pca_test(k)?.ppca_nll?)))
            .collect();
        let mut a = Vec::new();
        for r in &vaes {
            let Some(iwae) = r.test().and_then(|m| m.eval.iwae_bits_per_dim.and(m.eval.iwae)) else {
                continue;
            };
            let beaten: Vec<usize> = ppca
                .iter()
                .filter(|(_, nll)| *nll > iwae)
                .map(|(k, _)| *k)
                .collect();
            let best = ppca.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
            a.push(format!(
                "{}: test -log p(x) <= {iwae:.0} nats (IWAE); {}; PPCA's best here is {best:.0} nats",
                r.name,
                match beaten.iter().max() {
                    Some(k) => format!("better than PPCA up to k = {k}"),
                    None => "worse than PPCA at every k tried".to_string(),
                }
            ));
        }
        if !a.is_empty() {
            a.push("Both are exact densities on the same pixels with the same dequantization, so this is the like-for-like comparison; a PCA-VAE that loses to PPCA at its own number of components models the coefficients worse than a single Gaussian does (typically a fixed decoder variance far from the coefficients' real error)".to_string());
            out.push((
                "Is the VAE a better model of the images than PCA?".to_string(),
                a.join(". ") + ".",
            ));
        }
    }

    // 5. Samples vs reconstructions.
    let mut a = Vec::new();
    for r in &vaes {
        if let Some(p) = fd(r, "prior") {
            let g = fd(r, "gmm")
                .map(|g| format!(", GMM on the posterior means {g:.2} ({})", pct(g, p)))
                .unwrap_or_default();
            let s = fd(r, "two_stage")
                .map(|g| format!(", two-stage VAE {g:.2} ({})", pct(g, p)))
                .unwrap_or_default();
            let lat = |name: &str| {
                r.test()
                    .and_then(|m| m.eval.samples.as_ref()?.get(name)?.latent_fd)
            };
            let codes = match (lat("prior"), lat("gmm"), lat("two_stage")) {
                (Some(p), g, t) => format!(
                    "; in the latent space, distance of the sampled codes to q(z): prior {p:.2}{}{}",
                    g.map(|v| format!(", GMM {v:.2}")).unwrap_or_default(),
                    t.map(|v| format!(", two-stage {v:.2}")).unwrap_or_default()
                ),
                _ => String::new(),
            };
            a.push(format!(
                "{}: sample FD from the prior {p:.2}{g}{s}{codes}",
                r.name
            ));
        }
    }
    if !a.is_empty() {
        let floor = runs
            .iter()
            .find_map(|r| r.classifier().map(|c| c.fd_train_vs_test));
        let acc = runs.iter().find_map(|r| r.classifier().map(|c| c.test_accuracy));
        if let (Some(f), Some(acc)) = (floor, acc) {
            a.push(format!(
                "real training images score {f:.2} (classifier test accuracy {:.1}%)",
                100.0 * acc
            ));
        }
        a.push("Reconstructions decode codes from the aggregate posterior q(z); prior samples decode codes from N(0, I), which puts mass in regions q(z) never covers (prior holes). Where a sampler fitted to q(z) lowers the FD, that mismatch, not the decoder, made the samples look like nonsense".to_string());
        out.push((
            "Why do samples look like nonsense when reconstructions look fine?".to_string(),
            a.join(". ") + ".",
        ));
    }
    out
}

fn fmt(v: Option<f64>, digits: usize) -> String {
    v.map(|x| format!("{x:.digits$}")).unwrap_or_else(|| "–".into())
}
