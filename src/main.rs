//! interfaces_exporter: wiring only. Parse flags, pick the sysfs root, bind, serve, and exit
//! cleanly on SIGTERM or SIGINT; SIGHUP, SIGUSR1, SIGUSR2 and SIGALRM are logged and ignored.

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
mod page;
#[cfg(test)]
mod readme;
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
        server.seed();
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
