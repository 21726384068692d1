//! X: permessage-deflate (RFC 7692), and P10 (malicious deflate streams). Every case runs on
//! a server with deflate on; rows about memory or compression contexts run in both
//! [`DeflateMode`]s. The client compresses with flate2 on its own (`deflate_support`, shared
//! with `tests/deflate.rs`).

use std::time::{Duration, Instant};

use flate2::{Compress, Compression, Decompress};
use ringsocket::{App, DeflateMode, PerMessageDeflate, SendOptions, WsOptions};

use crate::{
    deflate_support::{bomb, deflate_options, inflate, text, Bits, ClientDeflate, TAIL},
    harness::*,
};

/// The offer browsers send.
const OFFER: &str = "permessage-deflate; client_max_window_bits";
const MODES: [DeflateMode; 2] = [DeflateMode::Shared, DeflateMode::Dedicated];
const RSV1: u8 = 4;

/// The echo app with `options`; `/x9` answers every message twice, first with compression
/// off, then with it on.
fn app(options: WsOptions) -> App {
    base()
        .websocket(options)
        .ws("/x9", |mut ws, _req| async move {
            while let Some(Ok(message)) = ws.recv().await {
                let plain = SendOptions::new().compress(false);
                if message.is_close()
                    || ws.send_with(message.clone(), plain).await.is_err()
                    || ws.send(message).await.is_err()
                {
                    break;
                }
            }
        })
        .build()
        .expect("app")
}

/// A case with deflate on in `mode` (16-byte threshold) and `max_payload` bytes per message.
fn deflate_case(mode: DeflateMode, max_payload: usize) -> Case {
    Case::new(app(deflate_options(mode).max_payload(max_payload)))
}

/// Upgrades to `path` offering `offer`; returns the connection and the 101's
/// `Sec-WebSocket-Extensions`.
fn connect(case: &Case, path: &str, offer: &str) -> (Raw, Option<String>) {
    let mut c = case.tcp();
    c.send(&upgrade_request(
        path,
        &format!("Sec-WebSocket-Extensions: {offer}\r\n"),
    ));
    let head = c.read_head().expect("a response head");
    assert_eq!(status_of(&head), 101, "{}", String::from_utf8_lossy(&head));
    (c, header_of(&head, "sec-websocket-extensions"))
}

/// A connection to `/` that negotiated deflate with the browser offer; whether the server
/// keeps its context between messages.
fn deflate_ws(case: &Case) -> (Raw, bool) {
    let (c, extensions) = connect(case, "/", OFFER);
    let extensions = extensions.expect("deflate negotiated");
    assert!(extensions.starts_with("permessage-deflate"), "{extensions}");
    (c, !extensions.contains("server_no_context_takeover"))
}

/// The close code the server answers `bytes` with on a fresh deflate connection, checking
/// TCP ends after it.
fn deflate_close_code(case: &Case, bytes: &[u8]) -> Option<u16> {
    let (mut c, _) = deflate_ws(case);
    c.send(bytes);
    let code = c.expect_close();
    c.expect_eof();
    code
}

/// The server's inflater for its messages, following its context mode.
struct Echoes {
    d: Decompress,
    takeover: bool,
}

impl Echoes {
    fn new(takeover: bool) -> Self {
        Echoes {
            d: Decompress::new_with_window_bits(false, 15),
            takeover,
        }
    }

    /// The next message's payload, inflated when RSV1 says so; checks FIN and `opcode`.
    fn next(&mut self, c: &mut Raw, opcode: u8) -> Vec<u8> {
        let f = c.frame();
        assert_eq!((f.fin, f.opcode), (true, opcode), "{f:?}");
        if f.rsv == 0 {
            return f.payload;
        }
        assert_eq!(f.rsv, RSV1, "{f:?}");
        if !self.takeover {
            self.d = Decompress::new_with_window_bits(false, 15);
        }
        inflate(&mut self.d, &f.payload)
    }
}

