//! Reads `<root>/class/net` into plain [`Interface`] values, afresh on every scan.
//!
//! The kernel's rules, as node_exporter and procfs learned them: `class/net` holds symlinks into
//! `devices/` (and regular files such as `bonding_masters`, which are not interfaces); an
//! attribute the driver cannot answer reads EINVAL (`carrier`, `speed`, `duplex` on an interface
//! that is not running), EOPNOTSUPP or ENODEV; an interface may vanish between the listing and
//! the read, giving ENOENT. Those mean "no sample". Anything else (a directory where a file
//! should be, a value that does not parse, a path that would leave the root) is counted in
//! [`Scan::errors`] and also gives no sample: a scrape degrades, it never fails whole. But a
//! resource failure (EMFILE, ENFILE, ENOMEM, ENOBUFS) anywhere, or a listing cut short, fails
//! the scan with [`ScanError`]: the exporter could not look, which says nothing about the host.
//!
//! Every open stays beneath the root. The root is opened once per scan; `class/net` and each
//! `class/net/<name>` are opened relative to it with `openat2(RESOLVE_BENEATH)`, so the kernel
//! follows `class/net/eth0 -> ../../devices/virtual/net/eth0` but refuses any symlink or `..`
//! that leads out (EXDEV). Attributes are opened relative to the interface directory with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`: an attribute is never followed as a symlink (ELOOP).
//! Where `openat2` is missing (Linux < 5.6, or a system-call filter) [`walk`] resolves the same
//! paths one component at a time.
//!
//! Invariant: never opens anything outside its root, never panics on any file content, and
//! never blocks on a file that is not a sysfs attribute (attributes are opened non-blocking).

use std::ffi::{CStr, OsStr};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read as _};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};

use crate::model::{Interface, OperState, Options, Scan, ScanError, STATISTICS, STATISTICS_LEN};
use crate::sys::{
    self, Open, Resolve, EAGAIN, EINVAL, ELOOP, EMFILE, ENFILE, ENOBUFS, ENODEV, ENOENT, ENOMEM,
    ENOSYS, ENOTDIR, EOPNOTSUPP, EPERM, EXDEV,
};
use crate::sysfs_files::Attr;

/// The most bytes an attribute may hold. sysfs `show` callbacks write into one page, so a real
/// attribute is never longer; a fixture file that is gets refused rather than truncated. The
/// same buffer takes `class/net`'s directory entries, a hundred or so per `getdents64`.
const ATTR_BUF: usize = 4096;

/// Times an `openat2` that met a concurrent rename (EAGAIN: the kernel could not prove a `..`
/// stayed beneath the root) is retried before [`walk`] resolves the path instead. Renames
/// anywhere on the host cause it, so it happens, but rarely twice in a row.
const BENEATH_RETRIES: usize = 3;

/// The most symlinks one [`walk`] follows: the kernel's own limit (MAXSYMLINKS), past which it
/// answers ELOOP too. A kernel-shaped lookup follows one.
const MAX_SYMLINKS: u32 = 40;

/// The longest symlink target [`walk`] reads: PATH_MAX, the most the kernel stores.
const LINK_BUF: usize = 4096;

/// Where interfaces are listed, relative to the root; each name is appended to it.
const CLASS_NET: &[u8] = b"class/net/";

/// `d_type` of a regular file in a directory entry.
const DT_REG: u8 = 8;

/// What this process learned of `openat2`: asked once, then remembered.
static OPENAT2: AtomicU8 = AtomicU8::new(OPENAT2_UNKNOWN);
const OPENAT2_UNKNOWN: u8 = 0;
const OPENAT2_WORKS: u8 = 1;
const OPENAT2_REFUSED: u8 = 2;

/// `flags` bits (linux/if.h): administratively up, and receiving promiscuously for any reason
/// (sysfs shows the device's own flags, which a bridge port or a packet capture sets too).
const IFF_UP: u64 = 0x1;
const IFF_PROMISC: u64 = 0x100;

/// `uevent` `DEVTYPE` values that are also the link kind netlink reports for the interface
/// (`IFLA_INFO_KIND`): the driver names its device type after its kind. Any other `DEVTYPE`
/// (`wlan`, `gadget`, `dsa`) is no kind, so that the two sources never disagree on a non-empty
/// value; a veth, macvlan or tun has no `DEVTYPE` at all.
const DEVTYPE_KINDS: &[&str] = &[
    "bond",
    "bridge",
    "geneve",
    "macsec",
    "vlan",
    "vxlan",
    "wireguard",
];

