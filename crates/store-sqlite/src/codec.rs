//! Hand-written (de)serialisation of the model types stored as JSON text.
//!
//! The model crate has no serde derives on purpose (it stays free of format choices), so the shapes
//! are fixed here, and they are part of the on-disk format:
//!
//! - tags: `{"pid":"123","vcpus":"2"}`
//! - sample values: `{"cpu":12.5,"mem":40.1}`, keys from [`Metric::as_str`]
//! - operation payloads, by kind ([`OpKind::as_str`] is stored in its own column):
//!   `scale-out` `{"names":["web_2"],"clone":true}`, `scale-in` `{"victims":["web_1"]}`,
//!   `handover` `{"retire":"web_1","successor":"web_clone_1"}`,
//!   `replace` `{"old":["web_1"],"names":["web_3"],"version":"3f9a…"}`
//!
//! Decoders return a plain description of what is wrong; the caller names the row.

use std::collections::BTreeMap;

use flotilla_model::{InstanceId, Metric, OpKind, ReplaceCause};
use serde_json::{Map, Value};

pub(crate) fn encode_tags(tags: &BTreeMap<String, String>) -> String {
    let map: Map<String, Value> = tags.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
    Value::Object(map).to_string()
}

pub(crate) fn decode_tags(json: &str) -> Result<BTreeMap<String, String>, String> {
    let map = parse_object(json, "tags")?;
    map.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            other => Err(format!("tag {k:?} is not a string: {other}")),
        })
        .collect()
}

/// Fails (with a description) on a non-finite value: JSON cannot carry NaN or infinity.
pub(crate) fn encode_values(values: &[(Metric, f64)]) -> Result<String, String> {
    let mut map = Map::new();
    for &(metric, value) in values {
        let number = serde_json::Number::from_f64(value)
            .ok_or_else(|| format!("value of {} is not a finite number ({value})", metric.as_str()))?;
        map.insert(metric.as_str().to_string(), Value::Number(number));
    }
    Ok(Value::Object(map).to_string())
}

/// Values come back ordered by [`Metric`], whatever order they were pushed in (a JSON object has
/// no order to keep).
pub(crate) fn decode_values(json: &str) -> Result<Vec<(Metric, f64)>, String> {
    let map = parse_object(json, "sample values")?;
    let mut values = Vec::with_capacity(map.len());
    for (key, value) in map {
        let metric = Metric::parse(&key).ok_or_else(|| format!("unknown metric {key:?}"))?;
        let number = value.as_f64().ok_or_else(|| format!("value of {key} is not a number: {value}"))?;
        values.push((metric, number));
    }
    values.sort_by_key(|&(m, _)| m);
    Ok(values)
}

pub(crate) fn encode_op(kind: &OpKind) -> String {
    let ids = |ids: &[InstanceId]| Value::Array(ids.iter().map(|id| Value::String(id.0.clone())).collect());
    let mut map = Map::new();
    match kind {
        OpKind::ScaleOut { names, clone } => {
            map.insert("names".into(), Value::Array(names.iter().cloned().map(Value::String).collect()));
            map.insert("clone".into(), Value::Bool(*clone));
        }
        OpKind::ScaleIn { victims } | OpKind::Stop { victims } => {
            map.insert("victims".into(), ids(victims));
        }
        OpKind::Handover { retire, successor } => {
            map.insert("retire".into(), Value::String(retire.0.clone()));
            map.insert("successor".into(), Value::String(successor.0.clone()));
        }
        OpKind::Replace { old, names, version, cause } => {
            map.insert("old".into(), ids(old));
            map.insert("names".into(), Value::Array(names.iter().cloned().map(Value::String).collect()));
            map.insert("version".into(), Value::String(version.clone()));
            map.insert("cause".into(), Value::String(cause.as_str().into()));
        }
    }
    Value::Object(map).to_string()
}

pub(crate) fn decode_op(kind: &str, payload: &str) -> Result<OpKind, String> {
    // Check the kind first: an unknown kind is the more useful message.
    if !matches!(kind, "scale-out" | "scale-in" | "stop" | "handover" | "replace") {
        return Err(format!("unknown operation kind {kind:?}"));
    }
    let map = parse_object(payload, "operation payload")?;
    Ok(match kind {
        "scale-out" => OpKind::ScaleOut {
            names: strings(&map, "names")?,
            clone: match map.get("clone") {
                Some(Value::Bool(b)) => *b,
                other => return Err(format!("field \"clone\" is not a boolean: {}", show(other))),
            },
        },
        "scale-in" => OpKind::ScaleIn { victims: strings(&map, "victims")?.into_iter().map(InstanceId).collect() },
        "stop" => OpKind::Stop { victims: strings(&map, "victims")?.into_iter().map(InstanceId).collect() },
        "replace" => OpKind::Replace {
            old: strings(&map, "old")?.into_iter().map(InstanceId).collect(),
            names: strings(&map, "names")?,
            version: string(&map, "version")?,
            // Rows written before health replacement existed are rollout batches.
            cause: match map.get("cause") {
                None => ReplaceCause::Outdated,
                Some(Value::String(c)) => {
                    ReplaceCause::parse(c).ok_or_else(|| format!("field \"cause\" is not a replace cause: {c:?}"))?
                }
                other => return Err(format!("field \"cause\" is not a string: {}", show(other))),
            },
        },
        _ => OpKind::Handover {
            retire: InstanceId(string(&map, "retire")?),
            successor: InstanceId(string(&map, "successor")?),
        },
    })
}

