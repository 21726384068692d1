//! R: resource limits and abuse.

use std::{
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc, Arc, Mutex,
    },
    time::Duration,
};

use bytes::Bytes;
use ringsocket::{BackpressurePolicy, CloseReport, Message, Reply, WsOptions};

use crate::harness::*;

/// R1: a frame declaring more than `max_payload` is 1009 from its header alone.
#[test]
fn r01_declared_over_the_limit_is_1009_before_the_payload() {
    let case = Case::echo();
    let mut c = case.ws("/");
    c.send(&header64(0x82, (1 << 20) + 1));
    assert_eq!(c.expect_close(), Some(1009));
    c.expect_eof();
    case.finish();
}

/// R2: a fragmented message whose running total crosses the limit is 1009 at that fragment.
#[test]
fn r02_fragments_crossing_the_limit_are_1009() {
    let case = Case::new(
        base()
            .websocket(WsOptions::new().max_payload(10_000))
            .build()
            .unwrap(),
    );
    let mut c = case.ws("/");
    c.send(&frame(false, 2, &[1u8; 4000]));
    c.send(&frame(false, 0, &[1u8; 4000]));
    c.send(&frame(false, 0, &[1u8; 4000]));
    assert_eq!(c.expect_close(), Some(1009));
    c.expect_eof();
    case.finish();
}

/// R3: one 64 KiB frame in 65,000 tiny TCP segments: nothing retained per segment, the message
/// arrives whole.
#[test]
fn r03_one_frame_in_tiny_segments_arrives_whole() {
    let case = Case::echo();
    let mut c = case.ws("/");
    let payload: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    let bytes = frame(true, 2, &payload);
    for piece in bytes.chunks(3) {
        c.send(piece);
    }
    let f = c.frame();
    assert_eq!((f.opcode, f.payload), (2, payload));
    c.close_cleanly();
    case.finish();
}

/// The app for slow-reader cases: `/push` sends 16 KiB messages until refused, then reports.
fn pusher(policy: BackpressurePolicy, tx: mpsc::Sender<(u64, CloseReport)>) -> ringsocket::App {
    let tx = Mutex::new(tx);
    base()
        .websocket(
            WsOptions::new()
                .max_backpressure(256 * 1024)
                .backpressure_policy(policy)
                .close_timeout(Duration::from_millis(200)),
        )
        .ws("/push", move |ws, _req| {
            let tx = tx.lock().unwrap().clone();
            async move {
                let payload = Bytes::from(vec![7u8; 16 * 1024]);
                let mut accepted = 0u64;
                for _ in 0..100_000 {
                    match ws.send(Message::Binary(payload.clone())).await {
                        Ok(()) => accepted += 1,
                        Err(_) => break,
                    }
                    monoio::time::sleep(Duration::from_micros(200)).await;
                }
                if policy == BackpressurePolicy::Drop {
                    ws.terminate();
                }
                let _ = tx.send((accepted, ws.closed().await));
            }
        })
        .build()
        .unwrap()
}

/// R4: a client that never reads is closed with 1008 at the outbound limit, and every accepted
/// message is written or counted unsent.
#[test]
fn r04_slow_reader_is_closed_1008_and_accounted() {
    let (tx, rx) = mpsc::channel();
    let case = Case::new(pusher(BackpressurePolicy::Close, tx));
    let c = case.ws("/push");
    let (accepted, report) = rx.recv_timeout(Duration::from_secs(15)).unwrap();
    assert_eq!(report.sent_code, Some(1008));
    assert_eq!(report.accepted, accepted);
    assert_eq!(report.written + report.unsent, report.accepted);
    assert_eq!(report.dropped, 1);
    drop(c);
    case.finish();
}

