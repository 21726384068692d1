//! Fastify's hooks, with its names and order.
//!
//! For a plain request: `on_request` -> `pre_parsing` -> (body read) -> `pre_validation` ->
//! `pre_handler` -> handler -> `pre_serialization` (JSON bodies) -> `on_send` -> (written) ->
//! `on_response`. An error anywhere before the write goes to `on_error` hooks, then the scope's
//! error handler. For a WebSocket upgrade only the first four run, before the 101.

use std::{future::Future, pin::Pin, sync::Arc};

use http::StatusCode;

use super::{mapped::Mapped, BoxError, HttpError, Reply, Request};

pub(crate) type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

pub(crate) type RequestHookFn =
    Arc<dyn Fn(Request) -> LocalFuture<Result<Option<Reply>, BoxError>> + Send + Sync>;
#[cfg(feature = "json")]
pub(crate) type SerializeHookFn = Arc<
    dyn Fn(Request, serde_json::Value) -> LocalFuture<Result<serde_json::Value, BoxError>>
        + Send
        + Sync,
>;
pub(crate) type SendHookFn =
    Arc<dyn Fn(Request, Reply) -> LocalFuture<Result<Reply, BoxError>> + Send + Sync>;
pub(crate) type ResponseHookFn = Arc<dyn Fn(Request, StatusCode) -> LocalFuture<()> + Send + Sync>;
pub(crate) type ErrorHookFn =
    Arc<dyn Fn(Request, HttpError) -> LocalFuture<Result<Option<Reply>, BoxError>> + Send + Sync>;
pub(crate) type TimeoutHookFn = Arc<dyn Fn(Request) -> LocalFuture<()> + Send + Sync>;

/// Which stage of the pipeline a hook runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HookKind {
    /// First, as soon as the head is routed. Runs for upgrades.
    OnRequest,
    /// Before the body is read. Runs for upgrades.
    PreParsing,
    /// After the body is read. Runs for upgrades.
    PreValidation,
    /// Just before the handler. Runs for upgrades.
    PreHandler,
    /// Before a JSON reply is serialized; may replace the value. Never for upgrades.
    PreSerialization,
    /// Before the reply is written; may change it. Never for upgrades.
    OnSend,
    /// After the reply is written.
    OnResponse,
    /// When a hook or handler failed before the reply was written; may reply itself.
    OnError,
    /// When the request timeout ([`AppBuilder::request_timeout`](crate::AppBuilder::request_timeout))
    /// expires before the reply. Never for upgrades.
    OnTimeout,
}

#[derive(Clone)]
pub(crate) enum HookFn {
    Request(RequestHookFn),
    #[cfg(feature = "json")]
    Serialize(SerializeHookFn),
    Send(SendHookFn),
    Response(ResponseHookFn),
    Error(ErrorHookFn),
    Timeout(TimeoutHookFn),
}

/// A hook: a stage and the async function that runs there. Added with `.hook(..)` on the app
/// builder or a registered scope; a hook added in a scope applies to that scope's routes and
/// its children's, never to its parent's or siblings'.
///
/// ```
/// use ringsocket::{App, Hook, Reply};
///
/// let app = App::builder()
///     .register("/admin", |scope| {
///         scope
///             .hook(Hook::pre_validation(|req| async move {
///                 if req.header("api-key") != Some("some-random-key") {
///                     return Some(Reply::new().code(401).text("unauthorized"));
///                 }
///                 None
///             }))
///             .get("/", |_req| async { "welcome" })
///     })
///     .build()
///     .unwrap();
/// # drop(app);
/// ```
#[derive(Clone)]
pub struct Hook {
    pub(crate) kind: HookKind,
    pub(crate) f: HookFn,
}

impl std::fmt::Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hook")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// What a request-stage hook (and `on_error`) may resolve to: `()` or `None` to go on, a
/// [`Reply`] (or `Some`) to answer now and stop the pipeline, or a `Result` whose error goes
/// to the error path.
pub trait HookOutput {
    /// Converts into the pipeline's result.
    ///
    /// # Errors
    ///
    /// The hook's own error.
    fn into_hook_result(self) -> Result<Option<Reply>, BoxError>;
}

impl HookOutput for () {
    fn into_hook_result(self) -> Result<Option<Reply>, BoxError> {
        Ok(None)
    }
}

impl HookOutput for Reply {
    fn into_hook_result(self) -> Result<Option<Reply>, BoxError> {
        Ok(Some(self))
    }
}

impl HookOutput for Option<Reply> {
    fn into_hook_result(self) -> Result<Option<Reply>, BoxError> {
        Ok(self)
    }
}

impl<E: Into<BoxError>> HookOutput for Result<(), E> {
    fn into_hook_result(self) -> Result<Option<Reply>, BoxError> {
        self.map(|()| None).map_err(Into::into)
    }
}

impl<E: Into<BoxError>> HookOutput for Result<Option<Reply>, E> {
    fn into_hook_result(self) -> Result<Option<Reply>, BoxError> {
        self.map_err(Into::into)
    }
}