fn parse_object(json: &str, what: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(format!("{what} is not a JSON object: {other}")),
        Err(e) => Err(format!("{what} is not valid JSON: {e}")),
    }
}

fn string(map: &Map<String, Value>, field: &str) -> Result<String, String> {
    match map.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        other => Err(format!("field {field:?} is not a string: {}", show(other))),
    }
}

fn strings(map: &Map<String, Value>, field: &str) -> Result<Vec<String>, String> {
    match map.get(field) {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("field {field:?} holds a non-string: {other}")),
            })
            .collect(),
        other => Err(format!("field {field:?} is not an array: {}", show(other))),
    }
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "missing".to_string(), Value::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn op_payloads_have_the_documented_shape() {
        let out = OpKind::ScaleOut { names: vec!["a".into(), "b".into()], clone: true };
        let v: Value = serde_json::from_str(&encode_op(&out)).unwrap();
        assert_eq!(v, serde_json::json!({"names": ["a", "b"], "clone": true}));
        let v: Value =
            serde_json::from_str(&encode_op(&OpKind::ScaleIn { victims: vec![InstanceId::new("x")] })).unwrap();
        assert_eq!(v, serde_json::json!({"victims": ["x"]}));
        let h = OpKind::Handover { retire: InstanceId::new("p"), successor: InstanceId::new("c") };
        let v: Value = serde_json::from_str(&encode_op(&h)).unwrap();
        assert_eq!(v, serde_json::json!({"retire": "p", "successor": "c"}));
        assert_eq!(decode_op("handover", &encode_op(&h)).unwrap(), h);
        assert_eq!(decode_op("scale-out", &encode_op(&out)).unwrap(), out);
        let r = OpKind::Replace {
            old: vec![InstanceId::new("w_1")],
            names: vec!["w_3".into()],
            version: "v2".into(),
            cause: ReplaceCause::Unhealthy,
        };
        let v: Value = serde_json::from_str(&encode_op(&r)).unwrap();
        assert_eq!(v, serde_json::json!({"old": ["w_1"], "names": ["w_3"], "version": "v2", "cause": "unhealthy"}));
        assert_eq!(decode_op("replace", &encode_op(&r)).unwrap(), r);
        // A row from before health replacement is a rollout batch; a cause we do not know is refused.
        let before = decode_op("replace", r#"{"old":["w_1"],"names":["w_3"],"version":"v2"}"#).unwrap();
        assert!(matches!(before, OpKind::Replace { cause: ReplaceCause::Outdated, .. }));
        let odd = decode_op("replace", r#"{"old":[],"names":[],"version":"v","cause":"whim"}"#);
        assert!(odd.unwrap_err().contains("cause"));
        assert!(decode_op("replace", "{\"old\":[],\"names\":[]}").unwrap_err().contains("version"));
    }

    #[test]
    fn bad_payloads_are_described() {
        assert!(decode_op("explode", "{}").unwrap_err().contains("unknown operation kind \"explode\""));
        assert!(decode_op("scale-out", "{\"names\":[]}").unwrap_err().contains("clone"));
        assert!(decode_op("scale-in", "{\"victims\":[1]}").unwrap_err().contains("non-string"));
        assert!(decode_op("handover", "not json").unwrap_err().contains("not valid JSON"));
        assert!(decode_op("handover", "[]").unwrap_err().contains("not a JSON object"));
    }

    #[test]
    fn values_round_trip_exactly_and_in_metric_order() {
        let vals = vec![(Metric::RequestRate, 0.1 + 0.2), (Metric::Cpu, 12.5), (Metric::Mem, 1.0 / 3.0)];
        let json = encode_values(&vals).unwrap();
        let mut sorted = vals.clone();
        sorted.sort_by_key(|&(m, _)| m);
        assert_eq!(decode_values(&json).unwrap(), sorted);
        assert!(encode_values(&[(Metric::Cpu, f64::NAN)]).is_err());
        assert!(decode_values(r#"{"gpu":1}"#).unwrap_err().contains("unknown metric \"gpu\""));
        assert!(decode_values(r#"{"cpu":"high"}"#).is_err());
    }

    #[test]
    fn tags_round_trip() {
        let tags: BTreeMap<String, String> =
            [("pid".to_string(), "42".to_string()), ("odd \"key\"".to_string(), "ü\n".to_string())].into();
        assert_eq!(decode_tags(&encode_tags(&tags)).unwrap(), tags);
        assert!(decode_tags(r#"{"pid":42}"#).is_err());
    }
}
