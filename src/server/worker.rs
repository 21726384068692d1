//! One worker: a pinned thread running a monoio runtime, its listener's accept loop, and the
//! registry of the connections it owns.

use std::{
    cell::{Cell, RefCell},
    collections::HashMap,
    future::poll_fn,
    io,
    os::fd::{AsRawFd, RawFd},
    rc::{Rc, Weak},
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc, Arc,
    },
    task::{Poll, Waker},
    time::{Duration, Instant},
};

use monoio::{net::TcpListener, time::sleep, FusionDriver, RuntimeBuilder};

use super::{
    catch::{CatchInPlace, TaskKind},
    conn, io_util, Driver, ServerConfig,
};
use crate::{
    app::App,
    cluster::{
        clients::{set_current_core, CoreMsg},
        local::LocalCore,
        ClientId, Cluster,
    },
    ws::shared::SharedRef,
};

pub(crate) struct WorkerContext {
    pub(crate) index: usize,
    pub(crate) cpu: Option<usize>,
    pub(crate) listener: std::net::TcpListener,
    pub(crate) app: App,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) shutdown: async_channel::Receiver<()>,
    pub(crate) ready: mpsc::Sender<io::Result<Driver>>,
    pub(crate) cluster: Arc<Cluster>,
    pub(crate) inbox: async_channel::Receiver<CoreMsg>,
    /// Connections open on every core together (for `max_connections`).
    pub(crate) connections: Arc<AtomicUsize>,
}

/// What one core knows about the connections it owns.
pub(crate) struct CoreState {
    next_id: Cell<u64>,
    /// Upgraded connections and their topics; the cross-core view is built on it.
    pub(crate) local: Rc<LocalCore>,
    /// Connections still in the HTTP phase, by id, with their socket (to cut them on shutdown).
    handshaking: RefCell<HashMap<ClientId, RawFd>>,
    /// Connection tasks alive (both phases).
    active: Cell<usize>,
    pub(crate) shutting_down: Cell<bool>,
    idle_waker: RefCell<Option<Waker>>,
    /// The liveness sweep's period while it runs (`None`: not running).
    sweep_period: Cell<Option<Duration>>,
    /// Connections open on every core of the server together (a core of its own for inject).
    total: Arc<AtomicUsize>,
}

