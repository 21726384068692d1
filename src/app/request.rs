//! The request a handler receives: the upgrade request's head.

use std::net::SocketAddr;

use http::{HeaderMap, Method, Uri, Version};

/// The HTTP request that opened a connection (for a WebSocket route, the upgrade request).
#[derive(Debug)]
pub struct Request {
    head: http::Request<()>,
    peer_addr: Option<SocketAddr>,
}

impl Request {
    pub(crate) fn new(head: http::Request<()>, peer_addr: Option<SocketAddr>) -> Self {
        Self { head, peer_addr }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        self.head.method()
    }

    /// The request target.
    pub fn uri(&self) -> &Uri {
        self.head.uri()
    }

    /// The path part of the target.
    pub fn path(&self) -> &str {
        self.head.uri().path()
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.head.version()
    }

    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        self.head.headers()
    }

    /// One header as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers().get(name).and_then(|v| v.to_str().ok())
    }

    /// The client's address (`None` for injected requests).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.peer_addr
    }

    /// The underlying `http` request.
    pub fn as_http(&self) -> &http::Request<()> {
        &self.head
    }
}
