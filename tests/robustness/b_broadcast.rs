//! B: client tracking and cross-core topics (two workers; the control connections are on
//! the `/` route, which subscribes to nothing).

use std::{
    sync::{mpsc, Mutex},
    time::Duration,
};

use ringsocket::{App, CloseReport, Message, WsOptions};

use crate::harness::*;

fn topic_app(tx: Option<mpsc::Sender<CloseReport>>) -> App {
    let tx = Mutex::new(tx);
    base()
        .websocket(WsOptions::new().close_timeout(Duration::from_millis(300)))
        .ws("/sub", move |mut ws, _req| {
            let tx = tx.lock().unwrap().clone();
            async move {
                ws.subscribe("room");
                let _ = ws.send(Message::text("ready")).await;
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_close() {
                        break;
                    }
                    if m == Message::text("leave") {
                        ws.unsubscribe("room");
                        let _ = ws.send(Message::text("left")).await;
                    } else if m == Message::text("join") {
                        ws.subscribe("room");
                        let _ = ws.send(Message::text("joined")).await;
                    }
                }
                if let Some(tx) = tx {
                    let _ = tx.send(ws.closed().await);
                }
            }
        })
        .build()
        .unwrap()
}

fn subscribers(case: &Case, n: usize) -> Vec<Raw> {
    let mut subs: Vec<Raw> = (0..n).map(|_| case.ws("/sub")).collect();
    for c in &mut subs {
        assert_eq!(c.frame().payload, b"ready");
    }
    let clients = case.server().clients();
    assert!(wait_until(ANSWER, || clients.subscribers("room") == n));
    subs
}

/// B1: 1..N published to a group spanning both cores: every member receives 1..N in order,
/// exactly once.
#[test]
fn b01_every_member_gets_every_message_in_order_once() {
    let case = Case::on(topic_app(None), 2, |s| s);
    let subs = subscribers(&case, 12);
    let clients = case.server().clients();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                for i in 1..=2000u32 {
                    let f = c.frame();
                    assert_eq!(f.payload, i.to_be_bytes(), "in order, once");
                }
                c
            })
        })
        .collect();
    for i in 1..=2000u32 {
        let d = clients
            .publish("room", Message::binary(i.to_be_bytes().to_vec()))
            .unwrap();
        assert_eq!(d.dropped_cores, 0);
    }
    for r in readers {
        r.join().expect("reader").close_cleanly();
    }
    case.finish();
}

/// B2: members reset while a publisher fans out: no panic, the rest get everything, and the
/// reset ones account for every message.
#[test]
fn b02_members_reset_during_fan_out_are_accounted() {
    let (tx, rx) = mpsc::channel();
    let case = Case::on(topic_app(Some(tx)), 2, |s| s);
    let mut subs = subscribers(&case, 8);
    let doomed: Vec<Raw> = subs.drain(4..).collect();
    let clients = case.server().clients();
    let readers: Vec<_> = subs
        .into_iter()
        .map(|mut c| {
            std::thread::spawn(move || {
                for i in 0..3000u32 {
                    assert_eq!(c.frame().payload, i.to_be_bytes());
                }
                c
            })
        })
        .collect();
    let mut doomed = Some(doomed);
    for i in 0..3000u32 {
        if i == 1000 {
            for c in doomed.take().unwrap() {
                c.reset();
            }
        }
        clients
            .publish("room", Message::binary(i.to_be_bytes().to_vec()))
            .unwrap();
    }
    for r in readers {
        r.join().expect("reader").close_cleanly();
    }
    for _ in 0..8 {
        let report = rx.recv_timeout(ANSWER).unwrap();
        assert_eq!(report.written + report.unsent, report.accepted);
    }
    case.finish();
}

/// B3: join/leave churn returns the group to exactly zero.
#[test]
fn b03_join_leave_churn_returns_the_group_to_zero() {
    let case = Case::on(topic_app(None), 2, |s| s);
    let mut subs = subscribers(&case, 6);
    for _ in 0..200 {
        for c in &mut subs {
            c.send(&frame(true, 1, b"leave"));
        }
        for c in &mut subs {
            assert_eq!(c.frame().payload, b"left");
            c.send(&frame(true, 1, b"join"));
        }
        for c in &mut subs {
            assert_eq!(c.frame().payload, b"joined");
        }
    }
    let clients = case.server().clients();
    assert_eq!(clients.subscribers("room"), 6);
    for (i, c) in subs.into_iter().enumerate() {
        if i % 2 == 0 {
            c.reset();
        } else {
            c.close_cleanly();
        }
    }
    assert!(wait_until(ANSWER, || clients.subscribers("room") == 0));
    case.finish();
}

/// B5: the registry counts exactly the live connections, sampled through connect/reset churn.
#[test]
fn b05_registry_matches_live_connections_through_churn() {
    let case = Case::on(topic_app(None), 2, |s| s);
    let clients = case.server().clients();
    let base = clients.len();
    for round in 0..20 {
        let subs = subscribers(&case, 5);
        assert_eq!(clients.len(), base + 5, "round {round}");
        for (i, c) in subs.into_iter().enumerate() {
            if (i + round) % 2 == 0 {
                c.reset();
            } else {
                c.close_cleanly();
            }
        }
        assert!(
            wait_until(ANSWER, || clients.len() == base),
            "round {round}"
        );
    }
    case.finish();
}
