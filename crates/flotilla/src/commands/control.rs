//! `flotilla group …` and `flotilla member …`: the operator's controls from a shell. Through the
//! running daemon's API when there is one (it validates, records the event and acts at once); with
//! none, the controls that are plain settings (pause, resume, dry-run, protect, unprotect) are saved
//! in the store, where the daemon finds them when it starts. One-shot actions need a daemon.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;
use flotilla_model::{Clock, Event, EventKind, GroupControls, GroupId, InstanceId, Store, SystemClock};
use reqwest::Method;
use serde_json::{json, Value};

use crate::cli::{DaemonArgs, GroupCommand, MemberCommand};
use crate::daemon::{self, Target};
use crate::wiring;

/// A control's change, applied to the stored controls when no daemon runs.
type Change = Box<dyn FnOnce(&mut GroupControls) + Send>;

/// What one verb asks: its API call, and its offline form if it has one.
struct Ask {
    group: String,
    daemon: DaemonArgs,
    method: Method,
    path: String,
    body: Option<Value>,
    /// What it is, for messages and the offline event (`pause`, `protect web_1`).
    what: String,
    offline: Option<Change>,
    /// The member the offline form needs to exist (protect).
    member: Option<String>,
}

pub async fn group(state_flag: Option<&Path>, cmd: GroupCommand) -> anyhow::Result<ExitCode> {
    let ask = match cmd {
        GroupCommand::Pause(a) => Ask {
            path: format!("/groups/{}/pause", a.group),
            method: Method::POST,
            body: None,
            what: "pause".into(),
            offline: Some(Box::new(|c| c.paused = true)),
            member: None,
            group: a.group,
            daemon: a.daemon,
        },
        GroupCommand::Resume(a) => Ask {
            path: format!("/groups/{}/resume", a.group),
            method: Method::POST,
            body: None,
            what: "resume".into(),
            offline: Some(Box::new(|c| c.paused = false)),
            member: None,
            group: a.group,
            daemon: a.daemon,
        },
        GroupCommand::DryRun { group, state, daemon } => {
            let on = state == "on";
            Ask {
                path: format!("/groups/{group}/dry-run"),
                method: Method::PUT,
                body: Some(json!({ "enabled": on })),
                what: format!("dry-run {state}"),
                offline: Some(Box::new(move |c| c.dry_run = on)),
                member: None,
                group,
                daemon,
            }
        }
        GroupCommand::Desired { group, desired, daemon } => Ask {
            path: format!("/groups/{group}/desired"),
            method: Method::PUT,
            body: Some(json!({ "desired": desired })),
            what: format!("desired {desired}"),
            offline: None,
            member: None,
            group,
            daemon,
        },
    };
    carry_out(state_flag, ask).await
}

pub async fn member(state_flag: Option<&Path>, cmd: MemberCommand) -> anyhow::Result<ExitCode> {
    let (verb, a) = match cmd {
        MemberCommand::Protect(a) => ("protect", a),
        MemberCommand::Unprotect(a) => ("unprotect", a),
        MemberCommand::Drain(a) => ("drain", a),
        MemberCommand::Replace(a) => ("replace", a),
    };
    let id = InstanceId::new(a.member.clone());
    let offline: Option<Change> = match verb {
        "protect" => Some(Box::new(move |c| {
            c.protected.insert(id);
        })),
        "unprotect" => Some(Box::new(move |c| {
            c.protected.remove(&id);
        })),
        _ => None,
    };
    let ask = Ask {
        path: format!("/groups/{}/members/{}/{verb}", a.group, a.member),
        method: Method::POST,
        body: None,
        what: format!("{verb} {}", a.member),
        offline,
        member: (verb == "protect").then(|| a.member.clone()),
        group: a.group,
        daemon: a.daemon,
    };
    carry_out(state_flag, ask).await
}

async fn carry_out(state_flag: Option<&Path>, ask: Ask) -> anyhow::Result<ExitCode> {
    for (field, v) in [("GROUP", &ask.group), ("MEMBER", ask.member.as_ref().unwrap_or(&"x".to_string()))] {
        if v.is_empty() || v.len() > 200 || v.contains(['/', '?', '#', '%']) || v.chars().any(char::is_control) {
            return Err(crate::UsageError(format!("{field}: {v:?} is not a name")).into());
        }
    }
    let state_dir = crate::state_dir::resolve(state_flag, None);
    match daemon::find(&state_dir, &ask.daemon)? {
        Target::Daemon(d) => {
            let answer: Value = d.call(ask.method, &ask.path, ask.body).await?;
            let queued = answer.get("request").and_then(Value::as_str);
            match queued {
                Some(r) => {
                    println!("{}: queued: {r} (carried out at the group's next pass; see `flotilla status`)", ask.group)
                }
                None => println!("{}: {} done", ask.group, ask.what),
            }
            Ok(ExitCode::SUCCESS)
        }
        Target::Offline(_claim) => {
            let Some(change) = ask.offline else {
                bail!(
                    "no daemon runs on {}: `{}` is carried out by a running daemon (`flotilla run` with an `api:` \
                     section, or --api URL)",
                    state_dir.display(),
                    ask.what
                );
            };
            let (store, _) = wiring::store_and_provider(&state_dir, None)?;
            let group = GroupId::new(ask.group.clone());
            offline(store.as_ref(), &group, &ask.what, ask.member.as_deref(), change).await?;
            println!(
                "{}: {} saved in {} (no daemon runs; it applies when one starts)",
                ask.group,
                ask.what,
                state_dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The control saved in the store, with the event the daemon would have recorded.
async fn offline(
    store: &dyn Store,
    group: &GroupId,
    what: &str,
    member: Option<&str>,
    change: Change,
) -> anyhow::Result<()> {
    if !store.groups().await?.contains(group) {
        return Err(crate::UsageError(format!("GROUP: no group `{group}` in this state directory")).into());
    }
    if let Some(m) = member {
        if !store.instances(group).await?.iter().any(|i| i.id.as_str() == m) {
            return Err(crate::UsageError(format!("MEMBER: no member `{m}` in group `{group}`")).into());
        }
    }
    let mut controls = store.controls(group).await?;
    change(&mut controls);
    store.save_controls(group, &controls).await?;
    let message = format!("operator (offline): {what}");
    store
        .record_event(&Event {
            at: SystemClock.now(),
            group: group.clone(),
            kind: EventKind::Info,
            message,
            data: None,
        })
        .await?;
    Ok(())
}
