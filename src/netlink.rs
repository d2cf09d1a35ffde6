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

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;

use crate::model::{self, Interface, OperState, Options, Scan, ScanError, STATISTICS};
use crate::netlink_abi::*;
use crate::sys;

/// The dump request: a header, an `ifinfomsg` and one `IFLA_EXT_MASK` attribute.
pub const REQUEST_LEN: usize = NLMSG_HDRLEN + IFINFOMSG_LEN + RTA_HDRLEN + 4;

/// The shortest `IFLA_STATS64` taken: `struct rtnl_link_stats64` as Linux 2.6.35 introduced
/// it, 23 counters up to `tx_compressed`. Later kernels append (`rx_nohandler` in 4.6,
/// `rx_otherhost_dropped` in 5.19); the counters an older kernel does not send have no sample.
const STATS64_MIN_LEN: usize = 23 * 8;

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
        let (msg, payload, after) = next_message(rest)?;
        rest = after;
        if msg.seq != seq || msg.pid != portid {
            continue;
        }
        if msg.flags & NLM_F_DUMP_INTR != 0 {
            out.interrupted = true;
        }
        match msg.ty {
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

/// The fields of a `struct nlmsghdr` besides its length.
struct Header {
    ty: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// Splits the first message off `rest`: its header, its payload, and the messages after it.
fn next_message(rest: &[u8]) -> Result<(Header, &[u8], &[u8]), Error> {
    if rest.len() < NLMSG_HDRLEN {
        return Err(Error::Malformed("datagram ends inside a message header"));
    }
    let len = u32_at(rest, 0).unwrap_or(0) as usize;
    if len < NLMSG_HDRLEN || len > rest.len() {
        return Err(Error::Malformed("message length out of bounds"));
    }
    let header = Header {
        ty: u16_at(rest, 4).unwrap_or(0),
        flags: u16_at(rest, 6).unwrap_or(0),
        seq: u32_at(rest, 8).unwrap_or(0),
        pid: u32_at(rest, 12).unwrap_or(0),
    };
    Ok((
        header,
        &rest[NLMSG_HDRLEN..len],
        &rest[align4(len).min(rest.len())..],
    ))
}

/// Splits the first attribute off `rest`: its type (without the flag bits), its value, and
/// the attributes after it.
fn next_attr(rest: &[u8]) -> Result<(u16, &[u8], &[u8]), Error> {
    if rest.len() < RTA_HDRLEN {
        return Err(Error::Malformed("attribute header cut short"));
    }
    let len = usize::from(u16_at(rest, 0).unwrap_or(0));
    if len < RTA_HDRLEN || len > rest.len() {
        return Err(Error::Malformed("attribute length out of bounds"));
    }
    let ty = u16_at(rest, 2).unwrap_or(0) & NLA_TYPE_MASK;
    Ok((
        ty,
        &rest[RTA_HDRLEN..len],
        &rest[align4(len).min(rest.len())..],
    ))
}

/// One link notification, as an `RTMGRP_LINK` subscription receives it.
#[derive(Debug, PartialEq, Eq)]
pub enum Notification<'a> {
    /// `RTM_NEWLINK`: the interface's whole state, for [`parse_link`].
    New(&'a [u8]),
    /// `RTM_DELLINK`: the interface with this index is gone.
    Deleted(u32),
}

/// Walks the messages of one datagram of link notifications and hands each `RTM_NEWLINK` and
/// `RTM_DELLINK` to `on_link`. Unlike a dump's replies these carry the sequence number and
/// port of whatever request caused them (an `ip link set` of another process), or zeros, so
/// none is skipped for them; other message types are ignored.
pub fn parse_notifications(
    buf: &[u8],
    mut on_link: impl FnMut(Notification<'_>),
) -> Result<(), Error> {
    let mut rest = buf;
    while !rest.is_empty() {
        let (msg, payload, after) = next_message(rest)?;
        rest = after;
        match msg.ty {
            RTM_NEWLINK => on_link(Notification::New(payload)),
            RTM_DELLINK => match u32_at(payload, 4) {
                Some(ifindex) => on_link(Notification::Deleted(ifindex)),
                None => return Err(Error::Malformed("short ifinfomsg")),
            },
            _ => {}
        }
    }
    Ok(())
}

/// Fills `iface` from one `RTM_NEWLINK` payload, and `master` with the `IFLA_MASTER` index
/// (0 for none), which only the whole dump can turn into a name. Returns false when the
/// interface must be left out (no name); a value whose size is wrong gives no sample and
/// counts in `errors`, as a sysfs value that does not parse does. Framing that breaks the
/// rules is an [`Error`].
pub fn parse_link(
    payload: &[u8],
    statistics: bool,
    iface: &mut Interface,
    errors: &mut u64,
    master: &mut u32,
) -> Result<bool, Error> {
    if payload.len() < IFINFOMSG_LEN {
        return Err(Error::Malformed("short ifinfomsg"));
    }
    let link_type = u16_at(payload, 2).unwrap_or(0);
    let ifindex = u32_at(payload, 4).unwrap_or(0);
    let flags = u32_at(payload, 8).unwrap_or(0);
    let up = flags & IFF_UP != 0;
    clear(iface);
    *master = 0;
    iface.ifindex = Some(u64::from(ifindex));
    iface.admin_up = Some(up);
    iface.link_type = Some(link_type);
    if statistics {
        iface.clear_statistics();
    }
    let mut carrier = None;
    let mut operstate = None;
    let mut named = false;
    let mut rest = &payload[IFINFOMSG_LEN..];
    while !rest.is_empty() {
        let (ty, value, tail) = next_attr(rest)?;
        rest = tail;
        // One arm per attribute; a value of the wrong size gives no sample and one error.
        let ok = match ty {
            IFLA_IFNAME => {
                let name = until_nul(value);
                named = !name.is_empty();
                iface.name.clear();
                model::append(&mut iface.name, name);
                // An empty name is counted once, below, with a missing one.
                true
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
                iface.ifalias.clear();
                model::append(&mut iface.ifalias, until_nul(value));
                true
            }
            IFLA_STATS64 => match &mut iface.statistics {
                Some(stats) if value.len() >= STATS64_MIN_LEN && value.len() % 8 == 0 => {
                    for (slot, stat) in stats.iter_mut().zip(&STATISTICS) {
                        *slot = u64_at(value, stat.stats64 * 8);
                    }
                    true
                }
                Some(_) => false,
                None => true,
            },
            IFLA_TXQLEN => set_u32(&mut iface.tx_queue_len, value),
            // ifi_flags shows IFF_PROMISC only when a user asked for it; the count includes
            // a bridge's or a packet capture's requests, which is what IF-MIB means.
            IFLA_PROMISCUITY => {
                let mut count = None;
                let ok = set_u32(&mut count, value);
                iface.promiscuous = count.map(|n| n > 0);
                ok
            }
            IFLA_MASTER => match <[u8; 4]>::try_from(value) {
                Ok(b) => {
                    *master = u32::from_ne_bytes(b);
                    true
                }
                Err(_) => false,
            },
            IFLA_LINKINFO => match link_kind(value) {
                Some(kind) => {
                    iface.kind.clear();
                    model::append(&mut iface.kind, kind);
                    true
                }
                None => false,
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
    model::append(&mut iface.operstate, state.name().as_bytes());
    // sysfs answers `carrier` only while the interface is up (EINVAL otherwise).
    iface.carrier = carrier.filter(|_| up).map(|c| c != 0);
    Ok(true)
}

/// `IFLA_INFO_KIND` inside an `IFLA_LINKINFO`: empty when it holds none, `None` when its
/// framing is broken (a nested value, so it costs the kind, not the dump).
fn link_kind(linkinfo: &[u8]) -> Option<&[u8]> {
    let mut rest = linkinfo;
    while !rest.is_empty() {
        let (ty, value, tail) = next_attr(rest).ok()?;
        if ty == IFLA_INFO_KIND {
            return Some(until_nul(value));
        }
        rest = tail;
    }
    Some(b"")
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
    iface.link_type = None;
    iface.kind.clear();
    iface.master.clear();
    iface.promiscuous = None;
    iface.tx_queue_len = None;
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
    matches!(
        err.raw_os_error(),
        Some(sys::ENODEV | sys::EINVAL | sys::EOPNOTSUPP)
    )
}

/// Reads interfaces with netlink dumps, reusing its socket and buffers from scan to scan.
pub struct Reader {
    /// Shared with the helper while it receives a dump.
    socket: Option<Arc<sys::NetlinkSocket>>,
    /// Shared with the helper while it asks.
    ethtool: Option<Arc<Mutex<sys::Ethtool>>>,
    helper: Option<Helper>,
    /// Receive buffers, each `buf_len` long: one for a dump received in turn, up to
    /// `RECV_BUFFERS` for one received by the helper.
    bufs: Vec<Vec<u8>>,
    buf_len: usize,
    /// Datagrams in the last complete dump, which says whether the next is worth the helper.
    last_datagrams: usize,
    seq: u32,
    masters: Masters,
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
            helper: None,
            bufs: Vec::new(),
            buf_len: RECV_BUF,
            last_datagrams: 0,
            seq: 0,
            masters: Masters::default(),
        }
    }

    /// Reads every interface into `scan`, with speed and duplex for the running ones.
    ///
    /// Those take one ethtool ioctl each, a tenth of a scrape at a thousand interfaces. The
    /// helper asks them, and the scan leaves that running ([`Scan::defer`]): the families
    /// that do not need them are rendered meanwhile. Where the helper cannot be started, they
    /// are asked here.
    pub fn scan(&mut self, opts: &Options, scan: &mut Scan) -> Result<(), ScanError> {
        self.dump(opts.statistics, scan, |name| opts.wants(name))?;
        let queries = queries(&scan.interfaces);
        if queries.is_empty() {
            return Ok(());
        }
        let ethtool = match &self.ethtool {
            Some(ethtool) => Arc::clone(ethtool),
            None => {
                let opened = sys::Ethtool::open().map_err(|err| ScanError {
                    what: "cannot open",
                    subject: "an ethtool socket".to_owned(),
                    err,
                })?;
                Arc::clone(self.ethtool.insert(Arc::new(Mutex::new(opened))))
            }
        };
        match self.helper() {
            Some(helper) => {
                let reply = helper.ask(ethtool, queries);
                scan.defer(move |scan| {
                    settle(&mut scan.interfaces, reply.wait(), &mut scan.errors);
                });
            }
            None => {
                let answers = ask(&ethtool, queries);
                settle(&mut scan.interfaces, answers, &mut scan.errors);
            }
        }
        Ok(())
    }

    /// The helper thread, started by the first scan that has work for it and kept; while it
    /// cannot be started (a thread limit, say), each later scan tries again.
    fn helper(&mut self) -> Option<&Helper> {
        if self.helper.is_none() {
            self.helper = Helper::start().ok();
        }
        self.helper.as_ref()
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
        for _ in 0..MAX_DUMP_ATTEMPTS {
            scan.begin();
            let socket = match &self.socket {
                Some(socket) => Arc::clone(socket),
                None => {
                    let opened = sys::NetlinkSocket::open().map_err(|e| fail("cannot open", e))?;
                    Arc::clone(self.socket.insert(Arc::new(opened)))
                }
            };
            self.seq = self.seq.wrapping_add(1);
            // A long dump is received by the helper while this thread parses it.
            let piped = self.last_datagrams >= PIPE_MIN_DATAGRAMS && self.helper().is_some();
            let helper = self.helper.as_ref().filter(|_| piped);
            let mut dump = Dump {
                seq: self.seq,
                portid: socket.portid,
                statistics,
                scan,
                keep: &keep,
                masters: &mut self.masters,
                interrupted: false,
                datagrams: 0,
            };
            let result = dump.request(&socket).and_then(|()| match helper {
                Some(helper) => {
                    let recv = move |buf: &mut [u8]| socket.recv(buf);
                    dump.piped(recv, helper, &mut self.bufs, self.buf_len)
                }
                None => dump.in_turn(&socket, &mut self.bufs, self.buf_len),
            });
            let datagrams = dump.datagrams;
            match result {
                Ok(Outcome::Complete) => {
                    self.last_datagrams = datagrams;
                    return Ok(());
                }
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
                    self.buf_len = real.next_power_of_two().min(MAX_RECV_BUF);
                    self.bufs.clear();
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

/// The stack of the helper thread: it only loops over system calls.
const HELPER_STACK: usize = 64 * 1024;

/// A thread the reader keeps for the work a scan can leave to it: receiving a long dump while
/// the scan's thread parses it, and asking ethtool while the scan is rendered. A thread
/// started per scan cost a tenth of a millisecond. Jobs run in the order given.
struct Helper {
    queue: Arc<Queue>,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    jobs: Mutex<Jobs>,
    more: Condvar,
}

#[derive(Default)]
struct Jobs {
    waiting: VecDeque<Job>,
    /// The thread waits for a job: only then does a new one need a wake-up.
    idle: bool,
    /// Set when the reader goes: the thread ends.
    closed: bool,
}

impl Helper {
    fn start() -> io::Result<Helper> {
        let queue = Arc::new(Queue::default());
        let serving = Arc::clone(&queue);
        thread::Builder::new()
            .name("netlink-helper".to_owned())
            .stack_size(HELPER_STACK)
            .spawn(move || serve(&serving))?;
        Ok(Helper { queue })
    }

    /// Asks `queries` of `ethtool` after the jobs before; the answers arrive in the reply.
    fn ask(&self, ethtool: Arc<Mutex<sys::Ethtool>>, queries: Vec<Query>) -> Arc<Reply> {
        let reply = Arc::new(Reply::default());
        let answered = Arc::clone(&reply);
        self.run(move || answered.put(ask(&ethtool, queries)));
        reply
    }

    fn run(&self, job: impl FnOnce() + Send + 'static) {
        let mut jobs = lock(&self.queue.jobs);
        jobs.waiting.push_back(Box::new(job));
        let idle = jobs.idle;
        // Woken after the lock is let go, which it would otherwise wait for at once.
        drop(jobs);
        if idle {
            self.queue.more.notify_one();
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        lock(&self.queue.jobs).closed = true;
        self.queue.more.notify_one();
    }
}

/// The helper's loop: each job in turn, until the reader goes.
fn serve(queue: &Queue) {
    loop {
        let mut jobs = lock(&queue.jobs);
        let job = loop {
            if let Some(job) = jobs.waiting.pop_front() {
                break job;
            }
            if jobs.closed {
                return;
            }
            jobs.idle = true;
            jobs = queue.more.wait(jobs).unwrap_or_else(|e| e.into_inner());
            jobs.idle = false;
        };
        drop(jobs);
        job();
    }
}

/// Where the answers to one scan's ethtool questions arrive.
#[derive(Default)]
struct Reply {
    answers: Mutex<Option<Answers>>,
    ready: Condvar,
}

impl Reply {
    fn put(&self, answers: Answers) {
        *lock(&self.answers) = Some(answers);
        self.ready.notify_all();
    }

    /// Waits for the answers and takes them: called once, by the scan's settle.
    fn wait(&self) -> Answers {
        let mut answers = lock(&self.answers);
        loop {
            if let Some(answers) = answers.take() {
                return answers;
            }
            answers = self.ready.wait(answers).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Locks a mutex whose data no panic can leave half-changed (a panic aborts the process).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running interface whose speed and duplex are to be asked.
struct Query {
    ifindex: u64,
    /// The name as `ifr_name` takes it; `len` is `IFNAMSIZ` for one too long, which the ioctl
    /// refuses as it would have.
    name: [u8; IFNAMSIZ],
    len: usize,
}

impl Query {
    fn new(ifindex: u64, name: &[u8]) -> Query {
        let len = name.len().min(IFNAMSIZ);
        let mut query = Query {
            ifindex,
            name: [0; IFNAMSIZ],
            len,
        };
        model::copy(&mut query.name[..len], &name[..len]);
        query
    }
}

/// The questions for the interfaces that are up, which sysfs shows speed and duplex for.
fn queries(interfaces: &[Box<Interface>]) -> Vec<Query> {
    let up = || interfaces.iter().filter(|i| i.admin_up == Some(true));
    // Counted first: grown as collected, the vector took three allocations.
    let mut queries = Vec::with_capacity(up().count());
    queries.extend(up().map(|i| Query::new(i.ifindex.unwrap_or(0), &i.name)));
    queries
}

/// What ethtool said of each queried interface, by ifindex.
type Answers = Vec<(u64, io::Result<sys::LinkSettings>)>;

fn ask(ethtool: &Mutex<sys::Ethtool>, queries: Vec<Query>) -> Answers {
    let mut ethtool = lock(ethtool);
    queries
        .into_iter()
        .map(|q| (q.ifindex, ethtool.link_settings(&q.name[..q.len])))
        .collect()
}

/// Records what ethtool said of each interface: its speed and duplex, nothing where it has no
/// value, or an error counted (and logged at debug). The interfaces may have been sorted since
/// they were asked for; they are found by ifindex.
fn settle(interfaces: &mut [Box<Interface>], mut answers: Answers, errors: &mut u64) {
    // Indexes are nearly always dense (1 to a little past the count): a table from index to
    // answer finds each in one step, where a binary search took a tenth of settling. Sparse
    // ones (or the table's memory refused) are searched.
    answers.sort_unstable_by_key(|&(ifindex, _)| ifindex);
    let last = answers.last().map_or(0, |&(n, _)| n);
    let mut table: Vec<u32> = Vec::new();
    if last
        <= (answers.len() as u64)
            .saturating_mul(8)
            .saturating_add(1024)
        && table.try_reserve_exact(last as usize + 1).is_ok()
    {
        table.resize(last as usize + 1, u32::MAX);
        for (at, &(ifindex, _)) in answers.iter().enumerate() {
            table[ifindex as usize] = at as u32;
        }
    }
    let find = |ifindex: u64| -> Option<usize> {
        if table.is_empty() {
            return answers.binary_search_by_key(&ifindex, |&(n, _)| n).ok();
        }
        let at = *table.get(usize::try_from(ifindex).ok()?)?;
        (at != u32::MAX).then_some(at as usize)
    };
    for iface in interfaces {
        let Some(ifindex) = iface.ifindex else {
            continue;
        };
        let Some(at) = find(ifindex) else {
            continue;
        };
        match &answers[at].1 {
            Ok(settings) => {
                match speed_mbps(settings.speed) {
                    Ok(speed) => iface.speed_mbps = speed,
                    Err(()) => *errors += 1,
                }
                model::append(&mut iface.duplex, duplex_name(settings.duplex));
            }
            Err(e) if ethtool_no_value(e) => {}
            Err(e) => {
                *errors += 1;
                crate::log::debug(
                    "ethtool failed",
                    &[
                        ("interface", &String::from_utf8_lossy(&iface.name)),
                        ("err", e),
                    ],
                );
            }
        }
    }
}

/// What turning `IFLA_MASTER` indexes into names needs: the index and name of every interface
/// of the dump, those the filters leave out too (a port's bridge may be excluded), and which
/// kept interfaces have a master. Kept in the reader for its allocations.
#[derive(Default)]
struct Masters {
    /// `(ifindex, start, end)`: the name is `names[start..end]`.
    index: Vec<(u32, usize, usize)>,
    names: Vec<u8>,
    /// `(position in scan.interfaces, the master's ifindex)`.
    pending: Vec<(usize, u32)>,
}

impl Masters {
    fn clear(&mut self) {
        self.index.clear();
        self.names.clear();
        self.pending.clear();
    }

    /// Parses one `RTM_NEWLINK` payload into `scan` (or gives it back when `keep` refuses its
    /// name), noting its name and its master.
    fn link(
        &mut self,
        payload: &[u8],
        statistics: bool,
        scan: &mut Scan,
        keep: &impl Fn(&[u8]) -> bool,
    ) -> Result<(), Error> {
        let mut iface = scan.take_spare();
        let mut master = 0;
        match parse_link(
            payload,
            statistics,
            &mut iface,
            &mut scan.errors,
            &mut master,
        ) {
            Ok(true) => {
                let start = self.names.len();
                model::append(&mut self.names, &iface.name);
                let ifindex = iface.ifindex.unwrap_or(0) as u32;
                self.index.push((ifindex, start, self.names.len()));
                if keep(&iface.name) {
                    if master != 0 {
                        self.pending.push((scan.interfaces.len(), master));
                    }
                    scan.interfaces.push(iface);
                } else {
                    scan.give_back(iface);
                }
                Ok(())
            }
            Ok(false) => {
                scan.give_back(iface);
                Ok(())
            }
            Err(e) => {
                scan.give_back(iface);
                Err(e)
            }
        }
    }

    /// Names the master of each kept interface that has one, once the dump is complete. An
    /// index the dump does not hold (the master went away during the dump) is no master.
    fn resolve(&mut self, interfaces: &mut [Box<Interface>]) {
        if self.pending.is_empty() {
            return;
        }
        self.index.sort_unstable_by_key(|&(ifindex, _, _)| ifindex);
        for &(at, master) in &self.pending {
            let Ok(i) = self.index.binary_search_by_key(&master, |&(n, _, _)| n) else {
                continue;
            };
            let (_, start, end) = self.index[i];
            if let Some(iface) = interfaces.get_mut(at) {
                iface.master.clear();
                model::append(&mut iface.master, &self.names[start..end]);
            }
        }
    }
}

/// Dumps at least this long, in datagrams of about 28 interfaces, are received by the helper
/// while the scan's thread parses them. Below it, the hand-offs would cost more than the parse
/// they hide (and the buffers more memory): a host with a few interfaces dumps in two.
const PIPE_MIN_DATAGRAMS: usize = 8;

/// Receive buffers of a dump the helper receives: a batch being parsed and the next filled.
const RECV_BUFFERS: usize = 6;

/// Datagrams the parser takes at once (fewer at the dump's end). Each hand-off costs two
/// system calls, a wake-up and a wait; a thousand interfaces come in about forty datagrams.
const BATCH: usize = 4;

/// One dump attempt, parsed into a scan as its datagrams arrive.
struct Dump<'a, K> {
    seq: u32,
    portid: u32,
    statistics: bool,
    scan: &'a mut Scan,
    keep: &'a K,
    masters: &'a mut Masters,
    interrupted: bool,
    /// Datagrams parsed so far.
    datagrams: usize,
}

type Step<T> = Result<T, (&'static str, io::Error)>;

impl<K: Fn(&[u8]) -> bool> Dump<'_, K> {
    fn request(&mut self, socket: &sys::NetlinkSocket) -> Step<()> {
        self.masters.clear();
        socket
            .send(&dump_request(self.seq))
            .map_err(|e| ("cannot send a dump request on", e))
    }

    /// Receives each datagram and parses it, in turn (after the request was sent).
    fn in_turn(
        &mut self,
        socket: &sys::NetlinkSocket,
        bufs: &mut Vec<Vec<u8>>,
        buf_len: usize,
    ) -> Step<Outcome> {
        if bufs.is_empty() {
            bufs.push(vec![0; buf_len]);
        }
        let buf = &mut bufs[0];
        loop {
            let got = socket.recv(buf);
            if let Some(outcome) = self.datagram(buf, got)? {
                return Ok(outcome);
            }
        }
    }

    /// Parses the datagrams the helper receives with `recv` (after the request was sent), a
    /// batch at a time: the kernel fills the next datagram inside the receive that returns
    /// the last, so while this thread parses, the helper's receive keeps the kernel filling.
    /// Every buffer is back in `bufs` when this returns, and the helper done with `recv`.
    fn piped(
        &mut self,
        recv: impl FnMut(&mut [u8]) -> io::Result<sys::Received> + Send + 'static,
        helper: &Helper,
        bufs: &mut Vec<Vec<u8>>,
        buf_len: usize,
    ) -> Step<Outcome> {
        let pipe = Arc::new(Pipe::new(std::mem::take(bufs), buf_len));
        let receiving = Arc::clone(&pipe);
        let (seq, portid) = (self.seq, self.portid);
        helper.run(move || receive(recv, seq, portid, &receiving));
        let mut batch = VecDeque::with_capacity(RECV_BUFFERS);
        let mut parsed = Vec::with_capacity(RECV_BUFFERS);
        let outcome = loop {
            if !pipe.take_batch(&mut batch) {
                break Err((
                    "the dump ended early on",
                    io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            let mut end = None;
            for (buf, got) in batch.drain(..) {
                if end.is_none() {
                    end = self.datagram(&buf, got).transpose();
                }
                parsed.push(buf);
            }
            pipe.give_back(&mut parsed);
            if let Some(outcome) = end {
                break outcome;
            }
        };
        *bufs = pipe.finish();
        outcome
    }

    /// Parses one received datagram: `Some` when it ended the dump.
    fn datagram(&mut self, buf: &[u8], got: io::Result<sys::Received>) -> Step<Option<Outcome>> {
        let got = got.map_err(|e| ("cannot receive the dump from", e))?;
        if !got.from_kernel {
            return Ok(None);
        }
        if let Some(real) = got.truncated {
            return Ok(Some(Outcome::Truncated(real)));
        }
        self.datagrams += 1;
        let mut failed = None;
        let (masters, scan, keep, statistics) = (
            &mut *self.masters,
            &mut *self.scan,
            self.keep,
            self.statistics,
        );
        let datagram = parse_datagram(&buf[..got.len], self.seq, self.portid, |payload| {
            if failed.is_some() {
                return;
            }
            if let Err(e) = masters.link(payload, statistics, scan, keep) {
                failed = Some(e);
            }
        })
        .map_err(|e| ("bad dump from", e.into_io()))?;
        if let Some(e) = failed {
            return Err(("bad dump from", e.into_io()));
        }
        self.interrupted |= datagram.interrupted;
        if !datagram.done {
            return Ok(None);
        }
        self.masters.resolve(&mut self.scan.interfaces);
        Ok(Some(if self.interrupted {
            Outcome::Interrupted
        } else {
            Outcome::Complete
        }))
    }
}

/// The helper's part of a piped dump: datagrams into empty buffers until the one that ends
/// the dump (read from its headers alone; broken framing ends it too, and the parser says
/// why), an error, or a datagram cut short; or until the parser stops it.
fn receive(
    mut recv: impl FnMut(&mut [u8]) -> io::Result<sys::Received>,
    seq: u32,
    portid: u32,
    pipe: &Pipe,
) {
    while let Some(mut buf) = pipe.empty_buffer() {
        let got = recv(&mut buf);
        let last = match &got {
            Err(_) => true,
            Ok(got) if !got.from_kernel => false,
            Ok(got) if got.truncated.is_some() => true,
            Ok(got) => parse_datagram(&buf[..got.len], seq, portid, |_| {})
                .map_or(true, |datagram| datagram.done),
        };
        pipe.deliver(buf, got, last);
        if last {
            return;
        }
    }
}

/// The buffers of a piped dump, passed between the parser and the helper that receives. Each
/// side is woken only when it waits and the other has what it waits for, and after the lock
/// is let go (woken under it, it would wait for the lock at once: two more system calls).
struct Pipe {
    state: Mutex<PipeState>,
    parser: Condvar,
    receiver: Condvar,
}

struct PipeState {
    /// Received datagrams (or why none came), oldest first.
    full: VecDeque<(Vec<u8>, io::Result<sys::Received>)>,
    empty: Vec<Vec<u8>>,
    /// Buffers that may still be made, `buf_len` long, when none is empty.
    unmade: usize,
    buf_len: usize,
    parser_waits: bool,
    receiver_waits: bool,
    /// Set by the parser when it takes no more: the receiver stops at its next buffer.
    stopped: bool,
    /// Set by the receiver when it is done with the socket and the buffers.
    ended: bool,
}

impl Pipe {
    fn new(empty: Vec<Vec<u8>>, buf_len: usize) -> Pipe {
        Pipe {
            state: Mutex::new(PipeState {
                full: VecDeque::with_capacity(RECV_BUFFERS),
                unmade: RECV_BUFFERS.saturating_sub(empty.len()),
                empty,
                buf_len,
                parser_waits: false,
                receiver_waits: false,
                stopped: false,
                ended: false,
            }),
            parser: Condvar::new(),
            receiver: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        lock(&self.state)
    }

    /// A buffer to receive into; `None` (and the receiver ended) once the parser stopped.
    fn empty_buffer(&self) -> Option<Vec<u8>> {
        let mut state = self.lock();
        loop {
            if state.stopped {
                state.ended = true;
                let wake = state.parser_waits;
                drop(state);
                if wake {
                    self.parser.notify_one();
                }
                return None;
            }
            if let Some(buf) = state.empty.pop() {
                return Some(buf);
            }
            if state.unmade > 0 {
                state.unmade -= 1;
                let len = state.buf_len;
                drop(state);
                return Some(vec![0; len]);
            }
            state.receiver_waits = true;
            state = self.receiver.wait(state).unwrap_or_else(|e| e.into_inner());
            state.receiver_waits = false;
        }
    }

    /// Hands over a received datagram; `last` ends the receiver.
    fn deliver(&self, buf: Vec<u8>, got: io::Result<sys::Received>, last: bool) {
        let mut state = self.lock();
        state.full.push_back((buf, got));
        state.ended |= last;
        let wake = state.parser_waits && (state.full.len() >= BATCH || state.ended);
        drop(state);
        if wake {
            self.parser.notify_one();
        }
    }

    /// Moves the received datagrams into the empty `batch` once there are `BATCH` of them or
    /// the receiver ended; false when it ended and nothing is left.
    fn take_batch(&self, batch: &mut VecDeque<(Vec<u8>, io::Result<sys::Received>)>) -> bool {
        let mut state = self.lock();
        loop {
            if state.full.len() >= BATCH || (state.ended && !state.full.is_empty()) {
                std::mem::swap(&mut state.full, batch);
                return true;
            }
            if state.ended {
                return false;
            }
            state.parser_waits = true;
            state = self.parser.wait(state).unwrap_or_else(|e| e.into_inner());
            state.parser_waits = false;
        }
    }

    fn give_back(&self, bufs: &mut Vec<Vec<u8>>) {
        let mut state = self.lock();
        state.empty.append(bufs);
        let wake = state.receiver_waits;
        drop(state);
        if wake {
            self.receiver.notify_one();
        }
    }

    /// Stops the receiver, waits until it has ended, and takes back every buffer.
    fn finish(&self) -> Vec<Vec<u8>> {
        let mut state = self.lock();
        state.stopped = true;
        if state.receiver_waits {
            self.receiver.notify_one();
        }
        while !state.ended {
            state.parser_waits = true;
            state = self.parser.wait(state).unwrap_or_else(|e| e.into_inner());
            state.parser_waits = false;
        }
        let mut bufs = std::mem::take(&mut state.empty);
        bufs.extend(state.full.drain(..).map(|(buf, _)| buf));
        bufs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::Rng;
    use crate::model::STATISTICS_LEN;

    const SEQ: u32 = 7;
    const PORT: u32 = 4242;

    fn attr(ty: u16, value: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((RTA_HDRLEN + value.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(value);
        a.resize(align4(a.len()), 0);
        a
    }

    /// An `ifinfomsg` with `index` and `flags`, then `attrs` as given.
    fn link(index: u32, flags: u32, attrs: &[Vec<u8>]) -> Vec<u8> {
        let mut p = vec![0u8; IFINFOMSG_LEN];
        p[4..8].copy_from_slice(&index.to_ne_bytes());
        p[8..12].copy_from_slice(&flags.to_ne_bytes());
        for a in attrs {
            p.extend_from_slice(a);
        }
        p
    }

    fn message(ty: u16, flags: u16, seq: u32, pid: u32, payload: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + payload.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&pid.to_ne_bytes());
        m.extend_from_slice(payload);
        m.resize(align4(m.len()), 0);
        m
    }

    fn done(flags: u16, err: i32) -> Vec<u8> {
        message(NLMSG_DONE, flags | 2, SEQ, PORT, &err.to_ne_bytes())
    }

    /// A `struct rtnl_link_stats64` of `n` counters, each its field number plus one.
    fn stats64(n: usize) -> Vec<u8> {
        (1..=n as u64).flat_map(|v| v.to_ne_bytes()).collect()
    }

    /// The statistics [`stats64`] gives, in the model's order.
    fn stats(n: usize) -> Option<Box<[Option<u64>; STATISTICS_LEN]>> {
        let mut out = [None; STATISTICS_LEN];
        for (slot, stat) in out.iter_mut().zip(&STATISTICS) {
            *slot = (stat.stats64 < n).then_some(stat.stats64 as u64 + 1);
        }
        Some(Box::new(out))
    }

    /// An `IFLA_LINKINFO` holding `attrs`.
    fn linkinfo(attrs: &[Vec<u8>]) -> Vec<u8> {
        attr(IFLA_LINKINFO | 0x8000, &attrs.concat())
    }

    fn parsed(payload: &[u8], statistics: bool) -> (Result<bool, Error>, Interface, u64) {
        let (r, iface, errors, _) = parsed_with_master(payload, statistics);
        (r, iface, errors)
    }

    fn parsed_with_master(
        payload: &[u8],
        statistics: bool,
    ) -> (Result<bool, Error>, Interface, u64, u32) {
        let mut iface = Interface::default();
        let mut errors = 0;
        let mut master = 0xdead;
        let r = parse_link(payload, statistics, &mut iface, &mut errors, &mut master);
        (r, iface, errors, master)
    }

    #[track_caller]
    fn check(payload: &[u8], expected: Result<Interface, Error>, errors: u64) {
        let (r, iface, counted) = parsed(payload, true);
        match expected {
            Ok(want) => {
                assert_eq!(r, Ok(true));
                assert_eq!(iface, want);
            }
            Err(e) => assert_eq!(r, Err(e)),
        }
        assert_eq!(counted, errors);
    }

    fn up_veth() -> Interface {
        Interface {
            name: b"ie-a".to_vec(),
            operstate: b"up".to_vec(),
            ifindex: Some(5),
            admin_up: Some(true),
            carrier: Some(true),
            carrier_changes: Some(2),
            carrier_up: Some(1),
            carrier_down: Some(1),
            mtu: Some(9000),
            address: b"02:00:00:00:0a:ff".to_vec(),
            ifalias: b"q \" b \\ n\nx".to_vec(),
            link_type: Some(1),
            kind: b"veth".to_vec(),
            promiscuous: Some(true),
            tx_queue_len: Some(1000),
            statistics: stats(25),
            ..Interface::default()
        }
    }

    #[test]
    fn links() {
        let name = attr(IFLA_IFNAME, b"ie-a\0");
        let mut full = link(
            5,
            IFF_UP | 0x1000,
            &[
                name.clone(),
                attr(IFLA_OPERSTATE, &[6]),
                attr(IFLA_CARRIER, &[1]),
                attr(IFLA_CARRIER_CHANGES, &2u32.to_ne_bytes()),
                attr(IFLA_CARRIER_UP_COUNT, &1u32.to_ne_bytes()),
                attr(IFLA_CARRIER_DOWN_COUNT, &1u32.to_ne_bytes()),
                attr(IFLA_MTU, &9000u32.to_ne_bytes()),
                attr(IFLA_ADDRESS, &[2, 0, 0, 0, 0x0a, 0xff]),
                attr(IFLA_IFALIAS, b"q \" b \\ n\nx\0"),
                attr(IFLA_STATS64, &stats64(25)),
                attr(IFLA_TXQLEN, &1000u32.to_ne_bytes()),
                attr(IFLA_PROMISCUITY, &2u32.to_ne_bytes()),
                linkinfo(&[attr(IFLA_INFO_KIND, b"veth\0"), attr(5, b"bridge\0")]),
                attr(99, b"an attribute of a later kernel"),
            ],
        );
        full[2..4].copy_from_slice(&1u16.to_ne_bytes());
        check(&full, Ok(up_veth()), 0);

        // Admin down: the kernel still sends IFLA_CARRIER, sysfs refuses it: no sample.
        let down = link(
            6,
            0,
            &[
                name.clone(),
                attr(IFLA_OPERSTATE, &[2]),
                attr(IFLA_CARRIER, &[0]),
            ],
        );
        let want = Interface {
            name: b"ie-a".to_vec(),
            operstate: b"down".to_vec(),
            ifindex: Some(6),
            admin_up: Some(false),
            link_type: Some(0),
            statistics: Some(Box::new([None; STATISTICS_LEN])),
            ..Interface::default()
        };
        check(&down, Ok(want.clone()), 0);

        // Each operstate number as RFC 2863 names it; numbers past 6 are "other" and counted.
        for (n, state) in [
            (0, "unknown"),
            (1, "notpresent"),
            (5, "dormant"),
            (7, "other"),
            (255, "other"),
        ] {
            let p = link(6, 0, &[name.clone(), attr(IFLA_OPERSTATE, &[n])]);
            let want = Interface {
                operstate: state.into(),
                ..want.clone()
            };
            check(&p, Ok(want), u64::from(state == "other"));
        }

        // An address of length 0 (a tun device has none) and a 16-byte one.
        let p = link(
            6,
            0,
            &[
                name.clone(),
                attr(IFLA_OPERSTATE, &[2]),
                attr(IFLA_ADDRESS, b""),
            ],
        );
        check(&p, Ok(want.clone()), 0);
        let p = link(
            6,
            0,
            &[
                name.clone(),
                attr(IFLA_OPERSTATE, &[2]),
                attr(IFLA_ADDRESS, &[0xab; 16]),
            ],
        );
        let long = "ab:".repeat(16);
        check(
            &p,
            Ok(Interface {
                address: long.trim_end_matches(':').into(),
                ..want.clone()
            }),
            0,
        );

        // Wrong sizes give no sample and count; the flag bits of a type are ignored.
        let p = link(
            6,
            0,
            &[
                name.clone(),
                attr(IFLA_OPERSTATE, &[2]),
                attr(IFLA_MTU, &[1, 2]),
                attr(IFLA_STATS64, &[0; 32]),
                attr(IFLA_CARRIER_CHANGES | 0x8000, &9u32.to_ne_bytes()),
            ],
        );
        check(
            &p,
            Ok(Interface {
                carrier_changes: Some(9),
                ..want.clone()
            }),
            2,
        );

        // The last of a repeated attribute wins, as it would for a file read twice.
        let p = link(
            6,
            0,
            &[
                attr(IFLA_IFNAME, b"x\0"),
                name.clone(),
                attr(IFLA_OPERSTATE, &[2]),
            ],
        );
        check(&p, Ok(want.clone()), 0);

        // A last attribute without its padding is still whole.
        let mut p = link(6, 0, &[name.clone(), attr(IFLA_OPERSTATE, &[2])]);
        p.truncate(p.len() - 3);
        check(&p, Ok(want.clone()), 0);

        // Left out, counted: no name, an empty name, no operstate.
        for p in [
            link(6, 0, &[attr(IFLA_OPERSTATE, &[2])]),
            link(
                6,
                0,
                &[attr(IFLA_IFNAME, b"\0"), attr(IFLA_OPERSTATE, &[2])],
            ),
            link(6, 0, std::slice::from_ref(&name)),
        ] {
            let (r, _, errors) = parsed(&p, true);
            assert_eq!((r, errors), (Ok(false), 1));
        }

        // Broken framing.
        let mut bad_len = link(6, 0, std::slice::from_ref(&name));
        bad_len[IFINFOMSG_LEN] = 3;
        let mut too_long = link(6, 0, std::slice::from_ref(&name));
        too_long[IFINFOMSG_LEN] = 200;
        let mut cut = link(6, 0, std::slice::from_ref(&name));
        cut.extend_from_slice(&[8, 0]);
        for (p, why) in [
            (&full[..10], "short ifinfomsg"),
            (&bad_len[..], "attribute length out of bounds"),
            (&too_long[..], "attribute length out of bounds"),
            (&cut[..], "attribute header cut short"),
        ] {
            check(p, Err(Error::Malformed(why)), 0);
        }

        // Without --collector.statistics the counters are not kept.
        let (r, iface, _) = parsed(&full, false);
        assert_eq!((r, iface.statistics.is_none()), (Ok(true), true));
    }

    #[track_caller]
    fn check_facts(attrs: &[Vec<u8>], expected: Interface, master: u32, errors: u64) {
        let name = attr(IFLA_IFNAME, b"ie-a\0");
        let mut all = vec![name, attr(IFLA_OPERSTATE, &[2])];
        all.extend_from_slice(attrs);
        let mut p = link(6, 0, &all);
        p[2..4].copy_from_slice(&expected.link_type.unwrap_or(0).to_ne_bytes());
        let (r, iface, counted, got_master) = parsed_with_master(&p, true);
        assert_eq!(r, Ok(true));
        assert_eq!(iface, expected);
        assert_eq!((got_master, counted), (master, errors));
    }

    #[test]
    fn link_facts() {
        let base = Interface {
            name: b"ie-a".to_vec(),
            operstate: b"down".to_vec(),
            ifindex: Some(6),
            admin_up: Some(false),
            link_type: Some(1),
            statistics: Some(Box::new([None; STATISTICS_LEN])),
            ..Interface::default()
        };
        let with = |f: fn(&mut Interface)| {
            let mut i = base.clone();
            f(&mut i);
            i
        };
        let u32v = |n: u32| n.to_ne_bytes().to_vec();
        let cases: Vec<(Vec<Vec<u8>>, Interface, u32, u64)> = vec![
            // Nothing but the ifinfomsg: the type is there, the rest has no value.
            (vec![], base.clone(), 0, 0),
            (vec![], with(|i| i.link_type = Some(0xfffe)), 0, 0),
            // A bridge port: promiscuous by the bridge's count, not by ifi_flags.
            (
                vec![
                    attr(IFLA_PROMISCUITY, &u32v(1)),
                    attr(IFLA_MASTER, &u32v(3)),
                    attr(IFLA_TXQLEN, &u32v(1000)),
                ],
                with(|i| {
                    i.promiscuous = Some(true);
                    i.tx_queue_len = Some(1000);
                }),
                3,
                0,
            ),
            (
                vec![
                    attr(IFLA_PROMISCUITY, &u32v(0)),
                    attr(IFLA_TXQLEN, &u32v(0)),
                ],
                with(|i| {
                    i.promiscuous = Some(false);
                    i.tx_queue_len = Some(0);
                }),
                0,
                0,
            ),
            // IFLA_MASTER 0 is no master.
            (vec![attr(IFLA_MASTER, &u32v(0))], base.clone(), 0, 0),
            // Wrong sizes: no value, one error each.
            (
                vec![
                    attr(IFLA_PROMISCUITY, &[1]),
                    attr(IFLA_MASTER, &[3, 0]),
                    attr(IFLA_TXQLEN, &[0; 8]),
                ],
                base.clone(),
                0,
                3,
            ),
            // The kind, with and without the slave kind beside it, flag bits on the type.
            (
                vec![linkinfo(&[attr(IFLA_INFO_KIND, b"bridge\0")])],
                with(|i| i.kind = b"bridge".to_vec()),
                0,
                0,
            ),
            (
                vec![linkinfo(&[
                    attr(4, b"bridge\0"),
                    attr(IFLA_INFO_KIND | 0x8000, b"vxlan\0"),
                ])],
                with(|i| i.kind = b"vxlan".to_vec()),
                0,
                0,
            ),
            // A link info without a kind (a slave kind only), and one whose nested framing is
            // broken: no kind; the broken one is counted, the dump goes on.
            (vec![linkinfo(&[attr(4, b"bond\0")])], base.clone(), 0, 0),
            (
                vec![attr(IFLA_LINKINFO, &[200, 0, 1, 0, b'x', 0, 0, 0])],
                base.clone(),
                0,
                1,
            ),
            // The counters of older kernels: 23 (2.6.35), 24 (4.6); of a later one: 26.
            (
                vec![attr(IFLA_STATS64, &stats64(23))],
                with(|i| i.statistics = stats(23)),
                0,
                0,
            ),
            (
                vec![attr(IFLA_STATS64, &stats64(24))],
                with(|i| i.statistics = stats(24)),
                0,
                0,
            ),
            (
                vec![attr(IFLA_STATS64, &stats64(26))],
                with(|i| i.statistics = stats(25)),
                0,
                0,
            ),
            // Shorter than any kernel sends, or not whole counters: no sample, one error.
            (vec![attr(IFLA_STATS64, &stats64(22))], base.clone(), 0, 1),
            (
                vec![attr(IFLA_STATS64, &stats64(25)[..199])],
                base.clone(),
                0,
                1,
            ),
        ];
        for (attrs, expected, master, errors) in cases {
            check_facts(&attrs, expected, master, errors);
        }
        // rx_otherhost_dropped is the 25th field and the last family.
        let last = &STATISTICS[STATISTICS_LEN - 1];
        assert_eq!((last.stats64, last.file), (24, None), "{}", last.metric);
    }

    /// Runs a dump through [`Dump::piped`] on a helper whose receive gets `datagrams` in turn
    /// (an `Err` is a failed receive; a datagram longer than the 512-byte buffers is cut
    /// short, as `MSG_TRUNC` reports it), then fails every receive as a timeout would. Gives
    /// the outcome, the interfaces parsed and the buffers handed back, given `bufs` to start.
    fn piped_dump(datagrams: Vec<io::Result<Vec<u8>>>, bufs: usize) -> (String, usize, usize) {
        let queue = Arc::new(Mutex::new(VecDeque::from(datagrams)));
        let recv = move |buf: &mut [u8]| -> io::Result<sys::Received> {
            let next = lock(&queue).pop_front();
            let datagram = next.unwrap_or_else(|| Err(io::ErrorKind::TimedOut.into()))?;
            let len = datagram.len().min(buf.len());
            buf[..len].copy_from_slice(&datagram[..len]);
            Ok(sys::Received {
                len,
                truncated: (datagram.len() > buf.len()).then_some(datagram.len()),
                from_kernel: true,
            })
        };
        let (mut scan, mut masters) = (Scan::default(), Masters::default());
        let keep = |_: &[u8]| true;
        let mut dump = Dump {
            seq: SEQ,
            portid: PORT,
            statistics: false,
            scan: &mut scan,
            keep: &keep,
            masters: &mut masters,
            interrupted: false,
            datagrams: 0,
        };
        let helper = Helper::start().expect("a helper thread");
        let mut buffers = vec![vec![0; 512]; bufs];
        let outcome = match dump.piped(recv, &helper, &mut buffers, 512) {
            Ok(Outcome::Complete) => "complete".to_owned(),
            Ok(Outcome::Interrupted) => "interrupted".to_owned(),
            Ok(Outcome::Truncated(n)) => format!("truncated {n}"),
            Err((what, e)) => match e.raw_os_error() {
                Some(errno) => format!("{what}: errno {errno}"),
                None => format!("{what}: {:?}", e.kind()),
            },
        };
        assert!(buffers.iter().all(|b| b.len() == 512));
        (outcome, scan.interfaces.len(), buffers.len())
    }

    #[test]
    fn a_piped_dump_ends_on_each_way_a_dump_ends() {
        let named = |index: u32| {
            let name = format!("eth{index}\0");
            let up = attr(IFLA_OPERSTATE, &[6]);
            message(
                RTM_NEWLINK,
                2,
                SEQ,
                PORT,
                &link(index, 0, &[attr(IFLA_IFNAME, name.as_bytes()), up]),
            )
        };
        let datagram = |parts: &[Vec<u8>]| Ok(parts.concat());
        let whole = |n: u32| -> Vec<io::Result<Vec<u8>>> {
            let mut d: Vec<_> = (0..n)
                .map(|i| datagram(&[named(2 * i), named(2 * i + 1)]))
                .collect();
            d.push(datagram(&[done(0, 0)]));
            d
        };
        for bufs in [0, 1, BATCH, RECV_BUFFERS] {
            // Every buffer given comes back, and no more are made than the pipe holds.
            let (outcome, links, back) = piped_dump(whole(20), bufs);
            assert_eq!((outcome.as_str(), links), ("complete", 40));
            assert!(
                (bufs.max(1)..=RECV_BUFFERS).contains(&back),
                "{back} from {bufs}"
            );
            // Shorter than a batch.
            assert_eq!(piped_dump(whole(1), bufs).0, "complete");
            // The last datagram holds links and the end.
            let mut d = whole(3);
            d.pop();
            d.push(datagram(&[named(99), done(0, 0)]));
            assert_eq!(piped_dump(d, bufs).0[..], *"complete");
            // A message marked interrupted.
            let mut d = whole(5);
            d[2] = datagram(&[message(
                RTM_NEWLINK,
                2 | NLM_F_DUMP_INTR,
                SEQ,
                PORT,
                &link(
                    9,
                    0,
                    &[attr(IFLA_IFNAME, b"x\0"), attr(IFLA_OPERSTATE, &[6])],
                ),
            )]);
            assert_eq!(piped_dump(d, bufs).0, "interrupted");
            // The kernel's error, broken framing and a broken link mid-dump, with more
            // datagrams still coming: the parser stops, and so does the receiver.
            let mut d = whole(20);
            d[4] = datagram(&[message(NLMSG_ERROR, 0, SEQ, PORT, &(-105i32).to_ne_bytes())]);
            assert_eq!(piped_dump(d, bufs).0, "bad dump from: errno 105");
            let mut d = whole(20);
            d[4] = datagram(&[vec![200, 0, 0, 0, 16, 0]]);
            assert_eq!(piped_dump(d, bufs).0, "bad dump from: InvalidData");
            let mut d = whole(20);
            d[9] = datagram(&[message(RTM_NEWLINK, 2, SEQ, PORT, &[1, 2, 3])]);
            assert_eq!(piped_dump(d, bufs).0, "bad dump from: InvalidData");
            // A receive that fails, and a dump that stops without its end.
            let mut d = whole(20);
            d[7] = Err(io::ErrorKind::ConnectionReset.into());
            assert_eq!(
                piped_dump(d, bufs).0,
                "cannot receive the dump from: ConnectionReset"
            );
            let mut d = whole(20);
            d.pop();
            assert_eq!(
                piped_dump(d, bufs).0,
                "cannot receive the dump from: TimedOut"
            );
            // A datagram longer than the buffer.
            let mut d = whole(20);
            d[3] = Ok(vec![0; 600]);
            assert_eq!(piped_dump(d, bufs).0, "truncated 600");
            // Datagrams of another dump are skipped.
            let mut d = whole(2);
            d.insert(
                1,
                datagram(&[message(NLMSG_DONE, 2, SEQ + 1, PORT, &[0; 4])]),
            );
            assert_eq!(piped_dump(d, bufs).0, "complete");
        }
    }

    #[test]
    fn a_dump_piped_through_the_helper_reads_what_one_in_turn_does() -> Result<(), io::Error> {
        // What does not move between two dumps on an idle namespace.
        let facts = |scan: &Scan| -> Vec<_> {
            scan.interfaces
                .iter()
                .map(|i| (i.name.clone(), i.ifindex, i.mtu, i.address.clone()))
                .collect()
        };
        let (mut in_turn, mut piped) = (Reader::new(), Reader::new());
        let dump = |reader: &mut Reader| -> Result<_, io::Error> {
            let mut scan = Scan::default();
            reader.dump(false, &mut scan, |_| true).map_err(|e| e.err)?;
            Ok(facts(&scan))
        };
        for _ in 0..3 {
            // Kept on: this namespace's dump is short, and would not be piped otherwise.
            piped.last_datagrams = PIPE_MIN_DATAGRAMS;
            // Between two dumps in turn that agree: a namespace that changed meanwhile
            // (another test's interfaces, on a shared machine) is no failure of the helper's.
            let before = dump(&mut in_turn)?;
            let got = dump(&mut piped)?;
            let after = dump(&mut in_turn)?;
            assert!(piped.helper.is_some());
            assert!((1..=RECV_BUFFERS).contains(&piped.bufs.len()));
            assert!(in_turn.helper.is_none() && in_turn.bufs.len() == 1);
            if before == after {
                assert_eq!(got, before);
            }
        }
        Ok(())
    }

    #[test]
    fn masters_are_named_from_the_same_dump() {
        let payload = |index: u32, name: &str, master: u32| {
            let mut attrs = vec![
                attr(IFLA_IFNAME, &[name.as_bytes(), b"\0"].concat()),
                attr(IFLA_OPERSTATE, &[6]),
            ];
            if master != 0 {
                attrs.push(attr(IFLA_MASTER, &master.to_ne_bytes()));
            }
            link(index, IFF_UP, &attrs)
        };
        // Ports listed before and after their bridge; a bridge the filter leaves out still
        // names its port; an index the dump does not hold names nothing.
        let dump = [
            payload(4, "port1", 3),
            payload(3, "br0", 0),
            payload(9, "x-br", 0),
            payload(5, "port2", 9),
            payload(6, "port3", 3),
            payload(7, "lost", 42),
            payload(1, "lo", 0),
        ];
        let mut masters = Masters::default();
        let mut scan = Scan::default();
        // Twice, as a reader does, to see nothing of the first scan stays.
        for _ in 0..2 {
            scan.begin();
            masters.clear();
            let keep = |name: &[u8]| !name.starts_with(b"x-");
            for p in &dump {
                assert_eq!(masters.link(p, false, &mut scan, &keep), Ok(()));
            }
            masters.resolve(&mut scan.interfaces);
            let got: Vec<(String, String)> = scan
                .interfaces
                .iter()
                .map(|i| {
                    (
                        String::from_utf8_lossy(&i.name).into_owned(),
                        String::from_utf8_lossy(&i.master).into_owned(),
                    )
                })
                .collect();
            let want: Vec<(String, String)> = [
                ("port1", "br0"),
                ("br0", ""),
                ("port2", "x-br"),
                ("port3", "br0"),
                ("lost", ""),
                ("lo", ""),
            ]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
            assert_eq!(got, want);
        }
        // A broken message fails the dump.
        assert_eq!(
            masters.link(&[0; 4], false, &mut scan, &|_: &[u8]| true),
            Err(Error::Malformed("short ifinfomsg"))
        );
    }

    #[track_caller]
    fn check_datagram(buf: &[u8], expected: Result<(Datagram, usize), Error>) {
        let mut links = 0;
        let r = parse_datagram(buf, SEQ, PORT, |_| links += 1);
        assert_eq!(r.map(|d| (d, links)), expected);
    }

    #[test]
    fn datagrams() {
        let lo = link(
            1,
            1,
            &[attr(IFLA_IFNAME, b"lo\0"), attr(IFLA_OPERSTATE, &[0])],
        );
        let newlink = |seq, pid| message(RTM_NEWLINK, 2, seq, pid, &lo);
        let more = Datagram::default();
        let cat = |parts: &[Vec<u8>]| parts.concat();
        check_datagram(b"", Ok((more, 0)));
        check_datagram(
            &cat(&[newlink(SEQ, PORT), newlink(SEQ, PORT)]),
            Ok((Datagram::default(), 2)),
        );
        check_datagram(
            &cat(&[newlink(SEQ, PORT), done(0, 0)]),
            Ok((
                Datagram {
                    done: true,
                    interrupted: false,
                },
                1,
            )),
        );
        // Messages after DONE are not looked at.
        check_datagram(
            &cat(&[done(0, 0), newlink(SEQ, PORT)]),
            Ok((
                Datagram {
                    done: true,
                    interrupted: false,
                },
                0,
            )),
        );
        // Another dump's or another socket's messages are skipped.
        check_datagram(
            &cat(&[newlink(SEQ - 1, PORT), newlink(SEQ, 1), done(0, 0)]),
            Ok((
                Datagram {
                    done: true,
                    interrupted: false,
                },
                0,
            )),
        );
        check_datagram(
            &cat(&[message(
                NLMSG_ERROR,
                0,
                SEQ + 1,
                PORT,
                &(-105i32).to_ne_bytes(),
            )]),
            Ok((Datagram::default(), 0)),
        );
        // An interrupted dump says so, on any message.
        check_datagram(
            &cat(&[
                message(RTM_NEWLINK, 2 | NLM_F_DUMP_INTR, SEQ, PORT, &lo),
                done(0, 0),
            ]),
            Ok((
                Datagram {
                    done: true,
                    interrupted: true,
                },
                1,
            )),
        );
        check_datagram(
            &done(NLM_F_DUMP_INTR, 0),
            Ok((
                Datagram {
                    done: true,
                    interrupted: true,
                },
                0,
            )),
        );
        // The kernel's errors.
        check_datagram(
            &message(NLMSG_ERROR, 0, SEQ, PORT, &(-sys::ENOBUFS).to_ne_bytes()),
            Err(Error::Kernel(sys::ENOBUFS)),
        );
        check_datagram(
            &message(NLMSG_ERROR, 0, SEQ, PORT, &0i32.to_ne_bytes()),
            Ok((Datagram::default(), 0)),
        );
        check_datagram(
            &message(NLMSG_ERROR, 0, SEQ, PORT, &[1, 2]),
            Err(Error::Malformed("short NLMSG_ERROR")),
        );
        check_datagram(&done(0, -sys::ENOMEM), Err(Error::Kernel(sys::ENOMEM)));
        check_datagram(
            &message(NLMSG_OVERRUN, 0, SEQ, PORT, &[]),
            Err(Error::Overrun),
        );
        check_datagram(
            &cat(&[
                message(NLMSG_NOOP, 0, SEQ, PORT, &[]),
                message(99, 0, SEQ, PORT, b"x"),
            ]),
            Ok((Datagram::default(), 0)),
        );
        // Broken framing.
        let mut short = newlink(SEQ, PORT);
        short[0] = 8;
        let mut long = newlink(SEQ, PORT);
        long[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        check_datagram(
            &short,
            Err(Error::Malformed("message length out of bounds")),
        );
        check_datagram(&long, Err(Error::Malformed("message length out of bounds")));
        check_datagram(
            &newlink(SEQ, PORT)[..12],
            Err(Error::Malformed("datagram ends inside a message header")),
        );
    }

    #[track_caller]
    fn check_notifications(buf: &[u8], expected: Result<Vec<(bool, u32)>, Error>) {
        let mut seen = Vec::new();
        let r = parse_notifications(buf, |n| match n {
            Notification::New(p) => seen.push((false, u32_at(p, 4).unwrap_or(0))),
            Notification::Deleted(index) => seen.push((true, index)),
        });
        assert_eq!(r.map(|()| seen), expected);
    }

    #[test]
    fn notifications() {
        let newlink = |index, seq, pid| {
            let p = link(
                index,
                1,
                &[attr(IFLA_IFNAME, b"a\0"), attr(IFLA_OPERSTATE, &[6])],
            );
            message(RTM_NEWLINK, 0, seq, pid, &p)
        };
        let dellink = |index| message(RTM_DELLINK, 0, 0, 0, &link(index, 0, &[]));
        check_notifications(b"", Ok(vec![]));
        // Any sequence number and port: those of the `ip` that caused it, or none.
        check_notifications(
            &[newlink(4, 0, 0), newlink(5, 77, 4242), dellink(4)].concat(),
            Ok(vec![(false, 4), (false, 5), (true, 4)]),
        );
        // Other types are no notification of ours.
        check_notifications(
            &[
                done(0, 0),
                message(NLMSG_NOOP, 0, 0, 0, &[]),
                newlink(6, 0, 0),
            ]
            .concat(),
            Ok(vec![(false, 6)]),
        );
        check_notifications(
            &message(RTM_DELLINK, 0, 0, 0, &[0; 6]),
            Err(Error::Malformed("short ifinfomsg")),
        );
        let mut long = newlink(4, 0, 0);
        long[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        check_notifications(&long, Err(Error::Malformed("message length out of bounds")));
        check_notifications(
            &newlink(4, 0, 0)[..10],
            Err(Error::Malformed("datagram ends inside a message header")),
        );
    }

    #[test]
    fn values_as_sysfs_prints_them() {
        let mut out = Vec::new();
        for (bytes, text) in [
            (&[][..], ""),
            (&[0, 0, 0, 0, 0, 0][..], "00:00:00:00:00:00"),
            (&[0x52, 0x54, 0, 0x12, 0xab, 0xCD][..], "52:54:00:12:ab:cd"),
            (&[0xff][..], "ff"),
        ] {
            format_address(bytes, &mut out);
            assert_eq!(out, text.as_bytes());
        }
        assert_eq!(speed_mbps(10_000), Ok(Some(10_000)));
        assert_eq!(speed_mbps(0), Ok(Some(0)));
        assert_eq!(speed_mbps(u32::MAX), Ok(None));
        assert_eq!(speed_mbps(0x8000_0000), Err(()));
        assert_eq!(duplex_name(0), b"half");
        assert_eq!(duplex_name(1), b"full");
        assert_eq!(duplex_name(0xff), b"unknown");
        assert_eq!(oper_state(6), OperState::Up);
        assert_eq!(oper_state(3), OperState::LowerLayerDown);
        assert_eq!(oper_state(7), OperState::Other);
    }

    #[test]
    fn the_request_asks_for_a_dump_without_ipv6_counters() {
        let r = dump_request(0x01020304);
        assert_eq!(u32_at(&r, 0), Some(REQUEST_LEN as u32));
        assert_eq!(u16_at(&r, 4), Some(RTM_GETLINK));
        assert_eq!(u16_at(&r, 6), Some(NLM_F_REQUEST | NLM_F_DUMP));
        assert_eq!(u32_at(&r, 8), Some(0x01020304));
        assert_eq!(
            u16_at(&r, NLMSG_HDRLEN + IFINFOMSG_LEN + 2),
            Some(IFLA_EXT_MASK)
        );
        assert_eq!(u32_at(&r, REQUEST_LEN - 4), Some(RTEXT_FILTER_SKIP_STATS));
    }

    /// A scan of this process's namespace, read by a fresh reader.
    fn real_scan(statistics: bool) -> Result<Scan, io::Error> {
        let mut scan = Scan::default();
        Reader::new()
            .dump(statistics, &mut scan, |_| true)
            .map_err(|e| e.err)?;
        Ok(scan)
    }

    /// A dump of this process's namespace, datagram by datagram, as the kernel sends it.
    fn real_dump() -> Result<Vec<Vec<u8>>, io::Error> {
        let socket = sys::NetlinkSocket::open()?;
        socket.send(&dump_request(SEQ))?;
        let mut datagrams = Vec::new();
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            let got = socket.recv(&mut buf)?;
            assert_eq!(got.truncated, None);
            let d = buf[..got.len].to_vec();
            let end = parse_datagram(&d, SEQ, socket.portid, |_| {})
                .map_err(Error::into_io)?
                .done;
            datagrams.push(d);
            if end {
                return Ok(datagrams);
            }
        }
    }

    #[test]
    fn answers_are_settled_onto_their_interfaces_by_index() {
        // Dense indexes (a table) and a sparse one among them (a search), in any order.
        for sparse in [None, Some(3_000_000_000u64), Some(u64::MAX)] {
            let mut interfaces: Vec<Box<Interface>> = [1u64, 7, 2, 40, 3, 9]
                .iter()
                .copied()
                .chain(sparse)
                .map(|n| {
                    Box::new(Interface {
                        name: format!("i{n}").into_bytes(),
                        ifindex: Some(n),
                        ..Interface::default()
                    })
                })
                .collect();
            interfaces.push(Box::new(Interface::default()));
            let ok = |speed: u32, duplex: u8| Ok(sys::LinkSettings { speed, duplex });
            let mut answers: Answers = vec![
                (40, ok(10_000, 1)),
                (2, ok(u32::MAX, 0xff)),
                (7, Err(io::Error::from_raw_os_error(sys::EOPNOTSUPP))),
                (9, Err(io::Error::from_raw_os_error(5))),
                (3, ok(u32::MAX - 1, 0)),
                (1, ok(100, 0)),
            ];
            if let Some(n) = sparse {
                answers.push((n, ok(25_000, 1)));
            }
            let mut errors = 0;
            settle(&mut interfaces, answers, &mut errors);
            let got: Vec<(Option<u64>, Option<u64>, &[u8])> = interfaces
                .iter()
                .map(|i| (i.ifindex, i.speed_mbps, &i.duplex[..]))
                .collect();
            let mut expected: Vec<(Option<u64>, Option<u64>, &[u8])> = vec![
                (Some(1), Some(100), b"half"),
                (Some(7), None, b""),
                (Some(2), None, b"unknown"),
                (Some(40), Some(10_000), b"full"),
                (Some(3), None, b"half"),
                (Some(9), None, b""),
            ];
            if sparse.is_some() {
                expected.push((sparse, Some(25_000), b"full"));
            }
            expected.push((None, None, b""));
            assert_eq!(got, expected, "{sparse:?}");
            // EIO from ethtool and a speed past i32::MAX are errors; EOPNOTSUPP is no value.
            assert_eq!(errors, 2);
        }
    }

    #[test]
    fn the_helper_answers_as_asking_in_line_does() -> Result<(), io::Error> {
        let scan = real_scan(false)?;
        let queries = || queries(&scan.interfaces);
        assert!(
            !queries().is_empty(),
            "nothing up here (not even lo) to ask about"
        );
        // By ifindex: speed and duplex, or the errno.
        type Seen = Vec<(u64, Result<(u32, u8), Option<i32>>)>;
        let seen = |answers: Answers| -> Seen {
            answers
                .into_iter()
                .map(|(n, a)| {
                    (
                        n,
                        a.map(|s| (s.speed, s.duplex)).map_err(|e| e.raw_os_error()),
                    )
                })
                .collect()
        };
        let ethtool = Arc::new(Mutex::new(sys::Ethtool::open()?));
        let in_line = seen(ask(&ethtool, queries()));
        let helper = Helper::start()?;
        // Two scans' questions queued at once, answered in turn.
        let (first, second) = (
            helper.ask(Arc::clone(&ethtool), queries()),
            helper.ask(Arc::clone(&ethtool), queries()),
        );
        assert_eq!(seen(second.wait()), in_line);
        assert_eq!(seen(first.wait()), in_line);
        // The reader going ends the thread, which then lets go of the socket.
        drop(helper);
        wait_until(|| Arc::strong_count(&ethtool) == 1);
        Ok(())
    }

    /// Polls `done` every millisecond for up to ten seconds.
    #[track_caller]
    fn wait_until(done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "not done in ten seconds"
            );
            thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn a_real_dump_keeps_the_64_bit_counters() -> Result<(), io::Error> {
        let scan = real_scan(true)?;
        let lo = scan
            .interfaces
            .iter()
            .find(|i| i.name == b"lo")
            .ok_or(io::ErrorKind::NotFound)?;
        assert_eq!(lo.address, b"00:00:00:00:00:00");
        assert_eq!(lo.ifindex, Some(1));
        assert_eq!(scan.errors, 0);
        for iface in &scan.interfaces {
            let stats = iface.statistics.as_deref().ok_or(io::ErrorKind::NotFound)?;
            assert!(stats.iter().all(Option::is_some), "{iface:?}");
        }
        Ok(())
    }

    /// The message an interface would come in: the inverse of [`parse_link`].
    fn encode(iface: &Interface) -> Vec<u8> {
        let up = iface.admin_up == Some(true);
        let mut attrs = vec![attr(IFLA_IFNAME, &[&iface.name[..], b"\0"].concat())];
        let state = OperState::ALL
            .iter()
            .position(|s| s.name().as_bytes() == iface.operstate)
            .unwrap_or(7);
        attrs.push(attr(IFLA_OPERSTATE, &[state as u8]));
        if let Some(c) = iface.carrier {
            attrs.push(attr(IFLA_CARRIER, &[u8::from(c)]));
        }
        for (ty, v) in [
            (IFLA_MTU, iface.mtu),
            (IFLA_CARRIER_CHANGES, iface.carrier_changes),
            (IFLA_CARRIER_UP_COUNT, iface.carrier_up),
            (IFLA_CARRIER_DOWN_COUNT, iface.carrier_down),
        ] {
            if let Some(v) = v {
                attrs.push(attr(ty, &(v as u32).to_ne_bytes()));
            }
        }
        if !iface.address.is_empty() {
            let bytes: Vec<u8> = iface
                .address
                .split(|&b| b == b':')
                .map(|h| u8::from_str_radix(std::str::from_utf8(h).unwrap_or(""), 16).unwrap_or(0))
                .collect();
            attrs.push(attr(IFLA_ADDRESS, &bytes));
        }
        if !iface.ifalias.is_empty() {
            attrs.push(attr(IFLA_IFALIAS, &[&iface.ifalias[..], b"\0"].concat()));
        }
        // The counters a kernel sent are a prefix of the struct: as many as are present.
        if let Some(stats) = iface
            .statistics
            .as_deref()
            .filter(|s| s.iter().any(Option::is_some))
        {
            let mut values = [None; STATISTICS_LEN];
            for (v, stat) in stats.iter().zip(&STATISTICS) {
                values[stat.stats64] = *v;
            }
            let bytes: Vec<u8> = values
                .iter()
                .map_while(|v| *v)
                .flat_map(u64::to_ne_bytes)
                .collect();
            attrs.push(attr(IFLA_STATS64, &bytes));
        }
        if let Some(n) = iface.tx_queue_len {
            attrs.push(attr(IFLA_TXQLEN, &(n as u32).to_ne_bytes()));
        }
        if let Some(p) = iface.promiscuous {
            attrs.push(attr(IFLA_PROMISCUITY, &u32::from(p).to_ne_bytes()));
        }
        if !iface.kind.is_empty() {
            let kind = [&iface.kind[..], b"\0"].concat();
            attrs.push(linkinfo(&[attr(IFLA_INFO_KIND, &kind)]));
        }
        let index = iface.ifindex.unwrap_or(0) as u32;
        let mut p = link(index, u32::from(up), &attrs);
        p[2..4].copy_from_slice(&iface.link_type.unwrap_or(0).to_ne_bytes());
        p
    }

    fn mutate(rng: &mut Rng, d: &mut Vec<u8>) {
        for _ in 0..1 + rng.below(3) {
            if d.is_empty() {
                return;
            }
            let at = rng.below(d.len());
            match rng.below(8) {
                0 => d[at] ^= 1 << rng.below(8),
                1 => d[at] = rng.next() as u8,
                2 => d.truncate(at),
                3 => d.insert(at, rng.next() as u8),
                4 => {
                    d.remove(at);
                }
                // Lengths are where a parser breaks: put a small or huge one somewhere.
                5 => {
                    let v = *rng.pick(&[0u16, 1, 3, 4, 5, 15, 16, 17, 0xffff]);
                    let end = (at + 2).min(d.len());
                    let bytes = v.to_ne_bytes();
                    d[at..end].copy_from_slice(&bytes[..end - at]);
                }
                6 => {
                    let v = *rng.pick(&[NLMSG_DONE, NLMSG_ERROR, NLMSG_OVERRUN, RTM_NEWLINK]);
                    let end = (at + 2).min(d.len());
                    d[at..end].copy_from_slice(&v.to_ne_bytes()[..end - at]);
                }
                _ => {
                    let from = rng.below(d.len());
                    let len = rng.below(64).min(d.len() - from);
                    let piece = d[from..from + len].to_vec();
                    d.splice(at..at, piece);
                }
            }
        }
    }

    #[test]
    fn fuzz_mutated_dumps() -> Result<(), io::Error> {
        let real = real_dump()?;
        let real: Vec<Vec<u8>> = real
            .into_iter()
            .map(|d| {
                // Re-address the real datagrams to the test's sequence and port.
                let mut out = Vec::new();
                let mut rest = &d[..];
                while rest.len() >= NLMSG_HDRLEN {
                    let len =
                        (u32_at(rest, 0).unwrap_or(0) as usize).clamp(NLMSG_HDRLEN, rest.len());
                    let mut m = rest[..len].to_vec();
                    m[8..12].copy_from_slice(&SEQ.to_ne_bytes());
                    m[12..16].copy_from_slice(&PORT.to_ne_bytes());
                    m.resize(align4(m.len()), 0);
                    out.extend_from_slice(&m);
                    rest = &rest[align4(len).min(rest.len())..];
                }
                out
            })
            .collect();
        let mut corpus = real;
        corpus.push(
            [
                message(RTM_NEWLINK, 2, SEQ, PORT, &encode(&up_veth())),
                done(0, 0),
            ]
            .concat(),
        );
        let mut rng = Rng(0x4e7c_5eed_0000_0001);
        let (mut accepted, mut refused) = (0u32, 0u32);
        for _ in 0..30_000 {
            let mut d = rng.pick(&corpus).clone();
            mutate(&mut rng, &mut d);
            let statistics = rng.below(2) == 0;
            let mut links = Vec::new();
            let result = parse_datagram(&d, SEQ, PORT, |p| links.push(p.to_vec()));
            if result.is_err() {
                refused += 1;
            }
            for p in links {
                let (r, iface, _) = parsed(&p, statistics);
                if r != Ok(true) {
                    continue;
                }
                accepted += 1;
                let (again, back, _) = parsed(&encode(&iface), statistics);
                assert_eq!(again, Ok(true), "{iface:?}");
                assert_eq!(back, iface);
            }
        }
        // The mutations reach both outcomes, or the fuzzer tests nothing.
        assert!(
            accepted > 1000 && refused > 1000,
            "{accepted} accepted, {refused} refused"
        );
        Ok(())
    }
}
