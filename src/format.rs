//! Which exposition format a scrape gets: the two [`Format`]s, and [`negotiate`], which picks
//! one from the request's `Accept` header. The renderers in `metrics` write either.
//!
//! Invariant: never panics on any input; a header it cannot read means the text format, which
//! every Prometheus understands.

use crate::http::trim;

/// The exposition format a scrape asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
}

/// Picks OpenMetrics when `Accept` rates it above the plain text format, by q-value; ties go
/// to whichever the client listed first, as Prometheus lists its preference first.
pub fn negotiate(accept: Option<&[u8]>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let (mut om, mut text) = (0u16, 0u16);
    let mut om_first = false;
    for range in accept.split(|&b| b == b',') {
        let mut params = range.split(|&b| b == b';').map(trim);
        let media = params.next().unwrap_or_default();
        let q = params
            .filter_map(|p| p.strip_prefix(b"q=").or_else(|| p.strip_prefix(b"Q=")))
            .map(parse_q)
            .next_back()
            .unwrap_or(1000);
        if media.eq_ignore_ascii_case(b"application/openmetrics-text") {
            if q > om {
                om_first = om_first || text == 0;
                om = q;
            }
        } else if media.eq_ignore_ascii_case(b"text/plain")
            || media.eq_ignore_ascii_case(b"text/*")
            || media == b"*/*"
        {
            text = text.max(q);
        }
    }
    if om > text || om > 0 && om == text && om_first {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// A q-value (RFC 9110: `0[.ddd]` or `1[.000]`) in thousandths; anything else counts as 0,
/// "not acceptable".
fn parse_q(s: &[u8]) -> u16 {
    let (whole, fraction) = match s.iter().position(|&b| b == b'.') {
        Some(i) => (&s[..i], &s[i + 1..]),
        None => (s, &b""[..]),
    };
    if fraction.len() > 3 || !fraction.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    let thousandths = fraction
        .iter()
        .chain(b"000")
        .take(3)
        .fold(0u16, |n, &b| n * 10 + u16::from(b - b'0'));
    match whole {
        b"0" => thousandths,
        b"1" if thousandths == 0 => 1000,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::Rng;

    #[test]
    fn content_negotiation() {
        let prometheus3 = b"application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        let cases: &[(Option<&[u8]>, Format)] = &[
            (None, Format::Text),
            (Some(b"*/*"), Format::Text),
            (Some(b"text/plain"), Format::Text),
            (Some(prometheus3), Format::OpenMetrics),
            (Some(b"application/openmetrics-text"), Format::OpenMetrics),
            (
                Some(b"application/openmetrics-text; version=1.0.0"),
                Format::OpenMetrics,
            ),
            (
                Some(b"text/plain;q=0.9, application/openmetrics-text;q=0.5"),
                Format::Text,
            ),
            (
                Some(b"text/plain;q=0.5, application/openmetrics-text;q=0.9"),
                Format::OpenMetrics,
            ),
            (
                Some(b"application/openmetrics-text, text/plain"),
                Format::OpenMetrics,
            ),
            (
                Some(b"text/plain, application/openmetrics-text"),
                Format::Text,
            ),
            (Some(b"application/openmetrics-text;q=0"), Format::Text),
            (Some(b"application/openmetrics-text;q=bogus"), Format::Text),
            (Some(b"application/json"), Format::Text),
            (Some(b",,;;=,"), Format::Text),
            (
                Some(b"text/plain;q=0.001, application/openmetrics-text;q=0.01"),
                Format::OpenMetrics,
            ),
            (
                Some(b"text/plain;q=1.5, application/openmetrics-text;q=0.1"),
                Format::OpenMetrics,
            ),
        ];
        for &(accept, expected) in cases {
            assert_eq!(
                negotiate(accept),
                expected,
                "{:?}",
                accept.map(String::from_utf8_lossy)
            );
        }
    }

    #[test]
    fn q_values() {
        let cases: &[(&[u8], u16)] = &[
            (b"1", 1000),
            (b"1.0", 1000),
            (b"1.000", 1000),
            (b"0", 0),
            (b"0.5", 500),
            (b"0.25", 250),
            (b"0.125", 125),
            (b"0.", 0),
            (b"1.5", 0),
            (b"0.1234", 0),
            (b"2", 0),
            (b"-0.5", 0),
            (b"", 0),
            (b"0.x", 0),
        ];
        for &(input, expected) in cases {
            assert_eq!(
                parse_q(input),
                expected,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    /// `Accept` headers built from media ranges with known q-values: whichever format has the
    /// higher best q wins; ties are left to the documented tie-break and not checked here.
    #[test]
    fn fuzz_negotiation() {
        const OM: &[&str] = &[
            "application/openmetrics-text",
            "application/openmetrics-text;version=1.0.0",
            "Application/OpenMetrics-Text; version=0.0.1",
        ];
        const TEXT: &[&str] = &["text/plain", "text/plain;version=0.0.4", "text/*", "*/*"];
        const NEITHER: &[&str] = &["application/json", "image/*", "", "application/*"];
        let mut rng = Rng(0x1e5e_ed00_0000_0003);
        for _ in 0..100_000 {
            let (mut om, mut text) = (0u16, 0u16);
            let mut accept = String::new();
            for i in 0..1 + rng.below(5) {
                if i > 0 {
                    accept.push_str(if rng.below(2) == 0 { "," } else { ", " });
                }
                let kind = rng.below(3);
                let media = match kind {
                    0 => *rng.pick(OM),
                    1 => *rng.pick(TEXT),
                    _ => *rng.pick(NEITHER),
                };
                accept.push_str(media);
                let q = match rng.below(4) {
                    0 => 1000,
                    1 => {
                        accept.push_str(";q=bogus");
                        0
                    }
                    _ => {
                        let q = rng.below(1001) as u16;
                        accept.push_str(&format!(";q={}.{:03}", q / 1000, q % 1000));
                        q
                    }
                };
                match kind {
                    0 => om = om.max(q),
                    1 => text = text.max(q),
                    _ => {}
                }
            }
            let got = negotiate(Some(accept.as_bytes()));
            if om > text {
                assert_eq!(got, Format::OpenMetrics, "{accept}");
            } else if om < text || om == 0 {
                assert_eq!(got, Format::Text, "{accept}");
            }
            // Arbitrary bytes never panic, and without openmetrics they always mean text.
            let mut noise = accept.into_bytes();
            let at = rng.below(noise.len() + 1);
            noise.insert(at, rng.next() as u8);
            let format = negotiate(Some(&noise));
            let lower = noise.to_ascii_lowercase();
            if !lower.windows(12).any(|w| w == b"openmetrics-") {
                assert_eq!(
                    format,
                    Format::Text,
                    "{:?}",
                    String::from_utf8_lossy(&noise)
                );
            }
        }
    }
}
