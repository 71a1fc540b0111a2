//! `GET /api/v1/config`: what the daemon runs by. The file as written (secrets redacted, by
//! `flotilla_config::redact`) and each group as validated, with every default filled in, which is
//! what the decision core and the controller obey.

use axum::extract::State;
use axum::Json;
use flotilla_model::{GroupSpec, Mode, PolicySpec, Victim};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::Problem;
use crate::report::ScalingReport;
use crate::routes::Problems;
use crate::routes::S;

/// The configuration file the daemon loaded.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    pub file: String,
    /// The file as JSON, secrets redacted.
    pub source: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EffectiveConfig {
    /// The file's path, if the daemon runs from one (the demo does not).
    pub file: Option<String>,
    /// The file as written, as JSON, with values whose key names a secret replaced by `<redacted>`.
    #[schema(value_type = Object)]
    pub source: serde_json::Value,
    /// Each group as validated, defaults filled in.
    pub groups: Vec<EffectiveGroup>,
    /// The API's own settings (token values are never shown).
    pub api: EffectiveApi,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EffectiveApi {
    pub listen: String,
    pub anonymous_read: bool,
    pub tokens: usize,
    pub tls: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EffectiveGroup {
    pub name: String,
    /// `scale` or `handover`.
    pub mode: String,
    pub min: u32,
    pub max: u32,
    /// Members added per scale-out.
    pub increment: u32,
    pub interval_ms: u64,
    pub cooldown_up_ms: u64,
    pub cooldown_down_ms: u64,
    pub stale_after_ms: u64,
    pub drain_timeout_ms: u64,
    /// `oldest`, `newest` or `least-busy`.
    pub victim: String,
    /// `threshold`, `target`, `requests` or `alarm`, with its parameters.
    pub policy: EffectivePolicy,
    pub scaling: ScalingReport,
    pub base_name: String,
    pub clone_base: String,
    pub vcpus: u32,
    /// What members are made from, as a fingerprint; empty: unversioned.
    pub template_version: String,
    /// Rolling replacement of outdated members: members replaced per batch; absent: never.
    pub rollout_max_unavailable: Option<u32>,
    /// Replacement of members failing their health check: (grace, after) in ms; absent: never.
    pub health_replace_grace_ms: Option<u64>,
    pub health_replace_after_ms: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EffectivePolicy {
    pub kind: String,
    pub metric: Option<String>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub min_up: Option<u32>,
    pub min_down: Option<u32>,
    pub target: Option<f64>,
    pub scale_in_samples: Option<u32>,
    pub requests: Option<u64>,
    pub window_ms: Option<u64>,
    /// `alarm`: its rules, in order.
    pub rules: Option<Vec<EffectiveRule>>,
}

/// One rule of an `alarm` policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct EffectiveRule {
    pub alarm: String,
    pub adjustment_type: String,
    pub adjustment: i32,
    pub min_adjustment_step: u32,
    pub cooldown_ms: u64,
    pub repeat: bool,
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn policy(p: &PolicySpec) -> EffectivePolicy {
    let mut out = EffectivePolicy {
        kind: p.kind().to_string(),
        metric: None,
        high: None,
        low: None,
        min_up: None,
        min_down: None,
        target: None,
        scale_in_samples: None,
        requests: None,
        window_ms: None,
        rules: None,
    };
    match p {
        PolicySpec::Threshold(t) => {
            out.metric = Some(format!("{:?}", t.metric).to_lowercase());
            (out.high, out.low, out.min_up, out.min_down) =
                (Some(t.high), Some(t.low), Some(t.min_up), Some(t.min_down));
        }
        PolicySpec::TargetTracking(t) => {
            out.metric = Some(format!("{:?}", t.metric).to_lowercase());
            (out.target, out.scale_in_samples) = (Some(t.target), Some(t.scale_in_samples));
        }
        PolicySpec::RequestCount(r) => {
            (out.requests, out.window_ms) = (Some(r.requests), Some(ms(r.window)));
        }
        PolicySpec::Alarm(a) => {
            out.rules = Some(
                a.rules
                    .iter()
                    .map(|r| EffectiveRule {
                        alarm: r.alarm.clone(),
                        adjustment_type: r.adjustment_type.as_str().into(),
                        adjustment: r.adjustment,
                        min_adjustment_step: r.min_adjustment_step,
                        cooldown_ms: ms(r.cooldown),
                        repeat: r.repeat,
                    })
                    .collect(),
            );
        }
    }
    out
}

pub(crate) fn group(spec: &GroupSpec) -> EffectiveGroup {
    EffectiveGroup {
        name: spec.id.to_string(),
        mode: match spec.mode {
            Mode::Scale => "scale",
            Mode::Handover => "handover",
        }
        .into(),
        min: spec.min,
        max: spec.max,
        increment: spec.increment,
        interval_ms: ms(spec.interval),
        cooldown_up_ms: ms(spec.cooldown_up),
        cooldown_down_ms: ms(spec.cooldown_down),
        stale_after_ms: ms(spec.stale_after),
        drain_timeout_ms: ms(spec.drain_timeout),
        victim: match spec.victim {
            Victim::Oldest => "oldest",
            Victim::Newest => "newest",
            Victim::LeastBusy => "least-busy",
        }
        .into(),
        policy: policy(&spec.policy),
        scaling: crate::live::scaling(spec),
        base_name: spec.instance.base_name.clone(),
        clone_base: spec.instance.clone_base.clone(),
        vcpus: spec.instance.vcpus,
        template_version: spec.template_version.clone(),
        rollout_max_unavailable: spec.rollout.map(|r| r.max_unavailable),
        health_replace_grace_ms: spec.health_replace.map(|h| ms(h.grace)),
        health_replace_after_ms: spec.health_replace.map(|h| ms(h.after)),
    }
}

/// The configuration the daemon runs by: the file (secrets redacted) and every group as validated.
#[utoipa::path(get, path = "/api/v1/config", responses((status = 200, body = EffectiveConfig), Problems))]
pub(crate) async fn get_config(State(s): S) -> Result<Json<EffectiveConfig>, Problem> {
    Ok(Json(EffectiveConfig {
        file: s.config.as_ref().map(|c| c.file.clone()),
        source: s.config.as_ref().map_or(serde_json::Value::Null, |c| c.source.clone()),
        groups: s.controller.groups().map(group).collect(),
        api: EffectiveApi {
            listen: s.listen.to_string(),
            anonymous_read: s.anonymous_read,
            tokens: s.tokens.len(),
            tls: s.tls,
        },
    }))
}
