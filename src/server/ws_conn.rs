//! One connection on its core, WebSocket phase: a reader that reads and decodes, the route's
//! handler, and a writer (started by the first thing to write) that owns the write side,
//! sharing the connection's [`Shared`] state, all three polled by one task (a [`Drive`]).
//! Everything stays on this core.

use std::{
    future::{poll_fn, Future},
    os::fd::RawFd,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::BytesMut;
use monoio::{
    io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable},
    time::timeout,
};

use super::{
    catch::{panic_message, CatchUnwind},
    conn::READ_CHUNK,
    defer,
    drive::Drive,
    io_util::{wait_readable, write_parts, Conn, IoParts},
    read_buf::{ReadBufs, Tail},
    worker::{ConnGuard, CoreState},
};
use crate::{
    app::{Request, WsHandlerFn},
    cluster::local::LocalCore,
    proto::{deflate::DeflateAgreement, Decoder, DecoderConfig, Message as Frame, ProtocolError},
    ws::{
        deflate::{RecvInflate, SendDeflate},
        shared::{Shared, SharedRef, Stamp, WriteJob},
        WebSocket, WsOptions,
    },
};

const MAX_READ_CHUNK: usize = 256 * 1024;
/// Largest read sized for the rest of one frame (the decoder waits whole for binary frames
/// up to 1 MiB).
const MAX_FRAME_READ: usize = (1 << 20) + 16;
/// A connection whose reads come further apart than this is quiet: its next read, if nothing
/// is buffered, uses [`QUIET_READ`] bytes instead of a full chunk. Busy connections (a message
/// every few milliseconds) keep full buffers; idle ones hold half a kilobyte.
const QUIET_AFTER: Duration = Duration::from_millis(50);
const QUIET_READ: usize = 512;
/// Longest wait for the handler to take earlier messages before a close is answered or a
/// protocol error fails the connection.
const CATCH_UP: Duration = Duration::from_secs(1);

/// Sets up an upgraded connection (its shared state, its reader and its handler) and returns
/// the task that runs it until it is over and its handler has returned. Without a handler (an
/// upgrade to a route with no WebSocket handler) the connection is closed at once without a
/// status code, as `@fastify/websocket` does.
///
/// The set-up is synchronous and the parts are `async` blocks that borrow what they keep: an
/// `async fn` would keep its arguments (the options, the stream, the request...) in the
/// future beside the moved copies for the connection's whole life, about 0.9 KB per
/// connection.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run<S: Conn>(
    stream: S,
    buf: BytesMut,
    handler: Option<WsHandlerFn>,
    req: Request,
    protocol: Option<String>,
    options: Arc<WsOptions>,
    deflate: Option<DeflateAgreement>,
    core: Rc<CoreState>,
    guard: ConnGuard,
) -> impl Future<Output = ()> {
    let fd = stream.as_raw_fd();
    let inbound = Inbound {
        decoder: decoder(&options, deflate.is_some()),
        inflate: deflate.as_ref().map(RecvInflate::new),
    };
    let send_deflate = deflate
        .as_ref()
        .zip(options.per_message_deflate.as_ref())
        .map(|(agreed, config)| Box::new(SendDeflate::new(agreed, config)));
    let error_handler = options.error_handler.clone();
    let liveness = options.liveness_period();
    let shared = Shared::new(options, guard.id);
    if let Some(send_deflate) = send_deflate {
        shared.borrow_mut().set_deflate(send_deflate);
    }
    shared.borrow_mut().attach(fd);
    core.register_open(guard.id, Rc::clone(&shared));
    core.watch_liveness(liveness);

    // Boxed, here and in the handler's part: only a custom error handler needs them, and
    // inline they would take their room in every connection.
    let on_protocol_error = error_handler.clone().map(|handler| {
        Box::new(ProtocolErrorReport {
            handler,
            info: ConnInfo {
                req: req.clone(),
                protocol: protocol.clone(),
                local: Rc::clone(&core.local),
            },
        })
    });
    let (reader, writer) = stream.into_split();
    let handler = match handler {
        Some(handler) => {
            let ws = WebSocket::new(
                Rc::clone(&shared),
                req.peer_addr(),
                protocol.clone(),
                Rc::clone(&core.local),
            );
            let info = ConnInfo {
                req,
                protocol,
                local: Rc::clone(&core.local),
            };
            Some(handler_part(
                handler,
                error_handler,
                ws,
                info,
                Rc::clone(&shared),
            ))
        }
        None => {
            tracing::info!(
                path = req.path(),
                "closed incoming websocket connection for path with no websocket handler"
            );
            let mut shared = shared.borrow_mut();
            shared.handler_running = false;
            shared.close_without_code();
            None
        }
    };

    let side = ReadSide {
        reader,
        bufs: ReadBufs::new(buf),
        inbound,
        shared: Rc::clone(&shared),
        on_protocol_error,
        read_at: Stamp::now(),
        // Until the peer shows it is busy, treat it as quiet: a connection that says nothing
        // after its upgrade never holds a full read buffer (nor the read loop's future).
        quiet: true,
        readable: false,
        last_read: 0,
    };
    let read = ReadPart::new(side, reading::<S>, waiting::<S>);
    Drive::new(read, handler, writer, shared, fd, guard)
}

