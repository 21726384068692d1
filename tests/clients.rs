//! Client tracking across cores, over a real server with 2 workers and clients on both: the
//! count is exact through connects, clean closes and resets; broadcast and publish reach every
//! recipient once and in order; `send_to`, `close`, `ids` and `for_each` reach either core
//! from the test thread and from handlers; subscriber counts follow subscribe, unsubscribe,
//! disconnects and heavy churn exactly.
//!
//! The kernel spreads `SO_REUSEPORT` connections over the workers by a hash of the 4-tuple, so
//! the tests open connections until both cores have the clients they need. The handler tells
//! each client its id first (`id:N`), so the test knows where every client lives.

mod common;

use std::{
    collections::{BTreeMap, HashSet},
    io::{Read, Write},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use common::{block_on_within, start};
use ringsocket::{
    client::Client, App, ClientId, Clients, CloseFrame, Delivery, Error, Message, Remote, WebSocket,
};

/// Every test here must end well within this.
const LIMIT: Duration = Duration::from_secs(5);
/// The probe route.
const PATH: &str = "/probe";
/// Messages per sender in the ordering test.
const N: u32 = 200;
/// Connections tried before concluding the kernel never picks one of the two cores.
const MAX_TRIES: usize = 40;

/// The handler first sends `id:N` (its [`ClientId`] as a number), then answers each text
/// command from its client (to that client only):
///
/// - `sub T` / `unsub T` -> `sub: true|false` / `unsub: true|false`
/// - `topics` -> `topics: a,b`
/// - `pub T N` -> publishes `p:ID:1` .. `p:ID:N` to `T`, then `pub: local=L cores=C dropped=D`
/// - `send_to ID TEXT` / `close ID CODE REASON` -> `send_to: ok` / `close: ok`, or the error
/// - `ids` -> `ids: ID,ID,..` (every client of the server, asked from this core)
/// - `churn N` -> N `subscribe` and N `unsubscribe` calls, interleaved, over 16 topics
///   `churn-0..15`, then `unsubscribe` from all 16; answers how many calls changed something,
///   `churn: subscribed=S unsubscribed=U`
fn probe_app() -> App {
    App::builder()
        .ws(PATH, |mut ws, _req| async move {
            let hello = format!("id:{}", ws.id().as_u64());
            if ws.send(Message::text(hello)).await.is_err() {
                return;
            }
            while let Some(Ok(message)) = ws.recv().await {
                let Some(command) = message.as_text() else {
                    break;
                };
                let reply = obey(&ws, command).await;
                if ws.send(Message::text(reply)).await.is_err() {
                    break;
                }
            }
        })
        .build()
        .unwrap()
}

async fn obey(ws: &WebSocket, command: &str) -> String {
    let words: Vec<&str> = command.splitn(4, ' ').collect();
    let id = |word: &str| ClientId::from_u64(word.parse().expect("an id"));
    match words.as_slice() {
        ["sub", topic] => format!("sub: {}", ws.subscribe(topic)),
        ["unsub", topic] => format!("unsub: {}", ws.unsubscribe(topic)),
        ["topics"] => format!("topics: {}", ws.topics().join(",")),
        ["pub", topic, n] => {
            let mut total = Delivery::default();
            for i in 1..=n.parse::<u32>().unwrap() {
                let message = Message::text(format!("p:{}:{i}", ws.id().as_u64()));
                let delivery = ws.publish(topic, message).unwrap();
                total.local = total.local.max(delivery.local);
                total.cores = total.cores.max(delivery.cores);
                total.dropped_cores += delivery.dropped_cores;
            }
            format!(
                "pub: local={} cores={} dropped={}",
                total.local, total.cores, total.dropped_cores
            )
        }
        ["send_to", to, text] => match ws
            .clients()
            .send_to(id(to), Message::text(text.to_string()))
        {
            Ok(()) => "send_to: ok".into(),
            Err(e) => format!("send_to: {e}"),
        },
        ["close", to, code, reason] => {
            match ws.clients().close(id(to), code.parse().unwrap(), reason) {
                Ok(()) => "close: ok".into(),
                Err(e) => format!("close: {e}"),
            }
        }
        ["ids"] => format!("ids: {}", join_ids(&ws.clients().ids().await)),
        ["churn", n] => {
            let (mut subscribed, mut unsubscribed) = (0, 0);
            for i in 0..n.parse::<usize>().unwrap() {
                subscribed += usize::from(ws.subscribe(&format!("churn-{}", i % 16)));
                unsubscribed += usize::from(ws.unsubscribe(&format!("churn-{}", (i * 7 + 3) % 16)));
            }
            for t in 0..16 {
                unsubscribed += usize::from(ws.unsubscribe(&format!("churn-{t}")));
            }
            format!("churn: subscribed={subscribed} unsubscribed={unsubscribed}")
        }
        _ => format!("unknown command {command:?}"),
    }
}

fn join_ids(ids: &[ClientId]) -> String {
    let ids: Vec<String> = ids.iter().map(|id| id.as_u64().to_string()).collect();
    ids.join(",")
}

/// A client of the probe route and the id the server gave it.
struct Peer {
    client: Client,
    id: ClientId,
}

impl Peer {
    async fn connect(addr: SocketAddr) -> Peer {
        let mut client = Client::connect(addr, PATH).await.unwrap();
        let hello = next_text(&mut client).await;
        let id = parse_id(&hello);
        Peer { client, id }
    }

    /// Sends a command and returns the next message, which must be its answer.
    async fn ask(&mut self, command: &str) -> String {
        self.client
            .send(Message::text(command.to_owned()))
            .await
            .unwrap();
        self.next().await
    }

    async fn next(&mut self) -> String {
        next_text(&mut self.client).await
    }

    /// Closes with 1000 and waits until the server has answered and ended the connection.
    async fn close(mut self) {
        self.client.close(1000, "").await.unwrap();
        assert_eq!(self.next_message().await, close_message(1000, ""));
        assert!(self.client.recv().await.is_none(), "EOF after the close");
    }

    /// Expects the server to close with `code` and `reason`, answers, and waits for EOF.
    async fn closed_by_server(mut self, code: u16, reason: &str) {
        assert_eq!(self.next_message().await, close_message(code, reason));
        self.client.close(code, "").await.unwrap();
        assert!(self.client.recv().await.is_none(), "EOF after the close");
    }

    async fn next_message(&mut self) -> Message {
        next_message(&mut self.client).await
    }
}

async fn next_message(client: &mut Client) -> Message {
    match monoio::time::timeout(Duration::from_secs(2), client.recv()).await {
        Ok(Some(Ok(message))) => message,
        Ok(other) => panic!("expected a message, got {other:?}"),
        Err(_) => panic!("no message within 2 s"),
    }
}

async fn next_text(client: &mut Client) -> String {
    match next_message(client).await {
        Message::Text(text) => text.as_str().to_owned(),
        other => panic!("expected text, got {other:?}"),
    }
}

fn close_message(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

fn parse_id(hello: &str) -> ClientId {
    let raw = hello
        .strip_prefix("id:")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("expected id:N first, got {hello:?}"));
    ClientId::from_u64(raw)
}

/// Opens connections until each core has `per_core` clients, closes the extra ones cleanly,
/// and waits until the server counts exactly the kept ones. Returns `[core 0, core 1]`.
async fn peers_on_both_cores(
    addr: SocketAddr,
    clients: &Clients,
    per_core: usize,
) -> [Vec<Peer>; 2] {
    let before = clients.len();
    let mut cores: [Vec<Peer>; 2] = [Vec::new(), Vec::new()];
    let mut extra = Vec::new();
    for _ in 0..MAX_TRIES {
        if cores.iter().all(|c| c.len() == per_core) {
            break;
        }
        let peer = Peer::connect(addr).await;
        let core = &mut cores[peer.id.core()];
        if core.len() < per_core {
            core.push(peer);
        } else {
            extra.push(peer);
        }
    }
    assert!(
        cores.iter().all(|c| c.len() == per_core),
        "{MAX_TRIES} connections did not give {per_core} per core: {} and {}",
        cores[0].len(),
        cores[1].len()
    );
    for peer in extra {
        peer.close().await;
    }
    settle(
        "clients after the extra ones left",
        before + 2 * per_core,
        || clients.len(),
    )
    .await;
    cores
}

/// Waits (at most 2 s) until `value()` is `expected`.
async fn settle(what: &str, expected: usize, mut value: impl FnMut() -> usize) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = value();
        if now == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {now}, expected {expected}"
        );
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A probe client on a plain blocking socket, so it can be reset (SO_LINGER 0).
struct RawPeer {
    stream: std::net::TcpStream,
    id: ClientId,
}

