//! The HTTP answers before the upgrade: every refusal has its exact status, carries
//! `Connection: close` and ends the connection; valid upgrades get 101 with the right
//! `Sec-WebSocket-Accept`, however the head arrives.

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    thread,
    time::{Duration, Instant},
};

use common::{block_on, echo_app, start, status_of, upgrade_request};
use ringsocket::{client::Client, Message, Server};

/// The RFC 6455 §1.3 example key and the accept value it must produce.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The header lines of a valid upgrade to `/` (without the request line).
const BASE: [&str; 5] = [
    "Host: localhost",
    "Upgrade: websocket",
    "Connection: Upgrade",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version: 13",
];

/// A request head from a request line and header lines.
fn head(request_line: &str, lines: &[&str]) -> Vec<u8> {
    let mut out = format!("{request_line}\r\n");
    for line in lines {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// `GET / HTTP/1.1` with the valid headers, minus those named `drop`, plus `extra`.
fn upgrade_with(drop: &str, extra: &[&str]) -> Vec<u8> {
    let mut lines: Vec<&str> = BASE
        .iter()
        .copied()
        .filter(|line| drop.is_empty() || !line.starts_with(&format!("{drop}:")))
        .collect();
    lines.extend_from_slice(extra);
    head("GET / HTTP/1.1", &lines)
}

/// A parsed HTTP response.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one response head from the front of `raw`; returns it and the bytes after it.
fn parse_answer(raw: &[u8]) -> (Answer, usize) {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut headers);
    let used = match parsed.parse(raw) {
        Ok(httparse::Status::Complete(used)) => used,
        other => panic!(
            "no complete response ({other:?}) in {:?}",
            String::from_utf8_lossy(raw)
        ),
    };
    let answer = Answer {
        status: status_of(raw),
        headers: parsed
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_owned(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect(),
        body: raw[used..].to_vec(),
    };
    assert_eq!(parsed.code, Some(answer.status));
    (answer, used)
}

/// Connects and writes `request`. Reads time out after 5 s, so a server that keeps open a
/// connection it should close fails the test instead of hanging it.
fn send(addr: SocketAddr, request: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(request).unwrap();
    stream
}

/// Reads to EOF, which must come within the read timeout, after the bytes in `already`.
fn read_to_eof(stream: &mut TcpStream, mut already: Vec<u8>) -> Vec<u8> {
    if let Err(e) = stream.read_to_end(&mut already) {
        let shown = String::from_utf8_lossy(&already);
        panic!("server did not close the connection ({e}); got {shown:?}");
    }
    already
}

/// Sends `request` and parses the answer, which must end with the connection.
fn exchange(addr: SocketAddr, request: &[u8]) -> Answer {
    parse_answer(&read_to_eof(&mut send(addr, request), Vec::new())).0
}

/// Asserts `request` is refused with `status`, the extra headers `expected`, an empty body,
/// and `Connection: close`.
fn assert_refused(addr: SocketAddr, request: &[u8], status: u16, expected: &[(&str, &str)]) {
    let answer = exchange(addr, request);
    let shown = String::from_utf8_lossy(request);
    assert_eq!(answer.status, status, "{shown:?}");
    assert_eq!(answer.header("Connection"), Some("close"), "{shown:?}");
    assert_eq!(answer.header("Content-Length"), Some("0"), "{shown:?}");
    assert_eq!(answer.body, b"", "{shown:?}");
    for (name, value) in expected {
        assert_eq!(answer.header(name), Some(*value), "{name} for {shown:?}");
    }
}

/// Reads a response head from an open connection; returns it and any bytes read past it.
fn read_head(stream: &mut TcpStream) -> (Answer, Vec<u8>) {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let (answer, used) = parse_answer(&raw[..end + 4]);
            assert_eq!(used, end + 4);
            return (answer, raw[used..].to_vec());
        }
        match stream.read(&mut chunk) {
            Ok(0) => panic!(
                "closed before a whole head: {:?}",
                String::from_utf8_lossy(&raw)
            ),
            Ok(n) => raw.extend_from_slice(&chunk[..n]),
            Err(e) => panic!("no whole head ({e}): {:?}", String::from_utf8_lossy(&raw)),
        }
    }
}

