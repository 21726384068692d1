//! The battery's common ground: one case at a time (the checks count the whole process's
//! descriptors and memory), a server on port 0 with a control connection that round-trips
//! all through the case, a blocking raw WebSocket client that sends exact bytes, and the
//! closing check that descriptors, registry and memory are back where they were.

use std::{
    io::{ErrorKind, Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use ringsocket::{App, AppBuilder, Server, ServerHandle};

// The raw frame builders live with the deflate client helpers, which this crate includes too.
pub use crate::deflate_support::{masked, masked_with, KEY};

/// How long any single expected answer may take.
pub const ANSWER: Duration = Duration::from_secs(5);
/// Extra resident memory a case may leave behind (allocator caches, thread stacks).
const RSS_SLACK: usize = 32 << 20;

static SERIAL: Mutex<()> = Mutex::new(());
static WARM_UP: std::sync::Once = std::sync::Once::new();

/// Descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Resident memory of this process, in bytes.
pub fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

/// Polls `done` until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The app every case starts from: the control route `/` echoes.
pub fn base() -> AppBuilder {
    App::builder().ws("/", |mut ws, _req| async move {
        while let Some(Ok(message)) = ws.recv().await {
            if message.is_close() || ws.send(message).await.is_err() {
                break;
            }
        }
    })
}

/// A running case: its server, its control connection, and the baseline to come back to.
pub struct Case {
    _serial: MutexGuard<'static, ()>,
    server: Option<ServerHandle>,
    pub addr: SocketAddr,
    control: Option<Control>,
    fds: usize,
    rss: usize,
    /// Tracked connections expected when the case ends (the control connections).
    tracked: usize,
}

impl Case {
    /// The echo app on one worker.
    pub fn echo() -> Self {
        Self::new(base().build().expect("app"))
    }

    /// `app` on one worker, so the control connection shares the core with the case.
    pub fn new(app: App) -> Self {
        Self::with(app, |s| s)
    }

    /// `app` on one worker with server settings.
    pub fn with(app: App, server: impl FnOnce(Server) -> Server) -> Self {
        Self::on(app, 1, server)
    }

    /// `app` on `workers` workers; one control connection per worker is attempted (the kernel
    /// spreads connections; every control connection is checked).
    pub fn on(app: App, workers: usize, server: impl FnOnce(Server) -> Server) -> Self {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        WARM_UP.call_once(|| {
            // The first panic of a process loads the backtrace machinery (tens of MiB with
            // RUST_BACKTRACE set): done here, before any baseline, so a case that panics a
            // handler measures its own memory only.
            eprintln!("battery warm-up: one deliberate panic follows");
            let _ = std::panic::catch_unwind(|| panic!("battery warm-up"));
        });
        let server = server(Server::new(app).workers(workers))
            .listen("127.0.0.1:0")
            .expect("server starts");
        let addr = server.local_addr();
        let control = Control::start(addr, workers);
        let tracked = workers;
        assert!(
            wait_until(ANSWER, || server.clients().len() == tracked),
            "control connections registered"
        );
        Case {
            _serial: serial,
            addr,
            fds: open_fds(),
            rss: rss(),
            server: Some(server),
            control: Some(control),
            tracked,
        }
    }

    /// The running server.
    pub fn server(&self) -> &ServerHandle {
        self.server.as_ref().expect("server running")
    }

    /// A TCP connection with nothing sent.
    pub fn tcp(&self) -> Raw {
        Raw::tcp(self.addr)
    }

    /// An upgraded connection to `path`.
    pub fn ws(&self, path: &str) -> Raw {
        Raw::upgrade(self.addr, path, "")
    }

    /// On a fresh connection to `/`, sends `bytes` and returns the server's close code, after
    /// checking nothing but the close frame came and that TCP then ends.
    pub fn close_code_for(&self, bytes: &[u8]) -> Option<u16> {
        let mut c = self.ws("/");
        c.send(bytes);
        let code = c.expect_close();
        c.expect_eof();
        code
    }

    /// Sends a raw HTTP request on a fresh connection and returns everything answered until the
    /// server closes.
    pub fn exchange(&self, request: &[u8]) -> Vec<u8> {
        let mut c = self.tcp();
        c.send(request);
        c.read_to_eof()
    }

    /// The status of the answer to `request`, checking that the server closes afterwards and
    /// never answers 101.
    pub fn status_for(&self, request: &[u8]) -> u16 {
        let raw = self.exchange(request);
        let status = status_of(&raw);
        assert_ne!(status, 101, "never 101 for a refused upgrade");
        status
    }

    /// Ends the case: the control connection must have round-tripped all along, and the
    /// descriptors, the registry and the memory must come back to the baseline.
    pub fn finish(mut self) {
        self.check_back_to_baseline();
        let control = self.control.take().expect("control running");
        let rounds = control.stop();
        assert!(rounds > 0, "the control connection round-tripped");
        let server = self.server.take().expect("server running");
        server.shutdown();
        server.wait();
    }

    /// Descriptors, tracked clients and memory are back to the baseline (bounded waits).
    pub fn check_back_to_baseline(&self) {
        let server = self.server();
        let fds = self.fds;
        if !wait_until(ANSWER, || open_fds() <= fds) {
            for entry in std::fs::read_dir("/proc/self/fd")
                .into_iter()
                .flatten()
                .flatten()
            {
                eprintln!(
                    "fd {:?} -> {:?}",
                    entry.file_name(),
                    std::fs::read_link(entry.path())
                );
            }
            panic!("descriptors back to {fds}, now {}", open_fds());
        }
        let tracked = self.tracked;
        assert!(
            wait_until(ANSWER, || server.clients().len() == tracked),
            "registry back to {tracked}, now {}",
            server.clients().len()
        );
        let now = rss();
        assert!(
            now <= self.rss + RSS_SLACK,
            "resident memory grew from {} to {} bytes",
            self.rss,
            now
        );
    }

    /// Shuts the server down and waits for it, for cases about shutdown (the control
    /// connection is expected to get 1001 then). Returns how long the shutdown took and a check
    /// to run once the case has dropped its own connections.
    pub fn shutdown_and_wait(mut self) -> Stopped {
        let control = self.control.take().expect("control running");
        let server = self.server.take().expect("server running");
        let started = Instant::now();
        server.shutdown();
        server.wait();
        let took = started.elapsed();
        control.stop_after_shutdown();
        Stopped {
            took,
            fds: self.fds,
        }
    }
}

/// A case whose server has stopped.
pub struct Stopped {
    /// From the shutdown call to the last worker's end.
    pub took: Duration,
    fds: usize,
}

impl Stopped {
    /// The server released its descriptors (listener and rings included: fewer than the
    /// baseline). Call after dropping the case's own connections.
    pub fn assert_released(&self) {
        let fds = self.fds;
        assert!(
            wait_until(ANSWER, || open_fds() < fds),
            "descriptors released at shutdown: {} of {fds} still open",
            open_fds()
        );
    }
}

impl Drop for Case {
    fn drop(&mut self) {
        if let Some(control) = self.control.take() {
            control.flag.store(true, Ordering::Relaxed);
        }
        if let Some(server) = self.server.take() {
            server.shutdown();
            if !std::thread::panicking() {
                server.wait();
            }
        }
    }
}

/// Control connections that echo a counter in a loop on their own thread.
struct Control {
    flag: Arc<AtomicBool>,
    thread: JoinHandle<Result<u64, String>>,
}

impl Control {
    fn start(addr: SocketAddr, connections: usize) -> Self {
        let clients: Vec<Raw> = (0..connections)
            .map(|_| Raw::upgrade(addr, "/", ""))
            .collect();
        let flag = Arc::new(AtomicBool::new(false));
        let stop = Arc::clone(&flag);
        let thread = std::thread::spawn(move || {
            let mut clients = clients;
            let mut rounds = 0u64;
            loop {
                for (i, c) in clients.iter_mut().enumerate() {
                    let text = format!("control {i} {rounds}");
                    c.try_send(&frame(true, 1, text.as_bytes()))
                        .map_err(|e| format!("control send: {e}"))?;
                    match c.try_frame() {
                        Ok(Some(f)) if f.opcode == 1 && f.payload == text.as_bytes() => {}
                        Ok(Some(f)) if stop.load(Ordering::Relaxed) && f.opcode == 8 => {
                            return Ok(rounds)
                        }
                        other => return Err(format!("control round {rounds}: {other:?}")),
                    }
                }
                rounds += 1;
                if stop.load(Ordering::Relaxed) {
                    for c in &mut clients {
                        c.send(&close_frame(1000, b""));
                    }
                    return Ok(rounds);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Control { flag, thread }
    }

    fn stop(self) -> u64 {
        self.flag.store(true, Ordering::Relaxed);
        match self.thread.join() {
            Ok(Ok(rounds)) => rounds,
            Ok(Err(e)) => panic!("control connection failed during the case: {e}"),
            Err(_) => panic!("control thread panicked"),
        }
    }

    fn stop_after_shutdown(self) {
        self.flag.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The code of a close frame (`None` for an empty one).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, 8, "not a close frame: {self:?}");
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A blocking client that speaks raw bytes.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// A plain TCP connection.
    pub fn tcp(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        stream.set_read_timeout(Some(ANSWER)).expect("timeout");
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Upgrades to `path` with extra header lines; panics unless the answer is 101.
    pub fn upgrade(addr: SocketAddr, path: &str, extra: &str) -> Self {
        let mut c = Self::tcp(addr);
        c.send(&upgrade_request(path, extra));
        let head = c.read_head().expect("a response head");
        assert_eq!(status_of(&head), 101, "{}", String::from_utf8_lossy(&head));
        c
    }

    /// Writes all of `bytes` (panics on error).
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Writes all of `bytes`.
    pub fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads more; `Ok(0)` at EOF.
    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response head (through the blank line); what follows stays buffered.
    pub fn read_head(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                return Some(self.buf.drain(..end + 4).collect());
            }
            match self.fill() {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Everything until the server closes (reset counts as closed); panics if it stays open
    /// past [`ANSWER`].
    pub fn read_to_eof(mut self) -> Vec<u8> {
        let deadline = Instant::now() + ANSWER;
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    panic!("server kept the connection open past {ANSWER:?}")
                }
                Err(_) => break,
            }
            assert!(
                Instant::now() < deadline,
                "server kept sending past {ANSWER:?}"
            );
        }
        std::mem::take(&mut self.buf)
    }

    /// The next frame; `Ok(None)` at EOF or reset.
    pub fn try_frame(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            match self.fill() {
                Ok(0) => return Ok(None),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    return Err(e)
                }
                Err(_) => return Ok(None),
            }
        }
    }

    /// The next frame (panics at EOF or after [`ANSWER`]).
    pub fn frame(&mut self) -> Frame {
        match self.try_frame() {
            Ok(Some(f)) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Reads the next frame, which must be a close frame; returns its code.
    pub fn expect_close(&mut self) -> Option<u16> {
        let f = self.frame();
        assert_eq!(f.opcode, 8, "expected a close frame, got {f:?}");
        f.close_code()
    }

    /// The server ends TCP (EOF or reset) within [`ANSWER`], sending nothing more; then the
    /// connection is dropped.
    pub fn expect_eof(mut self) {
        match self.try_frame() {
            Ok(None) => {}
            other => panic!("expected the connection to end, got {other:?}"),
        }
    }

    /// Sends a text message and checks it comes back.
    pub fn echo(&mut self, text: &str) {
        self.send(&frame(true, 1, text.as_bytes()));
        let f = self.frame();
        assert_eq!((f.opcode, f.payload.as_slice()), (1, text.as_bytes()));
    }

    /// Closes with 1000 and expects the server's echo and EOF.
    pub fn close_cleanly(mut self) {
        self.send(&close_frame(1000, b""));
        assert_eq!(self.expect_close(), Some(1000));
        self.expect_eof();
    }

    /// Resets the connection (RST) instead of closing it.
    pub fn reset(self) {
        let sock = socket2::SockRef::from(&self.stream);
        sock.set_linger(Some(Duration::ZERO)).expect("linger");
        drop(self);
    }

    /// Half-closes the write side (TCP FIN).
    pub fn fin(&mut self) {
        self.stream.shutdown(Shutdown::Write).expect("shutdown");
    }
}

fn parse_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (mut len, mut at) = (u64::from(buf[1] & 0x7f), 2usize);
    if len == 126 {
        len = u64::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?));
        at = 4;
    } else if len == 127 {
        len = u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?);
        at = 10;
    }
    assert_eq!(buf[1] & 0x80, 0, "server frames are never masked");
    let end = at + usize::try_from(len).ok()?;
    let payload = buf.get(at..end)?.to_vec();
    Some((
        Frame {
            fin: buf[0] & 0x80 != 0,
            rsv: (buf[0] >> 4) & 0x7,
            opcode: buf[0] & 0x0f,
            payload,
        },
        end,
    ))
}

/// A valid upgrade request for `path`, with extra header lines.
pub fn upgrade_request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// The status code of a raw HTTP response.
pub fn status_of(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// One header of a raw HTTP response (case-insensitive name).
pub fn header_of(response: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(response);
    let head = text.split("\r\n\r\n").next()?;
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// A masked frame: `fin`, `opcode`, `payload`.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    masked(if fin { 0x80 } else { 0 } | opcode, payload)
}

/// A masked close frame with `code` and `reason`.
pub fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(true, 8, &payload)
}

/// Only the header of a masked frame declaring `len` bytes in the 64-bit form.
pub fn header64(b0: u8, len: u64) -> Vec<u8> {
    let mut out = vec![b0, 0x80 | 127];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&KEY);
    out
}

/// Runs `f` on a fresh monoio runtime (for the handlers' side channels that need one).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(f)
}
