//! One connection on its core, HTTP phase: read a request head, route it, run the pipeline
//! (hooks, body, handler) and write the reply, as long as keep-alive allows; or, for an
//! upgrade request, run the pre-upgrade hooks, validate the handshake, answer 101 and hand the
//! connection to the WebSocket phase ([`super::ws_conn`]).

use std::{net::SocketAddr, rc::Rc, sync::Arc};

use bytes::{Bytes, BytesMut};
use http::{Method, StatusCode};
use monoio::time::timeout;

use super::{
    catch::{catch_unwind_local, panic_message, CatchInPlace, TaskKind},
    io_util::{linger, read_more, write_bytes, write_reply, Conn, CutOnDrop},
    worker::{ConnGuard, CoreState},
    ws_conn, ServerConfig,
};
use crate::{
    app::{
        pipeline::{self, BodySource, RouteOutcome, Routed, UpgradeDecision},
        App, HttpError, Reply,
    },
    http::{
        framing, wants_keep_alive, write_response, write_switching_protocols, BodyDecoder, Framing,
        HeadError, HeadParser,
    },
    proto,
};

/// Smallest free space offered to a read.
pub(crate) const READ_CHUNK: usize = 32 * 1024;
/// A new connection's first buffer: a request head is usually under a kilobyte (clients send
/// 0.2-0.7 KB, browsers without large cookies under 1 KB), and the buffer grows for larger
/// heads and bodies (a read more). Every handshake allocates and frees one, and the allocator
/// keeps what the freed ones took: with mimalloc, idle memory at 10,000 connections was 3,370
/// bytes per connection with 4 KiB (and with 2 KiB), 3,160 with 1 KiB.
const FIRST_READ: usize = 1024;

pub(crate) async fn serve<S: Conn>(
    stream: S,
    peer: Option<SocketAddr>,
    app: App,
    core: Rc<CoreState>,
    config: Arc<ServerConfig>,
) {
    let guard = core.enter(stream.as_raw_fd());
    serve_entered(stream, guard, peer, app, core, config).await;
}

/// [`serve`] for a connection the accept loop has already counted (so the next accept's
/// `max_handshakes` check sees it even before this task first runs).
pub(crate) async fn serve_entered<S: Conn>(
    stream: S,
    guard: ConnGuard,
    peer: Option<SocketAddr>,
    app: App,
    core: Rc<CoreState>,
    config: Arc<ServerConfig>,
) {
    let fd = stream.as_raw_fd();
    let mut stream = stream;
    let cut = CutOnDrop::new(fd);
    if core.shutting_down.get() {
        // Accepted just before the shutdown but first run after the drain began: the drain
        // has already cut the connections in their HTTP phase, and would not see this one
        // blocked in its first read until the handshake deadline.
        return;
    }
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    let mut first = true;
    loop {
        let wait = if first {
            config.handshake_timeout
        } else {
            app.inner.keep_alive_timeout
        };
        let head = match timeout(wait, read_head(&mut stream, &mut buf, &config)).await {
            // An idle keep-alive connection just ends; a first request that never came is 408.
            Err(_) if first => return refuse(&mut stream, StatusCode::REQUEST_TIMEOUT, &[]).await,
            Err(_) | Ok(HeadRead::Closed) => return,
            Ok(HeadRead::Invalid(e)) => return refuse(&mut stream, e.status(), &[]).await,
            Ok(HeadRead::Complete(head)) => head,
        };
        first = false;
        if proto::is_upgrade_request(&head) {
            return upgrade(stream, buf, head, peer, &app, &core, guard, cut).await;
        }
        if core.shutting_down.get() {
            return refuse(&mut stream, StatusCode::SERVICE_UNAVAILABLE, &[]).await;
        }
        // Boxed: a plain request's future is most of the connection's, and WebSocket
        // handshakes, which never need it, would otherwise allocate room for it too.
        if !Box::pin(serve_http(&mut stream, &mut buf, head, peer, &app, &core)).await {
            let fd = stream.as_raw_fd();
            linger(&mut stream, fd).await;
            return;
        }
    }
}

/// A connection accepted while the server is full (`max_connections`, `max_handshakes`):
/// 503 without reading its request, then closed.
pub(crate) async fn refuse_busy<S: Conn>(stream: S, _guard: ConnGuard) {
    let mut stream = stream;
    let _cut = CutOnDrop::new(stream.as_raw_fd());
    refuse(&mut stream, StatusCode::SERVICE_UNAVAILABLE, &[]).await;
}

