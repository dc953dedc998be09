//! Written answers to the experiment log's questions, from the runs' numbers. Each answer leads
//! with a one-line verdict, then the numbers it rests on in a small table, then at most a few
//! one-line notes. A question whose runs are missing gets no answer.
//!
//! Comparisons between runs are judged against the seed spread: runs whose resolved configs differ
//! only in `seed` are replicas of one configuration. A difference smaller than twice the larger
//! seed standard deviation is called within noise; with a single run on a side there is no spread
//! to judge by, and the answer says so instead of calling a winner.
use super::runs::{RunInfo, RunKind};

/// Rows of text under column headings.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[&str]) -> Self {
        Self {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: vec![],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
    }
}

/// One question of the log, answered.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub question: String,
    /// One line: the answer itself.
    pub verdict: String,
    /// The numbers the verdict rests on.
    pub table: Option<Table>,
    /// Short lines: caveats and the mechanism behind the verdict.
    pub notes: Vec<String>,
}

impl Answer {
    /// An answer that is a verdict alone.
    pub fn new(question: &str, verdict: &str) -> Self {
        Self {
            question: question.into(),
            verdict: verdict.into(),
            table: None,
            notes: vec![],
        }
    }
}

/// One configuration's value of a metric: one value per seed, or a closed-form (exact) value.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub values: Vec<f64>,
    /// Closed form (PCA): the value has no seed spread.
    pub exact: bool,
}

impl Measured {
    pub fn seeds(values: Vec<f64>) -> Self {
        Self { values, exact: false }
    }

    pub fn exact(value: f64) -> Self {
        Self {
            values: vec![value],
            exact: true,
        }
    }

    pub fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.values.len().max(1) as f64
    }

    /// Sample standard deviation over seeds (None with fewer than two).
    pub fn sd(&self) -> Option<f64> {
        let n = self.values.len();
        if n < 2 {
            return None;
        }
        let m = self.mean();
        Some((self.values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt())
    }
}

/// What the seed spread says about a difference.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Noise {
    /// Larger than `spread` (twice the larger seed standard deviation).
    Beyond { spread: f64 },
    /// Not larger than `spread`.
    Within { spread: f64 },
    /// Both values are closed form: the difference is exact.
    Exact,
    /// A side is one run: there is no seed spread to judge by.
    NoSpread,
}

/// `b` against `a` (e.g. a variant against its baseline).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub a: f64,
    pub b: f64,
    pub noise: Noise,
}

pub fn compare(a: &Measured, b: &Measured) -> Comparison {
    let (ma, mb) = (a.mean(), b.mean());
    let sides: Vec<&Measured> = [a, b].into_iter().filter(|m| !m.exact).collect();
    let noise = if sides.is_empty() {
        Noise::Exact
    } else {
        match sides.iter().map(|m| m.sd()).collect::<Option<Vec<f64>>>() {
            None => Noise::NoSpread,
            Some(sds) => {
                let spread = 2.0 * sds.iter().copied().fold(0.0, f64::max);
                if (mb - ma).abs() > spread {
                    Noise::Beyond { spread }
                } else {
                    Noise::Within { spread }
                }
            }
        }
    };
    Comparison { a: ma, b: mb, noise }
}

impl Comparison {
    /// Relative change of `b` against `a`, in percent.
    pub fn percent(&self) -> f64 {
        100.0 * (self.b - self.a) / self.a.abs().max(1e-12)
    }

    /// Is `b` lower than `a` beyond doubt (exact, or beyond the seed spread)?
    pub fn clearly_lower(&self) -> bool {
        self.b < self.a && matches!(self.noise, Noise::Exact | Noise::Beyond { .. })
    }

    pub fn clearly_higher(&self) -> bool {
        self.b > self.a && matches!(self.noise, Noise::Exact | Noise::Beyond { .. })
    }

    /// "beyond the seed spread (±0.0012)", "within noise (seed spread ±0.0012)",
    /// "one run each: no seed spread", "exact".
    pub fn noise_text(&self, digits: usize) -> String {
        match self.noise {
            Noise::Beyond { spread } => format!("beyond the seed spread (±{spread:.digits$})"),
            Noise::Within { spread } => format!("within noise (seed spread ±{spread:.digits$})"),
            Noise::Exact => "exact".into(),
            Noise::NoSpread => "one run each: no seed spread".into(),
        }
    }
}

