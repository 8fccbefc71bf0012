//! How often something happens during a run: every N iterations, every N epochs, or only at the
//! end. In TOML an integer counts iterations (`eval_every = 2500`; 0 is "at the end", as the
//! segmentation configurations of the first release wrote it); a string names the unit
//! (`"1 epoch"`, `"5 epochs"`, `"500 iterations"`, `"end"`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A period of a run's events (evaluation, checkpoints).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cadence {
    /// Every this many iterations.
    Iterations(usize),
    /// Every this many epochs.
    Epochs(usize),
    /// Only at the end of the run.
    End,
}

impl Cadence {
    /// The period in iterations, given the iterations of an epoch; `None` for `End`.
    pub fn period(self, steps_per_epoch: usize) -> Option<usize> {
        match self {
            Cadence::Iterations(n) => Some(n),
            Cadence::Epochs(n) => Some(n * steps_per_epoch.max(1)),
            Cadence::End => None,
        }
        .filter(|&n| n > 0)
    }

    /// Whether the event falls after `done` iterations.
    pub fn due(self, done: usize, steps_per_epoch: usize) -> bool {
        self.period(steps_per_epoch)
            .is_some_and(|p| done.is_multiple_of(p))
    }

    fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        if t == "end" {
            return Ok(Cadence::End);
        }
        let (n, unit) = t.split_once(' ').unwrap_or((&t, "iterations"));
        let n: usize = n.trim().parse().map_err(|_| bad(text))?;
        match unit.trim() {
            "iteration" | "iterations" => Ok(if n == 0 {
                Cadence::End
            } else {
                Cadence::Iterations(n)
            }),
            "epoch" | "epochs" if n > 0 => Ok(Cadence::Epochs(n)),
            _ => Err(bad(text)),
        }
    }
}

fn bad(text: &str) -> String {
    format!(
        "`{text}` is not a cadence; expected a number of iterations, \"N epochs\", \"N iterations\" or \"end\""
    )
}

impl std::fmt::Display for Cadence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cadence::Iterations(n) => write!(f, "{n} iterations"),
            Cadence::Epochs(1) => write!(f, "1 epoch"),
            Cadence::Epochs(n) => write!(f, "{n} epochs"),
            Cadence::End => write!(f, "end"),
        }
    }
}

impl Serialize for Cadence {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Cadence::Iterations(n) => s.serialize_u64(*n as u64),
            other => s.serialize_str(&other.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Cadence {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) if n < 0 => Err(serde::de::Error::custom(bad(&n.to_string()))),
            Raw::Count(0) => Ok(Cadence::End),
            Raw::Count(n) => Ok(Cadence::Iterations(n as usize)),
            Raw::Text(t) => Cadence::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(v: &str) -> Result<Cadence, String> {
        #[derive(Deserialize)]
        struct T {
            c: Cadence,
        }
        toml::from_str::<T>(&format!("c = {v}"))
            .map(|t| t.c)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn cadences_read_write_and_fall_due() {
        assert_eq!(read("2500"), Ok(Cadence::Iterations(2500)));
        assert_eq!(read("0"), Ok(Cadence::End));
        assert_eq!(read("\"1 epoch\""), Ok(Cadence::Epochs(1)));
        assert_eq!(read("\"3 epochs\""), Ok(Cadence::Epochs(3)));
        assert_eq!(read("\"40 iterations\""), Ok(Cadence::Iterations(40)));
        assert_eq!(read("\"end\""), Ok(Cadence::End));
        let e = read("\"2 weeks\"").unwrap_err();
        assert!(e.contains("2 weeks") && e.contains("epochs"), "{e}");
        assert!(read("-1").is_err() && read("\"0 epochs\"").is_err());
        for c in [Cadence::Iterations(7), Cadence::Epochs(2), Cadence::End] {
            let text = toml::to_string(&std::collections::BTreeMap::from([("c", c)])).unwrap();
            assert_eq!(
                read(text.trim().trim_start_matches("c = ")),
                Ok(c),
                "{text}"
            );
        }
        assert!(Cadence::Epochs(2).due(20, 10) && !Cadence::Epochs(2).due(10, 10));
        assert!(Cadence::Iterations(3).due(6, 100) && !Cadence::End.due(6, 1));
    }
}
