//! Files in the shape of the libvirt autoscaler design (seed 004): `version: v1`, `scaling.databases`,
//! `hostGroups`, `autoscalingGroups`. They are translated into Flotilla's own schema and then go
//! through the same checks, so a problem is reported at its place in the seed-shaped file.
//!
//! | seed 004 | Flotilla |
//! |---|---|
//! | `hostGroups.G: [uri, ...]` | `provider.libvirt.hosts` (named `G-1`, `G-2`, ...) |
//! | `databases.metrics.interval` (or top-level `metrics.interval`) | every group's `interval` |
//! | `databases.metrics.trailing` | `min_up` = `min_down` = trailing / interval samples |
//! | `autoscalingGroups.NAME` | `groups[i]`, `name: NAME`, scale mode |
//! | `image.name` (a qcow2 path) + Flotilla's `image.kernel/initrd/domainXml` | `template.libvirt` |
//! | `cloud-init.inline` / `cloud-init.file` | `template.libvirt.user_data` / `user_data_file` |
//! | `networking.addresses/subnet/gateway` (or Flotilla's `networking.ports`) | `provider.libvirt.addresses` / `ports` |
//! | `scaling.minNodes/maxNodes/increment/cooldown` | `min`, `max`, `increment`, both cooldowns |
//! | `scaling.metrics.cpu/memory` | a threshold policy: `high`, metric `cpu`, `mem` or `max` |
//! | `replacement.strategy: rollingupdate`, `maxUnavailable` | `replacement: rolling`, `max_unavailable` |
//! | a `flotilla:` mapping (top level or per group) | merged as is (e.g. `balancer`, `metrics`, `state_dir`) |
//!
//! Parts that are read but do not apply become warnings: the MySQL state store (Flotilla keeps its
//! state in its own store), the InfluxDB metrics store, `evaluate`, `imageMigration`, `retention`,
//! the `io` threshold. Anything else unknown is an error, as in Flotilla's own files.

use serde_yaml::{Mapping, Value};

use super::locate::{render, Seg, Target};
use super::Problem;

/// The translated file: Flotilla's schema, warnings, and where each translated field came from.
pub(crate) struct Translated {
    pub value: Value,
    pub warnings: Vec<Problem>,
    /// (path in the translated file, path in the seed file); longest prefix wins.
    pub origins: Vec<(String, Vec<Seg>)>,
}

/// True when the document is seed-004 shaped (a top-level `version`).
pub(crate) fn is_seed004(v: &Value) -> bool {
    v.as_mapping().is_some_and(|m| m.contains_key("version"))
}

fn k(s: &str) -> Seg {
    Seg::Key(s.to_string())
}

fn path(base: &[Seg], more: &[&str]) -> Vec<Seg> {
    base.iter().cloned().chain(more.iter().map(|s| k(s))).collect()
}

/// A host group: its name, its hosts as (name, uri), and where it is in the file.
type HostGroup = (String, Vec<(String, String)>, Vec<Seg>);

struct Tx {
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
    origins: Vec<(String, Vec<Seg>)>,
}

impl Tx {
    fn error(&mut self, at: Vec<Seg>, message: impl Into<String>) {
        self.problems.push(Problem::new(at, Target::Value, message));
    }
    fn unknown(&mut self, at: Vec<Seg>, known: &str) {
        let name = match at.last() {
            Some(Seg::Key(k)) => k.clone(),
            _ => String::new(),
        };
        self.problems.push(Problem::new(at, Target::Key, format!("unknown field `{name}`, expected one of {known}")));
    }
    fn warn(&mut self, at: Vec<Seg>, message: impl Into<String>) {
        self.warnings.push(Problem::new(at, Target::Value, message));
    }
    fn origin(&mut self, ours: impl Into<String>, theirs: Vec<Seg>) {
        self.origins.push((ours.into(), theirs));
    }