/// A decoder of what the client sends, by the connection's options; `deflate` when
/// permessage-deflate was agreed (its messages may then have RSV1 set).
fn decoder(options: &WsOptions, deflate: bool) -> Decoder {
    Decoder::new(DecoderConfig {
        max_message_size: options.max_payload,
        max_fragments: options.get_max_fragments(),
        validate_utf8: !options.skip_utf8_validation,
        allow_rsv1: deflate,
        ..DecoderConfig::server()
    })
}

/// What the handler's error path needs to hand a new `WebSocket` to the error handler.
struct ConnInfo {
    req: Request,
    protocol: Option<String>,
    local: Rc<LocalCore>,
}

impl ConnInfo {
    /// A new handle on the connection for an error handler, and the request it is given.
    fn into_socket(self, shared: &SharedRef) -> (WebSocket, Request) {
        let ws = WebSocket::new(
            Rc::clone(shared),
            self.req.peer_addr(),
            self.protocol,
            self.local,
        );
        (ws, self.req)
    }
}

/// The route handler's part of the connection: runs the handler, then closes the connection
/// by its outcome (1000 when it returns with no handle left, 1011 on error or panic, or what
/// the error handler decides).
fn handler_part(
    handler: WsHandlerFn,
    error_handler: Option<crate::ws::options::WsErrorHandlerFn>,
    ws: WebSocket,
    info: ConnInfo,
    shared: SharedRef,
) -> HandlerPart {
    // Only a custom error handler needs the request after the handler started; otherwise keep
    // just the path for the log line, not the whole head, for the connection's lifetime.
    let req = info.req.clone();
    let on_error = match error_handler {
        Some(error_handler) => OnError::Report(Box::new((error_handler, info))),
        None => OnError::Log(info.req.path().into()),
    };
    // Marked before the handler's first poll, here rather than at every poll: the connection's
    // task polls the handler before the reader on its first pass, and only the reader looks.
    shared.borrow_mut().handler_started();
    HandlerPart {
        handler: CatchUnwind::from_box(handler(ws, req)),
        report: None,
        on_error,
        shared,
    }
}

/// What becomes of an error the handler returns.
enum OnError {
    /// Logged with the request's path, as `@fastify/websocket` does by default.
    Log(Box<str>),
    /// Given to the custom error handler, with what it needs to make a new handle.
    Report(Box<(crate::ws::options::WsErrorHandlerFn, ConnInfo)>),
}

/// The handler's future, then, only when a custom error handler hears of its error, the
/// report's. A future of its own rather than an `async` block, which kept a reference to the
/// handler's future beside it and took 80 bytes of the connection's task, where this takes 56.
struct HandlerPart {
    handler: CatchUnwind<Result<(), crate::BoxError>>,
    report: Option<Pin<Box<dyn Future<Output = ()>>>>,
    on_error: OnError,
    shared: SharedRef,
}

impl Future for HandlerPart {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        if let Some(report) = &mut this.report {
            return report.as_mut().poll(cx);
        }
        let Poll::Ready(outcome) = Pin::new(&mut this.handler).poll(cx) else {
            return Poll::Pending;
        };
        let Some(report) = handler_finished(outcome, &this.shared, &mut this.on_error) else {
            return Poll::Ready(());
        };
        this.report.insert(report).as_mut().poll(cx)
    }
}

