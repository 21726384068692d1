//! What travels through the broker, and the channel names. Sans-IO: bytes in, values out.
//!
//! An envelope is an 18-byte header and a body:
//!
//! ```text
//! [0]      version: 1
//! [1]      kind: a WebSocket opcode for a message (0x1 text, 0x2 binary, 0x9 ping, 0xA pong),
//!          0x20 a question (count), 0x21 its answer
//! [2..10]  node id of the sender, u64 big-endian (a node drops its own echoes by it)
//! [10..18] sequence number on the sending node, u64 big-endian (diagnostics only)
//! [18..]   message: the payload as-is (text is UTF-8)
//!          question: [id u64][0: connections | 1: subscribers of the topic that follows]
//!          answer: [id u64][count u64]
//! ```
//!
//! The topic of a message is not in the envelope: it is the channel the message arrives on.
// Without the broker features only `encode` is reached, and without `nats` the subject
// helpers are not (the tests use all of it).
#![cfg_attr(not(feature = "nats"), allow(dead_code))]

use bytes::{BufMut, Bytes, BytesMut};

use crate::proto::OpCode;

/// The envelope format this build writes and reads.
pub(crate) const VERSION: u8 = 1;
/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 18;

/// Kind byte of a question.
const QUESTION: u8 = 0x20;
/// Kind byte of an answer.
const ANSWER: u8 = 0x21;

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) node: u64,
    pub(crate) seq: u64,
    pub(crate) body: Body,
}

/// What an envelope carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    /// A message for clients (the payload shares the envelope's bytes).
    Message { opcode: OpCode, payload: Bytes },
    /// How many connections (`topic: None`) or subscribers of a topic a node has.
    Question { id: u64, topic: Option<String> },
    /// A node's answer to question `id`.
    Answer { id: u64, count: u64 },
}

/// Why an envelope was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Shorter than the header (or a question or answer shorter than its fields).
    Short,
    /// A version this build does not read.
    Version(u8),
    /// Not a kind this build reads.
    Kind(u8),
    /// A text payload or question topic that is not UTF-8, a ping/pong over 125 bytes, or
    /// a question of an unknown form.
    Payload,
}

fn header(kind: u8, node: u64, seq: u64, body_len: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(HEADER_LEN + body_len);
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_u64(node);
    out.put_u64(seq);
    out
}

/// The envelope for one message.
pub(crate) fn encode(opcode: OpCode, node: u64, seq: u64, payload: &[u8]) -> Bytes {
    let mut out = header(opcode.as_u8(), node, seq, payload.len());
    out.put_slice(payload);
    out.freeze()
}

/// The envelope for a question.
pub(crate) fn encode_question(node: u64, id: u64, topic: Option<&str>) -> Bytes {
    let topic_len = topic.map_or(0, str::len);
    let mut out = header(QUESTION, node, 0, 9 + topic_len);
    out.put_u64(id);
    match topic {
        None => out.put_u8(0),
        Some(topic) => {
            out.put_u8(1);
            out.put_slice(topic.as_bytes());
        }
    }
    out.freeze()
}

/// The envelope for an answer.
pub(crate) fn encode_answer(node: u64, id: u64, count: u64) -> Bytes {
    let mut out = header(ANSWER, node, 0, 16);
    out.put_u64(id);
    out.put_u64(count);
    out.freeze()
}

fn word(bytes: &[u8], at: usize) -> Option<u64> {
    let raw: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(raw))
}

