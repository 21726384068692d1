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
    io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt},
    net::TcpStream,
};

use crate::{
    proto::{
        accept_key, close::encode_close_payload, encode_frame, generate_key, Decoder,
        DecoderConfig, Message as Frame, OpCode,
    },
    Error, Message, Result,
};

/// Options for one connection; see [`Client::builder`] and [`Client::builder_on`].
#[derive(Debug)]
pub struct ClientBuilder<S = TcpStream> {
    stream: Option<S>,
    addr: Option<SocketAddr>,
    host: String,
    path: String,
    headers: Vec<(String, String)>,
    protocols: Vec<String>,
    max_message_size: usize,
}

impl<S> ClientBuilder<S> {
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
}

impl ClientBuilder<TcpStream> {
    /// Connects over TCP and performs the opening handshake.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] on connection failure, [`Error::UnexpectedResponse`] when the server
    /// answers with another status than 101, [`Error::Handshake`] for a wrong
    /// `Sec-WebSocket-Accept` or a malformed answer.
    pub async fn connect(mut self) -> Result<Client<TcpStream>> {
        let addr = self
            .addr
            .ok_or_else(|| Error::Handshake("no address to connect to".into()))?;
        let stream = TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        self.stream = Some(stream);
        self.connect_stream().await
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> ClientBuilder<S> {
    /// Performs the opening handshake on the stream given to [`Client::builder_on`].
    ///
    /// # Errors
    ///
    /// As [`ClientBuilder::connect`].
    pub async fn connect_stream(self) -> Result<Client<S>> {
        let mut stream = self
            .stream
            .ok_or_else(|| Error::Handshake("no stream to connect on".into()))?;
        let key = generate_key();
        let mut request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n",
            self.path, self.host, key
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
            match read_more(&mut stream, &mut buf).await {
                Ok(()) => {}
                Err(Error::Closed) => {
                    return Err(Error::Handshake(
                        "connection closed before the response".into(),
                    ))
                }
                Err(e) => return Err(e),
            }
        };
        if response.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(Error::UnexpectedResponse {
                status: response.status(),
            });
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

/// A connected WebSocket client, over TCP or any stream given to [`Client::builder_on`].
#[derive(Debug)]
pub struct Client<S = TcpStream> {
    stream: S,
    buf: BytesMut,
    decoder: Decoder,
    out: BytesMut,
    response: http::Response<()>,
    close_sent: bool,
}

impl Client<TcpStream> {
    /// Options for a connection to `ws://addr{path}`.
    pub fn builder(addr: SocketAddr, path: &str) -> ClientBuilder<TcpStream> {
        ClientBuilder {
            stream: None,
            addr: Some(addr),
            host: addr.to_string(),
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
    pub async fn connect(addr: SocketAddr, path: &str) -> Result<Client<TcpStream>> {
        Self::builder(addr, path).connect().await
    }
}

impl<S: AsyncReadRent + AsyncWriteRent> Client<S> {
    /// Options for a handshake on an already connected stream (a Unix socket, a socket pair),
    /// with `host` as the `Host` header.
    pub fn builder_on(stream: S, host: &str, path: &str) -> ClientBuilder<S> {
        ClientBuilder {
            stream: Some(stream),
            addr: None,
            host: host.to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            protocols: Vec::new(),
            max_message_size: DecoderConfig::client().max_message_size,
        }
    }

    /// The server's handshake response.
    pub fn response(&self) -> &http::Response<()> {
        &self.response
    }

    /// The subprotocol the server chose, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
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

    /// Sends an empty close frame (no status code).
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub async fn close_without_code(&mut self) -> Result<()> {
        self.close_sent = true;
        self.send_frame(true, OpCode::Close, &[]).await
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

    /// Waits until the server closes the TCP connection (EOF), discarding anything else it
    /// sends; returns whether EOF came (an error also ends the wait, as `false`).
    pub async fn wait_eof(&mut self) -> bool {
        loop {
            self.buf.clear();
            match read_more(&mut self.stream, &mut self.buf).await {
                Ok(()) => {}
                Err(Error::Closed) => return true,
                Err(_) => return false,
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
async fn read_more<S: AsyncReadRent>(stream: &mut S, buf: &mut BytesMut) -> Result<()> {
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
