//! Starting and stopping servers leaks nothing: after `wait()` the listeners are closed and the
//! process holds no more file descriptors than before, on both drivers, whether or not
//! connections were served (idle, mid-handshake, or open WebSockets at shutdown).
//! (Alone in its binary: it counts the whole process's descriptors.)

mod common;

use std::{net::TcpStream, time::Duration};

use common::{block_on, echo_app, start};
use ringsocket::{client::Client, Message};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn start_serve_stop_cycles_leak_no_descriptors() {
    // One warm-up cycle: the first server creates process-wide things (the signal pipe is not
    // among them here, but allocator and runtime internals may be).
    let cycle = || {
        let server = start(echo_app());
        let addr = server.local_addr();
        // A connection that finished, one left open, and one that never sent its head.
        block_on(async move {
            let mut done = Client::connect(addr, "/").await.unwrap();
            done.send(Message::text("x")).await.unwrap();
            assert_eq!(done.recv().await.unwrap().unwrap(), Message::text("x"));
            done.close(1000, "").await.unwrap();
            assert!(done.wait_eof().await);
        });
        let open = std::thread::spawn(move || {
            block_on(async move {
                let mut client = Client::connect(addr, "/").await.unwrap();
                while client.recv().await.is_some() {}
            })
        });
        let silent = TcpStream::connect(addr).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        server.shutdown();
        server.wait();
        open.join().unwrap();
        drop(silent);
        addr
    };
    cycle();
    let before = open_fds();
    for _ in 0..10 {
        let addr = cycle();
        assert!(
            TcpStream::connect(addr).is_err(),
            "the listener is closed after wait()"
        );
    }
    let after = open_fds();
    if after != before {
        for entry in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
            eprintln!(
                "fd {:?} -> {:?}",
                entry.file_name(),
                std::fs::read_link(entry.path())
            );
        }
    }
    assert_eq!(after, before, "file descriptors leaked over 10 cycles");
}