/// Reads an envelope; a message's payload shares `bytes`.
pub(crate) fn decode(bytes: &Bytes) -> Result<Envelope, Malformed> {
    if bytes.len() < HEADER_LEN {
        return Err(Malformed::Short);
    }
    if bytes[0] != VERSION {
        return Err(Malformed::Version(bytes[0]));
    }
    let node = word(bytes, 2).ok_or(Malformed::Short)?;
    let seq = word(bytes, 10).ok_or(Malformed::Short)?;
    let rest = &bytes[HEADER_LEN..];
    let body = match bytes[1] {
        QUESTION => {
            let id = word(rest, 0).ok_or(Malformed::Short)?;
            let topic = match rest.get(8) {
                Some(0) if rest.len() == 9 => None,
                Some(1) => {
                    let topic = std::str::from_utf8(&rest[9..]).map_err(|_| Malformed::Payload)?;
                    Some(topic.to_owned())
                }
                Some(_) => return Err(Malformed::Payload),
                None => return Err(Malformed::Short),
            };
            Body::Question { id, topic }
        }
        ANSWER => Body::Answer {
            id: word(rest, 0).ok_or(Malformed::Short)?,
            count: word(rest, 8).ok_or(Malformed::Short)?,
        },
        kind => {
            let opcode = match OpCode::from_u8(kind) {
                Some(op @ (OpCode::Text | OpCode::Binary | OpCode::Ping | OpCode::Pong)) => op,
                _ => return Err(Malformed::Kind(kind)),
            };
            let valid = match opcode {
                OpCode::Text => std::str::from_utf8(rest).is_ok(),
                OpCode::Ping | OpCode::Pong => rest.len() <= 125,
                _ => true,
            };
            if !valid {
                return Err(Malformed::Payload);
            }
            Body::Message {
                opcode,
                payload: bytes.slice(HEADER_LEN..),
            }
        }
    };
    Ok(Envelope { node, seq, body })
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
        assert_eq!(
            decode(&bytes).unwrap(),
            Envelope {
                node: 0x0102_0304_0506_0708,
                seq: 9,
                body: Body::Message {
                    opcode: OpCode::Text,
                    payload: Bytes::from_static(b"hi"),
                },
            }
        );
        let empty = encode(OpCode::Binary, 1, 2, b"");
        assert_eq!(
            decode(&empty).unwrap().body,
            Body::Message {
                opcode: OpCode::Binary,
                payload: Bytes::new()
            }
        );
    }

    #[test]
    fn questions_and_answers_round_trip() {
        let q = encode_question(7, 3, Some("room"));
        assert_eq!(&q[1..2], &[0x20]);
        assert_eq!(
            &q[18..],
            &[0, 0, 0, 0, 0, 0, 0, 3, 1, b'r', b'o', b'o', b'm']
        );
        let body = Body::Question {
            id: 3,
            topic: Some("room".into()),
        };
        assert_eq!(
            decode(&q).unwrap(),
            Envelope {
                node: 7,
                seq: 0,
                body
            }
        );
        let all = encode_question(7, 4, None);
        assert_eq!(
            decode(&all).unwrap().body,
            Body::Question { id: 4, topic: None }
        );
        let a = encode_answer(8, 3, 42);
        assert_eq!(
            decode(&a).unwrap(),
            Envelope {
                node: 8,
                seq: 0,
                body: Body::Answer { id: 3, count: 42 }
            }
        );
        assert_eq!(decode(&a.slice(..33)), Err(Malformed::Short));
        assert_eq!(decode(&q.slice(..26)), Err(Malformed::Short));
        let mut v = all.to_vec();
        v[26] = 2;
        assert_eq!(decode(&Bytes::from(v)), Err(Malformed::Payload));
        let mut v = q.to_vec();
        v[27] = 0xFF;
        assert_eq!(decode(&Bytes::from(v)), Err(Malformed::Payload));
    }

    #[test]
    fn bad_envelopes_are_refused() {
        let good = encode(OpCode::Binary, 1, 2, b"x");
        assert_eq!(decode(&good.slice(..17)), Err(Malformed::Short));
        let mut v = good.to_vec();
        v[0] = 2;
        assert_eq!(decode(&Bytes::from(v)), Err(Malformed::Version(2)));
        for kind in [0u8, 3, 8, 0xB, 0x22, 0xFF] {
            let mut v = good.to_vec();
            v[1] = kind;
            assert_eq!(decode(&Bytes::from(v)), Err(Malformed::Kind(kind)));
        }
        let bad_text = encode(OpCode::Text, 1, 2, &[0xC3, 0x28]);
        assert_eq!(decode(&bad_text), Err(Malformed::Payload));
        let long_ping = encode(OpCode::Ping, 1, 2, &[0; 126]);
        assert_eq!(decode(&long_ping), Err(Malformed::Payload));
        let ping = encode(OpCode::Ping, 1, 2, &[0; 125]);
        assert!(matches!(
            decode(&ping).unwrap().body,
            Body::Message {
                opcode: OpCode::Ping,
                ..
            }
        ));
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
