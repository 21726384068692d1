//! permessage-deflate for a connection: the options, and where its compression contexts live.
//!
//! A context without context takeover is reset for every message, so one per core serves all
//! the core's connections (uWebSockets' `SHARED_COMPRESSOR`): a core keeps one compressor per
//! window size in use and one decompressor, created on first use. A context with takeover
//! belongs to its connection, and is created when the first message needs it.

use std::{cell::RefCell, fmt};

use bytes::{Bytes, BytesMut};

use crate::proto::{
    deflate::{
        DeflateAgreement, DeflatePolicy, Deflater, Inflater, MAX_WINDOW_BITS, MIN_WINDOW_BITS,
    },
    encode_frame, OpCode, ProtocolError,
};

use super::fanout::FanoutEncoding;

/// Where the server's compressor lives ([`PerMessageDeflate::mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeflateMode {
    /// One compressor per core, shared by all its connections and reset after every message
    /// (`server_no_context_takeover` is always answered). A compressed connection then costs
    /// no compressor memory of its own (a zlib-rs compressor is 250-370 KiB); what it still
    /// holds is its decompressor (about 20 KiB resident once the client has sent a compressed
    /// message; none with [`PerMessageDeflate::client_no_context_takeover`]). The default.
    Shared,
    /// A compressor per connection that keeps its window between messages (better ratios for
    /// streams of similar messages), unless the client asks for `server_no_context_takeover`.
    /// Costs about 330 KiB more per connection (measured resident, 15-bit window), from its
    /// first compressed message on.
    Dedicated,
}

/// permessage-deflate options (RFC 7692), `ws`'s `perMessageDeflate`; give them to
/// [`WsOptions::per_message_deflate`](crate::WsOptions::per_message_deflate).
///
/// The server accepts the first offer of the client it can honour exactly, and declines the
/// others (101 without the extension) rather than accept and ignore a parameter: for example
/// an offer that needs an 8-bit window, which zlib cannot produce, is declined.
///
/// Broadcasts, publishes and sends by id are compressed for each recipient as its own sends
/// are (threshold, mode). In the shared mode a message to many connections is compressed
/// once per core and window size, and every recipient gets the same frame; with
/// [`DeflateMode::Dedicated`] each connection's own compressor takes it, once per recipient.
///
/// ```
/// use ringsocket::{DeflateMode, PerMessageDeflate, WsOptions};
///
/// let options = WsOptions::new().per_message_deflate(
///     PerMessageDeflate::new()
///         .threshold(256)
///         .mode(DeflateMode::Dedicated)
///         .client_no_context_takeover(true),
/// );
/// assert!(options.get_per_message_deflate().is_some());
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PerMessageDeflate {
    threshold: usize,
    mode: DeflateMode,
    level: u32,
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: u8,
    client_max_window_bits: Option<u8>,
}

impl fmt::Debug for PerMessageDeflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PerMessageDeflate")
            .field("threshold", &self.threshold)
            .field("mode", &self.mode)
            .field("level", &self.level)
            .field(
                "server_no_context_takeover",
                &self.server_no_context_takeover,
            )
            .field(
                "client_no_context_takeover",
                &self.client_no_context_takeover,
            )
            .field("server_max_window_bits", &self.server_max_window_bits)
            .field("client_max_window_bits", &self.client_max_window_bits)
            .finish()
    }
}

impl Default for PerMessageDeflate {
    fn default() -> Self {
        Self::new()
    }
}

impl PerMessageDeflate {
    /// The defaults, each in its setter's docs.
    #[must_use]
    pub fn new() -> Self {
        Self {
            threshold: 1024,
            mode: DeflateMode::Shared,
            level: 1,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: None,
        }
    }

    /// Messages smaller than this many bytes are sent uncompressed. A message that does not
    /// get smaller is sent uncompressed too. Default 1024 (`ws`'s default).
    #[must_use]
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Where the compressor lives. Default [`DeflateMode::Shared`].
    #[must_use]
    pub fn mode(mut self, mode: DeflateMode) -> Self {
        self.mode = mode;
        self
    }

