//! One connection on its core: the HTTP phase (read the head, route, validate, answer 101 or
//! an error), then the WebSocket phase with three tasks sharing [`Shared`]: this task reads
//! and decodes, a writer task owns the socket's write side, and the handler runs on its own.

use std::{
    cell::RefCell,
    future::poll_fn,
    net::SocketAddr,
    os::fd::{AsRawFd, RawFd},
    rc::Rc,
    rc::Weak,
    sync::Arc,
    time::Duration,
};

use bytes::BytesMut;
use http::StatusCode;
use monoio::{
    buf::IoBufMut,
    io::{AsyncReadRent, AsyncWriteRentExt, OwnedReadHalf, OwnedWriteHalf, Splitable},
    net::TcpStream,
    time::timeout,
};

use super::{
    catch::{panic_message, CatchUnwind},
    worker::CoreState,
    ServerConfig,
};
use crate::{
    app::{App, Request, WsRoute},
    http::{write_response, write_switching_protocols, HeadError, HeadParser},
    proto::{self, Decoder, DecoderConfig, Message as Frame},
    ws::{
        shared::{Shared, SharedRef, WriteJob},
        WebSocket,
    },
};

/// Smallest free space offered to a read; big frames get bigger reads.
const READ_CHUNK: usize = 8 * 1024;
const MAX_READ_CHUNK: usize = 256 * 1024;
/// How long a refused request's connection is drained before it is closed, so the client reads
/// the answer instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// Longest wait for the handler to take earlier messages before a close is answered or a
/// protocol error fails the connection.
const CATCH_UP: Duration = Duration::from_secs(1);

pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    app: App,
    core: Rc<CoreState>,
    config: Arc<ServerConfig>,
) {
    let fd = stream.as_raw_fd();
    let guard = core.enter(fd);
    let mut stream = stream;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);

    let head = match timeout(
        config.handshake_timeout,
        read_head(&mut stream, &mut buf, &config),
    )
    .await
    {
        Err(_) => return refuse(stream, StatusCode::REQUEST_TIMEOUT, &[]).await,
        Ok(HeadRead::Closed) => return,
        Ok(HeadRead::Invalid(e)) => return refuse(stream, e.status(), &[]).await,
        Ok(HeadRead::Complete(head)) => head,
    };

    let Some(route) = app.ws_route(head.uri().path()).cloned() else {
        return refuse(stream, StatusCode::NOT_FOUND, &[]).await;
    };
    if !proto::is_upgrade_request(&head) {
        // A plain request to a WebSocket-only route: 404 with an empty body, as
        // @fastify/websocket answers.
        return refuse(stream, StatusCode::NOT_FOUND, &[]).await;
    }
    if core.shutting_down.get() {
        return refuse(stream, StatusCode::SERVICE_UNAVAILABLE, &[]).await;
    }
    let handshake = match proto::validate_request(&head) {
        Ok(h) => h,
        Err(e) => return refuse(stream, e.status(), e.response_headers()).await,
    };

    let mut out = Vec::with_capacity(160);
    write_switching_protocols(&mut out, &handshake.accept, None, None);
    let (res, _) = stream.write_all(out).await;
    if res.is_err() {
        return;
    }

    let options = app.ws_options().clone();
    let decoder = Decoder::new(DecoderConfig {
        max_message_size: options.max_payload,
        max_fragments: options.get_max_fragments(),
        ..DecoderConfig::server()
    });
    let close_timeout = options.close_timeout;
    let shared = Shared::new(options);
    shared.borrow_mut().attach(
        socket_cutter(fd),
        close_timer(Rc::downgrade(&shared), close_timeout),
    );
    core.register_open(guard.id, Rc::clone(&shared));

    let (reader, writer) = stream.into_split();
    let writer = monoio::spawn(CatchUnwind::new(write_loop(writer, fd, Rc::clone(&shared))));
    spawn_handler(
        route,
        WebSocket::new(Rc::clone(&shared), guard.id, Some(peer), None),
        Request::new(head, Some(peer)),
        Rc::clone(&shared),
    );

    read_loop(reader, buf, decoder, &shared).await;
    shared.borrow_mut().set_reader_done();
    if let Err(payload) = writer.await {
        tracing::error!("writer panicked: {}", panic_message(&*payload));
    }
    let report = {
        let mut shared = shared.borrow_mut();
        shared.mark_clean();
        shared.set_finished();
        shared.report()
    };
    tracing::debug!(id = guard.id, ?report, "connection closed");
    drop(guard);
}

enum HeadRead {
    Complete(http::Request<()>),
    Invalid(HeadError),
    Closed,
}

async fn read_head(stream: &mut TcpStream, buf: &mut BytesMut, config: &ServerConfig) -> HeadRead {
    let mut parser = HeadParser::new();
    loop {
        match parser.parse(buf, &config.head_limits) {
            Ok(Some((head, used))) => {
                // Whatever follows the head is already WebSocket data: keep it.
                let _ = buf.split_to(used);
                return HeadRead::Complete(head);
            }
            Ok(None) => {}
            Err(e) => return HeadRead::Invalid(e),
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(READ_CHUNK);
        }
        let owned = std::mem::take(buf);
        let len = owned.len();
        let (res, slice) = stream.read(owned.slice_mut(len..)).await;
        *buf = slice.into_inner();
        match res {
            Ok(0) | Err(_) => return HeadRead::Closed,
            Ok(_) => {}
        }
    }
}

/// Answers with an HTTP error and closes without losing the answer to a reset.
async fn refuse(mut stream: TcpStream, status: StatusCode, headers: &[(&str, &str)]) {
    let mut out = Vec::with_capacity(128);
    write_response(&mut out, status, headers, b"");
    let (res, _) = stream.write_all(out).await;
    if res.is_ok() {
        let fd = stream.as_raw_fd();
        linger(&mut stream, fd).await;
    }
}