/// Closes the connection by the handler's outcome; returns the report to the custom error
/// handler when there is one to make.
fn handler_finished(
    outcome: Result<Result<(), crate::BoxError>, Box<dyn std::any::Any + Send>>,
    shared: &SharedRef,
    on_error: &mut OnError,
) -> Option<Pin<Box<dyn Future<Output = ()>>>> {
    match outcome {
        Ok(Ok(())) => {
            let mut shared = shared.borrow_mut();
            shared.handler_running = false;
            if shared.handles == 0 {
                shared.start_close(1000, "");
            }
        }
        Ok(Err(err)) if is_reported_protocol_error(&err, shared) => {
            // The error handler already heard about this violation from the reader.
            let mut shared = shared.borrow_mut();
            shared.handler_running = false;
            shared.fail(1011);
        }
        Ok(Err(err)) => match std::mem::replace(on_error, OnError::Log(Box::default())) {
            // The default, as @fastify/websocket: log and terminate (the client sees 1006).
            OnError::Log(path) => {
                tracing::error!(path = &*path, "websocket handler failed: {err}");
                let mut shared = shared.borrow_mut();
                shared.handler_running = false;
                shared.terminate();
            }
            OnError::Report(kept) => {
                return Some(Box::pin(report_handler_error(
                    err,
                    *kept,
                    Rc::clone(shared),
                )))
            }
        },
        Err(payload) => {
            tracing::error!("websocket handler panicked: {}", panic_message(&*payload));
            let mut shared = shared.borrow_mut();
            shared.handler_running = false;
            shared.fail(1011);
        }
    }
    None
}

/// The handler returned an error and the app has a custom error handler: it gets the error, a
/// handle on the connection and the request; then the connection is closed with 1011 (if the
/// error handler did not close it).
async fn report_handler_error(
    err: crate::BoxError,
    (error_handler, info): (crate::ws::options::WsErrorHandlerFn, ConnInfo),
    shared: SharedRef,
) {
    let (ws, req) = info.into_socket(&shared);
    let handled = CatchUnwind::from_box(error_handler(err, ws, req)).await;
    if let Err(payload) = handled {
        tracing::error!(
            "websocket error handler panicked: {}",
            panic_message(&*payload)
        );
    }
    let mut shared = shared.borrow_mut();
    shared.handler_running = false;
    shared.fail(1011);
}

/// What a custom `error_handler` needs to hear about a protocol violation by the peer (as
/// `@fastify/websocket` routes a socket's `'error'` to its `errorHandler`).
struct ProtocolErrorReport {
    handler: crate::ws::options::WsErrorHandlerFn,
    info: ConnInfo,
}

fn is_reported_protocol_error(err: &crate::BoxError, shared: &SharedRef) -> bool {
    matches!(
        err.downcast_ref::<crate::Error>(),
        Some(crate::Error::Protocol(_))
    ) && shared.borrow().protocol_error_reported
}

/// What the read side works on, for the connection's whole life.
struct ReadSide<S: Conn> {
    reader: OwnedReadHalf<S>,
    bufs: ReadBufs,
    inbound: Inbound,
    shared: SharedRef,
    on_protocol_error: Option<Box<ProtocolErrorReport>>,
    /// When the bytes being decoded were read (for the idle timeout).
    read_at: Stamp,
    /// The peer's reads come further apart than [`QUIET_AFTER`].
    quiet: bool,
    /// A quiet connection's socket was found readable: read (a small buffer) rather than
    /// wait again.
    readable: bool,
    /// Bytes the last read brought: the next read's buffer follows the peer's traffic, so a
    /// connection that exchanged a few small messages and fell silent waits with a buffer of
    /// about their size, not a full chunk.
    last_read: usize,
}

/// Why the read loop stopped.
enum LoopEnd {
    /// The peer is quiet and nothing is buffered: wait for its next bytes.
    Quiet,
    /// Reading is over (close frame, EOF, protocol error, termination).
    Done,
}

/// The read side's step, handed back to [`ReadPart`] with the state.
enum Step<S: Conn> {
    /// Wait for the socket to be readable.
    Wait(ReadSide<S>),
    /// Read and decode.
    Read(ReadSide<S>),
    /// Reading is over.
    Done,
}

/// The reader's part of the connection's task. A busy peer's reads run in the read loop; a
/// quiet one's connection waits for readiness in a much smaller future that holds the read
/// side and nothing else. Each is boxed and they take turns, the read side moving from one to
/// the other: an idle connection then keeps neither the read loop's room for a read in flight
/// nor its buffers. (Inline, the read loop took 488 of the task's 640 bytes.)
///
/// The two futures are named by the functions that make them (`FR`, `FW`: function items, of
/// no size): dispatched statically, the read loop's poll and monoio's operations in it inline
/// as they did in the task (through a `dyn` box they did not: about 220 more instructions a
/// message).
struct ReadPart<S: Conn, R, W, FR, FW> {
    stage: Stage<R, W>,
    reading: FR,
    waiting: FW,
    side: std::marker::PhantomData<fn(ReadSide<S>)>,
}

// The futures are boxed and the functions never pinned: nothing in it is pinned in place.
impl<S: Conn, R, W, FR, FW> Unpin for ReadPart<S, R, W, FR, FW> {}

/// Which of the two futures runs.
enum Stage<R, W> {
    Reading(Pin<Box<R>>),
    Waiting(Pin<Box<W>>),
}

