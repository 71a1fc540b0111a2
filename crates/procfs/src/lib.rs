//! Pure /proc parsers and the seed's percentage maths. No I/O here: callers read the files and
//! pass the text in, so every edge case (a `comm` with spaces and parentheses, a kernel without
//! `MemAvailable`, counters that go backwards) is unit tested on literal text.

use std::time::Duration;

/// The aggregate `cpu ` line of /proc/stat, in clock ticks since boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuTimes {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl CpuTimes {
    /// Time not doing work: the seed counts iowait as idle.
    pub fn idle_all(&self) -> u64 {
        self.idle.saturating_add(self.iowait)
    }
    /// All accounted time (guest time is already inside `user`/`nice`, so it is not added again).
    pub fn total(&self) -> u64 {
        [self.user, self.nice, self.system, self.idle, self.iowait, self.irq, self.softirq, self.steal]
            .iter()
            .fold(0u64, |a, &b| a.saturating_add(b))
    }
    pub fn busy(&self) -> u64 {
        self.total().saturating_sub(self.idle_all())
    }
}

/// Parses the aggregate `cpu ` line of /proc/stat (not the per-core `cpuN` lines). Kernels that
/// print fewer than eight fields get zeros for the missing ones; fewer than four is malformed.
pub fn parse_proc_stat_cpu(text: &str) -> Option<CpuTimes> {
    let line = text.lines().find(|l| l.split_whitespace().next() == Some("cpu"))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    if fields.len() < 4 {
        return None;
    }
    let f = |i: usize| fields.get(i).copied().unwrap_or(0);
    Some(CpuTimes {
        user: f(0),
        nice: f(1),
        system: f(2),
        idle: f(3),
        iowait: f(4),
        irq: f(5),
        softirq: f(6),
        steal: f(7),
    })
}

/// Host CPU busy % between two readings: busy delta / total delta × 100 (the seed's maths).
/// `None` when no time passed or the counters went backwards (a different boot, a wrapped counter).
pub fn cpu_percent(prev: &CpuTimes, cur: &CpuTimes) -> Option<f64> {
    let total = cur.total().checked_sub(prev.total()).filter(|&t| t > 0)?;
    let busy = cur.busy().checked_sub(prev.busy())?;
    Some((busy as f64 / total as f64 * 100.0).clamp(0.0, 100.0))
}

/// The /proc/meminfo fields the memory maths needs, in kB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemInfo {
    pub total_kb: u64,
    pub free_kb: u64,
    /// Absent on kernels before 3.14.
    pub available_kb: Option<u64>,
    pub buffers_kb: u64,
    pub cached_kb: u64,
}

/// Parses /proc/meminfo; `None` without a `MemTotal` line.
pub fn parse_meminfo(text: &str) -> Option<MemInfo> {
    let mut total = None;
    let mut info = MemInfo::default();
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(kb) = rest.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()) else {
            continue;
        };
        match key.trim() {
            "MemTotal" => total = Some(kb),
            "MemFree" => info.free_kb = kb,
            "MemAvailable" => info.available_kb = Some(kb),
            "Buffers" => info.buffers_kb = kb,
            "Cached" => info.cached_kb = kb,
            _ => {}
        }
    }
    info.total_kb = total?;
    Some(info)
}

/// Host memory used %: (MemTotal − MemAvailable) / MemTotal × 100, with MemFree + Buffers + Cached
/// standing in for MemAvailable on kernels that lack it. 0 for a zero MemTotal.
pub fn mem_percent(m: &MemInfo) -> f64 {
    if m.total_kb == 0 {
        return 0.0;
    }
    let available = m
        .available_kb
        .unwrap_or_else(|| m.free_kb.saturating_add(m.buffers_kb).saturating_add(m.cached_kb))
        .min(m.total_kb);
    ((m.total_kb - available) as f64 / m.total_kb as f64 * 100.0).clamp(0.0, 100.0)
}

/// The fields of /proc/<pid>/stat Flotilla uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PidStat {
    pub pid: i32,
    /// The executable name as the kernel reports it (may contain spaces and parentheses).
    pub comm: String,
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// User and system CPU time, in clock ticks (all threads; not waited-for children).
    pub utime: u64,
    pub stime: u64,
    /// Start time after boot, in clock ticks: with the pid, it identifies one process for its life
    /// (a reused pid gets a different starttime).
    pub starttime: u64,
    /// Resident set size, in pages.
    pub rss_pages: u64,
}

