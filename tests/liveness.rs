//! Liveness: automatic pings, the dead-peer check (ping interval + pong timeout), the idle
//! timeout and the maximum lifetime. The intervals are short here (the defaults are 25 s and
//! 10 s); every test ends within a few seconds.

mod common;

use std::{
    io::Read,
    net::{SocketAddr, TcpStream},
    sync::mpsc,
    time::{Duration, Instant},
};

use common::{block_on_within, start};
use ringsocket::{
    client::Client, testing, App, BuildError, CloseFrame, CloseReport, Message, ServerHandle,
    WsOptions,
};

const LIMIT: Duration = Duration::from_secs(3);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Pings after 100 ms of silence, cuts 100 ms after an unanswered ping.
fn pinging() -> WsOptions {
    WsOptions::new()
        .ping_interval(Some(ms(100)))
        .pong_timeout(ms(100))
}

fn echo_app(options: WsOptions) -> App {
    App::builder()
        .websocket(options)
        .ws("/", |mut ws, _req| async move {
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_close() || ws.send(message).await.is_err() {
                    break;
                }
            }
        })
        .build()
        .unwrap()
}

/// A peer that completes the handshake, then neither reads nor writes (a half-open socket, as
/// far as the server can tell).
fn silent_client(addr: SocketAddr) -> TcpStream {
    common::raw_upgrade(addr, "/", LIMIT)
}

/// Waits until the server counts `n` clients; returns when that was seen.
fn wait_for_clients(server: &ServerHandle, n: usize) -> Instant {
    let deadline = Instant::now() + LIMIT;
    while server.clients().len() != n {
        assert!(Instant::now() < deadline, "never {n} clients");
        std::thread::sleep(ms(2));
    }
    Instant::now()
}

/// The opcodes of the unmasked, short frames a server wrote.
fn opcodes(mut bytes: &[u8]) -> Vec<u8> {
    let mut ops = Vec::new();
    while bytes.len() >= 2 {
        let len = usize::from(bytes[1] & 0x7f);
        assert!(len < 126, "short frames only");
        ops.push(bytes[0] & 0x0f);
        bytes = &bytes[2 + len..];
    }
    ops
}

/// A silent peer is cut once the ping it does not answer has waited the pong timeout: its
/// socket ends (EOF) after exactly one ping and no close frame, and the client count drops.
#[test]
fn silent_peer_is_cut_after_ping_interval_plus_pong_timeout() {
    let server = start(echo_app(pinging()));
    let mut stream = silent_client(server.local_addr());
    let open = wait_for_clients(&server, 1);
    let gone = wait_for_clients(&server, 0);
    let silent = gone - open;
    assert!(silent >= ms(180), "cut too early: {silent:?}");
    assert!(silent < ms(700), "cut too late: {silent:?}");

    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("EOF from the server");
    assert_eq!(
        rest,
        [0x89, 0x00],
        "one empty ping, then EOF, no close frame"
    );
    server.shutdown();
    server.wait();
}

/// Our own sends do not keep a silent peer alive: a handler sending every 20 ms does not
/// delay the cut, and the report shows no close either way.
#[test]
fn own_sends_do_not_keep_a_silent_peer_alive() {
    let (tx, rx) = mpsc::channel::<CloseReport>();
    let app = App::builder()
        .websocket(pinging())
        .ws("/", move |ws, _req| {
            let tx = tx.clone();
            async move {
                while ws.send(Message::text("tick")).await.is_ok() {
                    monoio::time::sleep(ms(20)).await;
                }
                tx.send(ws.closed().await).unwrap();
            }
        })
        .build()
        .unwrap();
    let server = start(app);
    let mut stream = silent_client(server.local_addr());
    let open = wait_for_clients(&server, 1);
    let gone = wait_for_clients(&server, 0);
    let silent = gone - open;
    assert!(silent >= ms(180), "cut too early: {silent:?}");
    assert!(silent < ms(700), "cut too late: {silent:?}");

    let report = rx.recv_timeout(LIMIT).unwrap();
    assert_eq!(report.sent_code, None);
    assert_eq!(report.received, None);
    assert!(!report.clean);
    assert!(report.accepted >= 5, "the handler kept sending: {report:?}");
    assert_eq!(report.written + report.unsent, report.accepted);

    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).expect("EOF from the server");
    let ops = opcodes(&rest);
    assert_eq!(ops.iter().filter(|&&op| op == 0x9).count(), 1, "{ops:?}");
    assert!(!ops.contains(&0x8), "no close frame: {ops:?}");
    server.shutdown();
    server.wait();
}