impl CoreState {
    pub(crate) fn new(local: Rc<LocalCore>) -> Self {
        Self {
            next_id: Cell::new(0),
            local,
            handshaking: RefCell::new(HashMap::new()),
            active: Cell::new(0),
            shutting_down: Cell::new(false),
            idle_waker: RefCell::new(None),
            sweep_period: Cell::new(None),
            total: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A core counting its connections in `total`, shared by every core of a server.
    fn with_total(local: Rc<LocalCore>, total: Arc<AtomicUsize>) -> Self {
        Self {
            total,
            ..Self::new(local)
        }
    }

    /// Whether a newly accepted connection must be refused (503): the server is at
    /// `max_connections`, or this core at `max_handshakes`.
    fn is_full(&self, config: &ServerConfig) -> bool {
        self.total.load(Ordering::Relaxed) >= config.max_connections
            || self.handshaking.borrow().len() >= config.max_handshakes
    }

    /// A new connection id, naming this core.
    fn next_id(&self) -> ClientId {
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        ClientId::new(self.local.index(), n)
    }

    /// Counts a connection task for as long as the guard lives.
    pub(crate) fn enter(self: &Rc<Self>, fd: RawFd) -> ConnGuard {
        let guard = self.enter_refused();
        self.handshaking.borrow_mut().insert(guard.id, fd);
        guard
    }

    /// Counts a connection that is only answered 503 and closed: it holds a descriptor for a
    /// moment, but is not a handshake in progress.
    pub(crate) fn enter_refused(self: &Rc<Self>) -> ConnGuard {
        self.active.set(self.active.get() + 1);
        super::defer::set_connections(self.active.get());
        self.total.fetch_add(1, Ordering::Relaxed);
        ConnGuard {
            core: Rc::clone(self),
            id: self.next_id(),
        }
    }

    pub(crate) fn register_open(&self, id: ClientId, shared: SharedRef) {
        self.handshaking.borrow_mut().remove(&id);
        self.local.register(id, shared);
    }

    /// Makes sure the liveness sweep runs at least every `period` (a new connection's
    /// `WsOptions::liveness_period`; `None` when it needs no sweep). The sweep starts with
    /// the first connection that needs it and stops when the core has none left, so it runs
    /// on workers and on the inject core alike, and an idle core has no timer to wake it.
    pub(crate) fn watch_liveness(self: &Rc<Self>, period: Option<Duration>) {
        let Some(period) = period else {
            return;
        };
        match self.sweep_period.get() {
            Some(current) if current <= period => {}
            Some(_) => self.sweep_period.set(Some(period)),
            None => {
                self.sweep_period.set(Some(period));
                monoio::spawn(liveness_sweep(Rc::downgrade(self)));
            }
        }
    }

    fn poll_idle(&self, waker: &Waker) -> Poll<()> {
        if self.active.get() == 0 {
            return Poll::Ready(());
        }
        *self.idle_waker.borrow_mut() = Some(waker.clone());
        Poll::Pending
    }
}

/// Unregisters a connection when its task ends, however it ends.
pub(crate) struct ConnGuard {
    core: Rc<CoreState>,
    pub(crate) id: ClientId,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.core.local.remove(self.id);
        self.core.handshaking.borrow_mut().remove(&self.id);
        self.core.active.set(self.core.active.get() - 1);
        super::defer::set_connections(self.core.active.get());
        self.core.total.fetch_sub(1, Ordering::Relaxed);
        if self.core.active.get() == 0 {
            if let Some(w) = self.core.idle_waker.borrow_mut().take() {
                w.wake();
            }
        }
    }
}

pub(crate) fn run(ctx: WorkerContext) {
    if let Some(cpu) = ctx.cpu {
        if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
            tracing::warn!(worker = ctx.index, cpu, "could not pin worker: {e:?}");
        }
    }
    let runtime = build_runtime();
    let mut runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ctx.ready.send(Err(e));
            return;
        }
    };
    let driver = match runtime {
        monoio::FusionRuntime::Uring(_) => Driver::IoUring,
        monoio::FusionRuntime::Legacy(_) => Driver::Epoll,
    };
    runtime.block_on(serve(ctx, driver));
}

