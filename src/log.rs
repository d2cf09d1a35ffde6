//! Logfmt lines on stderr: `ts=... level=info msg="..." key=value`.
//!
//! The level is one process-wide setting written once at start. A caller formats its line into
//! one buffer and hands it to a bounded queue; one logger thread writes the queue to stderr, a
//! line per `write`, so lines from different threads never interleave. stderr can block (a pipe
//! nobody reads, a stalled journald): then the queue fills, further lines are dropped and
//! counted, and the logger reports the count once it can write again. Repeated events are
//! rate-limited too: past a budget of lines per second, lines are suppressed and their count
//! reported when the second is over. The thread that starts the logger (`main`: startup, signals,
//! shutdown) is exempt from the rate limit, since its few lines are the ones an operator needs.
//! At exit, [`flush`] waits a short while for the queue to drain, never longer.
//!
//! Invariant: logging never panics and never blocks a caller on stderr; the only wait is for
//! the queue's lock, which is never held across a write.

use std::cell::Cell;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Lines held while stderr does not take them. About a second of the rate budget plus the
/// startup lines: once stderr has been blocked that long, older lines tell an operator no more
/// than the count of what was lost, and the queue stays small (a few tens of KiB) for good.
const MAX_QUEUED_LINES: usize = 128;

/// Lines per second a serving thread may log before further lines are suppressed. Far above
/// what a healthy exporter logs even at debug, and below journald's default per-service
/// limit (10000 lines per 30 s), so that our own count, not journald's silent drop, is what
/// the operator sees.
const LINES_PER_SECOND: u32 = 100;

/// The rate limit's window.
const RATE_WINDOW: Duration = Duration::from_secs(1);

/// How long [`flush`] waits for the queue to drain at exit. Long enough for a slow journald to
/// catch up, short against the 10 s `docker stop` and systemd give before SIGKILL.
const FLUSH_DEADLINE: Duration = Duration::from_millis(500);

/// Stack for the logger thread, which only moves finished lines to stderr.
const LOGGER_STACK: usize = 64 * 1024;

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
    let line = format_line(level, msg, fields);
    if !STARTED.load(Ordering::Acquire) {
        // Before the logger runs only `main` exists, so writing here delays no one.
        write_stderr(&line);
        return;
    }
    let limited = !UNLIMITED.with(Cell::get);
    let wake = lock().offer(Instant::now(), limited, line);
    if wake {
        WAKE.notify_one();
    }
}

fn format_line(level: Level, msg: &str, fields: &[(&str, &dyn std::fmt::Display)]) -> String {
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
    line
}

