//! Benchmark runner: ringsocket (`rs-echo`) against its peers, interleaved, on two cores.
//!
//! For every scenario and round it starts each server in turn (order rotated per round) pinned
//! to `--server-cpu` with `--workers 1`, waits for its `listening on` line, runs `loadgen`
//! pinned to `--loadgen-cpu` with `--server-pid` (so the server's CPU time is sampled over
//! exactly the counted window), stops the server (SIGTERM, SIGKILL after 2 s), and finally
//! writes `latest.md`, `latest.svg` and `latest.json` with the medians over the rounds.
//!
//! ```text
//! bench                     # full: 6 servers x 18 scenarios x 3 rounds -> bench/results/
//! bench --quick             # 3 servers x 6 short scenarios, 1 round  -> a temp dir
//! bench --servers rs-echo,fws-echo --scenarios echo-100x20 --rounds 5 --out /tmp/b
//! bench --list
//! ```
//!
//! Exits non-zero when a server is missing, a run failed, or any run counted errors (the report
//! is still written).

use std::{
    fmt::Write as _,
    io::{BufRead, BufReader, Read},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context, Result};
use clap::Parser;
use ringsocket_bench::{sys, LoadgenReport};
use serde::{Deserialize, Serialize};

/// A server under test.
#[derive(Debug, Clone, Copy)]
struct ServerDef {
    name: &'static str,
    what: &'static str,
    kind: Kind,
    /// Echoes raw bytes (the masked frames come back verbatim).
    raw: bool,
    /// Has a `/fanout` route (every message to every other connection on it).
    fanout: bool,
    /// Takes `--deflate` (permessage-deflate).
    deflate: bool,
    /// Runs only when named in `--servers` (not in the full or quick lists).
    optional: bool,
}

impl ServerDef {
    /// Whether this server takes part in `scenario` (fan-out needs a `/fanout` route).
    fn serves(&self, scenario: &Scenario) -> bool {
        (scenario.mode != ScenarioMode::Broadcast || self.fanout)
            && (scenario.deflate.is_none() || self.deflate)
            // Only ringsocket has cross-process broadcast of its own.
            && (scenario.broker.is_none() || self.name == OURS)
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// `target/release/<name> --port P --workers 1`
    Bin,
    /// `node bench/node/<script> --port P`
    Node(&'static str),
}

const SERVERS: &[ServerDef] = &[
    ServerDef {
        name: "rs-echo",
        what: "ringsocket (monoio, io_uring)",
        kind: Kind::Bin,
        raw: false,
        fanout: true,
        deflate: true,
        optional: false,
    },
    ServerDef {
        name: "raw-echo",
        what: "raw TCP echo on monoio after a real 101 (the ceiling: no WebSocket work)",
        kind: Kind::Bin,
        raw: true,
        fanout: false,
        deflate: false,
        optional: false,
    },
    ServerDef {
        name: "uring-echo",
        what: "raw TCP echo written directly on io_uring with multishot recv, provided buffers \
               and fixed files: what the kernel allows",
        kind: Kind::Bin,
        raw: true,
        fanout: false,
        deflate: false,
        optional: true,
    },
    ServerDef {
        name: "fws-echo",
        what: "fastwebsockets (tokio current_thread)",
        kind: Kind::Bin,
        raw: false,
        fanout: false,
        deflate: false,
        optional: false,
    },
    ServerDef {
        name: "tungstenite-echo",
        what: "tokio-tungstenite",
        kind: Kind::Bin,
        raw: false,
        fanout: true,
        deflate: false,
        optional: false,
    },
    ServerDef {
        name: "node-ws",
        what: "Node ws",
        kind: Kind::Node("ws-echo.js"),
        raw: false,
        fanout: true,
        deflate: true,
        optional: false,
    },
    ServerDef {
        name: "node-fastify",
        what: "Node fastify + @fastify/websocket",
        kind: Kind::Node("fastify-echo.js"),
        raw: false,
        fanout: true,
        deflate: true,
        optional: false,
    },
];

const QUICK_SERVERS: &[&str] = &["rs-echo", "raw-echo", "fws-echo"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScenarioMode {
    Echo,
    Idle,
    Connect,
    Broadcast,
}

impl ScenarioMode {
    fn arg(self) -> &'static str {
        match self {
            ScenarioMode::Echo => "echo",
            ScenarioMode::Idle => "idle",
            ScenarioMode::Connect => "connect",
            ScenarioMode::Broadcast => "broadcast",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Scenario {
    id: &'static str,
    title: &'static str,
    mode: ScenarioMode,
    connections: usize,
    size: usize,
    /// Server workers (threads, each with its own runtime where the server has that shape).
    workers: usize,
    /// permessage-deflate: ringsocket's memory mode (`shared` or `dedicated`, passed as
    /// `rs-echo --deflate MODE`; Node servers get `--deflate`, ws's defaults); loadgen offers
    /// it as browsers do.
    deflate: Option<&'static str>,
    /// Idle: one echo per connection before the hold.
    prime: bool,
    /// Broadcast across two server processes through this broker (`redis` or `nats`): the
    /// publisher on one node, the subscribers on the other.
    broker: Option<&'static str>,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        id: "echo-100x20",
        title: "echo, 100 connections x 20 B",
        mode: ScenarioMode::Echo,
        connections: 100,
        size: 20,
        workers: 1,
        deflate: None,
        prime: false,
        broker: None,
    },
    Scenario {
        id: "echo-10x16k",
        title: "echo, 10 connections x 16 KiB",
        mode: ScenarioMode::Echo,
        connections: 10,
        size: 16 * 1024,
        workers: 1,
        deflate: None,
        prime: false,
        broker: None,
    },
    Scenario {
        id: "echo-500x16k",
        title: "echo, 500 connections x 16 KiB",
        mode: ScenarioMode::Echo,
        connections: 500,
        size: 16 * 1024,
        workers: 1,
        deflate: None,
        prime: false,
        broker: None,
    },
    Scenario {
        id: "echo-1000x1k",
        title: "echo, 1000 connections x 1 KiB",
        mode: ScenarioMode::Echo,
        connections: 1000,
        size: 1024,
        workers: 1,
        deflate: None,
        prime: false,
        broker: None,
    },
    Scenario {
        id: "idle-10k",
        title: "idle memory, 10,000 connections",
        mode: ScenarioMode::Idle,
        connections: 10_000,
        size: 0,
        workers: 1,
        deflate: None,
        prime: false,
        broker: None,
    },
    Scenario {
        id: "connect-50",
        title: "connect rate, 50 concurrent connect-upgrade-echo-close loops (20 B)",
        mode: ScenarioMode::Connect,
        connections: 50,
        size: 20,
        workers: 1,
        deflate: None,
        prime: false,
        broker: None,
    },
    Scenario {
        id: "idle-1k",
        title: "idle memory, 1,000 connections",
        mode: ScenarioMode::Idle,
        connections: 1_000,
        size: 0,
        workers: 1,
        deflate: None,
        prime: false,
        broker: None,
    },
    Scenario {
        id: "broadcast-1000x20",
        title: "broadcast, 1 publisher to 1000 subscribers x 20 B, 2 server workers",
        mode: ScenarioMode::Broadcast,
        connections: 1000,
        size: 20,
        workers: 2,
        deflate: None,
        prime: false,
        broker: None,
    },
    Scenario {
        id: "echo-10x16k-deflate",
        title: "echo with permessage-deflate, 10 connections x 16 KiB (compressible)",
        mode: ScenarioMode::Echo,
        connections: 10,
        size: 16 * 1024,
        workers: 1,
        deflate: Some("shared"),
        prime: false,
        broker: None,
    },
    Scenario {
        id: "echo-100x20-deflate",
        title: "echo with permessage-deflate, 100 connections x 20 B (sent compressed; echoes \
                are under the servers' 1 KiB threshold, so they come back plain)",
        mode: ScenarioMode::Echo,
        connections: 100,
        size: 20,
        workers: 1,
        deflate: Some("shared"),
        prime: false,
        broker: None,
    },
    Scenario {
        id: "echo-500x16k-deflate",
        title: "echo with permessage-deflate, 500 connections x 16 KiB (compressible)",
        mode: ScenarioMode::Echo,
        connections: 500,
        size: 16 * 1024,
        workers: 1,
        deflate: Some("shared"),
        prime: false,
        broker: None,
    },
    Scenario {
        id: "echo-1000x1k-deflate",
        title: "echo with permessage-deflate, 1000 connections x 1 KiB (compressible)",
        mode: ScenarioMode::Echo,
        connections: 1000,
        size: 1024,
        workers: 1,
        deflate: Some("shared"),
        prime: false,
        broker: None,
    },
    Scenario {
        id: "connect-50-deflate",
        title: "connect rate with permessage-deflate, 50 concurrent connect-upgrade-echo-close \
                loops (20 B)",
        mode: ScenarioMode::Connect,
        connections: 50,
        size: 20,
        workers: 1,
        deflate: Some("shared"),
        prime: false,
        broker: None,
    },
    Scenario {
        id: "broadcast-1000x20-deflate",
        title: "broadcast with permessage-deflate, 1 publisher to 1000 subscribers x 20 B \
                (published compressed; deliveries are under the 1 KiB threshold), 2 server \
                workers",
        mode: ScenarioMode::Broadcast,
        connections: 1000,
        size: 20,
        workers: 2,
        deflate: Some("shared"),
        prime: false,
        broker: None,
    },
    Scenario {
        id: "broadcast-1000x1k-deflate",
        title: "broadcast with permessage-deflate, 1 publisher to 1000 subscribers x 1 KiB \
                (compressible), 2 server workers",
        mode: ScenarioMode::Broadcast,
        connections: 1000,
        size: 1024,
        workers: 2,
        deflate: Some("shared"),
        prime: false,
        broker: None,
    },
    Scenario {
        id: "idle-10k-deflate",
        title: "memory with permessage-deflate (ringsocket: shared compressor), 10,000 \
                connections after one 1 KiB echo each",
        mode: ScenarioMode::Idle,
        connections: 10_000,
        size: 1024,
        workers: 1,
        deflate: Some("shared"),
        prime: true,
        broker: None,
    },
    Scenario {
        id: "idle-10k-deflate-dedicated",
        title: "memory with permessage-deflate (ringsocket: dedicated contexts), 10,000 \
                connections after one 1 KiB echo each",
        mode: ScenarioMode::Idle,
        connections: 10_000,
        size: 1024,
        workers: 1,
        deflate: Some("dedicated"),
        prime: true,
        broker: None,
    },
    Scenario {
        id: "idle-1k-deflate",
        title: "memory with permessage-deflate (ringsocket: shared compressor), 1,000 \
                connections after one 1 KiB echo each",
        mode: ScenarioMode::Idle,
        connections: 1_000,
        size: 1024,
        workers: 1,
        deflate: Some("shared"),
        prime: true,
        broker: None,
    },
    Scenario {
        id: "cluster-redis-1000x20",
        title: "cross-node broadcast through Redis: publisher on node A, 1000 subscribers on \
                node B x 20 B",
        mode: ScenarioMode::Broadcast,
        connections: 1000,
        size: 20,
        workers: 1,
        deflate: None,
        prime: false,
        broker: Some("redis"),
    },
    Scenario {
        id: "cluster-nats-1000x20",
        title: "cross-node broadcast through NATS: publisher on node A, 1000 subscribers on \
                node B x 20 B",
        mode: ScenarioMode::Broadcast,
        connections: 1000,
        size: 20,
        workers: 1,
        deflate: None,
        prime: false,
        broker: Some("nats"),
    },
];

const FULL_SCENARIOS: &[&str] = &[
    "echo-100x20",
    "echo-10x16k",
    "echo-500x16k",
    "echo-1000x1k",
    "idle-10k",
    "connect-50",
    "broadcast-1000x20",
    "echo-100x20-deflate",
    "echo-10x16k-deflate",
    "echo-500x16k-deflate",
    "echo-1000x1k-deflate",
    "connect-50-deflate",
    "broadcast-1000x20-deflate",
    "broadcast-1000x1k-deflate",
    "idle-10k-deflate",
    "idle-10k-deflate-dedicated",
    "cluster-redis-1000x20",
    "cluster-nats-1000x20",
];
const QUICK_SCENARIOS: &[&str] = &[
    "echo-100x20",
    "echo-10x16k",
    "idle-1k",
    "broadcast-1000x20",
    "cluster-redis-1000x20",
    "cluster-nats-1000x20",
];

/// The scenario ringsocket's ratios are computed against.
const OURS: &str = "rs-echo";
/// A process at or above this share of its core is "saturated".
const SATURATED_PCT: f64 = 90.0;
/// A run during which other processes used more than this share of a core is disturbed.
const DISTURBED_PCT: f64 = 25.0;
/// The machine counts as quiet below this share of a core busy.
const QUIET_PCT: f64 = 15.0;

#[derive(Debug, Parser)]
#[command(
    name = "bench",
    about = "Runs ringsocket's echo benchmark against its peers and writes the report"
)]
struct Args {
    /// Smoke run: 1 round, 1 s warm-up + 2 s counted, echo-100x20, echo-10x16k, idle-1k,
    /// broadcast-1000x20 and the two cluster scenarios against rs-echo, raw-echo and fws-echo
    /// (where they take part); writes to a temp dir unless --out is given.
    #[arg(long)]
    quick: bool,
    /// Rounds (every server once per round, order rotated); the report shows medians.
    #[arg(long)]
    rounds: Option<usize>,
    /// Warm-up seconds per run (not counted) [default: 1].
    #[arg(long)]
    warmup: Option<f64>,
    /// Counted seconds per run [default: 5, quick: 2].
    #[arg(long)]
    duration: Option<f64>,
    /// Idle scenarios: seconds to hold the connections [default: 3, quick: 1].
    #[arg(long)]
    hold: Option<f64>,
    /// Comma-separated servers to run (see --list).
    #[arg(long, value_delimiter = ',')]
    servers: Vec<String>,
    /// Comma-separated scenarios to run (see --list).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Directory for latest.md, latest.svg, latest.json [default: bench/results; quick: a
    /// fresh temp dir].
    #[arg(long)]
    out: Option<PathBuf>,
    /// CPU the server is pinned to.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// CPU the load generator (and this runner) is pinned to.
    #[arg(long, default_value_t = 1)]
    loadgen_cpu: usize,
    /// Where loadgen and the server binaries are [default: this binary's directory].
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Repository root (for bench/node) [default: where this was built from].
    #[arg(long)]
    root: Option<PathBuf>,
    /// Runs disturbed by other processes (> 25% of a core besides server and loadgen) are
    /// repeated up to this many times [default: 1, quick: 0].
    #[arg(long)]
    retries: Option<usize>,
    /// Before each run, wait up to this many seconds for the machine to be quiet (other
    /// processes < 15% of a core) [default: 10, quick: 1].
    #[arg(long)]
    quiet_wait: Option<f64>,
    /// Load generator driver: monoio's io_uring or epoll driver.
    #[arg(long, default_value = "uring")]
    loadgen_driver: String,
    /// List servers and scenarios and exit.
    #[arg(long)]
    list: bool,
    /// Run nothing: rebuild latest.md, latest.svg and latest.json from an earlier
    /// latest.json (into --out, default: that file's directory).
    #[arg(long, value_name = "LATEST_JSON")]
    rerender: Option<PathBuf>,
}

/// What `--rerender` reads back.
#[derive(Debug, Deserialize)]
struct Saved {
    machine: Machine,
    config: Config,
    runs: Vec<RunRecord>,
}

/// Resolved settings of this invocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Config {
    quick: bool,
    rounds: usize,
    warmup_s: f64,
    duration_s: f64,
    hold_s: f64,
    servers: Vec<String>,
    scenarios: Vec<String>,
    server_cpu: usize,
    loadgen_cpu: usize,
    retries: usize,
    quiet_wait_s: f64,
    loadgen_driver: String,
}

/// One server run of one scenario.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunRecord {
    scenario: String,
    server: String,
    round: usize,
    /// Position of this server within its round.
    slot: usize,
    /// Why the run produced no numbers (server did not start, loadgen failed, server died).
    failure: Option<String>,
    /// Server RSS right after its ready line, KiB.
    server_rss_ready_kb: Option<u64>,
    /// How the server ended: "SIGTERM", "SIGKILL after 2 s", or how it died.
    server_stop: String,
    wall_s: f64,
    /// Attempts made (a disturbed run is repeated).
    attempts: usize,
    /// Other processes' CPU during the counted window, in percent of one core.
    other_cpu_pct: Option<f64>,
    /// Other processes used more than 25% of a core during the counted window.
    disturbed: bool,
    loadgen: Option<LoadgenReport>,
}

