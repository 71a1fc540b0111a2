//! The pushed values in memory: per group, per pushed member key, the newest value of each metric
//! with the time it stands for. Bounded (members per group, entries overall, groups, alarms per
//! group); values older than `max_age` are dropped when space is needed and whenever a group is
//! sampled.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use flotilla_model::{Instance, Metric, Sample, Timestamp};

use crate::parse::{AlarmStatus, PushedSample};

/// Most distinct members (pushed names or ids) with live values in one group.
pub const MAX_MEMBERS_PER_GROUP: usize = 10_000;
/// Most distinct members with live values over all groups.
pub const MAX_ENTRIES: usize = 100_000;
/// Most groups with live values or alarm states.
pub const MAX_GROUPS: usize = 1_000;
/// Most distinct alarms remembered per group.
pub const MAX_ALARMS_PER_GROUP: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
struct Reading {
    metric: Metric,
    value: f64,
    /// The time the value stands for: `at_ms` if the pusher gave one and it is not in the future,
    /// else the receive time.
    at: Timestamp,
}

#[derive(Debug, Default)]
struct GroupTable {
    members: HashMap<String, Vec<Reading>>,
    alarms: BTreeMap<String, AlarmStatus>,
}

/// What a push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PushOutcome {
    /// Samples stored.
    pub accepted: usize,
    /// Samples whose `at_ms` was already older than `max_age` when they arrived (not stored).
    pub expired: usize,
}

#[derive(Debug)]
pub(crate) struct Table {
    max_age: Duration,
    groups: HashMap<String, GroupTable>,
    /// Member keys over all groups.
    entries: usize,
}

impl Table {
    pub(crate) fn new(max_age: Duration) -> Self {
        Table { max_age, groups: HashMap::new(), entries: 0 }
    }

    fn fresh(&self, at: Timestamp, now: Timestamp) -> bool {
        now.since(at) <= self.max_age
    }

    /// Stores a checked batch, all or nothing: if its new members do not fit even after expired
    /// values are dropped, nothing is stored and the error says why.
    pub(crate) fn push(
        &mut self,
        group: &str,
        samples: Vec<PushedSample>,
        now: Timestamp,
    ) -> Result<PushOutcome, String> {
        let mut live = Vec::with_capacity(samples.len());
        let mut expired = 0;
        for s in samples {
            let at = s.at_ms.map_or(now, |ms| Timestamp(ms).min(now));
            if self.fresh(at, now) {
                live.push((s, at));
            } else {
                expired += 1;
            }
        }
        if live.is_empty() {
            return Ok(PushOutcome { accepted: 0, expired });
        }
        if let Err(first) = self.room_for(group, &live) {
            self.purge(now);
            self.room_for(group, &live).map_err(|_| first)?;
        }
        let g = self.groups.entry(group.to_string()).or_default();
        let accepted = live.len();
        for (s, at) in live {
            let slot = g.members.entry(s.member).or_insert_with(|| {
                self.entries += 1;
                Vec::new()
            });
            for (metric, value) in s.values {
                let new = Reading { metric, value, at };
                match slot.iter_mut().find(|r| r.metric == metric) {
                    // A reading delivered late does not replace a newer one.
                    Some(r) if r.at > at => {}
                    Some(r) => *r = new,
                    None => slot.push(new),
                }
            }
        }
        Ok(PushOutcome { accepted, expired })
    }

    /// Whether the batch's new member keys fit the bounds.
    fn room_for(&self, group: &str, live: &[(PushedSample, Timestamp)]) -> Result<(), String> {
        let g = self.groups.get(group);
        if g.is_none() && self.groups.len() >= MAX_GROUPS {
            return Err(format!("already holding values of {MAX_GROUPS} groups (the most kept at once)"));
        }
        let new: HashSet<&str> = live
            .iter()
            .map(|(s, _)| s.member.as_str())
            .filter(|m| g.is_none_or(|g| !g.members.contains_key(*m)))
            .collect();
        let have = g.map_or(0, |g| g.members.len());
        if have + new.len() > MAX_MEMBERS_PER_GROUP {
            return Err(format!(
                "group `{group}` would hold values of {} members within max_age; at most {MAX_MEMBERS_PER_GROUP}",
                have + new.len()
            ));
        }
        if self.entries + new.len() > MAX_ENTRIES {
            return Err(format!(
                "would hold values of {} members over all groups; at most {MAX_ENTRIES}",
                self.entries + new.len()
            ));
        }
        Ok(())
    }

