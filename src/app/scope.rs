//! Scopes: Fastify's encapsulation. Hooks and the error handler added in a scope apply to its
//! routes and its children, never to its parent or siblings.

use std::{fmt, future::Future, sync::Arc};

use super::{
    mapped::Mapped, BuildError, ErrorHandlerFn, HandlerOutput, HandlerReply, Hook, HttpError,
    Request, Route,
};
use crate::ws::WebSocket;

/// A scope under construction: what [`AppBuilder::register`](crate::AppBuilder::register) hands
/// to its closure (and what the closure returns).
///
/// ```
/// use ringsocket::{App, Hook, Reply};
///
/// let app = App::builder()
///     .register("/v1", |v1| {
///         v1.hook(Hook::on_request(|req| async move {
///             req.insert(String::from("v1"));
///         }))
///         .get("/version", |req| async move { req.get::<String>().unwrap_or_default() })
///         .register("/admin", |admin| admin.get("/", |_req| async { Reply::new().code(204) }))
///     })
///     .build()
///     .unwrap();
/// # drop(app);
/// ```
pub struct Scope {
    data: ScopeData,
    errors: Vec<BuildError>,
}

pub(crate) struct ScopeData {
    pub(crate) prefix: String,
    pub(crate) hooks: Vec<Hook>,
    pub(crate) error_handler: Option<ErrorHandlerFn>,
    pub(crate) routes: Vec<Route>,
    pub(crate) children: Vec<ScopeData>,
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope")
            .field("prefix", &self.data.prefix)
            .field("routes", &self.data.routes)
            .field("hooks", &self.data.hooks)
            .field("children", &self.data.children.len())
            .finish_non_exhaustive()
    }
}

macro_rules! method_routes {
    ($($(#[$doc:meta])* fn $name:ident => $ctor:ident;)*) => {
        $(
            $(#[$doc])*
            #[must_use]
            pub fn $name<H, Fut>(self, path: &str, handler: H) -> Self
            where
                H: Fn(Request) -> Fut + Send + Sync + 'static,
                Fut: Future + 'static,
                Fut::Output: HandlerReply,
            {
                self.route(Route::$ctor(path).handler(handler))
            }
        )*
    };
}

impl Scope {
    pub(crate) fn root() -> Self {
        Self::with_prefix(String::new())
    }

    fn with_prefix(prefix: String) -> Self {
        Self {
            data: ScopeData {
                prefix,
                hooks: Vec::new(),
                error_handler: None,
                routes: Vec::new(),
                children: Vec::new(),
            },
            errors: Vec::new(),
        }
    }

    /// Adds a WebSocket route on `GET path`. A plain GET to it gets 404 with an empty body.
    #[must_use]
    pub fn ws<H, Fut>(self, path: &str, handler: H) -> Self
    where
        H: Fn(WebSocket, Request) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: HandlerOutput,
    {
        self.route(Route::get(path).ws_handler(handler))
    }

    method_routes! {
        /// Adds a `GET` route (also answering `HEAD`).
        fn get => get;
        /// Adds a `POST` route.
        fn post => post;
        /// Adds a `PUT` route.
        fn put => put;
        /// Adds a `DELETE` route.
        fn delete => delete;
        /// Adds a `PATCH` route.
        fn patch => patch;
        /// Adds a `HEAD` route.
        fn head => head;
    }

    /// Adds a fully declared route.
    #[must_use]
    pub fn route(mut self, route: Route) -> Self {
        self.data.routes.push(route);
        self
    }

    /// Adds a hook for this scope's routes and its children's.
    #[must_use]
    pub fn hook(mut self, hook: Hook) -> Self {
        self.data.hooks.push(hook);
        self
    }

    /// Sets this scope's error handler (Fastify's `setErrorHandler` inside a plugin).
    #[must_use]
    pub fn error_handler<H, Fut>(mut self, handler: H) -> Self
    where
        H: Fn(Request, HttpError) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: HandlerReply,
    {
        self.data.error_handler = Some(Arc::new(move |req, err| {
            Box::pin(Mapped::new(handler(req, err), HandlerReply::into_result))
        }));
        self
    }

    /// Registers a child scope under `prefix` (relative to this one).
    #[must_use]
    pub fn register<F>(mut self, prefix: &str, build: F) -> Self
    where
        F: FnOnce(Scope) -> Scope,
    {
        if !prefix.is_empty() && !prefix.starts_with('/') {
            self.errors.push(BuildError::InvalidPath(prefix.to_owned()));
            return self;
        }
        let mut child = build(Scope::with_prefix(prefix.to_owned()));
        self.errors.append(&mut child.errors);
        self.data.children.push(child.data);
        self
    }

    pub(crate) fn into_data(mut self) -> Result<ScopeData, BuildError> {
        if !self.errors.is_empty() {
            return Err(self.errors.swap_remove(0));
        }
        Ok(self.data)
    }
}
