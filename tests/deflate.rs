//! permessage-deflate over loopback: negotiation (every parameter, declines, the malformed
//! header), compressed messages both ways in both memory modes, the RSV1 rules (1002),
//! corrupt data (1007) and the inflated-size limit (1009), with a raw client that compresses
//! with flate2 on its own.

mod common;
mod deflate_support;

use deflate_support::*;
use flate2::Decompress;
use ringsocket::{DeflateMode, Message, PerMessageDeflate, SendOptions, WsOptions};

const BROWSER_OFFER: &str = "permessage-deflate; client_max_window_bits";

/// The 101's `Sec-WebSocket-Extensions` for `offer`, or the status line when not 101.
fn answer(options: WsOptions, offer: Option<&str>) -> Result<Option<String>, String> {
    let server = echo_server(options);
    let (stream, head) = upgrade(server.local_addr(), offer);
    drop(stream);
    server.shutdown();
    server.wait();
    if head.starts_with("HTTP/1.1 101") {
        Ok(header(&head, "sec-websocket-extensions"))
    } else {
        Err(head.lines().next().unwrap_or_default().to_owned())
    }
}

/// Server options, the offer, and the answer expected (see [`answer`]).
type Case<'a> = (
    &'a WsOptions,
    Option<&'a str>,
    Result<Option<&'a str>, &'a str>,
);

#[test]
fn negotiation_answers() {
    let shared = deflate_options(DeflateMode::Shared);
    let dedicated = deflate_options(DeflateMode::Dedicated);
    let cases: [Case<'_>; 11] = [
        // Off by default: offers are not even read.
        (&WsOptions::new(), Some(BROWSER_OFFER), Ok(None)),
        (&WsOptions::new(), Some("permessage-deflate; ;;"), Ok(None)),
        (&shared, None, Ok(None)),
        (
            &shared,
            Some(BROWSER_OFFER),
            Ok(Some("permessage-deflate; server_no_context_takeover")),
        ),
        (&dedicated, Some(BROWSER_OFFER), Ok(Some("permessage-deflate"))),
        (
            &dedicated,
            Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10"),
            Ok(Some(
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
            )),
        ),
        // Declined: 101 without the extension.
        (&shared, Some("permessage-deflate; server_max_window_bits=8"), Ok(None)),
        (&shared, Some("permessage-deflate; client_max_window_bits=8"), Ok(None)),
        (&shared, Some("permessage-deflate; unknown_parameter"), Ok(None)),
        // Several offers: the first acceptable one.
        (
            &dedicated,
            Some("permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits=12"),
            Ok(Some("permessage-deflate")),
        ),
        // A header that breaks RFC 6455's grammar: 400.
        (&shared, Some("permessage-deflate; ;;"), Err("HTTP/1.1 400 Bad Request")),
    ];
    for (options, offer, expected) in cases {
        let expected = expected
            .map(|o| o.map(str::to_owned))
            .map_err(str::to_owned);
        assert_eq!(answer(options.clone(), offer), expected, "{offer:?}");
    }
    let asking = WsOptions::new().per_message_deflate(
        PerMessageDeflate::new()
            .client_no_context_takeover(true)
            .client_max_window_bits(Some(11))
            .server_max_window_bits(12),
    );
    assert_eq!(
        answer(asking.clone(), Some(BROWSER_OFFER)),
        Ok(Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12; client_max_window_bits=11"
                .into()
        ))
    );
    // It needs the client to accept a window limit; this offer cannot.
    assert_eq!(answer(asking, Some("permessage-deflate")), Ok(None));
}

