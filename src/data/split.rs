//! Which records go to which split: a seeded validation fraction or held-out NORB instances, and a
//! seeded `limit` that keeps a random subset in file order (so quick runs still see every class).
use super::error::{DataError, DataResult};
use crate::util::SeededRng;

/// For each training record, whether it is held out for validation: `round(n * fraction)` records
/// chosen by a seeded shuffle.
pub fn val_by_fraction(n: usize, fraction: f64, seed: u64) -> DataResult<Vec<bool>> {
    if !fraction.is_finite() || !(0.0..1.0).contains(&fraction) {
        return Err(DataError::option(
            "val_fraction",
            format!("{fraction} is not in [0, 1)"),
        ));
    }
    let n_val = ((n as f64) * fraction).round() as usize;
    if n_val >= n {
        return Err(DataError::option(
            "val_fraction",
            format!("{fraction} of {n} training images leaves none for training"),
        ));
    }
    let mut order: Vec<usize> = (0..n).collect();
    SeededRng::derived(seed, "val-split").shuffle(&mut order);
    let mut is_val = vec![false; n];
    for &i in &order[..n_val] {
        is_val[i] = true;
    }
    Ok(is_val)
}

/// For each training record, whether its instance is one of `held_out`.
pub fn val_by_instances(instances: &[u8], held_out: &[u8]) -> DataResult<Vec<bool>> {
    let mut present: Vec<u8> = instances.to_vec();
    present.sort_unstable();
    present.dedup();
    if held_out.is_empty() {
        return Err(DataError::option("val_instances", "the list is empty"));
    }
    for h in held_out {
        if !present.contains(h) {
            return Err(DataError::option(
                "val_instances",
                format!("instance {h} is not in the training set (it has {present:?})"),
            ));
        }
    }
    if present.iter().all(|p| held_out.contains(p)) {
        return Err(DataError::option(
            "val_instances",
            format!("{held_out:?} holds out every training instance, leaving none for training"),
        ));
    }
    Ok(instances.iter().map(|i| held_out.contains(i)).collect())
}

/// Keep at most `keep` of `indices` (a seeded random subset), in their original order.
pub fn limit_subset(mut indices: Vec<usize>, keep: usize, seed: u64, label: &str) -> Vec<usize> {
    if indices.len() <= keep {
        return indices;
    }
    SeededRng::derived(seed, label).shuffle(&mut indices);
    indices.truncate(keep);
    indices.sort_unstable();
    indices
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_is_seeded_and_sized() {
        let a = val_by_fraction(1000, 0.1, 3).unwrap();
        assert_eq!(a.iter().filter(|&&v| v).count(), 100);
        assert_eq!(a, val_by_fraction(1000, 0.1, 3).unwrap());
        assert_ne!(a, val_by_fraction(1000, 0.1, 4).unwrap());
        assert!(val_by_fraction(10, 0.0, 0).unwrap().iter().all(|&v| !v));
        for bad in [1.0, -0.1, f64::NAN] {
            assert!(val_by_fraction(10, bad, 0)
                .unwrap_err()
                .to_string()
                .contains("val_fraction"));
        }
    }

    #[test]
    fn instances_held_out_and_checked() {
        let inst = [4u8, 6, 4, 9];
        assert_eq!(
            val_by_instances(&inst, &[4]).unwrap(),
            vec![true, false, true, false]
        );
        assert!(val_by_instances(&inst, &[0])
            .unwrap_err()
            .to_string()
            .contains("instance 0"));
        assert!(val_by_instances(&inst, &[4, 6, 9]).is_err());
    }

    #[test]
    fn limit_keeps_order_and_count() {
        let kept = limit_subset((0..100).collect(), 10, 1, "x");
        assert_eq!(kept.len(), 10);
        assert!(kept.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(limit_subset(vec![1, 2], 10, 1, "x"), vec![1, 2]);
    }
}
