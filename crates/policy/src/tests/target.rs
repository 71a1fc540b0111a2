//! Target tracking, one table per rule. `tscale`: scale mode, min 1, max 5, increment 2, 50 rps
//! per member, scale-in after 3 samples, no cooldowns, stale after 15 s; `now` is 100 s.

use std::time::Duration;

use flotilla_model::{Aggregation, GroupSpec, TargetMetric, Victim};

use super::Want::{Handover, In, Out};
use super::*;

fn tscale(s: &mut GroupSpec) {
    scale(s);
    target(s);
}

/// The seed's handover group (min 1, max 2) tracking 50 rps per member.
fn thandover(s: &mut GroupSpec) {
    target(s);
}

#[test]
fn tolerance_band() {
    check_all(&[
        case("+10 % of the target holds, counts reset")
            .spec(tscale).members("a:R:0 b:R:1").samples("a@100:r55 b@100:r55").prior(1, 2, 95)
            .hold(Steady).counters(0, 0).desired(Some(2)).last_sample(100),
        case("-10 % of the target holds, counts reset")
            .spec(tscale).members("a:R:0 b:R:1 c:R:2").samples("a@100:r45 b@100:r45 c@100:r45").prior(0, 2, 95)
            .hold(Steady).counters(0, 0).desired(Some(3)),
        case("just above the band wants one more")
            .spec(tscale).members("a:R:0").samples("a@100:r55.5").prior(0, 0, 95)
            .want(Out(1)).desired(Some(2)),
        case("just below the band, but ceil keeps every member")
            .spec(tscale).members("a:R:0 b:R:1").samples("a@100:r44 b@100:r44").prior(0, 2, 95)
            .hold(Steady).counters(0, 0).desired(Some(2)),
        case("a wider target moves the band with it")
            .spec(|s| { tscale(s); tt(s).target = 200.0; })
            .members("a:R:0").samples("a@100:r219").prior(0, 0, 95)
            .hold(Steady).counters(0, 0).desired(Some(1)),
        case("mean over members: 90 and 20 average to 55, in the band")
            .spec(tscale).members("a:R:0 b:R:1").samples("a@100:r90 b@100:r20").prior(0, 0, 95)
            .hold(Steady).desired(Some(2)),
        case("the group's aggregation setting does not apply: still the mean")
            .spec(|s| { tscale(s); s.aggregation = Aggregation::Max; })
            .members("a:R:0 b:R:1").samples("a@100:r90 b@100:r20").prior(0, 0, 95)
            .hold(Steady).desired(Some(2)),
    ]);
}

