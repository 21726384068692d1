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
    proto::{encode_frame, CloseFrame, FrameHeader, OpCode, ProtocolError},
    ws::{deflate::SendDeflate, options::BackpressurePolicy, Message, WsOptions},
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

/// Most pongs waiting to be written; see `Shared::pending_pongs`.
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

/// The state itself.
pub(crate) struct Shared {
    pub(crate) phase: Phase,
    options: Arc<WsOptions>,
    /// permessage-deflate's sending side, when it was negotiated.
    pub(crate) deflate: Option<Box<SendDeflate>>,

    // Inbound: decoded messages waiting for `recv`.
    inbound: VecDeque<Message>,
    inbound_bytes: usize,
    /// The protocol error that ended reading, reported once by `recv`.
    inbound_error: Option<Box<ProtocolError>>,
    /// No more messages will arrive.
    inbound_done: bool,
    recv_waker: Option<Waker>,
    /// The driver, waiting for `recv` to make room.
    room_waker: Option<Waker>,

    // Outbound: frames encoded back to back, waiting for the writer.
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
    flush_wakers: WakerList,
    /// Bytes of the data stream written to the socket.
    written_bytes: u64,
    /// Pongs owed, oldest first. Bounded: past [`MAX_PENDING_PONGS`] the oldest is dropped,
    /// as RFC 6455 5.5.3 allows answering only the most recent ping, so a ping flood from a
    /// peer that does not read cannot grow memory.
    pending_pongs: Vec<Bytes>,
    /// Encoded close frame, written after everything queued before it.
    pending_close: Option<Box<[u8]>>,
    close_written: bool,
    /// Half-close the socket once the close frame is out: set when the peer closed first or
    /// when we fail the connection.
    shutdown_after_close: bool,
    /// The writer, waiting for something to write; before the writer starts (on the first
    /// thing to write: a connection that never writes never has one), whoever starts it.
    writer_waker: Option<Waker>,

    /// Tear down now: no handshake, no flush.
    pub(crate) terminated: bool,
    /// The route handler's future is still running: a dropped handle then leaves the close
    /// to the handler's outcome (1000, or 1011 on error or panic).
    pub(crate) handler_running: bool,
    /// [`WebSocket`](super::WebSocket) handles alive: when the last goes and no handler runs,
    /// the connection is closed normally.
    pub(crate) handles: u32,
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
    /// a reused fd. (Not an `Option`: 4 bytes pack beside the flags, and the state then fits
    /// an allocation size class below.)
    socket: RawFd,
    /// Starts the close timer; called once, when the close begins or the peer leaves.
    close_timer: Option<Box<dyn FnOnce()>>,
    /// The connection is over and its report final.
    finished: bool,
    finished_wakers: WakerList,
    /// The reader has stopped: the peer closed, left, or broke the protocol.
    reader_done: bool,
    reader_done_waker: Option<Waker>,

    // Liveness, judged by the core's sweep (`check_liveness`).
    /// When the connection was upgraded (for `max_lifetime`).
    opened: Instant,
    /// When the reader last got bytes from the peer, of any frame. Our sends never touch it.
    last_heard: Instant,
    /// When the last complete text or binary message arrived (for `idle_timeout`).
    last_message: Instant,
    /// When the sweep last queued an automatic ping; unanswered while not before `last_heard`.
    last_ping_sent: Option<Instant>,
    /// The sweep found the peer gone (no answer to its ping) and terminated the connection.
    pub(crate) peer_gone: bool,

    report: CloseReport,
}

impl Shared {
    pub(crate) fn new(options: Arc<WsOptions>) -> SharedRef {
        let now = Instant::now();
        Rc::new(RefCell::new(Shared {
            phase: Phase::Open,
            options,
            deflate: None,
            inbound: VecDeque::new(),
            inbound_bytes: 0,
            inbound_error: None,
            inbound_done: false,
            recv_waker: None,
            room_waker: None,
            out: BytesMut::new(),
            out_ends: VecDeque::new(),
            out_total: 0,
            chunks: VecDeque::new(),
            chunks_bytes: 0,
            in_flight: 0,
            flush_wakers: WakerList::default(),
            written_bytes: 0,
            pending_pongs: Vec::new(),
            pending_close: None,
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
            close_timer: None,
            finished: false,
            finished_wakers: WakerList::default(),
            reader_done: false,
            reader_done_waker: None,
            opened: now,
            last_heard: now,
            last_message: now,
            last_ping_sent: None,
            peer_gone: false,
            report: CloseReport::default(),
        }))
    }

