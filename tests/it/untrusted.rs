//! Issue 10's wrong-data holes: a scrape short of descriptors, interface names that are not
//! UTF-8, and a sysfs tree whose symlinks point out of the root. Each test fails on the code
//! before the fix: 200 with interfaces missing, duplicate series, a secret published.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use crate::util::*;

const PYTHON: &str = "/usr/bin/python3";

fn seccomp_py() -> PathBuf {
    repo().join("tests/it/seccomp.py")
}

/// The Accept header Prometheus sends, which gets OpenMetrics.
const OPENMETRICS: &str = "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;q=0.3";

fn scrape_openmetrics(exp: &Exporter) -> Result<Response> {
    request(
        exp.addr,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: test\r\nAccept: {OPENMETRICS}\r\nConnection: close\r\n\r\n"
        ),
    )
}

// ---------------------------------------------------------------------------------------------
// Descriptors

/// A host with many interfaces, each with an operstate only: enough for a scan to need a few
/// descriptors per interface and for a partial listing to show.
fn many_interfaces(n: usize) -> Result<Fixture> {
    let f = Fixture::new()?;
    for i in 0..n {
        f.iface(&format!("eth{i}"), &[("operstate", "up")])?;
    }
    Ok(f)
}

/// The exporter under `prlimit --nofile=SOFT:HARD`, optionally inside `seccomp.py RULES --`.
fn exporter_with_nofile(f: &Fixture, soft: u32, hard: u32, seccomp: &[&str]) -> Result<Exporter> {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={soft}:{hard}"));
    if !seccomp.is_empty() {
        cmd.arg(PYTHON).arg(seccomp_py()).args(seccomp).arg("--");
    }
    cmd.arg(BIN)
        .arg("--web.listen-address=127.0.0.1:0")
        .arg(f.flag());
    Exporter::spawn(&mut cmd)
}

/// `(soft, hard)` of "Max open files" in /proc/PID/limits.
fn nofile_limits(pid: u32) -> Result<(String, String)> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits"))?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .ok_or("no Max open files in /proc/PID/limits")?;
    let mut words = line["Max open files".len()..].split_whitespace();
    let soft = words.next().ok_or("no soft limit")?.to_owned();
    let hard = words.next().ok_or("no hard limit")?.to_owned();
    Ok((soft, hard))
}

#[derive(Default)]
struct Tally {
    whole: AtomicUsize,
    unavailable: AtomicUsize,
    /// Requests that got no response at all (a connection the server could not accept).
    unanswered: AtomicUsize,
}

