//! Since when: the time of each interface's last change of operational state, admin state or
//! carrier (IF-MIB's ifLastChange), kept between scans by one [`Tracker`] for the process.
//!
//! With the netlink source a thread of its own holds an `RTMGRP_LINK` subscription ([`watch`])
//! and stamps a change with the time its notification was received, so a flap between two
//! scrapes is timed to the millisecond. The subscription is made before the dump that fills the
//! entries, so no change falls between them. When the kernel had no room for notifications
//! (`ENOBUFS`: a burst larger than the receive buffer) the watcher dumps afresh, compares each
//! interface with what it holds and stamps what differs with the time of that resync; the
//! notifications still queued are older than the dump, but replayed in order they end in the
//! same state, and a loss among them is reported by another `ENOBUFS`.
//!
//! Without a subscription (the sysfs source, or one that could not be made or failed) each
//! scan is compared with the one before: state, and `carrier_changes`, so that a flap that is
//! over before the next scan is still seen; the time is that of the scan that saw it. Those
//! comparisons run under the server's reader lock, one scan at a time, in scan order.
//!
//! An interface present when its entries were first listed carries the exporter's start time
//! ("at least since"), one that appears later the time it was first seen. An interface is
//! known by its index and name together: a new name on an old index is a new interface (and
//! by its name alone where a sysfs tree has no `ifindex`).
//!
//! Invariant: holds an entry only for an interface that existed at the last full listing or
//! was announced since: entries of interfaces that are gone are removed (`RTM_DELLINK`, or
//! absent from a full dump or scan), so memory follows the interfaces there are, never those
//! there were.

use std::borrow::{Borrow, BorrowMut};
use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::model::{Interface, OperState, Scan};
use crate::netlink::{self, Notification};
use crate::{log, sys};

/// What `--collector.netlink.events-buffer` asks the kernel for by default. A burst of 1000
/// interfaces flapping at once brought about 12 500 notifications of 1.5 KB within 1.2 s on a
/// test host: 208 KiB overflowed, 4 MiB did not. The kernel caps the request at
/// `net.core.rmem_max` (often 208 KiB or 416 KiB on older kernels) without an error, and a
/// burst that still overflows costs one resync dump, not correctness.
pub const DEFAULT_EVENTS_BUFFER: usize = 4 * 1024 * 1024;

/// The receive buffer for one notification. A notification is one message per datagram, about
/// 1.5 KB, larger only with many SR-IOV VFs; a larger one is seen as truncated, makes the
/// buffer grow and is recovered by a resync.
const EVENT_BUF: usize = 16 * 1024;

/// The largest notification the buffer grows for, as the dump reader's limit.
const MAX_EVENT_BUF: usize = 1024 * 1024;

/// Dumps tried for one resync before the watcher gives up and scans take over. A dump already
/// retries while interfaces change under it; three of those failing in a row, a second apart,
/// is a socket that does not work.
const RESYNC_ATTEMPTS: u32 = 3;

/// The pause between two resync attempts, for a burst of changes to end.
const RESYNC_PAUSE: Duration = Duration::from_secs(1);

/// Datagrams taken in from a queue before a resync dump. The queue holds a few thousand at
/// most (the default buffer over about 1.5 KB each); a storm that keeps it full gets a dump
/// after this many, and another after the next as many, until the queue runs empty.
const MAX_DRAIN: usize = 10_000;

/// The watcher's stack: it parses one notification at a time into one reused [`Interface`],
/// and its resync dump's buffers live on the heap; 64 KiB leaves a wide margin.
const WATCH_STACK: usize = 64 * 1024;

/// Milliseconds since the Unix epoch; 0 for a clock set before it.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What is compared of an interface from one look to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Seen {
    oper: OperState,
    admin: Option<bool>,
    carrier: Option<bool>,
    /// Counts every carrier change, so a flap over before the next look still differs.
    changes: Option<u64>,
}

impl Seen {
    fn of(iface: &Interface) -> Seen {
        Seen {
            oper: iface.oper(),
            admin: iface.admin_up,
            carrier: iface.carrier,
            changes: iface.carrier_changes,
        }
    }
}

#[derive(Debug)]
struct Entry {
    name: Vec<u8>,
    seen: Seen,
    stamp_ms: u64,
    /// The listing that last saw it, to remove those the next one does not.
    pass: u32,
}