impl RunRecord {
    fn has_errors(&self) -> bool {
        self.failure.is_some() || self.loadgen.as_ref().is_some_and(|r| r.errors > 0)
    }
}

/// Medians over the rounds of one (scenario, server).
#[derive(Debug, Clone, Default, Serialize)]
struct Summary {
    scenario: String,
    server: String,
    runs: usize,
    ok_runs: usize,
    /// Runs the medians are taken over (undisturbed ones, when there are any).
    median_of: usize,
    errors: u64,
    msgs_per_sec: Option<f64>,
    p50_us: Option<f64>,
    p90_us: Option<f64>,
    p99_us: Option<f64>,
    p999_us: Option<f64>,
    msgs_per_server_cpu_s: Option<f64>,
    server_cpu_pct: Option<f64>,
    loadgen_cpu_pct: Option<f64>,
    other_cpu_pct: Option<f64>,
    server_rss_kb: Option<f64>,
    server_rss_start_kb: Option<f64>,
    open: Option<f64>,
    bytes_per_conn: Option<f64>,
    /// rs-echo's msgs/s divided by this server's.
    ours_over_this_msgs: Option<f64>,
    /// rs-echo's msgs per server CPU-second divided by this server's.
    ours_over_this_per_cpu: Option<f64>,
    /// Idle: rs-echo's bytes per connection divided by this server's (below 1: ours is smaller).
    ours_over_this_bytes: Option<f64>,
    /// What limited the run: "server", "loadgen", "both", "neither".
    limited_by: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Machine {
    cpu_model: String,
    cpus: usize,
    kernel: String,
    rustc: String,
    node: Option<String>,
    git: Option<String>,
    date_utc: String,
    command: String,
}

#[derive(Debug, Serialize)]
struct Output<'a> {
    machine: &'a Machine,
    config: &'a Config,
    runs: &'a [RunRecord],
    summary: &'a [Summary],
}

