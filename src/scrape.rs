//! Scans shared between the requests that need one (the metrics and the status page).
//!
//! A request that arrives while a scan runs waits for that scan (single flight), and the
//! finished scan becomes an immutable [`Generation`] whose bodies are rendered once per kind
//! and written to every socket from the same bytes. At most `--web.max-requests` such requests
//! are in flight (each holds a [`Ticket`] until its response is written) and at most
//! [`MAX_GENERATIONS`] generations alive; beyond either, and when an allocation for a scan or a
//! body is refused, the request is [`Refused`] and answered 503. Memory is thereby bounded
//! whatever clients do. A finished scan's allocations go back to a [`Pool`] for the next.
//!
//! The source is read by one scan at a time, and the since tracker compares scans in the
//! order they were taken, under the same lock.
//!
//! Invariant: never holds more than `MAX_GENERATIONS` generations or `--web.max-requests`
//! tickets, never hands out a body without a whole scan, and never aborts on a refused large
//! allocation.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::format::Format;
use crate::metrics::Writer;
use crate::model::{self, Scan, ScanError};
use crate::source::{self, Source};
use crate::{log, metrics, page, since, sys};

/// Generations alive at once: the scan running plus the finished ones that connections are
/// still writing from. A generation holds its rendered bodies (about 0.8 MB per format at 1000
/// interfaces) until its slowest reader is done, up to the server's write deadline. Prometheus
/// scrapes one at a time, and an HA pair plus a browser make three; four lets scrapes go on
/// while a slow client holds one, and caps what slow clients can pin at four generations. A
/// request that would need a fifth waits for one to go, up to `GENERATION_WAIT`.
pub const MAX_GENERATIONS: usize = 4;

/// How long a request that needs a new generation waits for one of `MAX_GENERATIONS` to go
/// before it gets 503. Generations written to clients that read go within milliseconds, so
/// concurrent scrapers only queue briefly; those pinned by clients that do not read go only at
/// the write deadline, far longer than a scrape should wait to learn it cannot be answered.
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

/// What scans are made with, fixed at start.
pub struct Setup {
    pub source: source::Kind,
    pub sysfs: PathBuf,
    pub options: model::Options,
    /// The last-change times, filled into every scan.
    pub tracker: Arc<since::Tracker>,
    /// Where the status page links to the metrics.
    pub telemetry_path: String,
    pub max_requests: usize,
}

/// The scans shared by the requests that need one.
pub struct Scrapes {
    setup: Setup,
    /// Requests for the metrics or the status page from arrival until their response is
    /// written, as node_exporter counts `--web.max-requests`.
    requests: AtomicUsize,
    /// The scan running, which requests that arrive meanwhile join.
    flight: Mutex<Option<Arc<Flight>>>,
    /// The source of interface state, used by one scan at a time (the flight's leader).
    reader: Mutex<Option<Source>>,
    pool: Arc<Pool>,
}

/// What generations share with the scrapes, so that one can give its scan buffers back and be
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
    /// The buffer of the last metrics body of each format that went, written over by the
    /// next: a megabyte mapped afresh costs a scrape its page faults and two system calls.
    spare_body: [Mutex<Vec<u8>>; 2],
}

/// The bodies a generation renders, one slot each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Text = 0,
    OpenMetrics = 1,
    Page = 2,
    /// The page without its automatic refresh (`/?refresh=0`).
    PageStill = 3,
}

impl Kind {
    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Text => metrics::content_type(Format::Text),
            Kind::OpenMetrics => metrics::content_type(Format::OpenMetrics),
            Kind::Page | Kind::PageStill => "text/html; charset=utf-8",
        }
    }
}

/// Why a request that needs a scan is answered 503 without one.
#[derive(Clone, Copy)]
pub enum Busy {
    /// `--web.max-requests` requests are in flight.
    Requests,
    /// `MAX_GENERATIONS` generations are alive, held by clients slow to read.
    Generations,
    /// An allocation for the scan or a body was refused (`RLIMIT_AS`, no memory).
    Memory,
}

