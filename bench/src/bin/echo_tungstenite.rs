//! Reference: a pure-Rust echo server on tokio-tungstenite, with the same
//! runtime shape as turbo_ws (one current_thread runtime, a task per connection).
//! Usage: echo_tungstenite PORT

use futures_util::{SinkExt, StreamExt};

fn main() {
    turbo_ws_bench::serve_echo(9201, |tcp| async move {
        let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
        // The plain echo loop of tokio-tungstenite's own examples.
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                return;
            }
        }
    });
}
