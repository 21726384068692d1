//! Closed-loop WebSocket load generator for ringsocket's benchmark.
//!
//! The method is uWebSockets' `benchmarks/load_test.c`: N connections, each keeps exactly one
//! masked binary message in flight (send a pre-built masked frame, wait until the whole echo
//! has been read and parsed, send again). It runs on one monoio (io_uring) thread pinned to
//! `--cpu`, every connection a task, no allocation per message, so that it stays cheaper than
//! the servers it drives. Connections are opened and upgraded before anything is timed
//! (ramp-up), then `--warmup` seconds are run and not counted, then `--duration` seconds are
//! counted.
//!
//! ```text
//! loadgen --port 9001 --connections 100 --size 20 --warmup 2 --duration 10
//! loadgen --port 9001 --mode idle --connections 10000 --hold 5 --server-pid 1234 --json
//! loadgen --port 9001 --mode connect --connections 50 --duration 5
//! loadgen --port 9001 --mode broadcast --path /fanout --connections 1000 --size 20
//! ```
//!
//! Broadcast (fan-out): `--connections` subscribers and one publisher connect to a route that
//! forwards every message to every other connection on it. The publisher keeps `--window`
//! messages in flight: it sends the next one when every subscriber has received an earlier
//! one. Each subscriber checks that it gets every message exactly once and in order; the
//! counted figure is deliveries (messages received by subscribers), and the latency is from
//! the publish to the last subscriber's receipt.
//!
//! With `--server-pid` it samples the server's CPU time (`/proc/PID/stat`) at the start and end
//! of the counted window and its RSS (`/proc/PID/status`); its own CPU time comes from
//! `getrusage`. Every connection error is counted and reported; a run with errors exits 2.

use std::{
    cell::{Cell, RefCell},
    io::IsTerminal,
    net::{SocketAddr, ToSocketAddrs},
    rc::Rc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use monoio::{
    buf::SliceMut,
    io::{AsyncReadRent, AsyncWriteRentExt},
    net::TcpStream,
};
use ringsocket_bench::{sys, LoadgenReport};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The mask of every frame we send (uWebSockets' load_test uses the same fixed key).
const MASK: [u8; 4] = [0x01, 0x02, 0x03, 0x04];
/// RSV1: the message is permessage-deflate compressed.
const RSV1: u8 = 0x40;
const OP_CONT: u8 = 0x0;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;
/// Payload bytes are compared with what was sent on the first echo of every connection and
/// then on every `VERIFY_EVERY`-th (a power of two).
const VERIFY_EVERY: u64 = 1 << 16;
/// Longest HTTP response head we accept for the upgrade.
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Closed-loop echo: each connection keeps one message in flight.
    Echo,
    /// Open N connections, hold them idle for --hold seconds, close them.
    Idle,
    /// Full connect + upgrade + one echo + close cycles per second.
    Connect,
    /// One publisher, `--connections` subscribers: deliveries per second.
    Broadcast,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Idle => "idle",
            Mode::Connect => "connect",
            Mode::Broadcast => "broadcast",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Driver {
    /// monoio's io_uring driver.
    Uring,
    /// monoio's epoll (legacy) driver.
    Epoll,
}

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Closed-loop WebSocket load generator (uWebSockets load_test method) on one io_uring thread"
)]
struct Args {
    /// What to measure.
    #[arg(long, value_enum, default_value = "echo")]
    mode: Mode,
    /// Server host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Server port.
    #[arg(long)]
    port: u16,
    /// Broadcast mode: port the subscribers connect to (another node of a cluster); the
    /// publisher connects to --port. Default: --port.
    #[arg(long)]
    sub_port: Option<u16>,
    /// Request path of the upgrade.
    #[arg(long, default_value = "/")]
    path: String,
    /// Connections (connect mode: concurrent connect/close loops).
    #[arg(long, short = 'c', default_value_t = 100)]
    connections: usize,
    /// Payload bytes per message.
    #[arg(long, short = 's', default_value_t = 20)]
    size: usize,
    /// Seconds run but not counted after the ramp-up.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Seconds counted.
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Idle mode: seconds to hold the connections open once all are upgraded.
    #[arg(long, default_value_t = 5.0)]
    hold: f64,
    /// The server echoes raw bytes (our masked frames come back verbatim, still masked).
    #[arg(long)]
    raw: bool,
    /// CPU to pin the load generator's thread to.
    #[arg(long, default_value_t = 1)]
    cpu: usize,
    /// Do not pin to a CPU.
    #[arg(long)]
    no_pin: bool,
    /// Server process(es) to sample CPU time and RSS from (/proc/PID); several, comma-separated,
    /// are summed (a cluster: its nodes and its broker).
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Print one JSON object on stdout instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Never show the progress bar.
    #[arg(long)]
    no_progress: bool,
    /// Handshakes in flight at once during ramp-up.
    #[arg(long, default_value_t = 256)]
    batch: usize,
    /// Seconds allowed for opening every connection.
    #[arg(long, default_value_t = 60.0)]
    ramp_timeout: f64,
    /// monoio driver of the load generator's thread.
    #[arg(long, value_enum, default_value = "uring")]
    driver: Driver,
    /// io_uring submission queue entries.
    #[arg(long, default_value_t = 4096)]
    entries: u32,
    /// Broadcast mode: messages the publisher keeps in flight (a power of two).
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// Negotiate permessage-deflate (offer `permessage-deflate; client_max_window_bits`, as
    /// browsers do); messages are sent compressed (one compression, reused: no context
    /// takeover on our side; broadcast: each numbered message compressed on its own) and what
    /// comes back (echoes, deliveries) is inflated when compressed, and checked. A server that
    /// declines fails the handshake.
    #[arg(long)]
    deflate: bool,
    /// Idle mode: every connection does one echo before the hold (so per-connection state
    /// that is made on first use, such as deflate contexts, is counted).
    #[arg(long)]
    prime: bool,
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("report serializes")
                );
            } else {
                print_human(&report);
            }
            std::process::exit(if report.errors > 0 { 2 } else { 0 });
        }
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(args: &Args) -> Result<LoadgenReport> {
    if args.mode == Mode::Broadcast {
        if !args.window.is_power_of_two() {
            bail!("--window must be a power of two");
        }
        if args.size < 8 {
            bail!("broadcast mode needs --size of at least 8 (the sequence number)");
        }
        if args.raw {
            bail!("broadcast mode needs a WebSocket server, not a raw echo");
        }
    }
    if args.deflate && args.raw {
        bail!("--deflate needs a WebSocket server, not a raw echo");
    }
    if args.connections == 0 {
        bail!("--connections must be at least 1");
    }
    for (name, v) in [
        ("--warmup", args.warmup),
        ("--duration", args.duration),
        ("--hold", args.hold),
        ("--ramp-timeout", args.ramp_timeout),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{name} must be a non-negative number of seconds");
        }
    }
    if args.mode != Mode::Idle && args.duration <= 0.0 {
        bail!("--duration must be positive");
    }
    let nofile = sys::raise_nofile_limit().context("raising RLIMIT_NOFILE")?;
    if args.mode == Mode::Idle && (args.connections as u64) + 64 > nofile {
        bail!(
            "{} connections need more file descriptors than RLIMIT_NOFILE allows ({nofile})",
            args.connections
        );
    }
    let addr = (args.host.as_str(), args.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}:{}", args.host, args.port))?
        .next()
        .context("no address")?;

    // A hard bound on the whole run, whatever the server does.
    let budget = args.ramp_timeout
        + args.warmup
        + match args.mode {
            Mode::Idle => args.hold,
            _ => args.duration,
        }
        + 20.0;
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(budget));
            eprintln!("loadgen: hard timeout: the run did not finish within {budget:.0} s");
            std::process::exit(3);
        })
        .context("spawning the watchdog thread")?;

    if !args.no_pin {
        monoio::utils::bind_to_cpu_set([args.cpu])
            .with_context(|| format!("pinning to CPU {}", args.cpu))?;
    }
    match args.driver {
        Driver::Uring => {
            let tuned = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .enable_timer()
                .with_entries(args.entries)
                .uring_builder(ringsocket_bench::tuned_uring())
                .build();
            let mut runtime = match tuned {
                Ok(runtime) => runtime,
                Err(_) => monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .enable_timer()
                    .with_entries(args.entries)
                    .build()
                    .context("building the io_uring runtime (needs Linux io_uring)")?,
            };
            runtime.block_on(async_main(args, addr))
        }
        Driver::Epoll => monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .context("building the epoll runtime")?
            .block_on(async_main(args, addr)),
    }
}

