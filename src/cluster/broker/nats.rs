//! NATS core as a [`Broker`].

use std::{collections::HashMap, fmt, time::Duration};

use async_nats::{connection::State, Client, ConnectOptions, Event};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{envelope, Broker, BrokerError, Channel, Incoming, Outgoing};

/// How long one connection attempt (or one flush) may take.
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long `connect` waits for the client's own reconnection before reporting it pending.
const RECONNECT_WAIT: Duration = Duration::from_secs(1);

/// NATS core pub/sub (the `nats` feature), on one connection per node made with `no_echo`.
/// Subjects are `{prefix}.bc` for broadcasts and `{prefix}.t.{token}` for topics, the topic
/// escaped into one token (letters, digits, `-`, `_` as they are; any other byte `%XX`), and
/// `{prefix}.q` and `{prefix}.n.{node}` for the questions and answers of cluster-wide counts.
///
/// The client (`async-nats`) reconnects by itself and restores its subscriptions; the bridge
/// treats the time between its `Disconnected` and `Connected` events as down. Messages handed
/// to the client just before a loss was noticed may still go out after the reconnection;
/// they are counted failed all the same (NATS core has no acknowledgement).
///
/// ```no_run
/// # #[cfg(feature = "nats")] {
/// use ringsocket::{App, NatsBroker, Server};
///
/// let app = App::builder().build().unwrap();
/// let broker = NatsBroker::new("nats://127.0.0.1:4222").prefix("chat").unwrap();
/// let server = Server::new(app).broker(broker).listen("0.0.0.0:3000").unwrap();
/// server.run();
/// # }
/// ```
pub struct NatsBroker {
    url: String,
    prefix: String,
    client: Option<Client>,
    events: Option<mpsc::UnboundedReceiver<Event>>,
    /// One forwarding task per subscribed subject.
    subscriptions: HashMap<String, JoinHandle<()>>,
    inbound_tx: mpsc::UnboundedSender<(String, Bytes)>,
    inbound_rx: mpsc::UnboundedReceiver<(String, Bytes)>,
}

impl fmt::Debug for NatsBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsBroker")
            .field("url", &self.url)
            .field("prefix", &self.prefix)
            .field("subscriptions", &self.subscriptions.len())
            .finish()
    }
}

impl NatsBroker {
    /// A broker for the NATS server at `url` (`nats://host:port`, or `host:port`), with the
    /// prefix `ringsocket`. Nothing connects until the server starts.
    pub fn new(url: &str) -> Self {
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel();
        Self {
            url: url.to_owned(),
            prefix: "ringsocket".into(),
            client: None,
            events: None,
            subscriptions: HashMap::new(),
            inbound_tx,
            inbound_rx,
        }
    }

    /// The first tokens of every subject: apps sharing one NATS keep apart by it. Default
    /// `ringsocket`.
    ///
    /// # Errors
    ///
    /// [`BrokerError::Config`] unless `prefix` is dot-separated non-empty tokens without
    /// whitespace, `*` or `>`.
    pub fn prefix(mut self, prefix: &str) -> Result<Self, BrokerError> {
        if !envelope::valid_nats_prefix(prefix) {
            return Err(BrokerError::Config(format!(
                "{prefix:?} cannot start NATS subjects"
            )));
        }
        prefix.clone_into(&mut self.prefix);
        Ok(self)
    }

    /// Waits (bounded) until the client says it is connected.
    async fn wait_connected(&mut self) -> Result<(), BrokerError> {
        let (Some(client), Some(events)) = (self.client.as_ref(), self.events.as_mut()) else {
            return Err(BrokerError::Connect("no client".into()));
        };
        // Events from before now tell nothing the state does not.
        while events.try_recv().is_ok() {}
        let deadline = tokio::time::Instant::now() + RECONNECT_WAIT;
        while client.connection_state() != State::Connected {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    return Err(BrokerError::Connect(
                        "the client is still reconnecting".into(),
                    ))
                }
            }
        }
        Ok(())
    }
}

fn lost(e: impl fmt::Display) -> BrokerError {
    BrokerError::Lost(e.to_string())
}

impl Broker for NatsBroker {
    fn channel(&self, channel: Channel<'_>) -> String {
        let prefix = &self.prefix;
        match channel {
            Channel::Broadcast => format!("{prefix}.bc"),
            Channel::Topic(topic) => format!("{prefix}.t.{}", envelope::nats_token(topic)),
            Channel::Questions => format!("{prefix}.q"),
            Channel::Node(node) => format!("{prefix}.n.{node}"),
        }
    }

