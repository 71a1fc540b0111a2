//! `LocalProcessSource` against real processes: a busy shell loop reads as busy, `sleep` as idle.
//!
//! The host may be busy with other work (builds on two cores), so the busy child gets up to ten
//! one-second windows to show > 80 %; the idle one must stay < 10 % in every window. (A host that
//! is saturated for all ten seconds cannot give a spinning process 80 % of a core: that fails.)

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flotilla_metrics::LocalProcessSource;
use flotilla_model::{Clock, GroupId, Instance, Metric, MetricSource, SystemClock};

/// Kills (SIGKILL, by its own pid) and reaps the child even when an assertion fails.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &str, args: &[&str]) -> Reaped {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn test child");
    Reaped(child)
}

fn member(id: &str, pid: u32) -> Instance {
    let mut m = Instance::new(id, &GroupId::new("g"), SystemClock.now());
    m.tags.insert("pid".into(), pid.to_string());
    m.tags.insert("vcpus".into(), "1".into());
    m
}

#[tokio::test]
async fn busy_child_reads_busy_and_idle_child_reads_idle() {
    let busy = spawn("sh", &["-c", "while :; do :; done"]);
    let idle = spawn("sleep", &["30"]);
    let src = LocalProcessSource::new();
    let g = GroupId::new("g");
    let members = [member("busy", busy.0.id()), member("idle", idle.0.id())];

    // The first call reads twice (~200 ms apart), so it already has CPU values.
    let first = src.sample(&g, &members, SystemClock.now()).await.unwrap();
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(first.iter().all(|s| s.get(Metric::Cpu).is_some() && s.get(Metric::Mem).is_some()));

    let mut best_busy: f64 = 0.0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = src.sample(&g, &members, SystemClock.now()).await.unwrap();
        let cpu = |id: &str| s.iter().find(|s| s.instance.as_str() == id).and_then(|s| s.get(Metric::Cpu)).unwrap();
        let (b, i) = (cpu("busy"), cpu("idle"));
        assert!(i < 10.0, "idle child at {i:.1} %");
        let mem = s[0].get(Metric::Mem).unwrap();
        assert!((0.0..5.0).contains(&mem), "a shell loop uses a sliver of host memory: {mem}");
        best_busy = best_busy.max(b);
        if best_busy > 80.0 {
            break;
        }
    }
    assert!(best_busy > 80.0, "busy child peaked at {best_busy:.1} %");

    // A member whose process is gone is simply absent.
    drop(busy);
    let s = src.sample(&g, &members, SystemClock.now()).await.unwrap();
    assert_eq!(s.iter().map(|s| s.instance.as_str()).collect::<Vec<_>>(), ["idle"]);
}
