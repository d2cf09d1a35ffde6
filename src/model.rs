//! The plain model both sources fill and every renderer reads: [`Interface`], [`OperState`],
//! the [`Scan`] of one request, and the filter [`Options`]; plus the two tables both sources
//! and the renderers share, so that they cannot drift apart: the kernel's interface counters
//! ([`STATISTICS`]) and the names of link types ([`link_type_name`]).
//!
//! Invariant: imports nothing of ours but [`Glob`]; knows no source, no renderer and no IO.

use std::ffi::CStr;
use std::fmt;
use std::io;

use crate::glob::Glob;

/// RFC 2863 operational states, as the kernel spells them in `operstate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperState {
    Unknown,
    NotPresent,
    Down,
    LowerLayerDown,
    Testing,
    Dormant,
    Up,
    /// A value the kernel does not write; kept so the seed's "any other state = 2" holds.
    Other,
}

impl OperState {
    pub const ALL: [OperState; 7] = [
        OperState::Unknown,
        OperState::NotPresent,
        OperState::Down,
        OperState::LowerLayerDown,
        OperState::Testing,
        OperState::Dormant,
        OperState::Up,
    ];

    pub fn parse(s: &[u8]) -> OperState {
        match s {
            b"unknown" => OperState::Unknown,
            b"notpresent" => OperState::NotPresent,
            b"down" => OperState::Down,
            b"lowerlayerdown" => OperState::LowerLayerDown,
            b"testing" => OperState::Testing,
            b"dormant" => OperState::Dormant,
            b"up" => OperState::Up,
            _ => OperState::Other,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OperState::Unknown => "unknown",
            OperState::NotPresent => "notpresent",
            OperState::Down => "down",
            OperState::LowerLayerDown => "lowerlayerdown",
            OperState::Testing => "testing",
            OperState::Dormant => "dormant",
            OperState::Up => "up",
            OperState::Other => "other",
        }
    }

    /// The seed exporter's encoding: down = 0, up = 1, anything else = 2.
    pub fn seed_value(self) -> u8 {
        match self {
            OperState::Down => 0,
            OperState::Up => 1,
            _ => 2,
        }
    }
}

/// One interface as read in one scan. `None` and empty strings mean "no value".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    /// The directory name, which need not be UTF-8.
    pub name: Vec<u8>,
    /// `operstate` as read, trimmed.
    pub operstate: Vec<u8>,
    /// The kernel's interface index; read to tell which namespace a source describes.
    pub ifindex: Option<u64>,
    pub admin_up: Option<bool>,
    pub carrier: Option<bool>,
    pub carrier_changes: Option<u64>,
    pub carrier_up: Option<u64>,
    pub carrier_down: Option<u64>,
    pub mtu: Option<u64>,
    /// Link speed in Mb/s; `None` when the driver reports none or -1.
    pub speed_mbps: Option<u64>,
    pub address: Vec<u8>,
    pub duplex: Vec<u8>,
    pub ifalias: Vec<u8>,
    /// The link layer type, an `ARPHRD_*` number: sysfs `type`, netlink `ifi_type`.
    pub link_type: Option<u16>,
    /// What created the interface (`veth`, `bridge`, `vxlan`, ...): netlink
    /// `IFLA_INFO_KIND`; sysfs only where `uevent`'s `DEVTYPE` tells it, else empty. The one
    /// value the two sources may disagree on.
    pub kind: Vec<u8>,
    /// The name of the bond or bridge the interface is enslaved to; empty if none.
    pub master: Vec<u8>,
    /// Whether the interface receives promiscuously, as IF-MIB's ifPromiscuousMode means it:
    /// for any reason (a user, a bridge, a packet capture), not only because a user asked.
    pub promiscuous: Option<bool>,
    /// The transmit queue length in packets: sysfs `tx_queue_len`, netlink `IFLA_TXQLEN`.
    pub tx_queue_len: Option<u64>,
    /// Present only with `--collector.statistics`, in the order of [`STATISTICS`].
    /// Boxed: 25 counters are 400 bytes, which every interface would carry (and every sort and
    /// move would copy) even without the flag.
    pub statistics: Option<Box<Counters>>,
    /// When the oper state, admin state or carrier last changed, in milliseconds since the
    /// Unix epoch (IF-MIB's ifLastChange); the exporter's start time when no change has been
    /// seen since it started, and the time it appeared for an interface that came later.
    pub last_change_ms: Option<u64>,
}

