//! Echo over loopback: text stays text, binary stays binary, sizes from empty to 1 MiB,
//! fragmented messages reassembled, pings answered, the close handshake completed.

mod common;

use bytes::Bytes;
use common::{block_on, echo_app, start};
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
