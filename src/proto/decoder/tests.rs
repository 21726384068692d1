//! Byte-literal tests of the decoder. Every stream is decoded whole, one byte at a time and
//! in several other chunk sizes, and all must agree: where the reads split the bytes must
//! never change the outcome.

use super::*;
use crate::proto::mask::apply_mask_reference;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame with first byte `b0`, masked with `mask` if given, shortest length form.
fn raw(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![b0];
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let start = out.len() + if mask.is_some() { 4 } else { 0 };
    out.extend_from_slice(&mask.unwrap_or_default()[..start - out.len()]);
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask_reference(&mut out[start..], key, 0);
    }
    out
}

/// A masked frame, as a client sends.
fn m(b0: u8, payload: &[u8]) -> Vec<u8> {
    raw(b0, payload, Some(KEY))
}

type Outcome = (Vec<Message>, Option<ProtocolError>);

/// Feeds `bytes` in reads of `chunk` bytes, draining after each, until the end or an error.
fn run(config: &DecoderConfig, bytes: &[u8], chunk: usize) -> Outcome {
    let mut decoder = Decoder::new(config.clone());
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(msg)) => messages.push(msg),
                Ok(None) => break,
                Err(e) => {
                    // Poisoned: the same error again, whatever follows.
                    buf.extend_from_slice(&m(0x81, b"ok"));
                    assert_eq!(decoder.decode(&mut buf), Err(e.clone()));
                    return (messages, Some(e));
                }
            }
        }
    }
    (messages, None)
}

/// Runs `bytes` whole and in every chunk size that matters, asserting identical outcomes.
fn decode_all(config: &DecoderConfig, bytes: &[u8]) -> Outcome {
    let whole = run(config, bytes, bytes.len());
    for chunk in [1, 2, 3, 5, 7, 64] {
        assert_eq!(run(config, bytes, chunk), whole, "chunk size {chunk}");
    }
    whole
}

fn server(bytes: &[u8]) -> Outcome {
    decode_all(&DecoderConfig::server(), bytes)
}

/// Asserts that `bytes` fails with `err` and `code`, after producing `before` messages.
fn assert_fails(
    config: &DecoderConfig,
    bytes: &[u8],
    before: usize,
    err: ProtocolError,
    code: u16,
) {
    let (messages, got) = decode_all(config, bytes);
    assert_eq!(got.as_ref(), Some(&err), "{bytes:02x?}");
    assert_eq!(err.close_code(), code);
    assert_eq!(messages.len(), before, "{messages:?}");
}

fn text(s: &str) -> Message {
    Message::Text(Bytes::copy_from_slice(s.as_bytes()))
}

fn cat(frames: &[Vec<u8>]) -> Vec<u8> {
    frames.concat()
}

#[test]
fn rfc_single_frame_masked_text() {
    let bytes = b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    assert_eq!(server(bytes), (vec![text("Hello")], None));
}

#[test]
fn masked_binary_in_every_length_form() {
    for len in [0, 1, 125, 126, 127, 0xFFFF, 0x10000] {
        let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let bytes = m(0x82, &payload);
        let expected = Message::Binary(Bytes::from(payload));
        assert_eq!(server(&bytes), (vec![expected], None), "{len}");
    }
}

#[test]
fn client_reads_unmasked_and_rejects_masked() {
    let client = DecoderConfig::client();
    let bytes = b"\x81\x05Hello";
    assert_eq!(decode_all(&client, bytes), (vec![text("Hello")], None));
    assert_fails(
        &client,
        &m(0x81, b"Hello"),
        0,
        ProtocolError::MaskedFrame,
        1002,
    );
    let err = Decoder::new(client).decode(&mut BytesMut::from(&b"\x82\x80"[..]));
    assert_eq!(err, Err(ProtocolError::MaskedFrame));
}

#[test]
fn fragmented_message_with_ping_interleaved() {
    let bytes = cat(&[m(0x01, b"Hel"), m(0x89, b"ping"), m(0x80, b"lo")]);
    let expected = vec![Message::Ping(Bytes::from_static(b"ping")), text("Hello")];
    assert_eq!(server(&bytes), (expected, None));
}

