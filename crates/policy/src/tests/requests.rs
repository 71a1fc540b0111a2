//! Request count (the seed-002 trigger), one table per rule. `rscale`: scale mode, min 1, max 5,
//! increment 2, 10 requests within 60 s, no cooldowns, stale after 15 s; `now` is 100 s.

use std::time::Duration;

use flotilla_model::{GroupSpec, Victim};

use super::Want::{In, Out};
use super::*;

fn rscale(s: &mut GroupSpec) {
    scale(s);
    requests(s);
}

/// The seed's handover group (min 1, max 2) with the request trigger.
fn rhandover(s: &mut GroupSpec) {
    requests(s);
}

#[test]
fn trigger() {
    check_all(&[
        case("one below the trigger holds")
            .spec(rscale).members("a:R:0").samples("a@100:q9").prior(0, 0, 95)
            .hold(Steady).counters(0, 0).last_sample(100).desired(None),
        case("at the trigger: scale out by the increment, stamp, reset")
            .spec(rscale).members("a:R:0").samples("a@100:q10").prior(0, 0, 95)
            .want(Out(2)).counters(0, 0).stamped_out(Some(100)).stamped_in(None)
            .reason("10 requests in 60s >= 10"),
        case("summed over the members")
            .spec(rscale).members("a:R:0 b:R:1").samples("a@100:q4 b@100:q6").prior(0, 0, 95)
            .want(Out(2)).reason("10 requests in 60s >= 10"),
        case("the sum below the trigger holds")
            .spec(rscale).members("a:R:0 b:R:1").samples("a@100:q4 b@100:q5").prior(0, 0, 95)
            .hold(Steady),
        case("capped by max")
            .spec(rscale).members("a:R:0 b:R:1 c:R:2 d:R:3")
            .samples("a@100:q3 b@100:q3 c@100:q3 d@100:q3").prior(0, 0, 95)
            .want(Out(1)),
        case("at max: AtBound, up reset")
            .spec(rscale).members("a:R:0 b:R:1 c:R:2 d:R:3 e:R:4")
            .samples("a@100:q3 b@100:q3 c@100:q3 d@100:q3 e@100:q3").prior(0, 0, 95)
            .hold(AtBound).counters(0, 0),
        case("a member without the metric: the others' sum still triggers")
            .spec(rscale).members("a:R:0 b:R:1").samples("a@100:q12 b@100:c5").prior(0, 0, 95)
            .want(Out(2)),
        case("a stale member does not count")
            .spec(rscale).members("a:R:0 b:R:1").samples("a@100:q5 b@80:q50").prior(0, 0, 95)
            .hold(Steady),
        case("the request rate is not the request count")
            .spec(rscale).members("a:R:0").samples("a@100:r500:c99").prior(0, 0, 95)
            .hold(NoData),
        case("the same sample twice counts once")
            .spec(|s| { rscale(s); s.cooldown_up = Duration::from_secs(60); })
            .members("a:R:0").samples("a@100:q20").prior(1, 0, 100).last_out(70)
            .want(cooldown(30)).counters(1, 0).last_sample(100),
        case("counted on this data, but the group changed since: starts over")
            .spec(rscale).members("a:R:0").samples("a@100:q5").prior(1, 0, 100)
            .hold(Steady).counters(0, 0),
    ]);
}

#[test]
fn never_scales_in() {
    check_all(&[
        case("no requests at all hold, whatever the down count")
            .spec(rscale).members("a:R:0 b:R:1 c:R:2").samples("a@100:q0 b@100:q0 c@100:q0").prior(0, 9, 95)
            .hold(Steady).counters(0, 0),
        case("no requests, no new sample: still no scale-in")
            .spec(rscale).members("a:R:0 b:R:1 c:R:2").samples("a@100:q0 b@100:q0 c@100:q0").prior(0, 9, 100)
            .hold(Steady).counters(0, 9),
        case("handover mode never hands over")
            .spec(rhandover).members("a:R:0 b:R:50").samples("a@100:q0 b@100:q0").prior(0, 9, 95)
            .hold(Steady).counters(0, 0),
        case("no data: NoData")
            .spec(rscale).members("a:R:0 b:R:1").prior(1, 0, 95)
            .hold(NoData).counters(1, 0),
        case("an empty group with min 0: NoData")
            .spec(|s| { rscale(s); s.min = 0; }).hold(NoData),
    ]);
}

