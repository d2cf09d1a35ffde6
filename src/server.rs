//! Listeners, connections, routing and limits: the only module that owns sockets.
//!
//! One thread accepts on each listener; each connection gets a thread of its own, up to
//! `--web.max-connections`, so a slow or idle client never delays another. A connection beyond
//! the limit gets 503 and is closed at once. A whole request head must arrive within
//! `--web.read-timeout` (a deadline, not a per-read timeout a client could refresh one byte at
//! a time); a kept-alive connection may wait `--web.idle-timeout` for its next request. After
//! any error response the connection is closed, so bytes after a refused head are never read
//! as another request.
//!
//! Invariant: never panics on any input, never holds more than `max_connections` connection
//! threads, and an accept error never stops the accept loop.

use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::http::{self, Method, Request, Response, Status};
use crate::model::{self, Scan, ScanError};
use crate::source::{self, Source};
use crate::{log, metrics, page};

/// Stack for connection threads. A request needs a few KiB (the 4 KiB attribute buffer is
/// boxed); 128 KiB leaves a wide margin and keeps 512 threads' reservations small.
const CONNECTION_STACK: usize = 128 * 1024;

/// Bytes read from a socket at once: a page, which holds any real request head. Larger chunks
/// would only cost memory on every idle connection.
const READ_CHUNK: usize = 4096;

/// Bytes of a scrape body buffered before they are written. Large enough that a body goes out
/// in few writes, small enough that a scrape of thousands of interfaces (over 800 KB of text at
/// 1000) holds only this much of it.
const STREAM_CHUNK: usize = 64 * 1024;

/// Deadline for writing one whole response. A scrape body is under 1 MB at 1000 interfaces; a
/// client that cannot take that in 10 s is stuck, and its thread is better spent elsewhere.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);

/// How long a refused connection's unread input is drained before closing, so the kernel does
/// not answer it with a reset that destroys the error response in flight.
const LINGER: Duration = Duration::from_millis(500);

/// The most bytes drained while lingering.
const LINGER_BYTES: usize = 64 * 1024;

/// Scan buffers kept for reuse between scrapes. Prometheus scrapes one at a time; a burst of
/// concurrent scrapes needs more buffers only while it lasts, and keeping them all would hold
/// the burst's memory (about 0.5 MB each at 1000 interfaces) for good.
const MAX_IDLE_COLLECTORS: usize = 2;

/// The longest pause between accept retries after an error such as EMFILE.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

pub struct Settings {
    pub telemetry_path: String,
    pub max_connections: usize,
    pub read_timeout: Duration,
    pub idle_timeout: Duration,
    pub sysfs: PathBuf,
    pub source: source::Kind,
    pub options: model::Options,
}

pub struct Server {
    settings: Settings,
    /// Scan buffers not in use. Concurrent scrapes each take one (making a new one when none is
    /// free) and put it back, so scrapes run in parallel and buffers are reused, never shared.
    idle: Mutex<Vec<Collector>>,
    active: AtomicUsize,
}

struct Collector {
    source: Source,
    scan: Scan,
}

impl Server {
    pub fn new(settings: Settings) -> Server {
        Server {
            settings,
            idle: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
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
            if self.active.fetch_add(1, Ordering::AcqRel) >= self.settings.max_connections {
                self.active.fetch_sub(1, Ordering::AcqRel);
                log::debug("connection limit reached", &[("peer", &peer)]);
                refuse(stream);
                continue;
            }
            let slot = Slot(Arc::clone(&self));
            let spawned = thread::Builder::new()
                .name("conn".into())
                .stack_size(CONNECTION_STACK)
                .spawn(move || {
                    slot.0.serve(stream);
                    drop(slot);
                });
            if let Err(e) = spawned {
                // The closure, and with it the slot and the stream, was dropped.
                log::warn("cannot start a connection thread", &[("err", &e)]);
            }
        }
    }

