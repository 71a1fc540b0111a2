//! Domain XML: the built-in templates, `@PLACEHOLDER@` rendering, and the `<flotilla:member>`
//! metadata element that marks a domain as Flotilla's.
//!
//! Placeholders a template may use (values are XML-escaped):
//!
//! | placeholder | value |
//! |---|---|
//! | `@NAME@` | the member name (= domain name = instance id) |
//! | `@MEMORY_MIB@`, `@VCPUS@` | from the template / group |
//! | `@KERNEL@`, `@INITRD@`, `@CMDLINE@` | direct kernel boot (only if the template sets them) |
//! | `@DISK@`, `@SEED@`, `@CONSOLE_LOG@` | the member's overlay, NoCloud ISO and console log |
//! | `@SSH_PORT@`, `@SERVICE_PORT@` (`@HTTP_PORT@`) | forwarded ports on 127.0.0.1 (user mode); the guest ports when bridged |
//! | `@GUEST_SSH_PORT@`, `@GUEST_SERVICE_PORT@` | ports inside the guest |
//! | `@ADDRESS@`, `@MAC@`, `@BRIDGE@` | bridged members (empty / unset in user mode) |
//! | `@NETWORK_DEVICES@` | the NIC element when bridged; empty in user mode |
//! | `@QEMU_COMMANDLINE@` | the user-mode NIC (`qemu:commandline` passthrough); empty when bridged |
//! | `@TB_CACHE_MIB@` | TCG translation cache cap (32) |
//! | `@METADATA@` | the `<flotilla:member>` element; if the template lacks it, it is put into the template's `<metadata>` (or a new one after `<name>`) |
//!
//! A custom template must use `@NAME@`, `@DISK@` and `@SEED@`.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The namespace of Flotilla's metadata element.
pub const NS: &str = "urn:x-flotilla:v1";

/// Translation cache cap for TCG guests (the lab's value).
pub const TB_CACHE_MIB: u32 = 32;

/// The built-in QEMU template: the lab's `domain-template.xml` with Flotilla's placeholders.
pub const BUILTIN_QEMU_TEMPLATE: &str = r#"<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>@NAME@</name>
  <metadata>
    @METADATA@
  </metadata>
  <memory unit='MiB'>@MEMORY_MIB@</memory>
  <currentMemory unit='MiB'>@MEMORY_MIB@</currentMemory>
  <vcpu placement='static'>@VCPUS@</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>@KERNEL@</kernel>
    <initrd>@INITRD@</initrd>
    <cmdline>@CMDLINE@ lab.hostname=@NAME@</cmdline>
  </os>
  <features>
    <acpi/>
    <tcg>
      <tb-cache unit='MiB'>@TB_CACHE_MIB@</tb-cache>
    </tcg>
  </features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='@DISK@'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='@SEED@'/>
      <target dev='hdc' bus='ide'/>
      <readonly/>
    </disk>
    @NETWORK_DEVICES@
    <serial type='pty'>
      <log file='@CONSOLE_LOG@' append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'>
      <target type='serial' port='0'/>
    </console>
    <memballoon model='virtio'>
      <stats period='5'/>
    </memballoon>
    <rng model='virtio'>
      <backend model='random'>/dev/urandom</backend>
    </rng>
  </devices>
  @QEMU_COMMANDLINE@
</domain>
"#;

/// For hosts on libvirt's `test` driver (CI stand-ins): no guest runs, so no devices.
pub const BUILTIN_TEST_TEMPLATE: &str = r#"<domain type='test'>
  <name>@NAME@</name>
  <metadata>
    @METADATA@
  </metadata>
  <memory unit='MiB'>@MEMORY_MIB@</memory>
  <currentMemory unit='MiB'>@MEMORY_MIB@</currentMemory>
  <vcpu placement='static'>@VCPUS@</vcpu>
  <os>
    <type arch='x86_64'>hvm</type>
  </os>
  <on_poweroff>destroy</on_poweroff>
</domain>
"#;