/// Why the sysfs root cannot be used at all.
#[derive(Debug)]
pub enum Error {
    NoClassNet { path: PathBuf, err: io::Error },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NoClassNet { path, err } => {
                write!(f, "cannot read {}: {}", path.display(), lowercase(err))
            }
        }
    }
}

/// `io::Error`'s own text starts with a capital ("No such file or directory"); our messages
/// continue a sentence.
fn lowercase(err: &io::Error) -> String {
    let mut s = err.to_string();
    if let Some(first) = s.get(..1) {
        let lower = first.to_ascii_lowercase();
        s.replace_range(..1, &lower);
    }
    s
}

/// Checks at start that `root/class/net` is a readable directory.
pub fn check_root(root: &Path) -> Result<(), Error> {
    let path = root.join("class/net");
    match fs::read_dir(&path) {
        Ok(_) => Ok(()),
        Err(err) => Err(Error::NoClassNet { path, err }),
    }
}

/// Reads interfaces under one sysfs root, reusing its buffers from scan to scan.
pub struct Reader {
    root: PathBuf,
    /// `root/class/net`, only to name it in errors and log lines.
    class_net: PathBuf,
    buf: Box<[u8; ATTR_BUF]>,
    /// `class/net/<name>\0` for each entry of the last listing that may be an interface.
    paths: Vec<Vec<u8>>,
    /// `class/net/<master>\0`, to check that a `master` link names an interface.
    master_path: Vec<u8>,
    /// How many of [`STATISTICS`] a scan with statistics reads: all, except for `auto`'s check.
    statistics: usize,
}

impl Reader {
    pub fn new(root: &Path) -> Reader {
        Reader {
            root: root.to_path_buf(),
            class_net: root.join("class/net"),
            buf: Box::new([0; ATTR_BUF]),
            paths: Vec::new(),
            master_path: Vec::new(),
            statistics: STATISTICS_LEN,
        }
    }

    /// A reader whose scans with statistics read only the first `n` counters of
    /// [`STATISTICS`]. `auto`'s check compares packet counters, which are among the first
    /// eight; reading all 24 files would triple its cost on a host with many interfaces.
    pub fn with_statistics(mut self, n: usize) -> Reader {
        self.statistics = n.min(STATISTICS_LEN);
        self
    }

    /// Reads every interface under the root into `scan`. An error means the scan could not
    /// see every interface (the listing failed, or a resource ran out), so it cannot stand
    /// for the host.
    pub fn scan(&mut self, opts: &Options, scan: &mut Scan) -> Result<(), ScanError> {
        scan.begin();
        // The root is opened afresh on each scan, so that an unmounted and remounted
        // /host/sys is seen as it is now, not through a descriptor of the old mount.
        let root = self.list(opts)?;
        let paths = std::mem::take(&mut self.paths);
        let mut result = Ok(());
        for path in &paths {
            let mut iface = scan.take_spare();
            match self.read_interface(&root, path, opts, &mut iface, &mut scan.errors) {
                Ok(true) => scan.interfaces.push(iface),
                Ok(false) => scan.give_back(iface),
                Err(e) => {
                    scan.give_back(iface);
                    result = Err(e);
                    break;
                }
            }
        }
        self.paths = paths;
        result?;
        scan.interfaces.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(())
    }

