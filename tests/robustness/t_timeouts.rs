//! T: timeouts and liveness. (T1 is H10; T4 is R4; T5 is C5.)

use std::{
    sync::{mpsc, Mutex},
    time::{Duration, Instant},
};

use ringsocket::{CloseReport, Message, WsOptions};

use crate::harness::*;

fn app(options: WsOptions, tx: mpsc::Sender<CloseReport>, talk: bool) -> ringsocket::App {
    let tx = Mutex::new(tx);
    base()
        .websocket(options)
        .ws("/t", move |mut ws, _req| {
            let tx = tx.lock().unwrap().clone();
            async move {
                if talk {
                    // A write-only stream: our own sends must not count as hearing the peer.
                    for i in 0..100_000u32 {
                        if ws
                            .send(Message::binary(i.to_be_bytes().to_vec()))
                            .await
                            .is_err()
                        {
                            break;
                        }
                        monoio::time::sleep(Duration::from_millis(5)).await;
                    }
                } else {
                    while let Some(Ok(m)) = ws.recv().await {
                        if m.is_close() {
                            break;
                        }
                    }
                }
                let _ = tx.send(ws.closed().await);
            }
        })
        .build()
        .unwrap()
}

/// T2: a quiet, healthy connection gets automatic pings and, answering them, stays open past
/// several intervals.
#[test]
fn t02_quiet_connection_is_pinged_and_kept_alive() {
    let (tx, _rx) = mpsc::channel();
    let interval = Duration::from_millis(100);
    let case = Case::new(app(
        WsOptions::new()
            .ping_interval(Some(interval))
            .pong_timeout(Duration::from_millis(200)),
        tx,
        false,
    ));
    let mut c = case.ws("/t");
    let started = Instant::now();
    let mut pings = 0;
    while pings < 5 {
        let f = c.frame();
        assert_eq!(f.opcode, 9, "only pings on a quiet connection");
        c.send(&frame(true, 10, &f.payload));
        pings += 1;
    }
    assert!(started.elapsed() >= interval * 4);
    c.close_cleanly();
    case.finish();
}

/// T3: a peer that vanished (never answers) is terminated within ping interval + pong timeout
/// (plus the sweep's granularity), without a close handshake.
#[test]
fn t03_silent_peer_is_terminated_after_ping_and_pong_timeout() {
    let (tx, rx) = mpsc::channel();
    let (interval, pong) = (Duration::from_millis(150), Duration::from_millis(150));
    let case = Case::new(app(
        WsOptions::new()
            .ping_interval(Some(interval))
            .pong_timeout(pong),
        tx,
        false,
    ));
    let started = Instant::now();
    let c = case.ws("/t");
    let report = rx.recv_timeout(ANSWER).unwrap();
    let took = started.elapsed();
    assert!(
        took >= interval + pong && took < interval + pong + Duration::from_secs(1),
        "{took:?}"
    );
    assert_eq!(report.received, None);
    assert!(!report.clean);
    drop(c);
    case.finish();
}

/// T6: an upgraded connection that never sends a message is closed 1000 at the idle timeout.
#[test]
fn t06_connection_that_never_sends_is_closed_at_the_idle_timeout() {
    let (tx, rx) = mpsc::channel();
    let idle = Duration::from_millis(300);
    let case = Case::new(app(WsOptions::new().idle_timeout(Some(idle)), tx, false));
    let started = Instant::now();
    let mut c = case.ws("/t");
    assert_eq!(c.expect_close(), Some(1000));
    assert!(started.elapsed() >= idle);
    c.send(&close_frame(1000, b""));
    c.expect_eof();
    assert_eq!(rx.recv_timeout(ANSWER).unwrap().sent_code, Some(1000));
    case.finish();
}

/// T7: a message whose fragments trickle in forever without FIN is not a message: the idle
/// timeout still closes the connection.
#[test]
fn t07_fragments_trickling_forever_hit_the_idle_timeout() {
    let (tx, rx) = mpsc::channel();
    let idle = Duration::from_millis(300);
    let case = Case::new(app(WsOptions::new().idle_timeout(Some(idle)), tx, false));
    let mut c = case.ws("/t");
    c.send(&frame(false, 1, b"a"));
    c.stream
        .set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let started = Instant::now();
    let code = loop {
        assert!(started.elapsed() < ANSWER, "never closed");
        let _ = c.try_send(&frame(false, 0, b"a"));
        match c.try_frame() {
            Ok(Some(f)) => break f.close_code(),
            Ok(None) => panic!("cut without a close frame"),
            Err(_) => {}
        }
    };
    assert_eq!(code, Some(1000));
    assert!(started.elapsed() >= idle - Duration::from_millis(50));
    c.stream.set_read_timeout(Some(ANSWER)).unwrap();
    let _ = c.try_send(&close_frame(1000, b""));
    c.expect_eof();
    assert_eq!(rx.recv_timeout(ANSWER).unwrap().sent_code, Some(1000));
    case.finish();
}

/// T8: our own sends do not reset liveness: a peer that reads but never answers pings is
/// terminated even while the server streams to it.
#[test]
fn t08_own_sends_do_not_count_as_hearing_the_peer() {
    let (tx, rx) = mpsc::channel();
    let (interval, pong) = (Duration::from_millis(150), Duration::from_millis(150));
    let case = Case::new(app(
        WsOptions::new()
            .ping_interval(Some(interval))
            .pong_timeout(pong),
        tx,
        true,
    ));
    let started = Instant::now();
    let mut c = case.ws("/t");
    let mut saw_ping = false;
    loop {
        match c.try_frame() {
            Ok(Some(f)) if f.opcode == 9 => saw_ping = true,
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => panic!("{e}"),
        }
    }
    let took = started.elapsed();
    drop(c);
    assert!(saw_ping);
    assert!(took < interval + pong + Duration::from_secs(1), "{took:?}");
    let report = rx.recv_timeout(ANSWER).unwrap();
    assert_eq!(report.received, None);
    assert_eq!(report.written + report.unsent, report.accepted);
    case.finish();
}
