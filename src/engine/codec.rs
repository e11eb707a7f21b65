//! Messages over frames (RFC 6455 §5–§8): the `Reader` turns received bytes
//! into messages and control frames, enforcing every rule a peer can break;
//! the `Outbox` encodes what Lua sends into the bytes to write.
//!
//! The reader works in place on the connection's input buffer: a message
//! that arrives in one frame is unmasked where it lies and handed out as a
//! slice, so the only copy after the socket read is the Lua string.

use std::io::IoSlice;
use std::rc::Rc;

use bytes::{Buf, BytesMut};

use crate::engine::deflate::{Deflater, InflateError, Inflater};
use crate::engine::error::Kind;
use crate::engine::frame::{self, BadClose, Header};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

/// What a connection reads.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Message { data: &'a [u8], binary: bool },
    Ping(&'a [u8]),
    Pong(&'a [u8]),
    Close { code: u16, reason: String },
}

/// One step of the reader over the buffered input.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// An event, and how many input bytes it used.
    Event(Event<'a>, usize),
    /// A fragment was taken into the message being assembled.
    Fragment(usize),
    /// The input must hold at least this many bytes for the next step.
    Need(usize),
}

/// A rule the peer broke: the close code to answer with, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    pub code: u16,
    pub kind: Kind,
    pub message: String,
}

/// The RSV1 bit, in `Header::rsv`.
const RSV1: u8 = 0x4;

fn protocol(message: impl Into<String>) -> Violation {
    Violation { code: 1002, kind: Kind::Protocol, message: message.into() }
}

/// A text message must be valid UTF-8 (§8.1).
fn check_text(data: &[u8], binary: bool) -> Result<(), Violation> {
    if binary || std::str::from_utf8(data).is_ok() {
        Ok(())
    } else {
        Err(bad_utf8("a text message"))
    }
}

/// 1007: `what` (a text message, a close reason) is not UTF-8.
fn bad_utf8(what: &str) -> Violation {
    Violation { code: 1007, kind: Kind::Protocol, message: format!("invalid UTF-8 in {what}") }
}

/// A fragmented message being assembled.
struct Partial {
    binary: bool,
    /// permessage-deflate: `data` is compressed, checked once inflated.
    compressed: bool,
    data: Vec<u8>,
    /// For text, the prefix of `data` known to be valid UTF-8.
    checked: usize,
}

impl Partial {
    /// Checks the text added since the last call; a character split
    /// across fragments may stay incomplete until the final one.
    fn check_utf8(&mut self, fin: bool) -> Result<(), Violation> {
        if self.binary || self.compressed {
            return Ok(());
        }
        match std::str::from_utf8(&self.data[self.checked..]) {
            Ok(_) => self.checked = self.data.len(),
            Err(e) if e.error_len().is_none() && !fin => self.checked += e.valid_up_to(),
            Err(_) => return Err(bad_utf8("a text message")),
        }
        Ok(())
    }
}

/// Reads frames as one side of a connection.
pub struct Reader {
    role: Role,
    max_frame: usize,
    max_message: usize,
    partial: Option<Partial>,
    /// The last assembled message, kept for its capacity.
    assembled: Vec<u8>,
    /// Set when permessage-deflate was agreed.
    inflater: Option<Inflater>,
}

impl Reader {
    pub fn new(role: Role, max_frame: usize, max_message: usize, inflater: Option<Inflater>) -> Reader {
        Reader { role, max_frame, max_message, partial: None, assembled: Vec::new(), inflater }
    }

