//! docs/reference.md §10: the Dockerfile, the systemd unit and the compose file say what the
//! reference requires and agree with tandem's own defaults (stop timeouts, port, connections), so
//! the files cannot drift from the code. The Dockerfile is read as Docker reads it (instructions,
//! comment lines dropped, continuation lines joined), so a comment can never satisfy a check.

use std::{path::Path, process::Command};

const DOCKERFILE: &str = include_str!("../../Dockerfile");
const DOCKERIGNORE: &str = include_str!("../../.dockerignore");
const UNIT: &str = include_str!("../../deploy/tandem.service");
const SOCKET_UNIT: &str = include_str!("../../deploy/tandem.socket");
const COMPOSE: &str = include_str!("../../deploy/compose.yaml");
const NGINX_EXAMPLE: &str = include_str!("../../nginx.conf.example");

/// Whether this run is CI, where a test that cannot run must fail instead of skipping.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// Every instruction of the Dockerfile, as (KEYWORD, arguments): comment lines dropped (Docker
/// drops them inside continuations too) and continuation lines joined with a space.
fn instructions() -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in DOCKERFILE.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start.trim_end());
                current.push(' ');
            }
            None => {
                current.push_str(line);
                joined.push(std::mem::take(&mut current));
            }
        }
    }
    joined
        .into_iter()
        .map(|line| {
            let (keyword, args) = line.split_once(char::is_whitespace).unwrap_or((&line, ""));
            (keyword.to_ascii_uppercase(), args.trim().to_string())
        })
        .collect()
}

/// The stages, each starting with its FROM instruction.
fn stages() -> Vec<Vec<(String, String)>> {
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in instructions() {
        if instruction.0 == "FROM" || stages.is_empty() {
            stages.push(Vec::new());
        }
        stages.last_mut().expect("a stage").push(instruction);
    }
    stages
}

/// The stage named `name` (`FROM ... AS name`).
fn stage(name: &str) -> Vec<(String, String)> {
    stages()
        .into_iter()
        .find(|stage| {
            let words: Vec<&str> = stage[0].1.split_whitespace().collect();
            words.len() >= 3
                && words[words.len() - 2].eq_ignore_ascii_case("as")
                && words[words.len() - 1] == name
        })
        .unwrap_or_else(|| panic!("no stage named {name}"))
}

/// The instructions of the last stage (the image that runs).
fn final_stage() -> Vec<String> {
    let last = stages().pop().expect("a FROM");
    last.into_iter().map(|(k, a)| format!("{k} {a}")).collect()
}

