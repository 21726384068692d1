//! Test injection (`@fastify/websocket`'s `injectWS`, Fastify's `inject`): the real pipeline,
//! with no listening socket.
//!
//! - [`App::inject`] runs a plain request through routing, hooks, body, handler and the send
//!   path, in memory, and returns the response.
//! - [`App::inject_ws`] connects a [`Client`] to the app over a socket pair: the connection runs
//!   through the same driver as a network one (HTTP head, hooks, handshake, 101, the
//!   WebSocket phase), on the current monoio runtime.
//!
//! Both must be awaited inside a monoio runtime (timers enabled), like the handlers they run;
//! [`run`] builds one for a test.
//!
//! ```
//! use ringsocket::{testing, App, Message};
//!
//! let app = App::builder()
//!     .get("/hello", |_req| async { "world" })
//!     .ws("/echo", |mut ws, _req| async move {
//!         while let Some(Ok(m)) = ws.recv().await {
//!             if m.is_close() || ws.send(m).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//!     .build()
//!     .unwrap();
//! testing::run(async move {
//!     let res = app.inject(http::Request::get("/hello").body(()).unwrap()).await;
//!     assert_eq!(res.status(), 200);
//!     assert_eq!(res.text(), "world");
//!
//!     let mut client = app.inject_ws("/echo").connect().await.unwrap();
//!     client.send(Message::text("hi")).await.unwrap();
//!     assert_eq!(client.recv().await.unwrap().unwrap(), Message::text("hi"));
//! });
//! ```

