//! The writer's side of a connection's state: what to write next, and what was written.

use std::task::{Poll, Waker};

use bytes::BytesMut;

use super::{CloseReport, Phase, Shared, WriteJob};
use crate::proto::{encode_frame, OpCode};

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
            self.in_flight = chunk.len();
            return Poll::Ready(WriteJob::Shared(chunk));
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
        }
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
