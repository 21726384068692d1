//! A reader slower than the server, over a real server with 2 workers: with the default policy
//! it is closed with 1008 once its queue passes `max_backpressure`, with `Drop` it stays and
//! loses what did not fit; either way its report accounts for every message, readers that keep
//! up on the same topic get everything, and the server's memory does not follow what is pushed
//! at the slow one.
//!
//! The test thread publishes 64 KiB messages in lock step with the fast readers (so their
//! queues stay far under the limit) while the slow reader reads nothing.

mod common;

use std::{
    net::SocketAddr,
    sync::{mpsc, Mutex},
    time::{Duration, Instant},
};

use common::{block_on_within, start};
use ringsocket::{
    client::Client, App, BackpressurePolicy, ClientId, Clients, CloseReport, Delivery, Message,
    Remote, WsOptions,
};

/// Every test here must end well within this.
const LIMIT: Duration = Duration::from_secs(5);
const MAX_BACKPRESSURE: usize = 256 * 1024;
const MESSAGE: usize = 64 * 1024;
/// Messages pushed: 50 MiB in all.
const PUSHED: u32 = 800;
/// Most the process's resident memory may grow while they are pushed.
const MAX_GROWTH: u64 = 16 * 1024 * 1024;
/// Published to in lock step, at most this many messages ahead of the fast readers.
const BATCH: u32 = 2;

/// The tests measure the whole process's memory: one at a time.
static MEMORY: Mutex<()> = Mutex::new(());

/// What handlers tell the test.
#[derive(Debug)]
enum Event {
    /// The connection is over.
    Closed(ClientId, CloseReport),
    /// `flush()` resolved (`Ok` or not), with the report at that moment.
    Flushed(ClientId, bool, CloseReport),
}

/// `/feed`: subscribes to `feed` and says `id:N`; on `flush` from the client, waits for
/// `flush()`, reports, and answers `flushed`; reports the final report when the connection is
/// over.
fn feed_app(policy: BackpressurePolicy, events: mpsc::Sender<Event>) -> App {
    App::builder()
        .websocket(
            WsOptions::new()
                .max_backpressure(MAX_BACKPRESSURE)
                .backpressure_policy(policy)
                .close_timeout(Duration::from_millis(200)),
        )
        .ws("/feed", move |mut ws, _req| {
            let events = events.clone();
            async move {
                ws.subscribe("feed");
                let hello = format!("id:{}", ws.id().as_u64());
                if ws.send(Message::text(hello)).await.is_ok() {
                    while let Some(Ok(message)) = ws.recv().await {
                        if message.as_text() != Some("flush") {
                            break;
                        }
                        let flushed = ws.flush().await.is_ok();
                        let _ = events.send(Event::Flushed(ws.id(), flushed, ws.report()));
                        let _ = ws.send(Message::text("flushed")).await;
                    }
                }
                let report = ws.closed().await;
                let _ = events.send(Event::Closed(ws.id(), report));
            }
        })
        .build()
        .unwrap()
}

struct Reader {
    client: Client,
    id: ClientId,
}

/// Reads the `id:N` a new client gets first.
async fn identify(mut client: Client) -> Reader {
    let hello = match next(&mut client).await {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected id:N, got {other:?}"),
    };
    let id = hello
        .strip_prefix("id:")
        .and_then(|n| n.parse().ok())
        .map(ClientId::from_u64)
        .unwrap_or_else(|| panic!("expected id:N, got {hello:?}"));
    Reader { client, id }
}

async fn next(client: &mut Client) -> Message {
    match monoio::time::timeout(Duration::from_secs(2), client.recv()).await {
        Ok(Some(Ok(message))) => message,
        Ok(other) => panic!("expected a message, got {other:?}"),
        Err(_) => panic!("no message within 2 s"),
    }
}

/// A fast reader on each core and a slow one on either, all subscribed to `feed`.
async fn readers(addr: SocketAddr, clients: &Clients) -> ([Reader; 2], Reader) {
    let mut fast: [Option<Reader>; 2] = [None, None];
    for _ in 0..40 {
        let reader = identify(Client::connect(addr, "/feed").await.unwrap()).await;
        let core = reader.id.core();
        fast[core].get_or_insert(reader);
        if fast.iter().all(Option::is_some) {
            break;
        }
    }
    let [Some(f0), Some(f1)] = fast else {
        panic!("40 connections did not reach both cores");
    };
    let slow = identify(slow_client(addr).await).await;
    // The extra connections were dropped; wait until only ours are subscribed.
    let deadline = Instant::now() + Duration::from_secs(2);
    while clients.subscribers("feed") != 3 {
        assert!(
            Instant::now() < deadline,
            "{} subscribers",
            clients.subscribers("feed")
        );
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
    ([f0, f1], slow)
}

/// A client with a small fixed receive buffer, so that how much a reader that never reads
/// takes before the server's queue starts to grow does not depend on the host's `tcp_rmem`.
/// What remains is the server socket's send buffer (`tcp_wmem`'s maximum, 4 MiB by default):
/// about 60 of the 800 messages pushed.
async fn slow_client(addr: SocketAddr) -> Client {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )
    .unwrap();
    socket.set_recv_buffer_size(64 * 1024).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    let stream = monoio::net::TcpStream::from_std(socket.into()).unwrap();
    Client::builder_on(stream, &addr.to_string(), "/feed")
        .connect_stream()
        .await
        .unwrap()
}

/// A 64 KiB message carrying its number in its first 4 bytes.
fn numbered(n: u32) -> Message {
    let mut payload = vec![0u8; MESSAGE];
    payload[..4].copy_from_slice(&n.to_be_bytes());
    Message::binary(payload)
}

