//! docs/reference.md §4 errors: RFC 9457 problem+json for every error status, `404.html` for browsers, and
//! panics that cost one request, not the server.

use serde_json::Value;

use crate::helpers::{
    nginx_mode_settings, spawn_app, spawn_app_with_panicking_route, test_settings,
};

async fn assert_problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["type"], "about:blank");
    assert_eq!(body["status"], status);
    assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert_eq!(body["request_id"], request_id);
    body
}

#[tokio::test]
async fn unknown_route_is_a_404_problem() {
    let app = spawn_app(nginx_mode_settings()).await;
    let body = assert_problem(app.get("/no/such/thing").await, 404).await;
    assert_eq!(body["title"], "Not Found");
}

#[tokio::test]
async fn browsers_get_the_404_page_when_it_exists() {
    let app = spawn_app(test_settings()).await;
    let res = app
        .get_with(
            "/no/such/page",
            &[("accept", "text/html,application/xhtml+xml,*/*;q=0.8")],
        )
        .await;
    assert_eq!(res.status(), 404);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let expected =
        std::fs::read_to_string(crate::helpers::fixtures().join("htdocs/404.html")).unwrap();
    assert_eq!(res.text().await.unwrap(), expected);
}

/// nginx mode serves no files, yet browsers still get `htdocs/404.html`; it needs that root
/// alone, not `static.public` too.
#[tokio::test]
async fn in_nginx_mode_browsers_get_the_404_page_with_only_htdocs_present() {
    let mut settings = nginx_mode_settings();
    settings.static_files.public = crate::helpers::fixtures().join("no-such-public-root");
    let app = spawn_app(settings).await;
    let res = app
        .get_with("/missing", &[("accept", "text/html,*/*;q=0.8")])
        .await;
    assert_eq!(res.status(), 404);
    let expected =
        std::fs::read_to_string(crate::helpers::fixtures().join("htdocs/404.html")).unwrap();
    assert_eq!(res.text().await.unwrap(), expected);
}

#[tokio::test]
async fn wrong_method_is_a_405_problem_with_allow() {
    let app = spawn_app(nginx_mode_settings()).await;
    for (method, path, allow) in [
        (reqwest::Method::POST, "/api/status", "GET, HEAD"),
        (reqwest::Method::DELETE, "/json", "GET, HEAD"),
        (reqwest::Method::PUT, "/healthz", "GET, HEAD"),
        (reqwest::Method::GET, "/api/echo", "POST"),
    ] {
        let res = app.request(method, path, &[], None).await;
        assert_eq!(res.headers()["allow"], allow, "{path}");
        assert_problem(res, 405).await;
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_a_413_problem() {
    let mut settings = nginx_mode_settings();
    settings.server.max_body_bytes = 100;
    let app = spawn_app(settings).await;
    let big = format!("[\"{}\"]", "x".repeat(200));
    // Declared length over the limit.
    let res = app.post_json("/api/echo", big.clone(), &[]).await;
    assert_problem(res, 413).await;
    // Chunked body (no declared length) over the limit.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(big.into_bytes())]);
    let res = app
        .post_json("/api/echo", reqwest::Body::wrap_stream(stream), &[])
        .await;
    assert_problem(res, 413).await;
}

#[tokio::test]
async fn wrong_media_type_is_a_415_problem() {
    let app = spawn_app(nginx_mode_settings()).await;
    let res = app
        .request(
            reqwest::Method::POST,
            "/api/echo",
            &[("content-type", "text/plain")],
            Some("{}".into()),
        )
        .await;
    assert_problem(res, 415).await;
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn_app(nginx_mode_settings()).await;
    let res = app.post_json("/api/echo", "{not json", &[]).await;
    let body = assert_problem(res, 400).await;
    assert!(body["detail"].as_str().unwrap().contains("JSON"), "{body}");
}

#[tokio::test]
async fn a_panicking_handler_answers_500_and_the_server_lives_on() {
    let app = spawn_app_with_panicking_route().await;
    // Keep one connection open across the panic: it must survive too.
    let first = app.get("/json").await;
    assert_eq!(first.status(), 200);
    for _ in 0..4 {
        let body = assert_problem(app.get("/test/panic").await, 500).await;
        assert!(!body["detail"].as_str().unwrap().contains("deliberate"));
    }
    for _ in 0..10 {
        assert_eq!(app.get("/json").await.status(), 200);
    }
    // A fresh client (fresh connections) is served too.
    let fresh = reqwest::get(app.url("/healthz")).await.unwrap();
    assert_eq!(fresh.status(), 200);
}
