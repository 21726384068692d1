//! A panicking handler ends its own connection with 1011 and nothing else: other connections
//! on the same core keep round-tripping, and the core keeps accepting.

mod common;

use common::block_on;
use ringsocket::{client::Client, App, CloseFrame, Message, Server};

fn app() -> App {
    App::builder()
        .ws("/", |mut ws, _req| async move {
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_close() || ws.send(message).await.is_err() {
                    break;
                }
            }
        })
        .ws("/panic", |mut ws, _req| async move {
            if ws.recv().await.is_some() {
                panic!("handler bug");
            }
        })
        .ws("/error", |mut ws, _req| async move {
            let _ = ws.recv().await;
            Err::<(), _>("handler failed")
        })
        .ws("/return", |_ws, _req| async move {})
        .build()
        .unwrap()
}

fn close_code(message: Message) -> Option<u16> {
    match message {
        Message::Close(frame) => frame.map(|f| f.code),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

#[test]
fn panic_closes_only_its_connection_with_1011() {
    // One worker, so every connection shares the core with the panicking one.
    let server = Server::new(app()).workers(1).listen("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    block_on(async move {
        let mut healthy = Client::connect(addr, "/").await.unwrap();
        for round in 0..3 {
            let mut victim = Client::connect(addr, "/panic").await.unwrap();
            victim.send(Message::text("boom")).await.unwrap();
            assert_eq!(
                close_code(victim.recv().await.unwrap().unwrap()),
                Some(1011),
                "round {round}"
            );

            healthy
                .send(Message::text(format!("still here {round}")))
                .await
                .unwrap();
            assert_eq!(
                healthy.recv().await.unwrap().unwrap(),
                Message::text(format!("still here {round}"))
            );
        }
        // The core still accepts new connections.
        let mut fresh = Client::connect(addr, "/").await.unwrap();
        fresh.send(Message::binary(vec![1, 2, 3])).await.unwrap();
        assert_eq!(
            fresh.recv().await.unwrap().unwrap(),
            Message::binary(vec![1, 2, 3])
        );
    });
    server.shutdown();
    server.wait();
}

#[test]
fn handler_error_terminates_and_return_closes_with_1000() {
    let server = common::start(app());
    let addr = server.local_addr();
    block_on(async move {
        // The default error handler, as @fastify/websocket's: log and terminate. No close
        // frame: the client sees an abnormal closure (1006).
        let mut client = Client::connect(addr, "/error").await.unwrap();
        client.send(Message::text("x")).await.unwrap();
        assert!(
            client.recv().await.is_none(),
            "terminated without a close frame"
        );

        let mut client = Client::connect(addr, "/return").await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::Close(Some(CloseFrame {
                code: 1000,
                reason: String::new()
            }))
        );
    });
    server.shutdown();
    server.wait();
}

#[test]
fn custom_error_handler_gets_the_error_and_the_socket() {
    let app = App::builder()
        .websocket(
            ringsocket::WsOptions::new().error_handler(|err, ws, _req| async move {
                let _ = ws.send(Message::text(format!("error: {err}"))).await;
                let _ = ws.close(4000, "handled");
            }),
        )
        .ws("/", |mut ws, _req| async move {
            let _ = ws.recv().await;
            Err::<(), _>("boom")
        })
        .build()
        .unwrap();
    let server = common::start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        client.send(Message::text("x")).await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("error: boom")
        );
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::Close(Some(CloseFrame {
                code: 4000,
                reason: "handled".into()
            }))
        );
    });
    server.shutdown();
    server.wait();
}
