//! Wildcard WebSocket routes, as in `@fastify/websocket`'s README: an upgrade to `/` is
//! answered by its own route (`hi from server` for each message), an upgrade to any other path
//! by the `/*` route (`hi from wildcard route` for each message), and a plain `GET /http`
//! answers `plain http`. A static route wins over the wildcard.
//!
//! ```text
//! cargo run --example wildcard -- --port 3000
//! curl http://127.0.0.1:3000/http
//! ```
//!
//! Flags: `--host` (default 127.0.0.1), `--port` (default 3000; 0 picks a free one),
//! `--workers` (default: the CPUs this process may use). Prints `listening on ADDR` when
//! ready; Ctrl-C shuts down gracefully.

use ringsocket::{App, Message, WebSocket};

/// The app: a wildcard ws route, a root ws route and a plain HTTP route.
pub fn app() -> App {
    App::builder()
        .ws("/*", |ws, _req| {
            answer_each_message(ws, "hi from wildcard route")
        })
        .ws("/", |ws, _req| answer_each_message(ws, "hi from server"))
        .get("/http", |_req| async { "plain http" })
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

mod support;

fn main() {
    support::init_logging();
    let args = support::Args::parse("wildcard", &[]);
    support::serve("wildcard", app(), &args);
}
