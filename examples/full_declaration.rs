//! A fully declared route, as in `@fastify/websocket`'s README ("Using both HTTP and
//! WebSocket on the same route"): `/hello` has an HTTP handler and a WebSocket handler. A plain
//! `GET /hello` gets the JSON `{"hello":"world"}`; an upgrade to `/hello` gets `hello client`
//! as soon as it opens, and the server closes the connection (1000) when the client sends
//! anything.
//!
//! ```text
//! cargo run --example full_declaration -- --port 3000
//! curl http://127.0.0.1:3000/hello
//! ```
//!
//! Flags: `--host` (default 127.0.0.1), `--port` (default 3000; 0 picks a free one),
//! `--workers` (default: the CPUs this process may use). Prints `listening on ADDR` when
//! ready; Ctrl-C shuts down gracefully.

use ringsocket::{App, Json, Message, Route, Server};

#[derive(serde::Serialize)]
struct Hello {
    hello: &'static str,
}

/// The app: one route, two handlers.
pub fn app() -> App {
    App::builder()
        .route(
            Route::get("/hello")
                .handler(|_req| async { Json(Hello { hello: "world" }) })
                .ws_handler(|mut ws, _req| async move {
                    if ws.send(Message::text("hello client")).await.is_err() {
                        return;
                    }
                    // The first message (or the client leaving) ends the handler; the
                    // connection is then closed normally.
                    let _ = ws.recv().await;
                    let _ = ws.close(1000, "");
                }),
        )
        .build()
        .expect("valid routes")
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse("full_declaration");
    serve("full_declaration", app(), &args);
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
