//! The WebSocket read side's buffers. Decoded messages are slices of the buffer they were read
//! into, so while a handler (or a write of the echoed payload) still holds one, that buffer
//! cannot be reused. Two buffers take turns: reads go on into the other one, and by the time
//! it fills, the first is free again. A busy connection reads without allocating.

use bytes::BytesMut;
use monoio::buf::IoBufMut;

/// Reads larger than this (the rest of a large frame) do not keep a second buffer: a busy
/// connection holds at most two buffers of about this size, not two of its largest message.
const KEEP_TWO_UP_TO: usize = 64 * 1024;

pub(crate) struct ReadBufs {
    /// Where reads land and frames are decoded from.
    pub(crate) cur: BytesMut,
    /// The previous buffer, empty; messages may still hold parts of it.
    other: BytesMut,
}

impl ReadBufs {
    pub(crate) fn new(first: BytesMut) -> Self {
        Self {
            cur: first,
            other: BytesMut::new(),
        }
    }

    /// Makes room in `cur` for `want` more bytes after those it holds: in place when nothing
    /// else holds it, else in the other buffer when nothing holds that one any more (the
    /// bytes not yet decoded are moved over), else in a new buffer.
    pub(crate) fn make_room(&mut self, want: usize) {
        if self.cur.try_reclaim(want) {
            return;
        }
        let total = self.cur.len() + want;
        if !self.other.try_reclaim(total) {
            self.other = BytesMut::with_capacity(total);
        }
        self.other.extend_from_slice(&self.cur);
        std::mem::swap(&mut self.cur, &mut self.other);
        if want > KEEP_TWO_UP_TO {
            self.other = BytesMut::new();
        } else {
            self.other.clear();
        }
    }

    /// Lets both buffers go, for a connection that waits with a small one.
    pub(crate) fn release(&mut self) {
        self.cur = BytesMut::new();
        self.other = BytesMut::new();
    }
}

/// A buffer lent to a read that lands after the bytes it already holds: what
/// `slice_mut(len..)` does, in the buffer's 32 bytes where a slice takes 48. Every idle
/// connection keeps its read's future, which holds the buffer twice (monoio's read keeps its
/// operation both as an argument and as the future it awaits).
pub(crate) struct Tail(pub(crate) BytesMut);

// SAFETY: the pointer and length describe the buffer's spare capacity, which the buffer owns
// and which does not move while the buffer is not touched (the runtime keeps it for the
// read); `set_init` is called once, by the read's completion, with the bytes the kernel wrote
// there.
unsafe impl IoBufMut for Tail {
    fn write_ptr(&mut self) -> *mut u8 {
        self.0.spare_capacity_mut().as_mut_ptr().cast()
    }

    fn bytes_total(&mut self) -> usize {
        self.0.capacity() - self.0.len()
    }

    unsafe fn set_init(&mut self, written: usize) {
        debug_assert!(written <= self.0.capacity() - self.0.len());
        // SAFETY: the caller (the read's completion) guarantees `written` bytes after the
        // old end are initialized.
        unsafe { self.0.set_len(self.0.len() + written) };
    }
}

#[cfg(test)]
mod tests {
    use super::ReadBufs;
    use bytes::BytesMut;

    /// Reads `n` bytes of `fill` into the current buffer, as a read would.
    fn read(bufs: &mut ReadBufs, n: usize, fill: u8) {
        bufs.make_room(n);
        assert!(bufs.cur.capacity() - bufs.cur.len() >= n);
        bufs.cur.extend_from_slice(&vec![fill; n]);
    }

    #[test]
    fn a_buffer_nothing_holds_is_reused_in_place() {
        let mut bufs = ReadBufs::new(BytesMut::with_capacity(64));
        let start = bufs.cur.as_ptr();
        for _ in 0..10 {
            read(&mut bufs, 40, 1);
            assert_eq!(bufs.cur.as_ptr(), start);
            drop(bufs.cur.split_to(40).freeze());
        }
        // No second buffer was needed.
        assert_eq!(bufs.other.capacity(), 0);
    }

    #[test]
    fn held_messages_send_reads_to_the_other_buffer_and_back() {
        let mut bufs = ReadBufs::new(BytesMut::with_capacity(64));
        let first = bufs.cur.as_ptr();
        read(&mut bufs, 40, 1);
        let a = bufs.cur.split_to(40).freeze();
        // `a` holds the first buffer: the next read goes to a second one.
        read(&mut bufs, 40, 2);
        let second = bufs.cur.as_ptr();
        assert_ne!(second, first);
        let b = bufs.cur.split_to(40).freeze();
        drop(a);
        // The first is free again while `b` holds the second: back to the first.
        read(&mut bufs, 40, 3);
        assert_eq!(bufs.cur.as_ptr(), first);
        let c = bufs.cur.split_to(40).freeze();
        drop(b);
        read(&mut bufs, 40, 4);
        assert_eq!(bufs.cur.as_ptr(), second);
        assert_eq!(&c[..], &[3; 40][..]);
        assert_eq!(&bufs.cur[..], &[4; 40][..]);
    }

    #[test]
    fn undecoded_bytes_move_with_the_switch() {
        let mut bufs = ReadBufs::new(BytesMut::with_capacity(64));
        read(&mut bufs, 50, 1);
        let held = bufs.cur.split_to(40).freeze();
        // Ten bytes of a frame not yet complete stay; the rest of it needs 40 more.
        read(&mut bufs, 40, 2);
        let mut want = vec![1; 10];
        want.extend_from_slice(&[2; 40]);
        assert_eq!(&bufs.cur[..], &want[..]);
        assert_eq!(&held[..], &[1; 40][..]);
    }

    #[test]
    fn a_large_read_keeps_no_second_buffer() {
        let mut bufs = ReadBufs::new(BytesMut::with_capacity(64));
        read(&mut bufs, 40, 1);
        let held = bufs.cur.split_to(40).freeze();
        read(&mut bufs, 100, 2);
        read(&mut bufs, super::KEEP_TWO_UP_TO + 1, 3);
        assert_eq!(bufs.cur.len(), 100 + super::KEEP_TWO_UP_TO + 1);
        assert_eq!(bufs.other.capacity(), 0);
        assert_eq!(&held[..], &[1; 40][..]);
    }

    #[test]
    fn when_both_are_held_a_new_one_replaces_the_older() {
        let mut bufs = ReadBufs::new(BytesMut::with_capacity(64));
        read(&mut bufs, 40, 1);
        let a = bufs.cur.split_to(40).freeze();
        read(&mut bufs, 40, 2);
        let b = bufs.cur.split_to(40).freeze();
        read(&mut bufs, 40, 3);
        assert_eq!(&bufs.cur[..], &[3; 40][..]);
        assert_eq!((&a[..], &b[..]), (&[1; 40][..], &[2; 40][..]));
        bufs.release();
        assert_eq!((bufs.cur.capacity(), bufs.other.capacity()), (0, 0));
    }
}
