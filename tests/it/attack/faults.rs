//! Sysfs faults: a faulty tree degrades the scrape, and a root that vanishes answers 503
//! until it returns.

use std::time::Instant;

use super::*;
use crate::util::*;

#[test]
fn a_faulty_sysfs_degrades_the_scrape_and_the_root_can_vanish_and_return() -> Result {
    let f = small_host()?;
    let iface = |name: &str, attrs: &[(&str, &str)]| -> Result<std::path::PathBuf> {
        let mut all = vec![("operstate", "up"), ("flags", "0x1003"), ("mtu", "1500")];
        all.retain(|(a, _)| !attrs.iter().any(|(b, _)| a == b));
        all.extend_from_slice(attrs);
        all.retain(|(_, v)| *v != "-");
        f.iface(name, &all)
    };
    // Each fault, and what it costs in scrape errors. As root, chmod 000 stops no read, so the
    // read errors are a symlink loop (ELOOP), a directory (EISDIR) and a file where a directory
    // should be (ENOTDIR).
    //
    // An attribute that is a directory: 1.
    let dir0 = iface("dir0", &[("mtu", "-")])?;
    std::fs::create_dir(dir0.join("mtu"))?;
    // An attribute that is a symlink loop: 1.
    let loop0 = iface("loop0", &[])?;
    std::os::unix::fs::symlink("carrier_changes", loop0.join("carrier_changes"))?;
    // An empty line and an empty file where numbers should be: 2.
    let empty0 = iface("empty0", &[("mtu", "")])?;
    std::fs::write(empty0.join("carrier"), "")?;
    // Text where a number should be, and flags without their 0x: 2.
    iface("text0", &[("mtu", "lots"), ("flags", "1003")])?;
    // Values longer than a page: 2.
    let huge0 = iface("huge0", &[("mtu", &"9".repeat(10_000))])?;
    std::fs::write(huge0.join("ifalias"), "x".repeat(10_000))?;
    // FIFOs, which must not block the scrape: an mtu that reads empty costs 1, an empty
    // address is a valid value and costs nothing, an empty operstate is not a state: 2.
    let fifo0 = iface("fifo0", &[("mtu", "-")])?;
    sh(&format!("mkfifo {0}/mtu {0}/address", fifo0.display()))?;
    let fifostate0 = iface("fifostate0", &[("operstate", "-")])?;
    sh(&format!("mkfifo {}/operstate", fifostate0.display()))?;
    // class/net entries pointing nowhere (an interface that went away: 0), at a file
    // (ENOTDIR: 1) and at themselves (ELOOP: 1).
    let class_net = f.root().join("class/net");
    std::os::unix::fs::symlink("../../devices/virtual/net/gone0", class_net.join("gone0"))?;
    std::fs::write(f.root().join("devices/virtual/net/file0"), "")?;
    std::os::unix::fs::symlink("../../devices/virtual/net/file0", class_net.join("file0"))?;
    std::os::unix::fs::symlink("selfloop0", class_net.join("selfloop0"))?;
    const EXPECTED_ERRORS: &str = "12";

    let mut exp = Exporter::start(&[&f.flag(), "--collector.statistics"])?;
    let start = Instant::now();
    let r = exp
        .get("/metrics")
        .map_err(|e| format!("no answer: does a FIFO block the scrape? {e}"))?;
    let took = start.elapsed();
    let body = r.text();
    assert_eq!(r.status, 200);
    check_exposition(&body)?;
    let value = |series: &str| sample(&body, series);
    assert_eq!(
        value("interfaces_exporter_scrape_errors").as_deref(),
        Some(EXPECTED_ERRORS),
        "{body}"
    );
    // The healthy interface is whole.
    for (series, v) in [
        ("interface_status{interface=\"eth0\"}", "1"),
        ("interface_carrier{interface=\"eth0\"}", "1"),
        ("interface_mtu_bytes{interface=\"eth0\"}", "1500"),
        ("interface_speed_bytes{interface=\"eth0\"}", "125000000"),
        ("interface_carrier_changes_total{interface=\"eth0\"}", "4"),
        (
            "interface_transmit_bytes_total{interface=\"eth0\"}",
            "18446744073709551615",
        ),
    ] {
        assert_eq!(value(series).as_deref(), Some(v), "{series}:\n{body}");
    }
    // The faulty ones keep what could be read and lose only the faulty attribute.
    for name in ["dir0", "loop0", "empty0", "text0", "huge0", "fifo0"] {
        assert_eq!(
            value(&format!("interface_status{{interface=\"{name}\"}}")).as_deref(),
            Some("1"),
            "{name}:\n{body}"
        );
    }
    for name in ["dir0", "empty0", "text0", "huge0", "fifo0"] {
        assert_eq!(
            value(&format!("interface_mtu_bytes{{interface=\"{name}\"}}")),
            None
        );
    }
    assert_eq!(
        value("interface_status{interface=\"fifostate0\"}").as_deref(),
        Some("2")
    );
    for gone in ["gone0", "file0", "selfloop0"] {
        assert!(!body.contains(&format!("\"{gone}\"")), "{gone}:\n{body}");
    }
    eprintln!("faults: scrape of a faulty tree answered in {took:?} with {EXPECTED_ERRORS} errors");

    // The whole root goes away (an unmounted /host/sys), then comes back.
    let root = f.root();
    let away = root.with_extension("away");
    std::fs::rename(&root, &away)?;
    // No listing means no answer for the host: 503, so Prometheus records `up == 0`, never a
    // 200 with every series gone stale.
    let r = exp.get("/metrics")?;
    assert_eq!(r.status, 503);
    let body = r.text();
    assert!(!body.contains("interface_status{"), "{body}");
    assert!(body.contains("cannot list interfaces"), "{body}");
    assert_eq!(exp.get("/")?.status, 503);
    exp.assert_alive()?;
    std::fs::rename(&away, &root)?;
    let back = Instant::now();
    wait_for("eth0 back after the root returned", DEADLINE, || {
        let body = exp.get("/metrics").ok()?.text();
        (sample(&body, "interface_status{interface=\"eth0\"}").as_deref() == Some("1"))
            .then_some(())
    })?;
    eprintln!(
        "faults: root gone: 200 with 1 error; back: eth0 again after {:?}",
        back.elapsed()
    );
    exp.assert_alive()?;
    Ok(())
}
