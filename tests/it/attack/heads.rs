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
    let noise = |seed: u8| -> Vec<u8> {
        (0..32u8)
            .map(|i| i.wrapping_mul(73).wrapping_add(seed))
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
    // (what, bytes, statuses allowed, whether a close without a response is allowed)
    let cases: Vec<(&str, Vec<u8>, &[u16], bool)> = vec![
        (
            "request line past 2 KiB",
            with(&format!("GET /{} HTTP/1.1", "a".repeat(3000)), ""),
            &[414],
            false,
        ),
        (
            "a 9 KiB header",
            with(
                "GET /metrics HTTP/1.1",
                &format!("X-Big: {}\r\n", "a".repeat(9000)),
            ),
            &[431],
            false,
        ),
        (
            "2000 headers within 8 KiB (the field count)",
            with("GET /metrics HTTP/1.1", &"a:\r\n".repeat(2000)),
            &[431],
            false,
        ),
        (
            "5000 headers (the byte limit)",
            with("GET /metrics HTTP/1.1", &"X-A: b\r\n".repeat(5000)),
            &[431],
            false,
        ),
        ("32 KiB of binary with no line end", binary, &[414], false),
        (
            "bare LF line ends",
            b"GET /metrics HTTP/1.1\nHost: x\n\n".to_vec(),
            &[400],
            false,
        ),
        (
            "one bare LF among CRLFs",
            b"GET /metrics HTTP/1.1\r\nHost: x\nX-A: b\r\n\r\n".to_vec(),
            &[400],
            false,
        ),
        (
            "NUL in the target",
            with("GET /metr\0ics HTTP/1.1", ""),
            &[400],
            false,
        ),
        (
            "NUL in a header value",
            with("GET /metrics HTTP/1.1", "X-A: b\0c\r\n"),
            &[400],
            false,
        ),
        (
            "NULs before the request line",
            [&b"\0\0\0\0"[..], &with("GET /metrics HTTP/1.1", "")].concat(),
            &[400],
            false,
        ),
        (
            "non-ASCII in the target",
            with("GET /m\u{e9}trics HTTP/1.1", ""),
            &[400],
            false,
        ),
        (
            "non-ASCII in the method",
            with("G\u{c9}T /metrics HTTP/1.1", ""),
            &[400],
            false,
        ),
        (
            "non-ASCII in a header name",
            with("GET /metrics HTTP/1.1", "X-\u{e9}: b\r\n"),
            &[400],
            false,
        ),
        (
            "missing Host on HTTP/1.1",
            b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n".to_vec(),
            &[400],
            false,
        ),
        (
            "HTTP/0.9 request",
            b"GET /metrics\r\n\r\n".to_vec(),
            &[400],
            false,
        ),
        ("a blank head", b"\r\n\r\n".to_vec(), &[400], false),
        ("TLS ClientHello", client_hello(), &[400], true),
        (
            "HTTP/2 prior-knowledge preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            &[505],
            true,
        ),
        (
            "absolute-form target",
            with("GET http://host/metrics HTTP/1.1", "Connection: close\r\n"),
            &[200],
            false,
        ),
    ];
    for (what, bytes, statuses, close_ok) in cases {
        let x = exchange(exp.addr, &bytes, READ_TIMEOUT + MARGIN)?;
        let status = status_of(&x.bytes);
        eprintln!(
            "malformed: {what}: {status:?}, {:?} after {:?}",
            x.end, x.took
        );
        assert_ne!(x.end, End::Open, "{what}: no answer and no close: a hang");
        let answered = status.is_some_and(|s| statuses.contains(&s)) && x.responses() == 1;
        let closed = close_ok && x.bytes.is_empty();
        assert!(
            answered || closed,
            "{what}: expected {statuses:?}{}, got {:?}",
            if close_ok { " or a close" } else { "" },
            x.text()
        );
        if status == Some(200) {
            assert!(x.text().contains("interface_status{interface=\"eth0\"} 1"));
        }
        exp.assert_alive()?;
    }
    assert_serves(&mut exp)?;
    Ok(())
}
