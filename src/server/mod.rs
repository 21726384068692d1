//! The only module that knows monoio, threads, CPU pinning and socket2.
//!
//! [`Server::listen`] binds one `SO_REUSEPORT` listener per worker, starts one pinned thread
//! per worker, each running its own monoio runtime (io_uring, or epoll when
//! `MONOIO_FORCE_LEGACY_DRIVER=1` or io_uring is missing), and returns a [`ServerHandle`].
//! A connection lives its whole life on the core that accepted it.

pub(crate) mod catch;
pub(crate) mod conn;
mod defer;
mod drive;
mod io_util;
mod read_buf;
mod signal;
pub(crate) mod worker;
mod ws_conn;

use std::{
    io,
    net::{SocketAddr, ToSocketAddrs},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    app::App,
    cluster::{Clients, Cluster},
    http::HeadLimits,
};

/// Settings of the server itself (the app's own options live in [`crate::WsOptions`]).
#[derive(Debug, Clone)]
pub(crate) struct ServerConfig {
    pub(crate) handshake_timeout: Duration,
    pub(crate) head_limits: HeadLimits,
    pub(crate) drain_timeout: Duration,
    pub(crate) backlog: i32,
    pub(crate) pin_threads: bool,
    pub(crate) max_connections: usize,
    pub(crate) max_handshakes: usize,
}

/// Builds and starts a server for an [`App`].
///
/// ```no_run
/// use ringsocket::{App, Server};
///
/// let app = App::builder()
///     .ws("/", |mut ws, _req| async move {
///         while let Some(Ok(m)) = ws.recv().await {
///             let _ = ws.send(m).await;
///         }
///     })
///     .build()
///     .unwrap();
/// let server = Server::new(app).workers(2).listen("127.0.0.1:0").unwrap();
/// println!("listening on {}", server.local_addr());
/// server.run(); // until SIGINT/SIGTERM
/// ```
#[derive(Debug)]
pub struct Server {
    app: App,
    workers: Option<usize>,
    config: ServerConfig,
    #[cfg(any(feature = "redis", feature = "nats"))]
    broker: Option<crate::cluster::broker::BrokerStarter>,
}

impl Server {
    /// A server for `app` with the defaults below.
    pub fn new(app: App) -> Self {
        Self {
            app,
            workers: None,
            config: ServerConfig {
                handshake_timeout: Duration::from_secs(10),
                head_limits: HeadLimits::default(),
                drain_timeout: Duration::from_secs(10),
                backlog: 1024,
                pin_threads: true,
                max_connections: 65_536,
                max_handshakes: 1024,
            },
            #[cfg(any(feature = "redis", feature = "nats"))]
            broker: None,
        }
    }

    /// Makes this server one node of several: broadcasts and topic publishes also reach the
    /// other nodes (processes, machines) connected to the same broker, and theirs reach this
    /// one. A bridge thread runs the broker's client; the server does not wait for it to
    /// connect (see [`Clients::broker`](crate::Clients::broker)).
    ///
    /// What crosses nodes, and what happens while the broker is down: local delivery is as
    /// without a broker; each node subscribes to a topic's channel while it has local
    /// subscribers; delivery across nodes is at most once, in order per publishing node;
    /// a publish made while the broker is unreachable reports
    /// [`Remote::Failed`](crate::Remote::Failed) in its [`Delivery`](crate::Delivery) and is
    /// counted in [`BrokerStatus::failed`](crate::BrokerStatus::failed); the bridge
    /// reconnects by itself. Counts ([`Clients::len`](crate::Clients::len),
    /// [`Clients::subscribers`](crate::Clients::subscribers)) and ids stay per node.
    #[cfg(any(feature = "redis", feature = "nats"))]
    #[must_use]
    pub fn broker(mut self, broker: impl crate::cluster::Broker) -> Self {
        self.broker = Some(crate::cluster::broker::start(broker));
        self
    }

