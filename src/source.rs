//! Where interface state comes from: a [`Source`] over the two readers, sysfs and netlink, and
//! the start-up choice between them ([`choose`]).
//!
//! They describe different things when the sysfs root is not this process's network namespace:
//! sysfs shows the namespace it was mounted in (`docker run -v /sys:/host/sys:ro` without host
//! networking shows the host), netlink the process's own. So `auto` takes netlink only when it
//! is proven to describe the same interfaces: the (name, ifindex, address) set of a dump equals
//! the one read from `<root>/class/net`, and each interface's sysfs `rx_packets`, `tx_packets`
//! and `carrier_changes` lie between the values of two dumps taken around the sysfs read.
//! Counters only grow, so a foreign namespace that happens to share names and indexes is caught
//! by its counters; a namespace with nothing but an idle `lo` cannot be told apart from another
//! such namespace, and sysfs, the seed's behaviour, is kept there.
//!
//! Filtering and sorting are done here, once, whatever the source.
//!
//! Invariant: a scan handed out is sorted by name and holds only interfaces the options want.

use std::fmt;
use std::io;
use std::path::Path;
use std::time::Duration;

use crate::model::{Interface, Options, Scan, ScanError};
use crate::{netlink, sysfs};

/// Checks tried before `auto` gives up on netlink while interfaces change. Each takes a
/// millisecond or a few; ten spread over a few tens of milliseconds ride out a short burst of
/// `ip link` commands, and a host that churns longer than that gets the source that needs no
/// proof.
const MAX_CHECKS: usize = 10;

/// The pause between two checks. Two checks in a row must agree, so this is also what every
/// start costs: at 50 ms the exporter took 53 ms from exec to its first answer, against 1 ms
/// before the check existed; 2 ms still lets the churn test's changes (one every fraction of a
/// millisecond) show between the two.
const CHECK_PAUSE: Duration = Duration::from_millis(2);

/// `--collector.source`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    Auto,
    Netlink,
    Sysfs,
}

impl Choice {
    pub fn parse(s: &str) -> Option<Choice> {
        match s {
            "auto" => Some(Choice::Auto),
            "netlink" => Some(Choice::Netlink),
            "sysfs" => Some(Choice::Sysfs),
            _ => None,
        }
    }
}

/// The source the server reads, fixed at start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sysfs,
    Netlink,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sysfs => "sysfs",
            Kind::Netlink => "netlink",
        }
    }
}

/// One reader of interface state; each concurrent scrape has its own.
pub enum Source {
    Sysfs(sysfs::Reader),
    Netlink(netlink::Reader),
}

impl Source {
    pub fn new(kind: Kind, root: &Path) -> Source {
        match kind {
            Kind::Sysfs => Source::Sysfs(sysfs::Reader::new(root)),
            Kind::Netlink => Source::Netlink(netlink::Reader::new()),
        }
    }

    /// Reads every wanted interface into `scan`, sorted by name. `seen` is given the scan as
    /// the source read it, before the sort: a dump's order, ascending ifindex, is the one the
    /// last-change tracker walks fastest.
    pub fn scan(
        &mut self,
        opts: &Options,
        scan: &mut Scan,
        seen: impl FnOnce(&mut Scan),
    ) -> Result<(), ScanError> {
        match self {
            Source::Sysfs(r) => r.scan(opts, scan)?,
            Source::Netlink(r) => r.scan(opts, scan)?,
        }
        seen(scan);
        finish(opts, scan);
        Ok(())
    }
}

/// Why the source could not scan now, as `/-/ready` tells it.
#[derive(Debug)]
pub enum Unready {
    /// The sysfs root's `class/net` cannot be listed (unmounted, removed, refused).
    Sysfs(sysfs::Error),
    /// No netlink socket can be opened (a system-call filter, descriptors exhausted).
    Netlink(io::Error),
}

impl fmt::Display for Unready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unready::Sysfs(e) => e.fmt(f),
            Unready::Netlink(e) => write!(f, "cannot open a netlink socket: {e}"),
        }
    }
}

/// Whether a scan of `kind` could start now, told from the first thing it needs (the listing
/// of `class/net`, or a netlink socket) and never from a scan: readiness probes come often,
/// and must cost a few system calls, not a scrape.
pub fn check(kind: Kind, root: &Path) -> Result<(), Unready> {
    match kind {
        Kind::Sysfs => sysfs::check_root(root).map_err(Unready::Sysfs),
        Kind::Netlink => crate::sys::NetlinkSocket::open()
            .map(drop)
            .map_err(Unready::Netlink),
    }
}

