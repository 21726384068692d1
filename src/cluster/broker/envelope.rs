//! What travels through the broker, and the channel names. Sans-IO: bytes in, values out.
//!
//! An envelope is an 18-byte header and the message's payload:
//!
//! ```text
//! [0]      version: 1
//! [1]      WebSocket opcode of the message: 0x1 text, 0x2 binary, 0x9 ping, 0xA pong
//! [2..10]  node id of the publisher, u64 big-endian (a node drops its own echoes by it)
//! [10..18] sequence number on the publishing node, u64 big-endian (diagnostics only)
//! [18..]   the payload as-is (text is UTF-8)
//! ```
//!
//! The topic is not in the envelope: it is the channel the message arrives on.
// Without the broker features only `encode` is reached, and without `nats` the subject
// helpers are not (the tests use all of it).
#![cfg_attr(not(feature = "nats"), allow(dead_code))]

use bytes::{BufMut, Bytes, BytesMut};

use crate::proto::OpCode;

/// The envelope format this build writes and reads.
pub(crate) const VERSION: u8 = 1;
/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 18;

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) opcode: OpCode,
    pub(crate) node: u64,
    pub(crate) seq: u64,
    pub(crate) payload: Bytes,
}

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Shorter than the header.
    Short,
    /// A version this build does not read.
    Version(u8),
    /// Not a data or ping/pong opcode.
    Opcode(u8),
    /// A text payload that is not UTF-8, or a ping/pong over 125 bytes.
    Payload,
}

/// The envelope for one message.
pub(crate) fn encode(opcode: OpCode, node: u64, seq: u64, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload.len());
    out.put_u8(VERSION);
    out.put_u8(opcode.as_u8());
    out.put_u64(node);
    out.put_u64(seq);
    out.put_slice(payload);
    out.freeze()
}

/// Reads an envelope; the payload shares `bytes`.
pub(crate) fn decode(bytes: &Bytes) -> Result<Envelope, Malformed> {
    if bytes.len() < HEADER_LEN {
        return Err(Malformed::Short);
    }
    if bytes[0] != VERSION {
        return Err(Malformed::Version(bytes[0]));
    }
    let opcode = match OpCode::from_u8(bytes[1]) {
        Some(op @ (OpCode::Text | OpCode::Binary | OpCode::Ping | OpCode::Pong)) => op,
        _ => return Err(Malformed::Opcode(bytes[1])),
    };
    let word = |at: usize| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[at..at + 8]);
        u64::from_be_bytes(raw)
    };
    let payload = bytes.slice(HEADER_LEN..);
    let valid = match opcode {
        OpCode::Text => std::str::from_utf8(&payload).is_ok(),
        OpCode::Ping | OpCode::Pong => payload.len() <= 125,
        _ => true,
    };
    if !valid {
        return Err(Malformed::Payload);
    }
    Ok(Envelope {
        opcode,
        node: word(2),
        seq: word(10),
        payload,
    })
}

/// Escapes a topic into one NATS subject token: ASCII letters, digits, `-` and `_` stay, every
/// other byte becomes `%XX` (upper-case hex); the empty topic is `%`. Tokens never contain
/// `.`, `*`, `>` or whitespace, and distinct topics give distinct tokens.
pub(crate) fn nats_token(topic: &str) -> String {
    if topic.is_empty() {
        return "%".to_owned();
    }
    let mut out = String::with_capacity(topic.len());
    for &b in topic.as_bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Whether `prefix` can start NATS subjects: dot-separated non-empty tokens without
/// whitespace or wildcards.
pub(crate) fn valid_nats_prefix(prefix: &str) -> bool {
    !prefix.is_empty()
        && prefix.split('.').all(|token| {
            !token.is_empty()
                && !token
                    .bytes()
                    .any(|b| b.is_ascii_whitespace() || b == b'*' || b == b'>')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_exact_bytes() {
        let bytes = encode(OpCode::Text, 0x0102_0304_0506_0708, 9, b"hi");
        assert_eq!(
            &bytes[..],
            &[1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 9, b'h', b'i']
        );
        let envelope = decode(&bytes).unwrap();
        assert_eq!(
            envelope,
            Envelope {
                opcode: OpCode::Text,
                node: 0x0102_0304_0506_0708,
                seq: 9,
                payload: Bytes::from_static(b"hi"),
            }
        );
        let empty = encode(OpCode::Binary, 1, 2, b"");
        assert_eq!(decode(&empty).unwrap().payload.len(), 0);
    }

    #[test]
    fn bad_envelopes_are_refused() {
        let good = encode(OpCode::Binary, 1, 2, b"x");
        assert_eq!(decode(&good.slice(..17)), Err(Malformed::Short));
        let mut v = good.to_vec();
        v[0] = 2;
        assert_eq!(decode(&Bytes::from(v)), Err(Malformed::Version(2)));
        for op in [0u8, 3, 8, 0xB, 0xFF] {
            let mut v = good.to_vec();
            v[1] = op;
            assert_eq!(decode(&Bytes::from(v)), Err(Malformed::Opcode(op)));
        }
        let bad_text = encode(OpCode::Text, 1, 2, &[0xC3, 0x28]);
        assert_eq!(decode(&bad_text), Err(Malformed::Payload));
        let long_ping = encode(OpCode::Ping, 1, 2, &[0; 126]);
        assert_eq!(decode(&long_ping), Err(Malformed::Payload));
        let ping = encode(OpCode::Ping, 1, 2, &[0; 125]);
        assert_eq!(decode(&ping).unwrap().opcode, OpCode::Ping);
    }

    #[test]
    fn nats_tokens_escape_everything_a_subject_forbids() {
        assert_eq!(nats_token("lobby"), "lobby");
        assert_eq!(nats_token("room-1_a"), "room-1_a");
        assert_eq!(nats_token("a.b"), "a%2Eb");
        assert_eq!(nats_token("x y*>"), "x%20y%2A%3E");
        assert_eq!(nats_token("%"), "%25");
        assert_eq!(nats_token(""), "%");
        assert_eq!(nats_token("é"), "%C3%A9");
    }

    #[test]
    fn nats_prefixes() {
        assert!(valid_nats_prefix("ringsocket"));
        assert!(valid_nats_prefix("app.chat"));
        for bad in ["", "a..b", ".a", "a.", "a b", "a.*", "a.>"] {
            assert!(!valid_nats_prefix(bad), "{bad:?}");
        }
    }
}
