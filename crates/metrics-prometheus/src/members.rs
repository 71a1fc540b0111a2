//! Which member a result element is about, and whether its value is believable.
//!
//! A value that cannot be trusted is left out, never replaced: the member then simply lacks that
//! metric this tick (missing data never scales in), where a zero would look like an idle member.

use std::collections::HashMap;

use flotilla_model::{Instance, Metric};

use crate::query::Series;
use crate::settings::{shown, MemberBy};

/// How far past 100 a percentage may go (rate extrapolation over a scrape window) before it is
/// refused rather than clamped to 100.
pub const PERCENT_OVERSHOOT: f64 = 5.0;
/// How far below 0 any value may be (floating-point noise of a subtraction) before it is refused
/// rather than clamped to 0.
pub const NEGATIVE_NOISE: f64 = 0.01;

/// One query's elements as member values.
#[derive(Debug, Default, PartialEq)]
pub struct Mapped {
    /// (index into the members, value): at most one per member, in result order.
    pub values: Vec<(usize, f64)>,
    /// Elements whose label value names no member (the query also covers other servers).
    pub unmatched: usize,
    /// Elements without the member label.
    pub unlabelled: usize,
    /// NaN or ±Inf values: no reading.
    pub not_finite: usize,
    /// Values outside the metric's bounds, (member index, value).
    pub out_of_bounds: Vec<(usize, f64)>,
    /// Label values that fit several members, or members named by several elements (the query does
    /// not aggregate by the label): those members get no value.
    pub ambiguous: Vec<String>,
}

/// Maps `series` to `members` by the value of `label` compared with the members' `by` field.
/// Fails only when the result is not per member at all: elements, none with `label`.
pub fn map_series(
    series: &[Series],
    label: &str,
    by: &MemberBy,
    members: &[Instance],
    metric: Metric,
) -> Result<Mapped, String> {
    let index = Index::new(by, members);
    let mut out = Mapped::default();
    // First which member each element is about, so a member named twice is known before any value.
    let mut found: Vec<(usize, f64)> = Vec::new();
    let mut times_named: HashMap<usize, u32> = HashMap::new();
    for s in series {
        let Some(key) = s.labels.get(label) else {
            out.unlabelled += 1;
            continue;
        };
        match index.find(key) {
            Found::One(m) => {
                found.push((m, s.value));
                *times_named.entry(m).or_default() += 1;
            }
            Found::None => out.unmatched += 1,
            Found::Several => out.ambiguous.push(format!("`{label}=\"{}\"` fits several members", shown(key))),
        }
    }
    for (m, value) in found {
        match times_named[&m] {
            1 => {}
            n => {
                let said = format!("member {} has {n} elements", members[m].name);
                if !out.ambiguous.contains(&said) {
                    out.ambiguous.push(said);
                }
                continue;
            }
        }
        if !value.is_finite() {
            out.not_finite += 1;
        } else if let Some(v) = sane(metric, value) {
            out.values.push((m, v));
        } else {
            out.out_of_bounds.push((m, value));
        }
    }
    if !series.is_empty() && out.unlabelled == series.len() {
        let names: Vec<&str> = series[0].labels.keys().map(String::as_str).collect();
        let has = if names.is_empty() { "no labels".to_string() } else { format!("labels {}", names.join(", ")) };
        return Err(format!(
            "no element has the label `{label}` (the first has {has}): keep it, e.g. `avg by ({label}) (...)`"
        ));
    }
    Ok(out)
}

/// The value if it is believable for `metric`: percentages within 0..=100, rates, counts and
/// latencies not negative; within [`PERCENT_OVERSHOOT`] and [`NEGATIVE_NOISE`] clamped instead.
pub fn sane(metric: Metric, v: f64) -> Option<f64> {
    if !v.is_finite() || v < -NEGATIVE_NOISE {
        return None;
    }
    match metric {
        Metric::Cpu | Metric::Mem | Metric::ErrorRate => (v <= 100.0 + PERCENT_OVERSHOOT).then(|| v.clamp(0.0, 100.0)),
        _ => Some(v.max(0.0)),
    }
}

enum Found {
    One(usize),
    Several,
    None,
}

