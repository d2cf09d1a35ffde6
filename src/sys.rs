//! The crate's only `unsafe`: signal masks, sockets inherited from systemd, the descriptor
//! limit, `openat`, `openat2`, `readlinkat` and `getdents64` for sysfs, the netlink sockets
//! (dumps and the link-event subscription), the ethtool ioctl, the effective user id and the
//! host name: the libc calls std does not offer. Plus the systemd readiness message, which
//! needs none.
//!
//! Declarations are written by hand against the Linux ABI (the same on glibc and musl, x86_64
//! and aarch64) because the project takes no dependency but lexopt.
//!
//! Invariant: every `unsafe` block is here, with a `// SAFETY:` comment, and none of them
//! outlives the call that made it.

use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::io;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::raw::{c_char, c_int, c_long, c_ulong, c_void};

use crate::netlink_abi::{
    AF_NETLINK, AF_UNIX, ETHTOOL_GLINKSETTINGS, IFNAMSIZ, MSG_TRUNC, NETLINK_ROUTE, SIOCETHTOOL,
    SOCK_DGRAM, SOCK_RAW,
};

// Errno values, one definition each for the whole crate: the same on x86_64 and aarch64
// (asm-generic's numbering, which both use).
pub const EPERM: i32 = 1;
pub const ENOENT: i32 = 2;
pub const EINTR: i32 = 4;
pub const EAGAIN: i32 = 11;
pub const ENOMEM: i32 = 12;
pub const EXDEV: i32 = 18;
pub const ENODEV: i32 = 19;
pub const ENOTDIR: i32 = 20;
pub const EINVAL: i32 = 22;
pub const ENFILE: i32 = 23;
pub const EMFILE: i32 = 24;
pub const ENAMETOOLONG: i32 = 36;
pub const ENOSYS: i32 = 38;
pub const ELOOP: i32 = 40;
pub const EOPNOTSUPP: i32 = 95;
/// Also what a netlink receive returns once the kernel dropped notifications for want of room.
pub const ENOBUFS: i32 = 105;

// Open flags, one definition each. O_RDONLY is 0.
const O_NOCTTY: c_int = 0o400;
const O_NONBLOCK: c_int = 0o4000;
const O_CLOEXEC: c_int = 0o2000000;
const O_PATH: c_int = 0o10000000;
// arm64 moved these two (arch/arm64/include/uapi/asm/fcntl.h); x86_64 uses asm-generic's.
#[cfg(target_arch = "x86_64")]
const O_DIRECTORY: c_int = 0o200000;
#[cfg(target_arch = "x86_64")]
const O_NOFOLLOW: c_int = 0o400000;
#[cfg(target_arch = "aarch64")]
const O_DIRECTORY: c_int = 0o40000;
#[cfg(target_arch = "aarch64")]
const O_NOFOLLOW: c_int = 0o100000;

const SIG_BLOCK: c_int = 0;
const F_GETFD: c_int = 1;
const F_SETFD: c_int = 2;
const FD_CLOEXEC: c_int = 1;
const SOL_SOCKET: c_int = 1;
/// `getdents64`: 217 on x86_64, 61 on aarch64 (asm-generic's table).
#[cfg(target_arch = "x86_64")]
const SYS_GETDENTS64: c_long = 217;
#[cfg(target_arch = "aarch64")]
const SYS_GETDENTS64: c_long = 61;
/// `openat2` came after the tables were unified: 437 everywhere.
const SYS_OPENAT2: c_long = 437;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;
/// `RLIMIT_NOFILE` is 7 and `RLIMIT_AS` 9 on x86_64 and aarch64 (asm-generic's numbering).
const RLIMIT_NOFILE: c_int = 7;
const RLIMIT_AS: c_int = 9;

/// How a sysfs file is opened. Every kind is close-on-exec.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// A directory as a path only (`O_PATH`): a handle to open relative to, which needs no
    /// read permission and allocates nothing in sysfs.
    Path,
    /// A directory to list with [`getdents`].
    List,
    /// An attribute to read: read-only and non-blocking. sysfs ignores `O_NONBLOCK`, and it
    /// keeps a FIFO planted in a fixture tree from blocking a scrape forever.
    Attr,
}

impl Open {
    fn flags(self) -> c_int {
        match self {
            Open::Path => O_PATH | O_DIRECTORY | O_CLOEXEC,
            Open::List => O_DIRECTORY | O_CLOEXEC,
            Open::Attr => O_CLOEXEC | O_NONBLOCK | O_NOCTTY,
        }
    }
}

