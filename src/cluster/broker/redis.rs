//! Redis pub/sub as a [`Broker`].

use std::{collections::HashSet, fmt, time::Duration};

use bytes::Bytes;
use futures_util::StreamExt;
use redis::aio::{MultiplexedConnection, PubSubSink, PubSubStream};

use super::{Broker, BrokerError, Channel, Incoming, Outgoing};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Channels per `SUBSCRIBE` when (re)subscribing (as Centrifugo batches them).
const SUBSCRIBE_BATCH: usize = 512;

/// Redis pub/sub (the `redis` feature): two connections per node, one that publishes in
/// pipelined batches and one that subscribes. Channels are `{prefix}#bc#` for broadcasts,
/// `{prefix}#t#{topic}#` for topics, `{prefix}#q#` and `{prefix}#n#{node}#` for the
/// questions and answers of cluster-wide counts. Works with any Redis-protocol server with pub/sub
/// (Redis, Valkey, KeyDB). Reconnects are the bridge's: after a loss both connections are
/// made again and every channel is subscribed again.
///
/// ```no_run
/// # #[cfg(feature = "redis")] {
/// use ringsocket::{App, RedisBroker, Server};
///
/// let app = App::builder().build().unwrap();
/// let broker = RedisBroker::new("redis://127.0.0.1:6379/").unwrap().prefix("chat");
/// let server = Server::new(app).broker(broker).listen("0.0.0.0:3000").unwrap();
/// server.run();
/// # }
/// ```
pub struct RedisBroker {
    client: redis::Client,
    prefix: String,
    publisher: Option<MultiplexedConnection>,
    sink: Option<PubSubSink>,
    stream: Option<PubSubStream>,
    subscribed: HashSet<String>,
}

impl fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBroker")
            .field("server", &self.client.get_connection_info().addr())
            .field("prefix", &self.prefix)
            .field("connected", &self.publisher.is_some())
            .finish()
    }
}

impl RedisBroker {
    /// A broker for the Redis server at `url` (`redis://host:port/`), with the prefix
    /// `ringsocket`. Nothing connects until the server starts.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Config`] for a URL the `redis` crate does not accept.
    pub fn new(url: &str) -> Result<Self, BrokerError> {
        let client = redis::Client::open(url)
            .map_err(|e| BrokerError::Config(format!("redis url {url:?}: {e}")))?;
        Ok(Self {
            client,
            prefix: "ringsocket".into(),
            publisher: None,
            sink: None,
            stream: None,
            subscribed: HashSet::new(),
        })
    }

    /// The prefix of every channel: apps sharing one Redis keep apart by it. Default
    /// `ringsocket`.
    #[must_use]
    pub fn prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.prefix);
        self
    }

    fn drop_connections(&mut self) {
        self.publisher = None;
        self.sink = None;
        self.stream = None;
        self.subscribed.clear();
    }
}

fn lost(e: impl fmt::Display) -> BrokerError {
    BrokerError::Lost(e.to_string())
}

impl Broker for RedisBroker {
    fn channel(&self, channel: Channel<'_>) -> String {
        let prefix = &self.prefix;
        match channel {
            Channel::Broadcast => format!("{prefix}#bc#"),
            Channel::Topic(topic) => format!("{prefix}#t#{topic}#"),
            Channel::Questions => format!("{prefix}#q#"),
            Channel::Node(node) => format!("{prefix}#n#{node}#"),
        }
    }

    async fn ask(&mut self, channel: &str, payload: Bytes) -> Result<Option<usize>, BrokerError> {
        let Some(publisher) = self.publisher.as_mut() else {
            return Err(lost("not connected"));
        };
        let receivers: Result<usize, _> = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(&payload[..])
            .query_async(publisher)
            .await;
        match receivers {
            Ok(receivers) => Ok(Some(receivers)),
            Err(e) => {
                self.drop_connections();
                Err(lost(e))
            }
        }
    }

    async fn connect(&mut self, channels: &[String]) -> Result<(), BrokerError> {
        self.drop_connections();
        let connect = |e: String| BrokerError::Connect(e);
        let publisher = tokio::time::timeout(
            CONNECT_TIMEOUT,
            self.client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| connect("timed out".into()))?
        .map_err(|e| connect(e.to_string()))?;
        let pubsub = tokio::time::timeout(CONNECT_TIMEOUT, self.client.get_async_pubsub())
            .await
            .map_err(|_| connect("timed out".into()))?
            .map_err(|e| connect(e.to_string()))?;
        let (mut sink, stream) = pubsub.split();
        for chunk in channels.chunks(SUBSCRIBE_BATCH) {
            sink.subscribe(chunk).await.map_err(lost)?;
        }
        self.subscribed = channels.iter().cloned().collect();
        self.publisher = Some(publisher);
        self.sink = Some(sink);
        self.stream = Some(stream);
        Ok(())
    }

    async fn publish(&mut self, batch: &[Outgoing]) -> Result<u64, BrokerError> {
        let Some(publisher) = self.publisher.as_mut() else {
            return Err(lost("not connected"));
        };
        let mut pipe = redis::pipe();
        for message in batch {
            pipe.cmd("PUBLISH")
                .arg(&message.channel)
                .arg(&message.payload[..])
                .ignore();
        }
        let sent: Result<(), _> = pipe.query_async(publisher).await;
        if let Err(e) = sent {
            self.drop_connections();
            return Err(lost(e));
        }
        Ok(0)
    }

    async fn subscribe(&mut self, channel: &str) -> Result<(), BrokerError> {
        if self.subscribed.contains(channel) {
            return Ok(());
        }
        let Some(sink) = self.sink.as_mut() else {
            return Err(lost("not connected"));
        };
        if let Err(e) = sink.subscribe(channel).await {
            self.drop_connections();
            return Err(lost(e));
        }
        self.subscribed.insert(channel.to_owned());
        Ok(())
    }

    async fn unsubscribe(&mut self, channel: &str) -> Result<(), BrokerError> {
        if !self.subscribed.remove(channel) {
            return Ok(());
        }
        let Some(sink) = self.sink.as_mut() else {
            return Err(lost("not connected"));
        };
        if let Err(e) = sink.unsubscribe(channel).await {
            self.drop_connections();
            return Err(lost(e));
        }
        Ok(())
    }

    async fn next(&mut self) -> Incoming {
        let Some(stream) = self.stream.as_mut() else {
            return std::future::pending().await;
        };
        match stream.next().await {
            Some(message) => Incoming::Message {
                channel: message.get_channel_name().to_owned(),
                payload: Bytes::copy_from_slice(message.get_payload_bytes()),
            },
            None => {
                self.drop_connections();
                Incoming::Lost(lost("the subscription connection closed"))
            }
        }
    }
}