/// `len` bytes that do not compress (a fixed xorshift sequence).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// X1: RSV1 on a non-first fragment.

#[test]
fn x01_rsv1_on_continuation_is_1002() {
    let case = deflate_case(DeflateMode::Shared, 1 << 20);
    let compressed = ClientDeflate::new().compress(&text(100));
    let mut bytes = masked(0x41, &compressed[..10]);
    bytes.extend(masked(0xC0, &compressed[10..]));
    assert_eq!(deflate_close_code(&case, &bytes), Some(1002));
    case.finish();
}

#[test]
fn x01_rsv1_only_on_continuation_is_1002() {
    let case = deflate_case(DeflateMode::Shared, 1 << 20);
    let mut bytes = masked(0x01, b"plain first fragment");
    bytes.extend(masked(0xC0, &ClientDeflate::new().compress(&text(50))));
    assert_eq!(deflate_close_code(&case, &bytes), Some(1002));
    case.finish();
}

/// RSV1 on a connection that did not negotiate deflate, on a server that has it on.
#[test]
fn x01_rsv1_without_negotiation_is_1002() {
    let case = deflate_case(DeflateMode::Shared, 1 << 20);
    let compressed = ClientDeflate::new().compress(&text(100));
    assert_eq!(case.close_code_for(&masked(0xC1, &compressed)), Some(1002));
    case.finish();
}

// X2: RSV1 on control frames.

macro_rules! rsv1_on_control {
    ($($name:ident: $b0:expr, $payload:expr;)*) => {$(
        #[test]
        fn $name() {
            let case = deflate_case(DeflateMode::Shared, 1 << 20);
            assert_eq!(deflate_close_code(&case, &masked($b0, $payload)), Some(1002));
            case.finish();
        }
    )*};
}

rsv1_on_control! {
    x02_rsv1_on_ping_is_1002: 0xC9, b"ping";
    x02_rsv1_on_pong_is_1002: 0xCA, b"pong";
    x02_rsv1_on_close_is_1002: 0xC8, &1000u16.to_be_bytes();
}

/// A ping with RSV1 between the fragments of a compressed message.
#[test]
fn x02_rsv1_on_ping_inside_a_compressed_message_is_1002() {
    let case = deflate_case(DeflateMode::Shared, 1 << 20);
    let compressed = ClientDeflate::new().compress(&text(1000));
    let mut bytes = masked(0x41, &compressed[..8]);
    bytes.extend(masked(0xC9, b""));
    bytes.extend(masked(0x80, &compressed[8..]));
    assert_eq!(deflate_close_code(&case, &bytes), Some(1002));
    case.finish();
}

// X3: data that does not inflate, and the tail the receiver appends.

#[test]
fn x03_corrupt_data_is_1007() {
    for mode in MODES {
        let case = deflate_case(mode, 1 << 20);
        // BTYPE 11 is reserved.
        assert_eq!(
            deflate_close_code(&case, &masked(0xC2, b"\xff\xff\xff\xff")),
            Some(1007)
        );
        case.finish();
    }
}

#[test]
fn x03_final_block_then_trailing_garbage_is_1007() {
    let case = deflate_case(DeflateMode::Shared, 1 << 20);
    // "Hello" in one final block (RFC 7692 §7.2.3.1 with BFINAL set), then one byte more.
    assert_eq!(
        deflate_close_code(&case, &masked(0xC1, b"\xf3\x48\xcd\xc9\xc9\x07\x00\x01")),
        Some(1007)
    );
    case.finish();
}

