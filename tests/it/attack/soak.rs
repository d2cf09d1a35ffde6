//! The soak: a hundred thousand scrapes leak no memory, descriptors or threads.

use std::io::Write as _;
use std::net::SocketAddr;
use std::thread;
use std::time::Instant;

use super::*;
use crate::util::*;

const KEEP_ALIVE: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
const SHORT: &[u8] = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// `keep_alive` scrapes on each of `connections` connections and `short` one-scrape connections
/// on each of two threads, all at once.
fn workload(addr: SocketAddr, connections: usize, keep_alive: usize, short: usize) -> Result {
    let mut threads = Vec::new();
    for _ in 0..connections {
        threads.push(thread::spawn(move || -> std::result::Result<(), String> {
            let mut c = Client::new(addr).map_err(|e| e.to_string())?;
            for i in 0..keep_alive {
                match c.send(KEEP_ALIVE) {
                    Ok(200) => {}
                    other => return Err(format!("keep-alive scrape {i}: {other:?}")),
                }
            }
            Ok(())
        }));
    }
    for _ in 0..2 {
        threads.push(thread::spawn(move || -> std::result::Result<(), String> {
            for i in 0..short / 2 {
                let mut c = Client::new(addr).map_err(|e| e.to_string())?;
                match c.send(SHORT) {
                    Ok(200) => {}
                    other => return Err(format!("short scrape {i}: {other:?}")),
                }
                // Wait for the server's close, as a polite client does.
                let _ = read_until_close(c.stream.get_mut(), DEADLINE);
            }
            Ok(())
        }));
    }
    for t in threads {
        t.join().map_err(|_| "client thread panicked")??;
    }
    Ok(())
}

/// `n` connections that each hold a connection thread at the same moment.
fn burst(addr: SocketAddr, n: usize) -> Result {
    let mut clients = (0..n)
        .map(|_| Client::new(addr))
        .collect::<Result<Vec<_>>>()?;
    for c in &mut clients {
        c.stream.get_mut().write_all(KEEP_ALIVE)?;
    }
    for c in &mut clients {
        if c.send(b"")? != 200 {
            return Err("burst scrape failed".into());
        }
    }
    Ok(())
}

#[test]
fn a_soak_leaks_no_memory_descriptors_or_threads() -> Result {
    const CONNECTIONS: usize = 4;
    const KEEP_ALIVE_SCRAPES: usize = 100_000;
    const SHORT_CONNECTIONS: usize = 10_000;
    const GROWTH_LIMIT_KIB: u64 = 1024;
    let f = Fixture::new()?;
    f.ethernet("eth0", "up")?;
    // The burst below has 64 scrapes in flight at once, past the default --web.max-requests
    // (40) when a loaded runner slows the scan; its point is the peak, so all are let in.
    let mut exp = Exporter::start(&[&f.flag(), "--web.max-requests=64"])?;
    let pid = exp.pid();
    let settled = |what: &str| -> Result<(usize, usize)> {
        wait_for(what, DEADLINE, || {
            (conn_threads(pid)? == 0).then_some((thread_count(pid)?, fd_count(pid)?))
        })
    };
    let back_to = |what: &str, threads: usize, fds: usize| -> Result<()> {
        wait_for(what, DEADLINE, || {
            (thread_count(pid)? == threads && fd_count(pid)? == fds).then_some(())
        })
        .map_err(|e| {
            // What the descriptors are, by kind: socket, pipe, or the file's path.
            let mut kinds = std::collections::BTreeMap::<String, usize>::new();
            for entry in std::fs::read_dir(format!("/proc/{pid}/fd"))
                .into_iter()
                .flatten()
            {
                if let Some(link) = entry.ok().and_then(|e| std::fs::read_link(e.path()).ok()) {
                    let link = link.display().to_string();
                    let kind = link.split(':').next().unwrap_or_default().to_owned();
                    *kinds.entry(kind).or_default() += 1;
                }
            }
            format!(
                "{e}: {:?} threads (idle {threads}), {:?} fds (idle {fds}): {kinds:?}",
                thread_count(pid),
                fd_count(pid)
            )
            .into()
        })
    };

    // Warm-up. glibc gives each simultaneously running thread a malloc arena of its own (up to
    // eight per core) and caches the stacks of exited threads, so RSS rises to the peak number
    // of simultaneous connections and stays there: a high-water mark, not a leak. The warm-up
    // reaches a higher peak than the soak (a burst of 64 at once), then runs the soak's mix, so
    // that after it only a leak can make RSS grow.
    burst(exp.addr, 64)?;
    workload(exp.addr, CONNECTIONS, 250, 200)?;
    let (threads_idle, fds_idle) = settled("connection threads to exit after the warm-up")?;
    let rss_before = vm_rss_kib(pid).ok_or("no VmRSS")?;

    let start = Instant::now();
    workload(
        exp.addr,
        CONNECTIONS,
        KEEP_ALIVE_SCRAPES / CONNECTIONS,
        SHORT_CONNECTIONS,
    )?;
    let took = start.elapsed();
    back_to(
        "connection threads and sockets to go after the soak",
        threads_idle,
        fds_idle,
    )?;
    let rss_after = vm_rss_kib(pid).ok_or("no VmRSS")?;
    let hwm = vm_hwm_kib(pid).ok_or("no VmHWM")?;
    let (fds, threads) = (fd_count(pid), thread_count(pid));
    eprintln!(
        "soak: {KEEP_ALIVE_SCRAPES} keep-alive scrapes on {CONNECTIONS} connections and \
         {SHORT_CONNECTIONS} short connections in {took:?}; VmRSS {rss_before} -> {rss_after} KiB \
         (VmHWM {hwm} KiB); fds {fds_idle} -> {fds:?}; threads {threads_idle} -> {threads:?}"
    );
    assert!(
        rss_after < rss_before + GROWTH_LIMIT_KIB,
        "VmRSS grew from {rss_before} to {rss_after} KiB"
    );
    assert_serves(&mut exp)?;
    Ok(())
}
