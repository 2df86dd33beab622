//! The echo WebSocket at `/socket` (docs/reference.md §7): the handshake, the cap on open sockets,
//! the frame rules actix-ws leaves to us, and the task that echoes, pings, and says 1001 when the
//! server stops (§9).

mod echo;
mod frames;
mod handshake;
pub(crate) mod registry;

pub(crate) use handshake::socket;
pub(crate) use registry::SocketRegistry;
