//! The writer's side of a connection's state: what to write next, and what was written.

use std::task::{Poll, Waker};

use bytes::BytesMut;

use super::{CloseReport, Phase, Shared, WriteJob};
use crate::proto::{encode_frame, OpCode};

/// Shared frames smaller than this are copied into one write with their neighbours; larger
/// ones are written as they are (no copy).
const COALESCE: usize = 16 * 1024;

impl Shared {
    /// What the writer should do next.
    pub(crate) fn poll_write_job(&mut self, waker: &Waker, spare: &mut BytesMut) -> Poll<WriteJob> {
        if self.terminated {
            return Poll::Ready(WriteJob::Stop);
        }
        if !self.pending_pongs.is_empty() {
            spare.clear();
            for payload in self.pending_pongs.drain(..) {
                encode_frame(spare, true, false, OpCode::Pong, None, &payload);
            }
            return Poll::Ready(WriteJob::Control);
        }
        if let Some(chunk) = self.chunks.pop_front() {
            self.chunks_bytes -= chunk.len();
            let alone = self.chunks.is_empty() && self.out.is_empty();
            if alone || chunk.len() >= COALESCE {
                self.in_flight = chunk.len();
                return Poll::Ready(WriteJob::Shared(chunk));
            }
            // Several small frames queued (a burst of broadcasts): copy them into one write
            // instead of one write each. Sends queued after them follow in the same write.
            spare.clear();
            spare.extend_from_slice(&chunk);
            while let Some(next) = self.chunks.front() {
                if spare.len() + next.len() > COALESCE {
                    break;
                }
                spare.extend_from_slice(next);
                self.chunks_bytes -= next.len();
                self.chunks.pop_front();
            }
            if self.chunks.is_empty() && spare.len() + self.out.len() <= COALESCE {
                spare.extend_from_slice(&self.out);
                self.out.clear();
            }
            self.in_flight = spare.len();
            return Poll::Ready(WriteJob::Data);
        }
        if !self.out.is_empty() {
            // Hand over everything queued; `send` keeps appending to the fresh buffer while
            // the write is in flight.
            spare.clear();
            std::mem::swap(&mut self.out, spare);
            self.in_flight = spare.len();
            return Poll::Ready(WriteJob::Data);
        }
        if let Some(close) = self.pending_close.take() {
            spare.clear();
            spare.extend_from_slice(&close);
            self.close_written = true;
            return Poll::Ready(WriteJob::Close {
                shutdown: self.shutdown_after_close,
            });
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
        self.written_bytes += n as u64;
        self.in_flight = 0;
        if self.buffered_amount() == 0 {
            self.wake_senders();
        }
        while self
            .out_ends
            .front()
            .is_some_and(|&end| end <= self.written_bytes)
        {
            self.out_ends.pop_front();
            self.report.written += 1;
        }
    }

    /// The write side failed: nothing more can go out.
    pub(crate) fn on_write_error(&mut self) {
        self.phase = Phase::Closed;
        self.pending_close = None;
        self.wake_senders();
    }

    /// The reader stopped reading.
    pub(crate) fn set_reader_done(&mut self) {
        self.reader_done = true;
        if let Some(w) = self.reader_done_waker.take() {
            w.wake();
        }
    }

    pub(crate) fn poll_reader_done(&mut self, waker: &Waker) -> Poll<()> {
        if self.reader_done || self.terminated {
            return Poll::Ready(());
        }
        self.reader_done_waker = Some(waker.clone());
        Poll::Pending
    }

    pub(crate) fn mark_clean(&mut self) {
        self.report.clean = self.close_written && self.report.received.is_some();
    }

    /// The connection is over: the report is final.
    pub(crate) fn set_finished(&mut self) {
        self.phase = Phase::Closed;
        self.inbound_done = true;
        self.finished = true;
        self.detach();
        for w in self.finished_wakers.drain(..) {
            w.wake();
        }
        self.wake_all();
    }

    pub(crate) fn poll_finished(&mut self, waker: &Waker) -> Poll<CloseReport> {
        if self.finished {
            return Poll::Ready(self.report());
        }
        if !self.finished_wakers.iter().any(|w| w.will_wake(waker)) {
            self.finished_wakers.push(waker.clone());
        }
        Poll::Pending
    }

    pub(super) fn wake_writer(&mut self) {
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        } else if !self.terminated && self.has_writes() {
            if let Some(start) = self.writer_start.take() {
                start();
            }
        }
    }

    fn has_writes(&self) -> bool {
        !self.pending_pongs.is_empty()
            || !self.chunks.is_empty()
            || !self.out.is_empty()
            || self.pending_close.is_some()
    }

    /// Installs what starts the writer on the first write.
    pub(crate) fn set_writer_start(&mut self, start: Box<dyn FnOnce()>) {
        self.writer_start = Some(start);
    }