    /// Fills `self.paths` with the entries of `class/net` that may be interfaces, and returns
    /// the root they are relative to.
    fn list(&mut self, opts: &Options) -> Result<File, ScanError> {
        let failed = |err| ScanError {
            what: "cannot list interfaces in",
            subject: self.class_net.display().to_string(),
            err,
        };
        let root = sys::open_dir(&self.root).map_err(failed)?;
        let dir =
            open_beneath(&root, c"class/net", Open::List, Resolve::Beneath).map_err(failed)?;
        let mut count = 0;
        loop {
            let n = sys::getdents(&dir, &mut self.buf[..]).map_err(failed)?;
            if n == 0 {
                break;
            }
            let mut records = &self.buf[..n];
            while !records.is_empty() {
                let Some((d_type, name, rest)) = next_dirent(records) else {
                    return Err(failed(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "malformed directory entry",
                    )));
                };
                records = rest;
                // Interfaces are symlinks (directories in some container runtimes' copies);
                // regular files such as `bonding_masters` are not. `d_type` costs no syscall.
                if d_type == DT_REG || name == b"." || name == b".." || !opts.wants(name) {
                    continue;
                }
                if count == self.paths.len() {
                    self.paths.push(Vec::new());
                }
                // Kept NUL-terminated for openat2; a name from getdents holds no NUL or `/`.
                let slot = &mut self.paths[count];
                slot.clear();
                slot.extend_from_slice(CLASS_NET);
                slot.extend_from_slice(name);
                slot.push(0);
                count += 1;
            }
        }
        self.paths.truncate(count);
        Ok(root)
    }

    /// Reads one interface; false when it is to be left out (gone, escaping the root, or no
    /// readable operstate).
    fn read_interface(
        &mut self,
        root: &File,
        path_nul: &[u8],
        opts: &Options,
        iface: &mut Interface,
        errors: &mut u64,
    ) -> Result<bool, ScanError> {
        let Ok(path) = CStr::from_bytes_with_nul(path_nul) else {
            return Ok(false);
        };
        let name = path.to_bytes().get(CLASS_NET.len()..).unwrap_or_default();
        iface.name.clear();
        iface.name.extend_from_slice(name);
        let place = Place {
            class_net: &self.class_net,
            name,
        };
        // The directory is opened once (O_PATH: no read access needed, nothing allocated in
        // sysfs) and every attribute relative to it, which spares the kernel walking the
        // whole path and the class/net symlink for each of a dozen attributes.
        let dir = match open_beneath(root, path, Open::Path, Resolve::Beneath) {
            Ok(dir) => dir,
            Err(err) => {
                place.fail(None, err, errors)?;
                return Ok(false);
            }
        };
        let mut r = AttrReader {
            dir: &dir,
            buf: &mut self.buf,
            place,
            errors,
            fatal: None,
        };
        for attr in Attr::DEFAULT {
            let n = r.fetch(attr.file(), Fetch::Read);
            if attr == Attr::Operstate && n.is_none() {
                return r.fatal.map_or(Ok(false), Err);
            }
            let value = n.map(|n| trim_newline(&r.buf[..n]));
            if !store(iface, attr, value) {
                r.unparsed(attr.file(), n.unwrap_or(0));
            }
        }
        // The link is read, never followed: its target is a path in devices/ that may lead
        // anywhere in a planted tree, and only its last component, an interface name, is used.
        iface.master.clear();
        if let Some(n) = r.fetch(c"master", Fetch::Link) {
            match master_name(&r.buf[..n]) {
                Some(name) => iface.master.extend_from_slice(name),
                None => *r.errors += 1,
            }
        }
        if opts.statistics {
            let stats = iface.clear_statistics();
            let wanted = &STATISTICS[..self.statistics];
            for (slot, stat) in stats.iter_mut().zip(wanted) {
                if let Some(file) = stat.file {
                    let n = r.fetch(file, Fetch::Read);
                    *slot = n.and_then(|n| parse_u64(trim_newline(&r.buf[..n])));
                    if n.is_some() && slot.is_none() {
                        r.unparsed(file, n.unwrap_or(0));
                    }
                }
            }
        } else {
            iface.statistics = None;
        }
        if let Some(e) = r.fatal {
            return Err(e);
        }
        // A master is kept only when class/net holds an interface of that name, found the way
        // every interface is (beneath the root); a link to anything else is no master.
        if !iface.master.is_empty() {
            let path = &mut self.master_path;
            path.clear();
            path.extend_from_slice(CLASS_NET);
            path.extend_from_slice(&iface.master);
            path.push(0);
            let found = match CStr::from_bytes_with_nul(path) {
                Ok(path) => open_beneath(root, path, Open::Path, Resolve::Beneath),
                Err(_) => Err(io::Error::from_raw_os_error(ENOENT)),
            };
            if let Err(err) = found {
                iface.master.clear();
                place.fail(Some(c"master"), err, r.errors)?;
            }
        }
        Ok(true)
    }
}

/// Splits the first `struct linux_dirent64` off `records`: its `d_type`, its name, and the
/// records after it. The layout is the kernel's: `d_reclen` (u16) at byte 16, `d_type` at 18,
/// the NUL-terminated name from 19.
fn next_dirent(records: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let reclen = usize::from(u16::from_ne_bytes([*records.get(16)?, *records.get(17)?]));
    let d_type = *records.get(18)?;
    let name_area = records.get(19..reclen)?;
    let name = name_area.get(..name_area.iter().position(|&b| b == 0)?)?;
    Some((d_type, name, records.get(reclen..)?))
}