/// The client strips `00 00 ff ff` (RFC 7692 §7.2.1): the server must append it to inflate;
/// a message ending in a final block needs no tail, and the next one starts a new stream.
#[test]
fn x03_missing_tail_is_appended_by_the_server() {
    for mode in MODES {
        let case = deflate_case(mode, 1 << 20);
        let (mut c, takeover) = deflate_ws(&case);
        let mut echoes = Echoes::new(takeover);
        let mut client = ClientDeflate::new();
        for i in 0..3 {
            let message = text(2000 + i);
            let compressed = client.compress(&message);
            assert!(!compressed.ends_with(&TAIL));
            c.send(&masked(0xC1, &compressed));
            assert_eq!(echoes.next(&mut c, 1), message, "{mode:?} message {i}");
        }
        c.send(&masked(0xC1, b"\xf3\x48\xcd\xc9\xc9\x07\x00"));
        assert_eq!(echoes.next(&mut c, 1), b"Hello");
        let message = text(700);
        c.send(&masked(0xC1, &ClientDeflate::new().compress(&message)));
        assert_eq!(echoes.next(&mut c, 1), message, "{mode:?}");
        c.close_cleanly();
        case.finish();
    }
}

/// A client that leaves the tail on sends one more empty stored block: still valid.
#[test]
fn x03_tail_left_on_is_accepted() {
    let case = deflate_case(DeflateMode::Dedicated, 1 << 20);
    let (mut c, takeover) = deflate_ws(&case);
    let mut echoes = Echoes::new(takeover);
    let message = text(1500);
    let mut compressed = ClientDeflate::new().compress(&message);
    compressed.extend_from_slice(&TAIL);
    c.send(&masked(0xC2, &compressed));
    assert_eq!(echoes.next(&mut c, 2), message);
    c.close_cleanly();
    case.finish();
}

#[test]
fn x03_invalid_utf8_once_inflated_is_1007() {
    let case = deflate_case(DeflateMode::Shared, 1 << 20);
    let bad = ClientDeflate::new().compress(b"abc\xff\xfeabc abc abc abc abc");
    assert_eq!(deflate_close_code(&case, &masked(0xC1, &bad)), Some(1007));
    case.finish();
}

// X4: deflate bombs. `bomb(pairs)` is about pairs / 4 bytes and inflates to 258 * pairs.

/// 64 KiB that inflate to 64 MiB, against the 1 MiB limit.
fn bomb_64k() -> Vec<u8> {
    let payload = bomb(256 * 1024);
    assert!(payload.len() <= 64 * 1024 + 64, "{}", payload.len());
    payload
}

#[test]
fn x04_bomb_in_one_frame_is_1009() {
    let payload = bomb_64k();
    for mode in MODES {
        let case = deflate_case(mode, 1 << 20);
        let (mut c, _) = deflate_ws(&case);
        let started = Instant::now();
        c.send(&masked(0xC2, &payload));
        assert_eq!(c.expect_close(), Some(1009), "{mode:?}");
        // Inflating stops at the limit: 1 MiB of work, not 64.
        assert!(started.elapsed() < Duration::from_secs(3), "{mode:?}");
        c.expect_eof();
        case.finish();
    }
}

#[test]
fn x04_bomb_in_16_fragments_is_1009() {
    let payload = bomb_64k();
    for mode in MODES {
        let case = deflate_case(mode, 1 << 20);
        let (mut c, _) = deflate_ws(&case);
        let pieces: Vec<&[u8]> = payload.chunks(payload.len().div_ceil(16)).collect();
        let mut bytes = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let fin = if i + 1 == pieces.len() { 0x80 } else { 0 };
            let first = if i == 0 { 0x42 } else { 0 };
            bytes.extend(masked(fin | first, piece));
        }
        let started = Instant::now();
        c.send(&bytes);
        assert_eq!(c.expect_close(), Some(1009), "{mode:?}");
        assert!(started.elapsed() < Duration::from_secs(3), "{mode:?}");
        c.expect_eof();
        case.finish();
    }
}

