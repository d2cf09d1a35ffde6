//! The netlink source against the sysfs source on real interfaces, and `--collector.source=auto`
//! choosing between them in each layout it must tell apart.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};

use crate::util::*;

const SYSFS: &str = "--collector.source=sysfs";
const NETLINK: &str = "--collector.source=netlink";

/// A namespace holding one of every kind of interface the test machine can make.
fn zoo() -> Result<Netns> {
    let ns = Netns::new()?;
    for cmd in [
        // Up and running, with a jumbo MTU.
        "link add ie-up type veth peer name ie-up-peer",
        "link set ie-up mtu 9000",
        "link set ie-up up",
        "link set ie-up-peer up",
        // Up, its peer down: lowerlayerdown.
        "link add ie-lld type veth peer name ie-lld-peer",
        "link set ie-lld up",
        // Both ends down.
        "link add ie-down type veth peer name ie-down-peer",
        // A bridge and its port.
        "link add ie-br type bridge",
        "link add ie-port type veth peer name ie-port-peer",
        "link set ie-port master ie-br",
        "link set ie-port up",
        "link set ie-port-peer up",
        "link set ie-br up",
        "link add ie-mv link ie-up type macvlan mode bridge",
        "link set ie-mv up",
        "link add ie-vx type vxlan id 42 dstport 4789 local 127.0.0.1",
        "link set ie-vx up",
        "link add ie-ifb type ifb",
        "link set ie-ifb up",
        // A tap has an Ethernet address; a tun has none, which sysfs prints as an empty line.
        "tuntap add ie-tap mode tap",
        "link set ie-tap up",
        "tuntap add ie-tun mode tun",
        "link set ie-tun up",
        // Promiscuous because a user asked (the bridge port is, because its bridge asked), and
        // transmit queues that are not the default.
        "link set ie-up-peer promisc on",
        "link set ie-down txqueuelen 77",
        "link set ie-lld txqueuelen 0",
    ] {
        ns.ip(cmd)?;
    }
    run(Command::new("ip").args([
        "-n",
        &ns.name,
        "link",
        "set",
        "ie-up",
        "alias",
        "uplink \"core\" \\ rack\nnext line",
    ]))?;
    Ok(ns)
}

/// Counters that traffic moves between two scrapes: compared by order, not equality.
fn is_traffic(line: &str) -> bool {
    (line.starts_with("interface_receive_") || line.starts_with("interface_transmit_"))
        && line.contains("_total{")
}

/// The one counter sysfs has no file for: netlink's samples of it are set aside.
const NETLINK_ONLY: &str = "interface_receive_otherhost_dropped_total{";

/// `series` with its `kind` label emptied, when it is an `interface_info` series: the one value
/// sysfs may not tell (a veth, macvlan or tun has no `DEVTYPE`).
fn kind_aside(series: &str) -> Option<String> {
    let rest = series.strip_prefix("interface_info{")?;
    let (before, after) = rest.split_once(",kind=\"")?;
    let (_, tail) = after.split_once("\",master=\"")?;
    Some(format!(
        "interface_info{{{before},kind=\"\",master=\"{tail}"
    ))
}

/// `series -> value` of every `interface_*` sample.
fn samples(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter(|l| l.starts_with("interface_"))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.to_owned()))
        })
        .collect()
}