fn write_stderr(line: &str) {
    // A failed write to stderr has nowhere to be reported.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

static STARTED: AtomicBool = AtomicBool::new(false);
static BACKLOG: Mutex<Backlog> = Mutex::new(Backlog::new());
/// Wakes the logger: a line was queued.
static WAKE: Condvar = Condvar::new();
/// Wakes [`flush`]: the logger finished a write.
static WRITTEN: Condvar = Condvar::new();

thread_local! {
    /// Set on the thread that called [`start`]: its lines skip the rate limit.
    static UNLIMITED: Cell<bool> = const { Cell::new(false) };
}

fn lock() -> MutexGuard<'static, Backlog> {
    // Nothing panics while holding the lock, and the backlog is valid whatever happened.
    BACKLOG.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts the logger thread; from now on no caller writes to stderr itself. Call it once from
/// `main`, whose own lines are then exempt from the rate limit. If the thread cannot be
/// created, lines keep being written by their callers, as before the call.
pub fn start() -> std::io::Result<()> {
    UNLIMITED.with(|u| u.set(true));
    thread::Builder::new()
        .name("log".into())
        .stack_size(LOGGER_STACK)
        .spawn(run_logger)?;
    STARTED.store(true, Ordering::Release);
    Ok(())
}

/// Waits until every queued line is written, or [`FLUSH_DEADLINE`] has passed: a blocked
/// stderr must not keep the process from exiting.
pub fn flush() {
    if !STARTED.load(Ordering::Acquire) {
        return;
    }
    let end = Instant::now() + FLUSH_DEADLINE;
    let mut backlog = lock();
    // Lines suppressed in the last second are reported now rather than never.
    backlog.report_due = backlog.report_due.map(|_| Instant::now());
    WAKE.notify_one();
    while !backlog.is_empty() {
        let now = Instant::now();
        if now >= end {
            return;
        }
        backlog = WRITTEN
            .wait_timeout(backlog, end - now)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

fn run_logger() {
    let mut backlog = lock();
    loop {
        let line = match backlog.next(Instant::now()) {
            Next::Line(line) => line,
            Next::Dropped(n) => format_line(
                Level::Warn,
                "log lines dropped, stderr was blocked",
                &[("count", &n)],
            ),
            Next::Suppressed(n) => format_line(
                Level::Warn,
                "log lines suppressed by the rate limit",
                &[("count", &n), ("limit_per_second", &LINES_PER_SECOND)],
            ),
            Next::WaitUntil(when) => {
                let wait = when.saturating_duration_since(Instant::now());
                backlog = WAKE
                    .wait_timeout(backlog, wait)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                continue;
            }
            Next::Wait => {
                backlog = WAKE.wait(backlog).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
        };
        backlog.writing = true;
        drop(backlog);
        write_stderr(&line);
        drop(line);
        backlog = lock();
        backlog.writing = false;
        WRITTEN.notify_all();
    }
}

/// The queue between the threads that log and the logger thread, with the rate limit's and
/// the drops' counts. Plain data: the logger thread and the tests drive it.
struct Backlog {
    lines: VecDeque<String>,
    /// Lines refused because the queue was full, not yet reported.
    dropped: u64,
    window_start: Option<Instant>,
    window_lines: u32,
    /// Lines refused by the rate limit, not yet reported.
    suppressed: u64,
    /// When `suppressed` is to be reported: the end of the window it was counted in.
    report_due: Option<Instant>,
    /// The logger is writing a line it took, outside the lock.
    writing: bool,
}

/// What the logger thread does next.
#[derive(Debug, PartialEq)]
enum Next {
    Line(String),
    Dropped(u64),
    Suppressed(u64),
    WaitUntil(Instant),
    Wait,
}

impl Backlog {
    const fn new() -> Backlog {
        Backlog {
            lines: VecDeque::new(),
            dropped: 0,
            window_start: None,
            window_lines: 0,
            suppressed: 0,
            report_due: None,
            writing: false,
        }
    }

    /// Queues `line` unless the rate limit (when `limited`) or the queue's bound refuses it.
    /// Says whether the logger has news: a line, or a first suppression whose report it must
    /// schedule.
    fn offer(&mut self, now: Instant, limited: bool, line: String) -> bool {
        if limited {
            let start = match self.window_start {
                Some(start) if now.saturating_duration_since(start) < RATE_WINDOW => start,
                _ => {
                    self.window_start = Some(now);
                    self.window_lines = 0;
                    now
                }
            };
            if self.window_lines >= LINES_PER_SECOND {
                self.suppressed += 1;
                let first = self.report_due.is_none();
                self.report_due.get_or_insert(start + RATE_WINDOW);
                return first;
            }
            self.window_lines += 1;
        }
        if self.lines.len() >= MAX_QUEUED_LINES {
            self.dropped += 1;
            return false;
        }
        self.lines.push_back(line);
        true
    }

    /// The next thing to write: a drop report comes first, since it is news the moment the
    /// logger can write again.
    fn next(&mut self, now: Instant) -> Next {
        if self.dropped > 0 {
            return Next::Dropped(std::mem::take(&mut self.dropped));
        }
        if let Some(line) = self.lines.pop_front() {
            return Next::Line(line);
        }
        match self.report_due {
            Some(due) if now >= due => {
                self.report_due = None;
                Next::Suppressed(std::mem::take(&mut self.suppressed))
            }
            Some(due) => Next::WaitUntil(due),
            None => Next::Wait,
        }
    }

    /// Nothing is left to write.
    fn is_empty(&self) -> bool {
        self.lines.is_empty() && !self.writing && self.dropped == 0 && self.report_due.is_none()
    }
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

    /// Offers `count` lines at each `(millisecond, limited)` step to a fresh backlog that nobody
    /// drains, and compares (queued, suppressed, dropped).
    #[track_caller]
    fn check_offers(steps: &[(u64, bool, usize)], expected: (usize, u64, u64)) {
        let t0 = Instant::now();
        let mut b = Backlog::new();
        for &(ms, limited, count) in steps {
            for _ in 0..count {
                b.offer(t0 + Duration::from_millis(ms), limited, "x\n".to_owned());
            }
        }
        assert_eq!((b.lines.len(), b.suppressed, b.dropped), expected);
    }

    #[test]
    fn the_rate_limit_and_the_queue_bound_count_what_they_refuse() {
        let budget = LINES_PER_SECOND as usize;
        check_offers(&[(0, true, 10)], (10, 0, 0));
        check_offers(&[(0, true, budget + 7)], (budget, 7, 0));
        // A new window brings a new budget; the queue's bound then drops the excess.
        check_offers(
            &[(0, true, budget), (1000, true, budget)],
            (MAX_QUEUED_LINES, 0, (2 * budget - MAX_QUEUED_LINES) as u64),
        );
        check_offers(&[(0, true, budget), (999, true, 1)], (budget, 1, 0));
        // The thread that started the logger is not rate-limited, but still bounded.
        check_offers(
            &[(0, false, MAX_QUEUED_LINES + 3)],
            (MAX_QUEUED_LINES, 0, 3),
        );
        check_offers(&[(0, true, budget), (0, false, 5)], (budget + 5, 0, 0));
    }

    #[test]
    fn the_logger_reports_drops_first_and_suppressions_after_their_second() {
        let t0 = Instant::now();
        let mut b = Backlog::new();
        for _ in 0..MAX_QUEUED_LINES + 2 {
            b.offer(t0, false, "x\n".to_owned());
        }
        for _ in 0..LINES_PER_SECOND + 4 {
            b.offer(t0, true, "y\n".to_owned());
        }
        assert_eq!(b.next(t0), Next::Dropped(2 + u64::from(LINES_PER_SECOND)));
        for _ in 0..MAX_QUEUED_LINES {
            assert_eq!(b.next(t0), Next::Line("x\n".to_owned()));
        }
        let due = t0 + RATE_WINDOW;
        assert_eq!(b.next(t0), Next::WaitUntil(due));
        assert!(!b.is_empty());
        assert_eq!(b.next(due), Next::Suppressed(4));
        assert_eq!(b.next(due), Next::Wait);
        assert!(b.is_empty());
    }

    #[test]
    fn the_first_suppression_wakes_the_logger_to_schedule_its_report() {
        let t0 = Instant::now();
        let mut b = Backlog::new();
        for _ in 0..LINES_PER_SECOND {
            assert!(b.offer(t0, true, "x\n".to_owned()));
        }
        assert!(b.offer(t0, true, "x\n".to_owned()));
        assert!(!b.offer(t0, true, "x\n".to_owned()));
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
