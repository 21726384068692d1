//! A handle on a connection held by the server (for `pre_close`, and later the client
//! registry): not the handler's [`WebSocket`](super::WebSocket), so holding one never keeps a
//! connection open.

use std::fmt;

use crate::{
    cluster::ClientId,
    proto::close::encode_close_payload,
    ws::shared::{Phase, SharedRef},
    Error,
};

/// A tracked connection, as shutdown code sees it.
#[derive(Clone)]
pub struct ClientHandle {
    shared: SharedRef,
    id: ClientId,
}

impl fmt::Debug for ClientHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandle")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl ClientHandle {
    pub(crate) fn new(shared: SharedRef, id: ClientId) -> Self {
        Self { shared, id }
    }

    /// The connection's id.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// Starts the close handshake (see [`WebSocket::close`](super::WebSocket::close)).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidClose`] for a code that may not be sent or a reason over 123 bytes.
    pub fn close(&self, code: u16, reason: &str) -> Result<(), Error> {
        encode_close_payload(code, reason)?;
        self.shared.borrow_mut().start_close(code, reason);
        Ok(())
    }

    /// Queues a message (see [`WebSocket::send`](super::WebSocket::send)).
    ///
    /// # Errors
    ///
    /// As [`WebSocket::send`](super::WebSocket::send).
    pub fn send(&self, message: impl Into<crate::Message>) -> Result<(), Error> {
        let frame = crate::cluster::clients::encode_message(&message.into())?;
        self.shared.borrow_mut().queue_shared(frame)
    }

    /// Bytes queued and not yet written.
    pub fn buffered_amount(&self) -> usize {
        self.shared.borrow().buffered_amount()
    }

    /// Ends the connection at once, without the close handshake.
    pub fn terminate(&self) {
        self.shared.borrow_mut().terminate();
    }

    /// Whether messages can still be sent.
    pub fn is_open(&self) -> bool {
        let shared = self.shared.borrow();
        shared.phase == Phase::Open && !shared.terminated
    }
}
