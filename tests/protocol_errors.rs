//! Each RFC 6455 violation (and each limit) closes the connection with its exact close code,
//! as soon as the offending bytes are in; valid control frames get their exact answers; and
//! one connection's garbage does not disturb another's.

mod common;

use std::{
    future::Future,
    io::{Read, Write},
    net::SocketAddr,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use common::{block_on, echo_app, start};
use ringsocket::{
    client::Client,
    proto::{encode_frame, OpCode},
    App, CloseFrame, Message, WsOptions,
};

/// The masking key of the frames built here (RFC 6455 5.7's example key).
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// The default `WsOptions::max_payload`.
const MAX_PAYLOAD: usize = 1 << 20;

/// Starts the echo app, runs the client side `test` against it, then shuts down.
fn with_echo_server<F, Fut>(test: F)
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: Future<Output = ()>,
{
    with_server(echo_app(), test);
}

fn with_server<F, Fut>(app: App, test: F)
where
    F: FnOnce(SocketAddr) -> Fut,
    Fut: Future<Output = ()>,
{
    let server = start(app);
    block_on(test(server.local_addr()));
    server.shutdown();
    server.wait();
}

/// `common::echo_app` with `options`.
fn echo_app_with(options: WsOptions) -> App {
    App::builder()
        .websocket(options)
        .ws("/", |mut ws, _req| async move {
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_close() || ws.send(message).await.is_err() {
                    break;
                }
            }
        })
        .build()
        .unwrap()
}

/// A masked frame through the crate's encoder (legal RSV bits and opcodes only).
fn frame(fin: bool, opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_frame(&mut out, fin, false, opcode, Some(KEY), payload);
    out.to_vec()
}

/// A masked frame with its first byte (FIN, RSV bits, opcode) exactly as given, so it can
/// carry what the encoder refuses to produce.
fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
    out
}

/// Only the header of a masked frame declaring `len` payload bytes in the 64-bit form.
fn header64(b0: u8, len: u64) -> Vec<u8> {
    let mut out = vec![b0, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&KEY);
    out
}

/// The start of what we sent, for failure messages.
fn show(bytes: &[u8]) -> String {
    format!(
        "{} bytes {:02x?}",
        bytes.len(),
        &bytes[..bytes.len().min(16)]
    )
}

fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut out = code.to_be_bytes().to_vec();
    out.extend_from_slice(reason);
    out
}

/// On a fresh connection, writes `bytes` and returns the code of the server's close frame,
/// after checking nothing came before it. (The client yields nothing after a close frame
/// whatever the socket does; `close_frame_is_the_last_thing_sent_before_tcp_ends` checks that
/// the server really ends the TCP connection.)
async fn close_code_for(addr: SocketAddr, bytes: &[u8]) -> u16 {
    let mut client = Client::connect(addr, "/").await.unwrap();
    client.send_raw(bytes).await.unwrap();
    let reply = monoio::time::timeout(Duration::from_secs(5), client.recv()).await;
    let code = match reply {
        Ok(Some(Ok(Message::Close(Some(CloseFrame { code, reason }))))) => {
            assert_eq!(reason, "", "the server closes with a bare code");
            code
        }
        other => panic!(
            "expected a close frame with a code, got {other:?} for {}",
            show(bytes)
        ),
    };
    assert!(
        client.recv().await.is_none(),
        "nothing after the close frame"
    );
    code
}

#[test]
fn unmasked_client_frame_is_1002() {
    with_echo_server(|addr| async move {
        assert_eq!(close_code_for(addr, b"\x81\x02hi").await, 1002);
        assert_eq!(close_code_for(addr, b"\x89\x00").await, 1002);
    });
}

#[test]
fn reserved_bits_without_an_extension_are_1002() {
    with_echo_server(|addr| async move {
        for rsv in [0x40, 0x20, 0x10] {
            let code = close_code_for(addr, &masked(0x80 | rsv | 0x1, b"hi")).await;
            assert_eq!(code, 1002, "rsv {rsv:#x}");
        }
        // RSV1 on a control frame, too.
        assert_eq!(close_code_for(addr, &masked(0xC9, b"")).await, 1002);
    });
}

