//! Per-app WebSocket options (the `@fastify/websocket` plugin options).

use std::time::Duration;

/// Options for every WebSocket route of an app. Each default is in its setter's docs.
///
/// ```
/// use ringsocket::WsOptions;
/// use std::time::Duration;
///
/// let options = WsOptions::new()
///     .max_payload(16 * 1024 * 1024)
///     .close_timeout(Duration::from_secs(2));
/// assert_eq!(options.get_max_payload(), 16 * 1024 * 1024);
/// ```
#[derive(Debug, Clone)]
pub struct WsOptions {
    pub(crate) max_payload: usize,
    max_fragments: Option<usize>,
    pub(crate) close_timeout: Duration,
    pub(crate) max_backpressure: usize,
    pub(crate) max_inbound: usize,
}

impl Default for WsOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl WsOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self {
            max_payload: 1 << 20,
            max_fragments: None,
            close_timeout: Duration::from_secs(5),
            max_backpressure: 1 << 20,
            max_inbound: 1 << 20,
        }
    }

    /// Largest message accepted, in bytes, all fragments together (and, with compression, after
    /// inflating). A bigger one closes the connection with 1009 as soon as its frame header
    /// says so. Default 1 MiB (`ws`'s `maxPayload`).
    #[must_use]
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Most frames one message may arrive in, empty continuation frames included; more closes
    /// the connection with 1008. Fragments are copied into one buffer as they arrive, so they
    /// hold no memory of their own; the limit bounds the work a peer can cause with tiny or
    /// empty fragments. Default: one fragment per 64 bytes of
    /// [`max_payload`](Self::max_payload), at least 4096 (16,384 for the 1 MiB default).
    #[must_use]
    pub fn max_fragments(mut self, frames: usize) -> Self {
        self.max_fragments = Some(frames.max(1));
        self
    }

    /// How long to wait for the peer's close frame after sending ours before the TCP
    /// connection is closed anyway. Default 5 s.
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Outbound bytes a connection may have queued before `send().await` waits for the writer
    /// to drain. A single message larger than the limit is still accepted when the queue is
    /// below it. Default 1 MiB.
    #[must_use]
    pub fn max_backpressure(mut self, bytes: usize) -> Self {
        self.max_backpressure = bytes.max(1);
        self
    }

    /// Received bytes that may wait for the handler's `recv()` before the server stops reading
    /// from the socket (TCP flow control then slows the peer). Default 1 MiB.
    #[must_use]
    pub fn max_inbound(mut self, bytes: usize) -> Self {
        self.max_inbound = bytes.max(1);
        self
    }

    /// The configured [`max_payload`](Self::max_payload).
    pub fn get_max_payload(&self) -> usize {
        self.max_payload
    }

    /// The fragment limit in force (see [`max_fragments`](Self::max_fragments)).
    pub fn get_max_fragments(&self) -> usize {
        self.max_fragments
            .unwrap_or((self.max_payload / 64).max(4096))
    }

    /// The configured [`close_timeout`](Self::close_timeout).
    pub fn get_close_timeout(&self) -> Duration {
        self.close_timeout
    }
}
