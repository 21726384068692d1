//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): not part of the API, hidden from
//! the docs, and free to change. Each runs one of the server's parsers over arbitrary bytes the
//! way the server does, and panics when an invariant breaks, which the fuzzer reports.

use bytes::BytesMut;

use crate::{
    http::{HeadLimits, HeadParser},
    proto::{self, Decoder, DecoderConfig, FrameHeader, Message, ProtocolError},
};

/// The frame header codec: a parsed header re-encodes to bytes that parse to the same header,
/// and a header never claims more bytes than it was given.
pub fn frame_header(data: &[u8]) {
    let Ok(Some((header, used))) = FrameHeader::parse(data) else {
        return;
    };
    assert!(used <= data.len() && used >= 2);
    assert!(
        used >= header.encoded_len(),
        "minimal encoding is never longer"
    );
    let mut out = BytesMut::new();
    header.encode(&mut out);
    assert_eq!(out.len(), header.encoded_len());
    let again = FrameHeader::parse(&out).expect("re-encoded header parses");
    assert_eq!(again, Some((header, out.len())));
}

/// The request head parser as the server drives it: fed in pieces whose size comes from the
/// first byte, it must give the same answer as when parsing everything at once; a complete
/// head then goes through the WebSocket handshake validation.
pub fn http_head(data: &[u8]) {
    let Some((&step, data)) = data.split_first() else {
        return;
    };
    let limits = HeadLimits {
        max_bytes: 2048,
        max_headers: 16,
    };
    let whole = HeadParser::new().parse(data, &limits);
    let step = usize::from(step).max(1);
    let mut parser = HeadParser::new();
    let mut pieces = Ok(None);
    let mut end = 0;
    while end < data.len() {
        end = (end + step).min(data.len());
        pieces = parser.parse(&data[..end], &limits);
        if !matches!(pieces, Ok(None)) {
            break;
        }
    }
    match (&whole, &pieces) {
        (Ok(Some((a, used_a))), Ok(Some((b, used_b)))) => {
            assert_eq!(used_a, used_b);
            assert!(*used_a <= data.len() && *used_a <= limits.max_bytes);
            assert_eq!(a.method(), b.method());
            assert_eq!(a.uri(), b.uri());
            assert_eq!(a.headers(), b.headers());
            assert!(a.headers().len() <= limits.max_headers);
            if proto::is_upgrade_request(a) {
                if let Ok(handshake) = proto::validate_request(a) {
                    assert_eq!(handshake.accept.len(), 28);
                }
            }
        }
        (Ok(None), Ok(None)) => assert!(data.len() <= limits.max_bytes),
        (Err(a), Err(b)) => assert_eq!(a.status(), b.status()),
        (a, b) => panic!("whole {a:?} but in pieces {b:?}"),
    }
}

/// What the server's read side makes of a byte stream after the upgrade.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    messages: Vec<Message>,
    error: Option<ProtocolError>,
}

/// The server's read path after a handshake: a request head (when the input starts with one)
/// and then frames, decoded with small limits. Decoding the bytes in pieces (their size from
/// the first byte) must yield exactly the messages and the error that decoding them in one
/// buffer does, and every message must respect the limits and RFC 6455.
pub fn read_path(data: &[u8]) {
    let Some((&step, mut data)) = data.split_first() else {
        return;
    };
    if data.starts_with(b"GET ") {
        match HeadParser::new().parse(data, &HeadLimits::default()) {
            Ok(Some((head, used))) => {
                let _ = proto::validate_request(&head);
                data = &data[used..];
            }
            Ok(None) | Err(_) => return,
        }
    }
    let config = DecoderConfig {
        max_message_size: 4096,
        max_fragments: 32,
        ..DecoderConfig::server()
    };
    let whole = decode_all(&config, data, data.len().max(1));
    let pieces = decode_all(&config, data, usize::from(step % 64).max(1));
    assert_eq!(whole, pieces);
    for message in &whole.messages {
        match message {
            Message::Text(text) => {
                assert!(text.len() <= config.max_message_size);
                assert!(std::str::from_utf8(text).is_ok(), "text is UTF-8");
            }
            Message::Binary(bytes) => assert!(bytes.len() <= config.max_message_size),
            Message::Ping(p) | Message::Pong(p) => assert!(p.len() <= 125),
            Message::Close(Some(frame)) => {
                assert!(proto::is_valid_close_code(frame.code));
                assert!(frame.reason.len() <= 123);
            }
            Message::Close(None) => {}
        }
    }
    if let Some(e) = &whole.error {
        assert!(matches!(e.close_code(), 1002 | 1007 | 1008 | 1009));
    }
}

/// Feeds `data` to a fresh decoder `step` bytes at a time until it fails, closes, or runs out.
fn decode_all(config: &DecoderConfig, data: &[u8], step: usize) -> Outcome {
    let mut decoder = Decoder::new(config.clone());
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for piece in data.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => {
                    let close = matches!(message, Message::Close(_));
                    messages.push(message);
                    if close {
                        return Outcome {
                            messages,
                            error: None,
                        };
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        messages,
                        error: Some(e),
                    }
                }
            }
        }
    }
    Outcome {
        messages,
        error: None,
    }
}