#[test]
fn reserved_opcodes_are_1002() {
    with_echo_server(|addr| async move {
        for opcode in [0x3, 0x7, 0xB, 0xF] {
            let code = close_code_for(addr, &masked(0x80 | opcode, b"x")).await;
            assert_eq!(code, 1002, "opcode {opcode:#x}");
        }
    });
}

#[test]
fn fragmented_or_oversized_ping_is_1002() {
    with_echo_server(|addr| async move {
        assert_eq!(close_code_for(addr, &masked(0x09, b"p")).await, 1002);
        assert_eq!(close_code_for(addr, &masked(0x89, &[7; 126])).await, 1002);
    });
}

#[test]
fn continuation_without_a_message_is_1002() {
    with_echo_server(|addr| async move {
        let bytes = frame(true, OpCode::Continuation, b"x");
        assert_eq!(close_code_for(addr, &bytes).await, 1002);
    });
}

#[test]
fn new_data_frame_inside_a_fragmented_message_is_1002() {
    with_echo_server(|addr| async move {
        for second in [OpCode::Text, OpCode::Binary] {
            let mut bytes = frame(false, OpCode::Text, b"a");
            bytes.extend(frame(true, second, b"b"));
            assert_eq!(close_code_for(addr, &bytes).await, 1002, "{second:?}");
        }
    });
}

#[test]
fn length_with_its_most_significant_bit_set_is_1002() {
    with_echo_server(|addr| async move {
        let bytes = header64(0x82, 1 << 63);
        assert_eq!(close_code_for(addr, &bytes).await, 1002);
    });
}

#[test]
fn invalid_utf8_text_is_1007() {
    with_echo_server(|addr| async move {
        for bad in [
            &b"\xc0\x80"[..],
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"ok\xff",
        ] {
            let code = close_code_for(addr, &frame(true, OpCode::Text, bad)).await;
            assert_eq!(code, 1007, "{bad:02x?}");
        }
    });
}

#[test]
fn invalid_utf8_split_across_fragments_is_1007() {
    with_echo_server(|addr| async move {
        // A surrogate whose bytes straddle two frames.
        let mut bytes = frame(false, OpCode::Text, b"a\xed");
        bytes.extend(frame(true, OpCode::Continuation, b"\xa0\x80"));
        assert_eq!(close_code_for(addr, &bytes).await, 1007);
        // A code point left unfinished by the final frame.
        let mut bytes = frame(false, OpCode::Text, b"a\xe2\x82");
        bytes.extend(frame(true, OpCode::Continuation, b""));
        assert_eq!(close_code_for(addr, &bytes).await, 1007);
    });
}

#[test]
fn invalid_utf8_fails_before_the_rest_of_the_frame_arrives() {
    with_echo_server(|addr| async move {
        // The header of a 100-byte text frame and only its first, already invalid, bytes; the
        // rest is never sent.
        for chunk in [&b"ok\xc0\x80"[..], b"\xc0", b"\xed\xa0", b"\xf4\x90"] {
            let mut bytes = masked(0x81, &[b'x'; 100]);
            bytes.truncate(6);
            bytes.extend(chunk.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
            assert_eq!(close_code_for(addr, &bytes).await, 1007, "{chunk:02x?}");
        }
    });
}

#[test]
fn close_with_a_one_byte_payload_is_1002() {
    with_echo_server(|addr| async move {
        assert_eq!(close_code_for(addr, &masked(0x88, &[0x03])).await, 1002);
    });
}

#[test]
fn close_codes_that_may_not_be_sent_are_1002() {
    with_echo_server(|addr| async move {
        for sent in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            let code = close_code_for(addr, &masked(0x88, &close_payload(sent, b""))).await;
            assert_eq!(code, 1002, "close code {sent}");
        }
    });
}

#[test]
fn close_reason_that_is_not_utf8_is_1007() {
    with_echo_server(|addr| async move {
        let bytes = masked(0x88, &close_payload(1000, b"bye\xff"));
        assert_eq!(close_code_for(addr, &bytes).await, 1007);
    });
}

