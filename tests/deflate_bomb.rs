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