    fn serve(&self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            input: Vec::with_capacity(1024),
        };
        // The response being written: small ones whole, a scrape's body a chunk at a time.
        let mut out = Vec::new();
        let mut first = true;
        loop {
            let idle = if first {
                self.settings.read_timeout
            } else {
                self.settings.idle_timeout
            };
            first = false;
            let len = match conn.read_head(idle, self.settings.read_timeout) {
                Ok(len) => len,
                Err(ReadError::Closed) => return,
                Err(ReadError::Timeout) => {
                    log::debug("request head timed out", &[]);
                    conn.reply_error(Status::RequestTimeout, &mut out);
                    return;
                }
                Err(ReadError::Refused(e)) => {
                    log::debug("bad request", &[("err", &e)]);
                    conn.reply_error(e.status(), &mut out);
                    return;
                }
            };
            // The request borrows the input while the response is written on the connection.
            let input = std::mem::take(&mut conn.input);
            let keep_alive = match http::parse_head(&input[..len]) {
                Ok(request) => {
                    if self.respond(&request, &mut conn, &mut out).is_err() {
                        return;
                    }
                    request.keep_alive
                }
                Err(e) => {
                    log::debug("bad request", &[("err", &e)]);
                    conn.reply_error(e.status(), &mut out);
                    return;
                }
            };
            conn.input = input;
            conn.input.drain(..len);
            if !keep_alive {
                conn.linger();
                return;
            }
        }
    }

    /// Routes one valid request and writes the whole response; an error means the connection
    /// is done for.
    fn respond(&self, req: &Request<'_>, conn: &mut Conn, out: &mut Vec<u8>) -> io::Result<()> {
        let settings = &self.settings;
        let is_metrics = req.path == settings.telemetry_path.as_bytes();
        let is_root = req.path == b"/";
        let mut body = Vec::new();
        let (status, content_type) = if !is_metrics && !is_root {
            body.extend_from_slice(b"404 page not found\n");
            (Status::NotFound, "text/plain; charset=utf-8")
        } else if req.method == Method::Other {
            body.extend_from_slice(b"405 method not allowed\n");
            (Status::MethodNotAllowed, "text/plain; charset=utf-8")
        } else if is_metrics {
            return self.scrape(req, conn, out);
        } else {
            match self.with_scan(|scan| page::render(scan, &settings.telemetry_path, &mut body)) {
                Ok(()) => (Status::Ok, "text/html; charset=utf-8"),
                Err(e) => scan_failed(&e, &mut body),
            }
        };
        out.clear();
        http::write_response(
            out,
            &Response {
                status,
                content_type,
                body: &body,
                head_only: req.method == Method::Head,
                connection: req.connection_header(),
                allow: status == Status::MethodNotAllowed,
                date: &date_now(),
            },
        );
        conn.write(out, Instant::now() + WRITE_DEADLINE)
    }

    /// Answers a scrape. The body is rendered twice from the same scan: once only to count its
    /// bytes for `Content-Length`, once into a bounded buffer flushed to the socket as it fills,
    /// so a scrape of thousands of interfaces never holds its whole body in memory.
    fn scrape(&self, req: &Request<'_>, conn: &mut Conn, out: &mut Vec<u8>) -> io::Result<()> {
        let start = Instant::now();
        let format = http::negotiate(req.accept);
        let statistics = self.settings.options.statistics;
        let scanned = self.with_scan(|scan| {
            let mut count = metrics::Count::default();
            metrics::render_interfaces(scan, statistics, format, &mut count);
            // Both passes print this one value, so their lengths agree.
            let elapsed = start.elapsed();
            metrics::render_self(scan.errors, elapsed, format, &mut count);
            out.clear();
            http::write_head(
                out,
                Status::Ok,
                metrics::content_type(format),
                count.0,
                req.connection_header(),
                false,
                &date_now(),
            );
            let deadline = Instant::now() + WRITE_DEADLINE;
            if req.method == Method::Head {
                return conn.write(out, deadline);
            }
            let mut stream = Stream {
                conn,
                buf: out,
                deadline,
                result: Ok(()),
            };
            metrics::render_interfaces(scan, statistics, format, &mut stream);
            metrics::render_self(scan.errors, elapsed, format, &mut stream);
            stream.flush();
            stream.result
        });
        match scanned {
            Ok(written) => written,
            Err(e) => {
                let mut body = Vec::new();
                let (status, content_type) = scan_failed(&e, &mut body);
                out.clear();
                http::write_response(
                    out,
                    &Response {
                        status,
                        content_type,
                        body: &body,
                        head_only: req.method == Method::Head,
                        connection: req.connection_header(),
                        allow: false,
                        date: &date_now(),
                    },
                );
                conn.write(out, Instant::now() + WRITE_DEADLINE)
            }
        }
    }

    /// Scans sysfs afresh and hands the result to `f`, unless the scan could not see every
    /// interface.
    fn with_scan<T>(&self, f: impl FnOnce(&Scan) -> T) -> Result<T, ScanError> {
        let taken = self.idle_collectors().pop();
        let mut c = taken.unwrap_or_else(|| Collector {
            source: Source::new(self.settings.source, &self.settings.sysfs),
            scan: Scan::default(),
        });
        let result = c
            .source
            .scan(&self.settings.options, &mut c.scan)
            .map(|()| f(&c.scan));
        let mut idle = self.idle_collectors();
        if idle.len() < MAX_IDLE_COLLECTORS {
            idle.push(c);
        }
        result
    }

    fn idle_collectors(&self) -> std::sync::MutexGuard<'_, Vec<Collector>> {
        // A panic elsewhere cannot leave the list in a state that matters: it only holds
        // buffers.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A response body on its way to the socket through a bounded buffer. The first failed write