/// One plain request. Returns whether the connection may serve another.
async fn serve_http<S: Conn>(
    stream: &mut S,
    buf: &mut BytesMut,
    head: http::Request<()>,
    peer: Option<SocketAddr>,
    app: &App,
    core: &CoreState,
) -> bool {
    let framing = match framing(&head) {
        Ok(f) => f,
        Err(e) => {
            let _ = write_reply(
                stream,
                &HttpError::new(e.status().as_u16(), e.to_string()).into_reply(),
                false,
                false,
            )
            .await;
            return false;
        }
    };
    let head_only = head.method() == Method::HEAD;
    let keep_alive = wants_keep_alive(&head);
    let Routed { route, req } = match pipeline::route_request(app, head, peer, false) {
        RouteOutcome::Routed(routed) => routed,
        RouteOutcome::NotFound(reply) => {
            // The body was not read: only a bodiless request leaves the stream in sync.
            let keep = keep_alive && framing == Framing::None;
            return write_reply(stream, &reply, keep, head_only).await.is_ok() && keep;
        }
    };
    req.set_clients(core.local.clients());
    let mut body = ConnBody {
        stream: &mut *stream,
        buf: &mut *buf,
        framing,
        done: framing == Framing::None,
    };
    // A panicking hook or handler answers 500 and ends this connection, nothing else.
    let run = catch_unwind_local(pipeline::run_http(&route, &req, &mut body));
    let outcome = match app.inner.request_timeout {
        None => run.await,
        Some(limit) => match timeout(limit, run).await {
            Ok(outcome) => outcome,
            Err(_) => {
                pipeline::run_on_timeout(&route, &req).await;
                return false;
            }
        },
    };
    let (reply, keep) = match outcome {
        Ok(reply) => (reply, keep_alive && body.done),
        Err(payload) => {
            tracing::error!(
                path = req.path(),
                "handler panicked: {}",
                panic_message(&*payload)
            );
            (
                HttpError::internal("Internal Server Error").into_reply(),
                false,
            )
        }
    };
    if write_reply(stream, &reply, keep, head_only).await.is_err() {
        return false;
    }
    pipeline::run_on_response(&route, &req, reply.status()).await;
    keep
}

/// The body of the request being served, read from the connection on demand.
struct ConnBody<'a, S> {
    stream: &'a mut S,
    buf: &'a mut BytesMut,
    framing: Framing,
    /// The body has been consumed: the next request starts at `buf`.
    done: bool,
}

impl<S: Conn> BodySource for ConnBody<'_, S> {
    async fn read_body(&mut self, limit: usize) -> Result<Bytes, HttpError> {
        if self.framing == Framing::None {
            self.done = true;
            return Ok(Bytes::new());
        }
        let mut decoder = BodyDecoder::new(self.framing, limit);
        loop {
            match decoder.decode(self.buf) {
                Ok(Some(body)) => {
                    self.done = true;
                    return Ok(body);
                }
                Ok(None) => {}
                Err(e) => return Err(HttpError::new(e.status().as_u16(), e.to_string())),
            }
            match read_more(self.stream, self.buf, READ_CHUNK).await {
                Ok(0) | Err(_) => {
                    return Err(HttpError::new(
                        400,
                        "connection closed before the whole body",
                    ))
                }
                Ok(_) => {}
            }
        }
    }
}

