//! NaN and infinity are refused for every float key of a config, found by walking the config as
//! serialised (a TOML value), so a float key added later is covered without being listed here.
//! Range checks (positive, at most 1, ...) stay with each config's own validation; a NaN passes
//! most of them silently (`nan < 0.0` is false), which is why this check runs first.

/// A float key that is NaN or infinite; the message gives its full key path.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key} = {value}: must be a finite number")]
pub struct NonFinite {
    /// Dotted key path as in the TOML file / `--set` (`kl.beta`, `model.layers[2]`).
    pub key: String,
    pub value: f64,
}

/// Every NaN or infinite float in `value` with its key path (`prefix` prepended), in file order.
pub fn non_finite_floats(value: &toml::Value, prefix: &str) -> Vec<NonFinite> {
    let mut out = Vec::new();
    walk(value, prefix.to_string(), &mut out);
    out
}

fn walk(value: &toml::Value, key: String, out: &mut Vec<NonFinite>) {
    match value {
        toml::Value::Float(f) if !f.is_finite() => out.push(NonFinite { key, value: *f }),
        toml::Value::Table(t) => {
            for (k, v) in t {
                let path = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                walk(v, path, out);
            }
        }
        toml::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                walk(v, format!("{key}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Refuse a config (any `Serialize` type) holding a NaN or infinite float; the error names the
/// first such key.
pub fn check_finite<T: serde::Serialize>(config: &T) -> Result<(), NonFinite> {
    // A config that does not serialise to TOML has no floats to check here; its own validation
    // reports what is wrong with it.
    let Ok(value) = toml::Value::try_from(config) else {
        return Ok(());
    };
    match non_finite_floats(&value, "").into_iter().next() {
        Some(bad) => Err(bad),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nan_and_inf_at_any_depth_with_the_key_path() {
        let v: toml::Value =
            toml::from_str("a = 1.0\nb = nan\n[t]\nc = -inf\nlist = [1.0, inf]\n[t.u]\nd = 2\ne = +inf\n")
                .unwrap();
        let keys: Vec<String> = non_finite_floats(&v, "").into_iter().map(|n| n.key).collect();
        assert_eq!(keys, ["b", "t.c", "t.list[1]", "t.u.e"]);

        #[derive(serde::Serialize)]
        struct Cfg {
            ok: f64,
            inner: Inner,
        }
        #[derive(serde::Serialize)]
        struct Inner {
            beta: f64,
        }
        let c = Cfg {
            ok: 1.0,
            inner: Inner { beta: f64::NAN },
        };
        let e = check_finite(&c).unwrap_err();
        assert_eq!(e.key, "inner.beta");
        assert_eq!(e.to_string(), "inner.beta = NaN: must be a finite number");
        assert!(check_finite(&Cfg {
            ok: 1.0,
            inner: Inner { beta: 0.5 }
        })
        .is_ok());
    }
}
