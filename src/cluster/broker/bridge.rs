//! The bridge thread: a tokio current-thread runtime that runs a [`Broker`] and talks to the
//! cores through channels (see the module docs of `broker` for the semantics).

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    io,
    sync::{atomic::Ordering, Arc},
    thread::JoinHandle,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use tokio::time::Instant;

use super::{
    envelope::{self, Body},
    ClusterCount, Control, LinkEnds, RemoteError,
};
use crate::{
    cluster::clients::{Cluster, CoreMsg},
    proto::encode_frame,
};

/// Most publishes sent to the broker in one pipelined batch.
const BATCH: usize = 512;
/// First wait before reconnecting; it doubles after each failure up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Longest wait between two connection attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Longest wait for the answers to a count when the broker says how many nodes to expect.
const ASK_MAX: Duration = Duration::from_secs(1);
/// How long answers to a count are collected when the broker does not say how many to expect.
const ASK_WINDOW: Duration = Duration::from_millis(250);

/// A broker client, run by the bridge thread on a tokio current-thread runtime (its futures
/// need not be `Send`; they may use tokio). [`RedisBroker`](super::RedisBroker) and
/// [`NatsBroker`](super::NatsBroker) implement it; give one to
/// [`Server::broker`](crate::Server::broker).
///
/// # Semantics across nodes
///
/// - **Local first.** [`Clients::broadcast`](crate::Clients::broadcast),
///   [`Clients::publish`](crate::Clients::publish) and
///   [`WebSocket::publish`](crate::WebSocket::publish) reach this node's recipients directly,
///   exactly as without a broker, and are handed once to the broker for the other nodes. A
///   node drops its own echoes by node id; the other nodes deliver to their subscribers (or
///   tracked clients, for a broadcast) on every core. `except` (the publishing connection)
///   only matters on its own node.
/// - **Channels** are namespaced by a prefix (default `ringsocket`): Redis
///   `{prefix}#bc#` (broadcast) and `{prefix}#t#{topic}#` (a topic, bytes as-is); NATS
///   `{prefix}.bc` and `{prefix}.t.{token}`, the topic escaped into one subject token
///   (letters, digits, `-`, `_` as-is, every other byte `%XX`, the empty topic `%`).
///   Each message is an envelope: an 18-byte header (version 1, the WebSocket opcode, the
///   sender's node id and sequence number) and the payload as-is, so other programs can
///   publish to clients too.
/// - **Subscriptions follow local subscribers.** A node subscribes to a topic's channel when
///   the topic gets its first subscriber on any of its cores and unsubscribes when the last
///   one leaves: one broker subscription per topic per node. The broadcast channel is always
///   subscribed.
/// - **At most once across nodes.** Broker pub/sub keeps nothing: a node that is not
///   subscribed (or not connected) when a message passes misses it. Messages from one
///   publishing node reach another node in the order they were published (per topic, and for
///   Redis across topics too), and each core of that node gets them in that order.
/// - **When the broker is down** local delivery goes on; a remote publish fails at once with
///   [`Remote::Failed`](crate::Remote::Failed)`(`[`RemoteError::Down`](crate::RemoteError::Down)`)`
///   in the [`Delivery`](crate::Delivery), and is counted in
///   [`BrokerStatus::failed`](crate::BrokerStatus::failed). A batch that fails on the wire
///   (the connection broke during the send) is counted there too: every remote publish ends
///   counted exactly once, in `published` or `failed` (`failed` means not confirmed: part of a
///   batch the connection broke under may have reached the broker, and with NATS, messages the
///   client took just before the loss was seen may go out after the reconnection). The bridge
///   reconnects with backoff (50 ms doubling to 1 s) and subscribes again to every topic that
///   has local subscribers.
/// - **Counts.** [`Clients::len`](crate::Clients::len) and
///   [`Clients::subscribers`](crate::Clients::subscribers) stay exact for this node and count
///   nothing of the others. [`Clients::cluster_len`](crate::Clients::cluster_len) and
///   [`Clients::cluster_subscribers`](crate::Clients::cluster_subscribers) ask every node
///   over the broker (a question on `{prefix}#q#` / `{prefix}.q`, answers on the asker's
///   `{prefix}#n#{node}#` / `{prefix}.n.{node}`) and add up the answers: each is exact when
///   given, the sum is a moment's picture. With Redis, `PUBLISH` says how many nodes got the
///   question, so the answer comes once all have answered (at most 1 s:
///   [`ClusterCount::is_complete`](crate::ClusterCount::is_complete) tells); NATS does not
///   say, so the bridge collects answers for 250 ms. Ids ([`ClientId`](crate::ClientId))
///   name a connection of this node only: `send_to` and `close` do not cross nodes.
///
/// # Implementing it
///
/// The bridge calls one method at a time. After an error (or [`Incoming::Lost`]) it calls
/// [`connect`](Self::connect) again, with backoff, until it succeeds; publishes made
/// meanwhile fail without reaching the broker.
pub trait Broker: Send + 'static {
    /// The name of a channel. Distinct channels (and topics) must get distinct names.
    fn channel(&self, channel: Channel<'_>) -> String;

    /// Connects (or waits until the client has reconnected), then makes the subscriptions
    /// exactly `channels`.
    fn connect(&mut self, channels: &[String]) -> impl Future<Output = Result<(), BrokerError>>;

    /// Publishes every message of `batch`, in order; returns how many the broker refused (too
    /// large, say), which count as failed. An error means the connection is lost (the whole
    /// batch counts as failed).
    fn publish(&mut self, batch: &[Outgoing]) -> impl Future<Output = Result<u64, BrokerError>>;

    /// Publishes one message and returns how many subscribers received it, when the broker
    /// tells (Redis does, NATS does not). Used for the questions of cluster-wide counts.
    fn ask(
        &mut self,
        channel: &str,
        payload: Bytes,
    ) -> impl Future<Output = Result<Option<usize>, BrokerError>>;

    /// Subscribes to one more channel.
    fn subscribe(&mut self, channel: &str) -> impl Future<Output = Result<(), BrokerError>>;

    /// Ends the subscription to a channel.
    fn unsubscribe(&mut self, channel: &str) -> impl Future<Output = Result<(), BrokerError>>;

    /// The next message from a subscribed channel, or the news that the connection is lost.
    /// Must be cancel-safe: the bridge drops it whenever something else is ready first.
    fn next(&mut self) -> impl Future<Output = Incoming>;
}

