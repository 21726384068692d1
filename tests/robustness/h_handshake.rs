//! H: the opening handshake (HTTP/1.1 upgrade path).

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use ringsocket::{Hook, Reply, Request, WsOptions};

use crate::harness::*;

/// A request with `head` as its request line and header lines (each ending in CRLF).
fn request(head: &str) -> Vec<u8> {
    format!("{head}\r\n").into_bytes()
}

const KEY_LINE: &str = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
const VERSION_LINE: &str = "Sec-WebSocket-Version: 13\r\n";

/// Upgrade headers with one line replaced or dropped: `(host, upgrade, connection, key,
/// version)` lines, each complete with CRLF or empty.
fn upgrade_with(host: &str, upgrade: &str, connection: &str, key: &str, version: &str) -> Vec<u8> {
    request(&format!(
        "GET / HTTP/1.1\r\n{host}{upgrade}{connection}{key}{version}"
    ))
}

fn std_upgrade(key: &str, version: &str) -> Vec<u8> {
    upgrade_with(
        "Host: localhost\r\n",
        "Upgrade: websocket\r\n",
        "Connection: Upgrade\r\n",
        key,
        version,
    )
}

/// A request whose `Upgrade` is not `websocket` is plain HTTP: answered like any GET (404, the
/// route is WebSocket-only), and the connection stays open for the next request.
fn assert_plain_http_404_kept_alive(request: &[u8]) {
    let case = Case::echo();
    let mut c = case.tcp();
    for _ in 0..2 {
        c.send(request);
        let head = c.read_head().expect("an answer");
        assert_eq!(status_of(&head), 404);
        assert_eq!(header_of(&head, "content-length").as_deref(), Some("0"));
    }
    drop(c);
    case.finish();
}

#[test]
fn h03_upgrade_not_websocket_is_plain_http_404() {
    assert_plain_http_404_kept_alive(&upgrade_with(
        "Host: a\r\n",
        "Upgrade: h2c\r\n",
        "Connection: Upgrade\r\n",
        KEY_LINE,
        VERSION_LINE,
    ));
}

#[test]
fn h03_upgrade_misspelled_is_plain_http_404() {
    assert_plain_http_404_kept_alive(&upgrade_with(
        "Host: a\r\n",
        "Upgrade: websockets\r\n",
        "Connection: Upgrade\r\n",
        KEY_LINE,
        VERSION_LINE,
    ));
}

macro_rules! status_cases {
    ($($name:ident: $request:expr => $status:expr;)*) => {$(
        #[test]
        fn $name() {
            let case = Case::echo();
            assert_eq!(case.status_for(&$request), $status);
            case.finish();
        }
    )*};
}