    /// The mapping at `at`, or an error naming it.
    fn mapping<'v>(&mut self, v: &'v Value, at: &[Seg]) -> Option<&'v Mapping> {
        match v {
            Value::Mapping(m) => Some(m),
            _ => {
                self.error(at.to_vec(), "must be a mapping");
                None
            }
        }
    }

    /// `m.key` as a mapping with its path, its keys checked against `known`; None when absent or
    /// not a mapping (reported).
    fn section(&mut self, m: &Mapping, at: &[Seg], key: &str, known: &[&str]) -> Option<(Mapping, Vec<Seg>)> {
        let sat = path(at, &[key]);
        let sec = self.mapping(m.get(key)?, &sat)?.clone();
        if !known.is_empty() {
            self.keys(&sec, &sat, known);
        }
        Some((sec, sat))
    }

    /// The renames of one section: each `(theirs, ours)` present in `src` is copied to `dst` and
    /// remembered as coming from its place, so a problem with it is reported there.
    fn copy(&mut self, src: &Mapping, at: &[Seg], renames: &[(&str, &str)], dst: &mut Mapping, ours: &str) {
        for (theirs, mine) in renames {
            if let Some(v) = src.get(*theirs) {
                dst.insert((*mine).into(), v.clone());
                self.origin(format!("{ours}{mine}"), path(at, &[theirs]));
            }
        }
    }

    /// A `flotilla:` mapping under `m`, merged into `out` as it is.
    fn merge_flotilla(&mut self, m: &Mapping, at: &[Seg], out: &mut Mapping, ours: &str) {
        let Some((extra, eat)) = self.section(m, at, "flotilla", &[]) else { return };
        for (key, v) in extra {
            let name = key.as_str().unwrap_or("").to_string();
            self.origin(format!("{ours}{name}"), path(&eat, &[&name]));
            merge_into(out, key, v);
        }
    }

    /// Checks `m`'s keys against `known`; reports the others.
    fn keys(&mut self, m: &Mapping, at: &[Seg], known: &[&str]) {
        for key in m.keys() {
            let name = key.as_str().unwrap_or("");
            if !known.contains(&name) {
                let list = known.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
                self.unknown(path(at, &[name]), &list);
            }
        }
    }
}

fn get<'v>(m: &'v Mapping, key: &str) -> Option<&'v Value> {
    m.get(key)
}

