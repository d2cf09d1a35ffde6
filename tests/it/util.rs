//! The harness: temp sysfs trees laid out as the kernel lays them out, the real binary started
//! on port 0, a raw HTTP client, and network namespaces.

use std::io::{BufRead, BufReader, ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

pub const BIN: &str = env!("CARGO_BIN_EXE_interfaces_exporter");

/// How long anything in a test may take to happen before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique name for temp dirs and namespaces, so that tests run in parallel.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Result<TempDir> {
        let dir = std::env::temp_dir().join(unique("ie-test-"));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = Command::new("chmod")
            .arg("-R")
            .arg("u+rwx")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sysfs tree: `class/net/<name>` are relative symlinks to `devices/<bus>/net/<name>`, as
/// the kernel lays them out.
pub struct Fixture {
    pub dir: TempDir,
}

impl Fixture {
    pub fn new() -> Result<Fixture> {
        let dir = TempDir::new()?;
        std::fs::create_dir_all(dir.0.join("sys/class/net"))?;
        std::fs::create_dir_all(dir.0.join("sys/devices/virtual/net"))?;
        Ok(Fixture { dir })
    }

    pub fn root(&self) -> PathBuf {
        self.dir.0.join("sys")
    }

    /// The flag that points the exporter at this tree.
    pub fn flag(&self) -> String {
        format!("--path.sysfs={}", self.root().display())
    }

    /// Adds a virtual interface with attribute files; values get the kernel's trailing newline.
    pub fn iface(&self, name: &str, attrs: &[(&str, &str)]) -> Result<PathBuf> {
        self.iface_under("virtual", name.as_ref(), attrs)
    }

    /// Adds an interface under `devices/<bus>`, e.g. `pci0000:00/0000:00:03.0`.
    pub fn iface_under(
        &self,
        bus: &str,
        name: &std::ffi::OsStr,
        attrs: &[(&str, &str)],
    ) -> Result<PathBuf> {
        let dev = self.root().join("devices").join(bus).join("net").join(name);
        std::fs::create_dir_all(dev.join("statistics"))?;
        for (attr, value) in attrs {
            std::fs::write(dev.join(attr), format!("{value}\n"))?;
        }
        // Relative to class/net/: up to the root, then into devices/.
        let target = PathBuf::from("../../devices")
            .join(bus)
            .join("net")
            .join(name);
        symlink(target, self.root().join("class/net").join(name))?;
        Ok(dev)
    }

    /// A typical up interface with every attribute the exporter reads.
    pub fn ethernet(&self, name: &str, operstate: &str) -> Result<PathBuf> {
        let up = operstate == "up";
        self.iface(
            name,
            &[
                ("operstate", operstate),
                ("flags", if up { "0x1003" } else { "0x1002" }),
                ("carrier", if up { "1" } else { "0" }),
                ("carrier_changes", "4"),
                ("carrier_up_count", "2"),
                ("carrier_down_count", "2"),
                ("mtu", "1500"),
                ("speed", "1000"),
                ("address", "52:54:00:12:34:56"),
                ("duplex", "full"),
                ("ifalias", ""),
                ("statistics/rx_bytes", "123456789012"),
                ("statistics/rx_packets", "1000"),
                ("statistics/rx_errors", "1"),
                ("statistics/rx_dropped", "2"),
                ("statistics/tx_bytes", "18446744073709551615"),
                ("statistics/tx_packets", "900"),
                ("statistics/tx_errors", "0"),
                ("statistics/tx_dropped", "3"),
            ],
        )
    }
}

/// The seed's example host, as a fixture: states from its blog post, plus a regular file in
/// `class/net` that is not an interface.
pub fn seed_host() -> Result<Fixture> {
    let f = Fixture::new()?;
    for (name, state) in [
        ("br-af9ffbaf4aff", "down"),
        ("dm-8295e7c648f8", "unknown"),
        ("docker0", "up"),
        ("dummy0", "down"),
        ("eth1", "up"),
        ("lo", "unknown"),
        ("veth1f58e81", "up"),
        ("vethb244e2b", "lowerlayerdown"),
        ("wg0", "dormant"),
    ] {
        f.iface(name, &[("operstate", state)])?;
    }
    f.iface_under(
        "pci0000:00/0000:00:03.0",
        std::ffi::OsStr::new("eth0"),
        &[("operstate", "up")],
    )?;
    std::fs::write(f.root().join("class/net/bonding_masters"), "\n")?;
    Ok(f)
}

/// The exporter, running; killed on drop.
pub struct Exporter {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

impl Exporter {
    /// Starts the binary on 127.0.0.1:0 with `args` and waits for its listening line.
    pub fn start(args: &[&str]) -> Result<Exporter> {
        let mut all = vec!["--web.listen-address=127.0.0.1:0"];
        all.extend_from_slice(args);
        Exporter::spawn(Command::new(BIN).args(&all))
    }

    /// Starts any command that runs the exporter, and waits for its first listening line.
    pub fn spawn(cmd: &mut Command) -> Result<Exporter> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("no stderr")?;
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if !sent {
                    if let Some(addr) = line.split("msg=listening address=").nth(1) {
                        let _ = tx.send(addr.trim().to_owned());
                        sent = true;
                    }
                }
                if let Ok(mut log) = log2.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        let addr = match rx.recv_timeout(DEADLINE) {
            Ok(a) => a.parse()?,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let log = log.lock().map(|l| l.clone()).unwrap_or_default();
                return Err(format!("exporter did not start listening:\n{log}").into());
            }
        };
        Ok(Exporter { child, addr, log })
    }

    pub fn get(&self, path: &str) -> Result<Response> {
        get(self.addr, path)
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails unless the process is still running.
    pub fn assert_alive(&mut self) -> Result {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(format!("exporter exited: {status}\n{}", self.log()).into()),
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    /// Header lines as `(lowercase name, value)`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub fn connect(addr: SocketAddr) -> Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, DEADLINE)?;
    s.set_read_timeout(Some(DEADLINE))?;
    s.set_write_timeout(Some(DEADLINE))?;
    Ok(s)
}

pub fn get(addr: SocketAddr, path: &str) -> Result<Response> {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"),
    )
}

/// Sends one request on a new connection and reads one response.
pub fn request(addr: SocketAddr, req: &str) -> Result<Response> {
    let mut s = connect(addr)?;
    s.write_all(req.as_bytes())?;
    let framing = if req.starts_with("HEAD ") {
        Framing::HeadOnly
    } else {
        Framing::Length
    };
    read_response(&mut s, framing)
}

/// How the body of a response is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// By a Content-Length that stands exactly once: how the exporter frames every response.
    Length,
    /// The answer to a HEAD: a Content-Length that stands exactly once, and no body.
    HeadOnly,
    /// By Content-Length where there is one, else by the close: another server's answer to an
    /// HTTP/1.0 request (Prometheus's API sends long answers that way).
    LengthOrClose,
}

