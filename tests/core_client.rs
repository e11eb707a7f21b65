//! The core's client side against raw-socket servers written here: what it
//! sends (Host, path, masking), how it treats bad servers, and which error
//! kind each failure gets.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use support::*;

/// [`support::run_client`], printing "connected STATUS PROTOCOL".
fn run_client(url: &str, opts: &str) -> Vec<String> {
    support::run_client(url, opts, r#"print("connected " .. res.status .. " " .. tostring(res.protocol))"#)
}

/// A one-connection TCP server: `serve` gets the request head and the stream.
fn tcp_server(serve: impl FnOnce(String, TcpStream) + Send + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    one_shot_server(listener, serve);
    port
}

fn accept_101(head: &str, s: &mut TcpStream, extra: &str) {
    s.write_all(answer_101(head, extra).as_bytes()).unwrap();
}

fn server_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

#[test]
fn sends_host_with_port_and_the_path_verbatim_and_masks_frames() {
    let (tx, rx) = std::sync::mpsc::channel();
    let port = tcp_server(move |head, mut s| {
        accept_101(&head, &mut s, "");
        s.write_all(&server_frame(1, b"hi")).unwrap();
        let echoed = read_frame(&mut s).unwrap();
        s.write_all(&server_frame(8, &1000u16.to_be_bytes())).unwrap();
        let close = read_frame(&mut s);
        tx.send((head, echoed, close)).unwrap();
    });
    let lines = run_client(&format!("ws://127.0.0.1:{port}/a/../b%20c?x=1&y"), "");
    let (head, echoed, close) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(head.starts_with("GET /a/../b%20c?x=1&y HTTP/1.1\r\n"), "{head}");
    assert_eq!(header(&head, "host"), Some(format!("127.0.0.1:{port}").as_str()));
    assert_eq!(header(&head, "sec-websocket-version"), Some("13"));
    assert!(echoed.masked, "client frames must be masked");
    assert_eq!(echoed.payload, b"hi");
    assert_eq!(close.and_then(|f| f.close_code()), Some(1000), "the close must be echoed");
    assert_eq!(lines, ["connected 101 nil", "message hi", "closed 1000", "done"]);
}

#[test]
fn masked_server_frames_fail_the_connection_with_1002() {
    let (tx, rx) = std::sync::mpsc::channel();
    let port = tcp_server(move |head, mut s| {
        accept_101(&head, &mut s, "");
        let mut f = vec![0x81, 0x80 | 2, 1, 2, 3, 4];
        f.extend_from_slice(&[b'h' ^ 1, b'i' ^ 2]);
        s.write_all(&f).unwrap();
        tx.send(read_until_close(&mut s)).unwrap();
    });
    let lines = run_client(&format!("ws://127.0.0.1:{port}/"), "");
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Some(1002));
    assert_eq!(lines, ["connected 101 nil", "failed protocol", "closed 1002", "done"]);
}

#[test]
fn interim_1xx_answers_before_the_101_are_read_past() {
    let port = tcp_server(move |head, mut s| {
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n")
            .unwrap();
        accept_101(&head, &mut s, "");
        s.write_all(&server_frame(1, b"hi")).unwrap();
        let _ = read_frame(&mut s);
        s.write_all(&server_frame(8, &1000u16.to_be_bytes())).unwrap();
        let _ = read_frame(&mut s);
    });
    let lines = run_client(&format!("ws://127.0.0.1:{port}/"), "");
    assert_eq!(lines, ["connected 101 nil", "message hi", "closed 1000", "done"]);
}

/// Whatever follows the server's close, even a broken frame in the same
/// read, costs neither the close reply nor the client's report of it.
#[test]
fn a_bad_frame_after_the_servers_close_is_ignored() {
    let (tx, rx) = std::sync::mpsc::channel();
    let port = tcp_server(move |head, mut s| {
        accept_101(&head, &mut s, "");
        let mut bytes = server_frame(8, &3005u16.to_be_bytes());
        bytes.extend_from_slice(&[0x81, 0x82, 1, 2, 3, 4, b'h' ^ 1, b'i' ^ 2]);
        s.write_all(&bytes).unwrap();
        tx.send(read_until_close(&mut s)).unwrap();
    });
    let lines = run_client(&format!("ws://127.0.0.1:{port}/"), "");
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), Some(3005));
    assert_eq!(lines, ["connected 101 nil", "closed 3005", "done"]);
}

