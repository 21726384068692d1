//! A blocking raw WebSocket client for the permessage-deflate tests: it sends frames with any
//! header bits, compresses with flate2 itself, and reads the server's frames as they are.
#![allow(dead_code)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use ringsocket::{App, DeflateMode, PerMessageDeflate, Server, ServerHandle, WsOptions};

/// The masking key of every frame sent here (RFC 6455 5.7's example key).
pub const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
pub const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// An echo server on 127.0.0.1:0 (2 workers) with `options`.
pub fn echo_server(options: WsOptions) -> ServerHandle {
    let app = App::builder()
        .websocket(options)
        .ws("/", |mut ws, _req| async move {
            while let Some(Ok(message)) = ws.recv().await {
                if message.is_close() || ws.send(message).await.is_err() {
                    break;
                }
            }
        })
        .build()
        .unwrap();
    Server::new(app)
        .workers(2)
        .listen("127.0.0.1:0")
        .expect("server starts")
}

/// Deflate on, in `mode`, with a 16-byte threshold so short test messages are compressed.
pub fn deflate_options(mode: DeflateMode) -> WsOptions {
    WsOptions::new().per_message_deflate(PerMessageDeflate::new().mode(mode).threshold(16))
}

/// A text that compresses well, `len` bytes.
pub fn text(len: usize) -> Vec<u8> {
    b"The quick brown fox jumps over the lazy dog. "
        .iter()
        .cycle()
        .take(len)
        .copied()
        .collect()
}

/// A masked frame with its first byte (FIN, RSV bits, opcode) exactly as given, so it can
/// carry what an encoder refuses to produce.
pub fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    masked_with(b0, KEY, payload)
}

/// [`masked`] with a chosen key.
pub fn masked_with(b0: u8, key: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    match payload.len() {
        len @ 0..=125 => out.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// The client's compressor (context takeover unless reset by the caller).
pub struct ClientDeflate(pub Compress);

impl ClientDeflate {
    pub fn new() -> Self {
        Self(Compress::new_with_window_bits(
            Compression::default(),
            false,
            15,
        ))
    }

    /// One message, compressed, tail stripped.
    pub fn compress(&mut self, payload: &[u8]) -> Vec<u8> {
        if payload.is_empty() {
            // zlib emits nothing for a sync flush without new input; RFC 7692 §7.2.3.6 says
            // an empty message is this one byte.
            return vec![0x00];
        }
        let mut out = Vec::with_capacity(payload.len() + 64);
        let mut input = payload;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.len().max(1024));
            }
            let before = self.0.total_in();
            self.0
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .unwrap();
            input = &input[(self.0.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        assert!(out.ends_with(&TAIL));
        out.truncate(out.len() - 4);
        out
    }
}

/// Inflates one message from the server (no size limit: the server is trusted here).
pub fn inflate(d: &mut Decompress, payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&TAIL);
    let mut out = Vec::with_capacity(payload.len() * 4 + 1024);
    let mut rest = &input[..];
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.len());
        }
        let before = d.total_in();
        d.decompress_vec(rest, &mut out, FlushDecompress::Sync)
            .unwrap();
        rest = &rest[(d.total_in() - before) as usize..];
        if rest.is_empty() && out.len() < out.capacity() {
            return out;
        }
    }
}

/// A frame from the server: its first byte and payload.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub b0: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn rsv1(&self) -> bool {
        self.b0 & 0x40 != 0
    }

    pub fn opcode(&self) -> u8 {
        self.b0 & 0x0F
    }

    /// The code of a close frame.
    pub fn close_code(&self) -> u16 {
        assert_eq!(self.opcode(), 8, "not a close frame: {:02x}", self.b0);
        u16::from_be_bytes([self.payload[0], self.payload[1]])
    }
}

/// One upgraded connection, blocking.
pub struct Raw {
    pub stream: TcpStream,
    /// The 101 response head.
    pub head: String,
}

impl Raw {
    /// Upgrades with `extensions` as the `Sec-WebSocket-Extensions` header (none if `None`);
    /// panics unless the answer is 101.
    pub fn connect(addr: SocketAddr, extensions: Option<&str>) -> Self {
        let (stream, head) = upgrade(addr, extensions);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        Self { stream, head }
    }

