//! `interface_last_change_timestamp_seconds` against flaps made at known times: veth pairs in a
//! namespace of the test's own, the wall-clock time taken just before and after each
//! `ip link set`, with both sources; a burst that overflows a small event buffer; and memory
//! while a thousand interfaces come and go.

use std::fmt::Write as _;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::util::*;

const NETLINK: &str = "--collector.source=netlink";

/// How far a netlink stamp may be from the `ip` call that made the change, on a loaded machine.
const NETLINK_SLACK_MS: u64 = 250;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Parses `1732854712.345` into milliseconds, exactly.
fn millis(value: &str) -> Option<u64> {
    let (secs, frac) = value.split_once('.')?;
    if frac.len() != 3 {
        return None;
    }
    Some(secs.parse::<u64>().ok()? * 1000 + frac.parse::<u64>().ok()?)
}

fn stamp(body: &str, iface: &str) -> Result<u64> {
    let series = format!("interface_last_change_timestamp_seconds{{interface=\"{iface}\"}}");
    let v = sample(body, &series).ok_or_else(|| format!("no {series} in\n{body}"))?;
    Ok(millis(&v).ok_or_else(|| format!("{series} {v} is not seconds.millis"))?)
}

fn start_time(body: &str) -> Result<u64> {
    let v = sample(body, "interfaces_exporter_start_time_seconds")
        .ok_or_else(|| format!("no start time in\n{body}"))?;
    Ok(millis(&v).ok_or("start time is not seconds.millis")?)
}

/// A namespace with the veth pair `ie-a` <-> `ie-b`, both up, and the exporter inside it.
struct Pair {
    ns: Netns,
    exp: Exporter,
}

impl Pair {
    fn new(args: &[&str]) -> Result<Pair> {
        let ns = Netns::with_pair()?;
        // Both up and settled before the exporter starts, so that no change of theirs
        // comes after its start.
        wait_for("the pair to be up", DEADLINE, || {
            let out = ns.ip("-br link").ok()?;
            (out.matches(" UP ").count() == 2).then_some(())
        })?;
        let exp = ns.exporter(args)?;
        Ok(Pair { ns, exp })
    }

    /// A scrape and the time its answer was in.
    fn scrape(&self) -> Result<(String, u64)> {
        let r = self.ns.get(&self.exp, "/metrics")?;
        assert_eq!(r.status, 200, "{}", r.text());
        Ok((r.text(), now_ms()))
    }

    /// Scrapes until `done` holds of the body; returns it with the time it was in.
    fn scrape_until(&self, what: &str, done: impl Fn(&str) -> bool) -> Result<(String, u64)> {
        wait_for(what, DEADLINE, || {
            let (body, at) = self.scrape().ok()?;
            done(&body).then_some((body, at))
        })
    }

    /// Runs `ip link set <args>` and returns the times just before and just after.
    fn set(&self, args: &str) -> Result<(u64, u64)> {
        let before = now_ms();
        self.ns.ip(&format!("link set {args}"))?;
        Ok((before, now_ms()))
    }
}

fn has(body: &str, iface: &str, state: &str) -> bool {
    let series = format!("interface_oper_state{{interface=\"{iface}\",state=\"{state}\"}}");
    sample(body, &series).as_deref() == Some("1")
}

/// Checks a stamp against the change it should time: not before the `ip` call started, and
/// for netlink within the slack of its end, for sysfs not after the scrape that saw it.
#[track_caller]
fn check_timed(source: &str, what: &str, stamp: u64, (before, after): (u64, u64), seen: u64) {
    assert!(
        stamp >= before,
        "{what}: stamp {stamp} before the change at {before}"
    );
    let latest = if source == NETLINK {
        after + NETLINK_SLACK_MS
    } else {
        seen
    };
    assert!(
        stamp <= latest,
        "{what}: stamp {stamp} later than {latest} (change {before}..{after}, seen {seen})"
    );
    eprintln!(
        "{source} {what}: stamped {} ms into an ip call of {} ms, {} ms after it returned",
        stamp - before,
        after - before,
        stamp.saturating_sub(after)
    );
}

/// Runs `body` with each source, each time on a fresh pair watched by that source.
fn for_each_pair(body: impl Fn(&str, Pair) -> Result) -> Result {
    for_each_source(|source| body(source, Pair::new(&[source])?))
}

