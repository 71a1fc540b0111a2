//! One table per rule. Times are seconds on a fake clock; `now` is 100 s unless a case says so.
//! The seed spec: handover mode, min 1, max 2, high 80, low 20, 4 samples, stale after 15 s.

use std::time::Duration;

use flotilla_model::{Aggregation, GroupSpec, MetricChoice, Victim};

use super::Want::{Handover, In, Out};
use super::*;
use crate::{Policy, RequestCountPolicy, TargetTrackingPolicy, ThresholdPolicy};

#[test]
fn counting() {
    check_all(&[
        case("high starts an up streak")
            .members("a:R:0").samples("a@100:c90").prior(0, 0, 95)
            .hold(Steady).counters(1, 0).last_sample(100),
        case("high extends the up streak")
            .members("a:R:0").samples("a@100:c90").prior(2, 0, 95)
            .hold(Steady).counters(3, 0),
        case("exactly high counts as high")
            .members("a:R:0").samples("a@100:c80").prior(0, 0, 95)
            .counters(1, 0),
        case("fourth high sample acts and resets both counters")
            .members("a:R:0").samples("a@100:c90").prior(3, 0, 95)
            .want(Out(1)).counters(0, 0).stamped_out(Some(100)).stamped_in(None)
            .reason("cpu/mem max 90.0 >= 80 for 4 samples"),
        case("low starts a down streak")
            .members("a:R:0").samples("a@100:c5").prior(0, 0, 95)
            .hold(Steady).counters(0, 1),
        case("exactly low counts as low")
            .members("a:R:0").samples("a@100:c20").prior(0, 0, 95)
            .counters(0, 1),
        case("between resets an up streak")
            .members("a:R:0").samples("a@100:c50").prior(3, 0, 95)
            .hold(Steady).counters(0, 0),
        case("between resets a down streak")
            .members("a:R:0").samples("a@100:c50").prior(0, 3, 95)
            .hold(Steady).counters(0, 0),
        case("low resets an up streak (other side)")
            .members("a:R:0").samples("a@100:c5").prior(3, 0, 95)
            .counters(0, 1),
        case("high resets a down streak (other side)")
            .members("a:R:0").samples("a@100:c90").prior(0, 3, 95)
            .counters(1, 0),
        case("a scale-in resets both counters and stamps last_scale_in")
            .spec(scale).members("a:R:0 b:R:1 c:R:2").samples("a@100:c5 b@100:c5 c@100:c5")
            .prior(0, 3, 95).last_out(10)
            .want(In(&["a", "b"])).counters(0, 0).stamped_in(Some(100)).stamped_out(Some(10)),
    ]);
}