/// Drops the interfaces the options do not want and sorts the rest by name. The readers may
/// skip unwanted interfaces early to save reads; this is where the rule is applied.
fn finish(opts: &Options, scan: &mut Scan) {
    // Without patterns every name is wanted: not looking at each saves a pass over them.
    if !(opts.include.is_empty() && opts.exclude.is_empty()) {
        scan.keep_only(|name| opts.wants(name));
    }
    scan.sort_by_name();
}

/// The source picked at start, and why, for the one log line that says so.
#[derive(Debug)]
pub struct Chosen {
    pub kind: Kind,
    pub reason: String,
    /// The choice fell back from netlink for a reason an operator should fix.
    pub warn: bool,
}

/// Why the chosen source cannot start.
#[derive(Debug)]
pub enum StartError {
    /// `--collector.source=netlink` and no netlink socket.
    NoNetlink(io::Error),
    /// `--collector.source=netlink` on a root that shows other interfaces.
    Mismatch { root: String, why: String },
    /// A dump or the sysfs read failed during the check.
    Scan(ScanError),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NoNetlink(e) => write!(
                f,
                "--collector.source=netlink: cannot open a netlink socket: {e}"
            ),
            StartError::Mismatch { root, why } => write!(
                f,
                "--collector.source=netlink: netlink describes another network namespace than {root}/class/net ({why}); use --collector.source=sysfs, or run in the namespace {root} belongs to"
            ),
            StartError::Scan(e) => write!(f, "cannot check the interface source: {e}"),
        }
    }
}

/// What one check of netlink against sysfs found.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Same(usize),
    /// Only an idle `lo` on both sides.
    LoOnly,
    /// The two dumps differ: interfaces changed during the check.
    Churn,
    Mismatch(String),
}

/// Picks the source for `--collector.source=choice` and the sysfs root `root`.
pub fn choose(choice: Choice, root: &Path) -> Result<Chosen, StartError> {
    let netlink_forced = choice == Choice::Netlink;
    let chosen = |kind, reason: String, warn| Ok(Chosen { kind, reason, warn });
    if choice == Choice::Sysfs {
        return chosen(Kind::Sysfs, "--collector.source=sysfs".to_owned(), false);
    }
    if let Err(e) = crate::sys::NetlinkSocket::open() {
        if netlink_forced {
            return Err(StartError::NoNetlink(e));
        }
        return chosen(
            Kind::Sysfs,
            format!("cannot open a netlink socket ({e}); allow AF_NETLINK for the faster netlink source"),
            true,
        );
    }
    let mut nl = netlink::Reader::new();
    // The check compares rx_packets and tx_packets, the second and sixth counters.
    let mut sys = sysfs::Reader::new(root).with_statistics(8);
    let opts = Options {
        statistics: true,
        ..Options::default()
    };
    // One scan buffer for the three reads, each boiled down to what the check compares: at
    // start, three whole scans of a thousand interfaces would set the process's peak memory.
    let mut buf = Scan::default();
    let (mut before, mut on_sysfs, mut after) = (Vec::new(), Vec::new(), Vec::new());
    let mut last_mismatch = None;
    let mut confirmed: Option<Vec<Id>> = None;
    let root_name = root.display().to_string();
    for attempt in 0..MAX_CHECKS {
        if attempt > 0 {
            std::thread::sleep(CHECK_PAUSE);
        }
        let result = nl
            .dump(true, &mut buf, |_| true)
            .map(|()| boil(&mut buf, &mut before))
            .and_then(|()| sys.scan(&opts, &mut buf))
            .map(|()| boil(&mut buf, &mut on_sysfs))
            .and_then(|()| nl.dump(true, &mut buf, |_| true))
            .map(|()| boil(&mut buf, &mut after));
        if let Err(e) = result {
            if netlink_forced {
                return Err(StartError::Scan(e));
            }
            return chosen(Kind::Sysfs, format!("the check failed: {e}"), true);
        }
        let verdict = compare(&before, &on_sysfs, &after);
        if !matches!(verdict, Verdict::Same(_)) {
            confirmed = None;
        }
        match verdict {
            Verdict::Same(n) => {
                // Two checks in a row, a pause apart, with the same interfaces: a set that
                // stood still only for the few milliseconds of one check proves little on a
                // host where interfaces come and go.
                if confirmed.as_ref().is_some_and(|c| same_ids(c, &before)) {
                    return chosen(
                        Kind::Netlink,
                        format!("a netlink dump matches {root_name}/class/net ({n} interfaces)"),
                        false,
                    );
                }
                confirmed = Some(std::mem::take(&mut after));
                last_mismatch = None;
                continue;
            }
            Verdict::LoOnly => {
                let reason = format!(
                    "only an idle lo, which cannot tell this namespace from the one {root_name} shows"
                );
                let kind = if netlink_forced {
                    Kind::Netlink
                } else {
                    Kind::Sysfs
                };
                return chosen(kind, reason, false);
            }
            Verdict::Churn => {
                last_mismatch = None;
            }
            Verdict::Mismatch(why) => {
                // Twice the same way with steady dumps is no accident of timing.
                if last_mismatch.is_some() {
                    if netlink_forced {
                        return Err(StartError::Mismatch {
                            root: root_name,
                            why,
                        });
                    }
                    return chosen(
                        Kind::Sysfs,
                        format!("netlink describes another network namespace than {root_name}/class/net ({why})"),
                        false,
                    );
                }
                last_mismatch = Some(why);
            }
        }
    }
    let reason = format!(
        "interfaces changed during each of {MAX_CHECKS} checks against {root_name}/class/net"
    );
    if netlink_forced {
        return chosen(Kind::Netlink, reason, true);
    }
    chosen(Kind::Sysfs, reason, true)
}