    async fn ask(&mut self, channel: &str, payload: Bytes) -> Result<Option<usize>, BrokerError> {
        let message = Outgoing {
            channel: channel.to_owned(),
            payload,
        };
        match self.publish(&[message]).await? {
            0 => Ok(None),
            _ => Err(lost("the question was refused")),
        }
    }

    async fn connect(&mut self, channels: &[String]) -> Result<(), BrokerError> {
        if self.client.is_none() {
            let (events_tx, events_rx) = mpsc::unbounded_channel();
            let options = ConnectOptions::new()
                .name("ringsocket")
                .no_echo()
                .connection_timeout(TIMEOUT)
                .max_reconnects(None)
                .reconnect_delay_callback(|attempts| {
                    let shift = attempts.min(5) as u32;
                    Duration::from_millis(50 << shift).min(Duration::from_secs(1))
                })
                .event_callback(move |event| {
                    let events_tx = events_tx.clone();
                    async move {
                        let _ = events_tx.send(event);
                    }
                });
            let client = tokio::time::timeout(TIMEOUT, options.connect(self.url.as_str()))
                .await
                .map_err(|_| BrokerError::Connect("timed out".into()))?
                .map_err(|e| BrokerError::Connect(e.to_string()))?;
            self.client = Some(client);
            self.events = Some(events_rx);
        }
        self.wait_connected().await?;
        // The client restores its own subscriptions; make the set exactly `channels`.
        let stale: Vec<String> = self
            .subscriptions
            .keys()
            .filter(|s| !channels.contains(s))
            .cloned()
            .collect();
        for subject in stale {
            self.unsubscribe(&subject).await?;
        }
        for subject in channels {
            self.subscribe(subject).await?;
        }
        Ok(())
    }

    async fn publish(&mut self, batch: &[Outgoing]) -> Result<u64, BrokerError> {
        let Some(client) = self.client.as_ref() else {
            return Err(lost("not connected"));
        };
        if client.connection_state() != State::Connected {
            return Err(lost("disconnected"));
        }
        let mut refused = 0;
        for message in batch {
            if let Err(e) = client
                .publish(message.channel.clone(), message.payload.clone())
                .await
            {
                match e.kind() {
                    async_nats::client::PublishErrorKind::MaxPayloadExceeded
                    | async_nats::client::PublishErrorKind::InvalidSubject => {
                        tracing::debug!(subject = message.channel, "nats refused a publish: {e}");
                        refused += 1;
                    }
                    _ => return Err(lost(e)),
                }
            }
        }
        match tokio::time::timeout(TIMEOUT, client.flush()).await {
            Ok(Ok(())) => Ok(refused),
            Ok(Err(e)) => Err(lost(e)),
            Err(_) => Err(lost("flush timed out")),
        }
    }

    async fn subscribe(&mut self, channel: &str) -> Result<(), BrokerError> {
        if self.subscriptions.contains_key(channel) {
            return Ok(());
        }
        let Some(client) = self.client.as_ref() else {
            return Err(lost("not connected"));
        };
        let mut subscriber = client.subscribe(channel.to_owned()).await.map_err(lost)?;
        let tx = self.inbound_tx.clone();
        let subject = channel.to_owned();
        let task = tokio::spawn(async move {
            while let Some(message) = subscriber.next().await {
                if tx.send((subject.clone(), message.payload)).is_err() {
                    break;
                }
            }
        });
        self.subscriptions.insert(channel.to_owned(), task);
        Ok(())
    }

    async fn unsubscribe(&mut self, channel: &str) -> Result<(), BrokerError> {
        // Dropping the subscriber (with its task) sends the UNSUB.
        if let Some(task) = self.subscriptions.remove(channel) {
            task.abort();
        }
        Ok(())
    }

    async fn next(&mut self) -> Incoming {
        loop {
            let event = match self.events.as_mut() {
                Some(events) => tokio::select! {
                    event = events.recv() => event,
                    inbound = self.inbound_rx.recv() => match inbound {
                        Some((channel, payload)) => return Incoming::Message { channel, payload },
                        None => return std::future::pending().await,
                    },
                },
                None => return std::future::pending().await,
            };
            match event {
                Some(Event::Disconnected) => return Incoming::Lost(lost("disconnected")),
                Some(Event::Closed) | None => {
                    self.client = None;
                    self.events = None;
                    for (_, task) in self.subscriptions.drain() {
                        task.abort();
                    }
                    return Incoming::Lost(lost("the client closed"));
                }
                Some(other) => tracing::debug!("nats: {other}"),
            }
        }
    }
}