impl Interface {
    /// Empty counters to fill, reusing the box an earlier scan left.
    pub fn clear_statistics(&mut self) -> &mut Counters {
        let stats = self
            .statistics
            .get_or_insert_with(|| Box::new([None; STATISTICS_LEN]));
        stats.fill(None);
        stats
    }

    pub fn oper(&self) -> OperState {
        OperState::parse(&self.operstate)
    }
}

/// One counter of the kernel's `struct rtnl_link_stats64`, as both sources read it and the
/// renderer names it.
#[derive(Debug)]
pub struct Statistic {
    /// The sysfs file, relative to the interface directory; `None` where sysfs has none.
    pub file: Option<&'static CStr>,
    /// The family's sample name.
    pub metric: &'static str,
    pub help: &'static str,
    /// The field's position in `struct rtnl_link_stats64` (linux/if_link.h), counted in u64s.
    pub stats64: usize,
}

/// How many counters [`STATISTICS`] holds.
pub const STATISTICS_LEN: usize = 25;

/// The counters of one interface, in the order of [`STATISTICS`].
pub type Counters = [Option<u64>; STATISTICS_LEN];

/// Every field of `struct rtnl_link_stats64`, read with `--collector.statistics`: from
/// `statistics/<field>` with sysfs, from `IFLA_STATS64` with netlink. The first eight keep the
/// order they were written in before the other seventeen came; `rx_otherhost_dropped` (Linux
/// 5.19) has no sysfs file, so it has samples only from netlink.
pub const STATISTICS: [Statistic; STATISTICS_LEN] = [
    stat(c"statistics/rx_bytes", 2, "interface_receive_bytes_total", "Bytes received (statistics/rx_bytes)."),
    stat(c"statistics/rx_packets", 0, "interface_receive_packets_total", "Packets received (statistics/rx_packets)."),
    stat(c"statistics/rx_errors", 4, "interface_receive_errors_total", "Receive errors (statistics/rx_errors)."),
    stat(c"statistics/rx_dropped", 6, "interface_receive_dropped_total", "Received packets dropped (statistics/rx_dropped)."),
    stat(c"statistics/tx_bytes", 3, "interface_transmit_bytes_total", "Bytes transmitted (statistics/tx_bytes)."),
    stat(c"statistics/tx_packets", 1, "interface_transmit_packets_total", "Packets transmitted (statistics/tx_packets)."),
    stat(c"statistics/tx_errors", 5, "interface_transmit_errors_total", "Transmit errors (statistics/tx_errors)."),
    stat(c"statistics/tx_dropped", 7, "interface_transmit_dropped_total", "Transmitted packets dropped (statistics/tx_dropped)."),
    stat(c"statistics/multicast", 8, "interface_receive_multicast_total", "Multicast packets received (statistics/multicast)."),
    stat(c"statistics/collisions", 9, "interface_transmit_collisions_total", "Collisions while transmitting (statistics/collisions)."),
    stat(c"statistics/rx_length_errors", 10, "interface_receive_length_errors_total", "Received frames with a wrong length (statistics/rx_length_errors)."),
    stat(c"statistics/rx_over_errors", 11, "interface_receive_over_errors_total", "Receive ring buffer overflows (statistics/rx_over_errors)."),
    stat(c"statistics/rx_crc_errors", 12, "interface_receive_crc_errors_total", "Received frames with a bad CRC (statistics/rx_crc_errors)."),
    stat(c"statistics/rx_frame_errors", 13, "interface_receive_frame_errors_total", "Received frames misaligned (statistics/rx_frame_errors)."),
    stat(c"statistics/rx_fifo_errors", 14, "interface_receive_fifo_errors_total", "Receive FIFO errors (statistics/rx_fifo_errors)."),
    stat(c"statistics/rx_missed_errors", 15, "interface_receive_missed_errors_total", "Packets the device missed for lack of buffers (statistics/rx_missed_errors)."),
    stat(c"statistics/tx_aborted_errors", 16, "interface_transmit_aborted_errors_total", "Transmissions aborted (statistics/tx_aborted_errors)."),
    stat(c"statistics/tx_carrier_errors", 17, "interface_transmit_carrier_errors_total", "Transmissions that lost the carrier (statistics/tx_carrier_errors)."),
    stat(c"statistics/tx_fifo_errors", 18, "interface_transmit_fifo_errors_total", "Transmit FIFO errors (statistics/tx_fifo_errors)."),
    stat(c"statistics/tx_heartbeat_errors", 19, "interface_transmit_heartbeat_errors_total", "Transmit heartbeat (SQE test) errors (statistics/tx_heartbeat_errors)."),
    stat(c"statistics/tx_window_errors", 20, "interface_transmit_window_errors_total", "Late collisions while transmitting (statistics/tx_window_errors)."),
    stat(c"statistics/rx_compressed", 21, "interface_receive_compressed_total", "Compressed packets received (statistics/rx_compressed)."),
    stat(c"statistics/tx_compressed", 22, "interface_transmit_compressed_total", "Compressed packets transmitted (statistics/tx_compressed)."),
    stat(c"statistics/rx_nohandler", 23, "interface_receive_nohandler_total", "Received packets no protocol took, dropped (statistics/rx_nohandler)."),
    Statistic {
        file: None,
        stats64: 24,
        metric: "interface_receive_otherhost_dropped_total",
        help: "Received packets for another host, dropped (IFLA_STATS64 rx_otherhost_dropped; netlink only, sysfs has no file for it).",
    },
];

