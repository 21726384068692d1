//! Response heads, written into the connection's output buffer.

use std::fmt::Write as _;
use std::io::Write as _;

use http::{header, HeaderMap, Request, StatusCode, Version};

use super::body::list_elements;

/// Appends a complete response with a plain-text body and `Connection: close`.
///
/// `extra` headers are written as given (they come from protocol errors, e.g.
/// `Sec-WebSocket-Version: 13` on a 426).
pub fn write_response(dst: &mut Vec<u8>, status: StatusCode, extra: &[(&str, &str)], body: &[u8]) {
    let mut head = String::with_capacity(128);
    let reason = status.canonical_reason().unwrap_or("");
    let _ = write!(head, "HTTP/1.1 {} {}\r\n", status.as_str(), reason);
    for (name, value) in extra {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if !body.is_empty() {
        head.push_str("Content-Type: text/plain; charset=utf-8\r\n");
    }
    let _ = write!(
        head,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    dst.extend_from_slice(head.as_bytes());
    dst.extend_from_slice(body);
}

/// Appends the `101 Switching Protocols` answer to a valid upgrade.
pub fn write_switching_protocols(
    dst: &mut Vec<u8>,
    accept: &str,
    protocol: Option<&str>,
    extensions: Option<&str>,
) {
    dst.extend_from_slice(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ",
    );
    dst.extend_from_slice(accept.as_bytes());
    if let Some(protocol) = protocol {
        dst.extend_from_slice(b"\r\nSec-WebSocket-Protocol: ");
        dst.extend_from_slice(protocol.as_bytes());
    }
    if let Some(extensions) = extensions {
        dst.extend_from_slice(b"\r\nSec-WebSocket-Extensions: ");
        dst.extend_from_slice(extensions.as_bytes());
    }
    dst.extend_from_slice(b"\r\n\r\n");
}

/// Appends a complete HTTP/1.1 response: status line, `headers` as given and in order (less
/// any `content-length`, `transfer-encoding` or `connection`, which are computed here),
/// `Content-Length: body.len()`, `Connection: keep-alive` or `Connection: close` per
/// `keep_alive`, then the body unless `head_only`.
///
/// `head_only` answers a HEAD request: the headers a GET would get, `Content-Length`
/// included, and no body (RFC 9110 9.3.2). A 1xx, 204 or 304 gets neither `Content-Length`
/// nor body, whatever `body` holds: those responses end at the blank line (RFC 9112 6.3), so
/// bytes after it would be read as the next response.
pub fn write_full_response(
    dst: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
) {
    let reason = status.canonical_reason().unwrap_or("");
    let _ = write!(dst, "HTTP/1.1 {} {}\r\n", status.as_str(), reason);
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if !bodiless {
        let _ = write!(dst, "Content-Length: {}\r\n", body.len());
    }
    dst.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    if !bodiless && !head_only {
        dst.extend_from_slice(body);
    }
}

/// Whether the connection may serve another request after this one (RFC 9112 9.3): HTTP/1.1
/// unless `Connection` lists `close`; HTTP/1.0 only if it lists `keep-alive` and not `close`.
/// Options are matched case-insensitively over every `Connection` line.
pub fn wants_keep_alive(head: &Request<()>) -> bool {
    let (mut close, mut keep_alive) = (false, false);
    for option in list_elements(head.headers(), &header::CONNECTION) {
        close |= option.eq_ignore_ascii_case(b"close");
        keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
    }
    !close && (head.version() >= Version::HTTP_11 || keep_alive)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_bytes() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            StatusCode::UPGRADE_REQUIRED,
            &[("Sec-WebSocket-Version", "13")],
            b"",
        );
        assert_eq!(
            out,
            b"HTTP/1.1 426 Upgrade Required\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn switching_protocols_bytes() {
        let mut out = Vec::new();
        write_switching_protocols(&mut out, "s3pPLMBiTxaQ9kYGJRs7P+oo6Pw=", Some("chat"), None);
        assert_eq!(
            out,
            &b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGJRs7P+oo6Pw=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"[..]
        );
    }

    fn full(status: StatusCode, keep_alive: bool, head_only: bool) -> Vec<u8> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        // Computed by the writer: these three are dropped.
        headers.insert(header::CONTENT_LENGTH, "99".parse().unwrap());
        headers.insert(header::CONNECTION, "upgrade".parse().unwrap());
        headers.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        headers.append("x-a", "1".parse().unwrap());
        headers.append("x-a", "2".parse().unwrap());
        let mut out = b"before".to_vec();
        write_full_response(&mut out, status, &headers, b"hello", keep_alive, head_only);
        out.split_off(6)
    }

    #[test]
    fn full_response_bytes() {
        assert_eq!(
            full(StatusCode::OK, true, false),
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-a: 1\r\nx-a: 2\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello"
        );
        assert_eq!(
            full(StatusCode::NOT_FOUND, false, false),
            b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\nx-a: 1\r\nx-a: 2\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"
        );
    }

    #[test]
    fn head_response_has_the_length_but_no_body() {
        assert_eq!(
            full(StatusCode::OK, true, true),
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-a: 1\r\nx-a: 2\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn bodiless_statuses_have_no_length_and_no_body() {
        let mut out = Vec::new();
        write_full_response(
            &mut out,
            StatusCode::NO_CONTENT,
            &HeaderMap::new(),
            b"",
            true,
            false,
        );
        assert_eq!(
            out,
            b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n"
        );
        for status in [
            StatusCode::NO_CONTENT,
            StatusCode::NOT_MODIFIED,
            StatusCode::CONTINUE,
        ] {
            let out = full(status, false, false);
            let expected = format!(
                "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\nx-a: 1\r\nx-a: 2\r\nConnection: close\r\n\r\n",
                status.as_str(),
                status.canonical_reason().unwrap()
            );
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn keep_alive_per_version_and_connection() {
        let req = |version, connection: &[&str]| {
            let mut builder = Request::builder().version(version);
            for value in connection {
                builder = builder.header(header::CONNECTION, *value);
            }
            wants_keep_alive(&builder.body(()).unwrap())
        };
        let (v10, v11) = (Version::HTTP_10, Version::HTTP_11);
        assert!(req(v11, &[]));
        assert!(req(v11, &["keep-alive, Upgrade"]));
        assert!(req(v11, &["Upgrade"]));
        assert!(!req(v11, &["close"]));
        assert!(!req(v11, &["Close"]));
        assert!(!req(v11, &["Upgrade, CLOSE"]));
        assert!(!req(v11, &["keep-alive", "close"]));
        assert!(!req(v11, &["keep-alive ,close"]));
        assert!(!req(v10, &[]));
        assert!(!req(v10, &["Upgrade"]));
        assert!(req(v10, &["Keep-Alive"]));
        assert!(req(v10, &["keep-alive, Upgrade"]));
        assert!(req(v10, &["te", "  KEEP-ALIVE  "]));
        assert!(!req(v10, &["keep-alive, close"]));
        // A token that merely contains the word is not it.
        assert!(req(v11, &["closed"]));
        assert!(!req(v10, &["keep-alive-ish"]));
    }
}
