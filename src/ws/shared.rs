//! State one connection shares between its handler (through [`WebSocket`](super::WebSocket))
//! and the driver that reads and writes its socket. Everything here runs on one core, so it
//! is `Rc<RefCell<..>>` without locks; the driver and the handle wake each other with plain
//! wakers.

use std::{
    cell::RefCell,
    collections::VecDeque,
    os::fd::RawFd,
    rc::Rc,
    sync::Arc,
    task::{Poll, Waker},
    time::Instant,
};

use bytes::{Bytes, BytesMut};

use crate::{
    cluster::ClientId,
    proto::{encode_frame, CloseFrame, FrameHeader, OpCode, ProtocolError},
    ws::{
        deflate::SendDeflate, fanout::FanoutEncoding, options::BackpressurePolicy, Message,
        WsOptions,
    },
};

/// How a connection ended, for logs and for the close hooks.
///
/// Every message accepted by `send` is either `written` or `unsent`: nothing is dropped
/// without being counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloseReport {
    /// The close code we sent, if any.
    pub sent_code: Option<u16>,
    /// The peer's close frame: `Some(None)` when it sent an empty one, `None` when none came
    /// (the connection ended abnormally, 1006).
    pub received: Option<Option<CloseFrame>>,
    /// Messages accepted by `send`.
    pub accepted: u64,
    /// Messages fully written to the socket.
    pub written: u64,
    /// Messages accepted but never fully written (peer gone, terminated, shutdown deadline).
    pub unsent: u64,
    /// Messages refused because the outbound queue was over its limit (the backpressure
    /// policy): never accepted, so in neither `accepted` nor `unsent`.
    pub dropped: u64,
    /// Whether close frames went both ways before the TCP connection ended.
    pub clean: bool,
}

/// Where the close handshake stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Messages flow both ways.
    Open,
    /// A close frame is queued or written; nothing more may be sent.
    Closing,
    /// The connection is over (or being torn down without a handshake).
    Closed,
}

mod liveness;
mod writer;

pub(crate) type SharedRef = Rc<RefCell<Shared>>;

/// Most pongs waiting to be written; see `Outbound::pending_pongs`.
const MAX_PENDING_PONGS: usize = 16;

/// Payloads from this size on are written from their own buffer, after their header, instead
/// of being copied into the outbound buffer.
const ZERO_COPY_MIN: usize = 4 * 1024;

/// Wakers of tasks waiting for one event (a flush, the end), each once. Rarely used, so
/// nothing is allocated until the first one waits: 8 bytes in every connection, not 24.
/// (The box around the `Vec` is the point, hence the lint allowed.)
#[derive(Default)]
#[allow(clippy::box_collection)]
struct WakerList(Option<Box<Vec<Waker>>>);

impl WakerList {
    fn add(&mut self, waker: &Waker) {
        let list = self.0.get_or_insert_with(Default::default);
        if !list.iter().any(|w| w.will_wake(waker)) {
            list.push(waker.clone());
        }
    }

    fn wake_all(&mut self) {
        if let Some(list) = &mut self.0 {
            for waker in list.drain(..) {
                waker.wake();
            }
        }
    }
}

/// Messages waiting for `recv`, and the bytes of their payloads. Allocated with the first
/// message and kept from then on: a connection that never receives one (most idle ones) holds
/// 8 bytes for it instead of 40.
#[derive(Default)]
struct Inbox(Option<Box<Queued>>);

#[derive(Default)]
struct Queued {
    messages: VecDeque<Message>,
    bytes: usize,
}

impl Inbox {
    fn push(&mut self, message: Message) {
        let queued = self.0.get_or_insert_with(Box::default);
        queued.bytes += message.payload().len();
        queued.messages.push_back(message);
    }

    fn pop(&mut self) -> Option<Message> {
        let queued = self.0.as_mut()?;
        let message = queued.messages.pop_front()?;
        queued.bytes -= message.payload().len();
        Some(message)
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |queued| queued.messages.len())
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |queued| queued.bytes)
    }
}

