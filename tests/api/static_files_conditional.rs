//! docs/reference.md §5 "Conditional and partial": 304, 206, 416, If-Range, HEAD.

use crate::helpers::{StaticRoots, TestApp, decode, spawn_app};

async fn validators(app: &TestApp, path: &str, accept: &str) -> (String, String) {
    let res = app.get_with(path, &[("accept-encoding", accept)]).await;
    (
        res.headers()["etag"].to_str().unwrap().to_string(),
        res.headers()["last-modified"].to_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn if_none_match_answers_304_with_the_same_validators_and_vary() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let (etag, last_modified) = validators(&app, "/page.html", "br").await;
    let weak = format!("W/{etag}");
    let listed = format!("\"other\", {etag}");
    for inm in [etag.as_str(), weak.as_str(), listed.as_str(), "*"] {
        let res = app
            .get_with(
                "/page.html",
                &[("accept-encoding", "br"), ("if-none-match", inm)],
            )
            .await;
        assert_eq!(res.status(), 304, "{inm}");
        assert_eq!(res.headers()["etag"], etag.as_str());
        assert_eq!(res.headers()["last-modified"], last_modified.as_str());
        assert_eq!(res.headers()["vary"], "accept-encoding");
        assert_eq!(res.headers()["cache-control"], "no-cache");
        assert!(res.bytes().await.unwrap().is_empty());
    }
    // The br tag does not validate the gzip representation.
    let res = app
        .get_with(
            "/page.html",
            &[("accept-encoding", "gzip"), ("if-none-match", &etag)],
        )
        .await;
    assert_eq!(res.status(), 200);
    let res = app
        .get_with("/page.html", &[("if-none-match", "\"nope\"")])
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn if_modified_since_answers_304_unless_the_file_is_newer() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let (_, last_modified) = validators(&app, "/logo.png", "").await;
    let res = app
        .get_with("/logo.png", &[("if-modified-since", &last_modified)])
        .await;
    assert_eq!(res.status(), 304);
    assert_eq!(res.headers()["last-modified"], last_modified.as_str());
    assert!(res.headers().get("etag").is_some());

    let before =
        httpdate::parse_http_date(&last_modified).unwrap() - std::time::Duration::from_secs(10);
    let res = app
        .get_with(
            "/logo.png",
            &[("if-modified-since", &httpdate::fmt_http_date(before))],
        )
        .await;
    assert_eq!(res.status(), 200);

    // If-None-Match wins over If-Modified-Since.
    let res = app
        .get_with(
            "/logo.png",
            &[
                ("if-modified-since", &last_modified),
                ("if-none-match", "\"other\""),
            ],
        )
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn if_match_failure_is_412() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let (etag, _) = validators(&app, "/logo.png", "").await;
    assert_eq!(
        app.get_with("/logo.png", &[("if-match", &etag)])
            .await
            .status(),
        200
    );
    let res = app
        .get_with("/logo.png", &[("if-match", "\"other\"")])
        .await;
    assert_eq!(res.status(), 412);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn range_is_served_over_the_bytes_of_the_chosen_representation() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let br = std::fs::read(roots.htdocs().join("page.html.br")).unwrap();
    let len = br.len();
    let cases = [
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, len - 1),
        ("bytes=-20", len - 20, len - 1),
        ("bytes=5-100000", 5, len - 1),
    ];
    for (range, start, end) in cases {
        let res = app
            .get_with("/page.html", &[("accept-encoding", "br"), ("range", range)])
            .await;
        assert_eq!(res.status(), 206, "{range}");
        assert_eq!(res.headers()["content-encoding"], "br");
        assert_eq!(
            res.headers()["content-range"],
            format!("bytes {start}-{end}/{len}")
        );
        assert_eq!(
            res.headers()["content-length"],
            (end - start + 1).to_string()
        );
        assert_eq!(res.bytes().await.unwrap(), br[start..=end], "{range}");
    }
}

#[tokio::test]
async fn range_over_an_on_the_fly_representation_uses_its_compressed_bytes() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let full = app
        .get_with("/data.json", &[("accept-encoding", "gzip")])
        .await;
    let full = full.bytes().await.unwrap();
    let res = app
        .get_with(
            "/data.json",
            &[("accept-encoding", "gzip"), ("range", "bytes=0-99")],
        )
        .await;
    assert_eq!(res.status(), 206);
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes 0-99/{}", full.len())
    );
    assert_eq!(res.bytes().await.unwrap(), full[..100]);
    let original = std::fs::read(roots.htdocs().join("data.json")).unwrap();
    assert_eq!(decode(Some("gzip"), &full).await, original);
}

#[tokio::test]
async fn unsatisfiable_range_is_416_with_the_length() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let res = app
        .get_with("/logo.png", &[("range", "bytes=99999-")])
        .await;
    assert_eq!(res.status(), 416);
    assert_eq!(res.headers()["content-range"], "bytes */4104");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn malformed_or_multiple_ranges_get_the_whole_file() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    for range in ["bytes=0-1,5-6", "bytes=9-3", "pages=1-2", "bytes=x-y"] {
        let res = app.get_with("/logo.png", &[("range", range)]).await;
        assert_eq!(res.status(), 200, "{range}");
        assert_eq!(res.bytes().await.unwrap().len(), 4104);
    }
}

#[tokio::test]
async fn if_range_falls_back_to_the_whole_file_when_it_does_not_match() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let (etag, last_modified) = validators(&app, "/logo.png", "").await;
    let weak = format!("W/{etag}");
    let cases = [
        (etag.as_str(), 206),
        (last_modified.as_str(), 206),
        ("\"other\"", 200),
        (weak.as_str(), 200),
        ("Mon, 01 Jan 2001 00:00:00 GMT", 200),
    ];
    for (if_range, status) in cases {
        let res = app
            .get_with(
                "/logo.png",
                &[("range", "bytes=0-9"), ("if-range", if_range)],
            )
            .await;
        assert_eq!(res.status(), status, "{if_range}");
    }
}

#[tokio::test]
async fn head_ignores_range_and_sends_no_body() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let res = app.head_with("/logo.png", &[("range", "bytes=0-9")]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], "4104");
    assert!(res.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn if_unmodified_since_older_than_the_file_is_412() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let (_, last_modified) = validators(&app, "/logo.png", "").await;
    let modified = httpdate::parse_http_date(&last_modified).unwrap();
    let older = httpdate::fmt_http_date(modified - std::time::Duration::from_secs(10));
    let res = app
        .get_with("/logo.png", &[("if-unmodified-since", &older)])
        .await;
    assert_eq!(res.status(), 412);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    // Not modified since then: the condition holds and the file is sent.
    for since in [
        last_modified.clone(),
        httpdate::fmt_http_date(modified + std::time::Duration::from_secs(10)),
    ] {
        let res = app
            .get_with("/logo.png", &[("if-unmodified-since", &since)])
            .await;
        assert_eq!(res.status(), 200, "{since}");
        assert_eq!(res.bytes().await.unwrap().len(), 4104);
    }
}
