//! Connection ids that name their core.

use std::fmt;

/// A connection's id, unique within a server. The core that owns the connection is part of it,
/// so a message for it goes straight to that core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(u64);

impl ClientId {
    pub(crate) fn new(core: usize, serial: u64) -> Self {
        Self(((core as u64) << 48) | (serial & ((1 << 48) - 1)))
    }

    /// The id from [`as_u64`](Self::as_u64) (for ids kept outside the server).
    pub fn from_u64(raw: u64) -> Self {
        Self(raw)
    }

    /// The index of the core (worker) that owns the connection.
    pub fn core(self) -> usize {
        (self.0 >> 48) as usize
    }

    /// The id as one number.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.core(), self.0 & ((1 << 48) - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_core_is_in_the_id() {
        let id = ClientId::new(3, 42);
        assert_eq!(id.core(), 3);
        assert_eq!(id.to_string(), "3:42");
        assert_eq!(ClientId::from_u64(id.as_u64()), id);
    }
}
