//! Helpers shared by the loopback tests: a server on port 0 with 2 workers, a monoio runtime
//! for the client side (io_uring, or epoll under MONOIO_FORCE_LEGACY_DRIVER=1), and raw HTTP.
#![allow(dead_code)]

use std::{
    future::Future,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use ringsocket::{App, Request, Server, ServerHandle, WebSocket, WsOptions};

/// Starts `app` on 127.0.0.1:0 with 2 workers.
pub fn start(app: App) -> ServerHandle {
    Server::new(app)
        .workers(2)
        .listen("127.0.0.1:0")
        .expect("server starts")
}

/// An echo app on `/`.
pub fn echo_app() -> App {
    echo_app_with(WsOptions::new())
}

/// An echo app on `/` with these WebSocket options.
pub fn echo_app_with(options: WsOptions) -> App {
    App::builder()
        .websocket(options)
        .ws("/", echo)
        .build()
        .unwrap()
}

/// A route handler that echoes every message until the close.
pub async fn echo(mut ws: WebSocket, _req: Request) {
    while let Some(Ok(message)) = ws.recv().await {
        if message.is_close() || ws.send(message).await.is_err() {
            break;
        }
    }
}

/// Runs a client-side future on a fresh monoio runtime, failing the test after 20 s.
pub fn block_on<F: Future>(future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(async move {
            monoio::time::timeout(Duration::from_secs(20), future)
                .await
                .expect("test timed out")
        })
}

/// Sends raw bytes and returns everything the server answers until it closes (or 5 s pass).
pub fn http_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

/// The status code of a raw HTTP response.
pub fn status_of(response: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(response);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

/// A valid upgrade request for `path`, with extra header lines.
pub fn upgrade_request(path: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A blocking socket upgraded on `path` (its read timeout `timeout`), the 101's head read to
/// its end byte by byte, so nothing after it is consumed.
pub fn raw_upgrade(addr: SocketAddr, path: &str, timeout: Duration) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream.write_all(&upgrade_request(path, "")).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

/// Runs a future on a fresh monoio runtime, failing the test after `limit` (for tests that
/// must end quickly on their own).
pub fn block_on_within<F: Future>(limit: Duration, future: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(async move {
            monoio::time::timeout(limit, future)
                .await
                .expect("test timed out")
        })
}

/// A raw HTTP response split into status, head (status line and headers) and body.
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Splits what [`http_exchange`] returned.
    pub fn parse(raw: &[u8]) -> Self {
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete head in {:?}", String::from_utf8_lossy(raw)));
        RawResponse {
            status: status_of(raw),
            head: String::from_utf8_lossy(&raw[..end]).into_owned(),
            body: raw[end + 4..].to_vec(),
        }
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// One header's value (case-insensitive name).
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// A plain `GET path` with `Connection: close`, over a fresh TCP connection.
pub fn http_get(addr: SocketAddr, path: &str) -> RawResponse {
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    RawResponse::parse(&http_exchange(addr, request.as_bytes()))
}