impl PidStat {
    /// utime + stime.
    pub fn cpu_ticks(&self) -> u64 {
        self.utime.saturating_add(self.stime)
    }
    /// A zombie or dead process has exited; only its /proc entry lingers until it is reaped.
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parses /proc/<pid>/stat. `comm` is parenthesised and may itself contain spaces and `)`, so the
/// fields are split at the *last* `)`.
pub fn parse_pid_stat(text: &str) -> Option<PidStat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let pid = text[..open].trim().parse().ok()?;
    let comm = text[open + 1..close].to_string();
    // Fields after comm, numbered from 3 as in proc(5): index = field number − 3.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let num = |field: usize| -> Option<u64> { rest.get(field - 3)?.parse().ok() };
    let int = |field: usize| -> Option<i32> { rest.get(field - 3)?.parse().ok() };
    let mut state = rest.first()?.chars();
    let state_char = state.next()?;
    if state.next().is_some() {
        return None;
    }
    Some(PidStat {
        pid,
        comm,
        state: state_char,
        ppid: int(4)?,
        pgrp: int(5)?,
        utime: num(14)?,
        stime: num(15)?,
        starttime: num(22)?,
        // rss is a signed long in the kernel; a negative value (never seen in practice) reads as 0.
        rss_pages: rest.get(24 - 3)?.parse::<i64>().ok()?.max(0) as u64,
    })
}

/// `VmRSS` of /proc/<pid>/status, in kB; `None` for kernel threads and exited processes.
pub fn parse_pid_status_vmrss_kb(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// A process's CPU busy % over `elapsed`, relative to its `vcpus` (the seed's delta maths): ticks
/// delta / `clk_tck` / elapsed / vcpus × 100, clamped to 0..=100. 0 when no time passed.
pub fn process_cpu_percent(prev_ticks: u64, cur_ticks: u64, elapsed: Duration, clk_tck: u64, vcpus: u32) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs <= 0.0 || clk_tck == 0 {
        return 0.0;
    }
    let cpu_secs = cur_ticks.saturating_sub(prev_ticks) as f64 / clk_tck as f64;
    (cpu_secs / secs / f64::from(vcpus.max(1)) * 100.0).clamp(0.0, 100.0)
}

/// A process's resident memory as % of the host's MemTotal, clamped to 0..=100.
pub fn process_mem_percent(rss_kb: u64, mem_total_kb: u64) -> f64 {
    if mem_total_kb == 0 {
        return 0.0;
    }
    (rss_kb as f64 / mem_total_kb as f64 * 100.0).clamp(0.0, 100.0)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), 100 if the system will not say.
pub fn clk_tck() -> u64 {
    sysconf_positive(nix::unistd::SysconfVar::CLK_TCK).unwrap_or(100)
}

/// The page size in kB (`sysconf(_SC_PAGESIZE)`), 4 if the system will not say.
pub fn page_size_kb() -> u64 {
    sysconf_positive(nix::unistd::SysconfVar::PAGE_SIZE).map(|b| (b / 1024).max(1)).unwrap_or(4)
}