    /// Takes the next frame from the start of `input`, unmasking it in place.
    pub fn next<'a>(&'a mut self, input: &'a mut [u8]) -> Result<Step<'a>, Violation> {
        let Some((header, header_len)) = frame::parse_header(input) else {
            return Ok(Step::Need(frame_start_len(input)));
        };
        self.check(&header)?;
        // check() bounded the length by max_frame, a usize.
        let total = header_len + header.len as usize;
        if input.len() < total {
            return Ok(Step::Need(total));
        }
        let payload = &mut input[header_len..total];
        if let Some(key) = header.mask {
            frame::apply_mask(payload, key);
        }
        let event = match header.opcode {
            frame::PING => Event::Ping(payload),
            frame::PONG => Event::Pong(payload),
            frame::CLOSE => {
                let (code, reason) = frame::parse_close(payload).map_err(|e| match e {
                    BadClose::Truncated => protocol("a close frame with a one-byte payload"),
                    BadClose::Code(c) => protocol(format!("invalid close code {c}")),
                    BadClose::Utf8 => bad_utf8("a close reason"),
                })?;
                Event::Close { code, reason }
            }
            opcode if opcode != frame::CONTINUATION && header.fin => {
                let binary = opcode == frame::BINARY;
                if header.rsv & RSV1 != 0 {
                    let data = self.inflate_message(payload, binary)?;
                    return Ok(Step::Event(Event::Message { data, binary }, total));
                }
                check_text(payload, binary)?;
                Event::Message { data: payload, binary }
            }
            opcode => {
                let mut partial = self.partial.take().unwrap_or_else(|| Partial {
                    binary: opcode == frame::BINARY,
                    compressed: header.rsv & RSV1 != 0,
                    data: std::mem::take(&mut self.assembled),
                    checked: 0,
                });
                partial.data.extend_from_slice(payload);
                partial.check_utf8(header.fin)?;
                if !header.fin {
                    self.partial = Some(partial);
                    return Ok(Step::Fragment(total));
                }
                let data = if partial.compressed {
                    self.inflate_message(&partial.data, partial.binary)?
                } else {
                    self.assembled = partial.data;
                    &self.assembled
                };
                return Ok(Step::Event(Event::Message { data, binary: partial.binary }, total));
            }
        };
        Ok(Step::Event(event, total))
    }

    /// Inflates a compressed message into the assembly buffer, checking
    /// text once it is whole.
    fn inflate_message(&mut self, compressed: &[u8], binary: bool) -> Result<&[u8], Violation> {
        self.assembled.clear();
        let Some(inflater) = self.inflater.as_mut() else {
            return Err(protocol("a compressed message without permessage-deflate"));
        };
        inflater.inflate(compressed, &mut self.assembled, self.max_message).map_err(|e| match e {
            InflateError::TooBig => {
                too_big(format!("a message inflating past max_message_size = {}", self.max_message))
            }
            InflateError::Corrupt(why) => Violation {
                code: 1007,
                kind: Kind::Protocol,
                message: format!("a compressed message that does not inflate: {why}"),
            },
        })?;
        check_text(&self.assembled, binary)?;
        Ok(&self.assembled)
    }

    /// Drops what an assembled message left behind once it was delivered.
    pub fn delivered(&mut self) {
        self.assembled.clear();
        if self.assembled.capacity() > 64 << 10 {
            self.assembled = Vec::new();
        }
    }