#[test]
fn metrics_and_aggregation() {
    check_all(&[
        case("max metric: mem is the larger")
            .members("a:R:0").samples("a@100:c10:m90").prior(0, 0, 95).counters(1, 0),
        case("max metric: cpu is the larger")
            .members("a:R:0").samples("a@100:c95:m5").prior(0, 0, 95).counters(1, 0),
        case("max metric: only mem reported")
            .members("a:R:0").samples("a@100:m90").prior(0, 0, 95).counters(1, 0),
        case("max metric: only cpu reported")
            .members("a:R:0").samples("a@100:c5").prior(0, 0, 95).counters(0, 1),
        case("max metric: both low")
            .members("a:R:0").samples("a@100:c5:m10").prior(0, 0, 95).counters(0, 1),
        case("cpu metric ignores a high mem")
            .spec(|s| th(s).metric = MetricChoice::Cpu)
            .members("a:R:0").samples("a@100:c10:m90").prior(0, 0, 95).counters(0, 1),
        case("mem metric ignores a high cpu")
            .spec(|s| th(s).metric = MetricChoice::Mem)
            .members("a:R:0").samples("a@100:c90:m10").prior(0, 0, 95).counters(0, 1),
        case("cpu metric: a sample without cpu is no data")
            .spec(|s| th(s).metric = MetricChoice::Cpu)
            .members("a:R:0").samples("a@100:m90").prior(2, 3, 95).hold(NoData).counters(2, 0),
        case("a sample with neither cpu nor mem is no data")
            .members("a:R:0").samples("a@100:r500").prior(2, 3, 95).hold(NoData).counters(2, 0),
        case("mean: 90 and 50 average to 70, between")
            .members("a:R:0 b:R:1").samples("a@100:c90 b@100:c50").prior(2, 0, 95).counters(0, 0),
        case("max aggregation: 90 and 50 give 90, high")
            .spec(|s| s.aggregation = Aggregation::Max)
            .members("a:R:0 b:R:1").samples("a@100:c90 b@100:c50").prior(2, 0, 95).counters(3, 0),
        case("mean: 10 and 20 average to 15, low")
            .members("a:R:0 b:R:1").samples("a@100:c10 b@100:c20").prior(0, 0, 95).counters(0, 1),
        case("max aggregation: 10 and 30 give 30, between")
            .spec(|s| s.aggregation = Aggregation::Max)
            .members("a:R:0 b:R:1").samples("a@100:c10 b@100:c30").prior(0, 2, 95).counters(0, 0),
        case("only running members are aggregated")
            .members("a:R:0 f:F:1").samples("a@100:c90 f@100:c5").prior(0, 0, 95)
            .want(In(&["f"])).counters(1, 0),
    ]);
}

#[test]
fn missing_stale_and_partial_data() {
    check_all(&[
        case("no samples: NoData, down reset, up kept")
            .members("a:R:0 b:R:1").prior(2, 3, 95)
            .hold(NoData).counters(2, 0).last_sample(95),
        case("empty group with min 0: NoData")
            .spec(|s| s.min = 0).prior(2, 3, 95).hold(NoData).counters(2, 0),
        case("stale sample (16 s old): NoData")
            .members("a:R:0").samples("a@84:c5").prior(0, 3, 80)
            .hold(NoData).counters(0, 0).last_sample(80),
        case("sample exactly stale_after old is still fresh")
            .members("a:R:0").samples("a@85:c5").prior(0, 0, 80)
            .hold(Steady).counters(0, 1).last_sample(85),
        case("partial data, low: resets and never counts down")
            .members("a:R:0 b:R:1").samples("a@100:c5").prior(0, 3, 95)
            .hold(Steady).counters(0, 0).last_sample(100),
        case("partial data, low: breaks an up streak too")
            .members("a:R:0 b:R:1").samples("a@100:c5").prior(3, 0, 95)
            .hold(Steady).counters(0, 0),
        case("stale member makes the data partial")
            .members("a:R:0 b:R:1").samples("a@100:c5 b@80:c5").prior(0, 3, 95)
            .hold(Steady).counters(0, 0),
        case("partial data, high: counts up")
            .members("a:R:0 b:R:1").samples("a@100:c90").prior(0, 0, 95)
            .hold(Steady).counters(1, 0),
        case("partial data, high: may scale out")
            .spec(|s| s.max = 3)
            .members("a:R:0 b:R:1").samples("a@100:c90").prior(3, 0, 95)
            .want(Out(1)),
        case("complete low streak, then a member goes missing: no handover")
            .members("a:R:0 b:R:1").samples("a@100:c5").prior(0, 4, 100)
            .hold(Steady).counters(0, 0),
        case("complete low streak, then a member goes stale: no scale-in")
            .spec(scale).members("a:R:0 b:R:1 c:R:2").samples("a@100:c5 b@100:c5 c@84:c5")
            .prior(0, 4, 100).hold(Steady).counters(0, 0),
    ]);
}