const fn stat(
    file: &'static CStr,
    stats64: usize,
    metric: &'static str,
    help: &'static str,
) -> Statistic {
    Statistic {
        file: Some(file),
        metric,
        help,
        stats64,
    }
}

/// Link layer types (`ARPHRD_*` in linux/if_arp.h) as iproute2 names them in `ip link`
/// (`link/ether`, `link/none`), so the label reads as an operator knows it. Sorted by number.
const LINK_TYPES: &[(u16, &str)] = &[
    (0, "netrom"),
    (1, "ether"),
    (2, "eether"),
    (3, "ax25"),
    (4, "pronet"),
    (5, "chaos"),
    (6, "ieee802"),
    (7, "arcnet"),
    (8, "atalk"),
    (15, "dlci"),
    (19, "atm"),
    (23, "metricom"),
    (24, "ieee1394"),
    (32, "infiniband"),
    (256, "slip"),
    (257, "cslip"),
    (258, "slip6"),
    (259, "cslip6"),
    (260, "rsrvd"),
    (264, "adapt"),
    (270, "rose"),
    (271, "x25"),
    (272, "hwx25"),
    (280, "can"),
    (512, "ppp"),
    (513, "hdlc"),
    (516, "lapb"),
    (517, "ddcmp"),
    (518, "rawhdlc"),
    (768, "ipip"),
    (769, "tunnel6"),
    (770, "frad"),
    (771, "skip"),
    (772, "loopback"),
    (773, "ltalk"),
    (774, "fddi"),
    (775, "bif"),
    (776, "sit"),
    (777, "ip/ddp"),
    (778, "gre"),
    (779, "pimreg"),
    (780, "hippi"),
    (781, "ash"),
    (782, "econet"),
    (783, "irda"),
    (784, "fcpp"),
    (785, "fcal"),
    (786, "fcpl"),
    (787, "fcfb0"),
    (788, "fcfb1"),
    (789, "fcfb2"),
    (790, "fcfb3"),
    (791, "fcfb4"),
    (792, "fcfb5"),
    (793, "fcfb6"),
    (794, "fcfb7"),
    (795, "fcfb8"),
    (796, "fcfb9"),
    (797, "fcfb10"),
    (798, "fcfb11"),
    (799, "fcfb12"),
    (800, "tr"),
    (801, "ieee802.11"),
    (802, "ieee802.11/prism"),
    (803, "ieee802.11/radiotap"),
    (804, "ieee802.15.4"),
    (805, "ieee802.15.4/monitor"),
    (820, "phonet"),
    (821, "phonet_pipe"),
    (822, "caif"),
    (823, "gre6"),
    (824, "netlink"),
    (825, "6lowpan"),
    (0xfffe, "none"),
    (0xffff, "void"),
];

