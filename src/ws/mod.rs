//! The WebSocket handle given to handlers, and the per-connection state it shares with the
//! connection driver.
//!
//! This layer knows nothing of sockets or runtimes: it queues decoded messages for `recv`,
//! encodes outgoing frames into a buffer the driver writes, and tracks the close handshake.
//! The driver in `server` does the reading and writing.

mod client_handle;
pub(crate) mod deflate;
pub(crate) mod fanout;
mod message;
pub(crate) mod options;
pub(crate) mod shared;
mod socket;

pub use client_handle::ClientHandle;
pub use deflate::{DeflateMode, PerMessageDeflate};
pub use message::{CloseFrame, Message, Utf8Bytes};
pub use options::{BackpressurePolicy, WsOptions};
pub use shared::CloseReport;
pub use socket::{SendOptions, WebSocket};