#[test]
fn bounds_min_max_increment() {
    check_all(&[
        case("below min: fill up, even with no data")
            .spec(|s| { scale(s); s.min = 3; })
            .members("a:R:0").prior(2, 0, 95)
            .want(Out(2)).reason("below min").counters(0, 0).stamped_out(Some(100)),
        case("below min beats a high streak")
            .spec(|s| { scale(s); s.min = 3; })
            .members("a:R:0").samples("a@100:c90").prior(3, 0, 95)
            .want(Out(2)).reason("below min"),
        case("below min ignores the cooldown")
            .spec(|s| { scale(s); s.min = 3; s.cooldown_up = Duration::from_secs(600); })
            .members("a:R:0").last_out(99).want(Out(2)).stamped_out(Some(100)),
        case("an empty group is filled to min")
            .want(Out(1)).reason("below min"),
        case("min above max (invalid) never fills past max")
            .spec(|s| { scale(s); s.min = 5; s.max = 2; })
            .members("a:R:0").want(Out(1)),
        case("above max: oldest victims")
            .spec(|s| { scale(s); s.max = 2; })
            .members("a:R:0 b:R:10 c:R:20 d:R:30").prior(2, 0, 95)
            .want(In(&["a", "b"])).reason("above max").counters(0, 0).stamped_in(Some(100)),
        case("above max: newest victims")
            .spec(|s| { scale(s); s.max = 2; s.victim = Victim::Newest; })
            .members("a:R:0 b:R:10 c:R:20 d:R:30").want(In(&["d", "c"])),
        case("above max: least busy victims")
            .spec(|s| { scale(s); s.max = 2; s.victim = Victim::LeastBusy; })
            .members("a:R:0 b:R:10 c:R:20 d:R:30")
            .samples("a@100:c50 b@100:c10 c@100:c90 d@100:c30")
            .want(In(&["b", "d"])),
        case("above max ignores the cooldown")
            .spec(|s| { scale(s); s.max = 2; s.cooldown_down = Duration::from_secs(600); })
            .members("a:R:0 b:R:10 c:R:20").last_in(99).want(In(&["a"])),
        case("above max never removes the last running member")
            .spec(|s| { scale(s); s.min = 0; s.max = 0; })
            .members("a:R:0 b:R:10").want(In(&["a"])),
        case("above max in handover mode spares the primary")
            .spec(|s| s.max = 2)
            .members("a:R:0 b:R:10 c:R:20").primary("a").want(In(&["b"])),
        case("above max in handover mode: a named primary is spared")
            .spec(|s| s.max = 2)
            .members("a:R:0 b:R:10 c:R:20").primary("c").want(In(&["a"])),
        case("scale-out by increment")
            .spec(scale).members("a:R:0").samples("a@100:c90").prior(3, 0, 95)
            .want(Out(2)).reason("cpu/mem max 90.0 >= 80 for 4 samples"),
        case("scale-out limited by max")
            .spec(scale).members("a:R:0 b:R:1 c:R:2 d:R:3")
            .samples("a@100:c90 b@100:c90 c@100:c90 d@100:c90").prior(3, 0, 95)
            .want(Out(1)),
        case("scale-out at max: AtBound, up streak reset")
            .spec(scale).members("a:R:0 b:R:1 c:R:2 d:R:3 e:R:4")
            .samples("a@100:c90 b@100:c90 c@100:c90 d@100:c90 e@100:c90").prior(3, 0, 95)
            .hold(AtBound).counters(0, 0).stamped_out(None),
        case("scale-in by increment")
            .spec(scale).members("a:R:0 b:R:1 c:R:2 d:R:3")
            .samples("a@100:c5 b@100:c5 c@100:c5 d@100:c5").prior(0, 3, 95)
            .want(In(&["a", "b"])).reason("cpu/mem max 5.0 <= 20 for 4 samples"),
        case("scale-in limited by min")
            .spec(|s| { scale(s); s.min = 3; })
            .members("a:R:0 b:R:1 c:R:2 d:R:3")
            .samples("a@100:c5 b@100:c5 c@100:c5 d@100:c5").prior(0, 3, 95)
            .want(In(&["a"])),
        case("scale-in at min: AtBound, down streak reset")
            .spec(|s| { scale(s); s.min = 4; })
            .members("a:R:0 b:R:1 c:R:2 d:R:3")
            .samples("a@100:c5 b@100:c5 c@100:c5 d@100:c5").prior(0, 3, 95)
            .hold(AtBound).counters(0, 0),
        case("scale-in never removes the last member")
            .spec(scale).members("a:R:0").samples("a@100:c5").prior(0, 3, 95)
            .hold(AtBound).counters(0, 0),
        case("scale-in never removes the last member, even with min 0")
            .spec(|s| { scale(s); s.min = 0; })
            .members("a:R:0").samples("a@100:c5").prior(0, 3, 95)
            .hold(AtBound).counters(0, 0),
        case("scale-in with least-busy victims")
            .spec(|s| { scale(s); s.victim = Victim::LeastBusy; })
            .members("a:R:0 b:R:1 c:R:2 d:R:3")
            .samples("a@100:c10 b@100:c2 c@100:c15 d@100:c5").prior(0, 3, 95)
            .want(In(&["b", "d"])),
    ]);
}