#[test]
fn long_mixed_stream_is_split_independent() {
    let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    let bytes = cat(&[
        m(0x81, "κόσμε".as_bytes()),
        m(0x81, b""),
        m(0x02, &big[..300]),
        m(0x8A, b""),
        m(0x00, b""),
        m(0x00, &big[300..]),
        m(0x80, b""),
        m(0x01, b"\xce"),
        m(0x00, b"\xba\xf0\x9f"),
        m(0x89, b"mid"),
        m(0x80, b"\x98\x80"),
        m(0x82, b"\x00\xff"),
        m(0x88, b"\x03\xe8bye"),
        m(0x81, b"after close"),
    ]);
    let (messages, err) = server(&bytes);
    assert_eq!(err, None);
    let close = CloseFrame {
        code: 1000,
        reason: "bye".into(),
    };
    let expected = vec![
        text("κόσμε"),
        text(""),
        Message::Pong(Bytes::new()),
        Message::Binary(Bytes::from(big)),
        Message::Ping(Bytes::from_static(b"mid")),
        text("κ😀"),
        Message::Binary(Bytes::from_static(b"\x00\xff")),
        Message::Close(Some(close)),
    ];
    assert_eq!(messages, expected);
}

#[test]
fn partial_payload_is_consumed_as_it_arrives() {
    // Text is consumed (and validated) as it arrives.
    let frame = m(0x81, &[b'a'; 1000]);
    let mut decoder = Decoder::new(DecoderConfig::server());
    let mut buf = BytesMut::from(&frame[..500]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert!(buf.is_empty());
    assert_eq!(
        decoder.wanted(),
        1000 - (500 - 8),
        "the rest of the frame's payload"
    );
    // A single binary frame is waited for whole, so it is taken without a copy; `wanted`
    // says how much to read.
    let frame = m(0x82, &[9; 1000]);
    let mut decoder = Decoder::new(DecoderConfig::server());
    let mut buf = BytesMut::from(&frame[..500]);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 500, "nothing consumed yet");
    assert_eq!(decoder.wanted(), frame.len());
    buf.extend_from_slice(&frame[500..]);
    let payload_at = buf.as_ptr() as usize + 8;
    let Ok(Some(Message::Binary(data))) = decoder.decode(&mut buf) else {
        panic!("a message")
    };
    assert_eq!(
        (data.len(), data.as_ptr() as usize),
        (1000, payload_at),
        "zero copy"
    );
    assert_eq!(decoder.wanted(), 0);
    // A header alone is consumed only once complete.
    let mut buf = BytesMut::from(&m(0x82, &[1; 200])[..3]);
    let mut fresh = Decoder::new(DecoderConfig::server());
    assert_eq!(fresh.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), 3);
}

#[test]
fn fast_path_does_not_copy() {
    let mut buf = BytesMut::from(&m(0x82, &[5; 300])[..]);
    let payload_at = buf.as_ptr() as usize + 8;
    let msg = Decoder::new(DecoderConfig::server()).decode(&mut buf);
    let Ok(Some(Message::Binary(data))) = msg else {
        panic!("{msg:?}");
    };
    assert_eq!(data.as_ptr() as usize, payload_at);
    assert_eq!(&data[..], &[5; 300]);
}

#[test]
fn close_ends_decoding() {
    let mut decoder = Decoder::new(DecoderConfig::server());
    let mut buf = BytesMut::from(&cat(&[m(0x88, b""), m(0x81, b"x")])[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Message::Close(None))));
    assert!(decoder.is_closed());
    let left = buf.len();
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), left);
}

#[test]
fn reserved_bits() {
    let rsv = ProtocolError::ReservedBits;
    for b0 in [0xC1, 0xA1, 0x91, 0xC2] {
        assert_fails(&DecoderConfig::server(), &m(b0, b"x"), 0, rsv.clone(), 1002);
    }
    let deflate = DecoderConfig {
        allow_rsv1: true,
        ..DecoderConfig::server()
    };
    let on_continuation = cat(&[m(0x41, b"a"), m(0xC0, b"b")]);
    assert_fails(&deflate, &on_continuation, 0, rsv.clone(), 1002);
    assert_fails(&deflate, &m(0xC9, b""), 0, rsv.clone(), 1002);
    assert_fails(&deflate, &m(0xA2, b""), 0, rsv.clone(), 1002);
    let err = Decoder::new(DecoderConfig::server()).decode(&mut BytesMut::from(&b"\xc1\x81"[..]));
    assert_eq!(err, Err(rsv));
}

