//! docs/reference.md §10 `nginx.conf.example`, proven with the real Debian nginx running this
//! very file in front of the real tandem binary, in both deployments: `static.mode = "nginx"`
//! (the file as shipped) and `static.mode = "app"` (the commented proxy-everything variant).
//!
//! The file is changed only where a test must: listen port, roots, upstream address, and the
//! pid/log/temp paths moved into a temporary prefix. Each rewrite must match, so an edit to the
//! example that a rewrite no longer finds fails loudly instead of testing something else.
//!
//! Without nginx (and its brotli module and the brotli CLI) these tests say so and pass, except
//! under CI (`CI` set to anything but empty, `0` or `false`), where a missing tool is a failure.

use std::{
    collections::HashMap,
    fs,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{BinaryServer, free_port};

const NGINX: &str = "/usr/sbin/nginx";
const BROTLI_MODULE: &str = "/usr/lib/nginx/modules/ngx_http_brotli_static_module.so";
const EXAMPLE: &str = include_str!("../../nginx.conf.example");
/// The two sed expressions the example's header documents for deriving the `app` variant.
const APP_MODE_SED: [&str; 2] = [
    r#"/^ *# >>> static.mode = "nginx"/,/^ *# <<< static.mode = "nginx"/d"#,
    r"s/^\( *\)#APP-MODE# /\1/",
];
/// A source address other than nginx's own 127.0.0.1, so "the address tandem sees" is provable.
const CLIENT_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// tandem's request-ID rule (docs/reference.md §8), which the example's `map` must copy.
const REQUEST_ID_RULE: &str = "^[A-Za-z0-9._:-]{1,128}$";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Nginx,
    App,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Nginx => "nginx",
            Mode::App => "app",
        }
    }
}