#[test]
fn handover_mode() {
    check_all(&[
        case("low with a running clone: hand over from the primary")
            .members("a:R:0 b:R:50").samples("a@100:c3 b@100:c3").prior(0, 3, 95)
            .want(Handover("a", "b")).counters(0, 0).stamped_in(Some(100))
            .reason("cpu/mem max 3.0 <= 20 for 4 samples"),
        case("a named primary is retired")
            .members("a:R:0 b:R:50").samples("a@100:c3 b@100:c3").prior(0, 3, 95).primary("b")
            .want(Handover("b", "a")),
        case("an unknown primary falls back to the oldest running member")
            .members("b:R:50 a:R:0").samples("a@100:c3 b@100:c3").prior(0, 3, 95).primary("zz")
            .want(Handover("a", "b")),
        case("successor is the oldest running member that is not the primary")
            .spec(|s| s.max = 3)
            .members("a:R:0 b:R:10 c:R:20").samples("a@100:c3 b@100:c3 c@100:c3")
            .prior(0, 3, 95).primary("b")
            .want(Handover("b", "a")),
        case("low without a clone: AtBound, down reset")
            .members("a:R:0").samples("a@100:c3").prior(0, 3, 95)
            .hold(AtBound).counters(0, 0),
        case("clone still creating: InProgress")
            .members("a:R:0 b:C:50").samples("a@100:c3").prior(0, 3, 95)
            .hold(InProgress).counters(0, 3),
        case("handover never goes below min")
            .spec(|s| { s.min = 2; s.max = 3; })
            .members("a:R:0 b:R:50").samples("a@100:c3 b@100:c3").prior(0, 3, 95)
            .hold(AtBound).counters(0, 0),
        case("high adds one clone")
            .members("a:R:0").samples("a@100:c95").prior(3, 0, 95).want(Out(1)),
        case("high adds one clone, whatever the increment")
            .spec(|s| { s.max = 5; s.increment = 3; })
            .members("a:R:0").samples("a@100:c95").prior(3, 0, 95).want(Out(1)),
        case("high with the clone running (at max): AtBound, up reset")
            .members("a:R:0 b:R:50").samples("a@100:c95 b@100:c95").prior(3, 0, 95)
            .hold(AtBound).counters(0, 0),
    ]);
}

