//! The exporter as a process among others: a stderr that nobody reads, signals meant for
//! someone else, a socket inherited in non-blocking mode, a host where `[::]` is IPv6 only.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::fs::OpenOptionsExt as _;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::util::*;

/// `O_NONBLOCK`, the same on x86_64 and aarch64.
const O_NONBLOCK: i32 = 0o4000;

/// How long a scrape may take while stderr is blocked: the issue's bound.
const SCRAPE_BOUND: Duration = Duration::from_secs(1);

/// The exporter with stderr a pipe the test reads only when it chooses to; killed on drop.
struct Unread {
    child: Child,
    stderr: Option<ChildStderr>,
    addr: SocketAddr,
}

impl Unread {
    /// Starts the exporter on 127.0.0.1:0 and reads its stderr up to the end of the listening
    /// line, not a byte further, so that the pipe holds whatever it writes from then on.
    fn start(args: &[&str]) -> Result<Unread> {
        let mut child = Command::new(BIN)
            .arg("--web.listen-address=127.0.0.1:0")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut stderr = child.stderr.take().ok_or("no stderr")?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        let addr = loop {
            if stderr.read(&mut byte)? == 0 {
                let _ = child.kill();
                let _ = child.wait();
                let text = String::from_utf8_lossy(&line).into_owned();
                return Err(format!("exporter exited before listening: {text}").into());
            }
            if byte[0] != b'\n' {
                line.push(byte[0]);
                continue;
            }
            let text = String::from_utf8_lossy(&line).into_owned();
            if let Some(addr) = text.split("msg=listening address=").nth(1) {
                break addr.trim().parse()?;
            }
            line.clear();
        };
        Ok(Unread {
            child,
            stderr: Some(stderr),
            addr,
        })
    }

