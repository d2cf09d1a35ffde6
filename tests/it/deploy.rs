//! The three ways users run the exporter, proven without a container engine: the static binary
//! alone in an empty directory as PID 1 (what `FROM scratch` gives it), the aarch64 build under
//! qemu, systemd socket activation and readiness, and the deployment files.
//!
//! The static binaries are built by scripts/build-static.sh, which scripts/test.sh runs first.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::util::*;

/// Reads an ELF64 little-endian file's program headers and says whether one is PT_INTERP.
fn has_interpreter(elf: &[u8]) -> Result<bool> {
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8).map(|b| {
            let mut a = [0; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    };
    if elf.get(..5) != Some(b"\x7fELF\x02") {
        return Err("not an ELF64 file".into());
    }
    let phoff = u64_at(0x20).ok_or("short")? as usize;
    let phentsize = u16_at(0x36).ok_or("short")? as usize;
    let phnum = u16_at(0x38).ok_or("short")? as usize;
    for i in 0..phnum {
        if u32_at(phoff + i * phentsize).ok_or("short")? == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}

#[test]
fn static_binaries_are_static_and_small() -> Result {
    for target in ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"] {
        let path = static_binary(target)?;
        let elf = std::fs::read(&path)?;
        assert!(
            !has_interpreter(&elf)?,
            "{target}: has a program interpreter"
        );
        let kib = elf.len() as f64 / 1024.0;
        eprintln!("{target}: {} bytes ({kib:.1} KiB)", elf.len());
        // The team's budget with the netlink source and the work beside it.
        assert!(
            elf.len() <= 640 * 1024,
            "{target}: {kib:.1} KiB is over 640 KiB"
        );
    }
    // The check itself can fail: a dynamically linked program has an interpreter.
    assert!(has_interpreter(&std::fs::read("/bin/sh")?)?);
    Ok(())
}

/// The static binary alone in an empty directory with the host's /sys bound read-only at
/// `<dir>/host/sys`: the layout `docker run -v /sys:/host/sys:ro` gives a FROM scratch image.
struct Scratch {
    dir: TempDir,
    mounted: bool,
}

impl Scratch {
    fn new() -> Result<Scratch> {
        let dir = TempDir::new()?;
        let mut s = Scratch {
            dir,
            mounted: false,
        };
        let root = s.root();
        std::fs::create_dir_all(root.join("host/sys"))?;
        std::fs::copy(
            static_binary("x86_64-unknown-linux-musl")?,
            root.join("interfaces_exporter"),
        )?;
        run(Command::new("chmod")
            .args(["755"])
            .arg(&s.dir.0)
            .arg(&root)
            .arg(root.join("interfaces_exporter")))?;
        run(Command::new("mount")
            .args(["--bind", "/sys"])
            .arg(root.join("host/sys")))?;
        s.mounted = true;
        run(Command::new("mount")
            .args(["-o", "remount,bind,ro"])
            .arg(root.join("host/sys")))?;
        Ok(s)
    }

    fn root(&self) -> PathBuf {
        self.dir.0.join("root")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.mounted {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.root().join("host/sys"))
                .status();
        }
    }
}

