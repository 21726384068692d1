//! The echo path allocates nothing per message once a connection is warm: the read buffers
//! take turns (a message's payload is written straight from the buffer it was read into, and
//! that buffer is read into again once the write is done), at 16 KiB as at 20 bytes.
//!
//! This test binary counts every allocation (its own global allocator); the client is a
//! blocking std socket with pre-built frames, so it allocates nothing while it counts.

mod common;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    io::{Read, Write},
    net::TcpStream,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Barrier,
    },
    time::Duration,
};

use ringsocket::Server;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts the calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A masked binary frame of `len` bytes (`len` < 64 KiB) and the unmasked echo expected back.
fn frames(len: usize) -> (Vec<u8>, Vec<u8>) {
    let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let mut sent = vec![0x82];
    let mut echo = vec![0x82];
    if len < 126 {
        sent.push(0x80 | len as u8);
        echo.push(len as u8);
    } else {
        sent.push(0x80 | 126);
        echo.push(126);
        for out in [&mut sent, &mut echo] {
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
    }
    sent.extend_from_slice(&key);
    sent.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    echo.extend_from_slice(&payload);
    (sent, echo)
}

/// Allocations made by the whole process (the server's worker, above all) while `clients`
/// connections each echo a `len`-byte message `rounds` times, after a warm-up. The clients run
/// at once, so one worker has several connections' reads and writes completing together, as
/// under load.
fn allocations_per_echoes(len: usize, clients: usize, rounds: usize) -> u64 {
    let server = Server::new(common::echo_app())
        .workers(1)
        .listen("127.0.0.1:0")
        .expect("server starts");
    let addr = server.local_addr();
    let (sent, expected) = frames(len);
    // Warm-up done / count taken, rounds done / count taken.
    let gate = Barrier::new(clients + 1);
    let made = std::thread::scope(|scope| {
        for _ in 0..clients {
            scope.spawn(|| {
                let mut stream = common::raw_upgrade(addr, "/", Duration::from_secs(10));
                stream.set_nodelay(true).unwrap();
                let mut got = vec![0u8; expected.len()];
                let mut echo = |stream: &mut TcpStream| {
                    stream.write_all(&sent).unwrap();
                    stream.read_exact(&mut got).unwrap();
                    assert!(got == expected, "the echo differs from the message");
                };
                for _ in 0..50 {
                    echo(&mut stream);
                }
                gate.wait();
                gate.wait();
                for _ in 0..rounds {
                    echo(&mut stream);
                }
                gate.wait();
                gate.wait();
            });
        }
        gate.wait();
        let before = ALLOCATIONS.load(Relaxed);
        gate.wait();
        gate.wait();
        let made = ALLOCATIONS.load(Relaxed) - before;
        gate.wait();
        made
    });
    server.shutdown();
    made
}

/// One test (the counter is the whole process's): 20 B, then 16 KiB.
#[test]
fn a_warm_echo_allocates_nothing_per_message() {
    let small = allocations_per_echoes(20, 8, 300);
    assert!(
        small < 100,
        "{small} allocations for 8 x 300 echoes of 20 B"
    );
    // Before the writer's completion was handled ahead of the next read, a 16 KiB message
    // often found both read buffers still held (the previous echo's write done but not yet
    // seen) and allocated another.
    let large = allocations_per_echoes(16 * 1024, 8, 300);
    assert!(
        large < 100,
        "{large} allocations for 8 x 300 echoes of 16 KiB"
    );
}