/// The iproute2 name of an `ARPHRD_*` number; `None` where it has none (the number is shown).
pub fn link_type_name(n: u16) -> Option<&'static str> {
    // Nearly every interface is Ethernet: answered before the search.
    if n == 1 {
        return Some("ether");
    }
    LINK_TYPES
        .binary_search_by_key(&n, |&(k, _)| k)
        .ok()
        .map(|i| LINK_TYPES[i].1)
}

#[derive(Clone, Debug, Default)]
pub struct Options {
    pub statistics: bool,
    pub include: Vec<Glob>,
    pub exclude: Vec<Glob>,
}

impl Options {
    /// Exclude wins; with includes given, only matching names pass.
    pub fn wants(&self, name: &[u8]) -> bool {
        !self.exclude.iter().any(|g| g.matches(name))
            && (self.include.is_empty() || self.include.iter().any(|g| g.matches(name)))
    }
}

/// What one scan found. Kept between scans only to reuse its allocations.
// The boxes are deliberate: see `interfaces`.
#[allow(clippy::vec_box)]
#[derive(Debug, Default)]
pub struct Scan {
    /// Sorted by name. Boxed, because an `Interface` is several hundred bytes that a scan
    /// would otherwise move about six times each (from the spares, into the list, through
    /// filtering and sorting): with a thousand interfaces that was a tenth of a scrape.
    pub interfaces: Vec<Box<Interface>>,
    /// Reads that failed for a reason other than the expected ones.
    pub errors: u64,
    /// Interfaces of earlier scans, kept for their allocations.
    spare: Vec<Box<Interface>>,
    /// What the source left running to complete this scan; see [`Scan::settle`].
    pending: Option<Pending>,
    /// Room that sorting and rendering a scan use, kept like the spares: at a thousand
    /// interfaces these were five short-lived allocations of 4 to 16 KiB per scrape, each
    /// mapped, faulted in and unmapped again by musl's allocator.
    pub scratch: Scratch,
}

/// See [`Scan::scratch`]. Each user clears what it takes.
#[derive(Debug, Default)]
pub struct Scratch {
    /// [`Scan::sort_by_name`]'s name heads and positions, and the permutation it last found.
    order: Vec<(u64, usize)>,
    last_order: Vec<usize>,
    /// The rendered label of each interface, one after another, and where each is.
    pub labels: Vec<u8>,
    pub label_ranges: Vec<(usize, usize)>,
}

/// Work a source left running when its scan returned, which fills in the last facts (the
/// netlink source's speeds and duplexes, asked of ethtool on a thread of their own while the
/// first families are rendered).
pub struct Pending(Box<dyn FnOnce(&mut Scan) + Send>);

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pending")
    }
}

/// Why a scan could not see every interface. Its answer would be partial, and a partial answer
/// served with 200 makes Prometheus record stale series as fresh, so a scan that fails this way
/// is answered with 503 instead. "The kernel has no value for this attribute" is not one of
/// these: it only leaves a sample out.
#[derive(Debug)]
pub struct ScanError {
    /// What the scan was doing, e.g. "cannot list interfaces".
    pub what: &'static str,
    /// The path, interface or socket it was doing it to.
    pub subject: String,
    pub err: io::Error,
}

impl fmt::Display for ScanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.what, self.subject, self.err)
    }
}