/// What Flotilla writes into a domain's metadata: enough to list, adopt, sample and delete it
/// after a restart with no other state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberMeta {
    pub group: String,
    pub instance: String,
    /// The configured host name it was placed on.
    pub host: String,
    /// Forwarded ports on 127.0.0.1 (user-mode networking).
    pub ssh_port: Option<u16>,
    pub service_port: Option<u16>,
    /// Static address (bridged).
    pub address: Option<Ipv4Addr>,
    pub guest_ssh_port: u16,
    pub guest_service_port: u16,
    pub vcpus: u32,
    pub memory_mib: u32,
    /// Wall-clock milliseconds.
    pub created_ms: u64,
    /// [`crate::LibvirtTemplate::fingerprint`] of the template it was made from.
    pub fingerprint: String,
    /// The member's directory (overlay, seed ISO, console log).
    pub dir: PathBuf,
}

impl MemberMeta {
    /// Where its service answers: `127.0.0.1:<forwarded>` or `<address>:<guest port>`.
    pub fn service_address(&self) -> Option<String> {
        match (self.service_port, self.address) {
            (Some(p), _) => Some(format!("127.0.0.1:{p}")),
            (None, Some(a)) => Some(format!("{a}:{}", self.guest_service_port)),
            (None, None) => None,
        }
    }
    /// Where its SSH server answers.
    pub fn ssh_address(&self) -> Option<String> {
        match (self.ssh_port, self.address) {
            (Some(p), _) => Some(format!("127.0.0.1:{p}")),
            (None, Some(a)) => Some(format!("{a}:{}", self.guest_ssh_port)),
            (None, None) => None,
        }
    }
    pub fn overlay(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }
    pub fn seed(&self) -> PathBuf {
        self.dir.join("seed.iso")
    }
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
}

/// XML attribute/text escaping.
pub fn escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '\'' => o.push_str("&apos;"),
            '"' => o.push_str("&quot;"),
            c => o.push(c),
        }
    }
    o
}

/// The `<flotilla:member .../>` element.
pub fn metadata_element(m: &MemberMeta) -> String {
    let mut attrs: Vec<(&str, String)> =
        vec![("group", m.group.clone()), ("instance", m.instance.clone()), ("host", m.host.clone())];
    if let Some(p) = m.ssh_port {
        attrs.push(("ssh", p.to_string()));
    }
    if let Some(p) = m.service_port {
        attrs.push(("service", p.to_string()));
    }
    if let Some(a) = m.address {
        attrs.push(("address", a.to_string()));
    }
    attrs.extend([
        ("guest-ssh", m.guest_ssh_port.to_string()),
        ("guest-service", m.guest_service_port.to_string()),
        ("vcpus", m.vcpus.to_string()),
        ("memory-mib", m.memory_mib.to_string()),
        ("created", m.created_ms.to_string()),
        ("fingerprint", m.fingerprint.clone()),
        ("dir", m.dir.display().to_string()),
    ]);
    let body: Vec<String> = attrs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("<flotilla:member xmlns:flotilla=\"{NS}\" {}/>", body.join(" "))
}

/// Reads the element back, as `virDomainGetMetadata` returns it (libvirt drops the prefix) or as
/// written. Errors name the missing or bad attribute.
pub fn parse_metadata(xml: &str) -> Result<MemberMeta, String> {
    let doc = roxmltree::Document::parse(xml).map_err(|e| format!("metadata is not XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "member" {
        return Err(format!("metadata element is <{}>, not <member>", root.tag_name().name()));
    }
    let get = |k: &str| root.attribute(k);
    let req = |k: &str| get(k).map(str::to_string).ok_or_else(|| format!("metadata lacks `{k}`"));
    fn num<T: std::str::FromStr>(k: &str, v: Option<&str>) -> Result<Option<T>, String> {
        v.map(|s| s.parse::<T>().map_err(|_| format!("metadata `{k}`=`{s}` is not a number"))).transpose()
    }
    let meta = MemberMeta {
        group: req("group")?,
        instance: req("instance")?,
        host: req("host")?,
        ssh_port: num("ssh", get("ssh"))?,
        service_port: num("service", get("service"))?,
        address: get("address")
            .map(|s| s.parse::<Ipv4Addr>().map_err(|_| format!("metadata `address`=`{s}` is not an IPv4 address")))
            .transpose()?,
        guest_ssh_port: num("guest-ssh", get("guest-ssh"))?.unwrap_or(22),
        guest_service_port: num("guest-service", get("guest-service"))?.unwrap_or(8080),
        vcpus: num("vcpus", get("vcpus"))?.unwrap_or(1),
        memory_mib: num("memory-mib", get("memory-mib"))?.unwrap_or(0),
        created_ms: num("created", get("created"))?.unwrap_or(0),
        fingerprint: get("fingerprint").unwrap_or("").to_string(),
        dir: PathBuf::from(req("dir")?),
    };
    if meta.service_port.is_none() && meta.address.is_none() {
        return Err("metadata has neither `service` (port) nor `address`".into());
    }
    Ok(meta)
}

/// Networking of one member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Net {
    /// QEMU user-mode networking with two forwards on 127.0.0.1.
    User { ssh: u16, service: u16 },
    /// A NIC on a host bridge; the address is set by cloud-init.
    Bridge { bridge: String, mac: String, address: Ipv4Addr },
}

