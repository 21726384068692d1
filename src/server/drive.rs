//! One task per connection: its reader, its handler and its writer are three futures polled
//! by one [`Drive`], each with a waker of its own, so a wake-up polls only the part it was
//! for. A message that the reader decodes, the handler answers and the writer writes goes
//! through the three in one poll of the task, without scheduling any other task (three tasks
//! took three wake-ups and four polls through the runtime's queue), and a connection holds
//! one task, not three.

use std::{
    future::Future,
    mem::ManuallyDrop,
    os::fd::RawFd,
    pin::Pin,
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc, OnceLock,
    },
    task::{Context, Poll, RawWaker, RawWakerVTable, Waker},
    time::Duration,
};

use monoio::{io::OwnedWriteHalf, time::Sleep};

use super::{
    catch::{panic_message, CatchUnwind},
    io_util::Conn,
    worker::ConnGuard,
    ws_conn::start_writer,
};
use crate::ws::shared::SharedRef;

/// The handler's part.
const HANDLER: u8 = 1;
/// The reader's part.
const READ: u8 = 1 << 1;
/// The writer's part (and, before it starts, the wait for something to write).
const WRITE: u8 = 1 << 2;
const PARTS: u8 = HANDLER | READ | WRITE;
/// The task is scheduled or being polled: a wake-up then only marks its part, the poll under
/// way (or about to come) sees it.
const SCHEDULED: u8 = 1 << 7;

/// Most passes over the woken parts in one poll: a part that wakes itself at every poll (a
/// handler yielding in a loop) must not keep the core from its other tasks.
const MAX_PASSES: usize = 8;

/// Polls in a row that used all their passes, after which the task naps instead of going back
/// to the runtime's queue. A task that is always in the queue starves the core's I/O: monoio
/// waits for events (and, on io_uring with `DEFER_TASKRUN`, lets the kernel post network
/// completions at all) and fires timers only once its queue is empty.
const BUSY_POLLS: u8 = 2;

/// How long a busy task naps: the shortest timer, which fires at the runtime's next wait for
/// events after its tick (1 ms).
const NAP: Duration = Duration::from_millis(1);

/// The parts woken since the task last looked, and the task's own waker. Shared by the wakers
/// of the three parts, which may be sent to other threads (a handler's channel), so atomic.
#[derive(Debug)]
struct Wakes {
    woken: AtomicU8,
    task: OnceLock<Waker>,
}

impl Wakes {
    fn wake(&self, part: u8) {
        let before = self.woken.fetch_or(part | SCHEDULED, Ordering::AcqRel);
        if before & SCHEDULED == 0 {
            if let Some(task) = self.task.get() {
                task.wake_by_ref();
            }
        }
    }
}

// A part's waker is the `Arc<Wakes>` pointer with the part's index in its low bits (`Wakes`
// is aligned to 8, so the two low bits are always zero in the pointer itself): one allocation
// serves the three wakers, where `std::task::Wake` would need an `Arc` for each.
const TAG: usize = 0b11;

fn untag(data: *const ()) -> (*const Wakes, u8) {
    let bits = data as usize;
    ((bits & !TAG) as *const Wakes, 1 << (bits & TAG))
}

static VTABLE: RawWakerVTable =
    RawWakerVTable::new(waker_clone, waker_wake, waker_wake_by_ref, waker_drop);

// SAFETY (the four functions below): `data` is a tagged pointer to the `Wakes` of a live
// `Arc`, from `PartWakers::with_waker` (a lent waker, whose count is the `PartWakers`' own and
// which is never dropped or consumed) or from `waker_clone` (a waker that owns one count).
unsafe fn waker_clone(data: *const ()) -> RawWaker {
    let (wakes, _) = untag(data);
    // SAFETY: see above; the clone owns the count added here.
    unsafe { Arc::increment_strong_count(wakes) };
    RawWaker::new(data, &VTABLE)
}

unsafe fn waker_wake(data: *const ()) {
    // SAFETY: see above; the waker is consumed, so its count goes.
    unsafe {
        waker_wake_by_ref(data);
        waker_drop(data);
    }
}

unsafe fn waker_wake_by_ref(data: *const ()) {
    let (wakes, part) = untag(data);
    // SAFETY: see above; this waker's count keeps the `Wakes` alive.
    unsafe { (*wakes).wake(part) };
}

