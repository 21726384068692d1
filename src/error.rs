//! The crate's public error type.

use std::io;

use crate::proto::{CloseError, ProtocolError};

/// Everything that can go wrong at the API: I/O, protocol violations by the peer, and misuse
/// of a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The socket failed (reset, broken pipe, ...). The connection is gone.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The peer broke RFC 6455; the connection was closed with
    /// [`ProtocolError::close_code`].
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    /// The connection is closing or closed: nothing more can be sent. A message refused with
    /// this error was never accepted, so it is not counted as unsent.
    #[error("connection closed")]
    Closed,
    /// `close()` was given a code that may not be sent or a reason over 123 bytes; nothing was
    /// written.
    #[error("invalid close: {0}")]
    InvalidClose(#[from] CloseError),
    /// A ping or pong payload over the 125 bytes RFC 6455 allows for control frames.
    #[error("control frame payload of {0} bytes exceeds 125")]
    ControlTooLong(usize),
    /// The server answered the opening handshake wrongly (no valid `Sec-WebSocket-Accept`,
    /// a malformed head).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The server answered the upgrade with something else than 101 (a hook's 401, a 404, a
    /// 503 during shutdown, ...).
    #[error("Unexpected server response: {}", .status.as_u16())]
    UnexpectedResponse {
        /// The status it answered with.
        status: http::StatusCode,
    },
    /// No connection with this id (on its own core, checked synchronously).
    #[error("no client {0}")]
    UnknownClient(crate::ClientId),
    /// The owning core's inbox is full (that core is stalled): the message was not queued and
    /// is counted as lost.
    #[error("the inbox of core {core} is full")]
    InboxFull {
        /// The core.
        core: usize,
    },
    /// A message that cannot be used this way.
    #[error("invalid message: {0}")]
    InvalidMessage(&'static str),
    /// The connection's outbound queue is over its backpressure limit.
    #[error("outbound queue full ({queued} bytes queued, limit {limit})")]
    Backpressure {
        /// Bytes waiting to be written.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
