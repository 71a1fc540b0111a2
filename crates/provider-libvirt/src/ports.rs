//! Forwarded ports and static addresses for new members. Pure apart from the `is_free` probe the
//! caller passes (a bind test on 127.0.0.1).
//!
//! Ports are handed out from a cursor that moves on after every allocation (wrapping around), so
//! a port freed by a deleted member is reused as late as possible; a port is skipped when any of
//! Flotilla's members (on any host, up or down, or still being created) holds it, or when the
//! probe finds it taken by something else.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::settings::{AddressPool, PortRange};

/// `count` distinct ports from `range`, starting the search at `cursor` (any value; it is taken
/// modulo the range), skipping `used` and ports `is_free` rejects. Returns the ports and the next
/// cursor, or `None` when the range has too few.
pub fn allocate_ports(
    range: PortRange,
    used: &BTreeSet<u16>,
    count: usize,
    cursor: u32,
    mut is_free: impl FnMut(u16) -> bool,
) -> Option<(Vec<u16>, u32)> {
    let len = range.len();
    let mut out = Vec::with_capacity(count);
    let mut k = 0;
    while k < len && out.len() < count {
        let off = (cursor % len + k) % len;
        k += 1;
        let p = (u32::from(range.first) + off) as u16;
        if used.contains(&p) || !is_free(p) {
            continue;
        }
        out.push(p);
    }
    let next = (cursor % len + k) % len;
    (out.len() == count).then_some((out, next))
}

/// The lowest address of the pool that no member holds.
pub fn allocate_address(pool: &AddressPool, used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    pool.iter().find(|a| !used.contains(a))
}

/// True if nothing listens on `127.0.0.1:port` (we could bind it).
pub fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u16, b: u16) -> PortRange {
        PortRange { first: a, last: b }
    }

    #[test]
    fn allocates_pairs_and_moves_the_cursor() {
        let used = BTreeSet::new();
        let (p, c) = allocate_ports(r(100, 109), &used, 2, 0, |_| true).unwrap();
        assert_eq!((p, c), (vec![100, 101], 2));
        let (p, c) = allocate_ports(r(100, 109), &used, 2, c, |_| true).unwrap();
        assert_eq!((p, c), (vec![102, 103], 4));
        let (p, c) = allocate_ports(r(100, 109), &used, 2, 9, |_| true).unwrap();
        assert_eq!((p, c), (vec![109, 100], 1), "wraps around");
    }

    #[test]
    fn skips_used_and_busy_ports() {
        let used: BTreeSet<u16> = [100, 102].into();
        let (p, _) = allocate_ports(r(100, 105), &used, 2, 0, |p| p != 101).unwrap();
        assert_eq!(p, vec![103, 104]);
        assert!(allocate_ports(r(100, 103), &used, 2, 0, |p| p != 101).is_none(), "only 103 is left");
        assert!(allocate_ports(r(100, 100), &BTreeSet::new(), 2, 0, |_| true).is_none());
    }

    #[test]
    fn the_bind_probe_sees_listeners() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!port_is_free(l.local_addr().unwrap().port()));
    }

    #[test]
    fn addresses_lowest_free_first() {
        let pool = AddressPool {
            addresses: vec!["10.0.0.1-10.0.0.4".parse().unwrap()],
            subnet: "255.255.255.0".parse().unwrap(),
            gateway: "10.0.0.1".parse().unwrap(),
            bridge: "br0".into(),
            dns: vec![],
        };
        let mut used = BTreeSet::new();
        assert_eq!(allocate_address(&pool, &used), Some("10.0.0.2".parse().unwrap()));
        used.insert("10.0.0.2".parse().unwrap());
        used.insert("10.0.0.3".parse().unwrap());
        assert_eq!(allocate_address(&pool, &used), Some("10.0.0.4".parse().unwrap()));
        used.insert("10.0.0.4".parse().unwrap());
        assert_eq!(allocate_address(&pool, &used), None);
    }
}