/// Opens `path` relative to `dir` without leaving `dir`: with `openat2` where the kernel has
/// it, else with [`walk`]. `Resolve::Beneath` follows symlinks that stay beneath `dir`;
/// `Resolve::BeneathNoSymlinks` follows none.
fn open_beneath(dir: &File, path: &CStr, how: Open, resolve: Resolve) -> io::Result<File> {
    let state = OPENAT2.load(Ordering::Relaxed);
    if state != OPENAT2_REFUSED {
        for _ in 0..=BENEATH_RETRIES {
            match sys::openat2(dir, path, how, resolve) {
                Ok(file) => {
                    if state == OPENAT2_UNKNOWN {
                        OPENAT2.store(OPENAT2_WORKS, Ordering::Relaxed);
                    }
                    return Ok(file);
                }
                Err(err) => match err.raw_os_error() {
                    Some(EAGAIN) => continue,
                    // A kernel before 5.6, or a filter that does not know the call (Docker's
                    // default answers ENOSYS, systemd's SystemCallErrorNumber= often EPERM).
                    // EPERM only counts before openat2 ever worked: after that it is the
                    // file's own answer.
                    Some(ENOSYS) => {
                        OPENAT2.store(OPENAT2_REFUSED, Ordering::Relaxed);
                        break;
                    }
                    Some(EPERM) if state == OPENAT2_UNKNOWN => {
                        OPENAT2.store(OPENAT2_REFUSED, Ordering::Relaxed);
                        break;
                    }
                    _ => return Err(err),
                },
            }
        }
    }
    walk(dir, path.to_bytes(), how, resolve == Resolve::Beneath)
}

/// Resolves `path` relative to `base` one component at a time, for kernels without
/// `openat2`: each component is opened with `O_NOFOLLOW` relative to the last, a symlink is
/// read with `readlinkat` and followed only when `follow` is set, and only if its target is
/// relative and no `..` climbs above `base` (EXDEV otherwise, as `openat2` answers); at most
/// [`MAX_SYMLINKS`] links are followed (ELOOP).
///
/// Unlike `openat2`, this cannot notice a directory being renamed out of `base` while the
/// walk is inside it; only the kernel can close that race.
fn walk(base: &File, path: &[u8], how: Open, follow: bool) -> io::Result<File> {
    // Components still to resolve, the next one last.
    let mut pending: Vec<Vec<u8>> = Vec::new();
    push_components(&mut pending, path);
    let mut cur: Option<File> = None;
    let mut depth = 0usize;
    let mut links = 0;
    // Whether `cur` was opened the way the caller asked, or only as a path on the way.
    let mut done = false;
    let mut target = [0u8; LINK_BUF];
    while let Some(mut component) = pending.pop() {
        done = false;
        let at = cur.as_ref().unwrap_or(base);
        if component == b".." {
            if depth == 0 {
                return Err(io::Error::from_raw_os_error(EXDEV));
            }
            depth -= 1;
            cur = match depth {
                0 => None,
                _ => Some(sys::open_at(at, c"..", Open::Path, true)?),
            };
            continue;
        }
        let last = pending.is_empty();
        component.push(0);
        let name = CStr::from_bytes_with_nul(&component)
            .map_err(|_| io::Error::from_raw_os_error(ENOENT))?;
        match sys::open_at(at, name, if last { how } else { Open::Path }, true) {
            Ok(file) => {
                cur = Some(file);
                depth += 1;
                done = last;
            }
            // O_NOFOLLOW meeting a symlink: ELOOP, or ENOTDIR where O_DIRECTORY is asked.
            Err(err) if follow && matches!(err.raw_os_error(), Some(ENOTDIR | ELOOP)) => {
                let n = match sys::read_link_at(at, name, &mut target) {
                    Ok(n) => n,
                    Err(e) if e.raw_os_error() == Some(EINVAL) => return Err(err),
                    Err(e) => return Err(e),
                };
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(ELOOP));
                }
                if target.first() == Some(&b'/') {
                    return Err(io::Error::from_raw_os_error(EXDEV));
                }
                push_components(&mut pending, &target[..n]);
            }
            Err(err) => return Err(err),
        }
    }
    match cur {
        Some(file) if done => Ok(file),
        // The path ended at `base` itself or on a `..`: open that directory as asked.
        _ => sys::open_at(cur.as_ref().unwrap_or(base), c".", how, true),
    }
}

