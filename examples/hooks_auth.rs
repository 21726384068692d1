//! Authentication before the upgrade, as in `@fastify/websocket`'s README ("Using hooks"):
//! a registered scope (no prefix: its routes keep their own paths) whose preValidation hook
//! answers `401` unless the `api-key` header is `some-random-key`. The hook runs before the
//! 101, so a refused client never gets a WebSocket; an accepted one gets `hi from server` for
//! each message it sends to `/`.
//!
//! ```text
//! cargo run --example hooks_auth -- --port 3000
//! ```
//!
//! Flags: `--host` (default 127.0.0.1), `--port` (default 3000; 0 picks a free one),
//! `--workers` (default: the CPUs this process may use). Prints `listening on ADDR` when
//! ready; Ctrl-C shuts down gracefully.

use ringsocket::{App, Hook, Message, Reply, Server, WebSocket};

/// The app: everything inside the scope is behind the `api-key` check.
pub fn app() -> App {
    App::builder()
        .register("", |scope| {
            scope
                .hook(Hook::pre_validation(|req| async move {
                    if req.header("api-key") != Some("some-random-key") {
                        return Some(Reply::new().code(401));
                    }
                    None
                }))
                .ws("/", |ws, _req| answer_each_message(ws, "hi from server"))
        })
        .build()
        .expect("valid routes")
}

/// Answers every text or binary message with `answer`, until the client closes.
async fn answer_each_message(mut ws: WebSocket, answer: &'static str) {
    while let Some(Ok(message)) = ws.recv().await {
        if message.is_close() {
            break;
        }
        if ws.send(Message::text(answer)).await.is_err() {
            break;
        }
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse("hooks_auth");
    serve("hooks_auth", app(), &args);
}

/// Listens, prints the ready line, and runs until SIGINT/SIGTERM.
fn serve(name: &str, app: App, args: &Args) {
    let mut server = Server::new(app);
    if let Some(workers) = args.workers {
        server = server.workers(workers);
    }
    let server = match server.listen((args.host.as_str(), args.port)) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("{name}: cannot listen on {}:{}: {e}", args.host, args.port);
            std::process::exit(1);
        }
    };
    // Before the ready line, so a supervisor that signals as soon as it sees it is honoured.
    if let Err(e) = server.watch_signals() {
        eprintln!("{name}: cannot watch SIGINT/SIGTERM: {e}");
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
}

impl Args {
    fn parse(name: &str) -> Self {
        let mut args = Args {
            host: "127.0.0.1".into(),
            port: 3000,
            workers: None,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it
                .next()
                .unwrap_or_else(|| usage(name, &format!("{flag} needs a value")));
            match flag.as_str() {
                "--host" => args.host = value,
                "--port" => args.port = value.parse().unwrap_or_else(|_| usage(name, "bad --port")),
                "--workers" => {
                    args.workers = Some(
                        value
                            .parse()
                            .unwrap_or_else(|_| usage(name, "bad --workers")),
                    )
                }
                _ => usage(name, &format!("unknown flag {flag}")),
            }
        }
        args
    }
}

fn usage(name: &str, problem: &str) -> ! {
    eprintln!("{name}: {problem}\nusage: {name} [--host H] [--port P] [--workers N]");
    std::process::exit(2);
}
