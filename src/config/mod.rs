//! Settings: the single source of defaults, how they load (defaults → file → environment → `PORT`)
//! and how they are validated. Implements `docs/reference.md §3`. Unknown keys and wrong types are
//! serde's to find (`deny_unknown_fields`), `serde_path_to_error` names the key.

use std::{
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
};

use config::{Config, Environment, File, FileFormat};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

pub use crate::encoding::Encoding;
use crate::redis_url::RedisUrl;

mod acme;
pub use acme::{AcmeChallenge, AcmeSettings, LETS_ENCRYPT_PRODUCTION, LETS_ENCRYPT_STAGING};

/// Everything tandem can be configured with. `Settings::default()` is the documented default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub app: AppSettings,
    pub server: ServerSettings,
    #[serde(rename = "static")]
    pub static_files: StaticSettings,
    pub proxy: ProxySettings,
    pub rate_limit: RateLimitSettings,
    pub websocket: WebSocketSettings,
    pub log: LogSettings,
    pub metrics: MetricsSettings,
    pub tls: TlsSettings,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AppSettings {
    pub service: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    pub host: String,
    pub port: u16,
    pub workers: usize,
    pub keep_alive_secs: u64,
    pub client_request_timeout_ms: u64,
    pub client_disconnect_timeout_ms: u64,
    pub max_connections: usize,
    pub backlog: u32,
    pub max_body_bytes: usize,
    pub shutdown_drain_secs: u64,
    pub shutdown_timeout_secs: u64,
}

/// Who serves static files (docs/reference.md §1 deployment table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StaticMode {
    App,
    Nginx,
}

impl StaticMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StaticMode::App => "app",
            StaticMode::Nginx => "nginx",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StaticSettings {
    pub mode: StaticMode,
    pub htdocs: PathBuf,
    pub public: PathBuf,
    pub encodings: Vec<Encoding>,
    pub public_max_age_secs: u64,
    pub html_cache_control: String,
}

/// Which forwarded header a trusted proxy's client address is read from (docs/reference.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RealIpHeader {
    #[serde(rename = "X-Forwarded-For", alias = "x-forwarded-for")]
    XForwardedFor,
    #[serde(rename = "X-Real-IP", alias = "x-real-ip")]
    XRealIp,
    #[serde(rename = "Forwarded", alias = "forwarded")]
    Forwarded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProxySettings {
    pub trusted: Vec<String>,
    pub real_ip_header: RealIpHeader,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub per_second: u32,
    pub burst: u32,
    pub ipv6_prefix: u8,
    #[serde(rename = "static")]
    pub static_files: bool,
    pub backend: RateLimitBackend,
    pub redis_url: RedisUrl,
    pub redis_timeout_ms: u64,
}

/// Where the rate limiter keeps its buckets (docs/reference.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitBackend {
    /// In this process: each instance limits on its own.
    Memory,
    /// In Redis at `rate_limit.redis_url`, shared by every instance using it.
    Redis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebSocketSettings {
    pub max_message_bytes: usize,
    pub heartbeat_secs: u64,
    pub client_timeout_secs: u64,
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
}

/// Where `/metrics` is served (docs/reference.md §3, §4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    pub listen: MetricsListen,
}

/// `metrics.listen`: `"off"`, or the address of a listener of its own, never the public port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MetricsListen {
    #[default]
    Off,
    At(std::net::SocketAddr),
}

impl Serialize for MetricsListen {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            MetricsListen::Off => serializer.serialize_str("off"),
            MetricsListen::At(addr) => serializer.collect_str(addr),
        }
    }
}

impl<'de> Deserialize<'de> for MetricsListen {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(MetricsListen::Off);
        }
        text.parse().map(MetricsListen::At).map_err(|_| {
            serde::de::Error::custom(format!(
                "{text:?} is neither \"off\" nor an address with a port such as \"127.0.0.1:9464\""
            ))
        })
    }
}

/// Whether the main listener speaks HTTPS, and where its certificate comes from (§3 `tls`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain HTTP: a proxy in front terminates TLS.
    Off,
    /// HTTPS with the PEM pair at `tls.cert_file` and `tls.key_file`.
    Files,
    /// HTTPS with certificates obtained by ACME (the `[tls.acme]` table).
    Acme,
}