impl<E: Into<BoxError>> HookOutput for Result<Reply, E> {
    fn into_hook_result(self) -> Result<Option<Reply>, BoxError> {
        self.map(Some).map_err(Into::into)
    }
}

/// What an `on_send` hook may resolve to: the (possibly changed) reply, or an error.
pub trait SendHookOutput {
    /// Converts into the pipeline's result.
    ///
    /// # Errors
    ///
    /// The hook's own error.
    fn into_send_result(self) -> Result<Reply, BoxError>;
}

impl SendHookOutput for Reply {
    fn into_send_result(self) -> Result<Reply, BoxError> {
        Ok(self)
    }
}

impl<E: Into<BoxError>> SendHookOutput for Result<Reply, E> {
    fn into_send_result(self) -> Result<Reply, BoxError> {
        self.map_err(Into::into)
    }
}

fn request_hook<F, Fut>(kind: HookKind, f: F) -> Hook
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future + 'static,
    Fut::Output: HookOutput,
{
    let f: RequestHookFn =
        Arc::new(move |req| Box::pin(Mapped::new(f(req), HookOutput::into_hook_result)));
    Hook {
        kind,
        f: HookFn::Request(f),
    }
}

/// The four request-stage constructors differ only in their stage.
macro_rules! request_hooks {
    ($($(#[$doc:meta])* fn $name:ident => $kind:ident;)*) => {
        $(
            $(#[$doc])*
            pub fn $name<F, Fut>(f: F) -> Hook
            where
                F: Fn(Request) -> Fut + Send + Sync + 'static,
                Fut: Future + 'static,
                Fut::Output: HookOutput,
            {
                request_hook(HookKind::$kind, f)
            }
        )*
    };
}

impl Hook {
    /// The stage this hook runs at.
    pub fn kind(&self) -> HookKind {
        self.kind
    }

    request_hooks! {
        /// `onRequest`: the first stage, before anything is read but the head.
        fn on_request => OnRequest;
        /// `preParsing`: before the body is read.
        fn pre_parsing => PreParsing;
        /// `preValidation`: after the body is read (the usual place for authentication).
        fn pre_validation => PreValidation;
        /// `preHandler`: just before the handler.
        fn pre_handler => PreHandler;
    }

    /// `preSerialization`: receives a JSON reply's value before it is serialized and returns
    /// the value to send. Runs only for JSON bodies, never for upgrades.
    #[cfg(feature = "json")]
    pub fn pre_serialization<F, Fut, E>(f: F) -> Hook
    where
        F: Fn(Request, serde_json::Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<serde_json::Value, E>> + 'static,
        E: Into<BoxError>,
    {
        let f: SerializeHookFn = Arc::new(move |req, value| {
            Box::pin(Mapped::new(f(req, value), |out: Result<_, E>| {
                out.map_err(Into::into)
            }))
        });
        Hook {
            kind: HookKind::PreSerialization,
            f: HookFn::Serialize(f),
        }
    }

    /// `onSend`: receives the reply about to be written and returns the one to write.
    pub fn on_send<F, Fut>(f: F) -> Hook
    where
        F: Fn(Request, Reply) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: SendHookOutput,
    {
        let f: SendHookFn = Arc::new(move |req, reply| {
            Box::pin(Mapped::new(f(req, reply), SendHookOutput::into_send_result))
        });
        Hook {
            kind: HookKind::OnSend,
            f: HookFn::Send(f),
        }
    }

    /// `onResponse`: after the reply was written, with its status.
    pub fn on_response<F, Fut>(f: F) -> Hook
    where
        F: Fn(Request, StatusCode) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let f: ResponseHookFn = Arc::new(move |req, status| Box::pin(f(req, status)));
        Hook {
            kind: HookKind::OnResponse,
            f: HookFn::Response(f),
        }
    }

    /// `onError`: a hook or handler failed before the reply was written. Returning a reply
    /// answers with it; otherwise the scope's error handler answers.
    pub fn on_error<F, Fut>(f: F) -> Hook
    where
        F: Fn(Request, HttpError) -> Fut + Send + Sync + 'static,
        Fut: Future + 'static,
        Fut::Output: HookOutput,
    {
        let f: ErrorHookFn = Arc::new(move |req, err| {
            Box::pin(Mapped::new(f(req, err), HookOutput::into_hook_result))
        });
        Hook {
            kind: HookKind::OnError,
            f: HookFn::Error(f),
        }
    }

    /// `onTimeout`: the request timeout expired before the reply; the connection is then
    /// closed without a response.
    pub fn on_timeout<F, Fut>(f: F) -> Hook
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + 'static,
    {
        let f: TimeoutHookFn = Arc::new(move |req| Box::pin(f(req)));
        Hook {
            kind: HookKind::OnTimeout,
            f: HookFn::Timeout(f),
        }
    }
}
