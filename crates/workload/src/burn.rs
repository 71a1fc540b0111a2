//! Burning CPU on purpose: the `/work` request cost and the `/load` background duty cycle.
//!
//! Members exist to be measured by the autoscaler, so the CPU they use must be real, predictable
//! and independent of how busy the host is. `/work?ms=N` therefore burns N ms of the *thread's CPU
//! time* (not wall time: on a contended host the request just takes longer, it never does less
//! work), and `/load` runs a duty cycle of CPU time per wall-clock period on one OS thread per vCPU, so
//! `duty = 0.5` on a 2-vCPU member reads as ~50 % of its vCPUs. Both read clocks through
//! `clock_gettime` because the workspace bans `std::time::Instant::now`.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};

/// The `/load` pacing period: each thread busies `duty × PERIOD`, then parks for the rest.
pub const LOAD_PERIOD: Duration = Duration::from_millis(100);

/// Reads `id`, or `None` if the kernel refuses (then callers fall back to the monotonic clock).
fn read_clock(id: ClockId) -> Option<Duration> {
    let ts = clock_gettime(id).ok()?;
    Some(Duration::new(u64::try_from(ts.tv_sec()).ok()?, u32::try_from(ts.tv_nsec()).ok()?))
}

/// The monotonic clock; zero only if CLOCK_MONOTONIC is unavailable (it never is on Linux).
pub fn monotonic() -> Duration {
    read_clock(ClockId::CLOCK_MONOTONIC).unwrap_or_default()
}

/// A little arithmetic between clock reads, so most of the burn is user time, not syscalls.
fn spin(seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..2_000 {
        x = black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407));
    }
    x
}

/// Burns `amount` of the calling thread's CPU time. Blocking: call it from `spawn_blocking`.
///
/// Measured with `CLOCK_THREAD_CPUTIME_ID`, so the wall time taken is always at least `amount`.
pub fn burn_cpu(amount: Duration) {
    let clock = if read_clock(ClockId::CLOCK_THREAD_CPUTIME_ID).is_some() {
        ClockId::CLOCK_THREAD_CPUTIME_ID
    } else {
        ClockId::CLOCK_MONOTONIC
    };
    let now = || read_clock(clock).unwrap_or_default();
    let start = now();
    let mut x = 1;
    while now().saturating_sub(start) < amount {
        x = spin(x);
    }
    black_box(x);
}

/// The background load of `/load`: `vcpus` threads running a duty cycle until stopped.
///
/// Threads are told to stop through a generation counter rather than a per-run flag, so a
/// `POST /load` that replaces a running load can never leave an old thread running: every thread
/// exits as soon as the generation it was started with is no longer current.
pub struct LoadGen {
    vcpus: u32,
    generation: Arc<AtomicU64>,
    run: Mutex<LoadRun>,
}

#[derive(Default)]
struct LoadRun {
    duty: f64,
    threads: Vec<JoinHandle<()>>,
}

impl LoadGen {
    /// A stopped load generator that will use `vcpus` threads (at least one).
    pub fn new(vcpus: u32) -> Self {
        LoadGen { vcpus: vcpus.max(1), generation: Arc::new(AtomicU64::new(0)), run: Mutex::new(LoadRun::default()) }
    }

