//! docs/reference.md §5 "Safety": nothing outside the two roots is ever read; hidden files stay hidden;
//! only GET and HEAD. Raw sockets, because HTTP clients normalise the paths under test.

use crate::helpers::{StaticRoots, raw_body, raw_request, spawn_app};

fn get_raw(port: u16, target: &str) -> (u16, String) {
    raw_request(
        port,
        &format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
    .unwrap_or_else(|err| panic!("{target}: {err}"))
}

// Multi-threaded: the raw requests block, and the server must keep running meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traversal_payloads_get_400_or_404_and_never_a_file() {
    let roots = StaticRoots::new();
    // A secret beside the roots, where traversal would land.
    std::fs::write(roots.dir.path().join("secret.txt"), "TOP-SECRET\n").unwrap();
    let app = spawn_app(roots.settings()).await;
    let port = app.addr.port();
    let payloads = [
        "/../secret.txt",
        "/../../../../etc/passwd",
        "/public/../secret.txt",
        "/public/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/public/%2e%2e/%2e%2e/secret.txt",
        "/.%2e/secret.txt",
        "/%2e%2e%2fsecret.txt",
        "/public%2f..%2f..%2fsecret.txt",
        "/..%5csecret.txt",
        "/..\\secret.txt",
        "/public/..\\..\\secret.txt",
        "/%5c..%5c..%5csecret.txt",
        "/index.html%00.png",
        "/%00",
        "/%c0%ae%c0%ae/secret.txt",
        "/%ff/secret.txt",
        "/%e0%80%af../secret.txt",
        "/./index.html",
        "/%252e%252e/secret.txt",
        "/....//secret.txt",
        "//../secret.txt",
    ];
    for payload in payloads {
        let (status, response) = get_raw(port, payload);
        assert!(
            status == 400 || status == 404,
            "{payload}: {status}\n{response}"
        );
        assert!(!response.contains("TOP-SECRET"), "{payload}");
        assert!(!response.contains("root:"), "{payload}");
        assert!(
            response.contains("application/problem+json"),
            "{payload}: {response}"
        );
    }
}

// Multi-threaded: the raw requests block, and the server must keep running meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotfiles_and_dot_directories_are_404() {
    let roots = StaticRoots::new();
    std::fs::write(roots.public().join(".secret.js"), "hidden").unwrap();
    let app = spawn_app(roots.settings()).await;
    let port = app.addr.port();
    for path in [
        "/.env",
        "/.hidden/secret.txt",
        "/.hidden/",
        "/.hidden",
        "/%2eenv",
        "/public/.secret.js",
        "/public/.keep",
        "/docs/../.env",
    ] {
        let (status, response) = get_raw(port, path);
        assert!(
            status == 404 || (status == 400 && path.contains("..")),
            "{path}: {status}"
        );
        assert!(
            !raw_body(&response).contains("SECRET=") && !raw_body(&response).contains("hidden")
        );
    }
}

#[tokio::test]
async fn symlinks_leading_outside_a_root_are_404() {
    let roots = StaticRoots::new();
    let outside = roots.dir.path().join("outside.txt");
    std::fs::write(&outside, "OUTSIDE\n").unwrap();
    let htdocs = roots.htdocs();
    std::os::unix::fs::symlink(&outside, htdocs.join("escape.txt")).unwrap();
    std::os::unix::fs::symlink("../outside.txt", htdocs.join("relative-escape.txt")).unwrap();
    std::os::unix::fs::symlink(roots.dir.path(), htdocs.join("escape-dir")).unwrap();
    std::os::unix::fs::symlink("/etc", roots.public().join("etc")).unwrap();
    // A symlink to a dotfile inside the root is as hidden as the dotfile.
    std::os::unix::fs::symlink(".env", htdocs.join("env.txt")).unwrap();
    // A sibling escaping the root is not served either.
    std::os::unix::fs::symlink(&outside, htdocs.join("robots.txt.br")).unwrap();
    let app = spawn_app(roots.settings()).await;
    for path in [
        "/escape.txt",
        "/relative-escape.txt",
        "/escape-dir/outside.txt",
        "/escape-dir/",
        "/public/etc/passwd",
        "/env.txt",
    ] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 404, "{path}");
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("OUTSIDE") && !body.contains("SECRET"),
            "{path}"
        );
    }
    let res = app
        .get_with("/robots.txt", &[("accept-encoding", "br")])
        .await;
    assert_eq!(res.status(), 200);
    assert!(!res.text().await.unwrap().contains("OUTSIDE"));
}

#[tokio::test]
async fn symlinks_inside_a_root_are_served() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    let res = app.get("/linked-page.html").await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.bytes().await.unwrap(),
        std::fs::read(roots.htdocs().join("page.html")).unwrap()
    );
}

#[tokio::test]
async fn methods_other_than_get_and_head_are_405_with_allow() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        for path in ["/page.html", "/missing.txt", "/public/app.js"] {
            let res = app.request(method.parse().unwrap(), path, &[], None).await;
            assert_eq!(res.status(), 405, "{method} {path}");
            assert_eq!(res.headers()["allow"], "GET, HEAD");
            assert_eq!(res.headers()["content-type"], "application/problem+json");
        }
    }
}

#[tokio::test]
async fn routes_win_over_files_with_the_same_path() {
    let roots = StaticRoots::new();
    let app = spawn_app(roots.settings()).await;
    // `htdocs/json` exists; however the path is spelled, the route answers, not the file.
    for path in ["/json", "/%6Ason", "/j%73o%6E"] {
        let res = app.get(path).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(
            res.text().await.unwrap(),
            r#"{"message":"Hello, World!"}"#,
            "{path}"
        );
    }
}

#[test]
fn tandem_check_lists_sibling_problems_and_files_shadowed_by_routes() {
    let roots = StaticRoots::new();
    std::fs::write(roots.htdocs().join("page.html.br"), b"an older page").unwrap();
    let output = crate::helpers::tandem_command()
        .arg("check")
        .env("TANDEM__STATIC__HTDOCS", roots.htdocs())
        .env("TANDEM__STATIC__PUBLIC", roots.public())
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("page.html.br does not decode to its original"),
        "{stderr}"
    );
    assert!(stderr.contains("data.json.br is missing"), "{stderr}");
    assert!(
        stderr.contains("json can never be served: the route /json answers its path"),
        "{stderr}"
    );
    // Incompressible files without siblings are fine.
    assert!(!stderr.contains("logo.png"), "{stderr}");
}
