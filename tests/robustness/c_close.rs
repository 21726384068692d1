//! C: close handling (RFC 6455 §5.5.1, §7).

use std::{
    sync::{mpsc, Mutex},
    time::{Duration, Instant},
};

use ringsocket::{CloseReport, WsOptions};

use crate::harness::*;

#[test]
fn c01_close_with_one_byte_payload_is_1002() {
    let case = Case::echo();
    assert_eq!(case.close_code_for(&frame(true, 8, &[0x03])), Some(1002));
    case.finish();
}

macro_rules! invalid_codes {
    ($($name:ident: $code:expr;)*) => {$(
        #[test]
        fn $name() {
            let case = Case::echo();
            assert_eq!(case.close_code_for(&close_frame($code, b"")), Some(1002), "code {}", $code);
            case.finish();
        }
    )*};
}

invalid_codes! {
    c02_code_0_is_1002: 0;
    c02_code_999_is_1002: 999;
    c02_code_1004_is_1002: 1004;
    c02_code_1005_is_1002: 1005;
    c02_code_1006_is_1002: 1006;
    c02_code_1015_is_1002: 1015;
    c02_code_1016_is_1002: 1016;
    c02_code_2999_is_1002: 2999;
    c02_code_5000_is_1002: 5000;
    c02_code_65535_is_1002: 65535;
}

macro_rules! echoed_codes {
    ($($name:ident: $code:expr;)*) => {$(
        #[test]
        fn $name() {
            let case = Case::echo();
            let mut c = case.ws("/");
            c.send(&close_frame($code, b"bye"));
            assert_eq!(c.expect_close(), Some($code));
            c.expect_eof();
            case.finish();
        }
    )*};
}

echoed_codes! {
    c03_code_1000_is_echoed: 1000;
    c03_code_1001_is_echoed: 1001;
    c03_code_1002_is_echoed: 1002;
    c03_code_1003_is_echoed: 1003;
    c03_code_1007_is_echoed: 1007;
    c03_code_1008_is_echoed: 1008;
    c03_code_1009_is_echoed: 1009;
    c03_code_1010_is_echoed: 1010;
    c03_code_1011_is_echoed: 1011;
    c03_code_1012_is_echoed: 1012;
    c03_code_1013_is_echoed: 1013;
    c03_code_1014_is_echoed: 1014;
    c03_code_3000_is_echoed: 3000;
    c03_code_4999_is_echoed: 4999;
}

/// The app for close cases: `/report` sends its close report once the connection ends.
fn reporting(
    options: WsOptions,
    tx: mpsc::Sender<CloseReport>,
    on_open: fn(&ringsocket::WebSocket),
) -> ringsocket::App {
    let tx = Mutex::new(tx);
    base()
        .websocket(options)
        .ws("/report", move |mut ws, _req| {
            let tx = tx.lock().unwrap().clone();
            async move {
                on_open(&ws);
                while let Some(Ok(m)) = ws.recv().await {
                    if m.is_close() || ws.send(m).await.is_err() {
                        break;
                    }
                }
                let _ = tx.send(ws.closed().await);
            }
        })
        .build()
        .unwrap()
}

/// C4: an empty close is answered with an empty close; the app sees no code (1005).
#[test]
fn c04_empty_close_is_answered_and_the_app_sees_1005() {
    let (tx, rx) = mpsc::channel();
    let case = Case::new(reporting(WsOptions::new(), tx, |_| {}));
    let mut c = case.ws("/report");
    c.send(&frame(true, 8, b""));
    let f = c.frame();
    assert_eq!((f.opcode, f.payload.len()), (8, 0));
    c.expect_eof();
    let report = rx.recv_timeout(ANSWER).unwrap();
    assert_eq!(report.received, Some(None));
    assert!(report.clean);
    case.finish();
}

/// C5: the server closes and the client never answers: TCP is cut at the close timeout.
#[test]
fn c05_unanswered_server_close_is_cut_at_the_close_timeout() {
    let (tx, rx) = mpsc::channel();
    let timeout = Duration::from_millis(300);
    let case = Case::new(reporting(
        WsOptions::new().close_timeout(timeout),
        tx,
        |ws| {
            let _ = ws.close(4001, "go");
        },
    ));
    let started = Instant::now();
    let mut c = case.ws("/report");
    assert_eq!(c.expect_close(), Some(4001));
    c.expect_eof();
    let took = started.elapsed();
    assert!(
        took >= timeout && took < timeout + Duration::from_secs(2),
        "{took:?}"
    );
    let report = rx.recv_timeout(ANSWER).unwrap();
    assert_eq!(report.sent_code, Some(4001));
    assert_eq!(report.received, None);
    assert!(!report.clean);
    case.finish();
}

