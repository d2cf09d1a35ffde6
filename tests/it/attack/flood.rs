//! Floods: connections past `--web.max-connections` are refused at once, and the held ones
//! are still served.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::TcpStream;
use std::thread;
use std::time::Instant;

use super::*;
use crate::util::*;

#[test]
fn a_flood_past_max_connections_is_refused_at_once() -> Result {
    const LIMIT: usize = 20;
    const EXCESS: usize = 100;
    let f = small_host()?;
    // Timeouts far longer than the test, so no close below can be a timeout.
    let mut exp = Exporter::start(&[
        &f.flag(),
        "--web.max-connections=20",
        "--web.read-timeout=60",
        "--web.idle-timeout=60",
    ])?;

    // Wave 1: LIMIT + EXCESS connections that send nothing. The first LIMIT take every slot;
    // the rest must be answered 503 (or closed) at once.
    let start = Instant::now();
    let mut conns = Vec::with_capacity(LIMIT + EXCESS);
    for _ in 0..LIMIT + EXCESS {
        let s = connect(exp.addr)?;
        s.set_nonblocking(true)?;
        conns.push((s, Vec::new(), None::<End>));
    }
    let mut buf = [0u8; 4096];
    wait_for("the excess connections to be refused", MARGIN, || {
        for (s, got, end) in conns.iter_mut().filter(|c| c.2.is_none()) {
            let mut s: &TcpStream = s;
            loop {
                match s.read(&mut buf) {
                    Ok(0) => *end = Some(End::Closed),
                    Ok(n) => {
                        got.extend_from_slice(&buf[..n]);
                        continue;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => *end = Some(End::Reset),
                }
                break;
            }
        }
        let refused = conns.iter().filter(|c| c.2.is_some()).count();
        (refused >= EXCESS).then_some(())
    })?;
    let refused_in = start.elapsed();
    let refused = conns.iter().filter(|c| c.2.is_some()).count();
    let with_503 = conns
        .iter()
        .filter(|c| status_of(&c.1) == Some(503))
        .count();
    for (_, got, _) in conns.iter().filter(|c| c.2.is_some()) {
        assert!(
            got.is_empty() || status_of(got) == Some(503),
            "{:?}",
            String::from_utf8_lossy(got)
        );
        if !got.is_empty() {
            assert!(String::from_utf8_lossy(got).contains("Connection: close"));
        }
    }
    exp.assert_alive()?;

    // Wave 2: with every slot still held, EXCESS more clients send whole requests at once from
    // four threads; each is refused, none hangs.
    let addr = exp.addr;
    let wave: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(move || -> std::result::Result<(usize, usize), String> {
                let (mut got_503, mut closed) = (0, 0);
                for _ in 0..EXCESS / 4 {
                    let x = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", MARGIN)
                        .map_err(|e| e.to_string())?;
                    match (status_of(&x.bytes), x.end) {
                        (_, End::Open) => {
                            return Err(format!("a refused client hangs: {}", x.text()))
                        }
                        (Some(503), _) => got_503 += 1,
                        (None, _) if x.bytes.is_empty() => closed += 1,
                        _ => return Err(format!("over the limit yet answered: {}", x.text())),
                    }
                }
                Ok((got_503, closed))
            })
        })
        .collect();
    let (mut wave_503, mut wave_closed) = (0, 0);
    for t in wave {
        let (a, b) = t.join().map_err(|_| "flood thread panicked")??;
        wave_503 += a;
        wave_closed += b;
    }
    exp.assert_alive()?;

    // The LIMIT held connections still have their threads: each is served.
    let mut served = 0;
    for (s, _, end) in conns.iter_mut() {
        if end.is_some() {
            continue;
        }
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(DEADLINE))?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
        assert_eq!(read_response(s, Framing::Length)?.status, 200);
        served += 1;
    }
    assert_eq!(served, LIMIT);

    drop(conns);
    let ended = Instant::now();
    wait_for("a scrape after the flood", DEADLINE, || {
        exp.get("/metrics").ok().filter(|r| r.status == 200)
    })?;
    let recovered_in = ended.elapsed();
    eprintln!(
        "flood: limit {LIMIT}; idle wave: {} refused within {refused_in:?} ({with_503} with 503, \
         {} closed); request wave: {wave_503} got 503, {wave_closed} closed; held {served} \
         served; scrape 200 {recovered_in:?} after the flood",
        refused,
        refused - with_503
    );
    assert_eq!(refused, EXCESS);
    exp.assert_alive()?;
    Ok(())
}
