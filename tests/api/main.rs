//! Integration tests: the real server on an ephemeral port, one module per SPEC feature.

#[allow(dead_code)] // each test module uses part of the harness
mod helpers;

mod health_and_routes;
mod websocket_client;
mod websocket_echo;
mod websocket_lifecycle;
mod websocket_violations;
