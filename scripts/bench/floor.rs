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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The files a default scrape reads for each interface, in the order it reads them: the sysfs
/// source's own list, included rather than copied, so that the floor cannot drift from the
/// scrape it is the floor of. `--attrs` overrides it. The scrape also reads the `master`
/// symlink with `readlinkat`, which opens nothing and is left out here, as the list does.
#[path = "../../src/sysfs_files.rs"]
mod sysfs_files;

/// The rtnetlink and ethtool numbers the `dump` floor speaks: the netlink source's own list,
/// included for the same reason. The floor needs only some of them.
#[path = "../../src/netlink_abi.rs"]
#[allow(dead_code)]
mod netlink_abi;
use netlink_abi::{
    AF_NETLINK, AF_UNIX, ETHTOOL_GLINKSETTINGS, IFF_UP, IFINFOMSG_LEN, IFLA_EXT_MASK, IFLA_IFNAME,
    IFNAMSIZ, MSG_TRUNC, NETLINK_ROUTE, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_REQUEST, RTEXT_FILTER_SKIP_STATS, RTM_GETLINK, RTM_NEWLINK, SIOCETHTOOL,
    SOCK_DGRAM, SOCK_RAW,
};

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
    fn socket(domain: i32, ty: i32, protocol: i32) -> i32;
    fn recv(fd: i32, buf: *mut std::ffi::c_void, len: usize, flags: i32) -> isize;
    fn ioctl(fd: i32, request: std::ffi::c_ulong, ...) -> i32;
}

/// The kernel defines it as `O_CLOEXEC`.
const SOCK_CLOEXEC: i32 = O_CLOEXEC;

/// The receive buffer of a dump: the exporter's size. The kernel sizes each dump datagram to
/// the reader's buffer, and 32 KiB was measured as fast as 1 MiB while 4 KiB cost 25% more.
const DUMP_BUF: usize = 32 * 1024;

/// `struct ethtool_link_settings` is 48 bytes, followed by three link-mode bitmaps of
/// `link_mode_masks_nwords` u32 each; nwords is an s8, so 127 words per bitmap at most.
const LINK_SETTINGS_LEN: usize = 48 + 3 * 127 * 4;

/// Where `link_mode_masks_nwords` sits in `struct ethtool_link_settings`.
const NWORDS_AT: usize = 15;

/// How long `disrupt` scrapes before it starts the batch, so the batch meets a scraper that is
/// already in its steady rhythm (connection open, exporter warm).
const DISRUPT_SETTLE: Duration = Duration::from_millis(500);

const USAGE: &str = "\
usage:
  floor scan [--root DIR] [--attrs A,B,...] [--mode MODE] [--passes N] [--warmup N]
  floor scrape [LABEL=]URL|floor... [--requests N] [--warmup N] [--root DIR] [--attrs A,B,...]
  floor dump [--ethtool] [--passes N] [--warmup N]
  floor startup [--runs N] --addr HOST:PORT [--path PATH] -- PROGRAM [ARGS...]
  floor disrupt [--url URL] [--rate N] [--runs N] -- PROGRAM [ARGS...]

scan     lists ROOT/class/net (default /sys) and, per interface, opens, reads once and closes
         each attribute (default: the exporter's default list), PASSES times (default 100);
         prints the time per pass. Modes other than `open` are for analysis:
           list       only the listing
           openclose  open and close, no read
           openat     open each interface directory once per pass, then openat the attributes
           dirfd      hold an O_PATH descriptor per interface directory; openat the attributes
           pread      open every attribute once, then each pass lists and preads at offset 0
dump     PASSES times (default 100): opens an rtnetlink socket, dumps every link of the
         namespace (RTM_GETLINK, IFLA_EXT_MASK skipping IPv6 stats) into a 32 KiB buffer,
         discards it and closes; with --ethtool also asks ETHTOOL_GLINKSETTINGS of every
         interface that is up, as the exporter must for speed and duplex; prints the time per pass
scrape   REQUESTS times (default 100), after WARMUP (default 3) untimed rounds, GETs each URL
         once on its own kept-alive connection and runs `floor` (a scan pass with --root,
         --attrs, --mode), `dump` or `dump+ethtool` (a dump pass) once, in turn; prints each
         target's time per request and, for every two targets, the median of the paired ratios
startup  RUNS times (default 20): spawns PROGRAM, polls ADDR until a GET of PATH (default
         /metrics) gets a whole 200 response, and kills it; prints the time from spawn to that
disrupt  runs PROGRAM RUNS times in a row (default 1) and prints the mean time of a run; with
         --url, while a client GETs URL at a fixed RATE per second (default 20) on one
         kept-alive connection, starting 0.5 s before; a late scrape starts the next at once,
         never a burst to catch up
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("scan") => scan(&args[1..]),
        Some("scrape") => scrape(&args[1..]),
        Some("startup") => startup(&args[1..]),
        Some("dump") => dump(&args[1..]),
        Some("disrupt") => disrupt(&args[1..]),
        Some("-h" | "--help") => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(Fail::Usage(
            "expected scan, dump, scrape, startup or disrupt".into(),
        )),
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
    let mut floor = Floor::from_args(&args)?;
    let mut times = passes(&args, || floor.timed_pass())?;
    println!("{}", floor.report(&mut times));
    Ok(())
}

