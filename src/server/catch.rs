//! `catch_unwind` for futures: monoio does not catch panics, and a panic escaping a task
//! would take the whole core (every connection on it) down.

use std::{
    any::Any,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    task::{Context, Poll},
};

/// Polls the inner future under `catch_unwind`; a panic resolves to `Err` with its payload.
pub(crate) struct CatchUnwind<T> {
    inner: Option<Pin<Box<dyn Future<Output = T>>>>,
}

impl<T> CatchUnwind<T> {
    pub(crate) fn new(future: impl Future<Output = T> + 'static) -> Self {
        Self::from_box(Box::pin(future))
    }

    /// For a future already boxed (a handler's): no second box.
    pub(crate) fn from_box(future: Pin<Box<dyn Future<Output = T>>>) -> Self {
        Self {
            inner: Some(future),
        }
    }
}

pin_project_lite::pin_project! {
    /// A task's whole future under `catch_unwind`, in place: spawned as it is, the task holds
    /// the future itself and no box beside it. A panic is logged (with `what` panicked) and
    /// ends the task.
    pub(crate) struct CatchInPlace<F> {
        #[pin]
        inner: Option<F>,
        what: TaskKind,
    }
}

/// Which task panicked, for the log line (a byte in the task, where a `&str` took 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskKind {
    /// A connection's task (its HTTP phase or its WebSocket phase).
    Connection,
    /// The task that answers a connection refused while the server is full.
    Refusal,
}

impl std::fmt::Display for TaskKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connection => "connection task",
            Self::Refusal => "refusal task",
        })
    }
}

impl<F> CatchInPlace<F> {
    pub(crate) fn new(inner: F, what: TaskKind) -> Self {
        Self {
            inner: Some(inner),
            what,
        }
    }
}

impl<F: Future<Output = ()>> Future for CatchInPlace<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(inner) = this.inner.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll,
            Err(payload) => {
                tracing::error!("{} panicked: {}", this.what, panic_message(&*payload));
                // Dropped where it stands; its drop may panic too.
                let _ = catch_unwind(AssertUnwindSafe(|| this.inner.set(None)));
                Poll::Ready(())
            }
        }
    }
}

impl<T> Future for CatchUnwind<T> {
    type Output = Result<T, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Pending;
        };
        match catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => {
                self.inner = None;
                Poll::Ready(Ok(value))
            }
            Err(payload) => {
                // A panicked future must not be polled again; its drop may panic too, and
                // that second panic must not escape either.
                let inner = self.inner.take();
                let _ = catch_unwind(AssertUnwindSafe(move || drop(inner)));
                Poll::Ready(Err(payload))
            }
        }
    }
}

/// The panic message, for logs.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}

/// `catch_unwind` for a borrowed future (no `'static`, no box): for the request pipeline, whose
/// futures borrow the connection. A panic resolves to `Err`; the future is dropped where it
/// stands.
pub(crate) async fn catch_unwind_local<F: Future>(
    future: F,
) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(
        |cx| match catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(value)) => Poll::Ready(Ok(value)),
            Err(payload) => Poll::Ready(Err(payload)),
        },
    )
    .await
}