async fn serve(ctx: WorkerContext, driver: Driver) {
    let listener = match TcpListener::from_std(ctx.listener) {
        Ok(l) => l,
        Err(e) => {
            let _ = ctx.ready.send(Err(e));
            return;
        }
    };
    let local = Rc::new(LocalCore::new(ctx.index, Arc::clone(&ctx.cluster)));
    set_current_core(Some(Rc::clone(&local)));
    let core = Rc::new(CoreState::with_total(
        Rc::clone(&local),
        Arc::clone(&ctx.connections),
    ));
    let inbox = monoio::spawn(drain_inbox(ctx.inbox.clone(), Rc::clone(&local)));
    let _ = ctx.ready.send(Ok(driver));
    tracing::debug!(worker = ctx.index, "accepting");

    let mut backoff_logged = Instant::now() - Duration::from_secs(60);
    loop {
        let mut accept = std::pin::pin!(listener.accept());
        let next = monoio::select! {
            accepted = &mut accept => Some(accepted),
            _ = ctx.shutdown.recv() => None,
        };
        let Some(accepted) = next else {
            // The accept still in flight may already hold a connection (on io_uring an
            // operation completes on its own): dropping it would leak that descriptor and
            // leave its client hanging. Shutting the listener down ends the accept; a
            // connection it took is closed here.
            // SAFETY: the listener is alive; shutdown on its fd has no other effect.
            unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RDWR) };
            if let Ok((stream, _)) = accept.await {
                drop(stream);
            }
            break;
        };
        match accepted {
            Ok((stream, peer)) => {
                let full = core.is_full(&ctx.config);
                if !full {
                    let _ = stream.set_nodelay(true);
                }
                let stream = match io_util::into_socket(stream) {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::debug!(worker = ctx.index, "accepted socket lost: {e}");
                        continue;
                    }
                };
                if full {
                    let task = conn::refuse_busy(stream, core.enter_refused());
                    monoio::spawn(CatchInPlace::new(task, TaskKind::Refusal));
                    continue;
                }
                let guard = core.enter(stream.as_raw_fd());
                // Caught in place: the task holds the future itself, in one allocation.
                let task = conn::serve_entered(
                    stream,
                    guard,
                    Some(peer),
                    ctx.app.clone(),
                    Rc::clone(&core),
                    Arc::clone(&ctx.config),
                );
                monoio::spawn(CatchInPlace::new(task, TaskKind::Connection));
            }
            Err(e) if is_resource_exhaustion(&e) => {
                // Out of descriptors or memory: the listener stays readable, so accepting
                // again at once would spin. Back off and let connections finish.
                if backoff_logged.elapsed() > Duration::from_secs(1) {
                    tracing::warn!(worker = ctx.index, "accept failed ({e}); backing off");
                    backoff_logged = Instant::now();
                }
                sleep(Duration::from_millis(100)).await;
            }
            Err(e) => tracing::debug!(worker = ctx.index, "accept error: {e}"),
        }
    }
    drop(listener);
    drain(&core, &ctx.app, &ctx.config).await;
    // Cancelled operations and deferred closes complete as completions that only a running
    // loop reaps; dropping the runtime first would leak their descriptors.
    sleep(REAP).await;
    drop(inbox);
    set_current_core(None);
    tracing::debug!(worker = ctx.index, "stopped");
}

/// Most inbox messages handled before the core yields to its connections.
const INBOX_BATCH: usize = 256;

/// Handles the messages other threads send this core, in batches: after a batch the task
/// yields through the timer (monoio 0.2.4 puts a self-woken task back at the front of the run
/// queue, so a plain yield would starve the connections), letting a long broadcast burst
/// interleave with the core's own I/O.
pub(crate) async fn drain_inbox(inbox: async_channel::Receiver<CoreMsg>, local: Rc<LocalCore>) {
    while let Ok(first) = inbox.recv().await {
        local.handle(first);
        let mut handled = 1;
        while handled < INBOX_BATCH {
            match inbox.try_recv() {
                Ok(msg) => {
                    local.handle(msg);
                    handled += 1;
                }
                Err(_) => break,
            }
        }
        if handled == INBOX_BATCH {
            sleep(Duration::ZERO).await;
        }
    }
}

/// The core's liveness sweep: one timer for all its connections rather than one each. Every
/// period it checks each connection (automatic ping, dead peer, idle timeout, max lifetime:
/// `Shared::check_liveness`). It ends when the core has no connection left (so after the
/// drain when the worker stops) and holds the core only weakly, never across a sleep.
async fn liveness_sweep(weak: Weak<CoreState>) {
    let _running = SweepRunning(weak.clone());
    loop {
        let Some(period) = weak.upgrade().and_then(|core| core.sweep_period.get()) else {
            return;
        };
        sleep(period).await;
        let Some(core) = weak.upgrade() else {
            return;
        };
        let connections = core.local.all_shared();
        if connections.is_empty() {
            return;
        }
        let now = Instant::now();
        for shared in &connections {
            shared.borrow_mut().check_liveness(now);
        }
    }
}

/// Marks the sweep stopped however its task ends (returning, or unwinding from a panic). A task
/// still sleeping when its runtime is dropped is leaked by monoio, not dropped: for the inject
/// core, which outlives the runtime, a later runtime on the same thread then gets no sweep (that
/// core also keeps the connections the earlier runtime left open, which never run again).
struct SweepRunning(Weak<CoreState>);

