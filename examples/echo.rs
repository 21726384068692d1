//! Echo server: every message comes back unchanged (text as text, binary as binary).
//!
//! ```text
//! cargo run --release --example echo -- --port 9001 --workers 2 --max-payload 16777216
//! ```
//!
//! Flags: `--host` (default 127.0.0.1), `--port` (default 3000), `--workers` (default: the
//! CPUs this process may use), `--max-payload` (bytes, default 1 MiB). Prints
//! `listening on ADDR` when ready; Ctrl-C shuts down gracefully (clients get 1001).

use ringsocket::{App, Server, WsOptions};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();

    let app = App::builder()
        .websocket(WsOptions::new().max_payload(args.max_payload))
        .ws("/", |mut ws, _req| async move {
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_close() || ws.send(message).await.is_err() {
                    break;
                }
            }
        })
        .build()
        .expect("valid routes");

    let mut server = Server::new(app);
    if let Some(workers) = args.workers {
        server = server.workers(workers);
    }
    let server = match server.listen((args.host.as_str(), args.port)) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("echo: cannot listen on {}:{}: {e}", args.host, args.port);
            std::process::exit(1);
        }
    };
    // Before the ready line, so a supervisor that signals as soon as it sees it is honoured.
    if let Err(e) = server.watch_signals() {
        eprintln!("echo: cannot watch SIGINT/SIGTERM: {e}");
    }
    println!(
        "listening on {} ({} workers, {})",
        server.local_addr(),
        server.workers(),
        server.driver()
    );
    server.run();
}

struct Args {
    host: String,
    port: u16,
    workers: Option<usize>,
    max_payload: usize,
}

impl Args {
    fn parse() -> Self {
        let mut args = Args {
            host: "127.0.0.1".into(),
            port: 3000,
            workers: None,
            max_payload: 1 << 20,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")));
            match flag.as_str() {
                "--host" => args.host = value,
                "--port" => args.port = value.parse().unwrap_or_else(|_| usage("bad --port")),
                "--workers" => {
                    args.workers = Some(value.parse().unwrap_or_else(|_| usage("bad --workers")))
                }
                "--max-payload" => {
                    args.max_payload = value.parse().unwrap_or_else(|_| usage("bad --max-payload"))
                }
                _ => usage(&format!("unknown flag {flag}")),
            }
        }
        args
    }
}

fn usage(problem: &str) -> ! {
    eprintln!(
        "echo: {problem}\nusage: echo [--host H] [--port P] [--workers N] [--max-payload BYTES]"
    );
    std::process::exit(2);
}
