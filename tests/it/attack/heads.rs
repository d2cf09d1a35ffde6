//! Oversized and malformed heads, a TLS hello and an HTTP/2 preface: each gets its status
//! and a close, and the server lives on.

use super::*;
use crate::util::*;

/// A TLS 1.3 ClientHello as a browser sends it to `https://localhost`, byte for byte in shape:
/// record and handshake headers, random, session id, cipher suites, and the extensions every
/// client sends (server_name, supported_groups, ec_point_formats, signature_algorithms,
/// supported_versions, key_share).
fn client_hello() -> Vec<u8> {
    fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
    }
    let noise = |offset: u8| -> Vec<u8> {
        (0..32u8)
            .map(|i| i.wrapping_mul(73).wrapping_add(offset))
            .collect()
    };
    let mut exts = Vec::new();
    let host = b"localhost";
    let mut sni = Vec::new();
    sni.extend_from_slice(&(host.len() as u16 + 3).to_be_bytes());
    sni.push(0);
    sni.extend_from_slice(&(host.len() as u16).to_be_bytes());
    sni.extend_from_slice(host);
    ext(&mut exts, 0x0000, &sni);
    ext(
        &mut exts,
        0x000a,
        &[0, 6, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18],
    );
    ext(&mut exts, 0x000b, &[1, 0]);
    ext(
        &mut exts,
        0x000d,
        &[0, 6, 0x04, 0x03, 0x08, 0x04, 0x04, 0x01],
    );
    ext(&mut exts, 0x002b, &[4, 0x03, 0x04, 0x03, 0x03]);
    let mut share = vec![0, 36, 0x00, 0x1d, 0, 32];
    share.extend_from_slice(&noise(7));
    ext(&mut exts, 0x0033, &share);

    let mut hello = vec![0x03, 0x03];
    hello.extend_from_slice(&noise(1));
    hello.push(32);
    hello.extend_from_slice(&noise(3));
    let suites = [0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f];
    hello.extend_from_slice(&(suites.len() as u16).to_be_bytes());
    hello.extend_from_slice(&suites);
    hello.extend_from_slice(&[1, 0]);
    hello.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    hello.extend_from_slice(&exts);

    let mut handshake = vec![0x01];
    handshake.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&(handshake.len() as u16).to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[test]
fn oversized_and_malformed_heads_get_their_status_and_a_close() -> Result {
    let f = small_host()?;
    let mut exp = Exporter::start(&[&f.flag(), READ_TIMEOUT_FLAG])?;
    let with = |line: &str, fields: &str| format!("{line}\r\nHost: x\r\n{fields}\r\n").into_bytes();
    // Sizes stay within what the server drains before closing (its 64 KiB linger), so that a
    // reset cannot destroy the error response on its way.
    let binary: Vec<u8> = (0..32 * 1024u32)
        .map(|i| match (i.wrapping_mul(2_654_435_761) >> 24) as u8 {
            b'\n' => b'\x0b',
            b => b,
        })
        .collect();
    // The body of each refusal names its status and the rule that refused the head, so a
    // head refused for another reason than the one it was built to break fails here.
    let line_too_long = "414 uri too long: request line longer than 2048 bytes";
    let head_too_large =
        "431 request header fields too large: request head over 8192 bytes or 100 fields";
    let bare_lf = "400 bad request: line ends in a bare LF";
    let bad_target = "400 bad request: invalid request target";
    let bad_method = "400 bad request: invalid method";
    let not_a_request_line = "400 bad request: request line is not METHOD TARGET VERSION";
    // (what, bytes, the body expected (or "200"), whether a close without a response is
    // allowed)
    let cases: Vec<(&str, Vec<u8>, &str, bool)> = vec![
        (
            "request line past 2 KiB",
            with(&format!("GET /{} HTTP/1.1", "a".repeat(3000)), ""),
            line_too_long,
            false,
        ),
        (
            "a 9 KiB header",
            with(
                "GET /metrics HTTP/1.1",
                &format!("X-Big: {}\r\n", "a".repeat(9000)),
            ),
            head_too_large,
            false,
        ),
        (
            "2000 headers within 8 KiB (the field count)",
            with("GET /metrics HTTP/1.1", &"a:\r\n".repeat(2000)),
            head_too_large,
            false,
        ),
        (
            "5000 headers (the byte limit)",
            with("GET /metrics HTTP/1.1", &"X-A: b\r\n".repeat(5000)),
            head_too_large,
            false,
        ),
        (
            "32 KiB of binary with no line end",
            binary,
            line_too_long,
            false,
        ),
        (
            "bare LF line ends",
            b"GET /metrics HTTP/1.1\nHost: x\n\n".to_vec(),
            bare_lf,
            false,
        ),
        (
            "one bare LF among CRLFs",
            b"GET /metrics HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n".to_vec(),
            bare_lf,
            false,
        ),
        (
            "NUL in the target",
            with("GET /metr\0ics HTTP/1.1", ""),
            bad_target,
            false,
        ),
        (
            "NUL in a header value",
            with("GET /metrics HTTP/1.1", "X-A: b\0c\r\n"),
            "400 bad request: control character in header field value",
            false,
        ),
        (
            "NULs before the request line",
            [&b"\0\0\0\0"[..], &with("GET /metrics HTTP/1.1", "")].concat(),
            bad_method,
            false,
        ),
        (
            "non-ASCII in the target",
            with("GET /m\u{e9}trics HTTP/1.1", ""),
            bad_target,
            false,
        ),
        (
            "non-ASCII in the method",
            with("G\u{c9}T /metrics HTTP/1.1", ""),
            bad_method,
            false,
        ),
        (
            "non-ASCII in a header name",
            with("GET /metrics HTTP/1.1", "X-\u{e9}: b\r\n"),
            "400 bad request: invalid header field name",
            false,
        ),
        (
            "missing Host on HTTP/1.1",
            b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            "400 bad request: missing or repeated host",
            false,
        ),
        (
            "HTTP/0.9 request",
            b"GET /metrics\r\n\r\n".to_vec(),
            not_a_request_line,
            false,
        ),
        (
            "a blank head",
            b"\r\n\r\n".to_vec(),
            not_a_request_line,
            false,
        ),
        // The supported_groups extension (type 0x000a) puts an LF after a NUL.
        ("TLS ClientHello", client_hello(), bare_lf, true),
        (
            "HTTP/2 prior-knowledge preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            "505 http version not supported: unsupported http version",
            true,
        ),
        (
            "absolute-form target",
            with("GET http://host/metrics HTTP/1.1", "Connection: close\r\n"),
            "200",
            false,
        ),
    ];
    for (what, bytes, expected, close_ok) in cases {
        let x = exchange(exp.addr, &bytes, READ_TIMEOUT + MARGIN)?;
        let status = status_of(&x.bytes);
        eprintln!(
            "malformed: {what}: {status:?}, {:?} after {:?}",
            x.end, x.took
        );
        assert_ne!(x.end, End::Open, "{what}: no answer and no close: a hang");
        let text = x.text();
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let answered = x.responses() == 1
            && if expected == "200" {
                status == Some(200) && body.contains("interface_status{interface=\"eth0\"} 1")
            } else {
                body.strip_suffix('\n') == Some(expected)
            };
        let closed = close_ok && x.bytes.is_empty();
        assert!(
            answered || closed,
            "{what}: expected {expected:?}{}, got {text:?}",
            if close_ok { " or a close" } else { "" },
        );
        exp.assert_alive()?;
    }
    assert_serves(&mut exp)?;
    Ok(())
}
