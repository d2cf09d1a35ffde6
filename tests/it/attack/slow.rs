//! Slow clients: stalled heads neither delay a scrape nor stay past the read timeout.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use super::*;
use crate::util::*;

/// The read timeout this test gives the exporter. Everything it measures happens before the
/// first stalled connection times out (256 connections opened, their threads counted, three
/// scrapes), which takes seconds on a loaded two-core runner: 8 s leaves room for that, and
/// the closes are still checked against it from both sides.
const READ_TIMEOUT: Duration = Duration::from_secs(8);

#[test]
fn slow_clients_neither_delay_a_scrape_nor_outstay_the_read_timeout() -> Result {
    const STALLED: usize = 256;
    const RSS_LIMIT_KIB: u64 = 32 * 1024;
    let f = small_host()?;
    // Room for the stalled connections and a few more: the scrapes below, and a connection of
    // the start-up probe that may not have been counted out yet on a loaded machine.
    let limit = format!("--web.max-connections={}", STALLED + 8);
    let timeout = format!("--web.read-timeout={}", READ_TIMEOUT.as_secs());
    let mut exp = Exporter::start(&[&f.flag(), &timeout, &limit])?;
    let pid = exp.pid();

    // Half a head each, then silence: two shapes, a cut request line and a cut header block.
    let first_sent = Instant::now();
    let mut stalled = Vec::with_capacity(STALLED);
    for i in 0..STALLED {
        let mut s = connect(exp.addr)?;
        let half: &[u8] = if i % 2 == 0 {
            b"GET /metr"
        } else {
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nAcc"
        };
        let sent = Instant::now();
        s.write_all(half)?;
        stalled.push((s, sent));
        // A server that stops accepting while others stall lets the backlog fill, and then
        // each connect waits for a stalled connection to time out.
        if first_sent.elapsed() > READ_TIMEOUT {
            return Err(format!("only {i} connections opened within the read timeout").into());
        }
    }
    wait_for("a thread for every stalled connection", DEADLINE, || {
        (conn_threads(pid)? == STALLED).then_some(())
    })?;

    let mut latencies = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let r = exp.get("/metrics")?;
        latencies.push(start.elapsed());
        assert_eq!(r.status, 200);
    }
    let rss = vm_rss_kib(pid).ok_or("no VmRSS")?;
    let hwm = vm_hwm_kib(pid).ok_or("no VmHWM")?;
    let threads = thread_count(pid).ok_or("no /proc/PID/task")?;
    let stalled_threads = conn_threads(pid).ok_or("no /proc/PID/task")?;
    let held_until = first_sent.elapsed();
    eprintln!(
        "slow clients: {STALLED} stalled connections, {threads} threads; scrape latencies \
         {latencies:?}; VmRSS {rss} KiB, VmHWM {hwm} KiB"
    );
    // No stalled connection can have been closed yet, so the scrapes ran against all of them.
    assert!(
        held_until < READ_TIMEOUT,
        "setup took {held_until:?}, past the read timeout: the measurement is void"
    );
    assert!(
        stalled_threads >= STALLED,
        "{stalled_threads} connection threads"
    );
    for latency in &latencies {
        assert!(
            *latency < Duration::from_secs(1),
            "a scrape took {latency:?} behind {STALLED} stalled connections"
        );
    }
    assert!(rss < RSS_LIMIT_KIB, "VmRSS {rss} KiB holding {STALLED}");

    // Each stalled connection is answered 408 (or just closed) once the read timeout has run
    // from its first byte, and not before.
    for (s, _) in &stalled {
        s.set_nonblocking(true)?;
    }
    let mut received: Vec<Vec<u8>> = vec![Vec::new(); STALLED];
    let mut closed_after: Vec<Option<Duration>> = vec![None; STALLED];
    let mut buf = [0u8; 4096];
    let give_up = Instant::now() + READ_TIMEOUT + MARGIN;
    while closed_after.iter().any(Option::is_none) {
        for (i, (s, sent)) in stalled.iter().enumerate() {
            if closed_after[i].is_some() {
                continue;
            }
            let mut s: &TcpStream = s;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => closed_after[i] = Some(sent.elapsed()),
                    Ok(n) => {
                        received[i].extend_from_slice(&buf[..n]);
                        continue;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => closed_after[i] = Some(sent.elapsed()),
                }
                break;
            }
        }
        if Instant::now() > give_up {
            let open = closed_after.iter().filter(|c| c.is_none()).count();
            return Err(format!(
                "{open} stalled connections still open {:?} after the first was sent",
                first_sent.elapsed()
            )
            .into());
        }
        thread::sleep(Duration::from_millis(10));
    }
    let closes: Vec<Duration> = closed_after.into_iter().flatten().collect();
    let (earliest, latest) = (
        closes.iter().min().copied().unwrap_or_default(),
        closes.iter().max().copied().unwrap_or_default(),
    );
    let with_408 = received
        .iter()
        .filter(|r| status_of(r) == Some(408))
        .count();
    eprintln!(
        "slow clients: all {STALLED} closed between {earliest:?} and {latest:?} after their \
         first byte ({with_408} with 408, {} silently)",
        STALLED - with_408
    );
    for r in &received {
        assert!(
            r.is_empty() || status_of(r) == Some(408),
            "{:?}",
            String::from_utf8_lossy(r)
        );
    }
    assert!(earliest >= READ_TIMEOUT, "closed after {earliest:?}");
    assert!(latest <= READ_TIMEOUT + MARGIN, "closed after {latest:?}");
    exp.assert_alive()?;
    Ok(())
}