/// Translates a seed-004 document (already known to be one) into Flotilla's schema.
pub(crate) fn translate(doc: &Value) -> Result<Translated, Vec<Problem>> {
    let mut tx = Tx { problems: Vec::new(), warnings: Vec::new(), origins: Vec::new() };
    let root = doc.as_mapping().cloned().unwrap_or_default();
    tx.keys(&root, &[], &["version", "scaling", "hostGroups", "autoscalingGroups", "metrics", "flotilla"]);
    match get(&root, "version").and_then(Value::as_str) {
        Some("v1") => {}
        _ => tx.error(vec![k("version")], "only `v1` is supported"),
    }
    // `hostGroups`, `autoscalingGroups` and `databases` may sit under `scaling` (as in the design) or
    // at the top level.
    let scaling = get(&root, "scaling").cloned().unwrap_or(Value::Mapping(Mapping::new()));
    let scaling_m = tx.mapping(&scaling, &[k("scaling")]).cloned().unwrap_or_default();
    tx.keys(&scaling_m, &[k("scaling")], &["databases", "hostGroups", "autoscalingGroups"]);
    let find = |key: &str| -> Option<(Value, Vec<Seg>)> {
        get(&scaling_m, key)
            .map(|v| (v.clone(), vec![k("scaling"), k(key)]))
            .or_else(|| get(&root, key).map(|v| (v.clone(), vec![k(key)])))
    };

    let mut out = Mapping::new();
    let mut interval: Option<(String, Vec<Seg>)> = None;
    let mut trailing: Option<(String, Vec<Seg>)> = None;

    // Databases: state and metrics stores are Flotilla's own.
    if let Some((dbs, at)) = find("databases") {
        if let Some(dbs) = tx.mapping(&dbs, &at).cloned() {
            tx.keys(&dbs, &at, &["state", "metrics"]);
            if let Some(state) = get(&dbs, "state") {
                let kind = state["store"]["type"].as_str().unwrap_or("").to_string();
                if !kind.is_empty() && kind != "sqlite" && kind != "local" {
                    tx.warn(
                        path(&at, &["state", "store", "type"]),
                        format!("a {kind} state store does not apply: Flotilla keeps its state in its SQLite store"),
                    );
                }
            }
            if let Some((m, mat)) = tx.section(&dbs, &at, "metrics", &["store", "interval", "evaluate", "trailing"]) {
                let kind = m.get("store").map(|s| s["type"].as_str().unwrap_or("").to_string()).unwrap_or_default();
                if !kind.is_empty() && kind != "local" {
                    tx.warn(
                        path(&mat, &["store", "type"]),
                        format!("a {kind} metrics store does not apply: samples are kept in Flotilla's store"),
                    );
                }
                read_timing(&mut tx, &m, &mat, &mut interval, &mut trailing);
            }
        }
    }
    if let Some((m, mat)) = tx.section(&root, &[], "metrics", &["interval", "evaluate", "trailing"]) {
        read_timing(&mut tx, &m, &mat, &mut interval, &mut trailing);
    }

    // Host groups → the libvirt provider's hosts.
    let mut host_groups: Vec<HostGroup> = Vec::new();
    if let Some((hg, at)) = find("hostGroups") {
        if let Some(hg) = tx.mapping(&hg, &at).cloned() {
            for (name, uris) in &hg {
                let name = name.as_str().unwrap_or("").to_string();
                let gat = path(&at, &[&name]);
                let Some(list) = uris.as_sequence() else {
                    tx.error(gat, "must be a list of libvirt URIs");
                    continue;
                };
                let hosts = list
                    .iter()
                    .enumerate()
                    .map(|(i, u)| (format!("{name}-{}", i + 1), u.as_str().unwrap_or("").to_string()))
                    .collect();
                host_groups.push((name, hosts, gat));
            }
        }
    } else {
        tx.error(vec![k("hostGroups")], "at least one host group is required");
    }

    // Autoscaling groups.
    let mut groups = Vec::new();
    let mut provider_libvirt = Mapping::new();
    let mut pool_from: Option<(Value, Vec<Seg>)> = None;
    let mut used_host_group: Option<String> = None;
    if let Some((asgs, at)) = find("autoscalingGroups") {
        if let Some(asgs) = tx.mapping(&asgs, &at).cloned() {
            for (i, (name, g)) in asgs.iter().enumerate() {
                let name = name.as_str().unwrap_or("").to_string();
                let gat = path(&at, &[&name]);
                let Some(g) = tx.mapping(g, &gat).cloned() else { continue };
                let ours = format!("groups[{i}]");
                tx.origin(ours.clone(), gat.clone());
                let group = translate_group(&mut tx, &name, &g, &gat, &ours, interval.as_ref(), trailing.as_ref());
                // One host group and one address pool are shared by all groups.
                match get(&g, "hostGroup").and_then(Value::as_str) {
                    Some(hg) if !host_groups.iter().any(|(n, _, _)| n == hg) => {
                        tx.error(path(&gat, &["hostGroup"]), format!("no host group `{hg}` in hostGroups"))
                    }
                    Some(hg) => match &used_host_group {
                        Some(prev) if prev != hg => tx.error(
                            path(&gat, &["hostGroup"]),
                            format!("all groups must use one host group in this version (`{prev}` and `{hg}`)"),
                        ),
                        _ => used_host_group = Some(hg.to_string()),
                    },
                    None => {}
                }
                if let Some(net) = get(&g, "networking") {
                    match &pool_from {
                        Some((prev, prev_at)) if prev != net => tx.error(
                            path(&gat, &["networking"]),
                            format!(
                                "all groups share one address pool in this version: this differs from {}",
                                render(prev_at)
                            ),
                        ),
                        Some(_) => {}
                        None => pool_from = Some((net.clone(), path(&gat, &["networking"]))),
                    }
                }
                groups.push(group);
            }
        }
    } else {
        tx.error(vec![k("autoscalingGroups")], "at least one autoscaling group is required");
    }

    let chosen = used_host_group.or_else(|| host_groups.first().map(|(n, _, _)| n.clone()));
    if let Some((_, hosts, at)) = host_groups.iter().find(|(n, _, _)| Some(n) == chosen.as_ref()) {
        let list: Vec<Value> = hosts
            .iter()
            .map(|(name, uri)| {
                let mut h = Mapping::new();
                h.insert("name".into(), name.clone().into());
                h.insert("uri".into(), uri.clone().into());
                Value::Mapping(h)
            })
            .collect();
        provider_libvirt.insert("hosts".into(), Value::Sequence(list));
        tx.origin("provider.libvirt.hosts", at.clone());
    }
    if let Some((net, at)) = &pool_from {
        translate_networking(&mut tx, net, at, &mut provider_libvirt);
    }

    let mut provider = Mapping::new();
    provider.insert("kind".into(), "libvirt".into());
    provider.insert("libvirt".into(), Value::Mapping(provider_libvirt));
    out.insert("provider".into(), Value::Mapping(provider));
    out.insert("groups".into(), Value::Sequence(groups));

    // Flotilla-only settings, merged as they are.
    tx.merge_flotilla(&root, &[], &mut out, "");

    if tx.problems.is_empty() {
        Ok(Translated { value: Value::Mapping(out), warnings: tx.warnings, origins: tx.origins })
    } else {
        Err(tx.problems)
    }
}