/// Connects, sends `request` and returns the open stream after checking the exact 101.
fn upgrade(addr: SocketAddr, request: &[u8]) -> (TcpStream, Vec<u8>) {
    let mut stream = send(addr, request);
    let (answer, rest) = read_head(&mut stream);
    assert_switching(&answer, request);
    (stream, rest)
}

fn assert_switching(answer: &Answer, request: &[u8]) {
    let shown = String::from_utf8_lossy(request);
    assert_eq!(answer.status, 101, "{shown:?}");
    assert_eq!(answer.header("Upgrade"), Some("websocket"));
    assert_eq!(answer.header("Connection"), Some("Upgrade"));
    assert_eq!(answer.header("Sec-WebSocket-Accept"), Some(ACCEPT));
}

/// Reads exactly `n` bytes after `already`, which holds bytes read past the head.
fn read_exact_after(stream: &mut TcpStream, mut already: Vec<u8>, n: usize) -> Vec<u8> {
    assert!(already.len() <= n, "more than expected: {already:?}");
    let start = already.len();
    already.resize(n, 0);
    stream.read_exact(&mut already[start..]).unwrap();
    already
}

/// Sends a masked close 1000 and expects the server's echo of the code, then EOF.
fn close_cleanly(mut stream: TcpStream) {
    stream
        .write_all(b"\x88\x82\x01\x02\x03\x04\x02\xea")
        .unwrap();
    assert_eq!(read_to_eof(&mut stream, Vec::new()), b"\x88\x02\x03\xe8");
}

/// A masked text frame, as a client sends it.
fn masked_text(text: &str) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    ringsocket::proto::encode_frame(
        &mut out,
        true,
        false,
        ringsocket::proto::OpCode::Text,
        Some([0x37, 0xfa, 0x21, 0x3d]),
        text.as_bytes(),
    );
    out.to_vec()
}

#[test]
fn valid_upgrade_gets_101_with_the_rfc_accept_key() {
    let server = start(echo_app());
    let addr = server.local_addr();
    let request = upgrade_request("/", "");
    assert!(String::from_utf8_lossy(&request).contains(KEY));
    let (mut stream, rest) = upgrade(addr, &request);
    assert_eq!(rest, b"", "nothing after the 101 until we send");
    // The connection is a WebSocket now: a masked frame comes back unmasked.
    stream.write_all(&masked_text("live")).unwrap();
    assert_eq!(read_exact_after(&mut stream, rest, 6), b"\x81\x04live");
    close_cleanly(stream);
    server.shutdown();
    server.wait();
}

#[test]
fn list_forms_and_mixed_case_tokens_are_accepted() {
    let server = start(echo_app());
    let addr = server.local_addr();
    for (upgrade_line, connection_line) in [
        ("Upgrade: WebSocket", "Connection: keep-alive, Upgrade"),
        ("Upgrade: websocket", "Connection: keep-alive,Upgrade"),
        ("upgrade: WEBSOCKET", "connection: upgrade"),
        ("Upgrade: h2c, WebSocket", "Connection: Upgrade, keep-alive"),
        ("Upgrade: websocket", "Connection: \tUpgrade\t"),
    ] {
        let request = head(
            "GET / HTTP/1.1",
            &[
                "Host: localhost",
                upgrade_line,
                connection_line,
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                "Sec-WebSocket-Version: 13",
            ],
        );
        upgrade(addr, &request);
    }
    server.shutdown();
    server.wait();
}