/// The entries and how they are kept current; plain data, so that tests drive it directly.
#[derive(Debug)]
struct State {
    start_ms: u64,
    /// Whether notifications keep the entries current; false: scans are compared.
    events: bool,
    /// A full listing has been taken: an interface not known since appeared later.
    listed: bool,
    pass: u32,
    /// By interface index.
    links: BTreeMap<u64, Entry>,
    /// Those whose index could not be read (a sysfs tree without `ifindex`), found by name.
    /// A list searched end to end: real kernels always give the index, and a second map
    /// would cost the binary more than this rare case is worth.
    unindexed: Vec<Entry>,
}

impl State {
    fn new(start_ms: u64) -> State {
        State {
            start_ms,
            events: false,
            listed: false,
            pass: 0,
            links: BTreeMap::new(),
            unindexed: Vec::new(),
        }
    }

    /// The stamp of an interface first seen now.
    fn appeared(&self, now_ms: u64) -> u64 {
        if self.listed {
            now_ms
        } else {
            self.start_ms
        }
    }

    /// Takes in one look at an interface: a differing state is stamped `now_ms`, an interface
    /// not known carries the time it appeared.
    fn note(&mut self, iface: &Interface, now_ms: u64) {
        let seen = Seen::of(iface);
        let appeared = self.appeared(now_ms);
        let pass = self.pass;
        let new = || Entry {
            name: iface.name.clone(),
            seen,
            stamp_ms: appeared,
            pass,
        };
        let entry = match iface.ifindex {
            Some(ifindex) => self.links.entry(ifindex).or_insert_with(new),
            None => match self.unindexed.iter().position(|e| e.name == iface.name) {
                Some(at) => &mut self.unindexed[at],
                None => {
                    self.unindexed.push(new());
                    match self.unindexed.last_mut() {
                        Some(entry) => entry,
                        None => return,
                    }
                }
            },
        };
        if entry.name != iface.name {
            entry.name.clone_from(&iface.name);
            entry.stamp_ms = appeared;
        } else if entry.seen != seen {
            entry.stamp_ms = now_ms;
        }
        entry.seen = seen;
        entry.pass = pass;
    }

    fn gone(&mut self, ifindex: u64) {
        self.links.remove(&ifindex);
    }

    /// Takes in a full listing (a dump, or a scan with the server's filters): every interface
    /// is noted, and the entries of those it does not hold are removed.
    fn listing<I: Borrow<Interface>>(&mut self, ifaces: &[I], now_ms: u64) {
        self.pass = self.pass.wrapping_add(1);
        for iface in ifaces {
            self.note(iface.borrow(), now_ms);
        }
        let pass = self.pass;
        self.links.retain(|_, e| e.pass == pass);
        self.unindexed.retain(|e| e.pass == pass);
        // The list's room follows its length down, as the map's nodes do.
        if self.unindexed.len() < self.unindexed.capacity() / 4 {
            self.unindexed.shrink_to_fit();
        }
        self.listed = true;
    }

    /// Writes each interface's stamp into `last_change_ms`. One not known (its notification
    /// is still on the way) has just appeared.
    ///
    /// Interfaces in ascending index (a dump's order) are matched by one walk along the map,
    /// in step with them, instead of a lookup each; the walk starts again at an interface
    /// that goes back, or that is further ahead than a few entries, so any order is right.
    fn fill<I: BorrowMut<Interface>>(&self, ifaces: &mut [I], now_ms: u64) {
        let mut walk = self.links.range(..);
        let mut at = walk.next();
        for iface in ifaces {
            let iface = iface.borrow_mut();
            let entry = match iface.ifindex {
                Some(i) => {
                    let mut steps = 0;
                    while at.is_some_and(|(&k, _)| k < i) && steps < WALK_STEPS {
                        at = walk.next();
                        steps += 1;
                    }
                    if !at.is_some_and(|(&k, _)| k <= i && steps < WALK_STEPS) {
                        walk = self.links.range(i..);
                        at = walk.next();
                    }
                    at.filter(|(&k, _)| k == i).map(|(_, e)| e)
                }
                None => self.unindexed.iter().find(|e| e.name == iface.name),
            };
            iface.last_change_ms = Some(match entry {
                Some(e) if e.name == iface.name => e.stamp_ms,
                _ => self.appeared(now_ms),
            });
        }
    }
}