#[test]
fn scale_out_immediately() {
    fn up60(s: &mut GroupSpec) {
        tscale(s);
        s.cooldown_up = Duration::from_secs(60);
    }
    check_all(&[
        case("the first sample above the band scales out, stamps, resets")
            .spec(tscale).members("a:R:0").samples("a@100:r90").prior(0, 0, 95)
            .want(Out(1)).counters(0, 0).stamped_out(Some(100)).stamped_in(None).last_sample(100)
            .reason("per-member rps 90.0 > target 50: 2 members wanted"),
        case("by desired minus running, whatever the increment")
            .spec(tscale).members("a:R:0 b:R:1").samples("a@100:r100 b@100:r100").prior(0, 0, 95)
            .want(Out(2)).desired(Some(4)),
        case("by more than the increment")
            .spec(tscale).members("a:R:0").samples("a@100:r170").prior(0, 0, 95)
            .want(Out(3)).desired(Some(4)),
        case("never above max")
            .spec(tscale).members("a:R:0 b:R:1").samples("a@100:r1000 b@100:r1000").prior(0, 0, 95)
            .want(Out(3)).desired(Some(5)),
        case("an absurd value asks for max, not an overflow")
            .spec(tscale).members("a:R:0").samples("a@100:r1e300").prior(0, 0, 95)
            .want(Out(4)).desired(Some(5)),
        case("at max and wanting more: AtBound, up reset")
            .spec(tscale).members("a:R:0 b:R:1 c:R:2 d:R:3 e:R:4")
            .samples("a@100:r90 b@100:r90 c@100:r90 d@100:r90 e@100:r90").prior(0, 0, 95)
            .hold(AtBound).counters(0, 0).desired(Some(5)).stamped_out(None),
        case("partial data may scale out: the mean of those reporting, times the running members")
            .spec(tscale).members("a:R:0 b:R:1").samples("a@100:r90").prior(0, 0, 95)
            .want(Out(2)).desired(Some(4)),
        case("cooldown_up holds it, the up count is kept")
            .spec(up60).members("a:R:0").samples("a@100:r90").prior(0, 0, 95).last_in(70)
            .want(cooldown(30)).counters(1, 0).stamped_out(None),
        case("it fires once the cooldown has passed, without a new sample")
            .spec(up60).members("a:R:0").samples("a@125:r90").prior(1, 0, 125).last_in(70).now(130)
            .want(Out(1)).counters(0, 0).stamped_out(Some(130)),
        case("the cooldown counts from the latest action, out or in")
            .spec(up60).members("a:R:0").samples("a@100:r90").prior(0, 0, 95).last_out(10).last_in(80)
            .want(cooldown(40)),
        case("counted on this data, but the group changed since: starts over")
            .spec(tscale).members("a:R:0 b:R:1").samples("a@100:r50 b@100:r50").prior(1, 0, 100)
            .hold(Steady).counters(0, 0),
        case("the same sample twice counts once")
            .spec(up60).members("a:R:0").samples("a@100:r90").prior(1, 0, 100).last_in(70)
            .want(cooldown(30)).counters(1, 0).last_sample(100),
        case("cpu target: cpu is the metric, rps is ignored")
            .spec(|s| { tscale(s); tt(s).metric = TargetMetric::Cpu; })
            .members("a:R:0").samples("a@100:c90:r1").prior(0, 0, 95)
            .want(Out(1)).reason("per-member cpu 90.0 > target 50: 2 members wanted"),
        case("mem target: mem is the metric")
            .spec(|s| { tscale(s); tt(s).metric = TargetMetric::Mem; tt(s).target = 40.0; })
            .members("a:R:0 b:R:1").samples("a@100:c1:m70 b@100:c1:m70").prior(0, 0, 95)
            .want(Out(2)).desired(Some(4)),
    ]);
}

