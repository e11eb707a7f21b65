//! Reference: a pure-Rust echo server on tokio-tungstenite, with the same
//! runtime shape as turbo_ws (one current_thread runtime, a task per connection).
//! Usage: echo_tungstenite PORT

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(9201);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!("port {port}");
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let _ = tcp.set_nodelay(true);
            tokio::task::spawn_local(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                // The plain echo loop of tokio-tungstenite's own examples.
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}
