//! A stalled core cannot block a publisher or grow memory: its inbox is bounded, sends to it
//! are refused at once when it is full, and the losses are counted.

mod common;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use ringsocket::{client::Client, App, Message, Server};

#[test]
fn a_full_inbox_refuses_at_once_and_counts_the_loss() {
    let stall = Arc::new(AtomicBool::new(false));
    let stalled = Arc::clone(&stall);
    let app = App::builder()
        .ws("/", move |mut ws, _req| {
            let stalled = Arc::clone(&stalled);
            async move {
                while let Some(Ok(message)) = ws.recv().await {
                    if message.as_text() == Some("stall") {
                        // Blocks this core (no await): its inbox is not drained meanwhile.
                        stalled.store(true, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(1500));
                    }
                }
            }
        })
        .build()
        .unwrap();
    // One worker: the stalled core is the only one, and the test thread is the publisher.
    let server = Server::new(app).workers(1).listen("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    let clients = server.clients();
    common::block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        client.send(Message::text("stall")).await.unwrap();
        while !stall.load(Ordering::SeqCst) {
            monoio::time::sleep(Duration::from_millis(1)).await;
        }
        let started = Instant::now();
        let mut queued = 0;
        let mut dropped = 0;
        for i in 0..70_000u32 {
            let delivery = clients
                .broadcast(Message::binary(i.to_be_bytes().to_vec()))
                .unwrap();
            queued += delivery.cores;
            dropped += delivery.dropped_cores;
        }
        // Never blocked: 70,000 sends to a stalled core took far less than its stall.
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(queued, 65_536, "the inbox holds its capacity");
        assert_eq!(dropped, 70_000 - 65_536);
        assert_eq!(clients.inbox_dropped(), (70_000 - 65_536) as u64);
    });
    server.shutdown();
    server.wait();
}
