//! The frame header codec (RFC 6455 §5.2).

use bytes::{BufMut, BytesMut};

use super::error::ProtocolError;
use super::mask::apply_mask;

/// A frame's opcode; the reserved values are rejected while parsing, so they have no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpCode {
    /// 0x0: the next fragment of a fragmented message.
    Continuation,
    /// 0x1: the first (or only) frame of a UTF-8 text message.
    Text,
    /// 0x2: the first (or only) frame of a binary message.
    Binary,
    /// 0x8: starts the closing handshake.
    Close,
    /// 0x9: asks the peer for a pong.
    Ping,
    /// 0xA: answers a ping, or a unidirectional heartbeat.
    Pong,
}

impl OpCode {
    /// The opcode for a 4-bit value, or `None` for a reserved value (or one over 0xF).
    #[must_use]
    pub fn from_u8(value: u8) -> Option<OpCode> {
        match value {
            0x0 => Some(Self::Continuation),
            0x1 => Some(Self::Text),
            0x2 => Some(Self::Binary),
            0x8 => Some(Self::Close),
            0x9 => Some(Self::Ping),
            0xA => Some(Self::Pong),
            _ => None,
        }
    }

    /// The 4-bit wire value.
    #[must_use]
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (close, ping, pong): those may not be fragmented,
    /// carry at most 125 bytes, and may interleave with a fragmented message.
    #[must_use]
    pub fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Whether this is the final frame of its message.
    pub fin: bool,
    /// RSV1, claimed by permessage-deflate to mark a compressed message.
    pub rsv1: bool,
    /// RSV2, meaningless without an extension.
    pub rsv2: bool,
    /// RSV3, meaningless without an extension.
    pub rsv3: bool,
    /// The opcode.
    pub opcode: OpCode,
    /// The masking key, present on every client-to-server frame.
    pub mask: Option<[u8; 4]>,
    /// The payload length as declared; never trust it for an allocation.
    pub payload_len: u64,
}

/// What the first two header bytes say, checked as far as they allow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lead {
    pub(crate) fin: bool,
    pub(crate) rsv1: bool,
    pub(crate) rsv2: bool,
    pub(crate) rsv3: bool,
    pub(crate) opcode: OpCode,
    pub(crate) masked: bool,
    pub(crate) len7: u8,
}

impl Lead {
    /// Decodes the first two bytes and rejects what they alone prove invalid, so a bad
    /// frame fails before the rest of its header arrives.
    pub(crate) fn parse(b0: u8, b1: u8) -> Result<Lead, ProtocolError> {
        let raw = b0 & 0x0F;
        let opcode = OpCode::from_u8(raw).ok_or(ProtocolError::ReservedOpcode(raw))?;
        let lead = Lead {
            fin: b0 & 0x80 != 0,
            rsv1: b0 & 0x40 != 0,
            rsv2: b0 & 0x20 != 0,
            rsv3: b0 & 0x10 != 0,
            opcode,
            masked: b1 & 0x80 != 0,
            len7: b1 & 0x7F,
        };
        if opcode.is_control() {
            if !lead.fin {
                return Err(ProtocolError::FragmentedControl);
            }
            if lead.len7 > 125 {
                return Err(ProtocolError::ControlTooLong(u64::from(lead.len7)));
            }
        }
        Ok(lead)
    }

    /// The rest of the header after the lead; `Ok(None)` until all of it is in `buf`.
    pub(crate) fn complete(
        self,
        buf: &[u8],
    ) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let ext = match self.len7 {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        // A 64-bit length must have its top bit clear; its first byte is enough to tell.
        if ext == 8 && buf.get(2).is_some_and(|b| b & 0x80 != 0) {
            return Err(ProtocolError::LengthOverflow);
        }
        let mask_len = if self.masked { 4 } else { 0 };
        let header_len = 2 + ext + mask_len;
        let Some(header) = buf.get(..header_len) else {
            return Ok(None);
        };
        let payload_len = match ext {
            0 => u64::from(self.len7),
            2 => u64::from(u16::from_be_bytes([header[2], header[3]])),
            _ => {
                let mut len = [0u8; 8];
                len.copy_from_slice(&header[2..10]);
                u64::from_be_bytes(len)
            }
        };
        let mask = self.masked.then(|| {
            let k = &header[header_len - 4..];
            [k[0], k[1], k[2], k[3]]
        });
        let parsed = FrameHeader {
            fin: self.fin,
            rsv1: self.rsv1,
            rsv2: self.rsv2,
            rsv3: self.rsv3,
            opcode: self.opcode,
            mask,
            payload_len,
        };
        Ok(Some((parsed, header_len)))
    }
}

impl FrameHeader {
    /// The header of a frame we send: RSV2 and RSV3 clear.
    pub(crate) fn outgoing(
        fin: bool,
        rsv1: bool,
        opcode: OpCode,
        mask: Option<[u8; 4]>,
        payload_len: usize,
    ) -> Self {
        Self {
            fin,
            rsv1,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
            payload_len: payload_len as u64,
        }
    }