/// A response head longer than this is not one the exporter (or Prometheus) writes.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Reads one response from a stream that may carry more, and not a byte past its end, so that
/// the caller can go on reading the stream itself (the next response, or the close).
pub fn read_response(s: &mut TcpStream, framing: Framing) -> Result<Response> {
    // A one-byte buffer reads the head byte by byte; a body longer than the buffer is read
    // straight into its place, to its exact length.
    next_response(&mut BufReader::with_capacity(1, &*s), framing)
}

/// Parses `bytes` as exactly one response: anything after it is an error, as is a response
/// cut short.
pub fn parse_response(bytes: &[u8], framing: Framing) -> Result<Response> {
    let mut rest = bytes;
    let r = next_response(&mut rest, framing)?;
    if !rest.is_empty() {
        return Err(format!(
            "{} bytes after a {} response: {:?}",
            rest.len(),
            r.status,
            String::from_utf8_lossy(&rest[..rest.len().min(200)])
        )
        .into());
    }
    Ok(r)
}

/// Reads one response, strictly: a status line `HTTP/1.x NNN reason`, header lines with a
/// colon, at most one Content-Length (digits only), and no Transfer-Encoding, which the
/// exporter never sends (a chunked body would otherwise be taken for the next response).
pub fn next_response(r: &mut impl BufRead, framing: Framing) -> Result<Response> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let available = match r.fill_buf() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other?,
        };
        if available.is_empty() {
            return Err(format!(
                "connection closed inside a head: {:?}",
                String::from_utf8_lossy(&head)
            )
            .into());
        }
        // Up to the end of the head and no further: what follows is the body's.
        let mut taken = 0;
        for &b in available {
            head.push(b);
            taken += 1;
            if head.ends_with(b"\r\n\r\n") {
                break;
            }
        }
        r.consume(taken);
        if head.len() > MAX_RESPONSE_HEAD {
            return Err(format!("a response head past {MAX_RESPONSE_HEAD} bytes").into());
        }
    }
    let head = String::from_utf8(head)?;
    let mut lines = head.strip_suffix("\r\n\r\n").unwrap_or(&head).split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| {
            rest.get(..3)
                .filter(|_| rest.as_bytes().get(3) == Some(&b' '))
        })
        .filter(|code| code.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("not a status line: {status_line:?}"))?
        .parse()?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .filter(|(n, _)| !n.is_empty() && !n.contains([' ', '\t']))
            .ok_or_else(|| format!("not a header line: {line:?}"))?;
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    if headers.iter().any(|(n, _)| n == "transfer-encoding") {
        return Err(format!("a transfer-encoding, which is refused: {head:?}").into());
    }
    let lengths: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.as_str())
        .collect();
    let length = match lengths[..] {
        [] => None,
        [v] if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Some(v.parse::<usize>()?),
        _ => return Err(format!("not one valid Content-Length: {head:?}").into()),
    };
    let mut body = Vec::new();
    match (framing, length) {
        (Framing::HeadOnly, Some(_)) => {}
        (Framing::Length | Framing::LengthOrClose, Some(n)) => {
            body.resize(n, 0);
            r.read_exact(&mut body)
                .map_err(|e| format!("a body shorter than its Content-Length {n}: {e}"))?;
        }
        (Framing::LengthOrClose, None) => {
            r.read_to_end(&mut body)?;
        }
        (Framing::Length | Framing::HeadOnly, None) => {
            return Err(format!("no Content-Length: {head:?}").into())
        }
    }
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Sends raw bytes, then reads whatever comes back until the server closes (or the deadline).
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>> {
    Ok(exchange(addr, bytes, DEADLINE)?.bytes)
}