    /// The header rules of §5.2–§5.5 for this side, before any payload.
    fn check(&self, h: &Header) -> Result<(), Violation> {
        // RSV1 marks the first frame of a compressed message (RFC 7692 §6).
        let starts_message = matches!(h.opcode, frame::TEXT | frame::BINARY);
        let rsv_allowed = if self.inflater.is_some() && starts_message { RSV1 } else { 0 };
        if h.rsv & !rsv_allowed != 0 {
            return Err(protocol("reserved bits set without a negotiated extension"));
        }
        if !matches!(h.opcode, 0..=2 | 8..=10) {
            return Err(protocol(format!("reserved opcode {}", h.opcode)));
        }
        match (self.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(protocol("an unmasked frame from the client")),
            (Role::Client, true) => return Err(protocol("a masked frame from the server")),
            _ => {}
        }
        if h.is_control() {
            if !h.fin {
                return Err(protocol("a fragmented control frame"));
            }
            if h.len > frame::MAX_CONTROL_PAYLOAD as u64 {
                return Err(protocol(format!("a control frame of {} bytes (at most 125 allowed)", h.len)));
            }
            return Ok(());
        }
        match (h.opcode, &self.partial) {
            (frame::CONTINUATION, None) => {
                return Err(protocol("a continuation frame with no message to continue"))
            }
            (frame::TEXT | frame::BINARY, Some(_)) => {
                return Err(protocol("a new message before the fragmented one was finished"))
            }
            _ => {}
        }
        if h.len >> 63 != 0 {
            return Err(protocol("a frame length with its top bit set"));
        }
        if h.len > self.max_frame as u64 {
            return Err(too_big(format!("a frame of {} bytes (max_frame_size = {})", h.len, self.max_frame)));
        }
        let so_far = self.partial.as_ref().map_or(0, |p| p.data.len());
        // max_message_size counts a compressed message once inflated (the
        // inflater stops it there); its wire bytes may be a little more
        // when they did not compress, so those are bounded with room.
        let compressed = match &self.partial {
            Some(p) => p.compressed,
            None => h.rsv & RSV1 != 0,
        };
        let wire_limit = if compressed {
            (self.max_message as u64).saturating_add(self.max_message as u64 / 8 + 1024)
        } else {
            self.max_message as u64
        };
        if so_far as u64 + h.len > wire_limit {
            // Its size so far: more fragments may follow.
            let size = if h.fin { "" } else { "at least " };
            return Err(too_big(format!(
                "a message of {size}{} bytes (max_message_size = {})",
                so_far as u64 + h.len,
                self.max_message
            )));
        }
        Ok(())
    }
}

fn too_big(message: String) -> Violation {
    Violation { code: 1009, kind: Kind::TooBig, message }
}

