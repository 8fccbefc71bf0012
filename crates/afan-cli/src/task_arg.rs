//! `--task`: one spelling for the three tasks (`classification`, `detection`, `segmentation`,
//! with `classify`, `detect`, `segment` as short forms), and `--classes FILE|a,b,c`.

use afan_train::TaskKind;
use anyhow::{Context, Result};
use std::path::Path;

/// The task a command is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TaskArg {
    /// Image classification.
    #[value(alias = "classify")]
    Classification,
    /// Object detection (Faster R-CNN).
    #[value(alias = "detect")]
    Detection,
    /// Semantic segmentation (DeepLabV3+).
    #[value(alias = "segment")]
    Segmentation,
}

impl From<TaskArg> for TaskKind {
    fn from(t: TaskArg) -> Self {
        match t {
            TaskArg::Classification => TaskKind::Classification,
            TaskArg::Detection => TaskKind::Detection,
            TaskArg::Segmentation => TaskKind::Segmentation,
        }
    }
}

/// `--task` against what a file says: the file's task when no flag is given, an error naming
/// both when they differ.
pub fn agree(flag: Option<TaskArg>, found: TaskKind, what: &Path) -> Result<TaskKind> {
    match flag.map(TaskKind::from) {
        Some(t) if t != found => anyhow::bail!(
            "--task {t} contradicts {}, which is for {found}",
            what.display()
        ),
        _ => Ok(found),
    }
}

/// `--classes`: a file with one name per line, or names separated by commas.
pub fn class_list(value: &str) -> Result<Vec<String>> {
    let path = Path::new(value);
    let names: Vec<String> = if path.is_file() {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --classes file {}", path.display()))?
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    } else {
        value
            .split(',')
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect()
    };
    if names.is_empty() {
        anyhow::bail!("--classes {value:?} names no class (a file of names, or a,b,c)");
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_come_from_a_file_or_a_list() {
        assert_eq!(class_list("a, b,c").unwrap(), ["a", "b", "c"]);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("names.txt");
        std::fs::write(&f, "zero\n\n one \n").unwrap();
        assert_eq!(class_list(f.to_str().unwrap()).unwrap(), ["zero", "one"]);
        assert!(class_list(" , ").is_err());
    }
}
