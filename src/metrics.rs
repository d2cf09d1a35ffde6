//! Interfaces to exposition text: the Prometheus text format 0.0.4 and OpenMetrics 1.0.0.
//!
//! Both formats carry the same series; they differ only in family metadata (OpenMetrics names
//! a counter family without `_total`, calls untyped `unknown` and `_info` gauges `info`) and in
//! the closing `# EOF`. Every family is written on every scrape, HELP and TYPE included, even
//! with no samples, so the output's shape does not depend on the host.
//!
//! What is written, and in which order, is the family table ([`FAMILIES`], then
//! [`STATISTIC_FAMILIES`] and [`EXPORTER`]): one entry per family with its name, type, help,
//! unit, getter and status-page column. The renderers walk it; the page takes its columns from
//! it, and a unit test holds the README's metrics table to it.
//!
//! Invariant: output is always valid exposition text: label values are escaped and valid UTF-8,
//! integers are printed from integers, and nothing is cached between scrapes.

use std::time::Duration;

use crate::format::Format;
use crate::model::{self, Interface, OperState, Scan, STATISTICS, STATISTICS_LEN};

/// A family's type. The text format says `untyped`, `gauge` or `counter`; OpenMetrics says
/// `unknown` for untyped and `info` for an `_info` gauge, whose family name loses the suffix,
/// as a counter's loses `_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Untyped,
    Gauge,
    Counter,
    Info,
}

