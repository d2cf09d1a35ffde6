//! interfaces_exporter: wiring only. Parse flags, pick the sysfs root, bind, serve, and exit
//! cleanly on SIGTERM or SIGINT.

#![deny(unsafe_code)]

mod cli;
#[cfg(test)]
mod fuzz;
mod glob;
mod http;
mod log;
mod metrics;
mod model;
mod page;
mod server;
#[allow(unsafe_code)]
mod sys;
mod sysfs;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use cli::{Command, Config, ListenAddr};

/// Where the seed's container layout (`-v /sys:/host/sys:ro`) puts the host's sysfs.
const CONTAINER_SYSFS: &str = "/host/sys";

fn main() -> ExitCode {
    // Before any thread exists, so that every thread inherits the mask.
    sys::block_termination_signals();
    let config = match cli::parse_env() {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", cli::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("interfaces_exporter {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("interfaces_exporter: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    log::set_level(config.log_level);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            log::error("cannot start", &[("err", &msg)]);
            ExitCode::from(1)
        }
    }
}

fn run(config: Config) -> Result<(), String> {
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
        options: model::Options {
            statistics: config.statistics,
            include: config.include,
            exclude: config.exclude,
        },
    }));
    server
        .spawn(listeners)
        .map_err(|e| format!("cannot start the server: {e}"))?;

    if let Ok(socket) = std::env::var("NOTIFY_SOCKET") {
        if let Err(e) = sys::notify_ready(&socket) {
            log::warn("cannot notify systemd", &[("socket", &socket), ("err", &e)]);
        }
    }

    let sig = sys::wait_for_termination();
    let name = if sig == sys::SIGTERM {
        "SIGTERM"
    } else {
        "SIGINT"
    };
    log::info("shutting down", &[("signal", &name)]);
    Ok(())
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
        ListenAddr::Any(port) => TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
            .or_else(|e| match e.kind() {
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
