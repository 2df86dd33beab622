//! docs/reference.md §5 "Encodings": which representation of a file is sent.

use std::time::Duration;

use tandem::config::Encoding;

use crate::helpers::{BinaryServer, StaticRoots, decode, spawn_app};

fn encoding_of(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get("content-encoding")
        .map(|v| v.to_str().unwrap().to_string())
}

#[tokio::test]
async fn accept_encoding_picks_the_best_fresh_sibling() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let htdocs = roots.htdocs();
    // (Accept-Encoding, expected Content-Encoding) for page.html, which has .br, .zst and .gz.
    let cases: &[(Option<&str>, Option<&str>)] = &[
        (None, None),
        (Some(""), None),
        (Some("identity"), None),
        (Some("gzip"), Some("gzip")),
        (Some("br"), Some("br")),
        (Some("zstd"), Some("zstd")),
        (Some("gzip, deflate, br, zstd"), Some("br")),
        (Some("gzip, zstd"), Some("zstd")),
        (Some("br;q=0.5, gzip;q=0.9"), Some("gzip")),
        (Some("br;q=0, gzip"), Some("gzip")),
        (Some("*"), Some("br")),
        (Some("*;q=0.5, br;q=0"), Some("zstd")),
        (Some("*;q=0"), None),
        (Some("br;q=0, zstd;q=0, gzip;q=0"), None),
        (Some("gzip;q=0.5, identity"), None),
        (Some("deflate, compress"), None),
        (Some("BR"), Some("br")),
    ];
    for (accept, expected) in cases {
        let headers: &[(&str, &str)] = match accept {
            Some(accept) => &[("accept-encoding", accept)],
            None => &[],
        };
        let res = app.get_with("/page.html", headers).await;
        assert_eq!(res.status(), 200, "{accept:?}");
        let got = encoding_of(&res);
        assert_eq!(got.as_deref(), *expected, "{accept:?}");
        let length: usize = res.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = res.bytes().await.unwrap();
        assert_eq!(body.len(), length, "{accept:?}");
        let file = match expected {
            None => htdocs.join("page.html"),
            Some("br") => htdocs.join("page.html.br"),
            Some("zstd") => htdocs.join("page.html.zst"),
            Some(_) => htdocs.join("page.html.gz"),
        };
        assert_eq!(body, std::fs::read(file).unwrap(), "{accept:?}");
    }
}

#[tokio::test]
async fn an_encoding_not_configured_is_never_served() {
    let roots = StaticRoots::new();
    let mut settings = roots.settings();
    settings.static_files.encodings = vec![Encoding::Gzip];
    let app = spawn_app(settings).await;
    for (accept, expected) in [("br", None), ("br, zstd", None), ("br, gzip", Some("gzip"))] {
        let res = app
            .get_with("/page.html", &[("accept-encoding", accept)])
            .await;
        assert_eq!(encoding_of(&res).as_deref(), expected, "{accept}");
    }

    let mut settings = roots.settings();
    settings.static_files.encodings = vec![];
    let app = spawn_app(settings).await;
    let res = app
        .get_with("/page.html", &[("accept-encoding", "br, zstd, gzip")])
        .await;
    assert_eq!(encoding_of(&res), None);
}

#[tokio::test]
async fn configured_order_breaks_ties() {
    let roots = StaticRoots::new();
    let mut settings = roots.settings();
    settings.static_files.encodings = vec![Encoding::Gzip, Encoding::Zstd, Encoding::Br];
    let app = spawn_app(settings).await;
    let res = app
        .get_with("/page.html", &[("accept-encoding", "br, zstd, gzip")])
        .await;
    assert_eq!(encoding_of(&res).as_deref(), Some("gzip"));
}

#[tokio::test]
async fn stale_brotli_sibling_is_never_served() {
    let roots = StaticRoots::new();
    std::fs::write(roots.htdocs().join("page.html.br"), b"an older page").unwrap();
    let app = spawn_app(roots.settings()).await;
    let res = app
        .get_with("/page.html", &[("accept-encoding", "br")])
        .await;
    // No fresh br sibling, other siblings exist: the original is the answer.
    assert_eq!(encoding_of(&res), None);
    assert_eq!(res.headers()["vary"], "accept-encoding");
    let body = res.bytes().await.unwrap();
    assert_eq!(
        body,
        std::fs::read(roots.htdocs().join("page.html")).unwrap()
    );

    // The fresh gzip sibling still is served.
    let res = app
        .get_with("/page.html", &[("accept-encoding", "br, gzip")])
        .await;
    assert_eq!(encoding_of(&res).as_deref(), Some("gzip"));
}