#[test]
fn cooldowns() {
    fn up60(s: &mut GroupSpec) {
        s.cooldown_up = Duration::from_secs(60);
    }
    fn up60_down120_scale(s: &mut GroupSpec) {
        scale(s);
        s.cooldown_up = Duration::from_secs(60);
        s.cooldown_down = Duration::from_secs(120);
    }
    check_all(&[
        case("cooldown_up holds a complete up streak, counters kept")
            .spec(up60).members("a:R:0").samples("a@100:c90").prior(3, 0, 95).last_in(70)
            .want(cooldown(30)).counters(4, 0).stamped_in(Some(70)).stamped_out(None),
        case("the action fires once the cooldown has passed")
            .spec(up60).members("a:R:0").samples("a@130:c90").prior(4, 0, 125).last_in(70).now(130)
            .want(Out(1)).counters(0, 0).stamped_out(Some(130)),
        case("the action fires once the cooldown has passed, without a new sample")
            .spec(up60).members("a:R:0").samples("a@125:c90").prior(4, 0, 125).last_in(70).now(130)
            .want(Out(1)),
        case("one second short of the cooldown")
            .spec(up60).members("a:R:0").samples("a@129:c90").prior(4, 0, 125).last_in(70).now(129)
            .want(cooldown(1)).counters(5, 0),
        case("cooldown counts from the latest action, out or in")
            .spec(up60).members("a:R:0").samples("a@100:c90").prior(3, 0, 95).last_out(10).last_in(80)
            .want(cooldown(40)),
        case("no action yet: no cooldown")
            .spec(|s| s.cooldown_up = Duration::from_secs(3600))
            .members("a:R:0").samples("a@100:c90").prior(3, 0, 95).want(Out(1)),
        case("cooldown_down is longer: scale-out allowed 80 s after an action")
            .spec(up60_down120_scale).members("a:R:0").samples("a@100:c90").prior(3, 0, 95).last_out(20)
            .want(Out(2)),
        case("cooldown_down is longer: scale-in held 80 s after an action")
            .spec(up60_down120_scale).members("a:R:0 b:R:1 c:R:2")
            .samples("a@100:c5 b@100:c5 c@100:c5").prior(0, 3, 95).last_out(20)
            .want(cooldown(40)).counters(0, 4),
        case("scale-in fires once cooldown_down has passed")
            .spec(up60_down120_scale).members("a:R:0 b:R:1 c:R:2")
            .samples("a@140:c5 b@140:c5 c@140:c5").prior(0, 4, 135).last_out(20).now(140)
            .want(In(&["a", "b"])).stamped_in(Some(140)),
        case("handover waits for cooldown_down")
            .spec(|s| s.cooldown_down = Duration::from_secs(120))
            .members("a:R:0 b:R:50").samples("a@100:c3 b@100:c3").prior(0, 3, 95).last_out(60)
            .want(cooldown(80)).counters(0, 4),
        case("at a bound, the bound wins over the cooldown")
            .spec(up60).members("a:R:0 b:R:1").samples("a@100:c90 b@100:c90").prior(3, 0, 95).last_in(90)
            .hold(AtBound).counters(0, 0),
    ]);
}