#[test]
fn head_over_8_kib_is_431() {
    let server = start(echo_app());
    let addr = server.local_addr();
    let base_len = upgrade_request("/", "").len();
    // "X-Pad: " plus the value plus CRLF pads the head to exactly `total` bytes.
    let padded = |total: usize| {
        let pad = "a".repeat(total - base_len - "X-Pad: \r\n".len());
        upgrade_request("/", &format!("X-Pad: {pad}\r\n"))
    };
    let at_limit = padded(8 * 1024);
    assert_eq!(at_limit.len(), 8192);
    upgrade(addr, &at_limit);
    let over = padded(8 * 1024 + 1);
    assert_eq!(over.len(), 8193);
    assert_refused(addr, &over, 431, &[]);
    // A head that never ends is refused once it passes the limit.
    let mut endless = b"GET / HTTP/1.1\r\nX-Pad: ".to_vec();
    endless.resize(20_000, b'a');
    assert_refused(addr, &endless, 431, &[]);
    server.shutdown();
    server.wait();
}

#[test]
fn more_than_64_header_fields_is_431() {
    let server = start(echo_app());
    let addr = server.local_addr();
    let with_fields = |total: usize| {
        let extra: String = (BASE.len()..total)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        upgrade_request("/", &extra)
    };
    upgrade(addr, &with_fields(64));
    assert_refused(addr, &with_fields(65), 431, &[]);
    assert_refused(addr, &with_fields(200), 431, &[]);
    server.shutdown();
    server.wait();
}

#[test]
fn malformed_heads_are_400() {
    let server = start(echo_app());
    let addr = server.local_addr();
    for request in [
        // Header line without a colon.
        upgrade_with("", &["Bad header line"]),
        // Garbage request line.
        head("GET/HTTP/1.1", &BASE),
        head("GET / HTTP/9.9", &BASE),
        // Bare LF line endings.
        String::from_utf8(upgrade_request("/", ""))
            .unwrap()
            .replace("\r\n", "\n")
            .into_bytes(),
        // Content-Length together with Transfer-Encoding.
        upgrade_with("", &["Content-Length: 0", "Transfer-Encoding: chunked"]),
        // Duplicate Content-Length, even with equal values.
        upgrade_with("", &["Content-Length: 0", "Content-Length: 0"]),
        // obs-fold: a continuation line starting with a space.
        upgrade_with("", &["X-Folded: a", " b"]),
    ] {
        assert_refused(addr, &request, 400, &[]);
    }
    server.shutdown();
    server.wait();
}

/// A last header line ending in a bare LF, then the CRLF of the empty line: malformed like
/// any bare LF, and refused as soon as it is in, not when the handshake timeout expires.
#[test]
fn bare_lf_just_before_the_final_crlf_is_400_at_once() {
    let server = Server::new(echo_app())
        .workers(2)
        .handshake_timeout(Duration::from_secs(2))
        .listen("127.0.0.1:0")
        .unwrap();
    let addr = server.local_addr();
    let started = Instant::now();
    let request = head("GET / HTTP/1.1", &BASE);
    let request = [&request[..request.len() - 4], b"\n\r\n"].concat();
    assert_refused(addr, &request, 400, &[]);
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(1), "400 only after {waited:?}");
    server.shutdown();
    server.wait();
}

#[test]
fn unknown_path_is_404() {
    let server = start(echo_app());
    let addr = server.local_addr();
    // Fastify's not-found answer, then the upgrade connection is closed.
    let not_found =
        br#"{"statusCode":404,"error":"Not Found","message":"Route GET:/nope not found"}"#;
    let answer = exchange(addr, &upgrade_request("/nope", ""));
    assert_eq!(answer.status, 404);
    assert_eq!(answer.header("Connection"), Some("close"));
    assert_eq!(answer.body, not_found);
    // A plain request gets the same answer (and keeps the connection unless asked to close).
    let answer = exchange(
        addr,
        &head(
            "GET /nope HTTP/1.1",
            &["Host: localhost", "Connection: close"],
        ),
    );
    assert_eq!(answer.status, 404);
    assert_eq!(answer.body, not_found);
    server.shutdown();
    server.wait();
}

