//! P: process, runtime and transport faults: panics in every kind of hook and handler, resets,
//! half-close.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    time::Duration,
};

use ringsocket::{App, CloseReport, Hook, Message, Request, WsOptions};

use crate::harness::*;

/// Panics with `message` (a unit-typed panic for hooks and handlers).
fn boom(message: &str) {
    panic!("{message}");
}

/// An app whose `/p/` upgrade route has `hook` on it.
fn with_hook(hook: Hook) -> App {
    let hook = Mutex::new(Some(hook));
    base()
        .register("/p", move |scope| {
            scope
                .hook(hook.lock().unwrap().take().expect("registered once"))
                .ws("/", |_ws, _req| async move {})
                .get("/plain", |_req| async move { "plain" })
        })
        .build()
        .unwrap()
}

/// A panicking upgrade hook answers 500, closes, and the core keeps serving.
fn assert_hook_panic_is_500(hook: Hook) {
    let case = Case::new(with_hook(hook));
    for _ in 0..3 {
        assert_eq!(case.status_for(&upgrade_request("/p/", "")), 500);
    }
    case.ws("/").close_cleanly();
    case.finish();
}

#[test]
fn p02_panic_in_on_request_is_500() {
    assert_hook_panic_is_500(Hook::on_request(|_req: Request| async move {
        boom("onRequest bug")
    }));
}

#[test]
fn p02_panic_in_pre_parsing_is_500() {
    assert_hook_panic_is_500(Hook::pre_parsing(|_req: Request| async move {
        boom("preParsing bug")
    }));
}

#[test]
fn p02_panic_in_pre_validation_is_500() {
    assert_hook_panic_is_500(Hook::pre_validation(|_req: Request| async move {
        boom("preValidation bug")
    }));
}

#[test]
fn p02_panic_in_pre_handler_is_500() {
    assert_hook_panic_is_500(Hook::pre_handler(|_req: Request| async move {
        boom("preHandler bug")
    }));
}

#[test]
fn p02_panic_in_a_hook_before_its_future_is_500() {
    assert_hook_panic_is_500(Hook::on_request(
        |_req: Request| -> std::future::Ready<()> { panic!("synchronous onRequest bug") },
    ));
}

#[test]
fn p02_panic_in_a_plain_handler_is_500() {
    let app = base()
        .get("/boom", |_req| async move {
            if true {
                panic!("handler bug");
            }
            "unreachable"
        })
        .build()
        .unwrap();
    let case = Case::new(app);
    for _ in 0..3 {
        let raw = case.exchange(b"GET /boom HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(status_of(&raw), 500);
    }
    case.finish();
}

#[test]
fn p02_panic_in_verify_client_is_500() {
    let app = base()
        .websocket(WsOptions::new().verify_client(|req| {
            if req.path() == "/v" {
                panic!("verify_client bug");
            }
            Ok(())
        }))
        .ws("/v", |_ws, _req| async move {})
        .build()
        .unwrap();
    let case = Case::new(app);
    assert_eq!(case.status_for(&upgrade_request("/v", "")), 500);
    case.finish();
}

#[test]
fn p02_panic_in_handle_protocols_is_500() {
    let app = base()
        .websocket(WsOptions::new().handle_protocols(|offered, _req| {
            if offered.iter().any(|p| p == "boom") {
                panic!("handle_protocols bug");
            }
            offered.first().cloned()
        }))
        .build()
        .unwrap();
    let case = Case::new(app);
    assert_eq!(
        case.status_for(&upgrade_request("/", "Sec-WebSocket-Protocol: boom\r\n")),
        500
    );
    case.finish();
}

/// P1: a panicking message handler closes only its connection, with 1011.
#[test]
fn p01_panic_in_a_message_handler_is_1011() {
    let app = base()
        .ws("/panic", |mut ws, _req| async move {
            while let Some(Ok(m)) = ws.recv().await {
                if m == Message::text("boom") {
                    panic!("handler bug");
                }
                let _ = ws.send(m).await;
            }
        })
        .build()
        .unwrap();
    let case = Case::new(app);
    for _ in 0..5 {
        let mut c = case.ws("/panic");
        c.echo("fine");
        c.send(&frame(true, 1, b"boom"));
        assert_eq!(c.expect_close(), Some(1011));
        c.send(&close_frame(1011, b""));
        c.expect_eof();
    }
    case.finish();
}

/// P1: a panic right at the upgrade, before the handler's first await.
#[test]
fn p01_panic_at_the_start_of_a_handler_is_1011() {
    let app = base()
        .ws(
            "/panic",
            |_ws, _req| async move { boom("handler bug at start") },
        )
        .build()
        .unwrap();
    let case = Case::new(app);
    let mut c = case.ws("/panic");
    assert_eq!(c.expect_close(), Some(1011));
    c.send(&close_frame(1011, b""));
    c.expect_eof();
    case.finish();
}

struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("Drop bug");
        }
    }
}

