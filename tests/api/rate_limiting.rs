//! docs/reference.md §6, rate limiting: per_second 1 and burst 2 make the third quick request the first
//! refused one. Distinct clients come through a trusted `X-Forwarded-For` or from distinct
//! 127.0.0.x source addresses.

use std::{
    net::IpAddr,
    panic::AssertUnwindSafe,
    time::{Duration, Instant},
};

use futures_util::FutureExt;

use serde_json::Value;
use tandem::Settings;

use crate::{
    helpers::{TestApp, raw_request, spawn_app, test_settings},
    websocket_client::{RawSocket, TEXT},
};

fn limited_settings() -> Settings {
    let mut settings = test_settings();
    settings.rate_limit.enabled = true;
    settings.rate_limit.per_second = 1;
    settings.rate_limit.burst = 2;
    settings.proxy.trusted = vec!["127.0.0.1/32".into()];
    settings
}

async fn get_as(app: &TestApp, path: &str, client: &str) -> reqwest::Response {
    app.get_with(path, &[("X-Forwarded-For", client)]).await
}

async fn statuses_as(app: &TestApp, path: &str, client: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(get_as(app, path, client).await.status().as_u16());
    }
    statuses
}

/// A token comes back every `1 / per_second` seconds.
const REFILL: Duration = Duration::from_secs(1);

/// Runs `check` against a fresh limited server. A run that took a refill interval or longer (a
/// loaded machine) may fairly see one more request pass, so such a run that failed is repeated
/// on a fresh server; a quicker run must pass as it is.
async fn within_one_refill<F, Fut>(settings: Settings, check: F)
where
    F: Fn(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    for _ in 0..4 {
        let app = spawn_app(settings.clone()).await;
        let started = Instant::now();
        let outcome = AssertUnwindSafe(check(app)).catch_unwind().await;
        match outcome {
            Ok(()) => return,
            Err(panic) if started.elapsed() < REFILL => std::panic::resume_unwind(panic),
            Err(_) => continue,
        }
    }
    panic!(
        "four runs each took a refill interval and failed: too slow to tell a refill from a bug"
    );
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    res.headers().get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn the_request_after_the_burst_gets_429_problem_details_with_retry_after() {
    within_one_refill(limited_settings(), |app| async move {
        let first = get_as(&app, "/json", "203.0.113.1").await;
        assert_eq!(first.status(), 200);
        assert_eq!(header(&first, "x-ratelimit-limit"), Some("2"));
        assert_eq!(header(&first, "x-ratelimit-remaining"), Some("1"));
        let second = get_as(&app, "/json", "203.0.113.1").await;
        assert_eq!(second.status(), 200);
        assert_eq!(header(&second, "x-ratelimit-remaining"), Some("0"));

        let refused = app
            .get_with(
                "/json",
                &[
                    ("X-Forwarded-For", "203.0.113.1"),
                    ("X-Request-ID", "limited-1"),
                ],
            )
            .await;
        assert_eq!(refused.status(), 429);
        assert_eq!(
            header(&refused, "content-type"),
            Some("application/problem+json")
        );
        assert_eq!(header(&refused, "x-ratelimit-limit"), Some("2"));
        assert_eq!(header(&refused, "x-ratelimit-remaining"), Some("0"));
        let retry_header: u64 = header(&refused, "retry-after").unwrap().parse().unwrap();
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["status"], 429);
        assert_eq!(body["title"], "Too Many Requests");
        assert_eq!(body["type"], "about:blank");
        assert_eq!(body["request_id"], "limited-1");
        let retry_after = body["retry_after"]
            .as_u64()
            .expect("retry_after is an integer");
        assert!(retry_after >= 1, "{body}");
        assert_eq!(retry_after, retry_header);
    })
    .await;
}

#[tokio::test]
async fn every_in_scope_route_draws_on_the_same_client_bucket() {
    within_one_refill(limited_settings(), |app| async move {
        assert_eq!(
            get_as(&app, "/api/status", "203.0.113.2").await.status(),
            200
        );
        // /socket is in scope whatever answers it (426 without Upgrade, or 404 before the route).
        assert_ne!(get_as(&app, "/socket", "203.0.113.2").await.status(), 429);
        assert_eq!(get_as(&app, "/json", "203.0.113.2").await.status(), 429);
        assert_eq!(get_as(&app, "/socket", "203.0.113.2").await.status(), 429);
        assert_eq!(
            get_as(&app, "/api/status", "203.0.113.2").await.status(),
            429
        );
        // Unknown API paths and wrong methods are in scope too, and say so.
        let other = get_as(&app, "/api/no-such-thing", "203.0.113.3").await;
        assert_eq!(other.status(), 404);
        assert_eq!(header(&other, "x-ratelimit-remaining"), Some("1"));
    })
    .await;
}