#[test]
fn in_progress_and_failed_members() {
    check_all(&[
        case("operation pending: InProgress, state untouched")
            .members("a:R:0").samples("a@100:c90").prior(3, 0, 95).pending()
            .hold(InProgress).counters(3, 0).last_sample(95),
        case("operation pending with no data: down streak not reset")
            .members("a:R:0").prior(0, 3, 95).pending()
            .hold(InProgress).counters(0, 3),
        case("a creating member: InProgress")
            .members("a:R:0 b:C:5").samples("a@100:c90").prior(3, 0, 95)
            .hold(InProgress).counters(3, 0).last_sample(95),
        case("a draining member: InProgress")
            .members("a:R:0 b:D:5").samples("a@100:c5 b@100:c5").prior(0, 3, 95)
            .hold(InProgress).counters(0, 3),
        case("a deleting member: InProgress")
            .members("a:R:0 b:X:5").samples("a@100:c5").prior(0, 3, 95)
            .hold(InProgress),
        case("InProgress comes before below-min")
            .spec(|s| s.min = 2).members("a:C:0").hold(InProgress),
        case("InProgress comes before failed cleanup")
            .members("a:R:0 f:F:5").pending().hold(InProgress),
        case("failed members are removed one at a time, oldest first, without stamp or reset")
            .members("a:R:0 f:F:5 g:F:3").samples("a@100:c90").prior(1, 0, 95).last_out(50)
            .want(In(&["g"])).reason("replace failed members")
            .counters(2, 0).stamped_out(Some(50)).stamped_in(None).last_sample(100),
        case("failed cleanup is allowed in cooldown")
            .spec(|s| s.cooldown_down = Duration::from_secs(600))
            .members("a:R:0 f:F:5").last_in(99)
            .want(In(&["f"])).stamped_in(Some(99)),
        case("with no running member left, a replacement comes first")
            .members("f:F:5").want(Out(1)),
        case("below-min comes before failed cleanup: new before old")
            .spec(|s| { scale(s); s.min = 3; })
            .members("a:R:0 f:F:5").want(Out(2)),
        case("failed cleanup comes before a complete streak")
            .members("a:R:0 f:F:5").samples("a@100:c90").prior(3, 0, 95)
            .want(In(&["f"])).counters(4, 0),
        case("failed cleanup with no data resets the down streak (no data)")
            .members("a:R:0 f:F:5").prior(1, 3, 95)
            .want(In(&["f"])).counters(1, 0),
        case("an unknown member is neither repaired nor replaced")
            .members("a:R:0 u:U:5").samples("a@100:c50").hold(Steady),
        case("unknown members count against max")
            .spec(scale).members("a:R:0 u:U:1 v:U:2 w:U:3 x:U:4").samples("a@100:c95").prior(3, 0, 95)
            .hold(AtBound),
        case("unknown members keep the group at min: nothing is created for them")
            .spec(|s| { scale(s); s.min = 3; })
            .members("a:R:0 u:U:1 v:U:2").samples("a@100:c50").hold(Steady),
        case("an unknown member is never a scale-in victim")
            .spec(scale).members("u:U:0 a:R:1 b:R:2").samples("a@100:c5 b@100:c5").prior(0, 3, 95)
            .want(In(&["a"])),
    ]);
}

#[test]
fn double_call_guard_and_priority() {
    check_all(&[
        case("the same sample twice counts once")
            .members("a:R:0").samples("a@100:c90").prior(3, 0, 100)
            .hold(Steady).counters(3, 0).last_sample(100),
        case("an older sample than already counted counts nothing")
            .members("a:R:0").samples("a@99:c90").prior(3, 0, 100)
            .hold(Steady).counters(3, 0).last_sample(100),
        case("no new data does not break a streak")
            .members("a:R:0").samples("a@100:c50").prior(2, 0, 100)
            .hold(Steady).counters(2, 0),
        case("one new sample among old ones counts the whole group once")
            .members("a:R:0 b:R:1").samples("a@100:c90 b@90:c90").prior(1, 0, 95)
            .counters(2, 0).last_sample(100),
        case("scale-out beats scale-in")
            .members("a:R:0 b:R:1").spec(|s| s.max = 3)
            .samples("a@100:c5 b@100:c5").prior(4, 4, 100)
            .want(Out(1)),
        case("hold (at bound) beats scale-in")
            .spec(scale).members("a:R:0 b:R:1 c:R:2 d:R:3 e:R:4")
            .samples("a@100:c5 b@100:c5 c@100:c5 d@100:c5 e@100:c5").prior(4, 4, 100)
            .hold(AtBound).counters(0, 4),
        case("hold (cooldown) beats scale-in")
            .spec(|s| { scale(s); s.cooldown_up = Duration::from_secs(60); })
            .members("a:R:0 b:R:1").samples("a@100:c5 b@100:c5").prior(4, 4, 100).last_in(90)
            .want(cooldown(50)),
        case("min_up of 1 acts on the first high sample")
            .spec(|s| th(s).min_up = 1)
            .members("a:R:0").samples("a@100:c90").prior(0, 0, 95)
            .want(Out(1)).reason("cpu/mem max 90.0 >= 80 for 1 sample"),
    ]);
}