impl TlsMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsMode::Off => "off",
            TlsMode::Files => "files",
            TlsMode::Acme => "acme",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    pub mode: TlsMode,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub redirect_port: u16,
    pub public_port: u16,
    pub hsts_max_age_secs: u64,
    pub handshake_timeout_ms: u64,
    pub max_handshakes: usize,
    pub reload_check_secs: u64,
    /// `[tls.acme]`: required with `tls.mode = "acme"`; absent (not an empty table) otherwise,
    /// which is why tandem.toml documents it as a commented block rather than defaults.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeSettings>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            mode: TlsMode::Off,
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            redirect_port: 0,
            public_port: 443,
            hsts_max_age_secs: 0,
            handshake_timeout_ms: 10_000,
            max_handshakes: 256,
            reload_check_secs: 10,
            acme: None,
        }
    }
}

impl Default for AppSettings {
    fn default() -> Self {
        Self {
            service: "tandem".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8080,
            workers: 0,
            keep_alive_secs: 60,
            client_request_timeout_ms: 5000,
            client_disconnect_timeout_ms: 1000,
            max_connections: 25_000,
            backlog: 2048,
            max_body_bytes: 65_536,
            shutdown_drain_secs: 0,
            shutdown_timeout_secs: 15,
        }
    }
}

impl Default for StaticSettings {
    fn default() -> Self {
        Self {
            mode: StaticMode::App,
            htdocs: "htdocs".into(),
            public: "public".into(),
            encodings: vec![Encoding::Br, Encoding::Zstd, Encoding::Gzip],
            public_max_age_secs: 3600,
            html_cache_control: "no-cache".into(),
        }
    }
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            trusted: vec!["127.0.0.0/8".into(), "::1/128".into()],
            real_ip_header: RealIpHeader::XForwardedFor,
        }
    }
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            per_second: 5,
            burst: 10,
            ipv6_prefix: 64,
            static_files: false,
            backend: RateLimitBackend::Memory,
            redis_url: RedisUrl::default(),
            redis_timeout_ms: 50,
        }
    }
}

impl Default for WebSocketSettings {
    fn default() -> Self {
        Self {
            max_message_bytes: 65_536,
            heartbeat_secs: 15,
            client_timeout_secs: 45,
            max_connections: 10_000,
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
        }
    }
}

/// A configuration problem, rendered as one sentence naming the key or file at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(String);

