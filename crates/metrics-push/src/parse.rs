//! Request bodies: the samples push and the Aodh alarm notification. Every error names where it
//! is: the JSON path (`samples[2].cpu`), the member, and for syntax errors the line and column.

use std::fmt;

use flotilla_model::{Metric, Timestamp};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// The longest member name, group name or alarm id accepted.
pub const MAX_NAME_LEN: usize = 255;

/// The longest alarm `reason` kept (longer ones are cut).
pub const MAX_REASON_LEN: usize = 1024;

/// One member's pushed reading, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PushedSample {
    /// Member name or instance id, as pushed.
    pub member: String,
    /// When the pushing system took the reading (Unix ms), if it said.
    pub at_ms: Option<u64>,
    pub values: Vec<(Metric, f64)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushBody {
    samples: Vec<RawSample>,
}

struct RawSample {
    member: Option<String>,
    at_ms: Option<u64>,
    values: Vec<(Metric, f64)>,
}

fn known_keys() -> String {
    let metrics: Vec<&str> = Metric::ALL.iter().map(|m| m.as_str()).collect();
    format!("member, at_ms, {}", metrics.join(", "))
}

impl<'de> Deserialize<'de> for RawSample {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SampleVisitor;

        impl<'de> Visitor<'de> for SampleVisitor {
            type Value = RawSample;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sample object like {\"member\": \"web-1\", \"cpu\": 95.0}")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSample, A::Error> {
                let mut s = RawSample { member: None, at_ms: None, values: Vec::new() };
                let mut seen_at = false;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "member" => {
                            if s.member.is_some() {
                                return Err(de::Error::duplicate_field("member"));
                            }
                            s.member = Some(map.next_value()?);
                        }
                        "at_ms" => {
                            if seen_at {
                                return Err(de::Error::duplicate_field("at_ms"));
                            }
                            seen_at = true;
                            s.at_ms = map.next_value()?;
                        }
                        other => match Metric::parse(other) {
                            Some(m) if s.values.iter().any(|(have, _)| *have == m) => {
                                return Err(de::Error::custom(format!("duplicate metric `{other}`")));
                            }
                            Some(m) => {
                                let v: f64 = map.next_value()?;
                                s.values.push((m, v));
                            }
                            None => {
                                return Err(de::Error::custom(format!(
                                    "unknown metric `{}`; known keys: {}",
                                    shorten(other),
                                    known_keys()
                                )));
                            }
                        },
                    }
                }
                Ok(s)
            }
        }

        d.deserialize_map(SampleVisitor)
    }
}

/// Parses and checks a `POST /v1/groups/{group}/samples` body.
pub(crate) fn parse_samples(body: &[u8]) -> Result<Vec<PushedSample>, String> {
    let raw: PushBody = from_json(body)?;
    let mut out = Vec::with_capacity(raw.samples.len());
    for (i, s) in raw.samples.into_iter().enumerate() {
        let Some(member) = s.member else {
            return Err(format!("samples[{i}]: missing field `member` (a member name or instance id)"));
        };
        check_name(&member).map_err(|why| format!("samples[{i}].member: {why}"))?;
        if s.values.is_empty() {
            return Err(format!(
                "samples[{i}] (member `{member}`): no metric values; give at least one of {}",
                Metric::ALL.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        for &(m, v) in &s.values {
            check_value(m, v).map_err(|why| format!("samples[{i}].{} (member `{member}`): {why}", m.as_str()))?;
        }
        out.push(PushedSample { member, at_ms: s.at_ms, values: s.values });
    }
    Ok(out)
}

/// Whether a metric's value can be true: finite, not negative, percentages at most 100.
pub(crate) fn check_value(m: Metric, v: f64) -> Result<(), String> {
    if !v.is_finite() {
        return Err(format!("{v} is not a finite number"));
    }
    if v < 0.0 {
        return Err(format!("{v} is negative"));
    }
    if is_percentage(m) && v > 100.0 {
        return Err(format!("{v} is outside 0..=100 (a percentage)"));
    }
    Ok(())
}

fn is_percentage(m: Metric) -> bool {
    matches!(m, Metric::Cpu | Metric::Mem | Metric::ErrorRate)
}

/// Member names, group names and alarm ids: 1 to 255 bytes, no control characters.
pub(crate) fn check_name(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!("is {} bytes long; at most {MAX_NAME_LEN}", s.len()));
    }
    if s.chars().any(char::is_control) {
        return Err(format!("`{}` contains control characters", s.escape_default()));
    }
    Ok(())
}

/// Group names in the URL: the one rule for group names (`flotilla_model::name`).
pub(crate) fn check_group(s: &str) -> Result<(), String> {
    flotilla_model::name::group_name_problem(s).map_or(Ok(()), |p| Err(format!("group name {p}")))
}

/// At most 64 characters of something the client sent, for messages.
fn shorten(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// An Aodh alarm state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum AlarmCondition {
    #[serde(rename = "ok")]
    Ok,
    #[serde(rename = "alarm")]
    Alarm,
    #[serde(rename = "insufficient data")]
    InsufficientData,
}

impl AlarmCondition {
    /// Aodh's spelling: `ok`, `alarm`, `insufficient data`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmCondition::Ok => "ok",
            AlarmCondition::Alarm => "alarm",
            AlarmCondition::InsufficientData => "insufficient data",
        }
    }
}