fn sysconf_positive(var: nix::unistd::SysconfVar) -> Option<u64> {
    nix::unistd::sysconf(var).ok().flatten().and_then(|v| u64::try_from(v).ok()).filter(|&v| v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  4705 356 584 3699 23 0 12 7 0 0\n\
                        cpu0 1393280 32966 572056 13343292 6130 0 17875 0 0 0\n\
                        intr 114930548 113199788 3 0 5 263 0 4 [... lots more numbers ...]\n\
                        ctxt 1990473\n";

    #[test]
    fn parses_the_aggregate_cpu_line_only() {
        let t = parse_proc_stat_cpu(STAT).unwrap();
        assert_eq!(
            t,
            CpuTimes { user: 4705, nice: 356, system: 584, idle: 3699, iowait: 23, irq: 0, softirq: 12, steal: 7 }
        );
        assert_eq!(t.total(), 4705 + 356 + 584 + 3699 + 23 + 12 + 7);
        assert_eq!(t.idle_all(), 3699 + 23);
        assert_eq!(t.busy(), 4705 + 356 + 584 + 12 + 7);
    }

    #[test]
    fn short_and_malformed_cpu_lines() {
        let old = parse_proc_stat_cpu("cpu 10 20 30 40\n").unwrap();
        assert_eq!(old.idle, 40);
        assert_eq!(old.steal, 0);
        assert_eq!(parse_proc_stat_cpu("cpu 10 20 30\n"), None);
        assert_eq!(parse_proc_stat_cpu("cpu 10 x 30 40\n"), None);
        assert_eq!(parse_proc_stat_cpu("cpu0 1 2 3 4\n"), None, "per-core lines are not the aggregate");
        assert_eq!(parse_proc_stat_cpu(""), None);
    }

    #[test]
    fn cpu_percent_is_busy_delta_over_total_delta() {
        let prev = CpuTimes { user: 100, system: 100, idle: 700, iowait: 100, ..Default::default() };
        // +150 busy (user 100, system 50), +50 idle, +0 iowait: 150 / 200 = 75 %.
        let cur = CpuTimes { user: 200, system: 150, idle: 750, iowait: 100, ..Default::default() };
        assert_eq!(cpu_percent(&prev, &cur), Some(75.0));
        // iowait counts as idle.
        let io = CpuTimes { iowait: 300, ..prev };
        assert_eq!(cpu_percent(&prev, &io), Some(0.0));
        assert_eq!(cpu_percent(&prev, &prev), None, "no time passed");
        assert_eq!(cpu_percent(&cur, &prev), None, "counters went backwards");
    }

    const MEMINFO: &str = "MemTotal:       16000000 kB\n\
                           MemFree:         2000000 kB\n\
                           MemAvailable:    4000000 kB\n\
                           Buffers:          500000 kB\n\
                           Cached:          3000000 kB\n\
                           SwapCached:            0 kB\n\
                           HugePages_Total:       0\n";

    #[test]
    fn meminfo_prefers_mem_available() {
        let m = parse_meminfo(MEMINFO).unwrap();
        assert_eq!(m.total_kb, 16_000_000);
        assert_eq!(m.available_kb, Some(4_000_000));
        assert_eq!(mem_percent(&m), 75.0);
    }

    #[test]
    fn meminfo_falls_back_to_free_buffers_cached() {
        let text: String =
            MEMINFO.lines().filter(|l| !l.starts_with("MemAvailable")).map(|l| format!("{l}\n")).collect();
        let m = parse_meminfo(&text).unwrap();
        assert_eq!(m.available_kb, None);
        // available = 2000000 + 500000 + 3000000 = 5500000: used = 10500000 / 16000000.
        assert_eq!(mem_percent(&m), 65.625);
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
        assert_eq!(mem_percent(&MemInfo::default()), 0.0);
        let odd = MemInfo { total_kb: 100, available_kb: Some(200), ..Default::default() };
        assert_eq!(mem_percent(&odd), 0.0, "more available than total reads as 0 %, not negative");
    }

    // A real line from a `sleep` process, fields 1..=52.
    const PID_STAT: &str = "4242 (sleep) S 4200 4242 4200 34816 4242 4194304 98 0 0 0 3 5 0 0 20 0 1 0 \
                            987654 8192000 130 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 \
                            0 0 0 0 0 0 0 0\n";

    #[test]
    fn parses_pid_stat() {
        let s = parse_pid_stat(PID_STAT).unwrap();
        assert_eq!(s.pid, 4242);
        assert_eq!(s.comm, "sleep");
        assert_eq!(s.state, 'S');
        assert_eq!((s.ppid, s.pgrp), (4200, 4242));
        assert_eq!((s.utime, s.stime, s.cpu_ticks()), (3, 5, 8));
        assert_eq!(s.starttime, 987654);
        assert_eq!(s.rss_pages, 130);
        assert!(!s.has_exited());
    }

    #[test]
    fn comm_with_spaces_and_parens_is_split_at_the_last_paren() {
        let text = PID_STAT.replacen("(sleep)", "(my (odd) name) Z 1 2 )", 1);
        let s = parse_pid_stat(&text).unwrap();
        assert_eq!(s.comm, "my (odd) name) Z 1 2 ");
        assert_eq!(s.state, 'S');
        assert_eq!((s.utime, s.stime, s.starttime), (3, 5, 987654));
        let zombie = PID_STAT.replacen(") S ", ") Z ", 1);
        assert!(parse_pid_stat(&zombie).unwrap().has_exited());
    }

    #[test]
    fn malformed_pid_stat_is_none() {
        assert_eq!(parse_pid_stat(""), None);
        assert_eq!(parse_pid_stat("4242 (sleep) S 1 2 3"), None, "truncated");
        assert_eq!(parse_pid_stat("x (sleep) S"), None);
        assert_eq!(parse_pid_stat(&PID_STAT.replacen(" 3 5 ", " 3 five ", 1)), None);
    }

    #[test]
    fn parses_vmrss() {
        let status = "Name:\tsleep\nState:\tS (sleeping)\nVmPeak:\t    8000 kB\nVmRSS:\t    1520 kB\nThreads:\t1\n";
        assert_eq!(parse_pid_status_vmrss_kb(status), Some(1520));
        assert_eq!(parse_pid_status_vmrss_kb("Name:\tkthreadd\nThreads:\t1\n"), None);
    }

    #[test]
    fn process_cpu_percent_is_relative_to_vcpus_and_clamped() {
        let s = Duration::from_secs(1);
        // 50 ticks at 100 Hz in 1 s = 0.5 s of CPU = 50 % of one vCPU.
        assert_eq!(process_cpu_percent(100, 150, s, 100, 1), 50.0);
        assert_eq!(process_cpu_percent(100, 150, s, 100, 2), 25.0);
        assert_eq!(process_cpu_percent(0, 400, Duration::from_secs(2), 100, 2), 100.0);
        assert_eq!(process_cpu_percent(0, 1000, s, 100, 1), 100.0, "clamped");
        assert_eq!(process_cpu_percent(150, 100, s, 100, 1), 0.0, "backwards reads as 0");
        assert_eq!(process_cpu_percent(0, 50, Duration::ZERO, 100, 1), 0.0);
        assert_eq!(process_cpu_percent(0, 50, s, 100, 0), 50.0, "vcpus 0 counts as 1");
    }

    #[test]
    fn process_mem_percent_is_rss_over_total() {
        assert_eq!(process_mem_percent(1_000, 4_000), 25.0);
        assert_eq!(process_mem_percent(1_000, 0), 0.0);
        assert_eq!(process_mem_percent(8_000, 4_000), 100.0);
    }

    #[test]
    fn sysconf_values_are_sane() {
        assert!(clk_tck() >= 100);
        assert!(page_size_kb() >= 4);
    }
}
