//! Small helpers without I/O: ISO-8601 times, Nova name regexes, CIDRs, wall-clock time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock milliseconds since the Unix epoch (token expiry, member `created_at`, snapshot names).
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Parses the ISO-8601 UTC times OpenStack returns (`2026-04-20T13:44:17Z`,
/// `2026-04-20T13:44:17.000000Z`, `2026-04-20T13:44:17+00:00`, `2026-04-20T13:44:17.123456`)
/// into milliseconds since the epoch. Offsets other than UTC are applied.
pub fn parse_iso8601_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', ' '])?;
    let mut d = date.split('-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    if d.next().is_some() || !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Split the clock from the zone.
    let (clock, offset_min) = if let Some(c) = rest.strip_suffix('Z').or_else(|| rest.strip_suffix('z')) {
        (c, 0i64)
    } else if let Some(pos) = rest.rfind(['+', '-']).filter(|&p| p >= 5) {
        let (c, z) = rest.split_at(pos);
        let sign = if z.starts_with('-') { -1 } else { 1 };
        let z = &z[1..];
        let (hh, mm) = z.split_once(':').unwrap_or((z.get(..2)?, z.get(2..).unwrap_or("0")));
        let mm = if mm.is_empty() { "0" } else { mm };
        (c, sign * (hh.parse::<i64>().ok()? * 60 + mm.parse::<i64>().ok()?))
    } else {
        (rest, 0)
    };
    let (hms, frac) = clock.split_once('.').unwrap_or((clock, ""));
    let mut t = hms.split(':');
    let h: i64 = t.next()?.parse().ok()?;
    let mi: i64 = t.next()?.parse().ok()?;
    let sec: i64 = t.next().unwrap_or("0").parse().ok()?;
    let ms: i64 = if frac.is_empty() {
        0
    } else {
        let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).take(3).collect();
        format!("{digits:0<3}").parse().ok()?
    };
    let days = days_from_civil(year, month, day);
    let total = ((days * 24 + h) * 60 + mi - offset_min) * 60 + sec;
    if total < 0 {
        return None;
    }
    Some(total as u64 * 1000 + ms as u64)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `YYYYmmdd-HHMMSS` (UTC) for snapshot names.
pub(crate) fn compact_utc(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}{m:02}{d:02}-{:02}{:02}{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Escapes a literal for Nova's `name` filter, which is a regular expression (MySQL `REGEXP`).
pub fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if "\\.^$|?*+()[]{}".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// An IPv4 CIDR as written (`192.168.100.0/24`), checked: four octets, prefix 0-32.
pub fn parse_ipv4_cidr(s: &str) -> Result<([u8; 4], u8), String> {
    let (addr, len) = s.split_once('/').ok_or_else(|| format!("{s:?} is not a CIDR (expected a.b.c.d/len)"))?;
    let ip: std::net::Ipv4Addr = addr.parse().map_err(|_| format!("{s:?}: {addr:?} is not an IPv4 address"))?;
    let len: u8 = len.parse().ok().filter(|l| *l <= 32).ok_or_else(|| format!("{s:?}: prefix length must be 0-32"))?;
    Ok((ip.octets(), len))
}

/// The network address of a CIDR in canonical form (`192.168.100.7/24` → `192.168.100.0/24`).
pub fn canonical_cidr(s: &str) -> Result<String, String> {
    let (o, len) = parse_ipv4_cidr(s)?;
    let bits = u32::from_be_bytes(o);
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let net = std::net::Ipv4Addr::from(bits & mask);
    Ok(format!("{net}/{len}"))
}

/// The first `n` characters of `s`, with `…` if cut (error messages quote server replies).
pub(crate) fn clip(s: &str, n: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openstack_times() {
        assert_eq!(parse_iso8601_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601_ms("1970-01-02T00:00:01.5Z"), Some(86_401_500));
        let a = parse_iso8601_ms("2026-04-20T13:44:17.000000Z").unwrap();
        assert_eq!(parse_iso8601_ms("2026-04-20T13:44:17Z"), Some(a));
        assert_eq!(parse_iso8601_ms("2026-04-20T15:44:17+02:00"), Some(a));
        assert_eq!(parse_iso8601_ms("2026-04-20T13:44:17"), Some(a));
        assert_eq!(compact_utc(a), "20260420-134417");
        assert_eq!(parse_iso8601_ms("not a time"), None);
    }

    #[test]
    fn escapes_and_cidrs() {
        assert_eq!(regex_escape("VM-test_1"), "VM-test_1");
        assert_eq!(regex_escape("a.b(c)"), "a\\.b\\(c\\)");
        assert_eq!(canonical_cidr("192.168.100.7/24").unwrap(), "192.168.100.0/24");
        assert_eq!(canonical_cidr("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        assert!(parse_ipv4_cidr("10.0.0.1").is_err());
        assert!(parse_ipv4_cidr("10.0.0.1/33").is_err());
        assert!(parse_ipv4_cidr("10.0.0/8").is_err());
    }
}
