//! F: framing (RFC 6455 §5).

use std::time::Duration;

use ringsocket::WsOptions;

use crate::harness::*;

macro_rules! close_cases {
    ($($name:ident: $bytes:expr => $code:expr;)*) => {$(
        #[test]
        fn $name() {
            let case = Case::echo();
            assert_eq!(case.close_code_for(&$bytes), Some($code));
            case.finish();
        }
    )*};
}

fn fragments(first: &[u8], rest: &[u8]) -> Vec<u8> {
    let mut out = frame(false, 1, first);
    out.extend_from_slice(rest);
    out
}

close_cases! {
    f01_unmasked_text_is_1002: b"\x81\x02hi".as_slice() => 1002;
    f01_unmasked_ping_is_1002: b"\x89\x00".as_slice() => 1002;
    f01_unmasked_close_is_1002: b"\x88\x02\x03\xe8".as_slice() => 1002;
    f02_rsv1_without_extension_is_1002: masked(0xC1, b"x") => 1002;
    f02_rsv2_is_1002: masked(0xA2, b"") => 1002;
    f02_rsv3_is_1002: masked(0x91, b"x") => 1002;
    f02_rsv_all_on_close_is_1002: masked(0xF8, &[0x03, 0xe8]) => 1002;
    f03_opcode_3_is_1002: masked(0x83, b"") => 1002;
    f03_opcode_4_is_1002: masked(0x84, b"") => 1002;
    f03_opcode_5_is_1002: masked(0x85, b"") => 1002;
    f03_opcode_6_is_1002: masked(0x86, b"") => 1002;
    f03_opcode_7_is_1002: masked(0x87, b"") => 1002;
    f03_opcode_b_is_1002: masked(0x8B, b"") => 1002;
    f03_opcode_c_is_1002: masked(0x8C, b"") => 1002;
    f03_opcode_d_is_1002: masked(0x8D, b"") => 1002;
    f03_opcode_e_is_1002: masked(0x8E, b"") => 1002;
    f03_opcode_f_is_1002: masked(0x8F, b"") => 1002;
    f03_reserved_opcode_with_payload_is_1002: masked(0x85, b"reserved payload") => 1002;
    f04_fragmented_ping_is_1002: masked(0x09, b"p") => 1002;
    f04_fragmented_pong_is_1002: masked(0x0A, b"p") => 1002;
    f04_fragmented_close_is_1002: masked(0x08, &[0x03, 0xe8]) => 1002;
    f05_ping_of_126_bytes_is_1002: masked(0x89, &[0u8; 126]) => 1002;
    f05_ping_with_64_bit_length_is_1002: masked(0x89, &[0u8; 0x1_0000]) => 1002;
    f06_continuation_without_message_is_1002: masked(0x80, b"c") => 1002;
    f06_unfinished_continuation_without_message_is_1002: masked(0x00, b"c") => 1002;
    f07_text_inside_fragmented_message_is_1002: fragments(b"a", &frame(true, 1, b"b")) => 1002;
    f07_binary_inside_fragmented_message_is_1002: fragments(b"a", &frame(true, 2, b"b")) => 1002;
    f09_length_with_msb_set_is_1002: header64(0x82, 1 << 63) => 1002;
    f09_length_all_ones_is_1002: header64(0x82, u64::MAX) => 1002;
    f09_length_2_pow_63_minus_1_is_1009: header64(0x82, (1 << 63) - 1) => 1009;
    f11_declared_2_pow_40_is_1009_at_the_header: header64(0x82, 1 << 40) => 1009;
    f11_declared_1_gib_is_1009_at_the_header: header64(0x82, 1 << 30) => 1009;
}

/// F5: a 125-byte ping (the most a control frame may carry) gets the identical pong.
#[test]
fn f05_ping_of_125_bytes_gets_the_identical_pong() {
    let case = Case::echo();
    let mut c = case.ws("/");
    let payload: Vec<u8> = (0..125u8).collect();
    c.send(&frame(true, 9, &payload));
    let pong = c.frame();
    assert_eq!((pong.opcode, pong.payload), (10, payload));
    c.close_cleanly();
    case.finish();
}

/// F8: a ping between fragments is answered at once and the message still assembles.
#[test]
fn f08_ping_between_fragments_is_answered_and_the_message_assembles() {
    let case = Case::echo();
    let mut c = case.ws("/");
    c.send(&frame(false, 1, b"frag"));
    c.send(&frame(true, 9, b"mid"));
    let pong = c.frame();
    assert_eq!((pong.opcode, pong.payload.as_slice()), (10, &b"mid"[..]));
    c.send(&frame(true, 10, b"unsolicited"));
    c.send(&frame(true, 0, b"ment"));
    let f = c.frame();
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"fragment"[..]));
    c.close_cleanly();
    case.finish();
}