    /// Number of worker threads, each with its own runtime and listener. Default: the number
    /// of CPUs this process may run on (`sched_getaffinity`, so cpusets and `taskset` are
    /// respected).
    #[must_use]
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers.max(1));
        self
    }

    /// Whether each worker is pinned to one CPU. Default true.
    #[must_use]
    pub fn pin_threads(mut self, pin: bool) -> Self {
        self.config.pin_threads = pin;
        self
    }

    /// Time a client has to send a complete request head; then it gets 408. Default 10 s.
    #[must_use]
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// Largest request head in bytes; larger gets 431. Default 8 KiB.
    #[must_use]
    pub fn max_head_bytes(mut self, bytes: usize) -> Self {
        self.config.head_limits.max_bytes = bytes;
        self
    }

    /// Most header fields in a request; more gets 431. Default 64.
    #[must_use]
    pub fn max_headers(mut self, headers: usize) -> Self {
        self.config.head_limits.max_headers = headers.max(1);
        self
    }

    /// On shutdown, how long connections get to finish their close handshake (1001) before
    /// they are cut. Default 10 s.
    #[must_use]
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.config.drain_timeout = timeout;
        self
    }

    /// Most connections the server holds at once, all cores together, in either phase (HTTP
    /// or WebSocket). A connection accepted beyond it is answered 503 and closed without its
    /// request being read; the ones already open are not touched. Default 65,536.
    #[must_use]
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.config.max_connections = connections.max(1);
        self
    }

    /// Most connections each core keeps in their HTTP phase (reading a request head, running
    /// upgrade hooks, serving plain requests) at once; more are answered 503 and closed, so a
    /// flood of slow or stalled handshakes cannot grow a core's memory without bound.
    /// Upgraded connections do not count. Default 1024 per core.
    #[must_use]
    pub fn max_handshakes(mut self, handshakes: usize) -> Self {
        self.config.max_handshakes = handshakes.max(1);
        self
    }

    /// Listen backlog of each worker's socket. Default 1024.
    #[must_use]
    pub fn backlog(mut self, backlog: i32) -> Self {
        self.config.backlog = backlog.max(1);
        self
    }

    /// Binds every worker's listener to `addr` (port 0 picks one free port shared by all),
    /// starts the workers and returns once all of them are accepting.
    ///
    /// # Errors
    ///
    /// Address resolution, socket, bind or listen errors, and runtime start-up failures.
    pub fn listen(self, addr: impl ToSocketAddrs) -> io::Result<ServerHandle> {
        let addr = addr.to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "no address to listen on")
        })?;
        let cpus = allowed_cpus();
        let workers = self.workers.unwrap_or(cpus.len()).max(1);

        let mut listeners = Vec::with_capacity(workers);
        let mut bound = addr;
        for _ in 0..workers {
            let listener = bind_listener(bound, self.config.backlog)?;
            // Port 0: the first bind picks the port, the others share it.
            bound = listener.local_addr()?.as_socket().unwrap_or(bound);
            listeners.push(listener);
        }

        let shutdown = Arc::new(Shutdown::default());
        let config = Arc::new(self.config);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let mut threads = Vec::with_capacity(workers);
        #[cfg(any(feature = "redis", feature = "nats"))]
        let (link, bridge) = match self.broker {
            Some(starter) => {
                let (link, ends) = crate::cluster::broker::Link::new();
                (Some(link), Some((starter, ends)))
            }
            None => (None, None),
        };
        #[cfg(not(any(feature = "redis", feature = "nats")))]
        let link = None;
        let (cluster, inboxes) = Cluster::new(workers, link);
        let connections = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let clients = Clients::new(Arc::clone(&cluster));
        self.app.serve_with(clients.clone());
        for ((index, listener), inbox) in listeners.into_iter().enumerate().zip(inboxes) {
            let cpu = config.pin_threads.then(|| cpus[index % cpus.len()]);
            let ctx = worker::WorkerContext {
                index,
                cpu,
                listener: listener.into(),
                app: self.app.clone(),
                config: Arc::clone(&config),
                shutdown: shutdown.receiver(),
                ready: ready_tx.clone(),
                cluster: Arc::clone(&cluster),
                inbox,
                connections: Arc::clone(&connections),
            };
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ringsocket-{index}"))
                    .spawn(move || worker::run(ctx))?,
            );
        }
        drop(ready_tx);
        #[cfg(any(feature = "redis", feature = "nats"))]
        if let Some((starter, ends)) = bridge {
            let bridging = crate::cluster::broker::Bridging {
                cluster: Arc::clone(&cluster),
                ends,
                shutdown: shutdown.receiver(),
            };
            match starter.spawn(bridging) {
                Ok(thread) => threads.push(thread),
                Err(e) => {
                    shutdown.trigger();
                    return Err(e);
                }
            }
        }
        let mut driver = Driver::IoUring;
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(d)) => {
                    if d == Driver::Epoll {
                        driver = Driver::Epoll;
                    }
                }
                Ok(Err(e)) => {
                    shutdown.trigger();
                    return Err(e);
                }
                Err(_) => {
                    shutdown.trigger();
                    return Err(io::Error::other("a worker thread exited during start-up"));
                }
            }
        }
        Ok(ServerHandle {
            local_addr: bound,
            workers,
            driver,
            clients,
            shutdown,
            threads,
        })
    }
}