/// With context takeover, 64 messages of exactly the limit each (4 MiB in all from about
/// 40 KiB compressed): each stands alone against the limit and is echoed; memory does not
/// add up across them; one byte more in the next message is 1009.
#[test]
fn x04_bomb_spread_across_messages_with_context_takeover() {
    let limit = 64 * 1024;
    for mode in MODES {
        let case = deflate_case(mode, limit);
        let (mut c, takeover) = deflate_ws(&case);
        let mut echoes = Echoes::new(takeover);
        let mut client = ClientDeflate::new();
        let started = Instant::now();
        let zeros = vec![0u8; limit];
        for i in 0..64 {
            c.send(&masked(0xC2, &client.compress(&zeros)));
            assert_eq!(echoes.next(&mut c, 2), zeros, "{mode:?} message {i}");
        }
        c.send(&masked(0xC2, &client.compress(&vec![0u8; limit + 1])));
        assert_eq!(c.expect_close(), Some(1009), "{mode:?}");
        c.expect_eof();
        assert!(started.elapsed() < Duration::from_secs(10), "{mode:?}");
        case.finish();
    }
}

// X5: the inflated-size boundary, never truncated.

const X5_LIMIT: usize = 4096;

/// On a fresh deflate connection with a 4096-byte limit, sends a compressed message of
/// `len` bytes (in 3 fragments when `fragmented`); returns the echo or the close code.
fn x05_send(mode: DeflateMode, len: usize, fragmented: bool) -> Result<Vec<u8>, Option<u16>> {
    let case = deflate_case(mode, X5_LIMIT);
    let (mut c, _) = deflate_ws(&case);
    let message = text(len);
    let compressed = ClientDeflate::new().compress(&message);
    assert!(compressed.len() < X5_LIMIT / 4);
    if fragmented {
        let third = compressed.len() / 3;
        c.send(&masked(0x42, &compressed[..third]));
        c.send(&masked(0x00, &compressed[third..2 * third]));
        c.send(&masked(0x80, &compressed[2 * third..]));
    } else {
        c.send(&masked(0xC2, &compressed));
    }
    let f = c.frame();
    let answer = if f.opcode == 8 {
        let code = f.close_code();
        c.expect_eof();
        Err(code)
    } else {
        assert_eq!((f.fin, f.rsv, f.opcode), (true, RSV1, 2), "{f:?}");
        let echo = inflate(&mut Decompress::new_with_window_bits(false, 15), &f.payload);
        c.close_cleanly();
        Ok(echo)
    };
    case.finish();
    answer
}

#[test]
fn x05_exactly_max_is_accepted_whole() {
    for mode in MODES {
        for fragmented in [false, true] {
            assert_eq!(
                x05_send(mode, X5_LIMIT, fragmented),
                Ok(text(X5_LIMIT)),
                "{mode:?} fragmented {fragmented}"
            );
        }
    }
}

#[test]
fn x05_max_plus_1_is_1009() {
    for mode in MODES {
        for fragmented in [false, true] {
            assert_eq!(
                x05_send(mode, X5_LIMIT + 1, fragmented),
                Err(Some(1009)),
                "{mode:?} fragmented {fragmented}"
            );
        }
    }
}

#[test]
fn x05_max_plus_2_is_1009() {
    for mode in MODES {
        assert_eq!(
            x05_send(mode, X5_LIMIT + 2, false),
            Err(Some(1009)),
            "{mode:?}"
        );
    }
}

// X6: the cost of many small messages and of back-references into the window.

/// 2,000 small compressed messages with context takeover, sent in batches of 100: all echoed
/// within a bounded time, the control connection served throughout.
#[test]
fn x06_many_tiny_compressed_messages_stay_cheap() {
    for mode in MODES {
        let case = deflate_case(mode, 1 << 20);
        let (mut c, takeover) = deflate_ws(&case);
        let mut echoes = Echoes::new(takeover);
        let mut client = ClientDeflate::new();
        let started = Instant::now();
        for batch in 0..20 {
            let messages: Vec<Vec<u8>> = (0..100)
                .map(|i| format!("tiny message {batch}/{i} of the batch").into_bytes())
                .collect();
            let mut bytes = Vec::new();
            for m in &messages {
                bytes.extend(masked(0xC1, &client.compress(m)));
            }
            c.send(&bytes);
            for m in &messages {
                assert_eq!(&echoes.next(&mut c, 1), m, "{mode:?}");
            }
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(20), "{mode:?}: {took:?}");
        c.close_cleanly();
        case.finish();
    }
}

