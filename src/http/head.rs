//! Incremental parsing of an HTTP/1.1 request head with hard limits.

use http::{header::HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

/// Limits applied while the request head is read; defaults follow DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// Most bytes the request line and headers may take, terminator included. Default 8 KiB.
    pub max_bytes: usize,
    /// Most header fields. Default 64.
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> Self {
        Self {
            max_bytes: 8 * 1024,
            max_headers: 64,
        }
    }
}

/// Why a request head was refused; each variant knows its HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeadError {
    /// The head grew past [`HeadLimits::max_bytes`] (431).
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    /// More header fields than [`HeadLimits::max_headers`] (431).
    #[error("more than {0} header fields")]
    TooManyHeaders(usize),
    /// Syntax httparse rejects, a bare LF line ending, or a name/value `http` rejects (400).
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    /// Both `Content-Length` and `Transfer-Encoding`, or a repeated `Content-Length`: the
    /// shapes request smuggling is built from (400).
    #[error("ambiguous message framing")]
    AmbiguousFraming,
}

impl HeadError {
    /// The status the server answers with before closing the connection.
    pub fn status(&self) -> StatusCode {
        match self {
            HeadError::TooLarge(_) | HeadError::TooManyHeaders(_) => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            HeadError::Malformed(_) | HeadError::AmbiguousFraming => StatusCode::BAD_REQUEST,
        }
    }
}

/// Finds the end of a request head across reads without rescanning what it has seen, so a
/// client trickling one byte per read costs linear time (tungstenite's CVE-2023-43669 was a
/// re-parse of the whole buffer on every read).
#[derive(Debug, Default, Clone)]
pub struct HeadParser {
    scanned: usize,
}

/// Header slots kept on the stack while parsing (the default [`HeadLimits::max_headers`]).
const STACK_HEADERS: usize = 64;

impl HeadParser {
    /// A parser at the start of a connection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `buf` if it holds a whole head. Returns the request and the number of bytes it
    /// took; `Ok(None)` means more bytes are needed. Bytes after the head are left for the
    /// caller (they are the first WebSocket frames, or a body).
    ///
    /// # Errors
    ///
    /// A [`HeadError`] whose [`status`](HeadError::status) is the answer to send.
    pub fn parse(
        &mut self,
        buf: &[u8],
        limits: &HeadLimits,
    ) -> Result<Option<(Request<()>, usize)>, HeadError> {
        let Some(end) = self.find_end(buf) else {
            if buf.len() > limits.max_bytes {
                return Err(HeadError::TooLarge(limits.max_bytes));
            }
            return Ok(None);
        };
        if end > limits.max_bytes {
            return Err(HeadError::TooLarge(limits.max_bytes));
        }
        let head = &buf[..end];
        if has_bare_lf(head) {
            return Err(HeadError::Malformed("bare LF line ending"));
        }
        // The default limit's worth of header slots (2 KiB) lives on the stack: every handshake
        // parses one head, and a heap buffer freed right after is memory the allocator keeps.
        let mut on_stack = [httparse::EMPTY_HEADER; STACK_HEADERS];
        let mut on_heap = Vec::new();
        let storage = if limits.max_headers <= STACK_HEADERS {
            &mut on_stack[..limits.max_headers]
        } else {
            on_heap.resize(limits.max_headers, httparse::EMPTY_HEADER);
            &mut on_heap[..]
        };
        let mut parsed = httparse::Request::new(storage);
        match parsed.parse(head) {
            Ok(httparse::Status::Complete(n)) if n == end => {}
            Ok(_) => return Err(HeadError::Malformed("incomplete request head")),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(HeadError::TooManyHeaders(limits.max_headers))
            }
            Err(_) => return Err(HeadError::Malformed("request line or header syntax")),
        }
        Ok(Some((to_request(&parsed)?, end)))
    }

    /// Index one past the blank line that ends the head, scanning only new bytes. A line
    /// ending in a bare LF also ends the search (`\n\n` or `\n\r\n`), so such a head is refused
    /// at once instead of waiting for the deadline.
    fn find_end(&mut self, buf: &[u8]) -> Option<usize> {
        // Step back 2 bytes so a terminator split across reads is still seen.
        let start = self.scanned.saturating_sub(2);
        self.scanned = buf.len();
        (start..buf.len()).find_map(|i| match buf[i..] {
            [b'\n', b'\n', ..] => Some(i + 2),
            [b'\n', b'\r', b'\n', ..] => Some(i + 3),
            _ => None,
        })
    }
}

fn has_bare_lf(head: &[u8]) -> bool {
    head.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\n' && (i == 0 || head[i - 1] != b'\r'))
}

/// The most fields `http`'s `HeaderMap` holds (three quarters of its 32,768 slots).
const HEADER_MAP_MAX: usize = 24_576;