#[test]
fn scale_in_stabilization() {
    fn down120(s: &mut GroupSpec) {
        tscale(s);
        s.cooldown_up = Duration::from_secs(60);
        s.cooldown_down = Duration::from_secs(120);
    }
    check_all(&[
        case("below the band starts the down count")
            .spec(tscale).members("a:R:0 b:R:1 c:R:2").samples("a@100:r10 b@100:r10 c@100:r10").prior(0, 0, 95)
            .hold(Steady).counters(0, 1).desired(Some(1)),
        case("the second sample extends it")
            .spec(tscale).members("a:R:0 b:R:1 c:R:2").samples("a@100:r10 b@100:r10 c@100:r10").prior(0, 1, 95)
            .hold(Steady).counters(0, 2),
        case("the third scales in by the increment at most, and resets")
            .spec(tscale).members("a:R:0 b:R:1 c:R:2 d:R:3")
            .samples("a@100:r10 b@100:r10 c@100:r10 d@100:r10").prior(0, 2, 95)
            .want(In(&["a", "b"])).counters(0, 0).stamped_in(Some(100)).desired(Some(1))
            .reason("per-member rps 10.0 < target 50 for 3 samples: 1 member wanted"),
        case("by the difference when it is smaller than the increment")
            .spec(tscale).members("a:R:0 b:R:1 c:R:2").samples("a@100:r30 b@100:r30 c@100:r30").prior(0, 2, 95)
            .want(In(&["a"])).desired(Some(2)),
        case("scale_in_samples 1 acts on the first sample")
            .spec(|s| { tscale(s); tt(s).scale_in_samples = 1; })
            .members("a:R:0 b:R:1").samples("a@100:r5 b@100:r5").prior(0, 0, 95)
            .want(In(&["a"])),
        case("least-busy victims by the target's metric")
            .spec(|s| { tscale(s); s.victim = Victim::LeastBusy; })
            .members("a:R:0 b:R:1 c:R:2 d:R:3")
            .samples("a@100:r12:c1 b@100:r2:c90 c@100:r15:c1 d@100:r5:c1").prior(0, 2, 95)
            .want(In(&["b", "d"])),
        case("partial data never counts down")
            .spec(tscale).members("a:R:0 b:R:1 c:R:2").samples("a@100:r10 b@100:r10").prior(0, 0, 95)
            .hold(Steady).counters(0, 0).last_sample(100),
        case("partial data resets the down count")
            .spec(tscale).members("a:R:0 b:R:1 c:R:2").samples("a@100:r10 b@100:r10").prior(0, 1, 95)
            .hold(Steady).counters(0, 0),
        case("a stale member makes the data partial")
            .spec(tscale).members("a:R:0 b:R:1 c:R:2").samples("a@100:r10 b@100:r10 c@84:r10").prior(0, 2, 95)
            .hold(Steady).counters(0, 0),
        case("a member without the metric makes the data partial")
            .spec(tscale).members("a:R:0 b:R:1 c:R:2").samples("a@100:r10 b@100:r10 c@100:c5").prior(0, 2, 95)
            .hold(Steady).counters(0, 0),
        case("a complete count, then a member goes missing: no scale-in")
            .spec(tscale).members("a:R:0 b:R:1 c:R:2").samples("a@100:r10 b@100:r10").prior(0, 3, 100)
            .hold(Steady).counters(0, 0),
        case("counted on this data, but the group changed since: starts over")
            .spec(tscale).members("a:R:0 b:R:1").samples("a@100:r50 b@100:r50").prior(0, 3, 100)
            .hold(Steady).counters(0, 0),
        case("cooldown_down holds it, the down count is kept")
            .spec(down120).members("a:R:0 b:R:1 c:R:2").samples("a@100:r10 b@100:r10 c@100:r10")
            .prior(0, 2, 95).last_out(20)
            .want(cooldown(40)).counters(0, 3),
        case("it fires once cooldown_down has passed")
            .spec(down120).members("a:R:0 b:R:1 c:R:2").samples("a@140:r10 b@140:r10 c@140:r10")
            .prior(0, 3, 135).last_out(20).now(140)
            .want(In(&["a", "b"])).stamped_in(Some(140)),
        case("cooldown_down is longer: a scale-out is allowed 80 s after an action")
            .spec(down120).members("a:R:0").samples("a@100:r90").prior(0, 0, 95).last_out(20)
            .want(Out(1)),
        case("no data: NoData, the down count resets, the up count waits")
            .spec(tscale).members("a:R:0 b:R:1").prior(1, 2, 95)
            .hold(NoData).counters(1, 0).desired(None),
        case("a sample without the metric is no data")
            .spec(tscale).members("a:R:0").samples("a@100:c90:q50").prior(0, 2, 95)
            .hold(NoData).counters(0, 0),
    ]);
}

#[test]
fn bounds() {
    check_all(&[
        case("never below min: desired is min")
            .spec(|s| { tscale(s); s.min = 2; })
            .members("a:R:0 b:R:1 c:R:2 d:R:3").samples("a@100:r1 b@100:r1 c@100:r1 d@100:r1").prior(0, 2, 95)
            .want(In(&["a", "b"])).desired(Some(2)),
        case("at min and wanting fewer: AtBound, down reset")
            .spec(|s| { tscale(s); s.min = 2; })
            .members("a:R:0 b:R:1").samples("a@100:r5 b@100:r5").prior(0, 2, 95)
            .hold(AtBound).counters(0, 0).desired(Some(2)),
        case("never the last member, even with no load")
            .spec(tscale).members("a:R:0").samples("a@100:r0").prior(0, 2, 95)
            .hold(AtBound).counters(0, 0).desired(Some(1)),
        case("below min: filled first, even with no data")
            .spec(|s| { tscale(s); s.min = 3; })
            .members("a:R:0").want(Out(2)).reason("below min"),
        case("above max: trimmed first")
            .spec(|s| { tscale(s); s.max = 2; })
            .members("a:R:0 b:R:1 c:R:2").samples("a@100:r90 b@100:r90 c@100:r90").prior(0, 0, 95)
            .want(In(&["a"])).reason("above max").counters(0, 0),
        case("failed members are removed first, without a stamp")
            .spec(tscale).members("a:R:0 f:F:5").samples("a@100:r90").prior(0, 0, 95)
            .want(In(&["f"])).reason("replace failed members").counters(1, 0).stamped_out(None),
        case("a creating member: InProgress, state untouched")
            .spec(tscale).members("a:R:0 b:C:5").samples("a@100:r200").prior(0, 2, 95)
            .hold(InProgress).counters(0, 2).last_sample(95),
        case("an operation pending: InProgress")
            .spec(tscale).members("a:R:0").samples("a@100:r200").pending()
            .hold(InProgress).counters(0, 0),
    ]);
}

