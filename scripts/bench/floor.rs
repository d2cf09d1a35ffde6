//! The floor of the benchmark in scripts/bench.sh, and the two small clients it measures with.
//!
//! `floor scan` does what a default scrape must do at the least and nothing else: list
//! `<root>/class/net` and, for every interface, open, read once into a stack buffer and close
//! the same attribute files the exporter reads, in the same order, pass after pass. It prints
//! the time per pass, which is what a scrape of ours is held against. Other `--mode`s split that
//! time (listing alone, open and close without a read) or show what a different access pattern
//! would cost (`openat` relative to a directory descriptor opened per pass or held, `pread` on
//! descriptors kept open); they are hints for optimising, not the floor. To see a namespace's
//! interfaces, run it under `ip netns exec NS`, which gives the process that namespace's view
//! of `/sys`.
//!
//! `floor scrape` times requests on kept-alive HTTP/1.1 connections, each from the first byte
//! written to the last byte of the body read, taking turns between several servers and the
//! floor itself so that their ratios are paired: on a shared machine, a slow moment then slows
//! both sides of a ratio. `floor startup` times a server from the moment it is spawned to the
//! end of its first complete 200 response.
//!
//! Invariant: uses std only (plus the C library's `openat` and `pread`, which std links anyway),
//! writes nothing, and prints one `key=value` line per measurement for bench.sh to parse.

use std::ffi::{CString, OsStr};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The files a default scrape reads for each interface, in the order `Reader::read_interface`
/// in src/sysfs.rs reads them. Keep the two in step; `--attrs` overrides this list.
const DEFAULT_ATTRS: &str = "operstate,flags,carrier,carrier_changes,carrier_up_count,\
carrier_down_count,mtu,speed,address,duplex,ifalias";

/// The exporter's attribute buffer: one page, which is all a sysfs `show` callback may write.
const ATTR_BUF: usize = 4096;

/// The exporter opens attributes non-blocking (so a FIFO in a fixture cannot hang it); the
/// floor opens them the same way so that the two pay for the same `openat`.
const O_NONBLOCK: i32 = 0o4000;
const O_RDONLY: i32 = 0;
const O_DIRECTORY: i32 = 0o200000;
const O_CLOEXEC: i32 = 0o2000000;
const O_PATH: i32 = 0o10000000;
const AT_FDCWD: i32 = -100;

/// How long `startup` waits between connection attempts. Short against the 5 ms goal, long
/// enough that the poller leaves the exporter a core on a 2-core machine.
const STARTUP_POLL: Duration = Duration::from_micros(50);

/// How long `startup` gives a server to answer before calling the run a failure.
const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

/// The largest response head `scrape` accepts; a metrics response head is a few hundred bytes.
const MAX_HEAD: usize = 16 * 1024;

extern "C" {
    fn openat(dirfd: i32, path: *const std::ffi::c_char, flags: i32, ...) -> i32;
    fn pread(fd: i32, buf: *mut std::ffi::c_void, count: usize, offset: i64) -> isize;
}

const USAGE: &str = "\
usage:
  floor scan [--root DIR] [--attrs A,B,...] [--mode MODE] [--passes N] [--warmup N]
  floor scrape [LABEL=]URL|floor... [--requests N] [--warmup N] [--root DIR] [--attrs A,B,...]
  floor startup [--runs N] --addr HOST:PORT [--path PATH] -- PROGRAM [ARGS...]

