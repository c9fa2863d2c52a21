//! `format` and `pattern` checks, as kube-apiserver's format registry (kube-openapi's
//! `strfmt.Default`) applies them to custom resources.
//!
//! Checked: `byte`, `date`, `date-time`/`datetime`, `duration`, `email`, `hostname`,
//! `ipv4`, `ipv6`, `cidr`, `mac`, `uri`, `uuid`, `uuid3`, `uuid4`, `uuid5`, `hexcolor`,
//! and the integer ranges of `int32`/`int64`. Other formats (`password`, `isbn`,
//! `creditcard`, `ssn`, `bsonobjectid`, `rgbcolor`, ...) are accepted unchecked.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Mutex, OnceLock, PoisonError},
};

use regex::Regex;
use serde_json::Value;

/// Whether `s` matches the CRD `pattern` (an RE2 expression, which the `regex` crate
/// reads the same way); `None` when the pattern does not compile.
pub(super) fn matches_pattern(pattern: &str, s: &str) -> Option<bool> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    let re = cache
        .entry(pattern.to_string())
        .or_insert_with(|| Regex::new(pattern).ok());
    re.as_ref().map(|re| re.is_match(s))
}

/// Whether a number fits a signed integer of `bits` bits.
pub(super) fn fits_int(v: &Value, bits: u32) -> bool {
    match v.as_i64() {
        Some(i) if bits == 32 => i32::try_from(i).is_ok(),
        Some(_) => true,
        None => false,
    }
}

