//! The status page at `/` as a browser sees it: headless Chromium loads it from the exporter
//! (both inside a namespace of the test's own, so the browser can reach nothing but loopback),
//! and the DOM it built is checked, not the bytes the server sent. A hostile interface name or
//! alias that slipped past the escaping would show up there as an element.
//!
//! `UPDATE_SCREENSHOT=1` also writes the screenshot to scripts/status-page.png for the README.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium starts in about a second; a loaded CI runner may take many.
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);

/// The size of the README screenshot: the table's width, and room for a few more rows.
const WINDOW_SIZE: &str = "1280,560";

/// The hostile interface name: markup, an entity, and a quote (a name cannot hold `/`).
const HOSTILE_NAME: &str = "<b>x&amp;\"";
const HOSTILE_ALIAS: &str = "<script>alert(1)</script>";

/// A host with an interface in each state the page colours differently, flags and carrier as
/// the kernel reports them for that state. With `hostile`, two more interfaces carry markup in
/// their name and alias.
fn host(hostile: bool) -> Result<Fixture> {
    let f = Fixture::new()?;
    // Name, operstate, flags, mtu, carrier, speed, carrier_changes, ifalias; "-" is no file.
    #[rustfmt::skip]
    let mut rows = vec![
        ("eth0", "up", "0x1003", "1500", "1", "1000", "2", "uplink to core-sw1"),
        // eth0 is a port of the bridge br0, as the kernel links it (below).
        ("br0", "up", "0x1003", "1500", "1", "-", "1", ""),
        // Admin up, no cable: carrier 0, and the driver knows no speed.
        ("eth1", "down", "0x1003", "1500", "0", "-1", "7", "rack 12 port 4"),
        // Admin down: the kernel refuses carrier and speed, so there are no files.
        ("eth2", "down", "0x1002", "9000", "-", "-", "0", ""),
        // A VLAN on eth1, which has no link.
        ("eth1.100", "lowerlayerdown", "0x1003", "1500", "0", "-", "1", ""),
        ("lo", "unknown", "0x9", "65536", "1", "-", "0", ""),
        ("wg0", "unknown", "0x91", "1420", "1", "-", "0", "tunnel to office"),
        ("wlan0", "dormant", "0x1003", "1500", "1", "-", "4", ""),
    ];
    if hostile {
        #[rustfmt::skip]
        rows.extend([
            (HOSTILE_NAME, "up", "0x1003", "1500", "1", "-", "0", ""),
            ("evil0", "up", "0x1003", "1500", "1", "-", "0", HOSTILE_ALIAS),
        ]);
    }
    for (name, state, flags, mtu, carrier, speed, changes, alias) in rows {
        let mut attrs = vec![
            ("operstate", state),
            ("flags", flags),
            ("mtu", mtu),
            ("carrier", carrier),
            ("speed", speed),
            ("carrier_changes", changes),
            ("ifalias", alias),
        ];
        attrs.retain(|&(_, v)| v != "-");
        f.iface(name, &attrs)?;
    }
    std::os::unix::fs::symlink("../br0", f.root().join("devices/virtual/net/eth0/master"))?;
    Ok(f)
}