#[test]
fn valid_close_codes_are_echoed() {
    with_echo_server(|addr| async move {
        for sent in [1000, 1001, 3000, 4999] {
            let code = close_code_for(addr, &masked(0x88, &close_payload(sent, b""))).await;
            assert_eq!(code, sent);
            let code = close_code_for(addr, &masked(0x88, &close_payload(sent, b"bye"))).await;
            assert_eq!(code, sent, "with a reason");
        }
    });
}

/// A message and a close frame that arrive in one read: the handler still gets to answer
/// the message before the server's close reply, as it does when they arrive in two reads
/// (and as `ws` does: its `message` handlers run before the close is answered).
#[test]
fn message_before_a_close_in_the_same_write_is_answered_first() {
    with_echo_server(|addr| async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        let mut bytes = frame(true, OpCode::Text, b"last words");
        bytes.extend(masked(0x88, &close_payload(1000, b"")));
        client.send_raw(&bytes).await.unwrap();
        let reply = monoio::time::timeout(Duration::from_secs(5), client.recv()).await;
        assert_eq!(
            reply.unwrap().unwrap().unwrap(),
            Message::text("last words")
        );
        let reply = monoio::time::timeout(Duration::from_secs(5), client.recv()).await;
        let close = Message::Close(Some(CloseFrame {
            code: 1000,
            reason: String::new(),
        }));
        assert_eq!(reply.unwrap().unwrap().unwrap(), close);
    });
}

/// The same for a message followed by a protocol violation: the reply, then the 1002.
#[test]
fn message_before_a_violation_in_the_same_write_is_answered_first() {
    with_echo_server(|addr| async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        let mut bytes = frame(true, OpCode::Text, b"last words");
        bytes.extend_from_slice(b"\x81\x02hi"); // unmasked
        client.send_raw(&bytes).await.unwrap();
        let reply = monoio::time::timeout(Duration::from_secs(5), client.recv()).await;
        assert_eq!(
            reply.unwrap().unwrap().unwrap(),
            Message::text("last words")
        );
        let reply = monoio::time::timeout(Duration::from_secs(5), client.recv()).await;
        let close = Message::Close(Some(CloseFrame {
            code: 1002,
            reason: String::new(),
        }));
        assert_eq!(reply.unwrap().unwrap().unwrap(), close);
        assert!(client.recv().await.is_none());
    });
}

#[test]
fn message_declared_over_the_limit_is_1009_before_its_payload() {
    with_echo_server(|addr| async move {
        let too_big = MAX_PAYLOAD as u64 + 1;
        assert_eq!(close_code_for(addr, &header64(0x82, too_big)).await, 1009);
        assert_eq!(close_code_for(addr, &header64(0x81, too_big)).await, 1009);
        assert_eq!(close_code_for(addr, &header64(0x82, 1 << 62)).await, 1009);
    });
}

#[test]
fn fragmented_message_crossing_the_limit_is_1009() {
    with_echo_server(|addr| async move {
        // Exactly the limit in two fragments is fine...
        let mut client = Client::connect(addr, "/").await.unwrap();
        client
            .send_frame(false, OpCode::Binary, &vec![1; MAX_PAYLOAD - 1])
            .await
            .unwrap();
        client
            .send_frame(true, OpCode::Continuation, &[2])
            .await
            .unwrap();
        let echoed = client.recv().await.unwrap().unwrap();
        assert_eq!(echoed.payload().len(), MAX_PAYLOAD);
        assert_eq!(echoed.payload()[MAX_PAYLOAD - 1], 2);
        // ...one byte more is not.
        let mut bytes = frame(false, OpCode::Binary, &vec![1; MAX_PAYLOAD - 1]);
        bytes.extend(frame(true, OpCode::Continuation, &[2, 3]));
        assert_eq!(close_code_for(addr, &bytes).await, 1009);
    });
}

#[test]
fn more_than_max_fragments_is_1008() {
    let app = echo_app_with(WsOptions::new().max_fragments(4096));
    with_server(app, |addr| assert_fragment_limit(addr, 4096));
    // The default: one fragment per 64 bytes of the 1 MiB max_payload.
    assert_eq!(WsOptions::new().get_max_fragments(), 16_384);
    with_echo_server(|addr| assert_fragment_limit(addr, 16_384));
}

