//! docs/reference.md §8: request, correlation and idempotency IDs, and the access log in both formats.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{BinaryServer, nginx_mode_settings, spawn_app};

#[tokio::test]
async fn a_valid_request_id_is_kept_and_echoed_with_the_correlation_id() {
    let app = spawn_app(nginx_mode_settings()).await;
    let res = app
        .get_with("/json", &[("x-request-id", "abc.DEF_123:xyz-9")])
        .await;
    assert_eq!(res.headers()["x-request-id"], "abc.DEF_123:xyz-9");
    assert_eq!(res.headers()["x-correlation-id"], "abc.DEF_123:xyz-9");

    let res = app
        .get_with(
            "/json",
            &[("x-request-id", "req-1"), ("x-correlation-id", "trace-7")],
        )
        .await;
    assert_eq!(res.headers()["x-request-id"], "req-1");
    assert_eq!(res.headers()["x-correlation-id"], "trace-7");
}

#[tokio::test]
async fn invalid_request_ids_are_replaced_with_fresh_ones() {
    let app = spawn_app(nginx_mode_settings()).await;
    let too_long = "a".repeat(129);
    for bad in [
        "has space",
        "semi;colon",
        "slash/",
        too_long.as_str(),
        "quote\"",
    ] {
        let res = app
            .get_with(
                "/api/status",
                &[("x-request-id", bad), ("x-correlation-id", bad)],
            )
            .await;
        let id = res.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(id, bad);
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
        assert_eq!(res.headers()["x-correlation-id"].to_str().unwrap(), id);
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["request_id"], id);
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id_even_errors() {
    let app = spawn_app(nginx_mode_settings()).await;
    let a = app.get("/nope").await;
    let b = app.get("/nope").await;
    let id_a = a.headers()["x-request-id"].to_str().unwrap().to_string();
    let id_b = b.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(id_a, id_b);
}

fn wait_for_line(server: &BinaryServer, needle: &str) -> String {
    for _ in 0..100 {
        if let Some(line) = server.stderr().lines().find(|l| l.contains(needle)) {
            return line.to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "no log line containing {needle:?}; stderr:\n{}",
        server.stderr()
    );
}

#[test]
fn text_access_lines_have_every_field_and_cannot_be_broken() {
    let server = BinaryServer::start(&[("TANDEM__STATIC__MODE", "nginx")]);
    let res = server.get_with(
        "/json?x=1",
        &[
            ("x-request-id", "log-text-1"),
            ("x-correlation-id", "corr-text-1"),
            ("idempotency-key", "idem-1"),
            ("user-agent", "agent \"with quotes\" \\ and\tcontrol"),
        ],
    );
    assert_eq!(res.status(), 200);
    let line = wait_for_line(&server, "log-text-1");
    assert!(line.contains("tandem::access"), "{line}");
    assert!(
        line.contains("127.0.0.1 \"GET /json?x=1\" 200 27 "),
        "{line}"
    );
    assert!(line.contains("request_id=log-text-1"), "{line}");
    assert!(line.contains("correlation_id=corr-text-1"), "{line}");
    assert!(line.contains("idempotency_key=idem-1"), "{line}");
    assert!(
        line.contains(r#""agent \"with quotes\" \\ and\x09control""#),
        "{line}"
    );
    assert!(line.contains("ms "), "{line}");
}

#[test]
fn json_access_lines_are_one_object_each() {
    let server = BinaryServer::start(&[
        ("TANDEM__STATIC__MODE", "nginx"),
        ("TANDEM__LOG__FORMAT", "json"),
    ]);
    server.get_with(
        "/api/status",
        &[("x-request-id", "log-json-1"), ("user-agent", "ua \"q\"")],
    );
    let line = wait_for_line(&server, "log-json-1");
    let record: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(record["type"], "access");
    assert_eq!(record["client_ip"], "127.0.0.1");
    assert_eq!(record["method"], "GET");
    assert_eq!(record["path"], "/api/status");
    assert_eq!(record["status"], 200);
    assert!(record["bytes"].as_u64().unwrap() > 100);
    assert!(record["duration_ms"].is_number());
    assert_eq!(record["request_id"], "log-json-1");
    assert_eq!(record["correlation_id"], "log-json-1");
    assert_eq!(record["user_agent"], "ua \"q\"");
    // Every other line is JSON too.
    for other in server.stderr().lines().filter(|l| !l.is_empty()) {
        let value: Value = serde_json::from_str(other).unwrap_or_else(|e| panic!("{e}: {other}"));
        assert!(value["level"].is_string(), "{other}");
    }
}

#[test]
fn probes_are_logged_at_debug_only() {
    let server = BinaryServer::start(&[("TANDEM__STATIC__MODE", "nginx")]);
    for path in ["/health", "/healthz", "/readyz", "/startupz"] {
        server.get_with(path, &[("x-request-id", "probe-1")]);
    }
    server.get_with("/json", &[("x-request-id", "after-probes")]);
    wait_for_line(&server, "after-probes");
    assert!(!server.stderr().contains("probe-1"), "{}", server.stderr());

    let debug = BinaryServer::start(&[("TANDEM__STATIC__MODE", "nginx"), ("RUST_LOG", "debug")]);
    debug.get_with("/readyz", &[("x-request-id", "probe-2")]);
    let line = wait_for_line(&debug, "probe-2");
    assert!(line.contains("DEBUG") && line.contains("/readyz"), "{line}");
}
