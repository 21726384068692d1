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

use ringsocket::{App, Json, Message, Route};

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

mod support;

fn main() {
    support::init_logging();
    let args = support::Args::parse("full_declaration", &[]);
    support::serve("full_declaration", app(), &args);
}