impl Kind {
    /// The type as the text format 0.0.4 writes it, and the README's table names it.
    pub fn text_name(self) -> &'static str {
        match self {
            Kind::Untyped => "untyped",
            Kind::Gauge | Kind::Info => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// How a family's samples are read.
#[derive(Clone, Copy)]
pub enum Value {
    /// One sample per interface, none where the getter has no value.
    Number(fn(&Interface) -> Option<u64>),
    /// One sample per interface: milliseconds since the Unix epoch, written as seconds with
    /// three decimals.
    Millis(fn(&Interface) -> Option<u64>),
    /// One sample per interface and oper state: 1 for the interface's state, 0 for the others.
    States,
    /// One sample per interface, always 1, with the interface's attributes as labels.
    Info,
    /// The counter at this position of [`STATISTICS`], read only with `--collector.statistics`.
    Statistic(usize),
    /// One sample about the exporter itself, not about an interface.
    Exporter(Own),
}

/// The exporter's own families.
#[derive(Clone, Copy)]
pub enum Own {
    BuildInfo,
    StartTime,
    ScrapeDuration,
    ScrapeErrors,
}

impl Value {
    /// The one number an interface has for this family, if it has one number.
    pub fn of(self, iface: &Interface) -> Option<u64> {
        match self {
            Value::Number(get) | Value::Millis(get) => get(iface),
            Value::Statistic(n) => iface.statistics.as_ref().and_then(|s| s[n]),
            Value::States | Value::Info | Value::Exporter(_) => None,
        }
    }
}

/// How the status page shows a family: as a column of its table, in the order of the families.
#[derive(Clone, Copy)]
pub struct Column {
    pub heading: &'static str,
    /// The words for the values 0 and 1; without them the number is shown, right-aligned.
    pub words: Option<[&'static str; 2]>,
    /// What the value is divided by before it is shown: a link speed reads as Mb/s on a page.
    pub divisor: u64,
}

/// Where the README documents a family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Doc {
    /// A row of its table of metrics.
    Metrics,
    /// A row of its table of statistics counters, which the table of metrics sums up in one.
    Counters,
}

/// One metric family: everything the renderers, the status page and the README check need to
/// know of it. A new family is one entry in [`FAMILIES`] (or [`STATISTICS`], or [`EXPORTER`]).
#[derive(Clone, Copy)]
pub struct Family {
    /// The sample name; counters end in `_total` and info metrics in `_info`.
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    /// The unit of the values as the README's table gives it; empty for states, flags and
    /// info metrics. Only the README check reads it: the text format has no place for a unit,
    /// and OpenMetrics' `# UNIT` line would change every scrape's bytes.
    #[cfg_attr(not(test), allow(dead_code))]
    pub unit: &'static str,
    pub value: Value,
    /// The status page's column for it, if it has one.
    pub column: Option<Column>,
    /// Only the README check reads it.
    #[cfg_attr(not(test), allow(dead_code))]
    pub doc: Doc,
    /// Whether it reads speed or duplex, which a scan may still be completing (see
    /// `Scan::settle`) while the families before it are rendered.
    pub link_settings: bool,
}

/// A family without a column on the page, documented in the table of metrics.
const fn family(
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    value: Value,
    help: &'static str,
) -> Family {
    Family {
        name,
        kind,
        help,
        unit,
        value,
        column: None,
        doc: Doc::Metrics,
        link_settings: false,
    }
}

/// A family with a column of numbers on the page.
const fn numbers(heading: &'static str, divisor: u64) -> Option<Column> {
    Some(Column {
        heading,
        words: None,
        divisor,
    })
}

/// A family with a column of words for its 0 and 1 on the page.
const fn words(heading: &'static str, no: &'static str, yes: &'static str) -> Option<Column> {
    Some(Column {
        heading,
        words: Some([no, yes]),
        divisor: 1,
    })
}

/// The per-interface families, in the order they are written. `interface_status` comes first
/// and stays as it is: it is the seed exporter's output, which its users' alerts and
/// dashboards read, and a scrape's first lines are the seed's, byte for byte.
pub const FAMILIES: &[Family] = &[
    family("interface_status", Kind::Untyped, "", Value::Number(|i| Some(u64::from(i.oper().seed_value()))), "down = 0, up = 1, any other states (unknown) = 2"),
    family("interface_oper_state", Kind::Gauge, "", Value::States, "Operational state of the interface (operstate, RFC 2863): 1 for the current state, 0 for the others."),
    Family {
        column: words("Admin", "down", "up"),
        ..family("interface_admin_up", Kind::Gauge, "", Value::Number(|i| i.admin_up.map(u64::from)), "Whether the interface is administratively up (IFF_UP in flags).")
    },
    Family {
        column: words("Carrier", "no", "yes"),
        ..family("interface_carrier", Kind::Gauge, "", Value::Number(|i| i.carrier.map(u64::from)), "Whether the interface has a carrier (carrier); no sample while the interface is not running.")
    },
    Family {
        column: numbers("Carrier changes", 1),
        ..family("interface_carrier_changes_total", Kind::Counter, "changes", Value::Number(|i| i.carrier_changes), "Times the carrier changed state (carrier_changes).")
    },
    family("interface_carrier_up_changes_total", Kind::Counter, "changes", Value::Number(|i| i.carrier_up), "Times the carrier came up (carrier_up_count)."),
    family("interface_carrier_down_changes_total", Kind::Counter, "changes", Value::Number(|i| i.carrier_down), "Times the carrier went down (carrier_down_count)."),
    Family {
        column: numbers("MTU", 1),
        ..family("interface_mtu_bytes", Kind::Gauge, "bytes", Value::Number(|i| i.mtu), "Maximum transmission unit in bytes (mtu).")
    },
    Family {
        column: numbers("Speed (Mb/s)", MBPS),
        link_settings: true,
        ..family("interface_speed_bytes", Kind::Gauge, "bytes per second", Value::Number(|i| i.speed_mbps?.checked_mul(MBPS)), "Link speed in bytes per second (speed); no sample when the driver does not know it.")
    },
    family("interface_promiscuous", Kind::Gauge, "", Value::Number(|i| i.promiscuous.map(u64::from)), "Whether the interface receives promiscuously for any reason, as IF-MIB's ifPromiscuousMode (IFF_PROMISC in sysfs flags; IFLA_PROMISCUITY > 0 with netlink, whose flags show only a user's request)."),
    family("interface_transmit_queue_length", Kind::Gauge, "packets", Value::Number(|i| i.tx_queue_len), "Transmit queue length in packets (tx_queue_len in sysfs, IFLA_TXQLEN with netlink)."),
    LAST_CHANGE,
    Family {
        link_settings: true,
        ..family("interface_info", Kind::Info, "", Value::Info, "Interface attributes as labels; always 1. address, duplex, ifalias, operstate, ifindex and type (the ARPHRD name as iproute2 gives it, else the number) are read alike by both sources; kind is IFLA_INFO_KIND with netlink, and from sysfs only where uevent DEVTYPE names it; master is the bond or bridge the interface is enslaved to.")
    },
];

/// Bytes per second in one Mb/s, the unit sysfs and ethtool give link speeds in.
const MBPS: u64 = 125_000;

/// Named because the status page's "since" column reads it too.
pub const LAST_CHANGE: Family = family("interface_last_change_timestamp_seconds", Kind::Gauge, "seconds", Value::Millis(|i| i.last_change_ms), "Unix time of the last change of oper state, admin state or carrier (IF-MIB ifLastChange); the exporter's start time when none was seen since it started, the time it appeared for an interface that came later.");

/// The counters of `--collector.statistics`, after [`FAMILIES`]: one family for each entry of
/// the model's [`STATISTICS`], which the sources read by the same table.
pub const STATISTIC_FAMILIES: [Family; STATISTICS_LEN] = statistic_families();

const fn statistic_families() -> [Family; STATISTICS_LEN] {
    let mut out = [family("", Kind::Counter, "", Value::Statistic(0), ""); STATISTICS_LEN];
    let mut n = 0;
    while n < STATISTICS_LEN {
        let stat = &STATISTICS[n];
        let unit = if ends_with(stat.metric, "_bytes_total") {
            "bytes"
        } else {
            "packets"
        };
        out[n] = Family {
            doc: Doc::Counters,
            ..family(
                stat.metric,
                Kind::Counter,
                unit,
                Value::Statistic(n),
                stat.help,
            )
        };
        n += 1;
    }
    out
}

/// `str::ends_with`, which is not `const`.
const fn ends_with(s: &str, suffix: &str) -> bool {
    let (s, suffix) = (s.as_bytes(), suffix.as_bytes());
    if s.len() < suffix.len() {
        return false;
    }
    let mut i = 0;
    while i < suffix.len() {
        if s[s.len() - suffix.len() + i] != suffix[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The exporter's own families, written after the interfaces'.
pub const EXPORTER: [Family; 4] = [
    family("interfaces_exporter_build_info", Kind::Info, "", Value::Exporter(Own::BuildInfo), "The exporter's version; always 1."),
    family("interfaces_exporter_start_time_seconds", Kind::Gauge, "seconds", Value::Exporter(Own::StartTime), "Unix time the exporter started: a last change at this time means no change seen since."),
    family("interfaces_exporter_scrape_duration_seconds", Kind::Gauge, "seconds", Value::Exporter(Own::ScrapeDuration), "Time this scrape spent reading sysfs and rendering."),
    family("interfaces_exporter_scrape_errors", Kind::Gauge, "reads", Value::Exporter(Own::ScrapeErrors), "Attribute reads in this scrape that failed for a reason other than the kernel having no value."),
];

/// Every family a scrape can hold, in the order it writes them.
#[cfg(test)]
pub fn all_families() -> impl Iterator<Item = &'static Family> {
    FAMILIES.iter().chain(&STATISTIC_FAMILIES).chain(&EXPORTER)
}

/// Where rendered bytes go: a buffer, a counter that only measures them, or a socket.
pub trait Out {
    fn put(&mut self, bytes: &[u8]);

    /// Appends `padded[..len]`, where `padded` goes on for at least [`PAD`] bytes past
    /// `len`'s usual sizes: a writer may copy a whole [`PAD`] bytes and keep `len`.
    fn put_padded(&mut self, padded: &[u8], len: usize) {
        self.put(&padded[..len]);
    }

    fn byte(&mut self, b: u8) {
        self.put(&[b]);
    }

    /// Leaves room for at most `n` bytes to be written later by [`Out::fill`], and goes on
    /// after it; `None` where this output cannot, and writes must come in order.
    fn hole(&mut self, _n: usize) -> Option<Hole> {
        None
    }

    /// Writes `write`'s bytes into `hole`, and closes the room they left.
    fn fill(&mut self, _hole: Hole, write: impl FnOnce(&mut Self))
    where
        Self: Sized,
    {
        write(self);
    }
}

/// Room left in a [`Writer`]: `at..end`, which writes go on after.
pub struct Hole {
    at: usize,
    end: usize,
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        model::append(self, bytes);
    }
}

/// A body being rendered: bytes written at `len` into a buffer that is already that long and
/// longer, so that a short piece is copied by a few moves of fixed size. A sample is a handful
/// of short pieces, and `extend_from_slice` hands each to musl's `memcpy`, which copies short
/// ones byte by byte: measured, that was two fifths of a 1000-interface scrape's CPU.
pub struct Writer {
    buf: Vec<u8>,
    len: usize,
}

impl Writer {
    /// Writes over `buf` (a previous body's allocation, or a new one), first making it `room`
    /// bytes long; `None` when that allocation is refused. A body that outgrows `room` grows the
    /// ordinary (infallible) way.
    pub fn over(mut buf: Vec<u8>, room: usize) -> Option<Writer> {
        if buf.len() < room {
            buf.try_reserve_exact(room - buf.len()).ok()?;
            buf.resize(room, 0);
        }
        Some(Writer { buf, len: 0 })
    }

    /// The bytes the buffer has room for.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The bytes written.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The buffer, to be written over by the next body.
    pub fn into_buffer(self) -> Vec<u8> {
        self.buf
    }
}

impl From<Vec<u8>> for Writer {
    /// The bytes of `buf`, as if written.
    fn from(buf: Vec<u8>) -> Writer {
        Writer {
            len: buf.len(),
            buf,
        }
    }
}

impl Out for Writer {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if end > self.buf.len() {
            self.buf
                .resize(end.max(self.buf.len().saturating_mul(2)), 0);
        }
        model::copy(&mut self.buf[self.len..end], bytes);
        self.len = end;
    }

    /// One copy of a fixed [`PAD`] bytes, which the compiler makes four moves: a sample's
    /// pieces (its family's name, the interface's label, its number) come from buffers padded
    /// for it, and most are shorter than that.
    #[inline]
    fn put_padded(&mut self, padded: &[u8], len: usize) {
        let (Some(piece), true) = (padded.first_chunk::<PAD>(), len <= PAD) else {
            self.put(&padded[..len]);
            return;
        };
        if self.len + PAD > self.buf.len() {
            let room = (self.len + PAD).max(self.buf.len().saturating_mul(2));
            self.buf.resize(room, 0);
        }
        if let Some(dst) = self.buf[self.len..].first_chunk_mut::<PAD>() {
            *dst = *piece;
        }
        self.len += len;
    }

    fn byte(&mut self, b: u8) {
        if self.len == self.buf.len() {
            self.put(&[b]);
        } else {
            self.buf[self.len] = b;
            self.len += 1;
        }
    }

    fn hole(&mut self, n: usize) -> Option<Hole> {
        // A padded write near the hole's end copies PAD bytes past it: they are the hole's too.
        let end = self.len.checked_add(n)?.checked_add(PAD)?;
        if end + PAD > self.buf.len() {
            self.buf.resize(end + PAD, 0);
        }
        let hole = Hole { at: self.len, end };
        self.len = end;
        Some(hole)
    }

    fn fill(&mut self, hole: Hole, write: impl FnOnce(&mut Self)) {
        let after = self.len;
        self.len = hole.at;
        write(self);
        // The bound the hole was made with holds by construction; were it ever wrong, the
        // bytes after the hole would be overwritten, and the body must not go out.
        assert!(self.len + PAD <= hole.end, "a hole's bound was too small");
        self.buf.copy_within(hole.end..after, self.len);
        self.len += after - hole.end;
    }
}

/// Counts what would be written: the first of two rendering passes, which gives a streamed
/// body its `Content-Length`.
#[derive(Default)]
pub struct Count(pub usize);

impl Out for Count {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
    }
}

/// Renders the per-interface families of one scan, the statistics only when asked for. The
/// scan is settled (`Scan::settle`) just before the first family that needs it.
pub fn render_interfaces(scan: &mut Scan, statistics: bool, format: Format, out: &mut impl Out) {
    // Each interface's label text is escaped once here, not once per sample, and followed by
    // the end of the labels: the arena holds them one after another, `ranges` where each is.
    // (A few bytes per interface, against the body's kilobyte.) Both are the scan's scratch,
    // taken for the loop below, which settles the scan, and given back after it.
    let mut names = std::mem::take(&mut scan.scratch.labels);
    let mut ranges = std::mem::take(&mut scan.scratch.label_ranges);
    names.clear();
    ranges.clear();
    for i in &scan.interfaces {
        let start = names.len();
        push_name(&mut names, &i.name);
        names.extend_from_slice(CLOSE);
        ranges.push((start, names.len()));
    }
    // Every piece is followed by at least PAD bytes for `put_padded`.
    names.extend_from_slice(&[0; PAD]);
    let counters: &[Family] = if statistics { &STATISTIC_FAMILIES } else { &[] };
    let mut head = Vec::new();
    let mut family_out = |out: &mut _, scan: &Scan, family: &Family| {
        header(out, family, format);
        head.clear();
        head.extend_from_slice(family.name.as_bytes());
        head.extend_from_slice(b"{interface=\"");
        let head_len = head.len();
        head.extend_from_slice(&[0; PAD]);
        let labelled = scan
            .interfaces
            .iter()
            .zip(&ranges)
            .map(|(i, &(start, end))| (&**i, Piece(&names[start..], end - start)));
        samples(out, family, Piece(&head, head_len), labelled);
    };
    // A number family that needs the settled scan, while it is not yet, is left a hole sized
    // for its longest samples, and the families after it that do not need it are written
    // meanwhile: the scan settles (ethtool answers) while they are rendered, not before.
    let mut waiting: Option<(Hole, &Family)> = None;
    for family in FAMILIES.iter().chain(counters) {
        if family.link_settings && !scan.is_settled() {
            if let (None, Value::Number(_)) = (&waiting, family.value) {
                let mut most = Count::default();
                header(&mut most, family, format);
                // Each sample: the name, the label, at most 20 digits and a newline.
                let per_sample = family.name.len() + b"{interface=\"".len() + 21;
                let labels = names.len() - PAD;
                let n = most.0 + per_sample * scan.interfaces.len() + labels;
                if let Some(hole) = out.hole(n) {
                    waiting = Some((hole, family));
                    continue;
                }
            }
            scan.settle();
        }
        if family.link_settings {
            if let Some((hole, waiting)) = waiting.take() {
                out.fill(hole, |out| family_out(out, scan, waiting));
            }
        }
        family_out(out, scan, family);
    }
    scan.settle();
    if let Some((hole, waiting)) = waiting {
        out.fill(hole, |out| family_out(out, scan, waiting));
    }
    scan.scratch.labels = names;
    scan.scratch.label_ranges = ranges;
}

/// A piece of a sample: its bytes are the first `.1` of `.0`, which goes on for [`PAD`] more.
#[derive(Clone, Copy)]
struct Piece<'a>(&'a [u8], usize);

