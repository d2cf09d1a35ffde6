//! HTTP/1.1 request heads in, responses out, as functions over bytes.
//!
//! The server feeds [`check_partial`] every time bytes arrive, so that a head that can never be
//! valid is refused as soon as that is known, and [`parse_head`] once [`head_end`] finds the
//! blank line. Only what an exporter needs is understood: `GET` and `HEAD`, no request bodies,
//! `Connection` for persistence and `Accept` for the exposition format. Everything a smuggling
//! attack leans on (bodies, `Transfer-Encoding`, bare LF, obs-fold, duplicate `Host`) is refused,
//! and the server closes the connection after any refusal.
//!
//! Invariant: never panics on any input, and never looks past the limits below.

use std::fmt;
use std::io::Write as _;

/// The longest request line. Scrape targets are short; 2 KiB leaves room for long query strings
/// that some service-discovery setups add, and far less than a head.
pub const MAX_REQUEST_LINE: usize = 2048;

/// The longest request head, request line included. Browsers send 1-2 KiB; 8 KiB is the
/// common server default (nginx, Apache).
pub const MAX_HEAD: usize = 8192;

/// The most header fields in one head. Real clients send under 20.
pub const MAX_HEADERS: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: Method,
    /// The path of the target, without the query string.
    pub path: &'a [u8],
    /// The query string, without its `?` and any fragment; empty when there is none.
    pub query: &'a [u8],
    pub version: Version,
    /// Whether the connection may serve another request after this one.
    pub keep_alive: bool,
    pub accept: Option<&'a [u8]>,
}

impl Request<'_> {
    /// The `Connection` header a response needs: `close` when the connection ends after it,
    /// `keep-alive` for an HTTP/1.0 client that asked to keep it (which otherwise assumes a
    /// close), none for HTTP/1.1, where persistence is the default.
    pub fn connection_header(&self) -> Option<&'static str> {
        match (self.keep_alive, self.version) {
            (false, _) => Some("close"),
            (true, Version::Http10) => Some("keep-alive"),
            (true, Version::Http11) => None,
        }
    }
}

/// Why a head was refused. Each maps to one status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The bytes are not an HTTP/1.x head we accept (400).
    Malformed(&'static str),
    /// A body was announced; we take none (413).
    Body,
    /// `Transfer-Encoding` of any kind (501).
    TransferEncoding,
    /// Request line past [`MAX_REQUEST_LINE`] (414).
    LineTooLong,
    /// Head past [`MAX_HEAD`] or more than [`MAX_HEADERS`] fields (431).
    HeadTooLarge,
    /// A version other than 1.0 and 1.1 (505).
    Version,
}

