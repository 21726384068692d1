//! Every connection of every core, seen as one set: client tracking, broadcast and topics
//! across cores.
//!
//! Each core keeps its own registry ([`local::LocalCore`]): its connections and their topic
//! subscriptions, in `Rc`/`RefCell`, touched only by that core. Cores never share a
//! connection: work for another core travels as a message to that core's inbox (bounded,
//! drained in batches by the core itself). A message for many recipients is encoded once into
//! a [`Bytes`](bytes::Bytes) frame that every recipient on every core writes as it is.
//!
//! What is shared across threads is small and off the per-message path: per-core connection
//! counts (atomics, for an exact `len()`), the subscriber count of each topic (a mutex taken on
//! subscribe and unsubscribe only), and the inboxes' senders.
//!
//! Across processes, broadcast and topics go through a broker (`broker`, behind the `redis`
//! and `nats` features).

pub(crate) mod broker;
pub(crate) mod clients;
mod id;
pub(crate) mod local;

#[cfg(feature = "nats")]
pub use broker::NatsBroker;
#[cfg(feature = "redis")]
pub use broker::RedisBroker;
#[cfg(any(feature = "redis", feature = "nats"))]
pub use broker::{Broker, BrokerError, Channel, Incoming, Outgoing};
pub use broker::{BrokerStatus, ClusterCount, Remote, RemoteError};
pub(crate) use clients::Cluster;
pub use clients::{Clients, Delivery};
pub use id::ClientId;
