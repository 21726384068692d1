//! A handler that never waits on anything (it yields to the runtime and is woken again at
//! once, in a loop) must not take its core from the other connections: they are still
//! accepted, upgraded and answered on the same worker.

mod common;

use std::{
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use common::block_on;
use ringsocket::{client::Client, App, Message, Server};

/// Returns `Pending` once after waking its own task: the shape of a `yield_now`.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn a_handler_spinning_on_yields_does_not_starve_its_core() {
    let stop = Arc::new(AtomicBool::new(false));
    let spins = Arc::new(AtomicU64::new(0));
    let (stop_in, spins_in) = (Arc::clone(&stop), Arc::clone(&spins));
    let app = App::builder()
        .ws("/spin", move |mut ws, _req| {
            let (stop, spins) = (Arc::clone(&stop_in), Arc::clone(&spins_in));
            async move {
                // Starts spinning once the first message is in; bounded by the test's flag
                // and by time, so a failing run still ends.
                let _ = ws.recv().await;
                let end = Instant::now() + Duration::from_secs(15);
                while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                    spins.fetch_add(1, Ordering::Relaxed);
                    YieldNow(false).await;
                }
                let _ = ws.send(Message::text("stopped")).await;
            }
        })
        .ws("/", common::echo)
        .build()
        .unwrap();
    // One worker: the spinning handler and the echo share a core.
    let server = Server::new(app).workers(1).listen("127.0.0.1:0").unwrap();
    let addr = server.local_addr();
    block_on(async move {
        let mut spinner = Client::connect(addr, "/spin").await.unwrap();
        spinner.send(Message::text("go")).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while spins.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(spins.load(Ordering::Relaxed) > 0, "the handler spins");

        // A second connection on the same core: accepted, upgraded, 50 round trips.
        let echoed = monoio::time::timeout(Duration::from_secs(8), async {
            let mut client = Client::connect(addr, "/").await.unwrap();
            for i in 0..50 {
                let text = format!("message {i}");
                client.send(Message::text(text.clone())).await.unwrap();
                assert_eq!(client.recv().await.unwrap().unwrap(), Message::text(text));
            }
            50
        })
        .await;
        assert_eq!(echoed, Ok(50), "the echo connection was served");
        assert!(
            !stop.load(Ordering::Relaxed),
            "the spinner was still spinning while the echo ran"
        );

        // The spinner itself is still served once it stops.
        stop.store(true, Ordering::Relaxed);
        assert_eq!(
            spinner.recv().await.unwrap().unwrap(),
            Message::text("stopped")
        );
    });
}