/// Why a request gets no body: a limit, a refused allocation, or a scan that could not see
/// every interface. Its text is the rule an error response names.
pub enum Refused {
    Busy(Busy),
    /// The generation whose scan failed: every sharer answers with its error.
    Scan(Arc<Generation>),
}

impl Refused {
    /// Logs why, unless the scan's leader already did; only a refused allocation is worth a
    /// warning, the limits are doing their job.
    pub fn log(&self) {
        match self {
            Refused::Busy(Busy::Memory) => log::warn("answering 503", &[("reason", self)]),
            Refused::Busy(Busy::Requests | Busy::Generations) => {
                log::debug("answering 503", &[("reason", self)]);
            }
            Refused::Scan(_) => {}
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Busy(Busy::Requests) => f.write_str("too many scrapes in flight"),
            Refused::Busy(Busy::Generations) => f.write_str("too many scrapes still being written"),
            Refused::Busy(Busy::Memory) => f.write_str("out of memory"),
            Refused::Scan(generation) => match &generation.error {
                Some(e) => write!(f, "cannot read every interface: {e}"),
                None => f.write_str("cannot read every interface"),
            },
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
    scrapes: &'a Scrapes,
    flight: Arc<Flight>,
    outcome: Option<Result<Arc<Generation>, Busy>>,
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        // Later requests start a new scan; the joiners of this one are all counted by now.
        *lock(&self.scrapes.flight) = None;
        let outcome = self.outcome.take().unwrap_or(Err(Busy::Memory));
        if let Ok(generation) = &outcome {
            let sharers = 1 + self.flight.joined.load(Ordering::Acquire);
            generation.pending.store(sharers, Ordering::Release);
        }
        self.flight.publish(outcome);
    }
}

/// One scan and what was rendered from it, shared by every request that joined its flight and
/// immutable once rendered. Its scan is dropped (given back to the pool) as soon as every
/// sharer has its body, so a connection slow to read holds only the bytes it is writing.
pub struct Generation {
    started: Instant,
    error: Option<ScanError>,
    /// The scan, until every sharer has its body.
    scan: Mutex<Option<Scan>>,
    /// Sharers that have not yet taken their body.
    pending: AtomicUsize,
    /// Rendered bodies; `None` inside when the allocation was refused.
    bodies: [OnceLock<Option<Writer>>; 4],
    pool: Arc<Pool>,
}

/// What the bodies of a generation are rendered with, besides its scan.
struct Render<'a> {
    telemetry_path: &'a str,
    statistics: bool,
    start_ms: u64,
}

impl Generation {
    /// The body of one kind, rendered by the first sharer that asks for it.
    fn body(&self, kind: Kind, cx: &Render<'_>) -> Option<&[u8]> {
        let body = self.bodies[kind as usize].get_or_init(|| {
            let mut scan = lock(&self.scan);
            let scan = scan.as_mut()?;
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
                        telemetry_path: cx.telemetry_path,
                        host: &host,
                        start_ms: cx.start_ms,
                        now_ms: since::now_ms(),
                        refresh: matches!(kind, Kind::Page),
                    };
                    scan.settle();
                    page::render(scan, &context, &mut out);
                    Some(Writer::from(out))
                }
                Kind::Text | Kind::OpenMetrics => {
                    let format = if let Kind::Text = kind {
                        Format::Text
                    } else {
                        Format::OpenMetrics
                    };
                    let (statistics, start_ms) = (cx.statistics, cx.start_ms);
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
                    let spare = std::mem::take(&mut *lock(&self.pool.spare_body[kind as usize]));
                    let had = spare.capacity();
                    let mut out = Writer::over(spare, size)?;
                    // A body written over the last one's room takes no more memory.
                    if out.capacity() > had {
                        headroom()?;
                    }
                    metrics::render_interfaces(scan, statistics, format, &mut out);
                    metrics::render_self(scan.errors, elapsed, start_ms, format, &mut out);
                    last.store(out.bytes().len(), Ordering::Relaxed);
                    Some(out)
                }
            }
        });
        body.as_ref().map(Writer::bytes)
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
        for (body, spare) in self.bodies.iter_mut().zip(&self.pool.spare_body) {
            if let Some(Some(body)) = body.take() {
                *lock(spare) = body.into_buffer();
            }
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

/// A body ready to write, which keeps its generation alive and its request counted until it
/// is dropped, after the response is written.
pub struct Body<'a> {
    generation: Arc<Generation>,
    kind: Kind,
    _ticket: Ticket<'a>,
}