#[test]
fn plain_get_to_a_websocket_route_is_404_with_an_empty_body() {
    let server = start(echo_app());
    let addr = server.local_addr();
    assert_refused(
        addr,
        &head("GET / HTTP/1.1", &["Host: localhost", "Connection: close"]),
        404,
        &[],
    );
    // A WebSocket key without an Upgrade header is still a plain request (the `Connection:
    // Upgrade` it carries does not ask for a close, so it is kept alive: read one answer).
    let mut stream = send(addr, &upgrade_with("Upgrade", &[]));
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text:?}");
    assert!(
        text.contains("content-length: 0\r\n") || text.contains("Content-Length: 0\r\n"),
        "{text:?}"
    );
    assert!(text.ends_with("\r\n\r\n"), "empty body: {text:?}");
    server.shutdown();
    server.wait();
}

#[test]
fn upgrade_with_post_is_405_allowing_get() {
    let server = start(echo_app());
    let addr = server.local_addr();
    assert_refused(
        addr,
        &head("POST / HTTP/1.1", &BASE),
        405,
        &[("Allow", "GET")],
    );
    assert_refused(
        addr,
        &head("PUT / HTTP/1.1", &BASE),
        405,
        &[("Allow", "GET")],
    );
    server.shutdown();
    server.wait();
}

#[test]
fn http_1_0_upgrade_is_400() {
    let server = start(echo_app());
    let addr = server.local_addr();
    assert_refused(addr, &head("GET / HTTP/1.0", &BASE), 400, &[]);
    server.shutdown();
    server.wait();
}

#[test]
fn missing_host_is_400() {
    let server = start(echo_app());
    let addr = server.local_addr();
    assert_refused(addr, &upgrade_with("Host", &[]), 400, &[]);
    server.shutdown();
    server.wait();
}

/// RFC 9112 3.2: more than one Host field line MUST get 400.
#[test]
fn duplicate_host_is_400() {
    let server = start(echo_app());
    let addr = server.local_addr();
    let request = upgrade_with("", &["Host: other"]);
    // The status first, so that a 101 fails at once rather than at the read timeout.
    assert_eq!(read_head(&mut send(addr, &request)).0.status, 400);
    assert_refused(addr, &request, 400, &[]);
    server.shutdown();
    server.wait();
}

#[test]
fn missing_or_invalid_key_is_400() {
    let server = start(echo_app());
    let addr = server.local_addr();
    for extra in [
        &[][..],
        // 24 characters, not base64.
        &["Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!=="],
        // base64 of 15 bytes.
        &["Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0O"],
        // base64 of 17 bytes (also 24 characters).
        &["Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODxA="],
        // Empty.
        &["Sec-WebSocket-Key:"],
        // Two valid keys.
        &[
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Key: AAECAwQFBgcICQoLDA0ODw==",
        ],
    ] {
        assert_refused(addr, &upgrade_with("Sec-WebSocket-Key", extra), 400, &[]);
    }
    // The 16-byte key used above is valid on its own.
    upgrade(addr, &upgrade_with("", &[]));
    server.shutdown();
    server.wait();
}

#[test]
fn connection_without_an_upgrade_token_is_400() {
    let server = start(echo_app());
    let addr = server.local_addr();
    for extra in [
        &[][..],
        &["Connection: keep-alive"],
        &["Connection: keep-alive, upgrades"],
        &["Connection: close"],
    ] {
        assert_refused(addr, &upgrade_with("Connection", extra), 400, &[]);
    }
    server.shutdown();
    server.wait();
}

#[test]
fn unsupported_version_is_426_naming_13() {
    let server = start(echo_app());
    let addr = server.local_addr();
    for extra in [
        &[][..],
        &["Sec-WebSocket-Version: 8"],
        &["Sec-WebSocket-Version: 14"],
        &["Sec-WebSocket-Version: 13, 8"],
        &["Sec-WebSocket-Version: abc"],
        &["Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"],
    ] {
        let request = upgrade_with("Sec-WebSocket-Version", extra);
        assert_refused(addr, &request, 426, &[("Sec-WebSocket-Version", "13")]);
    }
    server.shutdown();
    server.wait();
}

