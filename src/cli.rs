//! Command line: a lexopt loop that turns arguments into a [`Config`].
//!
//! Flag names follow the Prometheus exporters' convention (`--web.listen-address`), and both
//! `--flag=value` and `--flag value` are accepted. Values are checked here, so that a bad one is
//! reported before anything is bound or read.
//!
//! Invariant: parsing opens nothing, binds nothing and reads no environment.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::glob::{Glob, GlobError};
use crate::log::Level;
use crate::source::Choice;

pub const DEFAULT_PORT: u16 = 9425;

/// The longest timeout a flag may set: a day is far past any useful value and keeps
/// `Instant + Duration` arithmetic far from overflow.
const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// The most connections a flag may allow. Each is a thread, so this stays well under the
/// kernel's usual thread and descriptor limits.
const MAX_CONNECTIONS: usize = 65_536;

/// node_exporter's default for the same flag: scrapes are answered in milliseconds, so forty at
/// once is far past what any set of Prometheus servers asks, and what they hold stays small.
const DEFAULT_MAX_REQUESTS: usize = 40;

/// The smallest link-event buffer a flag may ask for: the kernel grants at least about 2 KiB
/// whatever is asked, so smaller values would only mislead; tests use this end to force
/// overflows.
const MIN_EVENTS_BUFFER: usize = 1024;

/// The largest link-event buffer a flag may ask for. The kernel grants no more than
/// `net.core.rmem_max` anyway; a gibibyte is past any host's setting and far from `c_int`'s
/// limit.
const MAX_EVENTS_BUFFER: usize = 1 << 30;

#[derive(Debug)]
pub enum Command {
    Run(Config),
    Help,
    Version,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub listen: Vec<ListenAddr>,
    pub telemetry_path: String,
    /// `None` picks `/host/sys` or `/sys` at start.
    pub sysfs: Option<PathBuf>,
    pub max_connections: usize,
    pub max_requests: usize,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub log_level: Level,
    pub statistics: bool,
    pub include: Vec<Glob>,
    pub exclude: Vec<Glob>,
    pub systemd_socket: bool,
    pub source: Choice,
    /// The receive buffer asked for the link-event subscription, in bytes.
    pub events_buffer: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: Vec::new(),
            telemetry_path: "/metrics".to_owned(),
            sysfs: None,
            max_connections: 256,
            max_requests: DEFAULT_MAX_REQUESTS,
            read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            log_level: Level::Info,
            statistics: false,
            include: Vec::new(),
            exclude: Vec::new(),
            systemd_socket: false,
            source: Choice::Auto,
            events_buffer: crate::since::DEFAULT_EVENTS_BUFFER,
        }
    }
}

/// Where to listen: every address of the host, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// `:PORT`: IPv6 dual-stack, or IPv4 alone on a host without IPv6.
    Any(u16),
    Addr(SocketAddr),
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Any(port) => write!(f, ":{port}"),
            ListenAddr::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

#[derive(Debug)]
pub enum Error {
    Lexopt(lexopt::Error),
    BadValue {
        flag: &'static str,
        value: String,
        why: &'static str,
    },
    BadGlob {
        flag: &'static str,
        value: String,
        why: GlobError,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Lexopt(e) => write!(f, "{e}"),
            Error::BadValue { flag, value, why } => {
                write!(f, "invalid value {value:?} for --{flag}: {why}")
            }
            Error::BadGlob { flag, value, why } => {
                write!(f, "invalid pattern {value:?} for --{flag}: {why}")
            }
        }
    }
}

impl From<lexopt::Error> for Error {
    fn from(e: lexopt::Error) -> Error {
        Error::Lexopt(e)
    }
}

pub fn parse_env() -> Result<Command, Error> {
    parse(lexopt::Parser::from_env())
}

#[cfg(test)]
pub fn parse_args<I: IntoIterator<Item = impl Into<std::ffi::OsString>>>(
    args: I,
) -> Result<Command, Error> {
    parse(lexopt::Parser::from_args(args))
}