/// Everything a template is filled with.
#[derive(Debug, Clone)]
pub struct RenderInput {
    pub meta: MemberMeta,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    pub net: Net,
}

fn qemu_commandline(ssh: u16, service: u16, guest_ssh: u16, guest_service: u16) -> String {
    format!(
        "<qemu:commandline>\n    <qemu:arg value='-netdev'/>\n    <qemu:arg value='user,id=flnet0,restrict=on,hostfwd=tcp:127.0.0.1:{ssh}-:{guest_ssh},hostfwd=tcp:127.0.0.1:{service}-:{guest_service}'/>\n    <qemu:arg value='-device'/>\n    <qemu:arg value='virtio-net-pci,netdev=flnet0,id=flnic0,bus=pci.0,addr=0x10,romfile='/>\n  </qemu:commandline>"
    )
}

fn values(i: &RenderInput) -> Vec<(&'static str, Option<String>)> {
    let m = &i.meta;
    let path = |p: &Option<PathBuf>| p.as_ref().map(|p| escape(&p.display().to_string()));
    let (ssh, service, address, mac, bridge, devices, cmdline) = match &i.net {
        Net::User { ssh, service } => (
            *ssh,
            *service,
            None,
            None,
            None,
            String::new(),
            qemu_commandline(*ssh, *service, m.guest_ssh_port, m.guest_service_port),
        ),
        Net::Bridge { bridge, mac, address } => (
            m.guest_ssh_port,
            m.guest_service_port,
            Some(address.to_string()),
            Some(escape(mac)),
            Some(escape(bridge)),
            format!(
                "<interface type='bridge'>\n      <mac address='{}'/>\n      <source bridge='{}'/>\n      <model type='virtio'/>\n    </interface>",
                escape(mac),
                escape(bridge)
            ),
            String::new(),
        ),
    };
    vec![
        ("NAME", Some(escape(&m.instance))),
        ("MEMORY_MIB", Some(m.memory_mib.to_string())),
        ("VCPUS", Some(m.vcpus.to_string())),
        ("KERNEL", path(&i.kernel)),
        ("INITRD", path(&i.initrd)),
        ("CMDLINE", Some(escape(&i.cmdline))),
        ("DISK", Some(escape(&m.overlay().display().to_string()))),
        ("SEED", Some(escape(&m.seed().display().to_string()))),
        ("CONSOLE_LOG", Some(escape(&m.console_log().display().to_string()))),
        ("SSH_PORT", Some(ssh.to_string())),
        ("SERVICE_PORT", Some(service.to_string())),
        ("HTTP_PORT", Some(service.to_string())),
        ("GUEST_SSH_PORT", Some(m.guest_ssh_port.to_string())),
        ("GUEST_SERVICE_PORT", Some(m.guest_service_port.to_string())),
        ("ADDRESS", address),
        ("MAC", mac),
        ("BRIDGE", bridge),
        ("NETWORK_DEVICES", Some(devices)),
        ("QEMU_COMMANDLINE", Some(cmdline)),
        ("TB_CACHE_MIB", Some(TB_CACHE_MIB.to_string())),
        ("METADATA", Some(metadata_element(m))),
    ]
}

/// The `@NAME@`-shaped token starting at `s` (after the first `@`), if any.
fn token(s: &str) -> Option<&str> {
    let end = s.find('@')?;
    let t = &s[..end];
    let ok = !t.is_empty()
        && t.starts_with(|c: char| c.is_ascii_uppercase())
        && t.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    ok.then_some(t)
}

