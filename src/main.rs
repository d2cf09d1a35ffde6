//! interfaces_exporter: wiring only. Parse flags, pick the sysfs root, bind, serve, and exit
//! cleanly on SIGTERM or SIGINT; SIGHUP, SIGUSR1, SIGUSR2 and SIGALRM are logged and ignored.
//!
//! This page is the map of the code, for whoever changes it; the README is for operators.
//!
//! # Architecture
//!
//! A sans-IO core with IO at the edges. Parsing HTTP, reading sysfs values into plain structs
//! and rendering exposition text are functions over bytes; only `server` owns TCP sockets, only
//! `netlink` and the link-event watcher in `since` (through `sys`) netlink sockets, and only
//! `sysfs` touches the file system, under the root it is given. The layers read top down:
//! `main` -> `server` -> a source (`source` over `sysfs` and `netlink`, plus `since`) and the
//! renderers (`metrics`, `page`) -> the plain `model` at the bottom, which imports nothing of
//! ours but `glob`. No arrow runs back up: a source never knows a renderer, a renderer never
//! knows a source.
//!
//! | file | owns | invariant |
//! |---|---|---|
//! | `src/main.rs` | wiring: flags, sysfs root, bind, serve, wait for SIGTERM/SIGINT (other signals logged and ignored) | no logic of its own |
//! | `src/cli.rs` | lexopt loop into `Config`; `--help` | opens nothing, binds nothing, reads no environment |
//! | `src/server.rs` | listeners, connection threads, deadlines, the connection limit, the pure `route`, every error response | never panics on input; at most `--web.max-connections` connection threads; an accept error never stops the accept loop |
//! | `src/scrape.rs` | the shared scan: flights, generations and their bodies, the `--web.max-requests` tickets, fallible allocations | at most four generations alive; never a 200 without a whole scan |
//! | `src/http.rs` | bounded request-head parser, response writer | never panics on any input; never looks past its limits |
//! | `src/format.rs` | the two exposition formats and the choice between them from `Accept` | never panics on any input; what it cannot read means the text format |
//! | `src/source.rs` | the `Source` enum over sysfs and netlink; filtering and sorting; the start-up choice of `auto` | a scan handed out is sorted and holds only wanted interfaces |
//! | `src/since.rs` | the last-change times: the tracker shared by the scans, the link-event watcher thread and its resync | holds entries only for interfaces that exist; never stamps a change it did not see |
//! | `src/netlink.rs` | the `RTM_GETLINK` request and the parser of its replies and of link notifications (pure functions over bytes), the netlink reader and the thread that asks ethtool for it | never panics on any input; never hands out a dump that did not end in `NLMSG_DONE`; speed and duplex reach a scan only through `Scan::settle` |
//! | `src/netlink_abi.rs` | the rtnetlink and ethtool numbers the netlink source, `sys` and the benchmark's floor share | std only and constants only, so a program outside the crate can include it |
//! | `src/sysfs.rs` | `class/net` into `Vec<Interface>`, the value parsers | never reads outside its root; never panics on file content; never blocks on a non-sysfs file |
//! | `src/sysfs_files.rs` | the attribute files a default sysfs scan reads, in order; the benchmark's floor includes it | std only, so a program outside the crate can include it |
//! | `src/model.rs` | `Interface`, `OperState`, the `Scan` (and the work a source leaves running to complete it), the filter `Options`; the statistics counters and link type names both sources share | imports nothing of ours but `glob`; knows no source, no renderer, no IO |
//! | `src/metrics.rs` | the family table; interfaces into text format 0.0.4 and OpenMetrics 1.0.0; the body `Writer` | output is always valid exposition: escaped, UTF-8, integers printed from integers; a scan is settled before the first family that reads speed or duplex |
//! | `src/page.rs` | the HTML status page at `/`, its columns from the family table | every sysfs value is HTML-escaped |
//! | `src/glob.rs` | `--interfaces.include/exclude` patterns | matching is linear, never exponential |
//! | `src/log.rs` | logfmt lines on stderr through a bounded queue and one logger thread; the rate limit | never blocks a caller on stderr; one write per line, so threads never interleave |
//! | `src/sys.rs` | the only `unsafe`: signal mask and `sigwait`, sockets from systemd, the dual-stack `:PORT` socket, `openat`, `openat2`, `readlinkat`, `getdents64`, the open-file limit, `geteuid`, the netlink socket, the link-event subscription and the ethtool ioctl; the `READY=1` message | every `unsafe` block has a `// SAFETY:` comment; the rest of the crate has `#![deny(unsafe_code)]` |
//! | `src/readme.rs`, `src/fuzz.rs` | tests only: the README's tables against `--help` and the family table; the fuzzers' random numbers | |
//! | `tests/it/` | the one integration-test crate: runs the real binary | tests bind port 0 (or a fixed port inside a namespace of their own) and poll with deadlines |
//! | `scripts/` | static build, test runner, benchmark and its floor, deployment files (systemd, Kubernetes, Prometheus rules, Grafana) | |
//!
//! Limits are named constants with the reason for their number next to them: `MAX_REQUEST_LINE`
//! (2 KiB), `MAX_HEAD` (8 KiB), `MAX_HEADERS` (100) in `http`; `WRITE_DEADLINE` (10 s),
//! `LINGER` (500 ms), `CONNECTION_STACK` (128 KiB), `READ_CHUNK` (4 KiB), `SEND_BUFFER`
//! (64 KiB) in `server`; `MAX_GENERATIONS` (4), `GENERATION_WAIT` (1 s), `ALLOC_HEADROOM`
//! (1 MiB) in `scrape`; `ATTR_BUF` (one page) in `sysfs`; `DEFAULT_EVENTS_BUFFER` (4 MiB), `EVENT_BUF`
//! (16 KiB), `MAX_DRAIN` (10 000), `RESYNC_ATTEMPTS` (3) in `since`; `MAX_QUEUED_LINES` (128),
//! `LINES_PER_SECOND` (100), `FLUSH_DEADLINE` (500 ms) in `log`; the read and idle deadlines
//! and the connection limit are flags.
//!
//! # How a scrape flows
//!
//! The accept thread takes a connection and, if fewer than `--web.max-connections` are open,
//! gives it a thread (else, or when the thread cannot be created, writes 503 and closes). The
//! thread reads into a per-connection buffer until `http::head_end` finds the blank line,
//! refusing early via `http::check_partial` (too long, bare LF) and giving up at the head
//! deadline (408). It parses the head, routes it, and for the metrics path (or `/`) takes one
//! of `--web.max-requests` places, then joins the scan running or starts one. With the sysfs
//! source a scan opens the root, lists `class/net` beneath it, opens each interface directory
//! once with `O_PATH` beneath the root and reads each attribute of [`sysfs_files::Attr`]
//! beneath that with one `openat2`, one `read` and one `close` (a resource failure on the way
//! answers 503); with the netlink source it is one `RTM_GETLINK` dump (a long one received by
//! the reader's helper thread while the scan's thread parses it), and an ethtool call per
//! interface that is up, which the helper makes while the scan goes on (the scan is
//! *settled*, `model::Scan::settle`, just before the first family that needs them). The
//! finished scan is a generation shared by every request that joined; each renders (or finds
//! rendered) the body of its format ([`format::negotiate`] picks it), walking
//! [`metrics::FAMILIES`] in order into the last body's buffer (a family that waits for the
//! settled scan is left a hole there, filled once it is), and writes the head and the shared
//! body with one `writev`.
//!
//! # How to add a metric
//!
//! 1. If it needs a value the model does not have, add a field to [`model::Interface`] and
//!    fill it in both sources: in `sysfs`, add the file to [`sysfs_files::Attr`] (variant,
//!    `DEFAULT` and `file`) and store it in `sysfs::store`, whose `match` will not compile
//!    until you do; in `netlink`, parse its attribute in `netlink::parse_link`. A counter of
//!    `struct rtnl_link_stats64` is one more row of [`model::STATISTICS`] instead, and nothing
//!    else in this list.
//! 2. Add one entry to [`metrics::FAMILIES`] where it should be written (never before
//!    `interface_status`, the seed's first lines): name, type, unit, the getter from an
//!    `Interface`, the help text, and, to show it on the status page, a `column`; if its getter
//!    reads speed or duplex (which the netlink source may still be asking ethtool for), set
//!    `link_settings`. Both formats and the page follow from that entry.
//! 3. Add its row to the README's metrics table; `readme::the_metrics_tables_are_the_family_table`
//!    fails until the name, type and unit there match the entry.
//! 4. Refresh the expectations that must see it: the golden files (`UPDATE_GOLDEN=1 cargo test
//!    --test it`, then read the diff) and any test that lists families.
//!
//! # How to add a flag
//!
//! Add the field to `cli::Config` with its default in `Config::default`, parse and check its
//! value in `cli::parse_args` (a bad value is a `cli::Error` naming the flag and the value,
//! exit 2), and describe it in `cli::help` with `[default: ...]`. Then add its row to the
//! README's flags table: `readme::the_flags_table_is_the_help` compares every flag and default.
//! Pass the value on in `run` below; `cli` itself opens and reads nothing.
//!
//! # How to add a source
//!
//! A source fills the same [`model::Scan`]: add a reader module (IO at its edge, its parsing
//! pure functions over bytes, one error enum), a variant to `source::Source` and
//! `source::Kind`, its readiness check in `source::check`, and a value of
//! `--collector.source` in `source::Choice` (and so a flag value, as above). It leaves out
//! what it cannot read (no sample) and fails the scan with `model::ScanError` only when it
//! could not see every interface. The renderers need no change: they know the model, not
//! the sources.

