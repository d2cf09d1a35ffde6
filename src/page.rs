//! The HTML page at `/`: the host's name, the version, a link to the metrics, and a table of
//! the interfaces as of this request, with how long each has been in its state; it refreshes
//! itself every few seconds unless asked not to (`?refresh=0`).
//!
//! No JavaScript and no external resources: the page works on a host with no internet, and a
//! strict Content-Security-Policy costs nothing.
//!
//! Interface names are shown as on `/metrics` ([`name_text`]), so a name that is not UTF-8
//! reads the same in both places and two names never look alike.
//!
//! Invariant: every value that came from sysfs is HTML-escaped before it is written.

use std::fmt;

use crate::metrics::{name_text, push_u64, Column, Family, FAMILIES, LAST_CHANGE};
use crate::model::{OperState, Scan};

/// Seconds between refreshes: often enough to watch a link come back, rarely enough that an
/// open tab costs the host nothing.
const REFRESH_SECONDS: u32 = 5;

/// The style sheet. Contrast of text on its row's background (WCAG 2 relative luminance; AA
/// asks 4.5:1 of body text): `#222` is 15.9:1 on white, 12.7:1 on up's `#c8f0c8`, 10.7:1 on
/// down's `#f8c8c8`, 13.0:1 on `#f8e8b0`, 12.5:1 on `#e4e4e4` and 14.5:1 on the header's
/// `#f4f4f4`. Admin-down rows are muted with `#595959` on white, 7.0:1 (the old `#888` was
/// 3.5:1); `#595959` would still pass on every state colour (4.7:1 at worst, on `#f8c8c8`).
const STYLE: &str = concat!(
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222;background:#fff}\n",
    "table{border-collapse:collapse}th,td{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}\n",
    "th{background:#f4f4f4}.n{text-align:right;font-variant-numeric:tabular-nums}.since{white-space:nowrap}\n",
    ".up{background:#c8f0c8}.down,.lowerlayerdown{background:#f8c8c8}",
    ".dormant,.testing,.notpresent{background:#f8e8b0}.unknown,.other{background:#e4e4e4}\n",
    // Shut down on purpose is not an outage (the alert rules say the same): muted, not red.
    ".admin-down{background:#fff;color:#595959}\n",
);

/// What the page shows besides the interfaces.
pub struct Context<'a> {
    pub telemetry_path: &'a str,
    /// The host name (a container's own in a container); empty when it could not be read.
    pub host: &'a [u8],
    /// When the exporter started, in milliseconds since the Unix epoch: a last change equal to
    /// it means no change was seen since, so the state has held at least that long.
    pub start_ms: u64,
    /// The time of the request, in milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Whether the page reloads itself every `REFRESH_SECONDS`.
    pub refresh: bool,
}

/// Why the query string of a request for the page was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum QueryError {
    /// `refresh` with a value other than `0`.
    Refresh(String),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::Refresh(v) => {
                write!(
                    f,
                    "refresh={v}: only refresh=0 (no automatic refresh) is known"
                )
            }
        }
    }
}

/// Whether the page should refresh itself, from the query string of its request: `refresh=0`
/// turns it off. Other parameters are ignored, as on the metrics path, since links and
/// bookmarks add their own.
pub fn wants_refresh(query: &[u8]) -> Result<bool, QueryError> {
    let mut refresh = true;
    for pair in query.split(|&b| b == b'&') {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        if key == b"refresh" {
            if value != b"0" {
                return Err(QueryError::Refresh(
                    String::from_utf8_lossy(value).into_owned(),
                ));
            }
            refresh = false;
        }
    }
    Ok(refresh)
}

/// The families the table shows a column for, in their order, after the page's own columns
/// (interface, master, oper state, since) and before the alias.
fn columns() -> impl Iterator<Item = (&'static Family, Column)> {
    FAMILIES.iter().filter_map(|f| Some((f, f.column?)))
}

