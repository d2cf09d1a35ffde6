//! The server under the limits a hostile client or a small host imposes (issue 10, items 4 and
//! 6): clients that never read, inside a real memory cgroup; an address-space limit; a thread
//! limit. Each time the exporter must stay alive and answer every request 200 or 503, never a
//! reset, never an abort.

use std::io::Write as _;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

/// The unit's `MemoryMax` and the DaemonSet's memory limit.
const CGROUP_LIMIT: u64 = 64 * 1024 * 1024;

/// The README's bound on resident memory with 512 held connections at 1000 interfaces.
const VM_HWM_BOUND_KIB: u64 = 32 * 1024;

/// Clients that send a scrape and never read its answer.
const NON_READERS: usize = 512;

const SCRAPE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";

/// A host with `n` Ethernet interfaces carrying every attribute, half of them up: a scrape body
/// of about 800 KB at 1000.
fn big_host(n: usize) -> Result<Fixture> {
    let f = Fixture::new()?;
    for i in 0..n {
        f.ethernet(
            &format!("eth{i:04}"),
            if i % 2 == 0 { "up" } else { "down" },
        )?;
    }
    Ok(f)
}

/// A child memory cgroup with a limit, removed on drop (after its processes are gone).
struct Cgroup {
    dir: PathBuf,
}

impl Cgroup {
    /// Uses the v1 memory controller where it is mounted, else the unified (v2) hierarchy.
    fn new(limit: u64) -> Result<Cgroup> {
        let v1 = PathBuf::from("/sys/fs/cgroup/memory");
        let (parent, file) = if v1.join("memory.limit_in_bytes").exists() {
            (v1, "memory.limit_in_bytes")
        } else if std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        {
            (PathBuf::from("/sys/fs/cgroup"), "memory.max")
        } else {
            return Err("no memory cgroup controller (v1 or v2) to test under".into());
        };
        let dir = parent.join(unique("ie-test-"));
        std::fs::create_dir(&dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let cg = Cgroup { dir };
        std::fs::write(cg.dir.join(file), limit.to_string())?;
        Ok(cg)
    }

    fn procs(&self) -> PathBuf {
        self.dir.join("cgroup.procs")
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        // The processes inside may take a moment to be reaped.
        let _ = wait_for("the cgroup to empty", DEADLINE, || {
            std::fs::remove_dir(&self.dir).ok()
        });
    }
}

#[test]
fn clients_that_never_read_cannot_exhaust_memory() -> Result {
    let f = big_host(1000)?;
    // The test build (what every test runs) and the static build (what is deployed), whose
    // figures the README quotes.
    for bin in [
        PathBuf::from(BIN),
        static_binary("x86_64-unknown-linux-musl")?,
    ] {
        non_readers_in_a_cgroup(&f, &bin)?;
    }
    Ok(())
}

fn non_readers_in_a_cgroup(f: &Fixture, bin: &std::path::Path) -> Result {
    let cg = Cgroup::new(CGROUP_LIMIT)?;
    // The shell joins the group before it becomes the exporter, so every page is charged there.
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!(
        "echo $$ > {} && exec {} --web.listen-address=127.0.0.1:0 \
         --web.max-connections=1024 --log.level=debug {}",
        cg.procs().display(),
        bin.display(),
        f.flag()
    ));
    let mut exp = Exporter::spawn(&mut cmd)?;
    let pid = exp.pid();
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let name = cg.dir.file_name().and_then(|n| n.to_str()).ok_or("name")?;
    assert!(cgroup.contains(name), "not in the test cgroup: {cgroup}");
    let idle = vm_hwm_kib(pid).ok_or("no VmHWM")?;

    let one = exp.get("/metrics")?;
    assert_eq!(one.status, 200);
    assert_eq!(one.text().matches("interface_status{").count(), 1000);
    let after_one = vm_hwm_kib(pid).ok_or("no VmHWM")?;