/// The sending side's state, allocated with the first thing to write: a connection that
/// never writes (most idle ones) holds 8 bytes for it instead of about 180.
#[derive(Default)]
struct Outbound {
    /// permessage-deflate's sending side, when it was negotiated.
    deflate: Option<Box<SendDeflate>>,
    /// Frames encoded back to back, waiting for the writer.
    out: BytesMut,
    /// Stream offset at which each queued message ends, to count written messages exactly.
    out_ends: VecDeque<u64>,
    /// Bytes ever queued (the stream offset of `out`'s end).
    out_total: u64,
    /// Frames shared with other recipients (a broadcast encoded once), and earlier bytes of
    /// `out` frozen ahead of them: written in order before `out`, without being copied.
    chunks: VecDeque<Bytes>,
    chunks_bytes: usize,
    /// Bytes handed to the writer and not yet reported written.
    in_flight: usize,
    /// Bytes of the data stream written to the socket.
    written_bytes: u64,
    /// Pongs owed, oldest first. Bounded: past [`MAX_PENDING_PONGS`] the oldest is dropped,
    /// as RFC 6455 5.5.3 allows answering only the most recent ping, so a ping flood from a
    /// peer that does not read cannot grow memory.
    pending_pongs: Vec<Bytes>,
    /// Encoded close frame, written after everything queued before it.
    pending_close: Option<Box<[u8]>>,
}

impl Outbound {
    /// Bytes queued or being written, not yet handed to the kernel.
    fn buffered(&self) -> usize {
        self.out.len() + self.chunks_bytes + self.in_flight
    }

    /// Queues bytes to be written as they are, after everything queued before them: earlier
    /// bytes of `out` are frozen into the chunk queue first (no copy either).
    fn push_chunk(&mut self, chunk: Bytes) {
        if !self.out.is_empty() {
            let earlier = self.out.split().freeze();
            self.chunks_bytes += earlier.len();
            self.chunks.push_back(earlier);
        }
        self.chunks_bytes += chunk.len();
        self.chunks.push_back(chunk);
    }
}

/// The counts a [`CloseReport`] is made of (`unsent` follows from them), and the peer's close
/// frame, boxed (it comes once, at the end). Its codes and flag are kept beside the state's
/// other small fields, where they take no room of their own.
#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    written: u64,
    dropped: u64,
    received: Option<Box<Option<CloseFrame>>>,
}

/// A moment of the connection's life, as nanoseconds since the process's first connection
/// (8 bytes where an `Instant` takes 16; the four a connection keeps add up). Never zero, so
/// an `Option<Stamp>` is 8 bytes too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(std::num::NonZeroU64);

impl Stamp {
    fn epoch() -> Instant {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    /// Now (the epoch is set first, so the first connection's stamp is not before it).
    pub(crate) fn now() -> Self {
        Self::epoch();
        Self::at(Instant::now())
    }

    pub(crate) fn at(at: Instant) -> Self {
        let nanos = at.saturating_duration_since(Self::epoch()).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX - 1);
        Self(std::num::NonZeroU64::MIN.saturating_add(nanos))
    }

    /// Time from this moment to `now` (zero if `now` is earlier).
    pub(crate) fn until(self, now: Stamp) -> std::time::Duration {
        std::time::Duration::from_nanos(now.0.get().saturating_sub(self.0.get()))
    }
}

/// Once the close begins (or the peer leaves), the connection has `close_timeout` to finish;
/// then it is terminated, whatever it is waiting for (a close reply, a write to a peer that
/// does not read).
///
/// The timer ends as soon as the connection is finished: waiting out the whole timeout kept
/// its task and the connection's state (about 1.7 KB) for `close_timeout` after every close,
/// 130 MB at 15,000 connections a second with the default 5 s.
fn close_timer(shared: std::rc::Weak<RefCell<Shared>>, close_timeout: std::time::Duration) {
    monoio::spawn(async move {
        let finished = std::future::poll_fn(|cx| match shared.upgrade() {
            Some(state) => state.borrow_mut().poll_finished(cx.waker()).map(drop),
            None => Poll::Ready(()),
        });
        if monoio::time::timeout(close_timeout, finished)
            .await
            .is_err()
        {
            if let Some(shared) = shared.upgrade() {
                shared.borrow_mut().terminate();
            }
        }
    });
}

/// The state itself. (Every connection keeps one for its whole life: with the `Rc` around it,
/// it fits the 256-byte allocation class; a size test holds it there.)
pub(crate) struct Shared {
    pub(crate) phase: Phase,
    /// The connection's id (its handles read it here).
    pub(crate) id: ClientId,
    options: Arc<WsOptions>,
    /// This state's own `Rc`, for the close timer.
    this: std::rc::Weak<RefCell<Shared>>,
    /// The sending side, from the first thing to write.
    tx: Option<Box<Outbound>>,

