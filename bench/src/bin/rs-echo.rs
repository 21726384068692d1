//! ringsocket echo peer: every message on `/` comes back unchanged (text as text, binary as
//! binary), up to 16 MiB, permessage-deflate only with `--deflate shared|dedicated`; every message on `/fanout` goes to every other
//! connection on `/fanout` (a topic, `ws.publish`).
//!
//! ```text
//! rs-echo --port 9001 --workers 2
//! ```
//!
//! One monoio runtime and one `SO_REUSEPORT` listener per worker, each worker pinned to a CPU
//! (ringsocket's default; `--no-pin` turns it off). Prints `listening on 127.0.0.1:PORT` once
//! every worker accepts. SIGINT/SIGTERM start ringsocket's graceful shutdown (1001 to every
//! client); a second signal exits at once.

use std::io::Write;
use std::num::NonZeroUsize;

use anyhow::Context;
use clap::Parser;
use ringsocket::{App, DeflateMode, NatsBroker, PerMessageDeflate, RedisBroker, Server, WsOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Largest message echoed, in bytes.
const MAX_MESSAGE: usize = 16 << 20;
/// The topic of the `/fanout` route.
const FANOUT: &str = "fanout";

/// ringsocket echo server for the benchmark.
#[derive(Debug, Parser)]
#[command(name = "rs-echo")]
struct Args {
    /// Port to listen on at 127.0.0.1 (0: any free port).
    #[arg(long)]
    port: u16,
    /// Worker threads, each with its own runtime and listener.
    #[arg(long, default_value = "1")]
    workers: NonZeroUsize,
    /// Pin worker i to the i-th allowed CPU (the default; accepted for symmetry with raw-echo).
    #[arg(long, conflicts_with = "no_pin")]
    pin: bool,
    /// Do not pin workers to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// Join a cluster through Redis pub/sub at this URL (`/fanout` then reaches every node).
    #[arg(long, conflicts_with = "nats")]
    redis: Option<String>,
    /// Join a cluster through NATS at this URL.
    #[arg(long)]
    nats: Option<String>,
    /// permessage-deflate: `shared` (one compressor per core, the default mode) or
    /// `dedicated` (a compressor per connection, with context takeover).
    #[arg(long, value_enum)]
    deflate: Option<Deflate>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Deflate {
    Shared,
    Dedicated,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();

    let mut options = WsOptions::new().max_payload(MAX_MESSAGE);
    match args.deflate {
        None => {}
        Some(Deflate::Shared) => options = options.per_message_deflate(PerMessageDeflate::new()),
        Some(Deflate::Dedicated) => {
            options =
                options.per_message_deflate(PerMessageDeflate::new().mode(DeflateMode::Dedicated));
        }
    }
    let app = App::builder()
        .websocket(options)
        .ws("/", |mut ws, _req| async move {
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_close() || ws.send(message).await.is_err() {
                    break;
                }
            }
        })
        // Fan-out: every message goes to every other connection on this route, on any core.
        .ws("/fanout", |mut ws, _req| async move {
            ws.subscribe(FANOUT);
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_close() || ws.publish(FANOUT, message).is_err() {
                    break;
                }
            }
        })
        .build()
        .context("building the app")?;

    let mut server = Server::new(app)
        .workers(args.workers.get())
        .pin_threads(!args.no_pin);
    if let Some(url) = &args.redis {
        server = server.broker(RedisBroker::new(url).context("the Redis URL")?);
    }
    if let Some(url) = &args.nats {
        server = server.broker(NatsBroker::new(url));
    }
    let server = server
        .listen(("127.0.0.1", args.port))
        .with_context(|| format!("listening on 127.0.0.1:{}", args.port))?;
    // Before the ready line, so a runner that signals as soon as it sees it is honoured.
    server.watch_signals().context("watching SIGINT/SIGTERM")?;

    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "listening on {} ({} workers, {})",
        server.local_addr(),
        server.workers(),
        server.driver()
    )?;
    stdout.flush()?;
    drop(stdout);

    server.run();
    Ok(())
}