scan     lists ROOT/class/net (default /sys) and, per interface, opens, reads once and closes
         each attribute (default: the exporter's default list), PASSES times (default 100);
         prints the time per pass. Modes other than `open` are for analysis:
           list       only the listing
           openclose  open and close, no read
           openat     open each interface directory once per pass, then openat the attributes
           dirfd      hold an O_PATH descriptor per interface directory; openat the attributes
           pread      open every attribute once, then each pass lists and preads at offset 0
scrape   REQUESTS times (default 100), after WARMUP (default 3) untimed rounds, GETs each URL
         once on its own kept-alive connection and runs `floor` (a scan pass with --root,
         --attrs, --mode) once, in turn; prints each target's time per request and, for every
         two targets, the median of the paired ratios
startup  RUNS times (default 20): spawns PROGRAM, polls ADDR until a GET of PATH (default
         /metrics) gets a whole 200 response, and kills it; prints the time from spawn to that
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("scan") => scan(&args[1..]),
        Some("scrape") => scrape(&args[1..]),
        Some("startup") => startup(&args[1..]),
        Some("-h" | "--help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(Fail::Usage("expected scan, scrape or startup".into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail::Usage(msg)) => {
            eprintln!("floor: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Fail::Run(msg)) => {
            eprintln!("floor: {msg}");
            ExitCode::from(1)
        }
    }
}

enum Fail {
    Usage(String),
    Run(String),
}

impl From<io::Error> for Fail {
    fn from(e: io::Error) -> Fail {
        Fail::Run(e.to_string())
    }
}

/// Flags as `--name value` or `--name=value`, then positional words; `--` ends the flags.
struct Args {
    flags: Vec<(String, String)>,
    words: Vec<String>,
}

impl Args {
    fn parse(args: &[String], known: &[&str]) -> Result<Args, Fail> {
        let mut flags = Vec::new();
        let mut words = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if arg == "--" {
                words.extend(it.cloned());
                break;
            }
            let Some(flag) = arg.strip_prefix("--") else {
                words.push(arg.clone());
                continue;
            };
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n.to_string(), v.to_string()),
                None => {
                    let v = it
                        .next()
                        .ok_or_else(|| Fail::Usage(format!("--{flag} needs a value")))?;
                    (flag.to_string(), v.clone())
                }
            };
            if !known.contains(&name.as_str()) {
                return Err(Fail::Usage(format!("unknown flag --{name}")));
            }
            flags.push((name, value));
        }
        Ok(Args { flags, words })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn number(&self, name: &str, default: usize) -> Result<usize, Fail> {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| Fail::Usage(format!("--{name}: not a number: {v}"))),
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Open,
    List,
    OpenClose,
    OpenAt,
    DirFd,
    Pread,
}

/// Counts from one pass, to show that every pass did the same work.
#[derive(Default, Clone, Copy, PartialEq)]
struct Work {
    interfaces: usize,
    files: usize,
    bytes: usize,
    failed: usize,
}

/// The flags that describe a floor pass, shared by `scan` and by a `floor` target of `scrape`.
const FLOOR_FLAGS: [&str; 3] = ["root", "attrs", "mode"];

fn scan(args: &[String]) -> Result<(), Fail> {
    let args = Args::parse(args, &["root", "attrs", "mode", "passes", "warmup"])?;
    if let Some(w) = args.words.first() {
        return Err(Fail::Usage(format!("unexpected argument {w}")));
    }
    let passes = args.number("passes", 100)?.max(1);
    let warmup = args.number("warmup", 3)?;
    let mut floor = Floor::from_args(&args)?;
    for _ in 0..warmup {
        floor.timed_pass()?;
    }
    let mut times = Vec::with_capacity(passes);
    for _ in 0..passes {
        times.push(floor.timed_pass()?);
    }
    println!("{}", floor.report(&mut times));
    Ok(())
}

struct Floor {
    mode: Mode,
    mode_name: String,
    class_net: PathBuf,
    attrs: Vec<CString>,
    names: Vec<Vec<u8>>,
    /// Scratch path `class/net/<name>/<attr>`, rebuilt for each file without allocating, the
    /// way the exporter does it.
    path: PathBuf,
    /// For `pread`: descriptors held open across passes, one per interface and attribute.
    held: Vec<Option<File>>,
    /// For `dirfd`: one `O_PATH` descriptor per interface directory, held across passes.
    dirs: Vec<Option<OwnedFd>>,
    /// What the last pass did, and whether the set of interfaces changed between passes.
    work: Option<Work>,
    changed: bool,
}

