//! Listeners, connections, routing and limits: the only module that owns sockets.
//!
//! One thread accepts on each listener; each connection gets a thread of its own, up to
//! `--web.max-connections`, so a slow or idle client never delays another. A connection beyond
//! the limit, or one whose thread cannot be created, gets 503 and is closed at once. A whole
//! request head must arrive within `--web.read-timeout` (a deadline, not a per-read timeout a
//! client could refresh one byte at a time); a kept-alive connection may wait
//! `--web.idle-timeout` for its next request. After a refused head the connection is closed,
//! so bytes after it are never read as another request.
//!
//! Each job has its own type: [`Server`] accepts and runs connections, [`route`] decides from
//! a request alone what it asks for, [`Conn`] holds a socket to its deadlines, and
//! [`error_response`] builds every error response. `/-/healthy` and `/-/ready` (probes) are
//! answered without a scan; the metrics and the status page come from scans shared by
//! [`Scrapes`], written to every socket from the same bytes.
//!
//! Invariant: never panics on any input, never holds more than `max_connections` connection
//! threads, never answers 200 without a whole scan, and an accept error never stops the
//! accept loop.

use std::fmt;
use std::io::{self, IoSlice, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::format::{self, Format};
use crate::http::{self, Head, Method, Request, Status};
use crate::scrape::{self, Kind, Scrapes};
use crate::{log, model, page, since, source, sys};

/// Stack reserved for connection threads. A request touches about 12 KiB of it in a debug build
/// (the 4 KiB attribute buffer is boxed, bodies live on the heap); 128 KiB leaves a wide margin,
/// and since only touched pages are resident, 512 threads' reservations cost address space, not
/// memory.
const CONNECTION_STACK: usize = 128 * 1024;

/// Bytes read from a socket at once: a page, which holds any real request head. Larger chunks
/// would only cost memory on every idle connection.
const READ_CHUNK: usize = 4096;

/// The kernel's send buffer per connection (`SO_SNDBUF`; the kernel books twice this). Left to
/// autotune, it grew to hold a whole 0.8 MB body for each client that did not read: 100 MB of
/// kernel memory for 128 such clients, which cgroup v2 charges to `MemoryMax`. Smaller than
/// 64 KiB, a scrape over loopback stalls on the peer's delayed acknowledgements (16 KiB: 1000
/// interfaces took 20 to 270 ms instead of 12 ms); at 64 KiB, 256 connections hold at most
/// 32 MiB, and a body still leaves at about 2.5 MB/s over a 50 ms WAN.
const SEND_BUFFER: i32 = 64 * 1024;

/// Deadline for writing one whole response. A scrape body is under 1 MB at 1000 interfaces; a
/// client that cannot take that in 10 s is stuck, and its thread is better spent elsewhere.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// How long a refused connection's unread input is drained before closing, so the kernel does
/// not answer it with a reset that destroys the error response in flight.
const LINGER: Duration = Duration::from_millis(500);

/// The most bytes drained while lingering.
const LINGER_BYTES: usize = 64 * 1024;

/// The longest pause between accept retries after an error such as EMFILE.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// The content type of every body that is not a scrape or the page.
const PLAIN: &str = "text/plain; charset=utf-8";

pub struct Settings {
    pub telemetry_path: String,
    pub max_connections: usize,
    pub max_requests: usize,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub sysfs: PathBuf,
    pub source: source::Kind,
    pub options: model::Options,
    /// The last-change times, filled into every scan.
    pub tracker: Arc<since::Tracker>,
}

pub struct Server {
    telemetry_path: String,
    max_connections: usize,
    read_timeout: Duration,
    idle_timeout: Duration,
    /// Connections with a thread.
    active: AtomicUsize,
    scrapes: Scrapes,
}

/// What a request asks for, told from the request alone.
#[derive(Debug, PartialEq)]
enum Route {
    /// A body rendered from a scan: the metrics in the format `Accept` prefers, or the page.
    Scan(Kind),
    Healthy,
    Ready,
    /// The page, with a query it does not take (400).
    BadQuery(page::QueryError),
    NotFound,
    /// A known path with a method other than GET and HEAD.
    MethodNotAllowed,
}

/// Routes one request. The metrics path wins over the others, whatever it is set to; HEAD is
/// routed as GET, and the server leaves its body out.
fn route(req: &Request<'_>, telemetry_path: &[u8]) -> Route {
    let metrics = req.path == telemetry_path;
    if !metrics && !matches!(req.path, b"/" | b"/-/healthy" | b"/-/ready") {
        return Route::NotFound;
    }
    if req.method == Method::Other {
        return Route::MethodNotAllowed;
    }
    if metrics {
        return Route::Scan(match format::negotiate(req.accept) {
            Format::Text => Kind::Text,
            Format::OpenMetrics => Kind::OpenMetrics,
        });
    }
    match req.path {
        b"/" => match page::wants_refresh(req.query) {
            Ok(true) => Route::Scan(Kind::Page),
            Ok(false) => Route::Scan(Kind::PageStill),
            Err(e) => Route::BadQuery(e),
        },
        b"/-/healthy" => Route::Healthy,
        _ => Route::Ready,
    }
}

/// How a response goes out, as its request allows.
#[derive(Clone, Copy)]
struct Reply {
    /// The `Connection` header, if any.
    connection: Option<&'static str>,
    /// `HEAD`: the same head, no body.
    head_only: bool,
}

impl Reply {
    /// For a head that was refused, or a connection that gets no thread: it is closed after.
    const CLOSE: Reply = Reply {
        connection: Some("close"),
        head_only: false,
    };

    fn to(req: &Request<'_>) -> Reply {
        Reply {
            connection: req.connection_header(),
            head_only: req.method == Method::Head,
        }
    }
}

/// Appends the head of a response with a body of `len` bytes.
fn push_head(out: &mut Vec<u8>, reply: Reply, status: Status, content_type: &str, len: usize) {
    http::write_head(
        out,
        &Head {
            status,
            content_type,
            content_length: len,
            connection: reply.connection,
            date: &date_now(),
        },
    );
}

/// Builds every error response, whole, into `out`: its head, and (unless `reply` is for a
/// `HEAD`) a one-line body naming the status and the rule that refused the request.
fn error_response(out: &mut Vec<u8>, reply: Reply, status: Status, rule: &dyn fmt::Display) {
    let mut body = Vec::new();
    http::write_error_body(&mut body, status, rule);
    out.clear();
    push_head(out, reply, status, PLAIN, body.len());
    if !reply.head_only {
        out.extend_from_slice(&body);
    }
}

impl Server {
    pub fn new(settings: Settings) -> Server {
        Server {
            telemetry_path: settings.telemetry_path.clone(),
            max_connections: settings.max_connections,
            read_timeout: settings.read_timeout,
            idle_timeout: settings.idle_timeout,
            active: AtomicUsize::new(0),
            scrapes: Scrapes::new(scrape::Setup {
                source: settings.source,
                sysfs: settings.sysfs,
                options: settings.options,
                tracker: settings.tracker,
                telemetry_path: settings.telemetry_path,
                max_requests: settings.max_requests,
            }),
        }
    }

    /// Starts one accept thread per listener and returns.
    pub fn spawn(self: &Arc<Self>, listeners: Vec<TcpListener>) -> io::Result<()> {
        for listener in listeners {
            let server = Arc::clone(self);
            thread::Builder::new()
                .name("accept".into())
                .stack_size(CONNECTION_STACK)
                .spawn(move || server.accept_loop(listener))?;
        }
        Ok(())
    }

    /// Takes one scan in the background that nobody asked for, when scans are compared to
    /// tell when interfaces changed: the first scrape may come much later, and a change before
    /// it would otherwise go unseen. A request that comes meanwhile joins it.
    pub fn prime(self: &Arc<Self>) {
        let server = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("prime".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || server.scrapes.prime());
        if let Err(e) = spawned {
            log::warn(
                "cannot start the first scan, the first scrape takes it",
                &[("err", &e)],
            );
        }
    }

    fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        let mut backoff = Duration::from_millis(10);
        loop {
            let (stream, peer) = match listener.accept() {
                Ok(conn) => conn,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    // EMFILE, ENFILE, ENOBUFS: the condition passes as connections close.
                    log::warn(
                        "accept failed",
                        &[("err", &e), ("retry_in", &format_args!("{backoff:?}"))],
                    );
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_ACCEPT_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(10);
            if self.active.fetch_add(1, Ordering::AcqRel) >= self.max_connections {
                self.active.fetch_sub(1, Ordering::AcqRel);
                log::debug("connection limit reached", &[("peer", &peer)]);
                refuse(stream, &"too many connections");
                continue;
            }
            // A failed spawn drops its closure, and the stream with it (the client would see a
            // reset), so the stream goes over through a slot this loop still holds.
            let handover = Arc::new(Mutex::new(Some(stream)));
            let theirs = Arc::clone(&handover);
            let slot = Slot(Arc::clone(&self));
            let spawned = thread::Builder::new()
                .name("conn".into())
                .stack_size(CONNECTION_STACK)
                .spawn(move || {
                    let stream = take(&theirs);
                    drop(theirs);
                    if let Some(stream) = stream {
                        slot.0.serve(stream);
                    }
                    drop(slot);
                });
            if let Err(e) = spawned {
                log::warn(
                    "cannot start a connection thread, answering 503",
                    &[("peer", &peer), ("err", &e)],
                );
                if let Some(stream) = take(&handover) {
                    refuse(stream, &"cannot start a connection thread");
                }
            }
        }
    }

    fn serve(&self, stream: TcpStream) {
        let mut conn = Conn::new(stream);
        // Bytes read and not yet consumed: the head being read, then any pipelined requests.
        let mut input = Vec::new();
        // The head of the response being written, or a whole small response.
        let mut out = Vec::new();
        let mut idle = self.read_timeout;
        let refused = loop {
            let len = match conn.read_head(&mut input, idle, self.read_timeout) {
                Ok(len) => len,
                Err(ReadError::Closed) => return,
                Err(ReadError::Timeout) => {
                    log::debug("request head timed out", &[]);
                    let rule = "no whole request head within --web.read-timeout";
                    return conn.refuse(&mut out, Status::RequestTimeout, &rule);
                }
                Err(ReadError::Refused(e)) => break e,
            };
            let request = match http::parse_head(&input[..len]) {
                Ok(request) => request,
                Err(e) => break e,
            };
            if self.respond(&request, &mut conn, &mut out).is_err() {
                return;
            }
            if !request.keep_alive {
                conn.linger();
                return;
            }
            input.drain(..len);
            idle = self.idle_timeout;
        };
        log::debug("bad request", &[("err", &refused)]);
        conn.refuse(&mut out, refused.status(), &refused);
    }

    /// Writes the whole response to one valid request; an error means the connection is done
    /// for.
    fn respond(&self, req: &Request<'_>, conn: &mut Conn, out: &mut Vec<u8>) -> io::Result<()> {
        let reply = Reply::to(req);
        match route(req, self.telemetry_path.as_bytes()) {
            Route::Scan(kind) => match self.scrapes.body(kind) {
                Ok(body) => conn.send(out, reply, kind.content_type(), body.bytes()),
                Err(refused) => {
                    refused.log();
                    conn.send_error(out, reply, Status::ServiceUnavailable, &refused)
                }
            },
            // Answered from the thread alone: the process is up and serving.
            Route::Healthy => conn.send(out, reply, PLAIN, b"healthy\n"),
            Route::Ready => match self.scrapes.check_ready() {
                Ok(()) => conn.send(out, reply, PLAIN, b"ready\n"),
                Err(e) => {
                    log::debug("not ready", &[("err", &e)]);
                    let rule = format_args!("not ready: {e}");
                    conn.send_error(out, reply, Status::ServiceUnavailable, &rule)
                }
            },
            Route::BadQuery(e) => conn.send_error(out, reply, Status::BadRequest, &e),
            Route::NotFound => {
                let rule = format_args!("the metrics are at {}", self.telemetry_path);
                conn.send_error(out, reply, Status::NotFound, &rule)
            }
            Route::MethodNotAllowed => {
                conn.send_error(out, reply, Status::MethodNotAllowed, &"only GET and HEAD")
            }
        }
    }
}

/// Takes the stream handed over to a connection thread. Nothing panics while holding the lock,
/// so a poisoned one still holds a stream that must be answered.
fn take(handover: &Mutex<Option<TcpStream>>) -> Option<TcpStream> {
    handover.lock().unwrap_or_else(|e| e.into_inner()).take()
}

/// Holds one of the `max_connections` places until the connection thread ends.
struct Slot(Arc<Server>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

enum ReadError {
    Closed,
    Timeout,
    Refused(http::Error),
}

/// A client's socket, held to the deadlines: it owns nothing else.
struct Conn {
    stream: TcpStream,
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        let _ = stream.set_nodelay(true);
        // Best effort: without it only the kernel's share of the bound is larger.
        let _ = sys::set_send_buffer(&stream, SEND_BUFFER);
        Conn { stream }
    }

    /// Reads until `input` (what is left of the last read) starts with a complete head, and
    /// returns its length. The client has
    /// `idle` to start a request and `read_timeout` from its first byte to finish the head.
    fn read_head(
        &mut self,
        input: &mut Vec<u8>,
        idle: Duration,
        read_timeout: Duration,
    ) -> Result<usize, ReadError> {
        let mut deadline = Instant::now() + if input.is_empty() { idle } else { read_timeout };
        let mut started = !input.is_empty();
        loop {
            if let Some(len) = http::head_end(input) {
                return Ok(len);
            }
            http::check_partial(input).map_err(ReadError::Refused)?;
            let now = Instant::now();
            if now >= deadline {
                return Err(if started {
                    ReadError::Timeout
                } else {
                    ReadError::Closed
                });
            }
            let _ = self.stream.set_read_timeout(Some(deadline - now));
            let old = input.len();
            // A connection's one buffer of its own, bounded by the head limits; refused memory
            // closes the connection instead of aborting the process.
            if input.try_reserve(READ_CHUNK).is_err() {
                return Err(ReadError::Closed);
            }
            input.resize(old + READ_CHUNK, 0);
            let read = self.stream.read(&mut input[old..]);
            input.truncate(old + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return Err(ReadError::Closed),
                Ok(_) => {
                    if !started {
                        started = true;
                        deadline = Instant::now() + read_timeout;
                    }
                }
                // On Unix an expired socket timeout is WouldBlock, not TimedOut.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(ReadError::Closed),
            }
        }
    }

    /// Sends a 200 response: its head from `out`, then `body` from where it lies (a
    /// generation's shared bytes), never copied per connection.
    fn send(
        &mut self,
        out: &mut Vec<u8>,
        reply: Reply,
        content_type: &str,
        body: &[u8],
    ) -> io::Result<()> {
        out.clear();
        push_head(out, reply, Status::Ok, content_type, body.len());
        self.write(out, if reply.head_only { &[] } else { body })
    }

    /// Writes all of `head` and then `body` within `WRITE_DEADLINE`, in one system call when
    /// the socket takes it all.
    fn write(&mut self, mut head: &[u8], mut body: &[u8]) -> io::Result<()> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        while !head.is_empty() || !body.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_write_timeout(Some(deadline - now))?;
            match self
                .stream
                .write_vectored(&[IoSlice::new(head), IoSlice::new(body)])
            {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let from_head = n.min(head.len());
                    head = &head[from_head..];
                    body = &body[n - from_head..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A peer that hung up or stopped reading is not an error worth a log line.
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends an error response to a valid request.
    fn send_error(
        &mut self,
        out: &mut Vec<u8>,
        reply: Reply,
        status: Status,
        rule: &dyn fmt::Display,
    ) -> io::Result<()> {
        error_response(out, reply, status, rule);
        self.write(out, &[])
    }

    /// Answers a head that was refused or did not arrive in time, and closes: what follows
    /// such a head cannot be told apart from a smuggled request.
    fn refuse(mut self, out: &mut Vec<u8>, status: Status, rule: &dyn fmt::Display) {
        if self.send_error(out, Reply::CLOSE, status, rule).is_ok() {
            self.linger();
        }
    }

    /// Closes politely: no more writes, then reads and drops what the client still sends for a
    /// short while, so the response is not destroyed by a reset.
    fn linger(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + LINGER;
        let mut drained = 0;
        let mut sink = [0u8; 4096];
        while drained < LINGER_BYTES {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let _ = self.stream.set_read_timeout(Some(deadline - now));
            match self.stream.read(&mut sink) {
                Ok(0) => break,
                Ok(n) => drained += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    }
}

/// Answers a connection over the limit, or one whose thread could not be created, with 503
/// without giving it a thread: what it already sent is dropped unread, nothing waits.
fn refuse(stream: TcpStream, rule: &dyn fmt::Display) {
    let mut out = Vec::new();
    error_response(&mut out, Reply::CLOSE, Status::ServiceUnavailable, rule);
    if stream.set_nonblocking(true).is_ok() {
        let mut s = &stream;
        let _ = s.write(&out);
        let _ = stream.shutdown(Shutdown::Write);
        let mut sink = [0u8; 4096];
        while let Ok(n) = s.read(&mut sink) {
            if n == 0 {
                break;
            }
        }
    }
}

fn date_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    http::http_date(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Routes the head `head` with the metrics at `/metrics` and compares the route's short
    /// form with `expected`.
    #[track_caller]
    fn check(head: &str, expected: &str) {
        let req = match http::parse_head(head.as_bytes()) {
            Ok(req) => req,
            Err(e) => panic!("{head:?} does not parse: {e}"),
        };
        let actual = match route(&req, b"/metrics") {
            Route::Scan(kind) => format!("scan {kind:?}"),
            Route::BadQuery(e) => format!("400 {e}"),
            other => format!("{other:?}"),
        };
        assert_eq!(actual, expected, "{head:?}");
    }

    #[test]
    fn routes() {
        let om = "Accept: application/openmetrics-text;version=1.0.0\r\n";
        let cases: &[(&str, &str, &str)] = &[
            ("GET /metrics", "", "scan Text"),
            ("HEAD /metrics", "", "scan Text"),
            ("GET /metrics", om, "scan OpenMetrics"),
            ("HEAD /metrics", om, "scan OpenMetrics"),
            ("GET /metrics?x=1&refresh=7", "", "scan Text"),
            ("GET http://h:9425/metrics", "", "scan Text"),
            ("GET /", "", "scan Page"),
            ("HEAD /", "", "scan Page"),
            ("GET /?refresh=0", "", "scan PageStill"),
            ("GET /?a=b&refresh=0#x", "", "scan PageStill"),
            (
                "GET /?refresh=5",
                "",
                "400 refresh=5: only refresh=0 (no automatic refresh) is known",
            ),
            ("GET /-/healthy", "", "Healthy"),
            ("HEAD /-/healthy?x", "", "Healthy"),
            ("GET /-/ready", "", "Ready"),
            ("GET /metrics/", "", "NotFound"),
            ("GET /Metrics", "", "NotFound"),
            ("GET /-/healthy/", "", "NotFound"),
            ("GET *", "", "NotFound"),
            ("POST /nowhere", "", "NotFound"),
            ("POST /metrics", "", "MethodNotAllowed"),
            ("PUT /", "", "MethodNotAllowed"),
            ("DELETE /-/healthy", "", "MethodNotAllowed"),
            ("OPTIONS /-/ready", "", "MethodNotAllowed"),
        ];
        for (line, fields, expected) in cases {
            check(
                &format!("{line} HTTP/1.1\r\nHost: x\r\n{fields}\r\n"),
                expected,
            );
        }
    }

    #[test]
    fn the_metrics_path_wins_over_the_others() {
        let req = http::parse_head(b"GET / HTTP/1.0\r\n\r\n");
        assert_eq!(req.map(|r| route(&r, b"/")), Ok(Route::Scan(Kind::Text)));
        let req = http::parse_head(b"GET /metrics HTTP/1.0\r\n\r\n");
        assert_eq!(req.map(|r| route(&r, b"/")), Ok(Route::NotFound));
    }

    #[test]
    fn error_responses_name_the_status_and_the_rule() {
        let body_of = |reply: Reply, status: Status, rule: &dyn fmt::Display| {
            let mut out = Vec::new();
            error_response(&mut out, reply, status, rule);
            let text = String::from_utf8_lossy(&out).into_owned();
            let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
            let length = format!("Content-Length: {}\r\n", body.len());
            assert!(head.contains(&length) || reply.head_only, "{text:?}");
            assert!(head.contains("Content-Type: text/plain; charset=utf-8\r\n"));
            (head.to_owned(), body.to_owned())
        };
        let bare_lf = http::Error::Malformed("line ends in a bare LF");
        let (head, body) = body_of(Reply::CLOSE, bare_lf.status(), &bare_lf);
        assert_eq!(body, "400 bad request: line ends in a bare LF\n");
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.ends_with("Connection: close"), "{head}");
        let (_, body) = body_of(
            Reply::CLOSE,
            Status::ServiceUnavailable,
            &"too many connections",
        );
        assert_eq!(body, "503 service unavailable: too many connections\n");
        // HEAD: the length of the body it would have had, and no body.
        let head_only = Reply {
            connection: None,
            head_only: true,
        };
        let (head, body) = body_of(head_only, Status::MethodNotAllowed, &"only GET and HEAD");
        assert_eq!(body, "");
        assert!(head.contains("Content-Length: 42\r\n"), "{head}");
        assert!(head.contains("Allow: GET, HEAD"), "{head}");
        assert!(!head.contains("Connection:"), "{head}");
    }
}