#[test]
fn handover_mode() {
    check_all(&[
        case("wanting more adds one clone")
            .spec(thandover).members("a:R:0").samples("a@100:r200").prior(0, 0, 95)
            .want(Out(1)).desired(Some(2)),
        case("wanting more adds one clone, whatever the increment and max")
            .spec(|s| { thandover(s); s.max = 5; s.increment = 3; })
            .members("a:R:0").samples("a@100:r200").prior(0, 0, 95)
            .want(Out(1)).desired(Some(4)),
        case("wanting more with the clone running (at max): AtBound")
            .spec(thandover).members("a:R:0 b:R:50").samples("a@100:r200 b@100:r200").prior(0, 0, 95)
            .hold(AtBound).counters(0, 0),
        case("wanting fewer with a running clone: the primary hands over")
            .spec(thandover).members("a:R:0 b:R:50").samples("a@100:r5 b@100:r5").prior(0, 2, 95)
            .want(Handover("a", "b")).counters(0, 0).stamped_in(Some(100))
            .reason("per-member rps 5.0 < target 50 for 3 samples: 1 member wanted"),
        case("a named primary is retired")
            .spec(thandover).members("a:R:0 b:R:50").samples("a@100:r5 b@100:r5").prior(0, 2, 95).primary("b")
            .want(Handover("b", "a")),
        case("wanting fewer without a clone: AtBound")
            .spec(thandover).members("a:R:0").samples("a@100:r0").prior(0, 2, 95)
            .hold(AtBound).counters(0, 0),
        case("no handover on partial data")
            .spec(thandover).members("a:R:0 b:R:50").samples("a@100:r5").prior(0, 2, 95)
            .hold(Steady).counters(0, 0),
        case("the handover waits for cooldown_down")
            .spec(|s| { thandover(s); s.cooldown_down = Duration::from_secs(120); })
            .members("a:R:0 b:R:50").samples("a@100:r5 b@100:r5").prior(0, 2, 95).last_out(60)
            .want(cooldown(80)).counters(0, 3),
        case("the handover never goes below min")
            .spec(|s| { thandover(s); s.min = 2; s.max = 3; })
            .members("a:R:0 b:R:50").samples("a@100:r5 b@100:r5").prior(0, 2, 95)
            .hold(AtBound).counters(0, 0),
        case("wanting more beats wanting fewer")
            .spec(|s| { thandover(s); s.max = 3; })
            .members("a:R:0 b:R:50").samples("a@100:r200 b@100:r200").prior(1, 3, 100)
            .want(Out(1)),
    ]);
}

#[test]
fn evaluation_numbers() {
    let mut spec = GroupSpec::example("g");
    tscale(&mut spec);
    let ms = members(&spec, "a:R:0 b:R:1 c:R:2");
    // c is stale: the mean is over a and b; desired is for the three running members.
    let latest = samples("a@100:r80:c10 b@100:r40:c30 c@80:r1000");
    let (e, _) = run(&spec, &ms, &latest, None, false, &PolicyState::default(), t(100));
    assert_eq!((e.cpu, e.value, e.desired, e.sampled, e.running), (Some(20.0), Some(60.0), Some(4), 2, 3));
}
