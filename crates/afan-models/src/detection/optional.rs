//! An optional configuration section that TOML can switch off: `None` is written as the string
//! `"none"`, a value as itself. Use with `#[serde(with = "...::optional")]`.
//!
//! TOML has no null, so a plain `Option` field vanishes from a written table and, read back
//! with `#[serde(default)]`, becomes the field's default again. For fields whose default is
//! `Some` (the VOC resize, the A-FAN RoI point) `None` could then never be configured: the quick
//! start's "keep the 64x64 size" turned into a 600x600 resize through every `--set` and
//! `--resume`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How `None` is written.
pub const NONE: &str = "none";

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr<T> {
    Off(String),
    On(T),
}

/// Writes `None` as `"none"`.
pub fn serialize<T: Serialize, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(t) => Repr::On(t),
        None => Repr::Off(NONE.to_string()),
    }
    .serialize(s)
}

/// Reads `"none"` as `None`, anything else as the value.
pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    match Repr::<T>::deserialize(d)? {
        Repr::On(t) => Ok(Some(t)),
        Repr::Off(t) if t == NONE => Ok(None),
        Repr::Off(t) => Err(serde::de::Error::custom(format!(
            "{t:?}: expected \"{NONE}\" or a table of settings"
        ))),
    }
}