/// Fills `template` in one pass (a value is never re-scanned). Errors name an unknown
/// placeholder, or one whose value the template does not provide (e.g. `@KERNEL@` without
/// `kernel`), and XML that does not parse.
pub fn render(template: &str, input: &RenderInput) -> Result<String, String> {
    let vals = values(input);
    let mut out = String::with_capacity(template.len() + 1024);
    let mut rest = template;
    let mut used_metadata = false;
    while let Some(i) = rest.find('@') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match token(after) {
            Some(t) => {
                match vals.iter().find(|(k, _)| *k == t) {
                    Some((_, Some(v))) => out.push_str(v),
                    Some((_, None)) => {
                        return Err(format!("uses @{t}@, which this member has no value for ({})", why_unset(t)))
                    }
                    None => return Err(format!("unknown placeholder @{t}@")),
                }
                used_metadata |= t == "METADATA";
                rest = &after[t.len() + 1..];
            }
            None => {
                out.push('@');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    if !used_metadata {
        out = insert_metadata(&out, &metadata_element(&input.meta))?;
    }
    let doc = roxmltree::Document::parse(&out).map_err(|e| format!("the filled-in domain XML does not parse: {e}"))?;
    if doc.root_element().tag_name().name() != "domain" {
        return Err(format!("the root element is <{}>, not <domain>", doc.root_element().tag_name().name()));
    }
    Ok(out)
}

fn why_unset(t: &str) -> &'static str {
    match t {
        "KERNEL" => "set `kernel`",
        "INITRD" => "set `initrd`",
        "ADDRESS" | "MAC" | "BRIDGE" => "only bridged members (provider `addresses`) have it",
        _ => "not available",
    }
}

fn insert_metadata(xml: &str, element: &str) -> Result<String, String> {
    if let Some(i) = xml.find("</metadata>") {
        return Ok(format!("{}{element}\n  {}", &xml[..i], &xml[i..]));
    }
    if let Some(i) = xml.find("</name>") {
        let j = i + "</name>".len();
        return Ok(format!("{}\n  <metadata>{element}</metadata>{}", &xml[..j], &xml[j..]));
    }
    Err("has no <name> element to put Flotilla's <metadata> after".into())
}

/// Checks a user's template without a member: required placeholders, and that it renders into
/// XML with sample values.
pub fn check_template(text: &str, has_kernel: bool, has_initrd: bool) -> Result<(), String> {
    for p in ["NAME", "DISK", "SEED"] {
        if !text.contains(&format!("@{p}@")) {
            let what = match p {
                "NAME" => "every member would get the same domain name",
                "DISK" => "members would have no disk (their overlay of `image`)",
                _ => "members would not get their NoCloud seed (cloud-init)",
            };
            return Err(format!("has no @{p}@ placeholder: {what}"));
        }
    }
    let sample = RenderInput {
        meta: MemberMeta {
            group: "g".into(),
            instance: "sample_1".into(),
            host: "h".into(),
            ssh_port: Some(20000),
            service_port: Some(20001),
            address: None,
            guest_ssh_port: 22,
            guest_service_port: 8080,
            vcpus: 1,
            memory_mib: 128,
            created_ms: 0,
            fingerprint: String::new(),
            dir: PathBuf::from("/state/libvirt/sample_1"),
        },
        kernel: has_kernel.then(|| PathBuf::from("/k")),
        initrd: has_initrd.then(|| PathBuf::from("/i")),
        cmdline: "console=ttyS0".into(),
        net: Net::User { ssh: 20000, service: 20001 },
    };
    render(text, &sample).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> MemberMeta {
        MemberMeta {
            group: "web & co".into(),
            instance: "vm-test_1".into(),
            host: "lab".into(),
            ssh_port: Some(20000),
            service_port: Some(20001),
            address: None,
            guest_ssh_port: 22,
            guest_service_port: 8080,
            vcpus: 2,
            memory_mib: 128,
            created_ms: 1_700_000_000_000,
            fingerprint: "00ff".into(),
            dir: PathBuf::from("/st/libvirt/vm-test_1"),
        }
    }

    fn input(net: Net) -> RenderInput {
        RenderInput {
            meta: meta(),
            kernel: Some("/b/vmlinux".into()),
            initrd: Some("/b/initrd.img".into()),
            cmdline: "console=ttyS0 quiet".into(),
            net,
        }
    }

    #[test]
    fn metadata_round_trips_with_and_without_prefix() {
        let m = meta();
        let el = metadata_element(&m);
        assert!(el.contains("group=\"web &amp; co\""), "{el}");
        assert_eq!(parse_metadata(&el).unwrap(), m);
        // what virDomainGetMetadata hands back: the prefix dropped
        let bare = el.replace("flotilla:member xmlns:flotilla=\"urn:x-flotilla:v1\"", "member");
        assert_eq!(parse_metadata(&bare).unwrap(), m);
        let mut b = m.clone();
        b.ssh_port = None;
        b.service_port = None;
        b.address = Some("10.0.0.7".parse().unwrap());
        let back = parse_metadata(&metadata_element(&b)).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.service_address().unwrap(), "10.0.0.7:8080");
        assert_eq!(m.ssh_address().unwrap(), "127.0.0.1:20000");
    }

    #[test]
    fn bad_metadata_is_an_error() {
        assert!(parse_metadata("<member group='g'/>").unwrap_err().contains("instance"));
        assert!(parse_metadata("<other/>").is_err());
        assert!(parse_metadata("<member group='g' instance='i' host='h' dir='/d' service='x'/>")
            .unwrap_err()
            .contains("service"));
        assert!(parse_metadata("<member group='g' instance='i' host='h' dir='/d'/>").is_err());
        assert!(parse_metadata("not xml").is_err());
    }

    #[test]
    fn renders_the_builtin_template_in_user_mode() {
        let xml = render(BUILTIN_QEMU_TEMPLATE, &input(Net::User { ssh: 20000, service: 20001 })).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let name = doc.descendants().find(|n| n.has_tag_name("name")).unwrap().text();
        assert_eq!(name, Some("vm-test_1"));
        assert!(xml.contains("hostfwd=tcp:127.0.0.1:20000-:22,hostfwd=tcp:127.0.0.1:20001-:8080"), "{xml}");
        assert!(xml.contains("<source file='/st/libvirt/vm-test_1/disk.qcow2'/>"));
        assert!(xml.contains("<cmdline>console=ttyS0 quiet lab.hostname=vm-test_1</cmdline>"));
        assert!(!xml.contains("<interface"));
        let member = doc.descendants().find(|n| n.tag_name().namespace() == Some(NS)).unwrap();
        assert_eq!(member.attribute("instance"), Some("vm-test_1"));
        assert_eq!(member.attribute("service"), Some("20001"));
    }

    #[test]
    fn renders_bridged_networking() {
        let net =
            Net::Bridge { bridge: "br0".into(), mac: "52:54:00:aa:bb:cc".into(), address: "10.0.0.9".parse().unwrap() };
        let xml = render(BUILTIN_QEMU_TEMPLATE, &input(net)).unwrap();
        assert!(xml.contains("<source bridge='br0'/>"), "{xml}");
        assert!(!xml.contains("qemu:commandline"));
    }

    #[test]
    fn placeholders_are_checked() {
        let mut i = input(Net::User { ssh: 1, service: 2 });
        i.kernel = None;
        assert!(render(BUILTIN_QEMU_TEMPLATE, &i).unwrap_err().contains("@KERNEL@"));
        assert!(render("<domain><name>@NAME@</name>@NOPE@</domain>", &i).unwrap_err().contains("@NOPE@"));
        // a lone @ and lower-case tokens are text
        let x = render("<domain><name>@NAME@</name><description>a@b @x@</description></domain>", &i).unwrap();
        assert!(x.contains("a@b @x@"), "{x}");
        assert!(x.contains("<metadata><flotilla:member"), "metadata inserted after <name>: {x}");
        let x = render("<domain><name>@NAME@</name><metadata><other xmlns='urn:o'/></metadata></domain>", &i).unwrap();
        assert_eq!(x.matches("<metadata>").count(), 1, "{x}");
        assert!(render("<domain><name>@NAME@</name><broken></domain>", &i).unwrap_err().contains("does not parse"));
    }

    #[test]
    fn user_templates_need_name_disk_and_seed() {
        assert!(check_template(BUILTIN_QEMU_TEMPLATE, true, true).is_ok());
        let no_disk = BUILTIN_QEMU_TEMPLATE.replace("@DISK@", "/fixed.qcow2");
        assert!(check_template(&no_disk, true, true).unwrap_err().contains("@DISK@"));
        assert!(check_template(BUILTIN_QEMU_TEMPLATE, false, true).unwrap_err().contains("@KERNEL@"));
    }

    #[test]
    fn the_test_template_renders() {
        let xml = render(BUILTIN_TEST_TEMPLATE, &input(Net::User { ssh: 1, service: 2 })).unwrap();
        assert!(xml.starts_with("<domain type='test'>"));
    }
}
