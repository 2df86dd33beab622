//! docs/reference.md §4 routes, against a real server.

use serde_json::Value;

use crate::helpers::{nginx_mode_settings, spawn_app};

#[tokio::test]
async fn api_status_reports_service_version_client_and_request_id() {
    let app = spawn_app(nginx_mode_settings()).await;
    let res = app
        .get_with("/api/status", &[("X-Request-ID", "status-check-1")])
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["service"], "tandem");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["status"], "healthy");
    assert_eq!(body["client_ip"], "127.0.0.1");
    assert_eq!(body["static_mode"], "nginx");
    assert_eq!(body["request_id"], "status-check-1");
    assert!(body["uptime_secs"].is_u64());
    let ts = body["timestamp"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && ts.parse::<jiff::Timestamp>().is_ok(),
        "{ts}"
    );
}

#[tokio::test]
async fn json_says_hello_world_without_caching() {
    let app = spawn_app(nginx_mode_settings()).await;
    let res = app.get("/json").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert_eq!(res.text().await.unwrap(), r#"{"message":"Hello, World!"}"#);
}

#[tokio::test]
async fn health_answers_plain_ok() {
    let app = spawn_app(nginx_mode_settings()).await;
    let res = app.get("/health").await;
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(res.text().await.unwrap(), "ok\n");
}

#[tokio::test]
async fn probes_report_liveness_readiness_and_startup() {
    let app = spawn_app(nginx_mode_settings()).await;
    for (path, word) in [
        ("/healthz", "ok"),
        ("/readyz", "ready"),
        ("/startupz", "started"),
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], word, "{path}");
    }
}

#[tokio::test]
async fn readiness_turns_503_while_liveness_stays_200_when_draining() {
    let app = spawn_app(nginx_mode_settings()).await;
    app.lifecycle.begin_drain();
    let res = app.get("/readyz").await;
    assert_eq!(res.status(), 503);
    assert_eq!(res.headers()["connection"], "close");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "draining"}));
    let res = app.get("/healthz").await;
    assert_eq!(res.status(), 200);
    // Still serving while draining.
    assert_eq!(app.get("/json").await.status(), 200);
}

#[tokio::test]
async fn head_is_answered_like_get_without_a_body() {
    let app = spawn_app(nginx_mode_settings()).await;
    let res = app.head_with("/json", &[]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], "27");
    assert_eq!(res.bytes().await.unwrap().len(), 0);
}

#[tokio::test]
async fn large_dynamic_responses_are_compressed_and_small_ones_are_not() {
    let app = spawn_app(nginx_mode_settings()).await;
    let big: Vec<String> = (0..200).map(|i| format!("item number {i}")).collect();
    let payload = serde_json::to_string(&big).unwrap();
    for (accept, expected) in [
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip", "gzip"),
        ("gzip;q=0.5, zstd", "zstd"),
    ] {
        let res = app
            .post_json("/api/echo", payload.clone(), &[("accept-encoding", accept)])
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-encoding"], expected, "{accept}");
        assert!(
            res.headers()["vary"]
                .to_str()
                .unwrap()
                .to_lowercase()
                .contains("accept-encoding")
        );
    }
    let res = app
        .get_with("/json", &[("accept-encoding", "br, gzip")])
        .await;
    assert!(res.headers().get("content-encoding").is_none());
    assert_eq!(res.text().await.unwrap(), r#"{"message":"Hello, World!"}"#);
}

#[tokio::test]
async fn echo_returns_the_body_and_the_idempotency_key() {
    let app = spawn_app(nginx_mode_settings()).await;
    let res = app
        .post_json(
            "/api/echo",
            r#"{"a":[1,2,3]}"#,
            &[("Idempotency-Key", "order-42")],
        )
        .await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["echo"], serde_json::json!({"a": [1, 2, 3]}));
    assert_eq!(body["idempotency_key"], "order-42");
}
