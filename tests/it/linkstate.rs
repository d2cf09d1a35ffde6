//! Link-state families on real kernel interfaces (veth pairs in a namespace of the test's own)
//! and on fixture trees for every attribute quirk; both exposition formats checked by
//! independent parsers.

use std::process::Command;

use crate::util::*;

/// A namespace with a veth pair `ie-a` <-> `ie-b`, both up, and the exporter inside it.
struct Pair {
    ns: Netns,
}

impl Pair {
    fn new() -> Result<Pair> {
        let ns = Netns::with_pair()?;
        Ok(Pair { ns })
    }

    fn scrape(&self, exp: &Exporter) -> Result<String> {
        let r = self.ns.get(exp, "/metrics")?;
        assert_eq!(r.status, 200);
        Ok(r.text())
    }

    /// Scrapes until `series` has `value`, within the deadline.
    fn wait_value(&self, exp: &Exporter, series: &str, value: &str) -> Result<String> {
        wait_for(&format!("{series} = {value}"), DEADLINE, || {
            let body = self.scrape(exp).ok()?;
            (sample(&body, series).as_deref() == Some(value)).then_some(body)
        })
    }
}

/// Runs `body` with each source, each time on a fresh pair, so that no source sees what the
/// run before it did to the links.
fn for_each_pair(body: impl Fn(&str, Pair) -> Result) -> Result {
    for_each_source(|source| body(source, Pair::new()?))
}

fn counter(body: &str, series: &str) -> Result<u64> {
    Ok(sample(body, series)
        .ok_or_else(|| format!("no {series}"))?
        .parse()?)
}

#[test]
fn a_peer_set_down_turns_the_other_end_lowerlayerdown() -> Result {
    for_each_pair(|source, p| {
        let exp = p.ns.exporter(&[source])?;
        let up = p.wait_value(&exp, "interface_status{interface=\"ie-a\"}", "1")?;
        assert_samples(
            &up,
            &[
                ("interface_carrier{interface=\"ie-a\"}", Some("1")),
                ("interface_admin_up{interface=\"ie-a\"}", Some("1")),
                // veth reports 10 Gb/s.
                (
                    "interface_speed_bytes{interface=\"ie-a\"}",
                    Some("1250000000"),
                ),
                ("interface_mtu_bytes{interface=\"ie-a\"}", Some("1500")),
                // Loopback is `unknown`: 2 for the seed, and its own series for operators.
                ("interface_status{interface=\"lo\"}", Some("2")),
                (
                    "interface_oper_state{interface=\"lo\",state=\"unknown\"}",
                    Some("1"),
                ),
            ],
        );

        p.ns.ip("link set ie-b down")?;
        let down = p.wait_value(
            &exp,
            "interface_oper_state{interface=\"ie-a\",state=\"lowerlayerdown\"}",
            "1",
        )?;
        assert_samples(
            &down,
            &[
                ("interface_status{interface=\"ie-a\"}", Some("2")),
                (
                    "interface_oper_state{interface=\"ie-a\",state=\"up\"}",
                    Some("0"),
                ),
                ("interface_admin_up{interface=\"ie-a\"}", Some("1")),
                ("interface_carrier{interface=\"ie-a\"}", Some("0")),
                // The admin-down end: admin_up 0, and the kernel refuses carrier and speed
                // (EINVAL), which gives no sample rather than a wrong one or an error.
                ("interface_status{interface=\"ie-b\"}", Some("0")),
                ("interface_admin_up{interface=\"ie-b\"}", Some("0")),
                ("interface_carrier{interface=\"ie-b\"}", None),
                ("interface_speed_bytes{interface=\"ie-b\"}", None),
                ("interfaces_exporter_scrape_errors", Some("0")),
            ],
        );
        Ok(())
    })
}

