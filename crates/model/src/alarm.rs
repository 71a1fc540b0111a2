//! Alarms (Aodh's model): a named condition that is `ok`, in `alarm`, or has `insufficient data`,
//! and the scaling rules a group's `alarm` policy applies while one of its alarms is in `alarm`
//! (Heat's `OS::Heat::ScalingPolicy`: an adjustment and a cooldown).

use std::time::Duration;

use crate::Timestamp;

/// An alarm's state, as Aodh names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    /// Aodh's words: `ok`, `alarm`, `insufficient data`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "ok",
            AlarmState::Alarm => "alarm",
            AlarmState::InsufficientData => "insufficient data",
        }
    }

    /// Aodh's words, and `insufficient_data` as its API also writes it.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ok" => AlarmState::Ok,
            "alarm" => AlarmState::Alarm,
            "insufficient data" | "insufficient_data" => AlarmState::InsufficientData,
            _ => return None,
        })
    }
}

/// What is known of one of a group's alarms: its state since when, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmStatus {
    pub name: String,
    pub state: AlarmState,
    /// When it entered this state (a report of the same state keeps the time).
    pub since: Timestamp,
    /// When it was last evaluated or reported.
    pub updated: Timestamp,
    /// Why, in words (Aodh's reason text for an Aodh alarm).
    pub reason: String,
}

/// An alarm a group declares.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmDef {
    /// 1 to 63 of `A-Z a-z 0-9 . _ -`, unique in the group (it is part of its receiver's URL).
    pub name: String,
    pub kind: AlarmKind,
}

/// Who decides an alarm's state.
#[derive(Debug, Clone, PartialEq)]
pub enum AlarmKind {
    /// Another system (Aodh, Alertmanager, a script) reports it to the alarm's receiver URL.
    External,
}

/// How a scaling rule's `adjustment` changes the group's size (Heat's and AWS's adjustment types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdjustmentType {
    /// Add (or, negative, remove) `adjustment` members.
    ChangeInCapacity,
    /// Make the group `adjustment` members.
    ExactCapacity,
    /// Change the size by `adjustment` percent, rounded towards zero but at least one member (and
    /// at least `min_adjustment_step` members when given).
    PercentChangeInCapacity,
}

impl AdjustmentType {
    pub fn as_str(self) -> &'static str {
        match self {
            AdjustmentType::ChangeInCapacity => "change_in_capacity",
            AdjustmentType::ExactCapacity => "exact_capacity",
            AdjustmentType::PercentChangeInCapacity => "percent_change_in_capacity",
        }
    }
}

/// One scaling rule of an alarm policy: while `alarm` is in `alarm`, adjust the group.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingRule {
    /// The group's alarm this rule follows.
    pub alarm: String,
    pub adjustment_type: AdjustmentType,
    pub adjustment: i32,
    /// Percent adjustments only: the smallest change in members (0: one).
    pub min_adjustment_step: u32,
    /// After this rule adjusted the group, it does not adjust again for this long.
    pub cooldown: Duration,
    /// `true`: adjust again every `cooldown` while the alarm stays in `alarm` (AWS's simple
    /// scaling); `false`: once per transition into `alarm` (Heat with Aodh's `repeat_actions` off).
    pub repeat: bool,
}

/// A group scaled by its alarms (seed 003): each rule's adjustment applies while its alarm is in
/// `alarm`. An alarm that is `ok` or has insufficient data does nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmPolicySpec {
    pub rules: Vec<ScalingRule>,
}
