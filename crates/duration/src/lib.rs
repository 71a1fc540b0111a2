//! The one parser for durations written by people (config files, settings sections): humantime
//! strings such as `5s`, `250ms`, `1m`, `1h 30m`, at most [`MAX`]. A bare number is refused with a
//! message saying a unit is needed (`30` could be seconds or milliseconds); every message starts
//! with "invalid duration `<what was written>`". Use it with serde:
//!
//! ```ignore
//! #[serde(default = "default_timeout", with = "flotilla_duration")]
//! timeout: Duration,
//! #[serde(default, with = "flotilla_duration::option")]
//! stale_after: Option<Duration>,
//! ```

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;

/// The longest duration anyone may write: a month. Nothing in Flotilla waits longer, and a typo
/// like `30000h` should be an error, not a group that never acts again.
pub const MAX: Duration = Duration::from_secs(30 * 24 * 3600);

const EXPECTING: &str = "a duration with a unit, like `5s`, `250ms` or `1m`";

/// Parses `s`; the error is a whole sentence naming `s`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim()).map_err(|e| {
        let why = match e {
            // Humantime's own text names the supported units.
            humantime::DurationError::UnknownUnit { .. } | humantime::DurationError::NumberOverflow => e.to_string(),
            _ => format!("expected {EXPECTING}"),
        };
        format!("invalid duration `{s}`: {why}")
    })?;
    if d > MAX {
        return Err(format!("invalid duration `{s}`: at most {}", humantime::format_duration(MAX)));
    }
    Ok(d)
}

fn unit_needed(n: impl fmt::Display) -> String {
    format!("invalid duration `{n}`: a unit is needed, like `{n}s` or `{n}ms`")
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(EXPECTING)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Duration, E> {
        parse(s).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Duration, E> {
        Err(E::custom(unit_needed(n)))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Duration, E> {
        Err(E::custom(unit_needed(n)))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Duration, E> {
        Err(E::custom(unit_needed(n)))
    }
}

/// A required (or defaulted) duration.
pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    // `any`, not `str`: a bare number should hear that it lacks a unit.
    d.deserialize_any(DurationVisitor)
}

/// Written back as humantime (`1m 30s`), so what is read round-trips.
pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// An optional duration; `~` means "not set".
pub mod option {
    use super::*;

    struct OptionVisitor;

    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(EXPECTING)
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            super::deserialize(d).map(Some)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        d.deserialize_option(OptionVisitor)
    }

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    struct T {
        #[serde(with = "crate")]
        d: Duration,
        #[serde(default, with = "crate::option")]
        o: Option<Duration>,
    }

    fn err(yaml: &str) -> String {
        serde_yaml::from_str::<T>(yaml).unwrap_err().to_string()
    }

    #[test]
    fn durations_need_units_and_a_bound() {
        let t: T = serde_yaml::from_str("d: 1h 30m\no: 250ms\n").unwrap();
        assert_eq!((t.d, t.o), (Duration::from_secs(5400), Some(Duration::from_millis(250))));
        let t: T = serde_yaml::from_str("d: 5s\no: ~\n").unwrap();
        assert_eq!(t.o, None);
        assert!(err("d: 30\n").contains("invalid duration `30`: a unit is needed, like `30s` or `30ms`"));
        assert!(err("d: 1.5\n").contains("a unit is needed"));
        assert!(err("d: soon\n").contains("invalid duration `soon`: expected a duration with a unit"));
        assert!(err("d: 5 parsecs\n").contains("unknown time unit \"parsecs\""));
        assert!(err("d: 31days\n").contains("invalid duration `31days`: at most 30days"), "{}", err("d: 31days\n"));
        assert_eq!(parse("30days"), Ok(MAX));
        assert!(parse("99999999999999999999h").unwrap_err().contains("invalid duration"));
    }
}
