//! SIGTERM starts the same graceful shutdown as the handle: clients get 1001 and `run()`
//! returns. (Its own test binary: the signal handler is process-wide.)

mod common;

use std::time::Duration;

use common::{block_on, echo_app, start};
use ringsocket::{client::Client, CloseFrame, Message};

#[test]
fn sigterm_closes_clients_with_1001_and_run_returns() {
    let server = start(echo_app());
    let addr = server.local_addr();
    server.watch_signals().unwrap();
    let runner = std::thread::spawn(move || server.run());
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        client.send(Message::text("before")).await.unwrap();
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::text("before")
        );
        // SAFETY: raising a signal whose handler the server installed above.
        assert_eq!(unsafe { libc::raise(libc::SIGTERM) }, 0);
        assert_eq!(
            client.recv().await.unwrap().unwrap(),
            Message::Close(Some(CloseFrame {
                code: 1001,
                reason: "server shutting down".into()
            }))
        );
        client.close(1001, "").await.unwrap();
        assert!(client.recv().await.is_none());
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !runner.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "run() did not return after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    runner.join().unwrap();
}