#[tokio::test]
async fn clients_behind_a_trusted_proxy_get_their_own_buckets() {
    within_one_refill(limited_settings(), |app| async move {
        assert_eq!(
            statuses_as(&app, "/json", "203.0.113.10", 3).await,
            [200, 200, 429]
        );
        assert_eq!(
            statuses_as(&app, "/json", "203.0.113.11", 3).await,
            [200, 200, 429]
        );
    })
    .await;
}

#[tokio::test]
async fn an_untrusted_peer_cannot_escape_its_bucket_by_inventing_addresses() {
    within_one_refill(limited_settings(), |app| async move {
        let stranger = reqwest::Client::builder()
            .local_address("127.0.0.2".parse::<IpAddr>().unwrap())
            .build()
            .unwrap();
        let mut statuses = Vec::new();
        for i in 0..4 {
            let res = stranger
                .get(app.url("/json"))
                .header("X-Forwarded-For", format!("198.51.100.{i}"))
                .header("X-Real-IP", format!("198.51.100.{i}"))
                .header("Forwarded", format!("for=198.51.100.{i}"))
                .send()
                .await
                .unwrap();
            statuses.push(res.status().as_u16());
        }
        assert_eq!(statuses, [200, 200, 429, 429]);
        // Another peer is another client.
        let neighbour = reqwest::Client::builder()
            .local_address("127.0.0.3".parse::<IpAddr>().unwrap())
            .build()
            .unwrap();
        assert_eq!(
            neighbour
                .get(app.url("/json"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    })
    .await;
}

#[tokio::test]
async fn ipv6_clients_in_one_64_share_a_bucket_and_other_64s_do_not() {
    within_one_refill(limited_settings(), |app| async move {
        assert_eq!(get_as(&app, "/json", "2001:db8:1:2::1").await.status(), 200);
        assert_eq!(
            get_as(&app, "/json", "[2001:db8:1:2:ffff:ffff:ffff:ffff]:443")
                .await
                .status(),
            200
        );
        assert_eq!(
            get_as(&app, "/json", "2001:db8:1:2:abcd::9").await.status(),
            429
        );
        assert_eq!(get_as(&app, "/json", "2001:db8:1:3::1").await.status(), 200);
        assert_eq!(get_as(&app, "/json", "2001:db8:2:2::1").await.status(), 200);
    })
    .await;
}

#[tokio::test]
async fn the_ipv6_prefix_is_configurable() {
    let mut settings = limited_settings();
    settings.rate_limit.ipv6_prefix = 128;
    let app = spawn_app(settings).await;
    for last in 1..=4 {
        let client = format!("2001:db8:1:2::{last}");
        assert_eq!(
            get_as(&app, "/json", &client).await.status(),
            200,
            "{client}"
        );
    }
}

#[tokio::test]
async fn an_ipv4_mapped_client_shares_the_bucket_of_its_ipv4_address() {
    within_one_refill(limited_settings(), |app| async move {
        assert_eq!(get_as(&app, "/json", "203.0.113.20").await.status(), 200);
        assert_eq!(
            get_as(&app, "/json", "::ffff:203.0.113.20").await.status(),
            200
        );
        assert_eq!(
            get_as(&app, "/json", "[::ffff:203.0.113.20]:1234")
                .await
                .status(),
            429
        );
    })
    .await;
}

#[tokio::test]
async fn probes_are_never_limited() {
    let app = spawn_app(limited_settings()).await;
    for probe in ["/health", "/healthz", "/readyz", "/startupz"] {
        for _ in 0..6 {
            let res = get_as(&app, probe, "203.0.113.30").await;
            assert_eq!(res.status(), 200, "{probe}");
            assert_eq!(header(&res, "x-ratelimit-limit"), None, "{probe}");
        }
    }
    // ... and they did not use up the client's quota either.
    assert_eq!(get_as(&app, "/json", "203.0.113.30").await.status(), 200);
}

#[tokio::test]
async fn static_paths_are_not_limited_by_default() {
    let app = spawn_app(limited_settings()).await;
    for path in ["/no-such-file.txt", "/", "/public/nothing.css"] {
        for _ in 0..4 {
            let res = get_as(&app, path, "203.0.113.40").await;
            assert_ne!(res.status(), 429, "{path}");
            assert_eq!(header(&res, "x-ratelimit-limit"), None, "{path}");
        }
    }
}

#[tokio::test]
async fn static_paths_are_limited_when_rate_limit_static_is_set() {
    let mut settings = limited_settings();
    settings.rate_limit.static_files = true;
    within_one_refill(settings, |app| async move {
        assert_eq!(
            statuses_as(&app, "/no-such-file.txt", "203.0.113.41", 3).await,
            [404, 404, 429]
        );
        // Probes stay exempt even then.
        assert_eq!(
            statuses_as(&app, "/healthz", "203.0.113.41", 3).await,
            [200, 200, 200]
        );
    })
    .await;
}

#[tokio::test]
async fn nothing_is_limited_when_rate_limit_is_disabled() {
    let mut settings = limited_settings();
    settings.rate_limit.enabled = false;
    let app = spawn_app(settings).await;
    for _ in 0..6 {
        let res = get_as(&app, "/json", "203.0.113.50").await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "x-ratelimit-limit"), None);
    }
}

#[tokio::test]
async fn cors_preflights_are_never_counted() {
    within_one_refill(limited_settings(), |app| async move {
        for _ in 0..5 {
            let res = app
                .request(
                    reqwest::Method::OPTIONS,
                    "/api/echo",
                    &[
                        ("X-Forwarded-For", "203.0.113.60"),
                        ("Origin", "https://example.com"),
                        ("Access-Control-Request-Method", "POST"),
                    ],
                    None,
                )
                .await;
            assert_ne!(res.status(), 429);
        }
        assert_eq!(
            statuses_as(&app, "/json", "203.0.113.60", 3).await,
            [200, 200, 429]
        );
    })
    .await;
}

#[tokio::test]
async fn percent_encoding_the_path_does_not_dodge_the_limit() {
    within_one_refill(limited_settings(), |app| async move {
        // actix routes `/%61pi/status` to `/api/status`; the limiter must see it the same way.
        let first = get_as(&app, "/%61pi/status", "203.0.113.70").await;
        assert_eq!(first.status(), 200);
        assert_eq!(
            statuses_as(&app, "/%6Aso%6E", "203.0.113.70", 2).await,
            [200, 429]
        );
    })
    .await;
}

#[tokio::test]
async fn all_workers_share_one_limiter() {
    let mut settings = limited_settings();
    settings.server.workers = 2;
    within_one_refill(settings, |app| async move {
    let port = app.addr.port();
    // One connection per request: the server spreads connections over its workers, so with a
    // limiter per worker more than `burst` requests would pass.
    let statuses: Vec<u16> = tokio::task::spawn_blocking(move || {
        (0..6)
            .map(|_| {
                raw_request(
                    port,
                    "GET /json HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.80\r\nConnection: close\r\n\r\n",
                )
                .unwrap()
                .0
            })
            .collect()
    })
    .await
    .unwrap();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|&&s| s == 429).count(),
        4,
        "{statuses:?}"
    );
    })
    .await;
}

#[tokio::test]
async fn only_the_upgrade_is_counted_never_the_messages_on_the_socket() {
    let mut settings = limited_settings();
    settings.rate_limit.burst = 3;
    within_one_refill(settings, |app| async move {
        // From 127.0.0.1 without forwarded headers: the client is 127.0.0.1 throughout.
        let mut socket = RawSocket::connect(app.addr).await;
        for i in 0..20 {
            let message = format!("message {i}");
            socket.send(true, TEXT, message.as_bytes()).await;
            let echo = socket
                .next_frame(Duration::from_secs(5))
                .await
                .expect("the socket stays open");
            assert_eq!(echo.payload, message.as_bytes());
        }
        // Burst 3: the upgrade took one, twenty messages none, so two requests remain.
        let first = app.get("/json").await;
        assert_eq!(first.status(), 200);
        assert_eq!(header(&first, "x-ratelimit-remaining"), Some("1"));
        assert_eq!(app.get("/json").await.status(), 200);
        assert_eq!(app.get("/json").await.status(), 429);
    })
    .await;
}
