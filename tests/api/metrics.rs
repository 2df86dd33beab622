//! docs/reference.md §4 `/metrics` and §3 `metrics.listen`: the figures move with each kind of
//! request, the exposition parses with Prometheus's own Python parser (`prometheus_client`),
//! `/metrics` is only on its own listener, and scraping it is neither rate limited nor written to
//! the access log at info. `/api/metrics` feeds the status page's chart.

use std::{
    collections::HashMap,
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use tandem::config::MetricsListen;
use tokio_tungstenite::{
    connect_async,
    tungstenite::{
        Message,
        protocol::{CloseFrame, frame::coding::CloseCode},
    },
};

use crate::helpers::{BinaryServer, StaticRoots, free_port, skip, spawn_app, test_settings};

/// Every sample of an exposition: (name, labels) -> value, as `prometheus_client` parsed it.
type Samples = HashMap<(String, Vec<(String, String)>), f64>;

/// Parses with `prometheus_client.parser`, the reference Python client's own text parser.
const PARSE: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        print(json.dumps([family.type, s.name, sorted(s.labels.items()), s.value]))
"#;

/// A Python with `prometheus_client`: `TANDEM_PROMETHEUS_PYTHON` (set by `.ci/run`), else the
/// virtualenv `.ci/run` builds, else the system's python3 if it has the package.
fn prometheus_python() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(python) = std::env::var_os("TANDEM_PROMETHEUS_PYTHON") {
        candidates.push(python.into());
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates
            .push(PathBuf::from(home).join(".cache/tandem/prometheus-client-0.26.0/bin/python"));
    }
    candidates.push("python3".into());
    candidates.into_iter().find(|python| {
        Command::new(python)
            .args(["-c", "import prometheus_client.parser"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    })
}

fn parse(python: &PathBuf, exposition: &str) -> Samples {
    let mut child = Command::new(python)
        .args(["-c", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the parser");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("feed the parser");
    let out = child.wait_with_output().expect("parser output");
    assert!(
        out.status.success(),
        "prometheus_client refused the exposition: {}\n{exposition}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let (_, name, labels, value): (String, String, Vec<(String, String)>, f64) =
                serde_json::from_str(line).expect("parser line");
            ((name, labels), value)
        })
        .collect()
}

fn value(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    *samples
        .get(&(name.to_string(), labels.clone()))
        .unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

fn requests(samples: &Samples, route: &str, status: &str) -> f64 {
    value(
        samples,
        "tandem_http_requests_total",
        &[("route_class", route), ("status_class", status)],
    )
}

/// The tandem binary with `/metrics` on a port of its own, a tight rate limit and a stale
/// sibling in its document root.
struct Scraped {
    server: BinaryServer,
    metrics_port: u16,
    python: PathBuf,
    client: reqwest::Client,
    _roots: StaticRoots,
}

impl Scraped {
    fn start() -> Option<Self> {
        let Some(python) = prometheus_python() else {
            skip(
                "no Python with prometheus_client (pip install prometheus-client, or run .ci/run)",
            );
            return None;
        };
        let roots = StaticRoots::new();
        // Decodes to nothing like its original: the start-up scan counts it as stale.
        std::fs::write(roots.htdocs().join("index.html.gz"), b"not gzip at all").unwrap();
        let metrics_port = free_port();
        let listen = format!("127.0.0.1:{metrics_port}");
        let (htdocs, public) = (roots.htdocs(), roots.public());
        let server = BinaryServer::start(&[
            ("TANDEM__METRICS__LISTEN", listen.as_str()),
            ("TANDEM__RATE_LIMIT__PER_SECOND", "1"),
            ("TANDEM__RATE_LIMIT__BURST", "4"),
            ("TANDEM__STATIC__HTDOCS", htdocs.to_str().unwrap()),
            ("TANDEM__STATIC__PUBLIC", public.to_str().unwrap()),
        ]);
        Some(Self {
            server,
            metrics_port,
            python,
            client: reqwest::Client::new(),
            _roots: roots,
        })
    }

    async fn get(&self, path: &str) -> u16 {
        let res = self.client.get(self.server.url(path)).send().await.unwrap();
        let status = res.status().as_u16();
        let _ = res.bytes().await;
        status
    }

    async fn scrape(&self) -> Samples {
        let url = format!("http://127.0.0.1:{}/metrics", self.metrics_port);
        let res = self.client.get(url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let content_type = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        parse(&self.python, &res.text().await.unwrap())
    }

    /// Scrapes until `done` holds (a WebSocket's task ends just after its close frame is sent).
    async fn scrape_until(&self, done: impl Fn(&Samples) -> bool) -> Samples {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let samples = self.scrape().await;
            if done(&samples) || Instant::now() > deadline {
                return samples;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test]
async fn each_class_of_request_moves_its_own_figures() {
    let Some(app) = Scraped::start() else { return };
    // The scan's figures are set when start-up work is done.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app.get("/startupz").await != 200 {
        assert!(Instant::now() < deadline, "start-up work never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = app.scrape().await;
    assert_eq!(value(&before, "tandem_static_stale_siblings", &[]), 1.0);
    assert_eq!(value(&before, "tandem_draining", &[]), 0.0);

    // A WebSocket first (its handshake counts against the rate limit): open, then closed by us.
    let ws = format!("ws://127.0.0.1:{}/socket", app.server.port);
    let (mut socket, _) = connect_async(ws).await.unwrap();
    let open = app.scrape().await;
    assert_eq!(value(&open, "tandem_websockets_open", &[]), 1.0);
    let close = CloseFrame {
        code: CloseCode::Normal,
        reason: "done".into(),
    };
    socket.send(Message::Close(Some(close))).await.unwrap();
    while let Some(Ok(message)) = socket.next().await {
        if message.is_close() {
            break;
        }
    }
    let closes = |s: &Samples| value(s, "tandem_websocket_closes_total", &[("code", "1000")]);
    let closed = app
        .scrape_until(|s| value(s, "tandem_websockets_open", &[]) == 0.0)
        .await;
    assert_eq!(value(&closed, "tandem_websockets_open", &[]), 0.0);
    assert_eq!(closes(&closed) - closes(&before), 1.0);

    // Static: a miss then a hit; a 404; the API until the limit answers 429.
    assert_eq!(app.get("/page.html").await, 200);
    assert_eq!(app.get("/page.html").await, 200);
    assert_eq!(app.get("/no-such-file").await, 404);
    let mut api_ok = 0.0;
    let mut refused = 0.0;
    for _ in 0..8 {
        match app.get("/json").await {
            200 => api_ok += 1.0,
            429 => refused += 1.0,
            other => panic!("/json answered {other}"),
        }
    }
    assert!(refused >= 1.0, "the limit never answered 429");
    let after = app.scrape().await;
    let moved = |route, status| requests(&after, route, status) - requests(&before, route, status);
    assert_eq!(moved("socket", "1xx"), 1.0);
    assert_eq!(moved("static", "2xx"), 2.0);
    assert_eq!(moved("static", "4xx"), 1.0);
    assert_eq!(moved("api", "2xx"), api_ok);
    assert_eq!(moved("api", "4xx"), refused);
    assert_eq!(moved("probe", "2xx"), 0.0, "no probe was asked for");
    let limited = |s: &Samples| value(s, "tandem_rate_limited_requests_total", &[]);
    assert_eq!(limited(&after) - limited(&before), refused);
    let hits = |s: &Samples| value(s, "tandem_static_cache_hits_total", &[]);
    assert!(
        hits(&after) > hits(&before),
        "the second /page.html was a hit"
    );
    assert!(value(&after, "tandem_static_cache_bytes", &[]) > 0.0);
    // Every request seen by the pipeline is in the latency histogram's +Inf bucket, once.
    let latency = |s: &Samples, route| {
        value(
            s,
            "tandem_http_request_duration_seconds_bucket",
            &[("route_class", route), ("le", "+Inf")],
        )
    };
    assert_eq!(latency(&after, "static") - latency(&before, "static"), 3.0);
    let bytes = |s: &Samples| {
        value(
            s,
            "tandem_http_response_body_bytes_total",
            &[("route_class", "static")],
        )
    };
    assert!(
        bytes(&after) - bytes(&before) >= 2.0 * 1000.0,
        "two pages sent"
    );
}

#[tokio::test]
async fn scrapes_are_neither_rate_limited_nor_logged_at_info() {
    let Some(app) = Scraped::start() else { return };
    // Five times the burst: every scrape answers, and none counts as a request of the server's.
    let url = format!("http://127.0.0.1:{}/metrics", app.metrics_port);
    for _ in 0..20 {
        let res = app.client.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    let samples = app.scrape().await;
    assert_eq!(
        value(&samples, "tandem_rate_limited_requests_total", &[]),
        0.0
    );
    for route in ["static", "api", "probe", "socket", "other"] {
        for status in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
            let seen = requests(&samples, route, status);
            // `BinaryServer::start` asked /healthz until it answered.
            let expected = if (route, status) == ("probe", "2xx") {
                seen
            } else {
                0.0
            };
            assert_eq!(seen, expected, "{route} {status}");
        }
    }
    // A request of the public port is logged, so the log is on; no scrape is.
    assert_eq!(app.get("/json").await, 200);
    let log = app
        .server
        .stderr_once_it_says("\"GET /json\"", Duration::from_secs(5));
    assert!(log.contains("\"GET /json\" 200"), "{log}");
    // Only the start-up line names /metrics: no access line, nothing at info per scrape.
    let mentions: Vec<&str> = log.lines().filter(|l| l.contains("/metrics")).collect();
    assert_eq!(mentions.len(), 1, "{log}");
    assert!(mentions[0].contains("metrics on http://"), "{log}");
}

#[tokio::test]
async fn metrics_are_off_by_default_and_never_on_the_public_port() {
    let off = spawn_app(test_settings()).await;
    assert_eq!(off.get("/metrics").await.status(), 404);

    let mut settings = test_settings();
    settings.metrics.listen = MetricsListen::At("127.0.0.1:0".parse().unwrap());
    let on = tandem::Application::build(settings).expect("builds");
    let metrics = on.metrics_addr().expect("a metrics listener");
    assert_ne!(metrics.port(), on.port());
    let public = on.port();
    tokio::spawn(on.run_until_stopped());
    let client = reqwest::Client::new();
    let at = |port: u16| format!("http://127.0.0.1:{port}/metrics");
    assert_eq!(client.get(at(public)).send().await.unwrap().status(), 404);
    let res = client.get(at(metrics.port())).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("tandem_http_requests_total")
    );
    let elsewhere = format!("http://{metrics}/api/status");
    let res = client.get(elsewhere).send().await.unwrap();
    assert_eq!(res.status(), 404);
    // Its own answers are problem+json too (this listener has no pipeline to render them).
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert_eq!(res.headers()["cache-control"], "no-store");
    let problem: serde_json::Value = res.json().await.unwrap();
    assert_eq!(problem["status"], 404);
    let res = client.post(at(metrics.port())).send().await.unwrap();
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD");
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn the_status_page_summary_has_rates_per_status_class() {
    let app = spawn_app(test_settings()).await;
    assert_eq!(app.get("/json").await.status(), 200);
    // The sampler takes one sample at start and one every 2 s: wait for a rate between two.
    let deadline = Instant::now() + Duration::from_secs(10);
    let summary = loop {
        let res = app.get("/api/metrics").await;
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["cache-control"], "no-store");
        let summary: serde_json::Value = res.json().await.unwrap();
        if !summary["points"].as_array().unwrap().is_empty() || Instant::now() > deadline {
            break summary;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(summary["interval_secs"], 2);
    assert!(summary["requests_total"]["2xx"].as_u64().unwrap() >= 1);
    let point = &summary["points"][0];
    for class in ["1xx", "2xx", "3xx", "4xx", "5xx"] {
        assert!(point["requests_per_sec"][class].is_number(), "{point}");
    }
    assert_eq!(point["websockets_open"], 0);
}

#[test]
fn metrics_listen_is_off_or_an_address_and_anything_else_names_the_key() {
    let load = |value: &str| {
        let env = [("TANDEM__METRICS__LISTEN".to_string(), value.to_string())];
        tandem::Settings::load_from(None, &env).map(|s| s.metrics.listen)
    };
    assert_eq!(
        tandem::Settings::default().metrics.listen,
        MetricsListen::Off
    );
    assert_eq!(load("off"), Ok(MetricsListen::Off));
    assert_eq!(
        load("127.0.0.1:9464"),
        Ok(MetricsListen::At("127.0.0.1:9464".parse().unwrap()))
    );
    assert_eq!(
        load("[::1]:9464"),
        Ok(MetricsListen::At("[::1]:9464".parse().unwrap()))
    );
    for bad in ["9464", "localhost:9464", "127.0.0.1", "main"] {
        let err = load(bad).expect_err(bad).to_string();
        assert!(err.contains("`metrics.listen`"), "{bad}: {err}");
        assert!(err.contains("127.0.0.1:9464"), "{bad}: {err}");
    }
}

#[tokio::test]
async fn draining_shows_on_metrics_and_its_listener_stops_with_the_server() {
    let metrics_port = free_port();
    let listen = format!("127.0.0.1:{metrics_port}");
    let mut server = BinaryServer::start(&[
        ("TANDEM__METRICS__LISTEN", listen.as_str()),
        ("TANDEM__SERVER__SHUTDOWN_DRAIN_SECS", "2"),
    ]);
    let url = format!("http://127.0.0.1:{metrics_port}/metrics");
    let client = reqwest::Client::new();
    let draining = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("tandem_draining "))
            .map(str::to_string)
    };
    let text = client.get(&url).send().await.unwrap().text().await.unwrap();
    assert_eq!(draining(&text).as_deref(), Some("0"));
    server.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut seen = None;
    while Instant::now() < deadline && seen.as_deref() != Some("1") {
        let text = client.get(&url).send().await.unwrap().text().await.unwrap();
        seen = draining(&text);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen.as_deref(), Some("1"), "scraped while draining");
    assert_eq!(server.wait_exit(Duration::from_secs(15)), Some(0));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_err(),
        "the metrics listener is gone with the server"
    );
}
