//! docs/reference.md §2 and §3 through the real binary: each configuration source and its precedence, each
//! rejection naming its key with exit status 2, `check`, `healthcheck`, `--help`, `--version`,
//! and bind failures as one sentence with exit status 1.

use std::{
    net::TcpListener,
    os::unix::process::CommandExt,
    process::{Output, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::helpers::{BinaryServer, free_port, skip, tandem_command, unprivileged_user};

fn run(args: &[&str], env: &[(&str, &str)], dir: Option<&std::path::Path>) -> Output {
    let mut cmd = tandem_command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    if let Some(dir) = dir {
        cmd.current_dir(dir);
    }
    cmd.output().unwrap()
}

/// Runs `cmd` to its end; a server that started instead of failing is killed and fails the test.
fn output_within(mut cmd: std::process::Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}:\n{}", stderr(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn effective(out: &Output) -> toml::Table {
    assert!(out.status.success(), "{}", stderr(out));
    toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap()
}

fn nginx_env() -> Vec<(&'static str, &'static str)> {
    vec![("TANDEM__STATIC__MODE", "nginx")]
}

#[test]
fn check_runs_on_built_in_defaults_with_no_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("htdocs")).unwrap();
    std::fs::create_dir(dir.path().join("public")).unwrap();
    let out = run(&["check"], &[], Some(dir.path()));
    let config = effective(&out);
    assert_eq!(config["server"]["port"].as_integer(), Some(8080));
    assert_eq!(config["server"]["host"].as_str(), Some("127.0.0.1"));
    assert_eq!(config["static"]["mode"].as_str(), Some("app"));
}

#[test]
fn file_then_environment_then_port_later_wins() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("custom.toml");
    std::fs::write(
        &file,
        "[server]\nport = 7001\nworkers = 3\n[app]\nservice = \"from-file\"\n[static]\nmode = \"nginx\"\n",
    )
    .unwrap();
    let path = file.to_str().unwrap();

    let config = effective(&run(&["check", "--config", path], &[], None));
    assert_eq!(config["server"]["port"].as_integer(), Some(7001));
    assert_eq!(config["app"]["service"].as_str(), Some("from-file"));

    let config = effective(&run(
        &["check", "--config", path],
        &[
            ("TANDEM__SERVER__PORT", "7002"),
            ("TANDEM__APP__SERVICE", "from-env"),
        ],
        None,
    ));
    assert_eq!(config["server"]["port"].as_integer(), Some(7002));
    assert_eq!(config["app"]["service"].as_str(), Some("from-env"));
    assert_eq!(config["server"]["workers"].as_integer(), Some(3));

    let config = effective(&run(
        &["check", "--config", path],
        &[("PORT", "7003")],
        None,
    ));
    assert_eq!(config["server"]["port"].as_integer(), Some(7003));

    let config = effective(&run(
        &["check", "--config", path],
        &[("PORT", "7003"), ("TANDEM__SERVER__PORT", "7004")],
        None,
    ));
    assert_eq!(config["server"]["port"].as_integer(), Some(7004));
}

#[test]
fn config_file_comes_from_tandem_config_then_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tandem.toml"),
        "[app]\nservice = \"cwd\"\n[static]\nmode = \"nginx\"\n",
    )
    .unwrap();
    let other = dir.path().join("other.toml");
    std::fs::write(
        &other,
        "[app]\nservice = \"env-file\"\n[static]\nmode = \"nginx\"\n",
    )
    .unwrap();

    let config = effective(&run(&["check"], &[], Some(dir.path())));
    assert_eq!(config["app"]["service"].as_str(), Some("cwd"));

    let config = effective(&run(
        &["check"],
        &[("TANDEM_CONFIG", other.to_str().unwrap())],
        Some(dir.path()),
    ));
    assert_eq!(config["app"]["service"].as_str(), Some("env-file"));
}

#[test]
fn environment_lists_are_comma_separated() {
    let config = effective(&run(
        &["check"],
        &[
            ("TANDEM__STATIC__MODE", "nginx"),
            ("TANDEM__PROXY__TRUSTED", "10.0.0.0/8, 192.168.1.10"),
            ("TANDEM__STATIC__ENCODINGS", "gzip,br"),
        ],
        None,
    ));
    let trusted: Vec<&str> = config["proxy"]["trusted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(trusted, ["10.0.0.0/8", "192.168.1.10"]);
    let encodings: Vec<&str> = config["static"]["encodings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(encodings, ["gzip", "br"]);
}

#[test]
fn bad_configuration_exits_2_with_one_sentence_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    type Case<'a> = (Vec<(&'a str, &'a str)>, Option<&'a str>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![("TANDEM__SERVER__PORT", "0")], None, "server.port"),
        (
            vec![("TANDEM__SERVER__PORT", "not-a-port")],
            None,
            "server.port",
        ),
        (
            vec![("TANDEM__RATE_LIMIT__BURST", "0")],
            None,
            "rate_limit.burst",
        ),
        (
            vec![("TANDEM__PROXY__TRUSTED", "10.0.0.0/40")],
            None,
            "proxy.trusted",
        ),
        (
            vec![("TANDEM__SERVER__WROKERS", "2")],
            None,
            "server.wrokers",
        ),
        (vec![("PORT", "http")], None, "PORT"),
        (vec![], Some("[server]\nport = \"eighty\"\n"), "server.port"),
        (vec![], Some("[sever]\nport = 1\n"), "sever"),
        (vec![], Some("[log]\nformat = \"xml\"\n"), "log.format"),
        (vec![], Some("[server\nport = 1\n"), "not valid TOML"),
    ];
    for (i, (env, file, needle)) in cases.into_iter().enumerate() {
        let mut env_all = nginx_env();
        env_all.extend(env);
        let mut args = vec!["check".to_string()];
        if let Some(text) = file {
            let path = dir.path().join(format!("bad{i}.toml"));
            std::fs::write(&path, text).unwrap();
            args.push("--config".into());
            args.push(path.to_string_lossy().into_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args, &env_all, None);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "case {i}: {err}");
        assert!(err.contains(needle), "case {i}: {err}");
        assert_eq!(
            err.trim().lines().count(),
            1,
            "case {i}: one sentence: {err}"
        );
    }
}