/// F8: a close between fragments ends the connection cleanly, the partial message dropped.
#[test]
fn f08_close_between_fragments_is_echoed() {
    let case = Case::echo();
    let mut c = case.ws("/");
    c.send(&frame(false, 1, b"never finished"));
    c.close_cleanly();
    case.finish();
}

/// F10: non-minimal length encodings are accepted and parse the same.
#[test]
fn f10_non_minimal_16_bit_length_is_accepted() {
    let case = Case::echo();
    let mut c = case.ws("/");
    let mut bytes = vec![0x81, 0x80 | 126, 0, 5];
    bytes.extend_from_slice(&KEY);
    bytes.extend(b"hello".iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    c.send(&bytes);
    let f = c.frame();
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"hello"[..]));
    c.close_cleanly();
    case.finish();
}

#[test]
fn f10_non_minimal_64_bit_length_is_accepted() {
    let case = Case::echo();
    let mut c = case.ws("/");
    let mut bytes = header64(0x82, 3);
    bytes.extend(b"abc".iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    c.send(&bytes);
    let f = c.frame();
    assert_eq!((f.opcode, f.payload.as_slice()), (2, &b"abc"[..]));
    c.close_cleanly();
    case.finish();
}

/// F11: frames declaring almost the limit but sending 10 bytes make the server hold what
/// arrived, not what was declared.
#[test]
fn f11_declared_near_the_limit_allocates_only_what_arrived() {
    let limit = 256 << 20;
    let app = base()
        .websocket(WsOptions::new().max_payload(limit))
        .build()
        .unwrap();
    let case = Case::new(app);
    let before = rss();
    let mut conns = Vec::new();
    for _ in 0..16 {
        let mut c = case.ws("/");
        let mut bytes = header64(0x82, limit as u64 - 1);
        bytes.extend_from_slice(&[0u8; 10]);
        c.send(&bytes);
        conns.push(c);
    }
    // Every connection's 10 bytes are in: the control connection still echoes behind them.
    let mut probe = case.ws("/");
    probe.echo("after the declarations");
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "16 declarations of 256 MiB grew memory by {grown} bytes"
    );
    probe.close_cleanly();
    for c in conns {
        c.reset();
    }
    case.finish();
}

/// The messages sent for F12 and the replies they earn.
fn f12_stream() -> (Vec<u8>, Vec<(u8, Vec<u8>)>) {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&frame(false, 1, "Grüß ".as_bytes()));
    bytes.extend_from_slice(&frame(true, 9, b"ping"));
    bytes.extend_from_slice(&frame(false, 0, "🦀 ".as_bytes()));
    bytes.extend_from_slice(&frame(true, 0, b"done"));
    let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
    bytes.extend_from_slice(&frame(true, 2, &big));
    bytes.extend_from_slice(&frame(true, 1, b""));
    let replies = vec![
        (10, b"ping".to_vec()),
        (1, "Grüß 🦀 done".as_bytes().to_vec()),
        (2, big),
        (1, Vec::new()),
    ];
    (bytes, replies)
}

/// F12: the same stream chopped into writes of 1, 2, 3, 7 and 997 bytes, and coalesced into
/// one write, earns the same replies.
#[test]
fn f12_any_chopping_gives_identical_results() {
    let case = Case::echo();
    let (bytes, replies) = f12_stream();
    for chop in [1usize, 2, 3, 7, 997, usize::MAX] {
        let mut c = case.ws("/");
        // One-byte writes of 70 KB would take long: chop the big frame's start only.
        let limit = if chop < 10 { 2000 } else { bytes.len() };
        for piece in bytes[..limit].chunks(chop.min(limit)) {
            c.send(piece);
        }
        c.send(&bytes[limit..]);
        for (opcode, payload) in &replies {
            let f = c.frame();
            assert_eq!((f.opcode, &f.payload), (*opcode, payload), "chop {chop}");
        }
        c.close_cleanly();
    }
    case.finish();
}

/// F12: a violation chopped into single bytes earns the same close code.
#[test]
fn f12_violation_chopped_into_single_bytes_is_the_same_1002() {
    let case = Case::echo();
    let mut c = case.ws("/");
    for b in masked(0xA2, b"abc") {
        c.send(&[b]);
    }
    assert_eq!(c.expect_close(), Some(1002));
    c.expect_eof();
    case.finish();
}

