//! `/load` really changes this process's CPU use. Its own test binary (= its own process), so no
//! other test's CPU shows up in /proc/self/stat.
//!
//! The host may be busy (two cores shared with builds), so each check gets up to six one-second
//! windows: the busy ones pass on their best window, the idle one must hold in every window.

mod common;

use std::time::Duration;

use common::{request, Server};
use nix::unistd::{sysconf, SysconfVar};

/// This process's CPU time (utime + stime, all threads) from /proc/self/stat.
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised comm, which may itself contain spaces or ')'.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..].split_whitespace().collect();
    let ticks: u64 = rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap();
    let clk_tck = sysconf(SysconfVar::CLK_TCK).unwrap().unwrap() as f64;
    Duration::from_secs_f64(ticks as f64 / clk_tck)
}

/// CPU seconds used per wall second over a ~1 s window.
async fn cpu_share() -> f64 {
    let (cpu0, wall0) = (process_cpu(), tokio::time::Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;
    (process_cpu() - cpu0).as_secs_f64() / wall0.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn load_start_and_stop_change_process_cpu() {
    let srv = Server::start("busy_1", 1).await;

    assert_eq!(request(srv.addr, "POST", "/load?duty=1.0").await.status, 200);
    let mut best = 0.0f64;
    for _ in 0..6 {
        best = best.max(cpu_share().await);
        if best >= 0.7 {
            break;
        }
    }
    assert!(best >= 0.7, "duty 1.0 on 1 vCPU used only {best:.2} s/s");

    assert_eq!(request(srv.addr, "POST", "/load?duty=0.5").await.status, 200);
    let mut shares = Vec::new();
    for _ in 0..6 {
        let s = cpu_share().await;
        shares.push(s);
        if (0.3..=0.7).contains(&s) {
            break;
        }
    }
    assert!(shares.iter().any(|s| (0.3..=0.7).contains(s)), "duty 0.5 used {shares:?} s/s");

    assert_eq!(request(srv.addr, "DELETE", "/load").await.status, 200);
    for _ in 0..2 {
        let idle = cpu_share().await;
        assert!(idle < 0.1, "after DELETE still {idle:.2} s/s");
    }
    srv.stop().await.unwrap();
}
