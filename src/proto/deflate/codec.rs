//! Compressing and inflating one message (RFC 7692 §7.2), with a hard bound on what inflating
//! may allocate.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::proto::ProtocolError;

/// The empty stored block a sync flush ends with; senders strip it, receivers put it back
/// (RFC 7692 §7.2.1, §7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output room added at a time while inflating, at most; the output never grows past the
/// limit plus one byte (the byte that proves the limit was exceeded).
const INFLATE_CHUNK: usize = 64 * 1024;

/// A raw-deflate compressor for whole messages.
pub struct Deflater {
    inner: Compress,
    no_context_takeover: bool,
    window_bits: u8,
}

impl std::fmt::Debug for Deflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deflater")
            .field("window_bits", &self.window_bits)
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl Deflater {
    /// A compressor with a `window_bits` window (clamped to 9..=15: zlib cannot use 8) at
    /// `level` (0..=9, clamped). With `no_context_takeover`, every message is compressed on
    /// its own.
    #[must_use]
    pub fn new(window_bits: u8, level: u32, no_context_takeover: bool) -> Self {
        let window_bits = window_bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        Self {
            inner: Compress::new_with_window_bits(
                Compression::new(level.min(9)),
                false,
                window_bits,
            ),
            no_context_takeover,
            window_bits,
        }
    }

    /// The window this compressor uses.
    #[must_use]
    pub fn window_bits(&self) -> u8 {
        self.window_bits
    }

    /// Compresses `payload` as one message and appends the result (without the
    /// `00 00 ff ff` tail) to `out`.
    ///
    /// Returns `false`, with `out` as it was, when the message should go uncompressed
    /// instead: the result would not be smaller, or the backend failed. The compressor is then
    /// reset, so the peer's window never lacks bytes ours holds: a reset compressor only
    /// refers to what it is given afterwards, which is always safe for the peer.
    pub fn compress(&mut self, payload: &[u8], out: &mut Vec<u8>) -> bool {
        if payload.is_empty() {
            // One `00` byte plus the frame's RSV1 would not be smaller than nothing.
            return false;
        }
        if self.no_context_takeover {
            self.inner.reset();
        }
        let start = out.len();
        let done = self.compress_into(payload, out);
        let size = out.len() - start;
        if done && size < payload.len() + TAIL.len() && out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
            return true;
        }
        out.truncate(start);
        self.inner.reset();
        false
    }

    fn compress_into(&mut self, payload: &[u8], out: &mut Vec<u8>) -> bool {
        let mut input = payload;
        // Most messages fit this at once; a sync flush needs a few bytes past the data.
        out.reserve(payload.len() / 2 + 64);
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.len().max(1024));
            }
            let before = self.inner.total_in();
            if self
                .inner
                .compress_vec(input, out, FlushCompress::Sync)
                .is_err()
            {
                return false;
            }
            let consumed = (self.inner.total_in() - before) as usize;
            input = &input[consumed..];
            // The flush is complete once a call ends with all input taken and room to spare.
            if input.is_empty() && out.len() < out.capacity() {
                return true;
            }
        }
    }
}

/// A raw-deflate decompressor for whole messages, with a 15-bit window (which inflates data
/// made with any smaller window).
pub struct Inflater {
    inner: Decompress,
    no_context_takeover: bool,
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("no_context_takeover", &self.no_context_takeover)
            .finish_non_exhaustive()
    }
}

impl Inflater {
    /// A decompressor; with `no_context_takeover`, every message is inflated on its own.
    #[must_use]
    pub fn new(no_context_takeover: bool) -> Self {
        Self {
            inner: Decompress::new_with_window_bits(false, MAX_WINDOW_BITS),
            no_context_takeover,
        }
    }

    /// Inflates one message's payload (the tail is appended here), producing at most `limit`
    /// bytes.
    ///
    /// The output grows in steps of at most 64 KiB and never past `limit + 1` bytes, and
    /// inflating stops as soon as it would pass `limit`: a small message that claims gigabytes
    /// costs at most `limit + 1` bytes and the work of producing them.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::MessageTooBig`] (1009) past `limit`, with `size` the bytes produced
    /// when inflating stopped; [`ProtocolError::InvalidCompressedData`] (1007) for data that is
    /// not deflate, or that goes on after a final block. The decompressor is unusable after an
    /// error (the connection is failed anyway).
    pub fn inflate(&mut self, payload: &[u8], limit: usize) -> Result<Vec<u8>, ProtocolError> {
        if self.no_context_takeover {
            self.inner.reset(false);
        }
        let max = limit.saturating_add(1);
        let mut out = Vec::with_capacity(
            payload
                .len()
                .saturating_mul(2)
                .clamp(64, INFLATE_CHUNK)
                .min(max),
        );
        let mut input = payload;
        let mut tail_fed = false;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= max {
                    return Err(too_big(out.len(), limit));
                }
                let grow = out
                    .capacity()
                    .clamp(1024, INFLATE_CHUNK)
                    .min(max - out.len());
                out.reserve_exact(grow);
            }
            let (in_before, out_before) = (self.inner.total_in(), out.len());
            let status = self
                .inner
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
                .map_err(|_| ProtocolError::InvalidCompressedData)?;
            let consumed = (self.inner.total_in() - in_before) as usize;
            input = &input[consumed..];
            if out.len() > limit {
                return Err(too_big(out.len(), limit));
            }
            if status == Status::StreamEnd {
                // A final block: the message's own bytes must end with it (the tail we add
                // may be left over). The next message starts a new stream.
                if !tail_fed && !input.is_empty() {
                    return Err(ProtocolError::InvalidCompressedData);
                }
                self.inner.reset(false);
                return Ok(out);
            }
            let room = out.len() < out.capacity();
            if input.is_empty() && room {
                if tail_fed {
                    return Ok(out);
                }
                input = &TAIL;
                tail_fed = true;
                continue;
            }
            if room && consumed == 0 && out.len() == out_before {
                // Input left, room left, and no progress: the data is not deflate.
                return Err(ProtocolError::InvalidCompressedData);
            }
        }
    }
}

fn too_big(size: usize, limit: usize) -> ProtocolError {
    ProtocolError::MessageTooBig {
        size: size as u64,
        limit,
    }
}

#[cfg(test)]
mod tests;