impl RawPeer {
    fn connect(addr: SocketAddr) -> RawPeer {
        let stream = common::raw_upgrade(addr, PATH, Duration::from_secs(2));
        let mut raw = RawPeer {
            stream,
            id: ClientId::from_u64(0),
        };
        raw.id = parse_id(&raw.read_text());
        raw
    }

    /// Reads one short unfragmented text frame.
    fn read_text(&mut self) -> String {
        let mut header = [0u8; 2];
        self.stream.read_exact(&mut header).unwrap();
        assert_eq!(header[0], 0x81, "a final text frame");
        let len = usize::from(header[1]);
        assert!(len < 126, "short frames only");
        let mut payload = vec![0; len];
        self.stream.read_exact(&mut payload).unwrap();
        String::from_utf8(payload).unwrap()
    }

    /// Sends a command (masked with a zero key, which leaves the payload as it is) and reads
    /// the answer.
    fn ask(&mut self, command: &str) -> String {
        assert!(command.len() < 126);
        let mut frame = vec![0x81, 0x80 | command.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(command.as_bytes());
        self.stream.write_all(&frame).unwrap();
        self.read_text()
    }

    /// Drops the connection with an RST instead of a FIN.
    fn reset(self) {
        socket2::SockRef::from(&self.stream)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
}

/// Shuts the server down once the clients are gone.
fn stop(server: ringsocket::ServerHandle) {
    server.shutdown();
    server.wait();
}

#[test]
fn len_is_exact_through_connects_clean_closes_and_resets() {
    let server = start(probe_app());
    let addr = server.local_addr();
    let clients = server.clients();
    block_on_within(LIMIT, async move {
        assert_eq!(clients.cores(), 2);
        assert!(clients.is_empty());
        let [mut core0, mut core1] = peers_on_both_cores(addr, &clients, 3).await;
        assert_eq!(clients.len(), 6);

        // A connection is counted before its handler runs, so the count is exact as soon as
        // the client has heard from the handler.
        let mut raws = Vec::new();
        for n in 1..=6 {
            raws.push(RawPeer::connect(addr));
            assert_eq!(clients.len(), 6 + n);
        }
        let ids = clients.ids().await;
        assert_eq!(ids.len(), 12);
        assert_eq!(
            ids.iter().map(|id| id.core()).collect::<HashSet<_>>().len(),
            2
        );

        // Clean closes on both cores.
        core0.pop().unwrap().close().await;
        core1.pop().unwrap().close().await;
        settle("after two clean closes", 10, || clients.len()).await;

        // Resets.
        for raw in raws.drain(..3) {
            raw.reset();
        }
        settle("after three resets", 7, || clients.len()).await;
        assert_eq!(clients.ids().await.len(), 7);

        // The rest leave without a close frame (FIN) or with a reset.
        drop(core0);
        drop(core1);
        for raw in raws.drain(..) {
            raw.reset();
        }
        settle("after everyone left", 0, || clients.len()).await;
        assert!(clients.is_empty());
        assert!(clients.ids().await.is_empty());
    });
    stop(server);
}

/// Which messages one client got from each sender: `b` for the test thread's broadcasts,
/// `p:ID` for a handler's publishes.
#[derive(Default)]
struct Streams(BTreeMap<String, Vec<u32>>);

impl Streams {
    fn add(&mut self, text: &str) {
        let (sender, n) = text
            .rsplit_once(':')
            .unwrap_or_else(|| panic!("unexpected message {text:?}"));
        let n = n
            .parse()
            .unwrap_or_else(|_| panic!("unexpected message {text:?}"));
        self.0.entry(sender.to_owned()).or_default().push(n);
    }

    fn total(&self) -> usize {
        self.0.values().map(Vec::len).sum()
    }
}

#[test]
fn broadcast_and_publish_reach_every_client_on_both_cores_once_and_in_order() {
    let server = start(probe_app());
    let addr = server.local_addr();
    let clients = server.clients();
    block_on_within(LIMIT, async move {
        let [core0, core1] = peers_on_both_cores(addr, &clients, 2).await;
        let mut peers: Vec<Peer> = core0.into_iter().chain(core1).collect();
        for peer in &mut peers {
            assert_eq!(peer.ask("sub feed").await, "sub: true");
        }
        assert_eq!(clients.subscribers("feed"), 4);

        // One publisher on each core (peers[0] on core 0, peers[2] on core 1) publishes N
        // messages while the test thread broadcasts N of its own.
        let publishers = [peers[0].id, peers[2].id];
        for i in [0, 2] {
            let command = format!("pub feed {N}");
            peers[i].client.send(Message::text(command)).await.unwrap();
        }
        for i in 1..=N {
            let delivery = clients.broadcast(Message::text(format!("b:{i}"))).unwrap();
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

        let in_order: Vec<u32> = (1..=N).collect();
        for peer in &mut peers {
            let mut streams = Streams::default();
            let publisher = publishers.contains(&peer.id);
            // Publishers get the other publisher's messages, not their own, and the report.
            let expected = if publisher { 2 } else { 3 } * N as usize;
            let mut report = None;
            while streams.total() < expected || (publisher && report.is_none()) {
                let text = peer.next().await;
                match text.strip_prefix("pub: ") {
                    Some(r) if publisher => report = Some(r.to_owned()),
                    _ => streams.add(&text),
                }
            }
            let mut senders: Vec<String> = publishers
                .iter()
                .filter(|&&p| p != peer.id)
                .map(|p| format!("p:{}", p.as_u64()))
                .collect();
            senders.push("b".into());
            senders.sort();
            assert_eq!(
                streams.0.keys().cloned().collect::<Vec<_>>(),
                senders,
                "{}",
                peer.id
            );
            for (sender, got) in &streams.0 {
                assert_eq!(got, &in_order, "{} from {sender}", peer.id);
            }
            if publisher {
                // The other subscriber on its own core, synchronously; the other core's inbox.
                assert_eq!(report.as_deref(), Some("local=1 cores=1 dropped=0"));
            }
        }

        // Nothing more is on its way: the next message anyone gets is this one.
        clients.broadcast(Message::text("end")).unwrap();
        for peer in &mut peers {
            assert_eq!(peer.next().await, "end");
        }
        assert_eq!(clients.inbox_dropped(), 0);
    });
    stop(server);
}

#[test]
fn send_to_and_close_reach_either_core_from_the_test_thread_and_from_handlers() {
    let server = start(probe_app());
    let addr = server.local_addr();
    let clients = server.clients();
    block_on_within(LIMIT, async move {
        let [core0, core1] = peers_on_both_cores(addr, &clients, 2).await;
        let [mut a0, mut a1] = <[Peer; 2]>::try_from(core0).ok().unwrap();
        let [mut b0, mut b1] = <[Peer; 2]>::try_from(core1).ok().unwrap();
        let (a1_id, b1_id) = (a1.id, b1.id);

        // From the test thread, to every client.
        for peer in [&a0, &a1, &b0, &b1] {
            clients
                .send_to(peer.id, format!("direct {}", peer.id))
                .unwrap();
        }
        for peer in [&mut a0, &mut a1, &mut b0, &mut b1] {
            assert_eq!(peer.next().await, format!("direct {}", peer.id));
        }

        // From a handler, to the other core and to its own.
        let to_b0 = format!("send_to {} hello-from-core-0", b0.id.as_u64());
        assert_eq!(a0.ask(&to_b0).await, "send_to: ok");
        assert_eq!(b0.next().await, "hello-from-core-0");
        let to_a0 = format!("send_to {} hello-from-core-1", a0.id.as_u64());
        assert_eq!(b0.ask(&to_a0).await, "send_to: ok");
        assert_eq!(a0.next().await, "hello-from-core-1");
        let to_a1 = format!("send_to {} same-core", a1.id.as_u64());
        assert_eq!(a0.ask(&to_a1).await, "send_to: ok");
        assert_eq!(a1.next().await, "same-core");

        // Closes: from the test thread (a1, core 0), from a handler on core 0 to core 1 (b1).
        clients.close(a1.id, 4001, "from the test").unwrap();
        a1.closed_by_server(4001, "from the test").await;
        let close_b1 = format!("close {} 4002 from core 0", b1.id.as_u64());
        assert_eq!(a0.ask(&close_b1).await, "close: ok");
        b1.closed_by_server(4002, "from core 0").await;
        settle("after two closes", 2, || clients.len()).await;

        // Gone clients: on the caller's own core the loss is known at once; from another core
        // or thread the message is queued and lost there.
        let to_b1 = format!("send_to {} anyone", b1_id.as_u64());
        assert_eq!(b0.ask(&to_b1).await, format!("send_to: no client {b1_id}"));
        assert_eq!(a0.ask(&to_b1).await, "send_to: ok");
        clients.send_to(a1_id, "anyone").unwrap();
        assert!(matches!(
            clients.close(b0.id, 1005, ""),
            Err(Error::InvalidClose(_))
        ));

        // And from a handler on core 1 back to core 0.
        let close_a0 = format!("close {} 4003 from core 1", a0.id.as_u64());
        assert_eq!(b0.ask(&close_a0).await, "close: ok");
        a0.closed_by_server(4003, "from core 1").await;
        settle("after the last close", 1, || clients.len()).await;
        assert_eq!(clients.ids().await, vec![b0.id]);
    });
    stop(server);
}

#[test]
fn unsubscribe_and_disconnect_remove_subscriptions() {
    let server = start(probe_app());
    let addr = server.local_addr();
    let clients = server.clients();
    block_on_within(LIMIT, async move {
        let [core0, core1] = peers_on_both_cores(addr, &clients, 2).await;
        let mut peers: Vec<Peer> = core0.into_iter().chain(core1).collect();
        for peer in &mut peers {
            assert_eq!(peer.ask("sub t1").await, "sub: true");
            assert_eq!(peer.ask("sub t2").await, "sub: true");
        }
        let mut raw = RawPeer::connect(addr);
        assert_eq!(raw.ask("sub t1"), "sub: true");
        assert_eq!(raw.ask("sub t2"), "sub: true");
        let count = |t: &str| clients.subscribers(t);
        assert_eq!((count("t1"), count("t2")), (5, 5));
        assert_eq!(peers[0].ask("sub t1").await, "sub: false");
        assert_eq!(peers[0].ask("topics").await, "topics: t1,t2");
        assert_eq!(count("t1"), 5);

        // Unsubscribing is counted at once, on either core.
        assert_eq!(peers[0].ask("unsub t1").await, "unsub: true");
        assert_eq!(peers[0].ask("unsub t1").await, "unsub: false");
        assert_eq!(peers[0].ask("topics").await, "topics: t2");
        assert_eq!((count("t1"), count("t2")), (4, 5));
        assert_eq!(peers[2].ask("unsub t2").await, "unsub: true");
        assert_eq!((count("t1"), count("t2")), (4, 4));

        // A publish no longer reaches them.
        clients.publish("t1", "to t1").unwrap();
        clients.publish("t2", "to t2").unwrap();
        clients.broadcast("end").unwrap();
        let expected = [
            vec!["to t2", "end"],
            vec!["to t1", "to t2", "end"],
            vec!["to t1", "end"],
            vec!["to t1", "to t2", "end"],
        ];
        for (peer, expected) in peers.iter_mut().zip(expected) {
            for text in expected {
                assert_eq!(peer.next().await, text, "{}", peer.id);
            }
        }

        // Disconnects: a clean close on core 0, a reset, a FIN without close frame on core 1.
        let mut peers = peers.into_iter();
        let (p0, p1, p2, p3) = (
            peers.next().unwrap(),
            peers.next().unwrap(),
            peers.next().unwrap(),
            peers.next().unwrap(),
        );
        p1.close().await;
        settle("t1 after a clean close", 3, || count("t1")).await;
        assert_eq!(count("t2"), 3);
        raw.reset();
        settle("t1 after a reset", 2, || count("t1")).await;
        settle("t2 after a reset", 2, || count("t2")).await;
        drop(p3);
        settle("t1 after a FIN", 1, || count("t1")).await;
        settle("t2 after a FIN", 1, || count("t2")).await;
        // p0 holds t2 only, p2 t1 only.
        drop((p0, p2));
        settle("t1 at the end", 0, || count("t1")).await;
        settle("t2 at the end", 0, || count("t2")).await;
        settle("clients at the end", 0, || clients.len()).await;
    });
    stop(server);
}

#[test]
fn subscriber_counts_return_to_zero_after_churn_on_both_cores() {
    const CHURN: usize = 10_000;
    let server = start(probe_app());
    let addr = server.local_addr();
    let clients = server.clients();
    block_on_within(LIMIT, async move {
        let [core0, core1] = peers_on_both_cores(addr, &clients, 2).await;
        let (mut churners, mut watchers) = (Vec::new(), Vec::new());
        for mut core in [core0, core1] {
            watchers.push(core.pop().unwrap());
            churners.push(core.pop().unwrap());
        }
        // A steady subscriber per core on one of the churned topics.
        for watcher in &mut watchers {
            assert_eq!(watcher.ask("sub churn-0").await, "sub: true");
        }

        // Both cores churn the same topics at the same time.
        for churner in &mut churners {
            let command = format!("churn {CHURN}");
            churner.client.send(Message::text(command)).await.unwrap();
        }
        for churner in &mut churners {
            let reply = churner.next().await;
            let counts = reply.strip_prefix("churn: ").unwrap();
            let (s, u) = counts.split_once(' ').unwrap();
            let s: usize = s.strip_prefix("subscribed=").unwrap().parse().unwrap();
            let u: usize = u.strip_prefix("unsubscribed=").unwrap().parse().unwrap();
            assert_eq!(s, u, "{reply}");
            assert!(s > CHURN / 2, "most subscribes were new ones: {reply}");
            assert_eq!(churner.ask("topics").await, "topics: ");
        }
        let topics: Vec<String> = (0..16).map(|t| format!("churn-{t}")).collect();
        for topic in &topics {
            let watching = if topic == "churn-0" { 2 } else { 0 };
            assert_eq!(clients.subscribers(topic), watching, "{topic}");
        }

        // Subscriptions held when a connection ends are released too.
        for churner in &mut churners {
            for topic in &topics {
                assert_eq!(churner.ask(&format!("sub {topic}")).await, "sub: true");
            }
        }
        assert_eq!(clients.subscribers("churn-0"), 4);
        assert_eq!(clients.subscribers("churn-15"), 2);
        drop(churners);
        for topic in &topics {
            let watching = if topic == "churn-0" { 2 } else { 0 };
            settle(topic, watching, || clients.subscribers(topic)).await;
        }
        drop(watchers);
        for topic in &topics {
            settle(topic, 0, || clients.subscribers(topic)).await;
        }
    });
    stop(server);
}

#[test]
fn ids_and_for_each_see_every_client_on_both_cores() {
    let server = start(probe_app());
    let addr = server.local_addr();
    let clients = server.clients();
    block_on_within(LIMIT, async move {
        let [core0, core1] = peers_on_both_cores(addr, &clients, 2).await;
        let mut peers: Vec<Peer> = core0.into_iter().chain(core1).collect();
        let mut expected: Vec<ClientId> = peers.iter().map(|p| p.id).collect();
        expected.sort();

        // From the test thread.
        assert_eq!(clients.ids().await, expected);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let visits = Arc::clone(&seen);
        clients
            .for_each(move |client| {
                visits.lock().unwrap().push(client.id());
                client.send(format!("visited {}", client.id())).unwrap();
            })
            .await;
        let mut seen = seen.lock().unwrap().clone();
        seen.sort();
        assert_eq!(seen, expected);
        for peer in &mut peers {
            assert_eq!(peer.next().await, format!("visited {}", peer.id));
        }

        // From a handler on each core: its own core directly, the other through its inbox.
        let listed = format!("ids: {}", join_ids(&expected));
        assert_eq!(peers[0].ask("ids").await, listed);
        assert_eq!(peers[3].ask("ids").await, listed);
    });
    stop(server);
}
