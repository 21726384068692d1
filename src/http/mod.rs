//! HTTP/1.1 on the wire: the request head that opens every connection, and the responses
//! written before (or instead of) a WebSocket upgrade.
//!
//! Like `proto`, this layer is sans-IO: it parses byte slices and writes into buffers; the
//! server decides when to read and write.

mod body;
mod head;
mod response;

pub(crate) use body::{framing, BodyDecoder, Framing};
pub use head::{HeadError, HeadLimits, HeadParser};
pub(crate) use response::{wants_keep_alive, write_full_response};
pub use response::{write_response, write_switching_protocols};
