//! Broadcast and topics across processes, through an existing broker (Redis pub/sub with the
//! `redis` feature, NATS core with the `nats` feature).
//!
//! The semantics (what crosses nodes, in what order, what happens when the broker is down, how
//! counts work) are documented on the public [`Broker`] trait.
//!
//! # The bridge
//!
//! No Redis or NATS client runs on monoio. One thread per server (`ringsocket-broker`) runs
//! the broker's client on a tokio current-thread runtime and talks to the cores through
//! channels: publishes come in on a bounded queue ([`QUEUE_CAPACITY`]; past it a publish
//! fails with [`RemoteError::QueueFull`]) and are sent in pipelined batches; messages from
//! other nodes are encoded once into a WebSocket frame and posted to every core's inbox.
//! Without the `redis` and `nats` features none of this (and no tokio) is built.

mod envelope;

#[cfg(any(feature = "redis", feature = "nats"))]
mod bridge;
#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "redis")]
mod redis;

use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    Arc,
};

use bytes::Bytes;

use crate::proto::OpCode;

#[cfg(any(feature = "redis", feature = "nats"))]
pub(crate) use bridge::{start, Bridging, BrokerStarter};
#[cfg(any(feature = "redis", feature = "nats"))]
pub use bridge::{Broker, BrokerError, Channel, Incoming, Outgoing};
#[cfg(feature = "nats")]
pub use nats::NatsBroker;
#[cfg(feature = "redis")]
pub use redis::RedisBroker;

/// Most publishes waiting for the bridge; past it a remote publish fails with
/// [`RemoteError::QueueFull`].
pub(crate) const QUEUE_CAPACITY: usize = 65_536;

/// What happened to the other nodes' copy of a broadcast or publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Remote {
    /// The server has no broker: there are no other nodes.
    #[default]
    NotClustered,
    /// Handed to the broker bridge; it ends counted in [`BrokerStatus::published`] or
    /// [`BrokerStatus::failed`].
    Queued,
    /// Not sent to the other nodes (counted in [`BrokerStatus::failed`]).
    Failed(RemoteError),
}

/// Why a broadcast or publish did not go to the other nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// The bridge is not connected to the broker (it is reconnecting).
    #[error("the broker is unreachable")]
    Down,
    /// The bridge's queue is full (65 536 publishes waiting).
    #[error("the broker queue is full")]
    QueueFull,
}

/// A snapshot of a node's broker link: [`Clients::broker`](crate::Clients::broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStatus {
    /// This node's id in envelopes (random per server).
    pub node_id: u64,
    /// Whether the bridge is connected to the broker now.
    pub connected: bool,
    /// Topic channels subscribed now: one per topic with local subscribers (while
    /// disconnected: the ones it will subscribe to again). The broadcast, question and
    /// node channels come on top.
    pub topics: usize,
    /// Remote publishes the broker took (Redis answered the `PUBLISH`; NATS: written and
    /// flushed).
    pub published: u64,
    /// Remote publishes that were not made: broker down, queue full, or the connection broke
    /// while they were sent.
    pub failed: u64,
    /// Messages from other nodes handed to this node's cores.
    pub received: u64,
    /// Messages from the broker that were dropped: not an envelope this build reads, or for a
    /// topic this node had just left.
    pub ignored: u64,
    /// Connections made after a loss.
    pub reconnects: u64,
}

/// Counters shared by the cores and the bridge.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connected: AtomicBool,
    pub(crate) topics: AtomicUsize,
    pub(crate) published: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) ignored: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

/// A publish on its way to the bridge.
#[derive(Debug)]
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
pub(crate) struct Publish {
    /// `None`: a broadcast.
    pub(crate) topic: Option<Arc<str>>,
    pub(crate) envelope: Bytes,
}

