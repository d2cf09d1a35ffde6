//! The seed contract and the HTTP server, against fixture sysfs trees.

use std::ffi::OsStr;
use std::io::{ErrorKind, Read as _, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::time::{Duration, Instant};

use crate::util::*;

/// The body's `interface_status` family: the seed's whole output.
fn status_family(body: &str) -> String {
    body.lines()
        .filter(|l| l.starts_with("interface_status") || l.contains(" interface_status "))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn seed_contract_byte_for_byte() -> Result {
    let f = seed_host()?;
    let exp = Exporter::start(&[&f.flag()])?;
    let r = exp.get("/metrics")?;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let body = r.text();
    let golden_path = repo().join("tests/it/golden/seed.txt");
    let actual = status_family(&body);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden_path, &actual)?;
    }
    let golden = std::fs::read_to_string(&golden_path)?;
    assert_eq!(
        actual, golden,
        "refresh with UPDATE_GOLDEN=1 if the change is intended"
    );
    assert!(
        body.starts_with(&golden),
        "interface_status must come first, as in the seed"
    );
    assert!(!body.contains("bonding_masters"));
    Ok(())
}

#[test]
fn odd_names_are_escaped_and_not_utf8_bytes_spelled_out() -> Result {
    let f = Fixture::new()?;
    f.iface_under("virtual", OsStr::new("quo\"te"), &[("operstate", "up")])?;
    f.iface_under(
        "virtual",
        OsStr::new("back\\slash"),
        &[("operstate", "down")],
    )?;
    f.iface_under("virtual", OsStr::new("new\nline"), &[("operstate", "up")])?;
    f.iface_under(
        "virtual",
        OsStr::from_bytes(b"bad\xffutf8"),
        &[("operstate", "up")],
    )?;
    let exp = Exporter::start(&[&f.flag()])?;
    let body = exp.get("/metrics")?.text();
    let family = status_family(&body);
    assert!(
        family.contains("interface_status{interface=\"quo\\\"te\"} 1\n"),
        "{family}"
    );
    assert!(
        family.contains("interface_status{interface=\"back\\\\slash\"} 0\n"),
        "{family}"
    );
    assert!(
        family.contains("interface_status{interface=\"new\\nline\"} 1\n"),
        "{family}"
    );
    assert!(
        family.contains("interface_status{interface=\"bad/xffutf8\"} 1\n"),
        "{family}"
    );
    Ok(())
}

#[test]
fn unreadable_or_vanished_interfaces_are_left_out() -> Result {
    let f = Fixture::new()?;
    f.iface("ok0", &[("operstate", "up")])?;
    // No operstate at all, a dangling link (the interface went away), and an operstate that is
    // a directory.
    f.iface("nostate0", &[])?;
    std::os::unix::fs::symlink(
        "../../devices/virtual/net/gone0",
        f.root().join("class/net/gone0"),
    )?;
    let dir_state = f.iface("dirstate0", &[])?;
    std::fs::create_dir(dir_state.join("operstate"))?;
    let exp = Exporter::start(&[&f.flag()])?;
    let r = exp.get("/metrics")?;
    assert_eq!(r.status, 200);
    let family = status_family(&r.text());
    assert_eq!(
        family,
        "# HELP interface_status down = 0, up = 1, any other states (unknown) = 2\n\
         # TYPE interface_status untyped\n\
         interface_status{interface=\"ok0\"} 1\n"
    );
    // The directory is a fault, counted; the missing file and the dangling link are not.
    assert_eq!(
        sample(&r.text(), "interfaces_exporter_scrape_errors").as_deref(),
        Some("1")
    );
    Ok(())
}

#[test]
fn every_scrape_reads_afresh() -> Result {
    let f = Fixture::new()?;
    let dev = f.iface("eth0", &[("operstate", "up")])?;
    let exp = Exporter::start(&[&f.flag()])?;
    assert_eq!(
        sample(
            &exp.get("/metrics")?.text(),
            "interface_status{interface=\"eth0\"}"
        )
        .as_deref(),
        Some("1")
    );
    std::fs::write(dev.join("operstate"), "down\n")?;
    assert_eq!(
        sample(
            &exp.get("/metrics")?.text(),
            "interface_status{interface=\"eth0\"}"
        )
        .as_deref(),
        Some("0")
    );
    f.iface("eth1", &[("operstate", "dormant")])?;
    assert_eq!(
        sample(
            &exp.get("/metrics")?.text(),
            "interface_status{interface=\"eth1\"}"
        )
        .as_deref(),
        Some("2")
    );
    Ok(())
}