impl Body<'_> {
    pub fn bytes(&self) -> &[u8] {
        let body = self.generation.bodies[self.kind as usize].get();
        body.and_then(Option::as_ref).map_or(&[], Writer::bytes)
    }
}

/// Whether `ALLOC_HEADROOM` more could still be allocated, checked by allocating it (a mapping
/// of its own, never touched) and giving it back at once.
///
/// Only under `RLIMIT_AS`, where a mapping is refused for want of room. Elsewhere (a cgroup's
/// limit reclaims or kills, it does not refuse) the probe told nothing, and its map and unmap
/// cost 40 us a scan. Strict overcommit (`vm.overcommit_memory` 2) refuses too, but telling
/// it would mean opening a file outside the sysfs root, which the exporter never does; there
/// the large reservations are still fallible, and refused with 503.
fn headroom() -> Option<()> {
    if !sys::address_space_limited() {
        return Some(());
    }
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

impl Scrapes {
    pub fn new(setup: Setup) -> Scrapes {
        Scrapes {
            setup,
            requests: AtomicUsize::new(0),
            flight: Mutex::new(None),
            reader: Mutex::new(None),
            pool: Arc::default(),
        }
    }

    /// Whether a scan could start now (`/-/ready`): a cheap look at what scans need, never a
    /// scan, since probes come every few seconds from every kubelet.
    pub fn check_ready(&self) -> Result<(), source::Unready> {
        source::check(self.setup.source, &self.setup.sysfs)
    }

    /// Takes one scan that nobody asked for; a request that comes meanwhile joins it.
    pub fn prime(&self) {
        drop(self.generation());
    }

    /// The body of `kind` from a generation shared with concurrent requests.
    pub fn body(&self, kind: Kind) -> Result<Body<'_>, Refused> {
        let before = self.requests.fetch_add(1, Ordering::AcqRel);
        let ticket = Ticket(&self.requests);
        if before >= self.setup.max_requests {
            return Err(Refused::Busy(Busy::Requests));
        }
        let generation = self.generation().map_err(Refused::Busy)?;
        if generation.error.is_some() {
            // Logged once by the leader; every sharer answers the same.
            return Err(Refused::Scan(generation));
        }
        let cx = Render {
            telemetry_path: &self.setup.telemetry_path,
            statistics: self.setup.options.statistics,
            start_ms: self.setup.tracker.start_ms(),
        };
        let rendered = generation.body(kind, &cx).is_some();
        generation.done_rendering();
        if !rendered {
            return Err(Refused::Busy(Busy::Memory));
        }
        Ok(Body {
            generation,
            kind,
            _ticket: ticket,
        })
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
            scrapes: self,
            flight,
            outcome: None,
        };
        let outcome = self.scan();
        leader.outcome = Some(outcome.clone());
        drop(leader);
        outcome
    }

    /// Scans afresh into a new generation, which has already been counted as live.
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
            reader.get_or_insert_with(|| Source::new(self.setup.source, &self.setup.sysfs));
        // Observed under the reader's lock, so that scans are compared in the order they
        // were taken.
        let observe = |scan: &mut Scan| self.setup.tracker.observe(scan, since::now_ms());
        match reader.scan(&self.setup.options, &mut scan, observe) {
            Ok(()) => {
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
}
