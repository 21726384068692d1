//! The soak run behind `scripts/soak.sh` (ignored by `cargo test`): thousands of clients mixing
//! normal traffic, garbage, slow readers, resets and reconnects against the echo and chat
//! examples, for a bounded time, while the servers' memory is sampled. It fails on any lost or
//! altered message, any unexpected close, or memory that keeps growing.

use std::{
    net::SocketAddr,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use ringsocket::{client::Client, CloseFrame, Message};

use crate::harness::{frame, masked, upgrade_request};

/// Counters shared by every client task.
#[derive(Default)]
struct Stats {
    rounds: AtomicU64,
    messages: AtomicU64,
    garbage: AtomicU64,
    resets: AtomicU64,
    slow: AtomicU64,
    chat: AtomicU64,
    errors: AtomicU64,
}

impl Stats {
    fn error(&self, what: String) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 20 {
            eprintln!("soak error: {what}");
        }
    }
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn env_addr(name: &str) -> SocketAddr {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} not set: run scripts/soak.sh"))
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not an address"))
}

/// Resident memory of process `pid`, in bytes.
fn rss_of(pid: u32) -> u64 {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[test]
#[ignore = "minutes long: run by scripts/soak.sh"]
fn soak() {
    let echo = env_addr("SOAK_ECHO");
    let chat = env_addr("SOAK_CHAT");
    let pids: Vec<u32> = [env("SOAK_ECHO_PID", 0u32), env("SOAK_CHAT_PID", 0u32)].to_vec();
    let secs: u64 = env("SOAK_SECS", 120);
    let clients: usize = env("SOAK_CLIENTS", 2000);
    let threads: usize = env("SOAK_THREADS", 4);
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);

    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (stats, stop) = (Arc::clone(&stats), Arc::clone(&stop));
            std::thread::spawn(move || {
                monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                    .enable_timer()
                    .build()
                    .expect("runtime")
                    .block_on(async move {
                        let mut tasks = Vec::new();
                        for i in (t..clients).step_by(threads) {
                            let (stats, stop) = (Arc::clone(&stats), Arc::clone(&stop));
                            tasks.push(monoio::spawn(client(i, echo, chat, stats, stop)));
                        }
                        for task in tasks {
                            task.await;
                        }
                    })
            })
        })
        .collect();

    // Memory over time: one sample per second of each server, printed every 10 s.
    let mut samples: Vec<(u64, Vec<u64>)> = Vec::new();
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_secs(1));
        let t = started.elapsed().as_secs();
        let rss: Vec<u64> = pids.iter().map(|&p| rss_of(p)).collect();
        if t % 10 == 0 {
            println!(
                "t={t:>4}s echo {:>6.1} MiB  chat {:>6.1} MiB  rounds {:>8}  messages {:>9}  garbage {:>6}  resets {:>6}  slow {:>5}  chat pairs {:>6}  errors {}",
                rss[0] as f64 / 1048576.0,
                rss[1] as f64 / 1048576.0,
                stats.rounds.load(Ordering::Relaxed),
                stats.messages.load(Ordering::Relaxed),
                stats.garbage.load(Ordering::Relaxed),
                stats.resets.load(Ordering::Relaxed),
                stats.slow.load(Ordering::Relaxed),
                stats.chat.load(Ordering::Relaxed),
                stats.errors.load(Ordering::Relaxed),
            );
        }
        samples.push((t, rss));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("client thread");
    }
    let errors = stats.errors.load(Ordering::Relaxed);
    let rounds = stats.rounds.load(Ordering::Relaxed);
    println!(
        "soak: {secs} s, {clients} clients, {rounds} rounds, {} messages echoed, {} garbage closes, {} resets, {} slow readers, {} chat pairs, {errors} errors",
        stats.messages.load(Ordering::Relaxed),
        stats.garbage.load(Ordering::Relaxed),
        stats.resets.load(Ordering::Relaxed),
        stats.slow.load(Ordering::Relaxed),
        stats.chat.load(Ordering::Relaxed),
    );
    assert_eq!(errors, 0, "lost, altered or unexpectedly closed");
    assert!(rounds > clients as u64, "every client made progress");
    // Flat memory: the last quarter's peak is within 10 % (+ 8 MiB) of the second quarter's.
    let n = samples.len();
    assert!(n >= 8, "at least 8 s of samples");
    for (server, name) in ["echo", "chat"].iter().enumerate() {
        let peak = |range: std::ops::Range<usize>| {
            samples[range]
                .iter()
                .map(|(_, r)| r[server])
                .max()
                .unwrap_or(0)
        };
        let warm = peak(n / 4..n / 2);
        let late = peak(n * 3 / 4..n);
        println!(
            "soak: {name} peak RSS {:.1} MiB in the 2nd quarter, {:.1} MiB in the last",
            warm as f64 / 1048576.0,
            late as f64 / 1048576.0
        );
        assert!(
            late <= warm + warm / 10 + (8 << 20),
            "{name} memory grew from {warm} to {late} bytes"
        );
    }
}

