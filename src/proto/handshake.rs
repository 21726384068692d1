//! The opening handshake (RFC 6455 §4).
//!
//! Header values are inspected as bytes: a peer may send anything, and none of this may
//! panic or take more than linear time on hostile input.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{
    HeaderName, CONNECTION, HOST, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_KEY,
    SEC_WEBSOCKET_PROTOCOL, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, Method, Request, Version};

use super::error::HandshakeError;

/// The GUID RFC 6455 §1.3 appends to the key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What a valid upgrade request asks for, ready for the 101 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// The `Sec-WebSocket-Accept` value for the response.
    pub accept: String,
    /// The offered `Sec-WebSocket-Protocol` tokens, in order, from all such headers.
    pub protocols: Vec<String>,
    /// The `Sec-WebSocket-Extensions` offers joined with `", "`, for the extension
    /// negotiation to parse; `None` when absent or empty.
    pub extensions: Option<String>,
}

/// Whether any `Upgrade` header lists a `websocket` token (case-insensitively).
///
/// This only picks the WebSocket path for a request; [`validate_request`] then checks it.
#[must_use]
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    has_token(req.headers(), &UPGRADE, b"websocket")
}

/// Checks that `req` is a valid WebSocket upgrade request (RFC 6455 §4.2.1).
///
/// # Errors
///
/// The first failing check, in this order: [`HandshakeError::MethodNotAllowed`] (not GET),
/// [`HandshakeError::UnsupportedHttpVersion`] (before HTTP/1.1),
/// [`HandshakeError::MissingHost`], [`HandshakeError::MissingUpgrade`] (no `websocket`
/// token in `Upgrade`), [`HandshakeError::MissingConnectionUpgrade`] (no `upgrade` token in
/// `Connection`), [`HandshakeError::InvalidKey`] (not exactly one `Sec-WebSocket-Key`
/// that is the base64 of 16 bytes), [`HandshakeError::UnsupportedVersion`] (not exactly
/// one `Sec-WebSocket-Version: 13`), and [`HandshakeError::InvalidProtocols`] (an empty or
/// non-token `Sec-WebSocket-Protocol` entry).
pub fn validate_request<B>(req: &Request<B>) -> Result<Handshake, HandshakeError> {
    if req.method() != Method::GET {
        return Err(HandshakeError::MethodNotAllowed);
    }
    if req.version() < Version::HTTP_11 {
        return Err(HandshakeError::UnsupportedHttpVersion);
    }
    let headers = req.headers();
    if !headers.contains_key(HOST) {
        return Err(HandshakeError::MissingHost);
    }
    if !has_token(headers, &UPGRADE, b"websocket") {
        return Err(HandshakeError::MissingUpgrade);
    }
    if !has_token(headers, &CONNECTION, b"upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade);
    }
    let key = single(headers, &SEC_WEBSOCKET_KEY).ok_or(HandshakeError::InvalidKey)?;
    if !is_valid_key(key) {
        return Err(HandshakeError::InvalidKey);
    }
    match single(headers, &SEC_WEBSOCKET_VERSION) {
        Some(b"13") => {}
        _ => return Err(HandshakeError::UnsupportedVersion),
    }
    let mut protocols = Vec::new();
    for value in headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
        for entry in value.as_bytes().split(|&b| b == b',') {
            let entry = trim(entry);
            if entry.is_empty() || !entry.iter().all(|&b| is_tchar(b)) {
                return Err(HandshakeError::InvalidProtocols);
            }
            // Token characters are ASCII, so this is the same bytes as a string.
            protocols.push(entry.iter().map(|&b| char::from(b)).collect());
        }
    }
    let mut extensions = String::new();
    for value in headers.get_all(SEC_WEBSOCKET_EXTENSIONS) {
        let value = trim(value.as_bytes());
        if value.is_empty() {
            continue;
        }
        if !extensions.is_empty() {
            extensions.push_str(", ");
        }
        extensions.push_str(&String::from_utf8_lossy(value));
    }
    Ok(Handshake {
        accept: accept_key(key),
        protocols,
        extensions: (!extensions.is_empty()).then_some(extensions),
    })
}

/// The `Sec-WebSocket-Accept` value for a `Sec-WebSocket-Key`:
/// base64(SHA-1(key + GUID)).
#[must_use]
pub fn accept_key(key: &[u8]) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    STANDARD.encode(sha1.digest().bytes())
}

