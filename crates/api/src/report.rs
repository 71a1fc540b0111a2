//! What the store knows about the groups, for people (text: `flotilla status`) and programs (JSON:
//! `flotilla status --output json` and the API). These structs are the JSON contract, so they, not
//! the model types, carry the serde derives and the OpenAPI schemas.

use std::collections::BTreeMap;
use std::fmt::Write;

use flotilla_model::{GroupId, Metric, OpState, Store, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StatusReport {
    pub groups: Vec<GroupReport>,
    /// The provider's hosts, when status was given the config (`--config`) and the provider has
    /// hosts (libvirt); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hosts: Option<Vec<HostReport>>,
}

/// One provider host as the provider saw it just now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HostReport {
    pub name: String,
    pub uri: String,
    /// Connected, and listing its domains worked.
    pub up: bool,
    /// Why it is down (the last error), if it is.
    pub last_error: Option<String>,
    /// Flotilla's members on it (all groups): listed live when it is up; when it is down, the ones
    /// it held at its last listing or whose records name it, unreachable until it is back.
    pub members: usize,
    /// Their names, sorted.
    pub member_names: Vec<String>,
    /// `QEMU`, `TEST`, ... once connected.
    pub driver: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GroupReport {
    pub name: String,
    /// The configured shape and the last decision: from a running daemon (the API) only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live: Option<LiveReport>,
    /// Operator controls (the API's pause, dry-run).
    pub paused: bool,
    pub dry_run: bool,
    /// An operator's request waiting for the group's next pass (`desired 3`, `drain web_2`).
    pub request: Option<String>,
    /// An operator's rolling replacement in progress: members created before this are replaced.
    pub replace_before_ms: Option<u64>,
    pub primary: Option<String>,
    pub members: Vec<MemberReport>,
    pub up_count: u32,
    pub down_count: u32,
    pub last_scale_out_ms: Option<u64>,
    pub last_scale_in_ms: Option<u64>,
    pub pending_operation: Option<String>,
    pub events: Vec<EventReport>,
}

/// What only a running daemon knows of a group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LiveReport {
    /// `scale` or `handover`.
    pub mode: String,
    pub min: u32,
    pub max: u32,
    /// `threshold`, `target` or `requests`.
    pub policy: String,
    /// What the policy watches and the lines it acts at (for charts).
    pub scaling: ScalingReport,
    /// Members that count against min and max now (running, unknown, creating).
    pub size: u32,
    pub last_decision: Option<DecisionReport>,
    /// Why the last pass failed, if it did.
    pub last_error: Option<String>,
}

/// The policy's metric, how members' values combine, and its lines.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScalingReport {
    /// `cpu`, `mem`, `max` (of cpu and mem), `rps`, or `requests` (within the window).
    pub metric: String,
    /// `mean`, `max` or `sum`: how members' values make the group's value.
    pub combine: String,
    /// Threshold: scale out at or above.
    pub high: Option<f64>,
    /// Threshold: scale in at or below.
    pub low: Option<f64>,
    /// Target tracking: the per-member value kept; request count: the trigger.
    pub target: Option<f64>,
}

/// One decision of the core, with the numbers behind it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DecisionReport {
    pub at_ms: u64,
    /// `hold`, `scale-out`, `scale-in`, `handover` or `replace`.
    pub outcome: String,
    /// For an action: why; for a hold: the hold's reason (`steady`, `cooldown`, ...).
    pub reason: String,
    /// The value the policy compared, if it had one.
    pub value: Option<f64>,
    pub cpu: Option<f64>,
    pub mem: Option<f64>,
    /// Target tracking: the member count the value asks for.
    pub desired: Option<u32>,
    /// Running members with a fresh sample / running members.
    pub sampled: u32,
    pub running: u32,
    pub up_count: u32,
    pub down_count: u32,
    /// The decision's numbers in one line, as the daemon logs them.
    pub summary: String,
    /// What each running member reported, and how old each reading was.
    pub inputs: Vec<InputReport>,
    /// Set while paused or in dry run: the action not taken (`paused: scale out by 1`).
    pub held_back: Option<String>,
}

/// One running member's readings at the decision.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct InputReport {
    pub member: String,
    /// Fresh enough to count (younger than the group's `stale_after`).
    pub fresh: bool,
    pub values: Vec<ReadingReport>,
}

