//! Every failure the core reports to Lua, as one enum of named kinds, so that
//! each face can map a kind to its own error codes and messages.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The URL does not parse, or has no host.
    BadUrl,
    /// The URL's scheme is not ws or wss.
    BadScheme,
    /// The host name did not resolve.
    Dns,
    /// The peer refused the TCP connection.
    Refused,
    /// TCP connect did not finish within the connect timeout.
    ConnectTimeout,
    /// TCP connect failed for another reason (unreachable, ...).
    Connect,
    /// TLS configuration, handshake or certificate verification failed.
    Tls,
    /// The whole handshake did not finish within its timeout.
    HandshakeTimeout,
    /// An HTTP request (with its redirects and body) did not finish within its timeout.
    Timeout,
    /// The server answered the upgrade with a status other than 101.
    BadStatus,
    /// The server closed the connection without answering the upgrade.
    NoResponse,
    /// The server's answer is not HTTP.
    BadResponse,
    /// The 101 response is not a valid WebSocket handshake.
    BadHandshake,
    /// Too many redirects, or a redirect loop.
    Redirects,
    /// A redirect would leave TLS (wss/https to ws/http): never followed.
    InsecureRedirect,
    /// The peer broke RFC 6455.
    Protocol,
    /// A message or frame exceeded a configured limit.
    TooBig,
    /// Reading or writing the socket failed.
    Io,
    /// The connection is closed.
    Closed,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::BadUrl => "bad_url",
            Kind::BadScheme => "bad_scheme",
            Kind::Dns => "dns",
            Kind::Refused => "refused",
            Kind::ConnectTimeout => "connect_timeout",
            Kind::Connect => "connect",
            Kind::Tls => "tls",
            Kind::HandshakeTimeout => "handshake_timeout",
            Kind::Timeout => "timeout",
            Kind::BadStatus => "bad_status",
            Kind::NoResponse => "no_response",
            Kind::BadResponse => "bad_response",
            Kind::BadHandshake => "bad_handshake",
            Kind::Redirects => "redirects",
            Kind::InsecureRedirect => "insecure_redirect",
            Kind::Protocol => "protocol",
            Kind::TooBig => "too_big",
            Kind::Io => "io",
            Kind::Closed => "closed",
        }
    }
}

/// A failure: its kind, a message for people and, where a program may
/// want to tell cases apart, a stable machine-readable detail.
#[derive(Debug, Clone)]
pub struct Error {
    pub kind: Kind,
    pub message: String,
    /// For `BadHandshake`: which check failed (`handshake::Check::name`).
    pub detail: Option<&'static str>,
}

impl Error {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), detail: None }
    }

    pub fn with_detail(mut self, detail: &'static str) -> Self {
        self.detail = Some(detail);
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

impl std::error::Error for Error {}
