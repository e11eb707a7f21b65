//! `core.connect` over a Unix domain socket (the `unix_socket` option, for
//! coro-websocket's `path`) against a raw server written here, and the
//! response's header names as that server spelled them.

mod support;

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use support::*;

/// A fresh socket path in a directory of its own (removed on drop).
struct SocketDir(PathBuf);

impl SocketDir {
    fn new(name: &str) -> SocketDir {
        let dir = std::env::temp_dir().join(format!("turbo_ws-unix-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        SocketDir(dir)
    }

    fn path(&self) -> PathBuf {
        self.0.join("ws.sock")
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// [`support::run_client`] with `unix_socket = socket`, printing the
/// answer's header names in order and the peer address.
fn run_client(url: &str, socket: &str, opts: &str) -> Vec<String> {
    support::run_client(
        url,
        &format!("unix_socket = {socket:?}, {opts}"),
        r#"local names = {}
          for i, h in ipairs(res.headers) do names[i] = h[1] end
          print("connected " .. res.status .. " " .. table.concat(names, ","))
          print("peer " .. tostring(conn:remote_address()))"#,
    )
}

#[test]
fn connects_over_the_socket_with_the_urls_host_and_keeps_header_spelling() {
    let dir = SocketDir::new("ok");
    let listener = UnixListener::bind(dir.path()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    one_shot_server(listener, move |head, mut s| {
        let accept = derive_accept_key(header(&head, "sec-websocket-key").unwrap().as_bytes());
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nCONNECTION: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\nx-Mixed-Case: yes\r\n\r\n"
        );
        s.write_all(answer.as_bytes()).unwrap();
        s.write_all(&[0x81, 2, b'h', b'i']).unwrap();
        let echoed = read_frame(&mut s);
        s.write_all(&[0x88, 2, 0x03, 0xe8]).unwrap();
        let close = read_until_close(&mut s);
        tx.send((head, echoed, close)).unwrap();
    });
    let lines = run_client("ws://localhost/chat?x=1", dir.path().to_str().unwrap(), "");
    let (head, echoed, close) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(head.starts_with("GET /chat?x=1 HTTP/1.1\r\n"), "{head}");
    assert_eq!(header(&head, "host"), Some("localhost"));
    let echoed = echoed.expect("the client echoes the message");
    assert!(echoed.masked);
    assert_eq!(echoed.payload, b"hi");
    assert_eq!(close, Some(1000));
    assert_eq!(
        lines,
        [
            "connected 101 Upgrade,CONNECTION,Sec-WebSocket-Accept,x-Mixed-Case",
            "peer nil",
            "message hi",
            "closed 1000",
            "done"
        ]
    );
}

#[test]
fn a_socket_nobody_listens_on_is_refused_and_a_missing_one_is_a_connect_error() {
    let dir = SocketDir::new("refused");
    // Bound, then closed: the file stays, nobody accepts.
    drop(UnixListener::bind(dir.path()).unwrap());
    let lines = run_client("ws://localhost/", dir.path().to_str().unwrap(), "");
    assert!(lines[0].starts_with("error refused "), "{lines:?}");
    let missing = dir.0.join("missing.sock");
    let lines = run_client("ws://localhost/", missing.to_str().unwrap(), "");
    assert!(lines[0].starts_with("error connect "), "{lines:?}");
    assert!(lines[0].contains("missing.sock"), "{lines:?}");
}

#[test]
fn a_redirect_to_wss_does_not_take_the_socket_into_tls() {
    let dir = SocketDir::new("redirect");
    let listener = UnixListener::bind(dir.path()).unwrap();
    one_shot_server(listener, |_, mut s| {
        let _ = s.write_all(b"HTTP/1.1 302 Found\r\nLocation: wss://localhost/\r\nContent-Length: 0\r\n\r\n");
        thread::sleep(Duration::from_millis(200));
    });
    let lines = run_client("ws://localhost/", dir.path().to_str().unwrap(), "max_redirects = 1");
    assert!(lines[0].starts_with("error tls cannot use TLS over the Unix socket"), "{lines:?}");
}

#[test]
fn tls_over_a_unix_socket_is_refused_as_misuse() {
    let text = lua_output(r#"local core = require("turbo_ws").core
            local ok, err = pcall(core.connect, "wss://localhost/", { unix_socket = "/x.sock" }, function() end)
            print(ok, err)"#).join("\n");
    assert!(text.starts_with("false\t"), "{text}");
    assert!(text.contains("turbo_ws.connect: bad option 'unix_socket'"), "{text}");
}