impl Floor {
    fn from_args(args: &Args) -> Result<Floor, Fail> {
        let root = PathBuf::from(args.get("root").unwrap_or("/sys"));
        let attrs: Vec<CString> = args
            .get("attrs")
            .unwrap_or(DEFAULT_ATTRS)
            .split(',')
            .filter(|a| !a.is_empty())
            .map(|a| CString::new(a).map_err(|_| Fail::Usage(format!("bad attribute {a:?}"))))
            .collect::<Result<_, _>>()?;
        let mode_name = args.get("mode").unwrap_or("open");
        let mode = match mode_name {
            "open" => Mode::Open,
            "list" => Mode::List,
            "openclose" => Mode::OpenClose,
            "openat" => Mode::OpenAt,
            "dirfd" => Mode::DirFd,
            "pread" => Mode::Pread,
            m => return Err(Fail::Usage(format!("unknown mode {m}"))),
        };
        let mut floor = Floor {
            mode,
            mode_name: mode_name.to_string(),
            class_net: root.join("class/net"),
            attrs,
            names: Vec::new(),
            path: PathBuf::new(),
            held: Vec::new(),
            dirs: Vec::new(),
            work: None,
            changed: false,
        };
        match mode {
            Mode::Pread => floor.hold()?,
            Mode::DirFd => floor.hold_dirs()?,
            _ => {}
        }
        Ok(floor)
    }

    /// One pass, timed; remembers what it did.
    fn timed_pass(&mut self) -> Result<Duration, Fail> {
        let start = Instant::now();
        let work = self.pass(self.mode)?;
        let elapsed = start.elapsed();
        // Interfaces that come or go during a run leave the numbers printed, but flagged: they
        // no longer describe one fixed set of files.
        self.changed |= self.work.is_some_and(|w| w != work);
        self.work = Some(work);
        Ok(elapsed)
    }

    fn report(&self, times: &mut [Duration]) -> String {
        let work = self.work.unwrap_or_default();
        let per_file = if work.files > 0 {
            format!(
                " per_file_ns={}",
                median(times).as_nanos() / work.files as u128
            )
        } else {
            String::new()
        };
        format!(
            "scan mode={} interfaces={} files={} bytes={} failed_reads={} passes={} changed={} {}{per_file}",
            self.mode_name,
            work.interfaces,
            work.files,
            work.bytes,
            work.failed,
            times.len(),
            self.changed,
            stats(times),
        )
    }

    /// Lists `class/net` as the exporter does: every entry except regular files, using the
    /// `d_type` the directory read already returned.
    fn list(&mut self) -> io::Result<()> {
        self.names.clear();
        for entry in fs::read_dir(&self.class_net)? {
            let entry = entry?;
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            self.names.push(entry.file_name().as_bytes().to_vec());
        }
        Ok(())
    }

    fn set_path(&mut self, name: &[u8], attr: &CString) {
        self.path.clear();
        self.path.push(&self.class_net);
        self.path.push(OsStr::from_bytes(name));
        self.path.push(OsStr::from_bytes(attr.as_bytes()));
    }

