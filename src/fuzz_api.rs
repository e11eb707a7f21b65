//! Entry points for `make fuzz` (fuzz/): every piece of turbo_ws's own code
//! that parses bytes or strings from the network or from Lua, callable
//! without a Lua state. Not part of the Lua API.

use crate::engine::dial::{Family, Target};
use crate::engine::limits::Limits;

/// The opening-handshake checks, on headers made from arbitrary bytes.
pub fn handshake(method: &[u8], headers: &[(&[u8], &[u8])]) {
    let Ok(method) = http::Method::from_bytes(method) else { return };
    let mut map = http::HeaderMap::new();
    for (name, value) in headers {
        if let (Ok(n), Ok(v)) =
            (http::header::HeaderName::from_bytes(name), http::HeaderValue::from_bytes(value))
        {
            map.append(n, v);
        }
    }
    let _ = crate::engine::server::check_handshake(&method, http::Version::HTTP_11, &map);
}

/// URL handling of `connect` and `http_request`, and a redirect's Location
/// resolved against it; the faces' `split_url`.
pub fn url(raw: &str, location: &str) {
    let _ = crate::engine::url_parts::split(raw.as_bytes());
    for family in [Family::WebSocket, Family::Http] {
        if let Ok(target) = Target::parse(raw, family) {
            let _ = target.host_header();
            let _ = target.follow(&mut crate::engine::redirect::Trail::new(&target.url), location);
        }
    }
}

/// Incoming bytes after a handshake, through the frame reader with our
/// configuration, as a server that agreed to permessage-deflate, until it needs more input or refuses it.
pub fn frames(bytes: &[u8]) {
    use crate::engine::codec::{Reader, Role, Step};
    let limits = Limits { max_message_size: 1 << 16, max_frame_size: 1 << 14, ..Limits::default() };
    let mut input = bytes.to_vec();
    // With permessage-deflate agreed, so compressed messages are inflated too.
    let agreed = crate::engine::deflate::Agreed {
        send_no_context_takeover: false,
        receive_no_context_takeover: false,
        send_max_window_bits: 15,
    };
    let inflater = Some(crate::engine::deflate::Inflater::new(agreed));
    let mut reader = Reader::new(Role::Server, limits.max_frame_size, limits.max_message_size, inflater);
    let mut at = 0;
    loop {
        match reader.next(&mut input[at..]) {
            Ok(Step::Event(_, used)) | Ok(Step::Fragment(used)) => {
                at += used;
                reader.delivered();
            }
            Ok(Step::Need(_)) | Err(_) => return,
        }
    }
}

/// A close code and reason from Lua, and the frame payload made of them.
pub fn close_args(code: u16, reason: &str) {
    if crate::engine::frame::check_close_code(code) {
        let payload = crate::engine::frame::close_payload(Some(code), reason);
        let _ = crate::engine::frame::parse_close(&payload);
    }
}
