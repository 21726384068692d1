//! ringsocket: a WebSocket server framework that does what `@fastify/websocket` does for Node
//! (WebSocket routes in a route/hook pipeline, client tracking, graceful close, in-process
//! test injection) on a thread-per-core io_uring runtime.
//!
//! One [monoio](https://docs.rs/monoio) runtime and one `SO_REUSEPORT` listener per core; a
//! connection lives its whole life on the core that accepted it.
//!
//! ```no_run
//! use ringsocket::{App, Server, WsOptions};
//!
//! let app = App::builder()
//!     .websocket(WsOptions::new().max_payload(1 << 20))
//!     .ws("/echo", |mut ws, _req| async move {
//!         while let Some(Ok(message)) = ws.recv().await {
//!             if ws.send(message).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//!     .build()
//!     .expect("valid routes");
//! let server = Server::new(app).listen("127.0.0.1:3000").expect("bind");
//! println!("listening on {}", server.local_addr());
//! server.run(); // until SIGINT/SIGTERM, then a graceful 1001 to every client
//! ```
//!
//! # Layout
//!
//! - [`proto`]: RFC 6455 and RFC 7692, sans-IO: frame headers, masking, incremental UTF-8,
//!   close codes, message assembly, handshake validation, permessage-deflate. Byte slices in,
//!   values out; no sockets.
//! - `http`: the HTTP/1.1 request head (incremental, bounded) and responses.
//! - `app`: the Fastify-like surface: [`App`], routes, [`Request`]. Runtime-agnostic.
//! - `ws`: the [`WebSocket`] handle handlers get, and the per-connection state it shares with
//!   the driver (queues, close handshake, accounting, where deflate contexts live).
//! - `server`: the only module that knows monoio, threads and sockets: [`Server`], workers,
//!   accept loop, the connection driver, graceful shutdown.
//! - [`client`]: a WebSocket client on monoio, used by tests and the benchmark.
//! - `cluster`: every connection of every core as one set ([`Clients`]): the cross-core bus,
//!   and, with the `redis` / `nats` features, broadcast and topics across processes through
//!   a broker (`Server::broker`, the `Broker` trait, `RedisBroker`, `NatsBroker`).
//!
//! Dependencies point one way: `server -> ws, app, http -> proto`.
//!
//! # Panics and failures
//!
//! Every connection task and handler runs under `catch_unwind`: a panicking handler closes its
//! own connection with 1011 and nothing else. Protocol violations close with the RFC's code
//! (1002, 1007, 1008, 1009); bad handshakes get an HTTP status (400, 404, 405, 408, 426, 431),
//! and connections beyond `Server::max_connections` or `Server::max_handshakes` get 503.
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

mod app;
pub mod client;
mod cluster;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod http;
pub mod proto;
mod server;
pub mod testing;
mod ws;

#[cfg(feature = "json")]
pub use crate::app::Json;
#[cfg(feature = "nats")]
pub use crate::cluster::NatsBroker;
#[cfg(feature = "redis")]
pub use crate::cluster::RedisBroker;
#[cfg(any(feature = "redis", feature = "nats"))]
pub use crate::cluster::{Broker, BrokerError, Channel, Incoming, Outgoing};
pub use crate::{
    app::{
        App, AppBuilder, BoxError, BuildError, HandlerOutput, HandlerReply, Hook, HookKind,
        HookOutput, HttpError, IntoReply, Params, Reply, Request, Route, RouteError, Scope,
        SendHookOutput,
    },
    cluster::{BrokerStatus, ClientId, Clients, ClusterCount, Delivery, Remote, RemoteError},
    error::{Error, Result},
    server::{Driver, Server, ServerHandle, ShutdownTrigger},
    ws::{
        BackpressurePolicy, ClientHandle, CloseFrame, CloseReport, DeflateMode, Message,
        PerMessageDeflate, SendOptions, Utf8Bytes, WebSocket, WsOptions,
    },
};