fn parse(mut parser: lexopt::Parser) -> Result<Command, Error> {
    use lexopt::prelude::*;

    let mut config = Config::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Long("version") => return Ok(Command::Version),
            Long("web.listen-address") => {
                let v = string(&mut parser)?;
                config
                    .listen
                    .push(listen_addr(&v).ok_or_else(|| Error::BadValue {
                        flag: "web.listen-address",
                        value: v,
                        why: "expected [IP]:PORT, e.g. :9425, 127.0.0.1:9425 or [::1]:9425",
                    })?);
            }
            Long("web.telemetry-path") => {
                let v = string(&mut parser)?;
                if !is_valid_path(&v) {
                    return Err(Error::BadValue {
                        flag: "web.telemetry-path",
                        value: v,
                        why: "expected a path starting with '/' other than '/', without '?', '#' or spaces",
                    });
                }
                config.telemetry_path = v;
            }
            Long("path.sysfs") => {
                let v = parser.value()?;
                // An empty path would read `class/net` relative to the working directory.
                if v.is_empty() {
                    return Err(Error::BadValue {
                        flag: "path.sysfs",
                        value: String::new(),
                        why: "expected the directory where sysfs is mounted, e.g. /sys",
                    });
                }
                config.sysfs = Some(v.into());
            }
            Long("web.max-connections") => {
                config.max_connections = count(&mut parser, "web.max-connections")?
            }
            Long("web.max-requests") => {
                config.max_requests = count(&mut parser, "web.max-requests")?
            }
            Long("web.read-timeout") => {
                config.read_timeout = timeout(&mut parser, "web.read-timeout")?;
            }
            Long("web.idle-timeout") => {
                config.idle_timeout = timeout(&mut parser, "web.idle-timeout")?;
            }
            Long("log.level") => {
                let v = string(&mut parser)?;
                config.log_level = Level::parse(&v).ok_or(Error::BadValue {
                    flag: "log.level",
                    value: v,
                    why: "expected debug, info, warn or error",
                })?;
            }
            Long("collector.statistics") => config.statistics = true,
            Long("interfaces.include") => {
                config
                    .include
                    .push(glob(&mut parser, "interfaces.include")?);
            }
            Long("interfaces.exclude") => {
                config
                    .exclude
                    .push(glob(&mut parser, "interfaces.exclude")?);
            }
            Long("web.systemd-socket") => config.systemd_socket = true,
            Long("collector.source") => {
                let v = string(&mut parser)?;
                config.source = Choice::parse(&v).ok_or(Error::BadValue {
                    flag: "collector.source",
                    value: v,
                    why: "expected auto, netlink or sysfs",
                })?;
            }
            Long("collector.netlink.events-buffer") => {
                let v = string(&mut parser)?;
                config.events_buffer = match v.parse::<usize>() {
                    Ok(n) if (MIN_EVENTS_BUFFER..=MAX_EVENTS_BUFFER).contains(&n) => n,
                    _ => {
                        return Err(Error::BadValue {
                            flag: "collector.netlink.events-buffer",
                            value: v,
                            why: "expected bytes from 1024 to 1073741824",
                        })
                    }
                };
            }
            _ => return Err(arg.unexpected().into()),
        }
    }
    if config.listen.is_empty() {
        config.listen.push(ListenAddr::Any(DEFAULT_PORT));
    }
    Ok(Command::Run(config))
}

fn string(parser: &mut lexopt::Parser) -> Result<String, Error> {
    Ok(parser
        .value()?
        .into_string()
        .map_err(lexopt::Error::NonUnicodeValue)?)
}

fn glob(parser: &mut lexopt::Parser, flag: &'static str) -> Result<Glob, Error> {
    let v = string(parser)?;
    Glob::new(&v).map_err(|why| Error::BadGlob {
        flag,
        value: v,
        why,
    })
}

/// A count of connections or requests, from 1 to `MAX_CONNECTIONS`.
fn count(parser: &mut lexopt::Parser, flag: &'static str) -> Result<usize, Error> {
    let v = string(parser)?;
    match v.parse::<usize>() {
        Ok(n) if (1..=MAX_CONNECTIONS).contains(&n) => Ok(n),
        _ => Err(Error::BadValue {
            flag,
            value: v,
            why: "expected a whole number from 1 to 65536",
        }),
    }
}

