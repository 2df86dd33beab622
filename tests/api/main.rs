//! Integration tests: the real server on an ephemeral port, one module per SPEC feature.

#[allow(dead_code)] // each test module uses part of the harness
mod helpers;

mod health_and_routes;
mod static_files_caching;
mod static_files_conditional;
mod static_files_directories;
mod static_files_headers;
mod static_files_negotiation;
mod static_files_safety;