/// What every connection sends and expects; built once.
struct Work {
    /// Where connections go (broadcast: the subscribers).
    addr: SocketAddr,
    /// Where the broadcast publisher goes.
    publisher_addr: SocketAddr,
    host: String,
    path: String,
    raw: bool,
    /// The masked binary frame carrying `payload`.
    frame: &'static [u8],
    payload: &'static [u8],
    /// A masked close frame (code 1000).
    close_frame: &'static [u8],
    /// Read buffer capacity: one whole echo frame fits.
    rbuf_cap: usize,
    /// permessage-deflate is offered and required; `frame` is compressed.
    deflate: bool,
    /// The server answered `server_no_context_takeover`: every echo inflates on its own.
    server_resets: Cell<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Ramp,
    Warmup,
    Measure,
    Done,
}

/// State every task shares (one thread: `Cell`s, no atomics).
struct Shared {
    phase: Cell<Phase>,
    /// Echoes (or cycles) completed in the counted window.
    measured: Cell<u64>,
    /// Echoes (or cycles) completed at all.
    all: Cell<u64>,
    errors: Cell<u64>,
    samples: RefCell<Vec<String>>,
    verified: Cell<u64>,
    /// Nanoseconds.
    hist: RefCell<Histogram<u64>>,
}

impl Shared {
    fn new() -> Self {
        Shared {
            phase: Cell::new(Phase::Ramp),
            measured: Cell::new(0),
            all: Cell::new(0),
            errors: Cell::new(0),
            samples: RefCell::new(Vec::new()),
            verified: Cell::new(0),
            hist: RefCell::new(
                Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("histogram bounds"),
            ),
        }
    }

    fn error(&self, msg: String) {
        if self.phase.get() == Phase::Done {
            return;
        }
        self.errors.set(self.errors.get() + 1);
        let mut samples = self.samples.borrow_mut();
        if samples.len() < 8 && !samples.contains(&msg) {
            samples.push(msg);
        }
    }

    #[inline]
    fn completed(&self, elapsed: Duration) {
        self.all.set(self.all.get() + 1);
        if self.phase.get() == Phase::Measure {
            self.measured.set(self.measured.get() + 1);
            self.hist
                .borrow_mut()
                .saturating_record(elapsed.as_nanos() as u64);
        }
    }
}

/// The server's processes (none: nothing is sampled).
#[derive(Clone, Copy)]
struct Pids<'a>(&'a [u32]);

impl Pids<'_> {
    /// CPU time of all of them, seconds.
    fn cpu_s(self) -> Option<f64> {
        if self.0.is_empty() {
            return None;
        }
        self.0.iter().map(|&pid| sys::process_cpu_s(pid).ok()).sum()
    }

    /// RSS of all of them, KiB.
    fn rss_kb(self) -> Option<u64> {
        if self.0.is_empty() {
            return None;
        }
        self.0
            .iter()
            .map(|&pid| sys::process_rss_kb(pid).ok())
            .sum()
    }
}

/// Per-connection progress, to find connections that stopped without an error.
#[derive(Default)]
struct ConnState {
    done: Cell<u64>,
    failed: Cell<bool>,
}

