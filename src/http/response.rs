//! Response heads, written into the connection's output buffer.

use std::fmt::Write as _;

use http::StatusCode;

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
}
