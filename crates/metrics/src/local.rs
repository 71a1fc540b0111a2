//! [`LocalProcessSource`]: CPU and memory of the `local` provider's members, read from /proc.
//!
//! A member's CPU % is a rate, so it needs two readings. The source keeps the previous reading per
//! member and uses the controller's `now` for the elapsed time (so the maths follows the control
//! loop's clock, not a second clock of its own). A member seen for the first time is read twice,
//! ~200 ms apart, so its very first sample already has a CPU value instead of a gap the policy
//! would have to wait out.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use flotilla_model::{GroupId, Instance, InstanceId, Metric, MetricSource, Sample, SeamError, Timestamp};

use flotilla_procfs as procfs;

/// The gap between the two readings of a member seen for the first time.
pub const FIRST_READING_GAP: Duration = Duration::from_millis(200);

/// Below this, a tick delta (10 ms resolution) says nothing useful: read twice instead.
const MIN_ELAPSED: Duration = Duration::from_millis(100);

/// Samples members by their `pid` tag (and `vcpus` tag, default 1). Name: `proc`.
///
/// If a member also carries a `starttime` tag (the local provider sets it), a process under that
/// pid with another starttime is a stranger that reused the pid: the member is absent, not misread.
pub struct LocalProcessSource {
    proc_root: PathBuf,
    clk_tck: u64,
    page_kb: u64,
    first_gap: Duration,
    /// Previous reading per (group, member): groups are sampled in separate calls, so forgetting
    /// "members not passed in" must only forget members of the group being sampled.
    prev: Mutex<HashMap<(GroupId, InstanceId), Prev>>,
}

/// The last reading of one member's process.
#[derive(Debug, Clone, Copy)]
struct Prev {
    pid: i32,
    starttime: u64,
    ticks: u64,
    at: Timestamp,
}

/// One read of one process.
#[derive(Debug, Clone, Copy)]
struct Reading {
    starttime: u64,
    ticks: u64,
    rss_kb: u64,
}

/// A member that can be sampled.
struct Target<'a> {
    index: usize,
    member: &'a Instance,
    pid: i32,
    vcpus: u32,
    starttime: Option<u64>,
}

impl Default for LocalProcessSource {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalProcessSource {
    /// Reads the real /proc.
    pub fn new() -> Self {
        LocalProcessSource {
            proc_root: PathBuf::from("/proc"),
            clk_tck: procfs::clk_tck(),
            page_kb: procfs::page_size_kb(),
            first_gap: FIRST_READING_GAP,
            prev: Mutex::new(HashMap::new()),
        }
    }

    /// Reads another directory laid out like /proc (tests).
    pub fn with_proc_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.proc_root = root.into();
        self
    }

    /// Overrides clock ticks per second (tests with a fake /proc).
    pub fn with_clk_tck(mut self, clk_tck: u64) -> Self {
        self.clk_tck = clk_tck.max(1);
        self
    }

