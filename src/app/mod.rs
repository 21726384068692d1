//! The Fastify-like surface: an [`App`] is built once from routes, scopes, hooks and options,
//! then shared by every core. Runtime-agnostic: nothing here knows sockets or monoio.

mod error;
mod hooks;
mod mapped;
pub(crate) mod pipeline;
mod reply;
mod request;
mod route;
pub(crate) mod router;
mod scope;

use std::{fmt, future::Future, sync::Arc, time::Duration};

use http::Method;

#[cfg(feature = "json")]
pub use self::reply::Json;
pub use self::{
    error::HttpError,
    hooks::{Hook, HookKind, HookOutput, SendHookOutput},
    reply::{HandlerReply, IntoReply, Reply},
    request::Request,
    route::Route,
    router::{Params, RouteError},
    scope::Scope,
};
pub(crate) use self::{
    hooks::{HookFn, LocalFuture},
    route::{HttpHandlerFn, WsHandlerFn},
};
use self::{router::Router, scope::ScopeData};
use crate::{cluster::Clients, ws::WsOptions};

/// The error type handlers and hooks may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a WebSocket handler's future may resolve to: `()` or a `Result` whose error goes to
/// [`WsOptions::error_handler`].
pub trait HandlerOutput {
    /// Converts into the framework's result.
    ///
    /// # Errors
    ///
    /// The handler's own error.
    fn into_result(self) -> Result<(), BoxError>;
}

impl HandlerOutput for () {
    fn into_result(self) -> Result<(), BoxError> {
        Ok(())
    }
}

impl<E: Into<BoxError>> HandlerOutput for Result<(), E> {
    fn into_result(self) -> Result<(), BoxError> {
        self.map_err(Into::into)
    }
}

/// A mistake in the app's registration, reported by [`AppBuilder::build`] instead of while
/// serving.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Two routes for the same method and path shape.
    #[error(transparent)]
    Route(#[from] RouteError),
    /// A WebSocket handler on a route whose method is not GET.
    #[error("websocket handler can only be declared in GET method ({method} {path})")]
    WsNotGet {
        /// The route's method.
        method: String,
        /// The route's path.
        path: String,
    },
    /// A route with neither an HTTP nor a WebSocket handler.
    #[error("route {method} {path} has no handler")]
    MissingHandler {
        /// The route's method.
        method: String,
        /// The route's path.
        path: String,
    },
    /// A path or prefix that does not start with `/`.
    #[error("path must start with '/': {0:?}")]
    InvalidPath(String),
    /// An option value that cannot work (named, with the reason).
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// Why.
        reason: String,
    },
}

/// The error handler of a scope: turns an error before the reply into the reply.
pub(crate) type ErrorHandlerFn =
    Arc<dyn Fn(Request, HttpError) -> LocalFuture<Result<Reply, BoxError>> + Send + Sync>;

/// The hooks in force for one route, by stage, parents' first.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) on_request: Vec<hooks::RequestHookFn>,
    pub(crate) pre_parsing: Vec<hooks::RequestHookFn>,
    pub(crate) pre_validation: Vec<hooks::RequestHookFn>,
    pub(crate) pre_handler: Vec<hooks::RequestHookFn>,
    #[cfg(feature = "json")]
    pub(crate) pre_serialization: Vec<hooks::SerializeHookFn>,
    pub(crate) on_send: Vec<hooks::SendHookFn>,
    pub(crate) on_response: Vec<hooks::ResponseHookFn>,
    pub(crate) on_error: Vec<hooks::ErrorHookFn>,
    pub(crate) on_timeout: Vec<hooks::TimeoutHookFn>,
}

impl Hooks {
    fn add(&mut self, hook: &Hook) {
        match (&hook.f, hook.kind) {
            (HookFn::Request(f), HookKind::OnRequest) => self.on_request.push(f.clone()),
            (HookFn::Request(f), HookKind::PreParsing) => self.pre_parsing.push(f.clone()),
            (HookFn::Request(f), HookKind::PreValidation) => self.pre_validation.push(f.clone()),
            (HookFn::Request(f), _) => self.pre_handler.push(f.clone()),
            #[cfg(feature = "json")]
            (HookFn::Serialize(f), _) => self.pre_serialization.push(f.clone()),
            (HookFn::Send(f), _) => self.on_send.push(f.clone()),
            (HookFn::Response(f), _) => self.on_response.push(f.clone()),
            (HookFn::Error(f), _) => self.on_error.push(f.clone()),
            (HookFn::Timeout(f), _) => self.on_timeout.push(f.clone()),
        }
    }
}