/// Runs `--warmup` untimed passes (default 3), then `--passes` timed ones (default 100), and
/// returns their times: the loop of both `scan` and `dump`.
fn passes(
    args: &Args,
    mut pass: impl FnMut() -> Result<Duration, Fail>,
) -> Result<Vec<Duration>, Fail> {
    let passes = args.number("passes", 100)?.max(1);
    for _ in 0..args.number("warmup", 3)? {
        pass()?;
    }
    let mut times = Vec::with_capacity(passes);
    for _ in 0..passes {
        times.push(pass()?);
    }
    Ok(times)
}

/// Runs `pass` once and returns how long it took with what it did.
fn timed<W>(pass: impl FnOnce() -> Result<W, Fail>) -> Result<(Duration, W), Fail> {
    let start = Instant::now();
    let work = pass()?;
    Ok((start.elapsed(), work))
}

/// What the last pass did, and whether it differed from a pass before it: interfaces that come
/// or go during a run leave the numbers printed, but flagged, as they no longer describe one
/// fixed set of files or links.
#[derive(Default)]
struct Seen<W> {
    last: Option<W>,
    changed: bool,
}

impl<W: Copy + Default + PartialEq> Seen<W> {
    fn note(&mut self, work: W) {
        self.changed |= self.last.is_some_and(|w| w != work);
        self.last = Some(work);
    }

    fn last(&self) -> W {
        self.last.unwrap_or_default()
    }
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
    seen: Seen<Work>,
}

impl Floor {
    fn from_args(args: &Args) -> Result<Floor, Fail> {
        let root = PathBuf::from(args.get("root").unwrap_or("/sys"));
        let attrs: Vec<CString> = match args.get("attrs") {
            Some(list) => list
                .split(',')
                .filter(|a| !a.is_empty())
                .map(|a| CString::new(a).map_err(|_| Fail::Usage(format!("bad attribute {a:?}"))))
                .collect::<Result<_, _>>()?,
            None => sysfs_files::Attr::DEFAULT
                .iter()
                .map(|a| a.file().to_owned())
                .collect(),
        };
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
            seen: Seen::default(),
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
        let (elapsed, work) = timed(|| self.pass(self.mode))?;
        self.seen.note(work);
        Ok(elapsed)
    }

