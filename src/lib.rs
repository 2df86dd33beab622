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
pub(crate) mod held_body;
pub mod lifecycle;
pub(crate) mod metrics;
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
pub mod tls;
pub(crate) mod websocket;

pub use config::Settings;
pub use startup::Application;

/// What the fuzz targets in `fuzz/` call that is not otherwise public: content negotiation is
/// crate-private (it is no API), and the fuzz crate is another crate. The targets whose code is
/// std only include their source file instead; negotiation needs [`encoding`], which needs the
/// crate's dependencies. Not an API: it may change with any release.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::negotiate::{choose_encoding, prefers_html};
}