#[test]
fn flaps_are_timed() -> Result {
    let _quiet = rtnl_quiet();
    for_each_pair(|source, p| {
        let (body, _) = p.scrape_until("ie-a up", |b| has(b, "ie-a", "up"))?;
        // Nothing changed since the start: every interface says "at least since the start".
        let start = start_time(&body)?;
        for iface in ["lo", "ie-a", "ie-b"] {
            assert_eq!(stamp(&body, iface)?, start, "{iface}\n{body}");
        }

        // Down: ie-b admin down, and with it ie-a's carrier and oper state.
        let down = p.set("ie-b down")?;
        let (body, seen) = p.scrape_until("ie-a lowerlayerdown", |b| {
            has(b, "ie-a", "lowerlayerdown") && has(b, "ie-b", "down")
        })?;
        check_timed(source, "ie-b down", stamp(&body, "ie-b")?, down, seen);
        check_timed(
            source,
            "ie-a carrier lost",
            stamp(&body, "ie-a")?,
            down,
            seen,
        );
        assert_eq!(stamp(&body, "lo")?, start);

        // Up again.
        let up = p.set("ie-b up")?;
        let (body, seen) =
            p.scrape_until("ie-a up", |b| has(b, "ie-a", "up") && has(b, "ie-b", "up"))?;
        check_timed(source, "ie-b up", stamp(&body, "ie-b")?, up, seen);
        check_timed(source, "ie-a carrier back", stamp(&body, "ie-a")?, up, seen);

        // A flap that is over before the next scrape: the state is what it was, but it changed.
        let (_, last) = p.scrape()?;
        let (before, _) = p.set("ie-b down")?;
        let (_, after) = p.set("ie-b up")?;
        let (body, seen) = p.scrape_until("ie-a up after the flap", |b| {
            has(b, "ie-a", "up") && has(b, "ie-b", "up")
        })?;
        assert!(last <= before);
        for iface in ["ie-a", "ie-b"] {
            check_timed(
                source,
                &format!("{iface} flap between scrapes"),
                stamp(&body, iface)?,
                (before, after),
                seen,
            );
        }
        assert_eq!(stamp(&body, "lo")?, start);
        assert_eq!(start_time(&body)?, start);
        Ok(())
    })
}

#[test]
fn an_interface_added_later_carries_the_time_it_appeared() -> Result {
    let _quiet = rtnl_quiet();
    for_each_pair(|source, p| {
        let (body, _) = p.scrape_until("ie-a up", |b| has(b, "ie-a", "up"))?;
        let start = start_time(&body)?;
        let before = now_ms();
        p.ns.ip("link add ie-c type veth peer name ie-d")?;
        let added = (before, now_ms());
        let (body, seen) = p.scrape_until("ie-c", |b| b.contains("{interface=\"ie-c\"}"))?;
        assert!(start < added.0);
        check_timed(source, "ie-c appeared", stamp(&body, "ie-c")?, added, seen);
        assert_eq!(stamp(&body, "ie-a")?, start);
        Ok(())
    })
}

#[test]
fn a_refused_subscription_falls_back_to_comparing_scans_with_one_warning() -> Result {
    let seccomp = repo().join("tests/it/seccomp.py");
    let ns = Netns::with_pair()?;
    // Only the subscription asks for a receive buffer: the dump socket and the listener work.
    let mut cmd = ns.cmd("python3");
    cmd.arg(&seccomp)
        .args(["setsockopt:SO_RCVBUF=EPERM", "--", BIN])
        .args(["--web.listen-address=127.0.0.1:0", NETLINK]);
    let exp = Exporter::spawn(&mut cmd)?;
    let p = Pair { ns, exp };
    let (_, last) = p.scrape_until("ie-a up", |b| has(b, "ie-a", "up"))?;
    let (before, _) = p.set("ie-b down")?;
    let (_, after) = p.set("ie-b up")?;
    let (body, seen) = p.scrape_until("ie-a up after the flap", |b| has(b, "ie-a", "up"))?;
    assert!(last <= before);
    // Timed by comparing scans: the scrape that saw it.
    check_timed(
        "sysfs",
        "ie-a flap",
        stamp(&body, "ie-a")?,
        (before, after),
        seen,
    );
    let log = p.exp.log();
    assert_eq!(log.matches("cannot watch link events").count(), 1, "{log}");
    assert!(log.contains("source=netlink"), "{log}");
    Ok(())
}

/// Writes `lines` to a file and runs them with `ip -n <ns> -batch`.
fn batch(ns: &Netns, dir: &TempDir, name: &str, lines: &str) -> Result {
    let file = dir.0.join(name);
    std::fs::write(&file, lines)?;
    run(Command::new("ip")
        .args(["-n", &ns.name, "-batch"])
        .arg(&file))?;
    Ok(())
}

