//! The improvement ladder's steps (issue 18): complete training configs in `configs/ladder/`,
//! each one change against the step before it, trained and compared in order by
//! `norbvae reproduce --ladder` and shown side by side by the report.
//!
//! A step is its file: the name is the file stem (`1-basic`), the order is the file names' (a
//! leading number sorts numerically, so `10-x` comes after `9-y`), and the first comment
//! paragraph of the file says what the step changes (the report's "what changed"). The steps are
//! embedded in the binary ([`LADDER`]), so a reproduction needs no checkout; a test checks that the
//! table lists exactly the files of `configs/ladder/`. [`steps_from_dir`] reads another directory
//! of steps at run time (`reproduce --ladder-dir`).
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The ladder as shipped: (step name, config text). To add a step, add its file to
/// `configs/ladder/` and one line here.
pub const LADDER: &[(&str, &str)] = &[
    ("1-basic", include_str!("../../configs/ladder/1-basic.toml")),
    (
        "2-likelihood",
        include_str!("../../configs/ladder/2-likelihood.toml"),
    ),
    ("3-capacity", include_str!("../../configs/ladder/3-capacity.toml")),
    (
        "4-hierarchy",
        include_str!("../../configs/ladder/4-hierarchy.toml"),
    ),
    ("5-residual", include_str!("../../configs/ladder/5-residual.toml")),
    ("6-length", include_str!("../../configs/ladder/6-length.toml")),
    (
        "7-pixel-likelihood",
        include_str!("../../configs/ladder/7-pixel-likelihood.toml"),
    ),
];

/// One step of the ladder.
#[derive(Debug, Clone, PartialEq)]
pub struct LadderStep {
    /// The config's file stem, e.g. `1-basic`: the run directory's name.
    pub name: String,
    /// The config file's text (a complete `TrainConfig`).
    pub config: String,
    /// The config's first comment paragraph: what this step changes, in full.
    pub description: String,
}

impl LadderStep {
    pub fn new(name: &str, config: &str) -> Self {
        Self {
            name: name.to_string(),
            config: config.to_string(),
            description: first_comment_paragraph(config),
        }
    }

    /// What changed, in a few words (the table's cell; the full text is [`Self::description`]).
    pub fn short(&self) -> String {
        short_description(&self.description)
    }
}

/// The embedded ladder, in order.
pub fn embedded_steps() -> Vec<LadderStep> {
    let mut steps: Vec<LadderStep> = LADDER.iter().map(|(n, t)| LadderStep::new(n, t)).collect();
    steps.sort_by(|a, b| step_order(&a.name, &b.name));
    steps
}

/// The `*.toml` files of `dir` as ladder steps, in order.
pub fn steps_from_dir(dir: &Path) -> Result<Vec<LadderStep>> {
    let mut steps = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("reading ladder directory {}", dir.display()))?
    {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "toml") || !path.is_file() {
            continue;
        }
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        steps.push(LadderStep::new(&name, &text));
    }
    if steps.is_empty() {
        bail!("ladder directory {} has no .toml step configs", dir.display());
    }
    steps.sort_by(|a, b| step_order(&a.name, &b.name));
    Ok(steps)
}

