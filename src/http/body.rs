//! Request bodies: how one is delimited (RFC 9112 6) and an incremental, bounded decoder for
//! `Content-Length` and `chunked` bodies.

use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, Request, StatusCode, Version};

/// Longest chunk size line, extensions and CRLF included. Real clients send a few hex digits;
/// the bound stops a peer from streaming an endless extension we must scan but never keep.
const MAX_SIZE_LINE: usize = 4 * 1024;
/// Largest trailer section, final CRLF included: the same bound as a request head.
const MAX_TRAILERS: usize = 8 * 1024;

/// How a request's body is delimited (RFC 9112 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Neither `Content-Length` nor `Transfer-Encoding`: the request has no body
    /// (RFC 9112 6.3, rule 7).
    None,
    /// `Content-Length: n`; `0` is an empty body.
    ContentLength(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Why a request body was refused; each variant knows its HTTP status. After any of these the
/// connection's framing is lost, so the server answers and closes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// The body is, or has declared that it will be, longer than the limit (413).
    #[error("request body larger than {limit} bytes")]
    TooLarge {
        /// The limit the decoder was built with.
        limit: usize,
    },
    /// Chunked syntax we refuse, `Transfer-Encoding` whose last coding is not `chunked`, or
    /// `Transfer-Encoding` on an HTTP/1.0 request (400).
    #[error("malformed request body: {0}")]
    Malformed(&'static str),
    /// A transfer coding before `chunked` (e.g. `gzip, chunked`); we decode none (501).
    #[error("unsupported transfer coding")]
    UnsupportedTransferEncoding,
    /// `Content-Length` that is not a decimal `u64`, or a list of differing values (400).
    #[error("invalid Content-Length")]
    InvalidContentLength,
}

impl BodyError {
    /// The status the server answers with before closing the connection.
    pub fn status(&self) -> StatusCode {
        match self {
            BodyError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            BodyError::UnsupportedTransferEncoding => StatusCode::NOT_IMPLEMENTED,
            BodyError::Malformed(_) | BodyError::InvalidContentLength => StatusCode::BAD_REQUEST,
        }
    }
}

/// Reads the framing from a request head.
///
/// # Errors
///
/// - `Transfer-Encoding` on an HTTP/1.0 request, or together with `Content-Length`: 400
///   ([`BodyError::Malformed`]); RFC 9112 6.1 and 6.3 call both faulty framing.
/// - `Transfer-Encoding` whose final coding is not `chunked`, or that applies `chunked`
///   twice: 400 ([`BodyError::Malformed`]), since the body's end cannot be known (RFC 9112 6.3).
/// - Any coding before a final `chunked` (`gzip, chunked`): 501
///   ([`BodyError::UnsupportedTransferEncoding`]).
/// - `Content-Length` that is not a decimal `u64`, or a list of differing values: 400
///   ([`BodyError::InvalidContentLength`]). A list of equal values (`5, 5`) is one length
///   (RFC 9110 8.6).
pub fn framing(head: &Request<()>) -> Result<Framing, BodyError> {
    let headers = head.headers();
    if !headers.contains_key(header::TRANSFER_ENCODING) {
        return content_length(headers);
    }
    if head.version() < Version::HTTP_11 {
        // A 1.0 intermediary may have passed the chunked framing through without knowing it.
        return Err(BodyError::Malformed(
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    if headers.contains_key(header::CONTENT_LENGTH) {
        // HeadParser refuses this already; checked again so that no caller ever picks one of
        // two framings (the request smuggling shape).
        return Err(BodyError::Malformed(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    let (mut codings, mut chunked, mut last) = (0, 0, None);
    for coding in list_elements(headers, &header::TRANSFER_ENCODING) {
        codings += 1;
        chunked += usize::from(coding.eq_ignore_ascii_case(b"chunked"));
        last = Some(coding);
    }
    if !last.is_some_and(|coding| coding.eq_ignore_ascii_case(b"chunked")) {
        return Err(BodyError::Malformed("final transfer coding is not chunked"));
    }
    if chunked > 1 {
        return Err(BodyError::Malformed("chunked applied more than once"));
    }
    if codings > 1 {
        return Err(BodyError::UnsupportedTransferEncoding);
    }
    Ok(Framing::Chunked)
}

fn content_length(headers: &HeaderMap) -> Result<Framing, BodyError> {
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        // Not `list_elements`: an empty element here is an error, not something to skip.
        for element in value.as_bytes().split(|&b| b == b',') {
            let n = parse_decimal(element.trim_ascii()).ok_or(BodyError::InvalidContentLength)?;
            if length.is_some_and(|length| length != n) {
                return Err(BodyError::InvalidContentLength);
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::None, Framing::ContentLength))
}

/// `1*DIGIT` as a `u64`; no sign, no whitespace, no overflow.
fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &b| {
        let digit = b.is_ascii_digit().then(|| u64::from(b - b'0'))?;
        n.checked_mul(10)?.checked_add(digit)
    })
}

/// The non-empty, OWS-trimmed elements of a comma-separated header list, over every line of
/// `name` (RFC 9110 5.6.1 asks recipients to skip empty elements).
pub(super) fn list_elements<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> impl Iterator<Item = &'a [u8]> {
    headers
        .get_all(name)
        .into_iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|element| !element.is_empty())
}

/// Incremental body decoder with a size limit.
///
/// It owns the body it accumulates and copies arrived bytes into it rather than splitting them
/// off the connection's read buffer, so a long-lived body never pins that buffer.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
    limit: usize,
    body: BytesMut,
}

#[derive(Debug)]
enum State {
    /// `Content-Length` bytes still to come (0 for [`Framing::None`]).
    Length(u64),
    Chunked(Chunked),
    /// The body was returned; later calls consume nothing.
    Done,
    /// Errors are sticky: the stream's framing is lost for good.
    Failed(BodyError),
}

impl BodyDecoder {
    /// A decoder for one body framed as `framing`, refusing bodies longer than `limit` bytes.
    pub fn new(framing: Framing, limit: usize) -> Self {
        let state = match framing {
            Framing::None => State::Length(0),
            // Refused before a byte arrives, so the client gets its 413 without uploading.
            Framing::ContentLength(n) if n > limit as u64 => {
                State::Failed(BodyError::TooLarge { limit })
            }
            Framing::ContentLength(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunked::default()),
        };
        Self {
            state,
            limit,
            body: BytesMut::new(),
        }
    }

    /// Consumes body bytes from the front of `buf`, accumulating them. Returns the body once
    /// all of it (for chunked, through the trailer section and final CRLF) has been consumed;
    /// `Ok(None)` means more bytes are needed. Bytes after the body stay in `buf`: they are the
    /// next pipelined request. After the body was returned, further calls consume nothing and
    /// return an empty body.
    ///
    /// Chunk extensions are skipped and trailer fields are checked for syntax and dropped.
    /// Memory grows only with bytes that arrived, never with a declared length.
    ///
    /// # Errors
    ///
    /// A [`BodyError`] whose [`status`](BodyError::status) is the answer to send; the same
    /// error is returned by every later call.
    /// - [`BodyError::TooLarge`]: `Content-Length` over the limit (on the first call, whatever
    ///   `buf` holds), or chunk sizes whose sum exceeds it (as soon as the size is read, before
    ///   its data).
    /// - [`BodyError::Malformed`]: a chunk size that is not hex or overflows `u64`, a size line
    ///   over 4 KiB or not ended by CRLF, chunk data not followed by CRLF, a trailer section
    ///   over 8 KiB or with a malformed field line.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, BodyError> {
        let complete = match &mut self.state {
            State::Length(left) => {
                let n = take_up_to(*left, buf, &mut self.body);
                *left -= n as u64;
                Ok(*left == 0)
            }
            State::Chunked(chunked) => chunked.decode(buf, &mut self.body, self.limit),
            State::Done => Ok(true),
            State::Failed(error) => Err(error.clone()),
        };
        match complete {
            Ok(true) => {
                self.state = State::Done;
                Ok(Some(std::mem::take(&mut self.body).freeze()))
            }
            Ok(false) => Ok(None),
            Err(error) => {
                self.state = State::Failed(error.clone());
                self.body = BytesMut::new();
                Err(error)
            }
        }
    }
}

/// Moves up to `left` bytes from the front of `buf` into `body`; returns how many.
fn take_up_to(left: u64, buf: &mut BytesMut, body: &mut BytesMut) -> usize {
    let n = usize::try_from(left).map_or(buf.len(), |left| left.min(buf.len()));
    body.extend_from_slice(&buf[..n]);
    buf.advance(n);
    n
}

/// Chunked decoding (RFC 9112 7.1), one byte at a time outside chunk data so that any split
/// of the input gives the same result without rescanning.
#[derive(Debug)]
struct Chunked {
    step: Step,
    /// Sum of the chunk sizes read so far.
    declared: u64,
    /// Bytes of the current size line, or of the trailer section.
    counted: usize,
}

impl Default for Chunked {
    fn default() -> Self {
        Self {
            step: Step::Line(Line::Size {
                size: 0,
                digits: false,
            }),
            declared: 0,
            counted: 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Reading framing bytes one at a time.
    Line(Line),
    /// Chunk data bytes still to come, taken in bulk.
    Data(u64),
    /// The final CRLF was read.
    Done,
}

#[derive(Debug, Clone, Copy)]
enum Line {
    /// Hex digits of a chunk size; `digits` is false until the first one.
    Size {
        size: u64,
        digits: bool,
    },
    /// Whitespace after the size, which only a `;` may follow.
    SizeWs {
        size: u64,
    },
    /// Chunk extensions, skipped up to CR.
    Ext {
        size: u64,
    },
    /// The LF ending a size line.
    SizeLf {
        size: u64,
    },
    /// The CR after chunk data.
    DataCr,
    /// The LF after chunk data.
    DataLf,
    /// The start of a trailer field line, or the CR of the final CRLF.
    TrailerStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    /// The LF of the final CRLF.
    EndLf,
}

impl Line {
    /// How many bytes the size line or trailer section this byte belongs to may take, and the
    /// complaint when it takes more.
    fn bound(self) -> (usize, &'static str) {
        match self {
            Line::TrailerStart
            | Line::TrailerName
            | Line::TrailerValue
            | Line::TrailerLf
            | Line::EndLf => (MAX_TRAILERS, "trailer section too large"),
            _ => (MAX_SIZE_LINE, "chunk size line too long"),
        }
    }
}

impl Chunked {
    /// Returns whether the whole body has been read.
    fn decode(
        &mut self,
        buf: &mut BytesMut,
        body: &mut BytesMut,
        limit: usize,
    ) -> Result<bool, BodyError> {
        loop {
            match self.step {
                Step::Done => return Ok(true),
                Step::Data(left) => {
                    let left = left - take_up_to(left, buf, body) as u64;
                    if left > 0 {
                        self.step = Step::Data(left);
                        return Ok(false);
                    }
                    self.step = Step::Line(Line::DataCr);
                }
                Step::Line(line) => {
                    let Some(&byte) = buf.first() else {
                        return Ok(false);
                    };
                    buf.advance(1);
                    self.step = self.line_byte(line, byte, limit)?;
                }
            }
        }
    }

    fn line_byte(&mut self, line: Line, byte: u8, limit: usize) -> Result<Step, BodyError> {
        use Line::*;
        self.counted += 1;
        let (max, too_long) = line.bound();
        if self.counted > max {
            return Err(BodyError::Malformed(too_long));
        }
        Ok(match (line, byte) {
            (Size { size, .. }, b) if b.is_ascii_hexdigit() => {
                let digit = u64::from((b as char).to_digit(16).unwrap_or(0));
                let size = size
                    .checked_mul(16)
                    .and_then(|size| size.checked_add(digit))
                    .ok_or(BodyError::Malformed("chunk size overflows"))?;
                Step::Line(Size { size, digits: true })
            }
            (Size { size, digits: true }, b';' | b' ' | b'\t' | b'\r') => {
                // The size is whole: count it against the limit before any of its data.
                self.declared = self
                    .declared
                    .checked_add(size)
                    .filter(|&declared| declared <= limit as u64)
                    .ok_or(BodyError::TooLarge { limit })?;
                Step::Line(match byte {
                    b';' => Ext { size },
                    b'\r' => SizeLf { size },
                    _ => SizeWs { size },
                })
            }
            (line @ SizeWs { .. }, b' ' | b'\t') => Step::Line(line),
            (SizeWs { size }, b';') => Step::Line(Ext { size }),
            (Ext { size }, b'\r') => Step::Line(SizeLf { size }),
            // Anything but CR and other controls: a lone CR or LF inside an extension is how
            // parsers are made to disagree on where the line ends.
            (line @ (Ext { .. } | TrailerValue), b) if is_field_byte(b) => Step::Line(line),
            (SizeLf { size: 0 }, b'\n') => {
                self.counted = 0;
                Step::Line(TrailerStart)
            }
            (SizeLf { size }, b'\n') => {
                self.counted = 0;
                Step::Data(size)
            }
            (DataCr, b'\r') => Step::Line(DataLf),
            (DataLf, b'\n') => {
                self.counted = 0;
                Step::Line(Size {
                    size: 0,
                    digits: false,
                })
            }
            (TrailerStart, b'\r') => Step::Line(EndLf),
            (TrailerStart | TrailerName, b) if is_tchar(b) => Step::Line(TrailerName),
            (TrailerName, b':') => Step::Line(TrailerValue),
            (TrailerValue, b'\r') => Step::Line(TrailerLf),
            (TrailerLf, b'\n') => Step::Line(TrailerStart),
            (EndLf, b'\n') => Step::Done,
            (Size { .. } | SizeWs { .. } | Ext { .. } | SizeLf { .. }, _) => {
                return Err(BodyError::Malformed("chunk size line"))
            }
            (DataCr | DataLf, _) => {
                return Err(BodyError::Malformed("missing CRLF after chunk data"))
            }
            (TrailerStart | TrailerName | TrailerValue | TrailerLf | EndLf, _) => {
                return Err(BodyError::Malformed("trailer field"))
            }
        })
    }
}

/// `tchar` (RFC 9110 5.6.2): the bytes of a field name.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// HTAB, SP, VCHAR or obs-text: what a field value (or an extension) may hold.
fn is_field_byte(b: u8) -> bool {
    b == b'\t' || (b >= 0x20 && b != 0x7f)
}

#[cfg(test)]
mod tests;