impl ConfigError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    fn key(key: &str, problem: impl fmt::Display) -> Self {
        Self(format!("configuration key `{key}` {problem}"))
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Where the configuration file comes from, in docs/reference.md §3 order.
pub fn config_file_path(cli: Option<&Path>) -> Option<PathBuf> {
    if let Some(path) = cli {
        return Some(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os("TANDEM_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let default = PathBuf::from("tandem.toml");
    default.is_file().then_some(default)
}

/// The longest timeout any key may name, one day: nothing tandem waits for means anything beyond.
const MAX_DURATION_SECS: u64 = 86_400;

/// Environment keys whose values are comma-separated lists.
const LIST_KEYS: [&str; 3] = ["proxy.trusted", "static.encodings", "tls.acme.domains"];

impl Settings {
    /// Loads defaults, then `file` (which must exist when given), then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// Like [`Settings::load`], with the environment passed in (tests use this).
    pub fn load_from(file: Option<&Path>, env: &[(String, String)]) -> Result<Self, ConfigError> {
        let mut builder = Config::builder();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|err| {
                ConfigError::new(format!(
                    "cannot read configuration file {}: {err}; pass an existing file with --config or TANDEM_CONFIG",
                    path.display()
                ))
            })?;
            builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
        }
        let tandem_env = tandem_variables(env);
        let mut environment = Environment::with_prefix("TANDEM")
            .prefix_separator("__")
            .separator("__")
            .list_separator(",")
            .try_parsing(true)
            .source(Some(tandem_env.clone()));
        for key in LIST_KEYS {
            environment = environment.with_list_parse_key(key);
        }
        builder = builder.add_source(environment);
        if !tandem_env.contains_key("TANDEM__SERVER__PORT")
            && let Some((_, port)) = env.iter().find(|(k, _)| k == "PORT")
        {
            let port: i64 = port.trim().parse().map_err(|_| {
                ConfigError::new(format!(
                    "environment variable PORT={port:?} is not a port number; set it to 1-65535"
                ))
            })?;
            builder = builder
                .set_override("server.port", port)
                .map_err(|err| ConfigError::new(err.to_string()))?;
        }
        let config = builder.build().map_err(|err| describe(err, file))?;
        // The path tracker names the key at fault, unknown ones included (`deny_unknown_fields`).
        let settings: Settings = serde_path_to_error::deserialize(config).map_err(|err| {
            let key = err.path().to_string();
            ConfigError::key(
                &key,
                format!("is invalid: {}{}", err.into_inner(), origin(file)),
            )
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// Rejects impossible values, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_server()?;
        self.validate_static()?;
        self.trusted_networks()?;
        self.validate_rate_limit()?;
        // Before the WebSocket check, which compares two of them.
        self.validate_durations()?;
        self.validate_websocket()?;
        self.validate_tls()?;
        self.validate_writable()
    }

    /// Sizes and counts that TOML can write back: `tandem check` prints the settings as TOML,
    /// whose integers end at `i64::MAX`, while the config crate reads larger ones from strings
    /// (`max_body_bytes = "18446744073709551615"`), and the printed file would not load.
    fn validate_writable(&self) -> Result<(), ConfigError> {
        let max = i64::MAX as u64;
        let (s, ws) = (&self.server, &self.websocket);
        for (key, value) in [
            ("server.max_connections", s.max_connections as u64),
            ("server.max_body_bytes", s.max_body_bytes as u64),
            (
                "static.public_max_age_secs",
                self.static_files.public_max_age_secs,
            ),
            ("websocket.max_message_bytes", ws.max_message_bytes as u64),
            ("websocket.max_connections", ws.max_connections as u64),
            ("tls.hsts_max_age_secs", self.tls.hsts_max_age_secs),
        ] {
            if value > max {
                return Err(ConfigError::key(
                    key,
                    format!("is {value}; it must be at most {max}"),
                ));
            }
        }
        Ok(())
    }

    /// Every timeout at most [`MAX_DURATION_SECS`]: actix and tokio add them to
    /// `Instant::now()`, which panics on overflow (`keep_alive_secs = "18446744073709551615"`
    /// was accepted and then panicked the worker on every connection).
    fn validate_durations(&self) -> Result<(), ConfigError> {
        let (s, ws) = (&self.server, &self.websocket);
        let secs = [
            ("server.keep_alive_secs", s.keep_alive_secs),
            ("server.shutdown_drain_secs", s.shutdown_drain_secs),
            ("server.shutdown_timeout_secs", s.shutdown_timeout_secs),
            ("websocket.heartbeat_secs", ws.heartbeat_secs),
            ("websocket.client_timeout_secs", ws.client_timeout_secs),
            ("tls.reload_check_secs", self.tls.reload_check_secs),
        ];
        let millis = [
            ("tls.handshake_timeout_ms", self.tls.handshake_timeout_ms),
            (
                "server.client_request_timeout_ms",
                s.client_request_timeout_ms,
            ),
            (
                "server.client_disconnect_timeout_ms",
                s.client_disconnect_timeout_ms,
            ),
        ];
        let over = secs
            .into_iter()
            .map(|(key, v)| (key, v, MAX_DURATION_SECS))
            .chain(millis.map(|(key, v)| (key, v, MAX_DURATION_SECS * 1000)))
            .find(|&(_, value, max)| value > max);
        match over {
            Some((key, value, max)) => Err(ConfigError::key(
                key,
                format!("is {value}; it must be at most {max} (one day)"),
            )),
            None => Ok(()),
        }
    }

    fn validate_server(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if s.host.parse::<IpAddr>().is_err() {
            return Err(ConfigError::key(
                "server.host",
                format!(
                    "is {:?}, which is not an IP address; use 127.0.0.1, 0.0.0.0 or ::",
                    s.host
                ),
            ));
        }
        if s.port == 0 {
            return Err(ConfigError::key(
                "server.port",
                "must be between 1 and 65535 (0 would pick a random port)",
            ));
        }
        let positive: [(&str, u64); 6] = [
            ("server.keep_alive_secs", s.keep_alive_secs),
            (
                "server.client_request_timeout_ms",
                s.client_request_timeout_ms,
            ),
            ("server.max_connections", s.max_connections as u64),
            ("server.backlog", u64::from(s.backlog)),
            ("server.max_body_bytes", s.max_body_bytes as u64),
            ("server.shutdown_timeout_secs", s.shutdown_timeout_secs),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::key(key, "must be greater than 0"));
            }
        }
        if s.workers > 1024 {
            return Err(ConfigError::key(
                "server.workers",
                "must be at most 1024 (0 means one per CPU)",
            ));
        }
        Ok(())
    }

    fn validate_static(&self) -> Result<(), ConfigError> {
        // An empty `static.encodings` is allowed: it means "serve identity only".
        let st = &self.static_files;
        for (i, e) in st.encodings.iter().enumerate() {
            if st.encodings[..i].contains(e) {
                return Err(ConfigError::key(
                    "static.encodings",
                    format!("lists {:?} twice", e.token()),
                ));
            }
        }
        if st.html_cache_control.trim().is_empty()
            || actix_web::http::header::HeaderValue::from_str(&st.html_cache_control).is_err()
        {
            return Err(ConfigError::key(
                "static.html_cache_control",
                "must be a non-empty, valid header value such as \"no-cache\"",
            ));
        }
        if st.mode == StaticMode::App {
            for (key, root) in [("static.htdocs", &st.htdocs), ("static.public", &st.public)] {
                if !root.is_dir() {
                    return Err(ConfigError::key(
                        key,
                        format!(
                            "points to {}, which is not a directory; create it, fix the path, or set static.mode = \"nginx\"",
                            root.display()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_rate_limit(&self) -> Result<(), ConfigError> {
        let rl = &self.rate_limit;
        if rl.per_second == 0 {
            return Err(ConfigError::key(
                "rate_limit.per_second",
                "must be greater than 0 (set rate_limit.enabled = false to turn limiting off)",
            ));
        }
        if rl.burst == 0 {
            return Err(ConfigError::key(
                "rate_limit.burst",
                "must be greater than 0",
            ));
        }
        if rl.ipv6_prefix == 0 || rl.ipv6_prefix > 128 {
            return Err(ConfigError::key(
                "rate_limit.ipv6_prefix",
                "must be between 1 and 128",
            ));
        }
        validate_rate_limit_backend(rl)?;
        Ok(())
    }

    fn validate_websocket(&self) -> Result<(), ConfigError> {
        let ws = &self.websocket;
        for (key, value) in [
            ("websocket.max_message_bytes", ws.max_message_bytes as u64),
            ("websocket.heartbeat_secs", ws.heartbeat_secs),
            ("websocket.client_timeout_secs", ws.client_timeout_secs),
            ("websocket.max_connections", ws.max_connections as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::key(key, "must be greater than 0"));
            }
        }
        if ws.client_timeout_secs <= ws.heartbeat_secs {
            return Err(ConfigError::key(
                "websocket.client_timeout_secs",
                format!(
                    "({}) must be longer than websocket.heartbeat_secs ({}) or every idle socket would be closed before it could answer a ping",
                    ws.client_timeout_secs, ws.heartbeat_secs
                ),
            ));
        }
        Ok(())
    }

    fn validate_tls(&self) -> Result<(), ConfigError> {
        let tls = &self.tls;
        match tls.mode {
            TlsMode::Off if tls.redirect_port != 0 => {
                return Err(ConfigError::key(
                    "tls.redirect_port",
                    "redirects to HTTPS, so it needs tls.mode = \"files\" or \"acme\" (or 0 for no redirect listener)",
                ));
            }
            TlsMode::Files => validate_pem_paths(tls)?,
            TlsMode::Acme => validate_acme(tls)?,
            TlsMode::Off => {}
        }
        if tls.redirect_port != 0 && tls.redirect_port == self.server.port {
            return Err(ConfigError::key(
                "tls.redirect_port",
                format!(
                    "is {}, the HTTPS port (server.port); choose another port such as 80",
                    tls.redirect_port
                ),
            ));
        }
        for (key, value) in [
            ("tls.public_port", u64::from(tls.public_port)),
            ("tls.handshake_timeout_ms", tls.handshake_timeout_ms),
            ("tls.max_handshakes", tls.max_handshakes as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::key(key, "must be greater than 0"));
            }
        }
        if tls.max_handshakes > usize::from(u16::MAX) {
            return Err(ConfigError::key(
                "tls.max_handshakes",
                "must be at most 65535 (handshakes in flight per worker)",
            ));
        }
        Ok(())
    }

    /// `proxy.trusted` parsed: CIDRs, or single addresses taken as /32 or /128.
    pub fn trusted_networks(&self) -> Result<Vec<IpNet>, ConfigError> {
        self.proxy
            .trusted
            .iter()
            .map(|entry| {
                let entry = entry.trim();
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError::key(
                            "proxy.trusted",
                            format!(
                                "contains {entry:?}, which is neither a CIDR (10.0.0.0/8) nor an IP address"
                            ),
                        )
                    })
            })
            .collect()
    }

    /// The address the server binds, as `host:port` (IPv6 hosts bracketed).
    pub fn bind_address(&self) -> String {
        match self.server.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(v6)) => format!("[{v6}]:{}", self.server.port),
            _ => format!("{}:{}", self.server.host, self.server.port),
        }
    }

    /// The effective configuration as TOML, as `tandem check` prints it.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|err| format!("# cannot render settings: {err}\n"))
    }
}

/// `rate_limit.backend = "redis"` needs a usable URL and a timeout; the URL is checked even with
/// the memory backend when given, so a typo shows up before the day it is switched on.
fn validate_rate_limit_backend(rl: &RateLimitSettings) -> Result<(), ConfigError> {
    if (rl.backend == RateLimitBackend::Redis || !rl.redis_url.is_empty())
        && let Some(problem) = rl.redis_url.problem()
    {
        return Err(ConfigError::key("rate_limit.redis_url", problem));
    }
    if rl.redis_timeout_ms == 0 || rl.redis_timeout_ms > 10_000 {
        return Err(ConfigError::key(
            "rate_limit.redis_timeout_ms",
            "must be between 1 and 10000 (it bounds what a slow Redis adds to each request)",
        ));
    }
    Ok(())
}

/// `tls.mode = "files"` needs both paths, naming existing files; whether they hold a matching
/// pair is decided when they are loaded (`tls::certificates`), at start and by `tandem check`.
/// `tls.mode = "acme"` needs its table, and a redirect listener for the CA's http-01 check.
fn validate_acme(tls: &TlsSettings) -> Result<(), ConfigError> {
    let Some(acme) = &tls.acme else {
        return Err(ConfigError::key(
            "tls.mode",
            "is \"acme\", which needs a [tls.acme] table with the domains, contact and accept_terms_of_service",
        ));
    };
    acme.validate()?;
    if tls.redirect_port == 0 {
        return Err(ConfigError::key(
            "tls.redirect_port",
            "is 0, but tls.mode = \"acme\" answers the CA's http-01 check on the redirect listener; set it to the port the CA reaches as 80 (e.g. 80, or 8080 behind a port mapping)",
        ));
    }
    Ok(())
}

fn validate_pem_paths(tls: &TlsSettings) -> Result<(), ConfigError> {
    for (key, path) in [
        ("tls.cert_file", &tls.cert_file),
        ("tls.key_file", &tls.key_file),
    ] {
        if path.as_os_str().is_empty() {
            return Err(ConfigError::key(
                key,
                "must name a PEM file when tls.mode = \"files\"",
            ));
        }
        if !path.is_file() {
            return Err(ConfigError::key(
                key,
                format!(
                    "points to {}, which is not a readable file; fix the path or set tls.mode = \"off\"",
                    path.display()
                ),
            ));
        }
    }
    Ok(())
}

/// The `TANDEM__*` variables of `env`, list values without the spaces people put after commas
/// ("10.0.0.0/8, 192.168.0.0/16").
fn tandem_variables(env: &[(String, String)]) -> config::Map<String, String> {
    env.iter()
        .filter(|(k, _)| k.starts_with("TANDEM__"))
        .map(|(k, v)| {
            let is_list = LIST_KEYS
                .iter()
                .any(|key| k[8..].eq_ignore_ascii_case(&key.replace('.', "__")));
            let v = if is_list {
                v.split(',').map(str::trim).collect::<Vec<_>>().join(",")
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect()
}

/// Where a value may have come from, for the end of an error sentence.
fn origin(file: Option<&Path>) -> String {
    file.map(|p| format!(" (from {} or the environment)", p.display()))
        .unwrap_or_else(|| " (from the environment)".into())
}

/// The `config` crate's errors while merging the sources, as one sentence: a file that is not
/// TOML, or an override it refused.
fn describe(err: config::ConfigError, file: Option<&Path>) -> ConfigError {
    match err {
        config::ConfigError::FileParse { cause, .. } => {
            // The TOML error draws a multi-line picture; keep its position and its verdict.
            let text = cause.to_string();
            let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
            let position = lines.next().unwrap_or("parse error");
            // A one-line error has no verdict apart from its position: no dangling colon then.
            let verdict = lines
                .next_back()
                .map(|verdict| format!(": {verdict}"))
                .unwrap_or_default();
            ConfigError::new(format!(
                "configuration file {} is not valid TOML ({position}){verdict}",
                file.map(|p| p.display().to_string()).unwrap_or_default(),
            ))
        }
        other => ConfigError::new(format!(
            "invalid configuration{}: {}",
            origin(file),
            other.to_string().replace('\n', " ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn nginx_mode() -> Vec<(String, String)> {
        env(&[("TANDEM__STATIC__MODE", "nginx")])
    }

    #[test]
    fn defaults_load_with_no_file_and_no_environment() {
        let settings = Settings::load_from(None, &nginx_mode()).unwrap();
        let mut expected = Settings::default();
        expected.static_files.mode = StaticMode::Nginx;
        assert_eq!(settings, expected);
    }

    #[test]
    fn environment_lists_are_comma_separated() {
        let mut vars = nginx_mode();
        vars.extend(env(&[
            ("TANDEM__PROXY__TRUSTED", "10.0.0.0/8, 192.168.1.1"),
            ("TANDEM__STATIC__ENCODINGS", "gzip,br"),
            ("TANDEM__TLS__ACME__DOMAINS", "example.com, www.example.com"),
        ]));
        let settings = Settings::load_from(None, &vars).unwrap();
        assert_eq!(settings.proxy.trusted, vec!["10.0.0.0/8", "192.168.1.1"]);
        assert_eq!(
            settings.static_files.encodings,
            vec![Encoding::Gzip, Encoding::Br]
        );
        let acme = settings
            .tls
            .acme
            .expect("the [tls.acme] table from the environment");
        assert_eq!(acme.domains, vec!["example.com", "www.example.com"]);
    }

    #[test]
    fn port_applies_unless_tandem_port_is_set() {
        let mut vars = nginx_mode();
        vars.push(("PORT".into(), "9001".into()));
        assert_eq!(Settings::load_from(None, &vars).unwrap().server.port, 9001);
        vars.push(("TANDEM__SERVER__PORT".into(), "9002".into()));
        assert_eq!(Settings::load_from(None, &vars).unwrap().server.port, 9002);
    }

    #[test]
    fn rejections_name_the_key() {
        let cases: &[(&str, &str, &str)] = &[
            ("TANDEM__SERVER__PORT", "0", "server.port"),
            ("TANDEM__SERVER__PORT", "70000", "server.port"),
            ("TANDEM__SERVER__PORT", "eighty", "server.port"),
            ("TANDEM__RATE_LIMIT__BURST", "0", "rate_limit.burst"),
            ("TANDEM__PROXY__TRUSTED", "10.0.0.0/33", "proxy.trusted"),
            ("TANDEM__SERVER__NOPE", "1", "server.nope"),
            ("TANDEM__LOG__FORMAT", "xml", "log.format"),
            (
                "TANDEM__STATIC__ENCODINGS",
                "br,deflate",
                "static.encodings",
            ),
            ("TANDEM__SERVER__HOST", "localhost", "server.host"),
            (
                "TANDEM__RATE_LIMIT__IPV6_PREFIX",
                "129",
                "rate_limit.ipv6_prefix",
            ),
            (
                "TANDEM__RATE_LIMIT__BACKEND",
                "memcached",
                "rate_limit.backend",
            ),
            (
                "TANDEM__RATE_LIMIT__REDIS_URL",
                "http://cache:6379",
                "rate_limit.redis_url",
            ),
            (
                "TANDEM__RATE_LIMIT__REDIS_TIMEOUT_MS",
                "0",
                "rate_limit.redis_timeout_ms",
            ),
            ("TANDEM__TLS__MODE", "https", "tls.mode"),
            ("TANDEM__TLS__MODE", "acme", "tls.mode"),
            ("TANDEM__TLS__MODE", "files", "tls.cert_file"),
            ("TANDEM__TLS__REDIRECT_PORT", "80", "tls.redirect_port"),
            ("TANDEM__TLS__PUBLIC_PORT", "0", "tls.public_port"),
            (
                "TANDEM__TLS__HANDSHAKE_TIMEOUT_MS",
                "0",
                "tls.handshake_timeout_ms",
            ),
            ("TANDEM__TLS__MAX_HANDSHAKES", "0", "tls.max_handshakes"),
            ("TANDEM__TLS__MAX_HANDSHAKES", "70000", "tls.max_handshakes"),
        ];
        for (var, value, key) in cases {
            let mut vars = nginx_mode();
            vars.push((var.to_string(), value.to_string()));
            let err = Settings::load_from(None, &vars).unwrap_err().to_string();
            assert!(err.contains(key), "{var}={value}: {err}");
        }
    }

    #[test]
    fn timeouts_over_a_day_are_refused_before_they_overflow_an_instant() {
        for (var, key) in [
            ("TANDEM__SERVER__KEEP_ALIVE_SECS", "server.keep_alive_secs"),
            (
                "TANDEM__SERVER__CLIENT_REQUEST_TIMEOUT_MS",
                "server.client_request_timeout_ms",
            ),
            (
                "TANDEM__SERVER__CLIENT_DISCONNECT_TIMEOUT_MS",
                "server.client_disconnect_timeout_ms",
            ),
            (
                "TANDEM__SERVER__SHUTDOWN_DRAIN_SECS",
                "server.shutdown_drain_secs",
            ),
            (
                "TANDEM__SERVER__SHUTDOWN_TIMEOUT_SECS",
                "server.shutdown_timeout_secs",
            ),
            (
                "TANDEM__WEBSOCKET__HEARTBEAT_SECS",
                "websocket.heartbeat_secs",
            ),
            (
                "TANDEM__WEBSOCKET__CLIENT_TIMEOUT_SECS",
                "websocket.client_timeout_secs",
            ),
        ] {
            let mut vars = nginx_mode();
            vars.push((var.into(), u64::MAX.to_string()));
            let err = Settings::load_from(None, &vars).unwrap_err().to_string();
            assert!(err.contains(key) && err.contains("at most"), "{var}: {err}");
        }
        // One day is still a timeout tandem accepts.
        let mut vars = nginx_mode();
        vars.push(("TANDEM__SERVER__KEEP_ALIVE_SECS".into(), "86400".into()));
        vars.push((
            "TANDEM__SERVER__CLIENT_REQUEST_TIMEOUT_MS".into(),
            "86400000".into(),
        ));
        assert!(Settings::load_from(None, &vars).is_ok());
    }

    #[test]
    fn what_tandem_check_prints_loads_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tandem.toml");
        for key in [
            "server.max_connections",
            "server.max_body_bytes",
            "static.public_max_age_secs",
            "websocket.max_message_bytes",
            "websocket.max_connections",
        ] {
            let (table, name) = key.split_once('.').unwrap();
            let text = format!("[{table}]\n{name} = \"{}\"\n", u64::MAX);
            std::fs::write(&file, text).unwrap();
            let err = Settings::load_from(Some(&file), &nginx_mode())
                .unwrap_err()
                .to_string();
            assert!(err.contains(key) && err.contains("at most"), "{key}: {err}");
        }
        // The largest value TOML holds is accepted, and what `check` prints of it loads.
        let text = format!(
            "[static]\nmode = \"nginx\"\n[server]\nmax_body_bytes = {}\n",
            i64::MAX
        );
        std::fs::write(&file, text).unwrap();
        let settings = Settings::load_from(Some(&file), &[]).unwrap();
        std::fs::write(&file, settings.to_toml()).unwrap();
        assert_eq!(Settings::load_from(Some(&file), &[]).unwrap(), settings);
    }

    #[test]
    fn a_one_line_toml_error_ends_without_a_dangling_colon() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tandem.toml");
        std::fs::write(&file, "[server]\nport = 99999999999999999999\n").unwrap();
        let err = Settings::load_from(Some(&file), &[])
            .unwrap_err()
            .to_string();
        assert!(!err.trim_end().ends_with(':'), "{err}");
        assert!(err.contains("not valid TOML"), "{err}");
    }

    #[test]
    fn the_redis_backend_needs_a_url_and_never_shows_its_password() {
        let mut vars = nginx_mode();
        vars.push(("TANDEM__RATE_LIMIT__BACKEND".into(), "redis".into()));
        let err = Settings::load_from(None, &vars).unwrap_err().to_string();
        assert!(err.contains("rate_limit.redis_url"), "{err}");

        vars.push((
            "TANDEM__RATE_LIMIT__REDIS_URL".into(),
            "rediss://:hunter2@cache:6380".into(),
        ));
        let settings = Settings::load_from(None, &vars).unwrap();
        assert_eq!(settings.rate_limit.backend, RateLimitBackend::Redis);
        let shown = format!("{}\n{settings:?}", settings.to_toml());
        assert!(shown.contains("rediss://:***@cache:6380"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");

        vars.pop();
        vars.push((
            "TANDEM__RATE_LIMIT__REDIS_URL".into(),
            "tcp://:hunter2@cache:6380".into(),
        ));
        let err = Settings::load_from(None, &vars).unwrap_err().to_string();
        assert!(err.contains("rate_limit.redis_url"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn tls_files_mode_names_the_missing_file() {
        let mut vars = nginx_mode();
        vars.extend(env(&[
            ("TANDEM__TLS__MODE", "files"),
            ("TANDEM__TLS__CERT_FILE", "Cargo.toml"),
            ("TANDEM__TLS__KEY_FILE", "/definitely/not/here.pem"),
        ]));
        let err = Settings::load_from(None, &vars).unwrap_err().to_string();
        assert!(
            err.contains("tls.key_file") && err.contains("/definitely/not/here.pem"),
            "{err}"
        );
    }

    #[test]
    fn missing_root_in_app_mode_is_rejected() {
        let vars = env(&[("TANDEM__STATIC__HTDOCS", "/definitely/not/here")]);
        let err = Settings::load_from(None, &vars).unwrap_err().to_string();
        assert!(err.contains("static.htdocs"), "{err}");
    }

    #[test]
    fn shipped_tandem_toml_documents_every_default() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tandem.toml")).unwrap();
        // Every `# key = value` line under a `[section]` is a documented default: uncomment them.
        let uncommented: String = text
            .lines()
            .map(|line| {
                let trimmed = line.trim_start();
                match trimmed.strip_prefix("# ") {
                    Some(rest)
                        if rest.contains(" = ")
                            && rest.split(" = ").next().is_some_and(|k| {
                                k.chars().all(|c| {
                                    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
                                })
                            }) =>
                    {
                        rest.to_string()
                    }
                    _ => line.to_string(),
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let documented: Settings = toml::from_str(&uncommented).unwrap();
        assert_eq!(documented, Settings::default());
        // And no key is missing from the file.
        let table: toml::Table = toml::from_str(&uncommented).unwrap();
        let known = serde_json::to_value(Settings::default()).unwrap();
        for (section, keys) in known.as_object().unwrap() {
            for key in keys.as_object().unwrap().keys() {
                assert!(
                    table.get(section).and_then(|s| s.get(key)).is_some(),
                    "tandem.toml does not document {section}.{key}"
                );
            }
        }
    }
}
