//! Which host a new member goes to. Pure: the provider gathers each host's load, this decides.
//!
//! - A host that is down is never chosen.
//! - A host has **room** for a member when its free memory — node memory (`virNodeGetInfo`) minus
//!   the memory of Flotilla's members on it — is at least the member's memory, and it holds fewer
//!   of Flotilla's members than its `max_members` (if set). vCPUs may be overcommitted, so they
//!   limit nothing; they only break ties in `most-free`.
//! - `round-robin`: starting at the host after the one chosen last (the cursor), the first host
//!   with room, in configured order, wrapping around.
//! - `most-free`: the host with room and the most free memory; then the most free vCPUs (node
//!   CPUs minus our members' vCPUs, may be negative); then the earliest in configured order.
//! - `fill-first`: the earliest host in configured order with room.
//!
//! Domains that are not Flotilla's are not subtracted: their memory is the host owner's business,
//! and `max_members` is the knob for hosts that are shared.

use crate::settings::Placement;

/// What placement knows about one host.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostLoad {
    pub name: String,
    /// Reachable now.
    pub up: bool,
    /// Why not, when down.
    pub down_reason: String,
    pub mem_total_kib: u64,
    pub cpus: u32,
    /// Flotilla's members on the host (all groups).
    pub our_members: u32,
    pub our_mem_kib: u64,
    pub our_vcpus: u32,
    pub max_members: Option<u32>,
}

impl HostLoad {
    pub fn free_mem_kib(&self) -> u64 {
        self.mem_total_kib.saturating_sub(self.our_mem_kib)
    }
    pub fn free_vcpus(&self) -> i64 {
        i64::from(self.cpus) - i64::from(self.our_vcpus)
    }
    /// Why it has no room for `need`, if it has none.
    pub fn no_room(&self, need: &Need) -> Option<String> {
        if !self.up {
            return Some(format!("down ({})", self.down_reason));
        }
        if let Some(max) = self.max_members {
            if self.our_members >= max {
                return Some(format!("full ({}/{max} members)", self.our_members));
            }
        }
        if self.free_mem_kib() < need.mem_kib {
            return Some(format!(
                "{} MiB free of {} MiB, {} MiB needed",
                self.free_mem_kib() / 1024,
                self.mem_total_kib / 1024,
                need.mem_kib / 1024
            ));
        }
        None
    }
    /// Counts a member placed here.
    pub fn add(&mut self, need: &Need) {
        self.our_members += 1;
        self.our_mem_kib += need.mem_kib;
        self.our_vcpus += need.vcpus;
    }
}

/// What a new member takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Need {
    pub mem_kib: u64,
    pub vcpus: u32,
}