    // Inbound: decoded messages waiting for `recv`.
    inbound: Inbox,
    /// The protocol error that ended reading, reported once by `recv`.
    inbound_error: Option<Box<ProtocolError>>,
    /// No more messages will arrive.
    inbound_done: bool,
    recv_waker: Option<Waker>,
    /// The driver, waiting for `recv` to make room.
    room_waker: Option<Waker>,

    flush_wakers: WakerList,
    close_written: bool,
    /// Half-close the socket once the close frame is out: set when the peer closed first or
    /// when we fail the connection.
    shutdown_after_close: bool,
    /// The writer, waiting for something to write or, once it wrote the close frame, for the
    /// reader to stop; before the writer starts (on the first thing to write: a connection
    /// that never writes never has one), whoever starts it.
    writer_waker: Option<Waker>,

    /// Tear down now: no handshake, no flush.
    pub(crate) terminated: bool,
    /// The route handler's future is still running: a dropped handle then leaves the close
    /// to the handler's outcome (1000, or 1011 on error or panic).
    pub(crate) handler_running: bool,
    /// [`WebSocket`](super::WebSocket) handles alive: when the last goes and no handler runs,
    /// the connection is closed normally.
    pub(crate) handles: u16,
    /// A protocol error was already given to the custom error handler (so the same error
    /// returned by the handler is not reported twice).
    pub(crate) protocol_error_reported: bool,
    /// The handler has been polled once (the connection's task polls it before the reader,
    /// but a reader that waits checks rather than assumes).
    handler_polled: bool,
    /// The handler has asked for messages at least once.
    recv_called: bool,
    /// The socket, to cut it (both directions), ending any read or write in flight; -1 when
    /// none. Set by the driver and cleared before the socket is closed, so a cut never touches
    /// a reused fd. (Not an `Option`: 4 bytes pack beside the flags.)
    socket: RawFd,
    /// The close timer is still to start: set when the driver attaches, cleared when the
    /// close begins or the peer leaves (the timer starts) or the socket goes.
    close_timer: bool,
    /// The connection is over and its report final.
    finished: bool,
    finished_wakers: WakerList,
    /// The reader has stopped: the peer closed, left, or broke the protocol.
    reader_done: bool,

    // Liveness, judged by the core's sweep (`check_liveness`).
    /// When the connection was upgraded (for `max_lifetime`).
    opened: Stamp,
    /// When the reader last got bytes from the peer, of any frame. Our sends never touch it.
    last_heard: Stamp,
    /// When the last complete text or binary message arrived (for `idle_timeout`).
    last_message: Stamp,
    /// When the sweep last queued an automatic ping; unanswered while not before `last_heard`.
    last_ping_sent: Option<Stamp>,
    /// The sweep found the peer gone (no answer to its ping) and terminated the connection.
    pub(crate) peer_gone: bool,

    tally: Tally,
    /// The close code we sent, if any (never 0).
    sent_code: Option<std::num::NonZeroU16>,
    /// Close frames went both ways before the TCP connection ended.
    clean: bool,
    /// The reader's wait for the reply to what it read (`READ_DEFERRED`, `DEFER_LISTED`,
    /// `DEFER_OFF`): see [`Shared::defer_read`].
    defer: u8,
}

/// The reader waits for the write in flight before reading again (its waker is `room_waker`).
const READ_DEFERRED: u8 = 1;
/// The connection is on its core's list of deferred readers, which ends waits that last.
const DEFER_LISTED: u8 = 1 << 1;
/// A wait outlasted the list's tick (the peer is slow to take what we write): no more waits
/// until everything queued is written.
const DEFER_OFF: u8 = 1 << 2;