#![deny(unsafe_code)]

mod cli;
mod format;
#[cfg(test)]
mod fuzz;
mod glob;
mod http;
mod log;
mod metrics;
mod model;
mod netlink;
mod netlink_abi;
mod page;
#[cfg(test)]
mod readme;
mod scrape;
mod server;
mod since;
mod source;
#[allow(unsafe_code)]
mod sys;
mod sysfs;
mod sysfs_files;

use std::io::{self, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use cli::{Command, Config, ListenAddr};

/// Where the seed's container layout (`-v /sys:/host/sys:ro`) puts the host's sysfs.
const CONTAINER_SYSFS: &str = "/host/sys";

fn main() -> ExitCode {
    // Before any thread exists, so that every thread inherits the mask.
    let masked = sys::block_signals();
    // print! and eprintln! panic when the stream is a broken pipe (`--help | true`, since Rust
    // ignores SIGPIPE); a CLI's output that nobody reads is no error, so it is written with
    // write_all and failures are ignored.
    let config = match cli::parse_env() {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            let _ = io::stdout().lock().write_all(cli::help().as_bytes());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            let version = concat!("interfaces_exporter ", env!("CARGO_PKG_VERSION"), "\n");
            let _ = io::stdout().lock().write_all(version.as_bytes());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let line = format!("interfaces_exporter: {e} (see --help)\n");
            let _ = io::stderr().lock().write_all(line.as_bytes());
            return ExitCode::from(2);
        }
    };
    log::set_level(config.log_level);
    if let Err(e) = log::start() {
        log::warn(
            "cannot start the logger thread, logging inline",
            &[("err", &e)],
        );
    }
    // Before anything opens a descriptor: a scrape of many interfaces with many clients needs
    // more than the usual soft limit of 1024. Refused (a system-call filter, or no hard limit
    // above the soft one to use), the exporter still serves: a scrape that runs out of
    // descriptors answers 503, never a partial 200.
    if let Err(e) = sys::raise_nofile_limit() {
        log::warn("cannot raise the open-file limit", &[("err", &e)]);
    }
    let code = match masked
        .map_err(|e| format!("cannot block signals: {e}"))
        .and_then(|()| run(config))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            log::error("cannot start", &[("err", &msg)]);
            ExitCode::from(1)
        }
    };
    // The last lines (why it could not start, or that it shut down) must reach stderr, but a
    // blocked stderr must not keep the process from exiting.
    log::flush();
    code
}

