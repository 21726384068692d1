//! A second ceiling: the raw TCP echo of `raw-echo` written directly on io_uring, with every
//! feature the kernel offers for it, to measure what an io_uring server can reach at best.
//!
//! ```text
//! uring-echo --port 9001 [--workers 1] [--pin | --cpu N]
//! ```
//!
//! One thread, one ring (`COOP_TASKRUN | SINGLE_ISSUER | DEFER_TASKRUN`, a plain ring where
//! the kernel refuses them), one `SO_REUSEPORT` listener under a multishot accept. Each
//! accepted socket gets the WebSocket upgrade with plain blocking syscalls (not measured),
//! then goes into the ring's registered file table (no `fget` per operation) under one
//! multishot recv that picks its buffers from a registered buffer ring: one SQE for as many
//! receives as the connection sees. Every receive is sent back verbatim straight from its
//! provided buffer (one send SQE), and the buffer returns to the ring when the send completes.
//! Sends on one connection go one at a time, in order.
//!
//! Like `raw-echo` it does no WebSocket work: the client's masked frames come back verbatim
//! and the load generator takes them in its raw mode. Prints `listening on 127.0.0.1:PORT`
//! once the accept is armed; SIGINT/SIGTERM end the process at once (status 0).

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use ringsocket_bench::upgrade::{
    find_head_end, switching_protocols, websocket_key, BAD_REQUEST, HEAD_TOO_LARGE, MAX_HEAD,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Submission queue entries.
const SQ_ENTRIES: u32 = 1024;
/// Completion queue entries: multishot receives post many completions per submission.
const CQ_ENTRIES: u32 = 8192;
/// Provided buffers in the ring (a power of two). Each receive takes a whole one until its
/// echo is sent, so this bounds the receives waiting for their send across all connections.
const BUF_COUNT: u16 = 1024;
/// Bytes per provided buffer: a 16 KiB message with its frame header fits one.
const BUF_SIZE: usize = 32 * 1024;
/// The buffer group id of the ring.
const BUF_GROUP: u16 = 0;
/// Registered file slots (also capped by `RLIMIT_NOFILE`, which the kernel enforces).
const MAX_FILES: u32 = 16 * 1024;
/// Upgrade handshake read/write deadline (it runs blocking on the only thread).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// `user_data` kinds, in the upper 32 bits; the lower 32 hold the connection's slot.
const OP_ACCEPT: u64 = 0;
const OP_RECV: u64 = 1;
const OP_SEND: u64 = 2;

/// Raw TCP echo written directly on io_uring (multishot recv, provided buffers, fixed files).
#[derive(Debug, Parser)]
#[command(name = "uring-echo")]
struct Args {
    /// Port to listen on at 127.0.0.1 (0: any free port).
    #[arg(long)]
    port: u16,
    /// Worker threads: only 1 (accepted for the runner's command line, as other peers take).
    #[arg(long, default_value = "1")]
    workers: NonZeroUsize,
    /// Pin the worker to the first allowed CPU.
    #[arg(long)]
    pin: bool,
    /// Pin the worker to this CPU.
    #[arg(long, conflicts_with = "pin")]
    cpu: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.workers.get() != 1 {
        bail!("uring-echo is single-threaded: --workers must be 1");
    }
    ringsocket_bench::exit_on_signals().context("installing SIGINT/SIGTERM handlers")?;
    let cpu = args
        .cpu
        .or_else(|| args.pin.then(|| ringsocket_bench::sys::allowed_cpus()[0]));
    if let Some(cpu) = cpu {
        ringsocket_bench::sys::pin_to_cpu(cpu).with_context(|| format!("pinning to CPU {cpu}"))?;
    }
    let nofile = ringsocket_bench::sys::raise_nofile_limit().unwrap_or(1024);

    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let listener = ringsocket_bench::reuseport_listener(addr)
        .with_context(|| format!("listening on {addr}"))?;
    let addr = listener.local_addr()?;

    let (ring, tuned) = match ringsocket_bench::tuned_uring()
        .setup_cqsize(CQ_ENTRIES)
        .build(SQ_ENTRIES)
    {
        Ok(ring) => (ring, true),
        Err(_) => (
            IoUring::builder()
                .setup_cqsize(CQ_ENTRIES)
                .build(SQ_ENTRIES)
                .context("creating an io_uring")?,
            false,
        ),
    };
    let bufs = BufRing::new(&ring).context("registering the provided buffer ring")?;
    let file_slots = MAX_FILES.min(u32::try_from(nofile).unwrap_or(u32::MAX));
    let fixed = ring.submitter().register_files_sparse(file_slots).is_ok();

    let mut server = Server {
        ring,
        bufs,
        conns: Vec::new(),
        free: Vec::new(),
        fixed,
        file_slots: if fixed { file_slots } else { u32::MAX },
        listener: listener.as_raw_fd(),
        sqes: Vec::with_capacity(256),
        starved: VecDeque::new(),
    };
    server.arm_accept();
    server.flush()?;

    let mut stdout = io::stdout().lock();
    writeln!(
        stdout,
        "listening on {addr} (1 worker, io_uring{}, multishot recv, buffer ring, {})",
        if tuned { " DEFER_TASKRUN" } else { "" },
        if fixed { "fixed files" } else { "plain fds" }
    )?;
    stdout.flush()?;
    drop(stdout);

    server.run()
}

/// The registered provided-buffer ring and the memory its entries point into.
struct BufRing {
    /// `BUF_COUNT` entries, page aligned (mmap); the kernel reads them.
    entries: *mut types::BufRingEntry,
    /// `BUF_COUNT * BUF_SIZE` bytes of buffers, buffer `bid` at `bid * BUF_SIZE`.
    memory: Vec<u8>,
    /// Our tail, published to the kernel by [`BufRing::publish`].
    tail: u16,
    /// Buffers the kernel handed out that are not back in the ring yet.
    out: usize,
}

impl BufRing {
    fn new(ring: &IoUring) -> io::Result<Self> {
        let bytes = usize::from(BUF_COUNT) * std::mem::size_of::<types::BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked for MAP_FAILED below.
        let entries = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if entries == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let mut bufs = BufRing {
            entries: entries.cast(),
            memory: vec![0; usize::from(BUF_COUNT) * BUF_SIZE],
            tail: 0,
            out: usize::from(BUF_COUNT),
        };
        // SAFETY: the mapping lives as long as the process (never unmapped: the ring is used
        // until exit), and holds BUF_COUNT entries.
        unsafe {
            ring.submitter()
                .register_buf_ring(entries as u64, BUF_COUNT, BUF_GROUP)?;
        }
        for bid in 0..BUF_COUNT {
            bufs.give_back(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    /// Start of buffer `bid`.
    fn addr(&self, bid: u16) -> *const u8 {
        self.memory[usize::from(bid) * BUF_SIZE..].as_ptr()
    }

    /// Puts buffer `bid` back at the tail (seen by the kernel after [`BufRing::publish`]).
    fn give_back(&mut self, bid: u16) {
        let index = usize::from(self.tail & (BUF_COUNT - 1));
        let addr = self.addr(bid) as u64;
        // SAFETY: index < BUF_COUNT, inside the mapping; the kernel only reads entries
        // between its head and the published tail, and this one is past the tail.
        let entry = unsafe { &mut *self.entries.add(index) };
        entry.set_addr(addr);
        entry.set_len(BUF_SIZE as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.out -= 1;
    }

    /// Makes the buffers given back so far visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field of the first entry, inside the mapping, 2-byte aligned; the
        // kernel reads it with acquire semantics.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

/// Part of a provided buffer waiting to be sent back.
#[derive(Debug, Clone, Copy)]
struct Pending {
    bid: u16,
    offset: u32,
    len: u32,
}

/// One upgraded connection.
struct Conn {
    /// The socket, kept open until the connection ends (its registered slot refers to it).
    fd: RawFd,
    /// The multishot recv has not posted its last completion yet.
    recv_armed: bool,
    /// The send in flight (one at a time keeps the echo in order).
    sending: Option<Pending>,
    /// Received, waiting for the send in flight.
    queue: VecDeque<Pending>,
    /// EOF or an error: finish once nothing is in flight.
    closing: bool,
}

struct Server {
    ring: IoUring,
    bufs: BufRing,
    /// Indexed by slot (the registered file index when `fixed`).
    conns: Vec<Option<Conn>>,
    free: Vec<u32>,
    fixed: bool,
    file_slots: u32,
    listener: RawFd,
    /// Built while completions are handled, pushed to the ring after.
    sqes: Vec<squeue::Entry>,
    /// Slots whose recv ended with ENOBUFS: re-armed once buffers come back.
    starved: VecDeque<u32>,
}

impl Server {
    fn run(&mut self) -> anyhow::Result<()> {
        let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(CQ_ENTRIES as usize);
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                // EBUSY: the completion queue overflowed; draining it below makes room.
                Err(e)
                    if e.raw_os_error() == Some(libc::EINTR)
                        || e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => return Err(e).context("io_uring_enter"),
            }
            cqes.clear();
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(data, res, flags) in &cqes {
                let slot = data as u32;
                match data >> 32 {
                    OP_ACCEPT => self.on_accept(res, flags),
                    OP_RECV => self.on_recv(slot, res, flags),
                    _ => self.on_send(slot, res),
                }
            }
            self.bufs.publish();
            // As many starved receives as there are free buffers, oldest first: re-arming
            // them all would only collect a burst of ENOBUFS again.
            let mut free = usize::from(BUF_COUNT) - self.bufs.out;
            while free > 0 {
                let Some(slot) = self.starved.pop_front() else {
                    break;
                };
                if let Some(Some(conn)) = self.conns.get_mut(slot as usize) {
                    if !conn.closing && !conn.recv_armed {
                        conn.recv_armed = true;
                        let entry = recv_entry(self.fixed, slot, conn.fd);
                        self.sqes.push(entry);
                        free -= 1;
                    }
                }
            }
            self.flush()?;
        }
    }

    /// Moves the built entries into the submission queue, submitting when it is full.
    fn flush(&mut self) -> io::Result<()> {
        for entry in self.sqes.drain(..) {
            // SAFETY: every entry points at memory that outlives its operation: buffers of
            // the ring (given back only after the send's completion) and nothing else.
            while unsafe { self.ring.submission().push(&entry) }.is_err() {
                self.ring.submit()?;
            }
        }
        Ok(())
    }

    fn arm_accept(&mut self) {
        let entry = opcode::AcceptMulti::new(types::Fd(self.listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(OP_ACCEPT << 32);
        self.sqes.push(entry);
    }

    fn on_accept(&mut self, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.arm_accept();
        }
        if res < 0 {
            eprintln!(
                "uring-echo: accept failed: {}",
                io::Error::from_raw_os_error(-res)
            );
            return;
        }
        // SAFETY: the accept just created this descriptor; the stream owns it from here.
        let stream = unsafe { TcpStream::from_raw_fd(res) };
        let stream = match handshake(stream) {
            Ok(Some(stream)) => stream,
            // Refused or hung up: the stream closed on drop.
            Ok(None) | Err(_) => return,
        };
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if (self.conns.len() as u32) < self.file_slots => {
                self.conns.push(None);
                self.conns.len() as u32 - 1
            }
            None => {
                eprintln!("uring-echo: out of registered file slots");
                return;
            }
        };
        let fd = stream.into_raw_fd();
        if self.fixed {
            if let Err(e) = self.ring.submitter().register_files_update(slot, &[fd]) {
                eprintln!("uring-echo: registering a socket: {e}");
                // SAFETY: our descriptor, not registered.
                unsafe { libc::close(fd) };
                self.free.push(slot);
                return;
            }
        }
        self.conns[slot as usize] = Some(Conn {
            fd,
            recv_armed: true,
            sending: None,
            queue: VecDeque::new(),
            closing: false,
        });
        self.sqes.push(recv_entry(self.fixed, slot, fd));
    }

    fn on_recv(&mut self, slot: u32, res: i32, flags: u32) {
        let Some(Some(conn)) = self.conns.get_mut(slot as usize) else {
            return;
        };
        let more = cqueue::more(flags);
        if !more {
            conn.recv_armed = false;
        }
        if res > 0 {
            let Some(bid) = cqueue::buffer_select(flags) else {
                eprintln!("uring-echo: a receive without its buffer");
                self.close(slot);
                return;
            };
            self.bufs.out += 1;
            if conn.closing {
                self.bufs.give_back(bid);
            } else {
                let pending = Pending {
                    bid,
                    offset: 0,
                    len: res as u32,
                };
                if conn.sending.is_none() {
                    conn.sending = Some(pending);
                    let entry = send_entry(self.fixed, slot, conn.fd, &self.bufs, pending);
                    self.sqes.push(entry);
                } else {
                    conn.queue.push_back(pending);
                }
            }
            if conn.closing {
                self.finish_if_idle(slot);
            } else if !more {
                conn.recv_armed = true;
                let entry = recv_entry(self.fixed, slot, conn.fd);
                self.sqes.push(entry);
            }
        } else if res == -libc::ENOBUFS && !conn.closing {
            // Every buffer is waiting for its send: re-arm once some come back.
            if !more {
                self.starved.push_back(slot);
            }
        } else {
            // EOF (0) or an error: a multishot recv ends with it.
            self.close(slot);
        }
    }

    fn on_send(&mut self, slot: u32, res: i32) {
        let Some(Some(conn)) = self.conns.get_mut(slot as usize) else {
            return;
        };
        let Some(mut sent) = conn.sending.take() else {
            return;
        };
        if res < 0 || conn.closing {
            self.bufs.give_back(sent.bid);
            self.close(slot);
            return;
        }
        let n = res as u32;
        let next = if n < sent.len {
            // Short send (MSG_WAITALL makes the kernel retry, so this is rare): the rest.
            sent.offset += n;
            sent.len -= n;
            Some(sent)
        } else {
            self.bufs.give_back(sent.bid);
            conn.queue.pop_front()
        };
        if let Some(pending) = next {
            conn.sending = Some(pending);
            let entry = send_entry(self.fixed, slot, conn.fd, &self.bufs, pending);
            self.sqes.push(entry);
        }
    }

    /// Ends a connection: shuts the socket down so that whatever is in flight completes, and
    /// frees it once nothing is.
    fn close(&mut self, slot: u32) {
        let Some(Some(conn)) = self.conns.get_mut(slot as usize) else {
            return;
        };
        if !conn.closing {
            conn.closing = true;
            if conn.recv_armed || conn.sending.is_some() {
                // SAFETY: our socket, still open.
                unsafe { libc::shutdown(conn.fd, libc::SHUT_RDWR) };
            }
        }
        self.finish_if_idle(slot);
    }

    fn finish_if_idle(&mut self, slot: u32) {
        let Some(entry) = self.conns.get_mut(slot as usize) else {
            return;
        };
        let idle = entry
            .as_ref()
            .is_some_and(|c| c.closing && !c.recv_armed && c.sending.is_none());
        if !idle {
            return;
        }
        let Some(conn) = entry.take() else {
            return;
        };
        for pending in conn.queue {
            self.bufs.give_back(pending.bid);
        }
        if self.fixed {
            let _ = self.ring.submitter().register_files_update(slot, &[-1]);
        }
        // SAFETY: our socket; nothing in flight refers to it any more.
        unsafe { libc::close(conn.fd) };
        self.free.push(slot);
    }
}

/// The multishot recv of a connection, buffers from the ring.
fn recv_entry(fixed: bool, slot: u32, fd: RawFd) -> squeue::Entry {
    let entry = if fixed {
        opcode::RecvMulti::new(types::Fixed(slot), BUF_GROUP).build()
    } else {
        opcode::RecvMulti::new(types::Fd(fd), BUF_GROUP).build()
    };
    entry.user_data((OP_RECV << 32) | u64::from(slot))
}

/// The send of `pending` straight from its provided buffer.
fn send_entry(
    fixed: bool,
    slot: u32,
    fd: RawFd,
    bufs: &BufRing,
    pending: Pending,
) -> squeue::Entry {
    // SAFETY: offset + len <= BUF_SIZE (a receive's length, minus what was sent).
    let buf = unsafe { bufs.addr(pending.bid).add(pending.offset as usize) };
    let flags = libc::MSG_WAITALL | libc::MSG_NOSIGNAL;
    let entry = if fixed {
        opcode::Send::new(types::Fixed(slot), buf, pending.len)
            .flags(flags)
            .build()
    } else {
        opcode::Send::new(types::Fd(fd), buf, pending.len)
            .flags(flags)
            .build()
    };
    entry.user_data((OP_SEND << 32) | u64::from(slot))
}

/// The upgrade with blocking syscalls: `Some(stream)` (nonblocking, no delay) once the 101 and
/// whatever followed the request head went out; `None` when refused or the peer left.
fn handshake(mut stream: TcpStream) -> io::Result<Option<TcpStream>> {
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_nodelay(true)?;
    let mut buf = vec![0; MAX_HEAD];
    let mut filled = 0;
    let head_len = loop {
        let n = stream.read(&mut buf[filled..])?;
        if n == 0 {
            return Ok(None);
        }
        filled += n;
        if let Some(end) = find_head_end(&buf[..filled], filled - n) {
            break end;
        }
        if filled == buf.len() {
            stream.write_all(HEAD_TOO_LARGE)?;
            return Ok(None);
        }
    };
    let Some(key) = websocket_key(&buf[..head_len]) else {
        stream.write_all(BAD_REQUEST)?;
        return Ok(None);
    };
    stream.write_all(switching_protocols(key).as_bytes())?;
    // Whatever followed the head already belongs to the echo.
    stream.write_all(&buf[head_len..filled])?;
    stream.set_nonblocking(true)?;
    Ok(Some(stream))
}
