//! Reads `<root>/class/net` into plain [`Interface`] values, afresh on every scan.
//!
//! The kernel's rules, as node_exporter and procfs learned them: `class/net` holds symlinks into
//! `devices/` (and regular files such as `bonding_masters`, which are not interfaces); an
//! attribute the driver cannot answer reads EINVAL (`carrier`, `speed`, `duplex` on an interface
//! that is not running), EOPNOTSUPP or ENODEV; an interface may vanish between `read_dir` and
//! the read, giving ENOENT. Those mean "no sample". Anything else (a directory where a file
//! should be, a value that does not parse) is counted in [`Scan::errors`] and also gives no
//! sample: a scrape degrades, it never fails whole.
//!
//! Invariant: never reads outside its root, never panics on any file content, and never blocks
//! on a file that is not a sysfs attribute (attributes are opened non-blocking).

use std::ffi::{CStr, OsStr};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use crate::model::{Interface, OperState, Options, Scan, ScanError};
use crate::sys;

/// The most bytes an attribute may hold. sysfs `show` callbacks write into one page, so a real
/// attribute is never longer; a fixture file that is gets refused rather than truncated.
const ATTR_BUF: usize = 4096;

/// `O_PATH` on Linux (the same value on x86_64 and aarch64).
const O_PATH: i32 = 0o10000000;

/// Linux errno values that mean "the kernel has no value for this", not a fault.
const ENOENT: i32 = 2;
const ENODEV: i32 = 19;
const EINVAL: i32 = 22;
const EOPNOTSUPP: i32 = 95;

/// The counters read with `--collector.statistics`, in this order.
pub const STATISTICS: [&CStr; 8] = [
    c"statistics/rx_bytes",
    c"statistics/rx_packets",
    c"statistics/rx_errors",
    c"statistics/rx_dropped",
    c"statistics/tx_bytes",
    c"statistics/tx_packets",
    c"statistics/tx_errors",
    c"statistics/tx_dropped",
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
    class_net: PathBuf,
    buf: Box<[u8; ATTR_BUF]>,
    names: Vec<Vec<u8>>,
}

impl Reader {
    pub fn new(root: &Path) -> Reader {
        Reader {
            class_net: root.join("class/net"),
            buf: Box::new([0; ATTR_BUF]),
            names: Vec::new(),
        }
    }

    /// Reads every interface under the root into `scan`. An error means the listing itself
    /// failed, so the scan cannot stand for the host.
    pub fn scan(&mut self, opts: &Options, scan: &mut Scan) -> Result<(), ScanError> {
        scan.begin();
        self.list(opts, scan)?;
        // Interface directories are opened relative to class/net, one path component each.
        let class_net = OpenOptions::new()
            .read(true)
            .custom_flags(O_PATH)
            .open(&self.class_net)
            .map_err(|err| ScanError {
                what: "cannot open",
                subject: self.class_net.display().to_string(),
                err,
            })?;
        let names = std::mem::take(&mut self.names);
        for name in &names {
            let mut iface = scan.take_spare();
            if self.read_interface(&class_net, name, opts, &mut iface, &mut scan.errors) {
                scan.interfaces.push(iface);
            } else {
                scan.give_back(iface);
            }
        }
        self.names = names;
        scan.interfaces.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(())
    }

    /// Fills `self.names` with the entries of `class/net` that may be interfaces.
    fn list(&mut self, opts: &Options, scan: &mut Scan) -> Result<(), ScanError> {
        let mut count = 0;
        let dir = fs::read_dir(&self.class_net).map_err(|err| ScanError {
            what: "cannot list interfaces in",
            subject: self.class_net.display().to_string(),
            err,
        })?;
        for entry in dir {
            let Ok(entry) = entry else {
                scan.errors += 1;
                continue;
            };
            // Interfaces are symlinks (directories in some container runtimes' copies);
            // regular files such as `bonding_masters` are not. `d_type` costs no syscall.
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let name = entry.file_name();
            let name = name.as_bytes();
            if !opts.wants(name) {
                continue;
            }
            if count == self.names.len() {
                self.names.push(Vec::new());
            }
            // Kept NUL-terminated for openat; a name from readdir holds no NUL.
            let slot = &mut self.names[count];
            slot.clear();
            slot.extend_from_slice(name);
            slot.push(0);
            count += 1;
        }
        self.names.truncate(count);
        Ok(())
    }