    fn open(&self) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open(&self.path)
    }

    /// Opens every attribute of every interface once, for `pread` passes.
    fn hold(&mut self) -> Result<(), Fail> {
        self.list()?;
        let names = std::mem::take(&mut self.names);
        for name in &names {
            for i in 0..self.attrs.len() {
                let attr = self.attrs[i].clone();
                self.set_path(name, &attr);
                self.held.push(self.open().ok());
            }
        }
        self.names = names;
        Ok(())
    }

    /// Opens every interface directory once with `O_PATH`, for `dirfd` passes.
    fn hold_dirs(&mut self) -> Result<(), Fail> {
        self.list()?;
        let names = std::mem::take(&mut self.names);
        for name in &names {
            let dir = self.open_dir(name, O_PATH).ok();
            self.dirs.push(dir);
        }
        self.names = names;
        Ok(())
    }

    fn open_dir(&mut self, name: &[u8], extra: i32) -> Result<OwnedFd, Fail> {
        self.path.clear();
        self.path.push(&self.class_net);
        self.path.push(OsStr::from_bytes(name));
        let c = CString::new(self.path.as_os_str().as_bytes())
            .map_err(|_| Fail::Run("NUL in a path".into()))?;
        // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
        let fd = unsafe { openat(AT_FDCWD, c.as_ptr(), O_DIRECTORY | O_CLOEXEC | extra) };
        if fd < 0 {
            return Err(Fail::Run(io::Error::last_os_error().to_string()));
        }
        // SAFETY: `fd` was just returned by openat and is owned by nothing else.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn pass(&mut self, mode: Mode) -> Result<Work, Fail> {
        self.list()?;
        let mut work = Work {
            interfaces: self.names.len(),
            ..Work::default()
        };
        if mode == Mode::List {
            return Ok(work);
        }
        let mut buf = [0u8; ATTR_BUF];
        let names = std::mem::take(&mut self.names);
        for (i, name) in names.iter().enumerate() {
            // The directory for `openat` (opened for this pass) and `dirfd` (held).
            let opened = if mode == Mode::OpenAt {
                match self.open_dir(name, O_RDONLY) {
                    Ok(fd) => Some(fd),
                    Err(_) => {
                        work.failed += self.attrs.len();
                        continue;
                    }
                }
            } else {
                None
            };
            let dirfd = match (&opened, self.dirs.get(i)) {
                (Some(fd), _) => fd.as_raw_fd(),
                (None, Some(Some(fd))) => fd.as_raw_fd(),
                _ => -1,
            };
            for a in 0..self.attrs.len() {
                work.files += 1;
                let result = match mode {
                    Mode::Open => {
                        let attr = self.attrs[a].clone();
                        self.set_path(name, &attr);
                        self.open().and_then(|mut f| f.read(&mut buf))
                    }
                    Mode::OpenClose => {
                        let attr = self.attrs[a].clone();
                        self.set_path(name, &attr);
                        self.open().map(|_| 0)
                    }
                    Mode::OpenAt | Mode::DirFd => {
                        let flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC;
                        // SAFETY: the attribute name is NUL-terminated and lives across the call.
                        let fd = unsafe { openat(dirfd, self.attrs[a].as_ptr(), flags) };
                        if fd < 0 {
                            Err(io::Error::last_os_error())
                        } else {
                            // SAFETY: `fd` was just returned by openat and is owned by nothing else.
                            let mut f = unsafe { File::from_raw_fd(fd) };
                            f.read(&mut buf)
                        }
                    }
                    Mode::Pread => match self.held.get(i * self.attrs.len() + a) {
                        Some(Some(f)) => pread0(f.as_raw_fd(), &mut buf),
                        _ => Err(io::Error::from_raw_os_error(2)),
                    },
                    Mode::List => unreachable!(),
                };
                match result {
                    Ok(n) => work.bytes += n,
                    Err(_) => work.failed += 1,
                }
            }
        }
        self.names = names;
        Ok(work)
    }
}

