//! Echo server: every message comes back unchanged (text as text, binary as binary). On
//! `/broadcast`, every message goes to every connection on `/broadcast`, the sender included
//! (a topic published through `Clients`: with permessage-deflate, fan-out compression).
//!
//! ```text
//! cargo run --release --example echo -- --port 9001 --workers 2 --max-payload 16777216
//! cargo run --release --example echo -- --port 9001 --deflate
//! ```
//!
//! Flags: `--host` (default 127.0.0.1), `--port` (default 3000), `--workers` (default: the
//! CPUs this process may use), `--max-payload` (bytes, default 1 MiB), `--deflate`
//! (permessage-deflate with one compressor per core, no server context takeover),
//! `--deflate-dedicated` (permessage-deflate with a compressor per connection that keeps its
//! context). Prints `listening on ADDR` when ready; Ctrl-C shuts down gracefully (clients get
//! 1001).

use ringsocket::{App, DeflateMode, PerMessageDeflate, WsOptions};

mod support;

/// The topic of the `/broadcast` route.
const BROADCAST: &str = "broadcast";

fn main() {
    support::init_logging();
    let args = support::Args::parse_with_switches(
        "echo",
        &["--max-payload"],
        &["--deflate", "--deflate-dedicated"],
    );
    let max_payload = args.get("echo", "--max-payload").unwrap_or(1 << 20);
    let mut options = WsOptions::new().max_payload(max_payload);
    if args.has("--deflate-dedicated") {
        options =
            options.per_message_deflate(PerMessageDeflate::new().mode(DeflateMode::Dedicated));
    } else if args.has("--deflate") {
        options = options.per_message_deflate(PerMessageDeflate::new());
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
        .ws("/broadcast", |mut ws, _req| async move {
            ws.subscribe(BROADCAST);
            let clients = ws.clients();
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_close() || clients.publish(BROADCAST, message).is_err() {
                    break;
                }
            }
        })
        .build()
        .expect("valid routes");
    support::serve("echo", app, &args);
}