fn number_of(message: &Message) -> u32 {
    match message {
        Message::Binary(b) if b.len() == MESSAGE => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        other => panic!("expected a numbered message, got {:?}", other.as_text()),
    }
}

/// Publishes `PUSHED` numbered messages to `feed`, checking that each fast reader gets every
/// one in order; returns the growth of the process's resident memory meanwhile.
async fn push_through(clients: &Clients, fast: &mut [Reader; 2]) -> u64 {
    let before = resident_bytes();
    for first in (1..=PUSHED).step_by(BATCH as usize) {
        for n in first..first + BATCH {
            let delivery = clients.publish("feed", numbered(n)).unwrap();
            assert_eq!(
                delivery,
                Delivery {
                    local: 0,
                    cores: 2,
                    dropped_cores: 0,
                    remote: Remote::NotClustered,
                }
            );
        }
        for reader in fast.iter_mut() {
            for n in first..first + BATCH {
                assert_eq!(
                    number_of(&next(&mut reader.client).await),
                    n,
                    "{}",
                    reader.id
                );
            }
        }
    }
    resident_bytes().saturating_sub(before)
}

/// VmRSS of this process.
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

/// The next event about `id` within `wait`, skipping the others (the extra connections
/// [`readers`] dropped).
fn event_of(events: &mpsc::Receiver<Event>, id: ClientId, wait: Duration) -> Option<Event> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left).ok()? {
            Event::Closed(other, _) | Event::Flushed(other, ..) if other != id => {}
            event => return Some(event),
        }
    }
}

#[test]
fn slow_reader_is_closed_with_1008_while_fast_readers_get_everything() {
    let _one_at_a_time = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, events) = mpsc::channel();
    let server = start(feed_app(BackpressurePolicy::Close, tx));
    let addr = server.local_addr();
    let clients = server.clients();
    block_on_within(LIMIT, async move {
        let (mut fast, mut slow) = readers(addr, &clients).await;
        let growth = push_through(&clients, &mut fast).await;
        assert!(
            growth < MAX_GROWTH,
            "resident memory grew by {growth} bytes"
        );

        let report = match event_of(&events, slow.id, Duration::from_secs(2)) {
            Some(Event::Closed(_, report)) => report,
            other => panic!("expected the slow reader's end, got {other:?}"),
        };
        assert_eq!(report.sent_code, Some(1008));
        // The first refusal closes the connection; later messages find it closing, which is
        // not a backpressure drop.
        assert_eq!(report.dropped, 1, "{report:?}");
        assert!(report.unsent > 0, "{report:?}");
        assert_eq!(
            report.accepted,
            report.written + report.unsent,
            "{report:?}"
        );
        // The id message and the feed messages that fit, far fewer than were pushed.
        assert!(report.accepted < u64::from(PUSHED) / 2, "{report:?}");
        assert_eq!(report.received, None);
        assert!(!report.clean);
        assert_eq!(clients.subscribers("feed"), 2);

        // The slow reader finally reads: exactly the messages written, in order, then the end
        // of the connection (the close frame never got out).
        let mut got = 0;
        while let Some(message) = slow.client.recv().await {
            got += 1;
            assert_eq!(number_of(&message.unwrap()), got);
        }
        assert_eq!(u64::from(got), report.written - 1, "{report:?}");

        // The fast readers are still served.
        clients.publish("feed", "end").unwrap();
        for reader in &mut fast {
            assert_eq!(next(&mut reader.client).await, Message::text("end"));
        }
    });
    server.shutdown();
    server.wait();
}

#[test]
fn drop_policy_keeps_the_slow_reader_and_counts_what_it_missed() {
    let _one_at_a_time = MEMORY.lock().unwrap_or_else(|e| e.into_inner());
    let (tx, events) = mpsc::channel();
    let server = start(feed_app(BackpressurePolicy::Drop, tx));
    let addr = server.local_addr();
    let clients = server.clients();
    block_on_within(LIMIT, async move {
        let (mut fast, mut slow) = readers(addr, &clients).await;
        let growth = push_through(&clients, &mut fast).await;
        assert!(
            growth < MAX_GROWTH,
            "resident memory grew by {growth} bytes"
        );
        assert_eq!(clients.subscribers("feed"), 3, "nobody was closed");

        // The slow reader's queue is full: its flush waits until it reads.
        slow.client.send(Message::text("flush")).await.unwrap();
        let early = event_of(&events, slow.id, Duration::from_millis(100));
        assert!(early.is_none(), "flush() resolved unread: {early:?}");
        let mut numbers = Vec::new();
        loop {
            match next(&mut slow.client).await {
                Message::Text(text) if text.as_str() == "flushed" => break,
                message => numbers.push(number_of(&message)),
            }
        }
        let report = match event_of(&events, slow.id, Duration::from_secs(2)) {
            Some(Event::Flushed(_, true, report)) => report,
            other => panic!("expected the slow reader's flush, got {other:?}"),
        };
        // Everything accepted was written; what was refused is counted as dropped.
        assert_eq!(report.sent_code, None);
        assert_eq!(report.unsent, 0, "{report:?}");
        assert_eq!(report.written, report.accepted, "{report:?}");
        let accepted = report.accepted - 1; // the id message
        assert_eq!(numbers.len() as u64, accepted, "{report:?}");
        assert_eq!(accepted + report.dropped, u64::from(PUSHED), "{report:?}");
        assert!(report.dropped > u64::from(PUSHED) / 2, "{report:?}");
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "in order");
        assert_eq!(numbers[0], 1, "the first ones fit");

        // Still open, and served again now that it reads.
        clients.publish("feed", "end").unwrap();
        for reader in fast.iter_mut().chain([&mut slow]) {
            assert_eq!(next(&mut reader.client).await, Message::text("end"));
        }
    });
    server.shutdown();
    server.wait();
}