/// Scrapes sysfs, netlink, sysfs, and requires every netlink sample to equal the sysfs one,
/// traffic counters to lie between the two sysfs values.
fn compare_sources(
    ns: &Netns,
    sysfs: &Exporter,
    netlink: &Exporter,
) -> std::result::Result<usize, String> {
    let scrape = |exp: &Exporter| -> std::result::Result<String, String> {
        let r = ns.get(exp, "/metrics").map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!("status {}: {}", r.status, r.text()));
        }
        Ok(r.text())
    };
    let s1 = samples(&scrape(sysfs)?);
    let mut n = samples(&scrape(netlink)?);
    let s2 = samples(&scrape(sysfs)?);
    // Set aside what sysfs cannot have: rx_otherhost_dropped, and a kind it cannot tell.
    n.retain(|series, _| !series.starts_with(NETLINK_ONLY));
    let n: BTreeMap<String, String> = n
        .into_iter()
        .map(|(series, v)| match kind_aside(&series) {
            Some(aside) if !s1.contains_key(&series) && s1.contains_key(&aside) => (aside, v),
            _ => (series, v),
        })
        .collect();
    let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
    if names(&s1) != names(&n) {
        let only_s: Vec<_> = s1.keys().filter(|k| !n.contains_key(*k)).collect();
        let only_n: Vec<_> = n.keys().filter(|k| !s1.contains_key(*k)).collect();
        return Err(format!(
            "series differ: only sysfs {only_s:?}, only netlink {only_n:?}"
        ));
    }
    for (series, v) in &n {
        let (low, high) = (&s1[series], &s2[series]);
        // Each exporter times changes from its own start and by its own means (a scan, a
        // notification): the series must be there, its values are tested in since.rs.
        if series.starts_with("interface_last_change_timestamp_seconds{") {
            continue;
        }
        if is_traffic(series) {
            let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{series} {s}: {e}"));
            if !(num(low)? <= num(v)? && num(v)? <= num(high)?) {
                return Err(format!("{series}: {low} <= {v} <= {high} fails"));
            }
        } else if v != low {
            return Err(format!("{series}: sysfs {low}, netlink {v} (then {high})"));
        }
    }
    Ok(n.len())
}