/// How a connection ended, seen from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closed it (FIN).
    Closed,
    /// The server closed it with input unread (RST), or the write side failed.
    Reset,
    /// Still open when the time was up: the server hangs.
    Open,
}

/// Reads until the server closes or `limit` passes.
pub fn read_until_close(s: &mut TcpStream, limit: Duration) -> (Vec<u8>, End) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return (out, End::Open);
        }
        let _ = s.set_read_timeout(Some(deadline - now));
        match s.read(&mut buf) {
            Ok(0) => return (out, End::Closed),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(_) => return (out, End::Reset),
        }
    }
}

/// What one exchange on a fresh connection brought back.
pub struct Exchange {
    pub bytes: Vec<u8>,
    pub end: End,
    pub took: Duration,
}

impl Exchange {
    /// How many responses the server wrote, each read whole by [`next_response`]; bytes that do
    /// not make a whole response count as one more, so that garbage is never taken for silence.
    pub fn responses(&self) -> usize {
        let mut rest = &self.bytes[..];
        let mut n = 0;
        while !rest.is_empty() {
            n += 1;
            if next_response(&mut rest, Framing::Length).is_err() {
                break;
            }
        }
        n
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Sends `input` in one write on a new connection and reads until the server closes.
pub fn exchange(addr: SocketAddr, input: &[u8], limit: Duration) -> Result<Exchange> {
    let start = Instant::now();
    let mut s = connect(addr)?;
    // The server may refuse and close before it took everything, which is its right.
    let _ = s.write_all(input);
    let (bytes, end) = read_until_close(&mut s, limit);
    Ok(Exchange {
        bytes,
        end,
        took: start.elapsed(),
    })
}

/// A keep-alive client that reads many bytes per read, for tests that send thousands of
/// requests; its responses are read as strictly as any other.
pub struct Client {
    pub stream: BufReader<TcpStream>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Result<Client> {
        Ok(Client {
            stream: BufReader::with_capacity(64 * 1024, connect(addr)?),
        })
    }

    /// Sends `req` (nothing when empty) and reads one response, whose status it returns.
    pub fn send(&mut self, req: &[u8]) -> Result<u16> {
        self.stream.get_mut().write_all(req)?;
        Ok(next_response(&mut self.stream, Framing::Length)?.status)
    }
}

/// The status code of the first response in `bytes`, if any.
pub fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Fails unless every line of `body` is a comment or `name{labels} value`, in the text format.
pub fn check_exposition(body: &str) -> std::result::Result<(), String> {
    fn name_end(s: &str, colon: bool) -> usize {
        s.char_indices()
            .find(|&(i, c)| {
                !(c == '_'
                    || c.is_ascii_alphabetic()
                    || i > 0 && c.is_ascii_digit()
                    || colon && c == ':')
            })
            .map_or(s.len(), |(i, _)| i)
    }
    for line in body.lines() {
        let bad = || format!("malformed line {line:?}");
        if let Some(rest) = line.strip_prefix("# ") {
            let rest = rest
                .strip_prefix("HELP ")
                .or_else(|| rest.strip_prefix("TYPE "))
                .ok_or_else(bad)?;
            if name_end(rest, true) == 0 {
                return Err(bad());
            }
            continue;
        }
        let n = name_end(line, true);
        if n == 0 {
            return Err(bad());
        }
        let mut rest = &line[n..];
        if let Some(labels) = rest.strip_prefix('{') {
            rest = labels;
            loop {
                let n = name_end(rest, false);
                if n == 0 {
                    return Err(bad());
                }
                rest = rest[n..].strip_prefix("=\"").ok_or_else(bad)?;
                let mut chars = rest.char_indices();
                let close = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\' | '"' | 'n')) => {}
                            _ => return Err(bad()),
                        },
                        Some((_, '\n')) => return Err(bad()),
                        Some((i, '"')) => break i,
                        Some(_) => {}
                        None => return Err(bad()),
                    }
                };
                rest = &rest[close + 1..];
                if let Some(r) = rest.strip_prefix(',') {
                    rest = r;
                } else {
                    rest = rest.strip_prefix('}').ok_or_else(bad)?;
                    break;
                }
            }
        }
        let value = rest.strip_prefix(' ').ok_or_else(bad)?;
        if value.parse::<f64>().is_err() && !["+Inf", "-Inf", "NaN"].contains(&value) {
            return Err(bad());
        }
    }
    Ok(())
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= end {
            return Err(format!("timed out waiting for {what}").into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs a command and fails with its output unless it succeeds.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    Ok(String::from_utf8_lossy(&succeeded(cmd, out)?.stdout).into_owned())
}

/// `out`, unless `cmd` failed: then an error with all it printed.
fn succeeded(cmd: &Command, out: std::process::Output) -> Result<std::process::Output> {
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(out)
}

/// Runs a command with `input` on its stdin and fails with its output unless it succeeds.
pub fn pipe(cmd: &mut Command, input: &[u8]) -> Result<std::process::Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{cmd:?}: {e} (scripts/test.sh installs it)"))?;
    child.stdin.take().ok_or("no stdin")?.write_all(input)?;
    succeeded(cmd, child.wait_with_output()?)
}