/// Pushes the components of `path` onto `pending` so that the first is popped first; empty
/// and `.` components are dropped.
fn push_components(pending: &mut Vec<Vec<u8>>, path: &[u8]) {
    for component in path.rsplit(|&b| b == b'/') {
        if !component.is_empty() && component != b"." {
            pending.push(component.to_vec());
        }
    }
}

/// Where an interface's attributes live, kept only to name a path in a log line: the path is
/// built when a read fails, never on the scrape's normal path.
#[derive(Clone, Copy)]
struct Place<'a> {
    class_net: &'a Path,
    name: &'a [u8],
}

impl Place<'_> {
    fn path(self, attr: Option<&CStr>) -> PathBuf {
        let mut path = self.class_net.join(OsStr::from_bytes(self.name));
        if let Some(attr) = attr {
            path.push(OsStr::from_bytes(attr.to_bytes()));
        }
        path
    }

    /// Sorts a failed open or read: a resource failure fails the scan; "no value" is nothing;
    /// anything else is counted and logged.
    fn fail(self, attr: Option<&CStr>, err: io::Error, errors: &mut u64) -> Result<(), ScanError> {
        if is_resource(&err) {
            return Err(ScanError {
                what: "cannot read",
                subject: self.path(attr).display().to_string(),
                err,
            });
        }
        if is_expected(&err) {
            return Ok(());
        }
        *errors += 1;
        if crate::log::enabled(crate::log::Level::Debug) {
            crate::log::debug(
                "attribute read failed",
                &[("path", &self.path(attr).display()), ("err", &err)],
            );
        }
        Ok(())
    }
}

/// Reads the attributes of one interface relative to its open directory.
struct AttrReader<'a> {
    dir: &'a File,
    buf: &'a mut [u8; ATTR_BUF],
    place: Place<'a>,
    errors: &'a mut u64,
    /// A resource failure, after which nothing more is read: the scan is lost.
    fatal: Option<ScanError>,
}

/// How [`AttrReader::fetch`] gets a value.
#[derive(Clone, Copy)]
enum Fetch {
    /// One `openat2`, one `read`, one `close`: a sysfs attribute hands over its whole value in
    /// the first read.
    Read,
    /// The target of a symlink, read with `readlinkat` relative to the directory and never
    /// followed; ENOENT, or EINVAL for a file that is no link, means there is none.
    Link,
}

impl AttrReader<'_> {
    /// Reads `attr` into the buffer and returns its length; `None` when there is no value, or
    /// after a resource failure, when nothing more is read.
    fn fetch(&mut self, attr: &CStr, how: Fetch) -> Option<usize> {
        if self.fatal.is_some() {
            return None;
        }
        let result = match how {
            Fetch::Read => open_beneath(self.dir, attr, Open::Attr, Resolve::BeneathNoSymlinks)
                .and_then(|mut file| file.read(&mut self.buf[..])),
            Fetch::Link => sys::read_link_at(self.dir, attr, &mut self.buf[..]),
        }
        .and_then(|n| {
            if n == ATTR_BUF {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    match how {
                        Fetch::Read => "attribute longer than a page",
                        Fetch::Link => "link target longer than a page",
                    },
                ));
            }
            Ok(n)
        });
        match result {
            Ok(n) => Some(n),
            Err(err) => {
                if let Err(e) = self.place.fail(Some(attr), err, self.errors) {
                    self.fatal = Some(e);
                }
                None
            }
        }
    }

    /// Counts the value of `attr`, the first `n` bytes of the buffer, as one that does not
    /// parse, and shows it at debug level.
    fn unparsed(&mut self, attr: &CStr, n: usize) {
        *self.errors += 1;
        if crate::log::enabled(crate::log::Level::Debug) {
            crate::log::debug(
                "attribute does not parse",
                &[
                    ("path", &self.place.path(Some(attr)).display()),
                    ("value", &String::from_utf8_lossy(&self.buf[..n])),
                ],
            );
        }
    }
}