impl Drop for SweepRunning {
    fn drop(&mut self) {
        if let Some(core) = self.0.upgrade() {
            core.sweep_period.set(None);
        }
    }
}

/// Time given to the loop after the drain to reap the last completions (cancelled accepts and
/// reads, deferred closes).
const REAP: Duration = Duration::from_millis(20);

/// A worker's runtime: io_uring or epoll, with timers.
pub(crate) type WorkerRuntime = monoio::FusionRuntime<
    monoio::time::TimeDriver<monoio::IoUringDriver>,
    monoio::time::TimeDriver<monoio::LegacyDriver>,
>;

/// The worker's runtime. On io_uring, completions are delivered without interrupting the
/// thread (`COOP_TASKRUN`) and their task work runs only when the loop waits for events
/// (`SINGLE_ISSUER | DEFER_TASKRUN`): on a loaded core the inter-processor interrupts and
/// eager task work otherwise cost about a fifth of the server's CPU. Kernels without these
/// flags (before 6.1) get a plain ring. `RINGSOCKET_URING_SETUP=plain` (no flags) or `coop`
/// (`COOP_TASKRUN` only) opts out, for kernels where the tuned ring misbehaves and for A/B
/// measurements.
pub(crate) fn build_runtime() -> io::Result<WorkerRuntime> {
    let mode = std::env::var("RINGSOCKET_URING_SETUP").unwrap_or_default();
    let mut tuned = io_uring::IoUring::builder();
    match mode.as_str() {
        "plain" => {}
        "coop" => {
            tuned.setup_coop_taskrun();
        }
        _ => {
            tuned
                .setup_coop_taskrun()
                .setup_single_issuer()
                .setup_defer_taskrun();
        }
    }
    let built = RuntimeBuilder::<FusionDriver>::new()
        .with_entries(1024)
        .uring_builder(tuned)
        .enable_timer()
        .build();
    match built {
        Ok(runtime) => Ok(runtime),
        Err(e) => {
            tracing::debug!("tuned io_uring setup refused ({e}); using a plain ring");
            RuntimeBuilder::<FusionDriver>::new()
                .with_entries(1024)
                .enable_timer()
                .build()
        }
    }
}

fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Graceful end of a core: 1001 to every open connection, cut the ones still in their HTTP
/// phase, wait for all to finish up to the drain timeout, then terminate the rest.
async fn drain(core: &Rc<CoreState>, app: &App, config: &ServerConfig) {
    core.shutting_down.set(true);
    let clients = core.local.handles();
    match &app.ws_options().pre_close {
        Some(pre_close) => {
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pre_close(&clients)));
            if outcome.is_err() {
                tracing::error!(worker = core.local.index(), "pre_close panicked");
            }
        }
        None => {
            for client in &clients {
                let _ = client.close(1001, "server shutting down");
            }
        }
    }
    drop(clients);
    for &fd in core.handshaking.borrow().values() {
        // Wakes the pending read of a connection that has not sent its head yet. A client
        // whose head is already in is answered 503 by its own task.
        // SAFETY: the fd belongs to a live connection task on this core (removed from the map
        // before its socket is dropped).
        unsafe { libc::shutdown(fd, libc::SHUT_RD) };
    }
    let drained = monoio::time::timeout(
        config.drain_timeout,
        poll_fn(|cx| core.poll_idle(cx.waker())),
    )
    .await;
    if drained.is_err() {
        tracing::warn!(
            worker = core.local.index(),
            "drain timeout: terminating remaining connections"
        );
        for shared in core.local.all_shared() {
            shared.borrow_mut().terminate();
        }
        let _ = monoio::time::timeout(
            Duration::from_secs(1),
            poll_fn(|cx| core.poll_idle(cx.waker())),
        )
        .await;
    }
}