#[test]
fn routes_and_statuses() -> Result {
    let f = seed_host()?;
    let exp = Exporter::start(&[&f.flag(), "--web.telemetry-path=/probe"])?;
    let cases: &[(&str, u16, Option<&str>)] = &[
        (
            "GET /probe HTTP/1.1\r\nHost: x\r\n\r\n",
            200,
            Some("text/plain; version=0.0.4; charset=utf-8"),
        ),
        (
            "GET /probe?target=x&module=y HTTP/1.1\r\nHost: x\r\n\r\n",
            200,
            None,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            200,
            Some("text/html; charset=utf-8"),
        ),
        ("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 404, None),
        ("GET /probe/ HTTP/1.1\r\nHost: x\r\n\r\n", 404, None),
        (
            "POST /probe HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            405,
            None,
        ),
        ("DELETE / HTTP/1.1\r\nHost: x\r\n\r\n", 405, None),
        ("GET /probe HTTP/1.1\r\n\r\n", 400, None),
        ("GET /probe HTTP/2.0\r\nHost: x\r\n\r\n", 505, None),
        (
            "GET /probe HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
            413,
            None,
        ),
        (
            "GET /probe HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            501,
            None,
        ),
    ];
    for &(req, status, content_type) in cases {
        let r = request(exp.addr, req)?;
        assert_eq!(r.status, status, "{req:?}");
        if let Some(ct) = content_type {
            assert_eq!(r.header("content-type"), Some(ct), "{req:?}");
        }
        if status == 405 {
            assert_eq!(r.header("allow"), Some("GET, HEAD"));
        }
        if status >= 400 && status != 404 && status != 405 {
            assert_eq!(r.header("connection"), Some("close"), "{req:?}");
        }
    }
    let page = request(exp.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")?.text();
    assert!(page.contains("interfaces_exporter") && page.contains(env!("CARGO_PKG_VERSION")));
    assert!(page.contains("<a href=\"/probe\">"), "{page}");
    Ok(())
}

#[test]
fn head_has_the_headers_of_get_and_no_body() -> Result {
    let f = seed_host()?;
    let exp = Exporter::start(&[&f.flag()])?;
    for path in ["/metrics", "/"] {
        let mut s = connect(exp.addr)?;
        s.write_all(format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\nGET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())?;
        let head = read_response(&mut s, Framing::HeadOnly)?;
        let get = read_response(&mut s, Framing::Length)?;
        assert_eq!(head.status, 200);
        assert_eq!(head.header("content-type"), get.header("content-type"));
        // The metrics body holds a scrape duration, written with all nine digits of its
        // nanoseconds, so its length does not vary: HEAD announces exactly the GET's length.
        let (h, g): (usize, usize) = (
            head.header("content-length").ok_or("no length")?.parse()?,
            get.header("content-length").ok_or("no length")?.parse()?,
        );
        assert!(h > 0 && h == g, "{path}: HEAD {h} GET {g}");
        assert_eq!(g, get.body.len(), "{path}");
        // After the GET's body, nothing: the HEAD sent no body that could be misread.
        let mut rest = Vec::new();
        s.read_to_end(&mut rest)?;
        assert!(
            rest.is_empty(),
            "{path}: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
    Ok(())
}

#[test]
fn keep_alive_and_pipelining() -> Result {
    let f = seed_host()?;
    let exp = Exporter::start(&[&f.flag()])?;
    let mut s = connect(exp.addr)?;
    // Three requests in one write; the server answers each in order on one connection.
    s.write_all(
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
    )?;
    assert_eq!(read_response(&mut s, Framing::Length)?.status, 200);
    assert_eq!(read_response(&mut s, Framing::Length)?.status, 404);
    let page = read_response(&mut s, Framing::Length)?;
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    for _ in 0..5 {
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
        let r = read_response(&mut s, Framing::Length)?;
        assert_eq!((r.status, r.header("connection")), (200, None));
    }
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
    let last = read_response(&mut s, Framing::Length)?;
    assert_eq!(last.header("connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(
        s.read_to_end(&mut rest)?,
        0,
        "server must close after Connection: close"
    );
    Ok(())
}

#[test]
fn http_1_0_closes_unless_keep_alive_is_asked() -> Result {
    let f = seed_host()?;
    let exp = Exporter::start(&[&f.flag()])?;
    let out = raw(exp.addr, b"GET /metrics HTTP/1.0\r\n\r\n")?;
    assert_eq!(status_of(&out), Some(200));
    let mut s = connect(exp.addr)?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")?;
    let kept = read_response(&mut s, Framing::Length)?;
    assert_eq!(kept.status, 200);
    // An HTTP/1.0 client assumes a close unless the response says otherwise.
    assert_eq!(kept.header("connection"), Some("keep-alive"));
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
    let last = read_response(&mut s, Framing::Length)?;
    assert_eq!(last.status, 200);
    assert_eq!(last.header("connection"), Some("close"));
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest)?, 0);
    Ok(())
}

#[test]
fn limits_give_their_statuses() -> Result {
    let f = seed_host()?;
    let exp = Exporter::start(&[&f.flag()])?;
    let long_line = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(3000));
    assert_eq!(status_of(&raw(exp.addr, long_line.as_bytes())?), Some(414));
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(status_of(&raw(exp.addr, big_head.as_bytes())?), Some(431));
    let many = format!(
        "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
        "X-A: b\r\n".repeat(101)
    );
    assert_eq!(status_of(&raw(exp.addr, many.as_bytes())?), Some(431));
    assert_eq!(status_of(&raw(exp.addr, b"GARBAGE\r\n\r\n")?), Some(400));
    Ok(())
}

#[test]
fn the_read_timeout_is_a_deadline_for_the_whole_head() -> Result {
    let f = seed_host()?;
    let exp = Exporter::start(&[&f.flag(), "--web.read-timeout=1"])?;
    let mut s = connect(exp.addr)?;
    let start = Instant::now();
    // One byte every 200 ms would refresh a per-read timeout forever.
    let mut got = Vec::new();
    for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n".iter() {
        if s.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        if start.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    s.set_read_timeout(Some(DEADLINE))?;
    let _ = s.read_to_end(&mut got);
    assert_eq!(
        status_of(&got),
        Some(408),
        "{:?}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "took {:?}",
        start.elapsed()
    );
    Ok(())
}

#[test]
fn idle_keep_alive_connections_are_closed() -> Result {
    let f = seed_host()?;
    let exp = Exporter::start(&[&f.flag(), "--web.idle-timeout=500ms"])?;
    let mut s = connect(exp.addr)?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")?;
    assert_eq!(read_response(&mut s, Framing::Length)?.status, 200);
    let start = Instant::now();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    assert!(rest.is_empty(), "an idle close sends nothing");
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    Ok(())
}

#[test]
fn a_silent_client_does_not_delay_others() -> Result {
    /// What a scrape of the seed host takes with room to spare on a loaded runner; a server
    /// that waited on the silent clients would take the whole read timeout.
    const PROMPT: Duration = Duration::from_secs(1);
    let f = seed_host()?;
    // A read timeout far past the test, so that no silent client is let go while it runs.
    let exp = Exporter::start(&[&f.flag(), "--web.read-timeout=60"])?;
    let idle = connect(exp.addr)?;
    let mut partial = connect(exp.addr)?;
    partial.write_all(b"GET /metr")?;
    let start = Instant::now();
    let r = exp.get("/metrics")?;
    let took = start.elapsed();
    assert_eq!(r.status, 200);
    assert!(
        took < PROMPT,
        "a scrape took {took:?} beside two silent clients"
    );
    // Both are still held: the scrape was served while they were waited on.
    for s in [&idle, &partial] {
        s.set_nonblocking(true)?;
        let still_open =
            matches!((&*s).read(&mut [0; 1]), Err(e) if e.kind() == ErrorKind::WouldBlock);
        assert!(
            still_open,
            "a silent client was let go before its read timeout"
        );
    }
    Ok(())
}

#[test]
fn connections_past_the_limit_get_503() -> Result {
    let f = seed_host()?;
    let exp = Exporter::start(&[&f.flag(), "--web.max-connections=2"])?;
    let a = connect(exp.addr)?;
    let b = connect(exp.addr)?;
    // Both held connections have threads once a third is refused.
    let refused = wait_for("a 503", DEADLINE, || {
        let out = raw(exp.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
        (status_of(&out) == Some(503)).then_some(out)
    })?;
    assert!(String::from_utf8_lossy(&refused).contains("Connection: close"));
    drop((a, b));
    wait_for("scrapes to work again", DEADLINE, || {
        exp.get("/metrics").ok().filter(|r| r.status == 200)
    })?;
    Ok(())
}

#[test]
fn scrapes_carry_no_cache_and_valid_lengths_under_concurrency() -> Result {
    let f = seed_host()?;
    let exp = Exporter::start(&[&f.flag()])?;
    let addr = exp.addr;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || -> std::result::Result<(), String> {
                let mut s = connect(addr).map_err(|e| e.to_string())?;
                for _ in 0..50 {
                    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                        .map_err(|e| e.to_string())?;
                    let r = read_response(&mut s, Framing::Length).map_err(|e| e.to_string())?;
                    if r.status != 200
                        || !r.text().contains("interface_status{interface=\"eth0\"} 1")
                    {
                        return Err(format!("bad scrape: {}", r.text()));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "thread panicked")??;
    }
    Ok(())
}

#[test]
fn promtool_accepts_the_output() -> Result {
    let f = seed_host()?;
    let exp = Exporter::start(&[&f.flag()])?;
    let body = exp.get("/metrics")?.body;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("promtool (Debian package prometheus) is needed: {e}"))?;
    child.stdin.take().ok_or("stdin")?.write_all(&body)?;
    let out = child.wait_with_output()?;
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn accept_errors_are_logged_and_survived() -> Result {
    let f = seed_host()?;
    // With 24 descriptors and a handful taken by the process itself, accepting a couple of
    // dozen connections runs into EMFILE.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(format!(
        "ulimit -n 24 && exec {BIN} --web.listen-address=127.0.0.1:0 {}",
        f.flag()
    ));
    let mut exp = Exporter::spawn(&mut cmd)?;
    let held: Vec<_> = (0..40).filter_map(|_| connect(exp.addr).ok()).collect();
    wait_for("an accept error in the log", DEADLINE, || {
        exp.log().contains("msg=\"accept failed\"").then_some(())
    })?;
    exp.assert_alive()?;
    drop(held);
    let r = wait_for("scrapes to work again", DEADLINE, || {
        exp.get("/metrics").ok().filter(|r| r.status == 200)
    })?;
    assert!(r.text().contains("interface_status{interface=\"eth0\"} 1"));
    Ok(())
}

#[test]
fn large_scrapes_are_streamed_with_an_exact_length() -> Result {
    // Over 64 KiB of body, so it leaves in several chunks after a counting pass.
    let f = Fixture::new()?;
    for n in 0..1500 {
        f.iface(
            &format!("veth{n:05}"),
            &[
                ("operstate", "up"),
                ("mtu", "1500"),
                ("ifalias", "a \"b\" \\ c"),
            ],
        )?;
    }
    let exp = Exporter::start(&[&f.flag()])?;
    let mut s = connect(exp.addr)?;
    for format in ["text/plain", "application/openmetrics-text"] {
        let req = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {format}\r\n\r\n");
        // Two in a row on one connection: the second parses only if the first's length was
        // exact.
        for _ in 0..2 {
            s.write_all(req.as_bytes())?;
            let r = read_response(&mut s, Framing::Length)?;
            assert_eq!(r.status, 200);
            let body = r.text();
            assert!(r.body.len() > 256 * 1024, "{}", r.body.len());
            assert_eq!(body.matches("interface_status{").count(), 1500);
            assert!(body.contains("interface_info{interface=\"veth01499\",address=\"\",duplex=\"\",ifalias=\"a \\\"b\\\" \\\\ c\",operstate=\"up\",ifindex=\"\",type=\"\",kind=\"\",master=\"\"} 1\n"));
            let last = if format == "text/plain" {
                "interfaces_exporter_scrape_errors 0\n"
            } else {
                "# EOF\n"
            };
            assert!(body.ends_with(last), "{}", &body[body.len() - 100..]);
        }
    }
    Ok(())
}

/// Polls `path` until it answers `status`, and returns that response.
fn wait_status(exp: &Exporter, path: &str, status: u16) -> Result<Response> {
    let mut last = None;
    wait_for(
        &format!("{path} to answer {status}"),
        Duration::from_secs(10),
        || {
            let r = exp.get(path).ok()?;
            if r.status == status {
                return Some(r);
            }
            last = Some(r.status);
            None
        },
    )
    .map_err(|e| format!("{e} (last status {last:?})").into())
}

#[test]
fn probes_say_healthy_always_and_ready_while_sysfs_can_be_listed() -> Result {
    let f = seed_host()?;
    let exp = Exporter::start(&[&f.flag(), "--collector.source=sysfs"])?;
    let check = |path: &str, status: u16, body: &str| -> Result {
        let r = exp.get(path)?;
        assert_eq!((r.status, r.text().as_str()), (status, body), "{path}");
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        Ok(())
    };
    check("/-/healthy", 200, "healthy\n")?;
    check("/-/ready", 200, "ready\n")?;
    for path in ["/-/healthy", "/-/ready"] {
        let head = request(
            exp.addr,
            &format!("HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
        )?;
        assert_eq!(head.status, 200, "HEAD {path}");
        assert!(head.body.is_empty(), "HEAD {path}");
        assert_eq!(
            head.header("content-length"),
            Some(if path == "/-/ready" { "6" } else { "8" })
        );
        let post = request(
            exp.addr,
            &format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
        )?;
        assert_eq!(post.status, 405, "POST {path}");
        assert_eq!(post.header("allow"), Some("GET, HEAD"));
    }

    // The mount goes away (an unmounted /host/sys looks the same): not ready, still healthy.
    let class_net = f.root().join("class/net");
    let moved = f.root().join("class/net.away");
    std::fs::rename(&class_net, &moved)?;
    let r = wait_status(&exp, "/-/ready", 503)?;
    let body = r.text();
    assert!(
        body.starts_with("503 service unavailable: not ready: cannot read ")
            && body.contains("class/net: no such file"),
        "{body}"
    );
    check("/-/healthy", 200, "healthy\n")?;
    assert_eq!(exp.get("/metrics")?.status, 503);

    std::fs::rename(&moved, &class_net)?;
    wait_status(&exp, "/-/ready", 200)?;
    check("/-/healthy", 200, "healthy\n")?;
    assert_eq!(exp.get("/metrics")?.status, 200);
    Ok(())
}

#[test]
fn probes_with_the_netlink_source_ask_for_a_socket_not_sysfs() -> Result {
    let ns = Netns::new()?;
    // A root with the namespace's idle lo, which forced netlink accepts; then it goes away,
    // and netlink, which needs none of it, stays ready.
    let f = Fixture::new()?;
    f.iface(
        "lo",
        &[
            ("operstate", "unknown"),
            ("ifindex", "1"),
            ("address", "00:00:00:00:00:00"),
            ("flags", "0x9"),
        ],
    )?;
    let exp = ns.exporter(&["--collector.source=netlink", &f.flag()])?;
    std::fs::rename(f.root().join("class/net"), f.root().join("class/net.away"))?;
    for path in ["/-/healthy", "/-/ready"] {
        let r = ns.get(&exp, path)?;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    Ok(())
}

#[test]
fn the_page_takes_refresh_0_and_refuses_other_values_with_400() -> Result {
    let f = seed_host()?;
    let exp = Exporter::start(&[&f.flag()])?;
    let refresh = "<meta http-equiv=\"refresh\" content=\"5\">";
    for (target, status, refreshes) in [
        ("/", 200, true),
        ("/?refresh=0", 200, false),
        ("/?from=grafana&refresh=0", 200, false),
        ("/?from=grafana", 200, true),
        ("http://x/?refresh=0", 200, false),
    ] {
        let r = exp.get(target)?;
        assert_eq!(r.status, status, "{target}");
        assert_eq!(r.text().contains(refresh), refreshes, "{target}");
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    }
    for target in [
        "/?refresh=10",
        "/?refresh=",
        "/?refresh=%30",
        "/?refresh=0&refresh=x",
    ] {
        let r = exp.get(target)?;
        assert_eq!(r.status, 400, "{target}");
        assert!(
            r.text().starts_with("400 bad request: refresh="),
            "{target}: {}",
            r.text()
        );
    }
    // The metrics path ignores its query, as service discovery adds parameters of its own.
    assert_eq!(exp.get("/metrics?refresh=x")?.status, 200);
    // The probes too, whatever the query.
    assert_eq!(exp.get("/-/ready?refresh=x")?.status, 200);
    Ok(())
}