unsafe fn waker_drop(data: *const ()) {
    let (wakes, _) = untag(data);
    // SAFETY: see above; the count this waker owned.
    unsafe { Arc::decrement_strong_count(wakes) };
}

/// The wakers of a connection's three parts.
#[derive(Debug)]
struct PartWakers(Arc<Wakes>);

impl PartWakers {
    fn new() -> Self {
        // Every part is polled on the first poll, which the spawn schedules.
        Self(Arc::new(Wakes {
            woken: AtomicU8::new(PARTS | SCHEDULED),
            task: OnceLock::new(),
        }))
    }

    /// Calls `f` with `part`'s waker. The waker is lent, not made: whoever keeps it (a
    /// pending operation) clones it, which counts.
    fn with_waker<T>(&self, part: u8, f: impl FnOnce(&Waker) -> T) -> T {
        let data = (Arc::as_ptr(&self.0) as usize | part.trailing_zeros() as usize) as *const ();
        // SAFETY: a tagged pointer to the live `Wakes` (self holds a count), with the vtable
        // above. `ManuallyDrop`: this borrowed waker owns no count, so it must not drop one.
        let waker = ManuallyDrop::new(unsafe { Waker::from_raw(RawWaker::new(data, &VTABLE)) });
        f(&waker)
    }

    /// Polls `future` with `part`'s waker.
    fn poll<F: Future + ?Sized>(&self, part: u8, future: Pin<&mut F>) -> Poll<F::Output> {
        self.with_waker(part, |waker| future.poll(&mut Context::from_waker(waker)))
    }

    /// Whether `part` was woken since the last [`take`](Self::take).
    fn is_woken(&self, part: u8) -> bool {
        self.0.woken.load(Ordering::Acquire) & part != 0
    }

    /// The parts woken since the last call, leaving the task marked scheduled (it is being
    /// polled).
    fn take(&self) -> u8 {
        self.0.woken.swap(SCHEDULED, Ordering::AcqRel) & PARTS
    }

    /// Clears the scheduled mark if nothing was woken meanwhile; false if something was (look
    /// again).
    fn settle(&self) -> bool {
        self.0
            .woken
            .compare_exchange(SCHEDULED, 0, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Polls a running writer; marks it done when it ends.
fn poll_writer<S: Conn>(writer: &mut Writer<S>, wakers: &PartWakers, shared: &SharedRef) {
    let Writer::Running(write) = writer else {
        return;
    };
    if let Poll::Ready(outcome) = wakers.poll(WRITE, Pin::new(write)) {
        if let Err(payload) = outcome {
            tracing::error!("writer panicked: {}", panic_message(&*payload));
        }
        // The write loop forgets how to cut the socket before it ends; after a panic it did
        // not: forget it before the write half (maybe the socket) goes.
        shared.borrow_mut().detach();
        *writer = Writer::Done;
    }
}

/// The writer: not started until there is something to write (an idle connection holds no
/// write buffer and no write future), then running, then done.
enum Writer<S: Conn> {
    Idle(OwnedWriteHalf<S>),
    Running(CatchUnwind<()>),
    Done,
}

pin_project_lite::pin_project! {
    /// A connection's WebSocket phase: its read part (`R`, which owns the read half and ends
    /// when reading is over), its handler (`H`) and its writer, all in one task. Once reading
    /// and writing are over the connection is finished (its report made final, its
    /// registration dropped, its socket closed) even if the handler goes on; the task ends
    /// with the handler.
    pub(crate) struct Drive<S: Conn, R, H> {
        #[pin]
        read: Option<R>,
        #[pin]
        handler: Option<H>,
        writer: Writer<S>,
        wakers: PartWakers,
        shared: SharedRef,
        fd: RawFd,
        // Held until the connection is finished.
        guard: Option<ConnGuard>,
        // Polls in a row that ended with parts still woken, and the nap that follows
        // `BUSY_POLLS` of them (boxed: only a task that keeps waking itself has one; kept
        // once made, and set again for the next nap, so that naps allocate nothing), and
        // whether the task is napping.
        busy: u8,
        nap: Option<Pin<Box<Sleep>>>,
        napping: bool,
        // Whether finishing was put off once for a woken handler (see `finish_if_over`).
        put_off: bool,
    }
}

impl<S: Conn, R, H> std::fmt::Debug for Drive<S, R, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Drive")
            .field("reading", &self.read.is_some())
            .field("handler", &self.handler.is_some())
            .field("finished", &self.guard.is_none())
            .finish_non_exhaustive()
    }
}

impl<S: Conn, R: Future<Output = ()>, H: Future<Output = ()>> Drive<S, R, H> {
    pub(crate) fn new(
        read: R,
        handler: Option<H>,
        writer: OwnedWriteHalf<S>,
        shared: SharedRef,
        fd: RawFd,
        guard: ConnGuard,
    ) -> Self {
        Self {
            read: Some(read),
            handler,
            writer: Writer::Idle(writer),
            wakers: PartWakers::new(),
            shared,
            fd,
            guard: Some(guard),
            busy: 0,
            nap: None,
            napping: false,
            put_off: false,
        }
    }

