//! Negotiation of permessage-deflate (RFC 7692 §5, §7.1) from a `Sec-WebSocket-Extensions`
//! request header.
//!
//! The header is parsed with the grammar of RFC 6455 §9.1; a header that does not follow it is
//! an error (the handshake is refused with 400, as §9.1 says the connection must fail). Inside a
//! well-formed header, each `permessage-deflate` offer is judged on its own, in order: the
//! first one this server can honour exactly is accepted, and one it cannot (an unknown or
//! repeated parameter, an invalid value, a window the backend cannot produce) is declined as
//! RFC 7692 §5 requires, and the next one is tried. Other extensions are ignored.

use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};

/// The server's side of the negotiation: what it asks for, and the limits it can honour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeflatePolicy {
    /// Answer `server_no_context_takeover` even when the client did not ask for it: our
    /// compressor is reset after every message (so one compressor can serve many connections).
    pub server_no_context_takeover: bool,
    /// Answer `client_no_context_takeover`: the client must reset its compressor after every
    /// message (so one decompressor can serve many connections).
    pub client_no_context_takeover: bool,
    /// The largest window our compressor uses, 9..=15. An offer asking for less gets
    /// `min(offered, this)`; an offer asking for 8 is declined (zlib cannot produce it).
    pub server_max_window_bits: u8,
    /// Ask the client to limit its window to this many bits (9..=15). An offer without
    /// `client_max_window_bits` cannot be asked, and is declined. `None`: never ask.
    pub client_max_window_bits: Option<u8>,
}

impl Default for DeflatePolicy {
    /// Context takeover both ways allowed, 15-bit windows, nothing asked of the client.
    fn default() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: None,
        }
    }
}

/// The parameters both ends agreed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateAgreement {
    /// Our compressor is reset after every message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after every message.
    pub client_no_context_takeover: bool,
    /// The window our compressor uses (9..=15).
    pub server_max_window_bits: u8,
    /// The largest window the client's messages may use (8..=15); 15 when nothing was agreed.
    pub client_max_window_bits: u8,
    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub response: String,
}

/// A `Sec-WebSocket-Extensions` header that does not follow RFC 6455 §9.1's grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed Sec-WebSocket-Extensions header at byte {at}")]
pub struct MalformedExtensions {
    /// Where in the (joined) header value parsing failed.
    pub at: usize,
}

/// One extension of the header: its name and parameters, values unquoted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// `(name, value)` pairs in order; `None` for a parameter without `=`.
    pub params: Vec<(String, Option<String>)>,
}

