//! The binding layer: the only Rust code that touches Lua (mlua). The
//! loop and its host context (`ioloop`), calls into Lua (`callback`),
//! argument and option checks (`args`), the userdata of connections,
//! servers, hubs and watchers, the `turbo_ws.core` functions each
//! module registers, and the entry points that build it (`module`).

pub mod answer;
pub mod args;
pub mod callback;
pub mod client;
pub mod connection;
pub mod fast_send;
pub mod fd_watch;
pub mod http_client;
pub mod http_session;
pub mod ioloop;
pub mod loop_wake;
pub mod message_copy;
pub mod module;
pub mod opts;
pub mod plain_errors;
pub mod pubsub;
pub mod record;
pub mod send_handles;
pub mod server;
pub mod toolkit;
pub mod userdata;
pub mod workers;
