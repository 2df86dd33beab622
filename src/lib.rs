//! tandem: one actix-web binary that serves a site's precompressed static files, its JSON API and
//! a WebSocket endpoint, behind proxies or alone. See `SPEC.md` for the contract.

pub mod access_log;
pub mod body_limit;
pub mod cli;
pub mod client_ip;
pub mod compression;
pub mod config;
pub mod encoding;
pub mod error_pages;
pub mod healthcheck;
pub mod negotiate;
pub mod precompress;
pub mod problem;
pub mod rate_limit;
pub mod redis_url;
pub mod request_id;
pub mod routes;
pub(crate) mod shared_limit;
pub mod shutdown;
pub mod startup;
pub mod static_files;
pub mod telemetry;
pub mod websocket;

pub use config::Settings;
pub use startup::Application;
