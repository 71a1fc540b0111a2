//! Which running members a scale-in removes.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use flotilla_model::{GroupSpec, Instance, InstanceId, Sample, Victim};

use crate::aggregate::policy_value;

/// Chooses up to `n` victims among the running members, by `spec.victim`:
///
/// * `Oldest`: smallest `created_at` first (ties: smallest id);
/// * `Newest`: largest `created_at` first (ties: smallest id);
/// * `LeastBusy`: lowest value of the policy's metric (see [`crate::member_value`]; the target's
///   metric, or the requests within the window) in its sample in `latest` first; members without a
///   value sort last; ties go to the oldest.
///
/// Only `Running` entries of `running` are candidates, and the result never names every running
/// member: at most `running - 1` victims, so a scale-in can never empty a group. Deterministic: the
/// order of `running` and `latest` does not matter.
pub fn choose_victims(spec: &GroupSpec, running: &[&Instance], latest: &[Sample], n: usize) -> Vec<InstanceId> {
    pick(spec, running, latest, n, None, &BTreeSet::new())
}

/// [`choose_victims`], with `spare` (handover mode's primary) ranked after every other member, and
/// `protected` members never chosen (they still count as running: a scale-in may leave only them).
pub(crate) fn pick(
    spec: &GroupSpec,
    running: &[&Instance],
    latest: &[Sample],
    n: usize,
    spare: Option<&InstanceId>,
    protected: &BTreeSet<InstanceId>,
) -> Vec<InstanceId> {
    let live = running.iter().filter(|m| m.is_running()).count();
    let mut ranked: Vec<(&Instance, Option<f64>)> = running
        .iter()
        .copied()
        .filter(|m| m.is_running() && !protected.contains(&m.id))
        .map(|m| (m, value_of(spec, m, latest)))
        .collect();
    let n = n.min(live.saturating_sub(1)).min(ranked.len());
    if n == 0 {
        return Vec::new();
    }
    let is_spare = |m: &Instance| spare == Some(&m.id);
    ranked.sort_by(|a, b| is_spare(a.0).cmp(&is_spare(b.0)).then_with(|| by_victim(spec.victim, a, b)));
    ranked.into_iter().take(n).map(|(m, _)| m.id.clone()).collect()
}

fn value_of(spec: &GroupSpec, m: &Instance, latest: &[Sample]) -> Option<f64> {
    if spec.victim != Victim::LeastBusy {
        return None;
    }
    latest.iter().filter(|s| s.instance == m.id).max_by_key(|s| s.at).and_then(|s| policy_value(&spec.policy, s))
}