/// The index of the chosen host, or why none fits (one reason per host).
pub fn choose(strategy: Placement, hosts: &[HostLoad], need: &Need, cursor: usize) -> Result<usize, String> {
    let fits = |i: &usize| hosts[*i].no_room(need).is_none();
    let n = hosts.len();
    let chosen = match strategy {
        Placement::FillFirst => (0..n).find(fits),
        Placement::RoundRobin => (0..n).map(|k| (cursor + k) % n.max(1)).find(fits),
        Placement::MostFree => (0..n).filter(fits).min_by(|&a, &b| {
            let (ha, hb) = (&hosts[a], &hosts[b]);
            hb.free_mem_kib().cmp(&ha.free_mem_kib()).then(hb.free_vcpus().cmp(&ha.free_vcpus())).then(a.cmp(&b))
        }),
    };
    chosen.ok_or_else(|| {
        let why: Vec<String> =
            hosts.iter().map(|h| format!("{}: {}", h.name, h.no_room(need).unwrap_or_default())).collect();
        if hosts.is_empty() {
            "no hosts configured".to_string()
        } else {
            format!(
                "no host has room for a member ({} MiB, {} vCPU): {}",
                need.mem_kib / 1024,
                need.vcpus,
                why.join("; ")
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * 1024;

    fn host(name: &str, mem_gib: u64, cpus: u32) -> HostLoad {
        HostLoad { name: name.into(), up: true, mem_total_kib: mem_gib * GIB, cpus, ..Default::default() }
    }

    const NEED: Need = Need { mem_kib: 128 * 1024, vcpus: 1 };

    /// Places `n` members one after the other, like the provider does, and returns host names.
    fn place(strategy: Placement, hosts: &mut [HostLoad], n: usize) -> Vec<String> {
        let mut cursor = 0;
        let mut out = Vec::new();
        for _ in 0..n {
            let i = choose(strategy, hosts, &NEED, cursor).unwrap();
            hosts[i].add(&NEED);
            cursor = i + 1;
            out.push(hosts[i].name.clone());
        }
        out
    }

    #[test]
    fn round_robin_cycles_and_skips_down_and_full_hosts() {
        let mut hosts = vec![host("a", 8, 2), host("b", 8, 2), host("c", 8, 2)];
        assert_eq!(place(Placement::RoundRobin, &mut hosts, 4), ["a", "b", "c", "a"]);
        let mut hosts = vec![host("a", 8, 2), host("b", 8, 2), host("c", 8, 2)];
        hosts[1].up = false;
        hosts[2].max_members = Some(1);
        assert_eq!(place(Placement::RoundRobin, &mut hosts, 4), ["a", "c", "a", "a"]);
        // the cursor is where the previous choice left off
        let hosts = vec![host("a", 8, 2), host("b", 8, 2)];
        assert_eq!(choose(Placement::RoundRobin, &hosts, &NEED, 1), Ok(1));
        assert_eq!(choose(Placement::RoundRobin, &hosts, &NEED, 2), Ok(0));
        assert_eq!(choose(Placement::RoundRobin, &hosts, &NEED, 7), Ok(1));
    }

    #[test]
    fn most_free_spreads_by_free_memory_then_vcpus() {
        let mut hosts = vec![host("small", 1, 16), host("big", 4, 2)];
        // big has 4 GiB: 24 members of 128 MiB before it is down to small's 1 GiB
        let placed = place(Placement::MostFree, &mut hosts, 25);
        assert!(placed[..24].iter().all(|h| h == "big"), "{placed:?}");
        assert_eq!(placed[24], "small", "a tie on memory goes to more free vCPUs: big has -22, small 16");
        // equal hosts alternate
        let mut hosts = vec![host("a", 8, 2), host("b", 8, 2)];
        assert_eq!(place(Placement::MostFree, &mut hosts, 4), ["a", "b", "a", "b"]);
        // equal memory: more free vCPUs wins
        let mut hosts = vec![host("a", 8, 2), host("b", 8, 4)];
        assert_eq!(choose(Placement::MostFree, &hosts, &NEED, 0), Ok(1));
        hosts[1].up = false;
        assert_eq!(choose(Placement::MostFree, &hosts, &NEED, 0), Ok(0));
    }

    #[test]
    fn fill_first_uses_hosts_in_order() {
        let mut hosts = vec![host("a", 8, 2), host("b", 8, 2)];
        hosts[0].max_members = Some(2);
        assert_eq!(place(Placement::FillFirst, &mut hosts, 4), ["a", "a", "b", "b"]);
        // memory is room too: 256 MiB holds two members
        let mut hosts = vec![HostLoad { mem_total_kib: 256 * 1024, ..host("tiny", 0, 1) }, host("b", 8, 2)];
        assert_eq!(place(Placement::FillFirst, &mut hosts, 3), ["tiny", "tiny", "b"]);
    }

    #[test]
    fn no_room_anywhere_explains_each_host() {
        let mut hosts = vec![host("a", 8, 2), host("b", 0, 2)];
        hosts[0].up = false;
        hosts[0].down_reason = "connection refused".into();
        let e = choose(Placement::FillFirst, &hosts, &NEED, 0).unwrap_err();
        assert!(e.contains("a: down (connection refused)"), "{e}");
        assert!(e.contains("b: 0 MiB free of 0 MiB, 128 MiB needed"), "{e}");
        assert!(choose(Placement::RoundRobin, &[], &NEED, 0).is_err());
    }
}