/// How many bytes the header starting `input` needs, from what is known.
fn frame_start_len(input: &[u8]) -> usize {
    let Some(&b1) = input.get(1) else { return 2 };
    let len_bytes = match b1 & 0x7F {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + len_bytes + if b1 & 0x80 != 0 { 4 } else { 0 }
}

/// A socket a large frame can be written to at once, past the outbox.
pub trait DirectWrite {
    /// Writes what the socket takes now without waiting; 0 when it takes
    /// nothing or fails (the connection's own write then finds out why).
    fn try_write(&self, bufs: &[IoSlice<'_>]) -> usize;
}

/// Frames with at least this much payload go straight to the socket when
/// nothing is queued before them: copying them into the outbox would cost
/// more than the system call that batching saves.
pub const DIRECT_MIN: usize = 8 << 10;

/// Encoded frames waiting for the socket.
pub struct Outbox {
    role: Role,
    /// Set when permessage-deflate was agreed.
    deflater: Option<Deflater>,
    /// Where large frames are written without a copy, when the stream allows it.
    direct: Option<Rc<dyn DirectWrite>>,
    buf: BytesMut,
    /// Payload bytes (before compression) put in since the buffer was last
    /// empty, and the wire bytes they became.
    payload: usize,
    wire: usize,
}

impl Outbox {
    pub fn new(role: Role, deflater: Option<Deflater>) -> Outbox {
        Outbox { role, deflater, direct: None, buf: BytesMut::new(), payload: 0, wire: 0 }
    }

    /// Lets large frames be written to `socket` directly (see `DIRECT_MIN`).
    pub fn write_directly_to(&mut self, socket: Option<Rc<dyn DirectWrite>>) {
        self.direct = socket;
    }

    /// Appends a whole message as one frame, compressed when
    /// permessage-deflate is on and it pays.
    pub fn push_message(&mut self, opcode: u8, payload: &[u8]) {
        match self.deflater.as_mut().and_then(|d| d.compress(payload)) {
            Some(packed) => self.push_frame(opcode, true, true, &packed, payload.len()),
            None => self.push(opcode, true, payload),
        }
    }

    /// Appends one uncompressed frame.
    pub fn push(&mut self, opcode: u8, fin: bool, payload: &[u8]) {
        self.push_frame(opcode, fin, false, payload, payload.len());
    }

    /// Appends one frame carrying `original` bytes of Lua's payload; a
    /// client masks it.
    fn push_frame(&mut self, opcode: u8, fin: bool, rsv1: bool, payload: &[u8], original: usize) {
        let mask = match self.role {
            Role::Client => Some(crate::engine::random::mask_key()),
            Role::Server => None,
        };
        let head = frame::HeaderBytes::new(fin, rsv1, opcode, payload.len(), mask);
        let head = head.as_bytes();
        if mask.is_none() && self.buf.is_empty() && payload.len() >= DIRECT_MIN {
            if let Some(direct) = &self.direct {
                let head_len = head.len();
                let written = direct.try_write(&[IoSlice::new(head), IoSlice::new(payload)]);
                if written < head_len + payload.len() {
                    self.queue_unwritten(head, payload, written, original);
                }
                return;
            }
        }
        let room = frame::MAX_HEADER + payload.len();
        if self.buf.capacity() == 0 {
            self.buf = crate::engine::buffers::take(room);
        } else {
            self.buf.reserve(room);
        }
        let before = self.buf.len();
        self.buf.extend_from_slice(head);
        let start = self.buf.len();
        self.buf.extend_from_slice(payload);
        if let Some(key) = mask {
            frame::apply_mask(&mut self.buf[start..], key);
        }
        self.payload += original;
        self.wire += self.buf.len() - before;
    }

    /// Queues what a direct write left of a frame (into an empty outbox).
    fn queue_unwritten(&mut self, head: &[u8], payload: &[u8], written: usize, original: usize) {
        let (head_rest, payload_rest) = match written.checked_sub(head.len()) {
            None => (&head[written..], payload),
            Some(past_head) => (&head[..0], &payload[past_head..]),
        };
        self.buf = crate::engine::buffers::take(head_rest.len() + payload_rest.len());
        self.buf.extend_from_slice(head_rest);
        self.buf.extend_from_slice(payload_rest);
        // As after a partial write: `queued` is in proportion to what is left.
        self.payload = original;
        self.wire = head.len() + payload.len();
    }

    /// Payload bytes, as Lua gave them, not yet handed to the socket.
    pub fn queued(&self) -> usize {
        // Exact until a write takes part of the buffer, then in proportion.
        if self.buf.len() == self.wire {
            return self.payload;
        }
        (self.payload as u128 * self.buf.len() as u128 / self.wire.max(1) as u128) as usize
    }

    /// Encoded bytes waiting, headers and compression included.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The bytes to write next.
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// `n` bytes were written. An empty buffer goes back to the pool, so an
    /// idle connection holds none.
    pub fn written(&mut self, n: usize) {
        self.buf.advance(n.min(self.buf.len()));
        if self.buf.is_empty() {
            crate::engine::buffers::give_back(std::mem::take(&mut self.buf));
            self.payload = 0;
            self.wire = 0;
        }
    }

    /// Throws away what was not written; returns its payload size.
    pub fn discard(&mut self) -> usize {
        let lost = self.queued();
        self.written(self.buf.len());
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [9, 8, 7, 6];

    fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        frame::write_header(&mut out, b0 & 0x80 != 0, b0 & 0x40 != 0, b0 & 0x0F, payload.len(), Some(MASK));
        let start = out.len();
        out.extend_from_slice(payload);
        frame::apply_mask(&mut out[start..], MASK);
        out.to_vec()
    }

    fn server() -> Reader {
        Reader::new(Role::Server, 1 << 16, 1 << 20, None)
    }

    #[test]
    fn a_compressed_message_counts_inflated_against_max_message_size() {
        let agreed = crate::engine::deflate::Agreed {
            send_no_context_takeover: true,
            receive_no_context_takeover: true,
            send_max_window_bits: 15,
        };
        // 990 bytes in stored deflate blocks (what a compressor sends for
        // bytes it cannot shrink): 996 on the wire, over a limit of 992.
        let data: Vec<u8> = (0..990u32).map(|k| (k.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
        let mut z = flate2::Compress::new(flate2::Compression::none(), false);
        let mut packed = Vec::with_capacity(2048);
        z.compress_vec(&data, &mut packed, flate2::FlushCompress::Sync).unwrap();
        packed.truncate(packed.len() - 4); // the 00 00 ff ff tail
        assert!(packed.len() > 992);
        let mut r =
            Reader::new(Role::Server, 1 << 16, 992, Some(crate::engine::deflate::Inflater::new(agreed)));
        let mut input = client_frame(0xC2, &packed);
        match r.next(&mut input).unwrap() {
            Step::Event(Event::Message { data: got, binary: true }, _) => assert_eq!(got, &data[..]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_whole_message_is_unmasked_in_place() {
        let mut input = client_frame(0x81, b"hello");
        let mut r = server();
        let step = r.next(&mut input).unwrap();
        assert_eq!(step, Step::Event(Event::Message { data: b"hello", binary: false }, 11));
    }

    #[test]
    fn partial_input_says_how_much_is_needed() {
        let input = client_frame(0x82, &[0u8; 300]);
        let mut r = server();
        assert_eq!(r.next(&mut input[..1].to_vec()).unwrap(), Step::Need(2));
        assert_eq!(r.next(&mut input[..3].to_vec()).unwrap(), Step::Need(8));
        assert_eq!(r.next(&mut input[..100].to_vec()).unwrap(), Step::Need(308));
    }

    #[test]
    fn fragments_are_assembled_and_utf8_checked_across_them() {
        let euro = "€".as_bytes();
        let mut r = server();
        let mut first = client_frame(0x01, &euro[..1]);
        assert!(matches!(r.next(&mut first).unwrap(), Step::Fragment(_)));
        let mut last = client_frame(0x80, &euro[1..]);
        match r.next(&mut last).unwrap() {
            Step::Event(Event::Message { data, binary: false }, _) => assert_eq!(data, euro),
            other => panic!("{other:?}"),
        }
        r.delivered();
        let mut bad = client_frame(0x01, b"\xff");
        assert_eq!(r.next(&mut bad).unwrap_err().code, 1007);
    }

    #[test]
    fn broken_rules_get_their_close_codes() {
        let cases: [(Vec<u8>, u16); 7] = [
            (client_frame(0xC1, b"x"), 1002),        // RSV1
            (client_frame(0x83, b"x"), 1002),        // reserved opcode
            (client_frame(0x80, b"x"), 1002),        // continuation of nothing
            (client_frame(0x09, b""), 1002),         // fragmented ping
            (client_frame(0x89, &[0; 126]), 1002),   // long ping
            (client_frame(0x88, b"\x03\xed"), 1002), // close code 1005
            (client_frame(0x81, b"\xc3\x28"), 1007),
        ];
        for (mut input, code) in cases {
            assert_eq!(server().next(&mut input).unwrap_err().code, code);
        }
        let mut unmasked = vec![0x81, 0x01, b'x'];
        assert_eq!(server().next(&mut unmasked).unwrap_err().code, 1002);
        let mut big = client_frame(0x82, &[0; 10]);
        assert_eq!(Reader::new(Role::Server, 5, 100, None).next(&mut big).unwrap_err().code, 1009);
    }

    #[test]
    fn invalid_utf8_is_named_where_it_was_found() {
        let mut text = client_frame(0x81, b"\xc3\x28");
        let mut close = client_frame(0x88, b"\x03\xe8\xff");
        let text = server().next(&mut text).unwrap_err();
        let close = server().next(&mut close).unwrap_err();
        assert_eq!((text.code, text.message.as_str()), (1007, "invalid UTF-8 in a text message"));
        assert_eq!((close.code, close.message.as_str()), (1007, "invalid UTF-8 in a close reason"));
    }

    #[test]
    fn a_too_long_frame_is_refused_from_its_header() {
        let mut head = vec![0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0];
        head.extend_from_slice(&MASK);
        assert_eq!(server().next(&mut head).unwrap_err().code, 1009);
    }

    #[test]
    fn the_outbox_counts_payload_and_frees_memory_when_written() {
        let mut out = Outbox::new(Role::Server, None);
        out.push(frame::TEXT, true, b"hello");
        assert_eq!(out.bytes(), b"\x81\x05hello");
        assert_eq!(out.queued(), 5);
        out.written(3);
        assert_eq!(out.queued(), 2); // 4 of 7 wire bytes left: 5 * 4 / 7
        out.written(4);
        assert!(out.is_empty());
        assert_eq!(out.queued(), 0);
        let mut client = Outbox::new(Role::Client, None);
        client.push(frame::BINARY, true, b"abc");
        let (h, n) = frame::parse_header(client.bytes()).unwrap();
        let mut payload = client.bytes()[n..].to_vec();
        frame::apply_mask(&mut payload, h.mask.unwrap());
        assert_eq!(payload, b"abc");
    }

    /// A socket that takes at most `room` bytes per write, and the bytes it took.
    struct Socket {
        room: std::cell::Cell<usize>,
        got: std::cell::RefCell<Vec<u8>>,
    }

    impl DirectWrite for Socket {
        fn try_write(&self, bufs: &[IoSlice<'_>]) -> usize {
            let mut got = self.got.borrow_mut();
            let before = got.len();
            for b in bufs {
                let take = b.len().min(self.room.get() - (got.len() - before));
                got.extend_from_slice(&b[..take]);
            }
            got.len() - before
        }
    }

    fn direct_outbox(room: usize) -> (Outbox, Rc<Socket>) {
        let socket = Rc::new(Socket { room: room.into(), got: Default::default() });
        let mut out = Outbox::new(Role::Server, None);
        out.write_directly_to(Some(socket.clone()));
        (out, socket)
    }

    fn frame_of(payload: &[u8]) -> Vec<u8> {
        let mut expected = BytesMut::new();
        frame::write_header(&mut expected, true, false, frame::BINARY, payload.len(), None);
        expected.extend_from_slice(payload);
        expected.to_vec()
    }

    #[test]
    fn a_large_frame_into_an_empty_outbox_goes_to_the_socket_uncopied() {
        let payload = vec![7u8; DIRECT_MIN];
        let (mut out, socket) = direct_outbox(usize::MAX);
        out.push_message(frame::BINARY, &payload);
        assert!(out.is_empty());
        assert_eq!(*socket.got.borrow(), frame_of(&payload));
        // Small frames are batched in the outbox as before.
        out.push(frame::TEXT, true, b"hi");
        assert_eq!(out.bytes(), b"\x81\x02hi");
    }

    #[test]
    fn what_the_socket_does_not_take_is_queued_in_order() {
        let payload: Vec<u8> = (0..DIRECT_MIN + 100).map(|i| i as u8).collect();
        let whole = frame_of(&payload);
        for room in [0, 1, 3, 4, 5000, whole.len() - 1] {
            let (mut out, socket) = direct_outbox(room);
            out.push_message(frame::BINARY, &payload);
            let mut wire = socket.got.borrow().clone();
            assert_eq!(wire.len(), room);
            assert_eq!(out.len(), whole.len() - room);
            // Later frames queue behind the rest, even large ones.
            out.push_message(frame::BINARY, &payload);
            wire.extend_from_slice(out.bytes());
            assert_eq!(wire, [whole.clone(), whole.clone()].concat(), "room {room}");
            assert!(out.queued() <= 2 * payload.len());
        }
    }

    #[test]
    fn a_client_masks_so_it_never_writes_directly() {
        let socket = Rc::new(Socket { room: usize::MAX.into(), got: Default::default() });
        let mut out = Outbox::new(Role::Client, None);
        out.write_directly_to(Some(socket.clone()));
        out.push_message(frame::BINARY, &vec![1u8; DIRECT_MIN]);
        assert!(socket.got.borrow().is_empty());
        assert!(out.len() > DIRECT_MIN);
    }
}