    /// Remembers an alarm notification (the newest per alarm id wins).
    pub(crate) fn set_alarm(&mut self, group: &str, status: AlarmStatus, now: Timestamp) -> Result<(), String> {
        if !self.groups.contains_key(group) && self.groups.len() >= MAX_GROUPS {
            self.purge(now);
            if self.groups.len() >= MAX_GROUPS {
                return Err(format!("already holding values of {MAX_GROUPS} groups (the most kept at once)"));
            }
        }
        let g = self.groups.entry(group.to_string()).or_default();
        if !g.alarms.contains_key(&status.alarm_id) && g.alarms.len() >= MAX_ALARMS_PER_GROUP {
            return Err(format!("group `{group}` already has {MAX_ALARMS_PER_GROUP} alarms; no more are kept"));
        }
        g.alarms.insert(status.alarm_id.clone(), status);
        Ok(())
    }

    /// Every alarm of the group, by alarm id.
    pub(crate) fn alarms(&self, group: &str) -> Vec<AlarmStatus> {
        self.groups.get(group).map(|g| g.alarms.values().cloned().collect()).unwrap_or_default()
    }

    /// Drops a member's values under any of `keys` (its name and id).
    pub(crate) fn forget(&mut self, group: &str, keys: &[&str]) {
        let Some(g) = self.groups.get_mut(group) else { return };
        for k in keys {
            if g.members.remove(*k).is_some() {
                self.entries -= 1;
            }
        }
    }

    /// One sample per listed member that has live values under its name or its id. A metric pushed
    /// under both keys counts with its newer reading; each value keeps its own time (the sample's
    /// `at` is the newest, older ones are in `earlier`), so one reading counts once.
    pub(crate) fn sample(&mut self, group: &str, members: &[Instance], now: Timestamp) -> Vec<Sample> {
        self.purge_group(group, now);
        let Some(g) = self.groups.get(group) else { return Vec::new() };
        let mut out = Vec::new();
        for inst in members {
            let mut merged: Vec<Reading> = Vec::new();
            let keys = [inst.name.as_str(), inst.id.as_str()];
            let keys = if keys[0] == keys[1] { &keys[..1] } else { &keys[..] };
            for r in keys.iter().filter_map(|k| g.members.get(*k)).flatten() {
                match merged.iter_mut().find(|m| m.metric == r.metric) {
                    Some(m) if m.at >= r.at => {}
                    Some(m) => *m = *r,
                    None => merged.push(*r),
                }
            }
            let Some(at) = merged.iter().map(|r| r.at).max() else { continue };
            let mut sample = Sample::new(inst.id.clone(), at);
            for metric in Metric::ALL {
                if let Some(r) = merged.iter().find(|r| r.metric == metric) {
                    sample.set(metric, r.value);
                    if r.at < at {
                        sample.earlier.push((metric, r.at));
                    }
                }
            }
            out.push(sample);
        }
        out
    }

    /// Drops values older than `max_age` in one group (and the group if nothing is left).
    fn purge_group(&mut self, group: &str, now: Timestamp) {
        let max_age = self.max_age;
        let Some(g) = self.groups.get_mut(group) else { return };
        self.entries -= purge_members(g, now, max_age);
        if g.members.is_empty() && g.alarms.is_empty() {
            self.groups.remove(group);
        }
    }

    /// Drops values older than `max_age` everywhere.
    pub(crate) fn purge(&mut self, now: Timestamp) {
        let max_age = self.max_age;
        let mut removed = 0;
        self.groups.retain(|_, g| {
            removed += purge_members(g, now, max_age);
            !(g.members.is_empty() && g.alarms.is_empty())
        });
        self.entries -= removed;
    }