#[test]
fn flaps_between_scrapes_are_counted() -> Result {
    for_each_source(|source| {
        const FLAPS: u64 = 5;
        let p = Pair::new()?;
        let exp = p.ns.exporter(&[source])?;
        let before = p.wait_value(&exp, "interface_carrier{interface=\"ie-a\"}", "1")?;
        let a = |name: &str| format!("{name}{{interface=\"ie-a\"}}");
        let changes = counter(&before, &a("interface_carrier_changes_total"))?;
        let ups = counter(&before, &a("interface_carrier_up_changes_total"))?;
        let downs = counter(&before, &a("interface_carrier_down_changes_total"))?;
        for _ in 0..FLAPS {
            p.ns.ip("link set ie-b down")?;
            p.ns.ip("link set ie-b up")?;
        }
        let after = p.wait_value(&exp, "interface_carrier{interface=\"ie-a\"}", "1")?;
        let changes2 = counter(&after, &a("interface_carrier_changes_total"))?;
        assert!(changes2 >= changes + 2 * FLAPS, "{changes} -> {changes2}");
        assert!(counter(&after, &a("interface_carrier_up_changes_total"))? >= ups + FLAPS);
        assert!(counter(&after, &a("interface_carrier_down_changes_total"))? >= downs + FLAPS);
        Ok(())
    })
}

#[test]
fn aliases_and_addresses_come_back_escaped() -> Result {
    for_each_pair(|source, p| {
        p.ns.ip("link set ie-a address 02:00:00:00:00:0a")?;
        run(Command::new("ip").args([
            "-n",
            &p.ns.name,
            "link",
            "set",
            "ie-a",
            "alias",
            "uplink \"core\" \\ rack 7",
        ]))?;
        let exp = p.ns.exporter(&[source])?;
        let body = p.wait_value(&exp, "interface_status{interface=\"ie-a\"}", "1")?;
        let info = body
            .lines()
            .find(|l| l.starts_with("interface_info{interface=\"ie-a\""))
            .ok_or("no interface_info for ie-a")?;
        let ifindex = run(p.ns.cmd("cat").arg("/sys/class/net/ie-a/ifindex"))?;
        // sysfs cannot tell a veth by its uevent; netlink names the kind.
        let kind = if source.ends_with("sysfs") {
            ""
        } else {
            "veth"
        };
        assert_eq!(
            info,
            format!(
                "interface_info{{interface=\"ie-a\",address=\"02:00:00:00:00:0a\",duplex=\"full\",ifalias=\"uplink \\\"core\\\" \\\\ rack 7\",operstate=\"up\",ifindex=\"{}\",type=\"ether\",kind=\"{kind}\",master=\"\"}} 1",
                ifindex.trim()
            )
        );
        Ok(())
    })
}

#[test]
fn include_and_exclude_filters() -> Result {
    for_each_pair(|source, p| {
        p.ns.ip("link add ie-c type veth peer name other0")?;
        let exp = p.ns.exporter(&[
            "--interfaces.include=ie-*",
            "--interfaces.include=lo",
            "--interfaces.exclude=ie-[bc]",
            source,
        ])?;
        let body = p.scrape(&exp)?;
        let names: Vec<&str> = body
            .lines()
            .filter_map(|l| l.strip_prefix("interface_status{interface=\""))
            .filter_map(|l| l.split('"').next())
            .collect();
        assert_eq!(names, ["ie-a", "lo"]);
        assert!(!body.contains("\"ie-b\"") && !body.contains("\"other0\""));
        Ok(())
    })
}

#[test]
fn statistics_only_when_asked() -> Result {
    for_each_pair(|source, p| {
        let plain = p.ns.exporter(&[source])?;
        assert!(!p.scrape(&plain)?.contains("interface_receive_bytes_total"));
        drop(plain);
        let exp = p.ns.exporter(&["--collector.statistics", source])?;
        let read = |attr: &str| -> Result<u64> {
            let out = run(p
                .ns
                .cmd("cat")
                .arg(format!("/sys/class/net/ie-a/statistics/{attr}")))?;
            Ok(out.trim().parse()?)
        };
        for (attr, family) in [
            ("rx_bytes", "interface_receive_bytes_total"),
            ("rx_packets", "interface_receive_packets_total"),
            ("rx_errors", "interface_receive_errors_total"),
            ("rx_dropped", "interface_receive_dropped_total"),
            ("tx_bytes", "interface_transmit_bytes_total"),
            ("tx_packets", "interface_transmit_packets_total"),
            ("tx_errors", "interface_transmit_errors_total"),
            ("tx_dropped", "interface_transmit_dropped_total"),
        ] {
            let low = read(attr)?;
            let body = p.scrape(&exp)?;
            let high = read(attr)?;
            let v = counter(&body, &format!("{family}{{interface=\"ie-a\"}}"))?;
            assert!(low <= v && v <= high, "{family}: {low} <= {v} <= {high}");
            assert!(body.contains(&format!("# TYPE {family} counter\n")));
        }
        Ok(())
    })
}