fn main() {
    let args = Args::parse();
    match run(args) {
        Ok(0) => {}
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn run(args: Args) -> Result<i32> {
    if args.list {
        println!("servers:");
        for s in SERVERS {
            let optional = if s.optional {
                " (only when named in --servers)"
            } else {
                ""
            };
            println!("  {:<18} {}{optional}", s.name, s.what);
        }
        println!("scenarios:");
        for s in SCENARIOS {
            println!("  {:<18} {}", s.id, s.title);
        }
        println!("full default: {}", FULL_SCENARIOS.join(","));
        println!(
            "quick: {} against {}",
            QUICK_SCENARIOS.join(","),
            QUICK_SERVERS.join(",")
        );
        return Ok(0);
    }
    if let Some(path) = &args.rerender {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let saved: Saved =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let out_dir = match &args.out {
            Some(d) => d.clone(),
            None => path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
        };
        std::fs::create_dir_all(&out_dir)?;
        let servers = lookup(&saved.config.servers, SERVERS, |s| s.name)?;
        let scenarios = lookup(&saved.config.scenarios, SCENARIOS, |s| s.id)?;
        return write_report(
            &out_dir,
            &saved.machine,
            &saved.config,
            &scenarios,
            &servers,
            &saved.runs,
            None,
        );
    }
    let quick = args.quick;
    let config = Config {
        quick,
        rounds: args.rounds.unwrap_or(if quick { 1 } else { 3 }).max(1),
        warmup_s: args.warmup.unwrap_or(1.0),
        duration_s: args.duration.unwrap_or(if quick { 2.0 } else { 5.0 }),
        hold_s: args.hold.unwrap_or(if quick { 1.0 } else { 3.0 }),
        servers: select(
            &args.servers,
            if quick {
                QUICK_SERVERS.to_vec()
            } else {
                SERVERS
                    .iter()
                    .filter(|s| !s.optional)
                    .map(|s| s.name)
                    .collect()
            },
            &SERVERS.iter().map(|s| s.name).collect::<Vec<_>>(),
            "server",
        )?,
        scenarios: select(
            &args.scenarios,
            if quick {
                QUICK_SCENARIOS.to_vec()
            } else {
                FULL_SCENARIOS.to_vec()
            },
            &SCENARIOS.iter().map(|s| s.id).collect::<Vec<_>>(),
            "scenario",
        )?,
        server_cpu: args.server_cpu,
        loadgen_cpu: args.loadgen_cpu,
        retries: args.retries.unwrap_or(if quick { 0 } else { 1 }),
        quiet_wait_s: args.quiet_wait.unwrap_or(if quick { 1.0 } else { 10.0 }),
        loadgen_driver: args.loadgen_driver.clone(),
    };
    for (name, v) in [
        ("--warmup", config.warmup_s),
        ("--duration", config.duration_s),
        ("--hold", config.hold_s),
    ] {
        if !(v.is_finite() && v >= 0.0) {
            bail!("{name} must be a non-negative number of seconds");
        }
    }
    if config.duration_s <= 0.0 {
        bail!("--duration must be positive");
    }
    if !matches!(config.loadgen_driver.as_str(), "uring" | "epoll") {
        bail!("--loadgen-driver must be uring or epoll");
    }

    let bin_dir = match args.bin_dir {
        Some(d) => d,
        None => std::env::current_exe()
            .context("locating this binary")?
            .parent()
            .context("binary has no directory")?
            .to_path_buf(),
    };
    let root = args.root.unwrap_or_else(|| {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    });
    let servers: Vec<ServerDef> = config
        .servers
        .iter()
        .map(|n| *SERVERS.iter().find(|s| s.name == n).expect("validated"))
        .collect();
    let scenarios: Vec<Scenario> = config
        .scenarios
        .iter()
        .map(|n| *SCENARIOS.iter().find(|s| s.id == n).expect("validated"))
        .collect();

    // Everything must be there before anything runs: a missing server fails the whole run.
    let loadgen = bin_dir.join("loadgen");
    let mut missing = Vec::new();
    if !loadgen.is_file() {
        missing.push(format!(
            "{} (cargo build --release -p ringsocket-bench --bins)",
            loadgen.display()
        ));
    }
    let mut node_version = None;
    for s in &servers {
        match s.kind {
            Kind::Bin => {
                let p = bin_dir.join(s.name);
                if !p.is_file() {
                    missing.push(format!(
                        "{}: {} (cargo build --release -p ringsocket-bench --bins)",
                        s.name,
                        p.display()
                    ));
                }
            }
            Kind::Node(script) => {
                if node_version.is_none() {
                    node_version = command_output("node", &["--version"]);
                }
                let dir = root.join("bench/node");
                if node_version.is_none() {
                    missing.push(format!("{}: `node` is not on PATH", s.name));
                } else if !dir.join(script).is_file() {
                    missing.push(format!(
                        "{}: {} is missing",
                        s.name,
                        dir.join(script).display()
                    ));
                } else if !dir.join("node_modules").is_dir() {
                    missing.push(format!(
                        "{}: {} has no node_modules (run `npm ci` there; scripts/bench.sh does)",
                        s.name,
                        dir.display()
                    ));
                }
            }
        }
    }
    for sc in &scenarios {
        if let Some(kind) = sc.broker {
            let program = broker_program(kind);
            if command_output(program, &["--version"]).is_none() {
                missing.push(format!(
                    "{}: {program} (scripts/setup.sh installs it)",
                    sc.id
                ));
            }
        }
    }
    if !missing.is_empty() {
        bail!("cannot run, missing:\n  {}", missing.join("\n  "));
    }

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let max_cpu = config.server_cpu.max(config.loadgen_cpu);
    if max_cpu >= cpus {
        bail!("CPU {max_cpu} does not exist here ({cpus} CPUs): pass --server-cpu/--loadgen-cpu");
    }
    sys::raise_nofile_limit().context("raising RLIMIT_NOFILE")?;
    // The runner itself sleeps most of the time; keep whatever it does off the server's core.
    sys::pin_to_cpu(config.loadgen_cpu).context("pinning the runner")?;

    let out_dir = match args.out {
        Some(d) => d,
        None if quick => {
            let stamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            std::env::temp_dir().join(format!(
                "ringsocket-bench-quick-{stamp}-{}",
                std::process::id()
            ))
        }
        None => root.join("bench/results"),
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let machine = Machine {
        cpu_model: cpu_model(),
        cpus,
        kernel: kernel(),
        rustc: command_output("rustc", &["--version"]).unwrap_or_else(|| "unknown".into()),
        node: node_version,
        // BENCH_GIT: for runs from a snapshot of the tree that is not a git checkout.
        git: std::env::var("BENCH_GIT").ok().or_else(|| {
            command_output(
                "git",
                &[
                    "-C",
                    &root.to_string_lossy(),
                    "describe",
                    "--always",
                    "--dirty",
                ],
            )
        }),
        date_utc: utc_now(),
        command: std::env::var("BENCH_COMMAND").unwrap_or_else(|_| {
            std::env::args()
                .map(|a| shell_quote(&a))
                .collect::<Vec<_>>()
                .join(" ")
        }),
    };

    let runs_in = |sc: &Scenario| servers.iter().filter(|s| s.serves(sc)).count();
    let total: usize = scenarios.iter().map(|sc| runs_in(sc) * config.rounds).sum();
    eprintln!(
        "bench: {} scenarios x {} servers x {} rounds = {total} runs (warm-up {} s, counted {} s); server on CPU {}, loadgen on CPU {}",
        scenarios.len(),
        servers.len(),
        config.rounds,
        config.warmup_s,
        config.duration_s,
        config.server_cpu,
        config.loadgen_cpu
    );
    let started = Instant::now();
    let mut runs = Vec::with_capacity(total);
    for scenario in &scenarios {
        let servers: Vec<&ServerDef> = servers.iter().filter(|s| s.serves(scenario)).collect();
        for round in 0..config.rounds {
            for slot in 0..servers.len() {
                let server = servers[(slot + round) % servers.len()];
                let mut attempt = 0;
                let record = loop {
                    attempt += 1;
                    let quiet = wait_for_quiet(config.quiet_wait_s);
                    let mut record = run_one(
                        &config, scenario, server, round, slot, &bin_dir, &root, &loadgen,
                    );
                    record.attempts = attempt;
                    if !record.disturbed || attempt > config.retries {
                        break record;
                    }
                    eprintln!(
                        "        {} r{} {}: disturbed by other processes ({:.0}% of a core{}), repeating",
                        scenario.id,
                        round + 1,
                        server.name,
                        record.other_cpu_pct.unwrap_or(0.0),
                        if quiet { "" } else { "; machine was not quiet before" }
                    );
                };
                eprintln!(
                    "[{:>3}/{total}] {:>6.0} s  {}",
                    runs.len() + 1,
                    started.elapsed().as_secs_f64(),
                    describe(&record)
                );
                runs.push(record);
            }
        }
    }

    write_report(
        &out_dir,
        &machine,
        &config,
        &scenarios,
        &servers,
        &runs,
        Some(started.elapsed().as_secs_f64()),
    )
}

fn lookup<T: Copy>(names: &[String], all: &[T], name: impl Fn(&T) -> &str) -> Result<Vec<T>> {
    names
        .iter()
        .map(|n| {
            all.iter()
                .find(|t| name(t) == n)
                .copied()
                .with_context(|| format!("unknown name {n:?}"))
        })
        .collect()
}

/// Writes latest.json, latest.md and latest.svg; prints the summary; says the exit code.
fn write_report(
    out_dir: &Path,
    machine: &Machine,
    config: &Config,
    scenarios: &[Scenario],
    servers: &[ServerDef],
    runs: &[RunRecord],
    elapsed_s: Option<f64>,
) -> Result<i32> {
    let summary = summarize(runs, scenarios, servers);
    let json = serde_json::to_string_pretty(&Output {
        machine,
        config,
        runs,
        summary: &summary,
    })?;
    std::fs::write(out_dir.join("latest.json"), json + "\n")?;
    let md = markdown(machine, config, scenarios, servers, runs, &summary);
    std::fs::write(out_dir.join("latest.md"), &md)?;
    chart(&out_dir.join("latest.svg"), scenarios, servers, &summary)
        .context("drawing latest.svg")?;

    let bad: Vec<&RunRecord> = runs.iter().filter(|r| r.has_errors()).collect();
    eprintln!(
        "bench: {} runs{}; report: {}",
        runs.len(),
        elapsed_s.map_or(String::new(), |s| format!(" in {s:.0} s")),
        out_dir.join("latest.md").display()
    );
    print_summary(scenarios, servers, &summary);
    if bad.is_empty() {
        Ok(0)
    } else {
        eprintln!(
            "bench: FAILED: {} of {} runs had errors:",
            bad.len(),
            runs.len()
        );
        for r in bad {
            eprintln!("  {}", describe(r));
        }
        Ok(1)
    }
}

/// Validates a comma-separated filter against the known names, keeping `all`'s order.
fn select(
    filter: &[String],
    default: Vec<&'static str>,
    known: &[&'static str],
    what: &str,
) -> Result<Vec<String>> {
    let filter: Vec<&str> = filter
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    if filter.is_empty() {
        return Ok(default.into_iter().map(String::from).collect());
    }
    for f in &filter {
        if !known.contains(f) {
            bail!("unknown {what} {f:?} (known: {})", known.join(", "));
        }
    }
    Ok(known
        .iter()
        .filter(|k| filter.contains(k))
        .map(|k| k.to_string())
        .collect())
}

/// A server process and the tail of what it printed.
struct Running {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn log_tail(&self) -> String {
        let log = self.log.lock().expect("log lock");
        if log.is_empty() {
            return "(it printed nothing)".into();
        }
        let from = log.len().saturating_sub(12);
        log[from..].join("\n    ")
    }

    /// SIGTERM, then SIGKILL after 2 s. Says how it ended.
    fn stop(&mut self) -> String {
        if let Ok(Some(status)) = self.child.try_wait() {
            return format!("had already exited ({status})");
        }
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return "SIGTERM".into();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        "SIGKILL after 2 s".into()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn start_server(
    def: &ServerDef,
    port: u16,
    cpu: usize,
    workers: usize,
    deflate: Option<&str>,
    broker: Option<&Broker>,
    bin_dir: &Path,
    root: &Path,
) -> Result<Running> {
    let port = port.to_string();
    let mut cmd = match def.kind {
        Kind::Bin => {
            let mut c = Command::new(bin_dir.join(def.name));
            c.args(["--port", &port, "--workers", &workers.to_string()]);
            if let Some(mode) = deflate {
                c.args(["--deflate", mode]);
            }
            if let Some(broker) = broker {
                c.args([format!("--{}", broker.kind), broker.url.clone()]);
            }
            c.current_dir(root);
            c
        }
        Kind::Node(script) => {
            let dir = root.join("bench/node");
            let mut c = Command::new("node");
            c.arg(dir.join(script)).args(["--port", &port]);
            if deflate.is_some() {
                c.arg("--deflate");
            }
            c.current_dir(dir);
            c
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "warn")
        .env("NODE_ENV", "production")
        // The Rust peers' allocator (mimalloc 3) asks for transparent huge pages where the
        // kernel's THP mode is `madvise`: RSS then grows by whole 2 MiB pages however little of
        // each is used (rs-echo: about 700 B more per idle connection at 10,000), which
        // measures the page size rather than the server. Off for every peer alike (it moved neither
        // msgs/s nor per-CPU figures beyond noise); Node ignores it.
        .env("MIMALLOC_ALLOW_THP", "0");
    // SAFETY: pin_to_cpu only makes a syscall (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || sys::pin_to_cpu(cpu));
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", def.name))?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let (ready_tx, ready_rx) = mpsc::channel();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let log = log.clone();
        let ready_tx = ready_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if line.contains("listening on") {
                    let _ = ready_tx.send(());
                }
                let mut log = log.lock().expect("log lock");
                if log.len() >= 200 {
                    log.remove(0);
                }
                log.push(line);
            }
        });
    }
    let mut running = Running { child, log };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match ready_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(()) => return Ok(running),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        if let Ok(Some(status)) = running.child.try_wait() {
            bail!(
                "{} exited ({status}) before printing `listening on`:\n    {}",
                def.name,
                running.log_tail()
            );
        }
        if Instant::now() > deadline {
            let tail = running.log_tail();
            running.stop();
            bail!(
                "{} printed no `listening on` line within 20 s:\n    {tail}",
                def.name
            );
        }
    }
}

/// Other processes' CPU over the counted window, in percent of one core.
fn other_cpu_pct(r: &LoadgenReport) -> Option<f64> {
    let busy = r.machine_busy_s?;
    let server = r.server_cpu_s?;
    (r.seconds > 0.0).then(|| 100.0 * (busy - server - r.loadgen_cpu_s) / r.seconds)
}

/// Waits up to `max_s` seconds until the whole machine is quiet (below `QUIET_PCT` of a core
/// over half a second). Returns whether it got quiet.
fn wait_for_quiet(max_s: f64) -> bool {
    let deadline = Instant::now() + Duration::from_secs_f64(max_s);
    loop {
        let Ok(a) = sys::machine_times() else {
            return true;
        };
        let t = Instant::now();
        std::thread::sleep(Duration::from_millis(500));
        let Ok(b) = sys::machine_times() else {
            return true;
        };
        if 100.0 * (b.busy - a.busy) / t.elapsed().as_secs_f64() < QUIET_PCT {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(l.local_addr()?.port())
}

#[allow(clippy::too_many_arguments)]
fn run_one(
    config: &Config,
    scenario: &Scenario,
    server: &ServerDef,
    round: usize,
    slot: usize,
    bin_dir: &Path,
    root: &Path,
    loadgen: &Path,
) -> RunRecord {
    if scenario.broker.is_some() {
        return run_cluster_one(
            config, scenario, server, round, slot, bin_dir, root, loadgen,
        );
    }
    let t0 = Instant::now();
    let mut record = RunRecord {
        scenario: scenario.id.into(),
        server: server.name.into(),
        round: round + 1,
        slot: slot + 1,
        failure: None,
        server_rss_ready_kb: None,
        server_stop: String::new(),
        wall_s: 0.0,
        attempts: 1,
        other_cpu_pct: None,
        disturbed: false,
        loadgen: None,
    };
    let started = free_port().and_then(|port| {
        start_server(
            server,
            port,
            config.server_cpu,
            scenario.workers,
            scenario.deflate,
            None,
            bin_dir,
            root,
        )
        .map(|r| (port, r))
    });
    let (port, mut running) = match started {
        Ok(x) => x,
        Err(e) => {
            record.failure = Some(format!("{e:#}"));
            record.server_stop = "never started".into();
            record.wall_s = t0.elapsed().as_secs_f64();
            return record;
        }
    };
    let pid = running.child.id();
    record.server_rss_ready_kb = sys::process_rss_kb(pid).ok();

    match run_loadgen(config, scenario, server, port, &[pid], None, loadgen) {
        Ok(report) => {
            record.other_cpu_pct = other_cpu_pct(&report);
            // Memory does not depend on CPU noise: idle runs are never repeated.
            record.disturbed = scenario.mode != ScenarioMode::Idle
                && record.other_cpu_pct.is_some_and(|v| v > DISTURBED_PCT);
            record.loadgen = Some(report);
        }
        Err(e) => record.failure = Some(format!("{e:#}")),
    }
    if let Ok(Some(status)) = running.child.try_wait() {
        let msg = format!(
            "{} died during the run ({status}):\n    {}",
            server.name,
            running.log_tail()
        );
        record.failure = Some(match record.failure.take() {
            Some(f) => format!("{msg}\n  {f}"),
            None => msg,
        });
    }
    record.server_stop = running.stop();
    record.wall_s = t0.elapsed().as_secs_f64();
    record
}

#[allow(clippy::too_many_arguments)]
/// A broker process of a cluster scenario.
struct Broker {
    /// `redis` or `nats`: also the flag that points a node at it.
    kind: &'static str,
    url: String,
    child: Child,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The broker's program, as scripts/setup.sh installs it.
fn broker_program(kind: &str) -> &'static str {
    if kind == "redis" {
        "redis-server"
    } else {
        "nats-server"
    }
}

/// Starts `redis-server` or `nats-server` on a free loopback port, pinned to `cpu`, and waits
/// until it accepts connections.
fn start_broker(kind: &'static str, cpu: usize) -> Result<Broker> {
    let port = free_port()?;
    let mut cmd = Command::new(broker_program(kind));
    let url = if kind == "redis" {
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"]);
        format!("redis://127.0.0.1:{port}/")
    } else {
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        format!("nats://127.0.0.1:{port}")
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: pin_to_cpu only makes a syscall (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || sys::pin_to_cpu(cpu));
    }
    let child = cmd.spawn().with_context(|| {
        format!(
            "starting {} (scripts/setup.sh installs it)",
            broker_program(kind)
        )
    })?;
    let mut broker = Broker { kind, url, child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = broker.child.try_wait() {
            bail!("{} exited at start ({status})", broker_program(kind));
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not accept connections within 10 s",
                broker_program(kind)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(broker)
}

/// A cluster scenario: a broker and two nodes of `server`, all on the server's CPU; the
/// publisher on node A, the subscribers on node B; CPU and RSS of all three counted.
#[allow(clippy::too_many_arguments)]
fn run_cluster_one(
    config: &Config,
    scenario: &Scenario,
    server: &ServerDef,
    round: usize,
    slot: usize,
    bin_dir: &Path,
    root: &Path,
    loadgen: &Path,
) -> RunRecord {
    let t0 = Instant::now();
    let mut record = RunRecord {
        scenario: scenario.id.into(),
        server: server.name.into(),
        round: round + 1,
        slot: slot + 1,
        failure: None,
        server_rss_ready_kb: None,
        server_stop: String::new(),
        wall_s: 0.0,
        attempts: 1,
        other_cpu_pct: None,
        disturbed: false,
        loadgen: None,
    };
    let kind = scenario.broker.expect("a cluster scenario");
    let started = (|| {
        let broker = start_broker(kind, config.server_cpu)?;
        let mut nodes = Vec::with_capacity(2);
        for _ in 0..2 {
            let port = free_port()?;
            let node = start_server(
                server,
                port,
                config.server_cpu,
                scenario.workers,
                scenario.deflate,
                Some(&broker),
                bin_dir,
                root,
            )?;
            nodes.push((port, node));
        }
        Ok::<_, anyhow::Error>((broker, nodes))
    })();
    let (broker, mut nodes) = match started {
        Ok(x) => x,
        Err(e) => {
            record.failure = Some(format!("{e:#}"));
            record.server_stop = "never started".into();
            record.wall_s = t0.elapsed().as_secs_f64();
            return record;
        }
    };
    let pids = [
        nodes[0].1.child.id(),
        nodes[1].1.child.id(),
        broker.child.id(),
    ];
    record.server_rss_ready_kb = pids.iter().map(|&pid| sys::process_rss_kb(pid).ok()).sum();
    let (a, b) = (nodes[0].0, nodes[1].0);
    match run_loadgen(config, scenario, server, a, &pids, Some(b), loadgen) {
        Ok(report) => {
            record.other_cpu_pct = other_cpu_pct(&report);
            record.disturbed = record.other_cpu_pct.is_some_and(|v| v > DISTURBED_PCT);
            record.loadgen = Some(report);
        }
        Err(e) => record.failure = Some(format!("{e:#}")),
    }
    for (name, (_, node)) in ["node A", "node B"].iter().zip(&mut nodes) {
        if let Ok(Some(status)) = node.child.try_wait() {
            let msg = format!(
                "{name} died during the run ({status}):\n    {}",
                node.log_tail()
            );
            record.failure = Some(match record.failure.take() {
                Some(f) => format!("{msg}\n  {f}"),
                None => msg,
            });
        }
    }
    record.server_stop = nodes
        .iter_mut()
        .map(|(_, node)| node.stop())
        .collect::<Vec<_>>()
        .join(", ");
    drop(broker);
    record.wall_s = t0.elapsed().as_secs_f64();
    record
}

fn run_loadgen(
    config: &Config,
    scenario: &Scenario,
    server: &ServerDef,
    port: u16,
    pids: &[u32],
    sub_port: Option<u16>,
    loadgen: &Path,
) -> Result<LoadgenReport> {
    let mut cmd = Command::new(loadgen);
    cmd.args(["--mode", scenario.mode.arg()])
        .args(["--port", &port.to_string()])
        .args(["--connections", &scenario.connections.to_string()])
        .args(["--size", &scenario.size.to_string()])
        .args(["--warmup", &config.warmup_s.to_string()])
        .args(["--duration", &config.duration_s.to_string()])
        .args(["--hold", &config.hold_s.to_string()])
        .args(["--cpu", &config.loadgen_cpu.to_string()])
        .args([
            "--server-pid",
            &pids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
        ])
        .args(["--driver", &config.loadgen_driver])
        .args(["--json", "--no-progress"]);
    if server.raw {
        cmd.arg("--raw");
    }
    if scenario.mode == ScenarioMode::Broadcast {
        cmd.args(["--path", "/fanout"]);
    }
    if scenario.deflate.is_some() {
        cmd.arg("--deflate");
    }
    if let Some(port) = sub_port {
        cmd.args(["--sub-port", &port.to_string()]);
    }
    if scenario.prime {
        cmd.arg("--prime");
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting loadgen")?;
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    // loadgen bounds itself (ramp timeout + watchdog); this is the bound on that bound.
    let limit =
        Duration::from_secs_f64(config.warmup_s + config.duration_s + config.hold_s + 120.0);
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let Some(status) = status else {
        bail!(
            "loadgen did not finish within {:.0} s: {}",
            limit.as_secs_f64(),
            stderr.trim()
        );
    };
    // Exit 0: clean; 2: a report with errors > 0 (still a report); anything else: failure.
    if matches!(status.code(), Some(0) | Some(2)) {
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'))
            .context("loadgen printed no JSON")?;
        let report: LoadgenReport = serde_json::from_str(line).context("parsing loadgen's JSON")?;
        Ok(report)
    } else {
        bail!("loadgen failed ({status}): {}", stderr.trim())
    }
}

fn describe(r: &RunRecord) -> String {
    let head = format!("{} r{} {:<16}", r.scenario, r.round, r.server);
    if let Some(f) = &r.failure {
        return format!("{head} FAILED: {f}");
    }
    let Some(l) = &r.loadgen else {
        return format!("{head} no report");
    };
    let errors = if l.errors > 0 {
        format!("  ERRORS {}: {}", l.errors, l.error_samples.join("; "))
    } else {
        String::new()
    };
    let server_cpu = l.server_cpu_pct.map_or("?".into(), |v| format!("{v:.0}%"));
    let other = r
        .other_cpu_pct
        .map_or(String::new(), |v| format!("  other {v:.0}%"));
    if l.mode == "idle" {
        format!(
            "{head} {} open, {:.0} B/conn, server RSS {} -> {} KiB{errors}",
            l.open,
            l.bytes_per_conn.unwrap_or(f64::NAN),
            l.server_rss_start_kb.unwrap_or(0),
            l.server_rss_end_kb.unwrap_or(0),
        )
    } else {
        format!(
            "{head} {:>9.0}/s  {:>9}/server-CPU-s  p99 {:>8.0} us  server CPU {server_cpu}  loadgen CPU {:.0}%{other}{errors}",
            l.msgs_per_sec,
            l.msgs_per_server_cpu_s.map_or("?".into(), |v| format!("{v:.0}")),
            l.p99_us.unwrap_or(f64::NAN),
            l.loadgen_cpu_pct,
        )
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn summarize(runs: &[RunRecord], scenarios: &[Scenario], servers: &[ServerDef]) -> Vec<Summary> {
    let mut out = Vec::new();
    for sc in scenarios {
        let mut rows: Vec<Summary> = servers
            .iter()
            .filter(|sv| sv.serves(sc))
            .map(|sv| {
                let mine: Vec<&RunRecord> = runs
                    .iter()
                    .filter(|r| r.scenario == sc.id && r.server == sv.name)
                    .collect();
                let all: Vec<&LoadgenReport> =
                    mine.iter().filter_map(|r| r.loadgen.as_ref()).collect();
                // Runs disturbed by other processes count only when no undisturbed one exists.
                let calm: Vec<&LoadgenReport> = mine
                    .iter()
                    .filter(|r| !r.disturbed || sc.mode == ScenarioMode::Idle)
                    .filter_map(|r| r.loadgen.as_ref())
                    .collect();
                let reports = if calm.is_empty() { &all } else { &calm };
                let med = |f: &dyn Fn(&LoadgenReport) -> Option<f64>| {
                    median(reports.iter().filter_map(|r| f(r)).collect())
                };
                let mut s = Summary {
                    scenario: sc.id.into(),
                    server: sv.name.into(),
                    runs: mine.len(),
                    median_of: reports.len(),
                    ok_runs: mine.iter().filter(|r| !r.has_errors()).count(),
                    errors: all.iter().map(|r| r.errors).sum::<u64>()
                        + mine.iter().filter(|r| r.failure.is_some()).count() as u64,
                    server_cpu_pct: med(&|r| r.server_cpu_pct),
                    loadgen_cpu_pct: med(&|r| Some(r.loadgen_cpu_pct)),
                    other_cpu_pct: med(&|r| other_cpu_pct(r)),
                    server_rss_kb: med(&|r| r.server_rss_end_kb.map(|v| v as f64)),
                    server_rss_start_kb: med(&|r| r.server_rss_start_kb.map(|v| v as f64)),
                    open: med(&|r| Some(r.open as f64)),
                    ..Default::default()
                };
                if sc.mode == ScenarioMode::Idle {
                    s.bytes_per_conn = med(&|r| r.bytes_per_conn);
                } else {
                    s.msgs_per_sec = med(&|r| Some(r.msgs_per_sec));
                    s.p50_us = med(&|r| r.p50_us);
                    s.p90_us = med(&|r| r.p90_us);
                    s.p99_us = med(&|r| r.p99_us);
                    s.p999_us = med(&|r| r.p999_us);
                    s.msgs_per_server_cpu_s = med(&|r| r.msgs_per_server_cpu_s);
                    if let (Some(server), Some(lg)) = (s.server_cpu_pct, s.loadgen_cpu_pct) {
                        s.limited_by = Some(
                            match (server >= SATURATED_PCT, lg >= SATURATED_PCT) {
                                (true, true) => "both",
                                (true, false) => "server",
                                (false, true) => "loadgen",
                                (false, false) => "neither",
                            }
                            .into(),
                        );
                    }
                }
                s
            })
            .collect();
        if let Some(ours) = rows.iter().find(|r| r.server == OURS).cloned() {
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            };
            for r in &mut rows {
                r.ours_over_this_msgs = ratio(ours.msgs_per_sec, r.msgs_per_sec);
                r.ours_over_this_per_cpu =
                    ratio(ours.msgs_per_server_cpu_s, r.msgs_per_server_cpu_s);
                r.ours_over_this_bytes = ratio(ours.bytes_per_conn, r.bytes_per_conn);
            }
        }
        out.extend(rows);
    }
    out
}

/// The servers that do no WebSocket work: what they reach bounds what any WebSocket server can.
const CEILINGS: &[&str] = &["raw-echo", "uring-echo"];

/// The ceiling table: per echo scenario, the best msgs per server CPU-second of the servers
/// that do no WebSocket work, divided by each WebSocket peer's, next to ringsocket's own ratio
/// to that peer and its share of the ceiling. A target ratio above the ceiling's cannot be
/// reached on this machine by any WebSocket server.
fn write_ceiling(
    w: &mut String,
    scenarios: &[Scenario],
    servers: &[ServerDef],
    summary: &[Summary],
) {
    let peers: Vec<&ServerDef> = servers
        .iter()
        .filter(|s| s.name != OURS && !CEILINGS.contains(&s.name))
        .collect();
    let per_cpu = |scenario: &str, server: &str| {
        find(summary, scenario, server).and_then(|s| s.msgs_per_server_cpu_s)
    };
    let rows: Vec<(&Scenario, f64)> = scenarios
        .iter()
        .filter(|sc| sc.mode == ScenarioMode::Echo)
        .filter_map(|sc| {
            let best = CEILINGS
                .iter()
                .filter_map(|name| per_cpu(sc.id, name))
                .reduce(f64::max)?;
            Some((sc, best))
        })
        .collect();
    if rows.is_empty() || peers.is_empty() {
        return;
    }
    let _ = writeln!(
        w,
        "## The ceiling\n\nThe best msgs per server CPU-second of the servers that do no \
         WebSocket work ({}) ÷ each peer's: no WebSocket server can beat a peer by more than \
         this on this machine. In parentheses: `rs-echo` ÷ the peer. Last column: `rs-echo`'s \
         share of the ceiling.\n",
        CEILINGS
            .iter()
            .map(|name| format!("`{name}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = write!(w, "| scenario |");
    for p in &peers {
        let _ = write!(w, " {} |", p.name);
    }
    let _ = write!(w, " rs-echo ÷ ceiling |\n|---|");
    for _ in &peers {
        let _ = write!(w, "---|");
    }
    let _ = writeln!(w, "---|");
    for (sc, best) in rows {
        let ours = per_cpu(sc.id, OURS);
        let _ = write!(w, "| {} |", sc.id);
        for p in &peers {
            let cell = match per_cpu(sc.id, p.name) {
                Some(theirs) if theirs > 0.0 => format!(
                    "{:.2}× ({})",
                    best / theirs,
                    opt(ours.map(|o| o / theirs), |v| format!("{v:.2}×"))
                ),
                _ => "–".into(),
            };
            let _ = write!(w, " {cell} |");
        }
        let _ = writeln!(
            w,
            " {} |",
            opt(ours.map(|o| o / best), |v| format!("{:.0}%", v * 100.0))
        );
    }
    let _ = writeln!(w);
}

fn find<'a>(summary: &'a [Summary], scenario: &str, server: &str) -> Option<&'a Summary> {
    summary
        .iter()
        .find(|s| s.scenario == scenario && s.server == server)
}

/// 1234567.8 -> "1,234,568"
fn thousands(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    let first = match digits.len() % 3 {
        0 => 3,
        r => r,
    };
    for (i, c) in digits.chars().enumerate() {
        if i >= first && (i - first) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "–".into(), f)
}

fn server_label(s: &ServerDef) -> String {
    if s.name == OURS {
        format!("**{}**", s.name)
    } else {
        s.name.to_string()
    }
}

fn markdown(
    m: &Machine,
    c: &Config,
    scenarios: &[Scenario],
    servers: &[ServerDef],
    runs: &[RunRecord],
    summary: &[Summary],
) -> String {
    let mut md = String::new();
    let w = &mut md;
    let _ = writeln!(
        w,
        "# ringsocket benchmark{}\n",
        if c.quick { " (quick)" } else { "" }
    );
    let _ = writeln!(
        w,
        "Echo servers driven by `loadgen`, a closed-loop WebSocket client after uWebSockets' \
         `load_test` (every connection keeps exactly one masked binary message in flight), on one \
         io_uring thread. Server pinned to CPU {} with `--workers 1` unless the scenario says \
         otherwise (Node: the node process), \
         loadgen pinned to CPU {}; servers interleaved run by run (order rotated each round); \
         {} round(s), {} s warm-up + {} s counted per run; **medians** over the rounds. Loadgen \
         driver: monoio {}. Server CPU time (utime + stime of every thread, /proc/PID/stat) is sampled at the exact start and \
         end of the counted window. The Rust peers allocate with mimalloc, run with \
         `MIMALLOC_ALLOW_THP=0` (no transparent huge pages: see bench/README.md).\n",
        c.server_cpu,
        c.loadgen_cpu,
        c.rounds,
        c.warmup_s,
        c.duration_s,
        c.loadgen_driver
    );
    let _ = writeln!(w, "## Machine\n");
    let _ = writeln!(w, "- CPU: {} ({} logical CPUs)", m.cpu_model, m.cpus);
    let _ = writeln!(w, "- Kernel: {}", m.kernel);
    let _ = writeln!(w, "- {}", m.rustc);
    if let Some(node) = &m.node {
        let _ = writeln!(w, "- Node {node}");
    }
    if let Some(git) = &m.git {
        let _ = writeln!(w, "- ringsocket checkout: `{git}`");
    }
    let _ = writeln!(w, "- Date: {}", m.date_utc);
    let _ = writeln!(w, "- Command: `{}`\n", m.command);
    let _ = writeln!(w, "Servers:\n");
    for s in servers {
        let _ = writeln!(w, "- `{}`: {}", s.name, s.what);
    }
    let _ = writeln!(w);

    // Ratios at a glance.
    let peers: Vec<&ServerDef> = servers.iter().filter(|s| s.name != OURS).collect();
    if servers.iter().any(|s| s.name == OURS) && !peers.is_empty() {
        let _ = writeln!(
            w,
            "## ringsocket vs each peer\n\nmsgs per server CPU-second of `rs-echo` ÷ the peer's \
             (msgs/s ÷ in parentheses); idle: bytes per connection of `rs-echo` ÷ the peer's \
             (below 1 = ringsocket uses less).\n"
        );
        let _ = write!(w, "| scenario |");
        for p in &peers {
            let _ = write!(w, " {} |", p.name);
        }
        let _ = write!(w, "\n|---|");
        for _ in &peers {
            let _ = write!(w, "---|");
        }
        let _ = writeln!(w);
        for sc in scenarios {
            let _ = write!(w, "| {} |", sc.id);
            for p in &peers {
                let cell = find(summary, sc.id, p.name).map_or("–".into(), |s| {
                    if sc.mode == ScenarioMode::Idle {
                        opt(s.ours_over_this_bytes, |v| format!("{v:.2}×"))
                    } else {
                        format!(
                            "{} ({})",
                            opt(s.ours_over_this_per_cpu, |v| format!("{v:.2}×")),
                            opt(s.ours_over_this_msgs, |v| format!("{v:.2}×"))
                        )
                    }
                });
                let _ = write!(w, " {cell} |");
            }
            let _ = writeln!(w);
        }
        let _ = writeln!(w);
        write_ceiling(w, scenarios, servers, summary);
    }

    for sc in scenarios {
        let _ = writeln!(w, "## {} — {}\n", sc.id, sc.title);
        match sc.mode {
            ScenarioMode::Idle => {
                let _ = writeln!(
                    w,
                    "Server RSS growth per connection = (RSS with the connections open and idle \
                     − RSS before the first one) ÷ connections, after a {} s hold.\n",
                    c.hold_s
                );
                let _ = writeln!(
                    w,
                    "| server | open | RSS before (MiB) | RSS idle (MiB) | bytes / connection | rs-echo ÷ this | errors |\n|---|---|---|---|---|---|---|"
                );
                for sv in servers {
                    let Some(s) = find(summary, sc.id, sv.name) else {
                        continue;
                    };
                    let _ = writeln!(
                        w,
                        "| {} | {} | {} | {} | {} | {} | {} |",
                        server_label(sv),
                        opt(s.open, thousands),
                        opt(s.server_rss_start_kb, |v| format!("{:.1}", v / 1024.0)),
                        opt(s.server_rss_kb, |v| format!("{:.1}", v / 1024.0)),
                        opt(s.bytes_per_conn, thousands),
                        opt(s.ours_over_this_bytes, |v| format!("{v:.2}")),
                        errors_cell(s),
                    );
                }
            }
            mode => {
                let unit = match mode {
                    ScenarioMode::Connect => "cycles",
                    ScenarioMode::Broadcast => "deliveries",
                    _ => "msgs",
                };
                if let Some(broker) = sc.broker {
                    let _ = writeln!(
                        w,
                        "Two `rs-echo` processes joined through a real `{}` (started for the run \
                         on a loopback port), {} worker each; the publisher on node A's \
                         `/fanout`, {} subscribers on node B's: every message crosses the broker \
                         once and node B fans it out. Same closed loop as the broadcast scenario \
                         (16 messages of {} B in flight, each subscriber checks exactly once and \
                         in order). Server CPU, RSS: both nodes and the broker, all pinned to the \
                         server's CPU. Only ringsocket has cross-process broadcast of its own.\n",
                        broker_program(broker),
                        sc.workers,
                        sc.connections,
                        sc.size
                    );
                } else if mode == ScenarioMode::Broadcast {
                    let _ = writeln!(
                        w,
                        "One publisher and {} subscribers on `/fanout`, which sends every message \
                         to every other connection on it (ringsocket: a topic and `ws.publish`; \
                         ws and fastify: their client set; tokio-tungstenite: a \
                         `tokio::sync::broadcast` channel). The publisher keeps 16 messages of {} \
                         B in flight; every subscriber checks it gets each one exactly once and \
                         in order. Counted: deliveries; latency: publish to the last \
                         subscriber's receipt. The server runs {} workers (Node: one process), \
                         all on its one CPU, so cross-core delivery is part of the cost. \
                         raw-echo and fastwebsockets have no fan-out of their own and sit this \
                         one out.\n",
                        sc.connections, sc.size, sc.workers
                    );
                }
                if mode == ScenarioMode::Connect {
                    let _ = writeln!(
                        w,
                        "One cycle = TCP connect + HTTP upgrade + one {} B echo + close handshake; \
                         latency is the whole cycle.\n",
                        sc.size
                    );
                }
                let _ = writeln!(
                    w,
                    "| server | {unit}/s | p50 µs | p90 µs | p99 µs | p99.9 µs | {unit} / server CPU-s | server CPU | loadgen CPU | other CPU | server RSS (MiB) | limited by | rs-echo ÷ this ({unit}/s) | rs-echo ÷ this (per CPU-s) | errors |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
                );
                for sv in servers {
                    let Some(s) = find(summary, sc.id, sv.name) else {
                        continue;
                    };
                    let pct = |v: Option<f64>| opt(v, |v| format!("{v:.0}%"));
                    let us = |v: Option<f64>| opt(v, |v| format!("{v:.0}"));
                    let _ = writeln!(
                        w,
                        "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        server_label(sv),
                        opt(s.msgs_per_sec, thousands),
                        us(s.p50_us),
                        us(s.p90_us),
                        us(s.p99_us),
                        us(s.p999_us),
                        opt(s.msgs_per_server_cpu_s, thousands),
                        pct(s.server_cpu_pct),
                        pct(s.loadgen_cpu_pct),
                        pct(s.other_cpu_pct),
                        opt(s.server_rss_kb, |v| format!("{:.1}", v / 1024.0)),
                        s.limited_by.as_deref().unwrap_or("–"),
                        opt(s.ours_over_this_msgs, |v| format!("{v:.2}")),
                        opt(s.ours_over_this_per_cpu, |v| format!("{v:.2}")),
                        errors_cell(s),
                    );
                }
            }
        }
        let _ = writeln!(w);
    }

    let _ = writeln!(w, "## Notes\n");
    let _ = writeln!(
        w,
        "- `raw-echo` does no WebSocket work at all (it echoes the masked bytes verbatim after a \
         real 101): it is the ceiling of a server on this runtime and kernel, not a competitor."
    );
    if summary.iter().any(|s| s.server == "uring-echo") {
        let _ = writeln!(
            w,
            "- `uring-echo` (run only when named) does no WebSocket work either, and uses what \
             monoio does not: one multishot receive per connection into a provided buffer ring, \
             registered files, sends straight from the received buffer (one submission per \
             message). It is the ceiling of any io_uring server on this kernel: what it gains \
             over `fws-echo` bounds what any server, ringsocket included, can gain over it here."
        );
    }
    let _ = writeln!(
        w,
        "- The load generator's io_uring ring is set up like ringsocket's (`COOP_TASKRUN`, \
         `SINGLE_ISSUER`, `DEFER_TASKRUN`). On loopback a server's write runs the client's \
         wake-up in the server's own context; with a plain ring on the client every echo cost \
         the server an inter-processor interrupt (`kick_process`), about a fifth of its CPU."
    );
    let _ = writeln!(
        w,
        "- \"msgs / server CPU-s\" divides the echoes by the server's own CPU time over the counted \
         window, so it compares servers even when neither process saturates its core. \
         \"limited by\": which process was at ≥ {SATURATED_PCT:.0}% of its core (median); \
         \"neither\" means the run was bound by latency (cross-core wake-ups), not CPU. \
         \"other CPU\": non-idle time of the whole machine (/proc/stat) minus server and \
         loadgen, as a share of one core: noise from other processes; \
         echo and connect runs above {DISTURBED_PCT:.0}% are repeated ({} more attempt(s) at most).",
        c.retries
    );
    let mut loadgen_bound = Vec::new();
    for s in summary {
        if matches!(s.limited_by.as_deref(), Some("loadgen") | Some("both")) {
            loadgen_bound.push(format!(
                "{} / {} (loadgen {:.0}%, server {:.0}%)",
                s.scenario,
                s.server,
                s.loadgen_cpu_pct.unwrap_or(0.0),
                s.server_cpu_pct.unwrap_or(0.0)
            ));
        }
    }
    if loadgen_bound.is_empty() {
        let _ = writeln!(
            w,
            "- The load generator was never the bottleneck (never at ≥ {SATURATED_PCT:.0}% of its \
             core)."
        );
    } else {
        let _ = writeln!(
            w,
            "- **Load generator at ≥ {SATURATED_PCT:.0}% of its core** (msgs/s there measure the \
             client as much as the server; msgs per server CPU-second still compares servers): {}.",
            loadgen_bound.join("; ")
        );
    }
    let noisy: Vec<String> = summary
        .iter()
        .filter(|s| s.other_cpu_pct.is_some_and(|v| v > 10.0))
        .map(|s| {
            format!(
                "{} / {} ({:.0}%)",
                s.scenario,
                s.server,
                s.other_cpu_pct.unwrap_or(0.0)
            )
        })
        .collect();
    if !noisy.is_empty() {
        let _ = writeln!(
            w,
            "- Other processes used more than 10% of a core during: {}.",
            noisy.join("; ")
        );
    }
    let repeated = runs.iter().filter(|r| r.attempts > 1).count();
    let still: Vec<String> = runs
        .iter()
        .filter(|r| r.disturbed && !r.scenario.starts_with("idle"))
        .map(|r| {
            format!(
                "{} r{} {} ({:.0}%)",
                r.scenario,
                r.round,
                r.server,
                r.other_cpu_pct.unwrap_or(0.0)
            )
        })
        .collect();
    if repeated > 0 || !still.is_empty() {
        let _ = writeln!(
            w,
            "- {repeated} run(s) were repeated because other processes used more than \
             {DISTURBED_PCT:.0}% of a core during the counted window{}",
            if still.is_empty() {
                ".".to_string()
            } else {
                format!(
                    "; still disturbed after {} attempts (left out of the medians where an \
                     undisturbed round exists): {}.",
                    c.retries + 1,
                    still.join("; ")
                )
            }
        );
    }
    let killed: Vec<String> = runs
        .iter()
        .filter(|r| r.server_stop.starts_with("SIGKILL"))
        .map(|r| format!("{} r{} {}", r.scenario, r.round, r.server))
        .collect();
    if !killed.is_empty() {
        let _ = writeln!(
            w,
            "- Did not exit within 2 s of SIGTERM (killed): {}.",
            killed.join("; ")
        );
    }
    let _ = writeln!(
        w,
        "- Raw per-run numbers: `latest.json`; chart of msgs per server CPU-second: `latest.svg`."
    );
    let bad: Vec<&RunRecord> = runs.iter().filter(|r| r.has_errors()).collect();
    if bad.is_empty() {
        let _ = writeln!(
            w,
            "- Every run completed without a single connection error."
        );
    } else {
        let _ = writeln!(w, "\n## Errors\n");
        for r in bad {
            let text = match (&r.failure, &r.loadgen) {
                (Some(f), _) => format!(
                    "failed: {}",
                    f.split_whitespace().collect::<Vec<_>>().join(" ")
                ),
                (None, Some(l)) => format!("{} errors: {}", l.errors, l.error_samples.join("; ")),
                (None, None) => "no report".into(),
            };
            let _ = writeln!(
                w,
                "- {} round {} `{}`: {text}",
                r.scenario, r.round, r.server
            );
        }
    }
    md
}

fn errors_cell(s: &Summary) -> String {
    if s.errors == 0 && s.ok_runs == s.runs {
        "0".into()
    } else {
        format!("**{}** ({} of {} runs clean)", s.errors, s.ok_runs, s.runs)
    }
}

fn print_summary(scenarios: &[Scenario], servers: &[ServerDef], summary: &[Summary]) {
    for sc in scenarios {
        eprintln!("  {}:", sc.id);
        for sv in servers {
            let Some(s) = find(summary, sc.id, sv.name) else {
                continue;
            };
            if sc.mode == ScenarioMode::Idle {
                eprintln!(
                    "    {:<18} {:>10} bytes/conn  errors {}",
                    sv.name,
                    opt(s.bytes_per_conn, thousands),
                    s.errors
                );
            } else {
                eprintln!(
                    "    {:<18} {:>10}/s  {:>10}/server-CPU-s  server {:>4}  loadgen {:>4}  errors {}",
                    sv.name,
                    opt(s.msgs_per_sec, thousands),
                    opt(s.msgs_per_server_cpu_s, thousands),
                    opt(s.server_cpu_pct, |v| format!("{v:.0}%")),
                    opt(s.loadgen_cpu_pct, |v| format!("{v:.0}%")),
                    s.errors
                );
            }
        }
    }
}

/// Grouped bars: msgs (connect: cycles) per server CPU-second, per scenario and server; a
/// second panel with idle bytes per connection when an idle scenario ran.
fn chart(
    path: &Path,
    scenarios: &[Scenario],
    servers: &[ServerDef],
    summary: &[Summary],
) -> Result<()> {
    use plotters::prelude::*;

    let palette = [
        RGBColor(214, 39, 40),   // rs-echo
        RGBColor(127, 127, 127), // raw-echo
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
    ];
    let color = |i: usize| palette[i % palette.len()];
    let rate: Vec<&Scenario> = scenarios
        .iter()
        .filter(|s| s.mode != ScenarioMode::Idle)
        .collect();
    let idle: Vec<&Scenario> = scenarios
        .iter()
        .filter(|s| s.mode == ScenarioMode::Idle)
        .collect();
    const IDLE_W: u32 = 420;
    let width = 220 + 150 * rate.len().max(1) as u32 + if idle.is_empty() { 0 } else { IDLE_W };
    let root = SVGBackend::new(path, (width.max(700), 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let (left, right) = if idle.is_empty() {
        (root.clone(), None)
    } else {
        let (l, r) = root.split_horizontally(width - IDLE_W);
        (l, Some(r))
    };
    let n_servers = servers.len().max(1);

    let draw_panel = |area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
                      caption: &str,
                      y_desc: &str,
                      groups: &[&Scenario],
                      value: &dyn Fn(&Summary) -> Option<f64>,
                      legend: bool|
     -> Result<()> {
        let values: Vec<Vec<Option<f64>>> = groups
            .iter()
            .map(|sc| {
                servers
                    .iter()
                    .map(|sv| find(summary, sc.id, sv.name).and_then(value))
                    .collect()
            })
            .collect();
        let max = values
            .iter()
            .flatten()
            .flatten()
            .fold(0.0f64, |a, &b| a.max(b))
            .max(1.0);
        let n = groups.len().max(1);
        let mut chart = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..n as f64, 0f64..max * 1.18)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc(y_desc)
            .y_label_formatter(&|v| {
                if max >= 10_000.0 {
                    format!("{:.0}k", v / 1000.0)
                } else {
                    format!("{v:.0}")
                }
            })
            .draw()
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let bar_w = 0.8 / n_servers as f64;
        for (si, sv) in servers.iter().enumerate() {
            let c = color(si);
            let bars: Vec<Rectangle<(f64, f64)>> = values
                .iter()
                .enumerate()
                .filter_map(|(gi, row)| {
                    let v = row[si]?;
                    let x0 = gi as f64 + 0.1 + si as f64 * bar_w;
                    Some(Rectangle::new(
                        [(x0, 0.0), (x0 + bar_w * 0.92, v)],
                        c.filled(),
                    ))
                })
                .collect();
            let series = chart
                .draw_series(bars)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            if legend {
                series.label(sv.name).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], c.filled())
                });
            }
            let labels: Vec<Text<'_, (f64, f64), String>> = values
                .iter()
                .enumerate()
                .filter_map(|(gi, row)| {
                    let v = row[si]?;
                    let x = gi as f64 + 0.1 + (si as f64 + 0.46) * bar_w;
                    let text = if v >= 10_000.0 {
                        format!("{:.0}k", v / 1000.0)
                    } else {
                        format!("{v:.0}")
                    };
                    Some(Text::new(
                        text,
                        (x, v + max * 0.01),
                        ("sans-serif", 10).into_font().color(&BLACK).pos(
                            plotters::style::text_anchor::Pos::new(
                                plotters::style::text_anchor::HPos::Center,
                                plotters::style::text_anchor::VPos::Bottom,
                            ),
                        ),
                    ))
                })
                .collect();
            chart
                .draw_series(labels)
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        for (gi, sc) in groups.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(gi as f64 + 0.5, 0.0));
            let style = ("sans-serif", 13).into_font().color(&BLACK).pos(
                plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Top,
                ),
            );
            // backend_coord is in whole-image pixels: draw on the root, not the panel.
            root.draw(&Text::new(sc.id.to_string(), (px, py + 8), style))
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        if legend {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(("sans-serif", 12))
                .draw()
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        }
        Ok(())
    };

    if !rate.is_empty() {
        draw_panel(
            &left,
            "Echoes (connect: cycles) per server CPU-second, median — higher is better",
            "per server CPU-second",
            &rate,
            &|s| s.msgs_per_server_cpu_s,
            true,
        )?;
    }
    if let Some(right) = right {
        draw_panel(
            &right,
            "Idle: bytes per connection (lower is better)",
            "bytes per connection",
            &idle,
            &|s| s.bytes_per_conn,
            rate.is_empty(),
        )?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn kernel() -> String {
    // SAFETY: uname fills the zeroed struct; its fields are NUL-terminated.
    unsafe {
        let mut u: libc::utsname = std::mem::zeroed();
        if libc::uname(&mut u) != 0 {
            return "unknown".into();
        }
        let field = |f: &[libc::c_char]| {
            std::ffi::CStr::from_ptr(f.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        format!(
            "{} {} {} ({})",
            field(&u.sysname),
            field(&u.release),
            field(&u.machine),
            field(&u.version)
        )
    }
}

fn command_output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:+@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Current UTC time as `YYYY-MM-DD HH:MM:SS UTC` (civil-from-days, no dependency).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo(scenario: &str, server: &str, per_cpu: f64) -> Summary {
        Summary {
            scenario: scenario.into(),
            server: server.into(),
            msgs_per_server_cpu_s: Some(per_cpu),
            ..Summary::default()
        }
    }

    #[test]
    fn the_ceiling_is_the_best_server_without_websocket_work_over_each_peer() {
        let summary = [
            echo("echo-100x20", "rs-echo", 160_000.0),
            echo("echo-100x20", "raw-echo", 180_000.0),
            echo("echo-100x20", "uring-echo", 200_000.0),
            echo("echo-100x20", "fws-echo", 100_000.0),
            echo("echo-100x20", "tungstenite-echo", 80_000.0),
            // An idle scenario has no throughput ceiling: no row.
            echo("idle-10k", "raw-echo", 1.0),
        ];
        let servers: Vec<ServerDef> = SERVERS
            .iter()
            .filter(|s| {
                [
                    "rs-echo",
                    "raw-echo",
                    "uring-echo",
                    "fws-echo",
                    "tungstenite-echo",
                ]
                .contains(&s.name)
            })
            .copied()
            .collect();
        let mut md = String::new();
        write_ceiling(&mut md, SCENARIOS, &servers, &summary);
        let table: Vec<&str> = md.lines().filter(|l| l.starts_with('|')).collect();
        assert_eq!(
            table,
            [
                "| scenario | fws-echo | tungstenite-echo | rs-echo ÷ ceiling |",
                "|---|---|---|---|",
                "| echo-100x20 | 2.00× (1.60×) | 2.50× (2.00×) | 80% |",
            ]
        );
    }

    #[test]
    fn no_ceiling_table_without_a_server_that_does_no_websocket_work() {
        let summary = [
            echo("echo-100x20", "rs-echo", 160_000.0),
            echo("echo-100x20", "fws-echo", 100_000.0),
        ];
        let servers: Vec<ServerDef> = SERVERS
            .iter()
            .filter(|s| ["rs-echo", "fws-echo"].contains(&s.name))
            .copied()
            .collect();
        let mut md = String::new();
        write_ceiling(&mut md, SCENARIOS, &servers, &summary);
        assert_eq!(md, "");
    }
}