/// Which symlinks an [`openat2`] may follow.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    /// Symlinks that stay beneath the directory; `..` may not climb out of it (`EXDEV`).
    Beneath,
    /// No symlinks at all (`ELOOP`), and nothing outside the directory.
    BeneathNoSymlinks,
}

/// `struct open_how` (include/uapi/linux/openat2.h): three u64, 24 bytes on every arch.
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

/// `struct rlimit`: two `rlim_t`, which is 64 bits on both arches.
#[repr(C)]
struct RLimit {
    cur: u64,
    max: u64,
}
const SO_ACCEPTCONN: c_int = 30;
/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: c_int = 3;
/// The most sockets we take from systemd; a unit listens on a handful at most.
const MAX_LISTEN_FDS: c_int = 64;

/// `sigset_t` is 1024 bits in both glibc and musl.
#[repr(C)]
struct SigSet([u64; 16]);

extern "C" {
    fn sigemptyset(set: *mut SigSet) -> c_int;
    fn sigaddset(set: *mut SigSet, sig: c_int) -> c_int;
    fn pthread_sigmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigwait(set: *const SigSet, sig: *mut c_int) -> c_int;
    fn geteuid() -> u32;
    fn fcntl(fd: c_int, cmd: c_int, ...) -> c_int;
    fn openat(dirfd: c_int, path: *const c_char, flags: c_int, ...) -> c_int;
    fn readlinkat(dirfd: c_int, path: *const c_char, buf: *mut c_char, len: usize) -> isize;
    fn syscall(number: c_long, ...) -> c_long;
    fn getrlimit(resource: c_int, rlim: *mut RLimit) -> c_int;
    fn setrlimit(resource: c_int, rlim: *const RLimit) -> c_int;
    fn getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void, len: *mut u32)
        -> c_int;
}

// Signals.

/// The signals `main` receives with [`wait_for_signal`] instead of their default action: the
/// two that stop the exporter, and four whose default (terminate) would otherwise stop it
/// silently, with a failure status that `Restart=on-failure` counts, when a terminal closes or
/// someone expects a reload or a dump that this exporter does not do.
const HANDLED: [Signal; 6] = [
    Signal::Term,
    Signal::Int,
    Signal::Hup,
    Signal::Usr1,
    Signal::Usr2,
    Signal::Alrm,
];

/// A signal in [`HANDLED`]. The numbers are the same on x86_64 and aarch64 (asm-generic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Hup = 1,
    Int = 2,
    Usr1 = 10,
    Usr2 = 12,
    Alrm = 14,
    Term = 15,
}

impl Signal {
    pub fn name(self) -> &'static str {
        match self {
            Signal::Hup => "SIGHUP",
            Signal::Int => "SIGINT",
            Signal::Usr1 => "SIGUSR1",
            Signal::Usr2 => "SIGUSR2",
            Signal::Alrm => "SIGALRM",
            Signal::Term => "SIGTERM",
        }
    }

    /// SIGTERM and SIGINT stop the exporter; the others are logged and ignored.
    pub fn terminates(self) -> bool {
        matches!(self, Signal::Term | Signal::Int)
    }
}