/// The static build for `target`, which scripts/test.sh builds first.
pub fn static_binary(target: &str) -> Result<PathBuf> {
    let path = repo()
        .join("target")
        .join(target)
        .join("release/interfaces_exporter");
    if !path.exists() {
        return Err(format!(
            "{} is missing: scripts/test.sh builds it with scripts/build-static.sh {target}",
            path.display()
        )
        .into());
    }
    Ok(path)
}

/// Sends `signal` (`-TERM`, `-INT`) to `pid` and waits for `child` (which is `pid` or runs it)
/// to exit; returns how it exited and how long that took.
pub fn stop(
    signal: &str,
    pid: u32,
    child: &mut Child,
) -> Result<(std::process::ExitStatus, Duration)> {
    run(Command::new("kill").args([signal, &pid.to_string()]))?;
    let start = Instant::now();
    let status = wait_for(&format!("exit after {signal}"), DEADLINE, || {
        child.try_wait().ok().flatten()
    })?;
    Ok((status, start.elapsed()))
}

pub fn sh(script: &str) -> Result<String> {
    run(Command::new("sh").arg("-ec").arg(script))
}

/// The value of a sample line `name{labels} value` in an exposition body.
pub fn sample(body: &str, series: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
}

/// Fails unless each series has the value given in `body`, `None` meaning no such sample;
/// every mismatch is named at once.
#[track_caller]
pub fn assert_samples(body: &str, expected: &[(&str, Option<&str>)]) {
    let wrong: Vec<String> = expected
        .iter()
        .filter_map(|&(series, value)| {
            let got = sample(body, series);
            (got.as_deref() != value).then(|| format!("{series}: {got:?}, expected {value:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "{}\n{body}", wrong.join("\n"));
}

/// A network namespace, deleted on drop with everything in it.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Result<Netns> {
        if !is_root() {
            return Err(
                "this test creates network namespaces and must run as root (CI does)".into(),
            );
        }
        let name = unique("ie-");
        run(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Netns { name };
        ns.ip("link set lo up")?;
        Ok(ns)
    }

    /// A namespace with a veth pair `ie-a` <-> `ie-b`, both up.
    pub fn with_pair() -> Result<Netns> {
        let ns = Netns::new()?;
        ns.ip("link add ie-a type veth peer name ie-b")?;
        ns.ip("link set ie-a up")?;
        ns.ip("link set ie-b up")?;
        Ok(ns)
    }

    /// Runs `ip <args>` inside the namespace.
    pub fn ip(&self, args: &str) -> Result<String> {
        run(Command::new("ip")
            .args(["-n", &self.name])
            .args(args.split_whitespace()))
    }

    /// A command that runs inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Starts the exporter inside the namespace (it sees the namespace's own sysfs).
    pub fn exporter(&self, args: &[&str]) -> Result<Exporter> {
        let mut cmd = self.cmd(BIN);
        cmd.arg("--web.listen-address=127.0.0.1:0").args(args);
        let exp = Exporter::spawn(&mut cmd)?;
        Ok(exp)
    }

    /// An HTTP GET from inside the namespace, where the exporter's loopback is.
    pub fn get(&self, exp: &Exporter, path: &str) -> Result<Response> {
        let out = self
            .cmd(BIN_CURL)
            .args(["-s", "-i", "--max-time", "10"])
            .arg(format!("http://{}{}", exp.addr, path))
            .output()?;
        parse_response(&out.stdout, Framing::Length)
    }
}

pub const BIN_CURL: &str = "curl";

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            });
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Resident memory high-water mark of a process, in KiB.
pub fn vm_hwm_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmHWM:")
}

pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS:")
}

fn proc_status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn fd_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// The exporter's connection threads (the server names them `conn`).
pub fn conn_threads(pid: u32) -> Option<usize> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    Some(
        tasks
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "conn")
            })
            .count(),
    )
}

pub fn thread_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.count())
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The flags of both interface sources: tests on real interfaces run once with each.
pub const SOURCES: [&str; 2] = ["--collector.source=sysfs", "--collector.source=netlink"];

/// Runs a test body once per source, saying which one failed.
pub fn for_each_source(body: impl Fn(&str) -> Result) -> Result {
    for source in SOURCES {
        eprintln!("running with {source}");
        body(source).map_err(|e| format!("with {source}: {e}"))?;
    }
    Ok(())
}

/// The direct children of a process.
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Every descendant of a process.
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for c in children(p) {
            out.push(c);
            todo.push(c);
        }
    }
    out
}

/// Kills a process and everything it started, so that a failed test leaves nothing running
/// (a container's last process takes its mount namespace, and so its mounts, with it).
pub struct KillTree(pub u32);

impl Drop for KillTree {
    fn drop(&mut self) {
        for pid in descendants(self.0).into_iter().chain([self.0]) {
            let _ = Command::new("kill")
                .args(["-9", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// The interfaces of the host: the symlinks in its `/sys/class/net`, as the kernel makes them
/// (`bonding_masters` is a regular file), sorted.
pub fn host_interfaces() -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir("/sys/class/net")? {
        let entry = entry?;
        if entry.file_type()?.is_symlink() {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Held by the tests that time link changes against the clock, and by those that keep the
/// kernel's RTNL lock busy (hundreds of interfaces created at once, churn loops). The kernel
/// reports an oper-state change from its linkwatch work, which needs RTNL: a batch in a test
/// running in parallel once delayed a report by a second, and the stamp with it.
pub fn rtnl_quiet() -> MutexGuard<'static, ()> {
    static RTNL: Mutex<()> = Mutex::new(());
    RTNL.lock().unwrap_or_else(|e| e.into_inner())
}