impl Shared {
    pub(crate) fn new(options: Arc<WsOptions>, id: ClientId) -> SharedRef {
        let now = Stamp::now();
        Rc::new_cyclic(|this| {
            RefCell::new(Shared {
                phase: Phase::Open,
                id,
                options,
                this: this.clone(),
                tx: None,
                inbound: Inbox::default(),
                inbound_error: None,
                inbound_done: false,
                recv_waker: None,
                room_waker: None,
                flush_wakers: WakerList::default(),
                close_written: false,
                shutdown_after_close: false,
                writer_waker: None,

                terminated: false,
                handler_running: true,
                handles: 0,
                protocol_error_reported: false,
                handler_polled: false,
                recv_called: false,
                socket: -1,
                close_timer: false,
                finished: false,
                finished_wakers: WakerList::default(),
                reader_done: false,
                opened: now,
                last_heard: now,
                last_message: now,
                last_ping_sent: None,
                peer_gone: false,
                tally: Tally::default(),
                sent_code: None,
                clean: false,
                defer: 0,
            })
        })
    }

    /// The connection's options.
    pub(crate) fn options(&self) -> &Arc<WsOptions> {
        &self.options
    }

    /// Whether the connection counts among the server's clients (`client_tracking`).
    pub(crate) fn tracked(&self) -> bool {
        self.options.client_tracking
    }

    /// The sending side, made on first use.
    fn tx(&mut self) -> &mut Outbound {
        self.tx.get_or_insert_with(Box::default)
    }

    /// Sets permessage-deflate's sending side (negotiated at the upgrade).
    pub(crate) fn set_deflate(&mut self, deflate: Box<SendDeflate>) {
        self.tx().deflate = Some(deflate);
    }

    // ---- the handle's side ----

    pub(crate) fn poll_recv(
        &mut self,
        waker: &Waker,
    ) -> Poll<Option<Result<Message, ProtocolError>>> {
        self.recv_called = true;
        if let Some(message) = self.inbound.pop() {
            if let Some(w) = self.room_waker.take() {
                w.wake();
            }
            return Poll::Ready(Some(Ok(message)));
        }
        if let Some(err) = self.inbound_error.take() {
            return Poll::Ready(Some(Err(*err)));
        }
        if self.inbound_done || self.terminated {
            return Poll::Ready(None);
        }
        self.recv_waker = Some(waker.clone());
        Poll::Pending
    }

    /// Whether one more message may be queued. The limit is checked before the message is
    /// added, so a single message larger than the limit still goes out on an idle connection.
    /// Over the limit the policy applies: close with 1008 (the default) or drop; either way the
    /// refused message is counted in `dropped`.
    fn admit(&mut self) -> Result<(), crate::Error> {
        if self.phase != Phase::Open || self.terminated {
            return Err(crate::Error::Closed);
        }
        let queued = self.buffered_amount();
        let limit = self.options.max_backpressure;
        if queued < limit {
            return Ok(());
        }
        self.tally.dropped += 1;
        if self.options.backpressure_policy == BackpressurePolicy::Close {
            tracing::debug!(queued, limit, "outbound limit reached: closing with 1008");
            self.start_close(1008, "backpressure limit exceeded");
        }
        Err(crate::Error::Backpressure { queued, limit })
    }

    /// Queues a data message, compressed when permessage-deflate was negotiated, `compress`
    /// allows it, and it is worth it. A large payload that goes out as it is is not copied:
    /// its header is queued and the payload itself written after it (one `writev`).
    pub(crate) fn queue_data(
        &mut self,
        opcode: OpCode,
        payload: Bytes,
        compress: bool,
    ) -> Result<(), crate::Error> {
        self.admit()?;
        let tx = self.tx();
        let compressed = match &tx.deflate {
            Some(deflate) => deflate.would_compress(payload.len(), compress),
            None => false,
        };
        let before = tx.out.len();
        if !compressed && payload.len() >= ZERO_COPY_MIN {
            FrameHeader::outgoing(true, false, opcode, None, payload.len()).encode(&mut tx.out);
            tx.out_total += (tx.out.len() - before + payload.len()) as u64;
            tx.push_chunk(payload);
        } else {
            match &mut tx.deflate {
                Some(deflate) => deflate.encode(&mut tx.out, opcode, &payload, compress),
                None => encode_frame(&mut tx.out, true, false, opcode, None, &payload),
            }
            tx.out_total += (tx.out.len() - before) as u64;
        }
        tx.out_ends.push_back(tx.out_total);
        self.tally.accepted += 1;
        self.wake_writer();
        Ok(())
    }

