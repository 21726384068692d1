//! The streaming message decoder: received bytes in, whole messages out.
//!
//! The decoder consumes the front of the caller's read buffer and keeps only what a
//! message in progress needs, so the caller can keep appending reads to one buffer.
//! Every rule is enforced as soon as the bytes that break it are in the buffer, because a
//! peer that has already broken the protocol should not get to send (or make us buffer)
//! the rest of its frame.

use bytes::{Buf, Bytes, BytesMut};

use super::close::{parse_close_payload, CloseFrame};
use super::error::ProtocolError;
use super::frame::{FrameHeader, Lead, OpCode};
use super::mask::apply_mask;
use super::utf8::Utf8Validator;

/// Which end of the connection the decoder serves; it decides which frames must be masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Decoding what a client sends: every frame must be masked.
    Server,
    /// Decoding what a server sends: no frame may be masked.
    Client,
}

/// Limits and options for a [`Decoder`].
#[derive(Debug, Clone)]
pub struct DecoderConfig {
    /// Which end we are, and so which mask presence is required.
    pub role: Role,
    /// The largest message accepted, in payload bytes summed over its frames; a message that
    /// would grow past it fails with [`ProtocolError::MessageTooBig`] (close code 1009)
    /// before its payload is read.
    pub max_message_size: usize,
    /// The most frames one data message may span; more fail with
    /// [`ProtocolError::TooManyFragments`] (close code 1008). Bounds the per-frame overhead
    /// a peer can cause with a stream of tiny or empty continuation frames.
    pub max_fragments: usize,
    /// Whether text messages are checked to be UTF-8, as RFC 6455 requires.
    pub validate_utf8: bool,
    /// Whether RSV1 may be set on the first frame of a data message: permessage-deflate's
    /// "compressed" flag, to be enabled only when that extension was negotiated.
    pub allow_rsv1: bool,
}

impl DecoderConfig {
    /// Defaults for a server reading client frames: masked frames required,
    /// `max_message_size` 1 MiB (`1 << 20`), `max_fragments` 4096, `validate_utf8` on,
    /// `allow_rsv1` off.
    #[must_use]
    pub fn server() -> Self {
        Self {
            role: Role::Server,
            max_message_size: 1 << 20,
            max_fragments: 4096,
            validate_utf8: true,
            allow_rsv1: false,
        }
    }

    /// Defaults for a client reading server frames: unmasked frames required,
    /// `max_message_size` 64 MiB (`64 << 20`), `max_fragments` 65536, `validate_utf8` on,
    /// `allow_rsv1` off.
    #[must_use]
    pub fn client() -> Self {
        Self {
            role: Role::Client,
            max_message_size: 64 << 20,
            max_fragments: 65536,
            validate_utf8: true,
            allow_rsv1: false,
        }
    }
}

/// A complete message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A text message; valid UTF-8 when [`DecoderConfig::validate_utf8`] is on, unless
    /// [`Decoder::last_message_compressed`] says it is still compressed.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping, with its application data (at most 125 bytes).
    Ping(Bytes),
    /// A pong, with its application data (at most 125 bytes).
    Pong(Bytes),
    /// A close frame, with its code and reason if it had any.
    Close(Option<CloseFrame>),
}

impl Message {
    /// Whether this is a control message (ping, pong or close).
    #[must_use]
    pub fn is_control(&self) -> bool {
        matches!(self, Self::Ping(_) | Self::Pong(_) | Self::Close(_))
    }
}

/// A data message whose frames are still arriving.
#[derive(Debug)]
struct Partial {
    /// `Text` or `Binary`, from the first frame.
    opcode: OpCode,
    /// The unmasked payload received so far; grows only by bytes that arrived.
    data: BytesMut,
    /// Frames seen so far, empty ones included.
    fragments: usize,
    /// RSV1 on the first frame: the payload is compressed and is not UTF-8 checked here.
    compressed: bool,
    /// The data frame whose payload is being read, if its header has been consumed.
    frame: Option<InFrame>,
}

