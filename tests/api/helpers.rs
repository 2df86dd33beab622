//! Test harness: starts the real server, in-process on an ephemeral port (`spawn_app`) or as the
//! compiled binary (`spawn_binary`) where signals, exit codes and stderr matter.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tandem::{
    Application, Settings, config::StaticMode, lifecycle::Lifecycle, startup::ExtraRoutes,
};

/// A server running inside the test process.
pub struct TestApp {
    pub addr: SocketAddr,
    pub lifecycle: Arc<Lifecycle>,
    pub client: reqwest::Client,
    pub handle: actix_web::dev::ServerHandle,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.get_with(path, &[]).await
    }

    /// `GET path` with these request headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        self.request(reqwest::Method::GET, path, headers, None)
            .await
    }

    /// `HEAD path` with these request headers.
    pub async fn head_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        self.request(reqwest::Method::HEAD, path, headers, None)
            .await
    }

    /// `POST path` with a body declared as `application/json`, plus these request headers.
    pub async fn post_json(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        self.request(reqwest::Method::POST, path, &all, Some(body.into()))
            .await
    }

    /// Any method, any headers, an optional body: what the shorthands above are made of.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<reqwest::Body>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        request.send().await.expect("request to the test server")
    }
}

/// The uid/gid of `nobody`, when the tests run as root and must drop privileges like USER does.
pub fn unprivileged_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("nobody").unwrap();
    // SAFETY: getpwnam with a valid C string; the result is read at once, before any other
    // getpw* call in this thread.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !pw.is_null(),
        "running as root needs a `nobody` user to drop to"
    );
    // SAFETY: checked non-null above.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Some((uid, gid))
}

/// True when this machine can listen on IPv6 loopback.
pub fn ipv6_loopback() -> bool {
    TcpListener::bind("[::1]:0").is_ok()
}

/// True when the environment says this is CI: `CI` set to anything but empty, `0` or `false`.
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| {
        let value = value.trim();
        !value.is_empty() && value != "0" && !value.eq_ignore_ascii_case("false")
    })
}

/// A test that cannot run on this machine: under CI that is a failure (a CI machine must be able
/// to run every test), elsewhere one `SKIPPED:` line. Call it and return.
#[track_caller]
pub fn skip(reason: &str) {
    assert!(!under_ci(), "cannot run under CI: {reason}");
    // Straight to the stderr handle: libtest captures `eprintln!` of passing tests, and a skip
    // that nobody sees looks exactly like a pass.
    let _ = writeln!(std::io::stderr(), "SKIPPED: {reason}");
}

/// Settings for tests: port 0, the repository's fixtures as roots, nothing limited unless asked.
pub fn test_settings() -> Settings {
    let mut settings = Settings::default();
    settings.server.port = 0;
    settings.server.workers = 2;
    settings.static_files.htdocs = fixtures().join("htdocs");
    settings.static_files.public = fixtures().join("public");
    settings.rate_limit.enabled = false;
    settings
}

/// Settings in `nginx` mode (no roots needed).
pub fn nginx_mode_settings() -> Settings {
    let mut settings = test_settings();
    settings.static_files.mode = StaticMode::Nginx;
    settings
}

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The server as production builds it: the route table's routes only, so static files take
/// the pipeline's direct way.
pub async fn spawn_app(settings: Settings) -> TestApp {
    spawn(settings, None).await
}

/// An nginx-mode server with one extra route, `GET /test/panic`, whose handler panics.
pub async fn spawn_app_with_panicking_route() -> TestApp {
    spawn_app_with(nginx_mode_settings(), panicking_route()).await
}

/// One extra route, `GET /test/panic`, whose handler panics.
pub fn panicking_route() -> ExtraRoutes {
    Arc::new(|cfg: &mut actix_web::web::ServiceConfig| {
        cfg.route(
            "/test/panic",
            actix_web::web::get().to(|| async {
                if true {
                    panic!("deliberate test panic");
                }
                "unreachable"
            }),
        );
    })
}

/// The server with `extra` routes of the test's ahead of the static files (which then go
/// through actix's router).
pub async fn spawn_app_with(settings: Settings, extra: ExtraRoutes) -> TestApp {
    spawn(settings, Some(extra)).await
}