/// A change of the node's topics, for the bridge.
#[derive(Debug)]
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
pub(crate) enum Control {
    /// The topic got its first subscriber on this node.
    Subscribe(Arc<str>),
    /// The topic lost its last subscriber on this node.
    Unsubscribe(Arc<str>),
    /// Count connections (`topic: None`) or a topic's subscribers on every node.
    Ask {
        topic: Option<Arc<str>>,
        reply: async_channel::Sender<Result<ClusterCount, RemoteError>>,
    },
}

/// A count over every node of the cluster:
/// [`Clients::cluster_len`](crate::Clients::cluster_len),
/// [`Clients::cluster_subscribers`](crate::Clients::cluster_subscribers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterCount {
    /// The sum of the counts of the nodes that answered, this one included (each node's
    /// count is exact when it answers).
    pub total: usize,
    /// Nodes that answered, this one included.
    pub nodes: usize,
    /// Nodes the question reached, when the broker tells (Redis: the receivers of the
    /// question; `None` with NATS, which does not say).
    pub expected_nodes: Option<usize>,
}

impl ClusterCount {
    /// Whether every node the question reached answered in time (never known with NATS).
    pub fn is_complete(&self) -> bool {
        self.expected_nodes == Some(self.nodes)
    }
}

/// The cores' side of the bridge (in [`Cluster`](super::Cluster)).
#[derive(Debug)]
pub(crate) struct Link {
    node_id: u64,
    seq: AtomicU64,
    publishes: async_channel::Sender<Publish>,
    control: async_channel::Sender<Control>,
    pub(crate) stats: Arc<Stats>,
}

/// The bridge's side of the link.
#[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
pub(crate) struct LinkEnds {
    pub(crate) node_id: u64,
    pub(crate) publishes: async_channel::Receiver<Publish>,
    pub(crate) control: async_channel::Receiver<Control>,
    pub(crate) stats: Arc<Stats>,
}

impl Link {
    /// A link for a node with a random id, and the bridge's ends of it.
    #[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
    pub(crate) fn new() -> (Self, LinkEnds) {
        let node_id = fastrand::u64(1..);
        let (publishes_tx, publishes_rx) = async_channel::bounded(QUEUE_CAPACITY);
        let (control_tx, control_rx) = async_channel::unbounded();
        let stats = Arc::new(Stats::default());
        let link = Self {
            node_id,
            seq: AtomicU64::new(0),
            publishes: publishes_tx,
            control: control_tx,
            stats: Arc::clone(&stats),
        };
        let ends = LinkEnds {
            node_id,
            publishes: publishes_rx,
            control: control_rx,
            stats,
        };
        (link, ends)
    }