/// R4: under the drop policy, refused messages are counted, the connection stays until the app
/// ends it, and the accounting still balances.
#[test]
fn r04_slow_reader_under_drop_policy_counts_refusals() {
    let (tx, rx) = mpsc::channel();
    let case = Case::new(pusher(BackpressurePolicy::Drop, tx));
    let c = case.ws("/push");
    let (accepted, report) = rx.recv_timeout(Duration::from_secs(15)).unwrap();
    assert_eq!(report.sent_code, None);
    assert_eq!(report.accepted, accepted);
    assert_eq!(report.written + report.unsent, report.accepted);
    assert_eq!(report.dropped, 1);
    drop(c);
    case.finish();
}

/// R5: slow and fast subscribers of one topic: the fast ones get every message in order; the
/// slow ones are closed by their outbound limit.
#[test]
fn r05_slow_subscribers_do_not_hold_back_fast_ones() {
    let app = base()
        .websocket(
            WsOptions::new()
                .max_backpressure(256 * 1024)
                .close_timeout(Duration::from_millis(200)),
        )
        .ws("/sub", |mut ws, _req| async move {
            ws.subscribe("news");
            let _ = ws.send(Message::text("subscribed")).await;
            while let Some(Ok(m)) = ws.recv().await {
                if m.is_close() {
                    break;
                }
            }
        })
        .build()
        .unwrap();
    let case = Case::new(app);
    let mut fast: Vec<Raw> = (0..4).map(|_| case.ws("/sub")).collect();
    let slow: Vec<Raw> = (0..4)
        .map(|_| {
            let c = case.ws("/sub");
            // A small receive window: the kernel holds little for a reader that never reads.
            socket2::SockRef::from(&c.stream)
                .set_recv_buffer_size(4096)
                .unwrap();
            c
        })
        .collect();
    for c in &mut fast {
        assert_eq!(c.frame().payload, b"subscribed");
    }
    let clients = case.server().clients();
    assert!(wait_until(ANSWER, || clients.subscribers("news") == 8));
    // Small messages: a burst from another thread reaches a core's connections in batches
    // of up to 256 messages, which must fit under the fast readers' outbound limit.
    const N: u32 = 10_000;
    let body = vec![b'n'; 512];
    let progress: Vec<Arc<AtomicU32>> = (0..fast.len()).map(|_| Arc::default()).collect();
    let readers: Vec<_> = fast
        .into_iter()
        .zip(progress.clone())
        .map(|(mut c, done)| {
            std::thread::spawn(move || {
                for i in 0..N {
                    let f = c.frame();
                    assert_eq!(&f.payload[..4], &i.to_be_bytes(), "in order");
                    done.store(i + 1, Ordering::Relaxed);
                }
                c
            })
        })
        .collect();
    for i in 0..N {
        let mut m = i.to_be_bytes().to_vec();
        m.extend_from_slice(&body);
        let d = clients.publish("news", Message::binary(m)).unwrap();
        assert_eq!(d.dropped_cores, 0);
        // A feed the fast readers keep up with: at most 100 messages (52 KB) ahead of them.
        if i % 100 == 99 {
            assert!(wait_until(ANSWER, || progress
                .iter()
                .all(|p| p.load(Ordering::Relaxed) > i - 50)));
        }
    }
    for r in readers {
        r.join()
            .expect("fast reader got every message in order")
            .close_cleanly();
    }
    // The slow ones were closed by the outbound limit.
    assert!(wait_until(ANSWER, || clients.subscribers("news") == 0));
    drop(slow);
    case.finish();
}

/// R6: connections beyond `max_connections` are answered 503; the open ones are untouched.
#[test]
fn r06_connections_beyond_the_limit_are_503() {
    let case = Case::with(base().build().unwrap(), |s| s.max_connections(8));
    // The control connection is one; 7 more fit.
    let mut open: Vec<Raw> = (0..7).map(|_| case.ws("/")).collect();
    for _ in 0..20 {
        let mut extra = case.tcp();
        extra.send(&upgrade_request("/", ""));
        assert_eq!(status_of(&extra.read_to_eof()), 503);
    }
    for (i, c) in open.iter_mut().enumerate() {
        c.echo(&format!("still open {i}"));
    }
    for c in open {
        c.close_cleanly();
    }
    // Room again.
    case.ws("/").close_cleanly();
    case.finish();
}