fn both_sources_agree(as_nobody: bool) -> Result {
    let ns = zoo()?;
    let dir = TempDir::new()?;
    let bin = dir.0.join("interfaces_exporter");
    std::fs::copy(BIN, &bin)?;
    run(Command::new("chmod").args(["755"]).arg(&dir.0).arg(&bin))?;
    let start = |source: &str| -> Result<Exporter> {
        let mut cmd = if as_nobody {
            let mut c = ns.cmd("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(&bin);
            c
        } else {
            ns.cmd(BIN)
        };
        cmd.args([
            "--web.listen-address=127.0.0.1:0",
            "--collector.statistics",
            source,
        ]);
        Exporter::spawn(&mut cmd)
    };
    let sysfs = start(SYSFS)?;
    let netlink = start(NETLINK)?;
    if as_nobody {
        let status = std::fs::read_to_string(format!("/proc/{}/status", netlink.pid()))?;
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
        assert!(uid.contains("65534"), "not unprivileged: {uid}");
    }
    // Links settle (carrier, operstate) in the first moments: wait until the sources agree,
    // then require it of the last comparison.
    let mut last = String::new();
    let series =
        wait_for(
            "both sources to render the same lines",
            DEADLINE,
            || match compare_sources(&ns, &sysfs, &netlink) {
                Ok(n) => Some(n),
                Err(e) => {
                    last = e;
                    None
                }
            },
        )
        .map_err(|e| format!("{e}: {last}"))?;
    let body = ns.get(&netlink, "/metrics")?.text();
    let on_sysfs = ns.get(&sysfs, "/metrics")?.text();
    // The link facts each source must give, the same from both.
    let info = |body: &str, name: &str| -> Option<String> {
        let prefix = format!("interface_info{{interface=\"{name}\",");
        body.lines()
            .find(|l| l.starts_with(&prefix))
            .map(str::to_owned)
    };
    for (text, source, kinds) in [(&body, "netlink", true), (&on_sysfs, "sysfs", false)] {
        // (name, type, kind from netlink, kind from sysfs, master). The bridge's port names
        // its bridge; sysfs tells a bridge and a vxlan by their uevent, and only netlink knows
        // a veth, a macvlan, an ifb or a tun.
        for (name, ty, nl_kind, sys_kind, master) in [
            ("ie-port", "ether", "veth", "", "ie-br"),
            ("ie-br", "ether", "bridge", "bridge", ""),
            ("ie-vx", "ether", "vxlan", "vxlan", ""),
            ("ie-mv", "ether", "macvlan", "", ""),
            ("ie-ifb", "ether", "ifb", "", ""),
            ("ie-tap", "ether", "tun", "", ""),
            ("ie-tun", "none", "tun", "", ""),
            ("lo", "loopback", "", "", ""),
        ] {
            let line = info(text, name).ok_or_else(|| format!("{source}: no {name}:\n{text}"))?;
            let kind = if kinds { nl_kind } else { sys_kind };
            let facts = format!(",type=\"{ty}\",kind=\"{kind}\",master=\"{master}\"}} 1");
            assert!(
                line.ends_with(&facts),
                "{source}: {line} does not end in {facts}"
            );
            let ifindex = run(ns.cmd("cat").arg(format!("/sys/class/net/{name}/ifindex")))?;
            assert!(
                line.contains(&format!(",ifindex=\"{}\",", ifindex.trim())),
                "{source}: {line}"
            );
        }
        for expected in [
            // The port is promiscuous through its bridge, ie-up-peer because a user asked.
            "interface_promiscuous{interface=\"ie-port\"} 1",
            "interface_promiscuous{interface=\"ie-up-peer\"} 1",
            "interface_promiscuous{interface=\"ie-lld\"} 0",
            "interface_promiscuous{interface=\"ie-br\"} 0",
            "interface_transmit_queue_length{interface=\"ie-down\"} 77",
            "interface_transmit_queue_length{interface=\"ie-lld\"} 0",
            "interface_transmit_queue_length{interface=\"ie-up\"} 1000",
            "interface_transmit_queue_length{interface=\"ie-tun\"} 500",
            "interface_transmit_queue_length{interface=\"ie-ifb\"} 32",
            "interface_receive_crc_errors_total{interface=\"ie-port\"} 0",
            "interface_transmit_collisions_total{interface=\"ie-up\"} 0",
        ] {
            assert!(
                text.contains(expected),
                "{source}: {expected} missing:\n{text}"
            );
        }
        // Every counter of rtnl_link_stats64 is a family; rx_otherhost_dropped has samples
        // only from netlink.
        let families = text
            .lines()
            .filter(|l| l.starts_with("# TYPE interface_") && l.contains("_total counter"))
            .filter(|l| l.contains("_receive_") || l.contains("_transmit_"))
            .count();
        assert_eq!(families, 25, "{source}:\n{text}");
        assert_eq!(text.contains(NETLINK_ONLY), kinds, "{source}");
    }
    // What makes the comparison worth something: each kind was there, with its quirks.
    for expected in [
        "interface_mtu_bytes{interface=\"ie-up\"} 9000",
        "interface_oper_state{interface=\"ie-lld\",state=\"lowerlayerdown\"} 1",
        "interface_admin_up{interface=\"ie-down\"} 0",
        "interface_speed_bytes{interface=\"ie-up\"} 1250000000",
        "interface_info{interface=\"ie-up\",address=\"",
        "ifalias=\"uplink \\\"core\\\" \\\\ rack\\nnext line\"",
        "interface_info{interface=\"ie-tun\",address=\"\",",
        "interface_info{interface=\"lo\",address=\"00:00:00:00:00:00\",",
        "interface_status{interface=\"ie-vx\"}",
        "interface_status{interface=\"ie-mv\"}",
        "interface_status{interface=\"ie-ifb\"}",
        "interface_status{interface=\"ie-tap\"}",
        "interface_status{interface=\"ie-br\"}",
        "interface_receive_bytes_total{interface=\"ie-port\"}",
        "interfaces_exporter_scrape_errors 0",
    ] {
        assert!(body.contains(expected), "{expected} missing:\n{body}");
    }
    assert!(
        !body.contains("interface_carrier{interface=\"ie-down\""),
        "{body}"
    );
    eprintln!("netlink and sysfs agree on {series} series (as nobody: {as_nobody})");
    for exp in [&sysfs, &netlink] {
        assert!(exp.log().contains("source="), "{}", exp.log());
    }
    Ok(())
}

#[test]
fn both_sources_render_the_same_lines() -> Result {
    both_sources_agree(false)
}

#[test]
fn both_sources_render_the_same_lines_as_nobody() -> Result {
    both_sources_agree(true)
}

/// The `source=` and `reason=` of the exporter's start line.
fn chosen(exp: &Exporter) -> Result<(String, String)> {
    let log = exp.log();
    let line = log
        .lines()
        .find(|l| l.contains("msg=\"interface source chosen\""))
        .ok_or_else(|| format!("no source line:\n{log}"))?;
    let source = line
        .split(" source=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .ok_or("no source=")?;
    let reason = line.split(" reason=").nth(1).ok_or("no reason=")?;
    Ok((source.to_owned(), reason.to_owned()))
}

#[track_caller]
fn check_choice(exp: &Exporter, source: &str, reason: &str) -> Result {
    let (s, r) = chosen(exp)?;
    assert_eq!(s, source, "{}", exp.log());
    assert!(r.contains(reason), "{reason:?} not in {r:?}");
    Ok(())
}

/// Runs the exporter with `args` and returns its exit code and stderr, for start-up errors.
fn start_fails(cmd: &mut Command) -> Result<(Option<i32>, String)> {
    let out = cmd.stdin(Stdio::null()).output()?;
    Ok((
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

#[test]
fn auto_takes_netlink_in_its_own_namespace() -> Result {
    let ns = Netns::new()?;
    ns.ip("link add ie-a type veth peer name ie-b")?;
    ns.ip("link set ie-a up")?;
    let exp = ns.exporter(&[])?;
    check_choice(&exp, "netlink", "matches /sys/class/net (3 interfaces)")?;
    assert_eq!(ns.get(&exp, "/metrics")?.status, 200);
    Ok(())
}

#[test]
fn auto_keeps_sysfs_for_a_host_sysfs_seen_from_another_namespace() -> Result {
    // The host's sysfs bind-mounted where a container would have it, in a mount namespace of
    // the command's own; the exporter itself runs in a network namespace of the test's.
    let ns = Netns::new()?;
    ns.ip("link add ie-a type veth peer name ie-b")?;
    let dir = TempDir::new()?;
    let host_sys = dir.0.join("host-sys");
    std::fs::create_dir(&host_sys)?;
    let script = format!(
        "mount --bind /sys {sys} && exec ip netns exec {ns} {BIN} --web.listen-address=127.0.0.1:0 --path.sysfs={sys} \"$@\"",
        sys = host_sys.display(),
        ns = ns.name
    );
    let cmd = |extra: &[&str]| {
        let mut c = Command::new("unshare");
        c.args(["--mount", "sh", "-c", &script, "sh"]).args(extra);
        c
    };
    let exp = Exporter::spawn(&mut cmd(&[]))?;
    check_choice(&exp, "sysfs", "another network namespace")?;
    let body = ns.get(&exp, "/metrics")?.text();
    assert!(!body.contains("ie-a"), "{body}");
    drop(exp);
    // Forcing netlink there would report the wrong namespace: a clear error at start.
    let (code, err) = start_fails(&mut cmd(&[NETLINK]))?;
    assert_eq!(code, Some(1), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("level=error")).collect();
    assert_eq!(lines.len(), 1, "{err}");
    assert!(
        lines[0].contains("netlink describes another network namespace"),
        "{err}"
    );
    Ok(())
}

#[test]
fn auto_keeps_sysfs_under_unshare_net_without_a_sysfs_remount() -> Result {
    // /sys still shows the test's namespace; the exporter's netlink sees only a new lo.
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "sh", "-c"]).arg(format!(
        "ip link set lo up && exec {BIN} --web.listen-address=127.0.0.1:0 --path.sysfs=/sys"
    ));
    let exp = Exporter::spawn(&mut cmd)?;
    check_choice(&exp, "sysfs", "another network namespace")?;
    Ok(())
}

#[test]
fn auto_keeps_sysfs_with_only_an_idle_lo() -> Result {
    let ns = Netns::new()?;
    let exp = ns.exporter(&[])?;
    check_choice(&exp, "sysfs", "only an idle lo")?;
    Ok(())
}

#[test]
fn auto_keeps_sysfs_while_interfaces_churn() -> Result {
    let _quiet = rtnl_quiet();
    let ns = Netns::new()?;
    let dir = TempDir::new()?;
    // A hundred interfaces make each sysfs read, and so each check's window, last a few
    // milliseconds. Three more pairs are the ones that churn.
    let pairs = dir.0.join("pairs");
    let lines: String = (0..50)
        .map(|i| format!("link add ie-s{i} type veth peer name ie-t{i}\n"))
        .chain((0..3).map(|i| format!("link add ie-cx{i} type veth peer name ie-cy{i}\n")))
        .collect();
    std::fs::write(&pairs, lines)?;
    run(Command::new("ip")
        .args(["-n", &ns.name, "-batch"])
        .arg(&pairs))?;
    // Addresses flipped without a pause, 0.2 ms each, by three loops, each a long-running
    // `ip -batch` (a new `ip` per few hundred commands left gaps of a few milliseconds in
    // which a loaded machine could pass two checks). No interface is added or deleted: a
    // delete waits for RCU while it holds the RTNL lock, and with three loops deleting at
    // once that left quiet windows of tens of milliseconds in which two checks could pass
    // (seen once on a loaded machine), which is then a valid proof.
    let mut loops = Vec::new();
    for i in 0..3 {
        let file = dir.0.join(format!("churn{i}"));
        // Through 200 addresses, so that two dumps around a check cannot see the same one
        // after some flips (as two addresses did, every even number of flips).
        let flips: String = (0..200)
            .map(|n| format!("link set ie-cx{i} address 02:00:00:00:0{i}:{n:02x}\n"))
            .collect();
        std::fs::write(&file, flips.repeat(100))?;
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "while :; do ip -n {} -force -batch {} 2>/dev/null; done",
                ns.name,
                file.display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        loops.push(KillOnDrop(child));
    }
    // Churn has started once each loop's interface shows one of its addresses.
    wait_for("the churn to start", DEADLINE, || {
        let out = ns.ip("-br link").ok()?;
        (0..3)
            .all(|i| out.contains(&format!("02:00:00:00:0{i}:")))
            .then_some(())
    })?;
    let exp = ns.exporter(&[])?;
    drop(loops);
    // Kept sysfs because the interfaces changed during each check, or because a sysfs read
    // fell between two flips that both dumps missed (it then cannot be told from another
    // namespace): either way not netlink.
    let (source, reason) = chosen(&exp)?;
    assert_eq!(source, "sysfs", "{}", exp.log());
    assert!(
        reason.contains("chang") || reason.contains("differ"),
        "{reason:?}"
    );
    Ok(())
}

/// Kills a `sh -c 'while :; ...'` loop when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_refused_netlink_socket_falls_back_to_sysfs_with_one_warning() -> Result {
    let seccomp = repo().join("tests/it/seccomp.py");
    let ns = Netns::new()?;
    ns.ip("link add ie-a type veth peer name ie-b")?;
    let mut cmd = ns.cmd("python3");
    cmd.arg(&seccomp)
        .args(["socket:AF_NETLINK=EAFNOSUPPORT", "--", BIN])
        .arg("--web.listen-address=127.0.0.1:0");
    let exp = Exporter::spawn(&mut cmd)?;
    check_choice(&exp, "sysfs", "cannot open a netlink socket")?;
    let log = exp.log();
    let warnings: Vec<&str> = log.lines().filter(|l| l.contains("level=warn")).collect();
    let about_netlink: Vec<&&str> = warnings.iter().filter(|l| l.contains("netlink")).collect();
    assert_eq!(about_netlink.len(), 1, "{log}");
    assert!(about_netlink[0].contains("source=sysfs"), "{log}");
    let body = ns.get(&exp, "/metrics")?.text();
    assert!(
        body.contains("interface_status{interface=\"ie-a\"}"),
        "{body}"
    );
    drop(exp);

    // Forced, it is a start-up error.
    let mut cmd = ns.cmd("python3");
    cmd.arg(&seccomp)
        .args(["socket:AF_NETLINK=EAFNOSUPPORT", "--", BIN])
        .args(["--web.listen-address=127.0.0.1:0", NETLINK]);
    let (code, err) = start_fails(&mut cmd)?;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("--collector.source=netlink: cannot open a netlink socket"),
        "{err}"
    );
    Ok(())
}