impl Partial {
    fn checks_utf8(&self, config: &DecoderConfig) -> bool {
        self.opcode == OpCode::Text && config.validate_utf8 && !self.compressed
    }
}

/// The payload still to come of the current data frame.
#[derive(Debug)]
struct InFrame {
    fin: bool,
    mask: Option<[u8; 4]>,
    remaining: u64,
    /// Payload bytes already read, modulo 4: where in the mask key the next byte falls.
    key_phase: usize,
}

/// Turns a stream of received bytes into [`Message`]s, enforcing RFC 6455 and the limits
/// of its [`DecoderConfig`].
///
/// ```
/// use bytes::BytesMut;
/// use ringsocket::proto::{Decoder, DecoderConfig, Message};
///
/// let mut decoder = Decoder::new(DecoderConfig::server());
/// // A masked "Hello" (RFC 6455 §5.7), arriving in two reads.
/// let mut buf = BytesMut::from(&b"\x81\x85\x37\xfa\x21"[..]);
/// assert_eq!(decoder.decode(&mut buf), Ok(None));
/// buf.extend_from_slice(b"\x3d\x7f\x9f\x4d\x51\x58");
/// assert_eq!(decoder.decode(&mut buf), Ok(Some(Message::Text("Hello".into()))));
/// assert!(buf.is_empty());
/// ```
#[derive(Debug)]
pub struct Decoder {
    config: DecoderConfig,
    /// The data message being assembled. Boxed: only fragmented messages, text frames read in
    /// parts and binary frames over 1 MiB use it (and each of those copies its payload into a
    /// buffer of its own anyway), while every idle connection keeps a decoder.
    partial: Option<Box<Partial>>,
    /// Bytes of `buf` a whole pending frame takes (header included) while the decoder waits
    /// for all of it; 0 when not waiting.
    waiting_for: usize,
    utf8: Utf8Validator,
    last_compressed: bool,
    closed: bool,
    poisoned: Option<Box<ProtocolError>>,
}

impl Decoder {
    /// A decoder at the start of a connection.
    #[must_use]
    pub fn new(config: DecoderConfig) -> Self {
        Self {
            config,
            partial: None,
            waiting_for: 0,
            utf8: Utf8Validator::new(),
            last_compressed: false,
            closed: false,
            poisoned: None,
        }
    }

    /// The configuration this decoder enforces.
    #[must_use]
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Whether the message most recently returned by [`decode`](Decoder::decode) had RSV1
    /// set, i.e. is still permessage-deflate compressed. Always false for control messages
    /// and when [`DecoderConfig::allow_rsv1`] is off.
    #[must_use]
    pub fn last_message_compressed(&self) -> bool {
        self.last_compressed
    }

    /// Whether a close frame has been returned; the decoder then reads nothing more.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Whether the decoder is between messages: it holds nothing of a frame or a message (and
    /// has not stopped), so a new decoder with the same configuration would decode whatever
    /// follows the same way.
    #[must_use]
    pub fn is_between_messages(&self) -> bool {
        self.partial.is_none()
            && self.waiting_for == 0
            && self.utf8.is_complete()
            && !self.closed
            && self.poisoned.is_none()
    }

    /// How many bytes `buf` should hold for the next call to make progress, when known: the
    /// whole of a frame the decoder is waiting for, or the header so far plus the rest of the
    /// frame being read. 0 when any amount will do. Lets the caller size its next read so a
    /// large frame arrives in one.
    pub fn wanted(&self) -> usize {
        if self.waiting_for > 0 {
            return self.waiting_for;
        }
        match self.partial.as_deref() {
            Some(Partial {
                frame: Some(frame), ..
            }) => frame.remaining.min(usize::MAX as u64) as usize,
            _ => 0,
        }
    }