/// 30 KiB that do not compress, then the same 30 KiB 100 times: each later message is a few
/// hundred bytes of back-references across nearly the whole window (a compressor reaches
/// 32 KiB less 262 bytes back), inflating to 30 KiB.
#[test]
fn x06_back_references_across_the_window_stay_cheap() {
    let block = noise(30 * 1024, 6);
    for mode in MODES {
        let case = deflate_case(mode, 1 << 20);
        let (mut c, takeover) = deflate_ws(&case);
        let mut echoes = Echoes::new(takeover);
        let mut client = ClientDeflate::new();
        let started = Instant::now();
        for i in 0..101 {
            let compressed = client.compress(&block);
            if i > 0 {
                assert!(compressed.len() < 1024, "{}", compressed.len());
            }
            c.send(&masked(0xC2, &compressed));
            assert_eq!(echoes.next(&mut c, 2), block, "{mode:?} message {i}");
        }
        let took = started.elapsed();
        assert!(took < Duration::from_secs(20), "{mode:?}: {took:?}");
        c.close_cleanly();
        case.finish();
    }
}

// X7: window sizes, declined or honoured exactly.

/// `"; server_no_context_takeover"` in Shared mode, where it is always answered.
fn no_takeover(mode: DeflateMode) -> &'static str {
    match mode {
        DeflateMode::Shared => "; server_no_context_takeover",
        _ => "",
    }
}

/// A message whose repeated 2 KiB block is 6 KiB apart: a compressor with a window of 13 bits
/// or more refers back to it, one with 12 or fewer cannot.
fn far_repeat() -> Vec<u8> {
    let block = noise(2048, 7);
    [&block[..], &text(4000), &block].concat()
}

/// `server_max_window_bits=8..15`: 8 is declined (zlib cannot compress with it), 9..15 are
/// answered as offered, and the server's compressor then uses that window: the 2 KiB block
/// repeated 6 KiB apart is referred back to (the message shrinks by it) only with 13 bits
/// or more.
#[test]
fn x07_server_max_window_bits_8_to_15() {
    let message = far_repeat();
    for mode in MODES {
        let case = deflate_case(mode, 1 << 20);
        for bits in 8..=15u8 {
            let offer = format!("permessage-deflate; server_max_window_bits={bits}");
            let (mut c, answer) = connect(&case, "/", &offer);
            if bits == 8 {
                assert_eq!(answer, None, "{mode:?}: 8 is declined");
                c.echo("declined: plain messages");
                c.close_cleanly();
                continue;
            }
            assert_eq!(
                answer,
                Some(format!(
                    "permessage-deflate{}; server_max_window_bits={bits}",
                    no_takeover(mode)
                )),
                "{mode:?}"
            );
            c.send(&masked(0x82, &message));
            let f = c.frame();
            assert_eq!((f.rsv, f.opcode), (RSV1, 2), "{mode:?} {bits}");
            let size = f.payload.len();
            assert_eq!(
                inflate(&mut Decompress::new_with_window_bits(false, 15), &f.payload),
                message
            );
            // The noise costs 2 KiB once referred back to, 4 KiB when it cannot be.
            let reaches = size < 2048 + 1024;
            assert_eq!(reaches, bits >= 13, "{mode:?}: window {bits}, {size} bytes");
            c.close_cleanly();
        }
        case.finish();
    }
}

