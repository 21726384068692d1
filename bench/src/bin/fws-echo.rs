//! fastwebsockets echo peer: every message on any path comes back unchanged (text as text,
//! binary as binary), up to 16 MiB, no compression (fastwebsockets has none).
//!
//! ```text
//! fws-echo --port 9001 --workers 2
//! ```
//!
//! The shape of fastwebsockets' own echo server: a tokio current-thread runtime, hyper 1's
//! HTTP/1 server with upgrades, `fastwebsockets::upgrade::upgrade`, a `FragmentCollector`
//! echoing whole messages with `write_frame`, the connection task run `unconstrained`.
//! With `--workers N` there are N threads, each with its own current-thread runtime and its
//! own `SO_REUSEPORT` listener (the kernel spreads connections), so every worker stays the
//! single-threaded server the example is, as in ringsocket's thread-per-core layout; no
//! pinning. Prints `listening on 127.0.0.1:PORT` once every worker accepts. SIGINT/SIGTERM
//! end the process at once (status 0).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use fastwebsockets::upgrade::{upgrade, UpgradeFut};
use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Largest message echoed, in bytes.
const MAX_MESSAGE: usize = 16 << 20;

/// fastwebsockets echo server for the benchmark.
#[derive(Debug, Parser)]
#[command(name = "fws-echo")]
struct Args {
    /// Port to listen on at 127.0.0.1 (0: any free port).
    #[arg(long)]
    port: u16,
    /// Threads, each with its own current-thread runtime and listener.
    #[arg(long, default_value = "1")]
    workers: NonZeroUsize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ringsocket_bench::exit_on_signals().context("installing SIGINT/SIGTERM handlers")?;
    let workers = args.workers.get();

    let mut addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let mut listeners = Vec::with_capacity(workers);
    for _ in 0..workers {
        let listener = ringsocket_bench::reuseport_listener(addr)
            .with_context(|| format!("listening on {addr}"))?;
        // Port 0: the first bind picks the port, the others share it.
        addr = listener.local_addr()?;
        listeners.push(listener);
    }

    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::with_capacity(workers);
    for (index, listener) in listeners.into_iter().enumerate() {
        let ready = ready_tx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("fws-echo-{index}"))
                .spawn(move || worker(listener, ready))?,
        );
    }
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e).context("starting a worker"),
            Err(_) => anyhow::bail!("a worker exited during start-up"),
        }
    }

    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {addr} ({workers} workers)")?;
    stdout.flush()?;
    drop(stdout);

    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

fn worker(listener: std::net::TcpListener, ready: mpsc::Sender<io::Result<()>>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let conn = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service_fn(server_upgrade))
                            .with_upgrades();
                        // A peer hanging up mid-way is the normal end of a benchmark
                        // connection.
                        let _ = conn.await;
                    });
                }
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    eprintln!("fws-echo: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
}

/// Answers the upgrade and hands the connection to the echo task.
async fn server_upgrade(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade(&mut req)?;
    tokio::spawn(async move {
        let _ = tokio::task::unconstrained(echo(fut)).await;
    });
    Ok(response)
}

async fn echo(fut: UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = fut.await?;
    // fastwebsockets refuses a frame whose payload length is >= the limit, so one more byte
    // lets exactly 16 MiB through, as every other peer does.
    ws.set_max_message_size(MAX_MESSAGE + 1);
    ws.set_auto_close(true);
    ws.set_auto_pong(true);
    let mut ws = FragmentCollector::new(ws);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}
