//! Nothing is lost silently: every message `send` accepted ends up written or counted as
//! unsent, including when the peer stops reading and the connection is cut.

mod common;

use std::{sync::mpsc, time::Duration};

use common::{block_on, start};
use ringsocket::{client::Client, App, CloseReport, Message, WsOptions};

#[test]
fn terminate_with_a_stuck_writer_reports_unsent_messages() {
    let (tx, rx) = mpsc::channel::<(u64, CloseReport)>();
    let app = App::builder()
        .websocket(WsOptions::new().max_backpressure(256 * 1024))
        .ws("/", move |ws, _req| {
            let tx = tx.clone();
            async move {
                let payload = bytes::Bytes::from(vec![7u8; 64 * 1024]);
                let mut ok = 0u64;
                // The client never reads: sends are accepted until the socket buffers and the
                // backpressure limit fill up, then `send` waits.
                loop {
                    let send = ws.send(Message::Binary(payload.clone()));
                    match monoio::time::timeout(Duration::from_millis(300), send).await {
                        Ok(Ok(())) => ok += 1,
                        Ok(Err(e)) => panic!("send failed: {e}"),
                        Err(_) => break,
                    }
                }
                ws.terminate();
                let report = ws.closed().await;
                tx.send((ok, report)).unwrap();
            }
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let _client = Client::connect(addr, "/").await.unwrap();
        // Hold the connection open without reading until the server has given up on it.
        monoio::time::sleep(Duration::from_millis(100)).await;
        let (ok, report) = loop {
            if let Ok(result) = rx.try_recv() {
                break result;
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(
            ok > 4,
            "some sends were accepted before backpressure ({ok})"
        );
        assert_eq!(report.accepted, ok);
        assert_eq!(report.written + report.unsent, report.accepted);
        assert!(
            report.unsent > 0,
            "a stuck connection leaves messages unsent: {report:?}"
        );
        assert_eq!(report.received, None);
        assert!(!report.clean);
    });
    server.shutdown();
    server.wait();
}

#[test]
fn clean_close_reports_every_message_written() {
    let (tx, rx) = mpsc::channel::<CloseReport>();
    let app = App::builder()
        .ws("/", move |ws, _req| {
            let tx = tx.clone();
            async move {
                for i in 0..100u32 {
                    ws.send(Message::binary(i.to_be_bytes().to_vec()))
                        .await
                        .unwrap();
                }
                ws.close(1000, "done").unwrap();
                tx.send(ws.closed().await).unwrap();
            }
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        for i in 0..100u32 {
            assert_eq!(
                client.recv().await.unwrap().unwrap(),
                Message::binary(i.to_be_bytes().to_vec())
            );
        }
        let close = client.recv().await.unwrap().unwrap();
        assert_eq!(
            close,
            Message::Close(Some(ringsocket::CloseFrame {
                code: 1000,
                reason: "done".into()
            }))
        );
        client.close(1000, "").await.unwrap();
        assert!(client.recv().await.is_none());
    });
    let report = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(
        report,
        CloseReport {
            sent_code: Some(1000),
            received: Some(Some(ringsocket::CloseFrame {
                code: 1000,
                reason: String::new()
            })),
            accepted: 100,
            written: 100,
            unsent: 0,
            clean: true,
        }
    );
    server.shutdown();
    server.wait();
}
