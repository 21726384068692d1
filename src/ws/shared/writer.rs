//! The writer's side of a connection's state: what to write next, and what was written.

use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};

use super::{CloseReport, Phase, Shared, WriteJob};
use crate::proto::{encode_frame, OpCode};

/// Most chunks gathered into one vectored write.
pub(crate) const MAX_PARTS: usize = 64;

impl Shared {
    /// What the writer should do next: for [`WriteJob::Control`], [`WriteJob::Data`] and
    /// [`WriteJob::Close`] the bytes are put in `spare`; for [`WriteJob::Parts`], the chunks
    /// to write in order, in one vectored write, are put in `parts` (empty on entry).
    pub(crate) fn poll_write_job(
        &mut self,
        waker: &Waker,
        spare: &mut BytesMut,
        parts: &mut Vec<Bytes>,
    ) -> Poll<WriteJob> {
        if self.terminated {
            return Poll::Ready(WriteJob::Stop);
        }
        if let Some(tx) = self.tx.as_deref_mut() {
            if !tx.pending_pongs.is_empty() {
                spare.clear();
                for payload in tx.pending_pongs.drain(..) {
                    encode_frame(spare, true, false, OpCode::Pong, None, &payload);
                }
                return Poll::Ready(WriteJob::Control);
            }
            if !tx.chunks.is_empty() {
                // Shared frames, large payloads and the bytes queued between them, written as
                // they are (no copy); sends queued after them follow in the same write.
                let take = tx.chunks.len().min(MAX_PARTS);
                parts.extend(tx.chunks.drain(..take));
                let taken: usize = parts.iter().map(Bytes::len).sum();
                tx.chunks_bytes -= taken;
                tx.in_flight = taken;
                if tx.chunks.is_empty() && !tx.out.is_empty() && parts.len() < MAX_PARTS {
                    tx.in_flight += tx.out.len();
                    parts.push(tx.out.split().freeze());
                }
                return Poll::Ready(WriteJob::Parts);
            }
            if !tx.out.is_empty() {
                // Hand over everything queued; `send` keeps appending to the fresh buffer
                // while the write is in flight.
                spare.clear();
                std::mem::swap(&mut tx.out, spare);
                tx.in_flight = spare.len();
                return Poll::Ready(WriteJob::Data);
            }
            if let Some(close) = tx.pending_close.take() {
                spare.clear();
                spare.extend_from_slice(&close);
                self.close_written = true;
                return Poll::Ready(WriteJob::Close {
                    shutdown: self.shutdown_after_close,
                });
            }
        }
        if self.close_written || self.phase == Phase::Closed {
            return Poll::Ready(WriteJob::Stop);
        }
        self.writer_waker = Some(waker.clone());
        Poll::Pending
    }

    /// The writer wrote `n` more bytes of the data stream; messages whose last byte is now
    /// out count as written.
    pub(crate) fn on_data_written(&mut self, n: usize) {
        let tx = self.tx();
        tx.written_bytes += n as u64;
        tx.in_flight = 0;
        let drained = tx.buffered() == 0;
        let mut done = 0;
        while tx
            .out_ends
            .front()
            .is_some_and(|&end| end <= tx.written_bytes)
        {
            tx.out_ends.pop_front();
            done += 1;
        }
        self.tally.written += done;
        if drained {
            // Everything is out: the peer takes what we write, and the reader may wait for
            // replies again.
            self.defer &= !super::DEFER_OFF;
            self.wake_senders();
        }
        self.release_reader();
    }

    /// The write side failed: nothing more can go out.
    pub(crate) fn on_write_error(&mut self) {
        self.phase = Phase::Closed;
        self.release_reader();
        if let Some(tx) = self.tx.as_deref_mut() {
            tx.pending_close = None;
        }
        self.wake_senders();
    }

    /// The reader stopped reading.
    pub(crate) fn set_reader_done(&mut self) {
        self.reader_done = true;
        // The writer is the one that waits for this (`poll_reader_done`).
        self.wake_writer();
    }

