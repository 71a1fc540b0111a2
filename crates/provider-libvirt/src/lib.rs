//! The `libvirt` provider: members are libvirt domains (QEMU guests) on one or more hosts.
//!
//! A member `vm-web_1` is, on the host placement chose:
//! - a copy-on-write qcow2 overlay backed by the group's image (`qemu-img create -b`),
//! - a NoCloud seed ISO (label `cidata`: meta-data with instance-id, hostname and the SSH key;
//!   the group's user-data with `${VAR}` expanded; a static network-config when bridged),
//! - a persistent domain defined from the group's domain XML template (or the built-in one, the
//!   lab's `domain-template.xml`), carrying `<metadata><flotilla:member xmlns:flotilla=
//!   "urn:x-flotilla:v1" group=.. instance=.. host=.. ssh=.. service=.. .../></metadata>`.
//!
//! Files live in `<state_dir>/libvirt/<member>/` (`disk.qcow2`, `seed.iso`, `console.log`,
//! `domain.xml`, `member.json`). The metadata is the source of truth: `list` reads it from every
//! reachable host, so a restarted controller re-adopts its members with no other state, and a
//! domain without it is never listed, changed or deleted (a create or delete of its name is refused
//! with `Conflict`). `member.json` only serves to report members of a host that is down after a
//! restart, and to keep their ports reserved.
//!
//! Networking: user mode (`ports`: QEMU's slirp with two forwards on 127.0.0.1, passed through
//! `qemu:commandline` — the lab's libvirt has no passt) or bridged (`addresses`: a NIC on a host
//! bridge, the address set through cloud-init).
//!
//! Hosts: one lazily opened connection per host entry ([`host`]), every libvirt call on
//! `spawn_blocking`; a host that is down is skipped by placement and its members are listed as
//! `Failed("host ... is down: ...")`, never dropped. Hosts on libvirt's `test` driver (CI
//! stand-ins) get a minimal `type='test'` domain and count as serving once started: no guest runs
//! there. Files are made on the controller's machine, so a remote host (`qemu+ssh://`) must see
//! the same state directory path (shared storage).

//!
//! Without the `libvirt` cargo feature only the settings, templates, seeds and placement are built
//! (what `flotilla config check` needs): nothing links libvirt.

pub mod cloudinit;
pub mod placement;
pub mod ports;
mod private;
mod settings;
pub mod xml;

#[cfg(feature = "libvirt")]
mod create;
#[cfg(feature = "libvirt")]
mod delete;
#[cfg(feature = "libvirt")]
pub mod host;
#[cfg(feature = "libvirt")]
mod provider;
#[cfg(feature = "libvirt")]
mod stats;

use std::collections::BTreeMap;

#[cfg(feature = "libvirt")]
pub use host::HostStatus;
#[cfg(feature = "libvirt")]
pub use provider::LibvirtProvider;
pub use settings::{
    default_shutdown_timeout, default_start_timeout, AddrRange, AddressPool, HostSettings, LibvirtSettings,
    LibvirtTemplate, Placement, PortRange, DEFAULT_CMDLINE,
};
#[cfg(feature = "libvirt")]
pub use stats::DomainStatsSource;

pub use flotilla_model::name::{check_member_name as validate_name, MAX_NAME_LEN};

/// Which host entry reports each member: the entry named in its metadata if that entry sees it,
/// else the first entry (in configured order) that sees it. Several entries see one domain when
/// they reach the same libvirtd (`qemu:///system` twice, or a local and an SSH URI of one host), and
/// a member of an entry that is down may be visible through another; either way it is reported
/// once, by an entry that can act on it. `seen[i]` is what host `i` listed, as `(instance,
/// metadata host)` pairs, or `None` when it is down.
pub fn owners<'a>(hosts: &[&str], seen: &[Option<Vec<(&'a str, &'a str)>>]) -> BTreeMap<&'a str, usize> {
    let mut out: BTreeMap<&str, (usize, bool)> = BTreeMap::new();
    for (i, list) in seen.iter().enumerate() {
        for &(instance, host) in list.iter().flatten() {
            let named = hosts.get(i) == Some(&host);
            let better = match out.get(instance) {
                None => true,
                Some(&(_, was_named)) => named && !was_named,
            };
            if better {
                out.insert(instance, (i, named));
            }
        }
    }
    out.into_iter().map(|(k, (i, _))| (k, i)).collect()
}

#[cfg(test)]
mod tests {
    use flotilla_model::ErrorKind;

    use super::*;

    #[test]
    fn names_are_checked() {
        for ok in ["vm-test_1", "vm-test_clone_1", "a", "1x", &"n".repeat(MAX_NAME_LEN)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "_a", ".a", "a/b", "a b", "é", &"n".repeat(MAX_NAME_LEN + 1)] {
            assert_eq!(validate_name(bad).unwrap_err().kind(), ErrorKind::Invalid, "{bad}");
        }
    }

    #[test]
    fn each_member_is_reported_by_one_entry() {
        let hosts = ["a", "b", "c"];
        // a and b reach one libvirtd: each member goes to the entry its metadata names
        let both = vec![("m1", "a"), ("m2", "b"), ("m3", "gone")];
        let o = owners(&hosts, &[Some(both.clone()), Some(both.clone()), Some(vec![])]);
        assert_eq!(
            o,
            BTreeMap::from([("m1", 0), ("m2", 1), ("m3", 0)]),
            "an unknown host name: the first entry that sees it"
        );
        // b is down: its member, visible through a, is reported by a
        let o = owners(&hosts, &[Some(both.clone()), None, Some(vec![])]);
        assert_eq!(o.get("m2"), Some(&0));
        // seen by c only, whatever it says
        let o = owners(&hosts, &[Some(vec![]), Some(vec![]), Some(vec![("m4", "a")])]);
        assert_eq!(o.get("m4"), Some(&2));
        // the named entry wins even when it comes later
        let o = owners(&hosts, &[Some(vec![("m5", "c")]), None, Some(vec![("m5", "c")])]);
        assert_eq!(o.get("m5"), Some(&2));
    }
}