fn run(config: Config) -> Result<(), String> {
    // Interfaces that do not change from here on carry this time as their last change.
    let tracker = Arc::new(since::Tracker::new(since::now_ms()));
    // Made before the source is chosen (which takes a while), so that the changes of that
    // while are queued; dropped again if the choice is sysfs.
    let subscription =
        (config.source != source::Choice::Sysfs).then(|| since::subscribe(config.events_buffer));
    let root = config.sysfs.clone().unwrap_or_else(default_sysfs);
    sysfs::check_root(&root).map_err(|e| e.to_string())?;
    let listeners = if config.systemd_socket {
        let pid = std::env::var("LISTEN_PID").ok();
        let fds = std::env::var("LISTEN_FDS").ok();
        sys::listen_fds(pid.as_deref(), fds.as_deref()).map_err(|e| e.to_string())?
    } else {
        config
            .listen
            .iter()
            .map(|&a| bind(a))
            .collect::<Result<Vec<_>, _>>()?
    };

    log::info(
        "starting interfaces_exporter",
        &[
            ("version", &env!("CARGO_PKG_VERSION")),
            ("sysfs", &root.display()),
        ],
    );
    let chosen = source::choose(config.source, &root).map_err(|e| e.to_string())?;
    let fields: [(&str, &dyn std::fmt::Display); 2] =
        [("source", &chosen.kind.name()), ("reason", &chosen.reason)];
    if chosen.warn {
        log::warn("interface source chosen", &fields);
    } else {
        log::info("interface source chosen", &fields);
    }
    if let (source::Kind::Netlink, Some(subscription)) = (chosen.kind, subscription) {
        let watching = subscription.and_then(|s| {
            let granted = s.granted;
            since::watch(&tracker, s).map(|()| granted)
        });
        match watching {
            Ok(granted) => log::info("watching link events", &[("receive_buffer", &granted)]),
            Err(e) => log::warn(
                "cannot watch link events, comparing scans to tell when interfaces changed",
                &[("err", &e)],
            ),
        }
    }
    for l in &listeners {
        if let Ok(addr) = l.local_addr() {
            log::info("listening", &[("address", &addr)]);
        }
    }
    if sys::is_root() {
        log::warn(
            "running as root, which is not needed: sysfs is world-readable; run as an unprivileged user",
            &[],
        );
    }

    let server = Arc::new(server::Server::new(server::Settings {
        telemetry_path: config.telemetry_path,
        max_connections: config.max_connections,
        max_requests: config.max_requests,
        read_timeout: config.read_timeout,
        idle_timeout: config.idle_timeout,
        sysfs: root,
        source: chosen.kind,
        options: model::Options {
            statistics: config.statistics,
            include: config.include,
            exclude: config.exclude,
        },
        tracker: Arc::clone(&tracker),
    }));
    server
        .spawn(listeners)
        .map_err(|e| format!("cannot start the server: {e}"))?;
    if tracker.compares_scans() {
        server.prime();
    }

    if let Ok(socket) = std::env::var("NOTIFY_SOCKET") {
        if let Err(e) = sys::notify_ready(&socket) {
            log::warn("cannot notify systemd", &[("socket", &socket), ("err", &e)]);
        }
    }

    loop {
        let sig = sys::wait_for_signal().map_err(|e| format!("cannot wait for signals: {e}"))?;
        if sig.terminates() {
            log::info("shutting down", &[("signal", &sig.name())]);
            return Ok(());
        }
        log::warn("signal received, ignored", &[("signal", &sig.name())]);
    }
}

/// `/host/sys` when the seed's container layout is there, else `/sys`.
fn default_sysfs() -> PathBuf {
    let container = Path::new(CONTAINER_SYSFS);
    if container.join("class/net").is_dir() {
        container.to_path_buf()
    } else {
        PathBuf::from("/sys")
    }
}

fn bind(addr: ListenAddr) -> Result<TcpListener, String> {
    let result = match addr {
        ListenAddr::Addr(a) => TcpListener::bind(a),
        // `[::]` accepts IPv4 too (dual-stack) unless the host has no IPv6 at all.
        // IPV6_V6ONLY is cleared explicitly: `net.ipv6.bindv6only=1` would make it IPv6 only.
        ListenAddr::Any(port) => sys::listen_dual_stack(port).or_else(|e| match e.kind() {
            io::ErrorKind::AddrInUse | io::ErrorKind::PermissionDenied => Err(e),
            _ => TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))),
        }),
    };
    result.map_err(|e| {
        format!(
            "cannot listen on {addr}: {}",
            lowercase_first(&e.to_string())
        )
    })
}

fn lowercase_first(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    if let Some(c) = chars.next() {
        out.extend(c.to_lowercase());
    }
    out.extend(chars);
    out
}