/// One client slot: rounds of one behaviour after another until the stop flag.
async fn client(
    i: usize,
    echo: SocketAddr,
    chat: SocketAddr,
    stats: Arc<Stats>,
    stop: Arc<AtomicBool>,
) {
    let stats = Rc::new(stats);
    let mut round = 0u64;
    // Spread the start so the servers are not hit by every client in the same millisecond.
    monoio::time::sleep(Duration::from_millis((i % 500) as u64)).await;
    while !stop.load(Ordering::Relaxed) {
        let kind = (i as u64 + round) % 8;
        let result = match kind {
            0..=2 => normal(echo, i, round, &stats).await,
            3 => garbage(echo, round, &stats).await,
            4 => slow_reader(echo, round, &stats).await,
            5 => reset(echo, round, &stats).await,
            _ => chat_pair(chat, i, round, &stats).await,
        };
        if let Err(e) = result {
            stats.error(format!("client {i} round {round} kind {kind}: {e}"));
        }
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        round += 1;
    }
}

type Res = Result<(), String>;

/// Bounds one step: a server that stops answering is an error, not a hang.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> Result<T, String> {
    monoio::time::timeout(Duration::from_secs(10), f)
        .await
        .map_err(|_| format!("{what}: no answer in 10 s"))
}

async fn connect(addr: SocketAddr, path: &str) -> Result<Client<monoio::net::TcpStream>, String> {
    within("connect", Client::connect(addr, path))
        .await?
        .map_err(|e| format!("connect: {e}"))
}

async fn expect(c: &mut Client<monoio::net::TcpStream>, want: &Message) -> Res {
    match within("recv", c.recv()).await? {
        Some(Ok(got)) if &got == want => Ok(()),
        other => Err(format!("expected {:?}, got {other:?}", short(want))),
    }
}

fn short(m: &Message) -> String {
    let s = format!("{m:?}");
    s.chars().take(60).collect()
}

async fn close_cleanly(mut c: Client<monoio::net::TcpStream>) -> Res {
    c.close(1000, "").await.map_err(|e| format!("close: {e}"))?;
    expect(
        &mut c,
        &Message::Close(Some(CloseFrame {
            code: 1000,
            reason: String::new(),
        })),
    )
    .await?;
    if within("eof", c.wait_eof()).await? {
        Ok(())
    } else {
        Err("data after the close".into())
    }
}

/// A few messages of varied sizes, each echoed exactly, then a clean close.
async fn normal(addr: SocketAddr, i: usize, round: u64, stats: &Stats) -> Res {
    let mut c = connect(addr, "/").await?;
    for k in 0..4u64 {
        let size = ((i as u64 * 31 + round * 7 + k * 131) % 3000) as usize;
        let m = if k % 2 == 0 {
            Message::text(format!("{i}/{round}/{k}:{}", "x".repeat(size)))
        } else {
            Message::binary(vec![(k as u8) ^ (round as u8); size])
        };
        c.send(m.clone()).await.map_err(|e| format!("send: {e}"))?;
        expect(&mut c, &m).await?;
        stats.messages.fetch_add(1, Ordering::Relaxed);
    }
    close_cleanly(c).await
}