/// Half-closes, then reads and discards until the peer closes or [`LINGER`] passes: closing a
/// socket with unread input makes the kernel send RST, which can destroy the answer we just
/// wrote before the client reads it.
async fn linger<R: AsyncReadRent>(reader: &mut R, fd: RawFd) {
    // SAFETY: fd is the live socket owned by the caller.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
    let _ = timeout(LINGER, async {
        let mut scratch = vec![0u8; 4096];
        loop {
            let (res, b) = reader.read(scratch).await;
            scratch = b;
            match res {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

fn spawn_handler(route: WsRoute, ws: WebSocket, req: Request, shared: SharedRef) {
    let future = (route.handler)(ws, req);
    monoio::spawn(async move {
        // Runs before the handler's first poll; the reader, on this same core, only looks at
        // the flag after that poll has finished.
        shared.borrow_mut().handler_started();
        let outcome = CatchUnwind::new(future).await;
        let mut shared = shared.borrow_mut();
        shared.handler_running = false;
        match outcome {
            Ok(Ok(())) => {
                if !shared.handle_alive {
                    shared.start_close(1000, "");
                }
            }
            Ok(Err(e)) => {
                tracing::warn!("websocket handler failed: {e}");
                shared.fail(1011);
            }
            Err(payload) => {
                tracing::error!("websocket handler panicked: {}", panic_message(&*payload));
                shared.fail(1011);
            }
        }
    });
}

/// Reads and decodes until the peer's close frame, EOF, a protocol error, or termination.
async fn read_loop(
    mut reader: OwnedReadHalf<TcpStream>,
    mut buf: BytesMut,
    mut decoder: Decoder,
    shared: &SharedRef,
) {
    loop {
        loop {
            if shared.borrow().inbound_full() {
                poll_fn(|cx| shared.borrow_mut().poll_room(cx.waker())).await;
            }
            if shared.borrow().terminated {
                return;
            }
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => match frame {
                    Frame::Ping(payload) => shared.borrow_mut().on_ping(payload),
                    Frame::Pong(_) => {}
                    Frame::Close(close) => {
                        catch_up(shared).await;
                        shared.borrow_mut().on_close_frame(close);
                        return;
                    }
                    data => shared.borrow_mut().push_inbound(data.into()),
                },
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("protocol error: {e}");
                    catch_up(shared).await;
                    shared.borrow_mut().on_protocol_error(e);
                    drain_input(&mut reader, buf).await;
                    return;
                }
            }
        }
        let spare = buf.capacity() - buf.len();
        if spare < READ_CHUNK / 2 {
            buf.reserve(READ_CHUNK.max(buf.len().min(MAX_READ_CHUNK)));
        }
        let len = buf.len();
        let (res, slice) = reader.read(buf.slice_mut(len..)).await;
        buf = slice.into_inner();
        match res {
            Ok(0) | Err(_) => {
                shared.borrow_mut().on_read_end();
                return;
            }
            Ok(_) => {}
        }
    }
}

/// Lets the handler take the messages that arrived before a close frame or a protocol
/// error (see `Shared::poll_handler_caught_up`), for at most [`CATCH_UP`].
async fn catch_up(shared: &SharedRef) {
    let _ = timeout(
        CATCH_UP,
        poll_fn(|cx| shared.borrow_mut().poll_handler_caught_up(cx.waker())),
    )
    .await;
}

/// After failing the connection: discard input until the peer closes (the writer cuts the
/// socket after the close timeout), so our close frame is not lost to a reset.
async fn drain_input(reader: &mut OwnedReadHalf<TcpStream>, mut buf: BytesMut) {
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
/// that, waits for the reader to see the peer's close and cuts the socket at the close
/// timeout.
async fn write_loop(mut writer: OwnedWriteHalf<TcpStream>, fd: RawFd, shared: SharedRef) {
    let mut spare = BytesMut::with_capacity(READ_CHUNK);
    loop {
        let job = poll_fn(|cx| shared.borrow_mut().poll_write_job(cx.waker(), &mut spare)).await;
        match job {
            WriteJob::Stop => break,
            WriteJob::Control | WriteJob::Data => {
                let (res, b) = writer.write_all(spare).await;
                spare = b;
                match res {
                    Ok(n) => {
                        if job == WriteJob::Data {
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
                    // SAFETY: fd is this connection's live socket (the write half keeps it open).
                    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
                }
                break;
            }
        }
    }
    // Wait for the peer's close (the reader ends); the close timer, armed when the close
    // began, terminates the connection if it does not come in time.
    poll_fn(|cx| shared.borrow_mut().poll_reader_done(cx.waker())).await;
    // The write half is the last owner of the socket: once this task ends the fd is closed
    // and may be reused, so the cutter must go first.
    shared.borrow_mut().detach();
}

/// Cuts both directions of the socket: a pending read returns EOF, a pending write fails.
fn socket_cutter(fd: RawFd) -> Box<dyn Fn()> {
    Box::new(move || {
        // SAFETY: the cutter is removed (`Shared::detach`) before the socket is closed, so
        // `fd` is still this connection's socket whenever this runs.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    })
}

/// Once the close begins (or the peer leaves), the connection has `close_timeout` to finish;
/// then it is terminated, whatever it is waiting for (a close reply, a write to a peer that
/// does not read).
fn close_timer(shared: Weak<RefCell<Shared>>, close_timeout: Duration) -> Box<dyn FnOnce()> {
    Box::new(move || {
        monoio::spawn(async move {
            monoio::time::sleep(close_timeout).await;
            if let Some(shared) = shared.upgrade() {
                shared.borrow_mut().terminate();
            }
        });
    })
}