/// `client_max_window_bits=8..15`: 8 is declined; 9..15 are accepted, with no window asked
/// of the client by default, and with `min(offered, 11)` when the server asks for 11; the
/// client's messages made with that window inflate.
#[test]
fn x07_client_max_window_bits_8_to_15() {
    for mode in MODES {
        for asked in [None, Some(11u8)] {
            let options = WsOptions::new().per_message_deflate(
                PerMessageDeflate::new()
                    .mode(mode)
                    .threshold(16)
                    .client_max_window_bits(asked),
            );
            let case = Case::new(app(options));
            for bits in 8..=15u8 {
                let offer = format!("permessage-deflate; client_max_window_bits={bits}");
                let (mut c, answer) = connect(&case, "/", &offer);
                if bits == 8 {
                    assert_eq!(answer, None, "{mode:?} {asked:?}: 8 is declined");
                    c.close_cleanly();
                    continue;
                }
                let window = asked.map_or(bits, |a| a.min(bits));
                let expected = match asked {
                    None => format!("permessage-deflate{}", no_takeover(mode)),
                    Some(_) => format!(
                        "permessage-deflate{}; client_max_window_bits={window}",
                        no_takeover(mode)
                    ),
                };
                assert_eq!(answer, Some(expected), "{mode:?} {asked:?} {bits}");
                let mut client = ClientDeflate(Compress::new_with_window_bits(
                    Compression::default(),
                    false,
                    window,
                ));
                let takeover = mode == DeflateMode::Dedicated;
                let mut echoes = Echoes::new(takeover);
                let message = far_repeat();
                for _ in 0..2 {
                    c.send(&masked(0xC2, &client.compress(&message)));
                    assert_eq!(echoes.next(&mut c, 2), message, "{mode:?} {bits}");
                }
                c.close_cleanly();
            }
            case.finish();
        }
    }
}