/// What the check compares of one interface.
#[derive(Debug, PartialEq, Eq)]
struct Id {
    name: Vec<u8>,
    ifindex: Option<u64>,
    address: Vec<u8>,
    /// `rx_packets`, `tx_packets`, `carrier_changes`.
    counters: [Option<u64>; 3],
}

/// Replaces `ids` with those of the interfaces in `scan`, sorted by name.
fn boil(scan: &mut Scan, ids: &mut Vec<Id>) {
    ids.clear();
    ids.extend(scan.interfaces.iter().map(|i| Id {
        name: i.name.clone(),
        ifindex: i.ifindex,
        address: i.address.clone(),
        counters: [stat(i, 1), stat(i, 5), i.carrier_changes],
    }));
    ids.sort_unstable_by(|a, b| a.name.cmp(&b.name));
}

fn stat(iface: &Interface, at: usize) -> Option<u64> {
    iface.statistics.as_ref().and_then(|s| s[at])
}

/// Compares a dump, the sysfs read after it and the dump after that, each sorted by name.
fn compare(b: &[Id], s: &[Id], a: &[Id]) -> Verdict {
    if !same_ids(b, a) {
        return Verdict::Churn;
    }
    if !same_ids(b, s) {
        return Verdict::Mismatch(format!(
            "the interface names, indexes or addresses differ: {} via netlink, {} in sysfs",
            b.len(),
            s.len()
        ));
    }
    let mut moved = false;
    for ((lo, mid), hi) in b.iter().zip(s).zip(a) {
        for ((low, value), high) in lo.counters.iter().zip(mid.counters).zip(hi.counters) {
            let (Some(low), Some(value), Some(high)) = (*low, value, high) else {
                continue;
            };
            if !(low <= value && value <= high) {
                return Verdict::Mismatch(format!(
                    "the counters of {} are not those of this namespace",
                    String::from_utf8_lossy(&mid.name)
                ));
            }
            moved |= low != high;
        }
    }
    if b.len() == 1 && b[0].name == b"lo" && !moved {
        return Verdict::LoOnly;
    }
    Verdict::Same(b.len())
}