pub(crate) fn status_names(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("interface_status{interface=\""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn from_scratch_as_pid_1_reports_the_host_and_stops_on_sigterm() -> Result {
    let scratch = Scratch::new()?;
    let ns = Netns::new()?;
    // A veth pair that exists only in the namespace: the exporter must not report it, since it
    // reads the host's sysfs through /host/sys.
    ns.ip("link add nsonly-a type veth peer name nsonly-b")?;
    // No flags, as `podman run -v /sys:/host/sys:ro IMAGE` starts it. It listens on the
    // default :9425, which cannot clash: the namespace is the test's own.
    let mut cmd = ns.cmd("unshare");
    cmd.args(["--pid", "--fork", "chroot", "--userspec=65534:65534"])
        .arg(scratch.root())
        .arg("/interfaces_exporter");
    let (mut child, guard, body) = start_on_default_port(&ns, &mut cmd, "the scratch exporter")?;
    assert_eq!(status_names(&body), host_interfaces()?, "{body}");
    assert!(!body.contains("nsonly"));
    // The default :9425 is dual-stack: IPv6 answers too.
    let v6 = run(ns.cmd("curl").args(["-sfg", "http://[::1]:9425/metrics"]))?;
    assert_eq!(status_names(&v6), status_names(&body));
    eprintln!(
        "scratch scrape:\n{}",
        body.lines().take(8).collect::<Vec<_>>().join("\n")
    );

    // The exporter is PID 1 of its PID namespace: unshare's only child.
    let exporter = wait_for("the exporter process", DEADLINE, || {
        let kids = children(child.id());
        kids.first().copied()
    })?;
    let status = std::fs::read_to_string(format!("/proc/{exporter}/status"))?;
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("NSpid:") && l.trim_end().ends_with("\t1")),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("Uid:") && l.contains("65534")),
        "{status}"
    );

    let (code, took) = stop("-TERM", exporter, &mut child)?;
    eprintln!("PID 1 exited {took:?} after SIGTERM with {code}");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    assert!(code.success(), "{code}");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().ok_or("stderr")?, &mut err)?;
    assert!(err.contains("sysfs=/host/sys"), "{err}");
    assert!(err.contains("signal=SIGTERM"), "{err}");
    assert!(!err.contains("running as root"), "{err}");
    drop(guard);
    Ok(())
}

/// Polls `http://127.0.0.1:9425/metrics` inside the namespace until a scrape answers 200.
/// Starts `cmd`, an exporter in `ns` on the default port however launched, and scrapes it once
/// it answers; the guard kills it and whatever it started.
fn start_on_default_port(
    ns: &Netns,
    cmd: &mut Command,
    what: &str,
) -> Result<(std::process::Child, KillTree, String)> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let guard = KillTree(child.id());
    let body = scrape_default_port(ns, &format!("a scrape of {what}"))?;
    Ok((child, guard, body))
}

