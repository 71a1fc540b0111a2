//! The per-member NoCloud seed: `meta-data` (instance-id, local-hostname, public-keys),
//! `user-data` (the group's cloud-init with `${VAR}` expanded), and for bridged members a
//! `network-config` with the static address; packed into an ISO with the volume label `cidata`
//! by `genisoimage` (or `xorriso`, whichever is installed).

use std::net::Ipv4Addr;
use std::path::Path;

/// Expands `${NAME}` from `lookup`; `$${NAME}` is a literal `${NAME}`. Anything else (`$NAME`,
/// `${a:-b}`) is left alone, so shell scripts keep their own variables. An unset variable is an
/// error naming it.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut missing: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(tail) = after.strip_prefix("$${") {
            if let Some(name) = placeholder_name(tail) {
                out.push_str("${");
                out.push_str(name);
                out.push('}');
                rest = &tail[name.len() + 1..];
                continue;
            }
        }
        if let Some(tail) = after.strip_prefix("${") {
            if let Some(name) = placeholder_name(tail) {
                match lookup(name) {
                    Some(v) => out.push_str(&v),
                    None => {
                        if !missing.iter().any(|m| m == name) {
                            missing.push(name.to_string());
                        }
                    }
                }
                rest = &tail[name.len() + 1..];
                continue;
            }
        }
        out.push('$');
        rest = &after[1..];
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(out)
    } else {
        let list: Vec<String> = missing.iter().map(|m| format!("${{{m}}}")).collect();
        Err(format!(
            "{} not set in the environment (write $${{NAME}} for a literal ${{NAME}})",
            if list.len() == 1 { format!("{} is", list[0]) } else { format!("{} are", list.join(", ")) }
        ))
    }
}

/// `NAME}` at the start of `s` -> `NAME` (letters, digits, `_`, not starting with a digit).
fn placeholder_name(s: &str) -> Option<&str> {
    let end = s.find('}')?;
    let name = &s[..end];
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    ok.then_some(name)
}

/// YAML single-quoted scalar.
fn yaml_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// NoCloud `meta-data`.
pub fn meta_data(name: &str, key: Option<&str>) -> String {
    let mut s = format!("instance-id: {name}\nlocal-hostname: {name}\n");
    if let Some(k) = key {
        s.push_str("public-keys:\n");
        s.push_str(&format!("  - {}\n", yaml_quote(k)));
    }
    s
}

/// User-data when the group gives none: a `#cloud-config` that does nothing.
pub const EMPTY_USER_DATA: &str = "#cloud-config\n{}\n";

/// Static addressing for a bridged member: NoCloud `network-config`, version 1, matched by MAC.
pub fn network_config(mac: &str, address: Ipv4Addr, prefix: u32, gateway: Ipv4Addr, dns: &[Ipv4Addr]) -> String {
    let mut s = format!(
        "version: 1\nconfig:\n  - type: physical\n    name: eth0\n    mac_address: '{mac}'\n    subnets:\n      - type: static\n        address: {address}/{prefix}\n        gateway: {gateway}\n"
    );
    if !dns.is_empty() {
        let list: Vec<String> = dns.iter().map(|d| d.to_string()).collect();
        s.push_str(&format!("        dns_nameservers: [{}]\n", list.join(", ")));
    }
    s
}

/// A locally administered MAC in QEMU's 52:54:00 prefix, derived from the member name.
pub fn mac_for(name: &str) -> String {
    let mut h = crate::settings::Fnv::new();
    h.write(name.as_bytes());
    let v = h.finish();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", (v >> 16) as u8, (v >> 8) as u8, v as u8)
}

/// Writes `files` into `work` (owner-only: user-data may hold secrets expanded from `${ENV}`),
/// packs them into `out` (volume label `cidata`, owner-only too), then removes `work`.
pub async fn build_iso(work: &Path, files: &[(&str, String)], out: &Path) -> Result<(), String> {
    let built = pack(work, files, out).await;
    let _ = tokio::fs::remove_dir_all(work).await;
    built?;
    crate::private::restrict(out).map_err(|e| format!("cannot restrict {}: {e}", out.display()))
}