    /// Hands a message to the bridge for the other nodes (`topic: None`: a broadcast).
    pub(crate) fn publish(
        &self,
        topic: Option<&Arc<str>>,
        opcode: OpCode,
        payload: &[u8],
    ) -> Remote {
        if !self.stats.connected.load(Ordering::Acquire) {
            return self.failed(RemoteError::Down);
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let publish = Publish {
            topic: topic.cloned(),
            envelope: envelope::encode(opcode, self.node_id, seq, payload),
        };
        match self.publishes.try_send(publish) {
            Ok(()) => Remote::Queued,
            Err(async_channel::TrySendError::Full(_)) => self.failed(RemoteError::QueueFull),
            Err(async_channel::TrySendError::Closed(_)) => self.failed(RemoteError::Down),
        }
    }

    fn failed(&self, error: RemoteError) -> Remote {
        self.stats.failed.fetch_add(1, Ordering::Relaxed);
        Remote::Failed(error)
    }

    /// Tells the bridge a topic got its first local subscriber (`true`) or lost its last.
    /// Called under the cluster's topic lock, so the bridge sees the changes in order.
    pub(crate) fn topic_changed(&self, topic: &Arc<str>, subscribed: bool) {
        let msg = match subscribed {
            true => Control::Subscribe(Arc::clone(topic)),
            false => Control::Unsubscribe(Arc::clone(topic)),
        };
        // Unbounded: refused only once the bridge has stopped (shutdown).
        let _ = self.control.try_send(msg);
    }

    /// Asks every node for a count; the answer comes on the returned channel.
    pub(crate) fn ask(
        &self,
        topic: Option<&str>,
    ) -> Result<async_channel::Receiver<Result<ClusterCount, RemoteError>>, RemoteError> {
        if !self.stats.connected.load(Ordering::Acquire) {
            return Err(RemoteError::Down);
        }
        let (reply, answer) = async_channel::bounded(1);
        let ask = Control::Ask {
            topic: topic.map(Arc::from),
            reply,
        };
        self.control.try_send(ask).map_err(|_| RemoteError::Down)?;
        Ok(answer)
    }

    pub(crate) fn status(&self) -> BrokerStatus {
        let s = &self.stats;
        BrokerStatus {
            node_id: self.node_id,
            connected: s.connected.load(Ordering::Acquire),
            topics: s.topics.load(Ordering::Relaxed),
            published: s.published.load(Ordering::Relaxed),
            failed: s.failed.load(Ordering::Relaxed),
            received: s.received.load(Ordering::Relaxed),
            ignored: s.ignored.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Cluster;

    #[test]
    fn a_publish_while_down_fails_at_once_and_is_counted() {
        let (link, ends) = Link::new();
        let topic: Arc<str> = Arc::from("t");
        let remote = link.publish(Some(&topic), OpCode::Text, b"x");
        assert_eq!(remote, Remote::Failed(RemoteError::Down));
        assert_eq!(link.status().failed, 1);
        assert!(ends.publishes.try_recv().is_err());

        ends.stats.connected.store(true, Ordering::Release);
        assert_eq!(link.publish(None, OpCode::Binary, b"y"), Remote::Queued);
        let publish = ends.publishes.try_recv().unwrap();
        assert_eq!(publish.topic, None);
        let envelope = envelope::decode(&publish.envelope).unwrap();
        assert_eq!((envelope.node, envelope.seq), (link.status().node_id, 1));
        let body = envelope::Body::Message {
            opcode: OpCode::Binary,
            payload: Bytes::from_static(b"y"),
        };
        assert_eq!(envelope.body, body);
        assert_eq!(link.status().failed, 1);
    }

    #[test]
    fn a_full_queue_refuses_and_counts() {
        let (link, ends) = Link::new();
        ends.stats.connected.store(true, Ordering::Release);
        for _ in 0..QUEUE_CAPACITY {
            assert_eq!(link.publish(None, OpCode::Text, b""), Remote::Queued);
        }
        let remote = link.publish(None, OpCode::Text, b"");
        assert_eq!(remote, Remote::Failed(RemoteError::QueueFull));
        assert_eq!(link.status().failed, 1);
        drop(ends);
        let remote = link.publish(None, OpCode::Text, b"");
        assert_eq!(remote, Remote::Failed(RemoteError::Down));
    }

    #[test]
    fn the_bridge_hears_of_a_topic_on_its_first_subscriber_and_its_last() {
        let (link, ends) = Link::new();
        let (cluster, _inboxes) = Cluster::new(2, Some(link));
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        for (topic, delta) in [
            (&a, 1),
            (&a, 1),
            (&b, 1),
            (&a, -1),
            (&a, -1),
            (&b, -1),
            (&a, 1),
        ] {
            cluster.topic_count_changed(topic, delta);
        }
        let mut heard = Vec::new();
        while let Ok(change) = ends.control.try_recv() {
            heard.push(match change {
                Control::Subscribe(t) => format!("+{t}"),
                Control::Unsubscribe(t) => format!("-{t}"),
                Control::Ask { .. } => "?".to_owned(),
            });
        }
        assert_eq!(heard, ["+a", "+b", "-a", "-b", "+a"]);
    }
}