#[test]
fn cooldowns_bounds_and_handover() {
    fn up60(s: &mut GroupSpec) {
        rscale(s);
        s.cooldown_up = Duration::from_secs(60);
    }
    check_all(&[
        case("cooldown_up holds it, the up count is kept")
            .spec(up60).members("a:R:0").samples("a@100:q10").prior(0, 0, 95).last_out(70)
            .want(cooldown(30)).counters(1, 0).stamped_out(Some(70)),
        case("it fires once the cooldown has passed, without a new sample")
            .spec(up60).members("a:R:0").samples("a@125:q10").prior(1, 0, 125).last_out(70).now(130)
            .want(Out(2)).stamped_out(Some(130)),
        case("the cooldown counts from a scale-in too (a repair)")
            .spec(up60).members("a:R:0").samples("a@100:q10").prior(0, 0, 95).last_in(90)
            .want(cooldown(50)),
        case("handover mode: one clone")
            .spec(rhandover).members("a:R:0").samples("a@100:q10").prior(0, 0, 95)
            .want(Out(1)),
        case("handover mode with the clone running: AtBound")
            .spec(rhandover).members("a:R:0 b:R:50").samples("a@100:q10 b@100:q10").prior(0, 0, 95)
            .hold(AtBound),
        case("below min: filled first")
            .spec(|s| { rscale(s); s.min = 2; }).members("a:R:0").want(Out(1)).reason("below min"),
        case("above max: trimmed, least busy by requests")
            .spec(|s| { rscale(s); s.max = 2; s.victim = Victim::LeastBusy; })
            .members("a:R:0 b:R:1 c:R:2 d:R:3").samples("a@100:q1:c1 b@100:q9:c1 c@100:q0:c99 d@100:q4:c1")
            .want(In(&["c", "a"])).reason("above max"),
        case("failed members are removed first")
            .spec(rscale).members("a:R:0 f:F:5").samples("a@100:q50").prior(0, 0, 95)
            .want(In(&["f"])).counters(1, 0),
        case("a creating member: InProgress")
            .spec(rscale).members("a:R:0 b:C:5").samples("a@100:q50").prior(0, 0, 95)
            .hold(InProgress).counters(0, 0).last_sample(95),
    ]);
}

#[test]
fn evaluation_numbers() {
    let mut spec = GroupSpec::example("g");
    rscale(&mut spec);
    let ms = members(&spec, "a:R:0 b:R:1 c:R:2");
    let latest = samples("a@100:q3:c10 b@100:q4:c30 c@80:q100");
    let (e, _) = run(&spec, &ms, &latest, None, false, &PolicyState::default(), t(100));
    assert_eq!((e.cpu, e.value, e.desired, e.sampled, e.running), (Some(20.0), Some(7.0), None, 2, 3));
    assert_eq!(e.decision, Decision::Hold(HoldReason::Steady));
}

/// The seed-002 scenario: one member; requests 1-9 are served, the 10th triggers one clone; with
/// the group at max, more requests change nothing, and no load never removes the clone.
#[test]
fn seed_002_timeline() {
    let mut spec = GroupSpec::example("svc");
    spec.mode = Mode::Scale;
    spec.cooldown_up = Duration::from_secs(10);
    requests(&mut spec);
    let mut ms = members(&spec, "svc_1:R:0");
    let mut st = PolicyState::default();
    let mut outs = Vec::new();
    let served = [1u64, 2, 3, 4, 5, 6, 7, 8, 9, 10].into_iter().chain([12; 10]).chain([0; 20]);
    for (tick, served) in (1..=40u64).zip(served) {
        let now = t(tick * 5);
        // The first member serves every request (as in the seed); a clone reports none.
        let requests = |m: &Instance| if m.id.as_str() == "svc_1" { served as f64 } else { 0.0 };
        let latest: Vec<Sample> =
            ms.iter().map(|m| Sample::new(m.id.clone(), now).with(Metric::Requests, requests(m))).collect();
        let (e, next) = run(&spec, &ms, &latest, None, false, &st, now);
        assert_safe(&spec, &ms, &e.decision, "seed-002");
        st = next;
        match e.decision {
            Decision::ScaleOut { count, .. } => {
                outs.push((tick, count));
                let mut clone = Instance::new("svc_2", &spec.id, now);
                clone.state = InstanceState::Running;
                ms.push(clone);
            }
            Decision::Hold(_) => {}
            d => panic!("tick {tick}: request count only scales out, got {d:?}"),
        }
    }
    assert_eq!(outs, [(10, 1)], "exactly one clone, on the 10th request");
    assert_eq!(ms.len(), 2);
}
