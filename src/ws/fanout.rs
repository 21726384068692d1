//! A message on its way to many connections (broadcast, publish, a send by id from another
//! core): encoded once as a plain frame, and compressed for each connection with
//! permessage-deflate as that connection's own sends would be.
//!
//! A connection whose sends are compressed without context takeover (the shared mode, and
//! any client that asked for `server_no_context_takeover`) gets the frame the core's
//! compressor makes for its window size and level: the same bytes for all of them, so the
//! message is compressed once per core and window size, not once per recipient (uWebSockets'
//! shared compressor does the same). A connection with context takeover gets the message
//! through its own compressor, since a frame compressed elsewhere would put bytes in the
//! client's window that the connection's compressor does not know of.

use bytes::Bytes;

use super::{deflate::compress_frame, shared::Shared};
use crate::proto::{FrameHeader, OpCode};

/// How a connection sends a message of a given size (see [`Shared::fanout_encoding`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FanoutEncoding {
    /// As it is: no permessage-deflate, under the threshold, or a control frame.
    Plain,
    /// Compressed by the core's compressor for this window size and level.
    Shared { window_bits: u8, level: u32 },
    /// Compressed by the connection's own compressor (context takeover).
    Own,
}

/// One message being delivered to many connections.
pub(crate) struct Fanout {
    /// The plain frame, as the sender encoded it for every recipient.
    plain: Bytes,
    opcode: OpCode,
    /// Where the payload starts in `plain`.
    payload_at: usize,
    /// Compressed frames made so far, by window size and level (`None`: it would not get
    /// smaller, so the plain frame goes instead).
    compressed: Vec<(u8, u32, Option<Bytes>)>,
}

impl Fanout {
    /// `frame`: one final, unmasked frame as the server encodes it.
    pub(crate) fn new(frame: Bytes) -> Self {
        let (opcode, payload_at) = split_frame(&frame);
        Self {
            plain: frame,
            opcode,
            payload_at,
            compressed: Vec::new(),
        }
    }

    pub(crate) fn payload_len(&self) -> usize {
        self.plain.len() - self.payload_at
    }

    /// Queues the message on `shared` the way its own send would go.
    pub(crate) fn deliver(&mut self, shared: &mut Shared) -> Result<(), crate::Error> {
        let data = matches!(self.opcode, OpCode::Text | OpCode::Binary);
        let encoding = if data {
            shared.fanout_encoding(self.payload_len())
        } else {
            FanoutEncoding::Plain
        };
        match encoding {
            FanoutEncoding::Plain => shared.queue_shared(self.plain.clone()),
            FanoutEncoding::Shared { window_bits, level } => {
                let frame = self.compressed_frame(window_bits, level);
                shared.queue_shared(frame)
            }
            FanoutEncoding::Own => {
                shared.queue_data(self.opcode, self.plain.slice(self.payload_at..), true)
            }
        }
    }

    /// The frame compressed by the core's compressor for `window_bits` and `level`, made on
    /// first use; the plain frame when compressing does not make it smaller.
    fn compressed_frame(&mut self, window_bits: u8, level: u32) -> Bytes {
        let made = self
            .compressed
            .iter()
            .find(|(bits, lvl, _)| (*bits, *lvl) == (window_bits, level));
        let frame = match made {
            Some((_, _, frame)) => frame.clone(),
            None => {
                let payload = &self.plain[self.payload_at..];
                let frame = compress_frame(window_bits, level, self.opcode, payload);
                self.compressed.push((window_bits, level, frame.clone()));
                frame
            }
        };
        frame.unwrap_or_else(|| self.plain.clone())
    }
}

/// The opcode and the payload's offset of a final, unmasked frame the server encoded.
fn split_frame(frame: &[u8]) -> (OpCode, usize) {
    let (header, payload_at) = FrameHeader::parse(frame)
        .ok()
        .flatten()
        .expect("a whole frame the server encoded");
    debug_assert!(header.fin && header.mask.is_none(), "final and unmasked");
    (header.opcode, payload_at)
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::proto::encode_frame;

    fn frame(opcode: OpCode, payload: &[u8]) -> Bytes {
        let mut out = BytesMut::new();
        encode_frame(&mut out, true, false, opcode, None, payload);
        out.freeze()
    }

    #[test]
    fn the_payload_is_found_behind_each_length_form() {
        for (len, at) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let fan = Fanout::new(frame(OpCode::Binary, &vec![7; len]));
            assert_eq!((fan.opcode, fan.payload_at), (OpCode::Binary, at));
            assert_eq!(fan.payload_len(), len);
        }
        let fan = Fanout::new(frame(OpCode::Text, b"hi"));
        assert_eq!((fan.opcode, fan.payload_len()), (OpCode::Text, 2));
    }

    #[test]
    fn each_window_size_is_compressed_once_and_reused() {
        let payload: Vec<u8> = (0..4096u32).map(|i| (i % 17) as u8).collect();
        let mut fan = Fanout::new(frame(OpCode::Binary, &payload));
        let a = fan.compressed_frame(15, 1);
        let b = fan.compressed_frame(15, 1);
        let c = fan.compressed_frame(10, 1);
        assert_eq!(
            a.as_ptr(),
            b.as_ptr(),
            "the second recipient shares the first's frame"
        );
        assert_eq!(fan.compressed.len(), 2);
        // RSV1 set, and much smaller than the plain frame.
        assert_eq!(a[0], 0x80 | 0x40 | 0x2);
        assert_eq!(c[0], 0x80 | 0x40 | 0x2);
        assert!(a.len() < payload.len() / 4, "{} bytes", a.len());
    }

    #[test]
    fn a_payload_that_does_not_shrink_goes_plain() {
        // Bytes from a simple generator: deflate cannot make them smaller.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let payload: Vec<u8> = (0..2048)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let plain = frame(OpCode::Binary, &payload);
        let mut fan = Fanout::new(plain.clone());
        assert_eq!(fan.compressed_frame(15, 1), plain);
        assert_eq!(fan.compressed, vec![(15, 1, None)]);
    }
}
