//! Listeners, connections, routing and limits: the only module that owns sockets.
//!
//! One thread accepts on each listener; each connection gets a thread of its own, up to
//! `--web.max-connections`, so a slow or idle client never delays another. A connection beyond
//! the limit, or one whose thread cannot be created, gets 503 and is closed at once. A whole
//! request head must arrive within `--web.read-timeout` (a deadline, not a per-read timeout a
//! client could refresh one byte at a time); a kept-alive connection may wait
//! `--web.idle-timeout` for its next request. After any error response the connection is
//! closed, so bytes after a refused head are never read as another request.
//!
//! `/-/healthy` and `/-/ready` (probes) are answered without a scan.
//!
//! Requests that need a scan (the metrics and the status page) share it: one that arrives
//! while a scan runs waits for that scan (single flight), and the finished scan becomes an
//! immutable [`Generation`] whose bodies are rendered once per format and written to every
//! socket from the same bytes. At most `--web.max-requests` such requests are in flight and at
//! most [`MAX_GENERATIONS`] generations alive; beyond either, and when an allocation for a scan
//! or a body is refused, the answer is 503. Memory is thereby bounded whatever clients do.
//!
//! Invariant: never panics on any input, never holds more than `max_connections` connection
//! threads or `MAX_GENERATIONS` generations, never answers 200 without a whole scan, and an
//! accept error never stops the accept loop.

use std::io::{self, IoSlice, Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::format::{self, Format};
use crate::http::{self, Method, Request, Response, Status};
use crate::model::{self, Scan, ScanError};
use crate::source::{self, Source};
use crate::{log, metrics, page, since, sys};

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

/// Generations alive at once: the scan running plus the finished ones that connections are
/// still writing from. A generation holds its rendered bodies (about 0.8 MB per format at 1000
/// interfaces) until its slowest reader is done, up to `WRITE_DEADLINE`. Prometheus scrapes one
/// at a time, and an HA pair plus a browser make three; four lets scrapes go on while a slow
/// client holds one, and caps what slow clients can pin at four generations. A request that
/// would need a fifth waits for one to go, up to `GENERATION_WAIT`.
pub const MAX_GENERATIONS: usize = 4;

/// How long a request that needs a new generation waits for one of `MAX_GENERATIONS` to go
/// before it gets 503. Generations written to clients that read go within milliseconds, so
/// concurrent scrapers only queue briefly; those pinned by clients that do not read go only at
/// `WRITE_DEADLINE`, far longer than a scrape should wait to learn it cannot be answered.
const GENERATION_WAIT: Duration = Duration::from_secs(1);

/// Bytes reserved for the status page per interface, so that its buffer is allocated fallibly
/// at once: a row is about 300 bytes (the since cell and its title take 100 of them) plus its
/// escaped name, master and alias. A page that outgrows the estimate grows the ordinary
/// (infallible) way.
const PAGE_ROW_ESTIMATE: usize = 384;

/// Bytes of the status page besides its rows: the head, the style sheet and the table header.
const PAGE_BASE_ESTIMATE: usize = 2048;

/// Address space that must remain free after a large allocation for it to go ahead. Under
/// `RLIMIT_AS` the large allocations are refused with a 503, but std's small ones (a log line,
/// a thread's bookkeeping) abort the process when refused; keeping this much in hand lets them
/// succeed while bodies are being refused. A mebibyte is hundreds of threads' small needs.
const ALLOC_HEADROOM: usize = 1024 * 1024;

/// The longest pause between accept retries after an error such as EMFILE.
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

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
    settings: Settings,
    /// Connections with a thread.
    active: AtomicUsize,
    /// Requests for the metrics or the status page from arrival until their response is
    /// written, as node_exporter counts `--web.max-requests`.
    requests: AtomicUsize,
    /// The scan running, which requests that arrive meanwhile join.
    flight: Mutex<Option<Arc<Flight>>>,
    /// The source of interface state, used by one scan at a time (the flight's leader).
    reader: Mutex<Option<Source>>,
    pool: Arc<Pool>,
}

