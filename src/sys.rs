//! The crate's only `unsafe`: signal masks, sockets inherited from systemd, `openat` for
//! sysfs attributes, and the effective user id: the libc calls std does not offer. Plus the systemd readiness message, which needs none.
//!
//! Declarations are written by hand against the Linux ABI (the same on glibc and musl, x86_64
//! and aarch64) because the project takes no dependency but lexopt.
//!
//! Invariant: every `unsafe` block is here, with a `// SAFETY:` comment, and none of them
//! outlives the call that made it.

use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::net::TcpListener;
use std::os::fd::{AsRawFd as _, FromRawFd as _};
use std::os::raw::{c_char, c_int, c_void};

const SIG_BLOCK: c_int = 0;
pub const SIGINT: c_int = 2;
pub const SIGTERM: c_int = 15;
const F_GETFD: c_int = 1;
const F_SETFD: c_int = 2;
const FD_CLOEXEC: c_int = 1;
const SOL_SOCKET: c_int = 1;
/// `O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY`, the same on x86_64 and aarch64.
/// Non-blocking: sysfs ignores it, and it keeps a FIFO planted in a fixture tree from blocking
/// a scrape forever.
const OPEN_ATTR_FLAGS: c_int = 0o2000000 | 0o4000 | 0o400;
/// `O_PATH | O_CLOEXEC`, the same on x86_64 and aarch64.
const OPEN_PATH_FLAGS: c_int = 0o10000000 | 0o2000000;
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
    fn getsockopt(fd: c_int, level: c_int, name: c_int, value: *mut c_void, len: *mut u32)
        -> c_int;
}

fn termination_set() -> SigSet {
    let mut set = SigSet([0; 16]);
    // SAFETY: `set` is a valid, writable sigset_t-sized buffer; both calls only write into it
    // and cannot fail for valid signal numbers.
    unsafe {
        sigemptyset(&mut set);
        sigaddset(&mut set, SIGTERM);
        sigaddset(&mut set, SIGINT);
    }
    set
}

/// Blocks SIGTERM and SIGINT in the calling thread and every thread it spawns afterwards, so
/// that [`wait_for_termination`] receives them. Call it first in `main`, before any thread.
///
/// A blocked signal is queued even for PID 1, where the kernel drops signals whose disposition
/// is the default: this is what makes `docker stop` work without an init.
pub fn block_termination_signals() {
    let set = termination_set();
    // SAFETY: `set` is initialised; a null `old` is allowed and means "not wanted".
    unsafe {
        pthread_sigmask(SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits until SIGTERM or SIGINT arrives and returns its number.
pub fn wait_for_termination() -> c_int {
    let set = termination_set();
    loop {
        let mut sig: c_int = 0;
        // SAFETY: `set` is initialised and `sig` is a valid place for the result.
        let rc = unsafe { sigwait(&set, &mut sig) };
        if rc == 0 {
            return sig;
        }
    }
}

/// Opens `name` relative to the directory `dir` for reading, non-blocking and close-on-exec.
/// std has no `openat`; it lets a scrape open each attribute with a one-component lookup.
pub fn open_at(dir: &File, name: &CStr) -> std::io::Result<File> {
    open_with(dir, name, OPEN_ATTR_FLAGS)
}

/// Opens the directory `name` relative to `dir` as a path only (`O_PATH`), close-on-exec: a
/// handle for [`open_at`] that needs no read permission and allocates nothing in sysfs.
pub fn open_dir_at(dir: &File, name: &CStr) -> std::io::Result<File> {
    open_with(dir, name, OPEN_PATH_FLAGS)
}

fn open_with(dir: &File, name: &CStr, flags: c_int) -> std::io::Result<File> {
    // SAFETY: `dir` is an open descriptor for the duration of the call and `name` is
    // NUL-terminated; openat does not keep either pointer.
    let fd = unsafe { openat(dir.as_raw_fd(), name.as_ptr(), flags) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat just returned this descriptor to us and nothing else refers to it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}

#[derive(Debug)]
pub enum ListenFdsError {
    NotForUs,
    BadCount(String),
    NotASocket(c_int),
    NotListening(c_int),
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
        // SAFETY: the descriptor is open and a listening socket, and by the socket activation
        // protocol it was handed to this process alone; nothing else in the program owns it,
        // so the TcpListener may take ownership and close it.
        let listener = unsafe {
            fcntl(fd, F_SETFD, FD_CLOEXEC);
            TcpListener::from_raw_fd(fd)
        };
        // A unix socket passes the checks above; only an IP address makes it ours.
        if listener.local_addr().is_err() {
            return Err(ListenFdsError::NotASocket(fd));
        }
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

/// Caps the kernel's send buffer of one connection (`SO_SNDBUF`; the kernel doubles the value
/// for its bookkeeping and stops autotuning it), so that clients that do not read cannot make
/// the kernel hold a whole response for each of them.
pub fn set_send_buffer(stream: &std::net::TcpStream, bytes: c_int) -> std::io::Result<()> {
    /// The same on x86_64 and aarch64 (asm-generic).
    const SO_SNDBUF: c_int = 7;
    // Declared here rather than with the others, so that it cannot clash with another
    // declaration of the same function at module level.
    extern "C" {
        fn setsockopt(
            fd: c_int,
            level: c_int,
            name: c_int,
            value: *const c_void,
            len: u32,
        ) -> c_int;
    }
    // SAFETY: the descriptor is open for the borrow of `stream`, and `bytes` is valid for reads
    // of the size given.
    let rc = unsafe {
        setsockopt(
            stream.as_raw_fd(),
            SOL_SOCKET,
            SO_SNDBUF,
            (&bytes as *const c_int).cast(),
            std::mem::size_of::<c_int>() as u32,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
