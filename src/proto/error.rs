//! Errors of the protocol layer: one enum for frames, one for the opening handshake.

use http::StatusCode;

/// A violation of RFC 6455 (or of a configured limit) by the peer's frames.
///
/// Every variant maps to the close code the connection should be closed with, see
/// [`ProtocolError::close_code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV1, RSV2 or RSV3 was set although no extension gives it a meaning.
    #[error("reserved bits set without a negotiated extension")]
    ReservedBits,
    /// The opcode is one of the reserved values 0x3-0x7 or 0xB-0xF.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// A control frame had FIN clear; control frames must not be fragmented.
    #[error("fragmented control frame")]
    FragmentedControl,
    /// A control frame's length field was over 125.
    ///
    /// The value is the 7-bit length field, so 126 or 127 means the frame used an extended
    /// length form, which no control frame may use. Reporting the field rather than the
    /// extended length lets the error be raised from the first two bytes.
    #[error("control frame length field {0} exceeds 125")]
    ControlTooLong(u64),
    /// A client sent a frame without a mask (server role).
    #[error("client frame is not masked")]
    UnmaskedFrame,
    /// A server sent a masked frame (client role).
    #[error("server frame is masked")]
    MaskedFrame,
    /// The 64-bit payload length had its most significant bit set.
    #[error("64-bit payload length has its most significant bit set")]
    LengthOverflow,
    /// A continuation frame arrived with no fragmented message in progress.
    #[error("continuation frame without a message in progress")]
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a fragmented message was still open.
    #[error("new data frame while a fragmented message is in progress")]
    ExpectedContinuation,
    /// The message would exceed the configured maximum size.
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooBig {
        /// The message size the offending frame would bring it to (saturating).
        size: u64,
        /// The configured maximum message size.
        limit: usize,
    },
    /// The message was split into more frames than the configured maximum.
    #[error("message has more than {limit} fragments")]
    TooManyFragments {
        /// The configured maximum number of frames per message.
        limit: usize,
    },
    /// A text message was not valid UTF-8.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// A close frame carried a code that may not be sent on the wire.
    #[error("invalid close code {0}")]
    InvalidCloseCode(u16),
    /// A close frame had a one-byte payload, too short to hold a code.
    #[error("close frame payload of one byte")]
    ClosePayloadTooShort,
    /// A close frame's reason was not valid UTF-8.
    #[error("close reason is not valid UTF-8")]
    InvalidCloseReason,
    /// A permessage-deflate message did not inflate: not deflate data, or data after a final
    /// block.
    #[error("compressed message is not valid deflate data")]
    InvalidCompressedData,
}

impl ProtocolError {
    /// The close code to send when closing the connection because of this error.
    ///
    /// 1007 for invalid UTF-8 (in a message or a close reason) and for compressed data that
    /// does not inflate, 1009 for an oversized message (inflated size included), 1008 for too many fragments (a policy limit, not a protocol rule), and
    /// 1002 for every protocol violation.
    #[must_use]
    pub fn close_code(&self) -> u16 {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason | Self::InvalidCompressedData => 1007,
            Self::MessageTooBig { .. } => 1009,
            Self::TooManyFragments { .. } => 1008,
            _ => 1002,
        }
    }
}

/// Why an HTTP request cannot be upgraded to a WebSocket.
///
/// Every variant knows the response it earns: [`HandshakeError::status`] and
/// [`HandshakeError::response_headers`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The method was not GET (405).
    #[error("WebSocket upgrade requires GET")]
    MethodNotAllowed,
    /// The request was HTTP/1.0 or older (400).
    #[error("WebSocket upgrade requires HTTP/1.1 or later")]
    UnsupportedHttpVersion,
    /// The Host header was absent (400).
    #[error("missing Host header")]
    MissingHost,
    /// No Upgrade header carried a `websocket` token (400).
    #[error("missing `Upgrade: websocket`")]
    MissingUpgrade,
    /// No Connection header carried an `upgrade` token (400).
    #[error("missing `Connection: upgrade`")]
    MissingConnectionUpgrade,
    /// Sec-WebSocket-Key was missing, repeated, or not the base64 of exactly 16 bytes (400).
    #[error("missing or invalid Sec-WebSocket-Key")]
    InvalidKey,
    /// Sec-WebSocket-Version was missing or not exactly `13` (426).
    #[error("unsupported Sec-WebSocket-Version, expected 13")]
    UnsupportedVersion,
    /// Sec-WebSocket-Protocol had an empty entry or one that is not an RFC 7230 token (400).
    #[error("invalid Sec-WebSocket-Protocol")]
    InvalidProtocols,
    /// Sec-WebSocket-Extensions did not follow RFC 6455 §9.1's grammar (400). Checked only
    /// when permessage-deflate is enabled, as `ws` does.
    #[error("invalid Sec-WebSocket-Extensions")]
    InvalidExtensions,
}

impl HandshakeError {
    /// The HTTP status to reject the request with.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// Headers the rejection must carry: RFC 6455 §4.4 requires a 426 to name the supported
    /// version, and RFC 9110 requires a 405 to list the allowed methods.
    #[must_use]
    pub fn response_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::UnsupportedVersion => &[("Sec-WebSocket-Version", "13")],
            Self::MethodNotAllowed => &[("Allow", "GET")],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_close_codes() {
        assert_eq!(ProtocolError::InvalidUtf8.close_code(), 1007);
        assert_eq!(ProtocolError::InvalidCloseReason.close_code(), 1007);
        assert_eq!(ProtocolError::InvalidCompressedData.close_code(), 1007);
        let big = ProtocolError::MessageTooBig { size: 2, limit: 1 };
        assert_eq!(big.close_code(), 1009);
        let many = ProtocolError::TooManyFragments { limit: 1 };
        assert_eq!(many.close_code(), 1008);
        for e in [
            ProtocolError::ReservedBits,
            ProtocolError::ReservedOpcode(3),
            ProtocolError::FragmentedControl,
            ProtocolError::ControlTooLong(126),
            ProtocolError::UnmaskedFrame,
            ProtocolError::MaskedFrame,
            ProtocolError::LengthOverflow,
            ProtocolError::UnexpectedContinuation,
            ProtocolError::ExpectedContinuation,
            ProtocolError::InvalidCloseCode(1005),
            ProtocolError::ClosePayloadTooShort,
        ] {
            assert_eq!(e.close_code(), 1002, "{e}");
        }
    }

    #[test]
    fn handshake_statuses_and_headers() {
        assert_eq!(HandshakeError::MethodNotAllowed.status(), 405);
        assert_eq!(HandshakeError::UnsupportedVersion.status(), 426);
        assert_eq!(HandshakeError::MissingHost.status(), 400);
        assert_eq!(
            HandshakeError::UnsupportedVersion.response_headers(),
            &[("Sec-WebSocket-Version", "13")]
        );
        assert_eq!(
            HandshakeError::MethodNotAllowed.response_headers(),
            &[("Allow", "GET")]
        );
        assert!(HandshakeError::InvalidKey.response_headers().is_empty());
    }
}