/// What generations share with the server, so that one can give its scan buffers back and be
/// counted out when its last reader drops it.
#[derive(Default)]
struct Pool {
    /// Generations alive, signalled through `freed` when one goes.
    live: Mutex<usize>,
    freed: Condvar,
    /// A finished scan kept for its allocations, reused by the next one.
    spare: Mutex<Option<Scan>>,
    /// Interfaces in the last scan: the next one reserves room for them up front, fallibly.
    last_len: AtomicUsize,
    /// Bytes of the last body of each kind: the next is rendered once into room reserved
    /// (fallibly) for that and an eighth more, instead of being counted first.
    last_body: [AtomicUsize; 3],
}

/// What a request's path asks for.
enum Route {
    Metrics,
    Page,
    Healthy,
    Ready,
    NotFound,
}

/// Why a request that needs a scan is answered 503 without one.
#[derive(Clone, Copy)]
enum Busy {
    /// `--web.max-requests` requests are in flight.
    Requests,
    /// `MAX_GENERATIONS` generations are alive, held by clients slow to read.
    Generations,
    /// An allocation for the scan or a body was refused (`RLIMIT_AS`, no memory).
    Memory,
}

impl Busy {
    fn body(self) -> &'static str {
        match self {
            Busy::Requests => "503 too many scrapes in flight\n",
            Busy::Generations => "503 too many scrapes still being written\n",
            Busy::Memory => "503 out of memory\n",
        }
    }
}

/// One scan in progress. Requests that join it wait on `ready` until the leader publishes.
#[derive(Default)]
struct Flight {
    /// Requests that joined, each of which will take a body from the generation.
    joined: AtomicUsize,
    outcome: Mutex<Option<Result<Arc<Generation>, Busy>>>,
    ready: Condvar,
}

impl Flight {
    fn publish(&self, outcome: Result<Arc<Generation>, Busy>) {
        *lock(&self.outcome) = Some(outcome);
        self.ready.notify_all();
    }

    fn wait(&self) -> Result<Arc<Generation>, Busy> {
        let mut outcome = lock(&self.outcome);
        loop {
            if let Some(o) = outcome.as_ref() {
                return o.clone();
            }
            outcome = self.ready.wait(outcome).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Publishes for the leader even if it unwinds, so that no joiner waits for ever.
struct Leader<'a> {
    server: &'a Server,
    flight: Arc<Flight>,
    outcome: Option<Result<Arc<Generation>, Busy>>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        // Later requests start a new scan; the joiners of this one are all counted by now.
        *lock(&self.server.flight) = None;
        let outcome = self.outcome.take().unwrap_or(Err(Busy::Memory));
        if let Ok(generation) = &outcome {
            let sharers = 1 + self.flight.joined.load(Ordering::Acquire);
            generation.pending.store(sharers, Ordering::Release);
        }
        self.flight.publish(outcome);
    }
}

/// The bodies a generation renders, one slot each.
#[derive(Clone, Copy)]
enum Kind {
    Text = 0,
    OpenMetrics = 1,
    Page = 2,
    /// The page without its automatic refresh (`/?refresh=0`).
    PageStill = 3,
}

/// One scan and what was rendered from it, shared by every request that joined its flight and
/// immutable once rendered. Its scan is dropped (given back to the pool) as soon as every
/// sharer has its body, so a connection slow to read holds only the bytes it is writing.
struct Generation {
    started: Instant,
    error: Option<ScanError>,
    /// The scan, until every sharer has its body.
    scan: Mutex<Option<Scan>>,
    /// Sharers that have not yet taken their body.
    pending: AtomicUsize,
    /// Rendered bodies; `None` inside when the allocation was refused.
    bodies: [OnceLock<Option<Vec<u8>>>; 4],
    pool: Arc<Pool>,
}

impl Generation {
    /// The body of one kind, rendered by the first sharer that asks for it.
    fn body(
        &self,
        kind: Kind,
        telemetry_path: &str,
        statistics: bool,
        start_ms: u64,
    ) -> Option<&[u8]> {
        let body = self.bodies[kind as usize].get_or_init(|| {
            let scan = lock(&self.scan);
            let scan = scan.as_ref()?;
            match kind {
                Kind::Page | Kind::PageStill => {
                    let mut out = Vec::new();
                    let estimate = PAGE_BASE_ESTIMATE
                        .saturating_add(PAGE_ROW_ESTIMATE.saturating_mul(scan.interfaces.len()));
                    out.try_reserve_exact(estimate).ok()?;
                    headroom()?;
                    // Read for each page, since a host can be renamed while the exporter runs;
                    // a name that cannot be read is left out of the page.
                    let mut host = Vec::new();
                    let _ = sys::hostname(&mut host);
                    let context = page::Context {
                        telemetry_path,
                        host: &host,
                        start_ms,
                        now_ms: since::now_ms(),
                        refresh: matches!(kind, Kind::Page),
                    };
                    page::render(scan, &context, &mut out);
                    Some(out)
                }
                Kind::Text | Kind::OpenMetrics => {
                    let format = if let Kind::Text = kind {
                        Format::Text
                    } else {
                        Format::OpenMetrics
                    };
                    // Both passes print this one value, so their lengths agree.
                    let elapsed = self.started.elapsed();
                    let last = &self.pool.last_body[kind as usize];
                    // The body is reserved at once, where a refusal can still be a 503: as
                    // long as the last one and an eighth more (rendering it only once, which
                    // halves its cost), or as counted by a first pass when there is no last
                    // one. A body that outgrows the estimate grows the ordinary way.
                    let size = match last.load(Ordering::Relaxed) {
                        0 => {
                            let mut count = metrics::Count::default();
                            metrics::render_interfaces(scan, statistics, format, &mut count);
                            metrics::render_self(
                                scan.errors,
                                elapsed,
                                start_ms,
                                format,
                                &mut count,
                            );
                            count.0
                        }
                        n => n.saturating_add(n / 8),
                    };
                    let mut out = Vec::new();
                    out.try_reserve_exact(size).ok()?;
                    headroom()?;
                    metrics::render_interfaces(scan, statistics, format, &mut out);
                    metrics::render_self(scan.errors, elapsed, start_ms, format, &mut out);
                    last.store(out.len(), Ordering::Relaxed);
                    Some(out)
                }
            }
        });
        body.as_deref()
    }