/// `Some(reason)` when the tools these tests need are missing.
fn missing_tools() -> Option<String> {
    let missing: Vec<&str> = [
        (NGINX, "nginx (apt-get install nginx)"),
        (
            BROTLI_MODULE,
            "the brotli_static module (apt-get install libnginx-mod-http-brotli-static)",
        ),
        ("/usr/bin/brotli", "the brotli CLI (apt-get install brotli)"),
    ]
    .into_iter()
    .filter(|(path, _)| !Path::new(path).exists())
    .map(|(_, what)| what)
    .collect();
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// Whether this run is CI, where a test that cannot run must fail instead of skipping.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// Returns early (skip) without the tools, or fails under CI.
macro_rules! require_nginx {
    () => {
        if let Some(missing) = missing_tools() {
            if under_ci() {
                panic!("CI is set and the nginx end-to-end tests cannot run: missing {missing}");
            }
            eprintln!("SKIPPED nginx end-to-end test: missing {missing}");
            return;
        }
    };
}

/// The example as a given deployment uses it (the `app` variant by the documented sed).
fn example_for(mode: Mode) -> String {
    match mode {
        Mode::Nginx => EXAMPLE.to_string(),
        Mode::App => {
            let out = Command::new("sed")
                .args(["-e", APP_MODE_SED[0], "-e", APP_MODE_SED[1]])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .and_then(|mut child| {
                    use std::io::Write;
                    child
                        .stdin
                        .take()
                        .expect("sed stdin")
                        .write_all(EXAMPLE.as_bytes())?;
                    child.wait_with_output()
                })
                .expect("sed runs");
            assert!(out.status.success(), "sed failed");
            String::from_utf8(out.stdout).expect("sed output is UTF-8")
        }
    }
}

fn replace_once(conf: &str, from: &str, to: &str) -> String {
    assert_eq!(
        conf.matches(from).count(),
        1,
        "nginx.conf.example should contain {from:?} exactly once"
    );
    conf.replacen(from, to, 1)
}

/// The test-only changes: port, roots, upstream, and pid/log/temp paths under `prefix`.
fn rewrite(mode: Mode, prefix: &Path, port: u16, upstream_port: u16) -> String {
    let p = prefix.display();
    let mut conf = example_for(mode);
    conf = replace_once(&conf, "listen 80;", &format!("listen 127.0.0.1:{port};"));
    conf = replace_once(
        &conf,
        "server 127.0.0.1:8080;",
        &format!("server 127.0.0.1:{upstream_port};"),
    );
    conf = replace_once(&conf, "pid /run/nginx.pid;", &format!("pid {p}/nginx.pid;"));
    conf = replace_once(
        &conf,
        "error_log /var/log/nginx/error.log",
        &format!("error_log {p}/error.log"),
    );
    conf = replace_once(
        &conf,
        "access_log /var/log/nginx/access.log",
        &format!("access_log {p}/access.log"),
    );
    conf = replace_once(
        &conf,
        "\nhttp {\n",
        &format!(
            "\nhttp {{\n    client_body_temp_path {p}/tmp/body;\n    proxy_temp_path {p}/tmp/proxy;\n    \
             fastcgi_temp_path {p}/tmp/fastcgi;\n    uwsgi_temp_path {p}/tmp/uwsgi;\n    scgi_temp_path {p}/tmp/scgi;\n"
        ),
    );
    if mode == Mode::Nginx {
        conf = replace_once(
            &conf,
            "root /srv/tandem/htdocs;",
            &format!("root {p}/site/htdocs;"),
        );
        conf = replace_once(&conf, "root /srv/tandem;", &format!("root {p}/site;"));
    } else {
        assert!(
            !conf.contains("root /srv/tandem"),
            "the app variant serves no files"
        );
        assert!(
            !conf
                .lines()
                .any(|l| l.trim_start().starts_with("#APP-MODE#")),
            "every #APP-MODE# line is enabled"
        );
    }
    conf
}

/// A site in the temporary prefix, with precompressed siblings made by the real CLIs.
struct SiteFiles {
    index: Vec<u8>,
    index_br: Vec<u8>,
    css: Vec<u8>,
    css_br: Vec<u8>,
    css_gz: Vec<u8>,
    fingerprinted: Vec<u8>,
}

fn make_site(prefix: &Path) -> SiteFiles {
    let htdocs = prefix.join("site/htdocs");
    let public = prefix.join("site/public");
    fs::create_dir_all(&htdocs).unwrap();
    fs::create_dir_all(&public).unwrap();
    let index = "<!doctype html><title>tandem behind nginx</title>\n"
        .repeat(40)
        .into_bytes();
    let css = "body { font-family: system-ui, sans-serif; color: #222; }\n"
        .repeat(60)
        .into_bytes();
    fs::write(htdocs.join("index.html"), &index).unwrap();
    fs::write(public.join("site.css"), &css).unwrap();
    let fingerprinted = b"console.log('fingerprinted');\n".to_vec();
    fs::write(public.join("app.0123abcd.js"), &fingerprinted).unwrap();
    for file in [htdocs.join("index.html"), public.join("site.css")] {
        let status = Command::new("brotli")
            .arg("-kf")
            .arg(&file)
            .status()
            .unwrap();
        assert!(status.success(), "brotli {}", file.display());
    }
    let status = Command::new("gzip")
        .args(["-kf9"])
        .arg(public.join("site.css"))
        .status()
        .unwrap();
    assert!(status.success(), "gzip site.css");
    SiteFiles {
        index,
        index_br: fs::read(htdocs.join("index.html.br")).unwrap(),
        css,
        css_br: fs::read(public.join("site.css.br")).unwrap(),
        css_gz: fs::read(public.join("site.css.gz")).unwrap(),
        fingerprinted,
    }
}

/// nginx running the rewritten example in the foreground; stopped (and waited for) on drop.
struct Nginx {
    child: Child,
    port: u16,
    prefix: PathBuf,
    site: Option<SiteFiles>,
    _dir: tempfile::TempDir,
}

fn prepare_prefix(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    // When the master runs as root, workers run as the file's `user` and must reach the roots.
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir_all(dir.join("tmp")).unwrap();
}

fn nginx_t(conf_path: &Path, prefix: &Path) -> std::process::Output {
    Command::new(NGINX)
        .arg("-t")
        .arg("-p")
        .arg(prefix)
        .arg("-c")
        .arg(conf_path)
        .output()
        .unwrap()
}

/// Where the test nginx listens: 127.0.0.1 only, or [::1] on the same port as well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Listen {
    Ipv4,
    DualStack,
}

impl Nginx {
    fn start(mode: Mode, upstream_port: u16) -> Self {
        Self::start_listening(mode, upstream_port, Listen::Ipv4)
    }

    fn start_listening(mode: Mode, upstream_port: u16, listen: Listen) -> Self {
        Self::start_edited(mode, upstream_port, listen, |conf| conf)
    }