#[test]
fn an_overflow_is_resynced_and_stamps_only_what_changed() -> Result {
    let _quiet = rtnl_quiet();
    const FLAPPED: usize = 220;
    const STILL: usize = 10;
    let ns = Netns::new()?;
    let dir = TempDir::new()?;
    let mut setup = String::new();
    for i in 0..FLAPPED + STILL {
        let (a, b) = if i < FLAPPED {
            (format!("ie-f{i}"), format!("ie-g{i}"))
        } else {
            (format!("ie-s{i}"), format!("ie-t{i}"))
        };
        writeln!(setup, "link add {a} type veth peer name {b}")?;
        writeln!(setup, "link set {a} up")?;
        writeln!(setup, "link set {b} up")?;
    }
    batch(&ns, &dir, "setup", &setup)?;
    wait_for("every pair up", DEADLINE, || {
        let out = ns.ip("-br link").ok()?;
        (out.matches(" UP ").count() == 2 * (FLAPPED + STILL)).then_some(())
    })?;
    // The smallest buffer the flag takes: the kernel books about 2 KiB, room for one
    // notification.
    let exp = ns.exporter(&[NETLINK, "--collector.netlink.events-buffer=1024"])?;
    let p = Pair { ns, exp };
    let (body, _) = p.scrape_until("every pair up", |b| {
        has(b, "ie-f0", "up") && has(b, &format!("ie-t{}", FLAPPED + STILL - 1), "up")
    })?;
    let start = start_time(&body)?;
    assert_eq!(stamp(&body, "ie-f0")?, start);

    // One end of each flapped pair down at once: two notifications or more per interface,
    // for 440 interfaces, far beyond the buffer.
    let down: String = (0..FLAPPED)
        .map(|i| format!("link set ie-f{i} down\n"))
        .collect();
    let before = now_ms();
    batch(&p.ns, &dir, "down", &down)?;
    let after = now_ms();
    let last = format!("ie-g{}", FLAPPED - 1);
    let (body, seen) = p.scrape_until("every flapped pair down", |b| {
        (0..FLAPPED).all(|i| {
            has(b, &format!("ie-f{i}"), "down") && has(b, &format!("ie-g{i}"), "lowerlayerdown")
        }) && stamp(b, &last).is_ok_and(|s| s != start)
    })?;
    let log = p.exp.log();
    assert!(
        log.contains("link events overflowed the receive buffer, resyncing"),
        "no overflow:\n{log}"
    );
    let mut late = 0;
    for i in 0..FLAPPED {
        for iface in [format!("ie-f{i}"), format!("ie-g{i}")] {
            let s = stamp(&body, &iface)?;
            // Stamped by a notification or by the resync, never before the change and never
            // after the scrape that showed it.
            assert!(
                s >= before && s <= seen,
                "{iface}: {s} outside {before}..{seen}"
            );
            if s > after {
                late += 1;
            }
        }
    }
    eprintln!(
        "overflow: the batch took {} ms, {late} stamps after it, seen {} ms after it",
        after - before,
        seen - after
    );
    for i in FLAPPED..FLAPPED + STILL {
        for iface in [format!("ie-s{i}"), format!("ie-t{i}")] {
            assert_eq!(stamp(&body, &iface)?, start, "{iface} did not change");
        }
    }
    assert_eq!(stamp(&body, "lo")?, start);
    Ok(())
}

#[test]
fn memory_stays_flat_while_interfaces_come_and_go() -> Result {
    let _quiet = rtnl_quiet();
    for_each_source(|source| {
        const PAIRS: usize = 500;
        const ROUNDS: usize = 4;
        /// RSS may wander by allocator noise; the tracker keeping the entries of a round's
        /// thousand gone interfaces would add over 100 KiB per round.
        const SLACK_KIB: u64 = 192;
        let ns = Netns::new()?;
        let dir = TempDir::new()?;
        let exp = ns.exporter(&[source])?;
        let pid = exp.pid();
        let p = Pair { ns, exp };
        let add: String = (0..PAIRS)
            .map(|i| format!("link add ie-m{i} type veth peer name ie-n{i}\nlink set ie-m{i} up\n"))
            .collect();
        let del: String = (0..PAIRS).map(|i| format!("link del ie-m{i}\n")).collect();
        let mut after_round = Vec::new();
        for round in 0..ROUNDS {
            batch(&p.ns, &dir, "add", &add)?;
            let last = format!("{{interface=\"ie-n{}\"}}", PAIRS - 1);
            p.scrape_until("all pairs", |b| b.contains(&last))?;
            batch(&p.ns, &dir, "del", &del)?;
            p.scrape_until("no pairs", |b| !b.contains("ie-m"))?;
            let rss = vm_rss_kib(pid).ok_or("no VmRSS")?;
            let hwm = vm_hwm_kib(pid).ok_or("no VmHWM")?;
            eprintln!("{source} round {round}: VmRSS {rss} KiB, VmHWM {hwm} KiB");
            after_round.push((rss, hwm));
        }
        // The first round sets the high-water mark (a scan of a thousand interfaces); later
        // rounds of the same size must not raise it, nor the resident set they leave behind.
        let (rss1, hwm1) = after_round[1];
        let (rss, hwm) = after_round[ROUNDS - 1];
        assert!(
            rss <= rss1 + SLACK_KIB && hwm <= hwm1 + SLACK_KIB,
            "{source}: grew from {after_round:?}"
        );
        Ok(())
    })
}