/// The 64 KiB bound on the answer's head holds when it arrives in one read.
#[test]
fn a_101_head_over_64_kib_is_refused_even_in_one_write() {
    let port = tcp_server(move |head, mut s| {
        let big = format!("X-Big: {}\r\n", "a".repeat(70 << 10));
        s.write_all(answer_101(&head, &big).as_bytes()).unwrap();
        thread::sleep(Duration::from_millis(200));
    });
    let lines = run_client(&format!("ws://127.0.0.1:{port}/"), "");
    assert!(lines[0].starts_with("error ") && lines[0].contains("over 65536 bytes"), "{lines:?}");
}

#[test]
fn a_wrong_accept_key_is_a_bad_handshake() {
    let port = tcp_server(|_, mut s| {
        let res = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: d3Jvbmc=\r\n\r\n";
        s.write_all(res.as_bytes()).unwrap();
        thread::sleep(Duration::from_millis(200));
    });
    let lines = run_client(&format!("ws://127.0.0.1:{port}/"), "");
    assert!(lines[0].starts_with("error bad_handshake"), "{lines:?}");
}

#[test]
fn a_non_101_status_is_bad_status() {
    let port = tcp_server(|_, mut s| {
        s.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope").unwrap();
        thread::sleep(Duration::from_millis(200));
    });
    let lines = run_client(&format!("ws://127.0.0.1:{port}/"), "");
    assert!(lines[0].starts_with("error bad_status"), "{lines:?}");
    assert!(lines[0].contains("403"), "{lines:?}");
}

#[test]
fn redirects_are_followed_up_to_the_limit() {
    let target = tcp_server(|head, mut s| {
        accept_101(&head, &mut s, "Sec-WebSocket-Protocol: chat\r\n");
        s.write_all(&server_frame(8, &1000u16.to_be_bytes())).unwrap();
        let _ = read_frame(&mut s);
    });
    let redirect = tcp_server(move |_, mut s| {
        let res = format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{target}/there\r\nContent-Length: 0\r\n\r\n"
        );
        s.write_all(res.as_bytes()).unwrap();
        thread::sleep(Duration::from_millis(200));
    });
    let lines =
        run_client(&format!("ws://127.0.0.1:{redirect}/here"), "max_redirects = 2, protocols = {\"chat\"}");
    assert_eq!(lines[0], "connected 101 chat", "{lines:?}");

    let redirect = tcp_server(move |_, mut s| {
        s.write_all(b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n").unwrap();
        thread::sleep(Duration::from_millis(200));
    });
    let lines = run_client(&format!("ws://127.0.0.1:{redirect}/"), "");
    assert!(lines[0].starts_with("error bad_status"), "redirects are not followed by default: {lines:?}");
}

#[test]
fn a_silent_server_is_a_handshake_timeout() {
    let port = tcp_server(|_, _s| thread::sleep(Duration::from_secs(3)));
    let lines = run_client(&format!("ws://127.0.0.1:{port}/"), "timeout = 0.3");
    assert!(lines[0].starts_with("error handshake_timeout"), "{lines:?}");
}

#[test]
fn refused_bad_scheme_and_bad_url_have_their_own_kinds() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    assert!(run_client(&format!("ws://127.0.0.1:{port}/"), "")[0].starts_with("error refused"));
    assert!(run_client("http://127.0.0.1/", "")[0].starts_with("error bad_scheme"));
    assert!(run_client("ws://", "")[0].starts_with("error bad_url"));
}

#[test]
fn tls_to_a_plain_server_is_a_tls_error() {
    // Answers the ClientHello with plain HTTP, as a server without TLS would.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let lines = run_client(&format!("wss://127.0.0.1:{port}/"), "");
    assert!(lines[0].starts_with("error tls"), "{lines:?}");
}

#[test]
fn misuse_raises_a_lua_error_naming_function_and_argument() {
    let lines = lua_output(
        r#"local core = require("turbo_ws").core
            local ok, err = pcall(core.connect, "ws://x/", {}, nil)
            print(tostring(err):match("[^\n]*"))
            ok, err = pcall(core.connect, "ws://x/", { timeout = "soon" }, print)
            print(tostring(err):match("[^\n]*"))
            ok, err = pcall(core.listen, { port = 70000 }, print)
            print(tostring(err):match("[^\n]*"))"#,
    );
    assert!(
        lines[0].contains("turbo_ws.connect: bad argument #3 'on_done' (function expected, got nil)"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("turbo_ws.connect: bad option 'timeout' (number of seconds expected, got string)"),
        "{lines:?}"
    );
    assert!(lines[2].contains("turbo_ws.listen: bad option 'port'"), "{lines:?}");
}