    pub(crate) fn poll_reader_done(&mut self, waker: &Waker) -> Poll<()> {
        if self.reader_done || self.terminated {
            return Poll::Ready(());
        }
        self.writer_waker = Some(waker.clone());
        Poll::Pending
    }

    pub(crate) fn mark_clean(&mut self) {
        self.clean = self.close_written && self.tally.received.is_some();
    }

    /// The connection is over: the report is final.
    pub(crate) fn set_finished(&mut self) {
        self.phase = Phase::Closed;
        self.inbound_done = true;
        self.finished = true;
        self.detach();
        self.finished_wakers.wake_all();
        self.wake_all();
    }

    pub(crate) fn poll_finished(&mut self, waker: &Waker) -> Poll<CloseReport> {
        if self.finished {
            return Poll::Ready(self.report());
        }
        self.finished_wakers.add(waker);
        Poll::Pending
    }

    pub(super) fn wake_writer(&mut self) {
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
    }

    /// Ready once the writer should start: there is something to write (and the connection
    /// was not terminated). Until then `waker` is woken by every wake-up of the writer.
    pub(crate) fn poll_writer_wanted(&mut self, waker: &Waker) -> Poll<()> {
        if !self.terminated && self.has_writes() {
            return Poll::Ready(());
        }
        if !self
            .writer_waker
            .as_ref()
            .is_some_and(|w| w.will_wake(waker))
        {
            self.writer_waker = Some(waker.clone());
        }
        Poll::Pending
    }

    fn has_writes(&self) -> bool {
        self.tx.as_deref().is_some_and(|tx| {
            !tx.pending_pongs.is_empty()
                || !tx.chunks.is_empty()
                || !tx.out.is_empty()
                || tx.pending_close.is_some()
        })
    }

    pub(super) fn wake_senders(&mut self) {
        self.flush_wakers.wake_all();
    }

    pub(super) fn wake_all(&mut self) {
        self.wake_writer();
        self.wake_senders();
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
        self.defer &= !super::READ_DEFERRED;
        if let Some(w) = self.room_waker.take() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        task::{Poll, Waker},
    };

    use bytes::{Bytes, BytesMut};

    use crate::{
        cluster::ClientId,
        proto::{encode_frame, OpCode},
        ws::shared::{Shared, WriteJob},
        WsOptions,
    };

    use super::MAX_PARTS;

    fn frame(payload: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        encode_frame(&mut out, true, false, OpCode::Binary, None, payload);
        out.freeze()
    }

    /// Polls the next job: the job, the bytes in `spare`, the parts.
    fn next_job(s: &mut Shared) -> (Poll<WriteJob>, BytesMut, Vec<Bytes>) {
        let mut spare = BytesMut::new();
        let mut parts = Vec::new();
        let job = s.poll_write_job(Waker::noop(), &mut spare, &mut parts);
        (job, spare, parts)
    }

    fn concat(parts: &[Bytes]) -> Vec<u8> {
        parts.iter().flat_map(|part| part.iter().copied()).collect()
    }

    #[test]
    fn shared_frames_and_the_sends_around_them_go_out_in_one_write_in_order() {
        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let mut s = shared.borrow_mut();
        s.queue_data(OpCode::Binary, Bytes::from_static(b"first"), false)
            .unwrap();
        s.queue_shared(frame(b"a")).unwrap();
        s.queue_shared(frame(b"bb")).unwrap();
        s.queue_data(OpCode::Binary, Bytes::from_static(b"last"), false)
            .unwrap();
        let (job, _, parts) = next_job(&mut s);
        assert_eq!(job, Poll::Ready(WriteJob::Parts));
        let mut want = BytesMut::new();
        for payload in [&b"first"[..], b"a", b"bb", b"last"] {
            encode_frame(&mut want, true, false, OpCode::Binary, None, payload);
        }
        assert_eq!(parts.len(), 4);
        assert_eq!(concat(&parts), &want[..]);
        assert_eq!(s.buffered_amount(), want.len());
        s.on_data_written(want.len());
        assert_eq!(s.report().written, 4);
        assert_eq!(s.buffered_amount(), 0);
        assert!(next_job(&mut s).0.is_pending());
    }

