//! docs/reference.md §6, the client address: real sockets from distinct 127.0.0.x source addresses (Linux
//! routes all of 127/8 to lo), with only 127.0.0.1 trusted, so 127.0.0.2 is "the internet".

use std::{net::IpAddr, sync::Arc, time::Duration};

use actix_web::{HttpResponse, web};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};
use tandem::{Settings, client_ip::ClientInfo, config::RealIpHeader};

use crate::helpers::{
    BinaryServer, TestApp, ipv6_loopback, skip, spawn_app, spawn_app_with, test_settings,
};

const TRUSTED_PROXY: &str = "127.0.0.1";
const STRANGER: &str = "127.0.0.2";

fn settings(header: RealIpHeader, trusted: &[&str]) -> Settings {
    let mut settings = test_settings();
    settings.proxy.real_ip_header = header;
    settings.proxy.trusted = trusted.iter().map(|t| t.to_string()).collect();
    settings
}

fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// `/api/status`'s `client_ip` for a request from `source` with these header lines (a name may
/// repeat: each occurrence is its own line).
async fn client_ip_seen(app: &TestApp, source: &str, lines: &[(&str, &str)]) -> String {
    let mut headers = HeaderMap::new();
    for (name, value) in lines {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    let res = client_from(source)
        .get(app.url("/api/status"))
        .headers(headers)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["client_ip"].as_str().unwrap().to_string()
}

async fn check(app: &TestApp, source: &str, cases: &[(&[(&str, &str)], &str)]) {
    for (lines, expected) in cases {
        assert_eq!(
            client_ip_seen(app, source, lines).await,
            *expected,
            "from {source} with {lines:?}"
        );
    }
}

#[tokio::test]
async fn without_forwarded_headers_the_client_is_the_tcp_peer() {
    let app = spawn_app(settings(RealIpHeader::XForwardedFor, &["127.0.0.1/32"])).await;
    check(&app, TRUSTED_PROXY, &[(&[], "127.0.0.1")]).await;
    check(&app, STRANGER, &[(&[], "127.0.0.2")]).await;
    check(&app, "127.0.0.3", &[(&[], "127.0.0.3")]).await;
}

#[tokio::test]
async fn headers_from_an_untrusted_peer_are_ignored_in_every_mode() {
    let spoof: &[(&str, &str)] = &[
        ("X-Forwarded-For", "203.0.113.66"),
        ("X-Forwarded-For", "127.0.0.1"),
        ("X-Real-IP", "203.0.113.67"),
        ("Forwarded", "for=203.0.113.68"),
    ];
    for header in [
        RealIpHeader::XForwardedFor,
        RealIpHeader::XRealIp,
        RealIpHeader::Forwarded,
    ] {
        let app = spawn_app(settings(header, &["127.0.0.1/32"])).await;
        check(&app, STRANGER, &[(spoof, STRANGER)]).await;
        // The same headers from the trusted proxy are believed, so the test above can fail.
        assert_ne!(
            client_ip_seen(&app, TRUSTED_PROXY, spoof).await,
            TRUSTED_PROXY
        );
    }
}

#[tokio::test]
async fn x_forwarded_for_is_walked_from_the_right_skipping_trusted_proxies() {
    let app = spawn_app(settings(
        RealIpHeader::XForwardedFor,
        &["127.0.0.1", "10.0.0.0/8", "2001:db8:ffff::/48"],
    ))
    .await;
    check(
        &app,
        TRUSTED_PROXY,
        &[
            (&[("X-Forwarded-For", "203.0.113.7")], "203.0.113.7"),
            (
                // The leftmost entry is whatever the client claimed: never reached.
                &[("X-Forwarded-For", "198.51.100.1, 203.0.113.7, 10.0.0.5")],
                "203.0.113.7",
            ),
            (
                &[("X-Forwarded-For", "203.0.113.7, 2001:db8:ffff::1, 10.1.1.1")],
                "203.0.113.7",
            ),
            (
                &[("X-Forwarded-For", "10.0.0.9, 10.0.0.5")],
                // Every entry trusted: the leftmost is the client.
                "10.0.0.9",
            ),
            (&[("X-Forwarded-For", "")], "127.0.0.1"),
        ],
    )
    .await;
}

#[tokio::test]
async fn every_header_line_counts_in_order() {
    let app = spawn_app(settings(
        RealIpHeader::XForwardedFor,
        &["127.0.0.1", "10.0.0.0/8"],
    ))
    .await;
    check(
        &app,
        TRUSTED_PROXY,
        &[
            (
                &[
                    ("X-Forwarded-For", "198.51.100.1"),
                    ("X-Forwarded-For", "203.0.113.7, 10.0.0.5"),
                ],
                "203.0.113.7",
            ),
            (
                &[
                    ("X-Forwarded-For", "203.0.113.7"),
                    ("X-Forwarded-For", "10.0.0.5"),
                ],
                "203.0.113.7",
            ),
            (
                // A proxy appending a second line must not let the first line's tail win.
                &[
                    ("X-Forwarded-For", "10.0.0.5, 203.0.113.8"),
                    ("X-Forwarded-For", "203.0.113.9"),
                ],
                "203.0.113.9",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_malformed_or_unknown_entry_ends_the_walk_at_the_last_good_address() {
    let app = spawn_app(settings(
        RealIpHeader::XForwardedFor,
        &["127.0.0.1", "10.0.0.0/8"],
    ))
    .await;
    check(
        &app,
        TRUSTED_PROXY,
        &[
            (
                &[("X-Forwarded-For", "203.0.113.7, not-an-ip, 10.0.0.5")],
                "10.0.0.5",
            ),
            (&[("X-Forwarded-For", "203.0.113.7, unknown")], "127.0.0.1"),
            (&[("X-Forwarded-For", "203.0.113.7, _hidden")], "127.0.0.1"),
            (
                &[("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-For", "x")],
                "127.0.0.1",
            ),
            (
                &[("X-Forwarded-For", "garbage, 203.0.113.7, 10.0.0.5")],
                "203.0.113.7",
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn forwarded_for_nodes_are_walked_like_x_forwarded_for() {
    let app = spawn_app(settings(
        RealIpHeader::Forwarded,
        &["127.0.0.1", "10.0.0.0/8"],
    ))
    .await;
    check(
        &app,
        TRUSTED_PROXY,
        &[
            (&[("Forwarded", "for=203.0.113.7")], "203.0.113.7"),
            (
                &[(
                    "Forwarded",
                    "for=198.51.100.1, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.5;by=10.0.0.6",
                )],
                "2001:db8:cafe::17",
            ),
            (
                &[
                    ("Forwarded", "for=198.51.100.1"),
                    ("Forwarded", "For=\"203.0.113.7:8080\";proto=http"),
                ],
                "203.0.113.7",
            ),
            (&[("Forwarded", "for=203.0.113.7, for=_hidden")], "127.0.0.1"),
            (&[("Forwarded", "for=203.0.113.7, for=unknown")], "127.0.0.1"),
            (&[("Forwarded", "for=203.0.113.7, proto=https")], "127.0.0.1"),
            (&[("Forwarded", "for=\"203.0.113.7")], "127.0.0.1"),
            // The other headers mean nothing in this mode.
            (&[("X-Forwarded-For", "203.0.113.7")], "127.0.0.1"),
        ],
    )
    .await;
}

#[tokio::test]
async fn x_real_ip_must_be_exactly_one_address() {
    let app = spawn_app(settings(RealIpHeader::XRealIp, &["127.0.0.1"])).await;
    check(
        &app,
        TRUSTED_PROXY,
        &[
            (&[("X-Real-IP", "203.0.113.9")], "203.0.113.9"),
            (&[("X-Real-IP", "203.0.113.9:8080")], "203.0.113.9"),
            (&[("X-Real-IP", "[2001:db8::9]:443")], "2001:db8::9"),
            (&[("X-Real-IP", "203.0.113.9, 198.51.100.1")], "127.0.0.1"),
            (
                &[("X-Real-IP", "203.0.113.9"), ("X-Real-IP", "198.51.100.1")],
                "127.0.0.1",
            ),
            (&[("X-Real-IP", "unknown")], "127.0.0.1"),
            (&[("X-Forwarded-For", "203.0.113.9")], "127.0.0.1"),
        ],
    )
    .await;
}

#[tokio::test]
async fn ports_brackets_quotes_and_ipv4_mapping_are_stripped() {
    let app = spawn_app(settings(RealIpHeader::XForwardedFor, &["127.0.0.1"])).await;
    let cases: &[(&str, &str)] = &[
        ("\"[2001:db8::1]:4711\"", "2001:db8::1"),
        ("[2001:db8::1]:4711", "2001:db8::1"),
        ("[2001:db8::1]", "2001:db8::1"),
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("192.0.2.1:8080", "192.0.2.1"),
        ("\"192.0.2.1\"", "192.0.2.1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("[::ffff:192.0.2.7]:80", "192.0.2.7"),
        ("  192.0.2.8  ", "192.0.2.8"),
    ];
    for (value, expected) in cases {
        check(
            &app,
            TRUSTED_PROXY,
            &[(&[("X-Forwarded-For", value)], expected)],
        )
        .await;
    }
}

#[tokio::test]
async fn a_trusted_ipv4_mapped_chain_entry_is_skipped_as_ipv4() {
    let app = spawn_app(settings(
        RealIpHeader::XForwardedFor,
        &["127.0.0.1", "10.0.0.0/8"],
    ))
    .await;
    check(
        &app,
        TRUSTED_PROXY,
        &[(
            &[("X-Forwarded-For", "203.0.113.7, ::ffff:10.0.0.5")],
            "203.0.113.7",
        )],
    )
    .await;
}

#[tokio::test]
async fn x_forwarded_proto_is_believed_only_from_trusted_peers() {
    let extra = Arc::new(|cfg: &mut web::ServiceConfig| {
        cfg.route(
            "/test/client",
            web::get().to(|client: ClientInfo| async move {
                HttpResponse::Ok().json(json!({
                    "ip": client.ip.to_string(),
                    "proto": client.forwarded_proto.map(|p| p.as_str()),
                }))
            }),
        );
    });
    let app = spawn_app_with(settings(RealIpHeader::XForwardedFor, &["127.0.0.1"]), extra).await;
    let ask = |source: &'static str, proto: Option<&'static str>| {
        let url = app.url("/test/client");
        async move {
            let mut req = client_from(source)
                .get(url)
                .header("X-Forwarded-For", "203.0.113.7");
            if let Some(proto) = proto {
                req = req.header("X-Forwarded-Proto", proto);
            }
            req.send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    assert_eq!(
        ask(TRUSTED_PROXY, Some("https")).await,
        json!({"ip": "203.0.113.7", "proto": "https"})
    );
    assert_eq!(
        ask(TRUSTED_PROXY, Some("http")).await,
        json!({"ip": "203.0.113.7", "proto": "http"})
    );
    assert_eq!(
        ask(TRUSTED_PROXY, None).await,
        json!({"ip": "203.0.113.7", "proto": null})
    );
    assert_eq!(
        ask(STRANGER, Some("https")).await,
        json!({"ip": "127.0.0.2", "proto": null})
    );
}

#[tokio::test]
async fn ipv6_peers_are_trusted_or_not_by_their_own_networks() {
    if !ipv6_loopback() {
        skip("no IPv6 on lo: cannot bind [::1]");
        return;
    }
    let chain = [("X-Forwarded-For", "2001:db8::42, ::1")];
    let client_ip = |trusted: &'static [&'static str]| async move {
        let mut settings = settings(RealIpHeader::XForwardedFor, trusted);
        settings.server.host = "::1".into();
        let app = spawn_app(settings).await;
        let body: Value = app
            .get_with("/api/status", &chain)
            .await
            .json()
            .await
            .unwrap();
        body["client_ip"].clone()
    };
    // ::1 trusted: its header is believed and the walk skips ::1 itself.
    assert_eq!(client_ip(&["127.0.0.1", "::1/128"]).await, "2001:db8::42");
    // Trusting IPv4 loopback and another IPv6 network says nothing about ::1: the peer counts.
    assert_eq!(client_ip(&["127.0.0.1", "2001:db8::/32"]).await, "::1");
}

#[test]
fn the_access_log_prints_the_resolved_address() {
    let server = BinaryServer::start(&[
        ("TANDEM__PROXY__TRUSTED", "127.0.0.1/32"),
        ("TANDEM__RATE_LIMIT__ENABLED", "false"),
    ]);
    let (status, _) = crate::helpers::raw_request(
        server.port,
        "GET /json HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 198.51.100.1, 203.0.113.77\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    assert_eq!(status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::time::Instant::now() < deadline && !server.stderr().contains("\"GET /json") {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("\"GET /json"))
        .unwrap_or_else(|| panic!("no access line in:\n{log}"));
    assert!(line.contains("203.0.113.77 \"GET /json"), "{line}");
    assert!(!line.contains("198.51.100.1"), "{line}");
}