impl Scan {
    /// Starts a scan: the last one's interfaces become spares and the error count restarts.
    pub fn begin(&mut self) {
        self.spare.append(&mut self.interfaces);
        self.errors = 0;
        // Work left for a scan that was never settled goes on alone, its results unused.
        self.pending = None;
    }

    /// Leaves `work` to complete the scan: [`Scan::settle`] runs it.
    pub fn defer(&mut self, work: impl FnOnce(&mut Scan) + Send + 'static) {
        self.pending = Some(Pending(Box::new(work)));
    }

    /// Completes the scan with what its source left running, waiting for it. Speed, duplex
    /// and the error count are whole only after this; everything else is whole before.
    pub fn settle(&mut self) {
        if let Some(Pending(work)) = self.pending.take() {
            work(self);
        }
    }

    /// Whether nothing is left for [`Scan::settle`] to complete.
    pub fn is_settled(&self) -> bool {
        self.pending.is_none()
    }

    /// An interface to fill, reusing a spare's allocations when there is one.
    pub fn take_spare(&mut self) -> Box<Interface> {
        self.spare.pop().unwrap_or_default()
    }

    /// Keeps the interfaces whose name `keep` accepts, in place: the vector of a thousand
    /// interfaces is not rebuilt (and regrown) on every scan. The others become spares.
    pub fn keep_only(&mut self, keep: impl Fn(&[u8]) -> bool) {
        let mut kept = 0;
        for at in 0..self.interfaces.len() {
            if keep(&self.interfaces[at].name) {
                self.interfaces.swap(kept, at);
                kept += 1;
            }
        }
        while self.interfaces.len() > kept {
            if let Some(iface) = self.interfaces.pop() {
                self.spare.push(iface);
            }
        }
    }

    /// Sorts the interfaces by name, bytewise.
    pub fn sort_by_name(&mut self) {
        // Sorting the boxes themselves chased two pointers per side of each of the ten
        // thousand comparisons a thousand interfaces take, a tenth of a millisecond of cache
        // misses. Their names' first eight bytes, as one number, are sorted with their
        // positions instead (most names differ there; the others are compared whole), and the
        // boxes then moved once, along the permutation's cycles.
        let ifaces = &mut self.interfaces;
        let (order, last) = (&mut self.scratch.order, &mut self.scratch.last_order);
        order.clear();
        order.extend(
            ifaces
                .iter()
                .enumerate()
                .map(|(at, iface)| (name_head(&iface.name), at)),
        );
        // A host's interfaces rarely change from one scan to the next, nor the order a source
        // reads them in: where the last scan's permutation puts this one in strictly rising
        // order too (one pass to check), it is taken, and the sort saved.
        let before = |a: usize, b: usize| {
            order[a].0 < order[b].0 || (order[a].0 == order[b].0 && ifaces[a].name < ifaces[b].name)
        };
        if last.len() == order.len() && last.windows(2).all(|w| before(w[0], w[1])) {
            for (slot, &from) in order.iter_mut().zip(last.iter()) {
                slot.1 = from;
            }
        } else {
            order.sort_unstable_by(|&(a_head, a), &(b_head, b)| {
                a_head
                    .cmp(&b_head)
                    .then_with(|| ifaces[a].name.cmp(&ifaces[b].name))
            });
            last.clear();
            last.extend(order.iter().map(|&(_, at)| at));
        }
        // Position i must end up holding the interface now at order[i].1.
        for start in 0..order.len() {
            let mut at = start;
            loop {
                let from = std::mem::replace(&mut order[at].1, usize::MAX);
                if from == usize::MAX || from == start {
                    break;
                }
                ifaces.swap(at, from);
                at = from;
            }
        }
    }

    /// Gives back an interface that was taken but not kept.
    pub fn give_back(&mut self, iface: Box<Interface>) {
        self.spare.push(iface);
    }

    /// Makes room for `n` interfaces, and for as many spares, in one fallible step: at
    /// thousands of interfaces these two vectors are a scan's largest allocations, and a scan
    /// that cannot have them is better refused than allowed to abort the process.
    pub fn try_reserve(&mut self, n: usize) -> Result<(), std::collections::TryReserveError> {
        self.interfaces
            .try_reserve(n.saturating_sub(self.interfaces.len()))?;
        self.spare.try_reserve(n.saturating_sub(self.spare.len()))
    }
}