#[test]
fn rsv1_allowed_marks_compressed_messages() {
    let deflate = DecoderConfig {
        allow_rsv1: true,
        ..DecoderConfig::server()
    };
    let mut decoder = Decoder::new(deflate);
    // Compressed text is not UTF-8 until inflated, so it is not checked here.
    let mut buf = BytesMut::from(&cat(&[m(0xC1, b"\xff\x00"), m(0x89, b"")])[..]);
    let first = decoder.decode(&mut buf);
    assert_eq!(
        first,
        Ok(Some(Message::Text(Bytes::from_static(b"\xff\x00"))))
    );
    assert!(decoder.last_message_compressed());
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Message::Ping(Bytes::new())))
    );
    assert!(!decoder.last_message_compressed());
    let mut buf = BytesMut::from(&cat(&[m(0x42, b"ab"), m(0x80, b"c"), m(0x81, b"d")])[..]);
    let second = decoder.decode(&mut buf);
    assert_eq!(
        second,
        Ok(Some(Message::Binary(Bytes::from_static(b"abc"))))
    );
    assert!(decoder.last_message_compressed());
    assert_eq!(decoder.decode(&mut buf), Ok(Some(text("d"))));
    assert!(!decoder.last_message_compressed());
}

#[test]
fn header_errors_from_two_bytes() {
    let cfg = DecoderConfig::server();
    let cases: [(&[u8], ProtocolError); 6] = [
        (b"\x83\x80", ProtocolError::ReservedOpcode(3)),
        (b"\x8f\x80", ProtocolError::ReservedOpcode(0xF)),
        (b"\x09\x80", ProtocolError::FragmentedControl),
        (b"\x89\xfe", ProtocolError::ControlTooLong(126)),
        (b"\x81\x05", ProtocolError::UnmaskedFrame),
        (b"\x80\x80", ProtocolError::UnexpectedContinuation),
    ];
    for (bytes, err) in cases {
        let got = Decoder::new(cfg.clone()).decode(&mut BytesMut::from(bytes));
        assert_eq!(got, Err(err.clone()));
        assert_eq!(err.close_code(), 1002);
    }
}

#[test]
fn protocol_violations() {
    let cfg = DecoderConfig::server();
    let fail = |bytes: &[u8], before, err| assert_fails(&cfg, bytes, before, err, 1002);
    fail(&m(0x8B, b""), 0, ProtocolError::ReservedOpcode(0xB));
    fail(&m(0x07, b""), 0, ProtocolError::ReservedOpcode(7));
    fail(&m(0x08, b""), 0, ProtocolError::FragmentedControl);
    fail(&m(0x89, &[0; 126]), 0, ProtocolError::ControlTooLong(126));
    fail(b"\x81\x05Hello", 0, ProtocolError::UnmaskedFrame);
    fail(&m(0x80, b"x"), 0, ProtocolError::UnexpectedContinuation);
    fail(&m(0x00, b""), 0, ProtocolError::UnexpectedContinuation);
    let open = cat(&[m(0x01, b"a"), m(0x89, b""), m(0x81, b"b")]);
    fail(&open, 1, ProtocolError::ExpectedContinuation);
    let open = cat(&[m(0x02, b"a"), m(0x02, b"b")]);
    fail(&open, 0, ProtocolError::ExpectedContinuation);
    let after = cat(&[m(0x81, b"done"), m(0x80, b"x")]);
    fail(&after, 1, ProtocolError::UnexpectedContinuation);
    fail(
        b"\x82\xff\x80\0\0\0\0\0\0\0",
        0,
        ProtocolError::LengthOverflow,
    );
    fail(b"\x82\xff\x80", 0, ProtocolError::LengthOverflow);
}

#[test]
fn close_payload_errors() {
    let cfg = DecoderConfig::server();
    let fail = |payload: &[u8], err, code| assert_fails(&cfg, &m(0x88, payload), 0, err, code);
    fail(b"\x03", ProtocolError::ClosePayloadTooShort, 1002);
    fail(b"\x03\xed", ProtocolError::InvalidCloseCode(1005), 1002);
    fail(b"\x03\xee", ProtocolError::InvalidCloseCode(1006), 1002);
    fail(b"\x00\x00", ProtocolError::InvalidCloseCode(0), 1002);
    fail(b"\x13\x88", ProtocolError::InvalidCloseCode(5000), 1002);
    fail(
        b"\x03\xe8\xed\xa0\x80",
        ProtocolError::InvalidCloseReason,
        1007,
    );
    let ok = decode_all(&cfg, &m(0x88, b"\x0f\xa0\xce\xba"));
    let frame = CloseFrame {
        code: 4000,
        reason: "κ".into(),
    };
    assert_eq!(ok, (vec![Message::Close(Some(frame))], None));
}

