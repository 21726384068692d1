//! A WebSocket client on monoio: masks its frames, validates the server's handshake, answers
//! pings. Used by the tests and the benchmark; it talks to any RFC 6455 server.
//!
//! ```no_run
//! # async fn demo() -> ringsocket::Result<()> {
//! use ringsocket::{client::Client, Message};
//!
//! let mut client = Client::connect("127.0.0.1:3000".parse().unwrap(), "/echo").await?;
//! client.send(Message::text("hello")).await?;
//! assert_eq!(client.recv().await.unwrap()?, Message::text("hello"));
//! client.close(1000, "bye").await?;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;

use bytes::BytesMut;
use http::{HeaderName, HeaderValue, StatusCode};
use monoio::{
    buf::IoBufMut,
    io::{AsyncReadRent, AsyncWriteRentExt},
    net::TcpStream,
};

use crate::{
    proto::{
        accept_key, close::encode_close_payload, encode_frame, generate_key, Decoder,
        DecoderConfig, Message as Frame, OpCode,
    },
    Error, Message, Result,
};

/// Options for one connection; see [`Client::builder`].
#[derive(Debug)]
pub struct ClientBuilder {
    addr: SocketAddr,
    path: String,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    max_message_size: usize,
}

impl ClientBuilder {
    /// Adds a request header.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Offers a subprotocol.
    #[must_use]
    pub fn protocol(mut self, protocol: &str) -> Self {
        self.protocols.push(protocol.to_owned());
        self
    }

    /// Largest message accepted from the server. Default 64 MiB.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Connects and performs the opening handshake.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] on connection failure, [`Error::Handshake`] when the server does not
    /// answer 101 with the right `Sec-WebSocket-Accept`.
    pub async fn connect(self) -> Result<Client> {
        let mut stream = TcpStream::connect(self.addr).await?;
        let _ = stream.set_nodelay(true);
        let key = generate_key();
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.path, self.addr, key
        );
        if !self.protocols.is_empty() {
            request.push_str(&format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                self.protocols.join(", ")
            ));
        }
        for (name, value) in &self.headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let (res, _) = stream.write_all(request.into_bytes()).await;
        res?;

        let mut buf = BytesMut::with_capacity(4096);
        let response = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut headers);
            match parsed.parse(&buf) {
                Ok(httparse::Status::Complete(used)) => {
                    let response = to_response(&parsed)?;
                    let _ = buf.split_to(used);
                    break response;
                }
                Ok(httparse::Status::Partial) if buf.len() < 64 * 1024 => {}
                _ => return Err(Error::Handshake("malformed response head".into())),
            }
            read_more(&mut stream, &mut buf).await?;
        };
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(Error::Handshake(format!(
                "server answered {}",
                response.status()
            )));
        }
        let expected = accept_key(key.as_bytes());
        if response
            .headers()
            .get("sec-websocket-accept")
            .map(|v| v.as_bytes())
            != Some(expected.as_bytes())
        {
            return Err(Error::Handshake("wrong Sec-WebSocket-Accept".into()));
        }
        let decoder = Decoder::new(DecoderConfig {
            max_message_size: self.max_message_size,
            ..DecoderConfig::client()
        });
        Ok(Client {
            stream,
            buf,
            decoder,
            out: BytesMut::with_capacity(4096),
            response,
            close_sent: false,
        })
    }
}

/// A connected WebSocket client.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
    decoder: Decoder,
    out: BytesMut,
    response: http::Response<()>,
    close_sent: bool,
}

impl Client {
    /// Options for a connection to `ws://addr{path}`.
    pub fn builder(addr: SocketAddr, path: &str) -> ClientBuilder {
        ClientBuilder {
            addr,
            path: path.to_owned(),
            headers: Vec::new(),
            protocols: Vec::new(),
            max_message_size: DecoderConfig::client().max_message_size,
        }
    }

    /// Connects to `ws://addr{path}` with default options.
    ///
    /// # Errors
    ///
    /// See [`ClientBuilder::connect`].
    pub async fn connect(addr: SocketAddr, path: &str) -> Result<Client> {
        Self::builder(addr, path).connect().await
    }