/// Stores the value of `attr` (`None`: it has none) in `iface`; false when the value does not
/// parse, which leaves the field without a value. Exhaustive over [`Attr`], so a file added to
/// the list cannot go unread.
fn store(iface: &mut Interface, attr: Attr, value: Option<&[u8]>) -> bool {
    fn number<T>(
        slot: &mut Option<T>,
        value: Option<&[u8]>,
        parse: fn(&[u8]) -> Option<T>,
    ) -> bool {
        *slot = value.and_then(parse);
        value.is_none() || slot.is_some()
    }
    fn text(field: &mut Vec<u8>, value: Option<&[u8]>) -> bool {
        field.clear();
        field.extend_from_slice(value.unwrap_or_default());
        true
    }
    match attr {
        Attr::Operstate => {
            text(&mut iface.operstate, value);
            OperState::parse(&iface.operstate) != OperState::Other
        }
        Attr::Ifindex => number(&mut iface.ifindex, value, parse_u64),
        Attr::Flags => {
            let mut flags = None;
            let ok = number(&mut flags, value, parse_hex);
            iface.admin_up = flags.map(|f| f & IFF_UP != 0);
            iface.promiscuous = flags.map(|f| f & IFF_PROMISC != 0);
            ok
        }
        Attr::Carrier => number(&mut iface.carrier, value, |v| match parse_u64(v)? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }),
        Attr::CarrierChanges => number(&mut iface.carrier_changes, value, parse_u64),
        Attr::CarrierUpCount => number(&mut iface.carrier_up, value, parse_u64),
        Attr::CarrierDownCount => number(&mut iface.carrier_down, value, parse_u64),
        Attr::Mtu => number(&mut iface.mtu, value, parse_u64),
        Attr::Speed => {
            let mut speed = None;
            let ok = number(&mut speed, value, parse_speed);
            iface.speed_mbps = speed.flatten();
            ok
        }
        Attr::Address => text(&mut iface.address, value),
        Attr::Duplex => text(&mut iface.duplex, value),
        Attr::Ifalias => text(&mut iface.ifalias, value),
        Attr::Type => number(&mut iface.link_type, value, parse_u16),
        Attr::TxQueueLen => number(&mut iface.tx_queue_len, value, parse_u64),
        Attr::Uevent => {
            iface.kind.clear();
            if let Some(kind) = value.and_then(devtype_kind) {
                iface.kind.extend_from_slice(kind.as_bytes());
            }
            true
        }
    }
}

fn is_expected(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(ENOENT | ENODEV | EINVAL | EOPNOTSUPP)
    )
}

/// The scan ran out of something; the file itself may be fine.
fn is_resource(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(EMFILE | ENFILE | ENOMEM | ENOBUFS))
}

fn trim_newline(s: &[u8]) -> &[u8] {
    s.strip_suffix(b"\n").unwrap_or(s)
}

/// A decimal `u64`, nothing else: no sign, no spaces, no overflow. Overflow is caught by the
/// arithmetic, not by a length cap, which would refuse a zero-padded value that fits.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// `type` is an ARPHRD number, which the kernel keeps in 16 bits.
pub fn parse_u16(s: &[u8]) -> Option<u16> {
    u16::try_from(parse_u64(s)?).ok()
}

/// The link kind `uevent` tells: its `DEVTYPE=` line, when that names a kind (see
/// [`DEVTYPE_KINDS`]).
fn devtype_kind(uevent: &[u8]) -> Option<&'static str> {
    let devtype = uevent
        .split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"DEVTYPE="))?;
    DEVTYPE_KINDS
        .iter()
        .find(|k| k.as_bytes() == devtype)
        .copied()
}

/// The interface a `master` link points to: the last component of its target
/// (`../br0`, `../../../virtual/net/bond0`). `None` when that cannot be an interface name.
fn master_name(target: &[u8]) -> Option<&[u8]> {
    let name = target.rsplit(|&b| b == b'/').next()?;
    match name {
        b"" | b"." | b".." => None,
        _ => Some(name),
    }
}

/// `flags` is printed as `0x%x`.
pub fn parse_hex(s: &[u8]) -> Option<u64> {
    let digits = s.strip_prefix(b"0x")?;
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let d = (b as char).to_digit(16)?;
        Some(n.checked_mul(16)? | u64::from(d))
    })
}