impl Piece<'_> {
    // Called for every piece of every sample: in line, the writer's length stays in a register
    // between the pieces of a sample (5% of rendering, for 1.6 KB of binary).
    #[inline(always)]
    fn put(self, out: &mut impl Out) {
        out.put_padded(self.0, self.1);
    }

    /// The piece without its last `n` bytes.
    fn shorter(self, n: usize) -> Self {
        Piece(self.0, self.1 - n)
    }
}

/// What closes the labels of a sample that has no others than `interface`.
const CLOSE: &[u8] = b"\"} ";

/// Writes the samples of `family`; `head` is the family's name and the start of its labels,
/// each interface comes with its label text followed by [`CLOSE`].
fn samples<'a>(
    out: &mut impl Out,
    family: &Family,
    head: Piece<'_>,
    labelled: impl Iterator<Item = (&'a Interface, Piece<'a>)>,
) {
    match family.value {
        Value::Number(_) | Value::Statistic(_) => {
            for (i, label) in labelled {
                if let Some(v) = family.value.of(i) {
                    head.put(out);
                    label.put(out);
                    push_u64_line(out, v);
                }
            }
        }
        Value::Millis(get) => {
            for (i, label) in labelled {
                if let Some(ms) = get(i) {
                    head.put(out);
                    label.put(out);
                    push_millis(out, ms);
                    out.byte(b'\n');
                }
            }
        }
        Value::States => {
            // Each state's label and value, for 0 and for 1: `",state="up"} 1\n`.
            let mut tails = Vec::new();
            let mut ranges = [[(0, 0); 2]; OperState::ALL.len()];
            for (state, ranges) in OperState::ALL.iter().zip(&mut ranges) {
                for (value, range) in [b"0\n", b"1\n"].iter().zip(ranges) {
                    let start = tails.len();
                    tails.extend_from_slice(b"\",state=\"");
                    tails.extend_from_slice(state.name().as_bytes());
                    tails.extend_from_slice(CLOSE);
                    tails.extend_from_slice(*value);
                    *range = (start, tails.len());
                }
            }
            tails.extend_from_slice(&[0; PAD]);
            for (i, label) in labelled {
                let oper = i.oper();
                let name = label.shorter(CLOSE.len());
                for (&state, ranges) in OperState::ALL.iter().zip(&ranges) {
                    let (start, end) = ranges[usize::from(oper == state)];
                    head.put(out);
                    name.put(out);
                    Piece(&tails[start..], end - start).put(out);
                }
            }
        }
        Value::Info => {
            // The labels' names and the sample's end, one after another and padded, so that
            // each goes out as a padded piece.
            const KEYS: [&[u8]; 9] = [
                b"\",address=\"",
                b"\",duplex=\"",
                b"\",ifalias=\"",
                b"\",operstate=\"",
                b"\",ifindex=\"",
                b"\",type=\"",
                b"\",kind=\"",
                b"\",master=\"",
                b"\"} 1\n",
            ];
            let mut keys = Vec::new();
            let mut at = [(0, 0); KEYS.len()];
            for (key, at) in KEYS.iter().zip(&mut at) {
                let start = keys.len();
                keys.extend_from_slice(key);
                *at = (start, keys.len());
            }
            keys.extend_from_slice(&[0; PAD]);
            let key = |n: usize| Piece(&keys[at[n].0..], at[n].1 - at[n].0);
            for (i, label) in labelled {
                let (mut index, mut number) = ([0; 20], [0; 20]);
                let link_type = match i.link_type {
                    Some(n) => model::link_type_name(n)
                        .map_or_else(|| decimal(u64::from(n), &mut number), str::as_bytes),
                    None => &[],
                };
                let values: [&[u8]; 8] = [
                    &i.address,
                    &i.duplex,
                    &i.ifalias,
                    &i.operstate,
                    i.ifindex.map_or(&[], |n| decimal(n, &mut index)),
                    link_type,
                    &i.kind,
                    &i.master,
                ];
                head.put(out);
                label.shorter(CLOSE.len()).put(out);
                for (n, v) in values.into_iter().enumerate() {
                    key(n).put(out);
                    push_escaped(out, v);
                }
                key(values.len()).put(out);
            }
        }
        Value::Exporter(_) => {}
    }
}