    /// The zlib compression level, 0 (none) to 9 (smallest), clamped. Default 1: about three
    /// times faster than 6 for a slightly larger output.
    #[must_use]
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// Always answer `server_no_context_takeover`, also in [`DeflateMode::Dedicated`]
    /// (where the compressor is then shared, as in `Shared`). Default false (always true in
    /// `Shared` mode).
    #[must_use]
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Answer `client_no_context_takeover`: clients compress every message on its own, and
    /// one decompressor per core serves all connections instead of one per connection (about
    /// 47 KiB each, created when the connection's first compressed message arrives). Costs
    /// ratio on the client's messages. Default false.
    #[must_use]
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// The largest window our compressor uses, 9 to 15 bits (clamped; zlib cannot do 8).
    /// Smaller windows compress less; with zlib-rs they save little memory. Default 15.
    #[must_use]
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
        self
    }

    /// Ask clients to limit their window to this many bits (9 to 15, clamped). Offers that
    /// do not say the client supports `client_max_window_bits` are then declined. Default
    /// `None` (clients use the window they like, up to 15 bits).
    #[must_use]
    pub fn client_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.client_max_window_bits = bits.map(|b| b.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS));
        self
    }

    /// The configured [`mode`](Self::mode).
    #[must_use]
    pub fn get_mode(&self) -> DeflateMode {
        self.mode
    }

    /// The configured [`threshold`](Self::threshold).
    #[must_use]
    pub fn get_threshold(&self) -> usize {
        self.threshold
    }

    /// What negotiation works from.
    pub(crate) fn policy(&self) -> DeflatePolicy {
        DeflatePolicy {
            server_no_context_takeover: self.mode == DeflateMode::Shared
                || self.server_no_context_takeover,
            client_no_context_takeover: self.client_no_context_takeover,
            server_max_window_bits: self.server_max_window_bits,
            client_max_window_bits: self.client_max_window_bits,
        }
    }
}

/// A core's shared contexts, and a scratch buffer for compressed payloads.
#[derive(Default)]
struct CorePool {
    /// Compressors without context takeover, by (window bits, level).
    deflaters: Vec<(u8, u32, Deflater)>,
    inflater: Option<Inflater>,
    scratch: Vec<u8>,
}

/// Largest scratch buffer kept between messages.
const SCRATCH_KEEP: usize = 256 * 1024;

thread_local! {
    // Every connection runs on the core that accepted it, and a context is used only within
    // one synchronous call, so a per-thread pool is per-core state without any sharing.
    static POOL: RefCell<CorePool> = RefCell::new(CorePool::default());
}

/// The sending side of a connection with permessage-deflate.
pub(crate) struct SendDeflate {
    threshold: usize,
    level: u32,
    window_bits: u8,
    /// `None` with no context takeover (the core's compressor), or until the first message.
    own: Option<Box<Deflater>>,
    takeover: bool,
}

impl SendDeflate {
    pub(crate) fn new(agreed: &DeflateAgreement, options: &PerMessageDeflate) -> Self {
        Self {
            threshold: options.threshold,
            level: options.level,
            window_bits: agreed.server_max_window_bits,
            own: None,
            takeover: !agreed.server_no_context_takeover,
        }
    }

    /// Whether [`encode`](Self::encode) tries to compress a payload of `len` bytes sent with
    /// `compress` (smaller ones go out as they are).
    pub(crate) fn would_compress(&self, len: usize, compress: bool) -> bool {
        compress && len >= self.threshold.max(1)
    }

    /// How a message of `len` bytes delivered to many connections is encoded for this one.
    pub(crate) fn fanout_encoding(&self, len: usize) -> FanoutEncoding {
        if !self.would_compress(len, true) {
            FanoutEncoding::Plain
        } else if self.takeover {
            FanoutEncoding::Own
        } else {
            FanoutEncoding::Shared {
                window_bits: self.window_bits,
                level: self.level,
            }
        }
    }