    // Each client sends a scrape and never reads, so its answer fills the socket buffers and
    // the server's write blocks until its deadline.
    let mut clients: Vec<TcpStream> = Vec::with_capacity(NON_READERS);
    for _ in 0..NON_READERS {
        let client = connect(exp.addr).and_then(|mut s| {
            s.write_all(SCRAPE)?;
            Ok(s)
        });
        match client {
            Ok(s) => clients.push(s),
            Err(e) => {
                // The usual cause is the kernel's OOM killer: say so rather than "refused".
                exp.assert_alive()?;
                return Err(e);
            }
        }
    }
    // Every request has been answered or is being written when every client has bytes
    // waiting: a 503 past --web.max-requests, or the start of a body it will not read.
    for s in &clients {
        s.set_nonblocking(true)?;
    }
    let mut peek = [0u8; 12];
    wait_for("every client to have an answer started", DEADLINE, || {
        clients
            .iter()
            .all(|s| s.peek(&mut peek).is_ok_and(|n| n > 0))
            .then_some(())
    })?;
    let refused = clients
        .iter()
        .filter(|s| s.peek(&mut peek).is_ok() && status_of(&peek) == Some(503))
        .count();
    exp.assert_alive()?;

    let start = Instant::now();
    let normal = exp.get("/metrics")?;
    let took = start.elapsed();
    exp.assert_alive()?;
    let held = vm_hwm_kib(pid).ok_or("no VmHWM")?;
    let usage = std::fs::read_to_string(cg.dir.join("memory.usage_in_bytes"))
        .or_else(|_| std::fs::read_to_string(cg.dir.join("memory.current")))
        .unwrap_or_default();
    eprintln!(
        "memory ({}): VmHWM idle {idle} KiB, after one scrape at 1000 interfaces {after_one} KiB, \
         with {NON_READERS} clients that never read {held} KiB (cgroup usage {} bytes; {refused} \
         got 503); body {} bytes; a normal scrape meanwhile got {} in {took:?}",
        bin.display(),
        usage.trim(),
        one.body.len(),
        normal.status
    );
    assert!(
        normal.status == 200 || normal.status == 503,
        "{}",
        normal.status
    );
    assert!(
        took < Duration::from_secs(2),
        "a normal scrape took {took:?}"
    );
    assert!(
        held <= VM_HWM_BOUND_KIB,
        "VmHWM {held} KiB past the README's bound"
    );

    // Once the clients go, scrapes are served again.
    drop(clients);
    wait_for("a scrape after the clients left", DEADLINE, || {
        exp.get("/metrics").ok().filter(|r| r.status == 200)
    })?;
    exp.assert_alive()?;
    drop(exp);
    drop(cg);
    Ok(())
}

#[test]
fn scrapes_past_max_requests_get_503() -> Result {
    let f = big_host(300)?;
    let mut exp = Exporter::start(&[&f.flag(), "--web.max-requests=2"])?;
    // Two clients that never read hold both places while their answers are being written.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = connect(exp.addr)?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n")?;
        s.set_nonblocking(true)?;
        held.push(s);
    }
    // Both are being answered 200 before anyone else asks, or a probe could take a place first.
    let mut peek = [0u8; 12];
    wait_for("both held scrapes to be answered", DEADLINE, || {
        held.iter()
            .all(|s| s.peek(&mut peek).is_ok_and(|n| n == 12) && status_of(&peek) == Some(200))
            .then_some(())
    })?;
    let refused = exp.get("/metrics")?;
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.text(),
        "503 service unavailable: too many scrapes in flight\n"
    );
    // The status page needs a scan too, so it is counted alike.
    assert_eq!(exp.get("/")?.status, 503);
    // Other paths need no scan and are answered.
    assert_eq!(exp.get("/nothing")?.status, 404);
    drop(held);
    wait_for("scrapes to work again", DEADLINE, || {
        exp.get("/metrics").ok().filter(|r| r.status == 200)
    })?;
    exp.assert_alive()?;
    Ok(())
}

