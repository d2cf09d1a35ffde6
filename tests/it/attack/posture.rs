//! Security posture: what the process opens and runs, and how it runs without root.

use std::process::Command;

use super::*;
use crate::util::*;

/// The first string argument of a traced call (`openat(AT_FDCWD, "/x", ...`), unescaped as far
/// as strace escapes plain paths.
fn traced_path(call: &str) -> Option<&str> {
    let start = call.find('"')? + 1;
    let len = call[start..].find('"')?;
    Some(&call[start..start + len])
}

#[test]
fn it_opens_only_under_its_root_and_runs_no_program() -> Result {
    let f = small_host()?;
    let dir = TempDir::new()?;
    let trace = dir.0.join("trace");
    let root = f.root();
    let mut cmd = Command::new("strace");
    // cargo points LD_LIBRARY_PATH at the build tree and the toolchain, where the loader would
    // probe for libc first; without it the loader does what it does on a host: ld.so.cache.
    cmd.env_remove("LD_LIBRARY_PATH")
        .args(["-f", "-qq", "-s", "4096", "-e"])
        .arg("trace=execve,execveat,open,openat,openat2,creat")
        .arg("-o")
        .arg(&trace)
        .arg(BIN)
        .args(["--web.listen-address=127.0.0.1:0", &f.flag()]);
    let mut exp = Exporter::spawn(&mut cmd)
        .map_err(|e| format!("strace (scripts/test.sh installs it): {e}"))?;
    let strace_pid = exp.pid();
    let traced = wait_for("the traced exporter", DEADLINE, || {
        children(strace_pid).first().copied()
    })?;
    let guard = KillTree(traced);
    for path in ["/metrics", "/", "/metrics", "/nope"] {
        let status = exp.get(path)?.status;
        assert!(status == 200 || status == 404, "{path}: {status}");
    }
    let (status, _) = stop("-TERM", traced, &mut exp.child)?;
    // It exited: its pid may be another process's by the time the guard would drop.
    std::mem::forget(guard);
    assert!(status.success(), "{status}\n{}", exp.log());

    let trace = std::fs::read_to_string(&trace)?;
    let calls: Vec<&str> = trace
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, call)| call.trim_start()))
        .filter(|c| !c.starts_with("<...") && !c.starts_with("+++") && !c.starts_with("---"))
        .collect();
    let execs: Vec<&&str> = calls.iter().filter(|c| c.starts_with("execve")).collect();
    assert_eq!(execs.len(), 1, "exactly the exporter's own exec:\n{trace}");
    assert!(execs[0].contains(BIN), "{}", execs[0]);
    // What the process may open besides its sysfs root, each before main or by std/libc:
    // - /etc/ld.so.cache and shared objects under /lib, /lib64, /usr/lib (glibc's dynamic
    //   loader finding libc and libgcc_s; a static musl build opens none of these);
    // - /proc/self/maps (glibc's pthread_getattr_np, which std calls at start to find the main
    //   thread's stack guard).
    let allowed = |p: &str| {
        p == "/etc/ld.so.cache"
            || p == "/proc/self/maps"
            || ["/lib/", "/lib64/", "/usr/lib/"]
                .iter()
                .any(|dir| p.starts_with(dir))
                && p.contains(".so")
    };
    let root = root.to_str().ok_or("non-UTF-8 temp dir")?;
    let mut under_root = 0;
    let mut outside = Vec::new();
    // The root is opened by its path, `class/net` and interface directories relative to the
    // root's descriptor, attributes relative to their interface directory's: remember which
    // descriptors name a directory under the root (strace prints each call's result).
    let mut dirs_under_root: std::collections::HashSet<String> = Default::default();
    for call in calls
        .iter()
        .filter(|c| c.starts_with("open") || c.starts_with("creat"))
    {
        let relative_to = call
            .strip_prefix("openat(")
            .or_else(|| call.strip_prefix("openat2("))
            .filter(|c| !c.starts_with("AT_FDCWD, "))
            .and_then(|c| c.split(',').next());
        if let Some(fd) = relative_to {
            let name = traced_path(call).ok_or_else(|| format!("no path in {call}"))?;
            let stays_inside = !name.starts_with('/') && !name.split('/').any(|c| c == "..");
            // A symlink inside may still point out: only the kernel can keep a lookup beneath
            // the descriptor (openat2 with RESOLVE_BENEATH), and an attribute, which is never
            // a symlink in sysfs, is opened following none.
            let kernel_enforced = call.starts_with("openat2(")
                && call.contains("RESOLVE_BENEATH")
                && (name.starts_with("class/net") || call.contains("RESOLVE_NO_SYMLINKS"));
            if dirs_under_root.contains(fd) && stays_inside && kernel_enforced {
                under_root += 1;
                let result = call.rsplit(" = ").next().unwrap_or("");
                dirs_under_root.insert(result.split_whitespace().next().unwrap_or("").to_owned());
                assert!(
                    call.contains("O_RDONLY") && !call.contains("O_CREAT"),
                    "{call}"
                );
            } else {
                outside.push(format!("relative to a descriptor: {call}"));
            }
            continue;
        }
        let path = traced_path(call).ok_or_else(|| format!("no path in {call}"))?;
        let result = call.rsplit(" = ").next().unwrap_or("");
        if path == root || path.starts_with(&format!("{root}/")) {
            dirs_under_root.insert(result.split_whitespace().next().unwrap_or("").to_owned());
            under_root += 1;
            // Attributes are opened read-only and non-blocking; nothing is created or written.
            assert!(
                call.contains("O_RDONLY") && !call.contains("O_CREAT"),
                "{call}"
            );
        } else if !allowed(path) {
            outside.push(call.to_string());
        }
    }
    eprintln!(
        "security: {} traced calls, 1 execve, {under_root} opens under the root, {} allowed \
         opens outside it",
        calls.len(),
        calls.len() - 1 - under_root
    );
    assert!(under_root > 0, "{trace}");
    assert!(
        outside.is_empty(),
        "opens outside the root:\n{}",
        outside.join("\n")
    );
    Ok(())
}