/// Appends `src` to `dst`: `extend_from_slice`, but without musl's `memcpy` for a short piece
/// (a name, a state, a kind), which starts a string instruction even for three bytes: that
/// was two fifths of parsing a dump. The room is zeroed (musl's `memset` handles short
/// lengths with plain moves) and written by [`copy`].
pub fn append(dst: &mut Vec<u8>, src: &[u8]) {
    if src.len() > 64 {
        dst.extend_from_slice(src);
        return;
    }
    let at = dst.len();
    dst.resize(at + src.len(), 0);
    copy(&mut dst[at..], src);
}

/// `dst.copy_from_slice(src)`, but a piece of up to 64 bytes goes as two to eight moves of eight
/// bytes (or two of four, or single bytes) that overlap as needed, which the compiler inlines.
#[inline(always)]
pub fn copy(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    match n {
        0 => {}
        1..=3 => {
            dst[0] = src[0];
            dst[n / 2] = src[n / 2];
            dst[n - 1] = src[n - 1];
        }
        4..=7 => {
            let (head, tail) = (word4(src, 0), word4(src, n - 4));
            dst[..4].copy_from_slice(&head);
            dst[n - 4..n].copy_from_slice(&tail);
        }
        8..=16 => {
            let (head, tail) = (word8(src, 0), word8(src, n - 8));
            dst[..8].copy_from_slice(&head);
            dst[n - 8..n].copy_from_slice(&tail);
        }
        17..=32 => {
            let words = [
                word8(src, 0),
                word8(src, 8),
                word8(src, n - 16),
                word8(src, n - 8),
            ];
            dst[..8].copy_from_slice(&words[0]);
            dst[8..16].copy_from_slice(&words[1]);
            dst[n - 16..n - 8].copy_from_slice(&words[2]);
            dst[n - 8..n].copy_from_slice(&words[3]);
        }
        33..=64 => {
            let words = [
                word8(src, 0),
                word8(src, 8),
                word8(src, 16),
                word8(src, 24),
                word8(src, n - 32),
                word8(src, n - 24),
                word8(src, n - 16),
                word8(src, n - 8),
            ];
            for (at, word) in [0, 8, 16, 24].into_iter().zip(&words[..4]) {
                dst[at..at + 8].copy_from_slice(word);
            }
            for (at, word) in [n - 32, n - 24, n - 16, n - 8].into_iter().zip(&words[4..]) {
                dst[at..at + 8].copy_from_slice(word);
            }
        }
        _ => dst.copy_from_slice(src),
    }
}

/// The four bytes of `src` at `at`.
fn word4(src: &[u8], at: usize) -> [u8; 4] {
    u32::from_ne_bytes(src[at..at + 4].try_into().unwrap_or_default()).to_ne_bytes()
}

/// The eight bytes of `src` at `at`.
fn word8(src: &[u8], at: usize) -> [u8; 8] {
    u64::from_ne_bytes(src[at..at + 8].try_into().unwrap_or_default()).to_ne_bytes()
}