/// Renders the exporter's own families and, for OpenMetrics, the closing line.
pub fn render_self(
    errors: u64,
    elapsed: Duration,
    start_ms: u64,
    format: Format,
    out: &mut impl Out,
) {
    for family in &EXPORTER {
        header(out, family, format);
        out.put(family.name.as_bytes());
        let Value::Exporter(own) = family.value else {
            continue;
        };
        match own {
            Own::BuildInfo => {
                out.put(concat!("{version=\"", env!("CARGO_PKG_VERSION"), "\"} 1").as_bytes());
            }
            Own::StartTime => {
                out.byte(b' ');
                push_millis(out, start_ms);
            }
            Own::ScrapeDuration => {
                out.byte(b' ');
                push_seconds(out, elapsed);
            }
            Own::ScrapeErrors => {
                out.byte(b' ');
                push_u64(out, errors);
            }
        }
        out.byte(b'\n');
    }
    if format == Format::OpenMetrics {
        out.put(b"# EOF\n");
    }
}

/// Appends milliseconds as decimal seconds with three digits after the point, without
/// floating point (which loses milliseconds of a Unix time only past 2^53 ms, but would cost
/// float formatting in the binary).
fn push_millis(out: &mut impl Out, ms: u64) {
    push_u64(out, ms / 1000);
    let rest = ms % 1000;
    out.put(&[
        b'.',
        b'0' + (rest / 100) as u8,
        b'0' + (rest / 10 % 10) as u8,
        b'0' + (rest % 10) as u8,
    ]);
}