fn by_victim(how: Victim, a: &(&Instance, Option<f64>), b: &(&Instance, Option<f64>)) -> Ordering {
    match how {
        Victim::Oldest => Instance::by_age(a.0, b.0),
        Victim::Newest => b.0.created_at.cmp(&a.0.created_at).then_with(|| a.0.id.cmp(&b.0.id)),
        Victim::LeastBusy => match (a.1, b.1) {
            (Some(x), Some(y)) => x.total_cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        }
        .then_with(|| Instance::by_age(a.0, b.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::{InstanceState, Metric, Timestamp};

    fn inst(id: &str, created: u64, state: InstanceState) -> Instance {
        let spec = GroupSpec::example("g");
        let mut i = Instance::new(id, &spec.id, Timestamp(created));
        i.state = state;
        i
    }

    fn ids(v: &[InstanceId]) -> Vec<&str> {
        v.iter().map(InstanceId::as_str).collect()
    }

    #[test]
    fn victim_table() {
        use InstanceState::*;
        // id, created_at, state
        let members = [
            inst("c", 30, Running),
            inst("a", 10, Running),
            inst("b", 20, Running),
            inst("d", 10, Running), // same age as a: id breaks the tie
            inst("f", 5, Failed("x".into())),
            inst("e", 40, Running), // no sample
        ];
        let refs: Vec<&Instance> = members.iter().collect();
        let s = |id: &str, cpu: f64| Sample::new(InstanceId::new(id), Timestamp(100)).with(Metric::Cpu, cpu);
        let latest = [s("a", 50.0), s("b", 5.0), s("c", 5.0), s("d", 70.0)];
        #[rustfmt::skip]
        let cases: &[(Victim, usize, &[&str])] = &[
            (Victim::Oldest, 1, &["a"]),
            (Victim::Oldest, 2, &["a", "d"]),
            (Victim::Oldest, 3, &["a", "d", "b"]),
            (Victim::Newest, 1, &["e"]),
            (Victim::Newest, 3, &["e", "c", "b"]),
            // b and c are both at 5: the older (b) goes first; e has no sample: last.
            (Victim::LeastBusy, 1, &["b"]),
            (Victim::LeastBusy, 4, &["b", "c", "a", "d"]),
            // never every running member (5 running): at most 4, and never the failed one
            (Victim::Oldest, 9, &["a", "d", "b", "c"]),
            (Victim::Oldest, 0, &[]),
        ];
        for (how, n, want) in cases {
            let mut spec = GroupSpec::example("g");
            spec.victim = *how;
            spec.policy.threshold_mut().expect("the example is a threshold group").metric =
                flotilla_model::MetricChoice::Cpu;
            let got = choose_victims(&spec, &refs, &latest, *n);
            assert_eq!(ids(&got), *want, "{how:?} n={n}");
            // the order of the inputs does not matter
            let rev: Vec<&Instance> = refs.iter().rev().copied().collect();
            let mut rev_latest = latest.to_vec();
            rev_latest.reverse();
            assert_eq!(choose_victims(&spec, &rev, &rev_latest, *n), got, "{how:?} n={n} reversed");
        }
    }

    #[test]
    fn one_running_member_is_never_a_victim() {
        let m = [inst("a", 1, InstanceState::Running)];
        let refs: Vec<&Instance> = m.iter().collect();
        assert!(choose_victims(&GroupSpec::example("g"), &refs, &[], 1).is_empty());
        assert!(choose_victims(&GroupSpec::example("g"), &[], &[], 1).is_empty());
    }

    #[test]
    fn spare_goes_last() {
        use InstanceState::Running;
        let m = [inst("a", 1, Running), inst("b", 2, Running), inst("c", 3, Running)];
        let refs: Vec<&Instance> = m.iter().collect();
        let spare = InstanceId::new("a");
        let got = pick(&GroupSpec::example("g"), &refs, &[], 2, Some(&spare), &BTreeSet::new());
        assert_eq!(ids(&got), ["b", "c"]);
    }

    #[test]
    fn protected_members_are_never_chosen_but_still_count_as_running() {
        use InstanceState::Running;
        let m = [inst("a", 1, Running), inst("b", 2, Running), inst("c", 3, Running)];
        let refs: Vec<&Instance> = m.iter().collect();
        let spec = GroupSpec::example("g");
        let protect = |ids: &[&str]| ids.iter().map(|i| InstanceId::new(*i)).collect::<BTreeSet<_>>();
        // Oldest first, but `a` is protected.
        assert_eq!(ids(&pick(&spec, &refs, &[], 1, None, &protect(&["a"]))), ["b"]);
        // Two wanted, two protected: only the one left may go, and the group keeps the protected two.
        assert_eq!(ids(&pick(&spec, &refs, &[], 2, None, &protect(&["a", "c"]))), ["b"]);
        // Everyone protected: nobody goes.
        assert!(pick(&spec, &refs, &[], 2, None, &protect(&["a", "b", "c"])).is_empty());
        // Protected members count as running: two of three may go when one is protected.
        assert_eq!(ids(&pick(&spec, &refs, &[], 5, None, &protect(&["b"]))), ["a", "c"]);
    }
}
