//! The netlink source: one `RTM_GETLINK` dump answers for every interface of the process's
//! network namespace, where sysfs needs a dozen files per interface. Speed and duplex are not
//! in the dump; they come from the ethtool ioctl, for running interfaces only, as sysfs shows
//! them only then.
//!
//! The request is built and the replies are parsed by pure functions over bytes
//! ([`dump_request`], [`parse_datagram`], [`parse_link`]); [`Reader`] only moves the bytes
//! through the sockets of `sys.rs`. Values come out exactly as the sysfs source reads them, so
//! both sources render the same lines: `address` formatted as sysfs formats it, `carrier` only
//! while the interface is up, an unknown operstate number as "other".
//!
//! A dump that fails, is cut short or keeps being interrupted is a [`ScanError`], never a
//! partial scan: an interface missing from a 200 answer would look deleted to Prometheus.
//!
//! Invariant: never panics on any input, never reads past a length it has checked, and never
//! hands out a scan that did not end in the dump's `NLMSG_DONE`.

use std::fmt;
use std::io;

use crate::model::{Interface, OperState, Options, Scan, ScanError};
use crate::sys;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLM_F_DUMP_INTR: u16 = 0x10;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const AF_UNSPEC: u8 = 0;
/// `struct ifinfomsg`: family, pad, type (u16), index (i32), flags (u32), change (u32).
const IFINFOMSG_LEN: usize = 16;
const RTA_HDRLEN: usize = 4;
/// `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER` ride in the top bits of an attribute's type.
const NLA_TYPE_MASK: u16 = 0x3fff;
const IFF_UP: u32 = 0x1;
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;

const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_IFALIAS: u16 = 20;
const IFLA_STATS64: u16 = 23;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_CARRIER: u16 = 33;
const IFLA_CARRIER_CHANGES: u16 = 35;
const IFLA_CARRIER_UP_COUNT: u16 = 47;
const IFLA_CARRIER_DOWN_COUNT: u16 = 48;

/// The dump request: a header, an `ifinfomsg` and one `IFLA_EXT_MASK` attribute.
pub const REQUEST_LEN: usize = NLMSG_HDRLEN + IFINFOMSG_LEN + RTA_HDRLEN + 4;

/// Byte offsets in `struct rtnl_link_stats64` of the counters the model keeps, in the order of
/// `sysfs::STATISTICS` (rx_bytes, rx_packets, rx_errors, rx_dropped, then tx_).
const STATS64_OFFSETS: [usize; 8] = [16, 0, 32, 48, 24, 8, 40, 56];

/// The receive buffer. The kernel sizes a dump's datagrams by the reader's buffer up to 32 KiB
/// (`netlink_recvmsg` caps `max_recvmsg_len` there), and measured here 32 KiB is as fast as
/// 1 MiB while 4 KiB costs 25% more.
const RECV_BUF: usize = 32 * 1024;

/// The largest datagram we grow the buffer for. A single interface's message exceeds 32 KiB
/// only with many SR-IOV VFs; past a megabyte something is wrong.
const MAX_RECV_BUF: usize = 1024 * 1024;

/// Dumps tried per scan. The kernel marks a dump `NLM_F_DUMP_INTR` when interfaces changed
/// while it ran; three retries ride out any churn short of a storm, which then gets 503 rather
/// than a scan that mixes two states.
const MAX_DUMP_ATTEMPTS: usize = 4;

/// Why a dump's bytes cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// The bytes break netlink's framing; says which rule.
    Malformed(&'static str),
    /// `NLMSG_ERROR` or a failed `NLMSG_DONE`, with the (positive) errno.
    Kernel(i32),
    /// `NLMSG_OVERRUN`: the kernel dropped data.
    Overrun,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(why) => write!(f, "malformed netlink message: {why}"),
            Error::Kernel(errno) => write!(
                f,
                "the kernel refused the dump: {}",
                io::Error::from_raw_os_error(*errno)
            ),
            Error::Overrun => f.write_str("the kernel reported a netlink overrun"),
        }
    }
}