/// The shell commands of a stage's RUN instructions, in order, split at `&&` and `;`, as words.
fn run_commands(stage: &[(String, String)]) -> Vec<Vec<String>> {
    stage
        .iter()
        .filter(|(keyword, _)| keyword == "RUN")
        .flat_map(|(_, args)| {
            args.split("&&")
                .flat_map(|part| part.split(';'))
                .map(|command| command.split_whitespace().map(String::from).collect())
                .filter(|words: &Vec<String>| !words.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// How many numeric parts a full version tag of each base image has: `rust:1.95.0-...` names a
/// toolchain release, `debian:12.12-slim` a point release. A floating tag (`bookworm-slim`,
/// `1.95-slim`, `latest`) has fewer. Add an image here when the Dockerfile starts using it.
const FULL_VERSION_PARTS: [(&str, usize); 2] = [("rust", 3), ("debian", 2)];

fn unit_values(key: &str) -> Vec<&'static str> {
    values_in(UNIT, key)
}

/// The values of `key=` lines in a systemd unit file (comment lines never match).
fn values_in(unit: &'static str, key: &str) -> Vec<&'static str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

/// Whether `image` (a FROM reference) is pinned: by digest, or by a full version tag.
fn is_pinned(image: &str) -> Result<(), String> {
    if let Some((_, digest)) = image.split_once("@sha256:") {
        return (digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(())
            .ok_or_else(|| format!("{image}: a digest is 64 hex digits"));
    }
    let (name, tag) = image
        .rsplit_once(':')
        .filter(|(name, _)| !name.is_empty())
        .ok_or_else(|| format!("{image} has neither a tag nor a digest"))?;
    let parts = FULL_VERSION_PARTS
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, parts)| *parts)
        .ok_or_else(|| {
            format!("{image}: say in FULL_VERSION_PARTS what a full version of {name} is")
        })?;
    let version = tag.split('-').next().unwrap_or("");
    let numeric = version
        .split('.')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if numeric && version.split('.').count() >= parts {
        Ok(())
    } else {
        Err(format!(
            "{image}: {tag:?} floats; use a full version ({parts} numbers) or a digest"
        ))
    }
}

#[test]
fn pinning_accepts_full_versions_and_digests_and_refuses_floating_tags() {
    let digest = format!("debian@sha256:{}", "ab".repeat(32));
    for pinned in [
        "rust:1.95.0-slim-bookworm",
        "debian:12.12-slim",
        "debian:12.12",
        &digest,
    ] {
        assert_eq!(is_pinned(pinned), Ok(()), "{pinned}");
    }
    for floating in [
        "rust:1.95-slim-bookworm",
        "rust:slim-bookworm",
        "debian:bookworm-slim",
        "debian:12-slim",
        "debian:latest",
        "debian",
        "debian@sha256:abc",
        "alpine:3.20.1",
    ] {
        assert!(is_pinned(floating).is_err(), "{floating}");
    }
}

#[test]
fn image_is_multi_stage_with_pinned_bases() {
    let stages = stages();
    assert!(stages.len() >= 2, "multi-stage");
    let mut names = Vec::new();
    for stage in &stages {
        let (keyword, args) = &stage[0];
        assert_eq!(keyword, "FROM");
        let words: Vec<&str> = args
            .split_whitespace()
            .filter(|w| !w.starts_with("--platform="))
            .collect();
        let image = words[0];
        // `FROM build` continues an earlier stage; only registry images need a pin.
        if !names.contains(&image) {
            assert_eq!(is_pinned(image), Ok(()));
        }
        if words.len() == 3 {
            names.push(words[2]);
        }
    }
}

#[test]
fn image_builds_locked_in_release_and_precompresses_a_readable_site() {
    let build = run_commands(&stage("build"));
    let cargo_builds: Vec<&Vec<String>> = build
        .iter()
        .filter(|c| c.len() >= 2 && c[0] == "cargo" && c[1] == "build")
        .collect();
    assert!(!cargo_builds.is_empty(), "the build stage runs cargo build");
    for command in cargo_builds {
        for flag in ["--release", "--locked"] {
            assert!(
                command.iter().any(|w| w == flag),
                "{command:?} lacks {flag}"
            );
        }
    }
    let position = |what: &str, found: &dyn Fn(&Vec<String>) -> bool| {
        build
            .iter()
            .position(found)
            .unwrap_or_else(|| panic!("the build stage runs no {what}: {build:?}"))
    };
    let covers_the_site = |c: &Vec<String>| {
        ["htdocs", "public"]
            .iter()
            .all(|d| c.iter().any(|w| w == d))
    };
    let precompress = position("tandem precompress htdocs public", &|c| {
        c.len() >= 2 && c[0].ends_with("tandem") && c[1] == "precompress" && covers_the_site(c)
    });
    // COPY keeps the checkout's modes (0600/0700 under umask 077): after the siblings exist,
    // everything must become readable (and searchable) by every user, writable by none.
    let chmod = position("chmod making the site world-readable", &|c| {
        c[0] == "chmod"
            && c.iter().any(|w| w == "-R")
            && c.iter().any(|w| makes_world_readable(w))
            && covers_the_site(c)
    });
    assert!(chmod > precompress, "the chmod covers the siblings too");
    for stage_name in ["runtime", "nginx"] {
        for (keyword, args) in stage(stage_name) {
            if keyword == "COPY" && (args.contains("htdocs") || args.contains("public")) {
                assert!(args.starts_with("--from=build "), "{stage_name}: {args}");
                assert!(
                    !args.contains("--chown"),
                    "{stage_name}: the site stays root's: {args}"
                );
            }
        }
    }
}

/// A symbolic chmod mode that gives others read and directory search, and no one but the owner
/// write (`u=rwX,go=rX`, `a=rX`, `go+rX`).
fn makes_world_readable(mode: &str) -> bool {
    let clauses: Vec<(&str, char, &str)> = mode
        .split(',')
        .filter_map(|clause| {
            let at = clause.find(['=', '+', '-'])?;
            let op = clause[at..].chars().next()?;
            Some((&clause[..at], op, &clause[at + 1..]))
        })
        .collect();
    !clauses.is_empty()
        && clauses.iter().any(|(who, op, perms)| {
            (who.contains('o') || who.contains('a'))
                && *op != '-'
                && perms.contains('r')
                && perms.contains('X')
        })
        && !clauses.iter().any(|(who, op, perms)| {
            (who.contains('g') || who.contains('o') || who.contains('a'))
                && *op != '-'
                && perms.contains('w')
        })
}

#[test]
fn world_readable_modes_are_recognised() {
    for yes in ["u=rwX,go=rX", "a=rX", "go+rX", "a+rX"] {
        assert!(makes_world_readable(yes), "{yes}");
    }
    for no in ["644", "u=rwX", "go=r", "a+rwX", "o-rX", "go=rwX"] {
        assert!(!makes_world_readable(no), "{no}");
    }
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
fn systemd_unit_allows_every_connection_tandem_may_hold_on_a_large_machine() {
    let per_worker = tandem::Settings::default().server.max_connections as u64;
    let limit: u64 = unit_values("LimitNOFILE")[0]
        .parse()
        .expect("LimitNOFILE is one number");
    // server.max_connections is per worker and there is one worker per CPU; 40 CPUs with the
    // defaults is an ordinary large server.
    assert!(
        limit >= per_worker * 40,
        "LimitNOFILE={limit} is below {per_worker} connections x 40 workers"
    );
    // Above fs.nr_open's default (1048576) setrlimit fails and the unit would not start.
    assert!(
        limit <= 1 << 20,
        "LimitNOFILE={limit} is above the kernel's default ceiling"
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
    assert_eq!(
        UNIT.matches("/usr/local/bin/tandem").count(),
        2,
        "ExecStart and the install comment"
    );
    systemd_analyze_verify(UNIT);
}

/// docs/reference.md §9 "Socket activation": the socket unit passes tandem's HTTP listener by
/// the name tandem looks for, on tandem's default address, with tandem's own backlog, and the
/// service cannot start without it, so `systemctl restart tandem` keeps it open.
#[test]
fn socket_unit_passes_tandems_http_listener_and_outlives_service_restarts() {
    let server = tandem::Settings::default().server;
    let socket = |key| values_in(SOCKET_UNIT, key);
    assert_eq!(socket("FileDescriptorName"), ["http"]);
    assert_eq!(
        socket("ListenStream"),
        [format!("{}:{}", server.host, server.port).as_str()],
        "tandem's default server.host and server.port"
    );
    assert_eq!(socket("NoDelay"), ["true"]);
    let backlog: u32 = socket("Backlog")[0].parse().expect("Backlog is a number");
    assert_eq!(backlog, server.backlog, "server.backlog");
    // One tandem takes every connection; Accept=yes would start one per connection.
    assert!(matches!(socket("Accept")[..], [] | ["no"] | ["false"]));
    assert_eq!(socket("Service"), ["tandem.service"]);
    assert_eq!(socket("WantedBy"), ["sockets.target"]);
    assert_eq!(unit_values("Requires"), ["tandem.socket"]);
    assert!(unit_values("After").contains(&"tandem.socket"));
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

/// The lines of a top-level block of the compose file (`services:` entry `name` or `networks:`
/// entry), comments and blank lines dropped, indentation kept.
fn compose_block(section: &str, name: &str) -> Vec<&'static str> {
    let lines: Vec<&'static str> = COMPOSE
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect();
    let section_at = lines
        .iter()
        .position(|l| *l == format!("{section}:"))
        .unwrap_or_else(|| panic!("compose.yaml has no {section}:"));
    let header = format!("  {name}:");
    let start = lines[section_at + 1..]
        .iter()
        .take_while(|l| l.starts_with(' '))
        .position(|l| l.starts_with(&header))
        .map(|i| i + section_at + 1)
        .unwrap_or_else(|| panic!("compose.yaml has no {section}.{name}"));
    lines[start + 1..]
        .iter()
        .take_while(|l| l.starts_with("    "))
        .copied()
        .collect()
}

/// A key's scalar value directly under the block (4-space indentation).
fn compose_value(block: &[&str], key: &str) -> Option<String> {
    block.iter().find_map(|l| {
        let rest = l
            .strip_prefix("    ")?
            .strip_prefix(key)?
            .strip_prefix(':')?;
        Some(rest.trim().trim_matches('"').to_string())
    })
}

/// A key's list directly under the block, in flow (`[a, b]`) or block (`- a`) form.
fn compose_list(block: &[&str], key: &str) -> Vec<String> {
    let Some(at) = block.iter().position(|l| {
        l.strip_prefix("    ")
            .is_some_and(|r| r.starts_with(&format!("{key}:")))
    }) else {
        return Vec::new();
    };
    let inline = block[at]
        .split_once(':')
        .map(|(_, v)| v.trim())
        .unwrap_or("");
    if let Some(items) = inline.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        return items
            .split(',')
            .map(|i| i.trim().trim_matches('"').to_string())
            .collect();
    }
    block[at + 1..]
        .iter()
        .take_while(|l| l.starts_with("      "))
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(|i| i.trim().trim_matches('"').to_string())
        .collect()
}

fn seconds(value: &str) -> u64 {
    value
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{value:?} is not a whole number of seconds like 90s"))
}

#[test]
fn compose_runs_tandem_read_only_without_capabilities_or_privilege_gains() {
    // The single instance and the replicas profile's template (tandem-2 merges tandem-1).
    for service in ["tandem", "tandem-1"] {
        let tandem = compose_block("services", service);
        assert_eq!(
            compose_value(&tandem, "read_only").as_deref(),
            Some("true"),
            "{service}"
        );
        assert_eq!(compose_list(&tandem, "cap_drop"), ["ALL"], "{service}");
        assert!(
            compose_list(&tandem, "security_opt").contains(&"no-new-privileges:true".to_string()),
            "{service}: {tandem:?}"
        );
        let grace =
            seconds(&compose_value(&tandem, "stop_grace_period").expect("a stop_grace_period"));
        let server = tandem::Settings::default().server;
        assert!(grace > server.shutdown_timeout_secs + server.shutdown_drain_secs);
    }
}

#[test]
fn compose_nginx_outlives_its_websocket_timeout_and_reports_health() {
    let nginx = compose_block("services", "nginx");
    let grace = seconds(&compose_value(&nginx, "stop_grace_period").expect("a stop_grace_period"));
    // The /socket location's proxy_read_timeout: how long an idle WebSocket may hold a worker.
    let socket_at = NGINX_EXAMPLE
        .find("location = /socket {")
        .expect("a /socket location");
    let read_timeout = NGINX_EXAMPLE[socket_at..]
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("proxy_read_timeout "))
        .and_then(|v| v.split(';').next())
        .map(seconds)
        .expect("/socket sets proxy_read_timeout");
    assert!(
        grace > read_timeout,
        "stop_grace_period {grace}s <= {read_timeout}s"
    );
    let at = nginx
        .iter()
        .position(|l| l.trim() == "healthcheck:")
        .expect("nginx has a healthcheck");
    assert!(
        nginx[at + 1..]
            .iter()
            .take_while(|l| l.starts_with("      "))
            .any(|l| l.trim().starts_with("test: [\"CMD\"")),
        "the healthcheck runs a command"
    );
}

#[test]
fn compose_pins_no_subnet_and_keeps_tandem_reachable_only_through_nginx() {
    for line in COMPOSE.lines().filter(|l| !l.trim_start().starts_with('#')) {
        for fixed in ["ipv4_address", "ipv6_address", "subnet", "ipam"] {
            assert!(!line.contains(fixed), "a fixed address can collide: {line}");
        }
    }
    let tandem = compose_block("services", "tandem");
    assert!(
        compose_list(&tandem, "ports").is_empty(),
        "tandem publishes no port"
    );
    let networks = compose_list(&tandem, "networks");
    assert_eq!(
        networks.len(),
        1,
        "tandem sits on one network: {networks:?}"
    );
    let backend = compose_block("networks", &networks[0]);
    assert_eq!(compose_value(&backend, "internal").as_deref(), Some("true"));
    // Only tandem and nginx on it, so trusting Docker's private pools means trusting nginx.
    let members: Vec<&str> = ["tandem", "nginx"]
        .into_iter()
        .filter(|s| compose_list(&compose_block("services", s), "networks").contains(&networks[0]))
        .collect();
    assert_eq!(members, ["tandem", "nginx"]);
    let environment = compose_block("services", "tandem");
    let trusted = environment
        .iter()
        .find_map(|l| l.trim().strip_prefix("TANDEM__PROXY__TRUSTED:"))
        .expect("tandem's proxy.trusted is set");
    for world in ["0.0.0.0/0", "::/0"] {
        assert!(!trusted.contains(world), "{trusted}");
    }
}

/// The `docker run` commands documented in the Dockerfile's comments that publish a port, as
/// words: comment markers dropped, continuation lines joined.
fn documented_docker_runs() -> Vec<Vec<String>> {
    let mut commands = Vec::new();
    let mut current = String::new();
    for line in DOCKERFILE.lines() {
        let Some(text) = line.trim().strip_prefix('#') else {
            continue;
        };
        let text = text.trim();
        if current.is_empty() && !text.starts_with("docker run") {
            continue;
        }
        match text.strip_suffix('\\') {
            Some(start) => {
                current.push_str(start);
                current.push(' ');
            }
            None => {
                current.push_str(text);
                commands.push(std::mem::take(&mut current));
            }
        }
    }
    commands
        .iter()
        .map(|c| c.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|words| words.iter().any(|w| w == "-p"))
        .collect()
}

/// The values given to `flag` in `words` (`-p 443:8443` → `443:8443`).
fn flag_values<'a>(words: &'a [String], flag: &str) -> Vec<&'a str> {
    words
        .windows(2)
        .filter(|pair| pair[0] == flag)
        .map(|pair| pair[1].as_str())
        .collect()
}

#[test]
fn image_exposes_the_https_port_and_its_https_runs_publish_443_and_80_onto_exposed_ports() {
    let stage = final_stage();
    let exposed: Vec<&str> = stage
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(str::split_whitespace)
        .collect();
    let default_port = tandem::Settings::default().server.port.to_string();
    assert!(exposed.contains(&default_port.as_str()), "{exposed:?}");
    assert!(exposed.contains(&"8443"), "the TLS port: {exposed:?}");
    let https_runs: Vec<Vec<String>> = documented_docker_runs()
        .into_iter()
        .filter(|words| {
            flag_values(words, "-p")
                .iter()
                .any(|p| p.starts_with("443:"))
        })
        .collect();
    assert!(
        https_runs.len() >= 2,
        "a files and an ACME example: {https_runs:?}"
    );
    for run in &https_runs {
        let published = flag_values(run, "-p");
        for host_port in ["443", "80"] {
            let inside = published
                .iter()
                .find_map(|p| p.strip_prefix(host_port)?.strip_prefix(':'))
                .unwrap_or_else(|| panic!("{run:?} publishes no {host_port}"));
            assert!(
                exposed.contains(&inside),
                "{host_port}:{inside} is not exposed"
            );
        }
        let env = flag_values(run, "-e");
        if env.iter().any(|e| e.starts_with("TANDEM__TLS__MODE=files")) {
            // The ports the container listens on are the ones published, the certificate and
            // key lie in a read-only mount.
            assert!(env.contains(&"TANDEM__SERVER__PORT=8443"), "{env:?}");
            assert!(env.contains(&"TANDEM__TLS__REDIRECT_PORT=8080"), "{env:?}");
            let mounts = flag_values(run, "-v");
            for key in ["TANDEM__TLS__CERT_FILE=", "TANDEM__TLS__KEY_FILE="] {
                let path = env
                    .iter()
                    .find_map(|e| e.strip_prefix(key))
                    .unwrap_or_else(|| panic!("{key} is set: {env:?}"));
                assert!(
                    mounts.iter().any(|m| {
                        let parts: Vec<&str> = m.split(':').collect();
                        parts.len() == 3
                            && parts[2] == "ro"
                            && path.starts_with(&format!("{}/", parts[1]))
                    }),
                    "{path} is not under a read-only mount: {mounts:?}"
                );
            }
        }
    }
}

#[test]
fn image_prepares_the_documented_acme_volume_for_its_user() {
    let volume = documented_docker_runs()
        .iter()
        .flat_map(|run| {
            flag_values(run, "-v")
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .find(|m| m.contains("acme"))
        .expect("an ACME cache volume is documented");
    let inside = volume.split(':').nth(1).expect("VOLUME:PATH");
    let user = final_stage()
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER ").map(String::from))
        .expect("a USER");
    let uid = user.split(':').next().unwrap().to_string();
    let creates = run_commands(&stage("runtime")).into_iter().any(|c| {
        c[0] == "install"
            && c.iter().any(|w| w == "-d")
            && c.windows(2).any(|p| p[0] == "-o" && p[1] == uid)
            && c.windows(2).any(|p| p[0] == "-m" && p[1] == "0700")
            && c.last().map(String::as_str) == Some(inside)
    });
    assert!(
        creates,
        "the runtime stage creates {inside} 0700 for uid {uid}"
    );
    // ACME asks the CA's directory over HTTPS, checked against the system roots.
    let roots = run_commands(&stage("runtime")).into_iter().any(|c| {
        c.windows(2).any(|p| p[0] == "apt-get" && p[1] == "install")
            && c.iter().any(|w| w == "ca-certificates")
    });
    assert!(roots, "the runtime stage installs ca-certificates");
}

/// A unit's effective value of `key` as systemd reads `text`: a capability set is the union of
/// its assignments since the last empty one; any other key's last assignment wins.
fn effective(text: &str, key: &str) -> Vec<String> {
    let mut value: Vec<String> = Vec::new();
    for assigned in text
        .lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
    {
        if key.ends_with("Capabilities") || key == "CapabilityBoundingSet" {
            if assigned.is_empty() {
                value.clear();
            }
            value.extend(assigned.split_whitespace().map(String::from));
        } else {
            value = vec![assigned.to_string()];
        }
    }
    value
}

/// The unit with its port-443 variant uncommented.
fn unit_with_port_443_variant() -> String {
    UNIT.lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest)
                if PORT_443_VARIANT
                    .iter()
                    .any(|(k, v)| rest == format!("{k}={v}")) =>
            {
                rest
            }
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const PORT_443_VARIANT: [(&str, &str); 3] = [
    ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
    ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
    ("PrivateUsers", "no"),
];

#[test]
fn systemd_unit_offers_port_443_without_root_as_a_commented_variant() {
    // As shipped: the variant is only comments, so the unit keeps no capability at all.
    for (key, value) in PORT_443_VARIANT {
        let commented = format!("#{key}={value}");
        assert_eq!(
            UNIT.lines().filter(|l| *l == commented).count(),
            1,
            "{commented}"
        );
    }
    for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
        assert!(effective(UNIT, key).is_empty(), "{key}");
    }
    assert_eq!(effective(UNIT, "PrivateUsers"), ["yes"]);
    // A line above the variant says when to use it.
    let lines: Vec<&str> = UNIT.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == "#CapabilityBoundingSet=CAP_NET_BIND_SERVICE")
        .unwrap();
    let explanation: Vec<&str> = lines[..at]
        .iter()
        .rev()
        .take_while(|l| l.starts_with("# "))
        .copied()
        .collect();
    assert!(
        explanation.iter().any(|l| l.contains("443"))
            && explanation.iter().any(|l| l.contains("uncomment")),
        "{explanation:?}"
    );
    // Uncommented, it grants exactly the one capability, ambient, outside a user namespace:
    // placed above the empty assignments or PrivateUsers=yes it would be overridden.
    let variant = unit_with_port_443_variant();
    for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
        assert_eq!(effective(&variant, key), ["CAP_NET_BIND_SERVICE"], "{key}");
    }
    assert_eq!(effective(&variant, "PrivateUsers"), ["no"]);
    assert_eq!(effective(&variant, "NoNewPrivileges"), ["yes"]);
}

/// Both the unit as shipped and its port-443 variant must load in systemd (the shipped one is
/// also checked by `systemd_unit_passes_systemd_analyze_verify`).
#[test]
fn systemd_unit_with_the_port_443_variant_passes_systemd_analyze_verify() {
    let variant = unit_with_port_443_variant();
    assert_ne!(variant, UNIT.trim_end(), "the variant changes the unit");
    systemd_analyze_verify(&variant);
}

/// `systemd-analyze verify` of `service` (with the binary under test as `ExecStart`) and the
/// socket unit it requires: it must succeed and print nothing.
fn systemd_analyze_verify(service: &str) {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        if under_ci() {
            panic!("CI is set and systemd-analyze is missing (apt-get install systemd)");
        }
        eprintln!("SKIPPED systemd-analyze verify: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = dir.path().join("tandem.service");
    std::fs::write(
        &unit,
        service.replace("/usr/local/bin/tandem", env!("CARGO_BIN_EXE_tandem")),
    )
    .unwrap();
    let socket = dir.path().join("tandem.socket");
    std::fs::write(&socket, SOCKET_UNIT).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&unit)
        .arg(&socket)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "verify is silent when clean: {stderr}"
    );
}