    /// Queues a ping or pong the application asked for.
    pub(crate) fn queue_control(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<(), crate::Error> {
        if self.phase != Phase::Open || self.terminated {
            return Err(crate::Error::Closed);
        }
        // Control frames ride in the data stream so they keep their place in the order of
        // sends, but they are not messages and are not counted.
        let tx = self.tx();
        let before = tx.out.len();
        encode_frame(&mut tx.out, true, false, opcode, None, payload);
        tx.out_total += (tx.out.len() - before) as u64;
        self.wake_writer();
        Ok(())
    }

    /// Starts the close handshake with `code` (already validated). Queued messages are written
    /// first. Returns false if a close was already under way.
    pub(crate) fn start_close(&mut self, code: u16, reason: &str) -> bool {
        if self.phase != Phase::Open || self.terminated {
            return false;
        }
        let payload = crate::proto::close::encode_close_payload(code, reason)
            .unwrap_or_else(|_| code.to_be_bytes().to_vec());
        self.queue_close_frame(Some(code), &payload);
        true
    }

    /// Installs the driver's socket (to cut it on termination); from now on the close starts
    /// the close timer.
    pub(crate) fn attach(&mut self, socket: RawFd) {
        self.socket = socket;
        self.close_timer = true;
    }

    fn arm_close_timer(&mut self) {
        if std::mem::take(&mut self.close_timer) {
            close_timer(self.this.clone(), self.options.close_timeout);
        }
    }

    /// The socket is about to be closed: forget how to cut it.
    pub(crate) fn detach(&mut self) {
        self.socket = -1;
        self.close_timer = false;
    }

    /// Starts the close handshake with an empty close frame (no status code: the peer sees
    /// 1005), as `ws`'s `close()` without arguments.
    pub(crate) fn close_without_code(&mut self) {
        if self.phase == Phase::Open && !self.terminated {
            self.queue_close_frame(None, &[]);
        }
    }

    fn queue_close_frame(&mut self, code: Option<u16>, payload: &[u8]) {
        let mut frame = BytesMut::with_capacity(2 + payload.len());
        encode_frame(&mut frame, true, false, OpCode::Close, None, payload);
        self.tx().pending_close = Some(Box::from(&frame[..]));
        self.sent_code = code.and_then(std::num::NonZeroU16::new);
        self.phase = Phase::Closing;
        self.arm_close_timer();
        self.wake_senders();
        self.wake_writer();
    }

    /// Abandons the connection: the driver stops reading and writing and closes the socket.
    pub(crate) fn terminate(&mut self) {
        if self.terminated {
            return;
        }
        self.terminated = true;
        self.phase = Phase::Closed;
        self.inbound_done = true;
        if self.socket >= 0 {
            // SAFETY: `socket` is cleared (`detach`) before the socket is closed, so it is
            // still this connection's socket here.
            unsafe { libc::shutdown(self.socket, libc::SHUT_RDWR) };
        }
        self.wake_all();
    }

    /// Queues a frame encoded once and shared with other recipients (broadcast, publish,
    /// `send_to`): no copy, the writer writes these very bytes.
    pub(crate) fn queue_shared(&mut self, frame: Bytes) -> Result<(), crate::Error> {
        self.admit()?;
        let tx = self.tx();
        tx.out_total += frame.len() as u64;
        tx.out_ends.push_back(tx.out_total);
        tx.push_chunk(frame);
        self.tally.accepted += 1;
        self.wake_writer();
        Ok(())
    }

    /// How a message of `len` bytes delivered to many connections is encoded for this one
    /// (see [`Fanout`](super::fanout::Fanout)).
    pub(crate) fn fanout_encoding(&self, len: usize) -> FanoutEncoding {
        match self.tx.as_ref().and_then(|tx| tx.deflate.as_ref()) {
            Some(deflate) => deflate.fanout_encoding(len),
            None => FanoutEncoding::Plain,
        }
    }

    /// Bytes queued or being written, not yet handed to the kernel (`ws`'s `bufferedAmount`;
    /// frame headers included).
    pub(crate) fn buffered_amount(&self) -> usize {
        self.tx.as_ref().map_or(0, |tx| tx.buffered())
    }

    /// Ready once everything queued has been written (`Ok`), or when it never will be because
    /// the connection is closed (`Err`).
    pub(crate) fn poll_flushed(&mut self, waker: &Waker) -> Poll<Result<(), crate::Error>> {
        if self.buffered_amount() == 0 {
            return Poll::Ready(Ok(()));
        }
        if self.terminated || self.phase == Phase::Closed {
            return Poll::Ready(Err(crate::Error::Closed));
        }
        self.flush_wakers.add(waker);
        Poll::Pending
    }

    pub(crate) fn report(&self) -> CloseReport {
        let tally = &self.tally;
        CloseReport {
            sent_code: self.sent_code.map(std::num::NonZeroU16::get),
            received: tally.received.as_deref().cloned(),
            accepted: tally.accepted,
            written: tally.written,
            unsent: tally.accepted - tally.written,
            dropped: tally.dropped,
            clean: self.clean,
        }
    }

    // ---- the reader's side ----

    /// Messages waiting for `recv`.
    #[cfg(test)]
    pub(crate) fn inbound_len(&self) -> usize {
        self.inbound.len()
    }

    /// Whether the reader should stop decoding until `recv` drains the queue.
    pub(crate) fn inbound_full(&self) -> bool {
        self.inbound.bytes() >= self.options.max_inbound || self.inbound.len() >= 1024
    }

    pub(crate) fn poll_room(&mut self, waker: &Waker) -> Poll<()> {
        if !self.inbound_full() || self.terminated {
            return Poll::Ready(());
        }
        self.room_waker = Some(waker.clone());
        Poll::Pending
    }

    /// Called by the reader, once the handler has seen the messages of its last read: whether
    /// to wait, before reading again, until the reply now queued or being written is written.
    /// The peer of a request and its reply (an echo) sends its next message only once it has
    /// the reply, so a read made before that finds nothing, and the kernel arms a wake-up for
    /// it (io_uring's poll) or the legacy driver makes a read that fails with `EAGAIN`; read
    /// after the write, it usually finds the next message already there. `None`: read now.
    /// `Some(list)`: wait ([`poll_read_deferred`](Self::poll_read_deferred)); when `list` is
    /// true the caller puts the connection on the core's list of deferred readers, which ends
    /// the wait after a tick if the write has not completed by then (a peer that does not read
    /// must not stop us from reading) and turns waiting off until the queue drains.
    pub(crate) fn defer_read(&mut self) -> Option<bool> {
        if self.terminated || self.defer & DEFER_OFF != 0 || self.buffered_amount() == 0 {
            return None;
        }
        let list = self.defer & DEFER_LISTED == 0;
        self.defer |= READ_DEFERRED | DEFER_LISTED;
        Some(list)
    }

    /// Ready once the deferred read may go ahead: the write completed, failed, or took too
    /// long, or the connection is being torn down.
    pub(crate) fn poll_read_deferred(&mut self, waker: &Waker) -> Poll<()> {
        if self.defer & READ_DEFERRED == 0 || self.terminated {
            self.defer &= !READ_DEFERRED;
            return Poll::Ready(());
        }
        self.room_waker = Some(waker.clone());
        Poll::Pending
    }

    /// The core's list of deferred readers dropped this connection a tick after listing it: a
    /// wait still going on is ended, and waits are off until the queue drains.
    pub(crate) fn deferral_expired(&mut self) {
        self.defer &= !DEFER_LISTED;
        if self.defer & READ_DEFERRED != 0 {
            self.defer |= DEFER_OFF;
            self.release_reader();
        }
    }

    /// Ends the reader's wait for a write, if it waits.
    fn release_reader(&mut self) {
        if self.defer & READ_DEFERRED != 0 {
            self.defer &= !READ_DEFERRED;
            if let Some(w) = self.room_waker.take() {
                w.wake();
            }
        }
    }

    /// Whether the handler has taken every message received so far (and, since the handler
    /// runs between the reader's polls, has queued whatever it sends in reply). The reader
    /// waits for this before answering the peer's close or failing the connection, so replies
    /// to earlier messages go out before our close frame, as they would from a server that
    /// handled each message as it was read. A handler that never reads is not waited for.
    pub(crate) fn poll_handler_caught_up(&mut self, waker: &Waker) -> Poll<()> {
        let never_reads = self.handler_polled && !self.recv_called;
        if self.inbound.is_empty() || !self.handler_running || never_reads || self.terminated {
            return Poll::Ready(());
        }
        self.room_waker = Some(waker.clone());
        Poll::Pending
    }

    /// The handler's task is about to be polled for the first time.
    pub(crate) fn handler_started(&mut self) {
        self.handler_polled = true;
        if let Some(w) = self.room_waker.take() {
            w.wake();
        }
    }

    /// Hands a decoded data message to `recv`, unless we are already closing (RFC 6455 allows
    /// discarding data after sending a close frame).
    pub(crate) fn push_inbound(&mut self, message: Message) {
        if self.phase != Phase::Open {
            return;
        }
        self.inbound.push(message);
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
    }

    /// The reader got bytes from the peer at `at` (or, after pausing for the handler, resumed
    /// reading: the pause was ours, so the peer gets a fresh interval).
    pub(crate) fn heard(&mut self, at: Stamp) {
        self.last_heard = at;
    }

    /// A text or binary message, read at `at`: it also counts against the idle timeout.
    pub(crate) fn push_message(&mut self, message: Message, at: Stamp) {
        self.last_message = at;
        self.push_inbound(message);
    }

    /// Answers a ping, coalescing with any pong not yet written.
    pub(crate) fn on_ping(&mut self, payload: Bytes) {
        if !self.options.auto_pong {
            // The handler answers (or not): the ping is a message like any other.
            self.push_inbound(Message::Ping(payload));
            return;
        }
        if self.phase == Phase::Open {
            let pongs = &mut self.tx().pending_pongs;
            if pongs.len() == MAX_PENDING_PONGS {
                pongs.remove(0);
            }
            pongs.push(payload);
            self.wake_writer();
        }
    }

    /// The peer's close frame arrived: reply (echoing its code) unless we closed first.
    /// Returns true when the reader is done.
    pub(crate) fn on_close_frame(&mut self, frame: Option<CloseFrame>) {
        self.tally.received = Some(Box::new(frame.clone()));
        if self.phase == Phase::Open {
            let payload = match &frame {
                Some(f) => f.code.to_be_bytes().to_vec(),
                None => Vec::new(),
            };
            self.queue_close_frame(frame.as_ref().map(|f| f.code), &payload);
            self.push_close_message(frame);
        }
        self.shutdown_after_close = true;
        self.finish_inbound();
        self.wake_writer();
    }

    fn push_close_message(&mut self, frame: Option<CloseFrame>) {
        self.inbound.push(Message::Close(frame));
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
    }

    /// The peer broke the protocol: close with its code, tell `recv`, stop reading.
    pub(crate) fn on_protocol_error(&mut self, err: ProtocolError) {
        if self.phase == Phase::Open {
            let code = err.close_code();
            self.queue_close_frame(Some(code), &code.to_be_bytes());
        }
        self.inbound_error = Some(Box::new(err));
        self.shutdown_after_close = true;
        self.finish_inbound();
        self.wake_writer();
    }

    /// The handler failed (panic or error): close with `code` if still open.
    pub(crate) fn fail(&mut self, code: u16) {
        if self.phase == Phase::Open && !self.terminated {
            self.queue_close_frame(Some(code), &code.to_be_bytes());
        }
    }

    /// The socket hit EOF or an error: nothing more will be read, nothing can be written.
    pub(crate) fn on_read_end(&mut self) {
        self.finish_inbound();
        self.arm_close_timer();
        if self.tally.received.is_none() {
            // No close frame: an abnormal closure, the writer gives up too.
            self.phase = Phase::Closed;
            self.wake_writer();
            self.wake_senders();
        }
    }

    pub(crate) fn finish_inbound(&mut self) {
        self.inbound_done = true;
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("phase", &self.phase)
            .field("inbound", &self.inbound.len())
            .field("queued_bytes", &self.buffered_amount())
            .field("report", &self.tally)
            .finish_non_exhaustive()
    }
}

/// The writer's next step; the bytes are in the buffers passed to `poll_write_job`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteJob {
    /// Write the buffer: an automatic pong.
    Control,
    /// Write the buffer: queued messages; report the bytes with `on_data_written`.
    Data,
    /// Write the parts, in order, in one vectored write; report the bytes with
    /// `on_data_written`.
    Parts,
    /// Write the close frame, then half-close the socket if `shutdown`.
    Close {
        /// Half-close after the frame.
        shutdown: bool,
    },
    /// Nothing more will be written.
    Stop,
}