    /// The server's handshake response.
    pub fn response(&self) -> &http::Response<()> {
        &self.response
    }

    /// Sends a message (masked, as RFC 6455 requires of clients). `Close` sends a close
    /// frame.
    ///
    /// # Errors
    ///
    /// I/O errors; [`Error::InvalidClose`] for an unsendable close code.
    pub async fn send(&mut self, message: impl Into<Message>) -> Result<()> {
        let message = message.into();
        let (opcode, payload): (OpCode, &[u8]) = match &message {
            Message::Text(t) => (OpCode::Text, t.as_bytes()),
            Message::Binary(b) => (OpCode::Binary, b),
            Message::Ping(b) => (OpCode::Ping, b),
            Message::Pong(b) => (OpCode::Pong, b),
            Message::Close(frame) => {
                let (code, reason) = frame
                    .as_ref()
                    .map_or((1000, ""), |f| (f.code, f.reason.as_str()));
                return self.close(code, reason).await;
            }
        };
        self.send_frame(true, opcode, payload).await
    }

    /// Sends one frame with the given FIN bit and opcode (for fragmented messages in tests).
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub async fn send_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) -> Result<()> {
        self.out.clear();
        encode_frame(
            &mut self.out,
            fin,
            false,
            opcode,
            Some(fastrand::u32(..).to_ne_bytes()),
            payload,
        );
        self.flush_out().await
    }

    /// Writes raw bytes to the socket: for tests that need to send what no valid client would.
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.clear();
        self.out.extend_from_slice(bytes);
        self.flush_out().await
    }

    /// Sends a close frame; [`recv`](Self::recv) then yields the server's answer.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidClose`], I/O errors.
    pub async fn close(&mut self, code: u16, reason: &str) -> Result<()> {
        let payload = encode_close_payload(code, reason)?;
        self.close_sent = true;
        self.send_frame(true, OpCode::Close, &payload).await
    }

    /// The next message from the server, pings and pongs included (pings are answered before
    /// they are returned). `None` once the connection has ended.
    pub async fn recv(&mut self) -> Option<Result<Message>> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(frame)) => {
                    if let Frame::Ping(payload) = &frame {
                        if !self.close_sent {
                            let payload = payload.clone();
                            if let Err(e) = self.send_frame(true, OpCode::Pong, &payload).await {
                                return Some(Err(e));
                            }
                        }
                    }
                    return Some(Ok(frame.into()));
                }
                Ok(None) if self.decoder.is_closed() => return None,
                Ok(None) => {}
                Err(e) => return Some(Err(e.into())),
            }
            match read_more(&mut self.stream, &mut self.buf).await {
                Ok(()) => {}
                Err(Error::Closed) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    async fn flush_out(&mut self) -> Result<()> {
        let out = std::mem::take(&mut self.out);
        let (res, out) = self.stream.write_all(out).await;
        self.out = out;
        res?;
        Ok(())
    }
}

/// Appends what the socket has to `buf`; [`Error::Closed`] at EOF.
async fn read_more(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<()> {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(64 * 1024);
    }
    let owned = std::mem::take(buf);
    let len = owned.len();
    let (res, slice) = stream.read(owned.slice_mut(len..)).await;
    *buf = slice.into_inner();
    match res? {
        0 => Err(Error::Closed),
        _ => Ok(()),
    }
}

fn to_response(parsed: &httparse::Response<'_, '_>) -> Result<http::Response<()>> {
    let status = StatusCode::from_u16(parsed.code.unwrap_or(0))
        .map_err(|_| Error::Handshake("invalid status code".into()))?;
    let mut response = http::Response::builder().status(status);
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| Error::Handshake("invalid header name".into()))?;
        let value = HeaderValue::from_bytes(header.value)
            .map_err(|_| Error::Handshake("invalid header value".into()))?;
        response = response.header(name, value);
    }
    response
        .body(())
        .map_err(|_| Error::Handshake("invalid response".into()))
}