/// A protocol violation: the exact close code, then the end of TCP.
async fn garbage(addr: SocketAddr, round: u64, stats: &Stats) -> Res {
    let mut c = connect(addr, "/").await?;
    let (bytes, code) = match round % 4 {
        0 => (b"\x81\x02hi".to_vec(), 1002),
        1 => (masked(0x83, b"x"), 1002),
        2 => (frame(true, 1, b"\xff\xfe"), 1007),
        _ => (frame(true, 8, &[3]), 1002),
    };
    c.send_raw(&bytes).await.map_err(|e| format!("send: {e}"))?;
    match within("recv", c.recv()).await? {
        Some(Ok(Message::Close(Some(f)))) if f.code == code => {}
        other => return Err(format!("garbage: expected close {code}, got {other:?}")),
    }
    stats.garbage.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Sends 64 messages (256 KiB) before reading any reply, then reads all of them in order.
async fn slow_reader(addr: SocketAddr, round: u64, stats: &Stats) -> Res {
    let mut c = connect(addr, "/").await?;
    let messages: Vec<Message> = (0..64u32)
        .map(|k| {
            let mut body = k.to_be_bytes().to_vec();
            body.resize(4096, round as u8);
            Message::binary(body)
        })
        .collect();
    for m in &messages {
        c.send(m.clone()).await.map_err(|e| format!("send: {e}"))?;
    }
    monoio::time::sleep(Duration::from_millis(20)).await;
    for m in &messages {
        expect(&mut c, m).await?;
    }
    stats.slow.fetch_add(1, Ordering::Relaxed);
    close_cleanly(c).await
}

/// An upgrade, half a frame, then a reset.
async fn reset(addr: SocketAddr, round: u64, stats: &Stats) -> Res {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    use std::os::fd::AsRawFd;
    let mut s = within("connect", monoio::net::TcpStream::connect(addr))
        .await?
        .map_err(|e| format!("connect: {e}"))?;
    let mut bytes = upgrade_request("/", "");
    let whole = frame(true, 2, &vec![1u8; 2000]);
    bytes.extend_from_slice(&whole[..(round as usize % 1900) + 10]);
    let (r, _) = s.write_all(bytes).await;
    r.map_err(|e| format!("send: {e}"))?;
    let (r, head) = within("101", s.read(vec![0u8; 512])).await?;
    let n = r.map_err(|e| format!("read: {e}"))?;
    if !head[..n].starts_with(b"HTTP/1.1 101") {
        return Err(format!(
            "reset: no 101: {:?}",
            String::from_utf8_lossy(&head[..n])
        ));
    }
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt on the live socket with a correctly sized value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    drop(s);
    stats.resets.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Two members of a fresh room (possibly on different cores): every line one sends reaches the
/// other, in order.
async fn chat_pair(addr: SocketAddr, i: usize, round: u64, stats: &Stats) -> Res {
    let room = format!("/chat/soak-{i}-{round}");
    let mut a = connect(addr, &room).await?;
    let mut b = connect(addr, &room).await?;
    // Both subscribed: `/who` counts two.
    let mut tries = 0;
    loop {
        a.send(Message::text("/who"))
            .await
            .map_err(|e| e.to_string())?;
        match within("who", a.recv()).await? {
            Some(Ok(Message::Text(t))) if t.as_str().starts_with("2 in room") => break,
            Some(Ok(Message::Text(_))) if tries < 100 => {
                tries += 1;
                monoio::time::sleep(Duration::from_millis(5)).await;
            }
            other => return Err(format!("who: {other:?}")),
        }
    }
    for k in 0..5 {
        a.send(Message::text(format!("line {k}")))
            .await
            .map_err(|e| e.to_string())?;
    }
    for k in 0..5 {
        match within("chat line", b.recv()).await? {
            Some(Ok(Message::Text(t))) if t.as_str().ends_with(&format!(": line {k}")) => {}
            other => return Err(format!("chat line {k}: {other:?}")),
        }
    }
    stats.chat.fetch_add(1, Ordering::Relaxed);
    close_cleanly(a).await?;
    close_cleanly(b).await
}