impl std::error::Error for Error {}

impl Error {
    fn into_io(self) -> io::Error {
        match self {
            Error::Kernel(errno) => io::Error::from_raw_os_error(errno),
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// The `RTM_GETLINK` dump request with sequence number `seq`. `RTEXT_FILTER_SKIP_STATS` drops
/// the IPv6 per-device counters (a third of each message) but not `IFLA_STATS64`.
pub fn dump_request(seq: u32) -> [u8; REQUEST_LEN] {
    let mut m = [0u8; REQUEST_LEN];
    m[0..4].copy_from_slice(&(REQUEST_LEN as u32).to_ne_bytes());
    m[4..6].copy_from_slice(&RTM_GETLINK.to_ne_bytes());
    m[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m[8..12].copy_from_slice(&seq.to_ne_bytes());
    // pid 0: the kernel fills in our port. ifinfomsg all zero: every family, every interface.
    m[NLMSG_HDRLEN] = AF_UNSPEC;
    let at = NLMSG_HDRLEN + IFINFOMSG_LEN;
    m[at..at + 2].copy_from_slice(&((RTA_HDRLEN + 4) as u16).to_ne_bytes());
    m[at + 2..at + 4].copy_from_slice(&IFLA_EXT_MASK.to_ne_bytes());
    m[at + 4..at + 8].copy_from_slice(&RTEXT_FILTER_SKIP_STATS.to_ne_bytes());
    m
}

fn align4(n: usize) -> usize {
    n.saturating_add(3) & !3
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// What one datagram of a dump held besides its interfaces.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Datagram {
    /// `NLMSG_DONE` arrived: the dump is complete.
    pub done: bool,
    /// A message carried `NLM_F_DUMP_INTR`: the dump is inconsistent and must be redone.
    pub interrupted: bool,
}

/// Walks the messages of one datagram and hands each `RTM_NEWLINK` payload (the `ifinfomsg`
/// and its attributes) to `on_link`. Messages for another sequence number or port are skipped:
/// they are leftovers of an earlier dump or not ours.
pub fn parse_datagram(
    buf: &[u8],
    seq: u32,
    portid: u32,
    mut on_link: impl FnMut(&[u8]),
) -> Result<Datagram, Error> {
    let mut out = Datagram::default();
    let mut rest = buf;
    while !rest.is_empty() {
        if rest.len() < NLMSG_HDRLEN {
            return Err(Error::Malformed("datagram ends inside a message header"));
        }
        let len = u32_at(rest, 0).unwrap_or(0) as usize;
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(Error::Malformed("message length out of bounds"));
        }
        let ty = u16_at(rest, 4).unwrap_or(0);
        let flags = u16_at(rest, 6).unwrap_or(0);
        let msg_seq = u32_at(rest, 8).unwrap_or(0);
        let msg_pid = u32_at(rest, 12).unwrap_or(0);
        let payload = &rest[NLMSG_HDRLEN..len];
        rest = &rest[align4(len).min(rest.len())..];
        if msg_seq != seq || msg_pid != portid {
            continue;
        }
        if flags & NLM_F_DUMP_INTR != 0 {
            out.interrupted = true;
        }
        match ty {
            NLMSG_DONE => {
                // The payload is the dump's result: 0, or a negative errno.
                match payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                {
                    Some(err) if err < 0 => return Err(Error::Kernel(err.saturating_neg())),
                    _ => {}
                }
                out.done = true;
                return Ok(out);
            }
            NLMSG_ERROR => {
                let err = payload
                    .get(..4)
                    .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                    .ok_or(Error::Malformed("short NLMSG_ERROR"))?;
                // An error of 0 is an acknowledgement, which a dump does not ask for.
                if err != 0 {
                    return Err(Error::Kernel(err.saturating_neg()));
                }
            }
            NLMSG_OVERRUN => return Err(Error::Overrun),
            RTM_NEWLINK => on_link(payload),
            NLMSG_NOOP => {}
            _ => {}
        }
    }
    Ok(out)
}

/// Fills `iface` from one `RTM_NEWLINK` payload. Returns false when the interface must be left
/// out (no name); a value whose size is wrong gives no sample and counts in `errors`, as a
/// sysfs value that does not parse does. Framing that breaks the rules is an [`Error`].
pub fn parse_link(
    payload: &[u8],
    statistics: bool,
    iface: &mut Interface,
    errors: &mut u64,
) -> Result<bool, Error> {
    if payload.len() < IFINFOMSG_LEN {
        return Err(Error::Malformed("short ifinfomsg"));
    }
    let ifindex = u32_at(payload, 4).unwrap_or(0);
    let flags = u32_at(payload, 8).unwrap_or(0);
    let up = flags & IFF_UP != 0;
    clear(iface);
    iface.ifindex = Some(u64::from(ifindex));
    iface.admin_up = Some(up);
    if statistics {
        iface.statistics = Some([None; 8]);
    }
    let mut carrier = None;
    let mut operstate = None;
    let mut named = false;
    let mut rest = &payload[IFINFOMSG_LEN..];
    while !rest.is_empty() {
        if rest.len() < RTA_HDRLEN {
            return Err(Error::Malformed("attribute header cut short"));
        }
        let len = usize::from(u16_at(rest, 0).unwrap_or(0));
        if len < RTA_HDRLEN || len > rest.len() {
            return Err(Error::Malformed("attribute length out of bounds"));
        }
        let ty = u16_at(rest, 2).unwrap_or(0) & NLA_TYPE_MASK;
        let value = &rest[RTA_HDRLEN..len];
        rest = &rest[align4(len).min(rest.len())..];
        // One arm per attribute; a value of the wrong size gives no sample and one error.
        let ok = match ty {
            IFLA_IFNAME => {
                let name = until_nul(value);
                named = !name.is_empty();
                iface.name.extend_from_slice(name);
                named
            }
            IFLA_OPERSTATE => {
                operstate = value.first().copied();
                operstate.is_some()
            }
            IFLA_CARRIER => {
                carrier = value.first().copied();
                carrier.is_some()
            }
            IFLA_MTU => set_u32(&mut iface.mtu, value),
            IFLA_CARRIER_CHANGES => set_u32(&mut iface.carrier_changes, value),
            IFLA_CARRIER_UP_COUNT => set_u32(&mut iface.carrier_up, value),
            IFLA_CARRIER_DOWN_COUNT => set_u32(&mut iface.carrier_down, value),
            IFLA_ADDRESS => {
                format_address(value, &mut iface.address);
                true
            }
            IFLA_IFALIAS => {
                iface.ifalias.extend_from_slice(until_nul(value));
                true
            }
            IFLA_STATS64 => match &mut iface.statistics {
                Some(stats) if value.len() >= 64 => {
                    for (slot, at) in stats.iter_mut().zip(STATS64_OFFSETS) {
                        *slot = u64_at(value, at);
                    }
                    true
                }
                Some(_) => false,
                None => true,
            },
            _ => true,
        };
        if !ok {
            *errors += 1;
        }
    }
    if !named {
        *errors += 1;
        return Ok(false);
    }
    let state = match operstate {
        Some(n) => oper_state(n),
        // sysfs leaves out an interface whose operstate it cannot read.
        None => {
            *errors += 1;
            return Ok(false);
        }
    };
    if state == OperState::Other {
        *errors += 1;
    }
    iface.operstate.extend_from_slice(state.name().as_bytes());
    // sysfs answers `carrier` only while the interface is up (EINVAL otherwise).
    iface.carrier = carrier.filter(|_| up).map(|c| c != 0);
    Ok(true)
}

/// `IF_OPER_*` as RFC 2863 names them; a number the kernel does not define is "other".
pub fn oper_state(n: u8) -> OperState {
    OperState::ALL
        .get(usize::from(n))
        .copied()
        .unwrap_or(OperState::Other)
}

/// Every field to "no value", keeping the allocations of a reused interface.
fn clear(iface: &mut Interface) {
    iface.name.clear();
    iface.operstate.clear();
    iface.ifindex = None;
    iface.admin_up = None;
    iface.carrier = None;
    iface.carrier_changes = None;
    iface.carrier_up = None;
    iface.carrier_down = None;
    iface.mtu = None;
    iface.speed_mbps = None;
    iface.address.clear();
    iface.duplex.clear();
    iface.ifalias.clear();
    iface.statistics = None;
}

fn set_u32(field: &mut Option<u64>, value: &[u8]) -> bool {
    *field = <[u8; 4]>::try_from(value)
        .ok()
        .map(|b| u64::from(u32::from_ne_bytes(b)));
    field.is_some()
}

/// A string attribute's bytes before its NUL.
fn until_nul(value: &[u8]) -> &[u8] {
    value.split(|&b| b == 0).next().unwrap_or(value)
}

/// `address` as sysfs prints it (`sysfs_format_mac`): each byte as two lowercase hex digits,
/// joined by colons. A device without a hardware address (tun, `addr_len` 0) sends no
/// `IFLA_ADDRESS`, and sysfs prints an empty line for it: both give an empty string.
pub fn format_address(bytes: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.clear();
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(b':');
        }
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 0xf)]);
    }
}