/// Runs headless Chromium inside `ns` on `target` (path and query) at `exp` with `args` after
/// the common flags and a fresh profile, and returns its output; it is killed at the deadline.
fn chromium(ns: &Netns, exp: &Exporter, target: &str, args: &[&str]) -> Result<Output> {
    if !Path::new(CHROMIUM).exists() {
        return Err(format!(
            "{CHROMIUM} is missing: scripts/test.sh installs the Debian package chromium"
        )
        .into());
    }
    let profile = TempDir::new()?;
    let mut child = ns
        .cmd(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
        ])
        .arg(format!("--user-data-dir={}", profile.0.display()))
        .args(args)
        .arg(format!("http://{}{target}", exp.addr))
        // Whatever Chromium writes outside its profile (caches, crash reports) goes to the
        // temp dir too.
        .env("HOME", &profile.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{CHROMIUM}: {e}"))?;
    // The output is read after exit; a screenshot or a page dump stays far below a pipe's
    // buffer, so Chromium cannot block on a full pipe meanwhile.
    let end = Instant::now() + BROWSER_DEADLINE;
    while child.try_wait()?.is_none() {
        if Instant::now() >= end {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            return Err(format!(
                "chromium did not finish in {BROWSER_DEADLINE:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!(
            "chromium failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    Ok(out)
}

/// The rows of the page's table body as the DOM serializes them: the row's class, and the text
/// of each cell (still escaped as the serializer escapes text).
fn rows(dom: &str) -> Result<Vec<(String, Vec<String>)>> {
    let body = dom
        .split_once("<tbody>")
        .and_then(|(_, rest)| rest.split_once("</tbody>"))
        .ok_or_else(|| format!("no table body in the DOM:\n{dom}"))?
        .0;
    let mut rows = Vec::new();
    for row in body.split("<tr").skip(1) {
        let class = row
            .strip_prefix(" class=\"")
            .and_then(|r| r.split_once('"'))
            .ok_or_else(|| format!("a row without a class: <tr{row}"))?
            .0
            .to_owned();
        let cells = row
            .split("<td")
            .skip(1)
            .map(|cell| {
                let text = cell.split_once('>').map_or("", |(_, t)| t);
                text.split("</td>").next().unwrap_or("").to_owned()
            })
            .collect();
        rows.push((class, cells));
    }
    Ok(rows)
}

#[test]
fn the_rendered_page_lists_every_interface_and_escapes_hostile_values() -> Result {
    let f = host(true)?;
    let ns = Netns::new()?;
    let exp = ns.exporter(&[&f.flag()])?;
    let out = chromium(&ns, &exp, "/", &["--dump-dom"])?;
    let dom = String::from_utf8(out.stdout)?;

    let rows: BTreeMap<String, (String, Vec<String>)> = rows(&dom)?
        .into_iter()
        .map(|(class, mut cells)| {
            // The since cell, checked apart: its duration grows while the test runs.
            let since = if cells.len() > 3 {
                cells.remove(3)
            } else {
                String::new()
            };
            cells.push(since);
            (cells.first().cloned().unwrap_or_default(), (class, cells))
        })
        .collect();
    // Name, master, oper state, admin, carrier, carrier changes, MTU, speed, alias; the row's
    // class is the state, which is what the colour hangs on.
    #[rustfmt::skip]
    let expected: &[(&str, [&str; 9])] = &[
        ("up", ["eth0", "br0", "up", "up", "yes", "2", "1500", "1000", "uplink to core-sw1"]),
        ("up", ["br0", "", "up", "up", "yes", "1", "1500", "", ""]),
        ("down", ["eth1", "", "down", "up", "no", "7", "1500", "", "rack 12 port 4"]),
        ("down admin-down", ["eth2", "", "down", "down", "", "0", "9000", "", ""]),
        ("lowerlayerdown", ["eth1.100", "", "lowerlayerdown", "up", "no", "1", "1500", "", ""]),
        ("unknown", ["lo", "", "unknown", "up", "yes", "0", "65536", "", ""]),
        ("unknown", ["wg0", "", "unknown", "up", "yes", "0", "1420", "", "tunnel to office"]),
        ("dormant", ["wlan0", "", "dormant", "up", "yes", "4", "1500", "", ""]),
        // The serializer escapes `<`, `>` and `&` in text, not quotes: this is the name as
        // text, with its `&amp;` kept literally.
        ("up", ["&lt;b&gt;x&amp;amp;\"", "", "up", "up", "yes", "0", "1500", "", ""]),
        ("up", ["evil0", "", "up", "up", "yes", "0", "1500", "", "&lt;script&gt;alert(1)&lt;/script&gt;"]),
    ];
    assert_eq!(rows.len(), expected.len(), "{dom}");
    for (class, cells) in expected {
        let (got_class, got_cells) = rows
            .get(cells[0])
            .ok_or_else(|| format!("no row for {}:\n{dom}", cells[0]))?;
        assert_eq!(got_class, class, "row class of {}", cells[0]);
        assert_eq!(&got_cells[..9], cells, "cells of {}", cells[0]);
        // Nothing changed since the exporter started: "at least", for a few seconds.
        let since = &got_cells[9];
        let duration = since
            .strip_prefix(&format!("{} for at least ", cells[2]))
            .ok_or_else(|| format!("since cell of {}: {since:?}", cells[0]))?;
        check_duration(duration)?;
    }
    // The host's name, which is the namespace's too (a network namespace is no UTS one).
    let host = hostname()?;
    assert!(
        dom.contains(&format!("<title>{host} \u{b7} interfaces_exporter</title>")),
        "{dom}"
    );
    assert!(
        dom.contains(&format!("<h1>interfaces_exporter on {host}</h1>")),
        "{dom}"
    );
    // Nothing the fixture held became markup: no element from the name or the alias, and no
    // script at all.
    assert!(!dom.contains("<b>"), "{dom}");
    assert!(!dom.to_ascii_lowercase().contains("<script"), "{dom}");
    // The page itself: the link to the metrics and the self-refresh survived parsing.
    assert!(dom.contains("<a href=\"/metrics\">/metrics</a>"), "{dom}");
    assert!(
        dom.contains("<meta http-equiv=\"refresh\" content=\"5\">"),
        "{dom}"
    );
    Ok(())
}

#[test]
fn a_screenshot_of_the_page_is_a_png_of_the_window() -> Result {
    let f = host(false)?;
    let ns = Netns::new()?;
    let exp = ns.exporter(&[&f.flag()])?;
    let dir = TempDir::new()?;
    let png = dir.0.join("status-page.png");
    chromium(
        &ns,
        &exp,
        "/",
        &[
            &format!("--screenshot={}", png.display()),
            &format!("--window-size={WINDOW_SIZE}"),
        ],
    )?;
    let bytes = std::fs::read(&png).map_err(|e| format!("no screenshot: {e}"))?;
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {:?}",
        bytes.get(..16)
    );
    // The first chunk is IHDR: width and height, big-endian, right after its type.
    let dimension = |at: usize| -> Result<u32> {
        let b: [u8; 4] = bytes.get(at..at + 4).ok_or("short PNG")?.try_into()?;
        Ok(u32::from_be_bytes(b))
    };
    assert_eq!(bytes.get(12..16), Some(&b"IHDR"[..]));
    let (w, h) = WINDOW_SIZE.split_once(',').ok_or("bad WINDOW_SIZE")?;
    assert_eq!((dimension(16)?, dimension(20)?), (w.parse()?, h.parse()?));
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        std::fs::write(repo().join("scripts/status-page.png"), &bytes)?;
    }
    Ok(())
}

/// Checks a duration as the page writes it: one or two whole units, largest first
/// (`3h 12m`, `5m 3s`, `42s`).
fn check_duration(text: &str) -> Result {
    let units: Vec<(u64, char)> = text
        .split(' ')
        .map(|part| {
            let (n, unit) = part.split_at(part.len().saturating_sub(1));
            Ok((n.parse()?, unit.chars().next().ok_or("no unit")?))
        })
        .collect::<Result<_>>()
        .map_err(|e| format!("duration {text:?}: {e}"))?;
    let order = "dhms";
    let ok = matches!(units.len(), 1 | 2)
        && units
            .windows(2)
            .all(|w| order.find(w[0].1).map(|i| i + 1) == order.find(w[1].1));
    if ok && units.iter().all(|(_, u)| order.contains(*u)) {
        Ok(())
    } else {
        Err(format!("not a duration: {text:?}").into())
    }
}

/// The host name as the kernel gives it to this test (and to the exporter).
fn hostname() -> Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")?
        .trim_end()
        .to_owned())
}

