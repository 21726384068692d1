//! tokio-tungstenite echo peer: every message on any path comes back unchanged (text as
//! text, binary as binary), up to 16 MiB, no compression (tungstenite has none); every
//! message on `/fanout` goes to every other connection on `/fanout` (a
//! `tokio::sync::broadcast` channel, each connection split into a reader and a writer task).
//!
//! ```text
//! tungstenite-echo --port 9001 --workers 2
//! ```
//!
//! The usual tokio shape: one multi-thread runtime with `--workers` worker threads, one
//! listener, a task per connection. Prints `listening on 127.0.0.1:PORT` once accepting.
//! SIGINT/SIGTERM end the process at once (status 0).

use std::io::Write;
use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Largest message (and frame) echoed, in bytes.
const MAX_MESSAGE: usize = 16 << 20;
/// Messages a slow `/fanout` connection may fall behind before it loses some.
const FANOUT_BACKLOG: usize = 1024;

/// A `/fanout` message and the connection it came from (not sent back to it).
type Fanned = (u64, Message);

/// tokio-tungstenite echo server for the benchmark.
#[derive(Debug, Parser)]
#[command(name = "tungstenite-echo")]
struct Args {
    /// Port to listen on at 127.0.0.1 (0: any free port).
    #[arg(long)]
    port: u16,
    /// Worker threads of the tokio multi-thread runtime.
    #[arg(long, default_value = "1")]
    workers: NonZeroUsize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ringsocket_bench::exit_on_signals().context("installing SIGINT/SIGTERM handlers")?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.get())
        .enable_io()
        .enable_time()
        .build()
        .context("building the tokio runtime")?
        .block_on(serve(args.port))
}

async fn serve(port: u16) -> anyhow::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{port}"))?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", listener.local_addr()?)?;
    stdout.flush()?;
    drop(stdout);

    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let (fanout, _) = broadcast::channel::<Fanned>(FANOUT_BACKLOG);
    let mut next_id = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let fanout = fanout.clone();
                next_id += 1;
                let id = next_id;
                tokio::spawn(async move {
                    // A peer hanging up mid-way is the normal end of a benchmark connection.
                    let _ = serve_one(stream, config, fanout, id).await;
                });
            }
            Err(e) => {
                // Out of descriptors or memory: back off instead of spinning.
                eprintln!("tungstenite-echo: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

// tungstenite's handshake callback returns its error response by value: its signature, not ours.
#[allow(clippy::result_large_err)]
async fn serve_one(
    stream: TcpStream,
    config: WebSocketConfig,
    fanout: broadcast::Sender<Fanned>,
    id: u64,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    stream.set_nodelay(true)?;
    let mut path = String::new();
    let ws = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        |req: &Request, res: Response| {
            path = req.uri().path().to_owned();
            Ok(res)
        },
        Some(config),
    )
    .await?;
    if path == "/fanout" {
        return fan_out(ws, fanout, id).await;
    }
    let mut ws = ws;
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            ws.send(msg).await?;
        }
    }
    Ok(())
}

/// Sends every message read to the channel, and everything on the channel but its own
/// messages to the peer.
async fn fan_out(
    ws: tokio_tungstenite::WebSocketStream<TcpStream>,
    fanout: broadcast::Sender<Fanned>,
    id: u64,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    let (mut sink, mut stream) = ws.split();
    let mut inbox = fanout.subscribe();
    let writer = tokio::spawn(async move {
        loop {
            match inbox.recv().await {
                Ok((from, msg)) if from != id => {
                    if sink.send(msg).await.is_err() {
                        break;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
    });
    while let Some(msg) = stream.next().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            let _ = fanout.send((id, msg));
        }
    }
    writer.abort();
    Ok(())
}