    /// Appends `payload` to `out` as one frame: compressed (RSV1 set) when `compress` allows,
    /// it reaches the threshold and it gets smaller, plain otherwise.
    pub(crate) fn encode(
        &mut self,
        out: &mut BytesMut,
        opcode: OpCode,
        payload: &[u8],
        compress: bool,
    ) {
        if !self.would_compress(payload.len(), compress) {
            encode_frame(out, true, false, opcode, None, payload);
            return;
        }
        with_pool(|deflaters, scratch| {
            let done = match (&mut self.own, self.takeover) {
                (Some(own), _) => own.compress(payload, scratch),
                (own @ None, true) => own
                    .insert(Box::new(Deflater::new(self.window_bits, self.level, false)))
                    .compress(payload, scratch),
                (None, false) => shared_deflater(deflaters, self.window_bits, self.level)
                    .compress(payload, scratch),
            };
            if done {
                encode_frame(out, true, true, opcode, None, scratch);
            } else {
                encode_frame(out, true, false, opcode, None, payload);
            }
        });
    }
}

/// Runs `f` with the core's shared compressors and its scratch buffer (emptied), then lets
/// go of the buffer if a large message grew it past [`SCRATCH_KEEP`].
fn with_pool<T>(f: impl FnOnce(&mut Vec<(u8, u32, Deflater)>, &mut Vec<u8>) -> T) -> T {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let CorePool {
            deflaters, scratch, ..
        } = &mut *pool;
        scratch.clear();
        let result = f(deflaters, scratch);
        if scratch.capacity() > SCRATCH_KEEP {
            *scratch = Vec::new();
        }
        result
    })
}

/// `payload` as one compressed frame (RSV1 set) by the core's compressor for `window_bits`
/// and `level`, which resets for every message: what [`SendDeflate::encode`] makes for any
/// connection without context takeover that agreed to that window. `None` when compressing
/// does not make it smaller.
pub(crate) fn compress_frame(
    window_bits: u8,
    level: u32,
    opcode: OpCode,
    payload: &[u8],
) -> Option<Bytes> {
    with_pool(|deflaters, scratch| {
        let done = shared_deflater(deflaters, window_bits, level).compress(payload, scratch);
        done.then(|| {
            let mut out = BytesMut::with_capacity(scratch.len() + 10);
            encode_frame(&mut out, true, true, opcode, None, scratch);
            out.freeze()
        })
    })
}

fn shared_deflater(
    deflaters: &mut Vec<(u8, u32, Deflater)>,
    bits: u8,
    level: u32,
) -> &mut Deflater {
    let index = match deflaters
        .iter()
        .position(|(b, l, _)| (*b, *l) == (bits, level))
    {
        Some(index) => index,
        None => {
            deflaters.push((bits, level, Deflater::new(bits, level, true)));
            deflaters.len() - 1
        }
    };
    &mut deflaters[index].2
}

/// The receiving side of a connection with permessage-deflate.
pub(crate) struct RecvInflate {
    /// `None` without context takeover (the core's decompressor), or until the first message.
    own: Option<Box<Inflater>>,
    takeover: bool,
}

impl RecvInflate {
    pub(crate) fn new(agreed: &DeflateAgreement) -> Self {
        Self {
            own: None,
            takeover: !agreed.client_no_context_takeover,
        }
    }

    /// Inflates one compressed message, producing at most `limit` bytes.
    pub(crate) fn inflate(&mut self, payload: &[u8], limit: usize) -> Result<Bytes, ProtocolError> {
        let out = if self.takeover {
            self.own
                .get_or_insert_with(|| Box::new(Inflater::new(false)))
                .inflate(payload, limit)
        } else {
            POOL.with(|pool| {
                pool.borrow_mut()
                    .inflater
                    .get_or_insert_with(|| Inflater::new(true))
                    .inflate(payload, limit)
            })
        };
        out.map(Bytes::from)
    }
}

impl fmt::Debug for SendDeflate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendDeflate")
            .field("takeover", &self.takeover)
            .field("window_bits", &self.window_bits)
            .finish_non_exhaustive()
    }
}