/// is kept and later bytes are dropped: the connection is closed after it anyway.
struct Stream<'a> {
    conn: &'a mut Conn,
    buf: &'a mut Vec<u8>,
    deadline: Instant,
    result: io::Result<()>,
}

impl Stream<'_> {
    fn flush(&mut self) {
        if self.result.is_ok() && !self.buf.is_empty() {
            self.result = self.conn.write(self.buf, self.deadline);
        }
        self.buf.clear();
    }
}

impl metrics::Out for Stream<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= STREAM_CHUNK {
            self.flush();
        }
    }
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

struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed: the head being read, then any pipelined requests.
    input: Vec<u8>,
}

impl Conn {
    /// Reads until `input` starts with a complete head and returns its length. The client has
    /// `idle` to start a request and `read_timeout` from its first byte to finish the head.
    fn read_head(&mut self, idle: Duration, read_timeout: Duration) -> Result<usize, ReadError> {
        let mut deadline = Instant::now()
            + if self.input.is_empty() {
                idle
            } else {
                read_timeout
            };
        let mut started = !self.input.is_empty();
        loop {
            if let Some(len) = http::head_end(&self.input) {
                return Ok(len);
            }
            http::check_partial(&self.input).map_err(ReadError::Refused)?;
            let now = Instant::now();
            if now >= deadline {
                return Err(if started {
                    ReadError::Timeout
                } else {
                    ReadError::Closed
                });
            }
            let _ = self.stream.set_read_timeout(Some(deadline - now));
            let old = self.input.len();
            self.input.resize(old + READ_CHUNK, 0);
            let read = self.stream.read(&mut self.input[old..]);
            self.input.truncate(old + *read.as_ref().unwrap_or(&0));
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

    /// Writes all of `bytes` before `deadline`.
    fn write(&mut self, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
        while !bytes.is_empty() {
            let now = Instant::now();
            if now >= deadline {
                return Err(io::ErrorKind::TimedOut.into());
            }
            self.stream.set_write_timeout(Some(deadline - now))?;
            match self.stream.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A peer that hung up or stopped reading is not an error worth a log line.
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn reply_error(&mut self, status: Status, buf: &mut Vec<u8>) {
        buf.clear();
        let mut text = Vec::new();
        metrics::push_u64(&mut text, u64::from(status.code()));
        text.push(b' ');
        text.extend_from_slice(status.reason().to_ascii_lowercase().as_bytes());
        text.push(b'\n');
        http::write_response(
            buf,
            &Response {
                status,
                content_type: "text/plain; charset=utf-8",
                body: &text,
                head_only: false,
                connection: Some("close"),
                allow: false,
                date: &date_now(),
            },
        );
        if self.write(buf, Instant::now() + WRITE_DEADLINE).is_ok() {
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

/// Answers a connection over the limit with 503 without giving it a thread: what it already
/// sent is dropped unread, nothing waits.
fn refuse(stream: TcpStream) {
    let mut out = Vec::new();
    http::write_response(
        &mut out,
        &Response {
            status: Status::ServiceUnavailable,
            content_type: "text/plain; charset=utf-8",
            body: b"503 too many connections\n",
            head_only: false,
            connection: Some("close"),
            allow: false,
            date: &date_now(),
        },
    );
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

/// A scan that could not see every interface is answered 503, never a partial 200, and logged.
fn scan_failed(e: &ScanError, body: &mut Vec<u8>) -> (Status, &'static str) {
    log::warn("scan failed, answering 503", &[("err", e)]);
    body.extend_from_slice(b"503 cannot read every interface: ");
    body.extend_from_slice(e.to_string().as_bytes());
    body.push(b'\n');
    (Status::ServiceUnavailable, "text/plain; charset=utf-8")
}

fn date_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    http::http_date(secs)
}