/// `limit` empty frames make one (empty) message; one frame more closes with 1008.
async fn assert_fragment_limit(addr: SocketAddr, limit: usize) {
    let fragments = |count: usize| {
        let mut bytes = frame(false, OpCode::Binary, b"");
        for i in 1..count {
            bytes.extend(frame(i == count - 1, OpCode::Continuation, b""));
        }
        bytes
    };
    let mut client = Client::connect(addr, "/").await.unwrap();
    client.send_raw(&fragments(limit)).await.unwrap();
    let echoed = client.recv().await.unwrap().unwrap();
    assert_eq!(echoed, Message::binary(Bytes::new()));
    let code = close_code_for(addr, &fragments(limit + 1)).await;
    assert_eq!(code, 1008, "{} fragments", limit + 1);
}

#[test]
fn ping_of_125_bytes_gets_the_identical_pong() {
    with_echo_server(|addr| async move {
        let payload: Vec<u8> = (0..125u8).collect();
        let mut client = Client::connect(addr, "/").await.unwrap();
        client
            .send_frame(true, OpCode::Ping, &payload)
            .await
            .unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::Pong(Bytes::from(payload))
        );
        client.send(Message::text("still open")).await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("still open")
        );
    });
}

#[test]
fn unsolicited_pong_is_ignored() {
    with_echo_server(|addr| async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        client
            .send_frame(true, OpCode::Pong, b"unsolicited")
            .await
            .unwrap();
        client.send(Message::text("after the pong")).await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("after the pong")
        );
    });
}

/// Below the client API: after a protocol error the server's last bytes are exactly its
/// close frame, and then it ends the TCP connection (`read_to_end` returns) without waiting
/// for our close frame.
#[test]
fn close_frame_is_the_last_thing_sent_before_tcp_ends() {
    let server = start(echo_app());
    let addr = server.local_addr();
    for (bytes, code) in [
        (b"\x81\x02hi".to_vec(), 1002u16),
        (frame(true, OpCode::Text, b"\xc0\x80"), 1007),
        (header64(0x82, MAX_PAYLOAD as u64 + 1), 1009),
    ] {
        let mut stream = common::raw_upgrade(addr, "/", Duration::from_secs(5));
        stream.write_all(&bytes).unwrap();
        let mut rest = Vec::new();
        if let Err(e) = stream.read_to_end(&mut rest) {
            panic!("server kept the connection open ({e}); got {rest:02x?}");
        }
        let [hi, lo] = code.to_be_bytes();
        assert_eq!(rest, [0x88, 0x02, hi, lo], "for {}", show(&bytes));
    }
    server.shutdown();
    server.wait();
}

#[test]
fn garbage_on_one_connection_does_not_disturb_another() {
    with_echo_server(|addr| async move {
        // Several garbage connections, so that at least one very likely shares a worker with
        // the well-behaved one. Fixed seeds keep the garbage, and so its close codes, the same
        // on every run.
        let mut garbage = Vec::new();
        for seed in 0..4u64 {
            let client = Client::connect(addr, "/").await.unwrap();
            garbage.push((client, fastrand::Rng::with_seed(seed), true));
        }
        let mut good = Client::connect(addr, "/").await.unwrap();
        let mut round_trips = 0;
        for i in 0..200u32 {
            for (client, rng, writable) in &mut garbage {
                let chunk: Vec<u8> = (0..512).map(|_| rng.u8(..)).collect();
                // Once the server has failed the connection and cut it, writes may fail.
                *writable = *writable && client.send_raw(&chunk).await.is_ok();
            }
            let text = format!("round trip {i}");
            good.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(good.recv().await.unwrap().unwrap(), Message::text(text));
            round_trips += 1;
        }
        assert_eq!(round_trips, 200);
        let mut codes = Vec::new();
        for (mut client, _, _) in garbage {
            codes.push(loop {
                match monoio::time::timeout(Duration::from_secs(5), client.recv()).await {
                    Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| f.code),
                    // Garbage that happened to form a valid message is echoed.
                    Ok(Some(Ok(_))) => {}
                    other => panic!("expected a close frame, got {other:?}"),
                }
            });
        }
        assert_eq!(codes, [Some(1002); 4]);
    });
}