/// The channels a node uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Channel<'a> {
    /// Broadcasts to every client of every node.
    Broadcast,
    /// Messages to a topic's subscribers.
    Topic(&'a str),
    /// Questions every node answers (cluster-wide counts).
    Questions,
    /// Answers for one node (by node id).
    Node(u64),
}

/// One message for the broker.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The channel, from [`Broker::channel`].
    pub channel: String,
    /// The envelope.
    pub payload: Bytes,
}

/// What [`Broker::next`] yields.
#[derive(Debug)]
pub enum Incoming {
    /// A message on a subscribed channel.
    Message {
        /// The channel it came on.
        channel: String,
        /// The envelope.
        payload: Bytes,
    },
    /// The connection is lost; the bridge will call [`Broker::connect`].
    Lost(BrokerError),
}

/// A broker client's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// A setting the broker cannot work with (a bad URL or prefix).
    #[error("broker configuration: {0}")]
    Config(String),
    /// Could not connect.
    #[error("cannot connect to the broker: {0}")]
    Connect(String),
    /// The connection broke, or a command failed on it.
    #[error("broker connection lost: {0}")]
    Lost(String),
}

/// Starts a bridge thread for a broker chosen at build time (the broker's type is erased
/// here, so `Server` needs no type parameter).
pub(crate) struct BrokerStarter(Box<dyn FnOnce(Bridging) -> io::Result<JoinHandle<()>> + Send>);

impl fmt::Debug for BrokerStarter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BrokerStarter")
    }
}

/// What a bridge thread gets from the server.
pub(crate) struct Bridging {
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) ends: LinkEnds,
    /// Closed when the server shuts down.
    pub(crate) shutdown: async_channel::Receiver<()>,
}

