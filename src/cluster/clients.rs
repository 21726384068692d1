//! The cross-core side: [`Cluster`] (shared by all cores of a server) and the [`Clients`]
//! handle users hold.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    rc::Rc,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, Mutex,
    },
};

use bytes::{Bytes, BytesMut};

use super::{
    broker::{BrokerStatus, ClusterCount, Link, Remote, RemoteError},
    local::LocalCore,
    ClientId,
};
use crate::{
    proto::{close::encode_close_payload, encode_frame, OpCode},
    ws::ClientHandle,
    Error, Message,
};

/// Work run on a core with its tracked clients.
pub(crate) type Visit = Box<dyn FnOnce(&[ClientHandle]) + Send>;

/// Messages a core accepts from other threads.
pub(crate) enum CoreMsg {
    /// To every tracked client of the core, but `except`.
    Broadcast {
        frame: Bytes,
        except: Option<ClientId>,
    },
    /// To every subscriber of `topic` on the core, but `except`.
    Publish {
        topic: Arc<str>,
        frame: Bytes,
        except: Option<ClientId>,
    },
    /// To one client.
    SendTo { id: ClientId, frame: Bytes },
    /// Close one client.
    Close {
        id: ClientId,
        code: u16,
        reason: String,
    },
    /// Run on the core with its clients (ids, for_each).
    Visit(Visit),
}

/// Most messages waiting in one core's inbox. Past it, senders are refused at once (never
/// blocked) and the loss is counted: a stalled core cannot grow memory or stop a publisher.
pub(crate) const INBOX_CAPACITY: usize = 65_536;

struct CoreLink {
    tx: async_channel::Sender<CoreMsg>,
    /// Tracked connections on the core, kept by the core itself.
    clients: AtomicUsize,
}

/// What one server's cores share.
pub(crate) struct Cluster {
    cores: Vec<CoreLink>,
    /// Subscribers of each topic, all cores together.
    topics: Mutex<HashMap<Arc<str>, usize>>,
    /// Messages refused because a core's inbox was full.
    inbox_dropped: AtomicU64,
    /// The way to the other nodes, when the server has a broker.
    broker: Option<Link>,
}

impl Cluster {
    /// A cluster of `cores` cores, with the inbox receiver of each; `broker` links it to the
    /// other nodes.
    pub(crate) fn new(
        cores: usize,
        broker: Option<Link>,
    ) -> (Arc<Self>, Vec<async_channel::Receiver<CoreMsg>>) {
        let mut links = Vec::with_capacity(cores);
        let mut receivers = Vec::with_capacity(cores);
        for _ in 0..cores {
            let (tx, rx) = async_channel::bounded(INBOX_CAPACITY);
            links.push(CoreLink {
                tx,
                clients: AtomicUsize::new(0),
            });
            receivers.push(rx);
        }
        let cluster = Self {
            cores: links,
            topics: Mutex::new(HashMap::new()),
            inbox_dropped: AtomicU64::new(0),
            broker,
        };
        (Arc::new(cluster), receivers)
    }