/// A route as the server sees it: handlers plus everything its scopes contributed.
pub(crate) struct RouteEntry {
    pub(crate) handler: Option<HttpHandlerFn>,
    pub(crate) ws_handler: Option<WsHandlerFn>,
    pub(crate) hooks: Arc<Hooks>,
    pub(crate) error_handler: Option<ErrorHandlerFn>,
    pub(crate) body_limit: usize,
}

pub(crate) struct AppInner {
    /// The clients of the server serving this app (the latest one to start), or of the
    /// injected connections when no server runs it.
    pub(crate) clients: std::sync::Mutex<Option<Clients>>,
    pub(crate) router: Router<Arc<RouteEntry>>,
    /// Shared by every connection's state (`Arc`: a copy per connection would be 216 bytes).
    pub(crate) ws_options: Arc<WsOptions>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) keep_alive_timeout: Duration,
}

/// A built application: routes, hooks and options, immutable and shared by all cores.
///
/// ```
/// use ringsocket::{App, Hook, Message, Reply, WsOptions};
///
/// let app = App::builder()
///     .websocket(WsOptions::new().max_payload(64 * 1024))
///     .hook(Hook::on_request(|req| async move {
///         println!("{} {}", req.method(), req.path());
///     }))
///     .get("/health", |_req| async { "ok" })
///     .ws("/chat/:room", |mut ws, req| async move {
///         let room = req.param("room").unwrap_or("lobby").to_owned();
///         while let Some(Ok(message)) = ws.recv().await {
///             if message.is_close() {
///                 break;
///             }
///             let _ = ws.send(Message::text(format!("[{room}] {}", message.as_text().unwrap_or("")))).await;
///         }
///     })
///     .build()
///     .expect("routes are valid");
/// # drop(app);
/// ```
#[derive(Clone)]
pub struct App {
    pub(crate) inner: Arc<AppInner>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let routes: Vec<String> = self
            .inner
            .router
            .routes()
            .map(|(m, p)| format!("{m} {p}"))
            .collect();
        f.debug_struct("App").field("routes", &routes).finish()
    }
}

impl App {
    /// Starts building an app.
    pub fn builder() -> AppBuilder {
        AppBuilder {
            root: Scope::root(),
            ws_options: WsOptions::new(),
            body_limit: 1 << 20,
            request_timeout: None,
            keep_alive_timeout: Duration::from_secs(5),
        }
    }

    pub(crate) fn ws_options(&self) -> &Arc<WsOptions> {
        &self.inner.ws_options
    }

    /// Every connection this app serves, on every core (`fastify.websocketServer.clients`):
    /// those of the server that runs it (the latest started, if several), or of its injected
    /// connections. Empty before either.
    pub fn clients(&self) -> Clients {
        let mut slot = self.inner.clients.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert_with(Clients::detached).clone()
    }

    /// A server starts serving this app with `clients`.
    pub(crate) fn serve_with(&self, clients: Clients) {
        *self.inner.clients.lock().unwrap_or_else(|e| e.into_inner()) = Some(clients);
    }

    /// The clients injected connections join: the app's, unless a server already provided
    /// them (then injected connections form their own).
    pub(crate) fn set_clients_if_unserved(&self, clients: Clients) {
        let mut slot = self.inner.clients.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_none_or(|c| c.cores() == 0) {
            *slot = Some(clients);
        }
    }
}

/// Collects routes, scopes, hooks and options; mistakes surface in [`build`](Self::build).
///
/// Route methods (`ws`, `get`, `route`, `hook`, `register`, ...) are those of [`Scope`],
/// applied to the root scope.
pub struct AppBuilder {
    root: Scope,
    ws_options: WsOptions,
    body_limit: usize,
    request_timeout: Option<Duration>,
    keep_alive_timeout: Duration,
}

impl fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppBuilder")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