/// P3: a panic in the `Drop` of the handler's state, as the handler ends.
#[test]
fn p03_panic_in_drop_of_handler_state_is_1011() {
    let app = base()
        .ws("/drop", |mut ws, _req| async move {
            let _state = PanicOnDrop;
            let _ = ws.recv().await;
        })
        .build()
        .unwrap();
    let case = Case::new(app);
    let mut c = case.ws("/drop");
    c.send(&frame(true, 1, b"end"));
    assert_eq!(c.expect_close(), Some(1011));
    c.send(&close_frame(1011, b""));
    c.expect_eof();
    case.finish();
}

/// P3: a panic in the error handler (after the upgrade) still releases the connection.
#[test]
fn p03_panic_in_the_error_handler_releases_the_connection() {
    let app = base()
        .websocket(
            WsOptions::new()
                .error_handler(|_err, _ws, _req| async move { boom("error handler bug") }),
        )
        .ws("/err", |mut ws, _req| async move {
            let _ = ws.recv().await;
            Err::<(), _>("handler failed")
        })
        .build()
        .unwrap();
    let case = Case::new(app);
    let mut c = case.ws("/err");
    c.send(&frame(true, 1, b"x"));
    // The handler's error went to the error handler, which panicked: the connection gets the
    // 1011 a panic earns.
    assert_eq!(c.expect_close(), Some(1011));
    c.send(&close_frame(1011, b""));
    c.expect_eof();
    case.finish();
}

/// P4: a callback that panics for one connection of `Clients::for_each` does not stop the
/// others from being visited, and the core keeps serving.
#[test]
fn p04_panic_in_for_each_for_one_client_spares_the_others() {
    let app = base()
        .ws("/who", |mut ws, _req| async move {
            let id = ws.id();
            let _ = ws.send(Message::text(format!("{id:?}"))).await;
            while let Some(Ok(m)) = ws.recv().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .build()
        .unwrap();
    let case = Case::new(app);
    let mut conns: Vec<Raw> = (0..3).map(|_| case.ws("/who")).collect();
    let ids: Vec<String> = conns
        .iter_mut()
        .map(|c| String::from_utf8(c.frame().payload).unwrap())
        .collect();
    let victim = ids[1].clone();
    let visited = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&visited);
    block_on(case.server().clients().for_each(move |client| {
        if format!("{:?}", client.id()) == victim {
            panic!("for_each callback bug");
        }
        counter.fetch_add(1, Ordering::Relaxed);
    }));
    // The control connection and the two other clients were visited.
    assert_eq!(visited.load(Ordering::Relaxed), 3);
    for c in conns {
        c.close_cleanly();
    }
    case.finish();
}

/// P5: a protocol error is handled on every route shape: plain, with a subprotocol, behind
/// hooks, behind an async hook.
fn assert_protocol_error_on(path: &str, extra: &str) {
    let app = base()
        .register("/hooked", |scope| {
            scope
                .hook(Hook::on_request(|_req: Request| async move {
                    monoio::time::sleep(Duration::from_millis(1)).await;
                }))
                .hook(Hook::pre_handler(|_req: Request| async move {}))
                .ws("/", |mut ws, _req| async move {
                    while ws.recv().await.is_some() {}
                })
        })
        .build()
        .unwrap();
    let case = Case::new(app);
    let mut c = Raw::upgrade(case.addr, path, extra);
    c.send(&masked(0xA2, b"\x00"));
    assert_eq!(c.expect_close(), Some(1002));
    c.expect_eof();
    case.finish();
}

#[test]
fn p05_protocol_error_on_a_plain_route_is_1002() {
    assert_protocol_error_on("/", "");
}

#[test]
fn p05_protocol_error_with_a_subprotocol_is_1002() {
    assert_protocol_error_on("/", "Sec-WebSocket-Protocol: chat\r\n");
}

#[test]
fn p05_protocol_error_behind_async_hooks_is_1002() {
    assert_protocol_error_on("/hooked/", "");
}

fn reporting_app(tx: mpsc::Sender<CloseReport>) -> App {
    let tx = Mutex::new(tx);
    base()
        .websocket(WsOptions::new().max_backpressure(64 << 20))
        .ws("/r", move |mut ws, _req| {
            let tx = tx.lock().unwrap().clone();
            async move {
                while let Some(Ok(m)) = ws.recv().await {
                    if m == Message::text("flood") {
                        let big = Message::binary(vec![9u8; 256 * 1024]);
                        for _ in 0..64 {
                            if ws.send(big.clone()).await.is_err() {
                                break;
                            }
                        }
                    } else if m.is_close() || ws.send(m).await.is_err() {
                        break;
                    }
                }
                let _ = tx.send(ws.closed().await);
            }
        })
        .build()
        .unwrap()
}

/// P6: a reset in the middle of a frame: closed once as 1006, the partial message freed.
#[test]
fn p06_reset_mid_frame_ends_the_connection_once() {
    let (tx, rx) = mpsc::channel();
    let case = Case::new(reporting_app(tx));
    let mut c = case.ws("/r");
    c.echo("before");
    let whole = frame(true, 2, &[3u8; 100_000]);
    c.send(&whole[..50_000]);
    c.reset();
    let report = rx.recv_timeout(ANSWER).unwrap();
    assert_eq!(report.received, None);
    assert!(!report.clean);
    assert_eq!(report.accepted, 1);
    assert!(
        rx.recv_timeout(Duration::from_millis(50)).is_err(),
        "reported once"
    );
    case.finish();
}

/// P6: a reset in the middle of the handshake.
#[test]
fn p06_reset_mid_handshake_leaks_nothing() {
    let case = Case::echo();
    for cut in [1usize, 20, 60, 120] {
        let mut c = case.tcp();
        c.send(&upgrade_request("/", "")[..cut]);
        c.reset();
    }
    case.finish();
}

/// P6: a reset while the server is writing 16 MiB: the report counts every accepted message as
/// written or unsent.
#[test]
fn p06_reset_mid_send_counts_the_unsent() {
    let (tx, rx) = mpsc::channel();
    let case = Case::new(reporting_app(tx));
    let mut c = case.ws("/r");
    c.send(&frame(true, 1, b"flood"));
    // Read a little of the first message, then reset.
    let mut some = [0u8; 1024];
    std::io::Read::read_exact(&mut c.stream, &mut some).unwrap();
    c.reset();
    let report = rx.recv_timeout(ANSWER).unwrap();
    assert_eq!(report.written + report.unsent, report.accepted);
    assert!(report.unsent > 0, "{report:?}");
    assert_eq!(report.received, None);
    case.finish();
}

/// P7: a TCP FIN without a close frame ends the connection as 1006.
#[test]
fn p07_half_close_without_close_frame_is_1006() {
    let (tx, rx) = mpsc::channel();
    let case = Case::new(reporting_app(tx));
    let mut c = case.ws("/r");
    c.echo("before fin");
    c.fin();
    c.expect_eof();
    let report = rx.recv_timeout(ANSWER).unwrap();
    assert_eq!(report.received, None);
    assert!(!report.clean);
    assert_eq!((report.accepted, report.written), (1, 1));
    case.finish();
}

/// P11: the release profile unwinds (an abort would make every panic fatal to the process).
#[test]
fn p11_release_profile_unwinds() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let release = manifest
        .split("[profile.release]")
        .nth(1)
        .expect("a release profile");
    let section = release.split("\n[").next().unwrap();
    let settings: Vec<&str> = manifest
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    assert!(section.contains("\npanic = \"unwind\""), "{section}");
    assert!(!settings.contains(&"panic = \"abort\""));
}

