//! `afan eval --corrupt`: the conditions one call evaluates (clean and corrupted copies of the
//! evaluation images), and how a result names its condition.

use afan_data::Corruption;
use afan_train::Evaluation;
use anyhow::{Result, anyhow};
use std::path::{Path, PathBuf};

/// What `--corrupt` takes besides the corruptions: the clean images.
const CLEAN: &str = "none";

/// The conditions `--corrupt` names, in order (`None`: the clean images); no flag: the clean
/// images only. A wrong name is refused naming the flag and every valid name.
pub fn conditions(values: &[String]) -> Result<Vec<Option<Corruption>>> {
    if values.is_empty() {
        return Ok(vec![None]);
    }
    values
        .iter()
        .map(|v| match v.trim() {
            CLEAN => Ok(None),
            // The parse error already lists the corruptions; `none` is this flag's own.
            text => Corruption::parse(text)
                .map(Some)
                .map_err(|e| anyhow!("--corrupt {v}: {e}; or {CLEAN} for the clean images")),
        })
        .collect()
}

/// The condition's name in results: `none` or `NAME:STRENGTH`.
pub fn label(c: Option<&Corruption>) -> String {
    c.map_or_else(|| CLEAN.to_string(), Corruption::to_string)
}

/// `e` naming its condition: `"corruption"` in the JSON object, a prefix on the line.
pub fn named(mut e: Evaluation, c: Option<&Corruption>) -> Evaluation {
    e.report["corruption"] = serde_json::json!(label(c));
    if let Some(c) = c {
        e.text = format!("[corruption {c}] {}", e.text);
    }
    e
}

/// Where a detection result file goes for condition `c`: `path` itself for the clean images,
/// else `path` with the corruption's name before its extensions (`best.noise.detections.json`),
/// so the conditions of one call do not overwrite each other's files.
pub fn results_path(path: &Path, c: Option<&Corruption>) -> PathBuf {
    let Some(c) = c else {
        return path.to_path_buf();
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tag = match c {
        Corruption::Noise(_) => "noise",
        Corruption::Blur(_) => "blur",
        Corruption::Contrast(_) => "contrast",
    };
    let tag = format!("{tag}{}", strength_suffix(c));
    let named = match name.split_once('.') {
        Some((stem, rest)) => format!("{stem}.{tag}.{rest}"),
        None => format!("{name}.{tag}"),
    };
    path.with_file_name(named)
}

/// `-0.08` for a strength other than the default, so two strengths keep two files.
fn strength_suffix(c: &Corruption) -> String {
    let name = c.to_string();
    let (kind, strength) = name.split_once(':').unwrap_or((&name, ""));
    match Corruption::parse(kind) {
        Ok(default) if default == *c => String::new(),
        _ => format!("-{strength}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_a_wrong_one_names_the_flag_and_the_valid_names() {
        let c = conditions(&["none".into(), "noise".into(), "blur:1.5".into()]).unwrap();
        assert_eq!(
            c,
            [
                None,
                Some(Corruption::Noise(0.08)),
                Some(Corruption::Blur(1.5))
            ]
        );
        assert_eq!(conditions(&[]).unwrap(), [None]);
        let err = conditions(&["fog".into()]).unwrap_err().to_string();
        for part in ["--corrupt fog", "none", "noise", "blur", "contrast"] {
            assert!(err.contains(part), "{err}");
        }
    }

    #[test]
    fn result_files_carry_the_condition() {
        let p = Path::new("/r/best.detections.json");
        assert_eq!(results_path(p, None), p);
        assert_eq!(
            results_path(p, Some(&Corruption::Noise(0.08))),
            Path::new("/r/best.noise.detections.json")
        );
        assert_eq!(
            results_path(p, Some(&Corruption::Blur(1.5))),
            Path::new("/r/best.blur-1.5.detections.json")
        );
    }
}