/// Entries `State::fill` steps over before it looks the next interface up instead.
const WALK_STEPS: usize = 4;

/// The last-change times of every interface, shared by the server's scans and the watcher.
pub struct Tracker {
    state: Mutex<State>,
}

impl Tracker {
    /// A tracker that compares scans until [`watch`] subscribes it to notifications.
    pub fn new(start_ms: u64) -> Tracker {
        Tracker {
            state: Mutex::new(State::new(start_ms)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a map of plain values, consistent after each of its short methods: a
        // panic elsewhere cannot leave it half-changed in a way that matters.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exporter's start time, the stamp of what has not changed since.
    pub fn start_ms(&self) -> u64 {
        self.lock().start_ms
    }

    /// Whether scans keep the entries current, so that one should be taken at start to see
    /// the changes that come before the first scrape.
    pub fn compares_scans(&self) -> bool {
        !self.lock().events
    }

    /// Fills `scan`'s interfaces with their stamps; when no subscription keeps the entries
    /// current, compares the scan with the last one first. Called with a whole scan taken at
    /// `now_ms`, one at a time.
    pub fn observe(&self, scan: &mut Scan, now_ms: u64) {
        let mut state = self.lock();
        if !state.events {
            state.listing(&scan.interfaces, now_ms);
        }
        state.fill(&mut scan.interfaces, now_ms);
    }

    /// Hands the entries back to scans, which compare against what the notifications left.
    fn stop_events(&self) {
        self.lock().events = false;
    }
}

/// A subscription to link notifications, made at start before anything else is looked at,
/// so that the changes queued in it cover the whole time since the exporter started.
pub struct Subscription {
    socket: sys::NetlinkSocket,
    /// The receive buffer the kernel booked, in bytes.
    pub granted: usize,
}

/// Subscribes to link notifications with a receive buffer of `buffer` bytes asked for.
pub fn subscribe(buffer: usize) -> io::Result<Subscription> {
    let (socket, granted) = sys::NetlinkSocket::subscribe_links(buffer)?;
    Ok(Subscription { socket, granted })
}

/// Starts the thread that fills `tracker` with a dump and then follows `subscription`'s
/// notifications. On an error the tracker keeps comparing scans.
pub fn watch(tracker: &Arc<Tracker>, subscription: Subscription) -> io::Result<()> {
    let socket = subscription.socket;
    // From here the watcher owns the entries; until its first dump they are empty, and every
    // interface a scrape shows carries the start time, which is the truth.
    tracker.lock().events = true;
    let theirs = Arc::clone(tracker);
    let spawned = thread::Builder::new()
        .name("link-events".into())
        .stack_size(WATCH_STACK)
        .spawn(move || {
            let why = follow(&theirs, &socket);
            log::warn(
                "link events lost, comparing scans instead",
                &[("err", &why)],
            );
            theirs.stop_events();
        });
    if let Err(e) = spawned {
        tracker.stop_events();
        return Err(e);
    }
    Ok(())
}

/// Fills the entries with a dump and follows the notifications; returns only when it can go on no more.
fn follow(tracker: &Tracker, socket: &sys::NetlinkSocket) -> io::Error {
    let mut w = Watcher {
        tracker,
        socket,
        buf: vec![0u8; EVENT_BUF],
        iface: Interface::default(),
    };
    if let Err(e) = resync(tracker) {
        return e;
    }
    loop {
        let got = match socket.recv(&mut w.buf) {
            Ok(got) => got,
            Err(e) if e.raw_os_error() == Some(sys::ENOBUFS) => {
                log::info("link events overflowed the receive buffer, resyncing", &[]);
                if let Err(e) = w.recover() {
                    return e;
                }
                continue;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) => return e,
        };
        let taken = match w.take_in(&got) {
            Ok(taken) => taken,
            Err(e) => return e,
        };
        if !taken {
            if let Err(e) = w.recover() {
                return e;
            }
        }
    }
}

/// The watcher thread's socket and buffers.
struct Watcher<'a> {
    tracker: &'a Tracker,
    socket: &'a sys::NetlinkSocket,
    buf: Vec<u8>,
    /// One interface, reused for every notification.
    iface: Interface,
}

impl Watcher<'_> {
    /// Applies the notifications of one datagram received into `buf`. False when one was lost
    /// (truncated, or unreadable), which only a resync can make up for.
    fn take_in(&mut self, got: &sys::Received) -> io::Result<bool> {
        // The receive time, taken before the lock, is when the change was known.
        let now = now_ms();
        if !got.from_kernel {
            return Ok(true);
        }
        if let Some(real) = got.truncated {
            if real > MAX_EVENT_BUF {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a link notification is larger than a mebibyte",
                ));
            }
            self.buf
                .resize(real.next_power_of_two().min(MAX_EVENT_BUF), 0);
            return Ok(false);
        }
        let mut state = self.tracker.lock();
        let mut whole = true;
        let iface = &mut self.iface;
        let parsed = netlink::parse_notifications(&self.buf[..got.len], |n| match n {
            Notification::New(payload) => {
                let (mut errors, mut master) = (0, 0);
                match netlink::parse_link(payload, false, iface, &mut errors, &mut master) {
                    Ok(true) => state.note(iface, now),
                    // No name or no operstate: nothing to compare, as sysfs skips it.
                    Ok(false) => {}
                    Err(_) => whole = false,
                }
            }
            Notification::Deleted(ifindex) => state.gone(u64::from(ifindex)),
        });
        Ok(whole && parsed.is_ok())
    }

    /// Makes up for lost notifications: takes in what is queued, then compares a dump.
    ///
    /// The order matters. After an overflow the kernel reports no further loss until the
    /// queue has been read empty (`NETLINK_S_CONGESTED`), so a dump taken before that could
    /// miss a change lost after it without a word. Once the queue was empty, any later loss
    /// comes with another `ENOBUFS`. A queue that never empties (a storm) gets a dump after
    /// every `MAX_DRAIN` datagrams until it does.
    fn recover(&mut self) -> io::Result<()> {
        loop {
            let mut emptied = false;
            for _ in 0..MAX_DRAIN {
                match self.socket.try_recv(&mut self.buf) {
                    Ok(Some(got)) => {
                        // Whatever it lost, the dump below makes up for.
                        self.take_in(&got)?;
                    }
                    Ok(None) => {
                        emptied = true;
                        break;
                    }
                    Err(e) if e.raw_os_error() == Some(sys::ENOBUFS) => {}
                    Err(e) => return Err(e),
                }
            }
            resync(self.tracker)?;
            if emptied {
                return Ok(());
            }
        }
    }
}