#[cfg(test)]
mod tests {
    use std::{cell::RefCell, time::Duration};

    use super::*;

    /// Every connection keeps its state for its whole life: with the `Rc`'s two counts it
    /// must stay within the allocator's 224-byte class (it was 512 before the sending side and
    /// the report's rare parts were boxed and the timestamps narrowed, 256 before the inbound
    /// queue was).
    #[test]
    fn the_state_fits_the_224_byte_class() {
        let size = std::mem::size_of::<RefCell<Shared>>() + 2 * std::mem::size_of::<usize>();
        assert!(size <= 224, "Rc<RefCell<Shared>> takes {size} bytes");
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }

    #[test]
    fn stamps_keep_order_and_distance_to_the_nanosecond() {
        Stamp::now();
        let start = Instant::now();
        let a = Stamp::at(start);
        let b = Stamp::at(start + Duration::from_nanos(1_500));
        assert!(a < b);
        assert_eq!(a.until(b), Duration::from_nanos(1_500));
        assert_eq!(b.until(a), Duration::ZERO);
        let later = Stamp::at(start + Duration::from_secs(86_400 * 400));
        assert_eq!(a.until(later), Duration::from_secs(86_400 * 400));
    }

    #[test]
    fn an_idle_connection_holds_no_sending_side_until_it_writes() {
        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let mut s = shared.borrow_mut();
        assert!(s.tx.is_none());
        assert_eq!(s.buffered_amount(), 0);
        s.queue_data(OpCode::Text, Bytes::from_static(b"hi"), false)
            .unwrap();
        assert_eq!(s.buffered_amount(), 4);
        let report = s.report();
        assert_eq!((report.accepted, report.written, report.unsent), (1, 0, 1));
    }