async fn pack(work: &Path, files: &[(&str, String)], out: &Path) -> Result<(), String> {
    tokio::fs::create_dir_all(work).await.map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let mut paths = Vec::new();
    for (name, text) in files {
        let p = work.join(name);
        crate::private::write(&p, text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", p.display()))?;
        paths.push(p);
    }
    let mut last = String::new();
    for (tool, pre) in [("genisoimage", &[][..]), ("xorriso", &["-as", "mkisofs"][..])] {
        let mut cmd = tokio::process::Command::new(tool);
        cmd.args(pre)
            .arg("-quiet")
            .arg("-output")
            .arg(out)
            .args(["-volid", "cidata", "-joliet", "-rock"])
            .args(&paths)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        match cmd.output().await {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => {
                return Err(format!("{tool} failed ({}): {}", o.status, String::from_utf8_lossy(&o.stderr).trim()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => last = format!("{tool}: not installed"),
            Err(e) => return Err(format!("cannot run {tool}: {e}")),
        }
    }
    Err(format!("need genisoimage or xorriso to build the NoCloud seed ({last})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "A" => Some("1".into()),
            "LONG_NAME_2" => Some("x y".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_braced_variables_only() {
        assert_eq!(expand_env("a=${A} b=${LONG_NAME_2}", env).unwrap(), "a=1 b=x y");
        assert_eq!(expand_env("$A ${A:-z} $ $$ ${1} ${", env).unwrap(), "$A ${A:-z} $ $$ ${1} ${");
        assert_eq!(expand_env("lit $${A} and $${B}", env).unwrap(), "lit ${A} and ${B}");
        assert_eq!(expand_env("end$", env).unwrap(), "end$");
        let e = expand_env("${B} ${C} ${B}", env).unwrap_err();
        assert!(e.starts_with("${B}, ${C} are not set"), "{e}");
        assert!(expand_env("${B}", env).unwrap_err().starts_with("${B} is not set"));
    }

    #[test]
    fn meta_data_shape() {
        assert_eq!(meta_data("vm-a_1", None), "instance-id: vm-a_1\nlocal-hostname: vm-a_1\n");
        let m = meta_data("n", Some("ssh-ed25519 AAAA it's me"));
        assert!(m.ends_with("public-keys:\n  - 'ssh-ed25519 AAAA it''s me'\n"), "{m}");
    }

    #[test]
    fn mac_is_stable_and_local() {
        assert_eq!(mac_for("a"), mac_for("a"));
        assert_ne!(mac_for("a"), mac_for("b"));
        assert!(mac_for("a").starts_with("52:54:00:"));
        assert_eq!(mac_for("a").len(), 17);
    }

    #[test]
    fn network_config_shape() {
        let n = network_config(
            "52:54:00:01:02:03",
            "10.0.0.5".parse().unwrap(),
            24,
            "10.0.0.1".parse().unwrap(),
            &["10.0.0.53".parse().unwrap()],
        );
        assert!(n.contains("address: 10.0.0.5/24\n"), "{n}");
        assert!(n.contains("gateway: 10.0.0.1\n"));
        assert!(n.contains("dns_nameservers: [10.0.0.53]"));
    }

    #[tokio::test]
    async fn builds_a_cidata_iso() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("seed.iso");
        build_iso(
            &dir.path().join("seed"),
            &[("meta-data", meta_data("x", None)), ("user-data", EMPTY_USER_DATA.into())],
            &out,
        )
        .await
        .unwrap();
        let bytes = std::fs::read(&out).unwrap();
        // ISO 9660 primary volume descriptor at 32 KiB: "CD001", volume id at offset 40
        assert_eq!(&bytes[0x8001..0x8006], b"CD001");
        assert_eq!(&bytes[0x8028..0x802e], b"cidata");
    }
}
