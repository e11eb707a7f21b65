//! permessage-deflate (RFC 7692): negotiating it in the handshake, and
//! compressing and inflating whole messages once it is on.
//!
//! The zlib state is made on first use and dropped when a side resets its
//! context, so a connection that negotiated the extension but is idle
//! holds no compression memory.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The name of the extension in Sec-WebSocket-Extensions.
pub const NAME: &str = "permessage-deflate";
/// What every deflate block ends with after a sync flush; RFC 7692 §7.2.1
/// drops it from the wire and the receiver puts it back.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Messages shorter than this are sent as they are: compressing them costs
/// more than it saves.
const MIN_COMPRESS: usize = 64;

/// What was agreed, from this side's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// Our compressor starts every message afresh.
    pub send_no_context_takeover: bool,
    /// The peer's compressor starts every message afresh.
    pub receive_no_context_takeover: bool,
    /// The largest window our compressor may use (9–15; see `Deflater`).
    pub send_max_window_bits: u8,
}

/// The parameters of one offer or answer, checked for RFC 7692's rules.
#[derive(Default, Debug, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

/// An extension's parameters: `(name, value)`, lower-cased names.
type ParamList = Vec<(String, Option<String>)>;

/// Splits a Sec-WebSocket-Extensions value into extensions and their
/// parameters.
fn parse_list(header: &str) -> Vec<(String, ParamList)> {
    header
        .split(',')
        .filter_map(|ext| {
            let mut parts = ext.split(';').map(str::trim);
            let name = parts.next().filter(|n| !n.is_empty())?.to_ascii_lowercase();
            let params = parts
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => {
                        (k.trim().to_ascii_lowercase(), Some(v.trim().trim_matches('"').to_owned()))
                    }
                    None => (p.to_ascii_lowercase(), None),
                })
                .collect();
            Some((name, params))
        })
        .collect()
}

fn window_bits(v: &str) -> Option<u8> {
    // §7.1.2: a decimal integer 8–15 without leading zeros.
    if v.starts_with('0') {
        return None;
    }
    v.parse::<u8>().ok().filter(|b| (8..=15).contains(b))
}

/// Reads one permessage-deflate element's parameters; None when they break
/// the rules (unknown or repeated parameter, bad value).
fn read_params(list: &[(String, Option<String>)], is_offer: bool) -> Option<Params> {
    let mut p = Params::default();
    let mut seen = Vec::new();
    for (name, value) in list {
        if seen.contains(&name.as_str()) {
            return None;
        }
        seen.push(name.as_str());
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) => p.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => p.client_no_context_takeover = true,
            ("server_max_window_bits", Some(v)) => p.server_max_window_bits = Some(window_bits(v)?),
            ("client_max_window_bits", None) if is_offer => p.client_max_window_bits = Some(None),
            ("client_max_window_bits", Some(v)) => p.client_max_window_bits = Some(Some(window_bits(v)?)),
            _ => return None,
        }
    }
    Some(p)
}

/// The server's choice among a client's offers: what it agreed to and the
/// Sec-WebSocket-Extensions value to answer with. None: no acceptable offer.
pub fn accept_offer(header: &str) -> Option<(Agreed, String)> {
    for (name, list) in parse_list(header) {
        if name != NAME {
            continue;
        }
        let Some(p) = read_params(&list, true) else { continue };
        // A 256-byte window is more than zlib can promise for its output.
        let bits = p.server_max_window_bits.unwrap_or(15);
        if bits < 9 {
            continue;
        }
        // Always server_no_context_takeover (§7.1.1.1 lets a server add it):
        // our compressor is dropped after each message instead of keeping
        // ~300 KiB per connection that ever sent a compressed message.
        let mut answer = format!("{NAME}; server_no_context_takeover");
        if p.client_no_context_takeover {
            answer.push_str("; client_no_context_takeover");
        }
        if let Some(b) = p.server_max_window_bits {
            answer.push_str(&format!("; server_max_window_bits={b}"));
        }
        let agreed = Agreed {
            send_no_context_takeover: true,
            receive_no_context_takeover: p.client_no_context_takeover,
            send_max_window_bits: bits,
        };
        return Some((agreed, answer));
    }
    None
}