impl Error {
    pub fn status(self) -> Status {
        match self {
            Error::Malformed(_) => Status::BadRequest,
            Error::Body => Status::ContentTooLarge,
            Error::TransferEncoding => Status::NotImplemented,
            Error::LineTooLong => Status::UriTooLong,
            Error::HeadTooLarge => Status::HeaderFieldsTooLarge,
            Error::Version => Status::VersionNotSupported,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(why) => f.write_str(why),
            Error::Body => f.write_str("request has a body"),
            Error::TransferEncoding => f.write_str("request has a transfer-encoding"),
            Error::LineTooLong => write!(f, "request line longer than {MAX_REQUEST_LINE} bytes"),
            Error::HeadTooLarge => {
                write!(
                    f,
                    "request head over {MAX_HEAD} bytes or {MAX_HEADERS} fields"
                )
            }
            Error::Version => f.write_str("unsupported http version"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    ContentTooLarge,
    UriTooLong,
    HeaderFieldsTooLarge,
    NotImplemented,
    ServiceUnavailable,
    VersionNotSupported,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::RequestTimeout => 408,
            Status::ContentTooLarge => 413,
            Status::UriTooLong => 414,
            Status::HeaderFieldsTooLarge => 431,
            Status::NotImplemented => 501,
            Status::ServiceUnavailable => 503,
            Status::VersionNotSupported => 505,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::RequestTimeout => "Request Timeout",
            Status::ContentTooLarge => "Content Too Large",
            Status::UriTooLong => "URI Too Long",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::NotImplemented => "Not Implemented",
            Status::ServiceUnavailable => "Service Unavailable",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// The length of the head including its blank line, once the buffer holds all of it.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// Refuses a head that is still arriving but can already never be valid: too long, or using
/// a bare LF (which would otherwise wait for a CRLF CRLF that never comes).
pub fn check_partial(buf: &[u8]) -> Result<(), Error> {
    let line_end = buf.iter().position(|&b| b == b'\n');
    if line_end.map_or(buf.len(), |i| i + 1) > MAX_REQUEST_LINE {
        return Err(Error::LineTooLong);
    }
    for (i, &b) in buf.iter().enumerate() {
        if b == b'\n' && (i == 0 || buf[i - 1] != b'\r') {
            return Err(Error::Malformed("line ends in a bare LF"));
        }
    }
    let len = head_end(buf).unwrap_or(buf.len());
    if len > MAX_HEAD {
        return Err(Error::HeadTooLarge);
    }
    Ok(())
}

/// Parses one complete head, `head` ending with its CRLF CRLF.
pub fn parse_head(head: &[u8]) -> Result<Request<'_>, Error> {
    check_partial(head)?;
    // Keep the last line's own CR, so that every line loses exactly the CR of its CRLF: a bare
    // CR before the final CRLF CRLF is refused like one anywhere else, never silently dropped.
    let body = head
        .strip_suffix(b"\r\n\r\n")
        .map(|b| &head[..b.len() + 1])
        .ok_or(Error::Malformed("head does not end with a blank line"))?;
    let mut lines = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let line = lines.next().unwrap_or_default();
    let (method, path, query, version) = parse_request_line(line)?;

    let mut keep_alive = version == Version::Http11;
    let mut accept = None;
    let mut close = false;
    let mut hosts = 0;
    let mut fields = 0;
    for line in lines {
        fields += 1;
        if fields > MAX_HEADERS {
            return Err(Error::HeadTooLarge);
        }
        if line.first().is_some_and(|&b| b == b' ' || b == b'\t') {
            return Err(Error::Malformed("obsolete line folding"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or(Error::Malformed("header field without a colon"))?;
        let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
        if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
            return Err(Error::Malformed("invalid header field name"));
        }
        if !value.iter().all(|&b| b == b'\t' || b >= b' ' && b != 0x7f) {
            return Err(Error::Malformed("control character in header field value"));
        }
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            // Only an explicit empty body is harmless; any other value, or a list, would leave
            // bytes after the head that must never be read as a request.
            if value != b"0" {
                return Err(if value.iter().all(u8::is_ascii_digit) {
                    Error::Body
                } else {
                    Error::Malformed("invalid content-length")
                });
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return Err(Error::TransferEncoding);
        } else if name.eq_ignore_ascii_case(b"connection") {
            for token in value.split(|&b| b == b',').map(trim) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"keep-alive") && version == Version::Http10 {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"accept") {
            accept = Some(value);
        }
    }
    // RFC 9112 section 3.2: a server must answer 400 to an HTTP/1.1 request without exactly
    // one Host field.
    if version == Version::Http11 && hosts != 1 || hosts > 1 {
        return Err(Error::Malformed("missing or repeated host"));
    }
    // `Connection: close` wins wherever it stands among the tokens.
    if close {
        keep_alive = false;
    }
    Ok(Request {
        method,
        path,
        query,
        version,
        keep_alive,
        accept,
    })
}

/// The method, path, query and version of a request line.
type RequestLine<'a> = (Method, &'a [u8], &'a [u8], Version);

fn parse_request_line(line: &[u8]) -> Result<RequestLine<'_>, Error> {
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(Error::Malformed("invalid method"));
    }
    let version = match version {
        b"HTTP/1.1" => Version::Http11,
        b"HTTP/1.0" => Version::Http10,
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            return Err(Error::Version)
        }
        [b'H', b'T', b'T', b'P', b'/', major] if major.is_ascii_digit() => {
            return Err(Error::Version)
        }
        _ => return Err(Error::Malformed("invalid http version")),
    };
    if target.is_empty() || !target.iter().all(u8::is_ascii_graphic) {
        return Err(Error::Malformed("invalid request target"));
    }
    // The query and fragment are split off first: an absolute-form target's authority ends
    // at the first `?` as well as at the first `/`.
    let (target, query) = match target.iter().position(|&b| b == b'?' || b == b'#') {
        Some(i) if target[i] == b'?' => {
            let query = &target[i + 1..];
            let end = query.iter().position(|&b| b == b'#').unwrap_or(query.len());
            (&target[..i], &query[..end])
        }
        Some(i) => (&target[..i], &b""[..]),
        None => (target, &b""[..]),
    };
    let path = match target {
        [b'/', ..] => target,
        b"*" => target,
        _ => absolute_form_path(target).ok_or(Error::Malformed("invalid request target"))?,
    };
    let method = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        _ => Method::Other,
    };
    Ok((method, path, query, version))
}

/// The path of an absolute-form target (`http://host:9425/metrics`), which RFC 9112 requires
/// servers to accept; an empty path is `/`.
fn absolute_form_path(target: &[u8]) -> Option<&[u8]> {
    let scheme_len = target.iter().position(|&b| b == b':')?;
    let scheme = &target[..scheme_len];
    if !scheme.eq_ignore_ascii_case(b"http") && !scheme.eq_ignore_ascii_case(b"https") {
        return None;
    }
    let rest = target[scheme_len + 1..].strip_prefix(b"//")?;
    let authority_len = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    if authority_len == 0 {
        return None;
    }
    match &rest[authority_len..] {
        [b'/', ..] => Some(&rest[authority_len..]),
        _ => Some(b"/"),
    }
}

/// Strips RFC 9110 optional white space (spaces and tabs) from both ends.
pub fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &s[start..end]
}