    /// Parses a header from the front of `buf`, returning it with its length in bytes.
    ///
    /// Returns `Ok(None)` while the header is incomplete; nothing is consumed either way.
    /// Non-minimal length encodings are accepted (RFC 6455 does not require rejecting them).
    /// RSV bits and mask presence are not checked here: whether they are allowed depends on
    /// the negotiated extensions and on the role, which the [`Decoder`] knows.
    ///
    /// # Errors
    ///
    /// Fails as early as the bytes allow: [`ProtocolError::ReservedOpcode`],
    /// [`ProtocolError::FragmentedControl`] and [`ProtocolError::ControlTooLong`] from the
    /// first two bytes, [`ProtocolError::LengthOverflow`] from the third.
    ///
    /// [`Decoder`]: super::Decoder
    pub fn parse(buf: &[u8]) -> Result<Option<(FrameHeader, usize)>, ProtocolError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        Lead::parse(b0, b1)?.complete(buf)
    }

    /// The number of bytes [`encode`](FrameHeader::encode) writes.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        let ext = match self.payload_len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        };
        2 + ext + if self.mask.is_some() { 4 } else { 0 }
    }

    /// Writes the header using the shortest length form.
    pub fn encode<B: BufMut>(&self, dst: &mut B) {
        let b0 = u8::from(self.fin) << 7
            | u8::from(self.rsv1) << 6
            | u8::from(self.rsv2) << 5
            | u8::from(self.rsv3) << 4
            | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        dst.put_u8(b0);
        match self.payload_len {
            len @ 0..=125 => dst.put_u8(mask_bit | len as u8),
            len @ 126..=0xFFFF => {
                dst.put_u8(mask_bit | 126);
                dst.put_u16(len as u16);
            }
            len => {
                dst.put_u8(mask_bit | 127);
                dst.put_u64(len);
            }
        }
        if let Some(key) = self.mask {
            dst.put_slice(&key);
        }
    }
}

/// Appends a whole frame (header and payload) to `dst`.
///
/// With a mask, the appended payload bytes are masked in place in `dst`; `payload` itself is
/// left untouched, so one payload can be sent to many clients. RSV2 and RSV3 are always clear.
pub fn encode_frame(
    dst: &mut BytesMut,
    fin: bool,
    rsv1: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) {
    let header = FrameHeader::outgoing(fin, rsv1, opcode, mask, payload.len());
    dst.reserve(header.encoded_len() + payload.len());
    header.encode(dst);
    let start = dst.len();
    dst.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut dst[start..], key, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: OpCode, mask: Option<[u8; 4]>, payload_len: u64) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask,
            payload_len,
        }
    }

    #[test]
    fn opcodes_round_trip() {
        for v in 0..=0xFFu8 {
            match OpCode::from_u8(v) {
                Some(op) => assert_eq!(op.as_u8(), v),
                None => assert!(!matches!(v, 0 | 1 | 2 | 8 | 9 | 10)),
            }
        }
        assert!(OpCode::Ping.is_control() && !OpCode::Continuation.is_control());
    }

    #[test]
    fn round_trip_every_length_form() {
        for len in [0, 1, 125, 126, 127, 0xFFFF, 0x10000, u64::MAX >> 1] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut h = header(OpCode::Binary, mask, len);
                h.fin = len % 2 == 0;
                h.rsv1 = true;
                let mut buf = BytesMut::new();
                h.encode(&mut buf);
                assert_eq!(buf.len(), h.encoded_len());
                assert_eq!(FrameHeader::parse(&buf), Ok(Some((h, buf.len()))));
                // Every strict prefix needs more bytes.
                for cut in 0..buf.len() {
                    assert_eq!(FrameHeader::parse(&buf[..cut]), Ok(None), "{len} {cut}");
                }
            }
        }
    }

    #[test]
    fn accepts_non_minimal_lengths() {
        let (h, n) = FrameHeader::parse(b"\x82\x7e\x00\x05").unwrap().unwrap();
        assert_eq!((h.payload_len, n), (5, 4));
        let (h, n) = FrameHeader::parse(b"\x82\x7f\0\0\0\0\0\0\0\x05")
            .unwrap()
            .unwrap();
        assert_eq!((h.payload_len, n), (5, 10));
    }

    #[test]
    fn reports_rsv_and_mask_without_judging() {
        let (h, n) = FrameHeader::parse(b"\x71\x81\x01\x02\x03\x04")
            .unwrap()
            .unwrap();
        assert!(!h.fin && h.rsv1 && h.rsv2 && h.rsv3);
        assert_eq!((h.opcode, h.mask, n), (OpCode::Text, Some([1, 2, 3, 4]), 6));
    }

    #[test]
    fn fails_from_the_first_two_bytes() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let err = FrameHeader::parse(&[0x80 | op, 0x80]).unwrap_err();
            assert_eq!(err, ProtocolError::ReservedOpcode(op));
        }
        assert_eq!(
            FrameHeader::parse(b"\x09\x00"),
            Err(ProtocolError::FragmentedControl)
        );
        assert_eq!(
            FrameHeader::parse(b"\x89\xfe"),
            Err(ProtocolError::ControlTooLong(126))
        );
        assert_eq!(
            FrameHeader::parse(b"\x88\x7f"),
            Err(ProtocolError::ControlTooLong(127))
        );
        assert_eq!(FrameHeader::parse(b"\x89\xfd"), Ok(None));
    }

    #[test]
    fn length_overflow_from_the_third_byte() {
        assert_eq!(
            FrameHeader::parse(b"\x82\x7f\x80"),
            Err(ProtocolError::LengthOverflow)
        );
        assert_eq!(FrameHeader::parse(b"\x82\x7f\x7f"), Ok(None));
    }

    #[test]
    fn encode_frame_masks_a_copy() {
        let payload = b"Hello".to_vec();
        let mut dst = BytesMut::new();
        encode_frame(
            &mut dst,
            true,
            false,
            OpCode::Text,
            Some([0x37, 0xfa, 0x21, 0x3d]),
            &payload,
        );
        // RFC 6455 §5.7, a single-frame masked text message.
        assert_eq!(&dst[..], b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58");
        assert_eq!(payload, b"Hello");
        dst.clear();
        encode_frame(&mut dst, false, true, OpCode::Binary, None, &[7; 300]);
        assert_eq!(&dst[..4], b"\x42\x7e\x01\x2c");
        assert_eq!(dst.len(), 304);
    }
}