fn timeout(parser: &mut lexopt::Parser, flag: &'static str) -> Result<Duration, Error> {
    let v = string(parser)?;
    parse_duration(&v).ok_or(Error::BadValue {
        flag,
        value: v,
        why: "expected seconds above 0 and at most 86400, e.g. 10, 2.5, 500ms, 1m",
    })
}

/// Parses `10`, `2.5`, `10s`, `500ms` or `1m` into a positive duration of at most a day.
///
/// Integer arithmetic on nanoseconds: `f64::from_str` would also take "inf", "nan" and "1e3",
/// and float parsing alone would add tens of KiB to a binary meant to be small.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let (number, nanos_per_unit) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1_000_000)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1_000_000_000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000_000_000)
    } else {
        (s, 1_000_000_000)
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || whole.len() > 6 || fraction.len() > 9 || number.ends_with('.') {
        return None;
    }
    if !whole
        .bytes()
        .chain(fraction.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = whole.parse().ok()?;
    // The fraction's digits as nanoseconds of one unit: "25" is 250_000_000.
    let fraction = fraction
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(9)
        .fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
    const NANOS: u64 = 1_000_000_000;
    let fraction_nanos = if nanos_per_unit >= NANOS {
        fraction * (nanos_per_unit / NANOS)
    } else {
        fraction / (NANOS / nanos_per_unit)
    };
    let nanos = whole
        .checked_mul(nanos_per_unit)?
        .checked_add(fraction_nanos)?;
    let d = Duration::from_nanos(nanos);
    (d > Duration::ZERO && d <= MAX_TIMEOUT).then_some(d)
}

/// Parses `:PORT`, `IPv4:PORT` or `[IPv6]:PORT`. Host names are not resolved: resolving is IO,
/// and an exporter bound to whatever a name happened to resolve to at boot surprises people.
pub fn listen_addr(s: &str) -> Option<ListenAddr> {
    if let Some(port) = s.strip_prefix(':') {
        return parse_port(port).map(ListenAddr::Any);
    }
    let (host, port) = s.rsplit_once(':')?;
    let port = parse_port(port)?;
    let ip: IpAddr = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => IpAddr::V6(v6.parse().ok()?),
        None => IpAddr::V4(host.parse().ok()?),
    };
    Some(ListenAddr::Addr(SocketAddr::new(ip, port)))
}

fn parse_port(s: &str) -> Option<u16> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn is_valid_path(p: &str) -> bool {
    p.len() > 1
        && p.starts_with('/')
        && p.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
}