    // ---- the handle's side ----

    pub(crate) fn poll_recv(
        &mut self,
        waker: &Waker,
    ) -> Poll<Option<Result<Message, ProtocolError>>> {
        self.recv_called = true;
        if let Some(message) = self.inbound.pop_front() {
            self.inbound_bytes -= message.payload().len();
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
        self.report.dropped += 1;
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
        let compressed = match &self.deflate {
            Some(deflate) => deflate.would_compress(payload.len(), compress),
            None => false,
        };
        let before = self.out.len();
        if !compressed && payload.len() >= ZERO_COPY_MIN {
            FrameHeader::outgoing(true, false, opcode, None, payload.len()).encode(&mut self.out);
            self.out_total += (self.out.len() - before + payload.len()) as u64;
            self.push_chunk(payload);
        } else {
            match &mut self.deflate {
                Some(deflate) => deflate.encode(&mut self.out, opcode, &payload, compress),
                None => encode_frame(&mut self.out, true, false, opcode, None, &payload),
            }
            self.out_total += (self.out.len() - before) as u64;
        }
        self.out_ends.push_back(self.out_total);
        self.report.accepted += 1;
        self.wake_writer();
        Ok(())
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
        let before = self.out.len();
        encode_frame(&mut self.out, true, false, opcode, None, payload);
        self.out_total += (self.out.len() - before) as u64;
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

    /// Installs the driver's socket (to cut it on termination) and close timer.
    pub(crate) fn attach(&mut self, socket: RawFd, close_timer: Box<dyn FnOnce()>) {
        self.socket = socket;
        self.close_timer = Some(close_timer);
    }

    fn arm_close_timer(&mut self) {
        if let Some(arm) = self.close_timer.take() {
            arm();
        }
    }

    /// The socket is about to be closed: forget how to cut it.
    pub(crate) fn detach(&mut self) {
        self.socket = -1;
        self.close_timer = None;
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
        self.pending_close = Some(Box::from(&frame[..]));
        self.report.sent_code = code;
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
        self.out_total += frame.len() as u64;
        self.out_ends.push_back(self.out_total);
        self.push_chunk(frame);
        self.report.accepted += 1;
        self.wake_writer();
        Ok(())
    }

    /// Bytes queued or being written, not yet handed to the kernel (`ws`'s `bufferedAmount`;
    /// frame headers included).
    pub(crate) fn buffered_amount(&self) -> usize {
        self.out.len() + self.chunks_bytes + self.in_flight
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
        let mut report = self.report.clone();
        report.unsent = report.accepted - report.written;
        report
    }

    // ---- the reader's side ----

    /// Whether the reader should stop decoding until `recv` drains the queue.
    pub(crate) fn inbound_full(&self) -> bool {
        self.inbound_bytes >= self.options.max_inbound || self.inbound.len() >= 1024
    }

    pub(crate) fn poll_room(&mut self, waker: &Waker) -> Poll<()> {
        if !self.inbound_full() || self.terminated {
            return Poll::Ready(());
        }
        self.room_waker = Some(waker.clone());
        Poll::Pending
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
        self.inbound_bytes += message.payload().len();
        self.inbound.push_back(message);
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
    }

    /// The reader got bytes from the peer at `at` (or, after pausing for the handler, resumed
    /// reading: the pause was ours, so the peer gets a fresh interval).
    pub(crate) fn heard(&mut self, at: Instant) {
        self.last_heard = at;
    }

    /// A text or binary message, read at `at`: it also counts against the idle timeout.
    pub(crate) fn push_message(&mut self, message: Message, at: Instant) {
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
            if self.pending_pongs.len() == MAX_PENDING_PONGS {
                self.pending_pongs.remove(0);
            }
            self.pending_pongs.push(payload);
            self.wake_writer();
        }
    }

    /// The peer's close frame arrived: reply (echoing its code) unless we closed first.
    /// Returns true when the reader is done.
    pub(crate) fn on_close_frame(&mut self, frame: Option<CloseFrame>) {
        self.report.received = Some(frame.clone());
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
        self.inbound.push_back(Message::Close(frame));
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
        if self.report.received.is_none() {
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
            .field("queued_bytes", &self.out.len())
            .field("report", &self.report)
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