/// Speed as sysfs prints it (`%d` of a u32): SPEED_UNKNOWN (-1) is no sample, and so is a
/// value that would print negative, which the sysfs source cannot parse either (`Err` then,
/// so it is counted).
pub fn speed_mbps(speed: u32) -> Result<Option<u64>, ()> {
    match speed {
        u32::MAX => Ok(None),
        s if s > i32::MAX as u32 => Err(()),
        s => Ok(Some(u64::from(s))),
    }
}

/// Duplex as sysfs names it: DUPLEX_HALF, DUPLEX_FULL, anything else "unknown".
pub fn duplex_name(duplex: u8) -> &'static [u8] {
    match duplex {
        0 => b"half",
        1 => b"full",
        _ => b"unknown",
    }
}

/// errno values from the ethtool ioctl that mean "no value", as sysfs turns them into EINVAL:
/// EOPNOTSUPP (no link settings), ENODEV (gone since the dump), EINVAL.
fn ethtool_no_value(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(19 | 22 | 95))
}

/// Reads interfaces with netlink dumps, reusing its socket and buffer from scan to scan.
pub struct Reader {
    socket: Option<sys::NetlinkSocket>,
    ethtool: Option<sys::Ethtool>,
    buf: Vec<u8>,
    seq: u32,
}

