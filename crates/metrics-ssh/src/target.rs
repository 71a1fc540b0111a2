//! Where a member's SSH server is: its `ssh_address` tag, else the host of its `address` with the
//! configured port.

use flotilla_model::Instance;

pub use flotilla_model::vocab::SSH_ADDRESS_TAG;

/// A host and port to connect to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SshTarget {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The member's SSH target: `tags["ssh_address"]` (`host:port`, `[v6]:port`, or a host alone with
/// `default_port`), else the host part of `address` with `default_port`.
pub fn ssh_target(instance: &Instance, default_port: u16) -> Result<SshTarget, String> {
    if let Some(tagged) = instance.tag(SSH_ADDRESS_TAG) {
        let (host, port) = split_host_port(tagged)
            .ok_or_else(|| format!("tag `{SSH_ADDRESS_TAG}` = `{tagged}` is not `host:port`, `[v6]:port` or a host"))?;
        return Ok(SshTarget { host, port: port.unwrap_or(default_port) });
    }
    let Some(address) = instance.address.as_deref() else {
        return Err(format!("no `{SSH_ADDRESS_TAG}` tag and no address"));
    };
    let (host, _service_port) =
        split_host_port(address).ok_or_else(|| format!("address `{address}` has no usable host part"))?;
    Ok(SshTarget { host, port: default_port })
}

/// `host:port`, `[v6]:port`, `[v6]`, a bare IPv6 address, or a host alone. `None` for an empty host
/// or a port that is not 1–65535.
fn split_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let s = s.trim();
    let parse_port = |p: &str| p.parse::<u16>().ok().filter(|&p| p > 0);
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(parse_port(p.strip_prefix(':')?)?),
        };
        (host, port)
    } else {
        match s.matches(':').count() {
            0 => (s, None),
            1 => {
                let (h, p) = s.split_once(':')?;
                (h, Some(parse_port(p)?))
            }
            // More than one colon without brackets: a bare IPv6 address.
            _ => (s, None),
        }
    };
    if host.is_empty() || host.chars().any(char::is_whitespace) {
        return None;
    }
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_model::{GroupId, Timestamp};

    fn member(address: Option<&str>, tag: Option<&str>) -> Instance {
        let mut m = Instance::new("m", &GroupId::new("g"), Timestamp::ZERO);
        m.address = address.map(str::to_string);
        if let Some(t) = tag {
            m.tags.insert(SSH_ADDRESS_TAG.into(), t.into());
        }
        m
    }

    fn t(host: &str, port: u16) -> Result<SshTarget, String> {
        Ok(SshTarget { host: host.into(), port })
    }

    #[test]
    fn the_tag_wins_over_the_address() {
        assert_eq!(ssh_target(&member(Some("127.0.0.1:8001"), Some("127.0.0.1:2201")), 22), t("127.0.0.1", 2201));
        assert_eq!(ssh_target(&member(None, Some("10.0.0.7")), 2222), t("10.0.0.7", 2222), "tag without a port");
        assert_eq!(ssh_target(&member(None, Some("[::1]:2201")), 22), t("::1", 2201));
        assert_eq!(ssh_target(&member(None, Some("vm1.lab:22")), 9), t("vm1.lab", 22));
    }

    #[test]
    fn the_address_host_gets_the_configured_port() {
        assert_eq!(ssh_target(&member(Some("192.168.100.5:8080"), None), 22), t("192.168.100.5", 22));
        assert_eq!(ssh_target(&member(Some("192.168.100.5"), None), 2200), t("192.168.100.5", 2200));
        assert_eq!(ssh_target(&member(Some("[fe80::1]:80"), None), 22), t("fe80::1", 22));
        assert_eq!(ssh_target(&member(Some("fe80::1"), None), 22), t("fe80::1", 22));
    }

    #[test]
    fn unusable_targets_are_errors() {
        assert!(ssh_target(&member(None, None), 22).unwrap_err().contains("no `ssh_address` tag and no address"));
        assert!(ssh_target(&member(None, Some("host:0")), 22).is_err());
        assert!(ssh_target(&member(None, Some("host:99999")), 22).is_err());
        assert!(ssh_target(&member(None, Some(":22")), 22).is_err());
        assert!(ssh_target(&member(None, Some("[::1]x")), 22).is_err());
        assert!(ssh_target(&member(Some(""), None), 22).is_err());
    }

    #[test]
    fn display_brackets_ipv6() {
        assert_eq!(SshTarget { host: "::1".into(), port: 22 }.to_string(), "[::1]:22");
        assert_eq!(SshTarget { host: "127.0.0.1".into(), port: 2201 }.to_string(), "127.0.0.1:2201");
    }
}