/// Inserts `v` at `key`, merging mappings one level deep (a `flotilla.provider.libvirt.ports`
/// adds to the translated provider section instead of replacing it).
fn merge_into(out: &mut Mapping, key: Value, v: Value) {
    match (out.get_mut(&key), v) {
        (Some(Value::Mapping(cur)), Value::Mapping(add)) => {
            for (k2, v2) in add {
                merge_into(cur, k2, v2);
            }
        }
        (_, v) => {
            out.insert(key, v);
        }
    }
}

fn read_timing(
    tx: &mut Tx,
    m: &Mapping,
    at: &[Seg],
    interval: &mut Option<(String, Vec<Seg>)>,
    trailing: &mut Option<(String, Vec<Seg>)>,
) {
    if let Some(v) = m.get("interval").and_then(Value::as_str) {
        *interval = Some((v.to_string(), path(at, &["interval"])));
    }
    if let Some(v) = m.get("trailing").and_then(Value::as_str) {
        *trailing = Some((v.to_string(), path(at, &["trailing"])));
    }
    if m.contains_key("evaluate") {
        tx.warn(
            path(at, &["evaluate"]),
            "does not apply: Flotilla evaluates every sample as it arrives (the streak length comes from `trailing`)",
        );
    }
}

#[allow(clippy::too_many_arguments)]
fn translate_group(
    tx: &mut Tx,
    name: &str,
    g: &Mapping,
    at: &[Seg],
    ours: &str,
    interval: Option<&(String, Vec<Seg>)>,
    trailing: Option<&(String, Vec<Seg>)>,
) -> Value {
    tx.keys(g, at, &["image", "cloud-init", "hostGroup", "replacement", "networking", "scaling", "flotilla"]);
    let mut out = Mapping::new();
    out.insert("name".into(), name.into());
    out.insert("mode".into(), "scale".into());

    // Timing: interval and the streak length.
    let mut samples: Option<u64> = None;
    if let Some((iv, iat)) = interval {
        out.insert("interval".into(), iv.clone().into());
        tx.origin(format!("{ours}.interval"), iat.clone());
        match (humantime::parse_duration(iv), trailing) {
            (Ok(ivd), Some((tr, tat))) => match humantime::parse_duration(tr) {
                Ok(trd) if trd >= ivd && !ivd.is_zero() => samples = Some((trd.as_millis() / ivd.as_millis()) as u64),
                Ok(_) => tx.error(tat.clone(), format!("trailing ({tr}) must be at least interval ({iv})")),
                Err(e) => tx.error(tat.clone(), format!("not a duration: {e}")),
            },
            (Err(e), _) => tx.error(iat.clone(), format!("not a duration: {e}")),
            _ => {}
        }
    }

    // Scaling.
    let mut policy = Mapping::new();
    policy.insert("kind".into(), "threshold".into());
    let scaling_keys = ["minNodes", "maxNodes", "increment", "cooldown", "metrics"];
    if let Some((s, sat)) = tx.section(g, at, "scaling", &scaling_keys) {
        const RENAMES: [(&str, &str); 5] = [
            ("minNodes", "min"),
            ("maxNodes", "max"),
            ("increment", "increment"),
            ("cooldown", "cooldown_up"),
            ("cooldown", "cooldown_down"),
        ];
        tx.copy(&s, &sat, &RENAMES, &mut out, &format!("{ours}."));
        if let Some((m, mat)) = tx.section(&s, &sat, "metrics", &["cpu", "memory", "io"]) {
            if m.contains_key("io") {
                tx.warn(path(&mat, &["io"]), "an io threshold is not evaluated: cpu and memory are");
            }
            let (cpu, mem) = (m.get("cpu").cloned(), m.get("memory").cloned());
            let (metric, high, from) = match (&cpu, &mem) {
                (Some(c), Some(me)) if c == me => ("max", c.clone(), "cpu"),
                (Some(_), Some(_)) => {
                    tx.error(
                        path(&mat, &["memory"]),
                        "cpu and memory thresholds must be equal (Flotilla scales on the larger of the two)",
                    );
                    ("max", Value::Null, "cpu")
                }
                (Some(c), None) => ("cpu", c.clone(), "cpu"),
                (None, Some(me)) => ("mem", me.clone(), "memory"),
                (None, None) => ("max", 80.into(), "cpu"),
            };
            policy.insert("metric".into(), metric.into());
            policy.insert("high".into(), high);
            tx.origin(format!("{ours}.policy.high"), path(&mat, &[from]));
        }
    }
    if let Some(n) = samples {
        for key in ["min_up", "min_down"] {
            policy.insert(key.into(), n.max(1).into());
            if let Some((_, tat)) = trailing {
                tx.origin(format!("{ours}.policy.{key}"), tat.clone());
            }
        }
    }
    out.insert("policy".into(), Value::Mapping(policy));

    // Template.
    let mut libvirt = Mapping::new();
    let libvirt_at = format!("{ours}.template.libvirt.");
    if g.contains_key("image") {
        let image_keys = ["name", "imageMigration", "retention", "kernel", "initrd", "domainXml"];
        if let Some((img, iat)) = tx.section(g, at, "image", &image_keys) {
            const RENAMES: [(&str, &str); 4] =
                [("name", "image"), ("kernel", "kernel"), ("initrd", "initrd"), ("domainXml", "domain_xml")];
            tx.copy(&img, &iat, &RENAMES, &mut libvirt, &libvirt_at);
            for key in ["imageMigration", "retention"] {
                if img.contains_key(key) {
                    tx.warn(
                        path(&iat, &[key]),
                        "does not apply: each host needs the image at the same path; members are overlays on it",
                    );
                }
            }
        }
    } else {
        tx.error(at.to_vec(), "missing field `image`");
    }
    if let Some((ci, cat)) = tx.section(g, at, "cloud-init", &["inline", "file"]) {
        tx.copy(&ci, &cat, &[("inline", "user_data"), ("file", "user_data_file")], &mut libvirt, &libvirt_at);
    }
    let mut template = Mapping::new();
    template.insert("libvirt".into(), Value::Mapping(libvirt));
    out.insert("template".into(), Value::Mapping(template));
    tx.origin(format!("{ours}.template"), at.to_vec());

    // Replacement.
    if let Some((r, rat)) = tx.section(g, at, "replacement", &["strategy", "maxUnavailable"]) {
        let mut rep = Mapping::new();
        match r.get("strategy").and_then(Value::as_str) {
            Some("rollingupdate") | Some("rolling") | None => {
                rep.insert("strategy".into(), "rolling".into());
            }
            Some("none") => {
                rep.insert("strategy".into(), "none".into());
            }
            Some(other) => tx.error(
                path(&rat, &["strategy"]),
                format!("unknown strategy `{other}`, expected `rollingupdate` or `none`"),
            ),
        }
        tx.copy(&r, &rat, &[("maxUnavailable", "max_unavailable")], &mut rep, &format!("{ours}.replacement."));
        out.insert("replacement".into(), Value::Mapping(rep));
    }

    // Flotilla-only group settings (e.g. `balancer`).
    tx.merge_flotilla(g, at, &mut out, &format!("{ours}."));
    Value::Mapping(out)
}

