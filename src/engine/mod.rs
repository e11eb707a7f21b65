//! The engine: everything that moves WebSocket bytes, and knows nothing of
//! Lua. Wire format and codec, permessage-deflate, the client handshake and
//! redirect rules, streams, TLS and dialing, the server (listening, HTTP
//! serving, the upgrade checks), one connection's driver, the pub/sub hub
//! with its backends, the HTTP client, worker processes and signals. What
//! happens is reported through traits (`connection::Events`,
//! `server::Requests`, `pubsub::Events`) or returned as plain values; the
//! binding layer (`src/binding`) puts Lua on top of them.

pub mod answer;
pub mod buffers;
pub mod client;
pub mod codec;
pub mod connection;
pub mod deflate;
pub mod dial;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod http_client;
pub mod http_session;
pub mod limits;
pub mod pubsub;
pub mod random;
pub mod redirect;
pub mod registry;
pub mod server;
pub mod signals;
pub mod stream;
pub mod tls;
pub mod trim;
pub mod url_parts;
pub mod workers;