/// Sends `count` compressed text messages (the client keeps its context) and checks each echo:
/// compressed by the server, with RSV1, inflating to the same text.
fn echo_compressed(mode: DeflateMode, offer: &str, server_takeover: bool) {
    let server = echo_server(deflate_options(mode));
    let mut ws = Raw::connect(server.local_addr(), Some(offer));
    assert!(ws.extensions().is_some());
    let mut client = ClientDeflate::new();
    let mut inflater = Decompress::new_with_window_bits(false, 15);
    let mut sizes = Vec::new();
    for i in 0..4 {
        let message = text(3000);
        let compressed = client.compress(&message);
        ws.send(&masked(0xC1, &compressed));
        let echo = ws.frame();
        assert_eq!((echo.b0, echo.rsv1()), (0xC1, true), "message {i}");
        sizes.push(echo.payload.len());
        if !server_takeover {
            inflater = Decompress::new_with_window_bits(false, 15);
        }
        assert_eq!(
            inflate(&mut inflater, &echo.payload),
            message,
            "message {i}"
        );
    }
    // With takeover the server's later echoes refer back to the first one.
    assert_eq!(server_takeover, sizes[1] < sizes[0], "{sizes:?}");
    // Below the threshold: uncompressed, RSV1 clear.
    ws.send(&masked(0x81, b"short"));
    assert_eq!(
        ws.frame(),
        Frame {
            b0: 0x81,
            payload: b"short".to_vec()
        }
    );
    // Empty and binary messages, compressed by the client.
    ws.send(&masked(0xC2, &client.compress(b"")));
    assert_eq!(
        ws.frame(),
        Frame {
            b0: 0x82,
            payload: vec![]
        }
    );
    drop(ws);
    server.shutdown();
    server.wait();
}

#[test]
fn shared_mode_round_trip() {
    echo_compressed(DeflateMode::Shared, BROWSER_OFFER, false);
}

#[test]
fn dedicated_mode_round_trip_keeps_context() {
    echo_compressed(DeflateMode::Dedicated, BROWSER_OFFER, true);
    // Unless the client asks for no server context takeover.
    echo_compressed(
        DeflateMode::Dedicated,
        "permessage-deflate; server_no_context_takeover",
        false,
    );
}

