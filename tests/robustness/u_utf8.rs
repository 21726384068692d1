//! U: UTF-8 in text messages and close reasons (RFC 6455 §5.6, §8.1).

use crate::harness::*;

macro_rules! invalid_text {
    ($($name:ident: $bytes:expr;)*) => {$(
        #[test]
        fn $name() {
            let case = Case::echo();
            assert_eq!(case.close_code_for(&frame(true, 1, $bytes)), Some(1007));
            case.finish();
        }
    )*};
}

invalid_text! {
    u01_overlong_nul_is_1007: b"a\xc0\x80b";
    u01_surrogate_is_1007: b"\xed\xa0\x80";
    u01_above_u10ffff_is_1007: b"\xf4\x90\x80\x80";
    u01_lone_continuation_is_1007: b"\x80";
    u01_byte_fe_is_1007: b"ok\xfe";
    u01_byte_ff_is_1007: b"\xff";
    u04_truncated_code_point_at_the_end_is_1007: "ok€".as_bytes().split_last().unwrap().1;
}

/// U2: the invalid sequence completes in the 2nd of 3 fragments: 1007 before the 3rd is sent.
#[test]
fn u02_invalid_in_the_second_fragment_fails_fast() {
    let case = Case::echo();
    let mut c = case.ws("/");
    c.send(&frame(false, 1, "κόσμε".as_bytes()));
    c.send(&frame(
        false,
        0,
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80",
    ));
    assert_eq!(c.expect_close(), Some(1007));
    c.expect_eof();
    case.finish();
}

/// U3: invalid bytes at the start of a long frame whose rest is never sent: 1007 at once.
#[test]
fn u03_invalid_inside_a_frame_fails_before_the_frame_ends() {
    let case = Case::echo();
    let mut c = case.ws("/");
    let whole = frame(true, 1, &[b"ok\xff".as_slice(), &[b'a'; 60_000]].concat());
    c.send(&whole[..100]);
    assert_eq!(c.expect_close(), Some(1007));
    c.expect_eof();
    case.finish();
}

/// U4: a code point split across fragments and never completed.
#[test]
fn u04_truncated_code_point_across_fragments_is_1007() {
    let case = Case::echo();
    let mut c = case.ws("/");
    c.send(&frame(false, 1, b"ab\xf0\x9f"));
    c.send(&frame(true, 0, b"\xa6"));
    assert_eq!(c.expect_close(), Some(1007));
    c.expect_eof();
    case.finish();
}

/// U5: valid edge code points come back byte for byte.
#[test]
fn u05_edge_code_points_are_echoed_exactly() {
    let case = Case::echo();
    let mut c = case.ws("/");
    for text in [
        "\u{0}",
        "\u{feff}bom",
        "\u{ffff}",
        "\u{10ffff}",
        "a\u{0}b\u{10ffff}",
    ] {
        c.echo(text);
    }
    c.close_cleanly();
    case.finish();
}

/// U5: a 4-byte code point split at every possible fragment boundary.
#[test]
fn u05_emoji_split_at_every_boundary_is_accepted() {
    let case = Case::echo();
    let mut c = case.ws("/");
    let text = "x🦀y".as_bytes();
    for cut in 1..text.len() {
        c.send(&frame(false, 1, &text[..cut]));
        c.send(&frame(true, 0, &text[cut..]));
        let f = c.frame();
        assert_eq!((f.opcode, f.payload.as_slice()), (1, text), "cut at {cut}");
    }
    // And one byte per fragment.
    c.send(&frame(false, 1, &text[..1]));
    for (i, b) in text[1..].iter().enumerate() {
        c.send(&frame(i == text.len() - 2, 0, std::slice::from_ref(b)));
    }
    let f = c.frame();
    assert_eq!(f.payload, text);
    c.close_cleanly();
    case.finish();
}

#[test]
fn u06_close_reason_not_utf8_is_1007() {
    let case = Case::echo();
    assert_eq!(
        case.close_code_for(&close_frame(1000, b"\xff\xfe")),
        Some(1007)
    );
    case.finish();
}

#[test]
fn u07_binary_with_invalid_utf8_is_accepted() {
    let case = Case::echo();
    let mut c = case.ws("/");
    c.send(&frame(true, 2, b"\xff\xfe\xc0\x80"));
    let f = c.frame();
    assert_eq!(
        (f.opcode, f.payload.as_slice()),
        (2, &b"\xff\xfe\xc0\x80"[..])
    );
    c.close_cleanly();
    case.finish();
}
