//! Incremental UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split across frames and each frame across socket reads, with the
//! split landing inside a code point. RFC 6455 §8.1 wants the connection failed as soon as
//! the bytes seen cannot begin valid UTF-8, not when the message ends, so validation runs
//! on every piece and carries the few bytes of an unfinished code point to the next one.

use super::error::ProtocolError;

/// Validates a byte stream fed in arbitrary pieces.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// The start of a code point whose remaining bytes have not arrived yet.
    pending: [u8; 4],
    /// How many bytes of `pending` are in use (0 to 3).
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a stream.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates the next piece of the stream.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::InvalidUtf8`] as soon as the bytes fed so far cannot be the start of
    /// valid UTF-8. A piece ending inside a code point that could still be completed is not
    /// an error. After an error the validator's state is unspecified until [`reset`].
    ///
    /// [`reset`]: Utf8Validator::reset
    pub fn feed(&mut self, data: &[u8]) -> Result<(), ProtocolError> {
        let mut data = data;
        if self.pending_len > 0 {
            let have = usize::from(self.pending_len);
            let need = sequence_len(self.pending[0]);
            let take = (need - have).min(data.len());
            self.pending[have..have + take].copy_from_slice(&data[..take]);
            let have = have + take;
            data = &data[take..];
            match simdutf8::compat::from_utf8(&self.pending[..have]) {
                Ok(_) => self.pending_len = 0,
                Err(e) if e.error_len().is_none() => {
                    // Still unfinished; `take` was limited by `data`, so nothing is left.
                    self.pending_len = have as u8;
                    return Ok(());
                }
                Err(_) => return Err(ProtocolError::InvalidUtf8),
            }
        }
        match simdutf8::compat::from_utf8(data) {
            Ok(_) => Ok(()),
            // `error_len() == None` means the input ended inside a code point that could
            // still be valid; std and simdutf8 guarantee at most 3 such bytes.
            Err(e) if e.error_len().is_none() => {
                let rest = &data[e.valid_up_to()..];
                self.pending[..rest.len()].copy_from_slice(rest);
                self.pending_len = rest.len() as u8;
                Ok(())
            }
            Err(_) => Err(ProtocolError::InvalidUtf8),
        }
    }

    /// Ends the stream, then resets the validator for the next one.
    ///
    /// # Errors
    ///
    /// [`ProtocolError::InvalidUtf8`] if the stream ended inside a code point.
    pub fn finish(&mut self) -> Result<(), ProtocolError> {
        let complete = self.is_complete();
        self.reset();
        if complete {
            Ok(())
        } else {
            Err(ProtocolError::InvalidUtf8)
        }
    }

    /// Forgets any unfinished code point, ready for a new stream.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// Whether the bytes fed so far end on a code point boundary.
    #[must_use]
    pub fn is_complete(&self) -> bool {
        self.pending_len == 0
    }
}

/// The length of the sequence a lead byte starts; only called on leads that a validator
/// accepted as the start of a possibly valid sequence (0xC2 to 0xF4).
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xF0.. => 4,
        0xE0.. => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_whole(bytes: &[u8]) -> Result<(), ProtocolError> {
        let mut v = Utf8Validator::new();
        v.feed(bytes)?;
        v.finish()
    }

    fn check_bytewise(bytes: &[u8]) -> Result<(), ProtocolError> {
        let mut v = Utf8Validator::new();
        for b in bytes {
            v.feed(std::slice::from_ref(b))?;
        }
        v.finish()
    }

    /// Every way of cutting `bytes` in two and in three must agree with `expected`.
    fn check_all_splits(bytes: &[u8], valid: bool) {
        let expect = |r: Result<(), ProtocolError>, how: &str| {
            assert_eq!(r.is_ok(), valid, "{bytes:02x?} split {how}");
        };
        expect(check_whole(bytes), "whole");
        expect(check_bytewise(bytes), "bytewise");
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let mut v = Utf8Validator::new();
                let r = v
                    .feed(&bytes[..i])
                    .and_then(|()| v.feed(&bytes[i..j]))
                    .and_then(|()| v.feed(&bytes[j..]))
                    .and_then(|()| v.finish());
                expect(r, &format!("at {i},{j}"));
            }
        }
    }

    #[test]
    fn valid_edge_cases_at_every_split() {
        let cases: &[&[u8]] = &[
            b"",
            b"\x00",
            "\u{FEFF}".as_bytes(),
            "\u{FFFF}".as_bytes(),
            "\u{10FFFF}".as_bytes(),
            "\u{7F}\u{80}\u{7FF}\u{800}\u{D7FF}\u{E000}\u{FFFD}\u{10000}".as_bytes(),
            "Hello-µ@ßöäüàá-UTF-8!!".as_bytes(),
            "κόσμε".as_bytes(),
            "a😀b🦀".as_bytes(),
        ];
        for case in cases {
            check_all_splits(case, true);
        }
    }

    #[test]
    fn invalid_sequences_at_every_split() {
        let cases: &[&[u8]] = &[
            // Overlong encodings of '/' and of the largest values per length.
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"\xf0\x80\x80\xaf",
            b"\xf8\x80\x80\x80\xaf",
            b"\xfc\x80\x80\x80\x80\xaf",
            b"\xc1\xbf",
            b"\xe0\x9f\xbf",
            b"\xf0\x8f\xbf\xbf",
            b"\xc0\x80",
            b"\xe0\x80\x80",
            // UTF-16 surrogates, single and paired.
            b"\xed\xa0\x80",
            b"\xed\xad\xbf",
            b"\xed\xae\x80",
            b"\xed\xaf\xbf",
            b"\xed\xb0\x80",
            b"\xed\xbe\x80",
            b"\xed\xbf\xbf",
            b"\xed\xa0\x80\xed\xb0\x80",
            b"\xed\xaf\xbf\xed\xbf\xbf",
            // Beyond U+10FFFF.
            b"\xf4\x90\x80\x80",
            b"\xf7\xbf\xbf\xbf",
            b"\xf5\x80\x80\x80",
            // Lone continuation bytes and misplaced leads.
            b"\x80",
            b"\xbf",
            b"\x80\xbf\x80",
            b"a\x80b",
            b"\xc0 ",
            b"\xe0 ",
            b"\xdf \xdf",
            // Never valid anywhere.
            b"\xfe",
            b"\xff",
            b"\xfe\xfe\xff\xff",
            // Truncated at the end of the message.
            b"\xc2",
            b"\xe2\x82",
            b"\xf0\x9f\x98",
            b"abc\xce",
            // The Autobahn 6.4 fail-fast payload.
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64",
        ];
        for case in cases {
            check_all_splits(case, false);
        }
    }

    #[test]
    fn fails_as_soon_as_no_valid_continuation_exists() {
        for bad in [
            &b"\xf4\x90"[..],
            b"\xed\xa0",
            b"\xc0",
            b"\xe0\x80",
            b"\xf0\x80",
            b"\xff",
        ] {
            assert_eq!(
                Utf8Validator::new().feed(bad),
                Err(ProtocolError::InvalidUtf8)
            );
            // Also when the bad byte arrives in a later piece.
            let mut v = Utf8Validator::new();
            v.feed(&bad[..bad.len() - 1]).unwrap_or(());
            if bad.len() > 1 {
                assert_eq!(
                    v.feed(&bad[bad.len() - 1..]),
                    Err(ProtocolError::InvalidUtf8)
                );
            }
        }
    }

    #[test]
    fn incomplete_is_not_an_error_until_finish() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"\xe2\x82"), Ok(()));
        assert!(!v.is_complete());
        assert_eq!(v.finish(), Err(ProtocolError::InvalidUtf8));
        // finish resets, so the next stream starts clean.
        assert!(v.is_complete());
        assert_eq!(v.feed(b"ok"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn code_point_over_three_feeds_of_one_byte() {
        let mut v = Utf8Validator::new();
        for b in "€".as_bytes() {
            assert_eq!(v.feed(std::slice::from_ref(b)), Ok(()));
        }
        assert!(v.is_complete());
        for b in "😀".as_bytes() {
            v.feed(std::slice::from_ref(b)).unwrap();
        }
        assert!(v.is_complete());
        // An empty feed in the middle changes nothing.
        v.feed(b"\xf0\x9f").unwrap();
        v.feed(b"").unwrap();
        v.feed(b"\x98\x80tail").unwrap();
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn reset_drops_pending() {
        let mut v = Utf8Validator::new();
        v.feed(b"\xe2").unwrap();
        v.reset();
        assert!(v.is_complete());
        assert_eq!(v.feed(b"\x82"), Err(ProtocolError::InvalidUtf8));
    }
}
