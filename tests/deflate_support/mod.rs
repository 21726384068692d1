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

/// A masked frame with its first byte exactly as given.
pub fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
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
    out.extend_from_slice(&KEY);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ KEY[i % 4]));
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