    #[test]
    fn a_large_payload_is_written_from_its_own_buffer_after_its_header() {
        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let mut s = shared.borrow_mut();
        let payload = Bytes::from(vec![7u8; 20 * 1024]);
        s.queue_data(OpCode::Binary, payload.clone(), false)
            .unwrap();
        s.queue_data(OpCode::Text, Bytes::from_static(b"after"), false)
            .unwrap();
        let (job, _, parts) = next_job(&mut s);
        assert_eq!(job, Poll::Ready(WriteJob::Parts));
        // Header, the very payload (not a copy), then the later send.
        assert_eq!(parts.len(), 3);
        assert_eq!(&parts[0][..], &[0x82, 126, 0x50, 0x00][..]);
        assert_eq!(parts[1].as_ptr(), payload.as_ptr());
        assert_eq!(parts[1].len(), payload.len());
        assert_eq!(&parts[2][..], b"\x81\x05after");
        let total = 4 + payload.len() + 7;
        assert_eq!(s.buffered_amount(), total);
        // A write that stops inside the payload completes no message.
        s.on_data_written(4 + 100);
        assert_eq!(s.report().written, 0);
        s.on_data_written(total - 104);
        assert_eq!(s.report().written, 2);
        assert_eq!(s.buffered_amount(), 0);
    }

    #[test]
    fn small_payloads_are_copied_into_one_buffer() {
        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let mut s = shared.borrow_mut();
        s.queue_data(OpCode::Text, Bytes::from_static(b"one"), false)
            .unwrap();
        s.queue_data(OpCode::Text, Bytes::from(vec![b'x'; 4095]), false)
            .unwrap();
        let (job, spare, parts) = next_job(&mut s);
        assert_eq!(job, Poll::Ready(WriteJob::Data));
        assert!(parts.is_empty());
        assert_eq!(spare.len(), 5 + 4 + 4095);
        assert_eq!(&spare[..5], b"\x81\x03one");
    }

    #[test]
    fn at_most_max_parts_chunks_go_in_one_write() {
        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let mut s = shared.borrow_mut();
        for _ in 0..MAX_PARTS + 3 {
            s.queue_shared(frame(b"z")).unwrap();
        }
        let (_, _, parts) = next_job(&mut s);
        assert_eq!(parts.len(), MAX_PARTS);
        s.on_data_written(MAX_PARTS * 3);
        assert_eq!(s.report().written, MAX_PARTS as u64);
        let (job, _, parts) = next_job(&mut s);
        assert_eq!(job, Poll::Ready(WriteJob::Parts));
        assert_eq!(parts.len(), 3);
    }