/// A fixture interface with every quirk the kernel has, rendered whole in both formats.
fn quirks() -> Result<Fixture> {
    let f = Fixture::new()?;
    let eth0 = f.ethernet("eth0", "up")?;
    // The link facts, and every counter sysfs has, each with a value of its own.
    for (attr, value) in [
        ("ifindex", "2"),
        ("type", "1"),
        ("tx_queue_len", "1000"),
        ("uevent", "INTERFACE=eth0\nIFINDEX=2\n"),
    ] {
        std::fs::write(eth0.join(attr), format!("{value}\n"))?;
    }
    for (n, stat) in [
        "multicast",
        "collisions",
        "rx_length_errors",
        "rx_over_errors",
        "rx_crc_errors",
        "rx_frame_errors",
        "rx_fifo_errors",
        "rx_missed_errors",
        "tx_aborted_errors",
        "tx_carrier_errors",
        "tx_fifo_errors",
        "tx_heartbeat_errors",
        "tx_window_errors",
        "rx_compressed",
        "tx_compressed",
        "rx_nohandler",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(eth0.join("statistics").join(stat), format!("{}\n", 101 + n))?;
    }
    // A bridge, told by its uevent, with eth1 as its port: promiscuous through the bridge.
    f.iface(
        "br0",
        &[
            ("operstate", "up"),
            ("flags", "0x1003"),
            ("ifindex", "4"),
            ("type", "1"),
            ("tx_queue_len", "1000"),
            ("uevent", "INTERFACE=br0\nIFINDEX=4\nDEVTYPE=bridge"),
        ],
    )?;
    // Admin down: hex flags without IFF_UP; carrier, speed and duplex refused. A regular file
    // cannot return EINVAL, so they are absent, which the kernel's ENOENT cases look like.
    let eth1 = f.iface(
        "eth1",
        &[
            ("operstate", "down"),
            ("flags", "0x1102"),
            ("carrier_changes", "0"),
            ("carrier_up_count", "0"),
            ("carrier_down_count", "0"),
            ("mtu", "9000"),
            ("address", "52:54:00:00:00:01"),
            ("ifalias", ""),
            ("type", "1"),
            ("tx_queue_len", "0"),
            ("uevent", "INTERFACE=eth1\nIFINDEX=3\nDEVTYPE=wlan"),
        ],
    )?;
    std::os::unix::fs::symlink("../br0", eth1.join("master"))?;
    // Speed unknown (-1), odd alias and duplex, a loopback-like unknown state, no link layer.
    f.iface(
        "tun0",
        &[
            ("operstate", "unknown"),
            ("flags", "0x10d1"),
            ("carrier", "1"),
            ("mtu", "1420"),
            ("speed", "-1"),
            ("duplex", "unknown"),
            ("ifalias", "wg \"to\" <hq> \\ 1"),
            ("address", ""),
            ("type", "65534"),
            ("tx_queue_len", "500"),
        ],
    )?;
    // Faults: a non-numeric mtu, a flags value without 0x, a carrier of 2, an attribute that is
    // a directory, a huge one, and a symlink loop that returns ELOOP; a type iproute2 has no
    // name for, a type past 16 bits, a master link that leads out of the root to something
    // that is no interface, and one that names no interface at all.
    let bad = f.iface(
        "bad0",
        &[
            ("operstate", "dormant"),
            ("flags", "1003"),
            ("carrier", "2"),
            ("mtu", "lots"),
            ("type", "519"),
            ("tx_queue_len", "-1"),
        ],
    )?;
    std::fs::create_dir(bad.join("speed"))?;
    std::fs::write(bad.join("ifalias"), "x".repeat(10_000))?;
    std::os::unix::fs::symlink("carrier_changes", bad.join("carrier_changes"))?;
    std::os::unix::fs::symlink("../../../../../../../etc", bad.join("master"))?;
    let bad1 = f.iface(
        "bad1",
        &[("operstate", "down"), ("type", "65536"), ("flags", "0x0")],
    )?;
    std::os::unix::fs::symlink("..", bad1.join("master"))?;
    Ok(f)
}