/// C6: close, then more data: one close reply, nothing else, TCP ends.
#[test]
fn c06_data_streamed_after_close_gets_one_close_reply() {
    let case = Case::echo();
    let mut c = case.ws("/");
    c.send(&close_frame(1000, b""));
    for _ in 0..100 {
        if c.try_send(&frame(true, 1, b"still talking")).is_err() {
            break;
        }
    }
    assert_eq!(c.expect_close(), Some(1000));
    c.expect_eof();
    case.finish();
}

/// C7: a close arrives while the server is writing a 256 KiB message: exactly one close frame
/// follows whatever of the message went out.
#[test]
fn c07_close_during_a_large_send_gets_exactly_one_close() {
    let case = Case::echo();
    let mut c = case.ws("/");
    let mut bytes = frame(true, 2, &vec![1u8; 256 * 1024]);
    bytes.extend_from_slice(&close_frame(1000, b""));
    c.send(&bytes);
    let f = c.frame();
    assert_eq!((f.opcode, f.payload.len()), (2, 256 * 1024));
    assert_eq!(c.expect_close(), Some(1000));
    c.expect_eof();
    case.finish();
}

/// C8: the close API refuses what may not go on the wire.
#[test]
fn c08_close_api_refuses_bad_codes_and_long_reasons() {
    let (tx, rx) = mpsc::channel::<Vec<String>>();
    let tx = Mutex::new(tx);
    let app = base()
        .ws("/api", move |ws, _req| {
            let tx = tx.lock().unwrap().clone();
            async move {
                let long = "r".repeat(124);
                let results = [
                    ws.close(1000, &long),
                    ws.close(1005, ""),
                    ws.close(1006, ""),
                    ws.close(1015, ""),
                    ws.close(999, ""),
                ];
                let errors = results
                    .iter()
                    .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
                    .collect();
                let _ = tx.send(errors);
                let _ = ws.close(1000, &"r".repeat(123));
            }
        })
        .build()
        .unwrap();
    let case = Case::new(app);
    let mut c = case.ws("/api");
    let errors = rx.recv_timeout(ANSWER).unwrap();
    assert_eq!(errors.len(), 5, "{errors:?}");
    let f = c.frame();
    assert_eq!(f.close_code(), Some(1000));
    assert_eq!(&f.payload[2..], "r".repeat(123).as_bytes());
    c.send(&close_frame(1000, b""));
    c.expect_eof();
    case.finish();
}

/// C9: the reason on the wire is exactly the bytes given.
#[test]
fn c09_close_reason_is_exactly_the_given_bytes() {
    let app = base()
        .ws("/reason", |ws, _req| async move {
            let owned = String::from("owned reason ü");
            let _ = ws.close(4000, &owned[..9]);
        })
        .build()
        .unwrap();
    let case = Case::new(app);
    let mut c = case.ws("/reason");
    let f = c.frame();
    assert_eq!(f.payload, b"\x0f\xa0owned rea");
    c.send(&close_frame(4000, b""));
    c.expect_eof();
    case.finish();
}

/// C10: both sides close at the same moment: one report, clean.
#[test]
fn c10_simultaneous_close_reports_once() {
    let (tx, rx) = mpsc::channel();
    let case = Case::new(reporting(WsOptions::new(), tx, |ws| {
        let _ = ws.close(1000, "");
    }));
    let mut c = case.ws("/report");
    c.send(&close_frame(1000, b""));
    assert_eq!(c.expect_close(), Some(1000));
    c.expect_eof();
    let report = rx.recv_timeout(ANSWER).unwrap();
    assert_eq!(report.sent_code, Some(1000));
    assert_eq!(
        report.received.as_ref().map(|r| r.as_ref().map(|f| f.code)),
        Some(Some(1000))
    );
    assert!(
        rx.recv_timeout(Duration::from_millis(100)).is_err(),
        "reported once"
    );
    case.finish();
}