    #[cfg(test)]
    fn member_keys(&self) -> usize {
        self.entries
    }
}

/// Drops expired readings; returns how many member keys went away.
fn purge_members(g: &mut GroupTable, now: Timestamp, max_age: Duration) -> usize {
    let before = g.members.len();
    g.members.retain(|_, readings| {
        readings.retain(|r| now.since(r.at) <= max_age);
        !readings.is_empty()
    });
    before - g.members.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::GroupId;

    const T0: Timestamp = Timestamp(1_700_000_000_000);

    fn push(member: &str, at_ms: Option<u64>, values: &[(Metric, f64)]) -> PushedSample {
        PushedSample { member: member.into(), at_ms, values: values.to_vec() }
    }

    fn inst(id: &str, name: &str) -> Instance {
        let mut i = Instance::new(id, &GroupId::new("g"), T0);
        i.name = name.into();
        i
    }

    #[test]
    fn values_are_returned_for_listed_members_by_name_or_id_until_max_age() {
        let mut t = Table::new(Duration::from_secs(30));
        let out = t
            .push(
                "g",
                vec![
                    push("VM-test_1", None, &[(Metric::Cpu, 95.0), (Metric::Mem, 30.5)]),
                    push("i-2", None, &[(Metric::Cpu, 10.0)]),
                    push("stranger", None, &[(Metric::Cpu, 50.0)]),
                ],
                T0,
            )
            .unwrap();
        assert_eq!(out, PushOutcome { accepted: 3, expired: 0 });
        let members = [inst("i-1", "VM-test_1"), inst("i-2", "web-2"), inst("i-3", "web-3")];
        let s = t.sample("g", &members, T0.plus(Duration::from_secs(30)));
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].instance.as_str(), "i-1");
        assert_eq!((s[0].get(Metric::Cpu), s[0].get(Metric::Mem), s[0].at), (Some(95.0), Some(30.5), T0));
        assert_eq!((s[1].instance.as_str(), s[1].get(Metric::Cpu)), ("i-2", Some(10.0)));
        assert!(t.sample("other", &members, T0).is_empty());
        // The stranger is kept until max_age, then everything goes.
        assert_eq!(t.member_keys(), 3);
        assert!(t.sample("g", &members, T0.plus(Duration::from_millis(30_001))).is_empty());
        assert_eq!(t.member_keys(), 0);
        assert!(t.groups.is_empty());
    }

    #[test]
    fn at_ms_counts_but_never_from_the_future() {
        let mut t = Table::new(Duration::from_secs(30));
        let now = T0;
        let out = t
            .push(
                "g",
                vec![
                    push("a", Some(now.0 - 10_000), &[(Metric::Cpu, 1.0)]),
                    push("b", Some(now.0 + 3_600_000), &[(Metric::Cpu, 2.0)]),
                    push("c", Some(now.0 - 31_000), &[(Metric::Cpu, 3.0)]),
                ],
                now,
            )
            .unwrap();
        assert_eq!(out, PushOutcome { accepted: 2, expired: 1 });
        let members = [inst("a", "a"), inst("b", "b"), inst("c", "c")];
        let s = t.sample("g", &members, now);
        assert_eq!(
            s.iter().map(|s| (s.instance.as_str(), s.at)).collect::<Vec<_>>(),
            [("a", Timestamp(now.0 - 10_000)), ("b", now)]
        );
        // a's reading is 10 s older, so it expires 10 s earlier.
        let s = t.sample("g", &members, now.plus(Duration::from_secs(25)));
        assert_eq!(s.iter().map(|s| s.instance.as_str()).collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn newer_readings_win_per_metric_and_each_keeps_its_time() {
        let mut t = Table::new(Duration::from_secs(60));
        t.push("g", vec![push("a", Some(T0.0), &[(Metric::Cpu, 50.0), (Metric::Mem, 40.0)])], T0).unwrap();
        let t1 = T0.plus(Duration::from_secs(10));
        // A late delivery of an older cpu reading does not replace the newer one.
        t.push("g", vec![push("a", Some(T0.0 - 5_000), &[(Metric::Cpu, 99.0)])], t1).unwrap();
        t.push("g", vec![push("a", None, &[(Metric::Cpu, 70.0)])], t1).unwrap();
        // Same metric under the id: the newer of the two keys wins.
        t.push("g", vec![push("i-a", Some(T0.0 + 5_000), &[(Metric::Mem, 45.0), (Metric::RequestRate, 3.0)])], t1)
            .unwrap();
        let s = t.sample("g", &[inst("i-a", "a")], t1);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].values, vec![(Metric::Cpu, 70.0), (Metric::Mem, 45.0), (Metric::RequestRate, 3.0)]);
        assert_eq!(s[0].at, t1, "the newest reading");
        assert_eq!(s[0].at_of(Metric::Mem), T0.plus(Duration::from_secs(5)), "an older one keeps its time");
        assert_eq!(s[0].at_of(Metric::Cpu), t1);
    }

    #[test]
    fn a_forgotten_member_has_no_values() {
        let mut t = Table::new(Duration::from_secs(60));
        t.push("g", vec![push("a", None, &[(Metric::Cpu, 50.0)]), push("i-a", None, &[(Metric::Mem, 5.0)])], T0)
            .unwrap();
        assert_eq!(t.member_keys(), 2);
        t.forget("g", &["a", "i-a"]);
        assert_eq!(t.member_keys(), 0);
        assert!(t.sample("g", &[inst("i-a", "a")], T0).is_empty());
        t.forget("nope", &["a"]);
    }

    #[test]
    fn members_per_group_are_capped_after_dropping_expired_ones() {
        let mut t = Table::new(Duration::from_secs(30));
        let batch = |prefix: &str, n: usize| {
            (0..n).map(|i| push(&format!("{prefix}{i}"), None, &[(Metric::Cpu, 1.0)])).collect()
        };
        t.push("g", batch("a", MAX_MEMBERS_PER_GROUP), T0).unwrap();
        // Known members may push again; a new one does not fit while the others are live.
        t.push("g", batch("a", 10), T0).unwrap();
        let e = t.push("g", batch("new", 1), T0).unwrap_err();
        assert!(e.contains("group `g`") && e.contains("10000"), "{e}");
        assert_eq!(t.member_keys(), MAX_MEMBERS_PER_GROUP);
        // Once the old ones expired there is room again.
        let later = T0.plus(Duration::from_secs(31));
        assert_eq!(t.push("g", batch("new", 5), later).unwrap().accepted, 5);
        assert_eq!(t.member_keys(), 5);
    }

    #[test]
    fn alarms_are_kept_per_id_and_survive_value_expiry() {
        let mut t = Table::new(Duration::from_secs(30));
        let alarm = |id: &str, current| AlarmStatus {
            alarm_id: id.into(),
            alarm_name: None,
            current,
            previous: None,
            severity: None,
            reason: None,
            most_recent: None,
            received_at: T0,
        };
        use crate::parse::AlarmCondition::*;
        t.set_alarm("g", alarm("high", Alarm), T0).unwrap();
        t.set_alarm("g", alarm("low", Ok), T0).unwrap();
        t.set_alarm("g", alarm("high", Ok), T0).unwrap();
        t.sample("g", &[], T0.plus(Duration::from_secs(3600)));
        let a = t.alarms("g");
        assert_eq!(a.iter().map(|a| (a.alarm_id.as_str(), a.current)).collect::<Vec<_>>(), [("high", Ok), ("low", Ok)]);
        for i in 0..MAX_ALARMS_PER_GROUP - 2 {
            t.set_alarm("g", alarm(&format!("x{i}"), Ok), T0).unwrap();
        }
        assert!(t.set_alarm("g", alarm("one-too-many", Ok), T0).is_err());
        assert!(t.alarms("none").is_empty());
    }
}