    /// A waker that counts its wake-ups.
    fn counting_waker() -> (Waker, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);
        impl std::task::Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        (Waker::from(Arc::new(Count(Arc::clone(&count)))), count)
    }

    #[test]
    fn the_writer_is_wanted_on_the_first_write_and_not_before() {
        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let (waker, wakes) = counting_waker();
        let mut s = shared.borrow_mut();
        assert_eq!(s.poll_writer_wanted(&waker), Poll::Pending);
        // Asking again with the same waker keeps one registration.
        assert_eq!(s.poll_writer_wanted(&waker), Poll::Pending);
        s.queue_data(OpCode::Text, Bytes::from_static(b"hello"), false)
            .unwrap();
        assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(s.poll_writer_wanted(&waker), Poll::Ready(()));
    }

    #[test]
    fn a_pong_owed_or_a_close_frame_wants_the_writer_and_a_termination_does_not() {
        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let (waker, _) = counting_waker();
        let mut s = shared.borrow_mut();
        s.on_ping(Bytes::from_static(b"p"));
        assert_eq!(s.poll_writer_wanted(&waker), Poll::Ready(()));

        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let mut s = shared.borrow_mut();
        s.close_without_code();
        assert_eq!(s.poll_writer_wanted(&waker), Poll::Ready(()));

        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let mut s = shared.borrow_mut();
        s.queue_data(OpCode::Text, Bytes::from_static(b"lost"), false)
            .unwrap();
        s.terminate();
        assert_eq!(s.poll_writer_wanted(&waker), Poll::Pending);
    }

    #[test]
    fn the_reader_waits_for_the_reply_and_the_write_ends_the_wait() {
        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let (waker, wakes) = counting_waker();
        let mut s = shared.borrow_mut();
        assert_eq!(s.defer_read(), None, "nothing to wait for");
        s.queue_data(OpCode::Binary, Bytes::from_static(b"reply"), false)
            .unwrap();
        assert_eq!(s.defer_read(), Some(true), "waits, and is listed");
        assert_eq!(s.poll_read_deferred(&waker), Poll::Pending);
        let (job, spare, _) = next_job(&mut s);
        assert_eq!(job, Poll::Ready(WriteJob::Data));
        // Still in flight: still waiting.
        assert_eq!(s.poll_read_deferred(&waker), Poll::Pending);
        assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 0);
        s.on_data_written(spare.len());
        assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(s.poll_read_deferred(&waker), Poll::Ready(()));
        // The next reply waits again, without listing the connection twice.
        s.queue_data(OpCode::Binary, Bytes::from_static(b"again"), false)
            .unwrap();
        assert_eq!(s.defer_read(), Some(false));
    }

    #[test]
    fn a_wait_that_outlasts_the_tick_ends_and_waits_stop_until_the_queue_drains() {
        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let (waker, wakes) = counting_waker();
        let mut s = shared.borrow_mut();
        s.queue_data(OpCode::Binary, Bytes::from(vec![1u8; 100]), false)
            .unwrap();
        assert_eq!(s.defer_read(), Some(true));
        assert_eq!(s.poll_read_deferred(&waker), Poll::Pending);
        let (_, spare, _) = next_job(&mut s);
        // The peer does not read: the write does not complete, the core's list ends the wait.
        s.deferral_expired();
        assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(s.poll_read_deferred(&waker), Poll::Ready(()));
        s.queue_data(OpCode::Binary, Bytes::from_static(b"more"), false)
            .unwrap();
        assert_eq!(s.defer_read(), None, "no waits while the peer is slow");
        // Part of the queue goes out: still slow.
        s.on_data_written(10);
        assert_eq!(s.defer_read(), None);
        s.on_data_written(spare.len() - 10);
        let (_, rest, _) = next_job(&mut s);
        s.on_data_written(rest.len());
        assert_eq!(s.buffered_amount(), 0);
        s.queue_data(OpCode::Binary, Bytes::from_static(b"later"), false)
            .unwrap();
        assert_eq!(
            s.defer_read(),
            Some(true),
            "drained: waits again, listed anew"
        );
    }

    #[test]
    fn a_torn_down_connection_does_not_keep_its_reader_waiting() {
        let shared = Shared::new(Arc::new(WsOptions::new()), ClientId::new(0, 1));
        let (waker, wakes) = counting_waker();
        let mut s = shared.borrow_mut();
        s.queue_data(OpCode::Binary, Bytes::from_static(b"reply"), false)
            .unwrap();
        assert_eq!(s.defer_read(), Some(true));
        assert_eq!(s.poll_read_deferred(&waker), Poll::Pending);
        s.terminate();
        assert_eq!(wakes.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(s.poll_read_deferred(&waker), Poll::Ready(()));
        assert_eq!(s.defer_read(), None);
    }
}