fn find<'a>(runs: &'a [RunInfo], name: &str) -> Option<&'a RunInfo> {
    runs.iter().find(|r| r.name == name)
}

/// The resolved config without its seed: what replicas of one configuration share.
fn config_without_seed(run: &RunInfo) -> Option<toml::Value> {
    let mut c = run.config.clone()?;
    if let toml::Value::Table(t) = &mut c {
        t.remove("seed");
    }
    Some(c)
}

/// `metric` of every run that is `run` with another seed (`run` included).
fn over_seeds(runs: &[RunInfo], run: &RunInfo, metric: impl Fn(&RunInfo) -> Option<f64>) -> Measured {
    let key = config_without_seed(run);
    let values: Vec<f64> = match key {
        None => metric(run).into_iter().collect(),
        Some(key) => runs
            .iter()
            .filter(|r| r.kind == run.kind && config_without_seed(r).as_ref() == Some(&key))
            .filter_map(&metric)
            .collect(),
    };
    Measured::seeds(values)
}

fn test_mse(run: &RunInfo) -> Option<f64> {
    run.test().map(|m| m.mse)
}

/// Test -ELBO of the pixels (PCA-VAEs: with PPCA's density of the discarded directions), so
/// every run is on one axis.
fn test_nll(run: &RunInfo) -> Option<f64> {
    run.test().map(|m| m.neg_elbo_pixels_or_model())
}

fn fd(run: &RunInfo, sampler: &str) -> Option<f64> {
    run.test()?.eval.samples.as_ref()?.get(sampler)?.fd
}

/// PCA test MSE at k (the closest k available at or above it, else the largest), with that k.
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

fn fmt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "–".into(),
    }
}

fn signed_pct(p: f64) -> String {
    format!("{p:+.1}%")
}

/// "a, b and c".
fn join_names(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// A note when some comparison of the answer had a single run on a side.
const NO_SPREAD_NOTE: &str =
    "One run per configuration: there is no seed spread to judge these differences by; run more seeds (norbvae sweep) to settle them.";

/// Is the train/test -ELBO gap under 2% (the model underfits)? None without both splits.
fn underfits(run: &RunInfo) -> Option<bool> {
    let tr = run.split("train")?.neg_elbo;
    let te = run.test()?.neg_elbo;
    Some((te - tr) < 0.02 * tr.abs())
}

/// The verdict on capacity from how many of the VAEs (with both splits) underfit.
pub fn capacity_verdict(underfit: &[String], judged: usize) -> String {
    let (all, s) = if judged == 1 {
        ("the 1 VAE".to_string(), "s")
    } else {
        (format!("all {judged} VAEs"), "")
    };
    match underfit.len() {
        _ if judged == 0 => "Cannot tell: no VAE has both train and test metrics.".into(),
        n if n == judged => format!(
            "Probably yes: {all} underfit{s} (train and test −ELBO within 2%), so a larger model or longer training can still gain."
        ),
        0 => format!(
            "Not without more data or regularisation: {all} already show{s} a train/test gap of 2% or more."
        ),
        n => format!(
            "For {n} of {judged} VAEs ({}): they underfit (train and test −ELBO within 2%); the others already overfit.",
            join_names(underfit)
        ),
    }
}

fn capacity(runs: &[RunInfo], vaes: &[&RunInfo]) -> Option<Answer> {
    let mut table = Table::new(&[
        "run",
        "latent",
        "active units",
        "KL nats",
        "test MSE",
        "PCA MSE at k",
        "VAE vs PCA",
        "train/test −ELBO",
    ]);
    let mut underfit = Vec::new();
    let mut judged = 0;
    let mut worse_than_pca = Vec::new();
    let mut collapsed = Vec::new();
    let mut no_spread = false;
    for r in vaes {
        let (Some(l), Some(mse)) = (r.latent_dim(), test_mse(r)) else {
            continue;
        };
        let (pca_cell, vs) = match pca_mse_at(runs, l) {
            Some((k, p)) => {
                let c = compare(&Measured::exact(p), &over_seeds(runs, r, test_mse));
                no_spread |= c.noise == Noise::NoSpread;
                let word = if c.clearly_lower() {
                    "better".to_string()
                } else if c.clearly_higher() {
                    worse_than_pca.push(r.name.clone());
                    "worse".to_string()
                } else if matches!(c.noise, Noise::Within { .. }) {
                    "within noise".to_string()
                } else if c.b < c.a {
                    "lower MSE (one run)".to_string()
                } else {
                    worse_than_pca.push(r.name.clone());
                    "higher MSE (one run)".to_string()
                };
                (format!("{p:.5} (k={k})"), word)
            }
            None => ("–".into(), "–".into()),
        };
        let kl = r.test().map(|m| m.kl);
        if let Some(k) = kl {
            if k / (l as f64) < 0.1 {
                collapsed.push(r.name.clone());
            }
        }
        match underfits(r) {
            Some(true) => {
                judged += 1;
                underfit.push(r.name.clone());
            }
            Some(false) => judged += 1,
            None => {}
        }
        let gap = match (r.split("train"), r.test()) {
            (Some(a), Some(b)) => format!("{:.1} / {:.1}", a.neg_elbo, b.neg_elbo),
            _ => "–".into(),
        };
        table.row(vec![
            r.name.clone(),
            l.to_string(),
            r.test()
                .and_then(|m| m.eval.active_units)
                .map(|v| v.to_string())
                .unwrap_or_else(|| "–".into()),
            fmt(kl, 1),
            format!("{mse:.5}"),
            pca_cell,
            vs,
            gap,
        ]);
    }
    if table.rows.is_empty() {
        return None;
    }
    let mut notes = Vec::new();
    if !worse_than_pca.is_empty() {
        notes.push(format!(
            "{}: higher test MSE than PCA with as many numbers per image; where that holds across seeds, the decoder, not the code size, limits the model.",
            join_names(&worse_than_pca)
        ));
    }
    if !collapsed.is_empty() {
        notes.push(format!(
            "{}: under 0.1 nats of KL per latent, the posterior has collapsed onto the prior; more latents will not help until the reconstruction term weighs more (smaller fixed variance, sigma-VAE, KL weight below 1).",
            join_names(&collapsed)
        ));
    }
    if no_spread {
        notes.push(NO_SPREAD_NOTE.into());
    }
    Some(Answer {
        question: "More capacity?".into(),
        verdict: capacity_verdict(&underfit, judged),
        table: Some(table),
        notes,
    })
}

/// One run's state at the end of training, for the stopping-condition answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopping {
    /// Early stopping's patience ran out.
    Met,
    /// The epoch cap came while the best epoch was the last one.
    StillImproving,
    /// The epoch cap came after the best epoch.
    CapAfterBest,
    Diverged,
    Unknown,
}