/// Equal when names, indexes and addresses agree one to one.
fn same_ids(x: &[Id], y: &[Id]) -> bool {
    x.len() == y.len()
        && x.iter()
            .zip(y)
            .all(|(p, q)| p.name == q.name && p.ifindex == q.ifindex && p.address == q.address)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, ifindex: u64, addr: &str, rx: u64, tx: u64, changes: u64) -> Interface {
        let mut stats = [Some(0); crate::model::STATISTICS_LEN];
        stats[1] = Some(rx);
        stats[5] = Some(tx);
        Interface {
            name: name.into(),
            ifindex: Some(ifindex),
            address: addr.into(),
            carrier_changes: Some(changes),
            statistics: Some(Box::new(stats)),
            ..Interface::default()
        }
    }

    fn scan(interfaces: Vec<Interface>) -> Scan {
        let mut scan = Scan::default();
        scan.interfaces = interfaces.into_iter().map(Box::new).collect();
        scan
    }

    #[track_caller]
    fn check(
        before: Vec<Interface>,
        sysfs: Vec<Interface>,
        after: Vec<Interface>,
        expected: &Verdict,
    ) {
        let ids = |v| {
            let mut ids = Vec::new();
            boil(&mut scan(v), &mut ids);
            ids
        };
        let verdict = compare(&ids(before), &ids(sysfs), &ids(after));
        match (&verdict, expected) {
            (Verdict::Mismatch(_), Verdict::Mismatch(_)) => {}
            _ => assert_eq!(&verdict, expected),
        }
    }

    #[test]
    fn verdicts() {
        let lo = |rx| iface("lo", 1, "00:00:00:00:00:00", rx, rx, 0);
        let eth = |rx, changes| iface("eth0", 2, "52:54:00:12:34:56", rx, rx, changes);
        let mismatch = Verdict::Mismatch(String::new());
        // The same namespace: counters within the dumps, in any listing order.
        check(
            vec![eth(10, 1), lo(5)],
            vec![lo(6), eth(11, 1)],
            vec![lo(7), eth(12, 2)],
            &Verdict::Same(2),
        );
        // Idle on both ends is still the same namespace when there is more than lo.
        check(
            vec![lo(0), eth(3, 1)],
            vec![lo(0), eth(3, 1)],
            vec![lo(0), eth(3, 1)],
            &Verdict::Same(2),
        );
        // Another namespace: other interfaces, another index or address, or counters outside.
        check(vec![lo(5)], vec![lo(5), eth(1, 1)], vec![lo(5)], &mismatch);
        check(
            vec![lo(5), eth(1, 1)],
            vec![lo(5), iface("eth0", 3, "52:54:00:12:34:56", 1, 1, 1)],
            vec![lo(5), eth(1, 1)],
            &mismatch,
        );
        check(
            vec![lo(5), eth(1, 1)],
            vec![lo(5), iface("eth0", 2, "02:00:00:00:00:01", 1, 1, 1)],
            vec![lo(5), eth(1, 1)],
            &mismatch,
        );
        check(
            vec![lo(5), eth(10, 1)],
            vec![lo(5), eth(9, 1)],
            vec![lo(5), eth(10, 1)],
            &mismatch,
        );
        check(
            vec![lo(5), eth(10, 1)],
            vec![lo(5), eth(10, 3)],
            vec![lo(5), eth(10, 2)],
            &mismatch,
        );
        // Only lo: undecidable while idle, the same namespace when its counters move with it.
        check(vec![lo(0)], vec![lo(0)], vec![lo(0)], &Verdict::LoOnly);
        check(vec![lo(4)], vec![lo(4)], vec![lo(4)], &Verdict::LoOnly);
        check(vec![lo(4)], vec![lo(5)], vec![lo(6)], &Verdict::Same(1));
        check(vec![lo(4)], vec![lo(9)], vec![lo(6)], &mismatch);
        // The dumps disagree: churn, whatever sysfs said.
        check(
            vec![lo(4)],
            vec![lo(4), eth(1, 1)],
            vec![lo(4), eth(1, 1)],
            &Verdict::Churn,
        );
    }

    #[test]
    fn filtered_and_sorted_once() -> Result<(), crate::glob::GlobError> {
        let opts = Options {
            exclude: vec![crate::glob::Glob::new("b*")?],
            ..Options::default()
        };
        let mut s = scan(vec![
            iface("c", 3, "", 0, 0, 0),
            iface("b", 2, "", 0, 0, 0),
            iface("a", 1, "", 0, 0, 0),
        ]);
        finish(&opts, &mut s);
        let names: Vec<&[u8]> = s.interfaces.iter().map(|i| &i.name[..]).collect();
        assert_eq!(names, [&b"a"[..], b"c"]);
        Ok(())
    }

    #[test]
    fn choices() {
        assert_eq!(Choice::parse("auto"), Some(Choice::Auto));
        assert_eq!(Choice::parse("netlink"), Some(Choice::Netlink));
        assert_eq!(Choice::parse("sysfs"), Some(Choice::Sysfs));
        assert_eq!(Choice::parse("Netlink"), None);
        assert_eq!(Choice::parse(""), None);
    }
}
