//! WebSocket framing, kept behind this one module: today it is
//! tokio-tungstenite (masking, fragmentation, UTF-8 and close-code checks,
//! automatic pong and close replies). permessage-deflate, which tungstenite
//! cannot carry, will replace what is behind these names, not their users.

use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;

pub use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
pub use tokio_tungstenite::tungstenite::Message;

use crate::config::Limits;
use crate::error::{Error, Kind};
use crate::stream::Stream;

pub type WsStream = WebSocketStream<Stream>;
pub type Bytes = tokio_tungstenite::tungstenite::Bytes;

fn config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(limits.read_buffer_size)
        .write_buffer_size(64 << 10)
        .max_message_size(Some(limits.max_message_size))
        .max_frame_size(Some(limits.max_frame_size))
}

/// Starts framing on a stream whose HTTP upgrade is done; `leftover` holds
/// bytes read past the request head.
pub async fn server(stream: Stream, leftover: Vec<u8>, limits: &Limits) -> WsStream {
    WebSocketStream::from_partially_read(stream, leftover, Role::Server, Some(config(limits))).await
}

/// Runs the client handshake on a connected stream.
pub async fn client_handshake(
    request: http::Request<()>,
    stream: Stream,
    limits: &Limits,
) -> Result<(WsStream, http::Response<Option<Vec<u8>>>), WsError> {
    tokio_tungstenite::client_async_with_config(request, stream, Some(config(limits))).await
}

pub fn generate_key() -> String {
    tokio_tungstenite::tungstenite::handshake::client::generate_key()
}

/// One data frame as given (a fragment when `fin` is false; opcode 0
/// continues a fragmented message, 1 starts text, 2 starts binary).
pub fn data_frame(opcode: u8, payload: Bytes, fin: bool) -> Option<Message> {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    let data = match opcode {
        0 => Data::Continue,
        1 => Data::Text,
        2 => Data::Binary,
        _ => return None,
    };
    Some(Message::Frame(Frame::message(payload, OpCode::Data(data), fin)))
}

/// A close frame to send; `code` already validated by [`check_close_code`].
pub fn close_message(code: Option<u16>, reason: &str) -> Message {
    Message::Close(code.map(|c| CloseFrame { code: CloseCode::from(c), reason: reason.to_owned().into() }))
}

/// A close code an endpoint may send (RFC 6455 §7.4).
pub fn check_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// The (code, reason) of a received close frame; 1005 when it had none.
pub fn close_details(frame: &Option<CloseFrame>) -> (u16, String) {
    match frame {
        Some(f) => (u16::from(f.code), f.reason.as_str().to_owned()),
        None => (1005, String::new()),
    }
}

/// How a read error ends the connection: what to report, and the close code
/// to send the peer (None when the connection is already gone).
pub fn classify(err: &WsError) -> (Error, Option<u16>) {
    match err {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => {
            (Error::new(Kind::TooBig, err.to_string()), Some(1009))
        }
        WsError::Capacity(_) => (Error::new(Kind::TooBig, err.to_string()), Some(1009)),
        WsError::Utf8(_) => {
            (Error::new(Kind::Protocol, format!("invalid UTF-8 in a text message: {err}")), Some(1007))
        }
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            (Error::new(Kind::Io, "the peer closed the connection without a closing handshake"), None)
        }
        WsError::Protocol(p) => (Error::new(Kind::Protocol, p.to_string()), Some(1002)),
        WsError::Io(e) => (Error::new(Kind::Io, e.to_string()), None),
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            (Error::new(Kind::Closed, "connection closed"), None)
        }
        other => (Error::new(Kind::Protocol, other.to_string()), Some(1002)),
    }
}

/// Reads messages from `bytes` as a server until the framing layer fails,
/// classifying the failure (see `fuzz_api::frames`).
pub fn read_all_for_fuzzing(bytes: &[u8], limits: &Limits) {
    use std::io::Cursor;
    struct ReadOnly(Cursor<Vec<u8>>);
    impl std::io::Read for ReadOnly {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }
    impl std::io::Write for ReadOnly {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let stream = ReadOnly(Cursor::new(bytes.to_vec()));
    let mut ws = tokio_tungstenite::tungstenite::WebSocket::from_raw_socket(
        stream,
        Role::Server,
        Some(config(limits)),
    );
    loop {
        match ws.read() {
            Ok(Message::Close(frame)) => {
                let _ = close_details(&frame);
            }
            Ok(_) => {}
            Err(e) => {
                let _ = classify(&e);
                return;
            }
        }
    }
}