    /// Consumes bytes from the front of `buf` and returns the next complete message.
    ///
    /// Returns `Ok(None)` when `buf` holds no complete message, having consumed (and
    /// buffered internally) whatever it could: append the next read to `buf` and call
    /// again. Call in a loop until `Ok(None)` to drain every message in `buf`. Control
    /// messages may be returned while a fragmented data message is being assembled. After a
    /// [`Message::Close`], returns `Ok(None)` and consumes nothing.
    ///
    /// # Errors
    ///
    /// A [`ProtocolError`] as soon as the bytes in `buf` break the protocol or a limit;
    /// its [`close_code`](ProtocolError::close_code) is the code to close with. The decoder
    /// is then poisoned and returns the same error from every later call.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        if let Some(err) = &self.poisoned {
            return Err((**err).clone());
        }
        if self.closed {
            return Ok(None);
        }
        let result = self.step(buf);
        if let Err(err) = &result {
            self.poisoned = Some(Box::new(err.clone()));
        }
        result
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        loop {
            if let Some(partial) = &mut self.partial {
                let checks_utf8 = partial.checks_utf8(&self.config);
                if let Some(frame) = &mut partial.frame {
                    let utf8 = checks_utf8.then_some(&mut self.utf8);
                    if !read_payload(frame, &mut partial.data, buf, utf8)? {
                        return Ok(None);
                    }
                    let fin = frame.fin;
                    partial.frame = None;
                    if fin {
                        if let Some(partial) = self.partial.take() {
                            return self.finish_message(*partial).map(Some);
                        }
                    }
                    continue;
                }
            }
            let [b0, b1, ..] = buf[..] else {
                return Ok(None);
            };
            let lead = Lead::parse(b0, b1)?;
            self.check_lead(&lead)?;
            let Some((header, header_len)) = lead.complete(buf)? else {
                return Ok(None);
            };
            if header.opcode.is_control() {
                return self.control(buf, &header, header_len);
            }
            self.check_size(&header)?;
            let len = header.payload_len;
            // `check_size` bounded `len` by `max_message_size`, so it fits in a usize.
            let whole = (buf.len() - header_len) as u64 >= len;
            let single = header.fin && header.opcode != OpCode::Continuation;
            if !whole && single && header.opcode == OpCode::Binary && len as usize <= WAIT_WHOLE_MAX
            {
                // A binary frame of one message: let the rest arrive and take it without a
                // copy, rather than copying it piece by piece. (Text is consumed as it comes,
                // so invalid UTF-8 fails as soon as it arrives.)
                self.waiting_for = header_len + len as usize;
                return Ok(None);
            }
            self.waiting_for = 0;
            if whole && single {
                buf.advance(header_len);
                return self
                    .single_frame(buf.split_to(len as usize), &header)
                    .map(Some);
            }
            buf.advance(header_len);
            self.start_frame(&header);
        }
    }

    /// The checks the first two header bytes allow beyond [`Lead::parse`]'s: those that
    /// depend on the role, the extensions and the message in progress.
    fn check_lead(&self, lead: &Lead) -> Result<(), ProtocolError> {
        let starts_message = matches!(lead.opcode, OpCode::Text | OpCode::Binary);
        if lead.rsv2 || lead.rsv3 || (lead.rsv1 && !(self.config.allow_rsv1 && starts_message)) {
            return Err(ProtocolError::ReservedBits);
        }
        match (self.config.role, lead.masked) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        if lead.opcode.is_control() {
            return Ok(());
        }
        let fragments = match (&self.partial, starts_message) {
            (None, false) => return Err(ProtocolError::UnexpectedContinuation),
            (Some(_), true) => return Err(ProtocolError::ExpectedContinuation),
            (None, true) => 1,
            (Some(partial), false) => partial.fragments + 1,
        };
        if fragments > self.config.max_fragments {
            return Err(ProtocolError::TooManyFragments {
                limit: self.config.max_fragments,
            });
        }
        Ok(())
    }

    /// Rejects a data frame that would take its message past the limit, before any of its
    /// payload is read.
    fn check_size(&self, header: &FrameHeader) -> Result<(), ProtocolError> {
        let current = self.partial.as_ref().map_or(0, |p| p.data.len() as u64);
        let size = current.saturating_add(header.payload_len);
        let limit = self.config.max_message_size;
        if size > limit as u64 {
            return Err(ProtocolError::MessageTooBig { size, limit });
        }
        Ok(())
    }

    /// Handles a control frame once it is entirely in `buf`; it never touches the data
    /// message being assembled.
    fn control(
        &mut self,
        buf: &mut BytesMut,
        header: &FrameHeader,
        header_len: usize,
    ) -> Result<Option<Message>, ProtocolError> {
        // `Lead::parse` capped a control frame's length at 125.
        let len = header.payload_len as usize;
        if buf.len() < header_len + len {
            return Ok(None);
        }
        buf.advance(header_len);
        let mut payload = buf.split_to(len);
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key, 0);
        }
        self.last_compressed = false;
        let message = match header.opcode {
            OpCode::Ping => Message::Ping(payload.freeze()),
            OpCode::Pong => Message::Pong(payload.freeze()),
            _ => {
                let frame = parse_close_payload(&payload)?;
                self.closed = true;
                Message::Close(frame)
            }
        };
        Ok(Some(message))
    }

    /// The fast path: an unfragmented message already entirely in the buffer is unmasked in
    /// place and handed out without a copy.
    fn single_frame(
        &mut self,
        mut payload: BytesMut,
        header: &FrameHeader,
    ) -> Result<Message, ProtocolError> {
        if let Some(key) = header.mask {
            apply_mask(&mut payload, key, 0);
        }
        self.last_compressed = header.rsv1;
        if header.opcode == OpCode::Text {
            if self.config.validate_utf8 && !header.rsv1 {
                simdutf8::basic::from_utf8(&payload).map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            Ok(Message::Text(payload.freeze()))
        } else {
            Ok(Message::Binary(payload.freeze()))
        }
    }

    /// Records a data frame whose header has been consumed; its payload follows.
    fn start_frame(&mut self, header: &FrameHeader) {
        let frame = InFrame {
            fin: header.fin,
            mask: header.mask,
            remaining: header.payload_len,
            key_phase: 0,
        };
        match &mut self.partial {
            Some(partial) => {
                partial.fragments += 1;
                partial.frame = Some(frame);
            }
            None => {
                self.utf8.reset();
                self.partial = Some(Box::new(Partial {
                    opcode: header.opcode,
                    data: BytesMut::new(),
                    fragments: 1,
                    compressed: header.rsv1,
                    frame: Some(frame),
                }));
            }
        }
    }

    /// Completes the data message whose final frame has just been read.
    fn finish_message(&mut self, partial: Partial) -> Result<Message, ProtocolError> {
        if partial.checks_utf8(&self.config) {
            self.utf8.finish()?;
        }
        self.last_compressed = partial.compressed;
        let data = partial.data.freeze();
        Ok(if partial.opcode == OpCode::Text {
            Message::Text(data)
        } else {
            Message::Binary(data)
        })
    }
}

/// Moves as much of `frame`'s payload as `buf` holds into `data`, unmasking it and feeding
/// `utf8` (when the message is checked text) as it goes, so invalid text fails before the
/// rest of the frame arrives. Returns whether the frame's payload is complete.
/// Largest single-frame binary message the decoder waits for whole instead of copying it as it
/// arrives.
const WAIT_WHOLE_MAX: usize = 1 << 20;

fn read_payload(
    frame: &mut InFrame,
    data: &mut BytesMut,
    buf: &mut BytesMut,
    utf8: Option<&mut Utf8Validator>,
) -> Result<bool, ProtocolError> {
    let n = frame.remaining.min(buf.len() as u64) as usize;
    if n > 0 {
        let chunk = &mut buf[..n];
        if let Some(key) = frame.mask {
            apply_mask(chunk, key, frame.key_phase);
        }
        if let Some(utf8) = utf8 {
            utf8.feed(chunk)?;
        }
        data.extend_from_slice(chunk);
        buf.advance(n);
        frame.remaining -= n as u64;
        frame.key_phase = (frame.key_phase + n) % 4;
    }
    Ok(frame.remaining == 0)
}

#[cfg(test)]
mod tests;