    /// Starts nginx on the rewritten example after `edit` (a test's own change on top of it).
    fn start_edited(
        mode: Mode,
        upstream_port: u16,
        listen: Listen,
        edit: impl FnOnce(String) -> String,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().to_path_buf();
        prepare_prefix(&prefix);
        let site = (mode == Mode::Nginx).then(|| make_site(&prefix));
        let port = free_port();
        let conf_path = prefix.join("nginx.conf");
        let mut conf = edit(rewrite(mode, &prefix, port, upstream_port));
        if listen == Listen::DualStack {
            let ipv4 = format!("listen 127.0.0.1:{port};");
            conf = replace_once(&conf, &ipv4, &format!("{ipv4} listen [::1]:{port};"));
        }
        fs::write(&conf_path, conf).unwrap();
        let stderr = fs::File::create(prefix.join("stderr.log")).unwrap();
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut nginx = Self {
            child,
            port,
            prefix,
            site,
            _dir: dir,
        };
        nginx.wait_until_listening();
        nginx
    }

    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nginx exited with {status}:\n{}", self.logs());
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("nginx did not listen in time:\n{}", self.logs());
    }

    fn logs(&self) -> String {
        ["stderr.log", "error.log"]
            .iter()
            .map(|f| fs::read_to_string(self.prefix.join(f)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    fn ipv6_url(&self, path: &str) -> String {
        format!("http://[::1]:{}{}", self.port, path)
    }

    fn site(&self) -> &SiteFiles {
        self.site.as_ref().expect("nginx mode has a site")
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM lets the master stop its workers; SIGKILL would orphan them on the port.
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// tandem (the binary) and nginx in front of it, configured for `mode`.
fn start_pair(mode: Mode, extra_env: &[(&str, &str)]) -> (BinaryServer, Nginx) {
    let mut env = vec![("TANDEM__STATIC__MODE", mode.as_str())];
    env.extend_from_slice(extra_env);
    let tandem = BinaryServer::start(&env);
    let nginx = Nginx::start(mode, tandem.port);
    (tandem, nginx)
}

/// A client that sends from 127.0.0.3, never follows redirects and never decodes bodies.
fn client() -> reqwest::Client {
    client_from(IpAddr::V4(CLIENT_ADDR))
}

fn client_from(addr: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// How the test nginx should listen: dual-stack when this machine can bind ::1. Without IPv6
/// the IPv6 half of a test is skipped with a printed line, or fails under CI.
fn dual_stack_or_skip(test: &str) -> Listen {
    if std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok() {
        return Listen::DualStack;
    }
    assert!(
        !under_ci(),
        "CI is set and ::1 cannot be bound: {test} cannot check IPv6 clients"
    );
    eprintln!("SKIPPED the IPv6 half of {test}: ::1 cannot be bound");
    Listen::Ipv4
}

fn header<'a>(res: &'a reqwest::Response, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("")
}

/// The block of the example that opens with `opening` (e.g. "location = /socket {"), up to the
/// brace closing it at the same indentation.
fn block(conf: &str, opening: &str) -> String {
    let start = conf
        .find(opening)
        .unwrap_or_else(|| panic!("no {opening:?} block"));
    let line_start = conf[..start].rfind('\n').map_or(0, |i| i + 1);
    let closing = format!("\n{}}}", &conf[line_start..start]);
    let end = conf[start..].find(&closing).expect("block end") + start;
    conf[start..end].to_string()
}

fn seconds_of(block: &str, directive: &str) -> u64 {
    let line = block
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(&format!("{directive} ")))
        .unwrap_or_else(|| panic!("no {directive} in {block}"));
    line.split('#')
        .next()
        .unwrap()
        .trim_start_matches(directive)
        .trim()
        .trim_end_matches(';')
        .trim_end_matches('s')
        .parse()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The file itself (no nginx needed).

#[test]
fn socket_location_outlives_tandems_heartbeat_and_client_timeout() {
    let defaults = tandem::Settings::default();
    let socket = block(EXAMPLE, "location = /socket {");
    let read_timeout = seconds_of(&socket, "proxy_read_timeout");
    assert!(read_timeout > defaults.websocket.client_timeout_secs);
    assert!(read_timeout > defaults.websocket.heartbeat_secs);
    assert!(socket.contains("proxy_set_header Connection $connection_upgrade;"));
    assert!(socket.contains("proxy_set_header Upgrade $http_upgrade;"));
    // A location with its own proxy_set_header inherits none from the server block.
    for forwarded in [
        "X-Forwarded-For $remote_addr",
        "X-Real-IP $remote_addr",
        "Forwarded \"for=$forwarded_for_node;proto=$scheme\"",
        "X-Request-ID $tandem_request_id",
        "Host $host",
    ] {
        assert!(socket.contains(forwarded), "/socket forwards {forwarded}");
    }
}

#[test]
fn upstream_idle_connections_close_before_tandem_would_close_them() {
    let defaults = tandem::Settings::default();
    let upstream = block(EXAMPLE, "upstream tandem {");
    assert!(upstream.contains("keepalive 32;"));
    assert!(seconds_of(&upstream, "keepalive_timeout") < defaults.server.keep_alive_secs);
    // Upstream keepalive only works over HTTP/1.1 with the client's Connection header dropped.
    let server = block(EXAMPLE, "server {");
    assert!(server.contains("\n        proxy_http_version 1.1;"));
    assert!(server.contains("\n        proxy_set_header Connection \"\";"));
    assert!(
        seconds_of(&server, "proxy_read_timeout") > defaults.server.shutdown_timeout_secs,
        "a request may take as long as a graceful stop allows"
    );
}

#[test]
fn request_id_map_uses_tandems_rule() {
    assert!(EXAMPLE.contains(&format!("\"~{REQUEST_ID_RULE}\"  $http_x_request_id;")));
    // The rule in the map is the rule tandem applies.
    let max = "a".repeat(128);
    assert!(tandem::request_id::is_valid_id(&max, 128));
    assert!(!tandem::request_id::is_valid_id(&format!("{max}a"), 128));
}

#[test]
fn app_variant_is_documented_by_the_same_sed_the_tests_run() {
    for expr in APP_MODE_SED {
        assert!(EXAMPLE.contains(expr), "the header documents {expr}");
    }
    assert!(EXAMPLE.contains("#APP-MODE# location / {"));
}

// ---------------------------------------------------------------------------------------------
// nginx -t

#[test]
fn shipped_example_passes_nginx_t_unchanged() {
    require_nginx!();
    // Unchanged, it writes Debian's /run and /var/log paths, which only root may open.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED the unchanged-file nginx -t: not root (the rewritten file is checked)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("nginx.conf");
    fs::write(&conf, EXAMPLE).unwrap();
    let out = nginx_t(&conf, Path::new("/etc/nginx"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn rewritten_passes_nginx_t(mode: Mode) {
    let dir = tempfile::tempdir().unwrap();
    prepare_prefix(dir.path());
    let conf = dir.path().join("nginx.conf");
    fs::write(&conf, rewrite(mode, dir.path(), free_port(), free_port())).unwrap();
    let out = nginx_t(&conf, dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("test is successful"), "{stderr}");
}

#[test]
fn nginx_mode_configuration_passes_nginx_t() {
    require_nginx!();
    rewritten_passes_nginx_t(Mode::Nginx);
}

#[test]
fn app_mode_variant_passes_nginx_t() {
    require_nginx!();
    rewritten_passes_nginx_t(Mode::App);
}

// ---------------------------------------------------------------------------------------------
// static.mode = "nginx": nginx serves the files

#[tokio::test]
async fn nginx_serves_static_hits_from_brotli_siblings_without_asking_tandem() {
    require_nginx!();
    let (tandem, nginx) = start_pair(Mode::Nginx, &[]);
    let site = nginx.site();
    let http = client();

    let res = http
        .get(nginx.url("/public/site.css"))
        .header("Accept-Encoding", "gzip, deflate, br")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-encoding"), "br");
    assert_eq!(header(&res, "vary"), "Accept-Encoding");
    assert_eq!(header(&res, "content-type"), "text/css; charset=utf-8");
    assert_eq!(header(&res, "cache-control"), "public, max-age=3600");
    assert_eq!(header(&res, "x-content-type-options"), "nosniff");
    assert_eq!(res.bytes().await.unwrap(), site.css_br);

    // `/` is htdocs/index.html through `$uri/` and the index module, still precompressed.
    let res = http
        .get(nginx.url("/"))
        .header("Accept-Encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-encoding"), "br");
    assert_eq!(header(&res, "cache-control"), "no-cache");
    assert_eq!(res.bytes().await.unwrap(), site.index_br);

    // Without Accept-Encoding the original bytes.
    let res = http.get(nginx.url("/")).send().await.unwrap();
    assert_eq!(header(&res, "content-encoding"), "");
    assert_eq!(res.bytes().await.unwrap(), site.index);

    // A miss reaches tandem, which logs it; the hits above never appear in its log.
    let miss = "/no-such-file-e2e-marker";
    let res = http.get(nginx.url(miss)).send().await.unwrap();
    assert_eq!(res.status(), 404);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tandem.stderr().contains(miss) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = tandem.stderr();
    assert!(log.contains(miss), "tandem logged the miss:\n{log}");
    assert!(
        !log.contains("/public/site.css"),
        "tandem saw a static hit:\n{log}"
    );
    assert!(
        !log.contains("\"GET /\""),
        "tandem saw a static hit:\n{log}"
    );
}

#[tokio::test]
async fn gzip_siblings_are_served_even_to_requests_that_came_through_a_proxy() {
    require_nginx!();
    let (_tandem, nginx) = start_pair(Mode::Nginx, &[]);
    let site = nginx.site();
    let res = client()
        .get(nginx.url("/public/site.css"))
        .header("Accept-Encoding", "gzip")
        .header("Via", "1.1 cdn.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "content-encoding"), "gzip");
    assert_eq!(header(&res, "vary"), "Accept-Encoding");
    assert_eq!(res.bytes().await.unwrap(), site.css_gz);

    let res = client()
        .get(nginx.url("/public/site.css"))
        .header("Accept-Encoding", "identity")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&res, "content-encoding"), "");
    assert_eq!(res.bytes().await.unwrap(), site.css);
}

#[tokio::test]
async fn fingerprinted_assets_are_immutable_and_plain_ones_are_not() {
    require_nginx!();
    let (_tandem, nginx) = start_pair(Mode::Nginx, &[]);
    let res = client()
        .get(nginx.url("/public/app.0123abcd.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert!(header(&res, "x-request-id").len() == 32);
    assert_eq!(res.bytes().await.unwrap(), nginx.site().fingerprinted);

    let res = client()
        .get(nginx.url("/public/site.css"))
        .send()
        .await
        .unwrap();
    assert!(!header(&res, "cache-control").contains("immutable"));
}

#[tokio::test]
async fn routes_and_misses_fall_back_to_tandem() {
    require_nginx!();
    let (_tandem, nginx) = start_pair(Mode::Nginx, &[]);
    let http = client();

    let res = http.get(nginx.url("/api/status")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "cache-control"), "no-store");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["static_mode"], "nginx");

    let res = http.get(nginx.url("/json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"message": "Hello, World!"}));

    for path in ["/missing.txt", "/public/missing.css", "/.env"] {
        let res = http.get(nginx.url(path)).send().await.unwrap();
        assert_eq!(res.status(), 404, "{path}");
        assert_eq!(
            header(&res, "content-type"),
            "application/problem+json",
            "{path} is tandem's 404"
        );
        assert_eq!(res.headers().get_all("x-request-id").iter().count(), 1);
    }
}

#[tokio::test]
async fn request_id_is_kept_when_valid_replaced_when_not_and_always_returned() {
    require_nginx!();
    let (_tandem, nginx) = start_pair(Mode::Nginx, &[]);
    let http = client();
    for path in ["/public/site.css", "/api/status"] {
        let res = http
            .get(nginx.url(path))
            .header("X-Request-ID", "e2e-Req.1:a_b")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let ids: Vec<_> = res.headers().get_all("x-request-id").iter().collect();
        assert_eq!(ids, ["e2e-Req.1:a_b"], "{path}: exactly one, the client's");
        if path == "/api/status" {
            let body: Value = res.json().await.unwrap();
            assert_eq!(body["request_id"], "e2e-Req.1:a_b", "tandem got it");
        }

        let res = http
            .get(nginx.url(path))
            .header("X-Request-ID", "not valid!")
            .send()
            .await
            .unwrap();
        let ids: Vec<String> = res
            .headers()
            .get_all("x-request-id")
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 1, "{path}");
        assert_eq!(ids[0].len(), 32, "{path}: nginx's $request_id");
        assert!(ids[0].bytes().all(|b| b.is_ascii_hexdigit()));
        if path == "/api/status" {
            let body: Value = res.json().await.unwrap();
            assert_eq!(
                body["request_id"],
                ids[0].as_str(),
                "tandem used nginx's ID"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Both deployments

/// `/api/status`'s `client_ip` for a request from `client` through nginx that forges every
/// header tandem could read the address from, at once.
async fn client_ip_despite_forged_headers(client: &reqwest::Client, url: String) -> Value {
    let res = client
        .get(url)
        .header("X-Forwarded-For", "203.0.113.66")
        .header("X-Real-IP", "203.0.113.67")
        .header("Forwarded", "for=203.0.113.68")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["client_ip"].clone()
}

/// For every documented `proxy.real_ip_header`, tandem behind the example reports the real peer
/// (from 127.0.0.3, and from ::1 where the machine has IPv6, which needs `for="[::1]"`).
async fn client_ip_is_nginxs_peer_and_cannot_be_spoofed(mode: Mode) {
    let listen = dual_stack_or_skip("the client-address test");
    for real_ip_header in ["X-Forwarded-For", "X-Real-IP", "Forwarded"] {
        let tandem = BinaryServer::start(&[
            ("TANDEM__STATIC__MODE", mode.as_str()),
            ("TANDEM__PROXY__REAL_IP_HEADER", real_ip_header),
        ]);
        let nginx = Nginx::start_listening(mode, tandem.port, listen);
        let seen = client_ip_despite_forged_headers(&client(), nginx.url("/api/status")).await;
        assert_eq!(
            seen,
            CLIENT_ADDR.to_string(),
            "proxy.real_ip_header = {real_ip_header}"
        );
        if listen == Listen::DualStack {
            let from_v6 = client_from(IpAddr::V6(Ipv6Addr::LOCALHOST));
            let seen =
                client_ip_despite_forged_headers(&from_v6, nginx.ipv6_url("/api/status")).await;
            assert_eq!(
                seen, "::1",
                "proxy.real_ip_header = {real_ip_header}, over IPv6"
            );
        }
    }
}

async fn websocket_echoes_through_nginx(mode: Mode) {
    let (_tandem, nginx) = start_pair(mode, &[]);
    let url = format!("ws://127.0.0.1:{}/socket", nginx.port);
    let (mut ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("WebSocket handshake through nginx");
    assert_eq!(response.status(), 101);
    for text in ["hello through nginx", "second message"] {
        ws.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an echo in time")
            .expect("the socket stays open")
            .unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).await.unwrap();
}

async fn over_the_limit_is_a_json_429_and_probes_stay_up(mode: Mode) {
    // tandem's own limiter off: every 429 here is nginx's.
    let (_tandem, nginx) = start_pair(mode, &[("TANDEM__RATE_LIMIT__ENABLED", "false")]);
    let http = client();
    let responses =
        futures_util::future::join_all((0..60).map(|_| http.get(nginx.url("/json")).send())).await;
    let mut by_status: HashMap<u16, Vec<reqwest::Response>> = HashMap::new();
    for res in responses {
        let res = res.unwrap();
        by_status
            .entry(res.status().as_u16())
            .or_default()
            .push(res);
    }
    assert!(by_status.contains_key(&200), "the burst is allowed");
    let limited = by_status
        .remove(&429)
        .expect("some requests over the limit");
    let res = limited.into_iter().next().unwrap();
    assert_eq!(header(&res, "content-type"), "application/problem+json");
    assert_eq!(header(&res, "retry-after"), "1");
    let id = header(&res, "x-request-id").to_string();
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], 429);
    assert_eq!(body["title"], "Too Many Requests");
    assert_eq!(body["retry_after"], 1);
    assert_eq!(body["request_id"], id.as_str());

    // While the client is still being limited, probes answer.
    let paths = std::iter::repeat_n("/json", 30).chain(["/health", "/healthz", "/readyz"]);
    let responses = futures_util::future::join_all(paths.map(|path| {
        let request = http.get(nginx.url(path)).send();
        async move { (path, request.await.unwrap().status().as_u16()) }
    }))
    .await;
    assert!(
        responses
            .iter()
            .any(|&(path, status)| path == "/json" && status == 429),
        "still over the limit: {responses:?}"
    );
    for (path, status) in responses.iter().filter(|(path, _)| *path != "/json") {
        assert_eq!(*status, 200, "{path} is outside the limit");
    }
}

async fn stopped_tandem_is_a_json_502(mode: Mode) {
    let (mut tandem, nginx) = start_pair(mode, &[]);
    let http = client();
    let res = http.get(nginx.url("/json")).send().await.unwrap();
    assert_eq!(res.status(), 200);

    tandem.signal(libc::SIGTERM);
    assert_eq!(tandem.wait_exit(Duration::from_secs(20)), Some(0));

    let res = http
        .get(nginx.url("/api/status"))
        .header("X-Request-ID", "while-down-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 502);
    assert_eq!(header(&res, "content-type"), "application/problem+json");
    assert_eq!(header(&res, "x-request-id"), "while-down-1");
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], 502);
    assert_eq!(body["title"], "Bad Gateway");
    assert_eq!(body["request_id"], "while-down-1");

    if mode == Mode::Nginx {
        // The files do not depend on tandem.
        let res = http
            .get(nginx.url("/public/site.css"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
}

/// What nginx forwards, independent of how tandem then reads it: an extra route in an
/// in-process tandem echoes the forwarding headers it received.
async fn nginx_forwards_the_peer_and_discards_forged_forwarding_headers(mode: Mode) {
    use actix_web::{HttpRequest, HttpResponse, web};
    let mut settings = match mode {
        Mode::Nginx => crate::helpers::nginx_mode_settings(),
        Mode::App => crate::helpers::test_settings(),
    };
    settings.rate_limit.enabled = false;
    let app = crate::helpers::spawn_app_with(
        settings,
        std::sync::Arc::new(|cfg: &mut web::ServiceConfig| {
            cfg.route(
                "/api/forwarded-headers",
                web::get().to(|req: HttpRequest| async move {
                    let all = |name: &str| {
                        req.headers()
                            .get_all(name)
                            .map(|v| v.to_str().unwrap_or("?").to_string())
                            .collect::<Vec<_>>()
                    };
                    HttpResponse::Ok().json(serde_json::json!({
                        "x-forwarded-for": all("x-forwarded-for"),
                        "x-real-ip": all("x-real-ip"),
                        "x-forwarded-proto": all("x-forwarded-proto"),
                        "forwarded": all("forwarded"),
                        "host": all("host"),
                        "x-request-id": all("x-request-id"),
                    }))
                }),
            );
        }),
    )
    .await;
    let listen = dual_stack_or_skip("the forwarded-headers test");
    let nginx = Nginx::start_listening(mode, app.addr.port(), listen);
    let res = client()
        .get(nginx.url("/api/forwarded-headers"))
        .header("X-Forwarded-For", "203.0.113.66")
        .header("X-Real-IP", "203.0.113.66")
        .header("Forwarded", "for=203.0.113.66;proto=https")
        .header("X-Forwarded-Proto", "https")
        .header("X-Request-ID", "fwd-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let seen: Value = res.json().await.unwrap();
    let client = CLIENT_ADDR.to_string();
    assert_eq!(seen["x-forwarded-for"], serde_json::json!([client]));
    assert_eq!(seen["x-real-ip"], serde_json::json!([client]));
    assert_eq!(
        seen["forwarded"],
        serde_json::json!([format!("for={client};proto=http")])
    );
    assert_eq!(seen["x-forwarded-proto"], serde_json::json!(["http"]));
    assert_eq!(seen["host"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(seen["x-request-id"], serde_json::json!(["fwd-1"]));

    if listen == Listen::DualStack {
        // RFC 7239 §6: an IPv6 node is bracketed and, holding colons, quoted.
        let res = client_from(IpAddr::V6(Ipv6Addr::LOCALHOST))
            .get(nginx.ipv6_url("/api/forwarded-headers"))
            .header("Forwarded", "for=203.0.113.66")
            .send()
            .await
            .unwrap();
        let seen: Value = res.json().await.unwrap();
        assert_eq!(seen["x-forwarded-for"], serde_json::json!(["::1"]));
        assert_eq!(
            seen["forwarded"],
            serde_json::json!(["for=\"[::1]\";proto=http"])
        );
    }
}

#[tokio::test]
async fn nginx_mode_forwards_the_peer_and_discards_forged_forwarding_headers() {
    require_nginx!();
    nginx_forwards_the_peer_and_discards_forged_forwarding_headers(Mode::Nginx).await;
}

#[tokio::test]
async fn app_mode_forwards_the_peer_and_discards_forged_forwarding_headers() {
    require_nginx!();
    nginx_forwards_the_peer_and_discards_forged_forwarding_headers(Mode::App).await;
}

#[tokio::test]
async fn nginx_mode_client_ip_is_the_real_peer_whichever_header_tandem_reads() {
    require_nginx!();
    client_ip_is_nginxs_peer_and_cannot_be_spoofed(Mode::Nginx).await;
}

#[tokio::test]
async fn app_mode_client_ip_is_the_real_peer_whichever_header_tandem_reads() {
    require_nginx!();
    client_ip_is_nginxs_peer_and_cannot_be_spoofed(Mode::App).await;
}

#[tokio::test]
async fn nginx_mode_websocket_echoes_through_nginx() {
    require_nginx!();
    websocket_echoes_through_nginx(Mode::Nginx).await;
}

#[tokio::test]
async fn app_mode_websocket_echoes_through_nginx() {
    require_nginx!();
    websocket_echoes_through_nginx(Mode::App).await;
}

#[tokio::test]
async fn nginx_mode_over_the_limit_is_a_json_429_and_probes_stay_up() {
    require_nginx!();
    over_the_limit_is_a_json_429_and_probes_stay_up(Mode::Nginx).await;
}

#[tokio::test]
async fn app_mode_over_the_limit_is_a_json_429_and_probes_stay_up() {
    require_nginx!();
    over_the_limit_is_a_json_429_and_probes_stay_up(Mode::App).await;
}

#[tokio::test]
async fn nginx_mode_stopped_tandem_is_a_json_502_while_files_are_still_served() {
    require_nginx!();
    stopped_tandem_is_a_json_502(Mode::Nginx).await;
}

#[tokio::test]
async fn app_mode_stopped_tandem_is_a_json_502() {
    require_nginx!();
    stopped_tandem_is_a_json_502(Mode::App).await;
}

#[tokio::test]
async fn app_mode_files_come_from_tandem_through_the_proxy() {
    require_nginx!();
    let (tandem, nginx) = start_pair(Mode::App, &[]);
    let index = fs::read(crate::helpers::fixtures().join("htdocs/index.html")).unwrap();
    let res = client()
        .get(nginx.url("/"))
        .header("X-Request-ID", "app-mode-file-1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "tandem serves / in app mode");
    let ids: Vec<_> = res.headers().get_all("x-request-id").iter().collect();
    assert_eq!(ids, ["app-mode-file-1"], "tandem's, not doubled by nginx");
    assert!(header(&res, "content-type").starts_with("text/html"));
    assert_eq!(res.bytes().await.unwrap(), index);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tandem.stderr().contains("app-mode-file-1") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        tandem.stderr().contains("app-mode-file-1"),
        "tandem logged it"
    );
}

/// Every answer a client saw while tandem restarted behind nginx.
#[derive(Debug, Default)]
struct LoadReport {
    ok: usize,
    failures: Vec<String>,
}

/// One client sending GETs through nginx without pause (a static file through tandem, a probe,
/// and `/api/status` slowly enough for nginx's 10 r/s limit) until `stop` is set.
fn steady_gets(
    base: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<LoadReport> {
    std::thread::spawn(move || {
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(40))
            .build()
            .unwrap();
        let mut report = LoadReport::default();
        let mut status_due = Instant::now();
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for path in ["/", "/healthz", "/api/status"] {
                if path == "/api/status" {
                    if Instant::now() < status_due {
                        continue;
                    }
                    status_due = Instant::now() + Duration::from_millis(200);
                }
                match http.get(format!("{base}{path}")).send() {
                    Ok(res) if res.status().is_success() => report.ok += 1,
                    Ok(res) => report.failures.push(format!("{path}: {}", res.status())),
                    Err(err) => report.failures.push(format!("{path}: {err}")),
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        report
    })
}

/// The binary in app mode on `port`, answering before this returns.
fn tandem_on(port: u16) -> BinaryServer {
    let mut cmd = crate::helpers::tandem_command();
    cmd.arg("serve")
        .env("TANDEM__SERVER__PORT", port.to_string())
        .env("TANDEM__SERVER__SHUTDOWN_DRAIN_SECS", "1")
        .env("TANDEM__RATE_LIMIT__ENABLED", "false")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let server = BinaryServer::run(cmd, port);
    server.wait_until_answering();
    server
}

/// SIGTERM, and the exit status 0 of a graceful stop.
fn stop(server: &mut BinaryServer) {
    server.signal(libc::SIGTERM);
    assert_eq!(
        server.wait_exit(Duration::from_secs(20)),
        Some(0),
        "{}",
        server.stderr()
    );
}

fn assert_nothing_failed(report: &LoadReport, during: &str) {
    assert!(
        report.failures.is_empty(),
        "{} of {} requests failed during {during}: {:?}",
        report.failures.len(),
        report.failures.len() + report.ok,
        report.failures
    );
    assert!(
        report.ok > 100,
        "too few requests to prove anything: {report:?}"
    );
}

/// The example's commented two-instance upstream, enabled with the test's ports.
fn two_instance_upstream(conf: String, first: u16, second: u16) -> String {
    let conf = replace_once(&conf, &format!("server 127.0.0.1:{first};"), "");
    let conf = replace_once(
        &conf,
        "# server 127.0.0.1:8080 max_fails=1 fail_timeout=2s;",
        &format!("server 127.0.0.1:{first} max_fails=1 fail_timeout=2s;"),
    );
    replace_once(
        &conf,
        "# server 127.0.0.1:8081 max_fails=1 fail_timeout=2s;",
        &format!("server 127.0.0.1:{second} max_fails=1 fail_timeout=2s;"),
    )
}

/// docs/reference.md §10: a rolling restart of the example's two-instance upstream, one
/// instance at a time, loses no request: the stopping one refuses connections once its listener
/// closes and nginx's `proxy_next_upstream` takes the request to the other.
#[test]
fn two_instances_restarted_one_at_a_time_fail_no_request() {
    require_nginx!();
    let (first_port, second_port) = (free_port(), free_port());
    let mut first = tandem_on(first_port);
    let mut second = tandem_on(second_port);
    let nginx = Nginx::start_edited(Mode::App, first_port, Listen::Ipv4, |conf| {
        two_instance_upstream(conf, first_port, second_port)
    });
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = steady_gets(nginx.url(""), done.clone());
    std::thread::sleep(Duration::from_secs(1));
    stop(&mut first);
    // The new binary takes a moment to arrive: meanwhile the port refuses connections.
    std::thread::sleep(Duration::from_secs(2));
    first = tandem_on(first_port);
    // nginx leaves a failed server out for fail_timeout (2 s): the next restart waits it out,
    // or both would be out at once.
    std::thread::sleep(Duration::from_secs(3));
    stop(&mut second);
    std::thread::sleep(Duration::from_secs(2));
    second = tandem_on(second_port);
    std::thread::sleep(Duration::from_secs(1));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = load.join().unwrap();
    assert_nothing_failed(&report, "a rolling restart of two instances");
    // Back in the upstream once fail_timeout has passed (the second had no time to be).
    assert!(
        first.stderr().contains("tandem::access"),
        "the restarted instance serves again: {}",
        first.stderr()
    );
    drop(second);
}

/// docs/reference.md §9 "Socket activation" behind the example as shipped (one upstream server):
/// the socket stays open across the restart, so nginx's connections wait in its queue and the
/// new process answers them; without it this is the 502 of `stopped_tandem_is_a_json_502`.
#[test]
fn a_socket_activated_instance_restarts_behind_nginx_without_a_502() {
    require_nginx!();
    let activator = crate::socket_activation::Activator::new();
    let env = [
        ("LISTEN_FDNAMES", "http"),
        ("TANDEM__SERVER__SHUTDOWN_DRAIN_SECS", "1"),
        ("TANDEM__RATE_LIMIT__ENABLED", "false"),
    ];
    let mut old = activator.spawn(&env);
    old.wait_until_answering();
    let nginx = Nginx::start(Mode::App, activator.port());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = steady_gets(nginx.url(""), done.clone());
    std::thread::sleep(Duration::from_secs(1));
    stop(&mut old);
    let new = activator.spawn(&env);
    std::thread::sleep(Duration::from_secs(2));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let report = load.join().unwrap();
    assert_nothing_failed(&report, "a socket-activated restart");
    assert!(
        new.stderr().contains("tandem::access"),
        "the new process serves: {}",
        new.stderr()
    );
}
