//! Per-app WebSocket options (the `@fastify/websocket` plugin options, with `ws`'s semantics).

use std::{fmt, future::Future, sync::Arc, time::Duration};

use crate::{
    app::{BoxError, BuildError, LocalFuture, Reply, Request},
    ws::{ClientHandle, PerMessageDeflate, WebSocket},
};

pub(crate) type VerifyClientFn = Arc<dyn Fn(&Request) -> Result<(), Reply> + Send + Sync>;
pub(crate) type HandleProtocolsFn =
    Arc<dyn Fn(&[String], &Request) -> Option<String> + Send + Sync>;
pub(crate) type WsErrorHandlerFn =
    Arc<dyn Fn(BoxError, WebSocket, Request) -> LocalFuture<()> + Send + Sync>;
pub(crate) type PreCloseFn = Arc<dyn Fn(&[ClientHandle]) + Send + Sync>;

/// What happens to a message sent to a connection whose outbound queue is over
/// [`WsOptions::max_backpressure`] (a reader slower than the writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackpressurePolicy {
    /// Refuse the message and close the connection with 1008 (policy violation). The default:
    /// a slow reader is dropped rather than allowed to grow the server's memory.
    Close,
    /// Refuse the message and keep the connection (uWebSockets' `DROPPED`).
    Drop,
}

/// Options for every WebSocket route of an app. Each default is in its setter's docs.
///
/// ```
/// use ringsocket::{Reply, WsOptions};
/// use std::time::Duration;
///
/// let options = WsOptions::new()
///     .max_payload(16 * 1024 * 1024)
///     .close_timeout(Duration::from_secs(2))
///     .verify_client(|req| match req.header("origin") {
///         Some("https://example.com") => Ok(()),
///         _ => Err(Reply::new().code(403)),
///     })
///     .handle_protocols(|offered, _req| offered.iter().find(|p| *p == "chat").cloned());
/// assert_eq!(options.get_max_payload(), 16 * 1024 * 1024);
/// ```
#[derive(Clone)]
pub struct WsOptions {
    pub(crate) max_payload: usize,
    max_fragments: Option<usize>,
    pub(crate) close_timeout: Duration,
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) pong_timeout: Duration,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) max_backpressure: usize,
    pub(crate) backpressure_policy: BackpressurePolicy,
    pub(crate) max_inbound: usize,
    pub(crate) verify_client: Option<VerifyClientFn>,
    pub(crate) handle_protocols: Option<HandleProtocolsFn>,
    pub(crate) client_tracking: bool,
    pub(crate) auto_pong: bool,
    pub(crate) skip_utf8_validation: bool,
    pub(crate) per_message_deflate: Option<PerMessageDeflate>,
    pub(crate) error_handler: Option<WsErrorHandlerFn>,
    pub(crate) pre_close: Option<PreCloseFn>,
}

