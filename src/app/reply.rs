//! Replies to plain HTTP requests, and what handlers may return.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::BoxError;
#[cfg(feature = "json")]
use super::HttpError;

/// An HTTP response under construction: status, headers, body.
///
/// ```
/// use ringsocket::Reply;
///
/// let reply = Reply::new().code(201).header("x-id", "7").text("created");
/// assert_eq!(reply.status().as_u16(), 201);
/// assert_eq!(reply.body(), "created".as_bytes());
/// ```
#[derive(Debug, Clone)]
pub struct Reply(Box<Parts>);

/// Boxed so a `Reply` is one pointer: `Result<(), Reply>` (a hook's or `verify_client`'s
/// answer) stays small.
#[derive(Debug, Clone)]
struct Parts {
    status: StatusCode,
    headers: HeaderMap,
    body: Body,
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    Bytes(Bytes),
    /// Kept as a value until the response is written, so `pre_serialization` hooks can change
    /// it.
    #[cfg(feature = "json")]
    Json(serde_json::Value),
}

impl Default for Reply {
    fn default() -> Self {
        Self::new()
    }
}

impl Reply {
    /// 200 with no body.
    pub fn new() -> Self {
        Self(Box::new(Parts {
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            body: Body::Bytes(Bytes::new()),
        }))
    }

    /// Sets the status code (Fastify's `reply.code`). An invalid code becomes 500.
    #[must_use]
    pub fn code(mut self, code: u16) -> Self {
        self.0.status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self
    }

    /// Sets the status.
    #[must_use]
    pub fn status_code(mut self, status: StatusCode) -> Self {
        self.0.status = status;
        self
    }

    /// Sets a header, replacing earlier values. Invalid names or values are ignored (and
    /// logged), never sent.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                self.0.headers.insert(name, value);
            }
            _ => tracing::warn!(name, "invalid reply header ignored"),
        }
        self
    }

    /// A text body (`text/plain; charset=utf-8` unless a content type is set).
    #[must_use]
    pub fn text(self, text: impl Into<String>) -> Self {
        self.with_body(Bytes::from(text.into()), "text/plain; charset=utf-8")
    }

    /// A binary body (`application/octet-stream` unless a content type is set).
    #[must_use]
    pub fn bytes(self, bytes: impl Into<Bytes>) -> Self {
        self.with_body(bytes.into(), "application/octet-stream")
    }

    /// A JSON body (`application/json; charset=utf-8`). A value that cannot be serialized
    /// becomes a 500.
    #[cfg(feature = "json")]
    #[must_use]
    pub fn json<T: serde::Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_value(value) {
            Ok(value) => {
                self.set_default_content_type("application/json; charset=utf-8");
                self.0.body = Body::Json(value);
                self
            }
            Err(e) => HttpError::internal(format!("reply serialization failed: {e}")).into_reply(),
        }
    }

    fn with_body(mut self, body: Bytes, content_type: &'static str) -> Self {
        self.set_default_content_type(content_type);
        self.0.body = Body::Bytes(body);
        self
    }

    fn set_default_content_type(&mut self, content_type: &'static str) {
        if !self.0.headers.contains_key(header::CONTENT_TYPE) {
            self.0
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }

    /// Mutable headers (for `on_send` hooks).
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.0.headers
    }

    /// The body bytes (a JSON body serialized).
    pub fn body(&self) -> Bytes {
        match &self.0.body {
            Body::Bytes(b) => b.clone(),
            #[cfg(feature = "json")]
            Body::Json(v) => Bytes::from(serde_json::to_vec(v).unwrap_or_default()),
        }
    }

    #[cfg(feature = "json")]
    pub(crate) fn body_ref(&self) -> &Body {
        &self.0.body
    }

    #[cfg(feature = "json")]
    pub(crate) fn set_body(&mut self, body: Body) {
        self.0.body = body;
    }
}

/// Types a handler may return as its reply.
pub trait IntoReply {
    /// Converts into a [`Reply`].
    fn into_reply(self) -> Reply;
}

impl IntoReply for Reply {
    fn into_reply(self) -> Reply {
        self
    }
}

impl IntoReply for () {
    fn into_reply(self) -> Reply {
        Reply::new()
    }
}

impl IntoReply for &'static str {
    fn into_reply(self) -> Reply {
        Reply::new().text(self)
    }
}

impl IntoReply for String {
    fn into_reply(self) -> Reply {
        Reply::new().text(self)
    }
}

impl IntoReply for Bytes {
    fn into_reply(self) -> Reply {
        Reply::new().bytes(self)
    }
}

impl IntoReply for Vec<u8> {
    fn into_reply(self) -> Reply {
        Reply::new().bytes(self)
    }
}

impl IntoReply for StatusCode {
    fn into_reply(self) -> Reply {
        Reply::new().status_code(self)
    }
}

impl<T: IntoReply> IntoReply for (StatusCode, T) {
    fn into_reply(self) -> Reply {
        self.1.into_reply().status_code(self.0)
    }
}

/// A JSON reply: `Json(value)` serializes `value` with serde.
#[cfg(feature = "json")]
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

#[cfg(feature = "json")]
impl<T: serde::Serialize> IntoReply for Json<T> {
    fn into_reply(self) -> Reply {
        Reply::new().json(&self.0)
    }
}

#[cfg(feature = "json")]
impl IntoReply for serde_json::Value {
    fn into_reply(self) -> Reply {
        Reply::new().json(&self)
    }
}

/// What an HTTP handler's future may resolve to: anything [`IntoReply`], or a `Result` whose
/// error goes to the scope's error handler (500 unless it is an [`HttpError`] with its own
/// status).
pub trait HandlerReply {
    /// Converts into the pipeline's result.
    ///
    /// # Errors
    ///
    /// The handler's error.
    fn into_result(self) -> Result<Reply, BoxError>;
}

impl<T: IntoReply> HandlerReply for T {
    fn into_result(self) -> Result<Reply, BoxError> {
        Ok(self.into_reply())
    }
}

impl<T: IntoReply, E: Into<BoxError>> HandlerReply for Result<T, E> {
    fn into_result(self) -> Result<Reply, BoxError> {
        self.map(IntoReply::into_reply).map_err(Into::into)
    }
}