impl<S, R, W, FR, FW> ReadPart<S, R, W, FR, FW>
where
    S: Conn,
    R: Future<Output = Step<S>>,
    W: Future<Output = Step<S>>,
    FR: Fn(ReadSide<S>) -> R,
    FW: Fn(ReadSide<S>) -> W,
{
    /// The reader's part of a new connection: in the read loop when the handshake's reads
    /// brought bytes after the request, else (nearly always: a client waits for the 101)
    /// waiting, as the read loop would after one look at its empty buffer, without making the
    /// read loop's future (416 bytes) at every handshake to drop it at once.
    fn new(side: ReadSide<S>, reading: FR, waiting: FW) -> Self {
        let stage = if side.bufs.cur.is_empty() {
            Stage::Waiting(Box::pin(waiting(side)))
        } else {
            Stage::Reading(Box::pin(reading(side)))
        };
        Self {
            stage,
            reading,
            waiting,
            side: std::marker::PhantomData,
        }
    }
}

impl<S, R, W, FR, FW> Future for ReadPart<S, R, W, FR, FW>
where
    S: Conn,
    R: Future<Output = Step<S>>,
    W: Future<Output = Step<S>>,
    FR: Fn(ReadSide<S>) -> R,
    FW: Fn(ReadSide<S>) -> W,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            let step = match &mut this.stage {
                Stage::Reading(read) => read.as_mut().poll(cx),
                Stage::Waiting(wait) => wait.as_mut().poll(cx),
            };
            let Poll::Ready(step) = step else {
                return Poll::Pending;
            };
            this.stage = match step {
                Step::Wait(side) => Stage::Waiting(Box::pin((this.waiting)(side))),
                Step::Read(side) => Stage::Reading(Box::pin((this.reading)(side))),
                Step::Done => return Poll::Ready(()),
            };
        }
    }
}

/// Runs the read loop on the side until it stops; the side goes back with a quiet stop. (An
/// `async` block, not an `async fn`, which would keep the side twice.)
#[allow(clippy::manual_async_fn)]
fn reading<S: Conn>(mut side: ReadSide<S>) -> impl Future<Output = Step<S>> {
    async move {
        match read_loop(&mut side).await {
            LoopEnd::Quiet => Step::Wait(side),
            LoopEnd::Done => {
                side.shared.borrow_mut().set_reader_done();
                Step::Done
            }
        }
    }
}

/// Waits, without a buffer, until the quiet peer's socket is readable (or closed, or cut).
fn waiting<S: Conn>(side: ReadSide<S>) -> impl Future<Output = Step<S>> {
    let side = QuietSide::from(side);
    async move {
        if wait_readable(&side.reader).await.is_err() {
            let mut shared = side.shared.borrow_mut();
            shared.on_read_end();
            shared.set_reader_done();
            return Step::Done;
        }
        Step::Read(side.readable())
    }
}

/// A quiet connection's read side while it waits: all of it but the buffers, which it has
/// let go (both are empty), the flags that say it is quiet, the size of the last read (the
/// first read after the wait is a small one whatever it was, and sets it anew) and, between
/// messages, the decoder.
struct QuietSide<S: Conn> {
    reader: OwnedReadHalf<S>,
    inbound: QuietInbound,
    shared: SharedRef,
    on_protocol_error: Option<Box<ProtocolErrorReport>>,
    read_at: Stamp,
}

/// The protocol state of a quiet connection. Between messages (as nearly every idle connection
/// is) the decoder holds nothing a new one made from the options would not, so it is let go
/// and only the decompressor, whose window may carry over, is kept: 16 bytes, where the whole
/// state takes 72.
enum QuietInbound {
    Between(Option<RecvInflate>),
    Within(Box<Inbound>),
}

impl<S: Conn> From<ReadSide<S>> for QuietSide<S> {
    fn from(side: ReadSide<S>) -> Self {
        debug_assert!(side.quiet && side.bufs.cur.is_empty());
        let inbound = if side.inbound.decoder.is_between_messages() {
            QuietInbound::Between(side.inbound.inflate)
        } else {
            QuietInbound::Within(Box::new(side.inbound))
        };
        Self {
            reader: side.reader,
            inbound,
            shared: side.shared,
            on_protocol_error: side.on_protocol_error,
            read_at: side.read_at,
        }
    }
}