impl Default for Reader {
    fn default() -> Reader {
        Reader::new()
    }
}

impl Reader {
    /// Opens nothing yet: the socket is opened by the first scan, and again after a failure.
    pub fn new() -> Reader {
        Reader {
            socket: None,
            ethtool: None,
            buf: Vec::new(),
            seq: 0,
        }
    }

    /// Reads every interface into `scan`, with speed and duplex for the running ones.
    pub fn scan(&mut self, opts: &Options, scan: &mut Scan) -> Result<(), ScanError> {
        self.dump(opts.statistics, scan, |name| opts.wants(name))?;
        for iface in &mut scan.interfaces {
            if iface.admin_up != Some(true) {
                continue;
            }
            if self.ethtool.is_none() {
                self.ethtool = Some(sys::Ethtool::open().map_err(|err| ScanError {
                    what: "cannot open",
                    subject: "an ethtool socket".to_owned(),
                    err,
                })?);
            }
            let Some(ethtool) = &mut self.ethtool else {
                continue;
            };
            match ethtool.link_settings(&iface.name) {
                Ok(settings) => {
                    match speed_mbps(settings.speed) {
                        Ok(speed) => iface.speed_mbps = speed,
                        Err(()) => scan.errors += 1,
                    }
                    iface.duplex.extend_from_slice(duplex_name(settings.duplex));
                }
                Err(e) if ethtool_no_value(&e) => {}
                Err(e) => {
                    scan.errors += 1;
                    crate::log::debug(
                        "ethtool failed",
                        &[
                            ("interface", &String::from_utf8_lossy(&iface.name)),
                            ("err", &e),
                        ],
                    );
                }
            }
        }
        Ok(())
    }