#[test]
fn reasons_name_the_metric() {
    check_all(&[
        case("cpu")
            .spec(|s| { th(s).metric = MetricChoice::Cpu; th(s).high = 75.5; })
            .members("a:R:0").samples("a@100:c93").prior(3, 0, 95)
            .reason("cpu 93.0 >= 75.5 for 4 samples"),
        case("mem")
            .spec(|s| { scale(s); th(s).metric = MetricChoice::Mem; })
            .members("a:R:0 b:R:1").samples("a@100:m5.2 b@100:m5.2").prior(0, 3, 95)
            .reason("mem 5.2 <= 20 for 4 samples"),
    ]);
}

#[test]
fn evaluation_numbers() {
    let mut spec = GroupSpec::example("g");
    let ms = members(&spec, "a:R:0 b:R:1 c:R:2 d:C:3");
    let latest = samples("a@100:c10:m30 b@100:c50 c@80:c99:m99 d@100:c99:m99");
    let (e, _) = run(&spec, &ms, &latest, None, false, &PolicyState::default(), t(100));
    // c is stale and d is creating: neither counts.
    assert_eq!((e.cpu, e.mem, e.value), (Some(30.0), Some(30.0), Some(40.0)));
    assert_eq!((e.sampled, e.running, e.at), (2, 3, t(100)));
    assert_eq!(e.decision, Decision::Hold(HoldReason::InProgress));

    spec.aggregation = Aggregation::Max;
    let (e, _) = run(&spec, &ms, &latest, None, false, &PolicyState::default(), t(100));
    assert_eq!((e.cpu, e.mem, e.value), (Some(50.0), Some(30.0), Some(50.0)));

    let (e, _) = run(&spec, &ms[..3], &[], None, false, &PolicyState::default(), t(100));
    assert_eq!((e.cpu, e.mem, e.value, e.sampled, e.running), (None, None, None, 0, 3));
}

#[test]
fn policy_for_returns_the_threshold_policy() {
    let spec = GroupSpec::example("g");
    let ms = members(&spec, "a:R:0");
    let latest = samples("a@100:c90");
    let view = GroupView::new(&spec, &ms, &latest);
    let st = PolicyState { up_count: 3, last_sample_at: t(95), ..PolicyState::default() };
    let boxed = crate::policy_for(&spec).decide(&view, &st, t(100));
    assert_eq!(boxed, ThresholdPolicy.decide(&view, &st, t(100)));
    assert!(matches!(boxed.0.decision, Decision::ScaleOut { count: 1, .. }));
}

#[test]
fn policy_for_returns_one_policy_per_kind_and_the_spec_is_the_truth() {
    let ms_spec = GroupSpec::example("g");
    let ms = members(&ms_spec, "a:R:0");
    let latest = samples("a@100:c90:r200:q20");
    let st = PolicyState { up_count: 3, last_sample_at: t(95), ..PolicyState::default() };
    let policies: [&dyn Policy; 3] = [&ThresholdPolicy, &TargetTrackingPolicy, &RequestCountPolicy];
    for kind in [seed, target, requests] {
        let mut spec = GroupSpec::example("g");
        kind(&mut spec);
        let view = GroupView::new(&spec, &ms, &latest);
        let want = crate::policy_for(&spec).decide(&view, &st, t(100));
        assert!(matches!(want.0.decision, Decision::ScaleOut { count: 1, .. }), "{}: {want:?}", spec.policy.kind());
        // Any policy handed this spec decides by the spec's kind.
        for p in policies {
            assert_eq!(p.decide(&view, &st, t(100)), want, "{}", spec.policy.kind());
        }
    }
}