impl<S: Conn> QuietSide<S> {
    /// The socket is readable: the read side again, to read into a small buffer.
    fn readable(self) -> ReadSide<S> {
        let inbound = match self.inbound {
            QuietInbound::Between(inflate) => Inbound {
                decoder: decoder(self.shared.borrow().options(), inflate.is_some()),
                inflate,
            },
            QuietInbound::Within(inbound) => *inbound,
        };
        ReadSide {
            reader: self.reader,
            bufs: ReadBufs::new(BytesMut::new()),
            inbound,
            shared: self.shared,
            on_protocol_error: self.on_protocol_error,
            read_at: self.read_at,
            quiet: true,
            readable: true,
            last_read: 0,
        }
    }
}

/// Reads and decodes until the peer's close frame, EOF, a protocol error, or termination.
/// Works on the state in place, through one reference (an `async` block rather than an
/// `async fn`, which keeps each argument twice; a copy of the state would be a second one for
/// the connection's whole life); rare paths are boxed, and nothing is kept across the read
/// that can be worked out after it, so the future stays the size of its read.
#[allow(clippy::manual_async_fn)]
fn read_loop<S: Conn>(side: &mut ReadSide<S>) -> impl Future<Output = LoopEnd> + '_ {
    async move {
        loop {
            // A data message went to the handler in this round.
            let mut delivered = false;
            loop {
                if side.shared.borrow().inbound_full() {
                    let shared = &side.shared;
                    poll_fn(|cx| shared.borrow_mut().poll_room(cx.waker())).await;
                    // The peer could not be heard while we did not read: a fresh interval.
                    shared.borrow_mut().heard(Stamp::now());
                }
                if side.shared.borrow().terminated {
                    return LoopEnd::Done;
                }
                match side.inbound.next(&mut side.bufs.cur) {
                    Ok(Some(frame)) => match frame {
                        Frame::Ping(payload) => side.shared.borrow_mut().on_ping(payload),
                        Frame::Pong(_) => {}
                        Frame::Close(close) => {
                            catch_up(&side.shared).await;
                            side.shared.borrow_mut().on_close_frame(close);
                            return LoopEnd::Done;
                        }
                        data => {
                            delivered = true;
                            side.shared
                                .borrow_mut()
                                .push_message(data.into(), side.read_at);
                        }
                    },
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!("protocol error: {e}");
                        catch_up(&side.shared).await;
                        let shared = &side.shared;
                        shared.borrow_mut().on_protocol_error(e.clone());
                        if let Some(report) = side.on_protocol_error.take() {
                            shared.borrow_mut().protocol_error_reported = true;
                            // The close frame with the RFC code is already queued; the handler
                            // hears about it and may log or send nothing more.
                            let (ws, req) = report.info.into_socket(shared);
                            let fut =
                                (report.handler)(Box::new(crate::Error::Protocol(e)), ws, req);
                            monoio::spawn(async move {
                                if let Err(payload) = CatchUnwind::new(fut).await {
                                    tracing::error!(
                                        "websocket error handler panicked: {}",
                                        panic_message(&*payload)
                                    );
                                }
                            });
                        }
                        let buf = std::mem::take(&mut side.bufs.cur);
                        Box::pin(drain_input(&mut side.reader, buf)).await;
                        return LoopEnd::Done;
                    }
                }
            }
            let needed = side.inbound.decoder.wanted();
            // Room for a few reads like the last: a steady stream of equal messages then never
            // fills the buffer exactly (which would read as "more was waiting").
            let chunk = (4 * side.last_read).clamp(QUIET_READ, READ_CHUNK);
            let bufs = &mut side.bufs;
            if bufs.cur.is_empty() && bufs.cur.capacity() > 4 * chunk {
                // Do not keep a large buffer, waiting, for a peer that sends small messages.
                bufs.release();
            }
            let buf = &bufs.cur;
            let spare = buf.capacity() - buf.len();
            let want = if needed > buf.len() {
                // The rest of a large frame, in one read when it fits.
                (needed - buf.len()).clamp(READ_CHUNK, MAX_FRAME_READ)
            } else if side.quiet && buf.is_empty() {
                // A quiet connection waits for bytes without a buffer (and without this
                // future: see `ReadPart`), then reads them into a small one.
                bufs.release();
                if !std::mem::take(&mut side.readable) {
                    return LoopEnd::Quiet;
                }
                QUIET_READ
            } else if spare < chunk / 2 {
                chunk.max(buf.len().min(MAX_READ_CHUNK))
            } else {
                0
            };
            if delivered && defer::enabled() {
                wait_for_reply(&side.shared).await;
            }
            side.bufs.make_room(want);
            // The read itself, not through `read_more`: a wrapper future would be kept beside it.
            debug_assert!(
                side.bufs.cur.capacity() > side.bufs.cur.len(),
                "a read with no room would look like EOF"
            );
            let (res, Tail(buf)) = side
                .reader
                .read(Tail(std::mem::take(&mut side.bufs.cur)))
                .await;
            side.bufs.cur = buf;
            match res {
                Ok(0) | Err(_) => {
                    side.shared.borrow_mut().on_read_end();
                    return LoopEnd::Done;
                }
                Ok(n) => {
                    // A read that filled its buffer may have left more behind: grow. (The room
                    // it had is worked out afterwards, not kept across the read.)
                    let cur = &side.bufs.cur;
                    let room = cur.capacity() - (cur.len() - n);
                    side.last_read = if n >= room { READ_CHUNK } else { n };
                    // Any byte proves the peer alive, even part of a frame (a large message on a
                    // slow link); our own writes never do.
                    let now = Stamp::now();
                    side.quiet = side.read_at.until(now) >= QUIET_AFTER;
                    side.read_at = now;
                    side.shared.borrow_mut().heard(now);
                }
            }
        }
    }
}

