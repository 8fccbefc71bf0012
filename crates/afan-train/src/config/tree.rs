//! Configurations as TOML trees: a base (the task's preset), a file merged over it, `key=value`
//! overrides applied to the tree *before* it is parsed — so a flag and a file field go through the
//! same validation, and a misspelt field, in the file or in `--set`, is named instead of ignored.
//!
//! Hand-written because no configuration crate does exactly this: `figment`/`config` merge
//! layers but do not apply dotted `key=value` strings as TOML literals with a named error, and
//! their unknown-field errors name neither the layer nor the field in one line.

use crate::error::{Result, TrainError};
use std::path::Path;

/// The two fields that give a run's length: a later source that sets one drops the other, so a
/// file or flag saying `iterations = 100` over a preset counted in epochs is not a contradiction.
const LENGTH_KEYS: [&str; 2] = ["epochs", "iterations"];

/// Reads `path` as a TOML table, naming the file in errors.
pub fn read_table(path: &Path) -> Result<toml::Table> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        TrainError::Config(format!("cannot read config file {}: {e}", path.display()))
    })?;
    toml::from_str(&text).map_err(|e| {
        TrainError::Config(format!(
            "config file {} is not valid TOML: {}",
            path.display(),
            one_line(&e.to_string())
        ))
    })
}

/// Merges `over` into `base`: tables recursively, everything else replaced.
pub fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        if let Some(other) = length_partner(&k) {
            base.remove(other);
        }
        merge_value(base, k, v);
    }
}

fn merge_value(base: &mut toml::Table, k: String, v: toml::Value) {
    match (base.get_mut(&k), v) {
        (Some(toml::Value::Table(b)), toml::Value::Table(o)) => {
            for (k, v) in o {
                merge_value(b, k, v);
            }
        }
        (_, v) => {
            base.insert(k, v);
        }
    }
}

fn length_partner(key: &str) -> Option<&'static str> {
    match key {
        "epochs" => Some(LENGTH_KEYS[1]),
        "iterations" => Some(LENGTH_KEYS[0]),
        _ => None,
    }
}

/// Applies `a.b.c=value`; the value is read as a TOML literal (`0.05`, `true`, `[50, 150]`,
/// `"text"`, `{a = 1}`) and, failing that, as a bare string.
pub fn apply_override(tree: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, raw) = assignment.split_once('=').ok_or_else(|| {
        TrainError::Config(format!(
            "override `{assignment}` must look like key=value (e.g. optim.lr=0.05)"
        ))
    })?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(TrainError::Config(format!(
            "override `{assignment}`: `{key}` is not a field name"
        )));
    }
    let value = parse_value(raw.trim());
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    if parts.is_empty()
        && let Some(other) = length_partner(last)
    {
        tree.remove(other);
    }
    let mut table = tree;
    for part in parts {
        table = match table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(Default::default()))
        {
            toml::Value::Table(t) => t,
            _ => {
                return Err(TrainError::Config(format!(
                    "override `{assignment}`: `{part}` is not a section"
                )));
            }
        };
    }
    table.insert(last.to_string(), value);
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    toml::from_str::<toml::Table>(&doc)
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// toml's messages span lines (`...\nin `optim``); one line reads better after `error:`.
pub fn one_line(msg: &str) -> String {
    msg.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses a table into `T`, naming `what` and where the values came from in the error.
pub fn parse<T: serde::de::DeserializeOwned>(
    table: toml::Table,
    what: &str,
    source: &str,
) -> Result<T> {
    toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            TrainError::Config(format!(
                "invalid {what} (from {source}): {}",
                one_line(&e.to_string())
            ))
        })
}

/// `key=value` overrides from named command-line flags, which are shorthands for `--set`: each
/// flag that was given becomes one assignment, strings and paths quoted as TOML strings.
#[derive(Default, Debug, Clone)]
pub struct Overrides(Vec<String>);

impl Overrides {
    /// `key = "v"`.
    pub fn text(mut self, key: &str, v: &str) -> Self {
        self.0
            .push(format!("{key}={}", toml::Value::String(v.to_string())));
        self
    }

    /// `key = v` as written (a TOML literal: number, boolean, array, inline table).
    pub fn raw(mut self, key: &str, v: &str) -> Self {
        self.0.push(format!("{key}={v}"));
        self
    }

    /// The assignments, followed by `set` (which therefore win).
    pub fn finish(mut self, set: &[String]) -> Vec<String> {
        self.0.extend(set.iter().cloned());
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_reach_nested_fields_and_keep_types() {
        let mut t: toml::Table = toml::from_str("epochs = 3\n[optim]\nlr = 0.1\n").unwrap();
        apply_override(&mut t, "optim.lr=0.01").unwrap();
        apply_override(&mut t, "schedule.milestones=[1, 2]").unwrap();
        apply_override(&mut t, "model=resnet32").unwrap();
        assert_eq!(t["optim"]["lr"].as_float(), Some(0.01));
        assert_eq!(t["schedule"]["milestones"].as_array().unwrap().len(), 2);
        assert_eq!(t["model"].as_str(), Some("resnet32"));
        let e = apply_override(&mut t, "optim.lr.x=1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("`lr` is not a section"), "{e}");
        assert!(apply_override(&mut t, "lr").is_err());
        assert!(apply_override(&mut t, ".lr=1").is_err());
    }

    #[test]
    fn a_later_length_replaces_the_earlier_one() {
        let mut t: toml::Table = toml::from_str("epochs = 3").unwrap();
        apply_override(&mut t, "iterations=10").unwrap();
        assert!(!t.contains_key("epochs") && t["iterations"].as_integer() == Some(10));
        merge(&mut t, toml::from_str("epochs = 2").unwrap());
        assert!(!t.contains_key("iterations") && t["epochs"].as_integer() == Some(2));
        // Inside a section the words mean something else and are left alone.
        merge(&mut t, toml::from_str("[s]\niterations = 1").unwrap());
        assert!(t.contains_key("epochs"));
    }

    #[test]
    fn flags_quote_text_and_come_before_set() {
        let o = Overrides::default()
            .text("data", "/a \"b\"")
            .raw("epochs", "2")
            .finish(&["epochs=3".into()]);
        let mut t = toml::Table::new();
        for a in &o {
            apply_override(&mut t, a).unwrap();
        }
        assert_eq!(t["data"].as_str(), Some("/a \"b\""));
        assert_eq!(t["epochs"].as_integer(), Some(3));
    }
}