impl BrokerStarter {
    /// Starts the bridge thread.
    pub(crate) fn spawn(self, bridging: Bridging) -> io::Result<JoinHandle<()>> {
        (self.0)(bridging)
    }
}

/// The starter for `broker`.
pub(crate) fn start<B: Broker>(broker: B) -> BrokerStarter {
    BrokerStarter(Box::new(move |bridging: Bridging| {
        std::thread::Builder::new()
            .name("ringsocket-broker".into())
            .spawn(move || run(broker, bridging))
    }))
}

fn run<B: Broker>(broker: B, bridging: Bridging) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("broker bridge: cannot start its runtime ({e}); no remote delivery");
            return;
        }
    };
    let broadcast = broker.channel(Channel::Broadcast);
    let questions = broker.channel(Channel::Questions);
    let own = broker.channel(Channel::Node(bridging.ends.node_id));
    let mut bridge = Bridge {
        broker,
        cluster: bridging.cluster,
        ends: bridging.ends,
        broadcast,
        questions,
        own,
        wanted: HashMap::new(),
        by_channel: HashMap::new(),
        pending: HashMap::new(),
        next_question: 0,
    };
    bridge.count_subscriptions();
    runtime.block_on(bridge.run(bridging.shutdown));
    bridge.ends.stats.connected.store(false, Ordering::Release);
}

/// What woke the connected bridge.
enum Event {
    Change(Control),
    Publish(super::Publish),
    Incoming(Incoming),
    /// A count's time is up.
    Deadline,
}

/// A count waiting for answers.
struct Pending {
    count: ClusterCount,
    deadline: Instant,
    reply: async_channel::Sender<Result<ClusterCount, RemoteError>>,
}

struct Bridge<B> {
    broker: B,
    cluster: Arc<Cluster>,
    ends: LinkEnds,
    broadcast: String,
    questions: String,
    /// This node's own channel (answers).
    own: String,
    /// Counts asked by this node, by question id.
    pending: HashMap<u64, Pending>,
    next_question: u64,
    /// Topics with local subscribers, and their channels.
    wanted: HashMap<Arc<str>, String>,
    /// The same, by channel.
    by_channel: HashMap<String, Arc<str>>,
}

