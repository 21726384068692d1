//! A future with a function applied to its output, no bigger than the future itself.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll},
};

pin_project_lite::pin_project! {
    /// `fut` whose output goes through `map`. The handlers' wrappers use it instead of
    /// `async move { map(fut.await) }`: such a block keeps the captured future and the one it
    /// awaits side by side, so every WebSocket handler's future would take twice its size for
    /// the connection's whole life.
    pub(crate) struct Mapped<F, M> {
        #[pin]
        fut: F,
        map: Option<M>,
    }
}

impl<F, M> Mapped<F, M> {
    pub(crate) fn new(fut: F, map: M) -> Self {
        Mapped {
            fut,
            map: Some(map),
        }
    }
}

impl<F: Future, M: FnOnce(F::Output) -> T, T> Future for Mapped<F, M> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.project();
        let out = std::task::ready!(this.fut.poll(cx));
        let map = this.map.take().expect("Mapped polled after it completed");
        Poll::Ready(map(out))
    }
}

#[cfg(test)]
mod tests {
    use super::Mapped;

    #[test]
    fn maps_the_output_and_adds_only_the_map_to_the_size() {
        let fut = async { 20 };
        let size = std::mem::size_of_val(&fut);
        let mapped = Mapped::new(fut, |n: i32| n + 1);
        assert!(std::mem::size_of_val(&mapped) <= size + 8);
        assert_eq!(monoio::start::<monoio::LegacyDriver, _>(mapped), 21);
    }
}
