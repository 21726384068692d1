//! Two ringsocket processes (the `cluster_chat` example's app, 2 workers each) joined by a
//! real `redis-server` or `nats-server` on a loopback port of their own; the scenarios both
//! broker tests run.
//!
//! The node processes are this test binary itself, started again with `--ignored --exact
//! node_process` and the node's settings in [`NODE_ENV`]: real processes without building
//! another binary. Everything they and the brokers are is killed on drop.
#![allow(dead_code)]

use std::{
    cell::Cell,
    collections::HashMap,
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    rc::Rc,
    sync::mpsc,
    time::{Duration, Instant},
};

use ringsocket::{client::Client, Message, Server};

use crate::{cluster_chat, common::http_get};

/// The variable that makes this binary's `node_process` test run a node: `redis URL` or
/// `nats URL`.
pub const NODE_ENV: &str = "RINGSOCKET_TEST_NODE";
/// Longest wait for anything to settle (a broker to start, a node to connect or notice a
/// loss, a message to arrive).
const SETTLE: Duration = Duration::from_secs(15);

/// Which broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Redis,
    Nats,
}

/// A broker server of our own on a free loopback port.
pub struct BrokerServer {
    kind: Kind,
    port: u16,
    child: Option<Child>,
}

impl BrokerServer {
    pub fn start(kind: Kind) -> Self {
        let port = free_port();
        let mut server = Self {
            kind,
            port,
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        match self.kind {
            Kind::Redis => format!("redis://127.0.0.1:{}/", self.port),
            Kind::Nats => format!("nats://127.0.0.1:{}", self.port),
        }
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let mut command = match self.kind {
            Kind::Redis => {
                let mut c = Command::new(find_binary("redis-server", "redis-server"));
                c.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
                    .args(["--appendonly", "no", "--daemonize", "no"]);
                c
            }
            Kind::Nats => {
                let mut c = Command::new(find_binary("nats-server", "nats-server"));
                c.args(["-a", "127.0.0.1", "-p", &port]);
                c
            }
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", self.kind));
        self.child = Some(child);
        let deadline = Instant::now() + SETTLE;
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{:?} not accepting on port {} after {SETTLE:?}",
                self.kind,
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGKILL: the broker vanishes at once, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for BrokerServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The path of a broker binary, or a failure that says how to install it.
fn find_binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "{name} is not installed: run scripts/setup.sh (it installs the Debian package {package})"
    );
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().unwrap().port()
}

/// Runs a node in this process when [`NODE_ENV`] says so (the `node_process` test); returns
/// at once otherwise.
pub fn run_node_if_asked() {
    let Ok(spec) = std::env::var(NODE_ENV) else {
        return;
    };
    let flag = match spec.split_once(' ') {
        Some(("redis", url)) => cluster_chat::BrokerFlag::Redis(url.to_owned()),
        Some(("nats", url)) => cluster_chat::BrokerFlag::Nats(url.to_owned()),
        _ => panic!("{NODE_ENV}={spec:?}: expected `redis URL` or `nats URL`"),
    };
    let server = Server::new(cluster_chat::app()).workers(2);
    let server = cluster_chat::with_broker(server, &flag, "rstest").expect("a broker");
    let handle = server.listen("127.0.0.1:0").expect("node listens");
    println!("listening on {}", handle.local_addr());
    handle.run();
}

/// A node process.
pub struct Node {
    child: Child,
    pub addr: SocketAddr,
}

impl Node {
    pub fn start(kind: Kind, broker_url: &str) -> Node {
        let spec = match kind {
            Kind::Redis => format!("redis {broker_url}"),
            Kind::Nats => format!("nats {broker_url}"),
        };
        let exe = std::env::current_exe().expect("the test binary");
        let mut child = Command::new(exe)
            .args(["node_process", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(NODE_ENV, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node process starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        // Reads the ready line, then drains the rest so the node never blocks on its stdout.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest's `test node_process ... ` may start the same line.
                if let Some((_, addr)) = line.split_once("listening on ") {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(SETTLE) {
            Ok(addr) => addr.parse().expect("an address"),
            Err(_) => {
                let _ = child.kill();
                panic!("the node printed no `listening on` line within {SETTLE:?}");
            }
        };
        Node { child, addr }
    }

    /// The node's `/cluster` line, parsed.
    pub fn status(&self) -> Status {
        let line = http_get(self.addr, "/cluster").text();
        let fields: HashMap<&str, &str> = line
            .split(' ')
            .filter_map(|kv| kv.split_once('='))
            .collect();
        let num = |k: &str| -> u64 {
            fields
                .get(k)
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {k} in {line:?}"))
        };
        Status {
            connected: fields.get("connected") == Some(&"true"),
            topics: num("topics"),
            published: num("published"),
            failed: num("failed"),
            received: num("received"),
            ignored: num("ignored"),
            reconnects: num("reconnects"),
        }
    }

    /// Waits (at most [`SETTLE`]) until `ok` holds for the node's status; returns it.
    pub fn wait_for(&self, what: &str, ok: impl Fn(&Status) -> bool) -> Status {
        let deadline = Instant::now() + SETTLE;
        loop {
            let status = self.status();
            if ok(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node {}: not {what} after {SETTLE:?}: {status:?}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A node's broker counters (`/cluster`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    pub connected: bool,
    pub topics: u64,
    pub published: u64,
    pub failed: u64,
    pub received: u64,
    pub ignored: u64,
    pub reconnects: u64,
}

/// A chat member.
pub struct Member {
    client: Client,
    pub id: String,
    /// Lines it said that its node published (so handed to the broker once each).
    pub published: u64,
}

impl Member {
    /// Joins `room` on the node at `addr`; once `/id` is answered the member is subscribed.
    pub async fn join(addr: SocketAddr, room: &str) -> Member {
        let client = Client::connect(addr, &format!("/chat/{room}"))
            .await
            .expect("joins");
        let mut member = Member {
            client,
            id: String::new(),
            published: 0,
        };
        member.say("/id").await;
        member.id = member.next().await;
        member
    }

    pub fn core(&self) -> usize {
        let core = self.id.split(':').next().and_then(|c| c.parse().ok());
        core.unwrap_or_else(|| panic!("not an id: {:?}", self.id))
    }

    pub async fn say(&mut self, text: &str) {
        if !text.starts_with('/') || text.starts_with("/all ") {
            self.published += 1;
        }
        self.client
            .send(Message::text(text.to_owned()))
            .await
            .expect("sent");
    }

    pub async fn next(&mut self) -> String {
        match monoio::time::timeout(SETTLE, self.client.recv()).await {
            Ok(Some(Ok(Message::Text(text)))) => text.as_str().to_owned(),
            Ok(other) => panic!("{}: expected text, got {other:?}", self.id),
            Err(_) => panic!("{}: nothing within {SETTLE:?}", self.id),
        }
    }

    pub async fn leave(mut self) {
        self.client.close(1000, "").await.expect("close sent");
        while let Some(Ok(message)) = self.client.recv().await {
            if message.is_close() {
                break;
            }
        }
    }
}

/// Joins `room` on `addr` until members sit on both cores of the node.
pub async fn join_on_both_cores(addr: SocketAddr, room: &str) -> Vec<Member> {
    let mut members = Vec::new();
    for _ in 0..40 {
        members.push(Member::join(addr, room).await);
        let on = |core| members.iter().any(|m: &Member| m.core() == core);
        if on(0) && on(1) {
            return members;
        }
    }
    panic!("40 connections to {addr}, all on one core");
}

/// Makes sure every listener hears `speaker`: the speaker says `sync` every 20 ms until each
/// listener has heard one (so the nodes' broker subscriptions are live), then `synced`,
/// which every listener reads up to. Each listener's first line must be a `sync`.
pub async fn sync(speaker: Member, listeners: &mut [&mut Member]) -> Member {
    let sync = format!("{}: sync", speaker.id);
    let synced = format!("{}: synced", speaker.id);
    let stop = Rc::new(Cell::new(false));
    let task = monoio::spawn({
        let stop = Rc::clone(&stop);
        let mut speaker = speaker;
        async move {
            let deadline = Instant::now() + SETTLE;
            while !stop.get() {
                assert!(Instant::now() < deadline, "sync: not heard by everyone");
                speaker.say("sync").await;
                monoio::time::sleep(Duration::from_millis(20)).await;
            }
            speaker
        }
    });
    for listener in listeners.iter_mut() {
        assert_eq!(listener.next().await, sync, "{}'s first line", listener.id);
    }
    stop.set(true);
    let mut speaker = task.await;
    speaker.say("synced").await;
    for listener in listeners.iter_mut() {
        loop {
            let line = listener.next().await;
            if line == synced {
                break;
            }
            assert_eq!(line, sync, "{}: before `synced`", listener.id);
        }
    }
    speaker
}

/// Each listener's next lines are exactly `lines` from `speaker`, in order.
pub async fn expect_lines(speaker: &str, lines: &[String], listeners: &mut [&mut Member]) {
    for listener in listeners.iter_mut() {
        for line in lines {
            assert_eq!(listener.next().await, format!("{speaker}: {line}"));
        }
    }
}

/// Says `{tag}1` .. `{tag}{n}`; returns the lines.
pub async fn say_numbered(speaker: &mut Member, tag: &str, n: usize) -> Vec<String> {
    let lines: Vec<String> = (1..=n).map(|i| format!("{tag}{i}")).collect();
    for line in &lines {
        speaker.say(line).await;
    }
    lines
}

/// Waits until the node has settled every remote publish it was given: `published + failed
/// == total`.
pub fn wait_settled(node: &Node, total: u64) -> Status {
    node.wait_for("settled", |s| s.published + s.failed >= total)
}

/// Messages per burst in the ordering checks.
const N: usize = 200;

/// A publish on node A reaches subscribers on both cores of node B exactly once and in
/// order (and A's own subscriber); a broadcast does too; counts stay per node; once B's
/// members have left, B's broker subscription is gone and A's publishes no longer reach B.
pub fn fan_out_order_and_unsubscribe(kind: Kind) {
    let broker = BrokerServer::start(kind);
    let a = Node::start(kind, &broker.url());
    let b = Node::start(kind, &broker.url());
    a.wait_for("connected", |s| s.connected && s.topics == 0);
    b.wait_for("connected", |s| s.connected && s.topics == 0);
    crate::common::block_on_within(Duration::from_secs(120), async {
        let mut lobby_b = join_on_both_cores(b.addr, "lobby").await;
        let mut local_a = Member::join(a.addr, "lobby").await;
        let speaker = Member::join(a.addr, "lobby").await;
        b.wait_for("subscribed", |s| s.topics == 1);
        let mut listeners: Vec<&mut Member> = lobby_b.iter_mut().collect();
        listeners.push(&mut local_a);
        let mut speaker = sync(speaker, &mut listeners).await;

        // Every line once, in order, on both cores of B and on A.
        let mut lines = say_numbered(&mut speaker, "m", N).await;
        speaker.say("end").await;
        lines.push("end".into());
        expect_lines(&speaker.id, &lines, &mut listeners).await;

        // A broadcast reaches every client of both nodes but the sender.
        speaker.say("/all hello").await;
        let heard = format!("{} to all: hello", speaker.id);
        for listener in listeners.iter_mut() {
            assert_eq!(listener.next().await, heard);
        }
        drop(listeners);

        // `subscribers` counts this node's members; `cluster_subscribers` asks both nodes.
        let all = lobby_b.len() + 2;
        let who_b = format!("{} in room lobby here, {all} on 2 nodes", lobby_b.len());
        assert_eq!(ask(&mut lobby_b[0], "/who").await, who_b);
        let who_a = format!("2 in room lobby here, {all} on 2 nodes");
        assert_eq!(ask(&mut local_a, "/who").await, who_a);

        // A second room, to see B still hears A after leaving the lobby.
        let mut kitchen_b = Member::join(b.addr, "kitchen").await;
        let kitchen_a = Member::join(a.addr, "kitchen").await;
        b.wait_for("subscribed to kitchen", |s| s.topics == 2);
        let mut kitchen_a = sync(kitchen_a, &mut [&mut kitchen_b]).await;

        // The last member of the lobby on B leaves: B leaves the lobby's channel.
        for member in lobby_b {
            member.leave().await;
        }
        b.wait_for("unsubscribed from the lobby", |s| s.topics == 1);
        let before = b.status();
        let gone = say_numbered(&mut speaker, "gone", 20).await;
        expect_lines(&speaker.id, &gone, &mut [&mut local_a]).await;
        kitchen_a.say("barrier").await;
        assert_eq!(kitchen_b.next().await, format!("{}: barrier", kitchen_a.id));
        let published = speaker.published + kitchen_a.published + local_a.published;
        let settled = wait_settled(&a, published);
        assert_eq!((settled.published, settled.failed), (published, 0));
        // Everything that reached B's bridge since: the barrier alone.
        let after = b.status();
        assert_eq!(
            after.received + after.ignored,
            before.received + before.ignored + 1,
            "{before:?} -> {after:?}"
        );
        assert_eq!(after.reconnects, 0);
    });
}

/// Killing the broker mid-run: both nodes notice, local delivery goes on, every publish made
/// meanwhile is counted failed (none arrives later); a new broker on the same port is joined
/// again without restarting the nodes, with the subscriptions restored, and order and
/// exactly-once hold again.
pub fn broker_restart(kind: Kind) {
    let mut broker = BrokerServer::start(kind);
    let a = Node::start(kind, &broker.url());
    let b = Node::start(kind, &broker.url());
    a.wait_for("connected", |s| s.connected);
    b.wait_for("connected", |s| s.connected);
    crate::common::block_on_within(Duration::from_secs(120), async {
        let mut room_b = join_on_both_cores(b.addr, "kitchen").await;
        let mut local_a = Member::join(a.addr, "kitchen").await;
        let speaker = Member::join(a.addr, "kitchen").await;
        let mut listeners: Vec<&mut Member> = room_b.iter_mut().collect();
        listeners.push(&mut local_a);
        let mut speaker = sync(speaker, &mut listeners).await;
        let lines = say_numbered(&mut speaker, "before", 50).await;
        expect_lines(&speaker.id, &lines, &mut listeners).await;
        let settled = wait_settled(&a, speaker.published);
        assert_eq!(settled.failed, 0, "{settled:?}");

        broker.kill();
        a.wait_for("disconnected", |s| !s.connected);
        b.wait_for("disconnected", |s| !s.connected);
        // Local delivery goes on; the other node's copies fail, counted one by one.
        let down = say_numbered(&mut speaker, "down", 10).await;
        let on_b = listeners.len() - 1;
        expect_lines(&speaker.id, &down, &mut listeners[on_b..]).await;
        // Cluster-wide counts need the broker: B answers with its own count and the error.
        let who = format!("{on_b} in room kitchen here (the broker is unreachable)");
        assert_eq!(ask(&mut *listeners[0], "/who").await, who);
        let status = a.wait_for("failing the 10", |s| s.failed >= 10);
        assert_eq!(status.failed, 10, "{status:?}");
        assert_eq!(status.published + status.failed, speaker.published);

        broker.restart();
        a.wait_for("reconnected", |s| s.connected && s.reconnects >= 1);
        b.wait_for("reconnected", |s| s.connected && s.reconnects >= 1);
        // B's first lines after the restart are syncs: nothing said while down arrives late.
        let mut speaker = sync(speaker, &mut listeners).await;
        let lines = say_numbered(&mut speaker, "after", N).await;
        expect_lines(&speaker.id, &lines, &mut listeners).await;
        let settled = wait_settled(&a, speaker.published);
        assert_eq!(
            (settled.published, settled.failed),
            (speaker.published - 10, 10)
        );
        assert_eq!(b.status().topics, 1, "the kitchen again");
    });
}

async fn ask(member: &mut Member, command: &str) -> String {
    member.say(command).await;
    member.next().await
}
