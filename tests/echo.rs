//! Echo over loopback: text stays text, binary stays binary, sizes from empty to 1 MiB,
//! fragmented messages reassembled, pings answered, the close handshake completed.

mod common;

use bytes::Bytes;
use common::{block_on, echo_app, echo_app_with, start};
use ringsocket::{client::Client, proto::OpCode, CloseFrame, Message};

#[test]
fn echoes_text_and_binary_unchanged() {
    let server = start(echo_app());
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        for size in [0usize, 1, 125, 126, 65535, 65536, 1 << 20] {
            let text: String = (0..size)
                .map(|i| char::from(b'a' + (i % 26) as u8))
                .collect();
            client.send(Message::text(text.clone())).await.unwrap();
            assert_eq!(client.recv().await.unwrap().unwrap(), Message::text(text));
            let data: Vec<u8> = (0..size).map(|i| (i * 7) as u8).collect();
            client.send(Message::binary(data.clone())).await.unwrap();
            assert_eq!(
                client.recv().await.unwrap().unwrap(),
                Message::Binary(Bytes::from(data))
            );
        }
        client.send(Message::text("ünïcödé 🦀")).await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap().as_text(),
            Some("ünïcödé 🦀")
        );
    });
    server.shutdown();
    server.wait();
}

#[test]
fn reassembles_fragments_and_answers_pings_between_them() {
    let server = start(echo_app());
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        client
            .send_frame(false, OpCode::Text, "hel".as_bytes())
            .await
            .unwrap();
        client.send_frame(true, OpCode::Ping, b"p1").await.unwrap();
        client
            .send_frame(false, OpCode::Continuation, "lo ".as_bytes())
            .await
            .unwrap();
        client
            .send_frame(true, OpCode::Continuation, "wörld".as_bytes())
            .await
            .unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::Pong(Bytes::from_static(b"p1"))
        );
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("hello wörld")
        );
    });
    server.shutdown();
    server.wait();
}

#[test]
fn many_messages_in_one_write_come_back_in_order() {
    let server = start(echo_app());
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        let mut burst = bytes::BytesMut::new();
        for i in 0..500u32 {
            ringsocket::proto::encode_frame(
                &mut burst,
                true,
                false,
                OpCode::Binary,
                Some([1, 2, 3, 4]),
                &i.to_be_bytes(),
            );
        }
        client.send_raw(&burst).await.unwrap();
        for i in 0..500u32 {
            assert_eq!(
                client.recv().await.unwrap().unwrap(),
                Message::binary(i.to_be_bytes().to_vec())
            );
        }
    });
    server.shutdown();
    server.wait();
}

#[test]
fn close_handshake_echoes_the_code() {
    let server = start(echo_app());
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        client.close(4001, "done").await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::Close(Some(CloseFrame {
                code: 4001,
                reason: String::new()
            }))
        );
        assert!(
            client.recv().await.is_none(),
            "server closes TCP after the handshake"
        );
    });
    server.shutdown();
    server.wait();
}

/// Large payloads go out from their own buffers after their headers (vectored writes), small
/// ones are copied: a client that reads nothing until it has sent everything makes the
/// server's writes stop part way (its socket buffers fill), and every byte must still come
/// back in order.
#[test]
fn large_and_small_messages_come_back_byte_exact_through_partial_writes() {
    let app = echo_app_with(
        ringsocket::WsOptions::new()
            .max_payload(2 << 20)
            .max_backpressure(64 << 20),
    );
    let server = start(app);
    let addr = server.local_addr();
    let sizes = [
        5_000, 10, 1_500_000, 4_096, 4_095, 2_000_000, 3, 700_000, 2_000_000, 1, 1_800_000,
    ];
    let messages: Vec<Message> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| {
            if i % 3 == 1 {
                let text = (0..size).map(|j| char::from(b' ' + ((j * 31 + i * 7) % 95) as u8));
                Message::text(text.collect::<String>())
            } else {
                Message::binary(
                    (0..size)
                        .map(|j| (j * 31 + i * 7) as u8)
                        .collect::<Vec<u8>>(),
                )
            }
        })
        .collect();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        for message in &messages {
            client.send(message.clone()).await.unwrap();
        }
        for (i, message) in messages.iter().enumerate() {
            let echoed = client.recv().await.unwrap().unwrap();
            assert!(
                echoed == *message,
                "message {i} ({} bytes) differs: got {} bytes (text: {})",
                sizes[i],
                echoed.payload().len(),
                echoed.as_text().is_some()
            );
        }
    });
    server.shutdown();
    server.wait();
}

/// A connection quiet for a while waits for bytes without a read buffer; whatever arrives
/// next (a small message, a large one, a frame trickling in) is read as usual.
#[test]
fn messages_after_quiet_spells_come_back_unchanged() {
    let server = start(echo_app());
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        let quiet = std::time::Duration::from_millis(120);
        for size in [5usize, 700_000, 0, 3_000] {
            monoio::time::sleep(quiet).await;
            let payload: Vec<u8> = (0..size).map(|j| (j % 251) as u8).collect();
            client.send(Message::binary(payload.clone())).await.unwrap();
            assert_eq!(
                client.recv().await.unwrap().unwrap(),
                Message::binary(payload)
            );
        }
        // A frame whose bytes come apart, each after a quiet spell.
        let mut frame = bytes::BytesMut::new();
        ringsocket::proto::encode_frame(
            &mut frame,
            true,
            false,
            OpCode::Text,
            Some([9, 8, 7, 6]),
            b"trickled in",
        );
        for piece in [&frame[..1], &frame[1..4], &frame[4..]] {
            monoio::time::sleep(quiet).await;
            client.send_raw(piece).await.unwrap();
        }
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("trickled in")
        );
    });
    server.shutdown();
    server.wait();
}
