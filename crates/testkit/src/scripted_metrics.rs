//! A metric source whose readings the test sets: per member, or one value for every member.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use flotilla_model::{GroupId, Instance, Metric, MetricSource, Sample, SeamError, Timestamp};

#[derive(Default)]
pub struct ScriptedMetrics {
    all: Mutex<Option<(f64, f64)>>,
    per_member: Mutex<BTreeMap<String, (f64, f64)>>,
    silent: Mutex<bool>,
    stamped: Mutex<Option<Timestamp>>,
    forgotten: Mutex<Vec<String>>,
}

impl ScriptedMetrics {
    pub fn new() -> Self {
        Self::default()
    }
    /// Every member reads (cpu, mem) unless set individually.
    pub fn set_all(&self, cpu: f64, mem: f64) {
        *self.all.lock().unwrap() = Some((cpu, mem));
    }
    pub fn set(&self, member: &str, cpu: f64, mem: f64) {
        self.per_member.lock().unwrap().insert(member.to_string(), (cpu, mem));
    }
    /// Readings carry this time instead of `now`: a pusher whose last reading keeps being served.
    pub fn stamp(&self, at: Option<Timestamp>) {
        *self.stamped.lock().unwrap() = at;
    }
    /// Members the controller told this source to forget, in order.
    pub fn forgotten(&self) -> Vec<String> {
        self.forgotten.lock().unwrap().clone()
    }
    /// No samples at all (a source outage).
    pub fn go_silent(&self, silent: bool) {
        *self.silent.lock().unwrap() = silent;
    }
}

#[async_trait]
impl MetricSource for ScriptedMetrics {
    fn name(&self) -> &str {
        "scripted"
    }

    async fn sample(&self, _group: &GroupId, members: &[Instance], now: Timestamp) -> Result<Vec<Sample>, SeamError> {
        if *self.silent.lock().unwrap() {
            return Ok(Vec::new());
        }
        let all = *self.all.lock().unwrap();
        let per = self.per_member.lock().unwrap();
        let at = self.stamped.lock().unwrap().unwrap_or(now);
        Ok(members
            .iter()
            .filter_map(|m| {
                let (cpu, mem) = per.get(&m.name).copied().or(all)?;
                Some(Sample::new(m.id.clone(), at).with(Metric::Cpu, cpu).with(Metric::Mem, mem))
            })
            .collect())
    }

    async fn forget(&self, _group: &GroupId, member: &Instance) {
        self.forgotten.lock().unwrap().push(member.name.clone());
    }
}