pub fn stopping(stopped_because: &str, epochs: usize, best: usize) -> Stopping {
    match stopped_because {
        "patience" => Stopping::Met,
        "max_epochs" if best >= epochs => Stopping::StillImproving,
        "max_epochs" => Stopping::CapAfterBest,
        "diverged" => Stopping::Diverged,
        _ => Stopping::Unknown,
    }
}

pub fn training_verdict(states: &[(String, Stopping)]) -> String {
    let names =
        |s: Stopping| -> Vec<String> { states.iter().filter(|x| x.1 == s).map(|x| x.0.clone()).collect() };
    let improving = names(Stopping::StillImproving);
    let diverged = names(Stopping::Diverged);
    let n = states.len();
    let mut v = if !improving.is_empty() {
        format!(
            "Train longer: {} of {n} runs were still improving at the epoch cap ({}).",
            improving.len(),
            join_names(&improving)
        )
    } else if names(Stopping::Unknown).len() == n {
        "Cannot tell: the runs do not say why they stopped.".to_string()
    } else {
        format!("No: none of the {n} runs was still improving when it stopped.")
    };
    if !diverged.is_empty() {
        v += &format!(" {} diverged.", join_names(&diverged));
    }
    v
}

fn training(vaes: &[&RunInfo]) -> Option<Answer> {
    let mut table = Table::new(&[
        "run",
        "epochs",
        "best epoch",
        "stopped by",
        "val loss, last 3 epochs",
        "state",
    ]);
    let mut states = Vec::new();
    for r in vaes {
        let Some(m) = r.vae() else { continue };
        let why = r.stopped_because().unwrap_or("?");
        let state = stopping(why, m.epochs_run, m.best_epoch);
        let val = r.val_losses();
        let trend = if val.len() >= 4 {
            let k = val.len();
            format!("{:+.2} nats/epoch", (val[k - 1].1 - val[k - 4].1) / 3.0)
        } else {
            "–".into()
        };
        table.row(vec![
            r.name.clone(),
            m.epochs_run.to_string(),
            m.best_epoch.to_string(),
            why.replace('_', " "),
            trend,
            match state {
                Stopping::Met => "stopping condition met",
                Stopping::StillImproving => "NOT converged",
                Stopping::CapAfterBest => "cap reached after the best epoch",
                Stopping::Diverged => "diverged (last good checkpoint kept)",
                Stopping::Unknown => "unknown",
            }
            .into(),
        ]);
        states.push((r.name.clone(), state));
    }
    if states.is_empty() {
        return None;
    }
    Some(Answer {
        question: "Longer training? Was the stopping condition met?".into(),
        verdict: training_verdict(&states),
        table: Some(table),
        notes: vec![],
    })
}