    /// One pass over the woken parts: a running writer's progress first, then the handler
    /// (on the first pass it runs before the reader, as the route handler runs before the
    /// first message is read), then the reader, then a writer that has work to start.
    fn pass(self: Pin<&mut Self>, woken: u8) {
        let mut this = self.project();
        // A write's completion first: it lets go of the messages it wrote, so a read in this
        // same pass finds their buffer free again (the read buffers take turns) instead of
        // allocating another. (Polled after the reader, an echo at 16 KiB allocated a 32 KiB
        // buffer for every other message.)
        if woken & WRITE != 0 {
            poll_writer(this.writer, this.wakers, this.shared);
        }
        if woken & HANDLER != 0 {
            if let Some(handler) = this.handler.as_mut().as_pin_mut() {
                if this.wakers.poll(HANDLER, handler).is_ready() {
                    this.handler.set(None);
                }
            }
        }
        if woken & READ != 0 {
            if let Some(read) = this.read.as_mut().as_pin_mut() {
                if this.wakers.poll(READ, read).is_ready() {
                    // Drops the read half and the read buffers.
                    this.read.set(None);
                }
            }
        }
        if let Writer::Idle(_) = this.writer {
            // Looked at in every pass (a borrow): the reader may have queued a close frame in
            // this very pass, which must go out before the connection is finished.
            let wanted = this.wakers.with_waker(WRITE, |waker| {
                this.shared
                    .borrow_mut()
                    .poll_writer_wanted(waker)
                    .is_ready()
            });
            if !wanted {
                return;
            }
            let Writer::Idle(half) = std::mem::replace(this.writer, Writer::Done) else {
                unreachable!("checked above");
            };
            *this.writer = Writer::Running(start_writer(half, *this.fd, this.shared.clone()));
            poll_writer(this.writer, this.wakers, this.shared);
        }
    }

