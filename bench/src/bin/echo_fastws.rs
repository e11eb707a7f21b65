//! Reference: a pure-Rust echo server on fastwebsockets (the fastest Rust
//! WebSocket implementation), one current_thread runtime.
//! Usage: echo_fastws PORT

use fastwebsockets::{FragmentCollector, OpCode, Role, WebSocket};

fn main() {
    turbo_ws_bench::serve_echo(9202, |mut tcp| async move {
        if turbo_ws_bench::accept_handshake(&mut tcp).await.is_err() {
            return;
        }
        let mut ws = WebSocket::after_handshake(tcp, Role::Server);
        ws.set_auto_pong(true);
        ws.set_auto_close(true);
        let mut ws = FragmentCollector::new(ws);
        while let Ok(frame) = ws.read_frame().await {
            match frame.opcode {
                OpCode::Close => break,
                OpCode::Text | OpCode::Binary => {
                    if ws.write_frame(frame).await.is_err() {
                        break;
                    }
                }
                _ => {}
            }
        }
    });
}