/// Appends a duration as decimal seconds with nanosecond digits, without floating point.
fn push_seconds(out: &mut impl Out, d: Duration) {
    push_u64(out, d.as_secs());
    out.byte(b'.');
    let nanos = d.subsec_nanos();
    let mut digits = [b'0'; 9];
    let mut n = nanos;
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.put(&digits);
}

fn header(out: &mut impl Out, family: &Family, format: Format) {
    let (name, kind) = match format {
        Format::Text => (family.name, family.kind.text_name()),
        Format::OpenMetrics => match family.kind {
            Kind::Untyped => (family.name, "unknown"),
            Kind::Gauge => (family.name, "gauge"),
            Kind::Counter => (
                family.name.strip_suffix("_total").unwrap_or(family.name),
                "counter",
            ),
            Kind::Info => (
                family.name.strip_suffix("_info").unwrap_or(family.name),
                "info",
            ),
        },
    };
    for (what, text) in [("HELP", family.help), ("TYPE", kind)] {
        out.put(b"# ");
        out.put(what.as_bytes());
        out.byte(b' ');
        out.put(name.as_bytes());
        out.byte(b' ');
        out.put(text.as_bytes());
        out.byte(b'\n');
    }
}

/// Turns an interface name, which is bytes, into text, handing `piece` one valid UTF-8 slice
/// after another. Two different names always give two different texts, so two interfaces never
/// share a series:
///
/// - a name that is valid UTF-8 is used as it is;
/// - otherwise its valid UTF-8 runs are copied, and each byte that is not part of valid UTF-8
///   becomes `/xNN` (two lowercase hex digits).
///
/// Why this is injective: a directory entry never holds `/` (nor NUL), so a text with a `/`
/// comes from a name that is not UTF-8, and a text without one is the name itself. Within an
/// escaped text every `/` starts an escape, because the copied runs hold none, so reading it
/// from left to right gives back each byte. `\xNN` would not do: `\` and `x` are legal in
/// names, and `a\xff` is valid UTF-8 that would meet the escaped `a` + 0xFF.
pub fn name_text(name: &[u8], mut piece: impl FnMut(&[u8])) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for chunk in name.utf8_chunks() {
        piece(chunk.valid().as_bytes());
        for &b in chunk.invalid() {
            piece(&[
                b'/',
                b'x',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ]);
        }
    }
}

/// Appends an interface name as its label value: [`name_text`], escaped.
pub fn push_name(out: &mut impl Out, name: &[u8]) {
    if is_plain(name) {
        out.put(name);
    } else {
        name_text(name, |piece| push_escaped(out, piece));
    }
}