/// What a client offers.
pub fn offer() -> String {
    format!("{NAME}; client_max_window_bits")
}

/// Whether a client's Sec-WebSocket-Extensions value offers
/// permessage-deflate with valid parameters.
pub fn offers_deflate(header: &str) -> bool {
    parse_list(header).iter().any(|(name, params)| name == NAME && read_params(params, true).is_some())
}

/// A client's reading of the server's answer: what was agreed, or why the
/// answer cannot be accepted.
pub fn read_answer(header: &str) -> Result<Agreed, String> {
    let list = parse_list(header);
    let [(name, params)] = list.as_slice() else {
        return Err(format!("the server answered extensions '{header}', one permessage-deflate expected"));
    };
    if name != NAME {
        return Err(format!("the server chose extension '{name}', which was not offered"));
    }
    let p = read_params(params, false)
        .ok_or_else(|| format!("the server's permessage-deflate parameters are invalid: '{header}'"))?;
    Ok(Agreed {
        send_no_context_takeover: p.client_no_context_takeover,
        receive_no_context_takeover: p.server_no_context_takeover,
        send_max_window_bits: p.client_max_window_bits.flatten().unwrap_or(15),
    })
}

/// Compresses outgoing messages.
pub struct Deflater {
    agreed: Agreed,
    zlib: Option<Box<Compress>>,
}

impl Deflater {
    pub fn new(agreed: Agreed) -> Deflater {
        Deflater { agreed, zlib: None }
    }

    /// The message's compressed payload, or None to send it as it is
    /// (too short to gain, no smaller compressed, or a window zlib cannot
    /// keep within).
    pub fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        if data.len() < MIN_COMPRESS || self.agreed.send_max_window_bits < 9 {
            return None;
        }
        let bits = self.agreed.send_max_window_bits;
        let zlib = self.zlib.get_or_insert_with(|| {
            Box::new(Compress::new_with_window_bits(Compression::fast(), false, bits))
        });
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        let start = zlib.total_in();
        // A sync flush is complete once all input is taken and zlib left
        // room in the output.
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let taken = (zlib.total_in() - start) as usize;
            if zlib.compress_vec(&data[taken..], &mut out, FlushCompress::Sync).is_err() {
                // A fresh compressor refers to nothing the peer has not seen.
                self.zlib = None;
                return None;
            }
            if (zlib.total_in() - start) as usize == data.len() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
        if self.agreed.send_no_context_takeover || out.len() >= data.len() {
            // Also after a message that did not shrink (random bytes grow
            // ~6% at this level): it goes as it is, and the peer never sees
            // what this compressor took in, so it starts afresh, referring
            // to nothing.
            self.zlib = None;
        }
        if out.len() >= data.len() {
            return None;
        }
        Some(out)
    }
}

/// Why an incoming compressed message was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// Inflated past the message size limit.
    TooBig,
    Corrupt(String),
}

/// Inflates incoming compressed messages.
pub struct Inflater {
    agreed: Agreed,
    zlib: Option<Box<Decompress>>,
}

impl Inflater {
    pub fn new(agreed: Agreed) -> Inflater {
        Inflater { agreed, zlib: None }
    }

