//! Small I/O helpers over monoio's ownership-passing API.

use std::{future::Future, io, os::fd::RawFd, pin::Pin, time::Duration};

use bytes::{Bytes, BytesMut};
use monoio::{
    buf::{IoBufMut, IoVecBuf},
    io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, Split},
    time::timeout,
};

use crate::{app::Reply, http::write_full_response};

/// A byte stream a connection can run on: TCP from the listener, or one end of a socket pair
/// for injected connections.
pub(crate) trait Conn:
    AsyncReadRent + AsyncWriteRent + Split + std::os::fd::AsRawFd + 'static
{
    /// Waits until the socket has bytes to read, or is closed or cut, without a buffer: a
    /// quiet connection then holds none. May wake without bytes (the legacy driver's
    /// readiness is relaxed); the read that follows waits as usual.
    fn wait_readable(&self) -> impl std::future::Future<Output = io::Result<()>>;
}

impl Conn for monoio::net::UnixStream {
    fn wait_readable(&self) -> impl std::future::Future<Output = io::Result<()>> {
        self.readable(true)
    }
}

/// How the server holds an accepted connection's socket. monoio's `TcpStream` keeps, beside
/// the descriptor, room for its local and peer addresses and a `socket2` handle: 72 bytes in
/// every connection that nothing here reads (the peer's address comes from `accept`). Its
/// `UnixStream` is the descriptor alone, with the same operations (`send`, `recv`, `writev`,
/// `readv`, poll for readiness), none of which depends on the socket's family. So an accepted
/// TCP connection is served through one, as injected connections are.
pub(crate) type Socket = monoio::net::UnixStream;

/// The accepted TCP connection as a [`Socket`]. On the legacy driver the descriptor leaves
/// the runtime's poller and joins it again; on io_uring nothing is registered.
pub(crate) fn into_socket(stream: monoio::net::TcpStream) -> io::Result<Socket> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let fd = stream.into_raw_fd();
    // SAFETY: `fd` is an open stream socket, owned by nothing else once `into_raw_fd` gave it
    // up; the std value only carries it into monoio (and closes it if that fails).
    let std = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    Socket::from_std(std)
}

/// [`Conn::wait_readable`] on the read half of a split connection.
/// (A plain function returning the stream's future: an `async` wrapper would add its own state
/// to every idle connection.)
pub(crate) fn wait_readable<S: Conn>(
    reader: &OwnedReadHalf<S>,
) -> impl Future<Output = io::Result<()>> + '_ {
    // SAFETY: the stream lives as long as either half. `readable` uses the reference only to
    // clone the descriptor into its poll operation, during the returned future's first poll
    // (its one caller awaits it at once, before any other task, the writer included, can run
    // on this thread); the operation owns the descriptor from then on.
    let stream = unsafe { &*reader.0.get() };
    stream.wait_readable()
}

/// How long a refused connection is drained before it is closed, so the client reads the
/// answer instead of a reset.
const LINGER: Duration = Duration::from_secs(2);

/// Appends what the socket has to `buf`, keeping at least `min_spare` bytes of room for the
/// read. `Ok(0)` is EOF.
pub(crate) async fn read_more<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut BytesMut,
    min_spare: usize,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let (res, slice) = stream.read(owned.slice_mut(len..)).await;
    *buf = slice.into_inner();
    res
}

/// Chunks of bytes written in order with vectored writes, reused from write to write. While a
/// write is in flight the runtime owns this value, so the iovecs' targets (the chunks) stay
/// put.
pub(crate) struct IoParts {
    /// What to write, in order; filled by the caller, emptied by [`write_parts`].
    pub(crate) parts: Vec<Bytes>,
    iov: Vec<libc::iovec>,
    /// The first iovec not yet written in full.
    at: usize,
}

impl IoParts {
    pub(crate) fn new() -> Self {
        Self {
            parts: Vec::new(),
            iov: Vec::new(),
            at: 0,
        }
    }

    fn prepare(&mut self) {
        self.iov.clear();
        self.at = 0;
        for part in self.parts.iter().filter(|part| !part.is_empty()) {
            self.iov.push(libc::iovec {
                iov_base: part.as_ptr() as *mut libc::c_void,
                iov_len: part.len(),
            });
        }
    }

    /// Marks `n` more bytes written.
    fn consume(&mut self, mut n: usize) {
        while n > 0 && self.at < self.iov.len() {
            let iov = &mut self.iov[self.at];
            if n < iov.iov_len {
                // SAFETY: n is less than the iovec's length, so the pointer stays inside the
                // chunk it points into.
                iov.iov_base = unsafe { iov.iov_base.cast::<u8>().add(n) }.cast();
                iov.iov_len -= n;
                return;
            }
            n -= iov.iov_len;
            self.at += 1;
        }
    }

    fn is_done(&self) -> bool {
        self.at == self.iov.len()
    }
}

