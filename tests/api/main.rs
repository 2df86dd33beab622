//! Integration tests: the real server on an ephemeral port, one module per SPEC feature.

#[allow(dead_code)] // each test module uses part of the harness
mod helpers;

mod client_ip_behind_proxies;
mod health_and_routes;
mod rate_limiting;