/// Members by the field a label value is compared with; a key two members share finds neither.
struct Index<'a> {
    exact: HashMap<&'a str, Option<usize>>,
    /// For `address`: members by host alone, used when no address matches exactly.
    hosts: HashMap<&'a str, Option<usize>>,
}

impl<'a> Index<'a> {
    fn new(by: &MemberBy, members: &'a [Instance]) -> Self {
        fn add<'k>(map: &mut HashMap<&'k str, Option<usize>>, key: &'k str, i: usize) {
            map.entry(key).and_modify(|e| *e = None).or_insert(Some(i));
        }
        let mut index = Index { exact: HashMap::new(), hosts: HashMap::new() };
        for (i, m) in members.iter().enumerate() {
            let Some(key) = by.key_of(m).filter(|k| !k.is_empty()) else { continue };
            add(&mut index.exact, key, i);
            if *by == MemberBy::Address {
                add(&mut index.hosts, host_of(key), i);
            }
        }
        index
    }

    fn find(&self, key: &str) -> Found {
        let found = |hit: Option<&Option<usize>>| match hit {
            Some(Some(i)) => Found::One(*i),
            Some(None) => Found::Several,
            None => Found::None,
        };
        match found(self.exact.get(key)) {
            Found::None if !self.hosts.is_empty() => found(self.hosts.get(host_of(key))),
            f => f,
        }
    }
}