/// Ladder order: by the leading number of the name when both have one, then by name.
pub fn step_order(a: &str, b: &str) -> std::cmp::Ordering {
    let lead = |s: &str| -> Option<u64> {
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    match (lead(a), lead(b)) {
        (Some(x), Some(y)) if x != y => x.cmp(&y),
        _ => a.cmp(b),
    }
}

/// The leading `#` lines of a TOML text up to the first blank or non-comment line, joined into
/// one line.
pub fn first_comment_paragraph(text: &str) -> String {
    let mut words = Vec::new();
    for line in text.lines() {
        let t = line.trim();
        let Some(c) = t.strip_prefix('#') else { break };
        let c = c.trim();
        if c.is_empty() {
            break;
        }
        words.push(c);
    }
    words.join(" ")
}

/// A description's first sentence without its "Ladder step N:" label and parentheses, at most
/// about 80 characters (cut at a word, with an ellipsis).
pub fn short_description(description: &str) -> String {
    let mut s = description.trim();
    if s.to_ascii_lowercase().starts_with("ladder step") {
        if let Some(i) = s.find(':') {
            s = s[i + 1..].trim_start();
        }
    }
    // The first sentence: up to a full stop followed by a space (or the end).
    let first = match s.find(". ") {
        Some(i) => &s[..i],
        None => s.strip_suffix('.').unwrap_or(s),
    };
    let mut out = String::new();
    let mut depth = 0usize;
    for ch in first.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(ch),
            _ => {}
        }
    }
    let mut out = out.split_whitespace().collect::<Vec<_>>().join(" ");
    for p in [",", ":", ";", "."] {
        out = out.replace(&format!(" {p}"), p);
    }
    const MAX: usize = 80;
    if out.chars().count() > MAX {
        let cut: String = out.chars().take(MAX).collect();
        let cut = match cut.rfind(' ') {
            Some(i) => &cut[..i],
            None => &cut[..],
        };
        out = format!("{}…", cut.trim_end_matches([',', ';', ' ']));
    }
    out
}

/// The step a run directory name belongs to: the step's own name, or `<step>,seed=<S>` (runs
/// of one step with several seeds). Returns the seed, if any.
pub fn run_of_step(run_name: &str, step: &str) -> Option<Option<u64>> {
    if run_name == step {
        return Some(None);
    }
    let rest = run_name.strip_prefix(step)?.strip_prefix(",seed=")?;
    rest.parse().ok().map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_table_lists_exactly_the_files_of_configs_ladder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/ladder");
        let on_disk = steps_from_dir(&dir).unwrap();
        let embedded = embedded_steps();
        assert_eq!(
            on_disk.iter().map(|s| &s.name).collect::<Vec<_>>(),
            embedded.iter().map(|s| &s.name).collect::<Vec<_>>(),
            "configs/ladder/ and train::ladder::LADDER must list the same steps"
        );
        for (d, e) in on_disk.iter().zip(&embedded) {
            assert_eq!(d, e, "step {} differs from its file", d.name);
            assert!(
                !e.description.is_empty(),
                "step {} has no leading comment",
                e.name
            );
            assert!(!e.short().is_empty());
            crate::train::TrainConfig::from_toml_str(&e.config, &[])
                .unwrap_or_else(|err| panic!("step {}: {err:#}", e.name))
                .check()
                .unwrap_or_else(|err| panic!("step {}: {err}", e.name));
        }
    }

    #[test]
    fn steps_sort_by_their_leading_number() {
        let mut v = vec!["10-a", "2-b", "1-c", "2-a", "x"];
        v.sort_by(|a, b| step_order(a, b));
        assert_eq!(v, ["1-c", "2-a", "2-b", "10-a", "x"]);
    }

    #[test]
    fn descriptions_come_from_the_first_comment_paragraph() {
        let text = "# Ladder step 3: step 2 with 32 latents (not 10)\n# instead of 10. More words.\n#\n# other\nseed = 0\n";
        let d = first_comment_paragraph(text);
        assert_eq!(
            d,
            "Ladder step 3: step 2 with 32 latents (not 10) instead of 10. More words."
        );
        assert_eq!(short_description(&d), "step 2 with 32 latents instead of 10");
        assert_eq!(
            short_description("step 4 made (LVAE) : more"),
            "step 4 made: more"
        );
        assert_eq!(first_comment_paragraph("seed = 0\n# late\n"), "");
        let long = "Ladder step 9: ".to_string() + &"word ".repeat(40);
        let s = short_description(&long);
        assert!(s.ends_with('…') && s.chars().count() <= 81, "{s}");
    }

    #[test]
    fn run_names_map_to_steps_and_seeds() {
        assert_eq!(run_of_step("1-basic", "1-basic"), Some(None));
        assert_eq!(run_of_step("1-basic,seed=2", "1-basic"), Some(Some(2)));
        assert_eq!(run_of_step("1-basic-x", "1-basic"), None);
        assert_eq!(run_of_step("1-basic,seed=x", "1-basic"), None);
    }
}