/// An upgrade request: route, hooks, handshake, `verify_client`, 101, then the WebSocket phase.
#[allow(clippy::too_many_arguments)]
async fn upgrade<S: Conn>(
    stream: S,
    buf: BytesMut,
    head: http::Request<()>,
    peer: Option<SocketAddr>,
    app: &App,
    core: &Rc<CoreState>,
    guard: ConnGuard,
    cut: CutOnDrop,
) {
    // Rebound in this order so the guard drops before the stream it guards.
    let mut stream = stream;
    let mut cut = cut;
    if head.method() != Method::GET {
        // WebSocket routes are GET only: an upgrade with another method is refused the way
        // `ws` refuses it, whatever routes the path has.
        return refuse(
            &mut stream,
            StatusCode::METHOD_NOT_ALLOWED,
            &[("Allow", "GET")],
        )
        .await;
    }
    let Routed { route, req } = match pipeline::route_request(app, head, peer, true) {
        RouteOutcome::Routed(routed) => routed,
        RouteOutcome::NotFound(reply) => return answer_and_close(&mut stream, &reply).await,
    };
    req.set_clients(core.local.clients());
    if core.shutting_down.get() {
        return refuse(&mut stream, StatusCode::SERVICE_UNAVAILABLE, &[]).await;
    }
    match catch_unwind_local(pipeline::run_upgrade_hooks(&route, &req)).await {
        Ok(UpgradeDecision::Upgrade) => {}
        Ok(UpgradeDecision::Reply(reply)) => {
            answer_and_close(&mut stream, &reply).await;
            pipeline::run_on_response(&route, &req, reply.status()).await;
            return;
        }
        Err(payload) => {
            tracing::error!(
                path = req.path(),
                "upgrade hook panicked: {}",
                panic_message(&*payload)
            );
            return answer_and_close(
                &mut stream,
                &HttpError::internal("Internal Server Error").into_reply(),
            )
            .await;
        }
    }
    let handshake = match proto::validate_request(req.head()) {
        Ok(h) => h,
        Err(e) => return refuse(&mut stream, e.status(), e.response_headers()).await,
    };
    let options = app.ws_options();
    let deflate = match (&options.per_message_deflate, &handshake.extensions) {
        (Some(config), Some(offers)) => match proto::deflate::negotiate(offers, &config.policy()) {
            Ok(agreed) => agreed,
            Err(e) => {
                tracing::debug!("refusing upgrade: {e}");
                let e = proto::HandshakeError::InvalidExtensions;
                return refuse(&mut stream, e.status(), e.response_headers()).await;
            }
        },
        _ => None,
    };
    // `verify_client` and `handle_protocols` are user code too: a panic in either is a 500.
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let verdict = options.verify_client.as_ref().map_or(Ok(()), |v| v(&req));
        verdict.map(|()| pick_protocol(&handshake.protocols, &req, options))
    }));
    let protocol = match checked {
        Ok(Ok(protocol)) => protocol,
        Ok(Err(reply)) => return answer_and_close(&mut stream, &reply).await,
        Err(payload) => {
            tracing::error!(
                path = req.path(),
                "verify_client or handle_protocols panicked: {}",
                panic_message(&*payload)
            );
            return answer_and_close(
                &mut stream,
                &HttpError::internal("Internal Server Error").into_reply(),
            )
            .await;
        }
    };
    // Shutdown may have begun while the hooks ran.
    if core.shutting_down.get() {
        return refuse(&mut stream, StatusCode::SERVICE_UNAVAILABLE, &[]).await;
    }
    let mut out = Vec::with_capacity(192);
    let extensions = deflate.as_ref().map(|agreed| agreed.response.as_str());
    write_switching_protocols(&mut out, &handshake.accept, protocol.as_deref(), extensions);
    if write_bytes(&mut stream, out).await.is_err() {
        return;
    }
    cut.disarm();
    // The WebSocket phase runs as a task of its own, so the HTTP phase's state (this future)
    // is freed instead of staying allocated for the connection's whole life. The task holds
    // the phase's future itself, caught in place (no box beside it).
    let ws_phase = ws_conn::run(
        stream,
        buf,
        route.ws_handler.clone(),
        req,
        protocol,
        Arc::clone(options),
        deflate,
        Rc::clone(core),
        guard,
    );
    monoio::spawn(CatchInPlace::new(ws_phase, TaskKind::Connection));
}

/// The subprotocol to answer with: `handle_protocols`' pick if it was offered, else the first
/// offered.
fn pick_protocol(
    offered: &[String],
    req: &crate::app::Request,
    options: &crate::WsOptions,
) -> Option<String> {
    match &options.handle_protocols {
        None => offered.first().cloned(),
        Some(pick) => {
            let picked = pick(offered, req)?;
            if offered.contains(&picked) {
                Some(picked)
            } else {
                tracing::warn!(
                    picked,
                    "handle_protocols picked a protocol the client did not offer"
                );
                None
            }
        }
    }
}

enum HeadRead {
    Complete(http::Request<()>),
    Invalid(HeadError),
    Closed,
}

async fn read_head<S: Conn>(stream: &mut S, buf: &mut BytesMut, config: &ServerConfig) -> HeadRead {
    let mut parser = HeadParser::new();
    loop {
        match parser.parse(buf, &config.head_limits) {
            Ok(Some((head, used))) => {
                // Whatever follows the head is the body, the next request or WebSocket data.
                let _ = buf.split_to(used);
                return HeadRead::Complete(head);
            }
            Ok(None) => {}
            Err(e) => return HeadRead::Invalid(e),
        }
        match read_more(stream, buf, 1024).await {
            Ok(0) | Err(_) => return HeadRead::Closed,
            Ok(_) => {}
        }
    }
}

/// Writes a reply with `Connection: close` and closes without losing it to a reset.
async fn answer_and_close<S: Conn>(stream: &mut S, reply: &Reply) {
    if write_reply(stream, reply, false, false).await.is_ok() {
        let fd = stream.as_raw_fd();
        linger(stream, fd).await;
    }
}

/// Answers with an empty-bodied HTTP error and closes.
async fn refuse<S: Conn>(stream: &mut S, status: StatusCode, headers: &[(&str, &str)]) {
    let mut out = Vec::with_capacity(128);
    write_response(&mut out, status, headers, b"");
    if write_bytes(stream, out).await.is_ok() {
        let fd = stream.as_raw_fd();
        linger(stream, fd).await;
    }
}