impl fmt::Debug for WsOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsOptions")
            .field("max_payload", &self.max_payload)
            .field("max_fragments", &self.get_max_fragments())
            .field("close_timeout", &self.close_timeout)
            .field("ping_interval", &self.ping_interval)
            .field("pong_timeout", &self.pong_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("max_backpressure", &self.max_backpressure)
            .field("client_tracking", &self.client_tracking)
            .field("auto_pong", &self.auto_pong)
            .field("skip_utf8_validation", &self.skip_utf8_validation)
            .field("per_message_deflate", &self.per_message_deflate)
            .finish_non_exhaustive()
    }
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
            ping_interval: Some(Duration::from_secs(25)),
            pong_timeout: Duration::from_secs(10),
            idle_timeout: None,
            max_lifetime: None,
            max_backpressure: 1 << 20,
            backpressure_policy: BackpressurePolicy::Close,
            max_inbound: 1 << 20,
            verify_client: None,
            handle_protocols: None,
            client_tracking: true,
            auto_pong: true,
            skip_utf8_validation: false,
            per_message_deflate: None,
            error_handler: None,
            pre_close: None,
        }
    }

    /// Largest message accepted, in bytes, all fragments together (and, with compression, after
    /// inflating). A bigger one closes the connection with 1009 as soon as its frame header
    /// says so. Default 1 MiB (`ws`'s `maxPayload` is 100 MiB; 1 MiB is the safer default).
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

    /// How long the close handshake may take, from the moment it starts (or the peer leaves)
    /// until the TCP connection is cut. Default 5 s (`ws`: 30 s).
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// How long the peer may stay silent before it is pinged. The server pings only a peer it
    /// has heard nothing from (no byte of any frame: data, ping, pong or close) for this long;
    /// our own sends never count as hearing from it. A peer that still sends nothing within
    /// [`pong_timeout`](Self::pong_timeout) of the ping is taken for gone (a half-open socket)
    /// and the connection is terminated without a close handshake: `ping_interval +
    /// pong_timeout` after it was last heard, plus at most twice the liveness check's
    /// granularity (a quarter of the shortest liveness setting, between 10 ms and 1 s). The
    /// reason is logged (debug); the connection's report shows no close frame received and
    /// counts what was not written. The ping has an
    /// empty payload, is queued behind the messages already sent, and is not a message
    /// (not counted in the [`CloseReport`](crate::CloseReport)). `None` disables automatic
    /// pings and the dead-peer check. Default `Some(25 s)`.
    #[must_use]
    pub fn ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.ping_interval = interval;
        self
    }

    /// How long the peer has, after an automatic ping, to send anything (the pong or any other
    /// frame) before the connection is terminated; see
    /// [`ping_interval`](Self::ping_interval). Default 10 s.
    #[must_use]
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = timeout;
        self
    }

    /// Closes the connection with 1000 "idle timeout" when no complete text or binary message
    /// has been received for this long (counted from the upgrade at first). Only messages from
    /// the peer count: pings and pongs prove it alive (see [`ping_interval`](Self::ping_interval))
    /// but not busy, and neither our own sends nor a message still arriving in fragments count.
    /// With [`auto_pong`](Self::auto_pong) off, a ping handed to the handler does not count
    /// either. Checked at the granularity given in [`ping_interval`](Self::ping_interval).
    /// Default `None` (no idle timeout).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Closes the connection with 1000 "max lifetime reached" this long after the upgrade,
    /// however busy it is (queued messages are written first, as for any close). Default
    /// `None` (no limit).
    #[must_use]
    pub fn max_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime;
        self
    }

    /// Outbound bytes (frame headers included) a connection may have queued and not yet
    /// written; a message sent while the queue is at or over it is refused with
    /// [`Error::Backpressure`](crate::Error::Backpressure) and the
    /// [`backpressure_policy`](Self::backpressure_policy) applies. The check is made before the
    /// message is added, so one message larger than the limit still goes out on an idle
    /// connection. [`WebSocket::flush`](crate::WebSocket::flush) waits for the queue to drain.
    /// Default 1 MiB.
    #[must_use]
    pub fn max_backpressure(mut self, bytes: usize) -> Self {
        self.max_backpressure = bytes.max(1);
        self
    }

    /// What to do when [`max_backpressure`](Self::max_backpressure) is reached. Default
    /// [`BackpressurePolicy::Close`] (1008). Refused messages are counted in the connection's
    /// [`CloseReport::dropped`](crate::CloseReport::dropped).
    #[must_use]
    pub fn backpressure_policy(mut self, policy: BackpressurePolicy) -> Self {
        self.backpressure_policy = policy;
        self
    }

    /// Received bytes that may wait for the handler's `recv()` before the server stops reading
    /// from the socket (TCP flow control then slows the peer). Default 1 MiB.
    #[must_use]
    pub fn max_inbound(mut self, bytes: usize) -> Self {
        self.max_inbound = bytes.max(1);
        self
    }

    /// Accepts or refuses an upgrade after the route's hooks, before the 101 (`ws`'s
    /// `verifyClient`). `Err(reply)` is written as the HTTP answer (e.g. 401 with a
    /// `WWW-Authenticate` header) and the connection is closed. Default: accept all.
    #[must_use]
    pub fn verify_client<F>(mut self, verify: F) -> Self
    where
        F: Fn(&Request) -> Result<(), Reply> + Send + Sync + 'static,
    {
        self.verify_client = Some(Arc::new(verify));
        self
    }

    /// Picks the subprotocol from those the client offered (`ws`'s `handleProtocols`); `None`
    /// answers without `Sec-WebSocket-Protocol`. A pick that was not offered is ignored.
    /// Default: the first offered.
    #[must_use]
    pub fn handle_protocols<F>(mut self, pick: F) -> Self
    where
        F: Fn(&[String], &Request) -> Option<String> + Send + Sync + 'static,
    {
        self.handle_protocols = Some(Arc::new(pick));
        self
    }

    /// Whether connections are tracked (for `pre_close` and the default shutdown close).
    /// Untracked connections are not closed with 1001 on shutdown; they are cut at the drain
    /// deadline. Default true.
    #[must_use]
    pub fn client_tracking(mut self, track: bool) -> Self {
        self.client_tracking = track;
        self
    }

    /// Whether pings are answered automatically. When off, pings reach `recv()` as
    /// `Message::Ping` and the handler answers them (or not). Default true.
    #[must_use]
    pub fn auto_pong(mut self, auto: bool) -> Self {
        self.auto_pong = auto;
        self
    }

    /// Skips UTF-8 validation of text messages (`ws`'s `skipUTF8Validation`). Invalid text then
    /// reaches the handler: `Utf8Bytes::as_str` returns `""` for it, `as_bytes` the bytes.
    /// Default false.
    #[must_use]
    pub fn skip_utf8_validation(mut self, skip: bool) -> Self {
        self.skip_utf8_validation = skip;
        self
    }

    /// Enables permessage-deflate (RFC 7692; `ws`'s `perMessageDeflate`) with these options.
    /// Clients that offer it get compressed messages (above the threshold, unless sent with
    /// [`SendOptions::compress`](crate::SendOptions::compress) off) and may send compressed
    /// ones; [`max_payload`](Self::max_payload) then bounds both the compressed and the
    /// inflated size, the latter checked while inflating (1009: a message that claims more is
    /// never inflated past the limit), and data that does not inflate closes with 1007. With it enabled, a
    /// `Sec-WebSocket-Extensions` header that breaks RFC 6455's grammar is refused with 400.
    /// Default: off (offers are ignored and the header is not read).
    #[must_use]
    pub fn per_message_deflate(mut self, options: PerMessageDeflate) -> Self {
        self.per_message_deflate = Some(options);
        self
    }

    /// Handles an error returned by a WebSocket handler (after the upgrade). It gets the
    /// error, a handle on the connection and the request; if the connection is still open
    /// when it returns, it is closed with 1011. Default: log the error and terminate the
    /// connection (the client sees 1006), as `@fastify/websocket` does. A panicking handler
    /// always closes with 1011.
    #[must_use]
    pub fn error_handler<F, Fut>(mut self, handler: F) -> Self
    where
        F: Fn(BoxError, WebSocket, Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        self.error_handler = Some(Arc::new(move |err, ws, req| {
            Box::pin(handler(err, ws, req))
        }));
        self
    }

    /// Replaces what shutdown does to open connections, on each core, with that core's tracked
    /// clients (`@fastify/websocket`'s `preClose`). Connections still open afterwards get the
    /// drain timeout to finish, then are cut. Default: close each with 1001
    /// "server shutting down" after its queued messages.
    #[must_use]
    pub fn pre_close<F>(mut self, pre_close: F) -> Self
    where
        F: Fn(&[ClientHandle]) + Send + Sync + 'static,
    {
        self.pre_close = Some(Arc::new(pre_close));
        self
    }

    /// The configured [`max_payload`](Self::max_payload).
    pub fn get_max_payload(&self) -> usize {
        self.max_payload
    }

    /// The configured [`per_message_deflate`](Self::per_message_deflate), if enabled.
    pub fn get_per_message_deflate(&self) -> Option<&PerMessageDeflate> {
        self.per_message_deflate.as_ref()
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

    /// How often a core checks its connections' liveness for these options: a quarter of the
    /// shortest liveness setting, between 10 ms and 1 s; `None` when none is enabled.
    pub(crate) fn liveness_period(&self) -> Option<Duration> {
        let pinging = self
            .ping_interval
            .map(|interval| interval.min(self.pong_timeout));
        let shortest = [pinging, self.idle_timeout, self.max_lifetime]
            .into_iter()
            .flatten()
            .min()?;
        Some((shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1)))
    }

    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        if self.max_payload == 0 {
            return Err(BuildError::InvalidOption {
                name: "max_payload",
                reason: "must be at least 1 byte".into(),
            });
        }
        if self.close_timeout.is_zero() {
            return Err(BuildError::InvalidOption {
                name: "close_timeout",
                reason: "must be longer than zero".into(),
            });
        }
        if self.pong_timeout.is_zero() {
            return Err(BuildError::InvalidOption {
                name: "pong_timeout",
                reason: "must be longer than zero".into(),
            });
        }
        let optional = [
            ("ping_interval", self.ping_interval),
            ("idle_timeout", self.idle_timeout),
            ("max_lifetime", self.max_lifetime),
        ];
        for (name, duration) in optional {
            if duration.is_some_and(|d| d.is_zero()) {
                return Err(BuildError::InvalidOption {
                    name,
                    reason: "must be longer than zero (None disables it)".into(),
                });
            }
        }
        Ok(())
    }
}
