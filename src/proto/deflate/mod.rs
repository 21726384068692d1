//! permessage-deflate (RFC 7692), free of I/O: negotiation from the request header, and
//! compressing and inflating whole messages with flate2's zlib-rs backend.
//!
//! # Layout
//!
//! - [`negotiate`](mod@negotiate): parses `Sec-WebSocket-Extensions` and picks the first
//!   offer a [`DeflatePolicy`] can honour exactly, giving a [`DeflateAgreement`] and the
//!   response header.
//! - [`codec`]: [`Deflater`] (one message in, compressed bytes without the `00 00 ff ff`
//!   tail out) and [`Inflater`] (the reverse, bounded by a size limit: a deflate bomb costs
//!   at most the limit plus one byte of memory).
//!
//! The frame side (RSV1 on the first frame only, never on control frames) is the
//! [`Decoder`](super::Decoder)'s and [`encode_frame`](super::encode_frame)'s business.

pub mod codec;
pub mod negotiate;

pub use codec::{Deflater, Inflater, TAIL};
pub use negotiate::{
    negotiate, parse_extensions, DeflateAgreement, DeflatePolicy, Extension, MalformedExtensions,
    PERMESSAGE_DEFLATE,
};

/// The smallest window zlib can compress with (RFC 7692 allows 8; zlib refuses it for raw
/// deflate, so offers that need 8 are declined).
pub const MIN_WINDOW_BITS: u8 = 9;
/// The largest window RFC 7692 allows (32 KiB).
pub const MAX_WINDOW_BITS: u8 = 15;
