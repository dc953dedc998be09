//! Axis ticks and their labels, computed on the plotted (possibly log10-transformed) values, so
//! every axis is a plain linear coordinate with explicit key points.
use super::Scale;

/// "Nice" values (1, 2, 2.5 or 5 times a power of ten) between `lo` and `hi`, about `n` of them.
pub fn linear(lo: f64, hi: f64, n: usize) -> (Vec<f64>, f64) {
    if hi <= lo || !lo.is_finite() || !hi.is_finite() {
        return (vec![lo], 1.0);
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    let ticks = (first..=last)
        .map(|i| {
            let t = i as f64 * step;
            if t.abs() < step * 1e-9 {
                0.0
            } else {
                t
            }
        })
        .collect();
    (ticks, step)
}

/// Ticks on a log10 axis (`lo`, `hi` are exponents): every decade when the range spans at least
/// three, else 1-2-5 steps, else linear steps; light ticks at the integer multiples in between.
pub fn log(lo: f64, hi: f64, n: usize) -> (Vec<f64>, Vec<f64>) {
    let decades: Vec<f64> = (lo.ceil() as i64..=hi.floor() as i64).map(|e| e as f64).collect();
    let mut light = Vec::new();
    for e in (lo.floor() as i64)..=(hi.ceil() as i64) {
        for m in 1..10 {
            let t = e as f64 + (m as f64).log10();
            if t >= lo && t <= hi {
                light.push(t);
            }
        }
    }
    if decades.len() >= 3 {
        // Thin out long ranges so labels never crowd.
        let every = decades.len().div_ceil(n.max(1)).max(1);
        let bold = decades
            .into_iter()
            .filter(|e| (*e as i64).rem_euclid(every as i64) == 0)
            .collect();
        return (bold, light);
    }
    let mut bold = Vec::new();
    for e in (lo.floor() as i64)..=(hi.ceil() as i64) {
        for m in [1.0f64, 2.0, 5.0] {
            let t = e as f64 + m.log10();
            if t >= lo && t <= hi {
                bold.push(t);
            }
        }
    }
    if bold.len() < 3 {
        // Less than a factor of ~3: nice linear values, placed on the log axis.
        let (lin, _) = linear(10f64.powf(lo), 10f64.powf(hi), n);
        bold = lin.into_iter().filter(|v| *v > 0.0).map(f64::log10).collect();
        light.clear();
    }
    (bold, light)
}

/// A tick label: as many decimals as the step needs, scientific notation for very large or
/// small magnitudes.
pub fn label(v: f64, step: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        return "0".into();
    }
    if !(1e-4..1e6).contains(&a) {
        return sci(v);
    }
    let decimals = if step > 0.0 && step.is_finite() {
        let d = -(step.log10().floor()) as i64;
        // 2.5 x 10^k needs one more digit than the power alone.
        let extra = i64::from(((step / 10f64.powf(step.log10().floor())) - 2.5).abs() < 1e-6);
        (d + extra).clamp(0, 8) as usize
    } else {
        3
    };
    format!("{v:.decimals$}")
}

/// A value in short scientific notation: "2e-5", "1.5e6".
pub fn sci(v: f64) -> String {
    let s = format!("{v:.1e}");
    // "2.0e-5" -> "2e-5"
    s.replace(".0e", "e")
}

/// The label of a plotted value on an axis of `scale` (log axes hold exponents).
pub fn axis_label(v: f64, scale: Scale, step: f64) -> String {
    match scale {
        Scale::Linear => label(v, step),
        Scale::Log => {
            let x = 10f64.powf(v);
            // A log tick is a round number; print it with the digits it has.
            let rounded = significant(x, 3);
            if (1e-4..1e6).contains(&rounded.abs()) {
                let s = format!("{rounded:.6}");
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                sci(rounded)
            }
        }
    }
}

fn significant(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let p = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * p).round() / p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round_and_inside() {
        let (t, step) = linear(0.13, 0.97, 5);
        assert_eq!(step, 0.2);
        assert_eq!(t.len(), 4);
        assert!(t.iter().all(|v| (0.13..=0.97).contains(v)));
        assert_eq!(label(t[0], step), "0.2");
        let (t, step) = linear(1400.0, 3100.0, 5);
        assert_eq!(step, 500.0);
        assert_eq!(t, vec![1500.0, 2000.0, 2500.0, 3000.0]);
        assert_eq!(label(0.25, 0.25), "0.25");
        assert_eq!(label(3e-6, 1e-6), "3e-6");
    }

    #[test]
    fn log_ticks_label_powers_and_steps() {
        let (bold, light) = log(0.0, 3.0, 6);
        assert_eq!(bold, vec![0.0, 1.0, 2.0, 3.0]);
        assert!(light.len() > 20);
        assert_eq!(axis_label(2.0, Scale::Log, 0.0), "100");
        assert_eq!(axis_label(-3.0, Scale::Log, 0.0), "0.001");
        // Less than one decade: 1-2-5 or linear steps.
        let (bold, _) = log(2f64.log10(), 9f64.log10(), 5);
        assert!(bold.len() >= 3, "{bold:?}");
    }
}
