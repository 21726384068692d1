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

/// B4: publishing to a topic with a member on a stalled core never blocks; what the full inbox
/// refuses is counted, and the member then receives the rest in order, without duplicates.
#[test]
fn b04_stalled_core_bounds_its_inbox_and_counts_the_overflow() {
    use std::sync::{atomic::Ordering, Arc};

    use crate::p_process::{core_of, stalling_app};

    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let case = Case::on(stalling_app(Arc::clone(&stalled)), 2, |s| s);
    let mut staller = case.ws("/stall");
    let blocked = core_of(&staller.frame().payload);
    let mut member = (0..64)
        .map(|_| {
            let mut c = case.ws("/sub");
            let core = core_of(&c.frame().payload);
            (c, core)
        })
        .find(|(_, core)| *core == blocked)
        .map(|(c, _)| c)
        .expect("a member on the stalled core");
    let clients = case.server().clients();
    assert!(wait_until(ANSWER, || clients.subscribers("t") == 1));
    let dropped_before = clients.inbox_dropped();
    staller.send(&frame(true, 1, b"stall"));
    assert!(wait_until(ANSWER, || stalled.load(Ordering::SeqCst)));
    let started = std::time::Instant::now();
    let (mut queued, mut refused) = (0u64, 0u64);
    for i in 0..70_000u32 {
        let d = clients
            .publish("t", Message::binary(i.to_be_bytes().to_vec()))
            .unwrap();
        queued += d.cores as u64;
        refused += d.dropped_cores as u64;
    }
    assert!(
        started.elapsed() < Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );
    assert!(
        stalled.load(Ordering::SeqCst),
        "published while the core was stalled"
    );
    assert!(refused > 0, "the inbox filled");
    // Posted to both cores (a publisher off the cores does not know where members are); only
    // the stalled one refuses.
    assert_eq!(queued + refused, 2 * 70_000);
    assert_eq!(clients.inbox_dropped() - dropped_before, refused);
    assert_eq!(staller.frame().payload, b"unstalled");
    // The member gets what was queued: increasing, no duplicates, no gaps but the refused.
    let mut last = None;
    for _ in 0..70_000 - refused {
        let f = member.frame();
        let n = u32::from_be_bytes(f.payload[..4].try_into().unwrap());
        assert!(last.is_none_or(|l| n > l), "in order, once");
        last = Some(n);
    }
    staller.close_cleanly();
    member.close_cleanly();
    case.finish();
}
