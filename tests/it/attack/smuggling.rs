//! Request smuggling: bytes after a head are never served as a second request.

use super::*;
use crate::util::*;

#[test]
fn bytes_after_a_head_are_never_served_as_a_second_request() -> Result {
    let f = small_host()?;
    let mut exp = Exporter::start(&[&f.flag()])?;
    let inner = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    let n = inner.len();
    let head = |fields: &str| format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{fields}\r\n{inner}");
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "Content-Length body holding a request",
            head(&format!("Content-Length: {n}\r\n")),
            413,
        ),
        (
            "chunked body holding a request",
            format!(
                "GET /metrics HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n{inner}\r\n0\r\n\r\n"
            ),
            501,
        ),
        (
            "Content-Length 0 and Transfer-Encoding",
            head("Content-Length: 0\r\nTransfer-Encoding: chunked\r\n"),
            501,
        ),
        (
            "Content-Length 0, then another",
            head(&format!("Content-Length: 0\r\nContent-Length: {n}\r\n")),
            413,
        ),
        (
            "the same Content-Length twice",
            head(&format!("Content-Length: {n}\r\nContent-Length: {n}\r\n")),
            413,
        ),
        (
            "a Content-Length list",
            head(&format!("Content-Length: 0, {n}\r\n")),
            400,
        ),
        (
            "a signed Content-Length",
            head(&format!("Content-Length: +{n}\r\n")),
            400,
        ),
        (
            "obs-fold hiding a Content-Length",
            head(&format!("X-Pad: a\r\n Content-Length: {n}\r\n")),
            400,
        ),
        (
            "obs-fold hiding a Transfer-Encoding",
            head("X-Pad: a\r\n\tTransfer-Encoding: chunked\r\n"),
            400,
        ),
        (
            "a space before the colon",
            head("Transfer-Encoding : chunked\r\n"),
            400,
        ),
        (
            "Transfer-Encoding on HTTP/1.0",
            format!("GET /metrics HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n{inner}\r\n0\r\n\r\n"),
            501,
        ),
    ];
    for (what, bytes, status) in &cases {
        let x = exchange(exp.addr, bytes.as_bytes(), MARGIN)?;
        assert_eq!(x.responses(), 1, "{what}: {}", x.text());
        assert_ne!(x.end, End::Open, "{what}: the connection stayed open");
        assert_eq!(status_of(&x.bytes), Some(*status), "{what}: {}", x.text());
        exp.assert_alive()?;
    }
    // The control: two requests that are meant as two get two responses, so the count above
    // would see a smuggled one.
    let pipeline = format!("{inner}GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let x = exchange(exp.addr, pipeline.as_bytes(), MARGIN)?;
    assert_eq!((x.responses(), x.end), (2, End::Closed), "{}", x.text());
    eprintln!(
        "smuggling: {} cases, each one response and a close",
        cases.len()
    );
    Ok(())
}