impl<B: Broker> Bridge<B> {
    async fn run(&mut self, shutdown: async_channel::Receiver<()>) {
        let mut backoff = BACKOFF_MIN;
        let mut connected_once = false;
        loop {
            // Down: fail what was queued before the loss was seen, note topic changes, then
            // try to connect.
            self.fail_queued();
            while let Ok(change) = self.ends.control.try_recv() {
                self.note(change);
            }
            let fixed = [&self.broadcast, &self.questions, &self.own];
            let channels: Vec<String> = fixed
                .into_iter()
                .chain(self.wanted.values())
                .cloned()
                .collect();
            let connected = tokio::select! {
                _ = shutdown.recv() => return,
                connected = self.broker.connect(&channels) => connected,
            };
            if let Err(e) = connected {
                tracing::warn!("broker bridge: {e}; retrying in {backoff:?}");
                tokio::select! {
                    _ = shutdown.recv() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            backoff = BACKOFF_MIN;
            if connected_once {
                self.ends.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            connected_once = true;
            self.ends.stats.connected.store(true, Ordering::Release);
            tracing::info!(
                node = self.ends.node_id,
                channels = channels.len(),
                "broker bridge: connected"
            );
            let lost = tokio::select! {
                _ = shutdown.recv() => return,
                lost = self.serve() => lost,
            };
            let Some(lost) = lost else {
                return;
            };
            self.ends.stats.connected.store(false, Ordering::Release);
            for (_, pending) in self.pending.drain() {
                let _ = pending.reply.try_send(Err(RemoteError::Down));
            }
            tracing::warn!("broker bridge: {lost}; reconnecting");
        }
    }

    /// Runs while connected; returns why the connection ended (`None`: the cores' side is
    /// gone, which the cluster this bridge holds prevents until shutdown).
    async fn serve(&mut self) -> Option<BrokerError> {
        loop {
            let deadline = self.pending.values().map(|p| p.deadline).min();
            let event = tokio::select! {
                change = self.ends.control.recv() => Event::Change(change.ok()?),
                publish = self.ends.publishes.recv() => Event::Publish(publish.ok()?),
                incoming = self.broker.next() => Event::Incoming(incoming),
                _ = sleep_until(deadline), if deadline.is_some() => Event::Deadline,
            };
            let result = match event {
                Event::Change(change) => self.apply(change).await,
                Event::Publish(first) => self.publish(first).await,
                Event::Incoming(Incoming::Message { channel, payload }) => {
                    self.incoming(&channel, payload).await
                }
                Event::Incoming(Incoming::Lost(e)) => Err(e),
                Event::Deadline => {
                    let now = Instant::now();
                    let due: Vec<u64> = self
                        .pending
                        .iter()
                        .filter(|(_, p)| p.deadline <= now)
                        .map(|(&id, _)| id)
                        .collect();
                    for id in due {
                        self.resolve(id);
                    }
                    Ok(())
                }
            };
            if let Err(e) = result {
                return Some(e);
            }
        }
    }

    /// Records a topic change; returns the channel to subscribe to (`true`) or leave.
    fn note(&mut self, change: Control) -> Option<(String, bool)> {
        let change = match change {
            Control::Subscribe(topic) => {
                if self.wanted.contains_key(&topic) {
                    return None;
                }
                let channel = self.broker.channel(Channel::Topic(&topic));
                self.by_channel.insert(channel.clone(), Arc::clone(&topic));
                self.wanted.insert(topic, channel.clone());
                (channel, true)
            }
            Control::Unsubscribe(topic) => {
                let channel = self.wanted.remove(&topic)?;
                self.by_channel.remove(&channel);
                (channel, false)
            }
            Control::Ask { reply, .. } => {
                // Only reached while down: `apply` handles questions when connected.
                let _ = reply.try_send(Err(RemoteError::Down));
                return None;
            }
        };
        self.count_subscriptions();
        Some(change)
    }

    async fn apply(&mut self, change: Control) -> Result<(), BrokerError> {
        if let Control::Ask { topic, reply } = change {
            return self.ask(topic, reply).await;
        }
        match self.note(change) {
            Some((channel, true)) => self.broker.subscribe(&channel).await,
            Some((channel, false)) => self.broker.unsubscribe(&channel).await,
            None => Ok(()),
        }
    }

    fn count_subscriptions(&self) {
        let n = self.wanted.len();
        self.ends.stats.topics.store(n, Ordering::Relaxed);
    }

    /// This node's count: connections, or a topic's subscribers.
    fn local_count(&self, topic: Option<&str>) -> usize {
        match topic {
            None => self.cluster.len(),
            Some(topic) => self.cluster.subscribers(topic),
        }
    }

    /// Sends a question to every node and keeps the count waiting for their answers.
    async fn ask(
        &mut self,
        topic: Option<Arc<str>>,
        reply: async_channel::Sender<Result<ClusterCount, RemoteError>>,
    ) -> Result<(), BrokerError> {
        self.next_question += 1;
        let id = self.next_question;
        let question = envelope::encode_question(self.ends.node_id, id, topic.as_deref());
        let receivers = match self.broker.ask(&self.questions, question).await {
            Ok(receivers) => receivers,
            Err(e) => {
                let _ = reply.try_send(Err(RemoteError::Down));
                return Err(e);
            }
        };
        let wait = if receivers.is_some() {
            ASK_MAX
        } else {
            ASK_WINDOW
        };
        let pending = Pending {
            count: ClusterCount {
                total: self.local_count(topic.as_deref()),
                nodes: 1,
                expected_nodes: receivers,
            },
            deadline: Instant::now() + wait,
            reply,
        };
        let done = pending.count.expected_nodes.is_some_and(|n| n <= 1);
        self.pending.insert(id, pending);
        if done {
            self.resolve(id);
        }
        Ok(())
    }

    fn resolve(&mut self, id: u64) {
        if let Some(pending) = self.pending.remove(&id) {
            let _ = pending.reply.try_send(Ok(pending.count));
        }
    }

    /// Handles what arrived on a subscribed channel.
    async fn incoming(&mut self, channel: &str, payload: Bytes) -> Result<(), BrokerError> {
        let stats = &self.ends.stats;
        let envelope = match envelope::decode(&payload) {
            Ok(envelope) => envelope,
            Err(why) => {
                tracing::debug!(channel, "broker bridge: not an envelope ({why:?})");
                stats.ignored.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
        };
        if envelope.node == self.ends.node_id {
            return Ok(());
        }
        match envelope.body {
            Body::Message { opcode, payload } => self.deliver(channel, opcode, &payload),
            Body::Question { id, topic } if channel == self.questions => {
                let count = self.local_count(topic.as_deref()) as u64;
                let answer = Outgoing {
                    channel: self.broker.channel(Channel::Node(envelope.node)),
                    payload: envelope::encode_answer(self.ends.node_id, id, count),
                };
                self.broker.publish(&[answer]).await?;
            }
            Body::Answer { id, count } if channel == self.own => {
                if let Some(pending) = self.pending.get_mut(&id) {
                    pending.count.total += count as usize;
                    pending.count.nodes += 1;
                    if pending.count.is_complete() {
                        self.resolve(id);
                    }
                }
            }
            _ => {
                stats.ignored.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Sends `first` and whatever else is queued (up to [`BATCH`]) in one batch.
    async fn publish(&mut self, first: super::Publish) -> Result<(), BrokerError> {
        let mut batch = Vec::with_capacity(16);
        batch.push(self.outgoing(first));
        while batch.len() < BATCH {
            match self.ends.publishes.try_recv() {
                Ok(publish) => batch.push(self.outgoing(publish)),
                Err(_) => break,
            }
        }
        let n = batch.len() as u64;
        let stats = &self.ends.stats;
        match self.broker.publish(&batch).await {
            Ok(refused) => {
                let refused = refused.min(n);
                stats.published.fetch_add(n - refused, Ordering::Relaxed);
                if refused > 0 {
                    stats.failed.fetch_add(refused, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) => {
                stats.failed.fetch_add(n, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn outgoing(&self, publish: super::Publish) -> Outgoing {
        let channel = match &publish.topic {
            None => self.broadcast.clone(),
            Some(topic) => match self.wanted.get(topic) {
                Some(channel) => channel.clone(),
                None => self.broker.channel(Channel::Topic(topic)),
            },
        };
        Outgoing {
            channel,
            payload: publish.envelope,
        }
    }

    /// Counts as failed every publish still queued.
    fn fail_queued(&self) {
        let mut n = 0;
        while self.ends.publishes.try_recv().is_ok() {
            n += 1;
        }
        if n > 0 {
            self.ends.stats.failed.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Hands a message from another node to every core (encoded once).
    fn deliver(&self, channel: &str, opcode: crate::proto::OpCode, payload: &[u8]) {
        let stats = &self.ends.stats;
        let topic = if channel == self.broadcast {
            None
        } else if let Some(topic) = self.by_channel.get(channel) {
            Some(Arc::clone(topic))
        } else {
            stats.ignored.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let mut frame = BytesMut::with_capacity(payload.len() + 10);
        encode_frame(&mut frame, true, false, opcode, None, payload);
        let frame = frame.freeze();
        // Counted before the cores can hand it on: a client that has it sees it counted.
        stats.received.fetch_add(1, Ordering::Relaxed);
        for core in 0..self.cluster.core_count() {
            let msg = match &topic {
                Some(topic) => CoreMsg::Publish {
                    topic: Arc::clone(topic),
                    frame: frame.clone(),
                    except: None,
                },
                None => CoreMsg::Broadcast {
                    frame: frame.clone(),
                    except: None,
                },
            };
            self.cluster.post(core, msg);
        }
    }
}

/// Sleeps until `deadline` (forever for `None`).
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
