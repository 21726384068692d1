//! The Fastify-like surface: an [`App`] is built once from routes and options, then shared by
//! every core. Runtime-agnostic: nothing here knows sockets or monoio.

mod request;

use std::{collections::HashMap, fmt, future::Future, pin::Pin, sync::Arc};

pub use request::Request;

use crate::ws::{WebSocket, WsOptions};

/// The error type handlers may return.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// A WebSocket handler, type-erased. The function is shared by all cores (`Send + Sync`); the
/// future it returns runs on the core that accepted the connection and need not be `Send`.
pub(crate) type WsHandlerFn =
    Arc<dyn Fn(WebSocket, Request) -> LocalFuture<Result<(), BoxError>> + Send + Sync>;

/// What a handler's future may resolve to: `()` or a `Result` whose error ends the connection
/// with 1011.
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
    /// Two routes for the same path.
    #[error("duplicate route for {0}")]
    DuplicateRoute(String),
    /// A path that does not start with `/`.
    #[error("route path must start with '/': {0:?}")]
    InvalidPath(String),
}

#[derive(Clone)]
pub(crate) struct WsRoute {
    pub(crate) handler: WsHandlerFn,
}

pub(crate) struct AppInner {
    pub(crate) ws_routes: HashMap<String, WsRoute>,
    pub(crate) ws_options: WsOptions,
}

/// A built application: routes and options, immutable and shared by all cores.
///
/// ```
/// use ringsocket::{App, WsOptions};
///
/// let app = App::builder()
///     .websocket(WsOptions::new().max_payload(64 * 1024))
///     .ws("/chat", |mut ws, req| async move {
///         let _room = req.uri().query().unwrap_or("lobby").to_owned();
///         while let Some(Ok(message)) = ws.recv().await {
///             let _ = ws.send(message).await;
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
        let mut paths: Vec<_> = self.inner.ws_routes.keys().collect();
        paths.sort();
        f.debug_struct("App").field("ws_routes", &paths).finish()
    }
}

impl App {
    /// Starts building an app.
    pub fn builder() -> AppBuilder {
        AppBuilder::default()
    }

    pub(crate) fn ws_route(&self, path: &str) -> Option<&WsRoute> {
        self.inner.ws_routes.get(path)
    }

    pub(crate) fn ws_options(&self) -> &WsOptions {
        &self.inner.ws_options
    }
}

/// Collects routes and options; mistakes surface in [`build`](Self::build).
#[derive(Default)]
pub struct AppBuilder {
    ws_routes: HashMap<String, WsRoute>,
    ws_options: WsOptions,
    errors: Vec<BuildError>,
}

impl fmt::Debug for AppBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppBuilder")
            .field("errors", &self.errors)
            .finish_non_exhaustive()
    }
}

impl AppBuilder {
    /// Sets the options of every WebSocket route (the `@fastify/websocket` plugin options).
    #[must_use]
    pub fn websocket(mut self, options: WsOptions) -> Self {
        self.ws_options = options;
        self
    }

    /// Adds a WebSocket route on `GET path`. The handler runs once per connection, on the core
    /// that accepted it; when its future ends, the connection is closed (1000, or 1011 if it
    /// returned an error or panicked).
    #[must_use]
    pub fn ws<H, F>(mut self, path: &str, handler: H) -> Self
    where
        H: Fn(WebSocket, Request) -> F + Send + Sync + 'static,
        F: Future + 'static,
        F::Output: HandlerOutput,
    {
        if !path.starts_with('/') {
            self.errors.push(BuildError::InvalidPath(path.to_owned()));
            return self;
        }
        let handler: WsHandlerFn = Arc::new(move |ws, req| {
            let fut = handler(ws, req);
            Box::pin(async move { fut.await.into_result() })
        });
        if self
            .ws_routes
            .insert(path.to_owned(), WsRoute { handler })
            .is_some()
        {
            self.errors
                .push(BuildError::DuplicateRoute(path.to_owned()));
        }
        self
    }

    /// Finishes the app.
    ///
    /// # Errors
    ///
    /// The first registration mistake.
    pub fn build(mut self) -> Result<App, BuildError> {
        if !self.errors.is_empty() {
            return Err(self.errors.swap_remove(0));
        }
        Ok(App {
            inner: Arc::new(AppInner {
                ws_routes: self.ws_routes,
                ws_options: self.ws_options,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_and_invalid_paths_fail_at_build() {
        let err = App::builder()
            .ws("/a", |_ws, _req| async {})
            .ws("/a", |_ws, _req| async {})
            .build();
        assert_eq!(err.unwrap_err(), BuildError::DuplicateRoute("/a".into()));
        let err = App::builder().ws("a", |_ws, _req| async {}).build();
        assert_eq!(err.unwrap_err(), BuildError::InvalidPath("a".into()));
    }
}