    /// The `Sec-WebSocket-Extensions` header of the 101, if any.
    pub fn extensions(&self) -> Option<String> {
        header(&self.head, "sec-websocket-extensions")
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// The next frame (5 s at most).
    pub fn frame(&mut self) -> Frame {
        let mut h = [0u8; 2];
        self.stream.read_exact(&mut h).unwrap();
        assert_eq!(h[1] & 0x80, 0, "server frames are unmasked");
        let len = match h[1] & 0x7F {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).unwrap();
                u64::from(u16::from_be_bytes(b))
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).unwrap();
                u64::from_be_bytes(b)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        self.stream.read_exact(&mut payload).unwrap();
        Frame { b0: h[0], payload }
    }
}

/// Sends an upgrade request and reads the response head.
pub fn upgrade(addr: SocketAddr, extensions: Option<&str>) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let ext = extensions
        .map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    (stream, String::from_utf8_lossy(&head).into_owned())
}

/// A header's value in a response head (case-insensitive name).
pub fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// Writes deflate's bit stream: header fields least significant bit first, Huffman codes
/// most significant bit first (RFC 1951 §3.1.1).
pub struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    /// An empty stream.
    pub fn new() -> Self {
        Self {
            out: Vec::new(),
            acc: 0,
            n: 0,
        }
    }

    /// `count` bits of a header field.
    pub fn put(&mut self, value: u64, count: u32) {
        self.acc |= value << self.n;
        self.n += count;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// Pads to a whole byte and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.put(0, 8 - self.n);
        }
        self.out
    }

    /// A Huffman code of `len` bits.
    pub fn code(&mut self, code: u64, len: u32) {
        let reversed = (0..len).fold(0, |r, i| r | ((code >> i) & 1) << (len - 1 - i));
        self.put(reversed, len);
    }
}

/// One dynamic-Huffman block: a literal 0, then `pairs` copies of 258 bytes at distance 1,
/// at 2 bits each (the densest deflate allows), then end of block and the header of the empty
/// stored block whose length bytes are the `00 00 ff ff` tail the receiver adds.
/// It inflates to `1 + 258 * pairs` zero bytes.
pub fn bomb(pairs: usize) -> Vec<u8> {
    let mut b = Bits {
        out: Vec::with_capacity(pairs / 4 + 64),
        acc: 0,
        n: 0,
    };
    b.put(0, 1); // BFINAL
    b.put(2, 2); // dynamic Huffman
    b.put(29, 5); // HLIT: 286 literal/length codes
    b.put(0, 5); // HDIST: 1 distance code
    b.put(14, 4); // HCLEN: 18 code length codes
                  // Code length code lengths, in RFC 1951's order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1:
                  // 18 (a run of zeros) gets 1 bit, lengths 1 and 2 get 2 bits.
    for len in [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2] {
        b.put(len, 3);
    }
    // Canonical codes: 18 -> 0, 1 -> 10, 2 -> 11.
    let (run, one, two) = ((0b0, 1), (0b10, 2), (0b11, 2));
    // Literal/length lengths: 0 -> 2, 1..=255 -> 0, 256 -> 2, 257..=284 -> 0, 285 -> 1;
    // then the one distance code (0) -> 1.
    b.code(two.0, two.1);
    b.code(run.0, run.1);
    b.put(138 - 11, 7);
    b.code(run.0, run.1);
    b.put(117 - 11, 7);
    b.code(two.0, two.1);
    b.code(run.0, run.1);
    b.put(28 - 11, 7);
    b.code(one.0, one.1);
    b.code(one.0, one.1);
    // Canonical literal/length codes: 285 -> 0, 0 -> 10, 256 -> 11; distance 0 -> 0.
    b.code(0b10, 2);
    for _ in 0..pairs {
        b.code(0, 1);
        b.code(0, 1);
    }
    b.code(0b11, 2);
    // The empty stored block's header; its LEN/NLEN are the tail.
    b.put(0, 3);
    b.finish()
}
