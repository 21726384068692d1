//! The RFC 6455 protocol core, free of I/O.
//!
//! Everything here works on byte slices and [`bytes::BytesMut`]: "need more bytes" is
//! `Ok(None)`, never an error, so the whole protocol can be driven from byte literals in
//! tests and fuzz targets, and the server only has to move bytes between the socket and
//! these functions.
//!
//! # Layout
//!
//! - [`handshake`]: validates the HTTP upgrade request and computes `Sec-WebSocket-Accept`.
//! - [`frame`]: the frame header codec and [`encode_frame`] for the write side.
//! - [`decoder`]: the streaming [`Decoder`] that turns received bytes into [`Message`]s,
//!   enforcing every RFC 6455 rule and the configured size limits as early as the bytes allow.
//! - [`mask`]: payload masking, with a word-at-a-time fast path and its byte-wise twin.
//! - [`utf8`]: incremental UTF-8 validation for text that arrives in pieces.
//! - [`close`]: close codes and close frame payloads.
//! - [`deflate`]: permessage-deflate (RFC 7692): negotiation, and bounded compression and
//!   inflation of whole messages.
//! - [`error`]: [`ProtocolError`] (each knows the close code it earns) and [`HandshakeError`]
//!   (each knows its HTTP status).

pub mod close;
pub mod decoder;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod utf8;

pub use close::{is_valid_close_code, CloseError, CloseFrame};
pub use decoder::{Decoder, DecoderConfig, Message, Role};
pub use error::{HandshakeError, ProtocolError};
pub use frame::{encode_frame, FrameHeader, OpCode};
pub use handshake::{accept_key, generate_key, is_upgrade_request, validate_request, Handshake};