fn pread0(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of its length; `fd` is open for the call.
    let n = unsafe { pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// What `scrape` measures in each round: a server over one kept-alive connection, or a floor pass.
enum Target {
    Server {
        url: String,
        conn: Conn,
        request: Vec<u8>,
        body: usize,
    },
    Floor(Box<Floor>),
}

impl Target {
    fn run(&mut self) -> Result<Duration, Fail> {
        match self {
            Target::Server {
                conn,
                request,
                body,
                ..
            } => {
                let start = Instant::now();
                *body = conn.get(request)?;
                Ok(start.elapsed())
            }
            Target::Floor(floor) => floor.timed_pass(),
        }
    }
}

fn scrape(args: &[String]) -> Result<(), Fail> {
    let mut known = vec!["requests", "warmup"];
    known.extend(FLOOR_FLAGS);
    let args = Args::parse(args, &known)?;
    if args.words.is_empty() {
        return Err(Fail::Usage("scrape needs a target".into()));
    }
    let requests = args.number("requests", 100)?.max(1);
    let warmup = args.number("warmup", 3)?;
    let mut targets = Vec::new();
    for (i, word) in args.words.iter().enumerate() {
        let (label, what) = match word.split_once('=') {
            Some((l, w)) if !l.contains('/') => (l.to_string(), w),
            _ if word == "floor" => ("floor".to_string(), word.as_str()),
            _ => (i.to_string(), word.as_str()),
        };
        let target = if what == "floor" {
            Target::Floor(Box::new(Floor::from_args(&args)?))
        } else {
            let (addr, path) = parse_url(what)?;
            Target::Server {
                url: what.to_string(),
                conn: Conn::connect(addr)?,
                request: get_request(&path),
                body: 0,
            }
        };
        targets.push((label, target, Vec::with_capacity(requests)));
    }
    for _ in 0..warmup {
        for (_, target, _) in &mut targets {
            target.run()?;
        }
    }
    // Round-robin, one request or pass per target at a time, so that whatever else the machine
    // is doing slows every target alike and the per-round ratios stay paired.
    for _ in 0..requests {
        for (_, target, times) in &mut targets {
            times.push(target.run()?);
        }
    }
    for (label, target, times) in &targets {
        let mut sorted = times.clone();
        match target {
            Target::Server { url, body, .. } => println!(
                "target={label} scrape url={url} body_bytes={body} requests={requests} {}",
                stats(&mut sorted)
            ),
            Target::Floor(floor) => println!("target={label} {}", floor.report(&mut sorted)),
        }
    }
    for (i, (den_label, _, den)) in targets.iter().enumerate() {
        for (num_label, _, num) in &targets[i + 1..] {
            for (top, top_times, bottom, bottom_times) in [
                (num_label, num, den_label, den),
                (den_label, den, num_label, num),
            ] {
                let mut ratios: Vec<f64> = top_times
                    .iter()
                    .zip(bottom_times)
                    .map(|(t, b)| t.as_secs_f64() / b.as_secs_f64())
                    .collect();
                ratios.sort_unstable_by(f64::total_cmp);
                let n = ratios.len();
                println!(
                    "ratio={top}/{bottom} median={:.4} p10={:.4} p90={:.4}",
                    ratios[n / 2],
                    ratios[((n - 1) as f64 * 0.1).round() as usize],
                    ratios[((n - 1) as f64 * 0.9).round() as usize],
                );
            }
        }
    }
    Ok(())
}

fn startup(args: &[String]) -> Result<(), Fail> {
    let args = Args::parse(args, &["runs", "addr", "path"])?;
    let runs = args.number("runs", 20)?.max(1);
    let addr = args
        .get("addr")
        .ok_or_else(|| Fail::Usage("startup needs --addr".into()))?;
    let addr = resolve(addr)?;
    let request = get_request(args.get("path").unwrap_or("/metrics"));
    let [program, rest @ ..] = args.words.as_slice() else {
        return Err(Fail::Usage("startup needs a program after --".into()));
    };
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let mut child = Command::new(program)
            .args(rest)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Fail::Run(format!("cannot start {program}: {e}")))?;
        let answered = loop {
            if let Ok(stream) = TcpStream::connect(addr) {
                let mut conn = Conn::from(stream)?;
                if conn.get(&request).is_ok() {
                    break Some(start.elapsed());
                }
            }
            if start.elapsed() > STARTUP_DEADLINE {
                break None;
            }
            if let Some(status) = child.try_wait()? {
                let _ = child.wait();
                return Err(Fail::Run(format!("{program} exited early: {status}")));
            }
            std::thread::sleep(STARTUP_POLL);
        };
        let _ = child.kill();
        let _ = child.wait();
        match answered {
            Some(t) => times.push(t),
            None => return Err(Fail::Run(format!("{program} did not answer on {addr}"))),
        }
    }
    println!(
        "startup program={program} runs={runs} {}",
        stats(&mut times)
    );
    Ok(())
}

fn parse_url(url: &str) -> Result<(SocketAddr, String), Fail> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| Fail::Usage(format!("only http:// URLs: {url}")))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Ok((resolve(host)?, path.to_string()))
}