/// `clients` threads each scrape `rounds` times at once; every response must be a 503 or a
/// 200 that lists all `n` interfaces.
fn scrape_concurrently(exp: &Exporter, n: usize, clients: usize, rounds: usize) -> Result<Tally> {
    let tally = Arc::new(Tally::default());
    let addr = exp.addr;
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let tally = Arc::clone(&tally);
            thread::spawn(move || -> std::result::Result<(), String> {
                for _ in 0..rounds {
                    let r = match get(addr, "/metrics") {
                        Ok(r) => r,
                        Err(_) => {
                            tally.unanswered.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                    };
                    match r.status {
                        200 => {
                            let listed = r
                                .text()
                                .lines()
                                .filter(|l| l.starts_with("interface_status{"))
                                .count();
                            if listed != n {
                                return Err(format!(
                                    "200 with {listed} of {n} interfaces: a wrong 200"
                                ));
                            }
                            tally.whole.fetch_add(1, Ordering::Relaxed);
                        }
                        503 => {
                            tally.unavailable.fetch_add(1, Ordering::Relaxed);
                        }
                        other => return Err(format!("status {other}: {}", r.text())),
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| "client thread panicked")??;
    }
    Arc::try_unwrap(tally).map_err(|_| "tally still shared".into())
}

#[test]
fn out_of_descriptors_a_scrape_answers_503_never_a_partial_200() -> Result {
    const N: usize = 1000;
    let f = many_interfaces(N)?;
    // Hard limits too low for raising the soft one to help: 8 leaves one or two descriptors
    // for a scan after stdio, the listener and a connection. With 40, concurrent scrapes share
    // one scan, so clients alone do not run it out; 31 idle connections held open leave two
    // descriptors for a scan that needs more.
    for (limit, clients, rounds, idle) in [(8, 4, 3, 0), (40, 4, 2, 31)] {
        let mut exp = exporter_with_nofile(&f, limit, limit, &[])?;
        let held = (0..idle)
            .map(|_| std::net::TcpStream::connect(exp.addr))
            .collect::<std::io::Result<Vec<_>>>()?;
        let fd_dir = format!("/proc/{}/fd", exp.pid());
        wait_for("the idle connections accepted", DEADLINE, || {
            let open = std::fs::read_dir(&fd_dir).ok()?.count();
            (open >= 4 + idle).then_some(())
        })?;
        let tally = scrape_concurrently(&exp, N, clients, rounds)?;
        drop(held);
        let (whole, unavailable, unanswered) = (
            tally.whole.load(Ordering::Relaxed),
            tally.unavailable.load(Ordering::Relaxed),
            tally.unanswered.load(Ordering::Relaxed),
        );
        eprintln!(
            "descriptors: nofile {limit}, {clients} clients x {rounds}: {whole} whole 200, \
             {unavailable} 503, {unanswered} unanswered"
        );
        exp.assert_alive()?;
        assert!(
            unavailable > 0,
            "nofile {limit}: no scrape ran out of descriptors, so the test proves nothing"
        );
        let log = exp.log();
        assert!(
            log.contains("scan failed, answering 503") && log.contains("open files"),
            "the 503s are logged with their reason:\n{log}"
        );
        // Once the crowd is gone, a lone scrape fits in the limit again.
        if limit == 40 {
            wait_for("a 200 once the idle connections are gone", DEADLINE, || {
                (exp.get("/metrics").ok()?.status == 200).then_some(())
            })?;
        }
    }
    Ok(())
}

#[test]
fn the_soft_descriptor_limit_is_raised_to_the_hard_one() -> Result {
    const N: usize = 100;
    let f = many_interfaces(N)?;
    // Soft 64 is too few for 24 clients scraping at once (a connection and up to three
    // descriptors each); hard 4096 is plenty, if the exporter takes it.
    let exp = exporter_with_nofile(&f, 64, 4096, &[])?;
    assert_eq!(
        nofile_limits(exp.pid())?,
        ("4096".to_owned(), "4096".to_owned())
    );
    let tally = scrape_concurrently(&exp, N, 24, 2)?;
    assert_eq!(tally.whole.load(Ordering::Relaxed), 24 * 2);
    assert!(!exp.log().contains("cannot raise"), "{}", exp.log());
    Ok(())
}

#[test]
fn a_refused_limit_raise_is_a_warning_and_it_still_serves() -> Result {
    let f = many_interfaces(3)?;
    // As a system-call filter refuses it: glibc and musl ask prlimit64 for both getrlimit
    // and setrlimit, older libcs setrlimit.
    let exp = exporter_with_nofile(&f, 64, 4096, &["prlimit64=EPERM", "setrlimit=EPERM"])?;
    assert_eq!(
        nofile_limits(exp.pid())?,
        ("64".to_owned(), "4096".to_owned())
    );
    let r = exp.get("/metrics")?;
    assert_eq!(r.status, 200);
    assert_eq!(
        sample(&r.text(), "interface_status{interface=\"eth2\"}").as_deref(),
        Some("1")
    );
    let log = exp.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("level=warn") && l.contains("cannot raise the open-file limit"))
        .collect();
    assert_eq!(warnings.len(), 1, "{log}");
    assert!(warnings[0].contains("err="), "{}", warnings[0]);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Names

/// Names that collided before, or could collide under a careless escape; each with the label
/// value it must get.
const NAMES: &[(&[u8], &str)] = &[
    (b"eth0", "eth0"),
    (b"\xff\xfe", "/xff/xfe"),
    (b"\xff\xfd", "/xff/xfd"),
    (b"\xef\xbf\xbd\xef\xbf\xbd", "\u{fffd}\u{fffd}"),
    (b"\\xff", "\\xff"),
    (b"\\xff\xff", "\\xff/xff"),
    (b"\\\\", "\\\\"),
    (b"x\xff", "x/xff"),
    (b"xff", "xff"),
    (b"\xe2\x82", "/xe2/x82"),
    (b"\xc0\xaf", "/xc0/xaf"),
    (b"\x80", "/x80"),
    (b"a\"b", "a\"b"),
];

/// Prints the `interface` label of every `interface_status` sample, one per line, as the
/// prometheus_client package (Debian's python3-prometheus-client) parses the body.
const LABELS: &str = r#"
import sys
if sys.argv[1] == "openmetrics":
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
else:
    from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.buffer.read().decode("utf-8")):
    for s in family.samples:
        if s.name == "interface_status":
            sys.stdout.buffer.write(s.labels["interface"].encode("utf-8") + b"\n")
"#;

fn parsed_labels(format: &str, body: &[u8]) -> Result<Vec<String>> {
    let out = pipe(Command::new(PYTHON).args(["-c", LABELS, format]), body)
        .map_err(|e| format!("the {format} parser rejected the body: {e}"))?;
    Ok(String::from_utf8(out.stdout)?
        .lines()
        .map(str::to_owned)
        .collect())
}

#[test]
fn names_that_are_not_utf8_get_distinct_series_and_rows() -> Result {
    let f = Fixture::new()?;
    for (name, _) in NAMES {
        f.iface_under("virtual", OsStr::from_bytes(name), &[("operstate", "up")])?;
    }
    let exp = Exporter::start(&[&f.flag()])?;
    let mut expected: Vec<String> = NAMES.iter().map(|(_, l)| (*l).to_owned()).collect();
    expected.sort();
    let text = exp.get("/metrics")?;
    let om = scrape_openmetrics(&exp)?;
    assert_eq!(text.status, 200);
    assert_eq!(om.status, 200);
    assert!(om
        .header("content-type")
        .unwrap_or("")
        .contains("openmetrics"));
    for (format, body) in [("text", &text.body), ("openmetrics", &om.body)] {
        let mut labels = parsed_labels(format, body)?;
        labels.sort();
        assert_eq!(labels, expected, "{format}");
    }
    let page = exp.get("/")?;
    assert_eq!(page.status, 200);
    let html = page.text();
    for (_, label) in NAMES {
        let cell = label.replace('"', "&quot;");
        assert_eq!(
            html.matches(&format!("<td>{cell}</td>")).count(),
            1,
            "{label:?} once on the page:\n{html}"
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The root

/// A sysfs root whose symlinks try every way out, next to a secret outside it.
struct Escapes {
    f: Fixture,
    secret: String,
    /// Interfaces that must be reported, whole or without the attribute that escapes.
    good: Vec<&'static str>,
    /// class/net entries that lead out and must not be reported.
    evil: Vec<&'static str>,
    /// What the escapes cost in interfaces_exporter_scrape_errors.
    errors: u64,
}

fn escapes() -> Result<Escapes> {
    let f = Fixture::new()?;
    let secret = unique("SECRET-");
    // Outside the root: a file with the secret, and interface-shaped directories full of it.
    let outside = f.dir.0.join("outside");
    let secret_file = f.dir.0.join("secret");
    std::fs::write(&secret_file, format!("{secret}\n"))?;
    let fake_iface = |dir: PathBuf| -> Result {
        std::fs::create_dir_all(dir.join("statistics"))?;
        for (attr, value) in [
            ("operstate", "up".to_owned()),
            ("ifalias", secret.clone()),
            ("address", secret.clone()),
            ("statistics/rx_bytes", "424242424242".to_owned()),
        ] {
            std::fs::write(dir.join(attr), format!("{value}\n"))?;
        }
        Ok(())
    };
    fake_iface(outside.join("net/x"))?;
    fake_iface(outside.join("bus/net/devabs"))?;
    fake_iface(outside.join("bus2/net/devrel"))?;
    fake_iface(outside.join("stats"))?;
    let root = f.root();
    let class_net = root.join("class/net");

    f.ethernet("eth0", "up")?;
    // class/net entries that lead out: absolute, relative, and far above the root.
    symlink(outside.join("net/x"), class_net.join("evilabs"))?;
    symlink("../../../outside/net/x", class_net.join("evilrel"))?;
    symlink("../../../../../../../..", class_net.join("evilup"))?;
    // A device path component symlinked out, absolutely and relatively: the class/net entry
    // looks like the kernel's own.
    symlink(outside.join("bus"), root.join("devices/absbus"))?;
    symlink("../../outside/bus2", root.join("devices/relbus"))?;
    symlink("../../devices/absbus/net/devabs", class_net.join("devabs"))?;
    symlink("../../devices/relbus/net/devrel", class_net.join("devrel"))?;
    // Interfaces that are fine, with one attribute that leads out: absolute, relative, to a
    // sibling inside (attributes are never symlinks in sysfs, so none is followed), and a
    // statistics directory symlinked out.
    for (name, target) in [
        ("aliasabs", secret_file.clone()),
        ("aliasrel", PathBuf::from("../../../../../secret")),
        ("aliasin", PathBuf::from("address")),
    ] {
        let dir = f.ethernet(name, "up")?;
        std::fs::remove_file(dir.join("ifalias"))?;
        symlink(target, dir.join("ifalias"))?;
    }
    let dir = f.ethernet("statsout", "up")?;
    std::fs::remove_dir_all(dir.join("statistics"))?;
    symlink(outside.join("stats/statistics"), dir.join("statistics"))?;
    Ok(Escapes {
        f,
        secret,
        good: vec!["eth0", "aliasabs", "aliasrel", "aliasin", "statsout"],
        evil: vec!["evilabs", "evilrel", "evilup", "devabs", "devrel"],
        // One per evil entry, one per escaping ifalias, and each of the 24 statistics files
        // sysfs has.
        errors: 5 + 3 + 24,
    })
}

/// Scrapes both pages and checks that nothing from outside the root shows.
fn check_escapes(e: &Escapes, exp: &Exporter, how: &str) -> Result {
    let metrics = exp.get("/metrics")?;
    assert_eq!(metrics.status, 200, "{how}: {}", metrics.text());
    let body = metrics.text();
    let page = exp.get("/")?;
    assert_eq!(page.status, 200, "{how}");
    let html = page.text();
    for (what, text) in [("/metrics", &body), ("/", &html)] {
        assert!(
            !text.contains(&e.secret),
            "{how}: the secret on {what}:\n{text}"
        );
        assert!(
            !text.contains("424242424242"),
            "{how}: outside counter on {what}"
        );
    }
    for name in &e.good {
        assert_eq!(
            sample(&body, &format!("interface_status{{interface=\"{name}\"}}")).as_deref(),
            Some("1"),
            "{how}: {name}:\n{body}"
        );
        assert!(html.contains(&format!("<td>{name}</td>")), "{how}: {name}");
    }
    for name in &e.evil {
        assert!(
            !body.contains(&format!("\"{name}\"")) && !html.contains(name),
            "{how}: {name} is outside the root:\n{body}"
        );
    }
    // What could be read of the interfaces with an escaping attribute is there.
    assert_eq!(
        sample(
            &body,
            "interface_receive_bytes_total{interface=\"aliasabs\"}"
        )
        .as_deref(),
        Some("123456789012"),
        "{how}"
    );
    assert_eq!(
        sample(
            &body,
            "interface_receive_bytes_total{interface=\"statsout\"}"
        ),
        None,
        "{how}"
    );
    assert!(
        body.contains("interface_info{interface=\"aliasin\",address=\"52:54:00:12:34:56\",duplex=\"full\",ifalias=\"\","),
        "{how}: an ifalias symlinked to its sibling is not followed either:\n{body}"
    );
    assert_eq!(
        sample(&body, "interfaces_exporter_scrape_errors"),
        Some(e.errors.to_string()),
        "{how}:\n{body}"
    );
    Ok(())
}

#[test]
fn symlinks_out_of_the_root_are_not_followed() -> Result {
    let e = escapes()?;
    let exp = Exporter::start(&[&e.f.flag(), "--collector.statistics"])?;
    check_escapes(&e, &exp, "openat2")
}

#[test]
fn without_openat2_symlinks_out_of_the_root_are_not_followed_either() -> Result {
    let e = escapes()?;
    let mut cmd = Command::new(PYTHON);
    cmd.arg(seccomp_py())
        .args(["openat2=ENOSYS", "--", BIN])
        .args(["--web.listen-address=127.0.0.1:0", "--collector.statistics"])
        .arg(e.f.flag());
    let exp = Exporter::spawn(&mut cmd)?;
    check_escapes(&e, &exp, "without openat2")
}