/// A fresh `Sec-WebSocket-Key` for a client request: base64 of 16 random bytes.
#[must_use]
pub fn generate_key() -> String {
    let mut nonce = [0u8; 16];
    fastrand::fill(&mut nonce);
    STANDARD.encode(nonce)
}

/// Whether any `name` header, read as a comma-separated list, holds `token`
/// (ASCII case-insensitively).
fn has_token(headers: &HeaderMap, name: &HeaderName, token: &[u8]) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|entry| trim(entry).eq_ignore_ascii_case(token))
    })
}

/// The trimmed value of a header that must appear exactly once.
fn single<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a [u8]> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => Some(trim(value.as_bytes())),
        _ => None,
    }
}

/// A key is valid when it is the padded base64 of exactly 16 bytes, which is always 24
/// characters; checking the length first bounds the decoding work.
fn is_valid_key(key: &[u8]) -> bool {
    let mut decoded = [0u8; 18];
    key.len() == 24 && STANDARD.decode_slice(key, &mut decoded) == Ok(16)
}

/// Strips the optional whitespace (spaces and tabs) around a list element or header value.
fn trim(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// RFC 7230 `tchar`: the characters a token may contain.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn base() -> http::request::Builder {
        Request::get("/chat")
            .header("Host", "server.example.com")
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Key", KEY)
            .header("Sec-WebSocket-Version", "13")
    }

    /// The RFC example request with `name` removed and `extra` headers added.
    fn without(name: &str, extra: &[(&str, &[u8])]) -> Request<()> {
        let mut req = base().body(()).unwrap();
        req.headers_mut().remove(name);
        for (n, v) in extra {
            let value = http::HeaderValue::from_bytes(v).unwrap();
            req.headers_mut()
                .append(HeaderName::from_bytes(n.as_bytes()).unwrap(), value);
        }
        req
    }

    fn err(req: &Request<()>) -> HandshakeError {
        validate_request(req).unwrap_err()
    }

    #[test]
    fn rfc_accept_example() {
        assert_eq!(accept_key(KEY.as_bytes()), ACCEPT);
    }

    #[test]
    fn generated_keys_are_valid_and_differ() {
        let (a, b) = (generate_key(), generate_key());
        assert!(is_valid_key(a.as_bytes()) && is_valid_key(b.as_bytes()));
        assert_ne!(a, b);
    }

    #[test]
    fn accepts_rfc_request() {
        let hs = validate_request(&base().body(()).unwrap()).unwrap();
        assert_eq!(
            hs,
            Handshake {
                accept: ACCEPT.into(),
                protocols: vec![],
                extensions: None
            }
        );
    }

    #[test]
    fn accepts_list_forms_and_mixed_case() {
        let req = Request::get("/")
            .version(Version::HTTP_11)
            .header("host", "x")
            .header("upgrade", "h2c")
            .header("upgrade", "foo/2, WebSocket")
            .header("connection", "keep-alive,\tUpGrade ")
            .header("sec-websocket-key", format!(" {KEY}\t"))
            .header("sec-websocket-version", " 13 ")
            .header("sec-websocket-protocol", "chat, superchat")
            .header("sec-websocket-protocol", "\tv2.json ")
            .header(
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            )
            .header("sec-websocket-extensions", "x-foo")
            .body(())
            .unwrap();
        assert!(is_upgrade_request(&req));
        let hs = validate_request(&req).unwrap();
        assert_eq!(hs.accept, ACCEPT);
        assert_eq!(hs.protocols, ["chat", "superchat", "v2.json"]);
        assert_eq!(
            hs.extensions.as_deref(),
            Some("permessage-deflate; client_max_window_bits, x-foo")
        );
        let h2 = base().version(Version::HTTP_2).body(()).unwrap();
        assert!(validate_request(&h2).is_ok());
    }

    #[test]
    fn is_upgrade_request_needs_the_token() {
        assert!(!is_upgrade_request(&without("upgrade", &[])));
        let req = without("upgrade", &[("upgrade", b"websockets, h2c")]);
        assert!(!is_upgrade_request(&req));
        let req = without("upgrade", &[("upgrade", b"\xff, WEBSOCKET")]);
        assert!(is_upgrade_request(&req));
    }

    #[test]
    fn method_and_version() {
        let req = Request::post("/").body(()).unwrap();
        assert_eq!(err(&req), HandshakeError::MethodNotAllowed);
        assert_eq!(err(&req).status(), 405);
        let req = base().version(Version::HTTP_10).body(()).unwrap();
        assert_eq!(err(&req), HandshakeError::UnsupportedHttpVersion);
        assert_eq!(err(&req).status(), 400);
    }

    #[test]
    fn missing_headers() {
        let cases = [
            ("host", HandshakeError::MissingHost),
            ("upgrade", HandshakeError::MissingUpgrade),
            ("connection", HandshakeError::MissingConnectionUpgrade),
            ("sec-websocket-key", HandshakeError::InvalidKey),
            ("sec-websocket-version", HandshakeError::UnsupportedVersion),
        ];
        for (name, expected) in cases {
            let e = err(&without(name, &[]));
            assert_eq!(e, expected, "{name}");
            let status = if name == "sec-websocket-version" {
                426
            } else {
                400
            };
            assert_eq!(e.status(), status, "{name}");
        }
    }

    #[test]
    fn wrong_upgrade_and_connection() {
        let req = without("upgrade", &[("upgrade", b"h2c")]);
        assert_eq!(err(&req), HandshakeError::MissingUpgrade);
        let req = without("connection", &[("connection", b"keep-alive")]);
        assert_eq!(err(&req), HandshakeError::MissingConnectionUpgrade);
        let req = without("connection", &[("connection", b"upgrades")]);
        assert_eq!(err(&req), HandshakeError::MissingConnectionUpgrade);
    }

    #[test]
    fn invalid_keys() {
        let bad: [&[u8]; 7] = [
            b"",
            b"dGhlIHNhbXBsZSBub25jZQ",
            b"dGhlIHNhbXBsZSBub25jZQ==dGhl",
            b"dGhlIHNhbXBsZSBub25jZSE=",
            b"dGhlIHNhbXBsZSBub25j!Q==",
            b"dGhlIHNhbXBsZSBub25jZQ\xff\xff",
            b"AAAAAAAAAAAAAAAAAAAAAAAA",
        ];
        for key in bad {
            let req = without("sec-websocket-key", &[("sec-websocket-key", key)]);
            assert_eq!(err(&req), HandshakeError::InvalidKey, "{key:?}");
            assert_eq!(err(&req).status(), 400);
        }
        let twice = without("x", &[("sec-websocket-key", KEY.as_bytes())]);
        assert_eq!(err(&twice), HandshakeError::InvalidKey);
    }

    #[test]
    fn unsupported_versions() {
        for v in [&b"8"[..], b"13, 8", b"14", b"", b"\xff"] {
            let req = without("sec-websocket-version", &[("sec-websocket-version", v)]);
            let e = err(&req);
            assert_eq!(e, HandshakeError::UnsupportedVersion, "{v:?}");
            assert_eq!(e.status(), 426);
            assert_eq!(e.response_headers(), &[("Sec-WebSocket-Version", "13")]);
        }
        let twice = without("x", &[("sec-websocket-version", b"13")]);
        assert_eq!(err(&twice), HandshakeError::UnsupportedVersion);
    }

    #[test]
    fn invalid_protocols() {
        for p in [
            &b""[..],
            b"chat,",
            b",chat",
            b"a,,b",
            b"ch at",
            b"chat/1",
            b"a;b",
            b"\xc3\xa9",
        ] {
            let req = without("x", &[("sec-websocket-protocol", p)]);
            let e = err(&req);
            assert_eq!(e, HandshakeError::InvalidProtocols, "{p:?}");
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn hostile_input_is_linear_and_panic_free() {
        let long = vec![b','; 1 << 20];
        let req = without(
            "upgrade",
            &[("upgrade", &long), ("sec-websocket-protocol", &long)],
        );
        assert_eq!(err(&req), HandshakeError::MissingUpgrade);
        let req = without("x", &[("sec-websocket-protocol", &long)]);
        assert_eq!(err(&req), HandshakeError::InvalidProtocols);
        let req = without("x", &[("sec-websocket-extensions", b"\x80\xff")]);
        assert!(validate_request(&req).unwrap().extensions.is_some());
    }
}