/// Parses a `Sec-WebSocket-Extensions` value (several header lines joined with `,`).
///
/// Empty list elements are allowed (RFC 9110 §5.6.1). A quoted parameter value must be a token
/// once unescaped (RFC 6455 §9.1).
///
/// # Errors
///
/// [`MalformedExtensions`] when the value does not follow the grammar.
pub fn parse_extensions(header: &str) -> Result<Vec<Extension>, MalformedExtensions> {
    let mut p = Parser {
        s: header.as_bytes(),
        at: 0,
    };
    let mut out = Vec::new();
    loop {
        p.ows();
        match p.peek() {
            None => return Ok(out),
            Some(b',') => {
                p.at += 1;
                continue;
            }
            Some(_) => {}
        }
        let name = p.token()?;
        let mut params = Vec::new();
        loop {
            p.ows();
            match p.peek() {
                None => break,
                Some(b',') => {
                    p.at += 1;
                    break;
                }
                Some(b';') => p.at += 1,
                Some(_) => return Err(p.error()),
            }
            p.ows();
            let param = p.token()?;
            p.ows();
            let value = if p.peek() == Some(b'=') {
                p.at += 1;
                p.ows();
                Some(if p.peek() == Some(b'"') {
                    p.quoted_token()?
                } else {
                    p.token()?
                })
            } else {
                None
            };
            params.push((param, value));
        }
        out.push(Extension { name, params });
    }
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn error(&self) -> MalformedExtensions {
        MalformedExtensions { at: self.at }
    }

    fn ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.at += 1;
        }
    }

    fn token(&mut self) -> Result<String, MalformedExtensions> {
        let start = self.at;
        while self.peek().is_some_and(is_tchar) {
            self.at += 1;
        }
        if self.at == start {
            return Err(self.error());
        }
        // Token characters are ASCII.
        Ok(self.s[start..self.at]
            .iter()
            .map(|&b| char::from(b))
            .collect())
    }

    /// A quoted-string whose unescaped content must be a token.
    fn quoted_token(&mut self) -> Result<String, MalformedExtensions> {
        let start = self.at;
        self.at += 1;
        let mut value = String::new();
        loop {
            match self.peek() {
                None => return Err(MalformedExtensions { at: start }),
                Some(b'"') => {
                    self.at += 1;
                    break;
                }
                Some(b'\\') => {
                    self.at += 1;
                    let Some(c) = self.peek() else {
                        return Err(self.error());
                    };
                    if !is_tchar(c) {
                        return Err(self.error());
                    }
                    value.push(char::from(c));
                    self.at += 1;
                }
                Some(c) if is_tchar(c) => {
                    value.push(char::from(c));
                    self.at += 1;
                }
                Some(_) => return Err(self.error()),
            }
        }
        if value.is_empty() {
            return Err(MalformedExtensions { at: start });
        }
        Ok(value)
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The extension token of RFC 7692.
pub const PERMESSAGE_DEFLATE: &str = "permessage-deflate";

/// Picks the first `permessage-deflate` offer in `header` that `policy` can honour exactly.
///
/// `Ok(None)` when there is none: the 101 then carries no `Sec-WebSocket-Extensions` and
/// messages flow uncompressed.
///
/// # Errors
///
/// [`MalformedExtensions`] when the header does not follow RFC 6455 §9.1's grammar.
pub fn negotiate(
    header: &str,
    policy: &DeflatePolicy,
) -> Result<Option<DeflateAgreement>, MalformedExtensions> {
    let extensions = parse_extensions(header)?;
    Ok(extensions
        .iter()
        .filter(|e| e.name.eq_ignore_ascii_case(PERMESSAGE_DEFLATE))
        .find_map(|offer| accept(&offer.params, policy)))
}

/// What one offer asks for, once its parameters are known to be valid.
#[derive(Default)]
struct Offer {
    server_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: offered without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// A window-bits value: a decimal 8..=15 without leading zeros (RFC 7692 §7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// Reads one offer's parameters; `None` when RFC 7692 §5 says to decline it (unknown name,
/// repeated name, invalid value).
fn read_offer(params: &[(String, Option<String>)]) -> Option<Offer> {
    let mut offer = Offer::default();
    let mut seen = [false; 4];
    for (name, value) in params {
        let index = match name.as_str() {
            "server_no_context_takeover" => 0,
            "client_no_context_takeover" => 1,
            "server_max_window_bits" => 2,
            "client_max_window_bits" => 3,
            _ => return None,
        };
        if std::mem::replace(&mut seen[index], true) {
            return None;
        }
        match (index, value) {
            (0, None) => offer.server_no_context_takeover = true,
            // A hint only (RFC 7692 §7.1.1.2): valid, but it binds the client to nothing.
            (1, None) => {}
            (2, Some(v)) => offer.server_max_window_bits = Some(window_bits(v)?),
            (3, None) => offer.client_max_window_bits = Some(None),
            (3, Some(v)) => offer.client_max_window_bits = Some(Some(window_bits(v)?)),
            _ => return None,
        }
    }
    Some(offer)
}

/// The agreement for one offer, or `None` to decline it.
fn accept(params: &[(String, Option<String>)], policy: &DeflatePolicy) -> Option<DeflateAgreement> {
    let offer = read_offer(params)?;
    let server_no_context_takeover =
        offer.server_no_context_takeover || policy.server_no_context_takeover;
    // The client's own `client_no_context_takeover` is a hint only (RFC 7692 §7.1.1.2): we
    // rely on it only when our answer makes it binding.
    let client_no_context_takeover = policy.client_no_context_takeover;
    let ours = policy
        .server_max_window_bits
        .clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
    let server_max_window_bits = match offer.server_max_window_bits {
        // zlib cannot compress with an 8-bit window: honouring 8 is impossible.
        Some(bits) if bits < MIN_WINDOW_BITS => return None,
        Some(bits) => bits.min(ours),
        None => ours,
    };
    let (client_max_window_bits, ask_client) =
        match (offer.client_max_window_bits, policy.client_max_window_bits) {
            // A hint of 8 is declined: we never agree to a window zlib cannot use.
            (Some(Some(bits)), _) if bits < MIN_WINDOW_BITS => return None,
            // We want a limit the client cannot be told about.
            (None, Some(_)) => return None,
            // Not asked: the client may use up to 15 bits whatever its hint said.
            (_, None) => (MAX_WINDOW_BITS, false),
            (Some(hint), Some(wanted)) => {
                let wanted = wanted.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS);
                (hint.map_or(wanted, |h| h.min(wanted)), true)
            }
        };
    let mut response = String::from(PERMESSAGE_DEFLATE);
    if server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    // Required when offered; otherwise said only when it tells the client something.
    if offer.server_max_window_bits.is_some() || server_max_window_bits < MAX_WINDOW_BITS {
        response.push_str(&format!(
            "; server_max_window_bits={server_max_window_bits}"
        ));
    }
    if ask_client {
        response.push_str(&format!(
            "; client_max_window_bits={client_max_window_bits}"
        ));
    }
    Some(DeflateAgreement {
        server_no_context_takeover,
        client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
        response,
    })
}

#[cfg(test)]
mod tests;