    /// The current duty (0 when stopped).
    pub fn duty(&self) -> f64 {
        self.lock().duty
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LoadRun> {
        // A panic while holding this lock cannot leave `LoadRun` inconsistent: recover.
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts (or replaces) the load at `duty` (0..=1; 0 just stops). Returns the threads of the
    /// previous run, already told to stop, for the caller to join off the async runtime.
    pub fn start(&self, duty: f64) -> std::io::Result<Vec<JoinHandle<()>>> {
        let duty = if duty.is_finite() { duty.clamp(0.0, 1.0) } else { 0.0 };
        let mut run = self.lock();
        let old = self.retire(&mut run);
        if duty > 0.0 {
            let generation = self.generation.load(Ordering::SeqCst);
            for i in 0..self.vcpus {
                let current = Arc::clone(&self.generation);
                let spawned = std::thread::Builder::new()
                    .name(format!("flotilla-load-{i}"))
                    .spawn(move || duty_cycle(duty, &current, generation));
                match spawned {
                    Ok(handle) => run.threads.push(handle),
                    Err(e) => {
                        // Don't leave a partial load running behind an error.
                        let partial = self.retire(&mut run);
                        drop(run);
                        join_all(partial);
                        return Err(e);
                    }
                }
            }
            run.duty = duty;
        }
        Ok(old)
    }

    /// Stops the load. Returns the stopping threads for the caller to join.
    pub fn stop(&self) -> Vec<JoinHandle<()>> {
        let mut run = self.lock();
        self.retire(&mut run)
    }

    /// Bumps the generation (every running thread sees it and exits) and wakes parked threads.
    fn retire(&self, run: &mut LoadRun) -> Vec<JoinHandle<()>> {
        self.generation.fetch_add(1, Ordering::SeqCst);
        run.duty = 0.0;
        let threads = std::mem::take(&mut run.threads);
        for t in &threads {
            t.thread().unpark();
        }
        threads
    }
}

impl Drop for LoadGen {
    fn drop(&mut self) {
        // Threads exit on their own within microseconds; no need to block a dropping runtime.
        let mut run = self.lock();
        drop(self.retire(&mut run));
    }
}

/// Joins stopped load threads (blocking; they exit within one spin of the generation check).
pub fn join_all(threads: Vec<JoinHandle<()>>) {
    for t in threads {
        let _ = t.join();
    }
}

/// One load thread, until retired: in each `LOAD_PERIOD` of wall time, burn `duty × LOAD_PERIOD`
/// of *thread CPU time* (or until the period ends, whichever is first), then park for the rest.
///
/// Counting CPU time rather than wall time keeps `duty = 0.5` at ~50 % of a vCPU on a contended
/// host too: a wall-clock busy window would be partly spent descheduled and under-deliver.
fn duty_cycle(duty: f64, current: &AtomicU64, generation: u64) {
    let live = || current.load(Ordering::SeqCst) == generation;
    let busy = LOAD_PERIOD.mul_f64(duty);
    let cpu = || read_clock(ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap_or_else(monotonic);
    let mut x = 1;
    while live() {
        let start = monotonic();
        let end = start + LOAD_PERIOD;
        let cpu_start = cpu();
        while live() && cpu().saturating_sub(cpu_start) < busy && monotonic() < end {
            x = spin(x);
        }
        loop {
            let now = monotonic();
            if now >= end || !live() {
                break;
            }
            // `park_timeout` may wake early (unpark on stop, or spuriously): the loop re-checks.
            std::thread::park_timeout(end - now);
        }
    }
    black_box(x);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thread_cpu() -> Duration {
        read_clock(ClockId::CLOCK_THREAD_CPUTIME_ID).unwrap()
    }

    #[test]
    fn burn_cpu_burns_at_least_the_amount_of_thread_cpu() {
        let before = thread_cpu();
        burn_cpu(Duration::from_millis(50));
        let used = thread_cpu() - before;
        assert!(used >= Duration::from_millis(50), "used {used:?}");
        assert!(used < Duration::from_millis(500), "used {used:?}");
    }

    #[test]
    fn load_start_replace_stop_tracks_duty_and_threads() {
        let gen = LoadGen::new(2);
        assert_eq!(gen.duty(), 0.0);
        let old = gen.start(0.3).unwrap();
        assert!(old.is_empty());
        assert_eq!(gen.duty(), 0.3);
        let old = gen.start(0.6).unwrap();
        assert_eq!(old.len(), 2, "replacing returns the previous run's threads");
        join_all(old);
        assert_eq!(gen.duty(), 0.6);
        let stopped = gen.stop();
        assert_eq!(stopped.len(), 2);
        join_all(stopped); // returns promptly: threads observe the generation change
        assert_eq!(gen.duty(), 0.0);
        assert!(gen.start(0.0).unwrap().is_empty());
        assert_eq!(gen.duty(), 0.0);
    }

    #[test]
    fn vcpus_zero_means_one_thread() {
        let gen = LoadGen::new(0);
        gen.start(0.1).unwrap();
        assert_eq!(gen.stop().len(), 1);
    }
}