/// One reading: `cpu`, `mem`, `rps`, ...
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReadingReport {
    pub metric: String,
    pub value: f64,
    pub age_ms: u64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MemberReport {
    pub name: String,
    pub state: String,
    /// Never picked as a victim (the API's protect).
    pub protected: bool,
    pub address: Option<String>,
    pub created_at_ms: u64,
    pub cpu: Option<f64>,
    pub mem: Option<f64>,
    /// Requests per second the balancer sent it (its share of the group's traffic).
    pub rps: Option<f64>,
    /// Failing the balancer's health check since then (from a running daemon only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failing_since_ms: Option<u64>,
    /// Its last check-in (groups with `checkin`; from a running daemon only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_in_ms: Option<u64>,
    /// Whether that check-in said it serves.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked_in_ok: Option<bool>,
    pub sampled_at_ms: Option<u64>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventReport {
    pub at_ms: u64,
    pub kind: String,
    pub message: String,
    /// Its machine-readable detail, when it has one: for a decision, what it saw (each member's
    /// readings with their ages), the numbers it compared, the bounds and cooldown, the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
}

impl From<flotilla_model::Event> for EventReport {
    fn from(e: flotilla_model::Event) -> Self {
        EventReport {
            at_ms: e.at.as_millis(),
            kind: e.kind.as_str().into(),
            message: e.message,
            // Unreadable detail (never written by this build) is left out rather than failing the read.
            data: e.data.and_then(|d| serde_json::from_str(&d).ok()),
        }
    }
}

/// Every group the store knows.
pub async fn collect(store: &dyn Store, events: usize) -> Result<StatusReport, flotilla_model::SeamError> {
    let pending = store.unfinished_operations().await?;
    let mut groups = Vec::new();
    for g in store.groups().await? {
        groups.push(group_report(store, &g, events, &pending).await?);
    }
    Ok(StatusReport { groups, hosts: None })
}

/// One group, with its newest `events` events and whether an operation is pending.
pub async fn group_report(
    store: &dyn Store,
    g: &GroupId,
    events: usize,
    pending: &[flotilla_model::Operation],
) -> Result<GroupReport, flotilla_model::SeamError> {
    let samples = store.samples(g, 200).await?; // newest first
    let state = store.policy_state(g).await?;
    let controls = store.controls(g).await?;
    let mut members: Vec<MemberReport> = store
        .instances(g)
        .await?
        .into_iter()
        .map(|i| {
            let last = samples.iter().find(|s| s.instance == i.id);
            MemberReport {
                name: i.name.clone(),
                state: match i.state.reason().filter(|r| !r.is_empty()) {
                    Some(r) => format!("{} ({r})", i.state.as_str()),
                    None => i.state.as_str().to_string(),
                },
                protected: controls.protected.contains(&i.id),
                address: i.address.clone(),
                created_at_ms: i.created_at.as_millis(),
                cpu: last.and_then(|s| s.get(Metric::Cpu)),
                mem: last.and_then(|s| s.get(Metric::Mem)),
                rps: last.and_then(|s| s.get(Metric::RequestRate)),
                failing_since_ms: None,
                checked_in_ms: None,
                checked_in_ok: None,
                sampled_at_ms: last.map(|s| s.at.as_millis()),
                tags: i.tags.clone(),
            }
        })
        .collect();
    members.sort_by_key(|m| (m.created_at_ms, m.name.clone()));
    let pending_operation = pending.iter().find(|o| &o.group == g).map(|o| {
        debug_assert_eq!(o.state, OpState::Pending);
        format!("{} {} since {}", o.id, o.kind.as_str(), o.created_at)
    });
    Ok(GroupReport {
        name: g.to_string(),
        live: None,
        paused: controls.paused,
        dry_run: controls.dry_run,
        request: controls.request.as_ref().map(flotilla_model::OperatorRequest::text),
        replace_before_ms: controls.replace_before.map(Timestamp::as_millis),
        primary: store.primary(g).await?.map(|p| p.to_string()),
        members,
        up_count: state.up_count,
        down_count: state.down_count,
        last_scale_out_ms: state.last_scale_out.map(Timestamp::as_millis),
        last_scale_in_ms: state.last_scale_in.map(Timestamp::as_millis),
        pending_operation,
        events: store.events(Some(g), events).await?.into_iter().map(EventReport::from).collect(),
    })
}

pub fn render_text(report: &StatusReport) -> String {
    let mut out = String::new();
    if report.groups.is_empty() {
        out.push_str("no groups yet\n");
    }
    for h in report.hosts.iter().flatten() {
        let _ = writeln!(out, "{}", host_line(h));
    }
    let pct = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.1}%"));
    for g in &report.groups {
        let _ = writeln!(
            out,
            "group {} ({} member(s), primary {})",
            g.name,
            g.members.len(),
            g.primary.as_deref().unwrap_or("-")
        );
        if let Some(l) = &g.live {
            let _ = writeln!(
                out,
                "  {} mode, {} policy, {} counted (min {}, max {})",
                l.mode, l.policy, l.size, l.min, l.max
            );
        }
        let _ = writeln!(out, "  streaks: up {} down {}", g.up_count, g.down_count);
        if let Some(d) = g.live.as_ref().and_then(|l| l.last_decision.as_ref()) {
            let reason = if d.reason.is_empty() { String::new() } else { format!(" ({})", d.reason) };
            let _ = writeln!(
                out,
                "  last decision {}: {}{reason}: {}",
                Timestamp::from_millis(d.at_ms),
                d.outcome,
                d.summary
            );
        }
        if let Some(e) = g.live.as_ref().and_then(|l| l.last_error.as_ref()) {
            let _ = writeln!(out, "  last pass failed: {e}");
        }
        if let Some(r) = &g.request {
            let _ = writeln!(out, "  queued: {r}");
        }
        match (g.paused, g.dry_run) {
            (true, _) => out.push_str("  PAUSED by an operator: decides, acts on nothing\n"),
            (false, true) => out.push_str("  DRY RUN: decides and records what it would do, acts on nothing\n"),
            _ => {}
        }
        if let Some(op) = &g.pending_operation {
            let _ = writeln!(out, "  pending: {op}");
        }
        let _ = writeln!(out, "  {:<24} {:<10} {:<22} {:>7} {:>7}", "MEMBER", "STATE", "ADDRESS", "CPU", "MEM");
        for m in &g.members {
            let _ = writeln!(
                out,
                "  {:<24} {:<10} {:<22} {:>7} {:>7}",
                if m.protected { format!("{} (protected)", m.name) } else { m.name.clone() },
                m.state,
                m.address.as_deref().unwrap_or("-"),
                pct(m.cpu),
                pct(m.mem)
            );
        }
        if !g.events.is_empty() {
            let _ = writeln!(out, "  recent events:");
            for e in g.events.iter().rev() {
                let _ = writeln!(out, "    {} {:<11} {}", Timestamp::from_millis(e.at_ms), e.kind, e.message);
            }
        }
    }
    out
}

/// `host lab-1 qemu:///system up (2 members)` or
/// `host h2 qemu+ssh://h2/system DOWN: cannot connect: ... (1 member unreachable)`.
pub fn host_line(h: &HostReport) -> String {
    let n = h.members;
    let plural = if n == 1 { "member" } else { "members" };
    if h.up {
        format!("host {} {} up ({n} {plural})", h.name, h.uri)
    } else {
        let why = h.last_error.as_deref().unwrap_or("not reachable");
        let held = if n == 0 { "no member on it".to_string() } else { format!("{n} {plural} unreachable") };
        format!("host {} {} DOWN: {why} ({held})", h.name, h.uri)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(up: bool, members: usize, err: Option<&str>) -> HostReport {
        HostReport {
            name: if up { "lab-1".into() } else { "h2".into() },
            uri: if up { "qemu:///system".into() } else { "qemu+ssh://h2/system".into() },
            up,
            last_error: err.map(str::to_string),
            members,
            member_names: (1..=members).map(|i| format!("web_{i}")).collect(),
            driver: up.then(|| "QEMU".to_string()),
        }
    }

    #[test]
    fn host_lines_say_up_or_down_and_what_they_hold() {
        assert_eq!(host_line(&host(true, 2, None)), "host lab-1 qemu:///system up (2 members)");
        assert_eq!(host_line(&host(true, 1, None)), "host lab-1 qemu:///system up (1 member)");
        assert_eq!(
            host_line(&host(false, 1, Some("cannot connect: refused"))),
            "host h2 qemu+ssh://h2/system DOWN: cannot connect: refused (1 member unreachable)"
        );
        assert_eq!(
            host_line(&host(false, 0, None)),
            "host h2 qemu+ssh://h2/system DOWN: not reachable (no member on it)"
        );
    }

    #[test]
    fn hosts_are_in_the_text_and_only_in_the_json_when_asked_for() {
        let mut report = StatusReport { groups: Vec::new(), hosts: None };
        let json = serde_json::to_value(&report).unwrap();
        assert!(json.get("hosts").is_none(), "{json}");
        report.hosts = Some(vec![host(true, 2, None), host(false, 1, Some("refused"))]);
        let text = render_text(&report);
        assert!(text.contains("host lab-1 qemu:///system up (2 members)\n"), "{text}");
        assert!(text.contains("host h2 qemu+ssh://h2/system DOWN: refused (1 member unreachable)\n"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["hosts"][0]["members"], 2);
        assert_eq!(json["hosts"][1]["up"], false);
        assert_eq!(json["hosts"][1]["last_error"], "refused");
        assert_eq!(json["hosts"][1]["member_names"][0], "web_1");
    }
}
