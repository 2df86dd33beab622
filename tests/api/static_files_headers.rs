//! docs/reference.md §5 "Headers": what every static answer carries.

use crate::helpers::{StaticRoots, spawn_app};

#[tokio::test]
async fn content_type_declares_utf8_for_text_and_javascript_only() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let cases = [
        ("/page.html", "text/html; charset=utf-8"),
        ("/public/app.js", "text/javascript; charset=utf-8"),
        ("/public/css/site.css", "text/css; charset=utf-8"),
        ("/robots.txt", "text/plain; charset=utf-8"),
        ("/data.json", "application/json"),
        ("/logo.png", "image/png"),
    ];
    for (path, expected) in cases {
        let res = app.get_with(path, &[("accept-encoding", "br")]).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(res.headers()["content-type"], expected, "{path}");
    }
}

#[tokio::test]
async fn every_file_answer_has_validators_ranges_nosniff_and_no_attachment() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    for path in [
        "/page.html",
        "/logo.png",
        "/public/app.3f9a2c1b.js",
        "/data.json",
    ] {
        for accept in ["", "br, gzip"] {
            let res = app.get_with(path, &[("accept-encoding", accept)]).await;
            let h = res.headers();
            assert_eq!(res.status(), 200, "{path}");
            assert!(h["etag"].to_str().unwrap().starts_with('"'), "{path}");
            assert!(
                httpdate::parse_http_date(h["last-modified"].to_str().unwrap()).is_ok(),
                "{path}"
            );
            assert_eq!(h["accept-ranges"], "bytes", "{path}");
            assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
            assert!(h.get("content-disposition").is_none(), "{path}");
            let length: usize = h["content-length"].to_str().unwrap().parse().unwrap();
            assert_eq!(res.bytes().await.unwrap().len(), length, "{path}");
        }
    }
}

#[tokio::test]
async fn vary_is_sent_whenever_a_file_has_siblings_or_is_compressible() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    // (path, Accept-Encoding, Vary expected)
    let cases = [
        ("/page.html", "", true),
        ("/page.html", "br", true),
        ("/public/css/site.css", "", true),
        ("/data.json", "identity", true),
        ("/index.html", "", true),
        ("/logo.png", "", false),
        ("/logo.png", "br, gzip", false),
    ];
    for (path, accept, vary) in cases {
        let res = app.get_with(path, &[("accept-encoding", accept)]).await;
        assert_eq!(
            res.headers().get("vary").map(|v| v.to_str().unwrap()),
            vary.then_some("accept-encoding"),
            "{path} {accept:?}"
        );
    }
}

#[tokio::test]
async fn each_representation_has_its_own_etag() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let mut tags = Vec::new();
    for (path, accept) in [
        ("/page.html", ""),
        ("/page.html", "br"),
        ("/page.html", "zstd"),
        ("/page.html", "gzip"),
        ("/data.json", ""),
        ("/data.json", "br"),
        ("/data.json", "gzip"),
    ] {
        let res = app.get_with(path, &[("accept-encoding", accept)]).await;
        let tag = res.headers()["etag"].to_str().unwrap().to_string();
        // Same request, same tag.
        let again = app.get_with(path, &[("accept-encoding", accept)]).await;
        assert_eq!(again.headers()["etag"].to_str().unwrap(), tag);
        assert!(!tags.contains(&tag), "{path} {accept}: {tag} repeats");
        tags.push(tag);
    }
}

#[tokio::test]
async fn head_answers_the_same_headers_without_a_body() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    for (path, accept) in [
        ("/page.html", "br"),
        ("/logo.png", ""),
        ("/data.json", "gzip"),
    ] {
        let get = app.get_with(path, &[("accept-encoding", accept)]).await;
        let head = app.head_with(path, &[("accept-encoding", accept)]).await;
        assert_eq!(head.status(), 200);
        for name in [
            "content-type",
            "content-encoding",
            "content-length",
            "etag",
            "last-modified",
            "cache-control",
            "vary",
            "accept-ranges",
        ] {
            assert_eq!(
                get.headers().get(name),
                head.headers().get(name),
                "{path} {name}"
            );
        }
        assert!(head.bytes().await.unwrap().is_empty());
    }
}