fn without_duration(body: &str) -> String {
    // The start time differs from run to run, and on a tree that never changes every last
    // change equals it: each such value reads START, any other stays and differs.
    let start = sample(body, "interfaces_exporter_start_time_seconds").unwrap_or_default();
    body.lines()
        .filter(|l| !l.starts_with("interfaces_exporter_scrape_duration_seconds "))
        .map(|l| match l.strip_suffix(start.as_str()) {
            Some(head) if !start.is_empty() && head.ends_with(' ') => format!("{head}START\n"),
            _ => format!("{l}\n"),
        })
        .collect()
}

#[track_caller]
fn check_golden(name: &str, actual: &str) -> Result {
    let path = repo().join("tests/it/golden").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual)?;
    }
    let golden = std::fs::read_to_string(&path)?;
    assert_eq!(
        actual, golden,
        "{name} differs; refresh with UPDATE_GOLDEN=1 if intended"
    );
    Ok(())
}

const OPENMETRICS: &str =
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1";

fn scrape_as(exp: &Exporter, accept: &str) -> Result<Response> {
    request(
        exp.addr,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: {accept}\r\nConnection: close\r\n\r\n"
        ),
    )
}

#[test]
fn every_attribute_quirk_in_both_formats() -> Result {
    let f = quirks()?;
    let exp = Exporter::start(&[&f.flag(), "--collector.statistics"])?;
    let text = scrape_as(&exp, "text/plain")?;
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    check_golden("quirks.txt", &without_duration(&text.text()))?;
    let om = scrape_as(&exp, OPENMETRICS)?;
    assert_eq!(
        om.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    check_golden("quirks.om.txt", &without_duration(&om.text()))?;
    // The same series in both formats.
    let series = |body: &str| -> Vec<String> {
        let mut v: Vec<String> = body
            .lines()
            .filter(|l| {
                !l.starts_with('#') && !l.starts_with("interfaces_exporter_scrape_duration")
            })
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(series(&text.text()), series(&om.text()));
    Ok(())
}

fn check_with(program: &str, args: &[&str], input: &[u8]) -> Result<String> {
    let out = pipe(Command::new(program).args(args), input)
        .map_err(|e| format!("{program} {args:?} rejected the body: {e}"))?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    ))
}

/// Parses OpenMetrics strictly with the prometheus_client package (Debian's
/// python3-prometheus-client), and prints the families it found.
const OM_PARSER: &str = r#"
import sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    print(family.name, family.type, len(family.samples))
"#;

#[test]
fn independent_parsers_accept_both_formats() -> Result {
    for_each_pair(|source, p| {
        let exp = p.ns.exporter(&["--collector.statistics", source])?;
        p.wait_value(&exp, "interface_carrier{interface=\"ie-a\"}", "1")?;
        let f = quirks()?;
        let fixture_exp = Exporter::start(&[&f.flag(), "--collector.statistics"])?;
        let om_real = run(p
            .ns
            .cmd("curl")
            .args(["-s", "-H", &format!("Accept: {OPENMETRICS}")])
            .arg(format!("http://{}/metrics", exp.addr)))?;
        let om_fixture = scrape_as(&fixture_exp, OPENMETRICS)?.text();
        for body in [&om_real, &om_fixture] {
            let families = check_with("/usr/bin/python3", &["-c", OM_PARSER], body.as_bytes())?;
            assert!(
                families.contains("interface_carrier_changes counter"),
                "{families}"
            );
            assert!(families.contains("interface info"), "{families}");
            assert!(families.contains("interface_status unknown"), "{families}");
        }
        let text_real = p.scrape(&exp)?;
        let text_fixture = scrape_as(&fixture_exp, "text/plain")?.text();
        for body in [&text_real, &text_fixture] {
            check_with("promtool", &["check", "metrics"], body.as_bytes())?;
        }
        Ok(())
    })
}