fn to_request(parsed: &httparse::Request<'_, '_>) -> Result<Request<()>, HeadError> {
    let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes())
        .map_err(|_| HeadError::Malformed("method"))?;
    let uri: Uri = parsed
        .path
        .unwrap_or("")
        .parse()
        .map_err(|_| HeadError::Malformed("request target"))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    // Filled in place: `http`'s builder moves the whole request under construction through
    // every call (a `Result` of it per header), which was a fifth of a handshake's copying.
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    let headers = request.headers_mut();
    // More than `http` can hold (only with `max_headers` raised that far) is too many too.
    let too_many = |_| HeadError::TooManyHeaders(HEADER_MAP_MAX);
    headers
        .try_reserve(parsed.headers.len())
        .map_err(too_many)?;
    let mut content_length = 0;
    let mut hosts = 0;
    let mut transfer_encoding = false;
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| HeadError::Malformed("header name"))?;
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| HeadError::Malformed("header value"))?;
        if name == http::header::HOST {
            hosts += 1;
        } else if name == http::header::CONTENT_LENGTH {
            content_length += 1;
        } else if name == http::header::TRANSFER_ENCODING {
            transfer_encoding = true;
        }
        headers.try_append(name, value).map_err(too_many)?;
    }
    if hosts > 1 {
        // RFC 9112 3.2: more than one Host line must be answered with 400.
        return Err(HeadError::Malformed("repeated Host"));
    }
    if content_length > 1 || (content_length == 1 && transfer_encoding) {
        return Err(HeadError::AmbiguousFraming);
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(bytes: &[u8]) -> Result<Option<(Request<()>, usize)>, HeadError> {
        HeadParser::new().parse(bytes, &HeadLimits::default())
    }

    #[test]
    fn more_fields_than_a_header_map_holds_are_431() {
        let limits = HeadLimits {
            max_bytes: 1 << 20,
            max_headers: 30_000,
        };
        let head = |fields: usize| {
            let mut bytes = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
            for _ in 1..fields {
                bytes.extend_from_slice(b"x: y\r\n");
            }
            bytes.extend_from_slice(b"\r\n");
            bytes
        };
        let (req, _) = HeadParser::new()
            .parse(&head(HEADER_MAP_MAX), &limits)
            .unwrap()
            .unwrap();
        assert_eq!(req.headers().len(), HEADER_MAP_MAX);
        let err = HeadParser::new()
            .parse(&head(HEADER_MAP_MAX + 1), &limits)
            .unwrap_err();
        assert!(
            matches!(err, HeadError::TooManyHeaders(HEADER_MAP_MAX)),
            "{err:?}"
        );
        assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn parses_a_whole_head_and_leaves_the_rest() {
        let bytes = b"GET /chat?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n\x81\x80";
        let (req, used) = parse_all(bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len() - 2);
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path(), "/chat");
        assert_eq!(req.uri().query(), Some("x=1"));
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["upgrade"], "websocket");
    }

    #[test]
    fn byte_by_byte_gives_the_same_request() {
        let bytes = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
        let mut parser = HeadParser::new();
        for n in 1..bytes.len() {
            assert!(
                matches!(parser.parse(&bytes[..n], &HeadLimits::default()), Ok(None)),
                "at {n}"
            );
        }
        let (req, used) = parser
            .parse(bytes, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(req.headers()["x"], "y");
    }

    #[test]
    fn oversized_head_is_431() {
        let mut bytes = b"GET / HTTP/1.1\r\nX: ".to_vec();
        bytes.resize(9000, b'a');
        let err = parse_all(&bytes).unwrap_err();
        assert_eq!(err, HeadError::TooLarge(8192));
        assert_eq!(err.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }

    #[test]
    fn too_many_headers_is_431() {
        let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..65 {
            bytes.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        let err = parse_all(&bytes).unwrap_err();
        assert_eq!(err, HeadError::TooManyHeaders(64));
        assert_eq!(err.status().as_u16(), 431);
    }

    #[test]
    fn header_limits_below_and_above_the_stack_slots_hold_exactly() {
        let head = |n: usize| {
            let mut bytes = b"GET / HTTP/1.1\r\n".to_vec();
            for i in 0..n {
                bytes.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
            }
            bytes.extend_from_slice(b"\r\n");
            bytes
        };
        for max_headers in [3, 64, 100] {
            let limits = HeadLimits {
                max_headers,
                ..HeadLimits::default()
            };
            let ok = head(max_headers);
            let (req, used) = HeadParser::new().parse(&ok, &limits).unwrap().unwrap();
            assert_eq!((req.headers().len(), used), (max_headers, ok.len()));
            let err = HeadParser::new()
                .parse(&head(max_headers + 1), &limits)
                .unwrap_err();
            assert_eq!(err, HeadError::TooManyHeaders(max_headers));
        }
    }

    #[test]
    fn malformed_heads_are_400() {
        for bytes in [
            &b"GET / HTTP/1.1\nHost: a\n\n"[..],
            b"GET / HTTP/1.1\r\nHost a\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
        ] {
            let err = parse_all(bytes).unwrap_err();
            assert_eq!(
                err.status(),
                StatusCode::BAD_REQUEST,
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn http_1_0_is_parsed_as_such() {
        let (req, _) = parse_all(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert_eq!(req.version(), Version::HTTP_10);
    }
}