impl fmt::Display for AlarmCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last notification received for one Aodh alarm of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmStatus {
    pub alarm_id: String,
    pub alarm_name: Option<String>,
    pub current: AlarmCondition,
    pub previous: Option<AlarmCondition>,
    /// `low`, `moderate`, `critical` in Aodh; kept as sent.
    pub severity: Option<String>,
    /// Aodh's text, cut to 1024 characters.
    pub reason: Option<String>,
    /// `reason_data.most_recent` when it is a number (threshold and Gnocchi alarms put the last
    /// statistic there).
    pub most_recent: Option<f64>,
    /// When Flotilla received it (the source's clock).
    pub received_at: Timestamp,
}

/// The body Aodh's REST notifier posts. Unknown fields are ignored (newer Aodh may add some).
#[derive(Deserialize)]
struct AlarmBody {
    alarm_id: String,
    #[serde(default)]
    alarm_name: Option<String>,
    current: AlarmCondition,
    #[serde(default)]
    previous: Option<AlarmCondition>,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    reason_data: Option<serde_json::Value>,
}

/// Parses a `POST /v1/groups/{group}/alarm` body.
pub(crate) fn parse_alarm(body: &[u8], received_at: Timestamp) -> Result<AlarmStatus, String> {
    let raw: AlarmBody = from_json(body)?;
    check_name(&raw.alarm_id).map_err(|why| format!("alarm_id: {why}"))?;
    let cut = |s: String, max: usize| match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_string(),
        None => s,
    };
    let most_recent =
        raw.reason_data.as_ref().and_then(|d| d.get("most_recent")).and_then(|v| v.as_f64()).filter(|v| v.is_finite());
    Ok(AlarmStatus {
        alarm_id: raw.alarm_id,
        alarm_name: raw.alarm_name.map(|n| cut(n, MAX_NAME_LEN)),
        current: raw.current,
        previous: raw.previous,
        severity: raw.severity.map(|s| cut(s, 64)),
        reason: raw.reason.map(|r| cut(r, MAX_REASON_LEN)),
        most_recent,
        received_at,
    })
}