    /// Once reading and writing are over: the connection is finished.
    fn finish_if_over(self: Pin<&mut Self>) {
        let this = self.project();
        if this.guard.is_none() || this.read.is_some() || matches!(this.writer, Writer::Running(_))
        {
            return;
        }
        // A handler woken in this pass (by the peer's close frame, say) hears of it before
        // the connection is finished and unregistered: one more pass first. Only once, so a
        // handler woken in every pass does not hold the connection. (On the legacy driver a
        // close answered and written within one pass finished the connection before its
        // handler had seen the close.)
        if this.handler.is_some() && !*this.put_off && this.wakers.is_woken(HANDLER) {
            *this.put_off = true;
            return;
        }
        let (report, peer_gone) = {
            let mut shared = this.shared.borrow_mut();
            shared.mark_clean();
            // Also forgets how to cut the socket, before the write half (if the writer never
            // started) is dropped below, which may close it.
            shared.set_finished();
            (shared.report(), shared.peer_gone)
        };
        *this.writer = Writer::Done;
        if let Some(guard) = this.guard.take() {
            tracing::debug!(id = %guard.id, ?report, peer_gone, "connection closed");
        }
    }
}

impl<S: Conn, R: Future<Output = ()>, H: Future<Output = ()>> Future for Drive<S, R, H> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.wakers.0.task.get_or_init(|| cx.waker().clone());
        if self.napping {
            // Napping: the parts woken meanwhile stay marked, and the task stays marked
            // scheduled, so only the timer wakes it.
            let this = self.as_mut().project();
            if let Some(nap) = this.nap.as_mut() {
                if nap.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            *this.napping = false;
        }
        for _ in 0..MAX_PASSES {
            let woken = self.wakers.take();
            if woken == 0 {
                if self.wakers.settle() {
                    *self.as_mut().project().busy = 0;
                    return Poll::Pending;
                }
                continue;
            }
            self.as_mut().pass(woken);
            self.as_mut().finish_if_over();
            if self.guard.is_none() && self.handler.is_none() {
                return Poll::Ready(());
            }
        }
        // Still busy: yield to the core's other tasks and come back (the parts woken meanwhile
        // stay marked); after `BUSY_POLLS` such polls in a row, through the timer, so that the
        // runtime's queue can empty and the core's I/O and timers run.
        let this = self.project();
        *this.busy += 1;
        if *this.busy < BUSY_POLLS {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        *this.busy = 0;
        let nap = match this.nap {
            Some(nap) => {
                nap.as_mut().reset(monoio::time::Instant::now() + NAP);
                nap
            }
            None => this.nap.insert(Box::pin(monoio::time::sleep(NAP))),
        };
        if nap.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        } else {
            *this.napping = true;
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl std::task::Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A future that keeps the waker it was polled with and is ready after `polls` polls.
    struct Keeps {
        waker: Option<Waker>,
        polls: usize,
    }

    impl Future for Keeps {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.waker = Some(cx.waker().clone());
            self.polls -= 1;
            if self.polls == 0 {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    #[test]
    fn a_part_waker_marks_its_part_and_wakes_the_task_once() {
        let wakers = PartWakers::new();
        let task = Arc::new(Counter::default());
        wakers.0.task.get_or_init(|| Waker::from(Arc::clone(&task)));
        // The first poll sees every part.
        assert_eq!(wakers.take(), PARTS);
        assert!(wakers.settle());

        let mut read = Keeps {
            waker: None,
            polls: 2,
        };
        let mut handler = Keeps {
            waker: None,
            polls: 2,
        };
        assert!(wakers.poll(READ, Pin::new(&mut read)).is_pending());
        assert!(wakers.poll(HANDLER, Pin::new(&mut handler)).is_pending());
        assert_eq!(
            Arc::strong_count(&wakers.0),
            3,
            "each kept waker holds a count"
        );

        read.waker.take().unwrap().wake();
        assert_eq!(
            Arc::strong_count(&wakers.0),
            2,
            "a consumed waker gives its count back"
        );
        handler.waker.as_ref().unwrap().wake_by_ref();
        // One wake of the task for both: the second found it already scheduled.
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert_eq!(wakers.take(), READ | HANDLER);
        assert!(wakers.settle());
        assert_eq!(wakers.take(), 0);
    }

    #[test]
    fn a_wake_during_the_poll_is_seen_by_that_poll_not_scheduled_again() {
        let wakers = PartWakers::new();
        let task = Arc::new(Counter::default());
        wakers.0.task.get_or_init(|| Waker::from(Arc::clone(&task)));
        wakers.take();
        let mut write = Keeps {
            waker: None,
            polls: 2,
        };
        assert!(wakers.poll(WRITE, Pin::new(&mut write)).is_pending());
        // While the task is being polled (scheduled), a wake only marks the part...
        write.waker.as_ref().unwrap().wake_by_ref();
        assert_eq!(task.0.load(Ordering::SeqCst), 0);
        // ...which keeps the task from settling until it has looked.
        assert!(!wakers.settle());
        assert_eq!(wakers.take(), WRITE);
        assert!(wakers.settle());
        // Settled: the next wake (from any thread) schedules the task.
        let waker = write.waker.take().unwrap();
        std::thread::spawn(move || waker.wake()).join().unwrap();
        assert_eq!(task.0.load(Ordering::SeqCst), 1);
        assert_eq!(Arc::strong_count(&wakers.0), 1);
    }

    #[test]
    fn clones_of_a_part_waker_wake_the_same_part() {
        let wakers = PartWakers::new();
        wakers.take();
        assert!(wakers.settle());
        let mut handler = Keeps {
            waker: None,
            polls: 2,
        };
        assert!(wakers.poll(HANDLER, Pin::new(&mut handler)).is_pending());
        let clone = handler.waker.clone().unwrap();
        assert!(clone.will_wake(handler.waker.as_ref().unwrap()));
        drop(handler);
        clone.wake();
        // No task waker yet (never polled by a runtime): the mark is kept all the same.
        assert_eq!(wakers.take(), HANDLER);
        assert_eq!(Arc::strong_count(&wakers.0), 1);
    }
}