    /// Called once by each sharer after it took its body: the last one frees the scan.
    fn done_rendering(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            if let Some(scan) = lock(&self.scan).take() {
                *lock(&self.pool.spare) = Some(scan);
            }
        }
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        if let Some(scan) = lock(&self.scan).take() {
            *lock(&self.pool.spare) = Some(scan);
        }
        *lock(&self.pool.live) -= 1;
        self.pool.freed.notify_all();
    }
}

/// One of the `--web.max-requests` places, held until the response is written.
struct Ticket<'a>(&'a AtomicUsize);

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether `ALLOC_HEADROOM` more could still be allocated, checked by allocating it (a mapping
/// of its own, never touched) and giving it back at once.
fn headroom() -> Option<()> {
    let mut probe: Vec<u8> = Vec::new();
    probe.try_reserve_exact(ALLOC_HEADROOM).ok()?;
    // Kept opaque so that the allocation is not optimised away.
    std::hint::black_box(&mut probe);
    Some(())
}

/// Locks a mutex that holds only buffers or a slot: a panic elsewhere cannot leave it in a
/// state that matters.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Server {
    pub fn new(settings: Settings) -> Server {
        Server {
            settings,
            active: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            flight: Mutex::new(None),
            reader: Mutex::new(None),
            pool: Arc::default(),
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
    pub fn seed(self: &Arc<Self>) {
        let server = Arc::clone(self);
        let spawned = thread::Builder::new()
            .name("seed".into())
            .stack_size(CONNECTION_STACK)
            .spawn(move || drop(server.generation()));
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
            if self.active.fetch_add(1, Ordering::AcqRel) >= self.settings.max_connections {
                self.active.fetch_sub(1, Ordering::AcqRel);
                log::debug("connection limit reached", &[("peer", &peer)]);
                refuse(stream, b"503 too many connections\n");
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
                    let stream = lock(&theirs).take();
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
                if let Some(stream) = lock(&handover).take() {
                    refuse(stream, b"503 cannot start a connection thread\n");
                }
            }
        }
    }

    fn serve(&self, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        // Best effort: without it only the kernel's share of the bound is larger.
        let _ = sys::set_send_buffer(&stream, SEND_BUFFER);
        let mut conn = Conn {
            stream,
            input: Vec::new(),
        };
        // The head of the response being written, or a whole small response.
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
        let route = if req.path == settings.telemetry_path.as_bytes() {
            Route::Metrics
        } else {
            match req.path {
                b"/" => Route::Page,
                b"/-/healthy" => Route::Healthy,
                b"/-/ready" => Route::Ready,
                _ => Route::NotFound,
            }
        };
        let plain = "text/plain; charset=utf-8";
        let (status, body): (_, &[u8]) = match route {
            Route::NotFound => (Status::NotFound, b"404 page not found\n"),
            _ if req.method == Method::Other => {
                (Status::MethodNotAllowed, b"405 method not allowed\n")
            }
            Route::Metrics => {
                let kind = match format::negotiate(req.accept) {
                    Format::Text => Kind::Text,
                    Format::OpenMetrics => Kind::OpenMetrics,
                };
                return self.answer_from_scan(req, kind, conn, out);
            }
            Route::Page => match page::wants_refresh(req.query) {
                Ok(refresh) => {
                    let kind = if refresh { Kind::Page } else { Kind::PageStill };
                    return self.answer_from_scan(req, kind, conn, out);
                }
                Err(e) => {
                    let body = format!("400 bad request: {e}\n");
                    return self.write(req, Status::BadRequest, plain, body.as_bytes(), conn, out);
                }
            },
            // Answered from the thread alone: the process is up and serving.
            Route::Healthy => (Status::Ok, b"healthy\n"),
            // A cheap look at what scans need, never a scan: probes come every few seconds
            // from every kubelet, and must not cost what a scrape costs.
            Route::Ready => match source::check(settings.source, &settings.sysfs) {
                Ok(()) => (Status::Ok, b"ready\n"),
                Err(e) => {
                    log::debug("not ready", &[("err", &e)]);
                    let body = format!("503 not ready: {e}\n");
                    let status = Status::ServiceUnavailable;
                    return self.write(req, status, plain, body.as_bytes(), conn, out);
                }
            },
        };
        self.write(req, status, plain, body, conn, out)
    }

    /// Answers the metrics or the status page from a generation shared with concurrent
    /// requests; 503 when the scan failed or a limit or allocation refused it.
    fn answer_from_scan(
        &self,
        req: &Request<'_>,
        kind: Kind,
        conn: &mut Conn,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let plain = "text/plain; charset=utf-8";
        // Held until the response is written, as node_exporter counts its in-flight requests.
        let _ticket = match self.ticket() {
            Some(t) => t,
            None => return self.busy(req, Busy::Requests, conn, out),
        };
        let generation = match self.generation() {
            Ok(g) => g,
            Err(busy) => return self.busy(req, busy, conn, out),
        };
        if let Some(e) = &generation.error {
            // Logged once by the leader; every sharer answers the same.
            let mut body = Vec::new();
            body.extend_from_slice(b"503 cannot read every interface: ");
            body.extend_from_slice(e.to_string().as_bytes());
            body.push(b'\n');
            let status = Status::ServiceUnavailable;
            return self.write(req, status, plain, &body, conn, out);
        }
        let statistics = self.settings.options.statistics;
        let start_ms = self.settings.tracker.start_ms();
        let body = generation.body(kind, &self.settings.telemetry_path, statistics, start_ms);
        generation.done_rendering();
        let Some(body) = body else {
            return self.busy(req, Busy::Memory, conn, out);
        };
        let content_type = match kind {
            Kind::Text => metrics::content_type(Format::Text),
            Kind::OpenMetrics => metrics::content_type(Format::OpenMetrics),
            Kind::Page | Kind::PageStill => "text/html; charset=utf-8",
        };
        self.write(req, Status::Ok, content_type, body, conn, out)
    }

    fn ticket(&self) -> Option<Ticket<'_>> {
        let before = self.requests.fetch_add(1, Ordering::AcqRel);
        let ticket = Ticket(&self.requests);
        (before < self.settings.max_requests).then_some(ticket)
    }

    /// The generation of the scan running, joined, or of a new scan led by this request.
    fn generation(&self) -> Result<Arc<Generation>, Busy> {
        let give_up = Instant::now() + GENERATION_WAIT;
        let mut running = loop {
            let running = lock(&self.flight);
            if let Some(flight) = running.as_ref() {
                flight.joined.fetch_add(1, Ordering::AcqRel);
                let flight = Arc::clone(flight);
                drop(running);
                return flight.wait();
            }
            // Counted under the flight lock, the only place a generation is made, so two
            // leaders cannot both take the last place.
            let mut live = lock(&self.pool.live);
            if *live < MAX_GENERATIONS {
                *live += 1;
                break running;
            }
            // Wait for a generation to go without holding the flight, which others may join.
            drop(running);
            let now = Instant::now();
            if now >= give_up {
                return Err(Busy::Generations);
            }
            let _ = self.pool.freed.wait_timeout(live, give_up - now);
        };
        let flight = Arc::new(Flight::default());
        *running = Some(Arc::clone(&flight));
        drop(running);
        let mut leader = Leader {
            server: self,
            flight,
            outcome: None,
        };
        let outcome = self.scan();
        leader.outcome = Some(outcome.clone());
        drop(leader);
        outcome
    }

    /// Scans sysfs afresh into a new generation, which has already been counted as live.
    fn scan(&self) -> Result<Arc<Generation>, Busy> {
        let started = Instant::now();
        let mut generation = Generation {
            started,
            error: None,
            scan: Mutex::new(None),
            pending: AtomicUsize::new(1),
            bodies: Default::default(),
            pool: Arc::clone(&self.pool),
        };
        let mut scan = lock(&self.pool.spare).take().unwrap_or_default();
        // A scan's vectors are its large allocations: room for as many interfaces as last time
        // and an eighth more is reserved up front, where a refusal can still be a 503. (The
        // first scan has no estimate and grows them the ordinary way.)
        let last = self.pool.last_len.load(Ordering::Relaxed);
        if scan.try_reserve(last.saturating_add(last / 8)).is_err() || headroom().is_none() {
            *lock(&self.pool.spare) = Some(scan);
            return Err(Busy::Memory);
        }
        let mut reader = lock(&self.reader);
        let reader =
            reader.get_or_insert_with(|| Source::new(self.settings.source, &self.settings.sysfs));
        match reader.scan(&self.settings.options, &mut scan) {
            Ok(()) => {
                // Still under the reader's lock, so that scans are compared in the order
                // they were taken.
                self.settings.tracker.observe(&mut scan, since::now_ms());
                self.pool
                    .last_len
                    .store(scan.interfaces.len(), Ordering::Relaxed);
                generation.scan = Mutex::new(Some(scan));
            }
            Err(e) => {
                log::warn("scan failed, answering 503", &[("err", &e)]);
                generation.error = Some(e);
                *lock(&self.pool.spare) = Some(scan);
            }
        }
        Ok(Arc::new(generation))
    }

    fn busy(
        &self,
        req: &Request<'_>,
        busy: Busy,
        conn: &mut Conn,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        let body = busy.body();
        let why = &body[4..body.len() - 1];
        match busy {
            Busy::Memory => log::warn("answering 503", &[("reason", &why)]),
            Busy::Requests | Busy::Generations => {
                log::debug("answering 503", &[("reason", &why)]);
            }
        }
        let status = Status::ServiceUnavailable;
        let plain = "text/plain; charset=utf-8";
        self.write(req, status, plain, body.as_bytes(), conn, out)
    }

    /// Writes a response head into `out` and sends it with `body`, which is written straight
    /// from where it lies (a generation's shared bytes), never copied per connection.
    fn write(
        &self,
        req: &Request<'_>,
        status: Status,
        content_type: &str,
        body: &[u8],
        conn: &mut Conn,
        out: &mut Vec<u8>,
    ) -> io::Result<()> {
        out.clear();
        http::write_head(
            out,
            status,
            content_type,
            body.len(),
            req.connection_header(),
            status == Status::MethodNotAllowed,
            &date_now(),
        );
        let body = if req.method == Method::Head {
            &[]
        } else {
            body
        };
        conn.write(out, body, Instant::now() + WRITE_DEADLINE)
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
            // A connection's one buffer of its own, bounded by the head limits; refused memory
            // closes the connection instead of aborting the process.
            if self.input.try_reserve(READ_CHUNK).is_err() {
                return Err(ReadError::Closed);
            }
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

    /// Writes all of `head` and then `body` before `deadline`, in one system call when the
    /// socket takes it all.
    fn write(&mut self, mut head: &[u8], mut body: &[u8], deadline: Instant) -> io::Result<()> {
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
        if self
            .write(buf, &[], Instant::now() + WRITE_DEADLINE)
            .is_ok()
        {
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
fn refuse(stream: TcpStream, body: &[u8]) {
    let mut out = Vec::new();
    http::write_response(
        &mut out,
        &Response {
            status: Status::ServiceUnavailable,
            content_type: "text/plain; charset=utf-8",
            body,
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

fn date_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    http::http_date(secs)
}
