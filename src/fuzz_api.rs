//! Entry points for `make fuzz` (fuzz/): every piece of turbo_ws's own code
//! that parses bytes or strings from the network or from Lua, callable
//! without a Lua state. Not part of the Lua API.

use crate::client::Target;
use crate::config::Limits;

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
    let _ = crate::server::check_handshake(&method, http::Version::HTTP_11, &map);
}

/// URL handling of `connect`, and a redirect's Location resolved against it.
pub fn url(raw: &str, location: &str) {
    if let Ok(target) = Target::parse(raw) {
        let _ = target.host_header();
        let _ = target.follow(location);
    }
}

/// Incoming bytes after a handshake, through the framing layer with our
/// configuration, as a server; every error is classified as the connection
/// task would.
pub fn frames(bytes: &[u8]) {
    crate::frame::read_all_for_fuzzing(
        bytes,
        &Limits { max_message_size: 1 << 16, max_frame_size: 1 << 14, ..Limits::default() },
    );
}

/// A close code and reason from Lua.
pub fn close_args(code: u16, reason: &str) {
    if crate::frame::check_close_code(code) {
        let _ = crate::frame::close_message(Some(code), reason);
    }
}