pub fn render(scan: &Scan, cx: &Context<'_>, out: &mut Vec<u8>) {
    out.extend_from_slice(
        b"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    );
    if cx.refresh {
        out.extend_from_slice(b"<meta http-equiv=\"refresh\" content=\"");
        push_u64(out, u64::from(REFRESH_SECONDS));
        out.extend_from_slice(b"\">\n");
    }
    out.extend_from_slice(b"<title>");
    if !cx.host.is_empty() {
        push_html(out, cx.host);
        out.extend_from_slice(b" \xc2\xb7 ");
    }
    out.extend_from_slice(b"interfaces_exporter</title>\n<style>\n");
    out.extend_from_slice(STYLE.as_bytes());
    out.extend_from_slice(b"</style>\n</head>\n<body>\n<h1>interfaces_exporter");
    if !cx.host.is_empty() {
        out.extend_from_slice(b" on ");
        push_html(out, cx.host);
    }
    out.extend_from_slice(
        concat!(
            "</h1>\n<p>Version ",
            env!("CARGO_PKG_VERSION"),
            ". Metrics: <a href=\""
        )
        .as_bytes(),
    );
    push_html(out, cx.telemetry_path.as_bytes());
    out.extend_from_slice(b"\">");
    push_html(out, cx.telemetry_path.as_bytes());
    out.extend_from_slice(b"</a>. Read at ");
    push_utc(out, cx.now_ms / 1000);
    if cx.refresh {
        out.extend_from_slice(b", again every ");
        push_u64(out, u64::from(REFRESH_SECONDS));
        out.extend_from_slice(b" s (<a href=\"?refresh=0\">stop</a>).</p>\n");
    } else {
        out.extend_from_slice(b" (<a href=\".\">refresh every ");
        push_u64(out, u64::from(REFRESH_SECONDS));
        out.extend_from_slice(b" s</a>).</p>\n");
    }
    out.extend_from_slice(
        b"<table>\n<thead><tr><th>Interface</th><th>Master</th><th>Oper state</th><th>Since",
    );
    for (_, column) in columns() {
        out.extend_from_slice(match column.words {
            Some(_) => b"</th><th>",
            None => b"</th><th class=\"n\">",
        });
        push_html(out, column.heading.as_bytes());
    }
    out.extend_from_slice(b"</th><th>Alias</th></tr></thead>\n<tbody>\n");
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
        name_text(&i.master, |piece| push_html(out, piece));
        out.extend_from_slice(b"</td><td>");
        if oper == OperState::Other {
            push_html(out, &i.operstate);
        } else {
            out.extend_from_slice(oper.name().as_bytes());
        }
        match LAST_CHANGE.value.of(i) {
            Some(ms) => {
                out.extend_from_slice(b"</td><td class=\"since\" title=\"");
                if ms == cx.start_ms {
                    out.extend_from_slice(b"no change seen since the exporter started at ");
                } else {
                    out.extend_from_slice(b"changed at ");
                }
                push_utc(out, ms / 1000);
                out.extend_from_slice(b"\">");
                if oper == OperState::Other {
                    push_html(out, &i.operstate);
                } else {
                    out.extend_from_slice(oper.name().as_bytes());
                }
                out.extend_from_slice(b" for ");
                if ms == cx.start_ms {
                    out.extend_from_slice(b"at least ");
                }
                push_duration(out, cx.now_ms.saturating_sub(ms) / 1000);
            }
            None => out.extend_from_slice(b"</td><td class=\"since\">"),
        }
        for (family, column) in columns() {
            let value = family.value.of(i);
            match column.words {
                Some(words) => {
                    out.extend_from_slice(b"</td><td>");
                    let word = value.and_then(|v| words.get(usize::try_from(v).ok()?));
                    out.extend_from_slice(word.unwrap_or(&"").as_bytes());
                }
                None => {
                    out.extend_from_slice(b"</td><td class=\"n\">");
                    if let Some(v) = value {
                        push_u64(out, v / column.divisor);
                    }
                }
            }
        }
        out.extend_from_slice(b"</td><td>");
        push_html(out, &i.ifalias);
        out.extend_from_slice(b"</td></tr>\n");
    }
    out.extend_from_slice(b"</tbody>\n</table>\n</body>\n</html>\n");
}