/// The fixed port cannot clash: the namespace is the test's own.
pub(crate) fn scrape_default_port(ns: &Netns, what: &str) -> Result<String> {
    wait_for(what, DEADLINE, || {
        let out = ns
            .cmd("curl")
            .args(["-sf", "http://127.0.0.1:9425/metrics"])
            .output()
            .ok()?;
        (out.status.success() && !out.stdout.is_empty())
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
}

#[test]
fn sigint_and_sigterm_exit_0_promptly() -> Result {
    let f = Fixture::new()?;
    f.ethernet("eth0", "up")?;
    for signal in ["-INT", "-TERM"] {
        let mut exp = Exporter::start(&[&f.flag()])?;
        let (status, took) = stop(signal, exp.pid(), &mut exp.child)?;
        assert!(status.success(), "{signal}: {status}");
        assert!(took < Duration::from_secs(1), "{signal}: {took:?}");
    }
    Ok(())
}

#[test]
fn aarch64_build_serves_the_seed_contract_under_qemu() -> Result {
    let bin = static_binary("aarch64-unknown-linux-musl")?;
    let f = seed_host()?;
    let exp = Exporter::spawn(
        Command::new("qemu-aarch64-static")
            .arg(&bin)
            .args(["--web.listen-address=127.0.0.1:0", &f.flag()]),
    )
    .map_err(|e| format!("qemu-aarch64-static (Debian package qemu-user-static): {e}"))?;
    let body = exp.get("/metrics")?.text();
    let golden = std::fs::read_to_string(repo().join("tests/it/golden/seed.txt"))?;
    assert!(body.starts_with(&golden), "{body}");
    Ok(())
}

/// A datagram socket standing in for systemd's notification socket.
fn notify_socket(abstract_name: Option<&str>, dir: &Path) -> Result<(UnixDatagram, String)> {
    match abstract_name {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            Ok((UnixDatagram::bind_addr(&addr)?, format!("@{name}")))
        }
        None => {
            let path = dir.join("notify.sock");
            Ok((UnixDatagram::bind(&path)?, path.display().to_string()))
        }
    }
}

fn expect_ready(sock: &UnixDatagram) -> Result {
    sock.set_read_timeout(Some(DEADLINE))?;
    let mut buf = [0u8; 256];
    let n = sock
        .recv(&mut buf)
        .map_err(|e| format!("no READY=1 within the deadline: {e}"))?;
    assert_eq!(&buf[..n], b"READY=1\n");
    Ok(())
}

#[test]
fn readiness_reaches_path_and_abstract_notify_sockets() -> Result {
    let f = Fixture::new()?;
    f.ethernet("eth0", "up")?;
    let name = unique("ie-notify-");
    for abstract_name in [None, Some(name.as_str())] {
        let (sock, env) = notify_socket(abstract_name, &f.dir.0)?;
        let exp = Exporter::spawn(
            Command::new(BIN)
                .args(["--web.listen-address=127.0.0.1:0", &f.flag()])
                .env("NOTIFY_SOCKET", &env),
        )?;
        expect_ready(&sock)?;
        assert_eq!(exp.get("/metrics")?.status, 200);
    }
    Ok(())
}

#[test]
fn socket_activation_serves_and_notifies() -> Result {
    let f = Fixture::new()?;
    f.ethernet("eth0", "up")?;
    let ns = Netns::new()?;
    let (sock, env) = notify_socket(None, &f.dir.0)?;
    // The namespace is the test's own, so its fixed port cannot clash; systemd-socket-activate
    // does not take port 0.
    let mut activate = ns.cmd("systemd-socket-activate");
    activate
        .args([
            "-l",
            "127.0.0.1:9425",
            "-E",
            &format!("NOTIFY_SOCKET={env}"),
        ])
        .arg(BIN)
        .args(["--web.systemd-socket", &f.flag()]);
    let (_child, _guard, body) = start_on_default_port(&ns, &mut activate, "socket activation")?;
    assert!(
        body.contains("interface_status{interface=\"eth0\"} 1"),
        "{body}"
    );
    expect_ready(&sock)?;
    Ok(())
}

#[test]
fn socket_activation_without_sockets_is_a_clear_error() -> Result {
    let f = Fixture::new()?;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[], "no sockets were passed"),
        (
            &[("LISTEN_PID", "1"), ("LISTEN_FDS", "1")],
            "no sockets were passed",
        ),
        (
            &[("LISTEN_PID", "self"), ("LISTEN_FDS", "x")],
            "invalid LISTEN_FDS",
        ),
        (&[("LISTEN_PID", "self"), ("LISTEN_FDS", "1")], "fd 3"),
    ];
    for (env, expected) in cases {
        // LISTEN_PID must name the exporter itself, so "self" is filled in by a shell that
        // execs it, keeping the pid.
        let mut script = String::new();
        for (k, v) in env.iter() {
            let v = if *v == "self" {
                "$$".to_owned()
            } else {
                v.to_string()
            };
            script.push_str(&format!("export {k}={v}; "));
        }
        script.push_str(&format!(
            "exec {BIN} --web.systemd-socket {} 3<&-",
            f.flag()
        ));
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDS")
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{env:?}: {err}");
        assert!(err.contains(expected), "{env:?}: {err}");
    }
    Ok(())
}

