//! A deflate bomb: a 1 MiB-limit server gets a frame of about 1 MB that inflates to 1 GiB. It
//! must close with 1009 at once, having allocated about the limit, not the gigabyte. This
//! binary has one test and counts every allocation of the process, so the peak it sees is the
//! server's (plus the client's frame).

mod deflate_support;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use deflate_support::*;
use flate2::{Decompress, FlushDecompress};
use ringsocket::DeflateMode;

/// The system allocator, counting the bytes in use and their peak.
struct Counting;

static IN_USE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as is to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = IN_USE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        IN_USE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as is to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Writes deflate's bit stream: header fields least significant bit first, Huffman codes
/// most significant bit first (RFC 1951 §3.1.1).
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u64, count: u32) {
        self.acc |= value << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn code(&mut self, code: u64, len: u32) {
        let reversed = (0..len).fold(0, |r, i| r | ((code >> i) & 1) << (len - 1 - i));
        self.put(reversed, len);
    }
}

/// One dynamic-Huffman block: a literal 0, then `pairs` copies of 258 bytes at distance 1,
/// at 2 bits each (the densest deflate allows), then end of block and the header of the empty
/// stored block whose length bytes are the `00 00 ff ff` tail the receiver adds.
/// It inflates to `1 + 258 * pairs` zero bytes.
fn bomb(pairs: usize) -> Vec<u8> {
    let mut b = Bits {
        out: Vec::with_capacity(pairs / 4 + 64),
        acc: 0,
        n: 0,
    };
    b.put(0, 1); // BFINAL
    b.put(2, 2); // dynamic Huffman
    b.put(29, 5); // HLIT: 286 literal/length codes
    b.put(0, 5); // HDIST: 1 distance code
    b.put(14, 4); // HCLEN: 18 code length codes
                  // Code length code lengths, in RFC 1951's order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1:
                  // 18 (a run of zeros) gets 1 bit, lengths 1 and 2 get 2 bits.
    for len in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
        b.put(len, 3);
    }
    // Canonical codes: 18 -> 0, 1 -> 10, 2 -> 11.
    let (run, one, two) = ((0b0, 1), (0b10, 2), (0b11, 2));
    // Literal/length lengths: 0 -> 2, 1..=255 -> 0, 256 -> 2, 257..=284 -> 0, 285 -> 1;
    // then the one distance code (0) -> 1.
    b.code(two.0, two.1);
    b.code(run.0, run.1);
    b.put(138 - 11, 7);
    b.code(run.0, run.1);
    b.put(117 - 11, 7);
    b.code(two.0, two.1);
    b.code(run.0, run.1);
    b.put(28 - 11, 7);
    b.code(one.0, one.1);
    b.code(one.0, one.1);
    // Canonical literal/length codes: 285 -> 0, 0 -> 10, 256 -> 11; distance 0 -> 0.
    b.code(0b10, 2);
    for _ in 0..pairs {
        b.code(0, 1);
        b.code(0, 1);
    }
    b.code(0b11, 2);
    // The empty stored block's header; its LEN/NLEN are the tail.
    b.put(0, 3);
    if b.n > 0 {
        b.put(0, 8 - b.n);
    }
    b.out
}

#[test]
fn bomb_is_closed_with_1009_within_the_limit() {
    // The handmade stream is real deflate: check it on a small one first.
    let small = bomb(1000);
    let mut input = small.clone();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(300_000);
    Decompress::new_with_window_bits(false, 15)
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    assert_eq!(out.len(), 1 + 258 * 1000);
    assert!(out.iter().all(|&b| b == 0));

    let limit = 1 << 20;
    let pairs = ((1usize << 30) - 1) / 258;
    let payload = bomb(pairs);
    assert!(payload.len() < limit, "{}", payload.len());
    let frame = masked(0xC2, &payload);
    drop(payload);

    let server = echo_server(deflate_options(DeflateMode::Dedicated).max_payload(limit));
    let mut ws = Raw::connect(server.local_addr(), Some("permessage-deflate"));
    let before = IN_USE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let started = Instant::now();
    ws.send(&frame);
    let reply = ws.frame();
    let elapsed = started.elapsed();
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert_eq!(reply.close_code(), 1009);
    // The server held the ~1 MB frame, its read buffer, and at most limit + 1 inflated bytes:
    // a few MiB, where inflating it all would take 1 GiB.
    assert!(peak < 8 << 20, "peak {peak} bytes above the baseline");
    // Inflating stops at the limit: far from the time a gigabyte would take.
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    eprintln!(
        "bomb of {} bytes: 1009 after {elapsed:?}, peak +{peak} bytes",
        frame.len()
    );
    drop(ws);
    server.shutdown();
    server.wait();
}