macro_rules! forward_to_root {
    ($($(#[$doc:meta])* fn $name:ident(path: &str);)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name<H, Fut>(mut self, path: &str, handler: H) -> Self
            where
                H: Fn(Request) -> Fut + Send + Sync + 'static,
                Fut: Future + 'static,
                Fut::Output: HandlerReply,
            {
                self.root = self.root.$name(path, handler);
                self
            }
        )*
    };
}

impl AppBuilder {
    /// Sets the options of every WebSocket route (the `@fastify/websocket` plugin options).
    #[must_use]
    pub fn websocket(mut self, options: WsOptions) -> Self {
        self.ws_options = options;
        self
    }

    /// Largest request body accepted, in bytes; larger gets 413. Default 1 MiB (Fastify's
    /// `bodyLimit`).
    #[must_use]
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Time a plain HTTP request has, from its head to its reply, before `on_timeout` hooks run
    /// and the connection is closed without a response. Default: none (Fastify's
    /// `connectionTimeout` 0). Never applies to WebSocket connections.
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// How long an idle keep-alive connection waits for its next request. Default 5 s (Node's
    /// `keepAliveTimeout`).
    #[must_use]
    pub fn keep_alive_timeout(mut self, timeout: Duration) -> Self {
        self.keep_alive_timeout = timeout;
        self
    }

    /// Adds a WebSocket route on `GET path` (Fastify's `{ websocket: true }`). A plain GET to
    /// it gets 404 with an empty body.
    ///
    /// The handler runs on the core that accepted the connection, in that connection's task.
    /// A handler that keeps yielding without waiting on anything (a `yield_now` loop) does not
    /// starve the core's other connections: after 16 such turns in a row its task sleeps until
    /// the next timer tick (1 ms) so the core's I/O runs. Hooks and plain HTTP handlers, and
    /// tasks a handler spawns itself, get no such guard: as in Node, they must not busy-wait.
    #[must_use]
    pub fn ws<H, Fut>(mut self, path: &str, handler: H) -> Self
    where
        H: Fn(crate::WebSocket, Request) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: HandlerOutput,
    {
        self.root = self.root.ws(path, handler);
        self
    }

    forward_to_root! {
        /// Adds a `GET` route (also answering `HEAD`).
        fn get(path: &str);
        /// Adds a `POST` route.
        fn post(path: &str);
        /// Adds a `PUT` route.
        fn put(path: &str);
        /// Adds a `DELETE` route.
        fn delete(path: &str);
        /// Adds a `PATCH` route.
        fn patch(path: &str);
        /// Adds a `HEAD` route.
        fn head(path: &str);
    }

    /// Adds a fully declared route.
    #[must_use]
    pub fn route(mut self, route: Route) -> Self {
        self.root = self.root.route(route);
        self
    }

    /// Adds a hook to the root scope: it applies to every route.
    #[must_use]
    pub fn hook(mut self, hook: Hook) -> Self {
        self.root = self.root.hook(hook);
        self
    }

    /// Sets the root error handler (Fastify's `setErrorHandler`): it turns an error raised
    /// before the reply (in a hook or handler, including before an upgrade) into the reply.
    /// Default: the error's status (500 unless an [`HttpError`]) with a JSON body.
    #[must_use]
    pub fn error_handler<H, Fut>(mut self, handler: H) -> Self
    where
        H: Fn(Request, HttpError) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: HandlerReply,
    {
        self.root = self.root.error_handler(handler);
        self
    }

    /// Registers a child scope under `prefix` (Fastify's `register(plugin, { prefix })`):
    /// hooks and the error handler set inside apply to it and its children only. A route `/`
    /// inside is reachable at `prefix` and `prefix/`.
    #[must_use]
    pub fn register<F>(mut self, prefix: &str, build: F) -> Self
    where
        F: FnOnce(Scope) -> Scope,
    {
        self.root = self.root.register(prefix, build);
        self
    }

    /// Finishes the app.
    ///
    /// # Errors
    ///
    /// The first registration mistake: a conflicting route, a WebSocket handler on another
    /// method than GET, a route without handler, a bad path or option.
    pub fn build(self) -> Result<App, BuildError> {
        if self.body_limit == 0 {
            return Err(BuildError::InvalidOption {
                name: "body_limit",
                reason: "must be at least 1 byte".into(),
            });
        }
        self.ws_options.validate()?;
        let mut router = Router::new();
        let root = self.root.into_data()?;
        flatten(
            &root,
            "",
            &Hooks::default(),
            None,
            self.body_limit,
            &mut router,
        )?;
        Ok(App {
            inner: Arc::new(AppInner {
                clients: std::sync::Mutex::new(None),
                router,
                ws_options: Arc::new(self.ws_options),
                request_timeout: self.request_timeout,
                keep_alive_timeout: self.keep_alive_timeout,
            }),
        })
    }
}

/// Walks the scope tree, giving each route the hooks of its scope chain (parents first, then
/// its own) and the nearest error handler.
fn flatten(
    scope: &ScopeData,
    parent_prefix: &str,
    parent_hooks: &Hooks,
    parent_error: Option<&ErrorHandlerFn>,
    body_limit: usize,
    router: &mut Router<Arc<RouteEntry>>,
) -> Result<(), BuildError> {
    let prefix = format!("{}{}", parent_prefix, scope.prefix.trim_end_matches('/'));
    let mut hooks = parent_hooks.clone();
    for hook in &scope.hooks {
        hooks.add(hook);
    }
    let error_handler = scope.error_handler.as_ref().or(parent_error);
    for route in &scope.routes {
        if route.ws_handler.is_some() && route.method != Method::GET {
            return Err(BuildError::WsNotGet {
                method: route.method.to_string(),
                path: route.path.clone(),
            });
        }
        if route.handler.is_none() && route.ws_handler.is_none() {
            return Err(BuildError::MissingHandler {
                method: route.method.to_string(),
                path: route.path.clone(),
            });
        }
        let mut route_hooks = hooks.clone();
        for hook in &route.hooks {
            route_hooks.add(hook);
        }
        let route_hooks = Arc::new(route_hooks);
        for path in full_paths(&prefix, &route.path)? {
            let entry = || {
                Arc::new(RouteEntry {
                    handler: route.handler.clone(),
                    ws_handler: route.ws_handler.clone(),
                    hooks: Arc::clone(&route_hooks),
                    error_handler: error_handler.cloned(),
                    body_limit: route.body_limit.unwrap_or(body_limit),
                })
            };
            router.insert(route.method.clone(), &path, entry())?;
            // Fastify's exposeHeadRoutes: a GET with an HTTP handler also answers HEAD,
            // unless a HEAD route is declared for the same path.
            if route.method == Method::GET && route.handler.is_some() {
                let _ = router.insert(Method::HEAD, &path, entry());
            }
        }
    }
    for child in &scope.children {
        flatten(child, &prefix, &hooks, error_handler, body_limit, router)?;
    }
    Ok(())
}

/// The paths a route answers on: `prefix + path`, and for `/` (or empty) inside a prefix both
/// `prefix` and `prefix/`.
fn full_paths(prefix: &str, path: &str) -> Result<Vec<String>, BuildError> {
    if !path.is_empty() && !path.starts_with('/') {
        return Err(BuildError::InvalidPath(path.to_owned()));
    }
    if prefix.is_empty() {
        return Ok(vec![if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        }]);
    }
    if path.is_empty() || path == "/" {
        return Ok(vec![prefix.to_owned(), format!("{prefix}/")]);
    }
    Ok(vec![format!("{prefix}{path}")])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_mistakes_fail_at_build() {
        let err = App::builder()
            .ws("/a", |_ws, _req| async {})
            .ws("/a", |_ws, _req| async {})
            .build()
            .unwrap_err();
        assert!(
            matches!(err, BuildError::Route(RouteError::Conflict { .. })),
            "{err}"
        );
        let err = App::builder()
            .ws("a", |_ws, _req| async {})
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                BuildError::Route(RouteError::InvalidPattern { .. }) | BuildError::InvalidPath(_)
            ),
            "{err}"
        );
        let err = App::builder()
            .route(Route::post("/p").ws_handler(|_ws, _req| async {}))
            .build()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "websocket handler can only be declared in GET method (POST /p)"
        );
        let err = App::builder().route(Route::get("/p")).build().unwrap_err();
        assert_eq!(
            err,
            BuildError::MissingHandler {
                method: "GET".into(),
                path: "/p".into()
            }
        );
    }

    #[test]
    fn prefixed_root_route_answers_with_and_without_trailing_slash() {
        assert_eq!(full_paths("/baz", "/").unwrap(), vec!["/baz", "/baz/"]);
        assert_eq!(full_paths("/baz", "").unwrap(), vec!["/baz", "/baz/"]);
        assert_eq!(full_paths("/baz", "/x").unwrap(), vec!["/baz/x"]);
        assert_eq!(full_paths("", "/x").unwrap(), vec!["/x"]);
        assert_eq!(full_paths("", "").unwrap(), vec!["/"]);
    }
}