fn handled_set() -> std::io::Result<SigSet> {
    let mut set = SigSet([0; 16]);
    // SAFETY: `set` is a valid, writable sigset_t-sized buffer; both calls only write into it.
    let rc = unsafe { sigemptyset(&mut set) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    for sig in HANDLED {
        // SAFETY: as above; the signal numbers are valid.
        if unsafe { sigaddset(&mut set, sig as c_int) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(set)
}

/// Blocks the [`HANDLED`] signals in the calling thread and every thread it spawns afterwards,
/// so that [`wait_for_signal`] receives them. Call it first in `main`, before any thread.
///
/// A blocked signal is queued even for PID 1, where the kernel drops signals whose disposition
/// is the default: this is what makes `docker stop` work without an init.
pub fn block_signals() -> std::io::Result<()> {
    let set = handled_set()?;
    // SAFETY: `set` is initialised; a null `old` is allowed and means "not wanted".
    let rc = unsafe { pthread_sigmask(SIG_BLOCK, &set, std::ptr::null_mut()) };
    // pthread functions return the error number instead of setting errno.
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Waits until one of the [`HANDLED`] signals arrives and returns it.
pub fn wait_for_signal() -> std::io::Result<Signal> {
    let set = handled_set()?;
    loop {
        let mut sig: c_int = 0;
        // SAFETY: `set` is initialised and `sig` is a valid place for the result.
        let rc = unsafe { sigwait(&set, &mut sig) };
        // sigwait, too, returns the error number; EINTR is not among them, but musl's older
        // versions pass it through.
        if rc == EINTR {
            continue;
        }
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        if let Some(&s) = HANDLED.iter().find(|s| **s as c_int == sig) {
            return Ok(s);
        }
    }
}

/// Opens the directory `path` as a path only ([`Open::Path`]), to open things relative to.
pub fn open_dir(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_PATH | O_DIRECTORY)
        .open(path)
}

/// Opens `path` relative to the directory `dir` with `openat`, as `how` says, plus
/// `O_NOFOLLOW` when `nofollow` is set (a symlink then fails with `ELOOP`, or with `ENOTDIR`
/// for [`Open::Path`], which would otherwise open the link itself).
pub fn open_at(dir: &File, path: &CStr, how: Open, nofollow: bool) -> io::Result<File> {
    let flags = how.flags() | if nofollow { O_NOFOLLOW } else { 0 };
    // SAFETY: `dir` is an open descriptor for the duration of the call and `path` is
    // NUL-terminated; openat does not keep either pointer.
    let fd = unsafe { openat(dir.as_raw_fd(), path.as_ptr(), flags) };
    owned(fd as c_long)
}

/// Opens `path` relative to `dir` with `openat2` (Linux >= 5.6), the kernel enforcing
/// `resolve`. `ENOSYS` where the kernel or a system-call filter lacks it.
pub fn openat2(dir: &File, path: &CStr, how: Open, resolve: Resolve) -> io::Result<File> {
    let open_how = OpenHow {
        flags: how.flags() as u64,
        mode: 0,
        resolve: match resolve {
            Resolve::Beneath => RESOLVE_BENEATH,
            Resolve::BeneathNoSymlinks => RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS,
        },
    };
    // SAFETY: `dir` is open for the call, `path` is NUL-terminated, and `open_how` is a valid
    // `struct open_how` whose size is passed with it; the kernel keeps no pointer.
    let rc = unsafe {
        syscall(
            SYS_OPENAT2,
            dir.as_raw_fd() as c_long,
            path.as_ptr(),
            &open_how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    owned(rc)
}

/// Takes ownership of a descriptor a call just returned, or its errno.
fn owned(fd: c_long) -> io::Result<File> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us and nothing else refers to it.
    Ok(unsafe { File::from_raw_fd(fd as c_int) })
}

/// Reads the target of the symlink `path` relative to `dir` into `buf`, returning its length.
/// `EINVAL` when `path` is not a symlink; `ENAMETOOLONG` when the target fills `buf`, since it
/// may then be cut short.
pub fn read_link_at(dir: &File, path: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes and `path` is NUL-terminated;
    // readlinkat writes at most that many bytes and keeps no pointer.
    let n = unsafe {
        readlinkat(
            dir.as_raw_fd(),
            path.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    if n >= buf.len() {
        return Err(io::Error::from_raw_os_error(ENAMETOOLONG));
    }
    Ok(n)
}

/// Reads the next directory entries of `dir` (opened with [`Open::List`]) into `buf` as
/// `struct linux_dirent64` records, returning how many bytes were filled; 0 at the end.
pub fn getdents(dir: &File, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; the kernel writes no more and
    // keeps no pointer.
    let n = unsafe {
        syscall(
            SYS_GETDENTS64,
            dir.as_raw_fd() as c_long,
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Raises the soft limit on open descriptors to the hard limit, as Go programs do at start:
/// systemd and most shells leave the soft one at 1024, which a scrape of many interfaces with
/// many clients can use up. Returns the limits before and after when it raised them, `None`
/// when there was nothing to raise.
pub fn raise_nofile_limit() -> io::Result<Option<(u64, u64)>> {
    let mut lim = RLimit { cur: 0, max: 0 };
    // SAFETY: `lim` is a valid, writable `struct rlimit`.
    if unsafe { getrlimit(RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.cur >= lim.max {
        return Ok(None);
    }
    let old = lim.cur;
    lim.cur = lim.max;
    // SAFETY: `lim` is a valid `struct rlimit`; setrlimit only reads it.
    if unsafe { setrlimit(RLIMIT_NOFILE, &lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some((old, lim.cur)))
}

/// Whether the process has a soft limit on its address space (`RLIMIT_AS`); true when the
/// limit cannot be read.
pub fn address_space_limited() -> bool {
    let mut lim = RLimit { cur: 0, max: 0 };
    // SAFETY: `lim` is a valid, writable `struct rlimit`.
    if unsafe { getrlimit(RLIMIT_AS, &mut lim) } != 0 {
        return true;
    }
    lim.cur != u64::MAX
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

/// The length of each field of `struct utsname`: `__NEW_UTS_LEN` (64) plus a NUL, the same in
/// glibc, musl and the kernel, on x86_64 and aarch64.
const UTS_FIELD: usize = 65;

/// `struct utsname`: sysname, nodename, release, version, machine, domainname.
#[repr(C)]
struct UtsName([[u8; UTS_FIELD]; 6]);

extern "C" {
    fn uname(buf: *mut UtsName) -> c_int;
}

/// Appends the host name (the UTS namespace's, so a container's own) to `out`. A system call,
/// not a read of /proc/sys/kernel/hostname: it needs no /proc, which a scratch container or a
/// sandbox may not mount.
pub fn hostname(out: &mut Vec<u8>) -> io::Result<()> {
    let mut buf = UtsName([[0; UTS_FIELD]; 6]);
    // SAFETY: `buf` is a writable `struct utsname`, which uname fills and does not keep.
    if unsafe { uname(&mut buf) } < 0 {
        return Err(io::Error::last_os_error());
    }
    let node = &buf.0[1];
    let len = node.iter().position(|&b| b == 0).unwrap_or(UTS_FIELD);
    out.extend_from_slice(&node[..len]);
    Ok(())
}

#[derive(Debug)]
pub enum ListenFdsError {
    NotForUs,
    BadCount(String),
    NotASocket(c_int),
    NotListening(c_int),
    Setup(c_int, std::io::Error),
}

impl fmt::Display for ListenFdsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenFdsError::NotForUs => f.write_str(
                "--web.systemd-socket: no sockets were passed (LISTEN_PID is unset or names another process)",
            ),
            ListenFdsError::BadCount(v) => {
                write!(f, "--web.systemd-socket: invalid LISTEN_FDS {v:?}")
            }
            ListenFdsError::NotASocket(fd) => {
                write!(f, "--web.systemd-socket: fd {fd} is not an open TCP socket")
            }
            ListenFdsError::NotListening(fd) => {
                write!(f, "--web.systemd-socket: fd {fd} is not a listening socket")
            }
            ListenFdsError::Setup(fd, e) => {
                write!(f, "--web.systemd-socket: cannot set up fd {fd}: {e}")
            }
        }
    }
}

/// Takes the listening sockets passed by systemd socket activation (`LISTEN_PID`,
/// `LISTEN_FDS`, descriptors from 3), given the two variables' values.
pub fn listen_fds(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
) -> Result<Vec<TcpListener>, ListenFdsError> {
    if listen_pid.and_then(|p| p.parse::<u32>().ok()) != Some(std::process::id()) {
        return Err(ListenFdsError::NotForUs);
    }
    let raw = listen_fds.unwrap_or("");
    let count = match raw.parse::<c_int>() {
        Ok(n) if (1..=MAX_LISTEN_FDS).contains(&n) => n,
        _ => return Err(ListenFdsError::BadCount(raw.to_owned())),
    };
    let mut listeners = Vec::new();
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + count {
        // SAFETY: F_GETFD only inspects the descriptor table; an unused number gives -1.
        if unsafe { fcntl(fd, F_GETFD) } < 0 {
            return Err(ListenFdsError::NotASocket(fd));
        }
        let mut accepting: c_int = 0;
        let mut len = std::mem::size_of::<c_int>() as u32;
        // SAFETY: `accepting` and `len` are valid for writes of the sizes given.
        let rc = unsafe {
            getsockopt(
                fd,
                SOL_SOCKET,
                SO_ACCEPTCONN,
                (&mut accepting as *mut c_int).cast(),
                &mut len,
            )
        };
        if rc < 0 {
            return Err(ListenFdsError::NotASocket(fd));
        }
        if accepting == 0 {
            return Err(ListenFdsError::NotListening(fd));
        }
        // SAFETY: F_SETFD only changes this descriptor's close-on-exec flag.
        if unsafe { fcntl(fd, F_SETFD, FD_CLOEXEC) } < 0 {
            return Err(ListenFdsError::Setup(fd, std::io::Error::last_os_error()));
        }
        // SAFETY: the descriptor is open and a listening socket, and by the socket activation
        // protocol it was handed to this process alone; nothing else in the program owns it,
        // so the TcpListener may take ownership and close it.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        // A unix socket passes the checks above; only an IP address makes it ours.
        if listener.local_addr().is_err() {
            return Err(ListenFdsError::NotASocket(fd));
        }
        // A unit with NonBlocking=yes passes the socket with O_NONBLOCK set, and the accept
        // loop would then see EAGAIN whenever no client is waiting. Accepting blocks here, as
        // on a socket we bind ourselves; systemd only polls the socket, so the flag it shares
        // with us does not matter to it.
        listener
            .set_nonblocking(false)
            .map_err(|e| ListenFdsError::Setup(fd, e))?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Sends `READY=1` to `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket), so that a
/// `Type=notify` unit counts as started once the exporter serves.
pub fn notify_ready(socket: &str) -> std::io::Result<()> {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let addr = match socket.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt as _;
            SocketAddr::from_abstract_name(name.as_bytes())?
        }
        None => SocketAddr::from_pathname(socket)?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(b"READY=1\n", &addr)?;
    Ok(())
}

// The default listener.

const AF_INET6: c_int = 10;
const SOCK_STREAM: c_int = 1;
/// The kernel defines it as `O_CLOEXEC`.
const SOCK_CLOEXEC: c_int = O_CLOEXEC;
const IPPROTO_IPV6: c_int = 41;
const IPV6_V6ONLY: c_int = 26;
const SO_REUSEADDR: c_int = 2;
/// The backlog std's `TcpListener::bind` passes to `listen`, so that `:PORT` queues as many
/// connections as a named address does.
const LISTEN_BACKLOG: c_int = 128;

/// `struct sockaddr_in6`: 28 bytes, the same on every Linux architecture.
#[repr(C)]
struct SockAddrIn6 {
    family: u16,
    /// Network byte order.
    port: u16,
    flowinfo: u32,
    addr: [u8; 16],
    scope_id: u32,
}

extern "C" {
    fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
    fn setsockopt(fd: c_int, level: c_int, name: c_int, value: *const c_void, len: u32) -> c_int;
    fn bind(fd: c_int, addr: *const c_void, len: u32) -> c_int;
    fn listen(fd: c_int, backlog: c_int) -> c_int;
}

/// Listens on `[::]:port` for IPv6 and IPv4 alike. std cannot: its `TcpListener::bind` leaves
/// `IPV6_V6ONLY` at the host's `net.ipv6.bindv6only`, and where that is 1 the socket would
/// refuse IPv4. Fails (with EAFNOSUPPORT) on a host without IPv6.
pub fn listen_dual_stack(port: u16) -> std::io::Result<TcpListener> {
    // SAFETY: socket takes no pointers and returns a new descriptor or -1.
    let fd = unsafe { socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: socket just returned this descriptor and nothing else refers to it; the listener
    // owns it from here, so every early return below closes it.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    set_int_option(fd, IPPROTO_IPV6, IPV6_V6ONLY, 0)?;
    // As std sets it: a restarted exporter can bind its port while old connections linger.
    set_int_option(fd, SOL_SOCKET, SO_REUSEADDR, 1)?;
    let addr = SockAddrIn6 {
        family: AF_INET6 as u16,
        port: port.to_be(),
        flowinfo: 0,
        addr: [0; 16],
        scope_id: 0,
    };
    let len = std::mem::size_of::<SockAddrIn6>() as u32;
    // SAFETY: `addr` is a valid sockaddr_in6 of `len` bytes; bind copies it and keeps nothing.
    if unsafe { bind(fd, (&addr as *const SockAddrIn6).cast(), len) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: listen takes no pointers; `fd` is a bound socket the listener owns.
    if unsafe { listen(fd, LISTEN_BACKLOG) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(listener)
}

fn set_int_option(fd: c_int, level: c_int, name: c_int, value: c_int) -> std::io::Result<()> {
    let len = std::mem::size_of::<c_int>() as u32;
    // SAFETY: `value` is a valid int for the length given; setsockopt copies it.
    let rc = unsafe { setsockopt(fd, level, name, (&value as *const c_int).cast(), len) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Caps the kernel's send buffer of one connection (`SO_SNDBUF`; the kernel doubles the value
/// for its bookkeeping and stops autotuning it), so that clients that do not read cannot make
/// the kernel hold a whole response for each of them.
pub fn set_send_buffer(stream: &TcpStream, bytes: c_int) -> std::io::Result<()> {
    /// The same on x86_64 and aarch64 (asm-generic).
    const SO_SNDBUF: c_int = 7;
    set_int_option(stream.as_raw_fd(), SOL_SOCKET, SO_SNDBUF, bytes)
}

// ---------------------------------------------------------------------------------------------
// Netlink and ethtool: the netlink source's system calls. The message bytes are built and
// parsed in `netlink.rs`; only the sockets and the ioctl buffers are here.

/// The same on x86_64 and aarch64 (both use the generic socket option numbers here).
const SO_RCVTIMEO: c_int = 20;
const ETHTOOL_GSET: u32 = 0x1;

/// How long one receive of a dump may wait. The kernel answers a dump at once; a socket that
/// stays silent this long is broken, and a scrape must not hang on it.
const NETLINK_RECV_TIMEOUT_SECS: i64 = 5;

/// `link_mode_masks_nwords` is an `__s8`, so the kernel never asks for more than 127 words
/// for each of the three masks.
const MAX_NWORDS: usize = 127;
/// `struct ethtool_link_settings` without its masks: 48 bytes, as 12 words.
const LINK_SETTINGS_WORDS: usize = 12;

extern "C" {
    fn getsockname(fd: c_int, addr: *mut c_void, len: *mut u32) -> c_int;
    fn sendto(
        fd: c_int,
        buf: *const c_void,
        len: usize,
        flags: c_int,
        addr: *const c_void,
        addr_len: u32,
    ) -> isize;
    fn recvfrom(
        fd: c_int,
        buf: *mut c_void,
        len: usize,
        flags: c_int,
        addr: *mut c_void,
        addr_len: *mut u32,
    ) -> isize;
    fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
}

/// `struct sockaddr_nl`.
#[repr(C)]
#[derive(Default)]
struct SockaddrNl {
    family: u16,
    pad: u16,
    pid: u32,
    groups: u32,
}

/// `struct timeval` on 64-bit Linux.
#[repr(C)]
struct Timeval {
    sec: i64,
    usec: i64,
}

fn new_socket(domain: c_int, ty: c_int, protocol: c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket takes no pointers; a non-negative result is a new descriptor that nothing
    // else owns, so OwnedFd may close it.
    unsafe {
        let fd = socket(domain, ty | SOCK_CLOEXEC, protocol);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// A bound `NETLINK_ROUTE` socket.
pub struct NetlinkSocket {
    fd: OwnedFd,
    /// The port id the kernel gave us, which replies to our requests carry.
    pub portid: u32,
}

/// One datagram received.
pub struct Received {
    /// Bytes in the buffer.
    pub len: usize,
    /// The datagram's real length when it did not fit the buffer (`MSG_TRUNC`).
    pub truncated: Option<usize>,
    /// Whether the kernel sent it (port id 0), not another process.
    pub from_kernel: bool,
}

impl NetlinkSocket {
    pub fn open() -> io::Result<NetlinkSocket> {
        let fd = new_socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)?;
        let raw = fd.as_raw_fd();
        let mut addr = SockaddrNl {
            family: AF_NETLINK as u16,
            ..SockaddrNl::default()
        };
        let mut len = std::mem::size_of::<SockaddrNl>() as u32;
        let timeout = Timeval {
            sec: NETLINK_RECV_TIMEOUT_SECS,
            usec: 0,
        };
        // SAFETY: `addr`, `len` and `timeout` are valid for reads and writes of the sizes
        // passed, and the calls keep no pointer past their return.
        unsafe {
            if bind(raw, (&addr as *const SockaddrNl).cast(), len) < 0
                || getsockname(raw, (&mut addr as *mut SockaddrNl).cast(), &mut len) < 0
                || setsockopt(
                    raw,
                    SOL_SOCKET,
                    SO_RCVTIMEO,
                    (&timeout as *const Timeval).cast(),
                    std::mem::size_of::<Timeval>() as u32,
                ) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(NetlinkSocket {
            fd,
            portid: addr.pid,
        })
    }

    /// Sends one request to the kernel.
    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        let kernel = SockaddrNl {
            family: AF_NETLINK as u16,
            ..SockaddrNl::default()
        };
        loop {
            // SAFETY: `msg` and `kernel` are valid for reads of the lengths given.
            let n = unsafe {
                sendto(
                    self.fd.as_raw_fd(),
                    msg.as_ptr().cast(),
                    msg.len(),
                    0,
                    (&kernel as *const SockaddrNl).cast(),
                    std::mem::size_of::<SockaddrNl>() as u32,
                )
            };
            if n >= 0 {
                return if n as usize == msg.len() {
                    Ok(())
                } else {
                    Err(io::ErrorKind::WriteZero.into())
                };
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }

    /// Receives one datagram. `MSG_TRUNC` makes the kernel return the datagram's real length,
    /// so a datagram larger than `buf` is seen as truncated instead of parsed half.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        self.recv_with(buf, 0)
    }

    fn recv_with(&self, buf: &mut [u8], flags: c_int) -> io::Result<Received> {
        loop {
            let mut from = SockaddrNl::default();
            let mut from_len = std::mem::size_of::<SockaddrNl>() as u32;
            // SAFETY: `buf` is valid for writes of its length, `from` and `from_len` for the
            // sockaddr_nl the kernel writes.
            let n = unsafe {
                recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    MSG_TRUNC | flags,
                    (&mut from as *mut SockaddrNl).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let err = io::Error::last_os_error();
                if err.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(err);
            }
            let real = n as usize;
            return Ok(Received {
                len: real.min(buf.len()),
                truncated: (real > buf.len()).then_some(real),
                from_kernel: from.pid == 0,
            });
        }
    }
}

/// `struct ifreq` with `ifr_data` pointing at an ethtool command.
#[repr(C)]
struct IfreqData {
    name: [u8; IFNAMSIZ],
    data: *mut c_void,
    /// The rest of the 40-byte union.
    pad: [u8; 16],
}

/// What `ETHTOOL_GLINKSETTINGS` (or legacy `ETHTOOL_GSET`) reports about a link.
pub struct LinkSettings {
    /// Mb/s as the kernel keeps it: `u32::MAX` is SPEED_UNKNOWN.
    pub speed: u32,
    /// DUPLEX_HALF (0), DUPLEX_FULL (1) or anything else for unknown.
    pub duplex: u8,
}

/// An `AF_UNIX` datagram socket for the ethtool ioctl, which any user may issue for the
/// read-only commands used here.
pub struct Ethtool {
    fd: OwnedFd,
    /// The mask words the kernel asked for in the `ETHTOOL_GLINKSETTINGS` handshake; 0 until
    /// the first handshake. The number is the kernel's, so one handshake serves every call.
    nwords: usize,
    /// Whether `ETHTOOL_GLINKSETTINGS` has worked once: then the kernel has it, and its
    /// EOPNOTSUPP means the driver has no link settings, which `ETHTOOL_GSET` cannot change.
    have_glinksettings: bool,
    buf: Box<[u32; LINK_SETTINGS_WORDS + 3 * MAX_NWORDS]>,
}

impl Ethtool {
    pub fn open() -> io::Result<Ethtool> {
        Ok(Ethtool {
            fd: new_socket(AF_UNIX, SOCK_DGRAM, 0)?,
            nwords: 0,
            have_glinksettings: false,
            buf: Box::new([0; LINK_SETTINGS_WORDS + 3 * MAX_NWORDS]),
        })
    }

    /// Speed and duplex of the interface `name` in this process's network namespace. Errors
    /// are the kernel's: EOPNOTSUPP for a driver without link settings, ENODEV for an
    /// interface gone since the dump.
    pub fn link_settings(&mut self, name: &[u8]) -> io::Result<LinkSettings> {
        if name.len() >= IFNAMSIZ || name.contains(&0) {
            return Err(io::ErrorKind::InvalidInput.into());
        }
        match self.glinksettings(name) {
            Err(e) if e.raw_os_error() == Some(EOPNOTSUPP) && !self.have_glinksettings => {
                self.gset(name)
            }
            other => other,
        }
    }

    fn glinksettings(&mut self, name: &[u8]) -> io::Result<LinkSettings> {
        // Two rounds at most: the handshake, when the word count is not known yet or the
        // kernel changed its mind, then the real call.
        for _ in 0..2 {
            self.buf.fill(0);
            self.buf[0] = ETHTOOL_GLINKSETTINGS;
            // link_mode_masks_nwords is the byte at offset 15, an `__s8`.
            self.buf[3] = u32::from_ne_bytes(set_byte(self.buf[3], 3, self.nwords as u8));
            self.ioctl(name)?;
            let nwords = self.buf[3].to_ne_bytes()[3] as i8;
            if nwords < 0 {
                self.nwords = usize::from(nwords.unsigned_abs()).min(MAX_NWORDS);
                continue;
            }
            self.have_glinksettings = true;
            return Ok(LinkSettings {
                speed: self.buf[1],
                duplex: self.buf[2].to_ne_bytes()[0],
            });
        }
        Err(io::ErrorKind::InvalidData.into())
    }

    /// Legacy `struct ethtool_cmd`, for kernels before 4.9.
    fn gset(&mut self, name: &[u8]) -> io::Result<LinkSettings> {
        self.buf.fill(0);
        self.buf[0] = ETHTOOL_GSET;
        self.ioctl(name)?;
        // speed (u16) at byte 12, duplex at 14, speed_hi (u16) at 28.
        let w3 = self.buf[3].to_ne_bytes();
        let w7 = self.buf[7].to_ne_bytes();
        let speed = u32::from(u16::from_ne_bytes([w3[0], w3[1]]))
            | u32::from(u16::from_ne_bytes([w7[0], w7[1]])) << 16;
        Ok(LinkSettings {
            speed,
            duplex: w3[2],
        })
    }

    fn ioctl(&mut self, name: &[u8]) -> io::Result<()> {
        let mut req = IfreqData {
            name: [0; IFNAMSIZ],
            data: self.buf.as_mut_ptr().cast(),
            pad: [0; 16],
        };
        req.name[..name.len()].copy_from_slice(name);
        loop {
            // SAFETY: `req` is a valid ifreq whose name is NUL-terminated (checked shorter
            // than IFNAMSIZ) and whose data points at `self.buf`, which holds the largest
            // command the kernel may write for the word count it was given (at most 127 words
            // per mask, the most an `__s8` can ask for). Neither outlives the call.
            let rc = unsafe { ioctl(self.fd.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfreqData) };
            if rc >= 0 {
                return Ok(());
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

fn set_byte(word: u32, at: usize, value: u8) -> [u8; 4] {
    let mut b = word.to_ne_bytes();
    b[at] = value;
    b
}

// ---------------------------------------------------------------------------------------------
// Link events: the subscription of `since.rs`'s watcher. The notifications are parsed in
// `netlink.rs`; only the socket is here.

/// `RTMGRP_LINK`, the multicast group of link notifications (linux/rtnetlink.h).
const RTMGRP_LINK: u32 = 1;
/// The same on x86_64 and aarch64 (the generic socket option numbers).
const SO_RCVBUF: c_int = 8;
/// The same on x86_64 and aarch64.
const MSG_DONTWAIT: c_int = 0x40;

impl NetlinkSocket {
    /// A `NETLINK_ROUTE` socket subscribed to link notifications, with a receive buffer of
    /// `rcvbuf` bytes asked for. The kernel caps the request at `net.core.rmem_max` and books
    /// twice what it grants; the bytes it books are returned. Receives block without a timeout:
    /// the socket belongs to a thread that has nothing else to do.
    pub fn subscribe_links(rcvbuf: usize) -> io::Result<(NetlinkSocket, usize)> {
        let fd = new_socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE)?;
        let raw = fd.as_raw_fd();
        let asked = c_int::try_from(rcvbuf).unwrap_or(c_int::MAX);
        // Sized before the bind, so that no notification ever meets the default buffer.
        set_int_option(raw, SOL_SOCKET, SO_RCVBUF, asked)?;
        let mut addr = SockaddrNl {
            family: AF_NETLINK as u16,
            groups: RTMGRP_LINK,
            ..SockaddrNl::default()
        };
        let mut len = std::mem::size_of::<SockaddrNl>() as u32;
        let mut granted: c_int = 0;
        let mut granted_len = std::mem::size_of::<c_int>() as u32;
        // SAFETY: `addr`, `len`, `granted` and `granted_len` are valid for reads and writes of
        // the sizes passed, and the calls keep no pointer past their return.
        unsafe {
            if bind(raw, (&addr as *const SockaddrNl).cast(), len) < 0
                || getsockname(raw, (&mut addr as *mut SockaddrNl).cast(), &mut len) < 0
                || getsockopt(
                    raw,
                    SOL_SOCKET,
                    SO_RCVBUF,
                    (&mut granted as *mut c_int).cast(),
                    &mut granted_len,
                ) < 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        let socket = NetlinkSocket {
            fd,
            portid: addr.pid,
        };
        Ok((socket, usize::try_from(granted).unwrap_or(0)))
    }

    /// Receives one datagram if one is queued, without waiting: `None` when the queue is
    /// empty.
    pub fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<Received>> {
        match self.recv_with(buf, MSG_DONTWAIT) {
            Ok(got) => Ok(Some(got)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}