/// After a read that gave the handler messages: lets the handler see them (one turn of the
/// connection's task), then, if it queued a reply, waits until the reply is written before the
/// next read (see `Shared::defer_read`; the core's list ends a wait that lasts).
async fn wait_for_reply(shared: &SharedRef) {
    let mut turned = false;
    poll_fn(|cx| {
        if turned {
            return Poll::Ready(());
        }
        turned = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
    let Some(list) = shared.borrow_mut().defer_read() else {
        return;
    };
    if list {
        defer::list(shared);
    }
    poll_fn(|cx| shared.borrow_mut().poll_read_deferred(cx.waker())).await;
}

/// The read side's protocol state: the frame decoder (whose configuration has the limits)
/// and, with permessage-deflate, the decompressor.
struct Inbound {
    decoder: Decoder,
    inflate: Option<RecvInflate>,
}

impl Inbound {
    /// The next message from `buf`, inflated if it was compressed.
    fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let Some(frame) = self.decoder.decode(buf)? else {
            return Ok(None);
        };
        let inflate = match &mut self.inflate {
            Some(inflate) if self.decoder.last_message_compressed() => inflate,
            _ => return Ok(Some(frame)),
        };
        let config = self.decoder.config();
        Ok(Some(match frame {
            Frame::Text(data) => {
                let text = inflate.inflate(&data, config.max_message_size)?;
                if config.validate_utf8 && simdutf8::basic::from_utf8(&text).is_err() {
                    return Err(ProtocolError::InvalidUtf8);
                }
                Frame::Text(text)
            }
            Frame::Binary(data) => Frame::Binary(inflate.inflate(&data, config.max_message_size)?),
            other => other,
        }))
    }
}

/// Lets the handler take the messages that arrived before a close frame or a protocol
/// error (see `Shared::poll_handler_caught_up`), for at most [`CATCH_UP`].
async fn catch_up(shared: &SharedRef) {
    // Boxed: a timer is 640 bytes with 128-byte alignment, and the read loop would otherwise
    // keep room for it in every connection for this rare path.
    let _ = Box::pin(timeout(
        CATCH_UP,
        poll_fn(|cx| shared.borrow_mut().poll_handler_caught_up(cx.waker())),
    ))
    .await;
}

/// After failing the connection: discard input until the peer closes (the close timer cuts
/// the socket at the close timeout), so our close frame is not lost to a reset.
async fn drain_input<R: AsyncReadRent>(reader: &mut R, mut buf: BytesMut) {
    loop {
        buf.clear();
        if buf.capacity() < READ_CHUNK {
            buf.reserve(READ_CHUNK);
        }
        let (res, b) = reader.read(buf).await;
        buf = b;
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Owns the write side: writes pongs, queued messages in order, then the close frame; after
/// that, waits for the reader to see the peer's close.
/// (An `async` block rather than an `async fn`, which would keep its arguments twice.)
#[allow(clippy::manual_async_fn)]
fn write_loop<S: Conn>(
    mut writer: OwnedWriteHalf<S>,
    fd: RawFd,
    shared: SharedRef,
) -> impl Future<Output = ()> {
    async move {
        // Allocated on the first write: an idle connection holds no write buffer.
        let mut spare = BytesMut::new();
        let mut io = IoParts::new();
        loop {
            let job = poll_fn(|cx| {
                shared
                    .borrow_mut()
                    .poll_write_job(cx.waker(), &mut spare, &mut io.parts)
            })
            .await;
            match job {
                WriteJob::Stop => break,
                WriteJob::Parts => {
                    let (res, back) = write_parts(&mut writer, io).await;
                    io = back;
                    match res {
                        Ok(n) => shared.borrow_mut().on_data_written(n),
                        Err(_) => {
                            shared.borrow_mut().on_write_error();
                            break;
                        }
                    }
                }
                WriteJob::Control | WriteJob::Data => {
                    let data = job == WriteJob::Data;
                    let (res, b) = writer.write_all(spare).await;
                    spare = b;
                    match res {
                        Ok(n) => {
                            if data {
                                shared.borrow_mut().on_data_written(n);
                            }
                        }
                        Err(_) => {
                            shared.borrow_mut().on_write_error();
                            break;
                        }
                    }
                    if spare.capacity() > MAX_READ_CHUNK * 4 {
                        // Do not keep a huge buffer around after one big message.
                        spare = BytesMut::with_capacity(READ_CHUNK);
                    }
                }
                WriteJob::Close { shutdown } => {
                    let (res, _) = writer.write_all(spare).await;
                    if res.is_err() {
                        shared.borrow_mut().on_write_error();
                        break;
                    }
                    if shutdown {
                        // SAFETY: fd is this connection's live socket (the write half keeps
                        // it open).
                        unsafe { libc::shutdown(fd, libc::SHUT_WR) };
                    }
                    break;
                }
            }
        }
        // Wait for the peer's close (the reader ends); the close timer, armed when the close
        // began, terminates the connection if it does not come in time.
        poll_fn(|cx| shared.borrow_mut().poll_reader_done(cx.waker())).await;
        // The write half is the last owner of the socket: once this future is dropped the fd
        // is closed and may be reused, so the cutter must go first.
        shared.borrow_mut().detach();
    }
}

/// Starts the write loop (the first thing to write has been queued).
pub(super) fn start_writer<S: Conn>(
    writer: OwnedWriteHalf<S>,
    fd: RawFd,
    shared: SharedRef,
) -> CatchUnwind<()> {
    CatchUnwind::new(write_loop(writer, fd, shared))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClientId;

    fn read_side(
        reader: OwnedReadHalf<monoio::net::UnixStream>,
    ) -> ReadSide<monoio::net::UnixStream> {
        ReadSide {
            reader,
            bufs: ReadBufs::new(BytesMut::new()),
            inbound: Inbound {
                decoder: Decoder::new(DecoderConfig::server()),
                inflate: None,
            },
            shared: Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1)),
            on_protocol_error: None,
            read_at: Stamp::now(),
            quiet: true,
            readable: false,
            last_read: 0,
        }
    }

    /// A busy connection keeps the read loop's future: rare paths (draining after an error,
    /// a message assembled from parts) must stay boxed out of it. (It was 424 bytes, and the
    /// decoder's state 168, before they were; 288 and 104 before the read's buffer went in as
    /// a `Tail`, the decoder's error was boxed and nothing but the buffer was kept across the
    /// read. It is 232 on a Unix-typed socket, as here and as every served connection now is
    /// (see `io_util::Socket`); on monoio's `TcpStream` it was 416.) An idle one keeps only the
    /// read side and its wait for readiness, boxed, and the task a pointer to them.
    #[test]
    fn a_connection_keeps_a_small_read_side_and_an_idle_one_a_smaller_one() {
        crate::testing::run(async {
            let (stream, _peer) = monoio::net::UnixStream::pair().unwrap();
            let (reader, _writer) = stream.into_split();
            let mut side = read_side(reader);
            assert!(std::mem::size_of::<Inbound>() <= 72);
            let side_size = std::mem::size_of_val(&side);
            assert!(side_size <= 184, "the read side is {side_size} bytes");
            let read = read_loop(&mut side);
            let size = std::mem::size_of_val(&read);
            assert!(size <= 240, "read_loop's future is {size} bytes");
            drop(read);
            let wait = waiting(side);
            let size = std::mem::size_of_val(&wait);
            // The read side less its buffers, its last read's size and (between messages) its
            // decoder, and the wait: within the allocator's 160-byte class (224 with them).
            assert!(size <= 160, "the wait's future is {size} bytes");
            let (stream, _peer) = monoio::net::UnixStream::pair().unwrap();
            let (reader, _writer) = stream.into_split();
            let part = ReadPart::new(read_side(reader), reading, waiting);
            assert_eq!(std::mem::size_of_val(&part), 16);
        });
    }

    /// One frame, masked as a client sends it.
    fn masked(fin: bool, opcode: crate::proto::OpCode, payload: &[u8]) -> BytesMut {
        let mut out = BytesMut::new();
        crate::proto::encode_frame(&mut out, fin, false, opcode, Some([1, 2, 3, 4]), payload);
        out
    }

    #[test]
    fn a_quiet_side_between_messages_lets_its_decoder_go_and_gets_the_options_one_back() {
        crate::testing::run(async {
            let (stream, _peer) = monoio::net::UnixStream::pair().unwrap();
            let (reader, _writer) = stream.into_split();
            let mut side = read_side(reader);
            side.shared = Shared::new(
                Arc::new(WsOptions::new().max_payload(300)),
                ClientId::new(0, 1),
            );
            let mut buf = masked(true, crate::proto::OpCode::Text, b"hi");
            assert_eq!(
                side.inbound.decoder.decode(&mut buf),
                Ok(Some(Frame::Text("hi".into())))
            );
            let quiet = QuietSide::from(side);
            assert!(matches!(quiet.inbound, QuietInbound::Between(None)));
            let mut side = quiet.readable();
            assert_eq!(side.inbound.decoder.config().max_message_size, 300);
            let mut buf = masked(true, crate::proto::OpCode::Binary, &[7; 301]);
            assert_eq!(
                side.inbound.decoder.decode(&mut buf),
                Err(ProtocolError::MessageTooBig {
                    size: 301,
                    limit: 300
                })
            );
        });
    }

    #[test]
    fn a_quiet_side_within_a_message_keeps_its_decoder_and_finishes_the_message() {
        crate::testing::run(async {
            let (stream, _peer) = monoio::net::UnixStream::pair().unwrap();
            let (reader, _writer) = stream.into_split();
            let mut side = read_side(reader);
            // The first fragment, with a code point cut in two: the rest comes after the wait.
            let mut buf = masked(false, crate::proto::OpCode::Text, b"caf\xc3");
            assert_eq!(side.inbound.decoder.decode(&mut buf), Ok(None));
            assert!(buf.is_empty());
            let quiet = QuietSide::from(side);
            assert!(matches!(quiet.inbound, QuietInbound::Within(_)));
            let mut side = quiet.readable();
            let mut buf = masked(true, crate::proto::OpCode::Continuation, b"\xa9!");
            assert_eq!(
                side.inbound.decoder.decode(&mut buf),
                Ok(Some(Frame::Text("caf\u{e9}!".into())))
            );
        });
    }

    /// Every connection's task holds the handler's part and the handler's future holds the
    /// handle: 56 and 64 bytes. (As an `async` block the part took 80, and the handle kept the
    /// id and a `String` for the protocol, 80: with them the task and an echo handler's future
    /// were each in the allocator's 224-byte class, not 192.)
    #[test]
    fn the_handler_part_and_the_handle_stay_small() {
        assert_eq!(std::mem::size_of::<Option<HandlerPart>>(), 56);
        assert_eq!(std::mem::size_of::<WebSocket>(), 64);
    }

    /// Writes one masked frame, as a client sends it.
    async fn send_masked(
        peer: &mut monoio::net::UnixStream,
        opcode: crate::proto::OpCode,
        payload: &[u8],
    ) {
        use monoio::io::AsyncWriteRentExt;
        let (res, _) = peer.write_all(masked(true, opcode, payload).to_vec()).await;
        res.unwrap();
    }

    /// A quiet peer's connection waits in the small future, reads when bytes come, decodes
    /// them, and goes back to waiting; its close frame ends the part.
    #[test]
    fn a_quiet_connection_waits_reads_and_waits_again() {
        crate::testing::run(async {
            let (stream, mut peer) = monoio::net::UnixStream::pair().unwrap();
            let (reader, _writer) = stream.into_split();
            let side = read_side(reader);
            let shared = Rc::clone(&side.shared);
            let mut part = std::pin::pin!(ReadPart::new(side, reading, waiting));
            let mut cx = Context::from_waker(std::task::Waker::noop());
            assert!(part.as_mut().poll(&mut cx).is_pending());
            send_masked(&mut peer, crate::proto::OpCode::Text, b"hi").await;
            for _ in 0..50 {
                if shared.borrow().inbound_len() == 1 {
                    break;
                }
                monoio::time::sleep(Duration::from_millis(2)).await;
                let _ = part.as_mut().poll(&mut cx);
            }
            assert_eq!(shared.borrow().inbound_len(), 1, "the message was read");
            assert!(part.as_mut().poll(&mut cx).is_pending(), "waiting again");
            // The handler takes it (a close is answered once earlier messages are taken).
            let taken = shared.borrow_mut().poll_recv(std::task::Waker::noop());
            assert!(matches!(taken, Poll::Ready(Some(Ok(_)))));
            send_masked(
                &mut peer,
                crate::proto::OpCode::Close,
                &1000u16.to_be_bytes(),
            )
            .await;
            let mut done = false;
            for _ in 0..50 {
                monoio::time::sleep(Duration::from_millis(2)).await;
                if part.as_mut().poll(&mut cx).is_ready() {
                    done = true;
                    break;
                }
            }
            assert!(done, "the close frame ends the read part");
        });
    }
}
