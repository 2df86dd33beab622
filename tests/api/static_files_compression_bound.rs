//! On-the-fly compression is bounded (`docs/reference.md §5` "Encodings"): only files held in
//! memory (up to 1 MiB) are compressed, once per version; a larger file without a sibling is
//! sent as it is, so no request can make tandem compress megabytes (issue 13).

use futures_util::future::join_all;

use crate::helpers::{StaticRoots, decode, spawn_app, tandem_command};

#[tokio::test]
async fn a_large_file_without_siblings_is_sent_uncompressed_with_its_exact_length() {
    let roots = StaticRoots::new();
    let line = "a large text file, without precompressed siblings\n";
    let content = line.repeat((3 << 20) / line.len());
    std::fs::write(roots.htdocs().join("big.txt"), &content).unwrap();
    let app = spawn_app(roots.settings()).await;

    let requests = (0..4).map(|_| {
        app.client
            .get(app.url("/big.txt"))
            .header("accept-encoding", "br, zstd, gzip")
            .send()
    });
    for res in join_all(requests).await {
        let res = res.unwrap();
        assert_eq!(res.status(), 200);
        assert!(res.headers().get("content-encoding").is_none());
        assert_eq!(res.headers()["content-length"], content.len().to_string());
        assert_eq!(res.headers()["vary"], "accept-encoding");
        assert_eq!(res.bytes().await.unwrap().len(), content.len());
    }

    // `tandem check` says so, and what would fix it.
    let out = tandem_command()
        .arg("check")
        .env("TANDEM__STATIC__HTDOCS", roots.htdocs())
        .env("TANDEM__STATIC__PUBLIC", roots.public())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("big.txt.br is missing; the original (over 1 MiB) will be sent uncompressed"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_file_held_in_memory_is_compressed_once_for_every_request() {
    let roots = StaticRoots::new();
    let line = "a text file small enough to be kept in memory\n";
    let content = line.repeat((512 << 10) / line.len());
    std::fs::write(roots.htdocs().join("medium.txt"), &content).unwrap();
    let app = spawn_app(roots.settings()).await;

    let requests = (0..4).map(|_| {
        app.client
            .get(app.url("/medium.txt"))
            .header("accept-encoding", "br")
            .send()
    });
    let mut seen = Vec::new();
    for res in join_all(requests).await {
        let res = res.unwrap();
        assert_eq!(res.headers()["content-encoding"], "br");
        // An exact length: a stored copy, not a stream compressed while sent.
        let length = res.headers()["content-length"]
            .to_str()
            .unwrap()
            .to_string();
        let etag = res.headers()["etag"].to_str().unwrap().to_string();
        let body = res.bytes().await.unwrap();
        assert_eq!(decode(Some("br"), &body).await, content.as_bytes());
        seen.push((length, etag, body));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "one copy for all");
}