#[test]
fn invalid_utf8() {
    let cfg = DecoderConfig::server();
    let fail = |bytes: &[u8], before| {
        assert_fails(&cfg, bytes, before, ProtocolError::InvalidUtf8, 1007);
    };
    fail(&m(0x81, b"\xce\xba\xed\xa0\x80"), 0);
    fail(&m(0x81, b"ab\xc3"), 0);
    fail(&cat(&[m(0x01, b"\xce"), m(0x80, b"\xba\xff")]), 0);
    fail(
        &cat(&[m(0x01, b"ok"), m(0x89, b""), m(0x80, b"\xe2\x82")]),
        1,
    );
    let no_check = DecoderConfig {
        validate_utf8: false,
        ..DecoderConfig::server()
    };
    let bad = Message::Text(Bytes::from_static(b"\xff"));
    assert_eq!(decode_all(&no_check, &m(0x81, b"\xff")), (vec![bad], None));
}

#[test]
fn invalid_utf8_fails_before_the_frame_ends() {
    // Autobahn 6.4.x: the bad bytes arrive, the rest of the frame does not.
    let payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80edited";
    for frame in [m(0x81, payload), m(0x01, payload)] {
        let mut decoder = Decoder::new(DecoderConfig::server());
        // Up to and including 0x90, the byte no code point can continue with after 0xF4.
        let mut buf = BytesMut::from(&frame[..6 + 12]);
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        buf.extend_from_slice(&frame[6 + 12..6 + 13]);
        assert_eq!(decoder.decode(&mut buf), Err(ProtocolError::InvalidUtf8));
    }
}

#[test]
fn message_size_limit() {
    let cfg = DecoderConfig {
        max_message_size: 100,
        ..DecoderConfig::server()
    };
    let at_limit = decode_all(&cfg, &m(0x82, &[1; 100]));
    assert_eq!(
        at_limit,
        (vec![Message::Binary(Bytes::from(vec![1; 100]))], None)
    );
    let too_big = |size| ProtocolError::MessageTooBig { size, limit: 100 };
    assert_fails(&cfg, &m(0x82, &[1; 101]), 0, too_big(101), 1009);
    let fragments = cat(&[m(0x01, &[b'a'; 60]), m(0x00, &[b'b'; 40]), m(0x80, b"c")]);
    assert_fails(&cfg, &fragments, 0, too_big(101), 1009);
    let fragments = cat(&[m(0x01, &[b'a'; 60]), m(0x80, &[b'b'; 40])]);
    assert_eq!(decode_all(&cfg, &fragments).0.len(), 1);
    // Refused from the header alone; a 1 TiB declaration allocates nothing.
    let header = b"\x82\xff\x00\x00\x01\x00\x00\x00\x00\x00\x37\xfa\x21\x3d";
    let err = Decoder::new(DecoderConfig::server()).decode(&mut BytesMut::from(&header[..]));
    let size = 1 << 40;
    assert_eq!(
        err,
        Err(ProtocolError::MessageTooBig {
            size,
            limit: 1 << 20
        })
    );
    let max = b"\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff\x37\xfa\x21\x3d";
    let err = Decoder::new(DecoderConfig::server()).decode(&mut BytesMut::from(&max[..]));
    assert_eq!(err.unwrap_err().close_code(), 1009);
}

#[test]
fn fragment_limit() {
    let cfg = DecoderConfig::server();
    let message = |frames: usize| {
        let mut bytes = m(0x02, b"");
        for _ in 0..frames - 2 {
            bytes.extend_from_slice(&m(0x00, b""));
        }
        bytes.extend_from_slice(&m(0x80, b""));
        bytes
    };
    let ok = run(&cfg, &message(4096), 1);
    assert_eq!(ok, (vec![Message::Binary(Bytes::new())], None));
    let err = ProtocolError::TooManyFragments { limit: 4096 };
    assert_fails(&cfg, &message(4097), 0, err, 1008);
}

#[test]
fn config_defaults() {
    let s = DecoderConfig::server();
    assert_eq!(
        (s.role, s.max_message_size, s.max_fragments),
        (Role::Server, 1 << 20, 4096)
    );
    assert!(s.validate_utf8 && !s.allow_rsv1);
    let c = DecoderConfig::client();
    assert_eq!(
        (c.role, c.max_message_size, c.max_fragments),
        (Role::Client, 64 << 20, 65536)
    );
    assert!(c.validate_utf8 && !c.allow_rsv1);
    assert_eq!(Decoder::new(c).config().role, Role::Client);
    assert!(Message::Close(None).is_control() && !text("").is_control());
}
