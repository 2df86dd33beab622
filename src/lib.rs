//! tandem: one actix-web binary that serves a site's precompressed static files, its JSON API and
//! a WebSocket endpoint, behind proxies or alone. `docs/reference.md` is the contract.
//!
//! A request meets, in order: [`startup`] (the server and the app), [`pipeline`] (its way in,
//! one concern per file), [`routes`] (the one route table) or [`static_files`], and for
//! `/socket` [`websocket`]. [`lifecycle`] is where the process is in its life.

pub mod cli;
pub mod client_ip;
pub(crate) mod compression;
pub mod config;
pub mod encoding;
pub mod healthcheck;
pub mod lifecycle;
pub(crate) mod negotiate;
pub(crate) mod pipeline;
pub mod precompress;
pub mod problem;
pub mod rate_limit;
pub mod redis_url;
pub mod request_id;
pub(crate) mod routes;
pub(crate) mod shared_limit;
pub mod startup;
pub(crate) mod state;
pub mod static_files;
pub mod telemetry;
// Wired into startup when issue 10's branches merge (the listener lives on the `tls` branch);
// until then only the tests call into it.
#[allow(dead_code)]
mod tls;
pub(crate) mod websocket;

pub use config::Settings;
pub use startup::Application;