    /// Overrides the gap between the two readings of a new member.
    pub fn with_first_gap(mut self, gap: Duration) -> Self {
        self.first_gap = gap;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(GroupId, InstanceId), Prev>> {
        self.prev.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many members the source remembers (tests).
    pub fn tracked(&self) -> usize {
        self.lock().len()
    }

    fn mem_total_kb(&self) -> Option<u64> {
        let text = std::fs::read_to_string(self.proc_root.join("meminfo")).ok()?;
        procfs::parse_meminfo(&text).map(|m| m.total_kb).filter(|&t| t > 0)
    }

    /// Reads one process; `None` if it is gone or has exited (a zombie is not a member any more).
    /// /proc reads never touch a disk, so plain blocking reads are fine on the runtime.
    fn read(&self, pid: i32) -> Option<Reading> {
        let dir = self.proc_root.join(pid.to_string());
        let stat = procfs::parse_pid_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
        if stat.has_exited() {
            return None;
        }
        let rss_kb = std::fs::read_to_string(dir.join("status"))
            .ok()
            .and_then(|s| procfs::parse_pid_status_vmrss_kb(&s))
            .unwrap_or(stat.rss_pages.saturating_mul(self.page_kb));
        Some(Reading { starttime: stat.starttime, ticks: stat.cpu_ticks(), rss_kb })
    }

    fn sample_of(&self, t: &Target<'_>, cpu: f64, rss_kb: u64, mem_total: Option<u64>, now: Timestamp) -> Sample {
        let mut s = Sample::new(t.member.id.clone(), now).with(Metric::Cpu, cpu);
        if let Some(total) = mem_total {
            s.set(Metric::Mem, procfs::process_mem_percent(rss_kb, total));
        }
        s
    }
}

fn targets(members: &[Instance]) -> Vec<Target<'_>> {
    members
        .iter()
        .enumerate()
        .filter_map(|(index, member)| {
            let pid = member.tag("pid").and_then(|p| p.parse::<i32>().ok()).filter(|&p| p > 0);
            let Some(pid) = pid else {
                tracing::debug!(member = %member.id, "no usable pid tag: not sampled");
                return None;
            };
            let vcpus = member.tag("vcpus").and_then(|v| v.parse::<u32>().ok()).filter(|&v| v > 0).unwrap_or(1);
            let starttime = member.tag("starttime").and_then(|v| v.parse::<u64>().ok());
            Some(Target { index, member, pid, vcpus, starttime })
        })
        .collect()
}

#[async_trait]
impl MetricSource for LocalProcessSource {
    fn name(&self) -> &str {
        "proc"
    }