    #[test]
    fn the_inbound_queue_is_allocated_with_the_first_message_and_counts_its_bytes() {
        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let mut s = shared.borrow_mut();
        assert!(s.inbound.0.is_none());
        s.push_inbound(Message::text("abc"));
        s.push_inbound(Message::binary(vec![0; 5]));
        assert_eq!((s.inbound.len(), s.inbound.bytes()), (2, 8));
        let waker = Waker::noop();
        assert_eq!(
            s.poll_recv(waker),
            Poll::Ready(Some(Ok(Message::text("abc"))))
        );
        assert_eq!((s.inbound.len(), s.inbound.bytes()), (1, 5));
        s.on_close_frame(None);
        assert_eq!((s.inbound.len(), s.inbound.bytes()), (2, 5));
        assert!(s.inbound.0.is_some(), "kept once allocated");
    }

    #[test]
    fn the_report_keeps_the_peers_close_frame() {
        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let mut s = shared.borrow_mut();
        s.on_close_frame(Some(CloseFrame {
            code: 4001,
            reason: "bye".into(),
        }));
        let report = s.report();
        assert_eq!(report.sent_code, Some(4001));
        assert_eq!(
            report.received,
            Some(Some(CloseFrame {
                code: 4001,
                reason: "bye".into()
            }))
        );
    }