/// An app with `/stall` (blocks its core for 800 ms on "stall", flagging it meanwhile) and
/// `/sub` (subscribes to "t" and says which core it is on).
pub(crate) fn stalling_app(stalled: Arc<std::sync::atomic::AtomicBool>) -> App {
    base()
        .ws("/stall", move |mut ws, _req| {
            let stalled = Arc::clone(&stalled);
            async move {
                let _ = ws.send(Message::text(ws.id().to_string())).await;
                while let Some(Ok(m)) = ws.recv().await {
                    if m.as_text() == Some("stall") {
                        // The fault: a handler that blocks its core (no await).
                        stalled.store(true, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(800));
                        stalled.store(false, Ordering::SeqCst);
                        let _ = ws.send(Message::text("unstalled")).await;
                    } else if m.is_close() {
                        break;
                    }
                }
            }
        })
        .ws("/sub", |mut ws, _req| async move {
            ws.subscribe("t");
            let _ = ws.send(Message::text(ws.id().to_string())).await;
            while let Some(Ok(m)) = ws.recv().await {
                if m.is_close() {
                    break;
                }
                let _ = ws.send(m).await;
            }
        })
        .build()
        .unwrap()
}

/// The core named in an id's text (`core:serial`).
pub(crate) fn core_of(id: &[u8]) -> String {
    let id = String::from_utf8_lossy(id);
    id.split(':').next().unwrap_or_default().to_owned()
}

/// P8: a handler blocking its core does not stall the other core: a connection there keeps
/// round-tripping while the first core is blocked.
#[test]
fn p08_a_blocked_core_does_not_stall_the_others() {
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let case = Case::on(stalling_app(Arc::clone(&stalled)), 2, |s| s);
    let mut staller = case.ws("/stall");
    let blocked = core_of(&staller.frame().payload);
    let mut other = (0..64)
        .map(|_| {
            let mut c = case.ws("/sub");
            let core = core_of(&c.frame().payload);
            (c, core)
        })
        .find(|(_, core)| *core != blocked)
        .map(|(c, _)| c)
        .expect("a connection on the other core");
    staller.send(&frame(true, 1, b"stall"));
    assert!(wait_until(ANSWER, || stalled.load(Ordering::SeqCst)));
    let mut during = 0;
    while stalled.load(Ordering::SeqCst) {
        let t = std::time::Instant::now();
        other.echo(&format!("during {during}"));
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
        during += 1;
    }
    assert!(
        during >= 5,
        "round trips while the other core was blocked: {during}"
    );
    assert_eq!(staller.frame().payload, b"unstalled");
    staller.close_cleanly();
    other.close_cleanly();
    case.finish();
}
