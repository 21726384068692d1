//! S: shutdown with connections, handshakes and messages in flight.

use std::{
    sync::{mpsc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use ringsocket::{App, CloseReport, Message, WsOptions};

use crate::harness::*;

/// S1: every idle client gets 1001, upgrades after the start of the shutdown are refused, and
/// the server finishes long before the drain deadline.
#[test]
fn s01_idle_clients_get_1001_and_the_drain_is_quick() {
    let case = Case::echo();
    let mut clients: Vec<Raw> = (0..200).map(|_| case.ws("/")).collect();
    let trigger = case.server().shutdown_trigger();
    trigger.shutdown();
    for c in &mut clients {
        assert_eq!(c.expect_close(), Some(1001));
        c.send(&close_frame(1001, b""));
    }
    for c in clients {
        c.expect_eof();
    }
    let stopped = case.shutdown_and_wait();
    assert!(stopped.took < Duration::from_secs(5), "{:?}", stopped.took);
    stopped.assert_released();
}

/// The app for S2/S3: `/q` queues `n` messages of `size` bytes at once, then reports.
fn queueing(n: u64, size: usize, tx: mpsc::Sender<(u64, CloseReport)>) -> App {
    let tx = Mutex::new(tx);
    base()
        .websocket(
            WsOptions::new()
                .max_backpressure(64 << 20)
                .close_timeout(Duration::from_millis(300)),
        )
        .ws("/q", move |mut ws, _req| {
            let tx = tx.lock().unwrap().clone();
            async move {
                let _ = ws.recv().await;
                let payload = Bytes::from(vec![5u8; size]);
                let mut accepted = 0;
                for _ in 0..n {
                    if ws.send(Message::Binary(payload.clone())).await.is_ok() {
                        accepted += 1;
                    }
                }
                if ws.send(Message::text("queued")).await.is_ok() {
                    accepted += 1;
                }
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_close() {
                        break;
                    }
                }
                let _ = tx.send((accepted, ws.closed().await));
            }
        })
        .build()
        .unwrap()
}

/// S2: shutdown with messages queued: they are flushed before the 1001, and accepted =
/// written + unsent exactly.
#[test]
fn s02_queued_messages_are_flushed_before_1001_and_accounted() {
    let (tx, rx) = mpsc::channel();
    let case = Case::with(queueing(2000, 1024, tx), |s| {
        s.drain_timeout(Duration::from_secs(5))
    });
    let mut clients: Vec<Raw> = (0..10).map(|_| case.ws("/q")).collect();
    for c in &mut clients {
        c.send(&frame(true, 1, b"go"));
    }
    case.server().shutdown_trigger().shutdown();
    let mut received = 0;
    for mut c in clients {
        loop {
            let f = c.frame();
            if f.opcode == 8 {
                assert_eq!(f.close_code(), Some(1001));
                break;
            }
            received += 1;
        }
        c.send(&close_frame(1001, b""));
        c.expect_eof();
    }
    let mut written = 0;
    for _ in 0..10 {
        let (accepted, report) = rx.recv_timeout(ANSWER).unwrap();
        assert_eq!(report.accepted, accepted);
        // The reader kept reading: everything accepted went out before the 1001.
        assert_eq!(report.written, accepted);
        assert_eq!(report.unsent, 0);
        assert_eq!(report.sent_code, Some(1001));
        written += report.written;
    }
    assert_eq!(
        received, written,
        "every message written arrived before the 1001"
    );
    case.shutdown_and_wait().assert_released();
}

/// S3: clients that never read are cut at the drain deadline with their unsent messages
/// counted; shutdown ends within deadline + close timeout + a second.
#[test]
fn s03_non_readers_are_cut_at_the_deadline_and_counted() {
    let (tx, rx) = mpsc::channel();
    let drain = Duration::from_millis(500);
    let case = Case::with(queueing(400, 64 * 1024, tx), |s| s.drain_timeout(drain));
    let mut clients: Vec<Raw> = (0..4).map(|_| case.ws("/q")).collect();
    for c in &mut clients {
        c.send(&frame(true, 1, b"go"));
    }
    // Wait until every handler has queued its messages (the registry sees them buffered).
    let ok = wait_until(ANSWER, || {
        let clients = case.server().clients();
        let total = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let t = std::sync::Arc::clone(&total);
        block_on(clients.for_each(move |c| {
            if c.buffered_amount() > 1 << 20 {
                t.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
        total.load(std::sync::atomic::Ordering::Relaxed) == 4
    });
    assert!(ok, "messages queued");
    let stopped = case.shutdown_and_wait();
    assert!(
        stopped.took < drain + Duration::from_secs(2),
        "{:?}",
        stopped.took
    );
    for _ in 0..4 {
        let (accepted, report) = rx.recv_timeout(ANSWER).unwrap();
        assert_eq!(report.accepted, accepted);
        assert_eq!(report.written + report.unsent, report.accepted);
        assert!(report.unsent > 0, "{report:?}");
    }
    drop(clients);
    stopped.assert_released();
}

/// S4: shutdown while handshakes are in progress: each is answered or cut, none hangs.
#[test]
fn s04_shutdown_during_handshakes_ends_each_once() {
    let case = Case::echo();
    let mut partial: Vec<Raw> = (0..20).map(|_| case.tcp()).collect();
    for (i, c) in partial.iter_mut().enumerate() {
        let req = upgrade_request("/", "");
        c.send(&req[..(i * 7) % (req.len() - 1) + 1]);
    }
    let stopped = case.shutdown_and_wait();
    assert!(stopped.took < Duration::from_secs(3), "{:?}", stopped.took);
    for c in partial {
        let raw = c.read_to_eof();
        assert!(raw.is_empty() || status_of(&raw) == 503, "{raw:?}");
    }
    stopped.assert_released();
}

/// S5: shutdown called twice, from two threads, is harmless.
#[test]
fn s05_shutdown_twice_is_idempotent() {
    let case = Case::echo();
    let a = case.server().shutdown_trigger();
    let b = case.server().shutdown_trigger();
    let t = std::thread::spawn(move || a.shutdown());
    b.shutdown();
    t.join().unwrap();
    let stopped = case.shutdown_and_wait();
    assert!(stopped.took < Duration::from_secs(3), "{:?}", stopped.took);
    stopped.assert_released();
}

/// S6: topic messages published while the server shuts down are delivered before the 1001 or
/// counted unsent, never lost silently.
#[test]
fn s06_publish_during_shutdown_is_delivered_or_counted() {
    let (tx, rx) = mpsc::channel::<CloseReport>();
    let tx = Mutex::new(tx);
    let app = base()
        .ws("/sub", move |mut ws, _req| {
            let tx = tx.lock().unwrap().clone();
            async move {
                ws.subscribe("t");
                let _ = ws.send(Message::text("ready")).await;
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_close() {
                        break;
                    }
                }
                let _ = tx.send(ws.closed().await);
            }
        })
        .build()
        .unwrap();
    let case = Case::on(app, 2, |s| s);
    let mut subs: Vec<Raw> = (0..6).map(|_| case.ws("/sub")).collect();
    for c in &mut subs {
        assert_eq!(c.frame().payload, b"ready");
    }
    let clients = case.server().clients();
    let trigger = case.server().shutdown_trigger();
    let publisher = std::thread::spawn(move || {
        let mut published = 0u64;
        for i in 0..2000u32 {
            if i == 500 {
                trigger.shutdown();
            }
            if clients
                .publish("t", Message::binary(i.to_be_bytes().to_vec()))
                .is_ok()
            {
                published += 1;
            }
        }
        published
    });
    let mut received = Vec::new();
    for c in &mut subs {
        let mut n = 0u64;
        loop {
            let f = c.frame();
            if f.opcode == 8 {
                assert_eq!(f.close_code(), Some(1001));
                break;
            }
            n += 1;
        }
        c.send(&close_frame(1001, b""));
        received.push(n);
    }
    publisher.join().unwrap();
    let mut written = 0;
    for _ in 0..subs.len() {
        let report = rx.recv_timeout(ANSWER).unwrap();
        assert_eq!(report.written + report.unsent, report.accepted);
        written += report.written;
    }
    // Every message written reached its subscriber ("ready" included).
    assert_eq!(written, received.iter().sum::<u64>() + subs.len() as u64);
    drop(subs);
    case.shutdown_and_wait().assert_released();
}