/// Appends a duration in whole seconds as its two largest units, the way one says it on an
/// incident call: `3h 12m`, `5m 3s`, `2d 4h`, `42s`. The smaller units are cut, not rounded,
/// so that the page never claims more time than has passed.
pub fn push_duration(out: &mut Vec<u8>, secs: u64) {
    const UNITS: [(u64, u8); 4] = [(86_400, b'd'), (3600, b'h'), (60, b'm'), (1, b's')];
    let Some(first) = UNITS.iter().position(|&(n, _)| secs >= n) else {
        out.extend_from_slice(b"0s");
        return;
    };
    let (n, unit) = UNITS[first];
    push_u64(out, secs / n);
    out.push(unit);
    if let Some(&(m, unit)) = UNITS.get(first + 1) {
        let rest = secs % n / m;
        if rest > 0 {
            out.push(b' ');
            push_u64(out, rest);
            out.push(unit);
        }
    }
}

/// Appends a Unix time as `2026-11-29 04:23:05 UTC`.
fn push_utc(out: &mut Vec<u8>, secs: u64) {
    let days = secs / 86_400;
    let (y, m, d) = crate::log::civil_from_days(i64::try_from(days).unwrap_or(i64::MAX / 2));
    let rem = secs % 86_400;
    push_u64(out, y.max(0) as u64);
    for (sep, v) in [
        (b'-', u64::from(m)),
        (b'-', u64::from(d)),
        (b' ', rem / 3600),
        (b':', rem / 60 % 60),
        (b':', rem % 60),
    ] {
        out.push(sep);
        if v < 10 {
            out.push(b'0');
        }
        push_u64(out, v);
    }
    out.extend_from_slice(b" UTC");
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

    /// 2026-11-29 04:00:00 UTC, the exporter's start in these tests.
    const START_MS: u64 = 1_795_924_800_000;

    fn context(refresh: bool) -> Context<'static> {
        Context {
            telemetry_path: "/metrics",
            host: b"node-1",
            start_ms: START_MS,
            // 3h 12m 7.5s later.
            now_ms: START_MS + (3 * 3600 + 12 * 60 + 7) * 1000 + 500,
            refresh,
        }
    }

    fn page(interfaces: Vec<Interface>, cx: &Context<'_>) -> String {
        let mut scan = Scan::default();
        scan.interfaces = interfaces.into_iter().map(Box::new).collect();
        let mut out = Vec::new();
        render(&scan, cx, &mut out);
        String::from_utf8(out).unwrap_or_default()
    }

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

    #[track_caller]
    fn check_duration(secs: u64, expected: &str) {
        let mut out = Vec::new();
        push_duration(&mut out, secs);
        assert_eq!(String::from_utf8(out).as_deref(), Ok(expected), "{secs} s");
    }

    #[test]
    fn durations_read_as_said_on_a_call() {
        for (secs, expected) in [
            (0, "0s"),
            (1, "1s"),
            (59, "59s"),
            (60, "1m"),
            (61, "1m 1s"),
            (5 * 60 + 3, "5m 3s"),
            (3599, "59m 59s"),
            (3600, "1h"),
            (3601, "1h"),
            (3 * 3600 + 12 * 60 + 59, "3h 12m"),
            (86_399, "23h 59m"),
            (86_400, "1d"),
            (2 * 86_400 + 4 * 3600 + 59 * 60, "2d 4h"),
            (400 * 86_400 + 60, "400d"),
            (u64::MAX, "213503982334601d 7h"),
        ] {
            check_duration(secs, expected);
        }
    }

    #[track_caller]
    fn check_query(query: &str, expected: Result<bool, &str>) {
        let got = wants_refresh(query.as_bytes()).map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_owned), "{query:?}");
    }

    #[test]
    fn only_refresh_0_turns_the_refresh_off() {
        for (query, expected) in [
            ("", Ok(true)),
            ("refresh=0", Ok(false)),
            ("x=1&refresh=0&y", Ok(false)),
            ("refresh=0&refresh=0", Ok(false)),
            ("utm_source=mail", Ok(true)),
            ("refreshx=0", Ok(true)),
            ("&&", Ok(true)),
            ("=", Ok(true)),
            (
                "refresh=1",
                Err("refresh=1: only refresh=0 (no automatic refresh) is known"),
            ),
            (
                "refresh",
                Err("refresh=: only refresh=0 (no automatic refresh) is known"),
            ),
            (
                "refresh=00",
                Err("refresh=00: only refresh=0 (no automatic refresh) is known"),
            ),
            (
                "refresh=0&refresh=%zz",
                Err("refresh=%zz: only refresh=0 (no automatic refresh) is known"),
            ),
        ] {
            check_query(query, expected);
        }
    }

    /// One row as rendered, from `<tr` to `</tr>`, for the interface `eth0`.
    #[track_caller]
    fn check_row(iface: Interface, expected: &str) {
        let html = page(vec![iface], &context(true));
        let row = html
            .split("<tr class=")
            .nth(1)
            .and_then(|r| r.split("</tr>").next())
            .unwrap_or("");
        assert_eq!(row, expected, "{html}");
    }

    #[test]
    fn rows_say_since_when_and_the_master() {
        let eth0 = |operstate: &[u8], admin_up, last_change_ms| Interface {
            name: b"eth0".to_vec(),
            operstate: operstate.to_vec(),
            admin_up: Some(admin_up),
            last_change_ms,
            ..Interface::default()
        };
        let cases = [
            // Changed after the start: a plain "for".
            (
                eth0(b"down", true, Some(START_MS + 12 * 60 * 1000)),
                "\"down\"><td>eth0</td><td></td><td>down</td><td class=\"since\" title=\"changed at 2026-11-29 04:12:00 UTC\">down for 3h</td><td>up</td><td></td><td class=\"n\"></td><td class=\"n\"></td><td class=\"n\"></td><td>",
            ),
            (
                eth0(b"up", true, Some(START_MS + (3 * 3600 + 7 * 60 + 4) * 1000 + 900)),
                "\"up\"><td>eth0</td><td></td><td>up</td><td class=\"since\" title=\"changed at 2026-11-29 07:07:04 UTC\">up for 5m 2s</td><td>up</td><td></td><td class=\"n\"></td><td class=\"n\"></td><td class=\"n\"></td><td>",
            ),
            // No change seen since the start: at least that long.
            (
                eth0(b"down", false, Some(START_MS)),
                "\"down admin-down\"><td>eth0</td><td></td><td>down</td><td class=\"since\" title=\"no change seen since the exporter started at 2026-11-29 04:00:00 UTC\">down for at least 3h 12m</td><td>down</td><td></td><td class=\"n\"></td><td class=\"n\"></td><td class=\"n\"></td><td>",
            ),
            // A clock stepped back: never a negative time.
            (
                eth0(b"up", true, Some(START_MS + 24 * 3600 * 1000)),
                "\"up\"><td>eth0</td><td></td><td>up</td><td class=\"since\" title=\"changed at 2026-11-30 04:00:00 UTC\">up for 0s</td><td>up</td><td></td><td class=\"n\"></td><td class=\"n\"></td><td class=\"n\"></td><td>",
            ),
            // A state the kernel does not write, escaped in both cells; no time known.
            (
                eth0(b"<x>", true, Some(START_MS + 1000)),
                "\"other\"><td>eth0</td><td></td><td>&lt;x&gt;</td><td class=\"since\" title=\"changed at 2026-11-29 04:00:01 UTC\">&lt;x&gt; for 3h 12m</td><td>up</td><td></td><td class=\"n\"></td><td class=\"n\"></td><td class=\"n\"></td><td>",
            ),
            (
                eth0(b"up", true, None),
                "\"up\"><td>eth0</td><td></td><td>up</td><td class=\"since\"></td><td>up</td><td></td><td class=\"n\"></td><td class=\"n\"></td><td class=\"n\"></td><td>",
            ),
            // A bridge port names its bridge, shown as on /metrics.
            (
                Interface {
                    master: b"br\xff<0>".to_vec(),
                    ..eth0(b"up", true, None)
                },
                "\"up\"><td>eth0</td><td>br/xff&lt;0&gt;</td><td>up</td><td class=\"since\"></td><td>up</td><td></td><td class=\"n\"></td><td class=\"n\"></td><td class=\"n\"></td><td>",
            ),
        ];
        for (iface, expected) in cases {
            check_row(iface, &format!("{expected}</td>"));
        }
    }

    #[test]
    fn the_host_name_is_in_the_title_and_heading() {
        let html = page(Vec::new(), &context(true));
        assert!(
            html.contains("<title>node-1 \u{b7} interfaces_exporter</title>"),
            "{html}"
        );
        assert!(
            html.contains("<h1>interfaces_exporter on node-1</h1>"),
            "{html}"
        );
        let hostile = Context {
            host: b"<i>\xff",
            ..context(true)
        };
        let html = page(Vec::new(), &hostile);
        assert!(html.contains("<title>&lt;i&gt;\u{fffd} \u{b7} interfaces_exporter</title>"));
        assert!(!html.contains("<i>"), "{html}");
        // A name that could not be read leaves no dangling words.
        let nameless = Context {
            host: b"",
            ..context(true)
        };
        let html = page(Vec::new(), &nameless);
        assert!(
            html.contains("<title>interfaces_exporter</title>"),
            "{html}"
        );
        assert!(html.contains("<h1>interfaces_exporter</h1>"), "{html}");
    }

    #[test]
    fn refresh_0_leaves_the_refresh_out() {
        let on = page(Vec::new(), &context(true));
        assert!(on.contains("<meta http-equiv=\"refresh\" content=\"5\">\n"));
        assert!(on.contains(
            "Read at 2026-11-29 07:12:07 UTC, again every 5 s (<a href=\"?refresh=0\">stop</a>)."
        ));
        let off = page(Vec::new(), &context(false));
        assert!(!off.contains("http-equiv"), "{off}");
        assert!(
            off.contains("Read at 2026-11-29 07:12:07 UTC (<a href=\".\">refresh every 5 s</a>).")
        );
    }

    #[test]
    fn table_lists_interfaces_escaped() {
        let html = page(
            vec![Interface {
                name: b"<img src=x>".to_vec(),
                operstate: b"lowerlayerdown".to_vec(),
                admin_up: Some(true),
                carrier: Some(false),
                mtu: Some(1500),
                ifalias: b"a&b".to_vec(),
                ..Interface::default()
            }],
            &context(true),
        );
        assert!(html.contains(
            "<tr class=\"lowerlayerdown\"><td>&lt;img src=x&gt;</td><td></td><td>lowerlayerdown</td><td class=\"since\"></td><td>up</td><td>no</td><td class=\"n\"></td><td class=\"n\">1500</td><td class=\"n\"></td><td>a&amp;b</td></tr>"
        ));
        assert!(!html.contains("<img"));
        assert!(html.contains("<a href=\"/metrics\">/metrics</a>"));
        assert!(!html.contains("<script"));
    }

    #[test]
    fn names_that_are_not_utf8_stay_apart() {
        let mut interfaces = Vec::new();
        for name in [
            &b"\xff\xfe"[..],
            b"\xff\xfd",
            b"\xef\xbf\xbd\xef\xbf\xbd",
            b"<\xff>",
        ] {
            interfaces.push(Interface {
                name: name.to_vec(),
                operstate: b"up".to_vec(),
                ..Interface::default()
            });
        }
        let html = page(interfaces, &context(true));
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