#[test]
fn fragmented_compressed_message_and_interleaved_ping() {
    let server = echo_server(deflate_options(DeflateMode::Shared));
    let mut ws = Raw::connect(server.local_addr(), Some(BROWSER_OFFER));
    let message = text(10_000);
    let compressed = ClientDeflate::new().compress(&message);
    let (a, rest) = compressed.split_at(compressed.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    // RSV1 on the first frame only; a ping in between.
    ws.send(&masked(0x42, a));
    ws.send(&masked(0x00, b));
    ws.send(&masked(0x89, b"p"));
    ws.send(&masked(0x80, c));
    assert_eq!(
        ws.frame(),
        Frame {
            b0: 0x8A,
            payload: b"p".to_vec()
        }
    );
    let echo = ws.frame();
    assert_eq!(echo.b0, 0xC2);
    let mut d = Decompress::new_with_window_bits(false, 15);
    assert_eq!(inflate(&mut d, &echo.payload), message);
    drop(ws);
    server.shutdown();
    server.wait();
}

/// The close code the server answers `bytes` with, on a deflate connection (`offer`).
fn close_code(options: WsOptions, offer: Option<&str>, bytes: &[u8]) -> u16 {
    let server = echo_server(options);
    let mut ws = Raw::connect(server.local_addr(), offer);
    ws.send(bytes);
    let code = ws.frame().close_code();
    drop(ws);
    server.shutdown();
    server.wait();
    code
}

#[test]
fn rsv1_where_it_may_not_be_is_1002() {
    let deflate = || deflate_options(DeflateMode::Shared);
    let compressed = ClientDeflate::new().compress(&text(100));
    // Without negotiation.
    assert_eq!(
        close_code(deflate(), None, &masked(0xC1, &compressed)),
        1002
    );
    assert_eq!(
        close_code(
            WsOptions::new(),
            Some(BROWSER_OFFER),
            &masked(0xC1, &compressed)
        ),
        1002
    );
    // On a continuation frame.
    let mut bytes = masked(0x41, &compressed[..10]);
    bytes.extend(masked(0xC0, &compressed[10..]));
    assert_eq!(close_code(deflate(), Some(BROWSER_OFFER), &bytes), 1002);
    // On control frames.
    for b0 in [0xC9, 0xCA, 0xC8] {
        assert_eq!(
            close_code(deflate(), Some(BROWSER_OFFER), &masked(b0, b"")),
            1002,
            "{b0:#x}"
        );
    }
}

#[test]
fn corrupt_data_and_invalid_text_are_1007() {
    let deflate = || deflate_options(DeflateMode::Shared);
    assert_eq!(
        close_code(
            deflate(),
            Some(BROWSER_OFFER),
            &masked(0xC2, b"\xff\xff\xff\xff")
        ),
        1007
    );
    // A final block with bytes after it.
    assert_eq!(
        close_code(
            deflate(),
            Some(BROWSER_OFFER),
            &masked(0xC2, b"\xf3\x48\xcd\xc9\xc9\x07\x00\x01")
        ),
        1007
    );
    // Valid deflate of invalid UTF-8, as text.
    let bad_text = ClientDeflate::new().compress(b"abc\xff\xfeabc abc abc abc");
    assert_eq!(
        close_code(deflate(), Some(BROWSER_OFFER), &masked(0xC1, &bad_text)),
        1007
    );
}

#[test]
fn inflated_size_limit_is_exact() {
    let options = || deflate_options(DeflateMode::Dedicated).max_payload(1000);
    // Exactly the limit: echoed.
    let server = echo_server(options());
    let mut ws = Raw::connect(server.local_addr(), Some(BROWSER_OFFER));
    ws.send(&masked(0xC2, &ClientDeflate::new().compress(&[7u8; 1000])));
    let echo = ws.frame();
    assert_eq!((echo.b0, echo.payload.len() < 100), (0xC2, true));
    let mut d = Decompress::new_with_window_bits(false, 15);
    assert_eq!(inflate(&mut d, &echo.payload), vec![7u8; 1000]);
    drop(ws);
    server.shutdown();
    server.wait();
    // One or two bytes more: 1009, though the compressed frame is tiny.
    for len in [1001, 1002, 1_000_000] {
        let compressed = ClientDeflate::new().compress(&vec![7u8; len]);
        assert!(compressed.len() < 1000);
        assert_eq!(
            close_code(options(), Some(BROWSER_OFFER), &masked(0xC2, &compressed)),
            1009,
            "{len}"
        );
    }
}

#[test]
fn shared_decompressor_when_clients_reset_their_context() {
    let options = WsOptions::new().per_message_deflate(
        PerMessageDeflate::new()
            .threshold(16)
            .client_no_context_takeover(true),
    );
    let server = echo_server(options);
    let mut ws = Raw::connect(server.local_addr(), Some(BROWSER_OFFER));
    assert_eq!(
        ws.extensions().as_deref(),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    // A second connection: on the same core, it shares the decompressor; messages interleave.
    let mut other = Raw::connect(server.local_addr(), Some(BROWSER_OFFER));
    for i in 0..3 {
        for (n, conn) in [&mut ws, &mut other].into_iter().enumerate() {
            let message = text(500 + 100 * i + n);
            conn.send(&masked(0xC1, &ClientDeflate::new().compress(&message)));
            let echo = conn.frame();
            assert_eq!(echo.b0, 0xC1);
            let mut d = Decompress::new_with_window_bits(false, 15);
            assert_eq!(inflate(&mut d, &echo.payload), message);
        }
    }
    drop((ws, other));
    server.shutdown();
    server.wait();
}

#[test]
fn send_with_compress_off_sends_plain() {
    let app = ringsocket::App::builder()
        .websocket(deflate_options(DeflateMode::Shared))
        .ws("/", |mut ws, _req| async move {
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
        .unwrap();
    let server = ringsocket::Server::new(app)
        .workers(1)
        .listen("127.0.0.1:0")
        .unwrap();
    let mut ws = Raw::connect(server.local_addr(), Some(BROWSER_OFFER));
    let message = text(2000);
    ws.send(&masked(0x81, &message));
    // First uncompressed as asked, then compressed by default.
    assert_eq!(
        ws.frame(),
        Frame {
            b0: 0x81,
            payload: message.clone()
        }
    );
    let echo = ws.frame();
    assert_eq!(echo.b0, 0xC1);
    let mut d = Decompress::new_with_window_bits(false, 15);
    assert_eq!(inflate(&mut d, &echo.payload), message);
    drop(ws);
    server.shutdown();
    server.wait();
}

#[test]
fn crate_client_speaks_deflate_in_both_modes() {
    for mode in [DeflateMode::Shared, DeflateMode::Dedicated] {
        let server = echo_server(deflate_options(mode));
        let addr = server.local_addr();
        common::block_on(async move {
            let mut client = ringsocket::client::Client::builder(addr, "/")
                .deflate(true)
                .connect()
                .await
                .unwrap();
            assert!(client.deflate());
            for len in [0, 10, 1000, 100_000] {
                let message = String::from_utf8(text(len)).unwrap();
                client.send(Message::text(message.clone())).await.unwrap();
                assert_eq!(
                    client.recv().await.unwrap().unwrap(),
                    Message::text(message)
                );
                let binary = bytes::Bytes::from(text(len));
                client.send(Message::Binary(binary.clone())).await.unwrap();
                assert_eq!(
                    client.recv().await.unwrap().unwrap(),
                    Message::Binary(binary)
                );
            }
            client.close(1000, "").await.unwrap();
        });
        server.shutdown();
        server.wait();
    }
}

/// A room on `/`: every connection subscribes to `room` and is told `ready`; a text starting
/// with `echo:` comes back to its sender (its own send), one starting with `each:` goes to
/// every other connection by id (`send_to`), anything else is published to the others.
fn room_server(mode: DeflateMode) -> ringsocket::ServerHandle {
    let app = ringsocket::App::builder()
        .websocket(deflate_options(mode))
        .ws("/", |mut ws, _req| async move {
            ws.subscribe("room");
            if ws.send(Message::text("ready")).await.is_err() {
                return;
            }
            while let Some(Ok(message)) = ws.recv().await {
                let text = match &message {
                    Message::Text(t) => t.as_str().to_owned(),
                    Message::Close(_) => break,
                    _ => String::new(),
                };
                let sent = if let Some(rest) = text.strip_prefix("echo:") {
                    ws.send(Message::text(rest.to_owned())).await
                } else if let Some(rest) = text.strip_prefix("each:") {
                    let clients = ws.clients();
                    let mut others = clients.ids().await.into_iter().filter(|id| *id != ws.id());
                    others.try_for_each(|id| clients.send_to(id, Message::text(rest.to_owned())))
                } else {
                    ws.publish("room", message).map(drop)
                };
                if sent.is_err() {
                    break;
                }
            }
        })
        .build()
        .unwrap();
    ringsocket::Server::new(app)
        .workers(2)
        .listen("127.0.0.1:0")
        .unwrap()
}

fn joined(addr: std::net::SocketAddr, offer: Option<&str>) -> Raw {
    let mut ws = Raw::connect(addr, offer);
    assert_eq!(
        ws.frame(),
        Frame {
            b0: 0x81,
            payload: b"ready".to_vec()
        }
    );
    ws
}

/// Text whose repeats lie 1,600 bytes apart: a compressor with a 1 KiB window cannot refer
/// back to them, and a decompressor with one fails on data that does.
fn far_repeats() -> Vec<u8> {
    let block = letters(12_345, 700);
    let mut message = block.clone();
    message.extend(text(900));
    message.extend(&block);
    message
}

/// `len` random lowercase letters (with nothing repeated, level 1 does not compress them).
fn letters(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            b'a' + (x >> 16) as u8 % 26
        })
        .collect()
}

#[test]
fn published_messages_are_compressed_for_each_recipient_as_its_own_sends() {
    let server = room_server(DeflateMode::Shared);
    let addr = server.local_addr();
    let mut publisher = joined(addr, None);
    let mut plain = joined(addr, None);
    let mut browsers = [
        joined(addr, Some(BROWSER_OFFER)),
        joined(addr, Some(BROWSER_OFFER)),
    ];
    let mut small = joined(addr, Some("permessage-deflate; server_max_window_bits=10"));
    assert_eq!(
        small.extensions().as_deref(),
        Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
    );

    let message = far_repeats();
    publisher.send(&masked(0x81, &message));
    assert_eq!(
        plain.frame(),
        Frame {
            b0: 0x81,
            payload: message.clone()
        }
    );
    let [first, second] = browsers.each_mut().map(Raw::frame);
    assert_eq!((first.b0, second.b0), (0xC1, 0xC1));
    // Compressed once for both (the same window): the same bytes.
    assert_eq!(first.payload, second.payload);
    assert!(first.payload.len() < message.len() * 3 / 4);
    let mut d = Decompress::new_with_window_bits(false, 15);
    assert_eq!(inflate(&mut d, &first.payload), message);
    // Its own window: a 10-bit decompressor inflates it.
    let narrow = small.frame();
    assert_eq!(narrow.b0, 0xC1);
    assert_ne!(narrow.payload, first.payload);
    let mut d = Decompress::new_with_window_bits(false, 10);
    assert_eq!(inflate(&mut d, &narrow.payload), message);

    // Sent by id (on both cores: two workers): the same, one recipient at a time.
    publisher.send(&masked(0x81, &[b"each:".as_slice(), &message].concat()));
    assert_eq!(
        plain.frame(),
        Frame {
            b0: 0x81,
            payload: message.clone()
        }
    );
    for ws in &mut browsers {
        let frame = ws.frame();
        assert_eq!((frame.b0, &frame.payload), (0xC1, &first.payload));
    }
    let frame = small.frame();
    assert_eq!((frame.b0, &frame.payload), (0xC1, &narrow.payload));

    // Under the threshold (16 bytes), binary: plain for everyone.
    publisher.send(&masked(0x82, b"tiny"));
    let [first, second] = &mut browsers;
    for ws in [&mut plain, first, second, &mut small] {
        assert_eq!(
            ws.frame(),
            Frame {
                b0: 0x82,
                payload: b"tiny".to_vec()
            }
        );
    }
    drop((publisher, plain, browsers, small));
    server.shutdown();
    server.wait();
}

#[test]
fn with_context_takeover_a_published_message_goes_through_the_connections_compressor() {
    let server = room_server(DeflateMode::Dedicated);
    let addr = server.local_addr();
    let mut publisher = joined(addr, None);
    let mut member = joined(addr, Some(BROWSER_OFFER));
    assert_eq!(member.extensions().as_deref(), Some("permessage-deflate"));
    // The client keeps one decompressor throughout, as the server keeps its context.
    let mut d = Decompress::new_with_window_bits(false, 15);
    // Repeats within it so that zlib's fastest level (static codes) compresses it at all.
    let own = letters(777, 300).repeat(4);
    let echo = |member: &mut Raw, d: &mut Decompress| {
        member.send(&masked(0x81, &[b"echo:".as_slice(), &own].concat()));
        let frame = member.frame();
        assert_eq!(frame.b0, 0xC1);
        assert_eq!(inflate(d, &frame.payload), own);
        frame.payload.len()
    };
    let first = echo(&mut member, &mut d);
    // A published message between two of its own: were it compressed apart from the
    // connection's context, the next echo (which refers back past it) would inflate wrong.
    let published = far_repeats();
    publisher.send(&masked(0x81, &published));
    let frame = member.frame();
    assert_eq!(frame.b0, 0xC1);
    assert_eq!(inflate(&mut d, &frame.payload), published);
    let again = echo(&mut member, &mut d);
    assert!(
        again < first / 4,
        "{again} bytes after {first}: the context was kept"
    );
    drop((publisher, member));
    server.shutdown();
    server.wait();
}
