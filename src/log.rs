//! Logfmt lines on stderr: `ts=... level=info msg="..." key=value`.
//!
//! The level is one process-wide setting written once at start. Each line is formatted into one
//! buffer and written with one call, so lines from different connection threads never
//! interleave.
//!
//! Invariant: logging never panics and never blocks the caller on anything but stderr itself.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

impl Level {
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "debug" => Some(Level::Debug),
            "info" => Some(Level::Info),
            "warn" => Some(Level::Warn),
            "error" => Some(Level::Error),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

static LEVEL: AtomicU8 = AtomicU8::new(Level::Info as u8);

pub fn set_level(level: Level) {
    LEVEL.store(level as u8, Ordering::Relaxed);
}

pub fn enabled(level: Level) -> bool {
    level as u8 >= LEVEL.load(Ordering::Relaxed)
}

pub fn debug(msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    log(Level::Debug, msg, fields)
}

pub fn info(msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    log(Level::Info, msg, fields)
}

pub fn warn(msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    log(Level::Warn, msg, fields)
}

pub fn error(msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    log(Level::Error, msg, fields)
}

fn log(level: Level, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) {
    if !enabled(level) {
        return;
    }
    let mut line = String::with_capacity(128);
    line.push_str("ts=");
    push_timestamp(&mut line, SystemTime::now());
    line.push_str(" level=");
    line.push_str(level.name());
    line.push_str(" msg=");
    push_value(&mut line, msg);
    let mut value = String::new();
    for (key, v) in fields {
        value.clear();
        let _ = write!(value, "{v}");
        line.push(' ');
        line.push_str(key);
        line.push('=');
        push_value(&mut line, &value);
    }
    line.push('\n');
    // A failed write to stderr has nowhere to be reported.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Appends a logfmt value, quoted when it holds anything that would split or confuse a parser.
pub(crate) fn push_value(out: &mut String, value: &str) {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '=' && c != '\\');
    if plain {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends an RFC 3339 UTC timestamp with milliseconds.
fn push_timestamp(out: &mut String, now: SystemTime) {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        since.subsec_millis()
    );
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
///
/// This is Howard Hinnant's well-known `civil_from_days` arithmetic: eras of 400 years, each
/// starting in March so that the leap day falls at the end.
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(value: &str, expected: &str) {
        let mut out = String::new();
        push_value(&mut out, value);
        assert_eq!(out, expected);
    }

    #[test]
    fn values_are_quoted_when_needed() {
        check("eth0", "eth0");
        check("", "\"\"");
        check("two words", "\"two words\"");
        check("a=b", "\"a=b\"");
        check("say \"hi\"\n", "\"say \\\"hi\\\"\\n\"");
        check("back\\slash", "\"back\\\\slash\"");
        check("\u{1}", "\"\\u{1}\"");
    }

    #[test]
    fn days_become_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_783), (2026, 11, 26));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let mut out = String::new();
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_795_780_800_123);
        push_timestamp(&mut out, t);
        assert_eq!(out, "2026-11-27T12:00:00.123Z");
    }
}
