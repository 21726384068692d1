//! One route: a method, a path pattern, an HTTP handler and/or a WebSocket handler, and its
//! own hooks.

use std::{future::Future, sync::Arc};

use http::Method;

use super::{
    hooks::LocalFuture, mapped::Mapped, BoxError, HandlerOutput, HandlerReply, Hook, Reply, Request,
};
use crate::ws::WebSocket;

/// A plain HTTP handler, type-erased.
pub(crate) type HttpHandlerFn =
    Arc<dyn Fn(Request) -> LocalFuture<Result<Reply, BoxError>> + Send + Sync>;

/// A WebSocket handler, type-erased. The function is shared by all cores (`Send + Sync`); the
/// future it returns runs on the core that accepted the connection and need not be `Send`.
pub(crate) type WsHandlerFn =
    Arc<dyn Fn(WebSocket, Request) -> LocalFuture<Result<(), BoxError>> + Send + Sync>;

/// A route, declared in full (Fastify's `route({ method, url, handler, wsHandler })`).
///
/// A GET route may have both handlers: plain requests go to `handler`, upgrade requests to
/// `ws_handler`.
///
/// ```
/// use ringsocket::{App, Message, Route};
///
/// let app = App::builder()
///     .route(
///         Route::get("/hello")
///             .handler(|_req| async { "hello from http" })
///             .ws_handler(|ws, _req| async move {
///                 let _ = ws.send(Message::text("hello client")).await;
///             }),
///     )
///     .build()
///     .unwrap();
/// # drop(app);
/// ```
#[derive(Clone)]
pub struct Route {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) handler: Option<HttpHandlerFn>,
    pub(crate) ws_handler: Option<WsHandlerFn>,
    pub(crate) hooks: Vec<Hook>,
    pub(crate) body_limit: Option<usize>,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Route")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("handler", &self.handler.is_some())
            .field("ws_handler", &self.ws_handler.is_some())
            .finish_non_exhaustive()
    }
}

macro_rules! method_constructors {
    ($($name:ident => $method:ident),* $(,)?) => {
        $(
            #[doc = concat!("A `", stringify!($method), "` route for `path`.")]
            pub fn $name(path: &str) -> Self {
                Self::new(Method::$method, path)
            }
        )*
    };
}

impl Route {
    /// A route for any method.
    pub fn new(method: Method, path: &str) -> Self {
        Self {
            method,
            path: path.to_owned(),
            handler: None,
            ws_handler: None,
            hooks: Vec::new(),
            body_limit: None,
        }
    }

    method_constructors! {
        get => GET, post => POST, put => PUT, delete => DELETE, patch => PATCH, head => HEAD,
        options => OPTIONS,
    }

    /// The plain HTTP handler: gets the request, returns anything [`IntoReply`](crate::IntoReply)
    /// (or a `Result` of it).
    #[must_use]
    pub fn handler<H, Fut>(mut self, handler: H) -> Self
    where
        H: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: HandlerReply,
    {
        self.handler = Some(Arc::new(move |req| {
            Box::pin(Mapped::new(handler(req), HandlerReply::into_result))
        }));
        self
    }

    /// The WebSocket handler, for upgrade requests (GET routes only; anything else fails at
    /// build with "websocket handler can only be declared in GET method").
    #[must_use]
    pub fn ws_handler<H, Fut>(mut self, handler: H) -> Self
    where
        H: Fn(WebSocket, Request) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: HandlerOutput,
    {
        self.ws_handler = Some(Arc::new(move |ws, req| {
            Box::pin(Mapped::new(handler(ws, req), HandlerOutput::into_result))
        }));
        self
    }

    /// A hook for this route only (Fastify's route-level `onRequest`, `preHandler`, ...); it
    /// runs after the scope's hooks of the same kind.
    #[must_use]
    pub fn hook(mut self, hook: Hook) -> Self {
        self.hooks.push(hook);
        self
    }

    /// Largest body accepted for this route; larger gets 413. Default: the app's
    /// [`body_limit`](crate::AppBuilder::body_limit).
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }
}
