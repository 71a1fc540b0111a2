//! A group's `alarms` and the `rules` of an `alarm` policy, as written.

use std::time::Duration;

use serde::Deserialize;

/// One of a group's `alarms`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `name` and `kind`")]
pub struct RawAlarm {
    /// 1 to 63 of `A-Z a-z 0-9 . _ -`, unique in the group (it is part of the receiver's URL).
    pub name: String,
    /// `external`: Aodh, Alertmanager or anything that can POST reports its state to the alarm's
    /// receiver URL (`flotilla receivers` prints it).
    pub kind: RawAlarmKind,
}

/// An alarm's `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAlarmKind {
    External,
}

/// How a rule's `adjustment` applies (Heat's words).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RawAdjustmentType {
    /// Add (negative: remove) `adjustment` members.
    #[default]
    ChangeInCapacity,
    /// Make the group `adjustment` members.
    ExactCapacity,
    /// Change the size by `adjustment` percent (at least one member, or `min_adjustment_step`).
    PercentChangeInCapacity,
}

/// One of an `alarm` policy's `rules`: while `alarm` is in `alarm`, adjust the group.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a mapping with `alarm` and `adjustment`")]
pub struct RawScalingRule {
    /// One of the group's `alarms`.
    pub alarm: String,
    /// `change_in_capacity` (default), `exact_capacity` or `percent_change_in_capacity`.
    #[serde(default)]
    pub adjustment_type: RawAdjustmentType,
    /// Members (change: -1000..=1000, not 0; exact: 0..=1000) or percent (-100..=1000, not 0).
    pub adjustment: i32,
    /// Percent only: the smallest change in members (up to 1000).
    #[serde(default)]
    pub min_adjustment_step: Option<u32>,
    /// After this rule adjusted the group it waits this long before it adjusts again (up to 1
    /// day; default 60s).
    #[serde(default = "default_rule_cooldown", with = "flotilla_duration")]
    pub cooldown: Duration,
    /// `false` (default, Heat's way): one adjustment per transition into `alarm`; `true` (AWS's):
    /// again after every cooldown while the alarm stays in `alarm`.
    #[serde(default)]
    pub repeat: bool,
}

/// A rule's `cooldown`: 60s.
pub fn default_rule_cooldown() -> Duration {
    Duration::from_secs(60)
}