fn resolve(host: &str) -> Result<SocketAddr, Fail> {
    host.to_socket_addrs()
        .map_err(|e| Fail::Usage(format!("{host}: {e}")))?
        .next()
        .ok_or_else(|| Fail::Usage(format!("{host}: no address")))
}

/// No `Accept-Encoding`: both exporters then send plain text, and neither pays for gzip.
fn get_request(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: floor\r\nAccept: */*\r\n\r\n")
        .into_bytes()
}

/// One client connection that reads responses framed by `Content-Length` or chunked encoding.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Bytes in `buf` already consumed.
    start: usize,
}

impl Conn {
    fn connect(addr: SocketAddr) -> Result<Conn, Fail> {
        let stream = TcpStream::connect(addr)
            .map_err(|e| Fail::Run(format!("cannot connect to {addr}: {e}")))?;
        Conn::from(stream)
    }

    fn from(stream: TcpStream) -> Result<Conn, Fail> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(64 * 1024),
            start: 0,
        })
    }

    /// Sends one request and reads its whole response; returns the body length.
    fn get(&mut self, request: &[u8]) -> Result<usize, Fail> {
        self.stream.write_all(request)?;
        let head_end = loop {
            if let Some(i) = find(&self.buf[self.start..], b"\r\n\r\n") {
                break self.start + i + 4;
            }
            if self.buf.len() - self.start > MAX_HEAD {
                return Err(Fail::Run("response head too long".into()));
            }
            self.fill()?;
        };
        let head = String::from_utf8_lossy(&self.buf[self.start..head_end]).into_owned();
        let status = head.split(' ').nth(1).unwrap_or("");
        if status != "200" {
            let line = head.lines().next().unwrap_or("");
            return Err(Fail::Run(format!("response not 200: {line}")));
        }
        let mut length = None;
        let mut chunked = false;
        for line in head.lines().skip(1) {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            }
        }
        self.start = head_end;
        if chunked {
            self.chunked()
        } else {
            let n = length.ok_or_else(|| Fail::Run("response without a length".into()))?;
            self.take(n)?;
            Ok(n)
        }
    }

    fn chunked(&mut self) -> Result<usize, Fail> {
        let mut total = 0;
        loop {
            let line_end = loop {
                if let Some(i) = find(&self.buf[self.start..], b"\r\n") {
                    break self.start + i;
                }
                self.fill()?;
            };
            let line = std::str::from_utf8(&self.buf[self.start..line_end]).unwrap_or("");
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| Fail::Run(format!("bad chunk size {size:?}")))?;
            self.start = line_end + 2;
            if size == 0 {
                // No trailers from either exporter: the last chunk ends with one empty line.
                self.take(2)?;
                return Ok(total);
            }
            self.take(size + 2)?;
            total += size;
        }
    }

    /// Consumes `n` bytes, reading more as needed.
    fn take(&mut self, n: usize) -> Result<(), Fail> {
        while self.buf.len() - self.start < n {
            self.fill()?;
        }
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Ok(())
    }

    fn fill(&mut self) -> Result<(), Fail> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        let len = self.buf.len();
        self.buf.resize(len + 64 * 1024, 0);
        let n = self.stream.read(&mut self.buf[len..])?;
        self.buf.truncate(len + n);
        if n == 0 {
            return Err(Fail::Run("server closed the connection".into()));
        }
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort_unstable();
    times[times.len() / 2]
}

/// Median, mean and spread in microseconds, with three decimals so short passes keep their
/// precision.
fn stats(times: &mut [Duration]) -> String {
    times.sort_unstable();
    let n = times.len();
    let us = |d: Duration| d.as_nanos() as f64 / 1000.0;
    let mean = times.iter().map(|&d| us(d)).sum::<f64>() / n as f64;
    let pick = |q: f64| times[((n - 1) as f64 * q).round() as usize];
    format!(
        "median_us={:.3} mean_us={:.3} min_us={:.3} p10_us={:.3} p90_us={:.3} max_us={:.3}",
        us(times[n / 2]),
        mean,
        us(times[0]),
        us(pick(0.1)),
        us(pick(0.9)),
        us(times[n - 1]),
    )
}
