//! Integration tests: the real server on an ephemeral port, one module per feature of docs/reference.md.

#[allow(dead_code)] // each test module uses part of the harness
mod helpers;

mod client_ip_behind_proxies;
mod config_sources;
mod container_equivalent;
mod deployment_files;
mod health_and_routes;
mod hostile_clients;
mod lifecycle_answers;
mod log_filter;
mod metrics;
mod nginx_end_to_end;
mod pebble;
mod precompress_command;
mod problem_details;
mod rate_limit_redis;
mod rate_limiting;
mod request_metadata;
mod server_settings;
mod shipped_site;
mod socket_activation;
mod start_and_stop;
mod static_files_caching;
mod static_files_compression_bound;
mod static_files_conditional;
mod static_files_directories;
mod static_files_freshness;
mod static_files_headers;
mod static_files_negotiation;
mod static_files_safety;
mod tls;
mod tls_acme;
mod tls_redirect;
mod tls_scan;
mod websocket_client;
mod websocket_echo;
mod websocket_lifecycle;
mod websocket_violations;