    fn report(&self, times: &mut [Duration]) -> String {
        let work = self.seen.last();
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
            self.seen.changed,
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

fn dump(args: &[String]) -> Result<(), Fail> {
    // `--ethtool` is the one flag without a value; take it out before the common parser.
    let ethtool = args.iter().any(|a| a == "--ethtool");
    let rest: Vec<String> = args.iter().filter(|a| *a != "--ethtool").cloned().collect();
    let args = Args::parse(&rest, &["passes", "warmup"])?;
    if let Some(w) = args.words.first() {
        return Err(Fail::Usage(format!("unexpected argument {w}")));
    }
    let mut dump = Dump::new(ethtool);
    let mut times = passes(&args, || dump.timed_pass())?;
    println!("{}", dump.report(&mut times));
    Ok(())
}

/// Counts from one dump pass, to show that every pass saw the same interfaces.
#[derive(Default, Clone, Copy, PartialEq)]
struct DumpWork {
    interfaces: usize,
    up: usize,
    /// Bytes and datagrams received: about 1.1 KB a link with the IPv6 stats skipped.
    bytes: usize,
    datagrams: usize,
    /// Ethtool requests that failed: `lo` and other virtual devices without link settings.
    failed_ioctls: usize,
}

/// The dump floor: what a netlink scrape must do at the least. A socket per pass, as a scrape
/// that holds nothing between scrapes would open one; its cost (socket, bind on first send,
/// close) is a few microseconds against milliseconds of dump.
struct Dump {
    ethtool: bool,
    buf: Vec<u8>,
    /// Names of the interfaces that are up, from the last dump, for the ethtool requests.
    up: Vec<[u8; IFNAMSIZ]>,
    seen: Seen<DumpWork>,
    /// Dumps the kernel flagged `NLM_F_DUMP_INTR` (the link list changed under it).
    interrupted: usize,
}

impl Dump {
    fn new(ethtool: bool) -> Dump {
        Dump {
            ethtool,
            buf: vec![0; DUMP_BUF],
            up: Vec::new(),
            seen: Seen::default(),
            interrupted: 0,
        }
    }

    fn timed_pass(&mut self) -> Result<Duration, Fail> {
        let (elapsed, work) = timed(|| self.pass())?;
        self.seen.note(work);
        Ok(elapsed)
    }

    fn report(&self, times: &mut [Duration]) -> String {
        let w = self.seen.last();
        format!(
            "dump ethtool={} interfaces={} up={} bytes={} datagrams={} failed_ioctls={} interrupted={} passes={} changed={} {}",
            self.ethtool,
            w.interfaces,
            w.up,
            w.bytes,
            w.datagrams,
            w.failed_ioctls,
            self.interrupted,
            times.len(),
            self.seen.changed,
            stats(times),
        )
    }

    fn pass(&mut self) -> Result<DumpWork, Fail> {
        let mut work = DumpWork::default();
        self.up.clear();
        // An unbound netlink socket sends to the kernel, so a plain write is the request.
        let mut sock = File::from(open_socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)?);
        sock.write_all(&getlink_request())?;
        'dump: loop {
            let n = recv_whole(&sock, &mut self.buf)?;
            work.datagrams += 1;
            work.bytes += n;
            let mut at = 0;
            while at + NLMSG_HDRLEN <= n {
                let msg = &self.buf[at..n];
                let len = u32_at(msg, 0) as usize;
                let ty = u16_at(msg, 4);
                if len < NLMSG_HDRLEN || len > msg.len() {
                    return Err(Fail::Run(format!(
                        "malformed netlink message of {len} bytes"
                    )));
                }
                if u16_at(msg, 6) & NLM_F_DUMP_INTR != 0 {
                    self.interrupted += 1;
                }
                match ty {
                    NLMSG_DONE => break 'dump,
                    NLMSG_ERROR => {
                        let errno = i32::from_ne_bytes(msg[16..20].try_into().unwrap_or([0; 4]));
                        return Err(Fail::Run(format!(
                            "RTM_GETLINK: {}",
                            io::Error::from_raw_os_error(-errno)
                        )));
                    }
                    RTM_NEWLINK => {
                        work.interfaces += 1;
                        if self.ethtool {
                            note_up(&mut self.up, &msg[..len], &mut work);
                        }
                    }
                    _ => {}
                }
                at += (len + 3) & !3;
            }
        }
        drop(sock);
        if self.ethtool {
            self.link_settings(&mut work)?;
        }
        Ok(work)
    }

    /// One ETHTOOL_GLINKSETTINGS per interface that is up, on an AF_UNIX datagram socket (no
    /// privilege needed). The first request of a pass is the size handshake: the kernel answers
    /// a request with nwords 0 by saying how many words its bitmaps take, the same for every
    /// device, so a pass pays it once, on the first device that has link settings.
    fn link_settings(&mut self, work: &mut DumpWork) -> Result<(), Fail> {
        let sock = open_socket(AF_UNIX, SOCK_DGRAM, 0)?;
        let mut settings = LinkSettings([0; LINK_SETTINGS_LEN]);
        let mut nwords: i8 = 0;
        for name in &self.up {
            if nwords == 0 {
                settings.0.fill(0);
                settings.0[..4].copy_from_slice(&ETHTOOL_GLINKSETTINGS.to_ne_bytes());
                if ethtool(&sock, name, &mut settings).is_err() {
                    work.failed_ioctls += 1;
                    continue;
                }
                nwords = (settings.0[NWORDS_AT] as i8).saturating_neg();
                if nwords <= 0 {
                    return Err(Fail::Run("ethtool handshake gave no bitmap size".into()));
                }
            }
            settings.0.fill(0);
            settings.0[..4].copy_from_slice(&ETHTOOL_GLINKSETTINGS.to_ne_bytes());
            settings.0[NWORDS_AT] = nwords as u8;
            if ethtool(&sock, name, &mut settings).is_err() {
                work.failed_ioctls += 1;
            }
        }
        Ok(())
    }
}