/// RFC 9110 `tchar`: the bytes a method or header name may hold.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A response head: the fields that differ from response to response. `Allow` is added to
/// every 405, which RFC 9110 requires of it.
pub struct Head<'a> {
    pub status: Status,
    pub content_type: &'a str,
    pub content_length: usize,
    /// The `Connection` header's value, if any.
    pub connection: Option<&'a str>,
    /// The `Date` header's value, an IMF-fixdate ([`http_date`]).
    pub date: &'a str,
}

/// Appends a response head.
pub fn write_head(out: &mut Vec<u8>, head: &Head<'_>) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nDate: {}\r\n",
        head.status.code(),
        head.status.reason(),
        head.content_type,
        head.content_length,
        head.date,
    );
    if head.status == Status::MethodNotAllowed {
        out.extend_from_slice(b"Allow: GET, HEAD\r\n");
    }
    if let Some(value) = head.connection {
        out.extend_from_slice(b"Connection: ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the body of an error response: one line that names the status and the rule that
/// refused the request, `{code} {reason in lowercase}: {rule}`, such as `400 bad request: line
/// ends in a bare LF`, so that whoever reads it (curl, Prometheus' scrape error) learns why.
pub fn write_error_body(out: &mut Vec<u8>, status: Status, rule: &dyn fmt::Display) {
    let _ = write!(out, "{} ", status.code());
    out.extend(status.reason().bytes().map(|b| b.to_ascii_lowercase()));
    let _ = writeln!(out, ": {rule}");
}

/// Formats an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for the `Date` header.
pub fn http_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let (y, m, d) = crate::log::civil_from_days(days as i64);
    let rem = unix_secs % 86_400;
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `head` and compares a short rendering of the outcome with `expected`:
    /// `METHOD PATH VERSION keep|close [accept]`, or `ERROR status rule` naming the rule that
    /// refused it.
    #[track_caller]
    fn check(head: &[u8], expected: &str) {
        let actual = match parse_head(head) {
            Ok(r) => {
                let mut target = String::from_utf8_lossy(r.path).into_owned();
                if !r.query.is_empty() {
                    target.push('?');
                    target.push_str(&String::from_utf8_lossy(r.query));
                }
                let mut s = format!(
                    "{:?} {} {:?} {}",
                    r.method,
                    target,
                    r.version,
                    if r.keep_alive { "keep" } else { "close" }
                );
                if let Some(a) = r.accept {
                    s.push_str(&format!(" [{}]", String::from_utf8_lossy(a)));
                }
                s
            }
            Err(e) => format!("ERROR {} {e}", e.status().code()),
        };
        assert_eq!(
            actual,
            expected,
            "head: {:?}",
            String::from_utf8_lossy(head)
        );
    }

    #[test]
    fn valid_heads() {
        check(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            "Get /metrics Http11 keep",
        );
        check(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", "Head / Http11 keep");
        check(
            b"GET /metrics?x=1&y=2 HTTP/1.1\r\nHost: x\r\n\r\n",
            "Get /metrics?x=1&y=2 Http11 keep",
        );
        check(
            b"GET /metrics#frag HTTP/1.1\r\nHost: x\r\n\r\n",
            "Get /metrics Http11 keep",
        );
        check(
            b"GET /?refresh=0#top HTTP/1.1\r\nHost: x\r\n\r\n",
            "Get /?refresh=0 Http11 keep",
        );
        check(b"GET /? HTTP/1.1\r\nHost: x\r\n\r\n", "Get / Http11 keep");
        check(
            b"GET http://h:9425?refresh=0 HTTP/1.1\r\nHost: x\r\n\r\n",
            "Get /?refresh=0 Http11 keep",
        );
        check(
            b"GET http://h/x?a?b HTTP/1.1\r\nHost: x\r\n\r\n",
            "Get /x?a?b Http11 keep",
        );
        check(
            b"GET /metrics HTTP/1.0\r\n\r\n",
            "Get /metrics Http10 close",
        );
        check(
            b"GET /metrics HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
            "Get /metrics Http10 keep",
        );
        check(
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, close\r\n\r\n",
            "Get /metrics Http11 close",
        );
        check(
            b"GET /metrics HTTP/1.0\r\nConnection: close\r\nConnection: keep-alive\r\n\r\n",
            "Get /metrics Http10 close",
        );
        check(
            b"GET /metrics HTTP/1.1\r\nhOsT: x\r\nAccept:  text/plain ; q=0.5 \r\n\r\n",
            "Get /metrics Http11 keep [text/plain ; q=0.5]",
        );
        check(
            b"GET http://h:9425/metrics?a HTTP/1.1\r\nHost: h\r\n\r\n",
            "Get /metrics?a Http11 keep",
        );
        check(
            b"GET http://h:9425 HTTP/1.1\r\nHost: h\r\n\r\n",
            "Get / Http11 keep",
        );
        check(
            b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            "Other /metrics Http11 keep",
        );
        check(
            b"get /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
            "Other /metrics Http11 keep",
        );
        check(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "Get / Http11 keep",
        );
        check(
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Bin: caf\xc3\xa9\xff\r\n\r\n",
            "Get / Http11 keep",
        );
        check(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", "Get / Http11 keep");
    }

    #[test]
    fn hostile_heads() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"\r\n\r\n",
                "ERROR 400 request line is not METHOD TARGET VERSION",
            ),
            (
                b"GET\r\n\r\n",
                "ERROR 400 request line is not METHOD TARGET VERSION",
            ),
            (
                b"GET /\r\n\r\n",
                "ERROR 400 request line is not METHOD TARGET VERSION",
            ),
            (
                b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n",
                "ERROR 400 request line is not METHOD TARGET VERSION",
            ),
            (
                b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n",
                "ERROR 400 request line is not METHOD TARGET VERSION",
            ),
            (
                b"GET / HTTP/1.1\r\n\r\n",
                "ERROR 400 missing or repeated host",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
                "ERROR 400 missing or repeated host",
            ),
            (
                b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
                "ERROR 400 missing or repeated host",
            ),
            (
                b"GET / HTTP/1.1\nHost: x\n\n",
                "ERROR 400 line ends in a bare LF",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\n\r\n\r\n",
                "ERROR 400 line ends in a bare LF",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\n X-Fold: y\r\n\r\n",
                "ERROR 400 obsolete line folding",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\n\tX-Fold: y\r\n\r\n",
                "ERROR 400 obsolete line folding",
            ),
            (
                b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
                "ERROR 400 invalid header field name",
            ),
            (
                b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
                "ERROR 400 header field without a colon",
            ),
            (
                b"GET / HTTP/1.1\r\n: x\r\nHost: x\r\n\r\n",
                "ERROR 400 invalid header field name",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\0y\r\n\r\n",
                "ERROR 400 control character in header field value",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\ry\r\n\r\n",
                "ERROR 400 control character in header field value",
            ),
            // Found by fuzz_mutated_heads: a bare CR ending the last line used to be dropped.
            (
                b"GET / HTTP/1.1\r\nHost: x\r\r\n\r\n",
                "ERROR 400 control character in header field value",
            ),
            (
                b"GET / HTTP/1.0\r\r\n\r\n",
                "ERROR 400 invalid http version",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\n\r\r\n\r\n",
                "ERROR 400 header field without a colon",
            ),
            (
                b"GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n",
                "ERROR 400 invalid request target",
            ),
            (
                b"GET /\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
                "ERROR 400 invalid request target",
            ),
            (
                b"G\xc3\xa9T / HTTP/1.1\r\nHost: x\r\n\r\n",
                "ERROR 400 invalid method",
            ),
            (
                b"GET metrics HTTP/1.1\r\nHost: x\r\n\r\n",
                "ERROR 400 invalid request target",
            ),
            (
                b"GET ftp://h/ HTTP/1.1\r\nHost: x\r\n\r\n",
                "ERROR 400 invalid request target",
            ),
            (
                b"GET http:/h HTTP/1.1\r\nHost: x\r\n\r\n",
                "ERROR 400 invalid request target",
            ),
            (
                b"GET http:///x HTTP/1.1\r\nHost: x\r\n\r\n",
                "ERROR 400 invalid request target",
            ),
            (
                b"GET / HTTX/1.1\r\nHost: x\r\n\r\n",
                "ERROR 400 invalid http version",
            ),
            (
                b"GET / http/1.1\r\nHost: x\r\n\r\n",
                "ERROR 400 invalid http version",
            ),
            (
                b"GET / HTTP/1.1.1\r\nHost: x\r\n\r\n",
                "ERROR 400 invalid http version",
            ),
            (
                b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
                "ERROR 505 unsupported http version",
            ),
            (
                b"GET / HTTP/0.9\r\n\r\n",
                "ERROR 505 unsupported http version",
            ),
            (
                b"GET / HTTP/3\r\n\r\n",
                "ERROR 505 unsupported http version",
            ),
            (
                b"PRI * HTTP/2.0\r\n\r\n",
                "ERROR 505 unsupported http version",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n",
                "ERROR 413 request has a body",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0, 0\r\n\r\n",
                "ERROR 400 invalid content-length",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                "ERROR 400 invalid content-length",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 00\r\n\r\n",
                "ERROR 413 request has a body",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 7\r\n\r\n",
                "ERROR 413 request has a body",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                "ERROR 501 request has a transfer-encoding",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
                "ERROR 501 request has a transfer-encoding",
            ),
            (
                b"GET / HTTP/1.1\r\nHost: x\r\n",
                "ERROR 400 head does not end with a blank line",
            ),
        ];
        for (head, expected) in cases {
            check(head, expected);
        }
    }

    #[test]
    fn limits() {
        let target = |len: usize| format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(len));
        let fields = |fields: String| format!("GET / HTTP/1.1\r\nHost: x\r\n{fields}\r\n");
        let too_large = "ERROR 431 request head over 8192 bytes or 100 fields";
        let fits = MAX_REQUEST_LINE - 16;
        let cases = [
            (
                target(MAX_REQUEST_LINE),
                "ERROR 414 request line longer than 2048 bytes".to_owned(),
            ),
            (
                target(fits),
                format!("Get /{} Http11 keep", "a".repeat(fits)),
            ),
            (
                fields(format!("X: {}\r\n", "a".repeat(MAX_HEAD))),
                too_large.to_owned(),
            ),
            (fields("A: b\r\n".repeat(MAX_HEADERS)), too_large.to_owned()),
            (
                fields("A: b\r\n".repeat(MAX_HEADERS - 1)),
                "Get / Http11 keep".to_owned(),
            ),
        ];
        for (head, expected) in &cases {
            check(head.as_bytes(), expected);
        }
    }

    #[test]
    fn partial_heads_fail_early() {
        assert_eq!(check_partial(b"GET / HTTP/1.1\r\nHo"), Ok(()));
        assert_eq!(check_partial(b""), Ok(()));
        assert_eq!(
            check_partial(b"GET / HTTP/1.1\n"),
            Err(Error::Malformed("line ends in a bare LF"))
        );
        assert_eq!(
            check_partial(b"\n"),
            Err(Error::Malformed("line ends in a bare LF"))
        );
        assert_eq!(
            check_partial(&[b'a'; MAX_REQUEST_LINE + 1]),
            Err(Error::LineTooLong)
        );
        let mut head = b"GET / HTTP/1.1\r\n".to_vec();
        head.resize(MAX_HEAD + 1, b'a');
        assert_eq!(check_partial(&head), Err(Error::HeadTooLarge));
        // Pipelined bytes after a complete head do not count against it.
        let mut pipelined = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
        pipelined.resize(MAX_HEAD * 2, b'a');
        assert_eq!(
            check_partial(&pipelined[..head_end(&pipelined).unwrap_or(0)]),
            Ok(())
        );
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nGET"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r"), None);
    }

    #[test]
    fn tls_and_http2_prefaces_are_refused() {
        // A TLS ClientHello starts with a handshake record header: no request line at all.
        let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
        assert_eq!(check_partial(hello), Ok(()));
        let mut with_end = hello.to_vec();
        with_end.extend_from_slice(b"\r\n\r\n");
        check(
            &with_end,
            "ERROR 400 request line is not METHOD TARGET VERSION",
        );
        check(
            b"PRI * HTTP/2.0\r\n\r\n",
            "ERROR 505 unsupported http version",
        );
    }

    #[test]
    fn heads_carry_length_and_close() {
        let date = "Thu, 26 Nov 2026 10:00:00 GMT";
        let head = Head {
            status: Status::MethodNotAllowed,
            content_type: "text/plain; charset=utf-8",
            content_length: 5,
            connection: Some("close"),
            date,
        };
        let mut out = Vec::new();
        write_head(&mut out, &head);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nDate: Thu, 26 Nov 2026 10:00:00 GMT\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n"
        );
        out.clear();
        write_head(
            &mut out,
            &Head {
                status: Status::Ok,
                connection: None,
                ..head
            },
        );
        assert_eq!(
            String::from_utf8_lossy(&out),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\nDate: Thu, 26 Nov 2026 10:00:00 GMT\r\n\r\n"
        );
    }

    #[test]
    fn error_bodies_name_the_status_and_the_rule() {
        let cases: &[(Status, &dyn fmt::Display, &str)] = &[
            (
                Status::BadRequest,
                &Error::Malformed("line ends in a bare LF"),
                "400 bad request: line ends in a bare LF\n",
            ),
            (
                Status::VersionNotSupported,
                &Error::Version,
                "505 http version not supported: unsupported http version\n",
            ),
            (
                Status::ServiceUnavailable,
                &"too many connections",
                "503 service unavailable: too many connections\n",
            ),
        ];
        for (status, rule, expected) in cases {
            let mut out = Vec::new();
            write_error_body(&mut out, *status, *rule);
            assert_eq!(String::from_utf8_lossy(&out), *expected);
        }
    }

    #[test]
    fn dates() {
        assert_eq!(http_date(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
    }

    // Fuzzing: std-only and deterministic, each fuzzer's Rng starting at a fixed state. Every
    // run replays the same inputs, so a failure reproduces from the test name alone; the
    // invariants are checked by a second, simpler reading of the same bytes rather than by
    // comparing with the parser's own logic.

    use crate::fuzz::Rng;

    /// What scrapers, curl and browsers send, and the shapes attacks start from.
    const CORPUS: &[&[u8]] = &[
        b"GET /metrics HTTP/1.1\r\nHost: 10.0.0.1:9425\r\nUser-Agent: Prometheus/3.0.0\r\nAccept: application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,text/plain;version=0.0.4;q=0.3,*/*;q=0.2\r\nAccept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nHost: localhost:9425\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET /metrics HTTP/1.0\r\n\r\n",
        b"GET http://h:9425/metrics?x=1#f HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 0\r\n\r\nhello",
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Fold: a\r\n b\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00\x0a\x00\x1d",
    ];

    /// Fragments a mutation inserts: separators, line ends and the fields smuggling leans on.
    const TOKENS: &[&[u8]] = &[
        b"\r\n",
        b"\n",
        b"\r",
        b"\0",
        b" ",
        b"\t",
        b":",
        b",",
        b";",
        b"\r\n\r\n",
        b"\r\n ",
        b"\x7f",
        b"\xff",
        b"\xc3\xa9",
        b"*",
        b"?",
        b"#",
        b"/",
        b"q=0.5",
        b"q=",
        b"http://",
        b"HTTP/1.1",
        b"HTTP/1.0",
        b"HTTP/2.0",
        b"Host: x\r\n",
        b"Connection: close\r\n",
        b"Connection: keep-alive\r\n",
        b"Content-Length: 0\r\n",
        b"Content-Length: 7\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Accept: application/openmetrics-text\r\n",
        b"close",
        b"keep-alive",
        b"text/plain",
        b"application/openmetrics-text",
    ];

    fn mutate(rng: &mut Rng) -> Vec<u8> {
        let mut v = rng.pick(CORPUS).to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(v.len() + 1);
            match rng.below(8) {
                0 if at < v.len() => v[at] ^= 1 << rng.below(8),
                1 if at < v.len() => v[at] = rng.next() as u8,
                2 | 3 => {
                    let token = rng.pick(TOKENS);
                    v.splice(at..at, token.iter().copied());
                }
                4 => {
                    let end = (at + 1 + rng.below(8)).min(v.len());
                    v.drain(at.min(end)..end);
                }
                5 => v.truncate(at),
                6 => {
                    // Splice: this input's start, another corpus entry's end.
                    let other = rng.pick(CORPUS);
                    let from = rng.below(other.len() + 1);
                    v.truncate(at);
                    v.extend_from_slice(&other[from..]);
                }
                _ => {
                    // Repeat a slice, now and then far past the limits.
                    let end = (at + 1 + rng.below(16)).min(v.len());
                    let times = if rng.below(256) == 0 {
                        100 + rng.below(1000)
                    } else {
                        1 + rng.below(3)
                    };
                    let slice = v[at.min(end)..end].repeat(times);
                    v.splice(at..at, slice);
                }
            }
        }
        v
    }

    fn random_bytes(rng: &mut Rng) -> Vec<u8> {
        const HTTPISH: &[u8] = b"GET /metrics HTTP/1.1\r\n\r\nHost: x:,; \t\0";
        let len = rng.below(80);
        let any = rng.below(2) == 0;
        (0..len)
            .map(|_| {
                if any {
                    rng.next() as u8
                } else {
                    *rng.pick(HTTPISH)
                }
            })
            .collect()
    }

    /// Splits at every CRLF, independently of the parser's split at LF.
    fn crlf_lines(s: &[u8]) -> Vec<&[u8]> {
        let (mut out, mut start, mut i) = (Vec::new(), 0, 0);
        while i + 1 < s.len() {
            if &s[i..i + 2] == b"\r\n" {
                out.push(&s[start..i]);
                i += 2;
                start = i;
            } else {
                i += 1;
            }
        }
        out.push(&s[start..]);
        out
    }

    fn trim_ows(s: &[u8]) -> &[u8] {
        let s = match s.iter().position(|&b| b != b' ' && b != b'\t') {
            Some(i) => &s[i..],
            None => return &[],
        };
        match s.iter().rposition(|&b| b != b' ' && b != b'\t') {
            Some(i) => &s[..=i],
            None => s,
        }
    }

    /// Shows bytes in a failure message, converting them only if the message is printed.
    struct Shown<'a>(&'a [u8]);

    impl fmt::Debug for Shown<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{:?}", String::from_utf8_lossy(self.0))
        }
    }

    /// What must hold of a head that [`parse_head`] accepted.
    #[track_caller]
    fn check_accepted(head: &[u8], r: &Request<'_>, rng: &mut Rng) {
        let shown = Shown(head);
        // The server and the parser agree on where the head ends, so nothing after a blank line
        // can ever be part of an accepted head.
        assert_eq!(head_end(head), Some(head.len()), "{shown:?}");
        assert!(head.len() <= MAX_HEAD, "{shown:?}");
        // Every prefix of an accepted head passes the early check, or a head that arrives in
        // pieces would be refused.
        for _ in 0..2 {
            let k = rng.below(head.len() + 1);
            assert_eq!(check_partial(&head[..k]), Ok(()), "{shown:?} at {k}");
        }
        assert!(r.path.first() == Some(&b'/') || r.path == b"*", "{shown:?}");
        assert!(
            r.path
                .iter()
                .all(|&b| b.is_ascii_graphic() && b != b'?' && b != b'#'),
            "{shown:?}"
        );
        // The query is what the target held between its first `?` and any `#`.
        assert!(!r.query.contains(&b'#'), "{shown:?}");
        let lines = crlf_lines(&head[..head.len() - 4]);
        assert!(lines.iter().all(|l| !l.contains(&b'\n')), "{shown:?}");
        let parts: Vec<&[u8]> = lines[0].split(|&b| b == b' ').collect();
        assert_eq!(parts.len(), 3, "{shown:?}");
        let method = match parts[0] {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            _ => Method::Other,
        };
        assert_eq!(r.method, method, "{shown:?}");
        let version = match parts[2] {
            b"HTTP/1.1" => Version::Http11,
            b"HTTP/1.0" => Version::Http10,
            _ => panic!("accepted version {:?} in {shown:?}", parts[2]),
        };
        assert_eq!(r.version, version, "{shown:?}");
        let fields = &lines[1..];
        assert!(fields.len() <= MAX_HEADERS, "{shown:?}");
        let (mut hosts, mut close, mut keep) = (0, false, false);
        let mut accept = None;
        for field in fields {
            assert!(
                !field.starts_with(b" ") && !field.starts_with(b"\t"),
                "{shown:?}"
            );
            let colon = field.iter().position(|&b| b == b':');
            let colon = colon.unwrap_or_else(|| panic!("field without a colon in {shown:?}"));
            let (name, value) = (&field[..colon], trim_ows(&field[colon + 1..]));
            assert!(!name.is_empty(), "{shown:?}");
            assert!(name.iter().all(|&b| b.is_ascii_graphic()), "{shown:?}");
            assert!(!value.iter().any(|&b| b == b'\r' || b == 0), "{shown:?}");
            let name = name.to_ascii_lowercase();
            match &name[..] {
                b"host" => hosts += 1,
                b"transfer-encoding" => panic!("accepted transfer-encoding: {shown:?}"),
                b"content-length" => assert_eq!(value, b"0", "{shown:?}"),
                b"connection" => {
                    for token in value.split(|&b| b == b',').map(trim_ows) {
                        close |= token.eq_ignore_ascii_case(b"close");
                        keep |= token.eq_ignore_ascii_case(b"keep-alive");
                    }
                }
                b"accept" => accept = Some(value),
                _ => {}
            }
        }
        match version {
            Version::Http11 => assert_eq!(hosts, 1, "{shown:?}"),
            Version::Http10 => assert!(hosts <= 1, "{shown:?}"),
        }
        let keep_alive = !close && (version == Version::Http11 || keep);
        assert_eq!(r.keep_alive, keep_alive, "{shown:?}");
        assert_eq!(r.accept, accept, "{shown:?}");
    }

    /// Runs every entry point on one input; returns the status the server would answer.
    fn exercise(input: &[u8], rng: &mut Rng) -> u16 {
        let end = head_end(input);
        if let Some(n) = end {
            assert!(input[..n].ends_with(b"\r\n\r\n"));
            assert_eq!(head_end(&input[..n - 1]), None);
        }
        let partial = check_partial(input);
        // What the server does: the head up to the first blank line.
        let head = &input[..end.unwrap_or(input.len())];
        let status = match parse_head(head) {
            Ok(r) => {
                check_accepted(head, &r, rng);
                let _ = crate::format::negotiate(r.accept);
                200
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                e.status().code()
            }
        };
        match parse_head(input) {
            Ok(r) => {
                assert_eq!(partial, Ok(()));
                check_accepted(input, &r, rng);
            }
            // The input is the head itself: refused as it was above.
            Err(e) if end == Some(input.len()) => assert_eq!(e.status().code(), status, "{e}"),
            // Without its blank line at the very end, no input is a head.
            Err(e) => match partial {
                // The partial check runs first and gives its own refusal.
                Err(p) => assert_eq!(e, p),
                // A head cut short, or followed by more than a blank line.
                Ok(()) if !input.ends_with(b"\r\n\r\n") => {
                    assert_eq!(e.status(), Status::BadRequest, "{e}");
                }
                // An early blank line reads as one more field: refused for what came before
                // it, else as a field without a colon, or as one field too many.
                Ok(()) => {
                    let fields = head.windows(2).filter(|w| w == b"\r\n").count() - 2;
                    let expected = if status == 200 { 400 } else { status };
                    let one_too_many = e == Error::HeadTooLarge && fields == MAX_HEADERS;
                    assert!(e.status().code() == expected || one_too_many, "{e}");
                }
            },
        }
        let _ = crate::format::negotiate(Some(input));
        status
    }

    #[test]
    fn fuzz_mutated_heads() {
        let mut rng = Rng(0x1e5e_ed00_0000_0001);
        let mut seen = std::collections::BTreeMap::new();
        for _ in 0..120_000 {
            let input = mutate(&mut rng);
            *seen.entry(exercise(&input, &mut rng)).or_insert(0u32) += 1;
        }
        // The mutations reach every outcome, acceptance included, or they test too little.
        let statuses: Vec<u16> = seen.keys().copied().collect();
        assert_eq!(statuses, [200, 400, 413, 414, 431, 501, 505], "{seen:?}");
    }

    #[test]
    fn fuzz_random_bytes() {
        let mut rng = Rng(0x1e5e_ed00_0000_0002);
        for _ in 0..180_000 {
            let input = random_bytes(&mut rng);
            let _ = exercise(&input, &mut rng);
        }
    }
}