#[test]
fn head_trickled_one_byte_at_a_time_still_gets_101() {
    let server = start(echo_app());
    let addr = server.local_addr();
    let request = upgrade_request("/", "");
    let mut stream = send(addr, b"");
    stream.set_nodelay(true).unwrap();
    for byte in &request {
        stream.write_all(std::slice::from_ref(byte)).unwrap();
        thread::sleep(Duration::from_millis(1));
    }
    let (answer, rest) = read_head(&mut stream);
    assert_switching(&answer, &request);
    assert_eq!(rest, b"");
    close_cleanly(stream);
    server.shutdown();
    server.wait();
}

#[test]
fn silent_or_slow_client_gets_408_after_the_handshake_timeout() {
    let server = Server::new(echo_app())
        .workers(2)
        .handshake_timeout(Duration::from_millis(300))
        .listen("127.0.0.1:0")
        .unwrap();
    let addr = server.local_addr();
    for sent in [&b""[..], b"GET / HTTP/1.1\r\nHost: loc"] {
        let started = Instant::now();
        let answer = exchange(addr, sent);
        let waited = started.elapsed();
        assert_eq!(answer.status, 408);
        assert_eq!(answer.header("Connection"), Some("close"));
        assert_eq!(answer.body, b"");
        assert!(
            waited >= Duration::from_millis(290),
            "408 after only {waited:?}"
        );
        assert!(waited < Duration::from_secs(3), "408 only after {waited:?}");
    }
    server.shutdown();
    server.wait();
}

#[test]
fn frame_in_the_same_write_as_the_head_is_the_first_message() {
    let server = start(echo_app());
    let addr = server.local_addr();
    // H14: the head and a masked text frame in one write.
    let mut request = upgrade_request("/", "");
    request.extend_from_slice(&masked_text("hi"));
    let (mut stream, rest) = upgrade(addr, &request);
    assert_eq!(read_exact_after(&mut stream, rest, 4), b"\x81\x02hi");
    close_cleanly(stream);
    server.shutdown();
    server.wait();
}

/// H14 with a close right behind the message: the handler, which has not even started when
/// these bytes are decoded, still answers the message before the server answers the close.
#[test]
fn frame_and_close_in_the_same_write_as_the_head_are_answered_in_order() {
    let server = start(echo_app());
    let addr = server.local_addr();
    let mut request = upgrade_request("/", "");
    request.extend_from_slice(&masked_text("hi"));
    request.extend_from_slice(b"\x88\x82\x01\x02\x03\x04\x02\xea"); // close 1000, masked
    let (mut stream, rest) = upgrade(addr, &request);
    // The echo, then the answer to the close, then EOF.
    assert_eq!(
        read_to_eof(&mut stream, rest),
        b"\x81\x02hi\x88\x02\x03\xe8"
    );
    server.shutdown();
    server.wait();
}

#[test]
fn a_1_mib_garbage_head_does_not_disturb_other_connections() {
    let server = start(echo_app());
    let addr = server.local_addr();
    // Several garbage senders, so that at least one very likely shares a worker with the
    // well-behaved client (SO_REUSEPORT spreads connections over the 2 workers).
    let garbage: Vec<_> = (0..4u64)
        .map(|seed| {
            thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut request = b"GET / HTTP/1.1\r\nX-Junk: ".to_vec();
                // Printable bytes, so no line ending ever closes the head.
                request.extend((0..1 << 20).map(|_| rng.u8(b' '..=b'~')));
                exchange(addr, &request)
            })
        })
        .collect();
    block_on(async move {
        let mut client = Client::connect(addr, "/").await.unwrap();
        for i in 0..200u32 {
            client
                .send(Message::text(format!("message {i}")))
                .await
                .unwrap();
            let echoed = client.recv().await.unwrap().unwrap();
            assert_eq!(echoed.as_text(), Some(format!("message {i}").as_str()));
        }
    });
    for sender in garbage {
        let answer = sender.join().unwrap();
        assert_eq!(answer.status, 431);
        assert_eq!(answer.header("Connection"), Some("close"));
    }
    server.shutdown();
    server.wait();
}