/// A client that answers pings (as `Client::recv` does) stays connected, pinged every
/// interval.
#[test]
fn answering_peer_stays_connected_and_is_pinged() {
    let server = start(echo_app(pinging()));
    let addr = server.local_addr();
    let clients = server.clients();
    block_on_within(LIMIT, async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        let start = Instant::now();
        let mut pings = 0;
        while start.elapsed() < Duration::from_secs(1) {
            match client.recv().await {
                Some(Ok(Message::Ping(payload))) => {
                    assert!(payload.is_empty());
                    pings += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(pings >= 4, "pinged every ~100 ms: {pings}");
        client.send(Message::text("still here")).await.unwrap();
        loop {
            match client.recv().await {
                Some(Ok(Message::Ping(_))) => {}
                Some(Ok(message)) => break assert_eq!(message, Message::text("still here")),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(clients.len(), 1);
    });
    server.shutdown();
    server.wait();
}

/// The next message that is not a ping (pings are answered by `recv`).
async fn recv_skipping_pings<S>(client: &mut Client<S>) -> Message
where
    S: monoio::io::AsyncReadRent + monoio::io::AsyncWriteRent,
{
    loop {
        match client.recv().await {
            Some(Ok(Message::Ping(_))) => {}
            Some(Ok(message)) => return message,
            other => panic!("unexpected {other:?}"),
        }
    }
}

fn close_frame(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// Answering pings keeps a peer alive but not busy: without a message it is closed with 1000
/// "idle timeout"; a peer sending messages stays open well past the timeout.
#[test]
fn idle_timeout_counts_messages_not_pongs() {
    let server = start(echo_app(pinging().idle_timeout(Some(ms(200)))));
    let addr = server.local_addr();
    block_on_within(LIMIT, async move {
        let mut idle = Client::connect(addr, "/").await.unwrap();
        let start = Instant::now();
        let close = recv_skipping_pings(&mut idle).await;
        let after = start.elapsed();
        assert_eq!(close, close_frame(1000, "idle timeout"));
        assert!(
            after >= ms(180) && after < ms(700),
            "closed after {after:?}"
        );
        idle.close(1000, "").await.unwrap();
        assert!(idle.recv().await.is_none());

        let mut busy = Client::connect(addr, "/").await.unwrap();
        let start = Instant::now();
        while start.elapsed() < ms(600) {
            busy.send(Message::text("busy")).await.unwrap();
            assert_eq!(recv_skipping_pings(&mut busy).await, Message::text("busy"));
            monoio::time::sleep(ms(50)).await;
        }
    });
    server.shutdown();
    server.wait();
}

/// A connection is closed with 1000 "max lifetime reached" at its age limit, however busy.
#[test]
fn max_lifetime_closes_a_busy_connection() {
    let server = start(echo_app(WsOptions::new().max_lifetime(Some(ms(300)))));
    let addr = server.local_addr();
    block_on_within(LIMIT, async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        let start = Instant::now();
        let close = loop {
            client.send(Message::text("chat")).await.unwrap();
            match recv_skipping_pings(&mut client).await {
                Message::Text(_) => monoio::time::sleep(ms(20)).await,
                other => break other,
            }
        };
        let after = start.elapsed();
        assert_eq!(close, close_frame(1000, "max lifetime reached"));
        assert!(
            after >= ms(280) && after < ms(900),
            "closed after {after:?}"
        );
        client.close(1000, "").await.unwrap();
        assert!(client.recv().await.is_none());
    });
    server.shutdown();
    server.wait();
}

/// Without a ping interval nothing is pinged and a silent peer is not cut.
#[test]
fn no_ping_interval_means_no_pings_and_no_cut() {
    let app = App::builder()
        .websocket(WsOptions::new().ping_interval(None).pong_timeout(ms(20)))
        .ws("/", |ws, _req| async move {
            monoio::time::sleep(ms(500)).await;
            ws.send(Message::text("done")).await.unwrap();
            ws.closed().await;
        })
        .build()
        .unwrap();
    let server = start(app);
    let mut stream = silent_client(server.local_addr());
    wait_for_clients(&server, 1);
    let mut first = [0u8; 6];
    stream.read_exact(&mut first).unwrap();
    assert_eq!(
        &first, b"\x81\x04done",
        "the first frame is the message, not a ping"
    );
    assert_eq!(server.clients().len(), 1);
    drop(stream);
    server.shutdown();
    server.wait();
}

/// Injected connections are swept too. The sweep ends when its core has no connection left
/// and starts again with the next one.
#[test]
fn injected_connections_are_pinged() {
    let app = echo_app(pinging());
    testing::run(async move {
        for round in 0..2 {
            let mut client = app.inject_ws("/").connect().await.unwrap();
            let first = monoio::time::timeout(LIMIT, client.recv()).await;
            assert!(
                matches!(first, Ok(Some(Ok(Message::Ping(_))))),
                "round {round}: {first:?}"
            );
            client.close(1000, "").await.unwrap();
            assert_eq!(
                recv_skipping_pings(&mut client).await,
                close_frame(1000, "")
            );
            assert!(client.recv().await.is_none());
            // Long enough for the sweep to find the core empty and stop.
            monoio::time::sleep(ms(100)).await;
        }
    });
}

#[test]
fn zero_durations_are_refused_when_the_app_is_built() {
    let cases = [
        (
            "ping_interval",
            WsOptions::new().ping_interval(Some(Duration::ZERO)),
        ),
        (
            "pong_timeout",
            WsOptions::new().pong_timeout(Duration::ZERO),
        ),
        (
            "idle_timeout",
            WsOptions::new().idle_timeout(Some(Duration::ZERO)),
        ),
        (
            "max_lifetime",
            WsOptions::new().max_lifetime(Some(Duration::ZERO)),
        ),
    ];
    for (option, options) in cases {
        let built = App::builder()
            .websocket(options)
            .ws("/", |_ws, _req| async {})
            .build();
        match built {
            Err(BuildError::InvalidOption { name, .. }) => assert_eq!(name, option),
            other => panic!("{option}: {other:?}"),
        }
    }
}