fn translate_networking(tx: &mut Tx, net: &Value, at: &[Seg], provider: &mut Mapping) {
    let Some(n) = tx.mapping(net, at).cloned() else { return };
    tx.keys(&n, at, &["addresses", "subnet", "gateway", "ports", "bridge", "dns"]);
    tx.copy(&n, at, &[("ports", "ports")], provider, "provider.libvirt.");
    if n.contains_key("addresses") {
        let mut pool = Mapping::new();
        const SAME: [(&str, &str); 5] = [
            ("addresses", "addresses"),
            ("subnet", "subnet"),
            ("gateway", "gateway"),
            ("bridge", "bridge"),
            ("dns", "dns"),
        ];
        tx.copy(&n, at, &SAME, &mut pool, "provider.libvirt.addresses.");
        provider.insert("addresses".into(), Value::Mapping(pool));
        tx.origin("provider.libvirt.addresses", at.to_vec());
    }
}

/// Where a translated path came from in the seed file: the longest recorded prefix.
pub(crate) fn origin_of(origins: &[(String, Vec<Seg>)], ours: &str) -> Option<Vec<Seg>> {
    origins
        .iter()
        .filter(|(p, _)| ours == p || ours.starts_with(&format!("{p}.")) || ours.starts_with(&format!("{p}[")))
        .max_by_key(|(p, _)| p.len())
        .map(|(_, theirs)| theirs.clone())
}
