//! Nothing is lost silently: every message `send` accepted ends up written or counted as
//! unsent, including when the peer stops reading and the connection is cut.

mod common;

use std::{sync::mpsc, time::Duration};

use common::{block_on, start};
use ringsocket::{client::Client, App, CloseReport, Message, WsOptions};

/// A reader that never reads: sends are accepted until the outbound queue reaches its limit;
/// the next one is refused with `Error::Backpressure`, the connection is closed with 1008 (the
/// default policy), cut at the close timeout (the close frame cannot get out either), and its
/// report accounts for every message: accepted = written + unsent, the refused one dropped.
#[test]
fn slow_reader_is_closed_with_1008_and_every_message_is_accounted_for() {
    let (tx, rx) = mpsc::channel::<(u64, Option<String>, CloseReport)>();
    let app = App::builder()
        .websocket(
            WsOptions::new()
                .max_backpressure(256 * 1024)
                .close_timeout(Duration::from_millis(200)),
        )
        .ws("/", move |ws, _req| {
            let tx = tx.clone();
            async move {
                let payload = bytes::Bytes::from(vec![7u8; 64 * 1024]);
                let mut ok = 0u64;
                let refused = loop {
                    match ws.send(Message::Binary(payload.clone())).await {
                        Ok(()) => ok += 1,
                        Err(e) => break Some(e.to_string()),
                    }
                    // Let the writer run, as a real producer would between messages.
                    monoio::time::sleep(Duration::from_millis(1)).await;
                    if ok > 10_000 {
                        break None;
                    }
                };
                let report = ws.closed().await;
                tx.send((ok, refused, report)).unwrap();
            }
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let _client = Client::connect(addr, "/").await.unwrap();
        // Hold the connection open without reading until the server has given up on it.
        let (ok, refused, report) = loop {
            if let Ok(result) = rx.try_recv() {
                break result;
            }
            monoio::time::sleep(Duration::from_millis(10)).await;
        };
        let refused = refused.expect("a send was refused at the limit");
        assert!(refused.starts_with("outbound queue full"), "{refused}");
        assert!(ok > 4, "sends were accepted until the queue filled ({ok})");
        assert_eq!(report.sent_code, Some(1008));
        assert_eq!(report.accepted, ok);
        assert_eq!(report.dropped, 1);
        assert_eq!(report.written + report.unsent, report.accepted);
        assert!(
            report.unsent > 0,
            "the queued messages never got out: {report:?}"
        );
        assert_eq!(report.received, None);
        assert!(!report.clean);
    });
    server.shutdown();
    server.wait();
}

/// `send` queues the message in the call itself (as `ws`'s `send`): the future it returns is
/// already complete, so a message is accepted, counted and written in order even when the
/// future is dropped without being awaited; awaiting it later gives the same outcome.
#[test]
fn send_queues_at_the_call_whether_or_not_it_is_awaited() {
    let (tx, rx) = mpsc::channel::<(u64, u64)>();
    let app = App::builder()
        .ws("/", move |ws, _req| {
            let tx = tx.clone();
            async move {
                let first = ws.send("first");
                let accepted_before_await = ws.report().accepted;
                drop(ws.send("second"));
                first.await.unwrap();
                ws.send("third").await.unwrap();
                tx.send((accepted_before_await, ws.report().accepted))
                    .unwrap();
                ws.close(1000, "").unwrap();
                ws.closed().await;
            }
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        for text in ["first", "second", "third"] {
            assert_eq!(client.recv().await.unwrap().unwrap(), Message::text(text));
        }
        client.close(1000, "").await.unwrap();
    });
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), (1, 3));
    server.shutdown();
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
            dropped: 0,
            clean: true,
        }
    );
    server.shutdown();
    server.wait();
}
