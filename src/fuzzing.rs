//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz): not part of the API, hidden from
//! the docs, and free to change. Each runs one of the server's parsers over arbitrary bytes the
//! way the server does, and panics when an invariant breaks, which the fuzzer reports.

use bytes::BytesMut;

use crate::{
    http::{HeadLimits, HeadParser},
    proto::{
        self,
        deflate::{
            negotiate, parse_extensions, DeflatePolicy, Deflater, Inflater, MAX_WINDOW_BITS,
            MIN_WINDOW_BITS, PERMESSAGE_DEFLATE,
        },
        Decoder, DecoderConfig, FrameHeader, Message, ProtocolError,
    },
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

/// permessage-deflate negotiation over an arbitrary `Sec-WebSocket-Extensions` value, against
/// a few server policies: it never panics, it fails exactly when the header does not parse,
/// and an agreement stays within the policy and RFC 7692 (windows 9..=15, the server's no
/// wider than the policy's, `server_no_context_takeover` whenever the policy wants it, a
/// client window only when asked for) and answers a response header that parses to exactly
/// what was agreed.
pub fn extensions(data: &[u8]) {
    let header = String::from_utf8_lossy(data);
    let parsed = parse_extensions(&header);
    if let Err(e) = &parsed {
        assert!(e.at <= header.len(), "error position {} past the end", e.at);
    }
    let offered = parsed.as_ref().is_ok_and(|list| {
        list.iter()
            .any(|e| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
    });
    let policies = [
        DeflatePolicy::default(),
        DeflatePolicy {
            server_no_context_takeover: true,
            ..DeflatePolicy::default()
        },
        DeflatePolicy {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: 12,
            client_max_window_bits: Some(11),
        },
        DeflatePolicy {
            server_max_window_bits: 8,
            client_max_window_bits: Some(16),
            ..DeflatePolicy::default()
        },
    ];
    for policy in &policies {
        let result = negotiate(&header, policy);
        assert_eq!(result.is_err(), parsed.is_err(), "{policy:?}");
        let Ok(Some(agreement)) = result else {
            continue;
        };
        assert!(offered, "an agreement without a permessage-deflate offer");
        let ours = policy
            .server_max_window_bits
            .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        let windows = MIN_WINDOW_BITS..=MAX_WINDOW_BITS;
        assert!(windows.contains(&agreement.server_max_window_bits));
        assert!(windows.contains(&agreement.client_max_window_bits));
        assert!(agreement.server_max_window_bits <= ours);
        assert!(agreement.server_no_context_takeover || !policy.server_no_context_takeover);
        assert_eq!(
            agreement.client_no_context_takeover,
            policy.client_no_context_takeover
        );
        if let Some(wanted) = policy.client_max_window_bits {
            assert!(
                agreement.client_max_window_bits <= wanted.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
            );
        } else {
            assert_eq!(agreement.client_max_window_bits, MAX_WINDOW_BITS);
        }
        // The response is one well-formed permessage-deflate element saying what was agreed.
        let response = parse_extensions(&agreement.response).expect("the response parses");
        assert_eq!(response.len(), 1, "{}", agreement.response);
        assert_eq!(response[0].name, PERMESSAGE_DEFLATE);
        let param = |name: &str| {
            response[0]
                .params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            param("server_no_context_takeover").is_some(),
            agreement.server_no_context_takeover
        );
        assert_eq!(
            param("client_no_context_takeover").is_some(),
            agreement.client_no_context_takeover
        );
        let bits = |name: &str| param(name).flatten().and_then(|v| v.parse::<u8>().ok());
        assert_eq!(
            bits("server_max_window_bits").unwrap_or(MAX_WINDOW_BITS),
            agreement.server_max_window_bits
        );
        assert_eq!(
            bits("client_max_window_bits"),
            policy
                .client_max_window_bits
                .map(|_| agreement.client_max_window_bits)
        );
        // Read back as an offer, the response is honoured by a permissive server with the
        // same server-side parameters.
        let again = negotiate(&agreement.response, &DeflatePolicy::default())
            .expect("the response parses")
            .expect("the response is an acceptable offer");
        assert_eq!(
            (
                again.server_no_context_takeover,
                again.server_max_window_bits
            ),
            (
                agreement.server_no_context_takeover,
                agreement.server_max_window_bits
            )
        );
    }
}

/// The inflate path, in two parts. The first byte chooses a size limit (1..=4033 bytes), the
/// context mode, a compression level and window, and how the rest is cut into messages.
/// Arbitrary bytes as compressed messages: the inflater never returns more than the limit,
/// fails only with 1007 or 1009 (a 1009 having produced exactly one byte past the limit), and
/// is not used after a failure, as on a connection. Then a round trip: the same bytes as
/// plain messages, compressed by a [`Deflater`] and inflated by an [`Inflater`] with the same
/// context mode, come back exactly.
pub fn inflate(data: &[u8]) {
    let Some((&control, data)) = data.split_first() else {
        return;
    };
    let limit = usize::from(control & 0x3f) * 64 + 1;
    let no_context_takeover = control & 0x40 != 0;
    let cut = usize::from(control >> 4).max(1) * 61;
    let mut inflater = Inflater::new(no_context_takeover);
    for message in data.chunks(cut) {
        match inflater.inflate(message, limit) {
            Ok(out) => assert!(out.len() <= limit, "{} bytes past {limit}", out.len()),
            Err(ProtocolError::MessageTooBig { size, limit: l }) => {
                assert_eq!((size, l), (limit as u64 + 1, limit));
                break;
            }
            Err(e) => {
                assert_eq!(e.close_code(), 1007, "{e:?}");
                break;
            }
        }
    }

    let window = MIN_WINDOW_BITS + control % (MAX_WINDOW_BITS - MIN_WINDOW_BITS + 1);
    let level = u32::from(control % 10);
    let mut deflater = Deflater::new(window, level, no_context_takeover);
    let mut inflater = Inflater::new(no_context_takeover);
    for message in data.chunks(cut) {
        let mut compressed = Vec::new();
        if !deflater.compress(message, &mut compressed) {
            // Sent uncompressed; the compressor was reset, so later messages never refer to
            // this one.
            assert!(compressed.is_empty());
            continue;
        }
        assert!(compressed.len() < message.len() + 4);
        let out = inflater
            .inflate(&compressed, message.len())
            .expect("our own compressed message inflates within its size");
        assert_eq!(out, message);
    }
}