    /// One complete, consistent dump into `scan` (interfaces whose name `keep` refuses are
    /// given back), retried while the kernel marks it interrupted or a datagram did not fit.
    pub fn dump(
        &mut self,
        statistics: bool,
        scan: &mut Scan,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Result<(), ScanError> {
        let fail = |what: &'static str, err: io::Error| ScanError {
            what,
            subject: "the netlink route socket".to_owned(),
            err,
        };
        if self.buf.len() < RECV_BUF {
            self.buf.resize(RECV_BUF, 0);
        }
        for _ in 0..MAX_DUMP_ATTEMPTS {
            scan.begin();
            if self.socket.is_none() {
                self.socket = Some(sys::NetlinkSocket::open().map_err(|e| fail("cannot open", e))?);
            }
            let Some(socket) = &self.socket else {
                continue;
            };
            self.seq = self.seq.wrapping_add(1);
            let result = dump_once(socket, self.seq, &mut self.buf, statistics, scan, &keep);
            match result {
                Ok(Outcome::Complete) => return Ok(()),
                Ok(Outcome::Interrupted) => {}
                Ok(Outcome::Truncated(real)) => {
                    // The rest of that dump is still queued: start afresh on a new socket.
                    self.socket = None;
                    if real > MAX_RECV_BUF {
                        return Err(fail(
                            "a netlink message is too large on",
                            io::ErrorKind::InvalidData.into(),
                        ));
                    }
                    self.buf
                        .resize(real.next_power_of_two().min(MAX_RECV_BUF), 0);
                }
                Err((what, err)) => {
                    // Whatever is still queued on the socket belongs to the failed dump.
                    self.socket = None;
                    return Err(fail(what, err));
                }
            }
        }
        self.socket = None;
        Err(fail(
            "interfaces kept changing during every dump on",
            io::ErrorKind::Interrupted.into(),
        ))
    }
}

enum Outcome {
    Complete,
    Interrupted,
    Truncated(usize),
}

fn dump_once(
    socket: &sys::NetlinkSocket,
    seq: u32,
    buf: &mut [u8],
    statistics: bool,
    scan: &mut Scan,
    keep: &impl Fn(&[u8]) -> bool,
) -> Result<Outcome, (&'static str, io::Error)> {
    socket
        .send(&dump_request(seq))
        .map_err(|e| ("cannot send a dump request on", e))?;
    let mut interrupted = false;
    loop {
        let got = socket
            .recv(buf)
            .map_err(|e| ("cannot receive the dump from", e))?;
        if !got.from_kernel {
            continue;
        }
        if let Some(real) = got.truncated {
            return Ok(Outcome::Truncated(real));
        }
        let mut failed = None;
        let datagram = parse_datagram(&buf[..got.len], seq, socket.portid, |payload| {
            if failed.is_some() {
                return;
            }
            let mut iface = scan.take_spare();
            match parse_link(payload, statistics, &mut iface, &mut scan.errors) {
                Ok(true) if keep(&iface.name) => scan.interfaces.push(iface),
                Ok(_) => scan.give_back(iface),
                Err(e) => {
                    scan.give_back(iface);
                    failed = Some(e);
                }
            }
        })
        .map_err(|e| ("bad dump from", e.into_io()))?;
        if let Some(e) = failed {
            return Err(("bad dump from", e.into_io()));
        }
        interrupted |= datagram.interrupted;
        if datagram.done {
            return Ok(if interrupted {
                Outcome::Interrupted
            } else {
                Outcome::Complete
            });
        }
    }
}
