//! The ceiling: a raw TCP echo server on monoio, thread-per-core like ringsocket, that answers
//! the WebSocket upgrade and then sends every byte back verbatim. No frame parsing, no
//! unmasking: what comes back is the client's masked frames, which the load generator accepts
//! in its raw mode. Whatever ringsocket spends above this is the cost of being a WebSocket
//! server.
//!
//! ```text
//! raw-echo --port 9001 --workers 2 --pin
//! ```
//!
//! One monoio runtime (io_uring, epoll where io_uring is unavailable) and one `SO_REUSEPORT`
//! listener per worker; `--pin` pins worker i to the i-th allowed CPU. Prints
//! `listening on 127.0.0.1:PORT` once every worker accepts. SIGINT/SIGTERM end the process
//! at once (status 0).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use monoio::{FusionDriver, FusionRuntime, RuntimeBuilder};
use ringsocket_bench::upgrade::{
    find_head_end, switching_protocols, websocket_key, BAD_REQUEST, HEAD_TOO_LARGE, MAX_HEAD,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Echo buffer per connection.
const BUF_SIZE: usize = 64 * 1024;
/// Raw TCP echo server behind a WebSocket handshake (the benchmark's ceiling).
#[derive(Debug, Parser)]
#[command(name = "raw-echo")]
struct Args {
    /// Port to listen on at 127.0.0.1 (0: any free port).
    #[arg(long)]
    port: u16,
    /// Worker threads, each with its own runtime and listener.
    #[arg(long, default_value = "1")]
    workers: NonZeroUsize,
    /// Pin worker i to the i-th allowed CPU.
    #[arg(long)]
    pin: bool,
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

    let cpus = ringsocket_bench::sys::allowed_cpus();
    let (ready_tx, ready_rx) = mpsc::channel();
    let mut threads = Vec::with_capacity(workers);
    let mut driver = "io_uring";
    for (index, listener) in listeners.into_iter().enumerate() {
        let cpu = args.pin.then(|| cpus[index % cpus.len()]);
        let ready = ready_tx.clone();
        threads.push(
            std::thread::Builder::new()
                .name(format!("raw-echo-{index}"))
                .spawn(move || worker(listener, cpu, ready))?,
        );
    }
    drop(ready_tx);
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(d)) => {
                if d != "io_uring" {
                    driver = d;
                }
            }
            Ok(Err(e)) => return Err(e).context("starting a worker"),
            Err(_) => anyhow::bail!("a worker exited during start-up"),
        }
    }

    let mut stdout = io::stdout().lock();
    writeln!(stdout, "listening on {addr} ({workers} workers, {driver})")?;
    stdout.flush()?;
    drop(stdout);

    for thread in threads {
        let _ = thread.join();
    }
    Ok(())
}

fn worker(
    listener: std::net::TcpListener,
    cpu: Option<usize>,
    ready: mpsc::Sender<io::Result<&'static str>>,
) {
    if let Some(cpu) = cpu {
        if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
            eprintln!("raw-echo: cannot pin a worker to CPU {cpu}: {e}");
        }
    }
    let runtime = RuntimeBuilder::<FusionDriver>::new()
        .with_entries(1024)
        .uring_builder(ringsocket_bench::tuned_uring())
        .enable_timer()
        .build()
        .or_else(|_| {
            RuntimeBuilder::<FusionDriver>::new()
                .with_entries(1024)
                .enable_timer()
                .build()
        });
    let mut runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let driver = match runtime {
        FusionRuntime::Uring(_) => "io_uring",
        FusionRuntime::Legacy(_) => "epoll",
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(driver));
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    monoio::spawn(async move {
                        // A peer hanging up mid-way is the normal end of a benchmark connection.
                        let _ = serve(stream).await;
                    });
                }
                Err(e) => {
                    // Out of descriptors or memory: back off instead of spinning.
                    eprintln!("raw-echo: accept failed: {e}");
                    monoio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
}

/// One connection: the upgrade handshake, then a verbatim echo until the peer hangs up.
async fn serve(mut stream: TcpStream) -> io::Result<()> {
    // Read the request head.
    let mut buf = Vec::with_capacity(BUF_SIZE);
    let head_len = loop {
        let filled = buf.len();
        let (res, slice) = stream.read(buf.slice_mut(filled..)).await;
        buf = slice.into_inner();
        if res? == 0 {
            return Ok(());
        }
        if let Some(end) = find_head_end(&buf, filled) {
            break end;
        }
        if buf.len() >= MAX_HEAD {
            let (res, _) = stream.write_all(HEAD_TOO_LARGE).await;
            return res.map(drop);
        }
    };

    // Answer it.
    let Some(key) = websocket_key(&buf[..head_len]) else {
        let (res, _) = stream.write_all(BAD_REQUEST).await;
        return res.map(drop);
    };
    let response = switching_protocols(key);
    let (res, _) = stream.write_all(response.into_bytes()).await;
    res?;

    // Whatever followed the head already belongs to the echo.
    buf.drain(..head_len);
    loop {
        if !buf.is_empty() {
            let (res, written) = stream.write_all(buf).await;
            buf = written;
            res?;
            buf.clear();
        }
        let (res, read) = stream.read(buf).await;
        buf = read;
        if res? == 0 {
            return Ok(());
        }
    }
}