/// Restores `RLIMIT_NOFILE` however the case ends.
struct RestoreLimit(libc::rlimit);

impl Drop for RestoreLimit {
    fn drop(&mut self) {
        // SAFETY: setrlimit on a valid struct.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.0) };
    }
}

/// R6: out of descriptors (`RLIMIT_NOFILE`): the accept loop backs off instead of spinning, no
/// open connection is lost, and accepting resumes once descriptors are free.
#[test]
fn r06_descriptor_exhaustion_backs_off_and_recovers() {
    let case = Case::echo();
    let mut open: Vec<Raw> = (0..4).map(|_| case.ws("/")).collect();
    // Opened now: while out of descriptors nothing more can be opened, not even /proc files.
    let mut stats = worker_stat_files();
    assert!(!stats.is_empty(), "worker threads found");
    let mut original = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit on a local struct.
    assert_eq!(
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut original) },
        0
    );
    let restore = RestoreLimit(original);
    let lowered = libc::rlimit {
        rlim_cur: open_fds() as u64 + 12,
        rlim_max: original.rlim_max,
    };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);
    // Client sockets take descriptors here too: connect until the process is out.
    let mut flood = Vec::new();
    while let Ok(s) = std::net::TcpStream::connect(case.addr) {
        flood.push(s);
        assert!(flood.len() < 40, "the lowered limit holds");
    }
    // The server is out of descriptors for accepting: its workers must not spin.
    let t0 = cpu_ticks(&mut stats);
    let wall = std::time::Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let ticks = cpu_ticks(&mut stats) - t0;
    drop(stats);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let busy = ticks as f64 / hz / wall.elapsed().as_secs_f64();
    drop(flood);
    drop(restore);
    assert!(
        busy < 0.5,
        "workers {:.0}% busy while out of descriptors",
        busy * 100.0
    );
    for (i, c) in open.iter_mut().enumerate() {
        c.echo(&format!("kept {i}"));
    }
    // Accepting resumed.
    Raw::upgrade(case.addr, "/", "").close_cleanly();
    for c in open {
        c.close_cleanly();
    }
    case.finish();
}

/// The `stat` files of the server's worker threads, opened.
fn worker_stat_files() -> Vec<std::fs::File> {
    let mut files = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("ringsocket-") {
            files.push(std::fs::File::open(task.path().join("stat")).unwrap());
        }
    }
    files
}

/// CPU time (user + system clock ticks) in the given `stat` files, re-read.
fn cpu_ticks(files: &mut [std::fs::File]) -> u64 {
    use std::io::{Read, Seek};
    let mut total = 0;
    for file in files {
        let mut stat = String::new();
        file.rewind().unwrap();
        file.read_to_string(&mut stat).unwrap();
        let after = stat.rsplit_once(')').map_or("", |(_, s)| s);
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
        total += fields
            .get(11)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
        total += fields
            .get(12)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
    }
    total
}

/// R7: connect-then-reset churn, before and after the upgrade, leaks nothing.
#[test]
fn r07_connect_reset_churn_leaks_nothing() {
    let case = Case::echo();
    for i in 0..300 {
        let c = case.tcp();
        if i % 3 == 1 {
            let mut c = c;
            c.send(b"GET / HTTP/1.1\r\nHost: a\r\n");
            c.reset();
        } else if i % 3 == 2 {
            case.ws("/").reset();
        } else {
            c.reset();
        }
    }
    case.finish();
}

/// R8: a body over the route's limit on a plain route sharing the listener is 413.
#[test]
fn r08_large_body_on_a_plain_route_is_413() {
    let app = base()
        .body_limit(1024)
        .post("/upload", |_req| async move { Reply::new().code(204) })
        .build()
        .unwrap();
    let case = Case::new(app);
    let mut c = case.tcp();
    let mut req = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n".to_vec();
    req.resize(req.len() + 100_000, b'b');
    let _ = c.try_send(&req);
    assert_eq!(status_of(&c.read_to_eof()), 413);
    case.finish();
}
