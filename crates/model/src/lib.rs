//! Flotilla's domain model and the seams every adapter plugs into.
//!
//! This crate does no I/O and pulls in no runtime: it names things (`Group`, `Instance`, `Sample`,
//! `Decision`, `Operation`) and the roles that act on them (`Provider`, `MetricSource`, `Balancer`,
//! `Store`). The pure decision core (`flotilla-policy`) and every adapter depend on it; it depends on
//! nothing of ours.

mod alarm;
mod clock;
mod error;
mod group;
mod instance;
pub mod name;
mod operation;
mod sample;
mod seams;
pub mod vocab;

pub use alarm::{AdjustmentType, AlarmDef, AlarmKind, AlarmPolicySpec, AlarmState, AlarmStatus, ScalingRule};
pub use clock::{Clock, FakeClock, SystemClock, Timestamp};
pub use error::{ErrorKind, SeamError};
pub use group::{
    Aggregation, Checkin, GroupId, GroupSpec, HealthReplace, InstanceSpec, MetricChoice, Mode, PolicySpec,
    RequestCountSpec, Rollout, TargetMetric, TargetSpec, ThresholdSpec, Victim, CREATE_TAGS, READY_TAG, TEMPLATE_TAG,
};
pub use instance::{Instance, InstanceId, InstanceState};
pub use operation::{Event, EventFilter, EventKind, OpId, OpKind, OpState, Operation, ReplaceCause};
pub use sample::{Metric, Sample};
pub use seams::{Backend, Balancer, DrainReport, MetricSource, Provider, Store, Unhealthy};

/// Decision core types live here (not in `flotilla-policy`) because the store persists them.
mod decision;
pub use decision::{Decision, Evaluation, GroupControls, HoldReason, OperatorRequest, PolicyState};