/// F13: empty continuation frames count toward the fragment limit.
#[test]
fn f13_empty_continuations_are_counted_1008() {
    let app = base()
        .websocket(WsOptions::new().max_fragments(100))
        .build()
        .unwrap();
    let case = Case::new(app);
    let mut c = case.ws("/");
    let mut bytes = frame(false, 2, b"");
    for _ in 0..1000 {
        bytes.extend_from_slice(&frame(false, 0, b""));
    }
    let _ = c.try_send(&bytes);
    assert_eq!(c.expect_close(), Some(1008));
    c.expect_eof();
    case.finish();
}

/// F14: the one-byte-fragment attack (never FIN) is stopped by the default fragment budget.
#[test]
fn f14_one_byte_fragments_never_finished_hit_the_default_budget_1008() {
    let case = Case::echo();
    let mut c = case.ws("/");
    let mut bytes = frame(false, 1, b"a");
    for _ in 0..20_000 {
        bytes.extend_from_slice(&frame(false, 0, b"a"));
    }
    let _ = c.try_send(&bytes);
    assert_eq!(c.expect_close(), Some(1008));
    c.expect_eof();
    case.finish();
}

/// F15: a ping flood from a client that never reads keeps the server's memory bounded; the
/// connection ends by the outbound limit or stays, never growing without bound.
#[test]
fn f15_ping_flood_from_a_non_reader_is_bounded() {
    let app = base()
        .websocket(
            WsOptions::new()
                .max_backpressure(64 * 1024)
                .close_timeout(Duration::from_millis(200)),
        )
        .build()
        .unwrap();
    let case = Case::new(app);
    let before = rss();
    let mut c = case.ws("/");
    c.stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let ping = frame(true, 9, &[0x55; 125]);
    let batch: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 1000)
        .collect();
    let mut sent = 0usize;
    // 200,000 pings (26 MB), or until the server stops reading.
    for _ in 0..200 {
        if c.try_send(&batch).is_err() {
            break;
        }
        sent += 1000;
    }
    assert!(sent > 0);
    let grown = rss().saturating_sub(before);
    assert!(
        grown < 24 << 20,
        "{sent} pings grew memory by {grown} bytes"
    );
    c.reset();
    case.finish();
}

/// F16: an unsolicited pong, and one with an unexpected payload, are ignored.
#[test]
fn f16_unsolicited_pongs_are_ignored() {
    let case = Case::echo();
    let mut c = case.ws("/");
    c.send(&frame(true, 10, b""));
    c.send(&frame(true, 10, b"not an answer to anything"));
    c.echo("after pongs");
    c.close_cleanly();
    case.finish();
}

/// F17: data after the peer's close is not processed.
#[test]
fn f17_data_after_close_is_ignored() {
    let case = Case::echo();
    let mut c = case.ws("/");
    let mut bytes = close_frame(1000, b"");
    bytes.extend_from_slice(&frame(true, 1, b"after close"));
    bytes.extend_from_slice(&masked(0x83, b"and garbage"));
    c.send(&bytes);
    assert_eq!(c.expect_close(), Some(1000));
    c.expect_eof();
    case.finish();
}

/// F18: a mask key of zeros is a mask like any other.
#[test]
fn f18_zero_mask_key_is_accepted() {
    let case = Case::echo();
    let mut c = case.ws("/");
    c.send(&masked_with(0x81, [0; 4], b"zero key"));
    let f = c.frame();
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"zero key"[..]));
    c.close_cleanly();
    case.finish();
}

#[test]
fn f18_empty_text_and_binary_are_echoed() {
    let case = Case::echo();
    let mut c = case.ws("/");
    c.send(&frame(true, 1, b""));
    c.send(&frame(true, 2, b""));
    let f = c.frame();
    assert_eq!((f.opcode, f.payload.len()), (1, 0));
    let f = c.frame();
    assert_eq!((f.opcode, f.payload.len()), (2, 0));
    c.close_cleanly();
    case.finish();
}

fn limited(limit: usize) -> Case {
    Case::new(
        base()
            .websocket(WsOptions::new().max_payload(limit))
            .build()
            .unwrap(),
    )
}

#[test]
fn f18_message_of_exactly_the_limit_is_accepted() {
    let case = limited(4096);
    let mut c = case.ws("/");
    c.send(&frame(true, 2, &[7u8; 4096]));
    let f = c.frame();
    assert_eq!((f.opcode, f.payload.len()), (2, 4096));
    c.close_cleanly();
    case.finish();
}

#[test]
fn f18_message_of_the_limit_plus_one_is_1009() {
    let case = limited(4096);
    assert_eq!(
        case.close_code_for(&frame(true, 2, &[7u8; 4097])),
        Some(1009)
    );
    case.finish();
}