#[test]
fn a_thread_that_cannot_be_created_gets_503_not_a_reset() -> Result {
    const CLIENTS: usize = 60;
    let f = Fixture::new()?;
    f.ethernet("eth0", "up")?;
    // RLIMIT_NPROC counts every task of the user: those of uid 65534 already running, plus the
    // exporter's main and accept threads, leave room for two connection threads.
    let nproc = tasks_of_uid(65534) + 4;
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nproc={nproc}"))
        .args([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
        ])
        .args([BIN, "--web.listen-address=127.0.0.1:0", &f.flag()]);
    let mut exp = Exporter::spawn(&mut cmd)?;

    let addr = exp.addr;
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let start = Arc::clone(&start);
            thread::spawn(move || -> std::result::Result<u16, String> {
                start.wait();
                let r = request(
                    addr,
                    "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                )
                .map_err(|e| e.to_string())?;
                Ok(r.status)
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in clients {
        statuses.push(c.join().map_err(|_| "client panicked")?);
    }
    let ok = statuses.iter().filter(|s| matches!(s, Ok(200))).count();
    let refused = statuses.iter().filter(|s| matches!(s, Ok(503))).count();
    eprintln!("nproc {nproc}: {ok} answered 200, {refused} 503 of {CLIENTS}");
    for s in &statuses {
        match s {
            Ok(200 | 503) => {}
            other => return Err(format!("a client got {other:?}\n{}", exp.log()).into()),
        }
    }
    assert!(
        refused > 0,
        "no thread was refused: the test tested nothing"
    );
    wait_for("the reason in the log", DEADLINE, || {
        exp.log()
            .contains("msg=\"cannot start a connection thread, answering 503\"")
            .then_some(())
    })?;
    exp.assert_alive()?;
    Ok(())
}

/// Tasks (threads) running as `uid`, which is what `RLIMIT_NPROC` counts.
fn tasks_of_uid(uid: u32) -> usize {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let wanted = uid.to_string();
    procs
        .flatten()
        .filter_map(|p| std::fs::read_to_string(p.path().join("status")).ok())
        .filter(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1))
                == Some(wanted.as_str())
        })
        .filter_map(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))?
                .trim()
                .parse::<usize>()
                .ok()
        })
        .sum()
}

#[test]
fn an_address_space_limit_gives_503_not_an_abort() -> Result {
    // The reproduction: `ulimit -v 32000` and 40 concurrent clients at 1000
    // interfaces aborted the process ("memory allocation of 172032 bytes failed", exit 134).
    // Run on the static build, whose address space is what a deployment has (a debug build
    // linked to glibc reserves 64 MiB malloc arenas per thread).
    const CLIENTS: usize = 40;
    let bin = static_binary("x86_64-unknown-linux-musl")?;
    let f = big_host(1000)?;
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--as={}", 32_000 * 1024))
        .arg(&bin)
        .args(["--web.listen-address=127.0.0.1:0", &f.flag()]);
    let mut exp = Exporter::spawn(&mut cmd)?;
    let addr = exp.addr;
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            thread::spawn(move || -> std::result::Result<Vec<u16>, String> {
                (0..10)
                    .map(|_| {
                        request(
                            addr,
                            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                        )
                        .map(|r| r.status)
                        .map_err(|e| e.to_string())
                    })
                    .collect()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for c in clients {
        match c.join().map_err(|_| "client panicked")? {
            Ok(s) => statuses.extend(s),
            Err(e) => {
                exp.assert_alive()?;
                return Err(e.into());
            }
        }
    }
    exp.assert_alive()?;
    let ok = statuses.iter().filter(|&&s| s == 200).count();
    eprintln!(
        "RLIMIT_AS 32000 KiB: {ok} of {} answered 200",
        statuses.len()
    );
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 503),
        "{statuses:?}"
    );
    assert!(ok > 0, "nothing was served");
    Ok(())
}