pub fn help() -> String {
    let d = Config::default();
    format!(
        "\
interfaces_exporter {version}
Prometheus exporter for the link state of this host's network interfaces.

Usage: interfaces_exporter [FLAGS]

Flags:
  --web.listen-address=ADDR    Address to listen on, repeatable: :PORT (all addresses),
                               IPv4:PORT or [IPv6]:PORT [default: :{port}]
  --web.telemetry-path=PATH    Path under which to expose metrics [default: {path}]
  --web.systemd-socket         Serve on the sockets passed by systemd socket activation
                               instead of binding --web.listen-address
  --web.max-connections=N      Connections served at once; more are refused with 503
                               [default: {max}]
  --web.max-requests=N         Scrapes (and status pages) in flight at once; more get
                               503 [default: {requests}]
  --web.read-timeout=SECONDS   Deadline for a whole request head [default: {read}]
  --web.idle-timeout=SECONDS   How long a kept-alive connection may wait for its next
                               request [default: {idle}]
  --path.sysfs=DIR             sysfs mount point [default: /host/sys when
                               /host/sys/class/net exists, else /sys]
  --collector.statistics       Also export receive and transmit counters
                               [default: off]
  --collector.source=SOURCE    Where interface state is read: netlink, sysfs, or auto
                               (netlink when it shows the same interfaces as the
                               sysfs root, else sysfs) [default: auto]
  --collector.netlink.events-buffer=BYTES
                               Receive buffer asked for the link-event subscription
                               of the netlink source; the kernel caps it at
                               net.core.rmem_max [default: {events}]
  --interfaces.include=GLOB    Report only interfaces whose name matches, repeatable
                               [default: all]
  --interfaces.exclude=GLOB    Never report interfaces whose name matches, repeatable;
                               wins over --interfaces.include [default: none]
  --log.level=LEVEL            debug, info, warn or error [default: info]
  -h, --help                   Print this help and exit
  --version                    Print the version and exit
",
        version = env!("CARGO_PKG_VERSION"),
        port = DEFAULT_PORT,
        path = d.telemetry_path,
        max = d.max_connections,
        requests = d.max_requests,
        read = d.read_timeout.as_secs(),
        idle = d.idle_timeout.as_secs(),
        events = d.events_buffer,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Config, String> {
        match parse_args(args.iter().copied()) {
            Ok(Command::Run(c)) => Ok(c),
            Ok(other) => Err(format!("{other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    #[track_caller]
    fn check_err(args: &[&str], expected: &str) {
        match run(args) {
            Ok(c) => panic!("{args:?} parsed as {c:?}"),
            Err(e) => assert_eq!(e, expected),
        }
    }

    #[test]
    fn defaults_match_the_seed() -> Result<(), String> {
        let c = run(&[])?;
        assert_eq!(c.listen, vec![ListenAddr::Any(9425)]);
        assert_eq!(c.telemetry_path, "/metrics");
        assert_eq!(c.sysfs, None);
        assert_eq!(c.max_connections, 256);
        assert_eq!(c.max_requests, 40);
        assert_eq!(c.read_timeout, Duration::from_secs(10));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.log_level, Level::Info);
        assert!(!c.statistics && !c.systemd_socket);
        assert_eq!(c.events_buffer, 4 * 1024 * 1024);
        assert_eq!(
            run(&["--collector.netlink.events-buffer=1024"])?.events_buffer,
            1024
        );
        Ok(())
    }

    #[test]
    fn both_value_forms_work() -> Result<(), String> {
        let a = run(&[
            "--web.listen-address=127.0.0.1:0",
            "--web.telemetry-path",
            "/m",
        ])?;
        let b = run(&[
            "--web.listen-address",
            "127.0.0.1:0",
            "--web.telemetry-path=/m",
        ])?;
        assert_eq!(a, b);
        assert_eq!(a.telemetry_path, "/m");
        Ok(())
    }

    #[test]
    fn listen_addresses_repeat() -> Result<(), String> {
        let c = run(&[
            "--web.listen-address=127.0.0.1:0",
            "--web.listen-address=[::1]:9425",
            "--web.listen-address=:9100",
        ])?;
        assert_eq!(
            c.listen,
            vec![
                ListenAddr::Addr("127.0.0.1:0".parse().map_err(|_| "addr")?),
                ListenAddr::Addr("[::1]:9425".parse().map_err(|_| "addr")?),
                ListenAddr::Any(9100),
            ]
        );
        Ok(())
    }

    #[test]
    fn every_flag_is_taken() -> Result<(), String> {
        let c = run(&[
            "--path.sysfs=/tmp/sys",
            "--web.max-connections=7",
            "--web.max-requests=3",
            "--web.read-timeout=2.5",
            "--web.idle-timeout=500ms",
            "--log.level=debug",
            "--collector.statistics",
            "--interfaces.include=eth*",
            "--interfaces.exclude",
            "veth*",
            "--web.systemd-socket",
        ])?;
        assert_eq!(c.sysfs, Some(PathBuf::from("/tmp/sys")));
        assert_eq!(c.max_connections, 7);
        assert_eq!(c.max_requests, 3);
        assert_eq!(c.read_timeout, Duration::from_millis(2500));
        assert_eq!(c.idle_timeout, Duration::from_millis(500));
        assert_eq!(c.log_level, Level::Debug);
        assert!(c.statistics && c.systemd_socket);
        assert_eq!(c.include.len(), 1);
        assert!(c.exclude[0].matches(b"veth0"));
        Ok(())
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(parse_args(["-h"]), Ok(Command::Help)));
        assert!(matches!(parse_args(["--help"]), Ok(Command::Help)));
        assert!(matches!(parse_args(["--version"]), Ok(Command::Version)));
        let help = help();
        for flag in [
            "--web.listen-address",
            "--web.telemetry-path",
            "--web.systemd-socket",
            "--web.max-connections",
            "--web.max-requests",
            "--web.read-timeout",
            "--web.idle-timeout",
            "--path.sysfs",
            "--collector.statistics",
            "--interfaces.include",
            "--interfaces.exclude",
            "--log.level",
            "--collector.netlink.events-buffer",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
        assert!(help.contains("[default: :9425]"));
    }

    #[test]
    fn bad_input_is_named() {
        check_err(&["--bogus"], "invalid option '--bogus'");
        check_err(&["extra"], "unexpected argument \"extra\"");
        check_err(
            &["--web.listen-address"],
            "missing argument for option '--web.listen-address'",
        );
        check_err(
            &["--web.listen-address=localhost:9425"],
            "invalid value \"localhost:9425\" for --web.listen-address: expected [IP]:PORT, e.g. :9425, 127.0.0.1:9425 or [::1]:9425",
        );
        check_err(
            &["--web.max-connections=0"],
            "invalid value \"0\" for --web.max-connections: expected a whole number from 1 to 65536",
        );
        for bad in ["0", "65537", "-1", "forty", ""] {
            check_err(
                &[&format!("--web.max-requests={bad}")],
                &format!(
                    "invalid value {bad:?} for --web.max-requests: expected a whole number from 1 to 65536"
                ),
            );
        }
        check_err(
            &["--log.level=trace"],
            "invalid value \"trace\" for --log.level: expected debug, info, warn or error",
        );
        check_err(
            &["--interfaces.exclude=veth[0"],
            "invalid pattern \"veth[0\" for --interfaces.exclude: unclosed '['",
        );
        check_err(
            &["--path.sysfs="],
            "invalid value \"\" for --path.sysfs: expected the directory where sysfs is mounted, e.g. /sys",
        );
        check_err(
            &["--path.sysfs", ""],
            "invalid value \"\" for --path.sysfs: expected the directory where sysfs is mounted, e.g. /sys",
        );
        for bad in ["1023", "1073741825", "-1", "4M", ""] {
            check_err(
                &[&format!("--collector.netlink.events-buffer={bad}")],
                &format!(
                    "invalid value {bad:?} for --collector.netlink.events-buffer: expected bytes from 1024 to 1073741824"
                ),
            );
        }
        check_err(
            &["--collector.statistics=yes"],
            "unexpected argument for option '--collector.statistics': \"yes\"",
        );
    }

    #[test]
    fn listen_address_forms() {
        for bad in [
            "",
            ":",
            "9425",
            ":99999",
            ":-1",
            ":+1",
            "127.0.0.1",
            "[::1]",
            "::1:9425",
            "1.2.3.4.5:1",
            "[1.2.3.4]:1",
            "host:80",
            ":80 ",
        ] {
            assert_eq!(listen_addr(bad), None, "{bad:?}");
        }
        assert_eq!(listen_addr(":0"), Some(ListenAddr::Any(0)));
        assert!(matches!(
            listen_addr("0.0.0.0:9425"),
            Some(ListenAddr::Addr(_))
        ));
        assert!(matches!(
            listen_addr("[::]:9425"),
            Some(ListenAddr::Addr(_))
        ));
    }

    #[test]
    fn durations() {
        let ok = [
            ("10", 10_000),
            ("10s", 10_000),
            ("0.5", 500),
            ("500ms", 500),
            ("1m", 60_000),
            ("86400", 86_400_000),
            ("0.001", 1),
            ("1.5m", 90_000),
            ("2.25s", 2250),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration(s), Some(Duration::from_millis(ms)), "{s}");
        }
        for bad in [
            "", "0", "0s", "-1", "1h", "inf", "nan", "1e3", "86401", "s", "1.2.3", " 1",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn telemetry_paths() {
        for bad in ["", "/", "metrics", "/a b", "/m?x", "/m#x", "/\u{e9}"] {
            assert!(!is_valid_path(bad), "{bad:?}");
        }
        assert!(is_valid_path("/metrics"));
        assert!(is_valid_path("/a/b"));
    }
}