/// The declarations of each simple selector in a style sheet, in source order.
fn style_rules(css: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for rule in css.split('}') {
        let Some((selectors, decls)) = rule.split_once('{') else {
            continue;
        };
        for selector in selectors.split(',') {
            for decl in decls.split(';') {
                if let Some((prop, value)) = decl.split_once(':') {
                    out.push((
                        selector.trim().to_owned(),
                        prop.trim().to_owned(),
                        value.trim().to_owned(),
                    ));
                }
            }
        }
    }
    out
}

/// The colour a row of these classes ends up with for `prop` (`color` or `background`): the
/// last rule for one of its classes that sets it, else the body's, as the cascade has it for
/// rules of equal weight.
fn row_colour(rules: &[(String, String, String)], classes: &str, prop: &str) -> Option<String> {
    let last = |selector: &str| {
        rules
            .iter()
            .rposition(|(s, p, _)| s == selector && p == prop)
    };
    classes
        .split(' ')
        .filter_map(|class| last(&format!(".{class}")))
        .max()
        .or_else(|| last("body"))
        .map(|i| rules[i].2.clone())
}

/// WCAG 2's relative luminance of `#rgb` or `#rrggbb`.
fn luminance(colour: &str) -> Result<f64> {
    let hex = colour.strip_prefix('#').ok_or("not a hex colour")?;
    let hex: String = match hex.len() {
        3 => hex.chars().flat_map(|c| [c, c]).collect(),
        6 => hex.to_owned(),
        _ => return Err(format!("not a hex colour: {colour}").into()),
    };
    let mut l = 0.0;
    for (i, weight) in [0.2126, 0.7152, 0.0722].into_iter().enumerate() {
        let c = f64::from(u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)?) / 255.0;
        let linear = if c <= 0.04045 {
            c / 12.92
        } else {
            ((c + 0.055) / 1.055).powf(2.4)
        };
        l += weight * linear;
    }
    Ok(l)
}

