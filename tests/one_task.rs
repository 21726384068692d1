//! Each connection's reader, handler and writer run in one task: a handler that outlives its
//! connection does not keep the connection (its registration, its socket) alive, and it is
//! still run to its end.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use common::block_on;
use ringsocket::{client::Client, App, CloseFrame, Message, Server};

#[test]
fn a_handler_that_goes_on_after_the_close_does_not_hold_the_connection() {
    let recv_ended = Arc::new(AtomicBool::new(false));
    let handler_done = Arc::new(AtomicBool::new(false));
    let (ended, done) = (Arc::clone(&recv_ended), Arc::clone(&handler_done));
    let app = App::builder()
        .ws("/", move |mut ws, _req| {
            let (ended, done) = (Arc::clone(&ended), Arc::clone(&done));
            async move {
                while let Some(Ok(message)) = ws.recv().await {
                    if message.is_close() {
                        break;
                    }
                }
                drop(ws);
                ended.store(true, Ordering::SeqCst);
                // Cleanup that takes a while after the connection is over.
                monoio::time::sleep(Duration::from_millis(700)).await;
                done.store(true, Ordering::SeqCst);
            }
        })
        .build()
        .unwrap();
    let server = Server::new(app).workers(1).listen("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    let clients = server.clients();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        client.close(1000, "bye").await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::Close(Some(CloseFrame {
                code: 1000,
                reason: String::new()
            }))
        );
        // The connection finishes (unregistered, socket closed) while the handler sleeps.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !clients.is_empty() && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(clients.len(), 0, "the finished connection is unregistered");
        assert!(
            recv_ended.load(Ordering::SeqCst),
            "the handler saw the close"
        );
        assert!(
            !handler_done.load(Ordering::SeqCst),
            "the handler still runs"
        );
        // ...and is still polled after its connection is gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !handler_done.load(Ordering::SeqCst) && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            handler_done.load(Ordering::SeqCst),
            "the handler ran to its end"
        );
    });
}
