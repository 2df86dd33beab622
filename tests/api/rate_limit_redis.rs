//! docs/reference.md §6 with `rate_limit.backend = "redis"`: several tandem instances sharing one
//! Redis give a client one limit, not one per instance, and survive Redis being stopped, slow or
//! behind TLS with a password.
//!
//! Each test starts its own `redis-server` on a free loopback port in a temporary directory and
//! stops it by PID. Without `redis-server` these tests say so and pass, except under CI (`CI` set
//! to anything but empty, `0` or `false`), where that is a failure.

use std::{
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tandem::{Settings, config::RateLimitBackend, redis_url::RedisUrl};

use crate::helpers::{
    BinaryServer, TestApp, free_port, nginx_mode_settings, raw_get, spawn_app, tandem_command,
};

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const BURST: u32 = 5;
/// What tandem logs, once, when Redis goes away and when it comes back.
const LOST_LINE: &str = "is unreachable";
const BACK_LINE: &str = "is back; limits are shared again";

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// Returns early (skip) without `redis-server`, or fails under CI.
macro_rules! require_redis {
    () => {
        if !Path::new(REDIS_SERVER).exists() {
            if under_ci() {
                panic!("CI is set and {REDIS_SERVER} is missing (apt-get install redis-server)");
            }
            eprintln!("SKIPPED Redis rate-limit test: {REDIS_SERVER} is missing");
            return;
        }
    };
}

/// A `redis-server` of our own, killed by PID when dropped.
struct RedisServer {
    child: Option<Child>,
    args: Vec<String>,
    port: u16,
    dir: tempfile::TempDir,
}

impl RedisServer {
    /// Plain TCP on a free loopback port, nothing persisted.
    fn start() -> Self {
        let port = free_port();
        Self::start_with(port, vec!["--port".into(), port.to_string()])
    }

    fn start_with(port: u16, mut args: Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        args.extend(
            [
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ]
            .map(String::from),
        );
        args.extend(["--dir".into(), dir.path().display().to_string()]);
        let mut server = Self {
            child: None,
            args,
            port,
            dir,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let child = Command::new(REDIS_SERVER)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection for the test itself (plain TCP servers only).
    fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("the test connects to its redis-server")
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The same server again, on the same port, empty.
    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn shared_settings(redis_url: &str) -> Settings {
    let mut settings = nginx_mode_settings();
    settings.rate_limit.enabled = true;
    settings.rate_limit.per_second = 1;
    settings.rate_limit.burst = BURST;
    settings.rate_limit.backend = RateLimitBackend::Redis;
    settings.rate_limit.redis_url = RedisUrl::new(redis_url);
    settings.proxy.trusted = vec!["127.0.0.1/32".into()];
    // Generous: on a busy machine a Redis round trip must not be mistaken for an outage.
    settings.rate_limit.redis_timeout_ms = 1_000;
    settings
}

fn shared_env(redis_url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("TANDEM__STATIC__MODE", "nginx".into()),
        ("TANDEM__RATE_LIMIT__PER_SECOND", "1".into()),
        ("TANDEM__RATE_LIMIT__BURST", BURST.to_string()),
        ("TANDEM__RATE_LIMIT__BACKEND", "redis".into()),
        ("TANDEM__RATE_LIMIT__REDIS_URL", redis_url.into()),
        ("TANDEM__PROXY__TRUSTED", "127.0.0.1/32".into()),
        ("TANDEM__RATE_LIMIT__REDIS_TIMEOUT_MS", "1000".into()),
    ]
}

const CONNECTED_LINE: &str = "connected to Redis";

/// The binary with `env`, once it has reached Redis (or, with `expect_redis` false, not).
fn start_binary(env: &[(&'static str, String)], expect_redis: bool) -> BinaryServer {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let server = BinaryServer::start(&env);
    let awaited = if expect_redis {
        CONNECTED_LINE
    } else {
        LOST_LINE
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.stderr().contains(awaited) {
        assert!(
            Instant::now() < deadline,
            "no {awaited:?} line:\n{}",
            server.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

/// One request to `base` (`http://host:port`) as `client` behind the trusted proxy.
async fn get_as(
    http: &reqwest::Client,
    base: &str,
    client: &str,
) -> (u16, Option<String>, Option<String>) {
    let res = http
        .get(format!("{base}/json"))
        .header("X-Forwarded-For", client)
        .send()
        .await
        .expect("tandem answers");
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    (
        res.status().as_u16(),
        header("x-ratelimit-remaining"),
        header("retry-after"),
    )
}

/// `client` alternates between the replicas `n` times; the statuses and remaining counts seen.
async fn alternate(bases: &[String], client: &str, n: usize) -> (Vec<u16>, Vec<String>) {
    let http = reqwest::Client::new();
    let (mut statuses, mut remaining) = (Vec::new(), Vec::new());
    for i in 0..n {
        let (status, left, _) = get_as(&http, &bases[i % bases.len()], client).await;
        statuses.push(status);
        if status == 200 {
            remaining.push(left.unwrap_or_default());
        }
    }
    (statuses, remaining)
}

fn exactly_one_burst(statuses: &[u16]) -> bool {
    let burst = BURST as usize;
    statuses[..burst].iter().all(|&s| s == 200) && statuses[burst..].iter().all(|&s| s == 429)
}

fn base_of(app: &TestApp) -> String {
    format!("http://{}", app.addr)
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[tokio::test]
async fn a_client_alternating_between_two_replicas_gets_one_burst_not_two() {
    require_redis!();
    let redis = RedisServer::start();
    let a = spawn_app(shared_settings(&redis.url())).await;
    let b = spawn_app(shared_settings(&redis.url())).await;
    let bases = [base_of(&a), base_of(&b)];

    let (statuses, remaining) = alternate(&bases, "203.0.113.7", 2 * BURST as usize).await;
    assert!(exactly_one_burst(&statuses), "{statuses:?}");
    // The same countdown the in-memory limiter gives, whichever replica answered.
    assert_eq!(remaining, ["4", "3", "2", "1", "0"]);

    let http = reqwest::Client::new();
    for base in &bases {
        let (status, _, retry_after) = get_as(&http, base, "203.0.113.7").await;
        assert_eq!(status, 429);
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
}

#[tokio::test]
async fn concurrent_requests_of_one_client_in_one_batch_are_counted_one_by_one() {
    require_redis!();
    let redis = RedisServer::start();
    let a = spawn_app(shared_settings(&redis.url())).await;
    let b = spawn_app(shared_settings(&redis.url())).await;
    let bases = [base_of(&a), base_of(&b)];
    let http = reqwest::Client::new();
    // All at once, so replicas batch several of them into one script call.
    let requests = (0..4 * BURST as usize).map(|i| get_as(&http, &bases[i % 2], "203.0.113.30"));
    let statuses: Vec<u16> = futures_util::future::join_all(requests)
        .await
        .into_iter()
        .map(|(status, _, _)| status)
        .collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 200).count(),
        BURST as usize,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 429),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn clients_keep_their_own_buckets_keyed_on_their_real_address_in_every_replica() {
    require_redis!();
    let redis = RedisServer::start();
    let a = spawn_app(shared_settings(&redis.url())).await;
    let b = spawn_app(shared_settings(&redis.url())).await;
    let bases = [base_of(&a), base_of(&b)];

    let (first, _) = alternate(&bases, "203.0.113.7", BURST as usize + 1).await;
    assert!(exactly_one_burst(&first), "{first:?}");
    // Another client behind the same proxy still has its whole burst, on both replicas.
    let (second, remaining) = alternate(&bases, "203.0.113.8", 2).await;
    assert_eq!(second, [200, 200]);
    assert_eq!(remaining, ["4", "3"]);
    // Two addresses of one IPv6 /64 are one client, across replicas.
    alternate(&bases[..1], "2001:db8:1:2::1", 1).await;
    let (_, remaining) = alternate(&bases[1..], "2001:db8:1:2::ffff", 1).await;
    assert_eq!(remaining, ["3"]);

    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("tandem:rate_limit:*")
        .query(&mut redis.connection())
        .expect("KEYS");
    keys.sort();
    assert_eq!(
        keys,
        [
            "tandem:rate_limit:2001:db8:1:2::",
            "tandem:rate_limit:203.0.113.7",
            "tandem:rate_limit:203.0.113.8",
        ],
        "keyed on the real client address, never the proxy's 127.0.0.1"
    );
    // Keys expire on their own once their state equals a fresh one (burst / per_second).
    let ttl: i64 = redis::cmd("PTTL")
        .arg("tandem:rate_limit:203.0.113.8")
        .query(&mut redis.connection())
        .expect("PTTL");
    assert!((1..=2_000).contains(&ttl), "PTTL {ttl}");
}

#[tokio::test]
async fn a_stopped_redis_leaves_each_replica_limiting_alone_until_it_is_back() {
    require_redis!();
    let mut redis = RedisServer::start();
    let replicas = [
        start_binary(&shared_env(&redis.url()), true),
        start_binary(&shared_env(&redis.url()), true),
    ];
    let bases: Vec<String> = replicas.iter().map(|r| r.url("")).collect();
    let (shared, _) = alternate(&bases, "203.0.113.1", BURST as usize + 2).await;
    assert!(exactly_one_burst(&shared), "{shared:?}");

    redis.stop();
    // Every request is still answered, quickly, each replica counting on its own; over ~2.5 s
    // each replica also tries Redis again, which must not log again.
    let http = reqwest::Client::new();
    let mut allowed = 0;
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < Duration::from_millis(2_500) {
        let began = Instant::now();
        let (status, _, _) = get_as(&http, &bases[n % 2], "203.0.113.2").await;
        assert!(status == 200 || status == 429, "status {status}");
        assert!(began.elapsed() < Duration::from_secs(1));
        allowed += usize::from(status == 200 && n < 2 * BURST as usize);
        n += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        allowed > BURST as usize,
        "{allowed} allowed: the replicas did not fall back to their own limiters"
    );
    for replica in &replicas {
        let (ready, _) = raw_get(replica.port, "/readyz").expect("/readyz answers");
        assert_eq!(ready, 200, "readiness must not follow Redis");
        assert_eq!(
            count(&replica.stderr(), LOST_LINE),
            1,
            "{}",
            replica.stderr()
        );
    }

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut probe = 0u32;
    while replicas.iter().any(|r| count(&r.stderr(), BACK_LINE) == 0) {
        assert!(
            Instant::now() < deadline,
            "Redis never came back in the logs"
        );
        for base in &bases {
            // Fresh addresses, so these probes use up nobody's burst.
            get_as(&http, base, &format!("198.51.100.{}", probe % 250)).await;
            probe += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (resumed, _) = alternate(&bases, "203.0.113.3", 2 * BURST as usize).await;
    assert!(exactly_one_burst(&resumed), "{resumed:?}");
    for replica in &replicas {
        let stderr = replica.stderr();
        assert_eq!(count(&stderr, LOST_LINE), 1, "{stderr}");
        assert_eq!(count(&stderr, BACK_LINE), 1, "{stderr}");
    }
}

#[tokio::test]
async fn a_paused_redis_delays_requests_by_the_timeout_not_the_pause() {
    require_redis!();
    let redis = RedisServer::start();
    let mut settings = shared_settings(&redis.url());
    settings.rate_limit.redis_timeout_ms = 200;
    let app = spawn_app(settings).await;
    let http = reqwest::Client::new();
    // Answering through Redis first, so the pause is what slows it.
    let (status, remaining, _) = get_as(&http, &base_of(&app), "203.0.113.9").await;
    assert_eq!((status, remaining.as_deref()), (200, Some("4")));
    let seen: bool = redis::cmd("EXISTS")
        .arg("tandem:rate_limit:203.0.113.9")
        .query(&mut redis.connection())
        .expect("EXISTS");
    assert!(seen, "the first request was not decided by Redis");

    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(5_000)
        .arg("ALL")
        .query(&mut redis.connection())
        .expect("CLIENT PAUSE");
    for i in 0..3 {
        let began = Instant::now();
        let (status, _, _) = get_as(&http, &base_of(&app), "203.0.113.10").await;
        let took = began.elapsed();
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_secs(1),
            "a request took {took:?} while Redis was paused"
        );
        if i == 0 {
            // It did wait for Redis (up to the timeout) before deciding on its own.
            assert!(took >= Duration::from_millis(200), "{took:?}");
        }
    }
}

/// A CA and a certificate for `localhost`/127.0.0.1 signed by it, made with the openssl CLI.
fn make_certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the openssl CLI runs (apt-get install openssl)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=tandem test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "redis.key",
            "-out",
            "redis.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("write san.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "redis.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "redis.crt",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    ]);
    (
        dir.join("ca.crt"),
        dir.join("redis.crt"),
        dir.join("redis.key"),
    )
}

#[tokio::test]
async fn rediss_with_a_password_is_shared_and_the_password_never_shows() {
    require_redis!();
    const PASSWORD: &str = "s3cret-never-printed";
    const WRONG: &str = "wr0ng-never-printed";
    let certs = tempfile::tempdir().expect("temp dir");
    let (ca, cert, key) = make_certificates(certs.path());
    let port = free_port();
    let path = |p: &PathBuf| p.display().to_string();
    let _redis = RedisServer::start_with(
        port,
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path(&cert),
            "--tls-key-file".into(),
            path(&key),
            "--tls-ca-cert-file".into(),
            path(&ca),
            "--tls-auth-clients".into(),
            "no".into(),
            "--requirepass".into(),
            PASSWORD.into(),
        ],
    );
    let url = format!("rediss://:{PASSWORD}@localhost:{port}");
    let mut env = shared_env(&url);
    env.push(("SSL_CERT_FILE", path(&ca)));

    let replicas = [start_binary(&env, true), start_binary(&env, true)];
    let bases: Vec<String> = replicas.iter().map(|r| r.url("")).collect();
    let (statuses, _) = alternate(&bases, "203.0.113.20", 2 * BURST as usize).await;
    assert!(
        exactly_one_burst(&statuses),
        "not shared over TLS: {statuses:?}\n{}",
        replicas[0].stderr()
    );

    // A wrong password is a lost Redis like any other: logged once, without the password.
    let mut wrong_env = shared_env(&format!("rediss://:{WRONG}@localhost:{port}"));
    wrong_env.push(("SSL_CERT_FILE", path(&ca)));
    let wrong = start_binary(&wrong_env, false);
    let (statuses, _) = alternate(&[wrong.url("")], "203.0.113.21", 1).await;
    assert_eq!(statuses, [200]);

    let mut check = tandem_command();
    check
        .arg("check")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = check.output().expect("tandem check runs");
    assert!(out.status.success());
    let check_output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        check_output.contains(&format!("rediss://:***@localhost:{port}")),
        "{check_output}"
    );

    assert_eq!(count(&wrong.stderr(), LOST_LINE), 1, "{}", wrong.stderr());
    let everything = [
        check_output,
        replicas[0].stderr(),
        replicas[1].stderr(),
        wrong.stderr(),
    ]
    .join("\n");
    assert!(
        everything.contains("rediss://:***@localhost"),
        "{everything}"
    );
    assert!(!everything.contains(PASSWORD), "{everything}");
    assert!(!everything.contains(WRONG), "{everything}");
}