use std::{
    cell::{Cell, RefCell},
    future::Future,
    rc::Rc,
    sync::Arc,
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use monoio::net::UnixStream;

use crate::{
    app::{
        pipeline::{self, BodySource, RouteOutcome, Routed},
        App, HttpError,
    },
    client::Client,
    cluster::{
        clients::{set_current_core, CoreMsg},
        local::LocalCore,
        Clients, Cluster,
    },
    http::HeadLimits,
    server::{
        catch::catch_unwind_local,
        conn,
        worker::{drain_inbox, CoreState},
        ServerConfig,
    },
    Error,
};

/// Runs `future` on a fresh monoio runtime (io_uring where available, timers on) and returns
/// its output: the simplest way to drive `inject` and `inject_ws` from a `#[test]`.
///
/// Injected connections of this thread belong to this runtime: when it returns, they are
/// forgotten (a monoio runtime leaks, rather than drops, the tasks still waiting when it ends,
/// so connections left open must not stay registered for the next runtime). Drive every
/// `inject_ws` of a thread from one runtime at a time.
pub fn run<F: Future>(future: F) -> F::Output {
    let output = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("monoio runtime")
        .block_on(future);
    forget_inject_core();
    output
}

/// Drops this thread's inject core (its registry, clients and inbox).
fn forget_inject_core() {
    let dropped = INJECT_CORE.with(|slot| slot.borrow_mut().take());
    if dropped.is_some() {
        set_current_core(None);
    }
    drop(dropped);
}

/// The response to an injected request.
#[derive(Debug, Clone)]
pub struct InjectedResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl InjectedResponse {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    ///
    /// When the body is not valid JSON for `T`.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// Bodies [`App::inject`] takes: `()` for none, text or bytes.
pub trait IntoBody {
    /// The body bytes.
    fn into_body(self) -> Bytes;
}

impl IntoBody for () {
    fn into_body(self) -> Bytes {
        Bytes::new()
    }
}

impl IntoBody for &'static str {
    fn into_body(self) -> Bytes {
        Bytes::from_static(self.as_bytes())
    }
}

impl IntoBody for String {
    fn into_body(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoBody for Vec<u8> {
    fn into_body(self) -> Bytes {
        Bytes::from(self)
    }
}

impl IntoBody for Bytes {
    fn into_body(self) -> Bytes {
        self
    }
}

struct MemoryBody(Option<Bytes>);

impl BodySource for MemoryBody {
    async fn read_body(&mut self, limit: usize) -> Result<Bytes, HttpError> {
        let body = self.0.take().unwrap_or_default();
        if body.len() > limit {
            return Err(HttpError::new(
                413,
                format!("request body larger than {limit} bytes"),
            ));
        }
        Ok(body)
    }
}

impl App {
    /// Runs a plain HTTP request through the app (routing, hooks, body limit, handler, error
    /// path, send hooks, `on_response`) without any socket, and returns the response. A
    /// response to `HEAD` has no body.
    pub async fn inject<B: IntoBody>(&self, request: http::Request<B>) -> InjectedResponse {
        let (parts, body) = request.into_parts();
        let body = body.into_body();
        let head = http::Request::from_parts(parts, ());
        let head_only = head.method() == Method::HEAD;
        let (reply, routed) = match pipeline::route_request(self, head, None, false) {
            RouteOutcome::NotFound(reply) => (reply, None),
            RouteOutcome::Routed(Routed { route, req }) => {
                req.set_clients(self.clients());
                let mut source = MemoryBody(Some(body));
                let reply =
                    match catch_unwind_local(pipeline::run_http(&route, &req, &mut source)).await {
                        Ok(reply) => reply,
                        Err(_) => HttpError::internal("Internal Server Error").into_reply(),
                    };
                (reply, Some((route, req)))
            }
        };
        let response = InjectedResponse {
            status: reply.status(),
            headers: reply.headers().clone(),
            body: if head_only {
                Bytes::new()
            } else {
                reply.body()
            },
        };
        if let Some((route, req)) = routed {
            pipeline::run_on_response(&route, &req, reply.status()).await;
        }
        response
    }

    /// Starts an injected WebSocket connection to `path` (`injectWS`).
    pub fn inject_ws(&self, path: &str) -> InjectWs {
        InjectWs {
            app: self.clone(),
            path: path.to_owned(),
            headers: Vec::new(),
            on_init: None,
            on_open: None,
        }
    }
}

type OnOpen = Box<dyn FnOnce(&mut Client<UnixStream>)>;

/// An injected WebSocket connection being set up; see [`App::inject_ws`].
pub struct InjectWs {
    app: App,
    path: String,
    headers: Vec<(String, String)>,
    on_init: Option<Box<dyn FnOnce()>>,
    on_open: Option<OnOpen>,
}

impl std::fmt::Debug for InjectWs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InjectWs")
            .field("path", &self.path)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// The core injected connections of this thread live on: a worker's state with a one-core
/// cluster of its own, and whether its inbox is being drained on the current runtime.
struct InjectCore {
    core: Rc<CoreState>,
    clients: Clients,
    inbox: async_channel::Receiver<CoreMsg>,
    draining: Rc<Cell<bool>>,
}

thread_local! {
    static INJECT_CORE: RefCell<Option<InjectCore>> = const { RefCell::new(None) };
}

/// Clears the "draining" flag when the drain task ends (its runtime dropped it).
struct DrainFlag(Rc<Cell<bool>>);

impl Drop for DrainFlag {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// This thread's inject core, made on first use; its inbox drain runs on the current runtime.
fn inject_core() -> (Rc<CoreState>, Clients) {
    INJECT_CORE.with(|slot| {
        let mut slot = slot.borrow_mut();
        let inject = slot.get_or_insert_with(|| {
            let (cluster, mut inboxes) = Cluster::new(1, None);
            let local = Rc::new(LocalCore::new(0, Arc::clone(&cluster)));
            set_current_core(Some(Rc::clone(&local)));
            InjectCore {
                core: Rc::new(CoreState::new(local)),
                clients: Clients::new(cluster),
                inbox: inboxes.remove(0),
                draining: Rc::new(Cell::new(false)),
            }
        });
        if !inject.draining.get() {
            inject.draining.set(true);
            let flag = DrainFlag(Rc::clone(&inject.draining));
            let drain = drain_inbox(inject.inbox.clone(), Rc::clone(&inject.core.local));
            monoio::spawn(async move {
                let _flag = flag;
                drain.await;
            });
        }
        (Rc::clone(&inject.core), inject.clients.clone())
    })
}

impl InjectWs {
    /// Adds a header to the upgrade request (the upgrade headers themselves are always set).
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Called before the upgrade request is sent (`onInit`).
    #[must_use]
    pub fn on_init(mut self, f: impl FnOnce() + 'static) -> Self {
        self.on_init = Some(Box::new(f));
        self
    }

    /// Called with the client once the 101 has arrived, before [`connect`](Self::connect)
    /// returns it (`onOpen`).
    #[must_use]
    pub fn on_open(mut self, f: impl FnOnce(&mut Client<UnixStream>) + 'static) -> Self {
        self.on_open = Some(Box::new(f));
        self
    }

    /// Performs the upgrade over an in-memory socket pair.
    ///
    /// # Errors
    ///
    /// [`Error::UnexpectedResponse`] ("Unexpected server response: 401") when the app answers
    /// anything but 101 (a hook's 401, a 404, a 503 during shutdown, ...); [`Error::Io`] if the
    /// pair cannot be made.
    pub async fn connect(self) -> Result<Client<UnixStream>, Error> {
        let (server_end, client_end) = UnixStream::pair()?;
        let (core, clients) = inject_core();
        self.app.set_clients_if_unserved(clients);
        let config = Arc::new(ServerConfig {
            handshake_timeout: Duration::from_secs(10),
            head_limits: HeadLimits::default(),
            drain_timeout: Duration::from_secs(10),
            backlog: 0,
            pin_threads: false,
            max_connections: usize::MAX,
            max_handshakes: usize::MAX,
        });
        monoio::spawn(conn::serve(
            server_end,
            None,
            self.app.clone(),
            core,
            config,
        ));
        if let Some(on_init) = self.on_init {
            on_init();
        }
        let mut builder = Client::builder_on(client_end, "localhost", &self.path);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        let mut client = builder.connect_stream().await?;
        if let Some(on_open) = self.on_open {
            on_open(&mut client);
        }
        Ok(client)
    }
}
