//! A connection's reader waits, after a read whose messages the handler answered, until the
//! answer is written before reading again (it then usually finds the peer's next message
//! instead of arming a wake-up for it). A peer that does not read what we write must not stop
//! us from reading it: the wait ends after a tick of the core's timer, and there are no more
//! waits until the peer has taken everything queued.

mod common;

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::{block_on_within, start};
use ringsocket::{client::Client, App, Message, WsOptions};

/// Messages the peer sends without reading anything.
const SENT: u32 = 200;
/// Each is answered with this much: a few answers fill the socket's buffers both ways.
const ANSWER: usize = 256 * 1024;

#[test]
fn a_peer_that_does_not_read_our_answers_is_still_read() {
    let received = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&received);
    let app = App::builder()
        // Room for every answer: the queue never refuses one.
        .websocket(WsOptions::new().max_backpressure(2 * SENT as usize * ANSWER))
        .ws("/", move |mut ws, _req| {
            let received = Arc::clone(&counted);
            async move {
                let answer = bytes::Bytes::from(vec![7u8; ANSWER]);
                while let Some(Ok(message)) = ws.recv().await {
                    if message.is_close() {
                        break;
                    }
                    received.fetch_add(1, Ordering::SeqCst);
                    // Queued at once; written as the peer reads, which it does not.
                    let _ = ws.send(Message::Binary(answer.clone())).await;
                }
            }
        })
        .build()
        .unwrap();
    let server = start(app);
    let addr = server.local_addr();
    block_on_within(Duration::from_secs(20), async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        for i in 0..SENT {
            client
                .send(Message::Binary(vec![i as u8; 1024].into()))
                .await
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.load(Ordering::SeqCst) < SENT && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            received.load(Ordering::SeqCst),
            SENT,
            "every message was read while our answers piled up"
        );
        drop(client);
    });
}
