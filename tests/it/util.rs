//! The harness: temp sysfs trees laid out as the kernel lays them out, the real binary started
//! on port 0, a raw HTTP client, and network namespaces.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    let head_only = req.starts_with("HEAD ");
    read_response(&mut s, head_only)
}

/// Reads one response framed by Content-Length from a stream that may carry more.
pub fn read_response(s: &mut TcpStream, head_only: bool) -> Result<Response> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = match s.read(&mut byte) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other?,
        };
        if n == 0 {
            return Err(format!(
                "connection closed inside a head: {:?}",
                String::from_utf8_lossy(&buf)
            )
            .into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf)?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("no status line")?;
    let status: u16 = status_line.split(' ').nth(1).ok_or("no status")?.parse()?;
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap_or((l, ""));
            (n.to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .ok_or("no content-length")?
        .1
        .parse()?;
    let mut body = vec![0; if head_only { 0 } else { len }];
    s.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Sends raw bytes, then reads whatever comes back until the server closes (or the deadline).
pub fn raw(addr: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>> {
    let mut s = connect(addr)?;
    // The server may close before it took everything, which is its right.
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    Ok(out)
}

/// The status code of the first response in `bytes`, if any.
pub fn status_of(bytes: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(bytes.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
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
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn sh(script: &str) -> Result<String> {
    run(Command::new("sh").arg("-ec").arg(script))
}

/// The value of a sample line `name{labels} value` in an exposition body.
pub fn sample(body: &str, series: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(str::to_owned))
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
        parse_curl(&out.stdout)
    }
}

pub const BIN_CURL: &str = "curl";

fn parse_curl(out: &[u8]) -> Result<Response> {
    let end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no response from curl")?;
    let head = std::str::from_utf8(&out[..end])?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .ok_or("no status")?
        .parse()?;
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap_or((l, ""));
            (n.to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    Ok(Response {
        status,
        headers,
        body: out[end + 4..].to_vec(),
    })
}

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

pub fn thread_count(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.count())
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The flags of both interface sources: tests on real interfaces run once with each.
pub const SOURCES: [&str; 2] = ["--collector.source=sysfs", "--collector.source=netlink"];

/// Runs a test body once per source, saying which one failed.
pub fn for_each_source(body: fn(&str) -> Result) -> Result {
    for source in SOURCES {
        eprintln!("running with {source}");
        body(source).map_err(|e| format!("with {source}: {e}"))?;
    }
    Ok(())
}