    /// Reads one interface; false when it is to be left out (gone, or no readable operstate).
    fn read_interface(
        &mut self,
        class_net: &File,
        name_nul: &[u8],
        opts: &Options,
        iface: &mut Interface,
        errors: &mut u64,
    ) -> bool {
        let Ok(name_c) = CStr::from_bytes_with_nul(name_nul) else {
            return false;
        };
        let name = name_c.to_bytes();
        iface.name.clear();
        iface.name.extend_from_slice(name);
        let place = Place {
            class_net: &self.class_net,
            name,
        };
        // The directory is opened once (O_PATH: no read access needed, nothing allocated in
        // sysfs) and every attribute relative to it, which spares the kernel walking the
        // whole path and the class/net symlink eleven times.
        let dir = match sys::open_dir_at(class_net, name_c) {
            Ok(dir) => dir,
            Err(err) => {
                place.fail(None, &err, errors);
                return false;
            }
        };
        let mut r = AttrReader {
            dir: &dir,
            buf: &mut self.buf,
            place,
            errors,
        };
        let Some(operstate) = r.attr(c"operstate") else {
            return false;
        };
        set_text(&mut iface.operstate, operstate);
        if OperState::parse(&iface.operstate) == OperState::Other {
            *r.errors += 1;
        }
        iface.ifindex = r.number(c"ifindex", parse_u64);
        iface.admin_up = r.number(c"flags", parse_hex).map(|f| f & 1 == 1);
        iface.carrier = match r.number(c"carrier", parse_u64) {
            Some(0) => Some(false),
            Some(1) => Some(true),
            Some(_) => {
                *r.errors += 1;
                None
            }
            None => None,
        };
        iface.carrier_changes = r.number(c"carrier_changes", parse_u64);
        iface.carrier_up = r.number(c"carrier_up_count", parse_u64);
        iface.carrier_down = r.number(c"carrier_down_count", parse_u64);
        iface.mtu = r.number(c"mtu", parse_u64);
        iface.speed_mbps = r.number(c"speed", parse_speed).flatten();
        for (field, attr) in [
            (&mut iface.address, c"address"),
            (&mut iface.duplex, c"duplex"),
            (&mut iface.ifalias, c"ifalias"),
        ] {
            match r.attr(attr) {
                Some(value) => set_text(field, value),
                None => field.clear(),
            }
        }
        iface.statistics = if opts.statistics {
            let mut stats = [None; 8];
            for (slot, attr) in stats.iter_mut().zip(STATISTICS) {
                *slot = r.number(attr, parse_u64);
            }
            Some(stats)
        } else {
            None
        };
        true
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

    /// Counts and logs a failed read unless the kernel meant "no value".
    fn fail(self, attr: Option<&CStr>, err: &io::Error, errors: &mut u64) {
        if is_expected(err) {
            return;
        }
        *errors += 1;
        if crate::log::enabled(crate::log::Level::Debug) {
            crate::log::debug(
                "attribute read failed",
                &[("path", &self.path(attr).display()), ("err", err)],
            );
        }
    }
}

/// Reads the attributes of one interface relative to its open directory.
struct AttrReader<'a> {
    dir: &'a File,
    buf: &'a mut [u8; ATTR_BUF],
    place: Place<'a>,
    errors: &'a mut u64,
}

impl AttrReader<'_> {
    /// One `openat`, one `read`, one `close`: a sysfs attribute hands over its whole value in
    /// the first read. `None` when there is no value.
    fn attr(&mut self, attr: &CStr) -> Option<&[u8]> {
        let result = sys::open_at(self.dir, attr).and_then(|mut file| {
            let n = file.read(&mut self.buf[..])?;
            if n == ATTR_BUF {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "attribute longer than a page",
                ));
            }
            Ok(n)
        });
        match result {
            Ok(n) => Some(&self.buf[..n]),
            Err(err) => {
                self.place.fail(Some(attr), &err, self.errors);
                None
            }
        }
    }

    fn number<T>(&mut self, attr: &CStr, parse: fn(&[u8]) -> Option<T>) -> Option<T> {
        let value = self.attr(attr)?;
        let parsed = parse(trim_newline(value));
        if parsed.is_none() {
            // Copied before the count, which needs `self` back; only when it will be logged.
            let shown = crate::log::enabled(crate::log::Level::Debug)
                .then(|| String::from_utf8_lossy(value).into_owned());
            *self.errors += 1;
            if let Some(value) = shown {
                crate::log::debug(
                    "attribute does not parse",
                    &[
                        ("path", &self.place.path(Some(attr)).display()),
                        ("value", &value),
                    ],
                );
            }
        }
        parsed
    }
}

fn is_expected(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(ENOENT | ENODEV | EINVAL | EOPNOTSUPP)
    )
}

fn trim_newline(s: &[u8]) -> &[u8] {
    s.strip_suffix(b"\n").unwrap_or(s)
}

fn set_text(field: &mut Vec<u8>, value: &[u8]) {
    field.clear();
    field.extend_from_slice(trim_newline(value));
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

    use crate::fuzz::Rng;

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