/// Dumps every interface and takes the dump in as a full listing, stamped with the time the
/// dump ended. Its buffers are dropped after: resyncs are rare, and an idle watcher should hold
/// nothing the size of a scan.
fn resync(tracker: &Tracker) -> io::Result<()> {
    let mut reader = netlink::Reader::new();
    let mut scan = Scan::default();
    let mut attempt = 1;
    loop {
        match reader.dump(false, &mut scan, |_| true) {
            Ok(()) => break,
            Err(e) if attempt < RESYNC_ATTEMPTS => {
                log::warn("link resync failed, retrying", &[("err", &e)]);
                thread::sleep(RESYNC_PAUSE);
                attempt += 1;
            }
            Err(e) => return Err(io::Error::new(e.err.kind(), e.to_string())),
        }
    }
    let now = now_ms();
    tracker.lock().listing(&scan.interfaces, now);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const START: u64 = 1_000_000;

    fn iface(index: u64, name: &str, oper: &str, admin: bool, changes: u64) -> Interface {
        Interface {
            name: name.into(),
            operstate: oper.into(),
            ifindex: Some(index),
            admin_up: Some(admin),
            carrier: admin.then_some(oper == "up"),
            carrier_changes: Some(changes),
            ..Interface::default()
        }
    }

    /// One step of a test: a full listing, a notification or a deletion at a time.
    enum Step {
        Listing(u64, Vec<Interface>),
        Event(u64, Box<Interface>),
        Gone(u64),
    }

    fn event(at: u64, iface: Interface) -> Step {
        Step::Event(at, Box::new(iface))
    }

    /// Runs the steps, then fills `probe` at `now` and compares the stamps by name.
    #[track_caller]
    fn check(steps: Vec<Step>, now: u64, probe: Vec<Interface>, expected: &[(&str, Option<u64>)]) {
        let mut state = State::new(START);
        for step in steps {
            match step {
                Step::Listing(at, ifaces) => state.listing(&ifaces, at),
                Step::Event(at, i) => state.note(&i, at),
                Step::Gone(index) => state.gone(index),
            }
        }
        let mut probe = probe;
        state.fill(&mut probe, now);
        let got: Vec<(String, Option<u64>)> = probe
            .iter()
            .map(|i| {
                (
                    String::from_utf8_lossy(&i.name).into_owned(),
                    i.last_change_ms,
                )
            })
            .collect();
        let expected: Vec<(String, Option<u64>)> = expected
            .iter()
            .map(|(n, v)| ((*n).to_owned(), *v))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn stamps() {
        let a_up = || iface(2, "a", "up", true, 1);
        let b_up = || iface(3, "b", "up", true, 1);
        // Before any listing everything carries the start time; after one, what is unknown
        // appeared at the time it is filled.
        check(vec![], 5_000_000, vec![a_up()], &[("a", Some(START))]);
        check(
            vec![Step::Listing(2_000_000, vec![a_up()])],
            3_000_000,
            vec![a_up(), b_up()],
            &[("a", Some(START)), ("b", Some(3_000_000))],
        );
        // Each part of the state counts, and so does carrier_changes alone (a flap that was
        // over before the next look); nothing else does.
        for changed in [
            iface(2, "a", "down", true, 1),
            iface(2, "a", "up", false, 1),
            Interface {
                carrier: Some(false),
                ..a_up()
            },
            iface(2, "a", "up", true, 3),
        ] {
            check(
                vec![
                    Step::Listing(2_000_000, vec![a_up()]),
                    Step::Listing(2_500_000, vec![changed.clone()]),
                    Step::Listing(2_600_000, vec![changed.clone()]),
                ],
                2_700_000,
                vec![changed],
                &[("a", Some(2_500_000))],
            );
        }
        let renamed_mtu = Interface {
            mtu: Some(9000),
            address: b"02:00:00:00:00:01".to_vec(),
            ..a_up()
        };
        check(
            vec![
                Step::Listing(2_000_000, vec![a_up()]),
                event(2_500_000, renamed_mtu.clone()),
            ],
            2_700_000,
            vec![renamed_mtu],
            &[("a", Some(START))],
        );
        // Notifications stamp their receive time; the last change wins.
        check(
            vec![
                Step::Listing(START, vec![a_up(), b_up()]),
                event(2_000_001, iface(2, "a", "down", false, 2)),
                event(2_000_002, iface(3, "b", "lowerlayerdown", true, 2)),
                event(2_000_503, iface(2, "a", "up", true, 3)),
            ],
            2_100_000,
            vec![a_up(), b_up()],
            &[("a", Some(2_000_503)), ("b", Some(2_000_002))],
        );
        // A new name on a known index is a new interface; one without an index is known by
        // its name.
        check(
            vec![
                Step::Listing(START, vec![a_up()]),
                event(2_000_000, iface(2, "wan", "up", true, 1)),
            ],
            2_100_000,
            vec![
                iface(2, "wan", "up", true, 1),
                iface(2, "a", "up", true, 1),
                Interface {
                    ifindex: None,
                    ..b_up()
                },
            ],
            &[
                ("wan", Some(2_000_000)),
                ("a", Some(2_100_000)),
                ("b", Some(2_100_000)),
            ],
        );
        let unindexed = |name: &str, oper| Interface {
            ifindex: None,
            ..iface(0, name, oper, true, 1)
        };
        check(
            vec![
                Step::Listing(START, vec![unindexed("x", "up"), unindexed("y", "up")]),
                Step::Listing(
                    2_000_000,
                    vec![unindexed("x", "down"), unindexed("y", "up")],
                ),
            ],
            2_100_000,
            vec![unindexed("x", "down"), unindexed("y", "up")],
            &[("x", Some(2_000_000)), ("y", Some(START))],
        );
        // A resync stamps what differs from what it holds, and leaves the rest alone.
        check(
            vec![
                Step::Listing(START, vec![a_up(), b_up()]),
                Step::Listing(4_000_000, vec![a_up(), iface(3, "b", "down", false, 2)]),
            ],
            4_100_000,
            vec![a_up(), iface(3, "b", "down", false, 2)],
            &[("a", Some(START)), ("b", Some(4_000_000))],
        );
        // An interface deleted and created again under the same index and name came back at
        // the time it was seen again.
        check(
            vec![
                Step::Listing(START, vec![a_up()]),
                Step::Gone(2),
                event(3_000_000, a_up()),
            ],
            3_100_000,
            vec![a_up()],
            &[("a", Some(3_000_000))],
        );
    }

    #[test]
    fn entries_follow_the_interfaces_there_are() {
        let mut state = State::new(START);
        for round in 0..50u64 {
            let ifaces: Vec<Interface> = (0..100)
                .map(|n| iface(round * 1000 + n, &format!("v{round}-{n}"), "up", true, 1))
                .collect();
            state.listing(&ifaces, START + round);
            assert_eq!(state.links.len(), 100);
            for i in &ifaces[..50] {
                state.gone(i.ifindex.unwrap_or(0));
            }
            assert_eq!(state.links.len(), 50);
        }
        let unindexed: Vec<Interface> = (0..100)
            .map(|n| Interface {
                ifindex: None,
                ..iface(0, &format!("u{n}"), "up", true, 1)
            })
            .collect();
        state.listing(&unindexed, START + 100);
        assert_eq!((state.links.len(), state.unindexed.len()), (0, 100));
        state.listing::<Interface>(&[], START + 101);
        assert!(state.links.is_empty() && state.unindexed.is_empty());
    }

    #[test]
    fn stamps_are_found_in_any_order() {
        // Entries at every third index up to 600, each stamped with its index; a renamed one.
        let mut state = State::new(START);
        let known: Vec<Interface> = (0..200)
            .map(|n| iface(3 * n, &format!("k{n}"), "up", true, 1))
            .collect();
        state.listing(&known, START);
        for (n, entry) in &mut state.links {
            entry.stamp_ms = START + n;
        }
        state.note(&iface(30, "renamed", "up", true, 1), START + 7);
        let expected = |i: &Interface| match i.ifindex {
            Some(30) if i.name == b"renamed" => START + 7,
            Some(n)
                if n % 3 == 0
                    && n < 600
                    && n != 30
                    && i.name == format!("k{}", n / 3).as_bytes() =>
            {
                START + n
            }
            _ => START + 9,
        };
        let mut rng = crate::fuzz::Rng(0x5eed_1f11);
        for round in 0..300 {
            // Known, unknown and renamed interfaces, ascending, descending or shuffled, with
            // runs and gaps of every length.
            let mut probe: Vec<Interface> = (0..rng.below(300))
                .map(|_| {
                    let n = rng.below(650) as u64;
                    let name = match rng.below(8) {
                        0 => "other".to_owned(),
                        1 => "renamed".to_owned(),
                        _ => format!("k{}", n / 3),
                    };
                    iface(n, &name, "up", true, 1)
                })
                .collect();
            match round % 3 {
                0 => probe.sort_by_key(|i| i.ifindex),
                1 => probe.sort_by_key(|i| std::cmp::Reverse(i.ifindex)),
                _ => {}
            }
            state.fill(&mut probe, START + 9);
            for i in &probe {
                assert_eq!(
                    i.last_change_ms,
                    Some(expected(i)),
                    "{:?} {}",
                    i.ifindex,
                    round
                );
            }
        }
    }

    #[test]
    fn scans_are_compared_until_a_subscription_takes_over() {
        let tracker = Tracker::new(START);
        assert!(tracker.compares_scans());
        let mut scan = Scan::default();
        scan.interfaces = vec![Box::new(iface(2, "a", "up", true, 1))];
        tracker.observe(&mut scan, 2_000_000);
        assert_eq!(scan.interfaces[0].last_change_ms, Some(START));
        scan.interfaces = vec![Box::new(iface(2, "a", "down", false, 2))];
        tracker.observe(&mut scan, 3_000_000);
        assert_eq!(scan.interfaces[0].last_change_ms, Some(3_000_000));
        // With notifications in charge a scan only reads: its state may be older than theirs.
        tracker.lock().events = true;
        scan.interfaces = vec![Box::new(iface(2, "a", "up", true, 3))];
        tracker.observe(&mut scan, 4_000_000);
        assert_eq!(scan.interfaces[0].last_change_ms, Some(3_000_000));
        tracker.stop_events();
        tracker.observe(&mut scan, 5_000_000);
        assert_eq!(scan.interfaces[0].last_change_ms, Some(5_000_000));
    }
}