    /// A state with the close timer installed, as `run` sets it up, and the weak count it
    /// starts with (its own reference to itself).
    fn attached(close_timeout: Duration) -> (SharedRef, usize) {
        let shared = Shared::new(
            Arc::new(WsOptions::new().close_timeout(close_timeout)),
            ClientId::new(0, 1),
        );
        shared.borrow_mut().attach(-1);
        let own = Rc::weak_count(&shared);
        (shared, own)
    }

    #[test]
    fn the_close_timer_ends_when_the_connection_finishes() {
        crate::testing::run(async {
            let (shared, own) = attached(Duration::from_secs(30));
            monoio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(Rc::weak_count(&shared), own, "no timer before the close");
            assert!(shared.borrow_mut().start_close(1000, ""));
            monoio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(
                Rc::weak_count(&shared),
                own + 1,
                "the armed timer holds the state"
            );
            shared.borrow_mut().set_finished();
            monoio::time::sleep(Duration::from_millis(10)).await;
            assert_eq!(Rc::weak_count(&shared), own, "the timer has ended");
            assert!(!shared.borrow().terminated);
        });
    }

    #[test]
    fn the_close_timer_terminates_a_connection_that_does_not_finish_in_time() {
        crate::testing::run(async {
            let (shared, own) = attached(Duration::from_millis(30));
            shared.borrow_mut().on_read_end();
            monoio::time::sleep(Duration::from_millis(100)).await;
            assert!(shared.borrow().terminated);
            assert_eq!(Rc::weak_count(&shared), own);
        });
    }
}