/// `speed` in Mb/s; `-1` (and its unsigned twin from older kernels) means unknown, which is a
/// valid answer with no sample, hence the inner `None`.
pub fn parse_speed(s: &[u8]) -> Option<Option<u64>> {
    match s {
        b"-1" | b"4294967295" => Some(None),
        _ => parse_u64(s).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"0", Some(0)),
            (b"1500", Some(1500)),
            (b"18446744073709551615", Some(u64::MAX)),
            (b"18446744073709551616", None),
            (b"", None),
            (b"-1", None),
            (b"+1", None),
            (b" 1", None),
            (b"1 ", None),
            (b"0x10", None),
            (b"1.5", None),
            (b"\xff", None),
            (b"99999999999999999999999", None),
            // Found by fuzz_number_parsers_against_std: zero padding past 20 digits still fits.
            (b"000000000000000000001", Some(1)),
            (b"0018446744073709551615", Some(u64::MAX)),
            (b"0018446744073709551616", None),
        ];
        for &(input, expected) in cases {
            assert_eq!(
                parse_u64(input),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn hex_flags() {
        let cases: &[(&[u8], Option<u64>)] = &[
            (b"0x1003", Some(0x1003)),
            (b"0x1002", Some(0x1002)),
            (b"0x0", Some(0)),
            (b"0xFFFF", Some(0xffff)),
            (b"0xffffffffffffffff", Some(u64::MAX)),
            (b"0x1ffffffffffffffff", None),
            (b"0x00000236249939984", Some(0x236249939984)),
            (b"0x0ffffffffffffffff", Some(u64::MAX)),
            (b"0x", None),
            (b"1003", None),
            (b"0xg", None),
            (b"", None),
        ];
        for &(input, expected) in cases {
            assert_eq!(
                parse_hex(input),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn speeds() {
        assert_eq!(parse_speed(b"1000"), Some(Some(1000)));
        assert_eq!(parse_speed(b"0"), Some(Some(0)));
        assert_eq!(parse_speed(b"-1"), Some(None));
        assert_eq!(parse_speed(b"4294967295"), Some(None));
        assert_eq!(parse_speed(b"-2"), None);
        assert_eq!(parse_speed(b"fast"), None);
    }

    #[test]
    fn link_facts() {
        // `uevent` as the kernel writes it; only a DEVTYPE that is also a link kind counts.
        let kinds: &[(&[u8], Option<&str>)] = &[
            (
                b"INTERFACE=br0\nIFINDEX=5\nDEVTYPE=bridge\n",
                Some("bridge"),
            ),
            (b"DEVTYPE=vxlan", Some("vxlan")),
            (b"INTERFACE=bond0\nIFINDEX=7\nDEVTYPE=bond\n", Some("bond")),
            (b"INTERFACE=ie-a\nIFINDEX=5\n", None),
            (b"INTERFACE=wlan0\nIFINDEX=3\nDEVTYPE=wlan\n", None),
            (b"DEVTYPE=bridge0\n", None),
            (b"DEVTYPE=\n", None),
            (b"XDEVTYPE=bridge\n", None),
            (b"INTERFACE=DEVTYPE=bridge\n", None),
            (b"", None),
            (b"\xff\xfe", None),
        ];
        for &(uevent, kind) in kinds {
            assert_eq!(
                devtype_kind(uevent),
                kind,
                "{:?}",
                String::from_utf8_lossy(uevent)
            );
        }
        // The `master` link's target as the kernel makes it, and what no name can be.
        let masters: &[(&[u8], Option<&[u8]>)] = &[
            (b"../br0", Some(b"br0")),
            (b"../../../virtual/net/bond0", Some(b"bond0")),
            (b"br0", Some(b"br0")),
            (b"../", None),
            (b"..", None),
            (b"../.", None),
            (b"", None),
            (b"/", None),
        ];
        for &(target, name) in masters {
            assert_eq!(
                master_name(target),
                name,
                "{:?}",
                String::from_utf8_lossy(target)
            );
        }
        let types: &[(&[u8], Option<u16>)] = &[
            (b"1", Some(1)),
            (b"772", Some(772)),
            (b"65534", Some(65534)),
            (b"65535", Some(65535)),
            (b"65536", None),
            (b"-1", None),
            (b"0x1", None),
        ];
        for &(text, n) in types {
            assert_eq!(parse_u16(text), n, "{:?}", String::from_utf8_lossy(text));
        }
    }

    /// A `struct linux_dirent64` as the kernel lays it out, padded to 8 bytes.
    fn dirent(d_type: u8, name: &[u8]) -> Vec<u8> {
        let reclen = (19 + name.len() + 1).next_multiple_of(8);
        let mut r = vec![0u8; reclen];
        r[16..18].copy_from_slice(&(reclen as u16).to_ne_bytes());
        r[18] = d_type;
        r[19..19 + name.len()].copy_from_slice(name);
        r
    }

    #[test]
    fn directory_entries() {
        let mut records = [
            dirent(4, b"."),
            dirent(10, b"eth0"),
            dirent(8, b"bonding_masters"),
        ]
        .concat();
        records.extend(dirent(10, b"\xff\xfe-sixteen-bytes"));
        let mut seen = Vec::new();
        let mut rest = &records[..];
        while let Some((d_type, name, tail)) = next_dirent(rest) {
            seen.push((d_type, name.to_vec()));
            rest = tail;
        }
        assert!(rest.is_empty());
        assert_eq!(
            seen,
            [
                (4, b".".to_vec()),
                (10, b"eth0".to_vec()),
                (8, b"bonding_masters".to_vec()),
                (10, b"\xff\xfe-sixteen-bytes".to_vec())
            ]
        );
        // Cut short, a record length past the end, or a name without its NUL: no entry.
        let one = dirent(10, b"eth0");
        for bad in [&one[..18], &one[..one.len() - 1]] {
            assert_eq!(next_dirent(bad), None);
        }
        let mut no_nul = one.clone();
        no_nul[19..].fill(b'a');
        assert_eq!(next_dirent(&no_nul), None);
    }

    use crate::fuzz::Rng;

    #[test]
    fn fuzz_directory_entries_never_panic() {
        let mut rng = Rng(0x5f5f_5eed_0000_0011);
        for _ in 0..100_000 {
            let mut records = dirent(10, b"eth0");
            for _ in 0..rng.below(4) {
                let at = rng.below(records.len());
                records[at] = rng.next() as u8;
            }
            records.truncate(rng.below(records.len() + 1));
            let mut rest = &records[..];
            // Each entry consumes at least its header, so this ends.
            while let Some((_, _, tail)) = next_dirent(rest) {
                assert!(tail.len() < rest.len());
                rest = tail;
            }
        }
    }

    /// Values near what sysfs writes, and what a broken driver or a planted file might.
    fn attribute_value(rng: &mut Rng) -> Vec<u8> {
        const ALPHABETS: &[&[u8]] = &[
            b"0123456789",
            b"0000000000123456789",
            b"0123456789abcdefABCDEFx",
            b"0123456789+- \t\nx.",
        ];
        let len = match rng.below(8) {
            0 => 19 + rng.below(8),
            _ => rng.below(22),
        };
        let any = rng.below(8) == 0;
        let alphabet = rng.pick(ALPHABETS);
        let mut v: Vec<u8> = (0..len)
            .map(|_| {
                if any {
                    rng.next() as u8
                } else {
                    *rng.pick(alphabet)
                }
            })
            .collect();
        // Boundary values: u64::MAX and its neighbours, the unknown speeds, zero padding.
        match rng.below(16) {
            0 => v = (u64::MAX - rng.below(3) as u64).to_string().into_bytes(),
            1 => v = b"18446744073709551616".to_vec(),
            2 => v = b"-1".to_vec(),
            3 => v = b"4294967295".to_vec(),
            4 => v.splice(0..0, b"00000".iter().copied()).for_each(drop),
            _ => {}
        }
        v
    }

    /// `str::parse` is the reference for what a decimal is, on inputs of digits only.
    fn reference_u64(s: &[u8]) -> Option<u64> {
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    }

    fn reference_hex(s: &[u8]) -> Option<u64> {
        let digits = s.strip_prefix(b"0x")?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u64::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
    }

    #[test]
    fn fuzz_number_parsers_against_std() {
        let mut rng = Rng(0x5f5f_5eed_0000_0001);
        for _ in 0..200_000 {
            let v = attribute_value(&mut rng);
            let shown = || String::from_utf8_lossy(&v).into_owned();
            assert_eq!(parse_u64(&v), reference_u64(&v), "{:?}", shown());
            let speed = match &v[..] {
                b"-1" | b"4294967295" => Some(None),
                _ => reference_u64(&v).map(Some),
            };
            assert_eq!(parse_speed(&v), speed, "{:?}", shown());
            let hex = [&b"0x"[..], &v].concat();
            assert_eq!(parse_hex(&hex), reference_hex(&hex), "{:?}", shown());
            assert_eq!(parse_hex(&v), reference_hex(&v), "{:?}", shown());
        }
    }
}
