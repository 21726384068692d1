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

use ringsocket::{App, Hook, Message, Reply, WebSocket};

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

mod support;

fn main() {
    support::init_logging();
    let args = support::Args::parse("hooks_auth", &[]);
    support::serve("hooks_auth", app(), &args);
}