async fn spawn(settings: Settings, extra: Option<ExtraRoutes>) -> TestApp {
    let app =
        Application::build_with(settings, extra, Box::new(|| {})).expect("the test server builds");
    let addr = app.local_addr();
    let lifecycle = app.lifecycle();
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("reqwest client");
    let app = TestApp {
        addr,
        lifecycle,
        client,
        handle,
    };
    // Start-up work (the sibling scan) runs after binding; tests begin once it is done.
    let deadline = Instant::now() + Duration::from_secs(20);
    while app.get("/startupz").await.status() != 200 {
        assert!(Instant::now() < deadline, "the test server never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    app
}

/// A port that was free a moment ago (for the binary, which refuses port 0).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The compiled `tandem` binary, running as a child process.
pub struct BinaryServer {
    pub child: Child,
    pub port: u16,
    pub stderr: Arc<Mutex<String>>,
}

pub fn tandem_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tandem"));
    // Tests must not inherit a developer's configuration.
    for (key, _) in std::env::vars() {
        if key.starts_with("TANDEM") || key == "PORT" {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(fixtures());
    cmd
}

impl BinaryServer {
    /// Starts `tandem serve` with `env` on a free port and waits until it answers.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let server = Self::spawn(env);
        server.wait_until_answering();
        server
    }

    /// Starts `tandem serve` with `env` on a free port, without waiting for anything.
    pub fn spawn(env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let mut cmd = tandem_command();
        cmd.arg("serve")
            .env("TANDEM__SERVER__PORT", port.to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::run(cmd, port)
    }

    /// Runs a prepared `tandem` command (stderr piped and collected) that will answer on `port`.
    pub fn run(mut cmd: Command, port: u16) -> Self {
        let mut child = cmd.spawn().expect("spawn tandem");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().expect("stderr pipe");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        Self {
            child,
            port,
            stderr,
        }
    }

    pub fn wait_until_answering(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok((200, _)) = raw_get(self.port, "/healthz") {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("tandem did not answer in time; stderr:\n{}", self.stderr());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// A blocking `GET path` with these request headers.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::blocking::Response {
        let mut request = reqwest::blocking::Client::new().get(self.url(path));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().expect("request to the tandem binary")
    }

    /// Waits up to `within` for a line containing `needle` on stderr (a reader thread collects
    /// it, so a line the server already wrote may take a moment to show), then returns stderr.
    pub fn stderr_once_it_says(&self, needle: &str, within: Duration) -> String {
        self.stderr_once(|stderr| stderr.contains(needle), within)
    }

    /// Waits up to `within` for stderr to satisfy `done` (e.g. to hold as many access lines as
    /// requests were answered: each is written once its response is sent, and read by a thread),
    /// then returns stderr, satisfied or not.
    pub fn stderr_once(&self, done: impl Fn(&str) -> bool, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let stderr = self.stderr();
            if done(&stderr) || Instant::now() >= deadline {
                return stderr;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn signal(&self, signal: i32) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) with a pid we own; no memory is involved.
        unsafe {
            libc::kill(pid, signal);
        }
    }

    /// Waits for the process to exit, returning its status code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal blocking HTTP/1.1 GET: (status, whole response text).
pub fn raw_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    raw_request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"),
    )
}

/// Sends `request` bytes as they are (no normalisation) and reads the answer to EOF.
pub fn raw_request(port: u16, request: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, text))
}

/// A private copy of `tests/fixtures` that a test may change (files, mtimes, symlinks). Every
/// file gets the same modification time an hour ago, so siblings are fresh the way
/// `tandem precompress` leaves them (a git checkout writes arbitrary mtimes).
pub struct StaticRoots {
    pub dir: tempfile::TempDir,
}

impl StaticRoots {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let when = std::time::SystemTime::now() - Duration::from_secs(3600);
        let when = std::time::UNIX_EPOCH
            + Duration::from_secs(
                when.duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs(),
            );
        copy_tree(&fixtures(), dir.path(), when);
        Self { dir }
    }

    pub fn htdocs(&self) -> PathBuf {
        self.dir.path().join("htdocs")
    }

    pub fn public(&self) -> PathBuf {
        self.dir.path().join("public")
    }

    pub fn settings(&self) -> Settings {
        let mut settings = test_settings();
        settings.static_files.htdocs = self.htdocs();
        settings.static_files.public = self.public();
        settings
    }

    /// Sets a file's modification time `secs` seconds away from the fixtures' common one.
    pub fn shift_mtime(&self, path: &Path, secs: i64) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        let now = file.metadata().unwrap().modified().unwrap();
        let shifted = if secs >= 0 {
            now + Duration::from_secs(secs as u64)
        } else {
            now - Duration::from_secs(secs.unsigned_abs())
        };
        file.set_modified(shifted).unwrap();
    }
}

fn copy_tree(from: &Path, to: &Path, when: std::time::SystemTime) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let target = to.join(entry.file_name());
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &target).unwrap();
        } else if kind.is_dir() {
            copy_tree(&entry.path(), &target, when);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
            let file = std::fs::File::options().write(true).open(&target).unwrap();
            file.set_modified(when).unwrap();
        }
    }
}

/// The response body of a raw request (after the blank line).
pub fn raw_body(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, body)| body)
}

/// Decodes a body sent with `Content-Encoding: encoding` (`br`, `zstd`, `gzip`, or none).
pub async fn decode(encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder, ZstdDecoder};
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    match encoding {
        None => out.extend_from_slice(body),
        Some("br") => {
            BrotliDecoder::new(body)
                .read_to_end(&mut out)
                .await
                .unwrap();
        }
        Some("zstd") => {
            ZstdDecoder::new(body).read_to_end(&mut out).await.unwrap();
        }
        Some("gzip") => {
            GzipDecoder::new(body).read_to_end(&mut out).await.unwrap();
        }
        Some(other) => panic!("unexpected content-encoding {other}"),
    }
    out
}
