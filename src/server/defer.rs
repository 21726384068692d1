//! The core's list of readers waiting for a reply's write before reading again (see
//! `Shared::defer_read`). Such a wait normally ends when the write completes, within one turn
//! of the runtime; the list ends the ones that last longer, so that a peer that stops reading
//! what we write (and whose messages then wait in our socket) is still read.
//!
//! A connection is listed once per tick at most; a wait is ended between one and two ticks
//! after its connection was listed. One timer per core runs while the list is not empty, and
//! for `IDLE_TICKS` ticks after.
//!
//! Waits are for cores with few connections. Reading after the reply saves the kernel a
//! wake-up per message (the read finds the next message instead of arming a poll for it), but
//! the read then comes a turn of the runtime later, and with many connections busy in that turn
//! the socket's state has left the cache by then: measured on the benchmark's machine
//! (`loadgen`, one core), an echo of 100 x 20 B and of 10 x 16 KiB took 6-16% and 5-10% less
//! server CPU a message with the waits, one of 1,000 x 1 KiB 7-9% more.

use std::{
    cell::{Cell, RefCell},
    mem,
    rc::{Rc, Weak},
    time::Duration,
};

use crate::ws::shared::{Shared, SharedRef, Stamp};

/// How long a wait for a write may last, at least.
const TICK: Duration = Duration::from_millis(1);

/// Above this many connections on the core, readers do not wait for replies.
const MAX_CONNECTIONS: usize = 256;

/// A timer that has not ticked for this long is gone (its runtime ended): start another.
const STALE: Duration = Duration::from_millis(50);

/// Ticks in a row with nothing listed after which the timer stops. Not the first: traffic
/// that pauses for a moment (a client descheduled, a round trip over a slow link) would start
/// a timer task, an allocation, at every pause.
const IDLE_TICKS: u8 = 32;

#[derive(Default)]
struct Lists {
    /// Listed during the current tick.
    current: Vec<Weak<RefCell<Shared>>>,
    /// Listed during the previous tick: ended at the next.
    previous: Vec<Weak<RefCell<Shared>>>,
    /// When the timer last ticked (or started); `None` while none runs.
    ticked: Option<Stamp>,
    /// Ticks in a row that found nothing listed.
    idle: u8,
}

thread_local! {
    static LISTS: RefCell<Lists> = RefCell::default();
    /// Connections on this thread's core (kept by `CoreState`).
    static CONNECTIONS: Cell<usize> = const { Cell::new(0) };
}

/// The core's connection count changed.
pub(crate) fn set_connections(n: usize) {
    CONNECTIONS.set(n);
}

/// Whether readers on this core wait for replies (few enough connections).
pub(crate) fn enabled() -> bool {
    CONNECTIONS.get() <= MAX_CONNECTIONS
}

/// Lists a connection whose reader now waits for a write.
pub(crate) fn list(shared: &SharedRef) {
    LISTS.with(|lists| {
        let mut lists = lists.borrow_mut();
        lists.current.push(Rc::downgrade(shared));
        let now = Stamp::now();
        if lists.ticked.is_some_and(|at| at.until(now) < STALE) {
            return;
        }
        lists.ticked = Some(now);
        lists.idle = 0;
        drop(lists);
        monoio::spawn(tick());
    });
}

/// Ends, every tick, the waits of the connections listed the tick before; stops once the
/// lists are empty.
async fn tick() {
    loop {
        monoio::time::sleep(TICK).await;
        let mut expired = LISTS.with(|lists| {
            let mut lists = lists.borrow_mut();
            lists.ticked = Some(Stamp::now());
            let current = mem::take(&mut lists.current);
            mem::replace(&mut lists.previous, current)
        });
        for shared in expired.drain(..) {
            if let Some(shared) = shared.upgrade() {
                shared.borrow_mut().deferral_expired();
            }
        }
        let done = LISTS.with(|lists| {
            let mut lists = lists.borrow_mut();
            // The emptied list is the next tick's (nothing was listed meanwhile: no await).
            lists.current = expired;
            lists.idle = if lists.previous.is_empty() {
                lists.idle + 1
            } else {
                0
            };
            let done = lists.idle >= IDLE_TICKS;
            if done {
                lists.ticked = None;
                lists.idle = 0;
            }
            done
        });
        if done {
            return;
        }
    }
}
