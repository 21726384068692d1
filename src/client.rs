//! A WebSocket client on monoio: masks its frames, validates the server's handshake, answers
//! pings, and optionally speaks permessage-deflate. Used by the tests and the benchmark; it
//! talks to any RFC 6455 server.
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
        accept_key,
        close::encode_close_payload,
        deflate::{parse_extensions, Deflater, Inflater, MIN_WINDOW_BITS, PERMESSAGE_DEFLATE},
        encode_frame, generate_key, Decoder, DecoderConfig, Message as Frame, OpCode,
        ProtocolError,
    },
    Error, Message, Result,
};

/// The offer [`ClientBuilder::deflate`] sends: what browsers send.
const DEFLATE_OFFER: &str = "permessage-deflate; client_max_window_bits";

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
    deflate: bool,
}

impl<S> ClientBuilder<S> {
    /// Offers permessage-deflate as browsers do (`permessage-deflate; client_max_window_bits`).
    /// If the server accepts, text and binary messages are sent compressed (when that makes
    /// them smaller) and compressed messages are inflated, up to
    /// [`max_message_size`](Self::max_message_size). Default off.
    #[must_use]
    pub fn deflate(mut self, on: bool) -> Self {
        self.deflate = on;
        self
    }

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
        if self.deflate {
            request.push_str(&format!("Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n"));
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
        let deflate = accepted_deflate(&response, self.deflate)?;
        let decoder = Decoder::new(DecoderConfig {
            max_message_size: self.max_message_size,
            allow_rsv1: deflate.is_some(),
            ..DecoderConfig::client()
        });
        let (deflater, inflater) =
            deflate.map_or((None, None), |(ours, theirs)| (Some(ours), Some(theirs)));
        Ok(Client {
            stream,
            buf,
            decoder,
            out: BytesMut::with_capacity(4096),
            response,
            close_sent: false,
            max_message_size: self.max_message_size,
            deflater,
            inflater,
            scratch: Vec::new(),
        })
    }
}

/// The compressor and decompressor for the permessage-deflate answer in `response`, if the
/// server accepted the offer; an error for an answer the offer did not allow.
fn accepted_deflate(
    response: &http::Response<()>,
    offered: bool,
) -> Result<Option<(Deflater, Inflater)>> {
    let mut values = response
        .headers()
        .get_all("sec-websocket-extensions")
        .iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bad = |why: &str| Error::Handshake(format!("Sec-WebSocket-Extensions: {why}"));
    if values.next().is_some() || !offered {
        return Err(bad("not what was offered"));
    }
    let value = value.to_str().map_err(|_| bad("not text"))?;
    let extensions = parse_extensions(value).map_err(|e| bad(&e.to_string()))?;
    let [extension] = &extensions[..] else {
        return Err(bad("not what was offered"));
    };
    if !extension.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE) {
        return Err(bad("not what was offered"));
    }
    let (mut server_reset, mut client_reset, mut client_bits) = (false, false, 15);
    for (name, value) in &extension.params {
        let bits = value.as_deref().and_then(|v| v.parse::<u8>().ok());
        match (name.as_str(), bits) {
            ("server_no_context_takeover", None) if value.is_none() => server_reset = true,
            ("client_no_context_takeover", None) if value.is_none() => client_reset = true,
            // Our decompressor takes any window.
            ("server_max_window_bits", Some(8..=15)) => {}
            // zlib cannot compress with 8 bits.
            ("client_max_window_bits", Some(bits @ MIN_WINDOW_BITS..=15)) => client_bits = bits,
            _ => return Err(bad(&format!("unsupported parameter {name}"))),
        }
    }
    Ok(Some((
        Deflater::new(client_bits, 1, client_reset),
        Inflater::new(server_reset),
    )))
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
    max_message_size: usize,
    /// permessage-deflate, when the server accepted it.
    deflater: Option<Deflater>,
    inflater: Option<Inflater>,
    scratch: Vec<u8>,
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
            deflate: false,
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
            deflate: false,
        }
    }

    /// The server's handshake response.
    pub fn response(&self) -> &http::Response<()> {
        &self.response
    }

    /// Whether permessage-deflate was negotiated.
    pub fn deflate(&self) -> bool {
        self.deflater.is_some()
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
        if let Some(deflater) = self.deflater.as_mut().filter(|_| !opcode.is_control()) {
            self.scratch.clear();
            if deflater.compress(payload, &mut self.scratch) {
                let compressed = std::mem::take(&mut self.scratch);
                let sent = self.send_frame_rsv1(true, true, opcode, &compressed).await;
                self.scratch = compressed;
                return sent;
            }
        }
        self.send_frame(true, opcode, payload).await
    }

    /// Sends one frame with the given FIN bit and opcode (for fragmented messages in tests).
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub async fn send_frame(&mut self, fin: bool, opcode: OpCode, payload: &[u8]) -> Result<()> {
        self.send_frame_rsv1(fin, false, opcode, payload).await
    }

    /// Sends one frame with the given FIN and RSV1 bits (RSV1: permessage-deflate's
    /// "compressed", for tests that compress or break the rules themselves).
    ///
    /// # Errors
    ///
    /// I/O errors.
    pub async fn send_frame_rsv1(
        &mut self,
        fin: bool,
        rsv1: bool,
        opcode: OpCode,
        payload: &[u8],
    ) -> Result<()> {
        self.out.clear();
        encode_frame(
            &mut self.out,
            fin,
            rsv1,
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
                    return Some(self.inflate(frame).map(Message::from));
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

    /// Inflates a compressed message (checking compressed text is UTF-8, which the decoder
    /// could not).
    fn inflate(&mut self, frame: Frame) -> Result<Frame> {
        let Some(inflater) = self
            .inflater
            .as_mut()
            .filter(|_| self.decoder.last_message_compressed())
        else {
            return Ok(frame);
        };
        Ok(match frame {
            Frame::Text(data) => {
                let text = inflater.inflate(&data, self.max_message_size)?;
                if simdutf8::basic::from_utf8(&text).is_err() {
                    return Err(ProtocolError::InvalidUtf8.into());
                }
                Frame::Text(text.into())
            }
            Frame::Binary(data) => {
                Frame::Binary(inflater.inflate(&data, self.max_message_size)?.into())
            }
            other => other,
        })
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