    async fn sample(&self, group: &GroupId, members: &[Instance], now: Timestamp) -> Result<Vec<Sample>, SeamError> {
        let mem_total = self.mem_total_kb();
        let mut out: Vec<Option<Sample>> = vec![None; members.len()];
        let mut fresh = HashMap::new();
        let mut first = Vec::new();
        let known = self.lock().clone();

        for t in targets(members) {
            let Some(r) = self.read(t.pid) else { continue };
            if t.starttime.is_some_and(|st| st != r.starttime) {
                tracing::debug!(member = %t.member.id, pid = t.pid, "pid now belongs to another process: not sampled");
                continue;
            }
            let key = (group.clone(), t.member.id.clone());
            match known.get(&key) {
                // The same process (pid reuse changes starttime) with enough time in between.
                Some(p) if p.pid == t.pid && p.starttime == r.starttime && now.since(p.at) >= MIN_ELAPSED => {
                    let cpu = procfs::process_cpu_percent(p.ticks, r.ticks, now.since(p.at), self.clk_tck, t.vcpus);
                    out[t.index] = Some(self.sample_of(&t, cpu, r.rss_kb, mem_total, now));
                    fresh.insert(key, Prev { pid: t.pid, starttime: r.starttime, ticks: r.ticks, at: now });
                }
                _ => first.push((t, r)),
            }
        }

        if !first.is_empty() {
            // One shared wait for all new members; measured, since a loaded runtime oversleeps.
            let started = tokio::time::Instant::now();
            tokio::time::sleep(self.first_gap).await;
            let gap = started.elapsed();
            for (t, r0) in first {
                let Some(r) = self.read(t.pid).filter(|r| r.starttime == r0.starttime) else {
                    continue;
                };
                let cpu = procfs::process_cpu_percent(r0.ticks, r.ticks, gap, self.clk_tck, t.vcpus);
                out[t.index] = Some(self.sample_of(&t, cpu, r.rss_kb, mem_total, now));
                let key = (group.clone(), t.member.id.clone());
                fresh.insert(key, Prev { pid: t.pid, starttime: r.starttime, ticks: r.ticks, at: now.plus(gap) });
            }
        }

        let passed: HashSet<&InstanceId> = members.iter().map(|m| &m.id).collect();
        let mut prev = self.lock();
        // Forget this group's members that were not passed in or could not be read.
        prev.retain(|(g, id), _| g != group || (passed.contains(id) && fresh.contains_key(&(g.clone(), id.clone()))));
        prev.extend(fresh);
        Ok(out.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A fake /proc with one process per pid, edited between samples.
    struct FakeProc(PathBuf);

    impl FakeProc {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("flotilla-fakeproc-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("meminfo"), "MemTotal: 1000000 kB\nMemAvailable: 500000 kB\n").unwrap();
            FakeProc(dir)
        }
        fn set(&self, pid: i32, state: char, ticks: u64, starttime: u64, rss_kb: u64) {
            let dir = self.0.join(pid.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            let stat = format!(
                "{pid} (flotilla workload) {state} 1 {pid} 1 0 -1 0 0 0 0 0 {ticks} 0 0 0 20 0 1 0 {starttime} 0 1 0\n"
            );
            std::fs::write(dir.join("stat"), stat).unwrap();
            std::fs::write(dir.join("status"), format!("Name:\tx\nVmRSS:\t{rss_kb} kB\n")).unwrap();
        }
        fn remove(&self, pid: i32) {
            std::fs::remove_dir_all(self.0.join(pid.to_string())).unwrap();
        }
        fn root(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for FakeProc {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn member(id: &str, pid: i32, vcpus: Option<u32>) -> Instance {
        let mut m = Instance::new(id, &GroupId::new("g"), Timestamp::ZERO);
        m.tags.insert("pid".into(), pid.to_string());
        if let Some(v) = vcpus {
            m.tags.insert("vcpus".into(), v.to_string());
        }
        m
    }

    fn source(fake: &FakeProc) -> LocalProcessSource {
        LocalProcessSource::new()
            .with_proc_root(fake.root())
            .with_clk_tck(100)
            .with_first_gap(Duration::from_millis(10))
    }

    #[tokio::test]
    async fn rates_use_the_now_argument_and_vcpus() {
        let fake = FakeProc::new("rates");
        fake.set(10, 'S', 1000, 5, 100_000);
        fake.set(11, 'R', 1000, 6, 1_000);
        let src = source(&fake);
        let g = GroupId::new("g");
        let members = [member("a", 10, None), member("b", 11, Some(2))];
        let t0 = Timestamp::from_millis(1_000_000);

        // First reading: read twice with nothing changed in between → 0 %, but a value.
        let s = src.sample(&g, &members, t0).await.unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].get(Metric::Cpu), Some(0.0));
        assert_eq!(s[0].get(Metric::Mem), Some(10.0), "100000 of 1000000 kB");
        assert_eq!(s[0].at, t0);

        // 2 s later by `now`: a used 100 ticks (1 s of CPU) = 50 %; b used 200 ticks on 2 vCPUs = 50 %.
        fake.set(10, 'S', 1100, 5, 100_000);
        fake.set(11, 'R', 1200, 6, 1_000);
        let s = src.sample(&g, &members, t0.plus(Duration::from_secs(2))).await.unwrap();
        let cpu: Vec<_> = s.iter().map(|s| (s.instance.as_str().to_string(), s.get(Metric::Cpu).unwrap())).collect();
        // The stored `at` of a first reading is `now + gap`, so elapsed is 2 s minus the ~10 ms gap.
        assert_eq!(cpu[0].0, "a");
        assert!((cpu[0].1 - 50.0).abs() < 1.0, "{cpu:?}");
        assert!((cpu[1].1 - 50.0).abs() < 1.0, "{cpu:?}");
    }

    #[tokio::test]
    async fn gone_zombie_and_untagged_members_are_absent() {
        let fake = FakeProc::new("gone");
        fake.set(20, 'S', 0, 1, 10);
        fake.set(21, 'Z', 0, 1, 10);
        let src = source(&fake);
        let g = GroupId::new("g");
        let mut untagged = member("c", 1, None);
        untagged.tags.clear();
        let members = [member("a", 20, None), member("b", 21, None), untagged, member("d", 999, None)];
        let s = src.sample(&g, &members, Timestamp::from_millis(5_000)).await.unwrap();
        assert_eq!(s.iter().map(|s| s.instance.as_str()).collect::<Vec<_>>(), ["a"]);
        fake.remove(20);
        let s = src.sample(&g, &members, Timestamp::from_millis(10_000)).await.unwrap();
        assert!(s.is_empty());
        assert_eq!(src.tracked(), 0, "a vanished process is forgotten");
    }

    #[tokio::test]
    async fn a_new_process_behind_the_same_pid_resets_the_reading() {
        let fake = FakeProc::new("reuse");
        fake.set(30, 'S', 5_000, 1, 10);
        let src = source(&fake);
        let g = GroupId::new("g");
        let members = [member("a", 30, None)];
        src.sample(&g, &members, Timestamp::from_millis(1_000)).await.unwrap();
        // Same pid, new process with fewer ticks: must not compute a delta against the old one.
        fake.set(30, 'S', 10, 2, 10);
        let s = src.sample(&g, &members, Timestamp::from_millis(3_000)).await.unwrap();
        assert_eq!(s[0].get(Metric::Cpu), Some(0.0));
        fake.set(30, 'S', 60, 2, 10);
        let s = src.sample(&g, &members, Timestamp::from_millis(4_000)).await.unwrap();
        // 50 ticks over ~(4000 − 3010) ms ≈ 50.5 %.
        let cpu = s[0].get(Metric::Cpu).unwrap();
        assert!((cpu - 50.5).abs() < 1.0, "{cpu}");
    }

    #[tokio::test]
    async fn a_starttime_tag_guards_against_pid_reuse() {
        let fake = FakeProc::new("tagged");
        fake.set(60, 'S', 0, 7, 10);
        let src = source(&fake);
        let g = GroupId::new("g");
        let mut ours = member("a", 60, None);
        ours.tags.insert("starttime".into(), "7".into());
        let mut stale = member("b", 60, None);
        stale.tags.insert("starttime".into(), "6".into());
        let s = src.sample(&g, &[ours, stale], Timestamp::from_millis(1_000)).await.unwrap();
        assert_eq!(s.iter().map(|s| s.instance.as_str()).collect::<Vec<_>>(), ["a"]);
    }

    #[tokio::test]
    async fn forgets_members_no_longer_passed_but_only_in_that_group() {
        let fake = FakeProc::new("forget");
        fake.set(40, 'S', 0, 1, 10);
        fake.set(41, 'S', 0, 1, 10);
        let src = source(&fake);
        let (g, h) = (GroupId::new("g"), GroupId::new("h"));
        let now = Timestamp::from_millis(1_000);
        src.sample(&g, &[member("a", 40, None), member("b", 41, None)], now).await.unwrap();
        src.sample(&h, &[member("x", 40, None)], now).await.unwrap();
        assert_eq!(src.tracked(), 3);
        src.sample(&g, &[member("a", 40, None)], now.plus(Duration::from_secs(1))).await.unwrap();
        assert_eq!(src.tracked(), 2, "g/b forgotten, h/x kept");
    }

    #[tokio::test]
    async fn samples_too_close_together_read_twice() {
        let fake = FakeProc::new("close");
        fake.set(50, 'S', 0, 1, 10);
        let src = source(&fake);
        let g = GroupId::new("g");
        let members = [member("a", 50, None)];
        let now = Timestamp::from_millis(1_000);
        src.sample(&g, &members, now).await.unwrap();
        fake.set(50, 'S', 1_000, 1, 10);
        // Same `now` again: no usable elapsed time, so a fresh double reading (0 % here), not a
        // division by ~zero.
        let s = src.sample(&g, &members, now).await.unwrap();
        assert_eq!(s[0].get(Metric::Cpu), Some(0.0));
    }
}