#[test]
fn systemd_units_verify() -> Result {
    let units = repo().join("scripts/systemd");
    let dir = TempDir::new()?;
    // systemd-analyze checks that ExecStart's program exists; point a copy of the units at the
    // binary this suite built.
    for unit in ["interfaces_exporter.service", "interfaces_exporter.socket"] {
        let text = std::fs::read_to_string(units.join(unit))?;
        std::fs::write(
            dir.0.join(unit),
            text.replace("/usr/local/bin/interfaces_exporter", BIN),
        )?;
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.0.join("interfaces_exporter.service"))
        .arg(dir.0.join("interfaces_exporter.socket"))
        .env("SYSTEMD_LOG_LEVEL", "warning")
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("interfaces_exporter"))
        .collect();
    assert!(
        out.status.success() && ours.is_empty(),
        "systemd-analyze verify:\n{text}"
    );
    let service = std::fs::read_to_string(units.join("interfaces_exporter.service"))?;
    for setting in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=",
        "CapabilityBoundingSet=\n",
        "MemoryMax=",
        "SystemCallFilter=@system-service",
        "Type=notify",
        "--web.systemd-socket",
    ] {
        assert!(service.contains(setting), "service lacks {setting:?}");
    }
    // An inherited socket cannot be made dual-stack by the exporter: the unit must say so.
    let socket = std::fs::read_to_string(units.join("interfaces_exporter.socket"))?;
    assert!(socket.contains("\nBindIPv6Only=both\n"), "{socket}");
    // Without AF_NETLINK the exporter falls back to the slower sysfs source.
    assert!(
        service
            .lines()
            .any(|l| l.starts_with("RestrictAddressFamilies=") && l.contains("AF_NETLINK")),
        "the service refuses AF_NETLINK"
    );
    Ok(())
}

#[test]
fn kubernetes_manifests_have_what_a_cluster_needs() -> Result {
    let out = run(Command::new("/usr/bin/python3")
        .arg(repo().join("scripts/check-manifests.py"))
        .current_dir(repo()))?;
    assert!(out.starts_with("ok:"), "{out}");
    // The paths the DaemonSet's probes ask for are ones the exporter answers 200, in the
    // layout the DaemonSet gives it (a sysfs at the root it is pointed to).
    let daemonset = std::fs::read_to_string(repo().join("scripts/kubernetes/daemonset.yaml"))?;
    let mut probes = Vec::new();
    let mut lines = daemonset.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line.ends_with("Probe:") {
            let path = lines
                .find_map(|l| l.strip_prefix("path:"))
                .ok_or_else(|| format!("{line} has no path"))?;
            probes.push((line.to_owned(), path.trim().to_owned()));
        }
    }
    let names: Vec<&str> = probes.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["livenessProbe:", "readinessProbe:"]);
    let f = Fixture::new()?;
    f.iface("eth0", &[("operstate", "up")])?;
    let exp = Exporter::start(&[&f.flag()])?;
    for (probe, path) in &probes {
        let r = exp.get(path)?;
        assert_eq!(r.status, 200, "{probe} {path}: {}", r.text());
        // A probe's answer is a line, not a scrape.
        assert!(r.body.len() < 16, "{probe} {path}: {}", r.text());
    }
    Ok(())
}

#[test]
fn install_script_installs_and_uninstalls_into_a_root() -> Result {
    let dir = TempDir::new()?;
    let bin = static_binary("x86_64-unknown-linux-musl")?;
    let script = repo().join("scripts/install.sh");
    run(Command::new(&script).arg("--root").arg(&dir.0).arg(&bin))?;
    let installed = dir.0.join("usr/local/bin/interfaces_exporter");
    assert_eq!(std::fs::read(&installed)?, std::fs::read(&bin)?);
    for unit in ["interfaces_exporter.service", "interfaces_exporter.socket"] {
        assert!(
            dir.0.join("etc/systemd/system").join(unit).is_file(),
            "{unit} not installed"
        );
    }
    run(Command::new(&script)
        .arg("--root")
        .arg(&dir.0)
        .arg("--uninstall"))?;
    assert!(!installed.exists());
    assert!(!dir
        .0
        .join("etc/systemd/system/interfaces_exporter.service")
        .exists());
    let bad = Command::new(&script).arg("--bogus").output()?;
    assert_eq!(
        bad.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    Ok(())
}
