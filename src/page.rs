//! The HTML page at `/`: name, version, a link to the metrics, and a table of the interfaces as
//! of this request, refreshing itself every few seconds.
//!
//! No JavaScript and no external resources: the page works on a host with no internet, and a
//! strict Content-Security-Policy costs nothing.
//!
//! Interface names are shown as on `/metrics` ([`name_text`]), so a name that is not UTF-8
//! reads the same in both places and two names never look alike.
//!
//! Invariant: every value that came from sysfs is HTML-escaped before it is written.

use crate::metrics::{name_text, push_u64};
use crate::model::{OperState, Scan};

/// Seconds between refreshes: often enough to watch a link come back, rarely enough that an
/// open tab costs the host nothing.
const REFRESH_SECONDS: u32 = 5;

pub fn render(scan: &Scan, telemetry_path: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"refresh\" content=\"",
    );
    push_u64(out, u64::from(REFRESH_SECONDS));
    out.extend_from_slice(
        concat!(
            "\">\n<title>interfaces_exporter</title>\n<style>\n",
            "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\n",
            "table{border-collapse:collapse}th,td{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}\n",
            "th{background:#f4f4f4}.n{text-align:right;font-variant-numeric:tabular-nums}\n",
            ".up{background:#c8f0c8}.down,.lowerlayerdown{background:#f8c8c8}",
            ".dormant,.testing,.notpresent{background:#f8e8b0}.unknown,.other{background:#e4e4e4}\n",
            // Shut down on purpose is not an outage (the alert rules say the same): muted, not red.
            ".admin-down{background:none;color:#888}\n",
            "</style>\n</head>\n<body>\n<h1>interfaces_exporter</h1>\n<p>Version ",
            env!("CARGO_PKG_VERSION"),
            ". Metrics: <a href=\""
        )
        .as_bytes(),
    );
    push_html(out, telemetry_path.as_bytes());
    out.extend_from_slice(b"\">");
    push_html(out, telemetry_path.as_bytes());
    out.extend_from_slice(b"</a></p>\n<table>\n<thead><tr><th>Interface</th><th>Oper state</th><th>Admin</th><th>Carrier</th><th class=\"n\">Speed (Mb/s)</th><th class=\"n\">MTU</th><th class=\"n\">Carrier changes</th><th>Alias</th></tr></thead>\n<tbody>\n");
    for i in &scan.interfaces {
        let oper = i.oper();
        out.extend_from_slice(b"<tr class=\"");
        out.extend_from_slice(oper.name().as_bytes());
        if i.admin_up == Some(false) {
            out.extend_from_slice(b" admin-down");
        }
        out.extend_from_slice(b"\"><td>");
        name_text(&i.name, |piece| push_html(out, piece));
        out.extend_from_slice(b"</td><td>");
        if oper == OperState::Other {
            push_html(out, &i.operstate);
        } else {
            out.extend_from_slice(oper.name().as_bytes());
        }
        out.extend_from_slice(b"</td><td>");
        out.extend_from_slice(match i.admin_up {
            Some(true) => b"up",
            Some(false) => b"down",
            None => b"",
        });
        out.extend_from_slice(b"</td><td>");
        out.extend_from_slice(match i.carrier {
            Some(true) => b"yes",
            Some(false) => b"no",
            None => b"",
        });
        for value in [i.speed_mbps, i.mtu, i.carrier_changes] {
            out.extend_from_slice(b"</td><td class=\"n\">");
            if let Some(v) = value {
                push_u64(out, v);
            }
        }
        out.extend_from_slice(b"</td><td>");
        push_html(out, &i.ifalias);
        out.extend_from_slice(b"</td></tr>\n");
    }
    out.extend_from_slice(b"</tbody>\n</table>\n</body>\n</html>\n");
}

/// Appends text escaped for HTML element content and quoted attributes; bytes that are not
/// UTF-8 become U+FFFD.
pub fn push_html(out: &mut Vec<u8>, value: &[u8]) {
    for chunk in value.utf8_chunks() {
        for &b in chunk.valid().as_bytes() {
            match b {
                b'&' => out.extend_from_slice(b"&amp;"),
                b'<' => out.extend_from_slice(b"&lt;"),
                b'>' => out.extend_from_slice(b"&gt;"),
                b'"' => out.extend_from_slice(b"&quot;"),
                b'\'' => out.extend_from_slice(b"&#39;"),
                b => out.push(b),
            }
        }
        if !chunk.invalid().is_empty() {
            out.extend_from_slice("\u{fffd}".as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Interface;

    #[track_caller]
    fn check(input: &[u8], expected: &str) {
        let mut out = Vec::new();
        push_html(&mut out, input);
        assert_eq!(String::from_utf8(out).as_deref(), Ok(expected));
    }

    #[test]
    fn escaping() {
        check(b"eth0", "eth0");
        check(b"<b>&\"'", "&lt;b&gt;&amp;&quot;&#39;");
        check(b"x\xffy", "x\u{fffd}y");
    }

    #[test]
    fn table_lists_interfaces_escaped() {
        let mut scan = Scan::default();
        scan.interfaces = vec![Interface {
            name: b"<img src=x>".to_vec(),
            operstate: b"lowerlayerdown".to_vec(),
            admin_up: Some(true),
            carrier: Some(false),
            mtu: Some(1500),
            ifalias: b"a&b".to_vec(),
            ..Interface::default()
        }];
        let mut out = Vec::new();
        render(&scan, "/metrics", &mut out);
        let html = String::from_utf8(out).unwrap_or_default();
        assert!(html.contains(
            "<tr class=\"lowerlayerdown\"><td>&lt;img src=x&gt;</td><td>lowerlayerdown</td><td>up</td><td>no</td><td class=\"n\"></td><td class=\"n\">1500</td><td class=\"n\"></td><td>a&amp;b</td></tr>"
        ));
        assert!(!html.contains("<img"));
        assert!(html.contains("<a href=\"/metrics\">/metrics</a>"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn admin_down_rows_are_marked() {
        let mut scan = Scan::default();
        scan.interfaces = vec![Interface {
            name: b"eth2".to_vec(),
            operstate: b"down".to_vec(),
            admin_up: Some(false),
            ..Interface::default()
        }];
        let mut out = Vec::new();
        render(&scan, "/metrics", &mut out);
        let html = String::from_utf8(out).unwrap_or_default();
        assert!(
            html.contains("<tr class=\"down admin-down\"><td>eth2</td><td>down</td><td>down</td>")
        );
    }

    #[test]
    fn names_that_are_not_utf8_stay_apart() {
        let mut scan = Scan::default();
        for name in [
            &b"\xff\xfe"[..],
            b"\xff\xfd",
            b"\xef\xbf\xbd\xef\xbf\xbd",
            b"<\xff>",
        ] {
            scan.interfaces.push(Interface {
                name: name.to_vec(),
                operstate: b"up".to_vec(),
                ..Interface::default()
            });
        }
        let mut out = Vec::new();
        render(&scan, "/metrics", &mut out);
        let html = String::from_utf8(out).unwrap_or_default();
        for cell in [
            "<td>/xff/xfe</td>",
            "<td>/xff/xfd</td>",
            "<td>\u{fffd}\u{fffd}</td>",
            "<td>&lt;/xff&gt;</td>",
        ] {
            assert!(html.contains(cell), "{cell}\n{html}");
        }
    }
}