    /// Appends the inflated message to `out`, at most `limit` bytes.
    pub fn inflate(
        &mut self,
        compressed: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        // Any window up to 15 bits is read with a 15-bit one.
        let zlib = self.zlib.get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, 15)));
        let start = out.len();
        for input in [compressed, &TAIL[..]] {
            let before = zlib.total_in();
            loop {
                if out.capacity() - out.len() < 1024 {
                    out.reserve(out.capacity().clamp(4096, 1 << 20));
                }
                let (used, len) = ((zlib.total_in() - before) as usize, out.len());
                let status = zlib
                    .decompress_vec(&input[used..], out, FlushDecompress::Sync)
                    .map_err(|e| InflateError::Corrupt(e.to_string()))?;
                if out.len() - start > limit {
                    return Err(InflateError::TooBig);
                }
                if status == Status::StreamEnd {
                    // The peer ended its stream; the next message starts a new one.
                    self.zlib = None;
                    return Ok(());
                }
                let all_in = (zlib.total_in() - before) as usize == input.len();
                let stuck = out.len() == len && (zlib.total_in() - before) as usize == used;
                if (all_in && out.len() < out.capacity()) || stuck {
                    break;
                }
            }
        }
        if self.agreed.receive_no_context_takeover {
            self.zlib = None;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agreed() -> Agreed {
        Agreed {
            send_no_context_takeover: false,
            receive_no_context_takeover: false,
            send_max_window_bits: 15,
        }
    }

    #[test]
    fn messages_round_trip_with_and_without_context_takeover() {
        for no_takeover in [false, true] {
            let a = Agreed {
                send_no_context_takeover: no_takeover,
                receive_no_context_takeover: no_takeover,
                ..agreed()
            };
            let (mut d, mut i) = (Deflater::new(a), Inflater::new(a));
            for n in [64usize, 1000, 100_000] {
                let msg: Vec<u8> = (0..n).map(|k| b"abcdefgh"[(k / 3 + k / 100) % 8]).collect();
                let packed = d.compress(&msg).expect("compressed");
                assert!(!packed.ends_with(&TAIL));
                let mut out = Vec::new();
                i.inflate(&packed, &mut out, 1 << 20).unwrap();
                assert_eq!(out, msg);
            }
        }
    }

    #[test]
    fn a_message_that_would_grow_goes_uncompressed_and_the_next_still_inflates() {
        let a = agreed(); // context takeover: the peer keeps its window
        let (mut d, mut i) = (Deflater::new(a), Inflater::new(a));
        let text: Vec<u8> = b"hello hello hello hello ".repeat(20);
        let mut out = Vec::new();
        i.inflate(&d.compress(&text).expect("compressed"), &mut out, 1 << 20).unwrap();
        // Bytes no compressor shrinks (an xorshift sequence).
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..4000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(d.compress(&noise).is_none());
        // The peer never saw the noise: what follows refers to nothing of it.
        out.clear();
        i.inflate(&d.compress(&text).expect("compressed"), &mut out, 1 << 20).unwrap();
        assert_eq!(out, text);
    }

    #[test]
    fn short_messages_go_uncompressed() {
        assert!(Deflater::new(agreed()).compress(b"hi").is_none());
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 1 << 20];
        let packed = Deflater::new(agreed()).compress(&zeros).unwrap();
        let mut out = Vec::new();
        assert_eq!(Inflater::new(agreed()).inflate(&packed, &mut out, 1000), Err(InflateError::TooBig));
        assert!(out.len() < 1 << 16, "inflated {} bytes", out.len());
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut out = Vec::new();
        assert!(matches!(
            Inflater::new(agreed()).inflate(&[0xff; 10], &mut out, 1000),
            Err(InflateError::Corrupt(_))
        ));
    }

    #[test]
    fn offers_are_checked_and_answered() {
        let (a, answer) = accept_offer("permessage-deflate; client_max_window_bits").unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
        assert_eq!(a.send_max_window_bits, 15);
        let (a, answer) =
            accept_offer("x-foo, permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
                .unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover; server_max_window_bits=10");
        assert!(a.send_no_context_takeover);
        assert_eq!(a.send_max_window_bits, 10);
        // Bad or unsupported offers are skipped for the next one.
        assert!(accept_offer("permessage-deflate; server_max_window_bits=16").is_none());
        assert!(accept_offer("permessage-deflate; server_max_window_bits=010").is_none());
        assert!(accept_offer("permessage-deflate; foo").is_none());
        assert!(accept_offer("permessage-deflate; client_no_context_takeover; client_no_context_takeover")
            .is_none());
        let (_, answer) =
            accept_offer("permessage-deflate; server_max_window_bits=8, permessage-deflate").unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover");
    }

    #[test]
    fn answers_are_read() {
        let a =
            read_answer("permessage-deflate; client_max_window_bits=9; server_no_context_takeover").unwrap();
        assert_eq!((a.send_max_window_bits, a.receive_no_context_takeover), (9, true));
        assert!(read_answer("x-other").is_err());
        assert!(read_answer("permessage-deflate; client_max_window_bits").is_err());
        assert!(read_answer("permessage-deflate, permessage-deflate").is_err());
    }
}