/// The host part of `host:port`, `[v6]:port` or a bare host.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use flotilla_model::{GroupId, Timestamp};

    use super::*;
    use crate::query::interpret;

    fn member(name: &str, server_id: &str, address: &str) -> Instance {
        let mut m = Instance::new(format!("id-{name}"), &GroupId::new("web"), Timestamp(1));
        m.name = name.into();
        m.tags.insert("server_id".into(), server_id.into());
        m.address = Some(address.into());
        m
    }

    fn members() -> Vec<Instance> {
        vec![member("web_1", "uuid-1", "10.0.0.1:8080"), member("web_2", "uuid-2", "10.0.0.2:8080")]
    }

    fn vector(elements: &[(&str, &str, &str)]) -> Vec<Series> {
        let result: Vec<String> = elements
            .iter()
            .map(|(label, key, value)| format!(r#"{{"metric":{{"{label}":"{key}"}},"value":[1712345678,"{value}"]}}"#))
            .collect();
        let body =
            format!(r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#, result.join(","));
        interpret(200, body.as_bytes()).unwrap()
    }

    fn by(s: &str) -> MemberBy {
        MemberBy::parse(s).unwrap()
    }

    #[test]
    fn tag_server_id_maps_nova_uuids_and_ignores_other_servers() {
        let s = vector(&[("server_id", "uuid-2", "40"), ("server_id", "uuid-1", "85"), ("server_id", "other", "99")]);
        let m = map_series(&s, "server_id", &by("tag:server_id"), &members(), Metric::Cpu).unwrap();
        assert_eq!(m.values, vec![(1, 40.0), (0, 85.0)]);
        assert_eq!(m.unmatched, 1);
        assert!(m.ambiguous.is_empty());
    }

    #[test]
    fn name_id_and_address() {
        let ms = members();
        let s = vector(&[("instance", "web_2", "3")]);
        assert_eq!(map_series(&s, "instance", &by("name"), &ms, Metric::RequestRate).unwrap().values, [(1, 3.0)]);
        let s = vector(&[("instance", "id-web_1", "3")]);
        assert_eq!(map_series(&s, "instance", &by("id"), &ms, Metric::RequestRate).unwrap().values, [(0, 3.0)]);
        // An exporter's `instance` has its own port: the host alone decides.
        let s = vector(&[("instance", "10.0.0.2:9100", "7"), ("instance", "10.0.0.1:8080", "5")]);
        assert_eq!(
            map_series(&s, "instance", &by("address"), &ms, Metric::Inflight).unwrap().values,
            [(1, 7.0), (0, 5.0)]
        );
        // Two members on one host: only the exact address tells them apart.
        let same_host = vec![member("a", "1", "127.0.0.1:4001"), member("b", "2", "127.0.0.1:4002")];
        let s = vector(&[("instance", "127.0.0.1:4002", "1"), ("instance", "127.0.0.1:9100", "2")]);
        let m = map_series(&s, "instance", &by("address"), &same_host, Metric::Inflight).unwrap();
        assert_eq!(m.values, [(1, 1.0)]);
        assert_eq!(m.ambiguous.len(), 1, "{:?}", m.ambiguous);
        assert_eq!(host_of("[::1]:9100"), "::1");
        assert_eq!(host_of("::1"), "::1");
        assert_eq!(host_of("h"), "h");
    }

    #[test]
    fn an_empty_result_gives_no_values() {
        let m = map_series(&[], "server_id", &by("tag:server_id"), &members(), Metric::Cpu).unwrap();
        assert_eq!(m, Mapped::default());
    }

    #[test]
    fn nan_and_out_of_bounds_values_are_missing_not_zero() {
        let s = vector(&[("server_id", "uuid-1", "NaN"), ("server_id", "uuid-2", "140")]);
        let m = map_series(&s, "server_id", &by("tag:server_id"), &members(), Metric::Cpu).unwrap();
        assert!(m.values.is_empty());
        assert_eq!((m.not_finite, m.out_of_bounds.clone()), (1, vec![(1, 140.0)]));
        let s = vector(&[("server_id", "uuid-1", "+Inf"), ("server_id", "uuid-2", "-2")]);
        let m = map_series(&s, "server_id", &by("tag:server_id"), &members(), Metric::RequestRate).unwrap();
        assert!(m.values.is_empty());
        assert_eq!((m.not_finite, m.out_of_bounds.len()), (1, 1));
    }

    #[test]
    fn bounds_per_metric() {
        assert_eq!(sane(Metric::Cpu, 101.5), Some(100.0), "clamped within the tolerance");
        assert_eq!(sane(Metric::Mem, -0.005), Some(0.0), "noise");
        assert_eq!(sane(Metric::Mem, -0.2), None);
        assert_eq!(sane(Metric::RequestRate, -1e-12), Some(0.0));
        assert_eq!(sane(Metric::Cpu, 106.0), None);
        assert_eq!(sane(Metric::ErrorRate, 250.0), None);
        assert_eq!(sane(Metric::LatencyP99, 1234.5), Some(1234.5));
        assert_eq!(sane(Metric::Requests, -1.0), None);
        assert_eq!(sane(Metric::Requests, f64::NAN), None);
    }

    #[test]
    fn a_vector_without_the_member_label_is_not_per_member() {
        let s = vector(&[("job", "lab", "85")]);
        let e = map_series(&s, "server_id", &by("tag:server_id"), &members(), Metric::Cpu).unwrap_err();
        assert!(e.contains("no element has the label `server_id` (the first has labels job)"), "{e}");
        assert!(e.contains("avg by (server_id)"), "{e}");
        // Some without it is fine: those are skipped.
        let s = vector(&[("job", "lab", "85"), ("server_id", "uuid-1", "20")]);
        let m = map_series(&s, "server_id", &by("tag:server_id"), &members(), Metric::Cpu).unwrap();
        assert_eq!((m.values.clone(), m.unlabelled), (vec![(0, 20.0)], 1));
    }

    #[test]
    fn a_member_named_twice_gets_no_value() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"server_id":"uuid-1","cpu":"0"},"value":[1,"10"]},
            {"metric":{"server_id":"uuid-2"},"value":[1,"30"]},
            {"metric":{"server_id":"uuid-1","cpu":"1"},"value":[1,"90"]},
            {"metric":{"server_id":"uuid-1","cpu":"2"},"value":[1,"50"]}]}}"#;
        let s = interpret(200, body.as_bytes()).unwrap();
        let m = map_series(&s, "server_id", &by("tag:server_id"), &members(), Metric::Cpu).unwrap();
        assert_eq!(m.values, [(1, 30.0)]);
        assert_eq!(m.ambiguous, ["member web_1 has 3 elements"]);
    }

    #[test]
    fn members_without_the_field_are_not_matched() {
        let mut ms = members();
        ms[0].tags.clear();
        ms[1].address = None;
        let s = vector(&[("server_id", "uuid-1", "5")]);
        let m = map_series(&s, "server_id", &by("tag:server_id"), &ms, Metric::Cpu).unwrap();
        assert_eq!((m.values.len(), m.unmatched), (0, 1));
    }
}