    /// The reader is done: the writer's starter if the writer never started (nothing was
    /// ever written), for the caller to drop once the socket may close.
    pub(crate) fn take_writer_start(&mut self) -> Option<Box<dyn FnOnce()>> {
        self.writer_start.take()
    }

    pub(crate) fn set_writer_done(&mut self) {
        self.writer_done = true;
        if let Some(w) = self.writer_done_waker.take() {
            w.wake();
        }
    }

    pub(crate) fn poll_writer_done(&mut self, waker: &Waker) -> Poll<()> {
        if self.writer_done {
            return Poll::Ready(());
        }
        self.writer_done_waker = Some(waker.clone());
        Poll::Pending
    }

    pub(super) fn wake_senders(&mut self) {
        for w in self.flush_wakers.drain(..) {
            w.wake();
        }
    }

    pub(super) fn wake_all(&mut self) {
        self.wake_writer();
        self.wake_senders();
        if let Some(w) = self.recv_waker.take() {
            w.wake();
        }
        if let Some(w) = self.room_waker.take() {
            w.wake();
        }
        if let Some(w) = self.reader_done_waker.take() {
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
        proto::{encode_frame, OpCode},
        ws::shared::{Shared, WriteJob},
        WsOptions,
    };

    fn frame(payload: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        encode_frame(&mut out, true, false, OpCode::Binary, None, payload);
        out.freeze()
    }

    #[test]
    fn small_shared_frames_and_later_sends_go_out_in_one_write_in_order() {
        let shared = Shared::new(Arc::new(WsOptions::new()));
        let mut s = shared.borrow_mut();
        s.queue_data(OpCode::Binary, b"first", false).unwrap();
        s.queue_shared(frame(b"a")).unwrap();
        s.queue_shared(frame(b"bb")).unwrap();
        s.queue_data(OpCode::Binary, b"last", false).unwrap();
        let mut spare = BytesMut::new();
        let job = s.poll_write_job(Waker::noop(), &mut spare);
        assert_eq!(job, Poll::Ready(WriteJob::Data));
        let mut want = BytesMut::new();
        for payload in [&b"first"[..], b"a", b"bb", b"last"] {
            encode_frame(&mut want, true, false, OpCode::Binary, None, payload);
        }
        assert_eq!(&spare[..], &want[..]);
        assert_eq!(s.buffered_amount(), want.len());
        s.on_data_written(spare.len());
        assert_eq!(s.report().written, 4);
        assert_eq!(s.buffered_amount(), 0);
        assert!(s.poll_write_job(Waker::noop(), &mut spare).is_pending());
    }

    #[test]
    fn the_writer_starts_on_the_first_write_and_only_once() {
        let shared = Shared::new(Arc::new(WsOptions::new()));
        let starts = std::rc::Rc::new(std::cell::Cell::new(0));
        let mut s = shared.borrow_mut();
        let counter = std::rc::Rc::clone(&starts);
        s.set_writer_start(Box::new(move || counter.set(counter.get() + 1)));
        // Wake-ups with nothing to write (a received pong, the liveness sweep) start nothing.
        s.wake_all();
        assert_eq!(starts.get(), 0);
        s.queue_data(OpCode::Text, b"hello", false).unwrap();
        assert_eq!(starts.get(), 1);
        s.queue_data(OpCode::Text, b"again", false).unwrap();
        s.on_ping(Bytes::from_static(b"p"));
        assert_eq!(starts.get(), 1);
        assert!(s.take_writer_start().is_none());
    }

    #[test]
    fn a_connection_that_never_writes_hands_its_starter_back() {
        let shared = Shared::new(Arc::new(WsOptions::new()));
        let mut s = shared.borrow_mut();
        s.set_writer_start(Box::new(|| panic!("nothing was written")));
        s.on_read_end();
        s.terminate();
        assert!(s.take_writer_start().is_some());
    }

    #[test]
    fn a_lone_or_large_shared_frame_is_written_without_a_copy() {
        let shared = Shared::new(Arc::new(WsOptions::new()));
        let mut s = shared.borrow_mut();
        let mut spare = BytesMut::new();
        let lone = frame(b"only");
        s.queue_shared(lone.clone()).unwrap();
        assert_eq!(
            s.poll_write_job(Waker::noop(), &mut spare),
            Poll::Ready(WriteJob::Shared(lone.clone()))
        );
        s.on_data_written(lone.len());
        let large = frame(&vec![7; 20 * 1024]);
        s.queue_shared(large.clone()).unwrap();
        s.queue_shared(frame(b"small")).unwrap();
        assert_eq!(
            s.poll_write_job(Waker::noop(), &mut spare),
            Poll::Ready(WriteJob::Shared(large.clone()))
        );
        s.on_data_written(large.len());
        assert_eq!(
            s.poll_write_job(Waker::noop(), &mut spare),
            Poll::Ready(WriteJob::Shared(frame(b"small")))
        );
        assert_eq!(s.report().written, 2);
    }
}