/// serde_json with the path of the failing value: "at `samples[0].cpu`: invalid type: string
/// \"high\", expected f64 at line 1 column 40".
fn from_json<'de, T: Deserialize<'de>>(body: &'de [u8]) -> Result<T, String> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        if path.is_empty() || path == "." {
            format!("invalid JSON body: {}", e.inner())
        } else {
            format!("invalid JSON body at `{path}`: {}", e.inner())
        }
    })?;
    de.end().map_err(|e| format!("invalid JSON body: {e}"))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> String {
        parse_samples(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn samples_parse_with_every_metric_name() {
        let body = r#"{"samples":[
            {"member":"VM-test_1","cpu":95.0,"mem":30.5,"at_ms":1700000000000},
            {"member":"web-2","rps":12,"requests":300,"inflight":3,"p50_ms":1.5,"p95_ms":9,"p99_ms":20,"error_pct":0.5},
            {"member":"web-3","cpu":0,"at_ms":null}
        ]}"#;
        let s = parse_samples(body.as_bytes()).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0],
            PushedSample {
                member: "VM-test_1".into(),
                at_ms: Some(1_700_000_000_000),
                values: vec![(Metric::Cpu, 95.0), (Metric::Mem, 30.5)]
            }
        );
        assert_eq!(s[1].values.len(), 7);
        assert_eq!(s[1].values[0], (Metric::RequestRate, 12.0));
        assert_eq!(s[2].at_ms, None);
        assert!(parse_samples(br#"{"samples":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn unknown_metric_is_named_with_its_sample() {
        let e = err(r#"{"samples":[{"member":"a","cpu":1},{"member":"b","load1":2}]}"#);
        assert!(e.contains("samples[1]") && e.contains("unknown metric `load1`") && e.contains("cpu, mem"), "{e}");
    }

    #[test]
    fn type_errors_name_the_path_and_line() {
        let e = err("{\"samples\":[\n{\"member\":\"a\",\n\"cpu\":\"high\"}]}");
        assert!(e.contains("`samples[0].cpu`") && e.contains("line 3"), "{e}");
        let e = err(r#"{"samples":[{"member":7,"cpu":1}]}"#);
        assert!(e.contains("`samples[0].member`"), "{e}");
        let e = err(r#"{"samples":[{"member":"a","cpu":1,"at_ms":-5}]}"#);
        assert!(e.contains("`samples[0].at_ms`"), "{e}");
        let e = err(r#"{"sample":[]}"#);
        assert!(e.contains("unknown field `sample`"), "{e}");
        let e = err(r#"{}"#);
        assert!(e.contains("missing field `samples`"), "{e}");
        let e = err("{\"samples\":[{\"member\":\"a\",\"cpu\":1}\n");
        assert!(e.contains("line 2"), "{e}");
        let e = err(r#"{"samples":[]} trailing"#);
        assert!(e.contains("trailing"), "{e}");
        let e = err(r#"{"samples":[{"member":"a","cpu":1,"cpu":2}]}"#);
        assert!(e.contains("duplicate metric `cpu`"), "{e}");
    }

    #[test]
    fn values_outside_their_range_name_member_and_field() {
        let e = err(r#"{"samples":[{"member":"a","cpu":10},{"member":"web-9","mem":100.5}]}"#);
        assert!(e.contains("samples[1].mem") && e.contains("`web-9`") && e.contains("0..=100"), "{e}");
        let e = err(r#"{"samples":[{"member":"web-1","rps":-1}]}"#);
        assert!(e.contains("samples[0].rps") && e.contains("`web-1`") && e.contains("negative"), "{e}");
        let e = err(r#"{"samples":[{"member":"web-1","error_pct":101}]}"#);
        assert!(e.contains("error_pct"), "{e}");
        // Not a percentage: large values are fine.
        assert!(parse_samples(br#"{"samples":[{"member":"a","rps":5000,"p99_ms":120000}]}"#).is_ok());
        assert!(check_value(Metric::Cpu, f64::NAN).unwrap_err().contains("finite"));
        assert!(check_value(Metric::RequestRate, f64::INFINITY).is_err());
        assert!(check_value(Metric::Cpu, 100.0).is_ok());
    }

    #[test]
    fn member_is_required_and_sane() {
        let e = err(r#"{"samples":[{"cpu":1}]}"#);
        assert!(e.contains("samples[0]") && e.contains("missing field `member`"), "{e}");
        let e = err(r#"{"samples":[{"member":" ","cpu":1}]}"#);
        assert!(e.contains("samples[0].member") && e.contains("empty"), "{e}");
        let e = err(r#"{"samples":[{"member":"a"}]}"#);
        assert!(e.contains("no metric values"), "{e}");
        let long = "x".repeat(300);
        let e = err(&format!(r#"{{"samples":[{{"member":"{long}","cpu":1}}]}}"#));
        assert!(e.contains("at most 255"), "{e}");
    }

    #[test]
    fn group_names_follow_the_config_rule() {
        assert!(check_group("web").is_ok());
        assert!(check_group("VM-test_1.a").is_ok());
        for bad in ["", "a b", "a/b", &"g".repeat(64), "ü"] {
            assert!(check_group(bad).unwrap_err().contains("1 to 45"), "{bad}");
        }
    }

    #[test]
    fn aodh_notification_parses() {
        let body = r#"{"alarm_name": "cpu_high", "alarm_id": "3c8b1f3e-1", "severity": "low",
            "previous": "insufficient data", "current": "alarm",
            "reason": "Transition to alarm due to 3 samples outside threshold, most recent: 93.1",
            "reason_data": {"type": "threshold", "disposition": "outside", "count": 3, "most_recent": 93.1},
            "something_new": true}"#;
        let a = parse_alarm(body.as_bytes(), Timestamp(5)).unwrap();
        assert_eq!(a.alarm_id, "3c8b1f3e-1");
        assert_eq!(a.alarm_name.as_deref(), Some("cpu_high"));
        assert_eq!((a.current, a.previous), (AlarmCondition::Alarm, Some(AlarmCondition::InsufficientData)));
        assert_eq!(a.most_recent, Some(93.1));
        assert_eq!(a.received_at, Timestamp(5));

        let a = parse_alarm(br#"{"alarm_id":"x","current":"ok","reason_data":{}}"#, Timestamp(0)).unwrap();
        assert_eq!((a.current, a.previous, a.most_recent), (AlarmCondition::Ok, None, None));

        let e = parse_alarm(br#"{"alarm_id":"x","current":"firing"}"#, Timestamp(0)).unwrap_err();
        assert!(e.contains("`current`") && e.contains("insufficient data"), "{e}");
        let e = parse_alarm(br#"{"current":"ok"}"#, Timestamp(0)).unwrap_err();
        assert!(e.contains("alarm_id"), "{e}");
        let e = parse_alarm(br#"{"alarm_id":"","current":"ok"}"#, Timestamp(0)).unwrap_err();
        assert!(e.contains("alarm_id") && e.contains("empty"), "{e}");
    }
}