fn regex(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

macro_rules! rx {
    ($pattern:expr, $s:expr) => {{
        static CELL: OnceLock<Option<Regex>> = OnceLock::new();
        regex(&CELL, $pattern).is_some_and(|re| re.is_match($s))
    }};
}

/// Whether string `s` is valid for `format`; unknown formats accept everything.
pub(super) fn string_is(format: &str, s: &str) -> bool {
    match format {
        "byte" => {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "date" => is_date(s),
        "date-time" | "datetime" => is_date_time(s),
        "duration" => is_duration(s),
        "email" => is_email(s),
        "hostname" => is_hostname(s),
        "ipv4" => s.parse::<IpAddr>().is_ok() && s.contains('.'),
        "ipv6" => s.parse::<IpAddr>().is_ok() && s.contains(':'),
        "cidr" => is_cidr(s),
        "mac" => is_mac(s),
        "uri" => is_uri(s),
        "uuid" => rx!(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
            s
        ),
        "uuid3" => rx!(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?3[0-9a-f]{3}-?[0-9a-f]{4}-?[0-9a-f]{12}$",
            s
        ),
        "uuid4" => rx!(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?4[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
            s
        ),
        "uuid5" => rx!(
            r"(?i)^[0-9a-f]{8}-?[0-9a-f]{4}-?5[0-9a-f]{3}-?[89ab][0-9a-f]{3}-?[0-9a-f]{12}$",
            s
        ),
        "hexcolor" => rx!(r"^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", s),
        _ => true,
    }
}

fn civil_date(y: &str, m: &str, d: &str) -> bool {
    match (y.parse::<i16>(), m.parse::<i8>(), d.parse::<i8>()) {
        (Ok(y), Ok(m), Ok(d)) => jiff::civil::Date::new(y, m, d).is_ok(),
        _ => false,
    }
}

/// `2006-01-02`.
fn is_date(s: &str) -> bool {
    static CELL: OnceLock<Option<Regex>> = OnceLock::new();
    regex(&CELL, r"^(\d{4})-(\d{2})-(\d{2})$")
        .and_then(|re| re.captures(s))
        .is_some_and(|c| civil_date(&c[1], &c[2], &c[3]))
}

/// RFC 3339 with optional seconds and fraction, or a local ISO 8601 time without offset.
fn is_date_time(s: &str) -> bool {
    static CELL: OnceLock<Option<Regex>> = OnceLock::new();
    let Some(c) = regex(
        &CELL,
        r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}:?\d{2})?$",
    )
    .and_then(|re| re.captures(s)) else {
        return false;
    };
    let in_range = |i: usize, max: u8| {
        c.get(i)
            .is_none_or(|m| m.as_str().parse::<u8>().is_ok_and(|x| x <= max))
    };
    civil_date(&c[1], &c[2], &c[3]) && in_range(4, 23) && in_range(5, 59) && in_range(6, 59)
}

/// Go's `time.ParseDuration` (`1h30m`, `-1.5s`) or strfmt's `3 days`, `5w`.
fn is_duration(s: &str) -> bool {
    static CELL: OnceLock<Option<Regex>> = OnceLock::new();
    if s == "0"
        || rx!(
            r"^[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+$",
            s
        )
    {
        return true;
    }
    let Some(re) = regex(&CELL, r"(\d+)\s*([A-Za-zµ]+)") else {
        return false;
    };
    if !rx!(r"^(?:\d+\s*[A-Za-zµ]+\s*)+$", s) {
        return false;
    }
    re.captures_iter(s).all(|c| {
        matches!(
            &c[2],
            "ns" | "nanosecond"
                | "nanoseconds"
                | "us"
                | "µs"
                | "microsecond"
                | "microseconds"
                | "ms"
                | "millisecond"
                | "milliseconds"
                | "s"
                | "sec"
                | "secs"
                | "second"
                | "seconds"
                | "m"
                | "min"
                | "mins"
                | "minute"
                | "minutes"
                | "h"
                | "hr"
                | "hrs"
                | "hour"
                | "hours"
                | "d"
                | "day"
                | "days"
                | "w"
                | "wk"
                | "wks"
                | "week"
                | "weeks"
        )
    })
}

/// An RFC 5322 address as Go's `net/mail.ParseAddress` reads it: `local@domain`, or a
/// display name followed by `<local@domain>`.
fn is_email(s: &str) -> bool {
    let addr = match (s.rfind('<'), s.strip_suffix('>')) {
        (Some(open), Some(inner)) => &inner[open + 1..],
        _ => s.trim(),
    };
    rx!(
        r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$",
        addr
    )
}

/// strfmt's hostname: labels of letters, digits, symbols and hyphens, a top-level label
/// of at least two letters when dotted; at most 255 bytes and 63 per label.
fn is_hostname(s: &str) -> bool {
    s.len() <= 255
        && s.split('.').all(|l| l.len() <= 63)
        && rx!(
            r"^([a-zA-Z0-9\p{S}\p{L}]((-?[a-zA-Z0-9\p{S}\p{L}]{0,62})?)|([a-zA-Z0-9\p{S}\p{L}](([a-zA-Z0-9-\p{S}\p{L}]{0,61}[a-zA-Z0-9\p{S}\p{L}])?)(\.)){1,}([a-zA-Z\p{L}]){2,63})$",
            s
        )
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    !bits.is_empty()
        && bits.len() <= 3
        && bits.bytes().all(|b| b.is_ascii_digit())
        && bits.parse::<u8>().is_ok_and(|b| b <= max)
}

/// Go's `net.ParseMAC`: 6, 8 or 20 octets, `:`- or `-`-separated pairs or `.`-separated quads.
fn is_mac(s: &str) -> bool {
    let pairs = |sep: char| {
        let parts: Vec<&str> = s.split(sep).collect();
        matches!(parts.len(), 6 | 8 | 20)
            && parts
                .iter()
                .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let quads = {
        let parts: Vec<&str> = s.split('.').collect();
        matches!(parts.len(), 3 | 4 | 10)
            && parts
                .iter()
                .all(|p| p.len() == 4 && p.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    pairs(':') || pairs('-') || quads
}

/// Go's `url.ParseRequestURI`: an absolute URI with a scheme, or an absolute path.
fn is_uri(s: &str) -> bool {
    if s.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return false;
    }
    s.starts_with('/') || rx!(r"^[A-Za-z][A-Za-z0-9+.-]*:.+", s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_accept_and_reject_as_the_real_server_did() {
        let cases: &[(&str, &str, bool)] = &[
            ("uri", "::", false),
            ("uri", "/a b", true),
            ("uri", "https://example.com/x", true),
            ("cidr", "1.2.3.4", false),
            ("cidr", "10.0.0.0/33", false),
            ("cidr", "10.0.0.0/8", true),
            ("duration", "5 parsecs", false),
            ("duration", "1h30m", true),
            ("duration", "3 days", true),
            ("mac", "zz", false),
            ("mac", "0102.0304.0506", true),
            ("mac", "01:02:03:04:05:06", true),
            ("hostname", "-bad-", false),
            ("hostname", "a.b-c.de", true),
            ("byte", "!!!", false),
            ("byte", "aGk=", true),
            ("email", "x", false),
            ("email", "A <a@b.c>", true),
            ("uuid", "nope", false),
            ("uuid", "0123456789abcdef0123456789ABCDEF", true),
            ("ipv4", "1.2.3", false),
            ("ipv4", "::ffff:1.2.3.4", true),
            ("ipv6", "zz", false),
            ("ipv6", "fe80::1", true),
            ("date", "2020-13-01", false),
            ("date", "2020-02-29", true),
            ("date-time", "yesterday", false),
            ("date-time", "2020-01-01 10:00:00", false),
            ("date-time", "2020-01-01T10:00:00Z", true),
            ("date-time", "2020-01-01T10:00:00.123+02:00", true),
            ("password", "anything", true),
        ];
        for (format, value, ok) in cases {
            assert_eq!(string_is(format, value), *ok, "{format} {value:?}");
        }
    }

    #[test]
    fn integer_formats_bound_the_value() {
        assert!(fits_int(&serde_json::json!(2_147_483_647), 32));
        assert!(!fits_int(&serde_json::json!(3_000_000_000_i64), 32));
        assert!(fits_int(&serde_json::json!(3_000_000_000_i64), 64));
        assert!(!fits_int(&serde_json::json!(1.5), 64));
    }

    #[test]
    fn patterns_are_cached_and_invalid_ones_do_not_match_or_fail() {
        assert_eq!(matches_pattern("^[A-Z]{3}$", "ABC"), Some(true));
        assert_eq!(matches_pattern("^[A-Z]{3}$", "abcd"), Some(false));
        assert_eq!(matches_pattern("(", "x"), None);
    }
}