/// The I/O driver under the workers' runtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// io_uring (the default where the kernel allows it).
    IoUring,
    /// epoll: io_uring is unavailable, or `MONOIO_FORCE_LEGACY_DRIVER=1` is set.
    Epoll,
}

impl std::fmt::Display for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        })
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    workers: usize,
    driver: Driver,
    clients: Clients,
    shutdown: Arc<Shutdown>,
    threads: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// The address the listeners are bound to (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The I/O driver the workers run on.
    pub fn driver(&self) -> Driver {
        self.driver
    }

    /// Every connection of this server, on every core.
    pub fn clients(&self) -> Clients {
        self.clients.clone()
    }

    /// Starts a graceful shutdown: every core stops accepting, upgrades still in progress get
    /// 503, open connections get a close frame 1001 after their queued messages, and whatever
    /// has not finished by the drain timeout is cut. Returns at once; [`wait`](Self::wait)
    /// blocks until it is done. Calling it twice is harmless.
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }

    /// A `Send + Sync` handle that can start the shutdown from anywhere.
    pub fn shutdown_trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger(Arc::clone(&self.shutdown))
    }

    /// Blocks until every worker has stopped (after a shutdown).
    pub fn wait(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }

    /// Blocks until SIGINT or SIGTERM (or [`shutdown`](Self::shutdown) from elsewhere), then
    /// shuts down gracefully and returns when every worker has stopped.
    pub fn run(self) {
        if let Err(e) = self.watch_signals() {
            tracing::error!("cannot watch signals ({e}); stop with the shutdown handle");
        }
        self.shutdown.wait_triggered();
        self.wait();
    }

    /// Makes SIGINT and SIGTERM start this server's graceful shutdown (a second signal exits
    /// the process at once with status 130). [`run`](Self::run) does this itself; call it
    /// earlier to close the window between `listen` and `run`.
    ///
    /// # Errors
    ///
    /// When the signal handlers or their thread cannot be set up.
    pub fn watch_signals(&self) -> io::Result<()> {
        signal::watch(Arc::downgrade(&self.shutdown))
    }
}

/// Starts a server's graceful shutdown; see [`ServerHandle::shutdown`].
#[derive(Debug, Clone)]
pub struct ShutdownTrigger(Arc<Shutdown>);

impl ShutdownTrigger {
    /// Starts the shutdown.
    pub fn shutdown(&self) {
        self.0.trigger();
    }
}

/// The shutdown signal, fanned out to every core by closing a channel (which wakes every
/// receiver at once, across threads).
#[derive(Debug)]
pub(crate) struct Shutdown {
    tx: async_channel::Sender<()>,
    rx: async_channel::Receiver<()>,
    triggered: Mutex<bool>,
    cond: Condvar,
}

impl Default for Shutdown {
    fn default() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Self {
            tx,
            rx,
            triggered: Mutex::new(false),
            cond: Condvar::new(),
        }
    }
}

impl Shutdown {
    pub(crate) fn trigger(&self) {
        self.tx.close();
        *self.triggered.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.cond.notify_all();
    }

    fn receiver(&self) -> async_channel::Receiver<()> {
        self.rx.clone()
    }

    fn wait_triggered(&self) {
        let mut triggered = self.triggered.lock().unwrap_or_else(|e| e.into_inner());
        while !*triggered {
            triggered = self.cond.wait(triggered).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn bind_listener(addr: SocketAddr, backlog: i32) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    // monoio's from_std does not set O_NONBLOCK, and a blocking listener hangs the epoll
    // driver.
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket)
}

/// The CPUs this process may run on, from `sched_getaffinity` (so containers and `taskset`
/// are respected), falling back to `0..available_parallelism`.
pub(crate) fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this process.
    let cpus = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) == 0 {
            (0..libc::CPU_SETSIZE as usize)
                .filter(|&cpu| libc::CPU_ISSET(cpu, &set))
                .collect()
        } else {
            Vec::new()
        }
    };
    if cpus.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..n).collect()
    } else {
        cpus
    }
}