#[tokio::test]
async fn original_newer_than_every_sibling_is_compressed_on_the_fly_from_itself() {
    let roots = StaticRoots::new();
    let page = roots.htdocs().join("page.html");
    let mut content = std::fs::read(&page).unwrap();
    content.extend_from_slice(b"<!-- edited after precompression -->\n");
    std::fs::write(&page, &content).unwrap();
    let app = spawn_app(roots.settings()).await;
    let res = app
        .get_with("/page.html", &[("accept-encoding", "br")])
        .await;
    let encoding = encoding_of(&res);
    assert_eq!(encoding.as_deref(), Some("br"));
    let body = res.bytes().await.unwrap();
    assert_eq!(decode(encoding.as_deref(), &body).await, content);
}

#[tokio::test]
async fn compressible_file_without_siblings_is_compressed_on_the_fly() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let original = std::fs::read(roots.htdocs().join("data.json")).unwrap();
    for accept in ["br", "zstd", "gzip"] {
        let res = app
            .get_with("/data.json", &[("accept-encoding", accept)])
            .await;
        assert_eq!(res.status(), 200);
        assert_eq!(encoding_of(&res).as_deref(), Some(accept));
        assert_eq!(res.headers()["vary"], "accept-encoding");
        let length: usize = res.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = res.bytes().await.unwrap();
        assert_eq!(body.len(), length);
        assert!(body.len() < original.len());
        assert_eq!(decode(Some(accept), &body).await, original, "{accept}");
    }
}

#[tokio::test]
async fn incompressible_file_without_siblings_is_sent_as_it_is_without_vary() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let res = app
        .get_with("/logo.png", &[("accept-encoding", "br, gzip")])
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(encoding_of(&res), None);
    assert!(res.headers().get("vary").is_none());
    assert_eq!(res.headers()["content-type"], "image/png");
}

#[tokio::test]
async fn a_sibling_without_its_original_is_never_served() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let res = app
        .get_with("/orphan.txt", &[("accept-encoding", "br")])
        .await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn large_files_are_streamed_with_exact_length() {
    let roots = StaticRoots::new();
    let line = "a large text file, larger than the in-memory cache keeps whole\n";
    let content = line.repeat((3 << 20) / line.len());
    std::fs::write(roots.htdocs().join("big.txt"), &content).unwrap();
    let app = spawn_app(roots.settings()).await;

    let res = app.get("/big.txt").await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-length"], content.len().to_string());
    assert_eq!(res.headers()["vary"], "accept-encoding");
    assert_eq!(res.bytes().await.unwrap(), content.as_bytes());

    let res = app
        .get_with("/big.txt", &[("range", "bytes=1000000-1000009")])
        .await;
    assert_eq!(res.status(), 206);
    assert_eq!(res.headers()["content-length"], "10");
    assert_eq!(
        res.headers()["content-range"],
        format!("bytes 1000000-1000009/{}", content.len())
    );
    assert_eq!(
        res.bytes().await.unwrap(),
        content.as_bytes()[1_000_000..1_000_010]
    );

    let res = app.head_with("/big.txt", &[]).await;
    assert_eq!(res.headers()["content-length"], content.len().to_string());
    assert!(res.bytes().await.unwrap().is_empty());
}

#[test]
fn stale_siblings_are_warned_about_once_and_summarised_at_start_up() {
    let roots = StaticRoots::new();
    std::fs::write(roots.htdocs().join("page.html.br"), b"an older page").unwrap();
    let htdocs = roots.htdocs().display().to_string();
    let public = roots.public().display().to_string();
    let server = BinaryServer::start(&[
        ("TANDEM__STATIC__HTDOCS", htdocs.as_str()),
        ("TANDEM__STATIC__PUBLIC", public.as_str()),
        ("RUST_LOG", "warn"),
    ]);
    let request =
        "GET /page.html HTTP/1.1\r\nHost: x\r\nAccept-Encoding: br\r\nConnection: close\r\n\r\n";
    for _ in 0..3 {
        let (status, response) = crate::helpers::raw_request(server.port, request).unwrap();
        assert_eq!(status, 200);
        assert!(
            !response
                .to_ascii_lowercase()
                .contains("content-encoding: br")
        );
    }
    // Another spelling of the same path builds another cache entry; still one warning.
    std::thread::sleep(Duration::from_millis(600));
    let other = request.replace("/page.html", "/%70age.html");
    let (status, _) = crate::helpers::raw_request(server.port, &other).unwrap();
    assert_eq!(status, 200);
    let stderr = server.stderr();
    let summary: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("stale and") && l.contains("missing precompressed siblings"))
        .collect();
    assert_eq!(summary.len(), 1, "{stderr}");
    assert!(summary[0].contains("1 stale"), "{stderr}");
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("page.html.br does not decode to its original"))
        .count();
    assert_eq!(warnings, 1, "{stderr}");
}