async fn async_main(args: &Args, addr: SocketAddr) -> Result<LoadgenReport> {
    let payload: &'static [u8] = Box::leak(make_payload(args.size).into_boxed_slice());
    let frame = if args.deflate {
        let mut f = masked_frame(OP_BINARY, &deflate_message(payload)?);
        f[0] |= RSV1;
        f
    } else {
        masked_frame(OP_BINARY, payload)
    };
    let frame: &'static [u8] = Box::leak(frame.into_boxed_slice());
    let close_frame: &'static [u8] =
        Box::leak(masked_frame(OP_CLOSE, &1000u16.to_be_bytes()).into_boxed_slice());
    let echo_len = if args.raw {
        frame.len()
    } else {
        frame.len() - 4
    };
    // Subscribers of a broadcast may be on another node than the publisher.
    let mut sub_addr = addr;
    if let Some(port) = args.sub_port {
        sub_addr.set_port(port);
    }
    let work = Rc::new(Work {
        addr: sub_addr,
        publisher_addr: addr,
        host: format!("{}:{}", args.host, args.port),
        path: args.path.clone(),
        raw: args.raw,
        frame,
        payload,
        close_frame,
        rbuf_cap: (echo_len + 64).max(512),
        deflate: args.deflate,
        server_resets: Cell::new(false),
    });
    let shared = Rc::new(Shared::new());
    let server = Pids(&args.server_pid);
    let rss_start = server.rss_kb();

    let show_progress = !args.no_progress
        && !args.json
        && std::io::stderr().is_terminal()
        && args.warmup
            + match args.mode {
                Mode::Idle => args.hold,
                _ => args.duration,
            }
            > 3.0;
    let bar = show_progress.then(|| {
        let bar = ProgressBar::new(1000);
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        bar
    });

    let mut report = LoadgenReport {
        mode: args.mode.name().into(),
        connections: args.connections,
        size: args.size,
        raw: args.raw,
        warmup_s: args.warmup,
        ..Default::default()
    };

    // Ramp-up: connect and upgrade (connect mode opens its connections inside the loop).
    let ramp_start = Instant::now();
    let conns = if args.mode == Mode::Connect {
        Vec::new()
    } else {
        ramp(args, &work, &shared, bar.as_ref()).await
    };
    report.ramp_s = ramp_start.elapsed().as_secs_f64();
    report.open = if args.mode == Mode::Connect {
        args.connections
    } else {
        conns.len()
    };
    if args.mode != Mode::Connect && conns.is_empty() {
        bail!(
            "no connection could be opened to {addr}: {}",
            shared.samples.borrow().join("; ")
        );
    }

    let states: Vec<Rc<ConnState>> = (0..report.open)
        .map(|_| Rc::new(ConnState::default()))
        .collect();
    match args.mode {
        Mode::Echo => {
            for ((stream, rbuf), state) in conns.into_iter().zip(&states) {
                monoio::spawn(echo_loop(
                    stream,
                    rbuf,
                    shared.clone(),
                    work.clone(),
                    state.clone(),
                ));
            }
        }
        Mode::Connect => {
            for state in &states {
                monoio::spawn(connect_loop(shared.clone(), work.clone(), state.clone()));
            }
        }
        Mode::Idle => {
            let held = conns.len();
            let conns = if args.prime {
                prime(conns, &work, &shared).await
            } else {
                conns
            };
            for ((stream, rbuf), state) in conns.into_iter().zip(&states) {
                monoio::spawn(idle_watch(stream, rbuf, shared.clone(), state.clone()));
            }
            shared.phase.set(Phase::Measure);
            let t0 = Instant::now();
            let cpu0 = sys::self_cpu_s();
            let machine0 = sys::machine_times().ok();
            let server_cpu0 = server.cpu_s();
            wait_until(
                t0 + Duration::from_secs_f64(args.hold),
                bar.as_ref(),
                &shared,
                "holding idle",
                None,
            )
            .await;
            let rss_idle = server.rss_kb();
            report.seconds = t0.elapsed().as_secs_f64();
            report.loadgen_cpu_s = sys::self_cpu_s() - cpu0;
            set_machine(&mut report, machine0);
            if let (Some(c0), Some(c1)) = (server_cpu0, server.cpu_s()) {
                report.server_cpu_s = Some(c1 - c0);
            }
            let alive = states.iter().filter(|s| !s.failed.get()).count();
            shared.phase.set(Phase::Done);
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            report.server_rss_start_kb = rss_start;
            report.server_rss_end_kb = rss_idle;
            if let (Some(a), Some(b)) = (rss_start, rss_idle) {
                report.bytes_per_conn = Some((b as f64 - a as f64) * 1024.0 / held as f64);
            }
            report.open = alive;
            return Ok(finish(report, &shared));
        }
        Mode::Broadcast => {
            let fan = Rc::new(Fan::new(args.window, conns.len()));
            let publisher = match monoio::time::timeout(
                Duration::from_secs_f64(args.ramp_timeout.clamp(1.0, 10.0)),
                open_ws_at(&work, work.publisher_addr),
            )
            .await
            {
                Ok(Ok((stream, _))) => stream,
                Ok(Err(e)) => bail!("opening the publisher: {e}"),
                Err(_) => bail!("opening the publisher timed out"),
            };
            for ((stream, rbuf), state) in conns.into_iter().zip(&states) {
                monoio::spawn(subscriber_loop(
                    stream,
                    rbuf,
                    shared.clone(),
                    work.clone(),
                    fan.clone(),
                    state.clone(),
                ));
            }
            let sync_limit = Instant::now() + Duration::from_secs_f64(args.ramp_timeout);
            monoio::spawn(publisher_loop(
                publisher,
                shared.clone(),
                work.clone(),
                fan.clone(),
                sync_limit,
            ));
            // Every subscriber must be known to the server before anything is timed.
            while fan.synced.get() < fan.subscribers && shared.errors.get() == 0 {
                if Instant::now() > sync_limit {
                    bail!(
                        "only {} of {} subscribers received the publisher's sync message",
                        fan.synced.get(),
                        fan.subscribers
                    );
                }
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    }

    // Echo and connect: warm-up, then the counted window.
    shared.phase.set(Phase::Warmup);
    let warm_start = Instant::now();
    wait_until(
        warm_start + Duration::from_secs_f64(args.warmup),
        bar.as_ref(),
        &shared,
        "warm-up",
        None,
    )
    .await;
    let server_cpu0 = server.cpu_s();
    let cpu0 = sys::self_cpu_s();
    let machine0 = sys::machine_times().ok();
    let t0 = Instant::now();
    shared.phase.set(Phase::Measure);
    let before: Vec<u64> = states.iter().map(|s| s.done.get()).collect();
    wait_until(
        t0 + Duration::from_secs_f64(args.duration),
        bar.as_ref(),
        &shared,
        "measuring",
        Some(args.duration),
    )
    .await;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu1 = sys::self_cpu_s();
    let server_cpu1 = server.cpu_s();
    set_machine(&mut report, machine0);
    let stalled = states
        .iter()
        .zip(&before)
        .filter(|(s, &b)| !s.failed.get() && s.done.get() == b)
        .count();
    if stalled > 0 {
        shared.error(format!(
            "{stalled} of {} connections completed nothing in the counted window (stalled)",
            states.len()
        ));
        shared.errors.set(shared.errors.get() + stalled as u64 - 1);
    }
    if shared.measured.get() == 0 {
        shared.error("no message completed in the counted window".into());
    }
    shared.phase.set(Phase::Done);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    report.seconds = elapsed;
    report.loadgen_cpu_s = cpu1 - cpu0;
    if let (Some(a), Some(b)) = (server_cpu0, server_cpu1) {
        report.server_cpu_s = Some(b - a);
    }
    report.server_rss_start_kb = rss_start;
    report.server_rss_end_kb = server.rss_kb();
    Ok(finish(report, &shared))
}

fn set_machine(report: &mut LoadgenReport, start: Option<sys::MachineTimes>) {
    if let (Some(a), Ok(b)) = (start, sys::machine_times()) {
        report.machine_busy_s = Some(b.busy - a.busy);
        report.machine_irq_s = Some(b.irq - a.irq);
        report.machine_steal_s = Some(b.steal - a.steal);
    }
}

/// Fills in the counts, rates and percentiles.
fn finish(mut report: LoadgenReport, shared: &Shared) -> LoadgenReport {
    report.errors = shared.errors.get();
    report.error_samples = shared.samples.borrow().clone();
    report.verified = shared.verified.get();
    if report.mode != "idle" {
        report.messages = shared.measured.get();
        report.msgs_per_sec = if report.seconds > 0.0 {
            report.messages as f64 / report.seconds
        } else {
            0.0
        };
        let hist = shared.hist.borrow();
        if !hist.is_empty() {
            let us = |q: f64| Some(hist.value_at_quantile(q) as f64 / 1000.0);
            report.p50_us = us(0.5);
            report.p90_us = us(0.9);
            report.p99_us = us(0.99);
            report.p999_us = us(0.999);
            report.max_us = Some(hist.max() as f64 / 1000.0);
            report.mean_us = Some(hist.mean() / 1000.0);
        }
        if let Some(cpu) = report.server_cpu_s {
            if cpu > 0.0 {
                report.msgs_per_server_cpu_s = Some(report.messages as f64 / cpu);
            }
        }
    }
    if report.seconds > 0.0 {
        report.server_cpu_pct = report.server_cpu_s.map(|c| 100.0 * c / report.seconds);
        report.loadgen_cpu_pct = 100.0 * report.loadgen_cpu_s / report.seconds;
    }
    report
}

/// Sleeps until `end`, updating the progress bar (if any) a few times a second.
async fn wait_until(
    end: Instant,
    bar: Option<&ProgressBar>,
    shared: &Shared,
    what: &str,
    total: Option<f64>,
) {
    let start = Instant::now();
    let mut last_all = shared.all.get();
    let mut last_t = start;
    loop {
        let now = Instant::now();
        if now >= end {
            return;
        }
        let step = if bar.is_some() {
            (end - now).min(Duration::from_millis(250))
        } else {
            end - now
        };
        monoio::time::sleep(step).await;
        if let Some(bar) = bar {
            let now = Instant::now();
            let all = shared.all.get();
            let rate = (all - last_all) as f64 / (now - last_t).as_secs_f64().max(1e-9);
            (last_all, last_t) = (all, now);
            let span = (end - start).as_secs_f64().max(1e-9);
            bar.set_position((1000.0 * (now - start).as_secs_f64() / span).min(1000.0) as u64);
            let errors = shared.errors.get();
            bar.set_message(format!(
                "{what} {:.1}/{:.1} s  {rate:.0}/s  errors {errors}",
                (now - start).as_secs_f64(),
                total.unwrap_or(span),
            ));
        }
    }
}

/// Opens `--connections` upgraded connections, `--batch` handshakes at a time.
async fn ramp(
    args: &Args,
    work: &Rc<Work>,
    shared: &Rc<Shared>,
    bar: Option<&ProgressBar>,
) -> Vec<(TcpStream, Vec<u8>)> {
    let n = args.connections;
    let batch = args.batch.max(1);
    let deadline = Instant::now() + Duration::from_secs_f64(args.ramp_timeout);
    let per_handshake = Duration::from_secs_f64(args.ramp_timeout.clamp(1.0, 10.0));
    let mut open = Vec::with_capacity(n);
    let mut started = 0;
    while started < n {
        let k = batch.min(n - started);
        let handles: Vec<_> = (0..k)
            .map(|_| {
                let work = work.clone();
                monoio::spawn(
                    async move { monoio::time::timeout(per_handshake, open_ws(&work)).await },
                )
            })
            .collect();
        for handle in handles {
            match handle.await {
                Ok(Ok(conn)) => open.push(conn),
                Ok(Err(e)) => shared.error(e),
                Err(_) => shared.error(format!(
                    "handshake timed out after {:.0} s",
                    per_handshake.as_secs_f64()
                )),
            }
        }
        started += k;
        if let Some(bar) = bar {
            bar.set_position((1000 * started / n) as u64);
            bar.set_message(format!("opening {started}/{n}"));
        }
        if started < n && Instant::now() > deadline {
            shared.error(format!(
                "ramp-up took longer than {:.0} s: stopped after {started} of {n} connections",
                args.ramp_timeout
            ));
            break;
        }
    }
    open
}

/// One connection of the echo mode: send, read the whole echo, repeat.
async fn echo_loop(
    mut stream: TcpStream,
    mut rbuf: Vec<u8>,
    shared: Rc<Shared>,
    work: Rc<Work>,
    state: Rc<ConnState>,
) {
    let mut n: u64 = 0;
    let mut inflater = work
        .deflate
        .then(|| Inflater::new(work.server_resets.get()));
    while shared.phase.get() != Phase::Done {
        let verify = n & (VERIFY_EVERY - 1) == 0;
        let t0 = Instant::now();
        let (res, _) = stream.write_all(work.frame).await;
        if let Err(e) = res {
            state.failed.set(true);
            shared.error(format!("write: {e}"));
            return;
        }
        let (raw, payload) = (work.raw, work.payload);
        match read_until(&mut stream, &mut rbuf, false, |b| match &mut inflater {
            Some(inflater) => inflater.parse(b, payload, verify),
            None => parse_message(b, raw, payload, verify),
        })
        .await
        {
            Ok(used) => consume(&mut rbuf, used),
            Err(e) => {
                state.failed.set(true);
                shared.error(e);
                return;
            }
        }
        shared.completed(t0.elapsed());
        state.done.set(state.done.get() + 1);
        if verify {
            shared.verified.set(shared.verified.get() + 1);
        }
        n += 1;
    }
}

/// One echo on every connection, `256` at a time; connections that fail are dropped (and
/// counted as errors).
async fn prime(
    conns: Vec<(TcpStream, Vec<u8>)>,
    work: &Rc<Work>,
    shared: &Rc<Shared>,
) -> Vec<(TcpStream, Vec<u8>)> {
    let mut primed = Vec::with_capacity(conns.len());
    let mut conns = conns.into_iter();
    loop {
        let handles: Vec<_> = conns
            .by_ref()
            .take(256)
            .map(|(mut stream, mut rbuf)| {
                let work = work.clone();
                monoio::spawn(async move {
                    let (res, _) = stream.write_all(work.frame).await;
                    res.map_err(|e| format!("write: {e}"))?;
                    let mut inflater = work
                        .deflate
                        .then(|| Inflater::new(work.server_resets.get()));
                    let (raw, payload) = (work.raw, work.payload);
                    let used = read_until(&mut stream, &mut rbuf, false, |b| match &mut inflater {
                        Some(inflater) => inflater.parse(b, payload, true),
                        None => parse_message(b, raw, payload, true),
                    })
                    .await?;
                    consume(&mut rbuf, used);
                    Ok::<_, String>((stream, rbuf))
                })
            })
            .collect();
        if handles.is_empty() {
            return primed;
        }
        for handle in handles {
            match handle.await {
                Ok(conn) => {
                    shared.verified.set(shared.verified.get() + 1);
                    primed.push(conn);
                }
                Err(e) => shared.error(format!("priming echo: {e}")),
            }
        }
    }
}

/// One task of the connect mode: connect, upgrade, one echo, close, repeat.
async fn connect_loop(shared: Rc<Shared>, work: Rc<Work>, state: Rc<ConnState>) {
    while shared.phase.get() != Phase::Done {
        let t0 = Instant::now();
        match monoio::time::timeout(Duration::from_secs(5), connect_cycle(&work)).await {
            Ok(Ok(())) => {
                shared.completed(t0.elapsed());
                shared.verified.set(shared.verified.get() + 1);
                state.done.set(state.done.get() + 1);
            }
            Ok(Err(e)) => {
                shared.error(e);
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => shared.error("connect cycle timed out after 5 s".into()),
        }
    }
}

async fn connect_cycle(work: &Work) -> Result<(), String> {
    let (mut stream, mut rbuf) = open_ws(work).await?;
    let (res, _) = stream.write_all(work.frame).await;
    res.map_err(|e| format!("write: {e}"))?;
    let (raw, payload) = (work.raw, work.payload);
    let mut inflater = work
        .deflate
        .then(|| Inflater::new(work.server_resets.get()));
    let used = read_until(&mut stream, &mut rbuf, false, |b| match &mut inflater {
        Some(inflater) => inflater.parse(b, payload, true),
        None => parse_message(b, raw, payload, true),
    })
    .await?;
    consume(&mut rbuf, used);
    let (res, _) = stream.write_all(work.close_frame).await;
    res.map_err(|e| format!("write close: {e}"))?;
    // The server's close frame, or EOF.
    read_until(&mut stream, &mut rbuf, true, |b| parse_until_close(b, raw)).await?;
    Ok(())
}

/// Holds an idle connection; anything but a ping/pong from the server is an error.
async fn idle_watch(
    mut stream: TcpStream,
    mut rbuf: Vec<u8>,
    shared: Rc<Shared>,
    state: Rc<ConnState>,
) {
    let res = read_until(&mut stream, &mut rbuf, true, |b| {
        match parse_until_close(b, false) {
            // A close frame, or a data frame: either way the connection is no longer idle.
            Ok(Some(_)) => Err("server closed an idle connection".into()),
            other => other,
        }
    })
    .await;
    state.failed.set(true);
    shared.error(match res {
        Ok(_) => "server closed an idle connection (EOF)".into(),
        Err(e) => e,
    });
    drop(stream);
}

/// Broadcast mode's shared state: which messages every subscriber has received.
struct Fan {
    subscribers: usize,
    /// `window - 1`: ring index mask.
    mask: u64,
    /// Subscribers that have received message `seq`, at `seq & mask`.
    counts: RefCell<Vec<usize>>,
    /// When message `seq` was sent, at `seq & mask`.
    sent_at: RefCell<Vec<Instant>>,
    /// Highest sequence number sent (they start at 1; 0 is the sync message).
    sent: Cell<u64>,
    /// Highest sequence number every subscriber has received.
    complete: Cell<u64>,
    /// Subscribers that have seen a sync message.
    synced: Cell<usize>,
    /// The publisher, waiting for room in the window.
    waiting: RefCell<Option<std::task::Waker>>,
    /// The subscribers' shared prefixes (see [`Inflater::memo`]).
    memo: Rc<RefCell<PrefixMemo>>,
}

impl Fan {
    fn new(window: usize, subscribers: usize) -> Self {
        Fan {
            subscribers,
            mask: window as u64 - 1,
            counts: RefCell::new(vec![0; window]),
            sent_at: RefCell::new(vec![Instant::now(); window]),
            sent: Cell::new(0),
            complete: Cell::new(0),
            synced: Cell::new(0),
            waiting: RefCell::new(None),
            memo: Rc::default(),
        }
    }

    fn wake(&self) {
        if let Some(waker) = self.waiting.borrow_mut().take() {
            waker.wake();
        }
    }

    /// Resolves once `ready()` holds (re-checked each time a subscriber wakes the publisher).
    async fn wait(&self, ready: impl Fn(&Fan) -> bool) {
        std::future::poll_fn(|cx| {
            if ready(self) {
                std::task::Poll::Ready(())
            } else {
                *self.waiting.borrow_mut() = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        })
        .await
    }
}

/// Broadcast mode's publisher: sync messages until every subscriber has one, then numbered
/// messages, `--window` of them in flight.
async fn publisher_loop(
    mut stream: TcpStream,
    shared: Rc<Shared>,
    work: Rc<Work>,
    fan: Rc<Fan>,
    sync_limit: Instant,
) {
    let mut frame = work.frame.to_vec();
    let seq_at = frame.len() - work.payload.len();
    let mut payload = work.payload.to_vec();
    let mut stamp = |frame: &mut Vec<u8>, seq: u64| {
        if work.deflate {
            // Compressed anew for each number (a fresh context, as every message of ours).
            payload[..8].copy_from_slice(&seq.to_be_bytes());
            let mut f = masked_frame(
                OP_BINARY,
                &deflate_message(&payload).expect("deflate of a small buffer"),
            );
            f[0] |= RSV1;
            return f;
        }
        for (i, b) in seq.to_be_bytes().into_iter().enumerate() {
            frame[seq_at + i] = b ^ MASK[i & 3];
        }
        std::mem::take(frame)
    };
    while fan.synced.get() < fan.subscribers {
        if Instant::now() > sync_limit || shared.phase.get() == Phase::Done {
            return;
        }
        let (res, buf) = stream.write_all(stamp(&mut frame, 0)).await;
        frame = buf;
        if let Err(e) = res {
            shared.error(format!("publisher write: {e}"));
            return;
        }
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
    let window = fan.mask + 1;
    while shared.phase.get() != Phase::Done {
        fan.wait(|f| f.sent.get() - f.complete.get() < window || shared.phase.get() == Phase::Done)
            .await;
        if shared.phase.get() == Phase::Done {
            return;
        }
        let seq = fan.sent.get() + 1;
        fan.sent_at.borrow_mut()[(seq & fan.mask) as usize] = Instant::now();
        fan.sent.set(seq);
        let (res, buf) = stream.write_all(stamp(&mut frame, seq)).await;
        frame = buf;
        if let Err(e) = res {
            shared.error(format!("publisher write: {e}"));
            return;
        }
    }
}

/// Broadcast mode's subscriber: every numbered message exactly once, in order.
async fn subscriber_loop(
    mut stream: TcpStream,
    mut rbuf: Vec<u8>,
    shared: Rc<Shared>,
    work: Rc<Work>,
    fan: Rc<Fan>,
    state: Rc<ConnState>,
) {
    let mut synced = false;
    let mut last = 0u64;
    let mut inflater = work
        .deflate
        .then(|| Inflater::with_memo(work.server_resets.get(), fan.memo.clone()));
    while shared.phase.get() != Phase::Done {
        let verify = state.done.get() & (VERIFY_EVERY - 1) == 0;
        let mut seq = 0;
        let payload = work.payload;
        let res = read_until(&mut stream, &mut rbuf, false, |b| {
            let found = match &mut inflater {
                // Unverified, only the number is needed (see `Inflater::message`).
                Some(inflater) => {
                    match inflater.message(b, payload.len(), (!verify).then_some(8))? {
                        Some((used, got)) if !verify && got.len() == 8 && payload.len() > 8 => {
                            Some((used, seq_of(got)))
                        }
                        Some((used, got)) => Some((used, published_seq(got, payload, verify)?)),
                        None => None,
                    }
                }
                None => parse_message_with_seq(b, payload, verify)?,
            };
            Ok(found.map(|(used, s)| {
                seq = s;
                used
            }))
        })
        .await;
        match res {
            Ok(used) => consume(&mut rbuf, used),
            Err(e) => {
                if shared.phase.get() != Phase::Done {
                    state.failed.set(true);
                    shared.error(e);
                    fan.wake();
                }
                return;
            }
        }
        if seq == 0 {
            if !synced {
                synced = true;
                fan.synced.set(fan.synced.get() + 1);
            }
            continue;
        }
        if seq != last + 1 {
            state.failed.set(true);
            shared.error(format!(
                "subscriber got message {seq} after {last} (lost, duplicated or reordered)"
            ));
            fan.wake();
            return;
        }
        last = seq;
        state.done.set(state.done.get() + 1);
        if verify {
            shared.verified.set(shared.verified.get() + 1);
        }
        shared.all.set(shared.all.get() + 1);
        if shared.phase.get() == Phase::Measure {
            shared.measured.set(shared.measured.get() + 1);
        }
        let slot = (seq & fan.mask) as usize;
        let mut counts = fan.counts.borrow_mut();
        counts[slot] += 1;
        if counts[slot] == fan.subscribers {
            counts[slot] = 0;
            fan.complete.set(seq);
            if shared.phase.get() == Phase::Measure {
                let elapsed = fan.sent_at.borrow()[slot].elapsed();
                shared
                    .hist
                    .borrow_mut()
                    .saturating_record(elapsed.as_nanos() as u64);
            }
            drop(counts);
            fan.wake();
        }
    }
}

/// Parses one unfragmented binary message whose payload is `expected` with its first 8
/// bytes replaced by a big-endian sequence number; returns the bytes it spans and that number.
/// Pings and pongs before it are skipped.
fn parse_message_with_seq(
    buf: &[u8],
    expected: &[u8],
    verify: bool,
) -> Result<Option<(usize, u64)>, String> {
    let mut off = 0;
    loop {
        let Some(h) = parse_header(&buf[off..], 0)? else {
            return Ok(None);
        };
        if h.masked {
            return Err("server sent a masked frame".into());
        }
        let end = off + h.header_len + h.payload_len;
        match h.opcode {
            OP_PING | OP_PONG if h.fin && h.payload_len <= 125 => {}
            OP_BINARY if h.fin => {
                if h.payload_len != expected.len() {
                    return Err(format!(
                        "message carries {} bytes, {} were published",
                        h.payload_len,
                        expected.len()
                    ));
                }
                if buf.len() < end {
                    return Ok(None);
                }
                let seq = published_seq(&buf[off + h.header_len..end], expected, verify)?;
                return Ok(Some((end, seq)));
            }
            OP_CLOSE => return Err("server closed a subscriber".into()),
            op => return Err(format!("unexpected frame (opcode {op:#x}, fin {})", h.fin)),
        }
        if buf.len() < end {
            return Ok(None);
        }
        off = end;
    }
}

/// The sequence number of a delivered broadcast message (its first 8 bytes, big-endian),
/// after checking it is the published payload (`verify`: byte for byte past the number).
fn published_seq(payload: &[u8], expected: &[u8], verify: bool) -> Result<u64, String> {
    if payload.len() != expected.len() {
        return Err(format!(
            "message carries {} bytes, {} were published",
            payload.len(),
            expected.len()
        ));
    }
    if verify && payload[8..] != expected[8..] {
        return Err("delivered payload differs from what was published".into());
    }
    Ok(seq_of(payload))
}

/// The big-endian number in the first 8 bytes of `payload`.
fn seq_of(payload: &[u8]) -> u64 {
    let mut be = [0u8; 8];
    be.copy_from_slice(&payload[..8]);
    u64::from_be_bytes(be)
}

/// Reads into `rbuf` until `parse` finds a complete unit, returning how many bytes it used.
/// EOF is an error, or `Ok(0)` when `eof_ok`.
async fn read_until<F>(
    stream: &mut TcpStream,
    rbuf: &mut Vec<u8>,
    eof_ok: bool,
    mut parse: F,
) -> Result<usize, String>
where
    F: FnMut(&[u8]) -> Result<Option<usize>, String>,
{
    loop {
        if !rbuf.is_empty() {
            if let Some(used) = parse(rbuf)? {
                return Ok(used);
            }
        }
        let len = rbuf.len();
        if len == rbuf.capacity() {
            rbuf.reserve(len.max(4096));
        }
        let cap = rbuf.capacity();
        let (res, slice) = stream
            .read(SliceMut::new(std::mem::take(rbuf), len, cap))
            .await;
        *rbuf = slice.into_inner();
        match res {
            Ok(0) if eof_ok => return Ok(0),
            Ok(0) => {
                return Err(if len == 0 {
                    "connection closed by the server".into()
                } else {
                    format!("connection closed by the server with {len} bytes of a frame unread")
                })
            }
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

fn consume(rbuf: &mut Vec<u8>, used: usize) {
    if used >= rbuf.len() {
        rbuf.clear();
    } else {
        rbuf.copy_within(used.., 0);
        rbuf.truncate(rbuf.len() - used);
    }
}

#[derive(Debug, Clone, Copy)]
struct Header {
    rsv1: bool,
    fin: bool,
    opcode: u8,
    masked: bool,
    header_len: usize,
    payload_len: usize,
}

/// Parses a frame header at the start of `buf`: `Ok(None)` until all of it is there.
#[inline]
fn parse_header(buf: &[u8], allowed_rsv: u8) -> Result<Option<Header>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & (0x70 & !allowed_rsv) != 0 {
        return Err(format!(
            "echo frame has RSV bits set (first byte {b0:#04x})"
        ));
    }
    let (len_end, payload_len) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (4, u16::from_be_bytes([buf[2], buf[3]]) as u64)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut be = [0u8; 8];
            be.copy_from_slice(&buf[2..10]);
            (10, u64::from_be_bytes(be))
        }
        n => (2, n as u64),
    };
    if payload_len > 1 << 40 {
        return Err(format!("absurd frame length {payload_len}"));
    }
    let masked = b1 & 0x80 != 0;
    Ok(Some(Header {
        rsv1: b0 & RSV1 != 0,
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0f,
        masked,
        header_len: len_end + if masked { 4 } else { 0 },
        payload_len: payload_len as usize,
    }))
}

/// Parses one echoed binary message at the start of `buf` (it may arrive fragmented, and
/// pings/pongs before or between its fragments are skipped). Returns the bytes it spans once
/// all of it is there. `raw`: frames must come back masked (verbatim); otherwise unmasked.
/// `verify`: compare the payload with `expected` byte for byte (the length always is).
#[inline]
fn parse_message(
    buf: &[u8],
    raw: bool,
    expected: &[u8],
    verify: bool,
) -> Result<Option<usize>, String> {
    let mut off = 0;
    let mut got = 0;
    let mut started = false;
    loop {
        let Some(h) = parse_header(&buf[off..], 0)? else {
            return Ok(None);
        };
        if h.masked != raw {
            return Err(if raw {
                "expected our masked frame back verbatim, got an unmasked frame".into()
            } else {
                "server sent a masked frame".into()
            });
        }
        match h.opcode {
            OP_PING | OP_PONG | OP_CLOSE if !h.fin || h.payload_len > 125 => {
                return Err(format!("bad control frame (opcode {:#x})", h.opcode));
            }
            OP_PING | OP_PONG => {}
            OP_CLOSE => {
                let end = off + h.header_len + h.payload_len;
                if buf.len() < end {
                    return Ok(None);
                }
                let p = &buf[off + h.header_len..end];
                let code = if p.len() >= 2 {
                    u16::from_be_bytes([p[0], p[1]])
                } else {
                    1005
                };
                return Err(format!(
                    "server sent close (code {code}) instead of the echo"
                ));
            }
            op => {
                if !started && op != OP_BINARY {
                    return Err(format!("echo has opcode {op:#x}, expected binary"));
                }
                if started && op != OP_CONT {
                    return Err(format!("expected a continuation frame, got opcode {op:#x}"));
                }
                started = true;
                if got + h.payload_len > expected.len() {
                    return Err(format!(
                        "echo is longer than the {} bytes sent",
                        expected.len()
                    ));
                }
            }
        }
        let end = off + h.header_len + h.payload_len;
        if buf.len() < end {
            return Ok(None);
        }
        if h.opcode == OP_BINARY || h.opcode == OP_CONT {
            if verify {
                let payload = &buf[off + h.header_len..end];
                let want = &expected[got..got + h.payload_len];
                let same = if raw {
                    let key = &buf[off + h.header_len - 4..off + h.header_len];
                    payload
                        .iter()
                        .zip(want)
                        .enumerate()
                        .all(|(i, (&p, &w))| p ^ key[i & 3] == w)
                } else {
                    payload == want
                };
                if !same {
                    return Err("echoed payload differs from what was sent".into());
                }
            }
            got += h.payload_len;
            if h.fin {
                if got != expected.len() {
                    return Err(format!(
                        "echo carries {got} bytes, {} were sent",
                        expected.len()
                    ));
                }
                return Ok(Some(end));
            }
        }
        off = end;
    }
}

/// Skips frames until a close frame has arrived whole; returns the bytes up to its end.
fn parse_until_close(buf: &[u8], raw: bool) -> Result<Option<usize>, String> {
    let mut off = 0;
    loop {
        let Some(h) = parse_header(&buf[off..], 0)? else {
            return Ok(None);
        };
        if h.masked != raw {
            return Err("unexpected masking on a frame from the server".into());
        }
        let end = off + h.header_len + h.payload_len;
        if buf.len() < end {
            return Ok(None);
        }
        match h.opcode {
            OP_CLOSE => return Ok(Some(end)),
            OP_PING | OP_PONG => {}
            op => return Err(format!("unexpected frame (opcode {op:#x}) from the server")),
        }
        off = end;
    }
}

/// Connects, sends the HTTP upgrade and checks the 101 and its `Sec-WebSocket-Accept`.
/// Returns the stream and a read buffer holding whatever followed the response head.
async fn open_ws(work: &Work) -> Result<(TcpStream, Vec<u8>), String> {
    open_ws_at(work, work.addr).await
}

/// [`open_ws`] to `addr`.
async fn open_ws_at(work: &Work, addr: SocketAddr) -> Result<(TcpStream, Vec<u8>), String> {
    let mut stream = TcpStream::connect_addr(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let key = ringsocket::proto::generate_key();
    let extensions = if work.deflate {
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    } else {
        ""
    };
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{extensions}\r\n",
        work.path, work.host
    );
    let (res, _) = stream.write_all(request.into_bytes()).await;
    res.map_err(|e| format!("write upgrade request: {e}"))?;
    let mut rbuf = Vec::with_capacity(work.rbuf_cap);
    let head_end = read_until(&mut stream, &mut rbuf, false, |b| {
        match b.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(i) => Ok(Some(i + 4)),
            None if b.len() > MAX_HEAD => Err("upgrade response head too long".into()),
            None => Ok(None),
        }
    })
    .await
    .map_err(|e| format!("upgrade: {e}"))?;
    let agreed = check_upgrade_response(&rbuf[..head_end], &key)?;
    if work.deflate {
        let Some(agreed) = agreed.filter(|e| e.starts_with("permessage-deflate")) else {
            return Err("the server did not agree to permessage-deflate".into());
        };
        let params: Vec<&str> = agreed.split(';').map(str::trim).collect();
        work.server_resets
            .set(params.contains(&"server_no_context_takeover"));
    }
    consume(&mut rbuf, head_end);
    Ok((stream, rbuf))
}

/// Checks the 101 and its accept key; returns the `Sec-WebSocket-Extensions` answer.
fn check_upgrade_response(head: &[u8], key: &str) -> Result<Option<String>, String> {
    let head = std::str::from_utf8(head).map_err(|_| "upgrade response is not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.split_ascii_whitespace();
    let (version, code) = (parts.next(), parts.next());
    if !matches!(version, Some("HTTP/1.1")) || code != Some("101") {
        return Err(format!("upgrade refused: {status:?}"));
    }
    let want = ringsocket::proto::accept_key(key.as_bytes());
    let header = |wanted: &str| {
        head.split("\r\n").skip(1).find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case(wanted)
                .then(|| value.trim())
        })
    };
    let extensions = header("sec-websocket-extensions").map(str::to_owned);
    match header("sec-websocket-accept") {
        Some(v) if v == want => Ok(extensions),
        Some(v) => Err(format!(
            "wrong Sec-WebSocket-Accept {v:?} (expected {want:?})"
        )),
        None => Err("101 without Sec-WebSocket-Accept".into()),
    }
}

/// `payload` compressed as one permessage-deflate message on its own (fresh context, sync
/// flush, the `00 00 ff ff` tail removed).
fn deflate_message(payload: &[u8]) -> Result<Vec<u8>> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::fast(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    loop {
        let consumed = c.total_in() as usize;
        c.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
            .context("compressing the payload")?;
        if c.total_in() as usize == payload.len() && out.ends_with(&[0, 0, 0xff, 0xff]) {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    out.truncate(out.len() - 4);
    Ok(out)
}

/// The permessage-deflate side of one connection: inflates what the server sends.
struct Inflater {
    d: flate2::Decompress,
    /// The server resets its context per message (`server_no_context_takeover`).
    reset_each: bool,
    compressed: Vec<u8>,
    out: Vec<u8>,
    /// Shared by the subscribers of a broadcast: the last compressed message whose prefix
    /// one of them inflated, and that prefix. A server that resets its context sends every
    /// subscriber the same bytes, which inflate to the same prefix.
    memo: Option<Rc<RefCell<PrefixMemo>>>,
}

/// See [`Inflater::memo`].
#[derive(Default)]
struct PrefixMemo {
    compressed: Vec<u8>,
    prefix: Vec<u8>,
}

impl Inflater {
    fn new(reset_each: bool) -> Self {
        Inflater {
            d: flate2::Decompress::new(false),
            reset_each,
            compressed: Vec::new(),
            out: Vec::new(),
            memo: None,
        }
    }

    /// [`new`](Self::new), sharing prefixes inflated from identical messages with the other
    /// holders of `memo`.
    fn with_memo(reset_each: bool, memo: Rc<RefCell<PrefixMemo>>) -> Self {
        Inflater {
            memo: Some(memo),
            ..Inflater::new(reset_each)
        }
    }

    /// [`parse_message`] for a connection with permessage-deflate: the echo may come back
    /// compressed (RSV1 on its first frame) or not (below the server's threshold).
    fn parse(
        &mut self,
        buf: &[u8],
        expected: &[u8],
        verify: bool,
    ) -> Result<Option<usize>, String> {
        let Some((end, got)) = self.message(buf, expected.len(), None)? else {
            return Ok(None);
        };
        if got.len() != expected.len() {
            return Err(format!(
                "echo carries {} bytes, {} were sent",
                got.len(),
                expected.len()
            ));
        }
        if verify && got != expected {
            return Err("echoed payload differs from what was sent".into());
        }
        Ok(Some(end))
    }

    /// The first binary message in `buf` (pings and pongs before it skipped), inflated if it
    /// came compressed, and the bytes it took; `None` while it is incomplete. `expected` is
    /// the length it should have: far longer is an error before it is all read or inflated.
    ///
    /// `prefix`: only that many leading bytes are wanted. A compressed message from a server
    /// that resets its context for every message is then inflated no further (the rest
    /// affects no later message), and only they are returned (fewer if the message is
    /// shorter); anything else is returned whole. A subscriber that checks every delivery's
    /// number but its bytes only now and then would otherwise spend most of its time
    /// inflating.
    fn message(
        &mut self,
        buf: &[u8],
        expected: usize,
        prefix: Option<usize>,
    ) -> Result<Option<(usize, &[u8])>, String> {
        let mut off = 0;
        let mut started = false;
        let mut compressed = false;
        self.compressed.clear();
        loop {
            let Some(h) = parse_header(&buf[off..], RSV1)? else {
                return Ok(None);
            };
            if h.masked {
                return Err("server sent a masked frame".into());
            }
            let end = off + h.header_len + h.payload_len;
            match h.opcode {
                OP_PING | OP_PONG if h.fin && h.payload_len <= 125 && !h.rsv1 => {}
                OP_BINARY if !started => {
                    started = true;
                    compressed = h.rsv1;
                }
                OP_CONT if started && !h.rsv1 => {}
                OP_CLOSE => return Err("server sent close instead of a message".into()),
                op => {
                    return Err(format!(
                        "unexpected frame (opcode {op:#x}, rsv1 {})",
                        h.rsv1
                    ))
                }
            }
            if buf.len() < end {
                return Ok(None);
            }
            if h.opcode == OP_BINARY || h.opcode == OP_CONT {
                self.compressed
                    .extend_from_slice(&buf[off + h.header_len..end]);
                if self.compressed.len() > 2 * expected + 1024 {
                    return Err("message is far longer than what was sent".into());
                }
                if h.fin {
                    if compressed {
                        match prefix.filter(|_| self.reset_each) {
                            Some(n) => self.inflate_prefix_memo(n)?,
                            None => self.inflate(expected)?,
                        }
                        return Ok(Some((end, &self.out)));
                    }
                    return Ok(Some((end, &self.compressed)));
                }
            }
            off = end;
        }
    }

    /// [`inflate_prefix`](Self::inflate_prefix), or the prefix the memo holds for the same
    /// compressed bytes.
    fn inflate_prefix_memo(&mut self, n: usize) -> Result<(), String> {
        let Some(memo) = self.memo.clone() else {
            return self.inflate_prefix(n);
        };
        {
            let memo = memo.borrow();
            if memo.compressed == self.compressed && memo.prefix.len() <= n {
                self.out.clear();
                self.out.extend_from_slice(&memo.prefix);
                return Ok(());
            }
        }
        let mut memo = memo.borrow_mut();
        memo.compressed.clear();
        memo.compressed.extend_from_slice(&self.compressed);
        self.inflate_prefix(n)?;
        memo.prefix.clear();
        memo.prefix.extend_from_slice(&self.out);
        Ok(())
    }

    /// The first `n` bytes of the message in `compressed` into `out`, the decompressor reset
    /// after (only for a server that resets its own context every message).
    fn inflate_prefix(&mut self, n: usize) -> Result<(), String> {
        use flate2::FlushDecompress;
        self.compressed.extend_from_slice(&[0, 0, 0xff, 0xff]);
        self.out.clear();
        self.out.resize(n, 0);
        let mut filled = 0;
        let start = self.d.total_in();
        while filled < n {
            let (in_before, out_before) = (self.d.total_in(), self.d.total_out());
            let used = (in_before - start) as usize;
            self.d
                .decompress(
                    &self.compressed[used..],
                    &mut self.out[filled..],
                    FlushDecompress::Sync,
                )
                .map_err(|e| format!("inflating a message: {e}"))?;
            filled += (self.d.total_out() - out_before) as usize;
            if self.d.total_in() == in_before && self.d.total_out() == out_before {
                // Shorter than `n`: all of it is there.
                break;
            }
        }
        self.out.truncate(filled);
        self.d.reset(false);
        Ok(())
    }

    fn inflate(&mut self, expected: usize) -> Result<(), String> {
        use flate2::FlushDecompress;
        self.compressed.extend_from_slice(&[0, 0, 0xff, 0xff]);
        self.out.clear();
        self.out.reserve(expected + 64);
        let start = self.d.total_in();
        loop {
            let used = (self.d.total_in() - start) as usize;
            let before = self.out.len();
            self.d
                .decompress_vec(
                    &self.compressed[used..],
                    &mut self.out,
                    FlushDecompress::Sync,
                )
                .map_err(|e| format!("inflating a message: {e}"))?;
            let used = (self.d.total_in() - start) as usize;
            if used == self.compressed.len() && self.out.len() < self.out.capacity() {
                break;
            }
            if self.out.len() > expected + 1024 {
                return Err("message inflates past what was sent".into());
            }
            if self.out.len() == before && used == self.compressed.len() {
                break;
            }
            self.out.reserve(4096);
        }
        if self.reset_each {
            self.d.reset(false);
        }
        Ok(())
    }
}

fn make_payload(size: usize) -> Vec<u8> {
    // Not all-zero, not periodic in 4 (so a masking bug shows).
    (0..size)
        .map(|i| (i.wrapping_mul(31) % 251) as u8 ^ 0x5a)
        .collect()
}

/// A final, masked frame with `MASK`.
fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = Vec::with_capacity(len + 14);
    f.push(0x80 | opcode);
    if len < 126 {
        f.push(0x80 | len as u8);
    } else if len <= 0xffff {
        f.push(0x80 | 126);
        f.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        f.push(0x80 | 127);
        f.extend_from_slice(&(len as u64).to_be_bytes());
    }
    f.extend_from_slice(&MASK);
    f.extend(payload.iter().enumerate().map(|(i, &b)| b ^ MASK[i & 3]));
    f
}

fn print_human(r: &LoadgenReport) {
    let raw = if r.raw { " (raw echo)" } else { "" };
    match r.mode.as_str() {
        "idle" => {
            println!(
                "idle{raw}: {} of {} connections upgraded in {:.2} s, held {:.1} s",
                r.open, r.connections, r.ramp_s, r.seconds
            );
            if let (Some(a), Some(b)) = (r.server_rss_start_kb, r.server_rss_end_kb) {
                println!(
                    "  server RSS {:.1} MiB -> {:.1} MiB: {:.0} bytes per connection",
                    a as f64 / 1024.0,
                    b as f64 / 1024.0,
                    r.bytes_per_conn.unwrap_or(0.0)
                );
            }
        }
        mode => {
            let unit = match mode {
                "connect" => "connect-upgrade-echo-close cycles",
                "broadcast" => "deliveries",
                _ => "messages",
            };
            println!(
                "{mode}{raw}: {} connections ({} open, ramp {:.2} s), {} B payload, {:.1} s warm-up",
                r.connections, r.open, r.ramp_s, r.size, r.warmup_s
            );
            println!(
                "  {} {unit} in {:.2} s = {:.0}/s",
                r.messages, r.seconds, r.msgs_per_sec
            );
            if let (Some(p50), Some(p90), Some(p99), Some(p999), Some(max)) =
                (r.p50_us, r.p90_us, r.p99_us, r.p999_us, r.max_us)
            {
                println!(
                    "  latency us: p50 {p50:.1}  p90 {p90:.1}  p99 {p99:.1}  p99.9 {p999:.1}  max {max:.1}"
                );
            }
        }
    }
    if let (Some(cpu), Some(pct)) = (r.server_cpu_s, r.server_cpu_pct) {
        let per = r
            .msgs_per_server_cpu_s
            .map(|m| format!(", {m:.0} per server CPU-second"))
            .unwrap_or_default();
        println!("  server CPU {cpu:.2} s = {pct:.1}%{per}");
    }
    if let Some(rss) = r.server_rss_end_kb {
        println!("  server RSS {:.1} MiB", rss as f64 / 1024.0);
    }
    println!(
        "  loadgen CPU {:.2} s = {:.1}%",
        r.loadgen_cpu_s, r.loadgen_cpu_pct
    );
    if let (Some(busy), Some(irq), Some(server)) =
        (r.machine_busy_s, r.machine_irq_s, r.server_cpu_s)
    {
        if r.seconds > 0.0 {
            println!(
                "  rest of the machine: other processes {:.0}% of a core (interrupts, all: {:.0}%)",
                100.0 * (busy - server - r.loadgen_cpu_s) / r.seconds,
                100.0 * irq / r.seconds
            );
        }
    }
    println!("  payloads verified: {}", r.verified);
    if r.errors > 0 {
        println!("  ERRORS: {}", r.errors);
        for s in &r.error_samples {
            println!("    {s}");
        }
    } else {
        println!("  errors: 0");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A final frame as a server sends it (unmasked), RSV1 set when `compressed`.
    fn server_frame(opcode: u8, compressed: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = masked_frame(opcode, payload);
        // Unmask: drop the key and undo it on the payload.
        let at = f.len() - payload.len();
        f[1] &= 0x7f;
        f.drain(at - 4..at);
        f[at - 4..].copy_from_slice(payload);
        if compressed {
            f[0] |= RSV1;
        }
        f
    }

    fn numbered(seq: u64, size: usize) -> Vec<u8> {
        let mut p = make_payload(size);
        p[..8].copy_from_slice(&seq.to_be_bytes());
        p
    }

    #[test]
    fn a_compressed_delivery_inflates_to_its_number() {
        let expected = make_payload(1024);
        let mut buf = server_frame(OP_PING, false, b"hi");
        buf.extend(server_frame(
            OP_BINARY,
            true,
            &deflate_message(&numbered(41, 1024)).unwrap(),
        ));
        let mut inflater = Inflater::new(false);
        for cut in [0, 3, buf.len() - 1] {
            assert_eq!(inflater.message(&buf[..cut], 1024, None).unwrap(), None);
        }
        let (used, got) = inflater.message(&buf, 1024, None).unwrap().unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(published_seq(got, &expected, true), Ok(41));
    }

    #[test]
    fn from_a_server_that_resets_only_the_number_is_inflated_when_asked() {
        let expected = make_payload(1024);
        let frames: Vec<Vec<u8>> = [5, 6]
            .map(|seq| {
                server_frame(
                    OP_BINARY,
                    true,
                    &deflate_message(&numbered(seq, 1024)).unwrap(),
                )
            })
            .into();
        let mut inflater = Inflater::new(true);
        let (used, got) = inflater
            .message(&frames[0], 1024, Some(8))
            .unwrap()
            .unwrap();
        assert_eq!((used, got), (frames[0].len(), &5u64.to_be_bytes()[..]));
        // The next one inflates whole from a fresh context, as the server compressed it.
        let (_, got) = inflater
            .message(&frames[1], 1024, Some(8))
            .unwrap()
            .unwrap();
        assert_eq!(got, 6u64.to_be_bytes());
        let (_, got) = inflater.message(&frames[1], 1024, None).unwrap().unwrap();
        assert_eq!(published_seq(got, &expected, true), Ok(6));
        // Subscribers sharing a memo: the second inflates nothing, and a different message
        // is not taken for the first.
        let memo = Rc::<RefCell<PrefixMemo>>::default();
        let mut a = Inflater::with_memo(true, memo.clone());
        let mut b = Inflater::with_memo(true, memo.clone());
        let (_, got) = a.message(&frames[0], 1024, Some(8)).unwrap().unwrap();
        assert_eq!(got, 5u64.to_be_bytes());
        let (_, got) = b.message(&frames[0], 1024, Some(8)).unwrap().unwrap();
        assert_eq!(got, 5u64.to_be_bytes());
        assert_eq!(b.d.total_out(), 0, "taken from the memo");
        let (_, got) = b.message(&frames[1], 1024, Some(8)).unwrap().unwrap();
        assert_eq!(got, 6u64.to_be_bytes());
        // A server that keeps its context: always inflated whole.
        let mut keeping = Inflater::new(false);
        let (_, got) = keeping.message(&frames[0], 1024, Some(8)).unwrap().unwrap();
        assert_eq!(published_seq(got, &expected, true), Ok(5));
    }

    #[test]
    fn a_plain_delivery_on_a_deflate_connection_is_read_as_is() {
        let expected = make_payload(20);
        let buf = server_frame(OP_BINARY, false, &numbered(7, 20));
        let mut inflater = Inflater::new(true);
        let (used, got) = inflater.message(&buf, 20, Some(8)).unwrap().unwrap();
        assert_eq!(used, buf.len());
        assert_eq!(published_seq(got, &expected, true), Ok(7));
    }

    #[test]
    fn a_delivery_that_differs_from_what_was_published_is_an_error() {
        let expected = make_payload(20);
        let mut other = numbered(3, 20);
        other[19] ^= 1;
        assert_eq!(
            published_seq(&other, &expected, true),
            Err("delivered payload differs from what was published".to_string())
        );
        // Not checked byte for byte between verifications; the length always is.
        assert_eq!(published_seq(&other, &expected, false), Ok(3));
        assert_eq!(
            published_seq(&other[..19], &expected, false),
            Err("message carries 19 bytes, 20 were published".to_string())
        );
    }

    #[test]
    fn a_close_instead_of_a_delivery_is_an_error() {
        let buf = server_frame(OP_CLOSE, false, &1000u16.to_be_bytes());
        assert_eq!(
            Inflater::new(false).message(&buf, 20, None),
            Err("server sent close instead of a message".to_string())
        );
    }
}
