//! [`WebSocket`], the handle a route's handler receives.

use std::{
    fmt,
    future::{poll_fn, ready, Future, Ready},
    net::SocketAddr,
    rc::Rc,
};

use crate::{
    cluster::{local::LocalCore, ClientId, Clients, Delivery},
    proto::{close::encode_close_payload, OpCode},
    ws::{
        shared::{Phase, SharedRef},
        CloseReport, Message,
    },
    Error,
};

/// Options for one [`WebSocket::send_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendOptions {
    compress: bool,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SendOptions {
    /// The defaults, as [`WebSocket::send`] uses them.
    #[must_use]
    pub fn new() -> Self {
        Self { compress: true }
    }

    /// Whether the message may be compressed, when permessage-deflate was negotiated (it
    /// still is only past the [threshold](crate::PerMessageDeflate::threshold)). Default true.
    #[must_use]
    pub fn compress(mut self, compress: bool) -> Self {
        self.compress = compress;
        self
    }
}

/// One upgraded connection, as the handler sees it.
///
/// Reading happens in the background: pings are answered and the close handshake is
/// completed by the server whether or not the handler is in `recv`. Messages wait in a
/// bounded queue until `recv` takes them.
///
/// When the handler's future ends and the handle has been dropped, the connection is closed
/// normally (1000) after everything already sent has been written; if the handle was moved
/// elsewhere (another task), the connection lives until that copy is dropped. A handler that
/// returns an error or panics closes the connection with 1011.
///
/// ```
/// use ringsocket::{testing, App, CloseFrame, Message};
///
/// let app = App::builder()
///     .ws("/echo", |mut ws, _req| async move {
///         while let Some(Ok(message)) = ws.recv().await {
///             if message.is_close() || ws.send(message).await.is_err() {
///                 break;
///             }
///         }
///     })
///     .build()
///     .unwrap();
/// // The same app would be served with `Server::new(app).listen(addr)?.run()`.
/// testing::run(async move {
///     let mut client = app.inject_ws("/echo").connect().await.unwrap();
///     client.send(Message::text("ping?")).await.unwrap();
///     assert_eq!(client.recv().await.unwrap().unwrap(), Message::text("ping?"));
///     client.close(1000, "bye").await.unwrap();
///     let close = client.recv().await.unwrap().unwrap();
///     assert_eq!(close, Message::Close(Some(CloseFrame { code: 1000, reason: String::new() })));
/// });
/// ```
pub struct WebSocket {
    /// The connection's state, which also keeps its id.
    shared: SharedRef,
    core: Rc<LocalCore>,
    peer_addr: Option<SocketAddr>,
    protocol: Option<Box<str>>,
}

impl fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocket")
            .field("id", &self.id())
            .field("peer_addr", &self.peer_addr)
            .field("phase", &self.shared.borrow().phase)
            .finish()
    }
}

impl WebSocket {
    pub(crate) fn new(
        shared: SharedRef,
        peer_addr: Option<SocketAddr>,
        protocol: Option<String>,
        core: Rc<LocalCore>,
    ) -> Self {
        shared.borrow_mut().handles += 1;
        Self {
            shared,
            core,
            peer_addr,
            protocol: protocol.map(String::into_boxed_str),
        }
    }

    /// The connection's id, unique on this server; it names the core that owns the connection.
    pub fn id(&self) -> ClientId {
        self.shared.borrow().id
    }

    /// Every connection of the server, on every core.
    pub fn clients(&self) -> Clients {
        self.core.clients()
    }

    /// Subscribes this connection to `topic`; returns false if it already was (or the
    /// connection is gone). Subscriptions end with the connection.
    pub fn subscribe(&self, topic: &str) -> bool {
        self.core.subscribe(self.id(), topic)
    }

    /// Ends a subscription; returns false if there was none.
    pub fn unsubscribe(&self, topic: &str) -> bool {
        self.core.unsubscribe(self.id(), topic)
    }