/// Keeps the name of a link whose `IFF_UP` is set.
fn note_up(up: &mut Vec<[u8; IFNAMSIZ]>, msg: &[u8], work: &mut DumpWork) {
    if msg.len() < NLMSG_HDRLEN + IFINFOMSG_LEN || u32_at(msg, NLMSG_HDRLEN + 8) & IFF_UP == 0 {
        return;
    }
    let mut at = NLMSG_HDRLEN + IFINFOMSG_LEN;
    while at + 4 <= msg.len() {
        let len = u16_at(msg, at) as usize;
        if len < 4 || at + len > msg.len() {
            return;
        }
        if u16_at(msg, at + 2) == IFLA_IFNAME {
            let value = &msg[at + 4..at + len];
            let value = value.split(|&b| b == 0).next().unwrap_or(value);
            let mut name = [0; IFNAMSIZ];
            let n = value.len().min(IFNAMSIZ - 1);
            name[..n].copy_from_slice(&value[..n]);
            up.push(name);
            work.up += 1;
            return;
        }
        at += (len + 3) & !3;
    }
}

/// The request: nlmsghdr, an all-zero ifinfomsg (every family, every link), and IFLA_EXT_MASK
/// asking the kernel to leave out the IPv6 per-device statistics, as the exporter asks.
fn getlink_request() -> [u8; 40] {
    let mut req = [0u8; 40];
    req[0..4].copy_from_slice(&40u32.to_ne_bytes());
    req[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    req[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req[8..12].copy_from_slice(&1u32.to_ne_bytes());
    req[32..34].copy_from_slice(&8u16.to_ne_bytes());
    req[34..36].copy_from_slice(&IFLA_EXT_MASK.to_ne_bytes());
    req[36..40].copy_from_slice(&RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
    req
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn open_socket(domain: i32, ty: i32, protocol: i32) -> Result<OwnedFd, Fail> {
    // SAFETY: socket takes no pointers; a negative result is an error, checked below.
    let fd = unsafe { socket(domain, ty | SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        return Err(Fail::Run(format!(
            "socket({domain}): {}",
            io::Error::last_os_error()
        )));
    }
    // SAFETY: `fd` was just returned by socket and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// One datagram, whole: with MSG_TRUNC the kernel returns its real length, so a datagram larger
/// than the buffer is an error rather than a silently short dump.
fn recv_whole(sock: &File, buf: &mut [u8]) -> Result<usize, Fail> {
    // SAFETY: `buf` is valid for writes of its length and `sock` is open for the call.
    let n = unsafe {
        recv(
            sock.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            MSG_TRUNC,
        )
    };
    if n < 0 {
        return Err(Fail::Run(format!("recv: {}", io::Error::last_os_error())));
    }
    let n = n as usize;
    if n > buf.len() {
        return Err(Fail::Run(format!(
            "netlink datagram of {n} bytes truncated"
        )));
    }
    Ok(n)
}

/// `struct ethtool_link_settings` and its bitmaps, aligned as the kernel's u32 fields expect.
#[repr(C, align(8))]
struct LinkSettings([u8; LINK_SETTINGS_LEN]);

/// `struct ifreq` with `ifr_data`: the name, then the pointer, padded to the union's 24 bytes.
#[repr(C)]
struct IfReq {
    name: [u8; IFNAMSIZ],
    data: *mut std::ffi::c_void,
    _pad: [u8; 16],
}

fn ethtool(sock: &OwnedFd, name: &[u8; IFNAMSIZ], settings: &mut LinkSettings) -> io::Result<()> {
    let mut req = IfReq {
        name: *name,
        data: settings.0.as_mut_ptr().cast(),
        _pad: [0; 16],
    };
    // SAFETY: `req` is a full ifreq whose name is NUL-terminated (IFNAMSIZ - 1 bytes at most)
    // and whose data points at a buffer large enough for the bitmaps of any nwords the kernel
    // accepts; both live across the call, and `sock` is open.
    let r = unsafe { ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfReq) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The scraper side of `disrupt`: how many scrapes it made, and how many ran past the start of
/// the next one (a source too slow to be scraped at the rate).
struct Pacer {
    done: Arc<AtomicUsize>,
    late: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Result<(), Fail>>,
}

impl Pacer {
    fn start(url: &str, rate: usize) -> Result<Pacer, Fail> {
        let (addr, path) = parse_url(url)?;
        let mut conn = Conn::connect(addr)?;
        let request = get_request(&path);
        let period = Duration::from_secs(1) / rate as u32;
        let done = Arc::new(AtomicUsize::new(0));
        let late = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (d, l, s) = (done.clone(), late.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let now = Instant::now();
                if now < next {
                    std::thread::sleep(next - now);
                }
                conn.get(&request)?;
                d.fetch_add(1, Ordering::Relaxed);
                next += period;
                // A scrape that overran its slot starts the next at once and moves the schedule,
                // so a slow source is scraped back to back, never in a burst.
                let end = Instant::now();
                if end > next {
                    l.fetch_add(1, Ordering::Relaxed);
                    next = end;
                }
            }
            Ok(())
        });
        Ok(Pacer {
            done,
            late,
            stop,
            thread,
        })
    }

    fn finish(self) -> Result<(), Fail> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| Fail::Run("the scraper thread panicked".into()))?
    }
}

fn disrupt(args: &[String]) -> Result<(), Fail> {
    let args = Args::parse(args, &["url", "rate", "runs"])?;
    let rate = args.number("rate", 20)?.clamp(1, 1000);
    let runs = args.number("runs", 1)?.max(1);
    let [program, rest @ ..] = args.words.as_slice() else {
        return Err(Fail::Usage("disrupt needs a program after --".into()));
    };
    let pacer = match args.get("url") {
        Some(url) => {
            let p = Pacer::start(url, rate)?;
            std::thread::sleep(DISRUPT_SETTLE);
            Some(p)
        }
        None => None,
    };
    let count =
        |c: fn(&Pacer) -> &AtomicUsize| pacer.as_ref().map_or(0, |p| c(p).load(Ordering::Relaxed));
    let (done0, late0) = (count(|p| &p.done), count(|p| &p.late));
    // Runs back to back under one scraper: a batch lasts about as long as a few scrapes, so a
    // single one would hit or miss them by chance; the mean of several spans every phase.
    let start = Instant::now();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let run = Instant::now();
        let status = Command::new(program)
            .args(rest)
            .stdin(Stdio::null())
            .status()
            .map_err(|e| Fail::Run(format!("cannot start {program}: {e}")))?;
        times.push(run.elapsed());
        if !status.success() {
            return Err(Fail::Run(format!("{program} failed: {status}")));
        }
    }
    let span = start.elapsed().as_secs_f64();
    let (scraped, late) = (count(|p| &p.done) - done0, count(|p| &p.late) - late0);
    if let Some(p) = pacer {
        p.finish()?;
    }
    let mean_us = times.iter().map(|t| t.as_secs_f64()).sum::<f64>() * 1e6 / runs as f64;
    println!(
        "disrupt program={program} url={} rate={rate} runs={runs} batch_us={mean_us:.0} scrapes={scraped} late={late} achieved_per_s={:.1} {}",
        args.get("url").unwrap_or("none"),
        scraped as f64 / span,
        stats(&mut times),
    );
    Ok(())
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
    Dump(Box<Dump>),
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
            Target::Dump(dump) => dump.timed_pass(),
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
        let label = match what {
            "dump" | "dump+ethtool" if !word.contains('=') => what.to_string(),
            _ => label,
        };
        let target = if what == "floor" {
            Target::Floor(Box::new(Floor::from_args(&args)?))
        } else if what == "dump" || what == "dump+ethtool" {
            Target::Dump(Box::new(Dump::new(what == "dump+ethtool")))
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
            Target::Dump(dump) => println!("target={label} {}", dump.report(&mut sorted)),
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
    /// Where reads land, 64 KiB.
    scratch: Vec<u8>,
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
            scratch: vec![0; 64 * 1024],
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

    /// Consumes `n` bytes, reading more as needed. A body is read into one 64 KiB buffer and
    /// dropped as it comes, whatever its size: gathered whole (zeroed, grown and copied as it
    /// grew), it cost this client time that was counted as the server's.
    fn take(&mut self, mut n: usize) -> Result<(), Fail> {
        let here = (self.buf.len() - self.start).min(n);
        self.start += here;
        n -= here;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        while n > 0 {
            let got = self.stream.read(&mut self.scratch)?;
            if got == 0 {
                return Err(Fail::Run("server closed the connection".into()));
            }
            if got > n {
                // Bytes past this response are the next one's.
                self.buf.extend_from_slice(&self.scratch[n..got]);
            }
            n -= got.min(n);
        }
        Ok(())
    }

    fn fill(&mut self) -> Result<(), Fail> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        let n = self.stream.read(&mut self.scratch)?;
        if n == 0 {
            return Err(Fail::Run("server closed the connection".into()));
        }
        self.buf.extend_from_slice(&self.scratch[..n]);
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
