//! Errors of the HTTP pipeline, as hooks and error handlers see them.

use std::fmt;

use http::StatusCode;

use super::{BoxError, Reply};

/// An error with an HTTP status: what `on_error` hooks and error handlers receive, and what a
/// handler or hook can return to choose the status of the error reply (like Fastify's
/// `error.statusCode`).
///
/// ```
/// use ringsocket::HttpError;
///
/// let err = HttpError::new(418, "short and stout");
/// assert_eq!(err.status().as_u16(), 418);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    status: StatusCode,
    message: String,
}

impl HttpError {
    /// An error with `status` (an invalid code becomes 500) and a message for the reply body.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            message: message.into(),
        }
    }

    /// A 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Turns any error into an `HttpError`: an `HttpError` keeps its status, anything else is a
    /// 500 with the error's message.
    pub fn from_boxed(err: BoxError) -> Self {
        match err.downcast::<HttpError>() {
            Ok(err) => *err,
            Err(other) => Self::internal(other.to_string()),
        }
    }

    /// The default error reply, shaped like Fastify's:
    /// `{"statusCode":500,"error":"Internal Server Error","message":"..."}`.
    pub fn into_reply(self) -> Reply {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        let body = format!(
            "{{\"statusCode\":{},\"error\":{},\"message\":{}}}",
            self.status.as_u16(),
            json_string(reason),
            json_string(&self.message)
        );
        Reply::new()
            .status_code(self.status)
            .header("content-type", "application/json; charset=utf-8")
            .bytes(body.into_bytes())
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.message)
    }
}

impl std::error::Error for HttpError {}

/// A JSON string literal, escaped, without needing serde.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_reply_is_fastify_shaped_json() {
        let reply = HttpError::new(404, "Route GET:/x \"not\" found").into_reply();
        assert_eq!(reply.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            reply.body(),
            r#"{"statusCode":404,"error":"Not Found","message":"Route GET:/x \"not\" found"}"#
                .as_bytes()
        );
    }

    #[test]
    fn boxed_errors_keep_their_status() {
        let boxed: BoxError = Box::new(HttpError::new(401, "no"));
        assert_eq!(
            HttpError::from_boxed(boxed).status(),
            StatusCode::UNAUTHORIZED
        );
        let boxed: BoxError = "plain".into();
        assert_eq!(HttpError::from_boxed(boxed), HttpError::internal("plain"));
    }
}
