//! The request handlers and hooks receive.

use std::{cell::RefCell, fmt, net::SocketAddr, rc::Rc};

use bytes::Bytes;
use http::{Extensions, HeaderMap, Method, Uri, Version};

use super::router::Params;
use crate::cluster::Clients;

/// An HTTP request: the head, the route parameters, the body (once read), and room for hooks
/// to leave values for later stages ([`insert`](Self::insert) / [`get`](Self::get)).
///
/// Cloning is cheap (a reference count): hooks and handlers each get a clone of the same
/// request. It lives on the core that accepted the connection, so it is not `Send`.
#[derive(Clone)]
pub struct Request(Rc<Inner>);

struct Inner {
    head: http::Request<()>,
    params: Params,
    peer_addr: Option<SocketAddr>,
    websocket: bool,
    body: RefCell<Bytes>,
    extensions: RefCell<Extensions>,
    clients: RefCell<Option<Clients>>,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", self.method())
            .field("uri", self.uri())
            .field("params", &self.0.params)
            .field("websocket", &self.0.websocket)
            .finish_non_exhaustive()
    }
}

impl Request {
    pub(crate) fn new(
        head: http::Request<()>,
        params: Params,
        peer_addr: Option<SocketAddr>,
        websocket: bool,
    ) -> Self {
        Self(Rc::new(Inner {
            head,
            params,
            peer_addr,
            websocket,
            body: RefCell::new(Bytes::new()),
            extensions: RefCell::new(Extensions::new()),
            clients: RefCell::new(None),
        }))
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.0.head.method()
    }

    /// The request target.
    pub fn uri(&self) -> &Uri {
        self.0.head.uri()
    }

    /// The path part of the target (still percent-encoded).
    pub fn path(&self) -> &str {
        self.0.head.uri().path()
    }

    /// The query string, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.0.head.uri().query()
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.0.head.version()
    }

    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        self.0.head.headers()
    }

    /// One header as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.0
            .head
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
    }

    /// The route parameters (`:name` segments and `*`), percent-decoded.
    pub fn params(&self) -> &Params {
        &self.0.params
    }

    /// One route parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.0.params.get(name)
    }

    /// The client's address (`None` for injected requests).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.0.peer_addr
    }

    /// Whether this request asks for a WebSocket upgrade (Fastify's `request.ws`).
    pub fn is_websocket(&self) -> bool {
        self.0.websocket
    }

    /// The body (empty until it has been read, i.e. in `on_request` and `pre_parsing` hooks, and
    /// always for upgrades).
    pub fn body(&self) -> Bytes {
        self.0.body.borrow().clone()
    }

    /// The body as text, if it is UTF-8.
    pub fn text(&self) -> Option<String> {
        std::str::from_utf8(&self.0.body.borrow())
            .ok()
            .map(str::to_owned)
    }

    /// The body parsed as JSON.
    ///
    /// # Errors
    ///
    /// When the body is not valid JSON for `T`.
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.0.body.borrow())
    }

    /// Stores a value for later hooks and the handler (one per type).
    pub fn insert<T: Clone + Send + Sync + 'static>(&self, value: T) -> Option<T> {
        self.0.extensions.borrow_mut().insert(value)
    }

    /// A value stored by an earlier hook.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.0.extensions.borrow().get::<T>().cloned()
    }

    /// The underlying `http` request head.
    pub fn head(&self) -> &http::Request<()> {
        &self.0.head
    }

    pub(crate) fn set_body(&self, body: Bytes) {
        *self.0.body.borrow_mut() = body;
    }

    /// Every connection of the server handling this request, on every core.
    pub fn clients(&self) -> Clients {
        self.0
            .clients
            .borrow()
            .clone()
            .unwrap_or_else(Clients::detached)
    }

    pub(crate) fn set_clients(&self, clients: Clients) {
        *self.0.clients.borrow_mut() = Some(clients);
    }
}