/// Whether `value` is a label value as it stands: ASCII with nothing to escape, as nearly every
/// name and attribute is. Checking costs less than walking UTF-8 chunks for every sample.
fn is_plain(value: &[u8]) -> bool {
    // Eight bytes at a time: none with its high bit set (not ASCII), and none equal to a byte
    // to escape, found as a zero byte of the word XORed with that byte repeated.
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let holds = |w: u64, b: u8| {
        let x = w ^ (ONES * u64::from(b));
        x.wrapping_sub(ONES) & !x & HIGH != 0
    };
    let mut words = value.chunks_exact(8);
    for word in &mut words {
        let w = u64::from_le_bytes(word.try_into().unwrap_or([0x80; 8]));
        if w & HIGH != 0 || holds(w, b'\\') || holds(w, b'"') || holds(w, b'\n') {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| b.is_ascii() && !matches!(b, b'\\' | b'"' | b'\n'))
}

/// Appends a label value escaped as both formats require (`\\`, `\"`, `\n`), with bytes that
/// are not UTF-8 replaced by U+FFFD.
pub fn push_escaped(out: &mut impl Out, value: &[u8]) {
    if is_plain(value) {
        out.put(value);
        return;
    }
    for chunk in value.utf8_chunks() {
        // Runs without a byte to escape go out whole: a value rarely holds one, and a put per
        // byte made escaping most of a scrape's rendering time.
        let mut rest = chunk.valid().as_bytes();
        while let Some(at) = rest.iter().position(|&b| matches!(b, b'\\' | b'"' | b'\n')) {
            out.put(&rest[..at]);
            out.put(match rest[at] {
                b'\\' => b"\\\\",
                b'"' => b"\\\"",
                _ => b"\\n",
            });
            rest = &rest[at + 1..];
        }
        out.put(rest);
        if !chunk.invalid().is_empty() {
            out.put("\u{fffd}".as_bytes());
        }
    }
}

/// Appends the decimal digits of `v` without going through `fmt`.
pub fn push_u64(out: &mut impl Out, v: u64) {
    let mut digits = [0u8; 20];
    out.put(decimal(v, &mut digits));
}

/// Appends the decimal digits of `v` and a newline, in one piece: a sample's end.
fn push_u64_line(out: &mut impl Out, v: u64) {
    let mut line = [b'\n'; 21 + PAD];
    let start = digits_before(v, &mut line, 20);
    out.put_padded(&line[start..], 21 - start);
}

/// Bytes a padded piece goes on for (see [`Out::put_padded`]).
pub const PAD: usize = 64;

/// The decimal digits of `v`, written at the end of `digits` (20 hold `u64::MAX`).
fn decimal(v: u64, digits: &mut [u8; 20]) -> &[u8] {
    let start = digits_before(v, digits, 20);
    &digits[start..]
}

/// Writes the decimal digits of `v` to end just before `end` in `out`; returns where they start.
fn digits_before(mut v: u64, out: &mut [u8], end: usize) -> usize {
    let mut i = end;
    loop {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compares what `write` makes of `input` with `expected`: one helper for the two ways
    /// bytes become label text.
    #[track_caller]
    fn check(write: fn(&mut Vec<u8>, &[u8]), input: &[u8], expected: &str) {
        let mut out = Vec::new();
        write(&mut out, input);
        assert_eq!(String::from_utf8(out).as_deref(), Ok(expected));
    }

    #[track_caller]
    fn check_escape(input: &[u8], expected: &str) {
        check(push_escaped, input, expected);
    }

    #[test]
    fn escaping() {
        check_escape(b"eth0", "eth0");
        check_escape(b"a\"b", "a\\\"b");
        check_escape(b"a\\b", "a\\\\b");
        check_escape(b"a\nb", "a\\nb");
        check_escape(b"caf\xc3\xa9", "caf\u{e9}");
        check_escape(b"bad\xff\xfename", "bad\u{fffd}\u{fffd}name");
        check_escape(b"tab\there", "tab\there");
    }

    #[test]
    fn names() {
        // `name_text` alone, before any escaping.
        let check_name = |input: &[u8], expected: &str| {
            check(
                |out, v| name_text(v, |piece| out.extend_from_slice(piece)),
                input,
                expected,
            )
        };
        check_name(b"eth0", "eth0");
        check_name(b"", "");
        // The three names of issue 10, which all rendered as two U+FFFD.
        check_name(b"\xff\xfe", "/xff/xfe");
        check_name(b"\xff\xfd", "/xff/xfd");
        check_name(b"\xef\xbf\xbd\xef\xbf\xbd", "\u{fffd}\u{fffd}");
        // Backslashes and `x` are legal in names: valid names stay as they are.
        check_name(b"\\xff", "\\xff");
        check_name(b"x\\", "x\\");
        check_name(b"\\xff\xff", "\\xff/xff");
        check_name(b"\\\xff", "\\/xff");
        check_name(b"xff\xff", "xff/xff");
        // Truncated sequences, byte by byte.
        check_name(b"\xe2\x82", "/xe2/x82");
        check_name(b"a\xe2\x82b", "a/xe2/x82b");
        check_name(b"\xe2\x82\xac", "\u{20ac}");
        check_name(b"\xf0\x9f\x98", "/xf0/x9f/x98");
        check_name(b"\xf0\x9f\x98\x80\xf0", "\u{1f600}/xf0");
        // Overlong encodings, surrogates and code points past U+10FFFF are not UTF-8.
        check_name(b"\xc0\xaf", "/xc0/xaf");
        check_name(b"\xe0\x80\xaf", "/xe0/x80/xaf");
        check_name(b"\xed\xa0\x80", "/xed/xa0/x80");
        check_name(b"\xf4\x90\x80\x80", "/xf4/x90/x80/x80");
        // Lone continuation bytes.
        check_name(b"\x80", "/x80");
        check_name(b"eth\xbf0", "eth/xbf0");
        check_name(b"caf\xc3\xa9\xa9", "caf\u{e9}/xa9");
        // Label escaping still applies to what the mapping gives.
        let mut out = Vec::new();
        name_text(b"a\"\\\xff", |piece| push_escaped(&mut out, piece));
        assert_eq!(out, b"a\\\"\\\\/xff");
    }

    /// The inverse of [`name_text`], which only an injective mapping has: `/xNN` is a byte,
    /// anything else is itself.
    fn decode_name(text: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < text.len() {
            if text[i] == b'/' {
                let hex = text.get(i + 1..i + 4)?;
                if hex[0] != b'x' || !hex[1..].iter().all(|b| b"0123456789abcdef".contains(b)) {
                    return None;
                }
                let digits = std::str::from_utf8(&hex[1..]).ok()?;
                out.push(u8::from_str_radix(digits, 16).ok()?);
                i += 4;
            } else {
                out.push(text[i]);
                i += 1;
            }
        }
        Some(out)
    }

    #[test]
    fn fuzz_names_are_injective() {
        use crate::fuzz::Rng;
        // Bytes that stress the scheme: escape look-alikes, hex digits, lead and continuation
        // bytes, the pieces of U+FFFD. Never `/` or NUL, which no directory entry holds.
        const PARTS: &[&[u8]] = &[
            b"x", b"\\", b"f", b"e", b"0", b"a", b"\xef", b"\xbf", b"\xbd", b"\xff", b"\xfe",
            b"\x80", b"\xc0", b"\xc3", b"\xe2", b"\xf0", b"\xf4", b"\xed", b"\xa0",
        ];
        let mut rng = Rng(0x5f5f_5eed_0000_0010);
        let mut seen = std::collections::HashMap::new();
        for _ in 0..200_000 {
            let mut name = Vec::new();
            for _ in 0..1 + rng.below(8) {
                match rng.below(3) {
                    0 => name.push((rng.next() as u8).max(1)),
                    _ => name.extend_from_slice(rng.pick::<&[u8]>(PARTS)),
                }
            }
            name.retain(|&b| b != b'/');
            let mut text = Vec::new();
            name_text(&name, |piece| text.extend_from_slice(piece));
            let shown = || format!("{name:x?} -> {:?}", String::from_utf8_lossy(&text));
            assert!(std::str::from_utf8(&text).is_ok(), "{}", shown());
            if std::str::from_utf8(&name).is_ok() {
                assert_eq!(text, name, "{}", shown());
            }
            assert_eq!(decode_name(&text).as_ref(), Some(&name), "{}", shown());
            if let Some(other) = seen.insert(text.clone(), name.clone()) {
                assert_eq!(other, name, "{}", shown());
            }
        }
    }

    #[test]
    fn seconds() {
        for (d, expected) in [
            (Duration::ZERO, "0.000000000"),
            (Duration::from_nanos(1), "0.000000001"),
            (Duration::from_micros(1234), "0.001234000"),
            (Duration::new(12, 500_000_000), "12.500000000"),
        ] {
            let mut out = Vec::new();
            push_seconds(&mut out, d);
            assert_eq!(String::from_utf8_lossy(&out), expected);
        }
    }

    #[test]
    fn integers() {
        for v in [
            0,
            1,
            9,
            10,
            1500,
            u64::from(u32::MAX),
            1 << 53,
            (1 << 53) + 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string().into_bytes());
        }
    }

    fn iface(name: &[u8], operstate: &[u8]) -> Box<Interface> {
        Box::new(Interface {
            name: name.to_vec(),
            operstate: operstate.to_vec(),
            ..Interface::default()
        })
    }

    #[test]
    fn seed_contract_byte_for_byte() {
        let mut scan = Scan::default();
        scan.interfaces = vec![
            iface(b"docker0", b"up"),
            iface(b"dummy0", b"down"),
            iface(b"lo", b"unknown"),
        ];
        let mut out = Vec::new();
        render_interfaces(&mut scan, false, Format::Text, &mut out);
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(text.starts_with(
            "# HELP interface_status down = 0, up = 1, any other states (unknown) = 2\n\
             # TYPE interface_status untyped\n\
             interface_status{interface=\"docker0\"} 1\n\
             interface_status{interface=\"dummy0\"} 0\n\
             interface_status{interface=\"lo\"} 2\n\
             # HELP interface_oper_state "
        ));
    }

    #[test]
    fn absent_values_give_no_sample() {
        let mut scan = Scan::default();
        let mut a = iface(b"a", b"down");
        a.admin_up = Some(false);
        a.speed_mbps = None;
        a.carrier = None;
        let mut b = iface(b"b", b"up");
        b.carrier = Some(true);
        b.speed_mbps = Some(10_000);
        b.mtu = Some(1500);
        scan.interfaces = vec![a, b];
        let mut out = Vec::new();
        render_interfaces(&mut scan, false, Format::Text, &mut out);
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(text.contains("interface_admin_up{interface=\"a\"} 0\n"));
        assert!(!text.contains("interface_admin_up{interface=\"b\"}"));
        assert!(!text.contains("interface_carrier{interface=\"a\"}"));
        assert!(text.contains("interface_carrier{interface=\"b\"} 1\n"));
        assert!(text.contains("interface_speed_bytes{interface=\"b\"} 1250000000\n"));
        assert!(!text.contains("interface_speed_bytes{interface=\"a\"}"));
        assert!(text.contains("interface_oper_state{interface=\"b\",state=\"up\"} 1\n"));
        assert!(text.contains("interface_oper_state{interface=\"b\",state=\"down\"} 0\n"));
        assert!(!text.contains("interface_receive_bytes_total"));
    }

    #[test]
    fn last_change_in_seconds_with_milliseconds() {
        let mut scan = Scan::default();
        scan.interfaces = vec![iface(b"a", b"up"), iface(b"b", b"down"), iface(b"c", b"up")];
        scan.interfaces[0].last_change_ms = Some(1_732_854_712_345);
        scan.interfaces[1].last_change_ms = Some(7);
        let mut out = Vec::new();
        render_interfaces(&mut scan, false, Format::Text, &mut out);
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(text.contains("# TYPE interface_last_change_timestamp_seconds gauge\n"));
        assert!(text
            .contains("interface_last_change_timestamp_seconds{interface=\"a\"} 1732854712.345\n"));
        assert!(text.contains("interface_last_change_timestamp_seconds{interface=\"b\"} 0.007\n"));
        assert!(!text.contains("interface_last_change_timestamp_seconds{interface=\"c\"}"));
    }

    #[test]
    fn padded_pieces_write_only_their_bytes() {
        let source: Vec<u8> = (0..=255u8).cycle().take(400).collect();
        // A writer with no room at first, so that it grows on the way.
        let mut writer = Writer::over(Vec::new(), 0).unwrap_or_else(|| Writer::from(Vec::new()));
        let mut expected = Vec::new();
        for len in (0..=PAD + 1).chain([200]) {
            let at = len % 7;
            writer.put_padded(&source[at..], len);
            expected.extend_from_slice(&source[at..at + len]);
            // A piece without its padding goes the ordinary way.
            writer.put_padded(&source[at..at + len], len);
            expected.extend_from_slice(&source[at..at + len]);
            writer.byte(b'|');
            expected.push(b'|');
        }
        assert_eq!(writer.bytes(), expected);
    }

    #[test]
    fn facts_a_scan_completes_late_are_rendered() {
        let known = |settled: bool| {
            let mut up = iface(b"up0", b"up");
            if settled {
                up.speed_mbps = Some(25_000);
                up.duplex = b"full".to_vec();
            }
            let mut scan = Scan::default();
            scan.interfaces = vec![up, iface(b"down0", b"down")];
            scan
        };
        let mut late = known(false);
        late.defer(|scan| {
            scan.interfaces[0].speed_mbps = Some(25_000);
            scan.interfaces[0].duplex = b"full".to_vec();
            scan.errors += 1;
        });
        let (mut with_late, mut with_known) = (Vec::new(), Vec::new());
        render_interfaces(&mut late, true, Format::Text, &mut with_late);
        render_interfaces(&mut known(true), true, Format::Text, &mut with_known);
        let text = String::from_utf8(with_late).unwrap_or_default();
        assert!(text.contains("interface_speed_bytes{interface=\"up0\"} 3125000000\n"));
        assert!(text.contains("duplex=\"full\""));
        assert_eq!(text.as_bytes(), with_known);
        // The late work's errors are counted before the exporter's own families are written.
        assert_eq!(late.errors, 1);
    }

    #[test]
    fn a_family_written_into_its_hole_reads_as_written_in_order() {
        let mut rng = crate::fuzz::Rng(0x401e_5eed);
        let names: [&[u8]; 6] = [
            b"eth0",
            b"a\"b\\c\nd",
            b"\xff\xfe",
            b"lo",
            b"x",
            &[b'n'; 15],
        ];
        for round in 0..200 {
            // Interfaces with hostile names, speeds from none to the largest, and the speed
            // and duplex known only once the scan settles.
            let scan = |rng: &mut crate::fuzz::Rng, settled: bool| {
                let mut scan = Scan::default();
                let mut speeds = Vec::new();
                for n in 0..rng.below(40) {
                    let mut name = rng.pick(&names).to_vec();
                    name.extend_from_slice(n.to_string().as_bytes());
                    let states: [&[u8]; 3] = [b"up", b"down", b"dormant"];
                    let state: &[u8] = states[rng.below(states.len())];
                    let mut i = iface(&name, state);
                    i.mtu = Some(rng.next() >> rng.below(64));
                    i.last_change_ms = Some(rng.next() >> 20);
                    let speed = [
                        None,
                        Some(0),
                        Some(u64::from(u32::MAX)),
                        Some(rng.next() >> 40),
                    ];
                    speeds.push(*rng.pick(&speed));
                    if settled {
                        i.speed_mbps = *speeds.last().unwrap_or(&None);
                        i.duplex = b"full".to_vec();
                    }
                    scan.interfaces.push(i);
                }
                if !settled {
                    scan.defer(move |scan| {
                        for (i, speed) in scan.interfaces.iter_mut().zip(speeds) {
                            i.speed_mbps = speed;
                            i.duplex = b"full".to_vec();
                        }
                    });
                }
                scan
            };
            let seed = rng.next();
            let (statistics, format) = (
                round % 2 == 0,
                *rng.pick(&[Format::Text, Format::OpenMetrics]),
            );
            let mut in_order = Vec::new();
            render_interfaces(
                &mut scan(&mut crate::fuzz::Rng(seed), true),
                statistics,
                format,
                &mut in_order,
            );
            // From no room at all (every write grows the buffer) to more than enough.
            for room in [0, 64, in_order.len() / 2, in_order.len() + 4096] {
                let mut late = scan(&mut crate::fuzz::Rng(seed), false);
                let mut out =
                    Writer::over(Vec::new(), room).unwrap_or_else(|| Writer::from(Vec::new()));
                render_interfaces(&mut late, statistics, format, &mut out);
                assert!(late.is_settled());
                assert_eq!(out.bytes(), in_order, "round {round}, room {room}");
            }
        }
    }

    #[test]
    fn openmetrics_metadata() {
        let mut scan = Scan::default();
        scan.interfaces = vec![iface(b"eth0", b"up")];
        scan.interfaces[0].carrier_changes = Some(3);
        let mut out = Vec::new();
        render_interfaces(&mut scan, true, Format::OpenMetrics, &mut out);
        render_self(
            0,
            Duration::from_millis(250),
            1_700_000_000_005,
            Format::OpenMetrics,
            &mut out,
        );
        let text = String::from_utf8(out).unwrap_or_default();
        assert!(text.contains("# TYPE interface_status unknown\n"));
        assert!(text.contains("# TYPE interface_carrier_changes counter\n"));
        assert!(text.contains("interface_carrier_changes_total{interface=\"eth0\"} 3\n"));
        assert!(text.contains("# TYPE interface info\n"));
        assert!(text.contains("# TYPE interfaces_exporter_build info\n"));
        assert!(text.contains("# TYPE interface_receive_bytes counter\n"));
        assert!(text.contains("interfaces_exporter_scrape_duration_seconds 0.250000000\n"));
        assert!(text.contains("# TYPE interfaces_exporter_start_time_seconds gauge\n"));
        assert!(text.contains("interfaces_exporter_start_time_seconds 1700000000.005\n"));
        assert!(text.ends_with("# EOF\n"));
        assert_eq!(text.matches("# EOF").count(), 1);
    }
}