/// Values outside RFC 7692 §7.1.2's grammar decline the offer (101 without the extension);
/// a quoted valid value is honoured.
#[test]
fn x07_invalid_window_values_are_declined() {
    let case = deflate_case(DeflateMode::Dedicated, 1 << 20);
    for (offer, expected) in [
        ("permessage-deflate; server_max_window_bits=16", None),
        ("permessage-deflate; server_max_window_bits=7", None),
        ("permessage-deflate; server_max_window_bits=08", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; client_max_window_bits=0", None),
        ("permessage-deflate; client_max_window_bits=\"8\"", None),
        (
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            None,
        ),
        (
            "permessage-deflate; server_max_window_bits=\"10\"",
            Some("permessage-deflate; server_max_window_bits=10"),
        ),
        (
            "permessage-deflate; server_max_window_bits=8, permessage-deflate",
            Some("permessage-deflate"),
        ),
    ] {
        let (c, answer) = connect(&case, "/", offer);
        assert_eq!(answer.as_deref(), expected, "{offer}");
        c.close_cleanly();
    }
    case.finish();
}

// X8: memory per compressed connection.

/// Opens `n` deflate connections that each send and get back one compressed message (so every
/// context the mode creates exists); returns the connections and the resident growth.
fn open_compressed(case: &Case, n: usize) -> (Vec<Raw>, usize) {
    let before = rss();
    let message = text(4000);
    let compressed = ClientDeflate::new().compress(&message);
    let connections: Vec<Raw> = (0..n)
        .map(|_| {
            let (mut c, takeover) = deflate_ws(case);
            c.send(&masked(0xC1, &compressed));
            assert_eq!(Echoes::new(takeover).next(&mut c, 1), message);
            c
        })
        .collect();
    (connections, rss().saturating_sub(before))
}

/// 64 connections with both contexts in use: in Shared mode each costs little (its
/// decompressor, its buffers), in Dedicated mode each holds a compressor of its own (about
/// 330 KiB more). Bounds are generous: resident memory is noisy.
#[test]
fn x08_memory_per_connection_shared_vs_dedicated() {
    const N: usize = 64;
    let mut per_connection = Vec::new();
    for mode in MODES {
        let case = deflate_case(mode, 1 << 20);
        let (connections, grew) = open_compressed(&case, N);
        per_connection.push(grew / N);
        for c in connections {
            c.close_cleanly();
        }
        case.finish();
    }
    let (shared, dedicated) = (per_connection[0], per_connection[1]);
    eprintln!("x08: resident per connection: shared {shared} B, dedicated {dedicated} B");
    assert!(shared < 160 * 1024, "shared: {shared} bytes per connection");
    assert!(
        dedicated > shared + 100 * 1024,
        "dedicated {dedicated} vs shared {shared} bytes per connection"
    );
}

// X9: a per-send "do not compress" option.

/// A secret sent with `compress(false)` goes out RSV1-clear, byte for byte; the same message
/// sent normally is compressed.
#[test]
fn x09_compress_false_sends_rsv1_clear_frames() {
    for mode in MODES {
        let case = deflate_case(mode, 1 << 20);
        let (mut c, extensions) = connect(&case, "/x9", OFFER);
        assert!(extensions.is_some());
        let takeover = mode == DeflateMode::Dedicated;
        let mut echoes = Echoes::new(takeover);
        for secret in [
            text(100),
            text(3000),
            b"session=0123456789abcdef; ".repeat(40),
        ] {
            c.send(&frame(true, 1, &secret));
            let plain = c.frame();
            assert_eq!(
                (plain.fin, plain.rsv, plain.opcode, &plain.payload),
                (true, 0, 1, &secret),
                "{mode:?}"
            );
            let f = c.frame();
            assert_eq!((f.rsv, f.opcode), (RSV1, 1), "{mode:?}");
            if !echoes.takeover {
                echoes.d = Decompress::new_with_window_bits(false, 15);
            }
            assert_eq!(inflate(&mut echoes.d, &f.payload), secret, "{mode:?}");
        }
        c.close_cleanly();
        case.finish();
    }
}

// P10: malicious deflate streams against the real inflate backend.

/// Streams that break RFC 1951 in the ways inflate implementations have got wrong.
fn malicious_streams() -> Vec<(&'static str, Vec<u8>)> {
    // Dynamic-Huffman block header with 257 literal/length and 1 distance codes, and the
    // code-length code lengths for symbols 16, 17, 18, 0.
    let dynamic = |lengths: [u64; 4]| {
        let mut b = Bits::new();
        b.put(0, 1);
        b.put(2, 2);
        b.put(0, 5);
        b.put(0, 5);
        b.put(0, 4);
        for l in lengths {
            b.put(l, 3);
        }
        b
    };
    let mut far = Bits::new();
    far.put(0, 1);
    far.put(1, 2); // fixed Huffman
    far.code(0b000_0001, 7); // length 3 (symbol 257)
    far.code(0b00011, 5); // distance 4 (code 3), with nothing before it
    far.code(0, 7); // end of block
    let mut repeat = dynamic([1, 0, 0, 1]);
    repeat.code(1, 1); // symbol 16 (repeat the previous length) with no previous one
    repeat.put(0, 2);
    vec![
        ("reserved block type", vec![0x06, 0x00]),
        (
            "stored LEN/NLEN mismatch",
            b"\x00\x05\x00\x00\x00hello".to_vec(),
        ),
        ("distance before the start", far.finish()),
        // Enough zero bits after it to read every length.
        (
            "empty code-length code",
            [dynamic([0, 0, 0, 0]).finish(), vec![0; 40]].concat(),
        ),
        (
            "oversubscribed code-length code",
            dynamic([1, 1, 1, 1]).finish(),
        ),
        ("repeat without a previous length", repeat.finish()),
    ]
}

#[test]
fn p10_malicious_deflate_streams_are_1007() {
    let streams = malicious_streams();
    for mode in MODES {
        let case = deflate_case(mode, 1 << 20);
        for (what, stream) in &streams {
            assert_eq!(
                deflate_close_code(&case, &masked(0xC2, stream)),
                Some(1007),
                "{mode:?}: {what}"
            );
        }
        case.finish();
    }
}