/// WCAG 2's contrast ratio of two colours.
fn contrast(a: &str, b: &str) -> Result<f64> {
    let (a, b) = (luminance(a)?, luminance(b)?);
    Ok((a.max(b) + 0.05) / (a.min(b) + 0.05))
}

#[test]
fn without_refresh_the_page_stays_and_says_since_when_and_reads_well() -> Result {
    let f = host(false)?;
    // eth9 comes up after the exporter started: its since cell is no "at least".
    let eth9 = f.iface(
        "eth9",
        &[
            ("operstate", "down"),
            ("flags", "0x1003"),
            ("carrier", "0"),
            ("carrier_changes", "1"),
        ],
    )?;
    let ns = Netns::new()?;
    let exp = ns.exporter(&[&f.flag(), "--collector.source=sysfs"])?;
    // One scan sees eth9 down; the page's scan sees it up.
    assert_eq!(ns.get(&exp, "/metrics")?.status, 200);
    std::fs::write(eth9.join("operstate"), "up\n")?;
    std::fs::write(eth9.join("carrier"), "1\n")?;
    std::fs::write(eth9.join("carrier_changes"), "2\n")?;
    let out = chromium(&ns, &exp, "/?refresh=0", &["--dump-dom"])?;
    let dom = String::from_utf8(out.stdout)?;
    assert!(!dom.contains("http-equiv=\"refresh\""), "{dom}");
    assert!(dom.contains("<a href=\".\">refresh every 5 s</a>"), "{dom}");

    let rows = rows(&dom)?;
    let since = |name: &str| {
        rows.iter()
            .find(|(_, cells)| cells.first().map(String::as_str) == Some(name))
            .and_then(|(_, cells)| cells.get(3).cloned())
            .ok_or_else(|| format!("no row for {name}:\n{dom}"))
    };
    let eth9_since = since("eth9")?;
    let duration = eth9_since
        .strip_prefix("up for ")
        .filter(|d| !d.starts_with("at least"))
        .ok_or_else(|| format!("eth9 since: {eth9_since:?}"))?;
    check_duration(duration)?;
    let eth2_since = since("eth2")?;
    assert!(eth2_since.starts_with("down for at least "), "{eth2_since}");

    // Every row's text against its row's background, from the page's own style sheet.
    let css = dom
        .split_once("<style>")
        .and_then(|(_, rest)| rest.split_once("</style>"))
        .ok_or("no style sheet")?
        .0;
    let rules = style_rules(css);
    let mut admin_down = None;
    for (class, _) in &rows {
        let fg = row_colour(&rules, class, "color").ok_or("no text colour")?;
        let bg = row_colour(&rules, class, "background").ok_or("no background")?;
        let ratio = contrast(&fg, &bg)?;
        eprintln!("row {class:?}: {fg} on {bg} is {ratio:.2}:1");
        assert!(ratio >= 4.5, "row {class:?}: {fg} on {bg} is {ratio:.2}:1");
        if class.contains("admin-down") {
            admin_down = Some(ratio);
        }
    }
    assert!(admin_down.is_some(), "no admin-down row:\n{dom}");
    Ok(())
}
