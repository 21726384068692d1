//! The request pipeline, runtime-agnostic: routing, hooks in Fastify's order, handlers, the
//! error path. The server drives it and does the I/O (reading the body through
//! [`BodySource`], writing the reply, the upgrade).

use std::{future::Future, net::SocketAddr, sync::Arc};

use bytes::Bytes;
use http::StatusCode;

#[cfg(feature = "json")]
use super::reply::Body;
use super::{hooks::RequestHookFn, App, BoxError, HttpError, Reply, Request, RouteEntry};

/// Where the pipeline gets the body from: the connection (server) or memory (inject).
pub(crate) trait BodySource {
    /// Reads the whole body, refusing more than `limit` bytes.
    fn read_body(&mut self, limit: usize) -> impl Future<Output = Result<Bytes, HttpError>>;
}

/// A request matched to its route.
pub(crate) struct Routed {
    pub(crate) route: Arc<RouteEntry>,
    pub(crate) req: Request,
}

/// The outcome of routing a request head.
pub(crate) enum RouteOutcome {
    /// A route takes it.
    Routed(Routed),
    /// No route does; this is the answer: Fastify's JSON 404.
    NotFound(Reply),
}

/// Routes a request head.
pub(crate) fn route_request(
    app: &App,
    head: http::Request<()>,
    peer: Option<SocketAddr>,
    websocket: bool,
) -> RouteOutcome {
    let found = app.inner.router.find(head.method(), head.uri().path());
    let Some((route, params)) = found else {
        let message = format!("Route {}:{} not found", head.method(), head.uri().path());
        return RouteOutcome::NotFound(HttpError::new(404, message).into_reply());
    };
    // A plain request to a WebSocket-only route still runs the route's hooks (a hook may
    // answer); its missing handler then answers 404 with an empty body, as Fastify's
    // replaced handler does.
    let route = Arc::clone(route);
    RouteOutcome::Routed(Routed {
        route,
        req: Request::new(head, params, peer, websocket),
    })
}

/// Runs a plain request through hooks, body, handler and the send path; returns the reply to
/// write.
pub(crate) async fn run_http<B: BodySource>(
    route: &RouteEntry,
    req: &Request,
    body: &mut B,
) -> Reply {
    let outcome = async {
        if let Some(reply) = run_request_hooks(&route.hooks.on_request, req).await? {
            return Ok(reply);
        }
        if let Some(reply) = run_request_hooks(&route.hooks.pre_parsing, req).await? {
            return Ok(reply);
        }
        let bytes = body
            .read_body(route.body_limit)
            .await
            .map_err(|e| Box::new(e) as BoxError)?;
        req.set_body(bytes);
        if let Some(reply) = run_request_hooks(&route.hooks.pre_validation, req).await? {
            return Ok(reply);
        }
        if let Some(reply) = run_request_hooks(&route.hooks.pre_handler, req).await? {
            return Ok(reply);
        }
        match &route.handler {
            Some(handler) => handler(req.clone()).await,
            None => Ok(Reply::new().code(404)),
        }
    }
    .await;
    let reply = match outcome {
        Ok(reply) => reply,
        Err(err) => handle_error(route, req, err).await,
    };
    send_path(route, req, reply).await
}

/// What the pre-upgrade hooks decided.
pub(crate) enum UpgradeDecision {
    /// A hook (or the error path) answered: write this and close, no 101.
    Reply(Reply),
    /// Go on with the handshake.
    Upgrade,
}

/// Runs the four request hooks of an upgrade (never the send-side hooks: the reply is
/// hijacked). A hook that replies, or an error, becomes an HTTP answer instead of the 101.
pub(crate) async fn run_upgrade_hooks(route: &RouteEntry, req: &Request) -> UpgradeDecision {
    let hooks = &route.hooks;
    let stages = [
        &hooks.on_request,
        &hooks.pre_parsing,
        &hooks.pre_validation,
        &hooks.pre_handler,
    ];
    for stage in stages {
        match run_request_hooks(stage, req).await {
            Ok(None) => {}
            Ok(Some(reply)) => return UpgradeDecision::Reply(send_path(route, req, reply).await),
            Err(err) => {
                let reply = handle_error(route, req, err).await;
                return UpgradeDecision::Reply(send_path(route, req, reply).await);
            }
        }
    }
    UpgradeDecision::Upgrade
}

async fn run_request_hooks(
    hooks: &[RequestHookFn],
    req: &Request,
) -> Result<Option<Reply>, BoxError> {
    for hook in hooks {
        if let Some(reply) = hook(req.clone()).await? {
            return Ok(Some(reply));
        }
    }
    Ok(None)
}

/// The error path: `on_error` hooks (the first that replies wins), then the scope's error
/// handler, then the default JSON error reply.
pub(crate) async fn handle_error(route: &RouteEntry, req: &Request, err: BoxError) -> Reply {
    let err = HttpError::from_boxed(err);
    if err.status().is_server_error() {
        tracing::error!(method = %req.method(), path = req.path(), "request failed: {err}");
    } else {
        tracing::debug!(method = %req.method(), path = req.path(), "request refused: {err}");
    }
    for hook in &route.hooks.on_error {
        match hook(req.clone(), err.clone()).await {
            Ok(Some(reply)) => return reply,
            Ok(None) => {}
            Err(e) => tracing::error!("onError hook failed: {e}"),
        }
    }
    if let Some(handler) = &route.error_handler {
        return match handler(req.clone(), err).await {
            Ok(reply) => reply,
            Err(e) => HttpError::from_boxed(e).into_reply(),
        };
    }
    err.into_reply()
}

/// `pre_serialization` (JSON bodies) then `on_send`. An error here is answered by the error
/// path without running the send hooks again.
async fn send_path(route: &RouteEntry, req: &Request, reply: Reply) -> Reply {
    match try_send_path(route, req, reply).await {
        Ok(reply) => reply,
        Err(err) => handle_error(route, req, err).await,
    }
}

async fn try_send_path(
    route: &RouteEntry,
    req: &Request,
    mut reply: Reply,
) -> Result<Reply, BoxError> {
    #[cfg(feature = "json")]
    if !route.hooks.pre_serialization.is_empty() {
        if let Body::Json(value) = reply.body_ref() {
            let mut value = value.clone();
            for hook in &route.hooks.pre_serialization {
                value = hook(req.clone(), value).await?;
            }
            reply.set_body(Body::Json(value));
        }
    }
    for hook in &route.hooks.on_send {
        reply = hook(req.clone(), reply).await?;
    }
    Ok(reply)
}

/// `on_response` hooks, after the reply was written.
pub(crate) async fn run_on_response(route: &RouteEntry, req: &Request, status: StatusCode) {
    for hook in &route.hooks.on_response {
        hook(req.clone(), status).await;
    }
}

/// `on_timeout` hooks, when the request timeout expired before the reply.
pub(crate) async fn run_on_timeout(route: &RouteEntry, req: &Request) {
    for hook in &route.hooks.on_timeout {
        hook(req.clone()).await;
    }
}
