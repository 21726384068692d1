//! Graceful shutdown: every client gets 1001 after the messages already queued for it, the
//! listeners stop accepting, and the workers stop once the close handshakes are done.

mod common;

use std::time::{Duration, Instant};

use common::{block_on, echo_app, start};
use ringsocket::{client::Client, CloseFrame, Message, Server};

#[test]
fn clients_receive_1001_and_workers_stop() {
    let server = start(echo_app());
    let addr = server.local_addr();
    let trigger = server.shutdown_trigger();
    let started = Instant::now();
    block_on(async move {
        let mut clients = Vec::new();
        for _ in 0..8 {
            clients.push(Client::connect(addr, "/").await.unwrap());
        }
        for (i, client) in clients.iter_mut().enumerate() {
            client.send(Message::text(format!("m{i}"))).await.unwrap();
            assert_eq!(
                client.recv().await.unwrap().unwrap(),
                Message::text(format!("m{i}"))
            );
        }
        trigger.shutdown();
        for client in &mut clients {
            let close = client.recv().await.unwrap().unwrap();
            assert_eq!(
                close,
                Message::Close(Some(CloseFrame {
                    code: 1001,
                    reason: "server shutting down".into()
                }))
            );
            client.close(1001, "").await.unwrap();
            assert!(
                client.recv().await.is_none(),
                "server closes TCP after the handshake"
            );
        }
    });
    server.wait();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained well before the 10 s deadline"
    );
    // The listeners are gone.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn clients_that_never_answer_are_cut_at_the_drain_deadline() {
    let server = Server::new(echo_app())
        .workers(2)
        .drain_timeout(Duration::from_millis(300))
        .listen("127.0.0.1:0")
        .unwrap();
    let addr = server.local_addr();
    let trigger = server.shutdown_trigger();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        trigger.shutdown();
        // The 1001 arrives; this client never replies, and the server closes anyway.
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::Close(Some(CloseFrame {
                code: 1001,
                reason: "server shutting down".into()
            }))
        );
        assert!(client.recv().await.is_none());
    });
    let started = Instant::now();
    server.wait();
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn shutdown_cuts_connections_that_never_sent_a_head() {
    let server = start(echo_app());
    let addr = server.local_addr();
    let idle = std::net::TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let started = Instant::now();
    server.shutdown();
    server.wait();
    // Not held until the 10 s handshake deadline.
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(idle);
}

#[test]
fn a_connection_accepted_just_before_shutdown_does_not_keep_the_listener() {
    for round in 0..10 {
        let server = start(echo_app());
        let addr = server.local_addr();
        let raw = std::net::TcpStream::connect(addr).unwrap();
        server.shutdown();
        server.wait();
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "round {round}: still accepting after wait()"
        );
        drop(raw);
    }
}