#[test]
fn unprivileged_it_serves_sys_without_the_root_warning() -> Result {
    for_each_source(|source| {
        // A copy that every user may run, wherever the build tree is.
        let dir = TempDir::new()?;
        let bin = dir.0.join("interfaces_exporter");
        std::fs::copy(BIN, &bin)?;
        run(Command::new("chmod").args(["755"]).arg(&dir.0).arg(&bin))?;
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .args([
                "--web.listen-address=127.0.0.1:0",
                "--path.sysfs=/sys",
                "--log.level=debug",
                source,
            ]);
        let mut exp = Exporter::spawn(&mut cmd)
            .map_err(|e| format!("setpriv (util-linux, scripts/test.sh installs it): {e}"))?;
        let uid = std::fs::read_to_string(format!("/proc/{}/status", exp.pid()))?;
        let uid = uid
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .ok_or("no Uid")?
            .split_whitespace()
            .collect::<Vec<_>>();
        assert_eq!(uid, ["65534"; 4], "not unprivileged");
        let r = exp.get("/metrics")?;
        assert_eq!(r.status, 200);
        assert!(
            r.text().contains("interface_status{interface=\"lo\"}"),
            "{}",
            r.text()
        );
        exp.assert_alive()?;
        let log = exp.log();
        assert!(!log.contains("running as root"), "{log}");
        assert!(!log.to_lowercase().contains("permission denied"), "{log}");
        Ok(())
    })
}

#[test]
fn as_root_it_warns_that_root_is_not_needed() -> Result {
    if !is_root() {
        return Err("this test checks the warning for root and must run as root (CI does)".into());
    }
    let f = small_host()?;
    let exp = Exporter::start(&[&f.flag()])?;
    wait_for("the root warning", DEADLINE, || {
        exp.log()
            .lines()
            .find(|l| {
                l.contains("level=warn") && l.contains("running as root, which is not needed")
            })
            .map(drop)
    })?;
    Ok(())
}