// SAFETY: the iovecs point into the chunks `parts` holds, which neither move nor change while
// the value is owned by a write; `prepare` rebuilds them whenever `parts` changed.
unsafe impl IoVecBuf for IoParts {
    fn read_iovec_ptr(&self) -> *const libc::iovec {
        self.iov[self.at..].as_ptr()
    }

    fn read_iovec_len(&self) -> usize {
        self.iov.len() - self.at
    }
}

/// Writes all of `io.parts` with as few vectored writes as the socket takes, then empties it
/// (releasing the chunks). Returns the bytes written.
pub(crate) async fn write_parts<S: AsyncWriteRent>(
    stream: &mut S,
    mut io: IoParts,
) -> (io::Result<usize>, IoParts) {
    io.prepare();
    let mut written = 0;
    let res = loop {
        if io.is_done() {
            break Ok(written);
        }
        let (res, back) = stream.writev(io).await;
        io = back;
        match res {
            Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                written += n;
                io.consume(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    io.parts.clear();
    io.iov.clear();
    (res, io)
}

/// Writes all of `bytes`.
pub(crate) async fn write_bytes<S: AsyncWriteRent>(
    stream: &mut S,
    bytes: Vec<u8>,
) -> io::Result<()> {
    let (res, _) = stream.write_all(bytes).await;
    res.map(|_| ())
}

/// Serializes and writes a reply.
pub(crate) async fn write_reply<S: AsyncWriteRent>(
    stream: &mut S,
    reply: &Reply,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let body = reply.body();
    let mut out = Vec::with_capacity(160 + body.len());
    write_full_response(
        &mut out,
        reply.status(),
        reply.headers(),
        &body,
        keep_alive,
        head_only,
    );
    write_bytes(stream, out).await
}

/// Half-closes, then reads and discards until the peer closes or [`LINGER`] passes: closing a
/// socket with unread input makes the kernel send RST, which can destroy the answer we just
/// wrote before the client reads it.
///
/// Boxed: the timer in it is most of a kilobyte, and the connection futures that may end this
/// way (every HTTP connection's) would otherwise keep room for it all their life.
pub(crate) fn linger<S: AsyncReadRent>(
    stream: &mut S,
    fd: RawFd,
) -> Pin<Box<impl Future<Output = ()> + '_>> {
    Box::pin(linger_inner(stream, fd))
}

async fn linger_inner<S: AsyncReadRent>(stream: &mut S, fd: RawFd) {
    // SAFETY: fd is the live socket owned by the caller.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
    let _ = timeout(LINGER, async {
        let mut scratch = vec![0u8; 4096];
        loop {
            let (res, b) = stream.read(scratch).await;
            scratch = b;
            match res {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// Shuts the socket down (both directions) when dropped, unless disarmed: an operation still in
/// flight on it (a read abandoned at a timeout) then completes, and the descriptor it holds is
/// released, instead of waiting forever on a silent peer. Declared after the stream it guards,
/// so it runs while the fd is still open; disarmed when the stream is handed to the WebSocket
/// phase, which ends its own operations.
pub(crate) struct CutOnDrop {
    fd: RawFd,
    armed: bool,
}

impl CutOnDrop {
    pub(crate) fn new(fd: RawFd) -> Self {
        Self { fd, armed: true }
    }

    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for CutOnDrop {
    fn drop(&mut self) {
        if self.armed {
            // SAFETY: the guarded stream outlives this guard (see the type's docs).
            unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRentExt};

    use super::{into_socket, Socket};

    /// An accepted TCP connection served as a [`Socket`]: the same descriptor, one word where
    /// monoio's `TcpStream` takes ten, and bytes flow both ways through it (on either driver).
    #[test]
    fn an_accepted_tcp_connection_runs_as_a_one_word_socket() {
        assert_eq!(std::mem::size_of::<Socket>(), 8);
        assert_eq!(std::mem::size_of::<monoio::net::TcpStream>(), 80);
        crate::testing::run(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let mut client = monoio::net::TcpStream::connect(addr).await.unwrap();
            let (accepted, _) = listener.accept().await.unwrap();
            let fd = accepted.as_raw_fd();
            let mut socket = into_socket(accepted).unwrap();
            assert_eq!(socket.as_raw_fd(), fd);

            let (res, _) = client.write_all(b"ping").await;
            res.unwrap();
            let (res, got) = socket.read_exact(vec![0u8; 4]).await;
            res.unwrap();
            assert_eq!(got, b"ping");
            let (res, _) = socket.write_all(b"pong!").await;
            res.unwrap();
            let (res, got) = client.read_exact(vec![0u8; 5]).await;
            res.unwrap();
            assert_eq!(got, b"pong!");

            drop(socket);
            let (res, _) = client.read(Vec::with_capacity(8)).await;
            assert_eq!(res.unwrap(), 0, "closing the socket ends the stream");
        });
    }
}