    /// Fills the pipe behind the exporter's stderr to the last byte, through a second write end
    /// opened non-blocking, so that the exporter's next write to stderr blocks.
    fn fill_stderr(&self) -> Result<usize> {
        let mut pipe = OpenOptions::new()
            .write(true)
            .custom_flags(O_NONBLOCK)
            .open(format!("/proc/{}/fd/2", self.child.id()))?;
        let line = [b"filler ".as_slice(), &[b'.'; 56], b"\n"].concat();
        let chunk = line.repeat(64);
        let mut filled = 0;
        // Whole pages first (a write of up to a page is atomic: all or EAGAIN), then bytes.
        for piece in [chunk.as_slice(), b"\n"] {
            loop {
                match pipe.write(piece) {
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(filled)
    }

    /// Reads stderr from now on in a thread, into the returned buffer.
    fn drain_stderr(&mut self) -> Result<Arc<Mutex<String>>> {
        let mut stderr = self.stderr.take().ok_or("stderr already taken")?;
        let text = Arc::new(Mutex::new(String::new()));
        let shared = Arc::clone(&text);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut t) = shared.lock() {
                    t.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Ok(text)
    }
}

impl Drop for Unread {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one malformed request (logged at debug) and reads the answer for at most `wait`.
fn bad_request(addr: SocketAddr, wait: Duration) -> Result {
    let mut s = TcpStream::connect_timeout(&addr, SCRAPE_BOUND)?;
    s.set_read_timeout(Some(wait))?;
    s.write_all(b"BAD\r\n\r\n")?;
    let _ = s.shutdown(Shutdown::Write);
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink);
    Ok(())
}

/// A scrape that must be answered within [`SCRAPE_BOUND`].
fn timed_scrape(addr: SocketAddr) -> Result<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, SCRAPE_BOUND)?;
    s.set_read_timeout(Some(SCRAPE_BOUND))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")?;
    let response = read_response(&mut s, Framing::Length)
        .map_err(|e| format!("no answer within {SCRAPE_BOUND:?}: {e}"))?;
    assert_eq!(response.status, 200);
    assert!(response
        .text()
        .contains("interface_status{interface=\"eth0\"} 1"));
    Ok(start.elapsed())
}

/// The sum of `count=` over the lines with message `msg`.
fn counted(log: &str, msg: &str) -> u64 {
    let needle = format!("msg=\"{msg}\" count=");
    log.lines()
        .filter_map(|l| {
            l.split(&needle)
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

const DROPPED: &str = "log lines dropped, stderr was blocked";
const SUPPRESSED: &str = "log lines suppressed by the rate limit";

#[test]
fn a_blocked_stderr_never_stops_the_server() -> Result {
    let f = Fixture::new()?;
    f.ethernet("eth0", "up")?;
    // Few connection slots: a thread stuck on stderr would soon hold them all, and then the
    // accept thread would get stuck logging "connection limit reached".
    let mut exp = Unread::start(&["--log.level=debug", "--web.max-connections=4", &f.flag()])?;
    let filled = exp.fill_stderr()?;
    eprintln!("stderr pipe filled with {filled} bytes");

    // A burst of bad requests, each logged at debug, for longer than the rate limit's window,
    // so that more lines are let through than the queue holds.
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_millis(2500) {
        let _ = bad_request(exp.addr, Duration::from_millis(200));
        sent += 1;
    }
    eprintln!("{sent} bad requests sent");
    for _ in 0..5 {
        let took = timed_scrape(exp.addr)?;
        assert!(took < SCRAPE_BOUND, "a scrape took {took:?}");
    }

    let log = exp.drain_stderr()?;
    let dropped = wait_for("the count of dropped lines", DEADLINE, || {
        let n = counted(&log.lock().ok()?, DROPPED);
        (n > 0).then_some(n)
    })?;
    eprintln!("{dropped} lines dropped");
    let text = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert!(text.contains("msg=\"bad request\""), "{text}");
    // Once stderr is read again, the exporter still logs, and still serves.
    assert!(timed_scrape(exp.addr)? < SCRAPE_BOUND);
    Ok(())
}

#[test]
fn a_blocked_stderr_does_not_hold_up_exit() -> Result {
    let f = Fixture::new()?;
    f.ethernet("eth0", "up")?;
    let mut exp = Unread::start(&[&f.flag()])?;
    exp.fill_stderr()?;
    // The shutdown line cannot be written; the exporter exits anyway, and cleanly.
    run(Command::new("kill").args(["-TERM", &exp.child.id().to_string()]))?;
    let start = Instant::now();
    let status = wait_for("exit after SIGTERM", DEADLINE, || {
        exp.child.try_wait().ok().flatten()
    })?;
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "exit took {took:?}");
    assert!(status.success(), "{status}");
    Ok(())
}

#[test]
fn repeated_lines_are_rate_limited_with_a_count() -> Result {
    let f = Fixture::new()?;
    f.ethernet("eth0", "up")?;
    let exp = Exporter::start(&["--log.level=debug", &f.flag()])?;
    const SENT: u64 = 600;
    for _ in 0..SENT {
        bad_request(exp.addr, DEADLINE)?;
    }
    let (printed, suppressed) = wait_for("every bad request logged or counted", DEADLINE, || {
        let log = exp.log();
        let printed = log.matches("msg=\"bad request\"").count() as u64;
        let suppressed = counted(&log, SUPPRESSED);
        (printed + suppressed >= SENT).then_some((printed, suppressed))
    })?;
    eprintln!("{printed} lines printed, {suppressed} suppressed");
    assert!(printed < SENT, "nothing was suppressed:\n{}", exp.log());
    assert!(exp.log().contains("limit_per_second="));
    assert_eq!(exp.get("/metrics")?.status, 200);
    Ok(())
}

#[test]
fn other_signals_are_logged_and_ignored() -> Result {
    let f = Fixture::new()?;
    f.ethernet("eth0", "up")?;
    let mut exp = Exporter::start(&[&f.flag()])?;
    let pid = exp.pid().to_string();
    for name in ["HUP", "USR1", "USR2", "ALRM"] {
        run(Command::new("kill").args([&format!("-{name}"), &pid]))?;
        let line = format!("msg=\"signal received, ignored\" signal=SIG{name}");
        wait_for(&line, DEADLINE, || exp.log().contains(&line).then_some(()))?;
        exp.assert_alive()?;
        assert_eq!(exp.get("/metrics")?.status, 200, "after SIG{name}");
    }
    run(Command::new("kill").args(["-TERM", &pid]))?;
    let status = wait_for("exit after SIGTERM", DEADLINE, || {
        exp.child.try_wait().ok().flatten()
    })?;
    assert!(status.success(), "{status}");
    Ok(())
}

/// Creates a listening socket on 127.0.0.1, sets O_NONBLOCK on it as systemd's
/// `NonBlocking=yes` does, and execs the exporter with it as fd 3 and the socket activation
/// variables naming the exporter's own pid.
const NONBLOCKING_ACTIVATION: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
s.listen(128)
s.setblocking(False)
if s.fileno() != 3:
    os.dup2(s.fileno(), 3)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[1], sys.argv[1:])
"#;

#[test]
fn an_inherited_nonblocking_socket_is_served_without_warnings() -> Result {
    let f = Fixture::new()?;
    f.ethernet("eth0", "up")?;
    let exp = Exporter::spawn(
        Command::new("/usr/bin/python3")
            .args(["-c", NONBLOCKING_ACTIVATION, BIN])
            .args(["--web.systemd-socket", &f.flag()]),
    )?;
    // An idle while with no client: where EAGAIN counted as an accept error, this is when it
    // logged and backed off, ever longer.
    std::thread::sleep(Duration::from_secs(2));
    let took = timed_scrape(exp.addr)?;
    let log = exp.log();
    assert!(!log.contains("accept failed"), "{log}");
    assert!(
        took < Duration::from_millis(250),
        "first scrape took {took:?}"
    );
    Ok(())
}

#[test]
fn the_default_listener_answers_ipv4_where_bindv6only_is_set() -> Result {
    let f = Fixture::new()?;
    f.ethernet("eth0", "up")?;
    let ns = Netns::new()?;
    // bindv6only is per network namespace: this changes the test's namespace only.
    run(ns
        .cmd("sh")
        .args(["-c", "echo 1 > /proc/sys/net/ipv6/bindv6only"]))?;
    let sysctl = run(ns.cmd("cat").arg("/proc/sys/net/ipv6/bindv6only"))?;
    assert_eq!(sysctl.trim(), "1");
    let exp = Exporter::spawn(ns.cmd(BIN).args(["--web.listen-address=:0", &f.flag()]))?;
    let port = exp.addr.port();
    for host in ["127.0.0.1", "[::1]"] {
        let url = format!("http://{host}:{port}/metrics");
        let body = run(ns.cmd("curl").args(["-sfg", "--max-time", "10", &url]))
            .map_err(|e| format!("{url}: {e}"))?;
        assert!(
            body.contains("interface_status{interface=\"eth0\"} 1"),
            "{url}: {body}"
        );
    }
    Ok(())
}