/// The verdict on a tanh output from its test MSE against the linear output's.
pub fn tanh_verdict(mse: &Comparison) -> String {
    let p = mse.percent().abs();
    let dir = if mse.b < mse.a { "lower" } else { "higher" };
    match mse.noise {
        Noise::NoSpread => format!(
            "Undecided: tanh's test MSE is {p:.1}% {dir} than the linear output's, from one run each (no seed spread to judge by)."
        ),
        Noise::Within { spread } => format!(
            "No difference: tanh's test MSE is {p:.1}% {dir}, within noise (seed spread ±{spread:.5})."
        ),
        _ if mse.b > mse.a => format!(
            "No: tanh raises test MSE by {p:.1}% (beyond the seed spread); keep the linear output."
        ),
        _ if mse.b < mse.a => format!("Yes: tanh lowers test MSE by {p:.1}% (beyond the seed spread)."),
        _ => "No difference: the same test MSE with either output.".into(),
    }
}

fn tanh(runs: &[RunInfo]) -> Option<Answer> {
    let plain = find(runs, "pca-vae")?;
    let tanh = find(runs, "pca-vae-tanh")?;
    test_mse(plain)?;
    test_mse(tanh)?;
    let mse = compare(
        &over_seeds(runs, plain, test_mse),
        &over_seeds(runs, tanh, test_mse),
    );
    let nll = compare(
        &over_seeds(runs, plain, test_nll),
        &over_seeds(runs, tanh, test_nll),
    );
    let mut table = Table::new(&["output", "run", "test MSE", "test −ELBO nats", "seeds"]);
    for (label, r) in [("linear", plain), ("tanh", tanh)] {
        table.row(vec![
            label.into(),
            r.name.clone(),
            fmt(test_mse(r), 5),
            fmt(test_nll(r), 1),
            over_seeds(runs, r, test_mse).values.len().to_string(),
        ]);
    }
    let mut notes = vec![format!(
        "Difference in test MSE: {} ({}).",
        signed_pct(mse.percent()),
        mse.noise_text(5)
    )];
    if (nll.b < nll.a) != (mse.b < mse.a) && nll.a != nll.b {
        notes.push(format!(
            "The −ELBO moves the other way ({}): the two metrics disagree on this pair.",
            signed_pct(nll.percent())
        ));
    }
    notes.push(
        "PCA coefficients are not bounded to [-1, 1] (the first ones are many times larger): a tanh output must squash them into its range."
            .into(),
    );
    if mse.noise == Noise::NoSpread {
        notes.push(NO_SPREAD_NOTE.into());
    }
    Some(Answer {
        question: "tanh output?".into(),
        verdict: tanh_verdict(&mse),
        table: Some(table),
        notes,
    })
}