#[test]
fn missing_root_in_app_mode_is_rejected_and_nginx_mode_needs_none() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(&["check"], &[], Some(dir.path()));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("static.htdocs"), "{}", stderr(&out));
    let out = run(
        &["check"],
        &[("TANDEM__STATIC__MODE", "nginx")],
        Some(dir.path()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_missing_config_file_is_named() {
    let out = run(
        &["check", "--config", "/nonexistent/tandem.toml"],
        &[],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("/nonexistent/tandem.toml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn help_and_version_work() {
    let out = run(&["--help"], &[], None);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "check", "healthcheck", "--config"] {
        assert!(help.contains(word), "{help}");
    }
    let out = run(&["--version"], &[], None);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = run(&["no-such-command"], &[], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_taken_port_exits_1_with_one_clear_sentence() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(
        &["serve"],
        &[
            ("TANDEM__STATIC__MODE", "nginx"),
            ("TANDEM__SERVER__PORT", &port),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("already in use") && err.contains(&port),
        "{err}"
    );
}

#[test]
fn a_privileged_port_without_privilege_explains_the_fix() {
    let unprivileged_start =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|text| text.trim().parse::<u16>().ok())
            .unwrap_or(1024);
    if unprivileged_start <= 80 {
        skip("this machine lets every user bind port 80 (net.ipv4.ip_unprivileged_port_start)");
        return;
    }
    let mut cmd = tandem_command();
    cmd.arg("serve")
        .env("TANDEM__STATIC__MODE", "nginx")
        .env("TANDEM__SERVER__PORT", "80")
        .current_dir("/");
    // As root the bind would succeed: drop to an unprivileged user, as the image's USER does.
    if let Some((uid, gid)) = unprivileged_user() {
        cmd.uid(uid).gid(gid);
    }
    let out = output_within(cmd, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("CAP_NET_BIND_SERVICE") && err.contains("below 1024"),
        "{err}"
    );
}

#[test]
fn healthcheck_exits_0_against_a_live_server_and_1_otherwise() {
    let server = BinaryServer::start(&[("TANDEM__STATIC__MODE", "nginx")]);
    let port = server.port.to_string();
    let out = run(
        &["healthcheck"],
        &[
            ("TANDEM__STATIC__MODE", "nginx"),
            ("TANDEM__SERVER__PORT", &port),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let dead = free_port().to_string();
    let out = run(
        &["healthcheck"],
        &[
            ("TANDEM__STATIC__MODE", "nginx"),
            ("TANDEM__SERVER__PORT", &dead),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&dead), "{}", stderr(&out));
}

#[test]
fn the_served_status_reflects_the_configuration() {
    let server = BinaryServer::start(&[
        ("TANDEM__STATIC__MODE", "nginx"),
        ("TANDEM__APP__SERVICE", "shop"),
        ("TANDEM__APP__VERSION", "9.9.9"),
    ]);
    let body: Value = reqwest::blocking::get(server.url("/api/status"))
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(body["service"], "shop");
    assert_eq!(body["version"], "9.9.9");
}

#[test]
fn a_client_timeout_not_longer_than_the_heartbeat_stops_start_up_naming_the_key() {
    for (heartbeat, client_timeout) in [("15", "15"), ("15", "10")] {
        let mut env = nginx_env();
        env.extend([
            ("TANDEM__WEBSOCKET__HEARTBEAT_SECS", heartbeat),
            ("TANDEM__WEBSOCKET__CLIENT_TIMEOUT_SECS", client_timeout),
        ]);
        let mut cmd = tandem_command();
        cmd.arg("serve")
            .env("TANDEM__SERVER__PORT", free_port().to_string());
        for (key, value) in &env {
            cmd.env(key, value);
        }
        let out = output_within(cmd, Duration::from_secs(20));
        let err = stderr(&out);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{heartbeat}/{client_timeout}: {err}"
        );
        assert!(
            err.contains("websocket.client_timeout_secs")
                && err.contains("websocket.heartbeat_secs"),
            "{err}"
        );
        assert_eq!(err.trim().lines().count(), 1, "one sentence: {err}");
    }
}
