//! Reference: a pure-Rust echo server on fastwebsockets (the fastest Rust
//! WebSocket implementation), one current_thread runtime.
//! Usage: echo_fastws PORT

use fastwebsockets::{FragmentCollector, OpCode, Role, WebSocket};
use tokio::net::TcpListener;

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(9202);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!("port {port}");
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { continue };
            let _ = tcp.set_nodelay(true);
            tokio::task::spawn_local(async move {
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
    });
}
