//! SPEC §10: the Dockerfile and the systemd unit say what the SPEC requires and agree with
//! tandem's own defaults (stop timeouts, port), so the files cannot drift from the code.

use std::{path::Path, process::Command};

const DOCKERFILE: &str = include_str!("../../Dockerfile");
const DOCKERIGNORE: &str = include_str!("../../.dockerignore");
const UNIT: &str = include_str!("../../deploy/tandem.service");

/// The instructions of the last stage (the image that runs), continuation lines joined.
fn final_stage() -> Vec<String> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in DOCKERFILE.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => current.push_str(start),
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    let last_from = joined
        .iter()
        .rposition(|l| l.starts_with("FROM "))
        .expect("a FROM");
    joined.split_off(last_from)
}

fn unit_values(key: &str) -> Vec<&'static str> {
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn image_is_multi_stage_with_pinned_bases() {
    let froms: Vec<&str> = DOCKERFILE
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage: {froms:?}");
    for from in froms {
        let image = from.split_whitespace().nth(1).unwrap();
        let tag = image.split_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest",
            "{image} is pinned to a tag"
        );
    }
    assert!(DOCKERFILE.contains("cargo build --release --locked"));
    assert!(
        DOCKERFILE.contains("tandem precompress"),
        "assets precompressed at build"
    );
}

#[test]
fn image_runs_tandem_as_pid_1_unprivileged_on_all_interfaces() {
    let stage = final_stage();
    let has = |instruction: &str| stage.iter().any(|l| l == instruction);
    let user = stage
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER in the final stage");
    let uid = user.split(':').next().unwrap();
    assert!(uid != "root" && uid != "0", "runs as {user}");
    assert!(
        stage
            .iter()
            .any(|l| l.starts_with("ENV ") && l.contains("TANDEM__SERVER__HOST=0.0.0.0"))
    );
    let default_port = tandem::Settings::default().server.port;
    assert!(has(&format!("EXPOSE {default_port}")));
    assert!(has("STOPSIGNAL SIGTERM"));
    assert!(
        stage
            .iter()
            .any(|l| l.starts_with("HEALTHCHECK ")
                && l.ends_with("CMD [\"tandem\", \"healthcheck\"]"))
    );
    // Exec form: tandem itself receives the stop signal, no shell in between.
    assert!(has("ENTRYPOINT [\"tandem\"]"));
}

#[test]
fn build_context_leaves_out_the_target_directory_and_stale_siblings() {
    let lines: Vec<&str> = DOCKERIGNORE.lines().map(str::trim).collect();
    assert_eq!(lines.iter().find(|l| !l.starts_with('#')), Some(&"*"));
    for needed in ["!Cargo.toml", "!Cargo.lock", "!src", "!htdocs", "!public"] {
        assert!(lines.contains(&needed), "{needed}");
    }
    for sibling in ["**/*.br", "**/*.gz", "**/*.zst"] {
        assert!(lines.contains(&sibling), "{sibling}");
    }
}

#[test]
fn systemd_unit_waits_longer_than_a_graceful_stop_takes() {
    let server = tandem::Settings::default().server;
    assert_eq!(unit_values("KillSignal"), ["SIGTERM"]);
    let timeout: u64 = unit_values("TimeoutStopSec")[0].parse().unwrap();
    assert!(timeout > server.shutdown_timeout_secs + server.shutdown_drain_secs);
    assert_eq!(unit_values("Restart"), ["on-failure"]);
    assert_eq!(
        unit_values("RestartPreventExitStatus"),
        ["2"],
        "config errors stay down"
    );
}

#[test]
fn systemd_unit_runs_unprivileged_and_hardened() {
    let unprivileged = unit_values("DynamicUser") == ["yes"]
        || unit_values("User")
            .iter()
            .any(|u| *u != "root" && *u != "0");
    assert!(unprivileged);
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectControlGroups", "yes"),
        ("LockPersonality", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(unit_values(key), [value], "{key}");
    }
    assert!(unit_values("SystemCallFilter").contains(&"@system-service"));
    assert_eq!(
        unit_values("RestrictAddressFamilies"),
        ["AF_INET AF_INET6 AF_UNIX"]
    );
}

/// `systemd-analyze verify` checks that ExecStart exists, so it verifies a copy pointing at the
/// binary under test; everything else is the file as shipped.
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true and systemd-analyze is missing (apt-get install systemd)");
        }
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed");
        return;
    }
    assert_eq!(
        UNIT.matches("/usr/local/bin/tandem").count(),
        2,
        "ExecStart and the install comment"
    );
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("tandem.service");
    std::fs::write(
        &unit,
        UNIT.replace("/usr/local/bin/tandem", env!("CARGO_BIN_EXE_tandem")),
    )
    .unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "verify is silent when clean: {stderr}"
    );
}

/// The compose file's nginx stage edits nginx.conf.example with sed; each edit must still find
/// its line, or the container would proxy to 127.0.0.1 inside itself.
#[test]
fn nginx_image_stage_edits_lines_the_example_still_has() {
    let example = include_str!("../../nginx.conf.example");
    for line in ["server 127.0.0.1:8080;", "server_name example.com;"] {
        assert!(
            DOCKERFILE.contains(&format!("'s/{line}/")),
            "the nginx stage rewrites {line:?}"
        );
        assert_eq!(example.matches(line).count(), 1, "{line:?}");
    }
    let compose = include_str!("../../deploy/compose.yaml");
    assert!(compose.contains("target: nginx") && compose.contains("target: runtime"));
    assert!(DOCKERFILE.contains("AS nginx") && DOCKERFILE.contains("AS runtime"));
    assert!(DOCKERIGNORE.lines().any(|l| l == "!nginx.conf.example"));
}