status_cases! {
    h01_post_upgrade_is_405: request(
        "POST / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n"
    ) => 405;
    h01_put_upgrade_is_405: request(
        "PUT / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 0\r\n"
    ) => 405;
    h02_http_1_0_upgrade_is_400: request(
        "GET / HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    ) => 400;
    h03_upgrade_missing_is_plain_http_404: upgrade_with(
        "Host: a\r\n", "", "Connection: Upgrade\r\nConnection: close\r\n", KEY_LINE, VERSION_LINE
    ) => 404;
    h04_connection_without_upgrade_token_is_400: upgrade_with(
        "Host: a\r\n", "Upgrade: websocket\r\n", "Connection: keep-alive\r\n", KEY_LINE, VERSION_LINE
    ) => 400;
    h04_connection_missing_is_400: upgrade_with(
        "Host: a\r\n", "Upgrade: websocket\r\n", "", KEY_LINE, VERSION_LINE
    ) => 400;
    h05_key_missing_is_400: std_upgrade("", VERSION_LINE) => 400;
    h05_key_not_base64_is_400: std_upgrade("Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==\r\n", VERSION_LINE) => 400;
    h05_key_of_15_bytes_is_400: std_upgrade("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAA\r\n", VERSION_LINE) => 400;
    h05_key_24_chars_not_16_bytes_is_400: std_upgrade("Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA\r\n", VERSION_LINE) => 400;
    h05_key_duplicated_is_400: std_upgrade(
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
        VERSION_LINE
    ) => 400;
    h07_host_missing_is_400: upgrade_with(
        "", "Upgrade: websocket\r\n", "Connection: Upgrade\r\n", KEY_LINE, VERSION_LINE
    ) => 400;
    h13_content_length_and_transfer_encoding_is_400: request(
        "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
    ) => 400;
    h13_obs_fold_is_400: request(
        "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n  , x\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    ) => 400;
    h13_bare_lf_is_400: b"GET / HTTP/1.1\nHost: a\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n".as_slice() => 400;
    h13_nul_in_header_is_400: request(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Nul: a\0b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    ) => 400;
    h13_repeated_host_is_400: request(
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    ) => 400;
    h13_very_long_request_target_is_431: request(&format!(
        "GET /{} HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        "a".repeat(9000)
    )) => 431;
    h13_garbage_request_line_is_400: b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".as_slice() => 400;
}

/// H6: every unsupported version is 426 and names the supported one.
fn assert_version_426(version_line: &str) {
    let case = Case::echo();
    let raw = case.exchange(&std_upgrade(KEY_LINE, version_line));
    assert_eq!(status_of(&raw), 426, "{version_line:?}");
    assert_eq!(
        header_of(&raw, "sec-websocket-version").as_deref(),
        Some("13")
    );
    case.finish();
}

#[test]
fn h06_version_missing_is_426() {
    assert_version_426("");
}

#[test]
fn h06_version_8_is_426() {
    assert_version_426("Sec-WebSocket-Version: 8\r\n");
}

#[test]
fn h06_version_12_is_426() {
    assert_version_426("Sec-WebSocket-Version: 12\r\n");
}

#[test]
fn h06_version_14_is_426() {
    assert_version_426("Sec-WebSocket-Version: 14\r\n");
}

#[test]
fn h06_version_list_13_8_is_426() {
    assert_version_426("Sec-WebSocket-Version: 13, 8\r\n");
}

#[test]
fn h06_version_not_a_number_is_426() {
    assert_version_426("Sec-WebSocket-Version: abc\r\n");
}

#[test]
fn h03_upgrade_token_is_case_insensitive() {
    let case = Case::echo();
    let mut c = Raw::tcp(case.addr);
    c.send(&upgrade_with(
        "Host: a\r\n",
        "Upgrade: WebSocket\r\n",
        "Connection: UPGRADE\r\n",
        KEY_LINE,
        VERSION_LINE,
    ));
    assert_eq!(status_of(&c.read_head().unwrap()), 101);
    c.echo("case");
    c.close_cleanly();
    case.finish();
}

#[test]
fn h04_connection_token_in_a_list_is_accepted() {
    let case = Case::echo();
    let mut c = Raw::tcp(case.addr);
    c.send(&upgrade_with(
        "Host: a\r\n",
        "Upgrade: websocket\r\n",
        "Connection: keep-alive, Upgrade\r\n",
        KEY_LINE,
        VERSION_LINE,
    ));
    assert_eq!(status_of(&c.read_head().unwrap()), 101);
    c.echo("list");
    c.close_cleanly();
    case.finish();
}

/// H8: one 1 MiB header is refused with 431 once the limit is crossed, without the server
/// reading (or buffering) the rest.
#[test]
fn h08_one_huge_header_is_431() {
    let case = Case::echo();
    let mut c = case.tcp();
    let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
    req.resize(1 << 20, b'a');
    // The server answers and stops reading long before 1 MiB: the write may fail.
    let _ = c.try_send(&req);
    let raw = c.read_to_eof();
    assert_eq!(status_of(&raw), 431);
    case.finish();
}

#[test]
fn h08_sixteen_kib_of_headers_is_431() {
    let case = Case::echo();
    let mut head = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..40 {
        head.push_str(&format!("X-{i}: {}\r\n", "v".repeat(400)));
    }
    assert_eq!(case.status_for(&request(&head)), 431);
    case.finish();
}

/// H9: more header fields than the limit, with `Upgrade` after the cut: 431, never an upgrade
/// run with half the headers.
#[test]
fn h09_too_many_headers_with_upgrade_after_the_cut_is_431() {
    let case = Case::with(base().build().unwrap(), |s| s.max_head_bytes(64 * 1024));
    let mut head = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..3000 {
        head.push_str(&format!("X-{i}: b\r\n"));
    }
    head.push_str("Upgrade: websocket\r\nConnection: Upgrade\r\n");
    head.push_str(KEY_LINE);
    head.push_str(VERSION_LINE);
    assert_eq!(case.status_for(&request(&head)), 431);
    case.finish();
}

#[test]
fn h09_sixty_five_headers_is_431() {
    let case = Case::echo();
    let mut head = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..64 {
        head.push_str(&format!("X-{i}: b\r\n"));
    }
    assert_eq!(case.status_for(&request(&head)), 431);
    case.finish();
}

/// H10 (and T1): a slowloris client trickling its head is answered 408 at the handshake
/// deadline, while real handshakes made meanwhile complete at once.
#[test]
fn h10_slowloris_is_closed_at_the_deadline_while_real_handshakes_stay_fast() {
    let deadline = Duration::from_millis(600);
    let case = Case::with(base().build().unwrap(), |s| s.handshake_timeout(deadline));
    let started = Instant::now();
    let mut slow: Vec<Raw> = (0..20).map(|_| case.tcp()).collect();
    for c in &mut slow {
        c.send(b"GET / HTTP/1.1\r\n");
    }
    let mut fastest = Duration::MAX;
    let mut slowest = Duration::ZERO;
    let mut trickled = 0;
    // Keep trickling one byte per connection while real clients connect, until every slow
    // connection has been answered.
    while started.elapsed() < deadline / 2 {
        for c in &mut slow {
            let _ = c.try_send(b"X");
            trickled += 1;
        }
        let t = Instant::now();
        let real = case.ws("/");
        let took = t.elapsed();
        fastest = fastest.min(took);
        slowest = slowest.max(took);
        real.close_cleanly();
    }
    assert!(trickled > 0);
    assert!(
        slowest < Duration::from_millis(200),
        "real handshakes stayed fast: {slowest:?}"
    );
    for c in slow {
        let raw = c.read_to_eof();
        assert_eq!(status_of(&raw), 408);
        let at = started.elapsed();
        assert!(
            at >= deadline && at < deadline + Duration::from_secs(2),
            "closed at the deadline ({at:?})"
        );
    }
    case.finish();
}

#[test]
fn h10_silent_connection_gets_408_at_the_deadline() {
    let deadline = Duration::from_millis(300);
    let case = Case::with(base().build().unwrap(), |s| s.handshake_timeout(deadline));
    let started = Instant::now();
    let raw = case.tcp().read_to_eof();
    assert_eq!(status_of(&raw), 408);
    assert!(started.elapsed() >= deadline);
    case.finish();
}

/// H11: a head delivered one byte per write costs linear time: 4 KiB of it is parsed (and
/// upgraded) quickly.
#[test]
fn h11_head_one_byte_per_write_is_linear() {
    let case = Case::echo();
    let mut c = case.tcp();
    let filler = format!("X-Pad: {}\r\n", "p".repeat(4000));
    let req = upgrade_request("/", &filler);
    let started = Instant::now();
    for b in &req {
        c.send(std::slice::from_ref(b));
    }
    assert_eq!(status_of(&c.read_head().unwrap()), 101);
    assert!(started.elapsed() < Duration::from_secs(3));
    c.echo("slow head");
    c.close_cleanly();
    case.finish();
}

#[test]
fn h11_pathological_protocol_list_is_rejected_fast() {
    let case = Case::echo();
    let value = " , ".repeat(2000);
    let started = Instant::now();
    let status = case.status_for(&upgrade_request(
        "/",
        &format!("Sec-WebSocket-Protocol: {value}\r\n"),
    ));
    assert_eq!(status, 400);
    assert!(started.elapsed() < Duration::from_secs(1));
    case.finish();
}

#[test]
fn h11_pathological_extension_list_is_declined() {
    let case = Case::echo();
    let mut c = case.tcp();
    c.send(&upgrade_request(
        "/",
        &format!("Sec-WebSocket-Extensions: {}\r\n", ";;;,,,".repeat(1000)),
    ));
    let head = c.read_head().unwrap();
    assert_eq!(status_of(&head), 101);
    assert_eq!(header_of(&head, "sec-websocket-extensions"), None);
    c.echo("declined");
    c.close_cleanly();
    case.finish();
}

/// H12: extension offers the server does not support are declined: 101 without an extension.
fn assert_extension_declined(offer: &str) {
    let case = Case::echo();
    let mut c = case.tcp();
    c.send(&upgrade_request(
        "/",
        &format!("Sec-WebSocket-Extensions: {offer}\r\n"),
    ));
    let head = c.read_head().unwrap();
    assert_eq!(status_of(&head), 101, "{offer}");
    assert_eq!(
        header_of(&head, "sec-websocket-extensions"),
        None,
        "{offer}"
    );
    // RSV1 stays forbidden: nothing was negotiated.
    c.send(&masked(0xC1, b"x"));
    assert_eq!(c.expect_close(), Some(1002));
    c.expect_eof();
    case.finish();
}

#[test]
fn h12_unknown_extension_is_declined() {
    assert_extension_declined("x-webkit-deflate-frame");
}

#[test]
fn h12_prototype_names_are_declined() {
    assert_extension_declined("__proto__; constructor=1, ,;constructor");
}

/// H14: frames sent in the same packet as the request are processed after the 101.
#[test]
fn h14_frames_in_the_request_packet_are_processed_after_the_101() {
    let case = Case::echo();
    let mut c = case.tcp();
    let mut bytes = upgrade_request("/", "");
    bytes.extend_from_slice(&frame(true, 1, b"early"));
    bytes.extend_from_slice(&frame(true, 2, b"bird"));
    c.send(&bytes);
    assert_eq!(status_of(&c.read_head().unwrap()), 101);
    let f = c.frame();
    assert_eq!((f.opcode, f.payload.as_slice()), (1, &b"early"[..]));
    let f = c.frame();
    assert_eq!((f.opcode, f.payload.as_slice()), (2, &b"bird"[..]));
    c.close_cleanly();
    case.finish();
}

fn guarded_app() -> ringsocket::App {
    base()
        .register("/auth", |scope| {
            scope
                .hook(Hook::on_request(|req: Request| async move {
                    (req.header("authorization") != Some("Bearer ok"))
                        .then(|| Reply::new().code(401))
                }))
                .ws("/", |_ws, _req| async move {})
        })
        .build()
        .unwrap()
}

/// H15: a hook that refuses the upgrade writes a complete 401, then closes; never 101.
#[test]
fn h15_hook_rejection_is_a_complete_401_then_close() {
    let case = Case::new(guarded_app());
    let raw = case.exchange(&upgrade_request("/auth/", ""));
    assert_eq!(status_of(&raw), 401);
    assert!(
        header_of(&raw, "content-length").is_some()
            || header_of(&raw, "transfer-encoding").is_some()
    );
    case.finish();
}

#[test]
fn h15_unknown_route_is_404_then_close() {
    let case = Case::echo();
    assert_eq!(case.status_for(&upgrade_request("/nowhere", "")), 404);
    case.finish();
}

/// H16: an origin the app does not allow gets 403 from `verify_client`.
#[test]
fn h16_origin_not_allowed_is_403() {
    let app = base()
        .websocket(
            WsOptions::new().verify_client(|req| match req.header("origin") {
                None | Some("https://good.example") => Ok(()),
                Some(_) => Err(Reply::new().code(403)),
            }),
        )
        .build()
        .unwrap();
    let case = Case::new(app);
    assert_eq!(
        case.status_for(&upgrade_request("/", "Origin: https://evil.example\r\n")),
        403
    );
    let good = Raw::upgrade(case.addr, "/", "Origin: https://good.example\r\n");
    good.close_cleanly();
    case.finish();
}

#[test]
fn h17_invalid_subprotocol_token_is_400() {
    let case = Case::echo();
    assert_eq!(
        case.status_for(&upgrade_request(
            "/",
            "Sec-WebSocket-Protocol: chat, {bad}\r\n"
        )),
        400
    );
    case.finish();
}

/// H17: a thousand offered subprotocols (with duplicates): one of the offered is selected.
#[test]
fn h17_a_thousand_subprotocols_select_one_offered() {
    let case = Case::echo();
    let list: Vec<String> = (0..1000).map(|i| format!("p{}", i % 500)).collect();
    let mut c = case.tcp();
    c.send(&upgrade_request(
        "/",
        &format!("Sec-WebSocket-Protocol: {}\r\n", list.join(", ")),
    ));
    let head = c.read_head().unwrap();
    assert_eq!(status_of(&head), 101);
    assert_eq!(
        header_of(&head, "sec-websocket-protocol").as_deref(),
        Some("p0")
    );
    c.close_cleanly();
    case.finish();
}

/// H19: an upgrade whose hooks are still running when shutdown begins gets 503.
#[test]
fn h19_upgrade_during_shutdown_is_503() {
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let release = Arc::new(AtomicBool::new(false));
    let hook_release = Arc::clone(&release);
    let started_tx = std::sync::Mutex::new(started_tx);
    let app = base()
        .register("/slow", move |scope| {
            let release = Arc::clone(&hook_release);
            let tx = started_tx.lock().unwrap().clone();
            scope
                .hook(Hook::on_request(move |_req: Request| {
                    let release = Arc::clone(&release);
                    let _ = tx.send(());
                    async move {
                        while !release.load(Ordering::Relaxed) {
                            monoio::time::sleep(Duration::from_millis(2)).await;
                        }
                    }
                }))
                .ws("/", |_ws, _req| async move {})
        })
        .build()
        .unwrap();
    let case = Case::new(app);
    let mut c = case.tcp();
    c.send(&upgrade_request("/slow/", ""));
    started_rx.recv_timeout(ANSWER).expect("hook running");
    case.server().shutdown();
    // The core has begun its shutdown once its listener is gone.
    assert!(wait_until(ANSWER, || std::net::TcpStream::connect(
        case.addr
    )
    .is_err()));
    release.store(true, Ordering::Relaxed);
    let raw = c.read_to_eof();
    assert_eq!(status_of(&raw), 503);
    case.shutdown_and_wait().assert_released();
}

/// H20: a flood of stalled handshakes past `max_handshakes` is answered 503 at once; the core's
/// memory stays bounded and real upgrades proceed once the flood ends.
#[test]
fn h20_handshake_flood_beyond_the_per_core_limit_is_503() {
    let case = Case::with(base().build().unwrap(), |s| s.max_handshakes(16));
    let mut stalled: Vec<Raw> = (0..16).map(|_| case.tcp()).collect();
    for c in &mut stalled {
        c.send(b"GET / HTTP/1.1\r\n");
    }
    // The 16 are in their HTTP phase: every further connection is refused.
    let mut refused = 0;
    for _ in 0..64 {
        let raw = case.tcp().read_to_eof();
        assert_eq!(status_of(&raw), 503);
        refused += 1;
    }
    assert_eq!(refused, 64);
    drop(stalled);
    // The slots free as the stalled ones go away.
    assert!(wait_until(ANSWER, || {
        let mut c = case.tcp();
        c.send(&upgrade_request("/", ""));
        c.read_head().is_some_and(|h| status_of(&h) == 101)
    }));
    case.finish();
}