    /// The topics this connection subscribes to, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.core.topics_of(self.id())
    }

    /// Sends a message to every subscriber of `topic` on every core, except this connection
    /// (uWebSockets' `ws.publish`). Encoded once for all recipients; with permessage-deflate,
    /// compressed for each as its own sends are (once per core and window size in the shared
    /// mode).
    ///
    /// # Errors
    ///
    /// [`Error::ControlTooLong`] or [`Error::InvalidMessage`] for a message that cannot be
    /// sent this way.
    pub fn publish(&self, topic: &str, message: impl Into<Message>) -> Result<Delivery, Error> {
        self.core
            .clients()
            .publish_except(topic, self.id(), message.into())
    }

    /// The peer's address (`None` for an injected connection).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The next message. `Text` and `Binary` as they arrive, then once `Close` with the peer's
    /// close frame, then `None`. A protocol violation by the peer is reported once as
    /// `Some(Err(Error::Protocol(..)))` (the server has already closed with its code), then
    /// `None`.
    ///
    /// The future is a single reference to this handle (a handler waiting here keeps 8 bytes
    /// for the wait).
    pub fn recv(&mut self) -> impl Future<Output = Option<Result<Message, Error>>> + '_ {
        poll_fn(move |cx| {
            self.shared
                .borrow_mut()
                .poll_recv(cx.waker())
                .map(|next| next.map(|r| r.map_err(Error::Protocol)))
        })
    }

    /// Queues a message; it is written in order after everything sent before. Never waits:
    /// the message is queued (or refused) by the call itself, and the future it returns is
    /// already complete with the outcome, so awaiting it costs nothing and a handler waiting
    /// in `send(..).await` keeps no room for the message in its own future. `Close` starts
    /// the close handshake (as [`close`](Self::close)); `Ping`/`Pong` payloads must be at most
    /// 125 bytes.
    ///
    /// Payloads of 4 KiB and more that go out uncompressed are written from the message's own
    /// [`Bytes`](bytes::Bytes), without a copy, so the buffer they share (a received message's
    /// read buffer, say) stays allocated until they are written.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the connection is closing; [`Error::Backpressure`] when the
    /// outbound queue is over [`WsOptions::max_backpressure`](crate::WsOptions::max_backpressure)
    /// (then the [policy](crate::WsOptions::backpressure_policy) applies: by default the
    /// connection is closed with 1008); [`Error::ControlTooLong`]; [`Error::InvalidClose`].
    /// A refused message was not accepted: it is counted as dropped, never as unsent.
    pub fn send(&self, message: impl Into<Message>) -> Ready<Result<(), Error>> {
        ready(self.queue(message.into(), SendOptions::new()))
    }

    /// [`send`](Self::send) with options (`ws`'s `send(data, { compress })`): e.g. a message
    /// that mixes a secret with attacker-chosen text is better sent uncompressed (the
    /// CRIME/BREACH family of attacks reads secrets from compressed sizes).
    ///
    /// # Errors
    ///
    /// As [`send`](Self::send).
    pub fn send_with(
        &self,
        message: impl Into<Message>,
        options: SendOptions,
    ) -> Ready<Result<(), Error>> {
        ready(self.queue(message.into(), options))
    }

    fn queue(&self, message: Message, options: SendOptions) -> Result<(), Error> {
        let mut shared = self.shared.borrow_mut();
        let compress = options.compress;
        match message {
            Message::Text(text) => shared.queue_data(OpCode::Text, text.into_bytes(), compress),
            Message::Binary(data) => shared.queue_data(OpCode::Binary, data, compress),
            Message::Ping(data) => queue_control(&mut shared, OpCode::Ping, &data),
            Message::Pong(data) => queue_control(&mut shared, OpCode::Pong, &data),
            Message::Close(frame) => {
                drop(shared);
                match frame {
                    Some(frame) => self.close(frame.code, &frame.reason),
                    None => self.close(1000, ""),
                }
            }
        }
    }

    /// Sends a ping; the pong is consumed by the server.
    ///
    /// # Errors
    ///
    /// [`Error::ControlTooLong`] over 125 bytes, [`Error::Closed`] once closing.
    pub fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        queue_control(&mut self.shared.borrow_mut(), OpCode::Ping, payload)
    }

    /// Starts the close handshake: everything already sent is written, then a close frame
    /// with `code` and `reason`; the TCP connection ends when the peer answers or after the
    /// close timeout. Calling it again, or after the peer closed, does nothing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidClose`] if `code` may not be sent (1005, 1006, 1015, or outside the
    /// ranges of RFC 6455 7.4) or `reason` is over 123 bytes. Nothing is written then.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), Error> {
        encode_close_payload(code, reason)?;
        self.shared.borrow_mut().start_close(code, reason);
        Ok(())
    }

    /// Ends the connection at once, without the close handshake; whatever is still queued is
    /// counted as unsent.
    pub fn terminate(&self) {
        self.shared.borrow_mut().terminate();
    }

    /// Whether messages can still be sent.
    pub fn is_open(&self) -> bool {
        let shared = self.shared.borrow();
        shared.phase == Phase::Open && !shared.terminated
    }

    /// Bytes queued and not yet handed to the socket, frame headers included (`ws`'s
    /// `bufferedAmount`).
    pub fn buffered_amount(&self) -> usize {
        self.shared.borrow().buffered_amount()
    }

    /// Waits until everything sent so far has been written to the socket: the way to pace a
    /// producer by the reader's speed (send, then `flush().await` before the queue grows past
    /// the limit).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the connection ended with messages still queued.
    pub async fn flush(&self) -> Result<(), Error> {
        poll_fn(|cx| self.shared.borrow_mut().poll_flushed(cx.waker())).await
    }

    /// Waits until the connection is over (close handshake done, peer gone, or terminated)
    /// and returns its final report: every message accepted by `send` is in `written` or
    /// `unsent`.
    pub async fn closed(&self) -> CloseReport {
        poll_fn(|cx| self.shared.borrow_mut().poll_finished(cx.waker())).await
    }

    /// Counts so far: messages accepted, written, and the close codes seen.
    pub fn report(&self) -> CloseReport {
        self.shared.borrow().report()
    }
}

fn queue_control(
    shared: &mut crate::ws::shared::Shared,
    opcode: OpCode,
    payload: &[u8],
) -> Result<(), Error> {
    if payload.len() > 125 {
        return Err(Error::ControlTooLong(payload.len()));
    }
    shared.queue_control(opcode, payload)
}

impl Drop for WebSocket {
    fn drop(&mut self) {
        if let Ok(mut shared) = self.shared.try_borrow_mut() {
            shared.handles -= 1;
            // While the handler runs, its outcome decides the code (a panic unwinding
            // through here must end in 1011, not 1000).
            if shared.handles == 0 && !shared.handler_running {
                shared.start_close(1000, "");
            }
        }
    }
}