/// The first eight bytes of a name as a big-endian number, zeros after a shorter one: names
/// whose numbers differ are ordered as their bytes are (a shorter name that is a prefix of the
/// other comes first, as its zeros are lower), and equal numbers leave it to the whole names.
/// (Computed rather than copied into a word: a copy of a variable length is a call to musl's
/// bytewise `memcpy`.)
fn name_head(name: &[u8]) -> u64 {
    match name.first_chunk::<8>() {
        Some(word) => u64::from_be_bytes(*word),
        None => {
            let word = name.iter().fold(0, |word, &b| word << 8 | u64::from(b));
            // An empty name would shift by 64, which is no number.
            word.checked_shl(8 * (8 - name.len() as u32)).unwrap_or(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::Rng;

    #[test]
    fn oper_states() {
        for state in OperState::ALL {
            assert_eq!(OperState::parse(state.name().as_bytes()), state);
        }
        assert_eq!(OperState::parse(b"UP"), OperState::Other);
        assert_eq!(OperState::parse(b""), OperState::Other);
        assert_eq!(OperState::Up.seed_value(), 1);
        assert_eq!(OperState::Down.seed_value(), 0);
        for other in [
            OperState::Unknown,
            OperState::LowerLayerDown,
            OperState::Dormant,
            OperState::Testing,
            OperState::NotPresent,
            OperState::Other,
        ] {
            assert_eq!(other.seed_value(), 2);
        }
    }

    #[test]
    fn filters() -> Result<(), crate::glob::GlobError> {
        let opts = Options {
            statistics: false,
            include: vec![Glob::new("e*")?, Glob::new("br?")?],
            exclude: vec![Glob::new("eth9")?],
        };
        assert!(opts.wants(b"eth0"));
        assert!(!opts.wants(b"eth9"));
        assert!(opts.wants(b"br0"));
        assert!(!opts.wants(b"lo"));
        let all = Options::default();
        assert!(all.wants(b"lo"));
        Ok(())
    }

    #[track_caller]
    fn check_link_type(n: u16, expected: Option<&str>) {
        assert_eq!(link_type_name(n), expected, "ARPHRD {n}");
    }

    #[test]
    fn link_types() {
        // What the test machine's interfaces are, and the edges of the table.
        for (n, name) in [
            (0, Some("netrom")),
            (1, Some("ether")),
            (772, Some("loopback")),
            (776, Some("sit")),
            (768, Some("ipip")),
            (778, Some("gre")),
            (823, Some("gre6")),
            (801, Some("ieee802.11")),
            (32, Some("infiniband")),
            (512, Some("ppp")),
            (65534, Some("none")),
            (65535, Some("void")),
            // No name in iproute2: the number is shown instead.
            (9, None),
            (27, None),
            (290, None),
            (519, None),
            (826, None),
            (65533, None),
        ] {
            check_link_type(n, name);
        }
        // Binary search needs the table sorted, and a number named twice would hide one.
        assert!(LINK_TYPES.windows(2).all(|w| w[0].0 < w[1].0));
        for &(n, name) in LINK_TYPES {
            check_link_type(n, Some(name));
        }
    }

    #[test]
    fn the_statistics_table_covers_rtnl_link_stats64_once() {
        let mut seen = [false; STATISTICS_LEN];
        for s in &STATISTICS {
            assert!(!seen[s.stats64], "{} twice", s.stats64);
            seen[s.stats64] = true;
            assert!(s.metric.starts_with("interface_") && s.metric.ends_with("_total"));
            assert!(s.help.ends_with('.'), "{}", s.help);
            // The sysfs file is the struct's field name, which the help names too.
            if let Some(file) = s.file {
                let file = file.to_str().unwrap_or("");
                assert!(file.starts_with("statistics/"), "{file}");
                assert!(s.help.contains(file), "{}", s.help);
            }
        }
        let files = STATISTICS.iter().filter(|s| s.file.is_some()).count();
        assert_eq!(files, 24);
        // The order the eight older families were written in, which source.rs relies on.
        assert_eq!(STATISTICS[1].metric, "interface_receive_packets_total");
        assert_eq!(STATISTICS[5].metric, "interface_transmit_packets_total");
    }

    #[test]
    fn fuzz_oper_state_against_the_names() {
        let mut rng = Rng(0x5f5f_5eed_0000_0002);
        for _ in 0..100_000 {
            let mut v = rng.pick(&OperState::ALL).name().as_bytes().to_vec();
            match rng.below(6) {
                0 => v.truncate(rng.below(v.len() + 1)),
                1 => v.push(*rng.pick(b"\n \0x")),
                2 => {
                    let at = rng.below(v.len());
                    v[at] ^= 0x20;
                }
                3 => v = (0..rng.below(16)).map(|_| rng.next() as u8).collect(),
                _ => {}
            }
            let expected = OperState::ALL
                .into_iter()
                .find(|s| s.name().as_bytes() == v)
                .unwrap_or(OperState::Other);
            let state = OperState::parse(&v);
            assert_eq!(state, expected, "{:?}", String::from_utf8_lossy(&v));
            // The seed's contract, from the bytes: down 0, up 1, anything else 2.
            let seed = match &v[..] {
                b"down" => 0,
                b"up" => 1,
                _ => 2,
            };
            assert_eq!(
                state.seed_value(),
                seed,
                "{:?}",
                String::from_utf8_lossy(&v)
            );
        }
    }

    #[test]
    fn short_copies_are_copies() {
        let src: Vec<u8> = (0..=200u8).collect();
        for n in 0..=src.len() {
            for before in [&b""[..], b"x", b"abcdefghi"] {
                let mut got = before.to_vec();
                append(&mut got, &src[..n]);
                assert_eq!(
                    got,
                    [before, &src[..n]].concat(),
                    "{n} after {}",
                    before.len()
                );
            }
            let mut dst = vec![0xee; n + 2];
            copy(&mut dst[1..=n], &src[..n]);
            assert_eq!(
                (&dst[1..=n], dst[0], dst[n + 1]),
                (&src[..n], 0xee, 0xee),
                "{n}"
            );
        }
    }

    #[test]
    fn sorting_by_name_keeps_every_interface() {
        let mut rng = Rng(0x5f5f_5eed_0000_0003);
        for len in (0..40).chain([1000]) {
            let mut scan = Scan::default();
            for n in 0..len {
                scan.interfaces.push(Box::new(Interface {
                    // Duplicates and prefixes too, shorter and longer than the eight bytes
                    // compared first, with the lowest and highest bytes: a sort must keep
                    // every interface and order them bytewise.
                    name: (0..rng.below(12))
                        .map(|_| [0, b'a', 0xff][rng.below(3)])
                        .collect(),
                    mtu: Some(n as u64),
                    ..Interface::default()
                }));
            }
            let mut expected = scan.interfaces.clone();
            expected.sort_by(|a, b| a.name.cmp(&b.name));
            scan.sort_by_name();
            let names = |v: &[Box<Interface>]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
            assert_eq!(names(&scan.interfaces), names(&expected), "{len}");
            let mut mtus: Vec<_> = scan.interfaces.iter().map(|i| i.mtu).collect();
            mtus.sort();
            assert_eq!(mtus, (0..len).map(|n| Some(n as u64)).collect::<Vec<_>>());
        }
    }

    #[test]
    fn a_scan_sorted_by_the_last_ones_order_is_sorted() {
        // One scan reused as a server reuses it: the same names read in the same order (the
        // last permutation is taken), and each time sometimes two swapped, one renamed, one
        // more or one fewer (it must not be).
        let mut rng = Rng(0x5f5f_5eed_0000_0004);
        let mut scan = Scan::default();
        let mut read: Vec<Vec<u8>> = (0..300)
            .map(|n| format!("veth{n:x}").into_bytes())
            .collect();
        for round in 0..400 {
            match rng.below(6) {
                0 if read.len() > 1 => {
                    let (a, b) = (rng.below(read.len()), rng.below(read.len()));
                    read.swap(a, b);
                }
                1 if !read.is_empty() => {
                    let at = rng.below(read.len());
                    read[at] = format!("r{round}").into_bytes();
                }
                2 => read.insert(rng.below(read.len() + 1), format!("n{round}").into_bytes()),
                3 if !read.is_empty() => {
                    read.remove(rng.below(read.len()));
                }
                _ => {}
            }
            scan.begin();
            for name in &read {
                let mut iface = scan.take_spare();
                iface.name.clone_from(name);
                scan.interfaces.push(iface);
            }
            scan.sort_by_name();
            let mut expected = read.clone();
            expected.sort();
            let names: Vec<_> = scan.interfaces.iter().map(|i| i.name.clone()).collect();
            assert_eq!(names, expected, "round {round}");
        }
    }
}
