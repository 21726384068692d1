//! Close codes and close frame payloads (RFC 6455 §5.5.1, §7.4).

use super::error::ProtocolError;

/// The longest reason that fits a control frame: 125 bytes minus the 2-byte code.
const MAX_REASON_LEN: usize = 123;

/// Whether `code` may appear in a close frame on the wire.
///
/// Valid: 1000-1003, 1007-1014 (defined by RFC 6455 and the IANA registry) and 3000-4999
/// (registered and private use). 1004 is reserved, 1005, 1006 and 1015 are for reporting
/// only and must never be sent, and everything else is unassigned.
#[must_use]
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The status code and reason of a close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The close code; valid per [`is_valid_close_code`] when it came from the decoder.
    pub code: u16,
    /// The UTF-8 reason, possibly empty.
    pub reason: String,
}

/// Parses a received close frame's payload.
///
/// # Errors
///
/// [`ProtocolError::ClosePayloadTooShort`] for a 1-byte payload,
/// [`ProtocolError::InvalidCloseCode`] for a code that may not be sent, and
/// [`ProtocolError::InvalidCloseReason`] for a reason that is not UTF-8.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame>, ProtocolError> {
    match payload {
        [] => Ok(None),
        [_] => Err(ProtocolError::ClosePayloadTooShort),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !is_valid_close_code(code) {
                return Err(ProtocolError::InvalidCloseCode(code));
            }
            let reason = simdutf8::basic::from_utf8(reason)
                .map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

/// Why a close frame cannot be sent as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// The code may not be sent on the wire, see [`is_valid_close_code`].
    #[error("close code {0} may not be sent")]
    InvalidCode(u16),
    /// The reason was longer than the 123 bytes a control frame leaves for it.
    #[error("close reason of {0} bytes exceeds 123 bytes")]
    ReasonTooLong(usize),
}

/// Builds a close frame payload: the big-endian code followed by the reason.
///
/// # Errors
///
/// [`CloseError::InvalidCode`] if `code` fails [`is_valid_close_code`], and
/// [`CloseError::ReasonTooLong`] if `reason` is over 123 bytes. Checking here, at the API,
/// keeps the application from making the server violate the protocol.
pub fn encode_close_payload(code: u16, reason: &str) -> Result<Vec<u8>, CloseError> {
    if !is_valid_close_code(code) {
        return Err(CloseError::InvalidCode(code));
    }
    if reason.len() > MAX_REASON_LEN {
        return Err(CloseError::ReasonTooLong(reason.len()));
    }
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_codes() {
        let valid: Vec<u16> = (0..=u16::MAX).filter(|&c| is_valid_close_code(c)).collect();
        let expected: Vec<u16> = (1000..=1003)
            .chain(1007..=1014)
            .chain(3000..=4999)
            .collect();
        assert_eq!(valid, expected);
        for c in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(c), "{c}");
        }
    }

    #[test]
    fn parse() {
        assert_eq!(parse_close_payload(b""), Ok(None));
        assert_eq!(
            parse_close_payload(b"\x03"),
            Err(ProtocolError::ClosePayloadTooShort)
        );
        assert_eq!(
            parse_close_payload(b"\x03\xe8"),
            Ok(Some(CloseFrame {
                code: 1000,
                reason: String::new()
            }))
        );
        assert_eq!(
            parse_close_payload(b"\x0f\xa0bye"),
            Ok(Some(CloseFrame {
                code: 4000,
                reason: "bye".into()
            }))
        );
        let err = parse_close_payload(b"\x03\xed").unwrap_err();
        assert_eq!(err, ProtocolError::InvalidCloseCode(1005));
        assert_eq!(err.close_code(), 1002);
        let err = parse_close_payload(b"\x03\xe8\xce\xba\xed\xa0\x80").unwrap_err();
        assert_eq!(err, ProtocolError::InvalidCloseReason);
        assert_eq!(err.close_code(), 1007);
    }

    #[test]
    fn encode() {
        assert_eq!(encode_close_payload(1000, ""), Ok(vec![0x03, 0xe8]));
        assert_eq!(
            encode_close_payload(4001, "hi"),
            Ok(vec![0x0f, 0xa1, b'h', b'i'])
        );
        assert_eq!(
            encode_close_payload(1006, ""),
            Err(CloseError::InvalidCode(1006))
        );
        let long = "x".repeat(124);
        assert_eq!(
            encode_close_payload(1000, &long),
            Err(CloseError::ReasonTooLong(124))
        );
        let payload = encode_close_payload(1000, &long[..123]).unwrap();
        assert_eq!(payload.len(), 125);
        let parsed = parse_close_payload(&payload).unwrap().unwrap();
        assert_eq!(parsed.reason.len(), 123);
    }
}
