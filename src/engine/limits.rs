//! The limits of one connection, with their documented defaults
//! (docs/core.md, "Limits"). Read from Lua options by `binding::opts`.

use std::time::Duration;

/// Limits of one connection. Defaults are documented in docs/core.md.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest incoming message (after reassembly); larger closes with 1009.
    pub max_message_size: usize,
    /// Largest incoming frame payload; larger closes with 1009. By default
    /// as large as a message: browsers, Turbo and turbo_ws send each
    /// message as one frame, so a smaller frame limit refused messages
    /// the message limit allowed.
    pub max_frame_size: usize,
    /// Bytes queued for sending above which `send` refuses more (a message
    /// into an empty queue is always taken, whatever its size).
    pub max_buffered: usize,
    /// Close with 1008 a connection whose peer does not read, the moment a
    /// send is refused for `max_buffered`, instead of only refusing it.
    pub close_slow_readers: bool,
    /// Bytes asked of the socket per read (more while a large frame is
    /// pending); held only while input is arriving.
    pub read_buffer_size: usize,
    /// How long `close()` waits for the peer's close frame / TCP close.
    pub close_timeout: Duration,
    /// Server: time to receive a complete request head (and TLS handshake).
    pub handshake_timeout: Duration,
    /// Server: largest plain-HTTP request body accepted.
    pub max_body_size: usize,
    /// Server: largest request head in bytes.
    pub max_header_size: usize,
    /// Server: most request headers.
    pub max_headers: usize,
    /// Send a ping after this long without hearing from the peer.
    pub ping_interval: Option<Duration>,
    /// Close with 1001 after this long without hearing from the peer.
    pub idle_timeout: Option<Duration>,
    /// Offer (client) or accept (server) permessage-deflate.
    pub permessage_deflate: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 64 << 20,
            max_frame_size: 64 << 20,
            // Per connection, so a thousand peers that never read cost 1 GiB
            // at most, not 64; see docs/core.md.
            max_buffered: 1 << 20,
            close_slow_readers: false,
            read_buffer_size: 64 << 10,
            close_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            max_body_size: 8 << 20,
            max_header_size: 64 << 10,
            max_headers: 100,
            ping_interval: None,
            idle_timeout: None,
            permessage_deflate: true,
        }
    }
}
