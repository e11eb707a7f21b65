//! The WebSocket wire format (RFC 6455 §5 and §4): frame headers, masking,
//! close payloads, and the handshake's key and accept values. Pure functions,
//! no I/O; `codec.rs` builds messages out of them.

#[cfg(test)]
use bytes::BufMut;
use sha1::{Digest, Sha1};

pub const CONTINUATION: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// The longest header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER: usize = 14;
/// Control frames carry at most this many payload bytes (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame header as read from the wire, before any checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// The three RSV bits, in the low bits.
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    /// Payload length as sent; a 64-bit length with its top bit set is kept
    /// as is and refused by the caller.
    pub len: u64,
}

impl Header {
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }
}

/// Parses a header at the start of `buf`: the header and its length in
/// bytes, or `None` while more bytes are needed.
pub fn parse_header(buf: &[u8]) -> Option<(Header, usize)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let (len, mut at) = match b1 & 0x7F {
        126 => (u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])), 4),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes), 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if b1 & 0x80 != 0 {
        let key: [u8; 4] = buf.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(key)
    } else {
        None
    };
    let header = Header { fin: b0 & 0x80 != 0, rsv: (b0 >> 4) & 0x7, opcode: b0 & 0x0F, mask, len };
    Some((header, at))
}

/// An encoded frame header, built in place and appended with one copy
/// (byte-wise `BufMut` writes cost ~120 instructions per message).
pub struct HeaderBytes {
    bytes: [u8; MAX_HEADER],
    len: usize,
}

impl HeaderBytes {
    /// The header of a frame of `len` payload bytes; the payload (already
    /// masked when `mask` is given) follows it.
    pub fn new(fin: bool, rsv1: bool, opcode: u8, len: usize, mask: Option<[u8; 4]>) -> HeaderBytes {
        let mut bytes = [0u8; MAX_HEADER];
        bytes[0] = (u8::from(fin) << 7) | (u8::from(rsv1) << 6) | (opcode & 0x0F);
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        let mut at = 2;
        if len < 126 {
            bytes[1] = mask_bit | len as u8;
        } else if let Ok(short) = u16::try_from(len) {
            bytes[1] = mask_bit | 126;
            bytes[2..4].copy_from_slice(&short.to_be_bytes());
            at = 4;
        } else {
            bytes[1] = mask_bit | 127;
            bytes[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            at = 10;
        }
        if let Some(key) = mask {
            bytes[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        HeaderBytes { bytes, len: at }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Appends a frame header; the payload (already masked when `mask` is
/// given) follows it. For tests that build frames.
#[cfg(test)]
pub fn write_header(
    out: &mut impl BufMut,
    fin: bool,
    rsv1: bool,
    opcode: u8,
    len: usize,
    mask: Option<[u8; 4]>,
) {
    out.put_slice(HeaderBytes::new(fin, rsv1, opcode, len, mask).as_bytes());
}

/// XORs `data` with the masking key (§5.3), eight bytes at a time.
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // Each chunk is a multiple of 4 bytes, so the rest starts at key[0].
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i & 3];
    }
}

/// A close code an endpoint may send and receive: the ones RFC 6455 §7.4.1
/// defines for the wire, the IANA registry's 1012 (Service Restart), 1013
/// (Try Again Later) and 1014 (Bad Gateway), and the 3000–4999 range for
/// libraries and applications. 1004–1006 and 1015 never go on the wire;
/// the rest of 0–2999 is unassigned and refused.
pub fn check_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The payload of a close frame: the code (when any) and its reason.
pub fn close_payload(code: Option<u16>, reason: &str) -> Vec<u8> {
    match code {
        Some(c) => {
            let mut p = Vec::with_capacity(2 + reason.len());
            p.extend_from_slice(&c.to_be_bytes());
            p.extend_from_slice(reason.as_bytes());
            p
        }
        None => Vec::new(),
    }
}

/// Why a received close payload is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum BadClose {
    /// One byte: too short for a code.
    Truncated,
    Code(u16),
    Utf8,
}

/// The (code, reason) of a received close frame; 1005 when it had none.
pub fn parse_close(payload: &[u8]) -> Result<(u16, String), BadClose> {
    match payload {
        [] => Ok((1005, String::new())),
        [_] => Err(BadClose::Truncated),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !check_close_code(code) {
                return Err(BadClose::Code(code));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| BadClose::Utf8)?;
            Ok((code, reason.to_owned()))
        }
    }
}

/// The Sec-WebSocket-Accept value for a Sec-WebSocket-Key (§4.2.2).
pub fn derive_accept_key(key: &[u8]) -> String {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    data_encoding::BASE64.encode(&sha.finalize())
}

/// A fresh Sec-WebSocket-Key: 16 random bytes, base64.
pub fn generate_key() -> String {
    let mut nonce = [0u8; 16];
    crate::engine::random::fill(&mut nonce);
    data_encoding::BASE64.encode(&nonce)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn headers_round_trip_at_each_length_form() {
        for len in [0usize, 125, 126, 65535, 65536, 1 << 20] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut out = BytesMut::new();
                write_header(&mut out, true, false, BINARY, len, mask);
                let (h, n) = parse_header(&out).expect("complete header");
                assert_eq!(n, out.len());
                assert_eq!((h.fin, h.rsv, h.opcode, h.mask, h.len), (true, 0, BINARY, mask, len as u64));
                assert!(parse_header(&out[..n - 1]).is_none());
            }
        }
    }

    #[test]
    fn masking_is_its_own_inverse_at_every_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..40 {
            let original: Vec<u8> = (0..len as u8).collect();
            let mut data = original.clone();
            apply_mask(&mut data, key);
            for (i, (m, o)) in data.iter().zip(&original).enumerate() {
                assert_eq!(*m, o ^ key[i % 4]);
            }
            apply_mask(&mut data, key);
            assert_eq!(data, original);
        }
    }

    #[test]
    fn close_payloads() {
        assert_eq!(parse_close(b""), Ok((1005, String::new())));
        assert_eq!(parse_close(b"\x03"), Err(BadClose::Truncated));
        assert_eq!(parse_close(b"\x03\xe8bye"), Ok((1000, "bye".into())));
        assert_eq!(parse_close(b"\x03\xed"), Err(BadClose::Code(1005)));
        assert_eq!(parse_close(b"\x03\xe8\xff"), Err(BadClose::Utf8));
        assert_eq!(close_payload(Some(1001), "x"), b"\x03\xe9x");
    }

    #[test]
    fn close_codes_follow_the_rfc_and_the_iana_registry() {
        let valid = |c: u16| check_close_code(c);
        for code in [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999] {
            assert!(valid(code), "{code} must be accepted");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535] {
            assert!(!valid(code), "{code} must be refused");
        }
    }
}