    pub(crate) fn client_count_changed(&self, core: usize, delta: isize) {
        if let Some(link) = self.cores.get(core) {
            if delta >= 0 {
                link.clients.fetch_add(delta as usize, Ordering::Relaxed);
            } else {
                link.clients
                    .fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn topic_count_changed(&self, topic: &Arc<str>, delta: isize) {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let count = topics.entry(Arc::clone(topic)).or_insert(0);
        let was = *count;
        *count = count.saturating_add_signed(delta);
        let now = *count;
        if now == 0 {
            topics.remove(topic);
        }
        // Under the lock: the bridge sees first-subscriber and last-subscriber in order.
        if let Some(link) = &self.broker {
            if was == 0 && now > 0 {
                link.topic_changed(topic, true);
            } else if was > 0 && now == 0 {
                link.topic_changed(topic, false);
            }
        }
    }

    /// Number of cores.
    #[cfg_attr(not(any(feature = "redis", feature = "nats")), allow(dead_code))]
    pub(crate) fn core_count(&self) -> usize {
        self.cores.len()
    }

    /// Tracked connections, all cores together.
    pub(crate) fn len(&self) -> usize {
        self.cores
            .iter()
            .map(|c| c.clients.load(Ordering::Relaxed))
            .sum()
    }

    /// Subscribers of `topic`, all cores together.
    pub(crate) fn subscribers(&self, topic: &str) -> usize {
        let topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        topics.get(topic).copied().unwrap_or(0)
    }

    /// Queues `msg` for `core`; false (and counted) when its inbox is full.
    pub(crate) fn post(&self, core: usize, msg: CoreMsg) -> bool {
        let Some(link) = self.cores.get(core) else {
            return false;
        };
        match link.tx.try_send(msg) {
            Ok(()) => true,
            Err(_) => {
                self.inbox_dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

/// How a broadcast or publish went out: which cores took it. The count of connections that
/// received it is not known here: each core delivers on its own; refusals by slow connections
/// are counted in their own close reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivery {
    /// Connections on the calling core that accepted it (delivered synchronously).
    pub local: usize,
    /// Other cores whose inbox took it.
    pub cores: usize,
    /// Cores whose inbox was full: the message was lost for them (and counted).
    pub dropped_cores: usize,
    /// The other nodes' copy, when the server has a broker
    /// ([`Server::broker`](crate::Server)).
    pub remote: Remote,
}

/// Every connection of a server, on every core (`fastify.websocketServer.clients`, and more):
/// counts, ids, direct messages, broadcast and topics. `Clone + Send + Sync`: usable from
/// handlers on any core and from other threads.
///
/// Calls from a core of the server reach that core's own connections synchronously and other
/// cores through their inboxes; calls from other threads go through the inboxes only.
/// Messages from one sender reach each recipient in the order sent.
///
/// ```
/// use ringsocket::{testing, App, Message};
///
/// let app = App::builder()
///     .ws("/chat", |mut ws, _req| async move {
///         ws.subscribe("news");
///         while let Some(Ok(message)) = ws.recv().await {
///             if message.is_close() {
///                 break;
///             }
///             // Everyone else on the topic, on every core.
///             ws.publish("news", message);
///         }
///     })
///     .build()
///     .unwrap();
/// testing::run(async move {
///     let mut a = app.inject_ws("/chat").connect().await.unwrap();
///     let mut b = app.inject_ws("/chat").connect().await.unwrap();
///     let clients = app.clients();
///     while clients.subscribers("news") < 2 {
///         monoio::time::sleep(std::time::Duration::from_millis(1)).await;
///     }
///     a.send(Message::text("hello")).await.unwrap();
///     assert_eq!(b.recv().await.unwrap().unwrap(), Message::text("hello"));
/// });
/// ```
#[derive(Clone)]
pub struct Clients {
    cluster: Arc<Cluster>,
}

impl fmt::Debug for Clients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clients")
            .field("cores", &self.cluster.cores.len())
            .field("len", &self.len())
            .finish()
    }
}

thread_local! {
    /// The core this thread runs, if it is a worker (or a test runtime with injected
    /// connections).
    static CURRENT: std::cell::RefCell<Option<Rc<LocalCore>>> = const { std::cell::RefCell::new(None) };
}

/// Makes `core` the current thread's core (for `Clients` calls made on it).
pub(crate) fn set_current_core(core: Option<Rc<LocalCore>>) {
    CURRENT.with(|c| *c.borrow_mut() = core);
}

impl Clients {
    pub(crate) fn new(cluster: Arc<Cluster>) -> Self {
        Self { cluster }
    }

    /// The clients of no server (zero cores): what an app or request not yet served sees.
    pub(crate) fn detached() -> Self {
        Self::new(Cluster::new(0, None).0)
    }

    /// This cluster's core running on the current thread, if any.
    fn local(&self) -> Option<Rc<LocalCore>> {
        CURRENT.with(|c| {
            c.borrow()
                .as_ref()
                .filter(|core| Arc::ptr_eq(core.cluster(), &self.cluster))
                .cloned()
        })
    }

    /// Tracked connections of this server, all cores together: exact at the moment it is read
    /// (each core counts its own as they open and close). With a broker, other nodes' clients
    /// are not counted.
    pub fn len(&self) -> usize {
        self.cluster.len()
    }

    /// Whether there is no tracked connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of cores.
    pub fn cores(&self) -> usize {
        self.cluster.cores.len()
    }

    /// Ids of every tracked connection, asked of every core.
    pub async fn ids(&self) -> Vec<ClientId> {
        let (tx, rx) = async_channel::unbounded();
        let asked = self.visit_all(move |clients| {
            let _ = tx.try_send(clients.iter().map(ClientHandle::id).collect::<Vec<_>>());
        });
        let mut ids = Vec::new();
        for _ in 0..asked {
            match rx.recv().await {
                Ok(mut part) => ids.append(&mut part),
                Err(_) => break,
            }
        }
        ids.sort();
        ids
    }

    /// Runs `f` on every core with that core's tracked connections, and resolves when all
    /// have run it. A call of `f` that panics is logged and the next connection is visited.
    pub fn for_each<F>(&self, f: F) -> impl Future<Output = ()> + 'static
    where
        F: Fn(&ClientHandle) + Send + Sync + 'static,
    {
        let f = Arc::new(f);
        let (tx, rx) = async_channel::unbounded::<()>();
        let asked = self.visit_all(move |clients| {
            for client in clients {
                // A callback that panics for one connection must not skip the others, nor
                // unwind through the core's inbox task (which would stop the core).
                let visit = std::panic::AssertUnwindSafe(|| f(client));
                if std::panic::catch_unwind(visit).is_err() {
                    tracing::error!(id = %client.id(), "for_each callback panicked");
                }
            }
            let _ = tx.try_send(());
        });
        async move {
            for _ in 0..asked {
                if rx.recv().await.is_err() {
                    break;
                }
            }
        }
    }

    /// Runs `visit` on every core (the current one synchronously); returns how many will run it.
    fn visit_all<V>(&self, visit: V) -> usize
    where
        V: Fn(&[ClientHandle]) + Send + Sync + 'static,
    {
        let visit = Arc::new(visit);
        let local = self.local();
        let mut asked = 0;
        for core in 0..self.cluster.cores.len() {
            if let Some(local) = local.as_ref().filter(|l| l.index() == core) {
                visit(&local.handles());
                asked += 1;
            } else {
                let visit = Arc::clone(&visit);
                if self
                    .cluster
                    .post(core, CoreMsg::Visit(Box::new(move |c| visit(c))))
                {
                    asked += 1;
                }
            }
        }
        asked
    }

    /// Sends a message to one connection, on whatever core it lives.
    ///
    /// # Errors
    ///
    /// On the connection's own core the send is immediate and its errors are those of
    /// [`WebSocket::send`](crate::WebSocket::send), plus [`Error::UnknownClient`]. From another
    /// core or thread the message is queued to the owning core: [`Error::InboxFull`] when that
    /// inbox is full; a client gone meanwhile is counted as a loss there.
    pub fn send_to(&self, id: ClientId, message: impl Into<Message>) -> Result<(), Error> {
        let frame = encode_message(&message.into())?;
        match self.local().filter(|l| l.index() == id.core()) {
            Some(local) => local.send_to(id, frame),
            None if id.core() >= self.cluster.cores.len() => Err(Error::UnknownClient(id)),
            None => match self.cluster.post(id.core(), CoreMsg::SendTo { id, frame }) {
                true => Ok(()),
                false => Err(Error::InboxFull { core: id.core() }),
            },
        }
    }

    /// Starts the close handshake of one connection, on whatever core it lives.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidClose`] for a code that may not be sent or a reason over 123 bytes; as
    /// [`send_to`](Self::send_to) otherwise.
    pub fn close(&self, id: ClientId, code: u16, reason: &str) -> Result<(), Error> {
        encode_close_payload(code, reason)?;
        match self.local().filter(|l| l.index() == id.core()) {
            Some(local) => local.close(id, code, reason),
            None if id.core() >= self.cluster.cores.len() => Err(Error::UnknownClient(id)),
            None => {
                let msg = CoreMsg::Close {
                    id,
                    code,
                    reason: reason.to_owned(),
                };
                match self.cluster.post(id.core(), msg) {
                    true => Ok(()),
                    false => Err(Error::InboxFull { core: id.core() }),
                }
            }
        }
    }

    /// Sends a message to every tracked connection on every core. Encoded once; every
    /// recipient writes the same bytes, except that with permessage-deflate it is compressed
    /// for each as that connection's own sends are: once per core and window size for those
    /// without context takeover (the shared mode), by its own compressor otherwise.
    ///
    /// # Errors
    ///
    /// [`Error::ControlTooLong`] / [`Error::InvalidClose`] for an unsendable message.
    pub fn broadcast(&self, message: impl Into<Message>) -> Result<Delivery, Error> {
        self.fan_out(None, None, message.into())
    }

    /// As [`broadcast`](Self::broadcast), skipping one connection (usually the sender).
    ///
    /// # Errors
    ///
    /// As [`broadcast`](Self::broadcast).
    pub fn broadcast_except(
        &self,
        except: ClientId,
        message: impl Into<Message>,
    ) -> Result<Delivery, Error> {
        self.fan_out(None, Some(except), message.into())
    }

    /// Sends a message to every subscriber of `topic`, on every core.
    ///
    /// # Errors
    ///
    /// As [`broadcast`](Self::broadcast).
    pub fn publish(&self, topic: &str, message: impl Into<Message>) -> Result<Delivery, Error> {
        self.fan_out(Some(Arc::from(topic)), None, message.into())
    }

    pub(crate) fn publish_except(
        &self,
        topic: &str,
        except: ClientId,
        message: Message,
    ) -> Result<Delivery, Error> {
        self.fan_out(Some(Arc::from(topic)), Some(except), message)
    }

    /// Subscribers of `topic` on this server, all cores together (exact; with a broker, other
    /// nodes' subscribers are not counted).
    pub fn subscribers(&self, topic: &str) -> usize {
        self.cluster.subscribers(topic)
    }

    /// Tracked connections on every node of the cluster, asked over the broker (see
    /// [`ClusterCount`] for how exact). Without a broker: this server's [`len`](Self::len).
    ///
    /// # Errors
    ///
    /// [`RemoteError::Down`] while the broker is unreachable.
    pub fn cluster_len(
        &self,
    ) -> impl Future<Output = Result<ClusterCount, RemoteError>> + Send + 'static {
        self.ask(None)
    }

    /// Subscribers of `topic` on every node of the cluster, asked over the broker (see
    /// [`ClusterCount`] for how exact). Without a broker: this server's
    /// [`subscribers`](Self::subscribers).
    ///
    /// # Errors
    ///
    /// [`RemoteError::Down`] while the broker is unreachable.
    pub fn cluster_subscribers(
        &self,
        topic: &str,
    ) -> impl Future<Output = Result<ClusterCount, RemoteError>> + Send + 'static {
        self.ask(Some(topic))
    }

    fn ask(
        &self,
        topic: Option<&str>,
    ) -> impl Future<Output = Result<ClusterCount, RemoteError>> + Send + 'static {
        let asked = match &self.cluster.broker {
            Some(link) => link.ask(topic).map(Some),
            None => Ok(None),
        };
        let local = match topic {
            None => self.cluster.len(),
            Some(topic) => self.cluster.subscribers(topic),
        };
        async move {
            match asked? {
                Some(answer) => answer.recv().await.unwrap_or(Err(RemoteError::Down)),
                None => Ok(ClusterCount {
                    total: local,
                    nodes: 1,
                    expected_nodes: Some(1),
                }),
            }
        }
    }

    /// The broker link's state and counters (`None` without a broker). See
    /// [`Server::broker`](crate::Server) for what crosses nodes.
    pub fn broker(&self) -> Option<BrokerStatus> {
        self.cluster.broker.as_ref().map(Link::status)
    }

    /// Messages lost because a core's inbox was full (a stalled core), since the server
    /// started.
    pub fn inbox_dropped(&self) -> u64 {
        self.cluster.inbox_dropped.load(Ordering::Relaxed)
    }

    fn fan_out(
        &self,
        topic: Option<Arc<str>>,
        except: Option<ClientId>,
        message: Message,
    ) -> Result<Delivery, Error> {
        let frame = encode_message(&message)?;
        let local = self.local();
        let mut delivery = Delivery::default();
        for core in 0..self.cluster.cores.len() {
            if let Some(local) = local.as_ref().filter(|l| l.index() == core) {
                delivery.local += match &topic {
                    Some(topic) => local.publish(topic, &frame, except),
                    None => local.broadcast(&frame, except),
                };
                continue;
            }
            let msg = match &topic {
                Some(topic) => CoreMsg::Publish {
                    topic: Arc::clone(topic),
                    frame: frame.clone(),
                    except,
                },
                None => CoreMsg::Broadcast {
                    frame: frame.clone(),
                    except,
                },
            };
            if self.cluster.post(core, msg) {
                delivery.cores += 1;
            } else {
                delivery.dropped_cores += 1;
            }
        }
        if let Some(link) = &self.cluster.broker {
            let (opcode, payload) = data_of(&message);
            delivery.remote = link.publish(topic.as_ref(), opcode, payload);
        }
        Ok(delivery)
    }
}

/// The opcode and payload of a message that [`encode_message`] accepted.
fn data_of(message: &Message) -> (OpCode, &[u8]) {
    match message {
        Message::Text(t) => (OpCode::Text, t.as_bytes()),
        Message::Binary(b) => (OpCode::Binary, b),
        Message::Ping(b) => (OpCode::Ping, b),
        Message::Pong(b) => (OpCode::Pong, b),
        Message::Close(_) => (OpCode::Close, &[]),
    }
}

/// The frame for `message`, encoded once (server frames are unmasked: the same bytes for every
/// recipient).
pub(crate) fn encode_message(message: &Message) -> Result<Bytes, Error> {
    let (opcode, payload): (OpCode, &[u8]) = match message {
        Message::Text(t) => (OpCode::Text, t.as_bytes()),
        Message::Binary(b) => (OpCode::Binary, b),
        Message::Ping(b) | Message::Pong(b) if b.len() > 125 => {
            return Err(Error::ControlTooLong(b.len()))
        }
        Message::Ping(b) => (OpCode::Ping, b),
        Message::Pong(b) => (OpCode::Pong, b),
        Message::Close(_) => {
            return Err(Error::InvalidMessage(
                "a close frame is sent with close(), not sent to many",
            ))
        }
    };
    let mut frame = BytesMut::with_capacity(payload.len() + 10);
    encode_frame(&mut frame, true, false, opcode, None, payload);
    Ok(frame.freeze())
}