/// The verdict on fitted variance from (pair label, comparison of the fitted variance's test MSE
/// (b) against the shared optimal variance's (a)).
pub fn fitted_variance_verdict(pairs: &[(String, Comparison)]) -> String {
    let worse: Vec<&(String, Comparison)> = pairs.iter().filter(|p| p.1.b > p.1.a).collect();
    let clear = worse.iter().filter(|p| p.1.clearly_higher()).count();
    let list = |ps: &[&(String, Comparison)]| {
        ps.iter()
            .map(|(l, c)| format!("{l} {}", signed_pct(c.percent())))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let no_spread = pairs.iter().all(|p| p.1.noise == Noise::NoSpread);
    if !worse.is_empty() && !no_spread && clear == 0 {
        return format!(
            "No clear difference: fitted variance's test MSE {} against the shared optimal variance, within the seed spread.",
            list(&worse)
        );
    }
    let qualifier = if no_spread {
        " (one run each, no seed spread to judge by)"
    } else if clear < worse.len() {
        " (partly within noise)"
    } else {
        ""
    };
    if worse.len() == pairs.len() {
        let ps: Vec<&(String, Comparison)> = pairs.iter().collect();
        format!(
            "Its reconstructions are worse in {}: test MSE {} against the shared optimal variance{qualifier}.",
            if pairs.len() == 1 {
                "the one pair".to_string()
            } else {
                format!("all {} pairs", pairs.len())
            },
            list(&ps)
        )
    } else if worse.is_empty() {
        format!("Not in these runs: fitted variance reconstructs as well or better in every pair{qualifier}.")
    } else {
        format!(
            "Mixed: worse in {} of {} pairs (test MSE {} against the shared optimal variance){qualifier}.",
            worse.len(),
            pairs.len(),
            list(&worse)
        )
    }
}

fn fitted_variance(runs: &[RunInfo]) -> Option<Answer> {
    let pairs = [
        (
            "conv",
            "fitted-variance-convolutional-vae",
            "sigma-vae-convolutional-vae",
        ),
        ("PCA-VAE", "pca-vae-fitted-variance", "pca-vae-sigma"),
    ];
    let mut table = Table::new(&[
        "run",
        "variance",
        "test −ELBO nats",
        "test MSE",
        "on the variance floor",
    ]);
    let mut cmps = Vec::new();
    for (label, fitted, sigma) in pairs {
        let (Some(f), Some(s)) = (find(runs, fitted), find(runs, sigma)) else {
            continue;
        };
        if test_mse(f).is_none() || test_mse(s).is_none() {
            continue;
        }
        for (r, what) in [(f, "fitted per pixel"), (s, "shared, optimal")] {
            table.row(vec![
                r.name.clone(),
                what.into(),
                fmt(test_nll(r), 1),
                fmt(test_mse(r), 5),
                r.test()
                    .and_then(|m| m.on_floor)
                    .map(|v| format!("{:.1}%", 100.0 * v))
                    .unwrap_or_else(|| "–".into()),
            ]);
        }
        cmps.push((
            label.to_string(),
            compare(&over_seeds(runs, s, test_mse), &over_seeds(runs, f, test_mse)),
        ));
    }
    if cmps.is_empty() {
        return None;
    }
    let mut notes = Vec::new();
    if cmps.iter().any(|c| c.1.b > c.1.a) {
        notes.push("A per-pixel variance buys likelihood by shrinking the variance where pixels are easy (background) instead of improving the mean, which is what the reconstructions show.".into());
    }
    if cmps.iter().any(|c| c.1.noise == Noise::NoSpread) {
        notes.push(NO_SPREAD_NOTE.into());
    }
    Some(Answer {
        question: "Why is fitted variance worse?".into(),
        verdict: fitted_variance_verdict(&cmps),
        table: Some(table),
        notes,
    })
}

/// VAEs against PPCA on one axis, test bits/dim: a Gaussian decoder's and PPCA's densities of the
/// `k / 255` pixels with a bin's log2(255) bits added (`util::units`), a discretized logistic's
/// exact mass over the 256 levels. Nats would mix the two (a mass's nats are not a density's).
fn density(runs: &[RunInfo], vaes: &[&RunInfo]) -> Option<Answer> {
    let pca = runs.iter().find(|r| r.kind == RunKind::Pca)?;
    let ppca: Vec<(usize, f64)> = pca
        .pca_components()
        .into_iter()
        .filter_map(|k| Some((k, pca.pca_test(k)?.ppca_bits_per_dim?)))
        .collect();
    let (best_k, best) = ppca
        .iter()
        .copied()
        .fold(None, |acc: Option<(usize, f64)>, p| match acc {
            Some(a) if a.1 <= p.1 => Some(a),
            _ => Some(p),
        })?;
    let mut table = Table::new(&[
        "run",
        "test IWAE, bits/dim",
        "better than PPCA at k",
        "vs PPCA's best",
    ]);
    let mut beat_best = Vec::new();
    let mut without_bits = Vec::new();
    for r in vaes {
        let Some(m) = r.test() else { continue };
        let Some(bits) = m.eval.iwae_bits_per_dim else {
            if m.eval.iwae.is_some() {
                without_bits.push(r.name.clone());
            }
            continue;
        };
        let beaten: Vec<String> = ppca
            .iter()
            .filter(|(_, b)| *b > bits)
            .map(|(k, _)| k.to_string())
            .collect();
        if bits < best {
            beat_best.push(r.name.clone());
        }
        table.row(vec![
            r.name.clone(),
            format!("{bits:.3}"),
            if beaten.is_empty() {
                "none".into()
            } else {
                beaten.join(", ")
            },
            format!("{:+.3}", bits - best),
        ]);
    }
    if table.rows.is_empty() {
        return None;
    }
    let n = table.rows.len();
    let verdict = if beat_best.is_empty() {
        format!(
            "No: no VAE's bound is below PPCA's best test likelihood ({best:.3} bits/dim at k = {best_k})."
        )
    } else {
        format!(
            "Yes for {} of {n}: {} model{} the test images better than PPCA at its best k = {best_k} ({best:.3} bits/dim).",
            beat_best.len(),
            join_names(&beat_best),
            if beat_best.len() == 1 { "s" } else { "" }
        )
    };
    let mut notes = vec![
        "Bits/dim put both on one axis: PPCA's and a Gaussian decoder's densities of the dequantized pixels with a quantization bin's log2(255) bits added, a discretized logistic's exact mass over the 256 levels (the density's figure bounds its own discrete code length from above). The IWAE value is an upper bound on the VAE's code length, so a bound below PPCA is a real win, a bound above is not shown better.".into(),
    ];
    if !without_bits.is_empty() {
        notes.push(format!(
            "Not compared: {} (a Bernoulli likelihood is not a density on grey levels, so it has no bits/dim).",
            join_names(&without_bits)
        ));
    }
    Some(Answer {
        question: "Is the VAE a better model of the images than PCA?".into(),
        verdict,
        table: Some(table),
        notes,
    })
}

/// The verdict on prior holes from the VAEs where a sampler fitted to q(z) beat the prior's sample
/// FD, out of `judged` VAEs scored with a fitted sampler. Sampler scores come from one run each.
pub fn samples_verdict(helped: &[String], judged: usize) -> String {
    let vaes = |n: usize| if n == 1 { "VAE" } else { "VAEs" };
    const ONE_RUN: &str = "(one run each, no seed spread to judge by)";
    if judged == 0 {
        "Cannot tell: only prior samples were scored (add --samplers prior,gmm,two_stage to eval).".into()
    } else if helped.len() == judged {
        format!(
            "Prior holes: for {} {judged} {}, a sampler fitted to q(z) gives a lower sample FD than the prior {ONE_RUN}.",
            if judged == 1 { "the" } else { "all" },
            vaes(judged)
        )
    } else if helped.is_empty() {
        format!(
            "Not prior holes: for {} {judged} {}, no sampler fitted to q(z) beats the prior's FD, so the decoder is the limit {ONE_RUN}.",
            if judged == 1 { "the" } else { "all" },
            vaes(judged)
        )
    } else {
        format!(
            "Prior holes for {} of {judged} VAEs ({}): a sampler fitted to q(z) beats the prior's FD there {ONE_RUN}.",
            helped.len(),
            join_names(helped)
        )
    }
}

fn samples(runs: &[RunInfo], vaes: &[&RunInfo]) -> Option<Answer> {
    let mut table = Table::new(&[
        "run",
        "FD prior",
        "FD GMM",
        "FD two-stage",
        "code distance prior / GMM / two-stage",
        "P/R pixels",
    ]);
    let mut judged = 0;
    let mut helped = Vec::new();
    for r in vaes {
        let Some(p) = fd(r, "prior") else { continue };
        let g = fd(r, "gmm");
        let t = fd(r, "two_stage");
        let fitted_best = [g, t].into_iter().flatten().fold(f64::INFINITY, f64::min);
        if fitted_best.is_finite() {
            judged += 1;
            if fitted_best < p {
                helped.push(r.name.clone());
            }
        }
        let lat = |name: &str| {
            r.test()
                .and_then(|m| m.eval.samples.as_ref()?.get(name)?.latent_fd)
        };
        let pr = |name: &str| {
            let s = r.test()?.eval.samples.as_ref()?.get(name)?;
            Some(format!("{:.2}/{:.2}", s.precision_pixels?, s.recall_pixels?))
        };
        table.row(vec![
            r.name.clone(),
            format!("{p:.2}"),
            fmt(g, 2),
            fmt(t, 2),
            format!(
                "{} / {} / {}",
                fmt(lat("prior"), 2),
                fmt(lat("gmm"), 2),
                fmt(lat("two_stage"), 2)
            ),
            ["prior", "gmm", "two_stage"]
                .map(|n| pr(n).unwrap_or_else(|| "–".into()))
                .join(" · "),
        ]);
    }
    if table.rows.is_empty() {
        return None;
    }
    let verdict = samples_verdict(&helped, judged);
    let mut notes = vec!["FD: Frechet distance of classifier features to the real test images, lower is better. Prior samples decode codes from N(0, I), which puts mass where q(z) has none; fitted samplers draw where the encoder puts images.".to_string()];
    let floor = runs
        .iter()
        .find_map(|r| r.classifier().map(|c| c.fd_train_vs_test));
    let acc = runs.iter().find_map(|r| r.classifier().map(|c| c.test_accuracy));
    if let (Some(f), Some(acc)) = (floor, acc) {
        notes.push(format!(
            "Real training images score {f:.2} (the floor); the classifier's test accuracy is {:.1}%.",
            100.0 * acc
        ));
    }
    let real_pr = vaes.iter().find_map(|r| {
        let s = r.test()?.eval.real_vs_real.as_ref()?;
        Some((s.precision_pixels?, s.recall_pixels?))
    });
    if let Some((p, rc)) = real_pr {
        notes.push(format!(
            "P/R pixels: precision / recall of the prior's, the GMM's and the two-stage sampler's samples. Precision: the fraction of samples within the 3-nearest-neighbour radius of some real test image; recall: the fraction of real test images within that radius of some sample (raw pixels, no classifier). Real training images score {p:.2} / {rc:.2}. Low precision with high recall is samples spread where no image is; high precision with low recall is samples near real images that cover little of their variety."
        ));
    }
    Some(Answer {
        question: "Why do samples look like nonsense when reconstructions look fine?".into(),
        verdict,
        table: Some(table),
        notes,
    })
}

/// Answers in the order of the log's questions.
pub fn answers(runs: &[RunInfo]) -> Vec<Answer> {
    let vaes: Vec<&RunInfo> = runs.iter().filter(|r| r.kind == RunKind::Vae).collect();
    [
        capacity(runs, &vaes),
        training(&vaes),
        tanh(runs),
        fitted_variance(runs),
        density(runs, &vaes),
        samples(runs, &vaes),
        super::ladder::answer(runs),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(a: &[f64], b: &[f64]) -> Comparison {
        compare(&Measured::seeds(a.to_vec()), &Measured::seeds(b.to_vec()))
    }

    #[test]
    fn differences_are_judged_against_the_seed_spread() {
        // One run a side: no spread.
        assert_eq!(cmp(&[1.0], &[2.0]).noise, Noise::NoSpread);
        assert_eq!(cmp(&[1.0, 1.1], &[2.0]).noise, Noise::NoSpread);
        // sd of {1.0, 1.2} is 0.1414..; twice the larger sd is the spread.
        let c = cmp(&[1.0, 1.2], &[1.2, 1.3]);
        let Noise::Within { spread } = c.noise else {
            panic!("{c:?}")
        };
        assert!((spread - 2.0 * 0.02f64.sqrt()).abs() < 1e-12);
        assert!(!c.clearly_higher() && !c.clearly_lower());
        let c = cmp(&[1.0, 1.2], &[2.0, 2.1]);
        assert!(matches!(c.noise, Noise::Beyond { .. }) && c.clearly_higher());
        assert!((c.percent() - 86.3636).abs() < 1e-3);
        // Closed form on both sides: exact; on one side, the other's spread decides.
        let c = compare(&Measured::exact(1.0), &Measured::exact(1.0001));
        assert_eq!(c.noise, Noise::Exact);
        assert!(c.clearly_higher());
        assert_eq!(
            compare(&Measured::exact(1.0), &Measured::seeds(vec![0.9])).noise,
            Noise::NoSpread
        );
        assert!(compare(&Measured::exact(1.0), &Measured::seeds(vec![0.5, 0.52])).clearly_lower());
    }

    #[test]
    fn the_tanh_verdict_takes_one_side() {
        let one = tanh_verdict(&cmp(&[0.010], &[0.0097]));
        assert!(
            one.starts_with("Undecided") && one.contains("3.0% lower") && one.contains("no seed spread"),
            "{one}"
        );
        let within = tanh_verdict(&cmp(&[0.010, 0.012], &[0.0105, 0.0115]));
        assert!(
            within.starts_with("No difference") && within.contains("within noise"),
            "{within}"
        );
        let worse = tanh_verdict(&cmp(&[0.010, 0.0101], &[0.020, 0.0201]));
        assert!(
            worse.starts_with("No: tanh raises") && worse.contains("keep the linear"),
            "{worse}"
        );
        let better = tanh_verdict(&cmp(&[0.020, 0.0201], &[0.010, 0.0101]));
        assert!(better.starts_with("Yes: tanh lowers"), "{better}");
        // Never both ways in one verdict.
        for v in [&one, &within, &worse, &better] {
            assert!(!(v.contains("raises") && v.contains("lowers")), "{v}");
            assert!(!(v.contains("hurt") && v.contains("help")), "{v}");
        }
    }

    #[test]
    fn capacity_and_training_verdicts_count_the_runs() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(capacity_verdict(&names(&["a", "b"]), 2).starts_with("Probably yes: all 2"));
        assert!(capacity_verdict(&[], 3).starts_with("Not without more data"));
        assert_eq!(
            capacity_verdict(&names(&["a", "c"]), 3),
            "For 2 of 3 VAEs (a and c): they underfit (train and test −ELBO within 2%); the others already overfit."
        );
        assert!(capacity_verdict(&[], 0).starts_with("Cannot tell"));
        assert!(capacity_verdict(&names(&["a"]), 1).starts_with("Probably yes: the 1 VAE underfits ("));

        assert_eq!(stopping("patience", 12, 9), Stopping::Met);
        assert_eq!(stopping("max_epochs", 12, 12), Stopping::StillImproving);
        assert_eq!(stopping("max_epochs", 12, 7), Stopping::CapAfterBest);
        let v = training_verdict(&[
            ("a".into(), Stopping::Met),
            ("b".into(), Stopping::StillImproving),
            ("c".into(), Stopping::Diverged),
        ]);
        assert_eq!(
            v,
            "Train longer: 1 of 3 runs were still improving at the epoch cap (b). c diverged."
        );
        let v = training_verdict(&[("a".into(), Stopping::Met), ("b".into(), Stopping::CapAfterBest)]);
        assert_eq!(v, "No: none of the 2 runs was still improving when it stopped.");
    }

    #[test]
    fn the_samples_verdict_counts_and_qualifies() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            samples_verdict(&[], 1),
            "Not prior holes: for the 1 VAE, no sampler fitted to q(z) beats the prior's FD, so the decoder is the limit (one run each, no seed spread to judge by)."
        );
        assert!(samples_verdict(&names(&["a", "b"]), 2).starts_with("Prior holes: for all 2 VAEs,"));
        assert!(samples_verdict(&names(&["b"]), 3).starts_with("Prior holes for 1 of 3 VAEs (b)"));
        assert!(samples_verdict(&[], 0).starts_with("Cannot tell"));
    }

    #[test]
    fn the_fitted_variance_verdict_follows_the_pairs() {
        let one = fitted_variance_verdict(&[("conv".into(), cmp(&[0.01], &[0.02]))]);
        assert_eq!(
            one,
            "Its reconstructions are worse in the one pair: test MSE conv +100.0% against the shared optimal variance (one run each, no seed spread to judge by)."
        );
        let mixed = fitted_variance_verdict(&[
            ("conv".into(), cmp(&[0.01, 0.0101], &[0.02, 0.0201])),
            ("PCA-VAE".into(), cmp(&[0.02, 0.0201], &[0.01, 0.0101])),
        ]);
        assert!(
            mixed.starts_with("Mixed: worse in 1 of 2 pairs (test MSE conv +"),
            "{mixed}"
        );
        let within = fitted_variance_verdict(&[("conv".into(), cmp(&[0.02, 0.03], &[0.026, 0.027]))]);
        assert!(
            within.starts_with("No clear difference") && within.contains("within the seed spread"),
            "{within}"
        );
        let better = fitted_variance_verdict(&[("conv".into(), cmp(&[0.02, 0.0201], &[0.01, 0.0101]))]);
        assert_eq!(
            better,
            "Not in these runs: fitted variance reconstructs as well or better in every pair."
        );
    }
}
