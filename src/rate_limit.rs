//! Per-client rate limiting (SPEC §6): actix-governor's GCRA limiter keyed by the resolved
//! [`ClientIp`](crate::client_ip::ClientIp) (IPv6 by `rate_limit.ipv6_prefix`), the 429 problem
//! response, and the pruning that keeps its memory bounded.
//!
//! Wiring: ONE App-level middleware, [`limit`], decides per request whether it is in scope with
//! the pure [`scope_of`] (the path as the router sees it): `/api` and `/api/*`, `/json` and
//! `/socket` are always limited; probes never; everything else is the default service (static
//! files in app mode, the 404 fallback in nginx mode) and limited only with `rate_limit.static`.
//! CORS preflights are never counted. The limiter itself is actix-governor's
//! (`GovernorConfig::limiter()`, governor's `check_key`), used from our own middleware because
//! actix-governor's responses truncate `Retry-After` (a 0.4 s wait would say 0) and are not
//! problem details.
//!
//! One limiter is built in `Application::build_with` and shared by every worker, so the limit is
//! per client, not per client and worker. A task prunes idle keys every [`RateLimit::prune_interval`].
//! With `rate_limit.backend = "redis"` the decision is [`crate::shared_limit`]'s, shared by every
//! instance, and this in-process limiter takes over while Redis is slow or unreachable.

use std::{
    net::{IpAddr, Ipv6Addr},
    sync::Arc,
    time::Duration,
};

use actix_governor::{
    GovernorConfigBuilder, KeyExtractor,
    governor::{
        self,
        clock::{Clock, DefaultClock},
        middleware::StateInformationMiddleware,
        state::keyed::DefaultKeyedStateStore,
    },
};
use actix_web::{
    Error,
    body::{EitherBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::{
        Method, StatusCode,
        header::{self, HeaderMap, HeaderName, HeaderValue},
    },
    middleware::Next,
    web,
};

use crate::{
    access_log::PROBES,
    client_ip::{canonical, client_ip_of},
    config::{ConfigError, RateLimitBackend, RateLimitSettings},
    problem::Problem,
    shared_limit::{Decision, SharedLimiter},
};

pub const X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
pub const X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");

/// The GCRA limiter, one state cell per key.
pub type Limiter = governor::RateLimiter<
    IpAddr,
    DefaultKeyedStateStore<IpAddr>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// What a path is, for limiting purposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `/api/*`, `/json`, `/socket`: always limited.
    Dynamic,
    /// `/health`, `/healthz`, `/readyz`, `/startupz`: never limited.
    Probe,
    /// Whatever falls to the default service; limited only with `rate_limit.static`.
    Static,
}

/// The scope of a request path, as the router matches it (percent-decoded, unnormalised).
pub fn scope_of(path: &str) -> Scope {
    if PROBES.contains(&path) {
        Scope::Probe
    } else if path == "/json" || path == "/socket" || path == "/api" || path.starts_with("/api/") {
        Scope::Dynamic
    } else {
        Scope::Static
    }
}

/// A CORS preflight asks whether a request may be sent; it must never use up the request's quota.
pub fn is_cors_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The limiter key of a client: IPv4 as is, IPv6 masked to `ipv6_prefix` bits (one household or
/// server gets one /64, not 2^64 buckets). IPv4-mapped addresses are unwrapped first, so
/// `::ffff:192.0.2.1` is never masked as IPv6.
pub fn key_of(ip: IpAddr, ipv6_prefix: u8) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
        v4 => v4,
    }
}

/// Whole seconds to wait, rounded up and never 0: a client told "0" retries at once.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

/// How often idle keys are pruned: as soon as a key can have become indistinguishable from a
/// fresh one (a full burst replenished, `burst / per_second`), within 1 s..60 s. Under the
/// defaults (10 / 5 per s) that is every 2 s, so a spray of one-off addresses lives seconds.
pub fn prune_interval(settings: &RateLimitSettings) -> Duration {
    let per_second = f64::from(settings.per_second.max(1));
    Duration::from_secs_f64(f64::from(settings.burst) / per_second)
        .clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// actix-governor's key extractor over the resolved client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientKeyExtractor {
    pub ipv6_prefix: u8,
}

impl KeyExtractor for ClientKeyExtractor {
    type Key = IpAddr;
    type KeyExtractionError = Problem;

    fn extract(&self, req: &ServiceRequest) -> Result<IpAddr, Problem> {
        Ok(key_of(client_ip_of(req.request()), self.ipv6_prefix))
    }
}

/// The shared limiter and what it applies to.
pub struct RateLimit {
    extractor: ClientKeyExtractor,
    limiter: Arc<Limiter>,
    burst: u32,
    limit_static: bool,
    prune_interval: Duration,
    /// With `rate_limit.backend = "redis"`: the buckets every instance shares; `limiter` then
    /// decides only while Redis cannot.
    shared: Option<SharedLimiter>,
}

impl RateLimit {
    /// The limiter for `settings`, or `None` when `rate_limit.enabled = false` (or the values
    /// are impossible, which configuration validation rejects earlier with the key's name).
    pub fn from_settings(settings: &RateLimitSettings) -> Option<Self> {
        if !settings.enabled {
            return None;
        }
        let extractor = ClientKeyExtractor {
            ipv6_prefix: settings.ipv6_prefix,
        };
        let period =
            Duration::from_nanos((1_000_000_000 / u64::from(settings.per_second.max(1))).max(1));
        let config = GovernorConfigBuilder::default()
            .key_extractor(extractor)
            .period(period)
            .burst_size(settings.burst)
            .use_headers()
            .finish()?;
        Some(Self {
            extractor,
            limiter: config.limiter(),
            burst: settings.burst,
            limit_static: settings.static_files,
            prune_interval: prune_interval(settings),
            shared: None,
        })
    }

    /// [`RateLimit::from_settings`], plus the Redis connection when `rate_limit.backend =
    /// "redis"`. Runs inside the server's runtime; Redis need not be up.
    pub(crate) fn build(settings: &RateLimitSettings) -> Result<Option<Self>, ConfigError> {
        let Some(mut rate_limit) = Self::from_settings(settings) else {
            return Ok(None);
        };
        if settings.backend == RateLimitBackend::Redis {
            rate_limit.shared = Some(SharedLimiter::connect(settings)?);
        }
        Ok(Some(rate_limit))
    }

    /// One request's decision for `key`: Redis's when shared and answering in time, else this
    /// process's.
    pub(crate) async fn check(&self, key: IpAddr) -> Decision {
        if let Some(shared) = &self.shared
            && let Some(decision) = shared.check(key).await
        {
            return decision;
        }
        match self.limiter.check_key(&key) {
            Ok(snapshot) => Decision::Allowed {
                remaining: snapshot.remaining_burst_capacity(),
            },
            Err(not_until) => Decision::Refused {
                wait: not_until.wait_time_from(DefaultClock::default().now()),
            },
        }
    }

    /// Whether a request counts against its client's quota.
    pub fn applies_to(&self, method: &Method, headers: &HeaderMap, path: &str) -> bool {
        if is_cors_preflight(method, headers) {
            return false;
        }
        match scope_of(path) {
            Scope::Dynamic => true,
            Scope::Probe => false,
            Scope::Static => self.limit_static,
        }
    }

    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.limiter
    }

    pub fn prune_interval(&self) -> Duration {
        self.prune_interval
    }

    /// Forgets keys whose state equals a fresh one and gives the freed table space back.
    pub fn prune(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Starts the pruning task; it stops when the returned [`Pruner`] is dropped.
    pub fn spawn_pruner(self: &Arc<Self>) -> Pruner {
        let this = self.clone();
        let every = self.prune_interval;
        Pruner(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let this = this.clone();
                // A million keys take a while to walk; keep that off the runtime's thread.
                let pruned = tokio::task::spawn_blocking(move || {
                    let before = this.limiter.len();
                    this.prune();
                    (before, this.limiter.len())
                })
                .await;
                if let Ok((before, after)) = pruned
                    && before != after
                {
                    log::debug!("rate limiter pruned idle clients: {before} -> {after} keys");
                }
            }
        }))
    }
}

/// The pruning task; aborted when dropped, i.e. when the server it belongs to is gone.
#[derive(Debug)]
pub struct Pruner(tokio::task::JoinHandle<()>);

impl Drop for Pruner {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Middleware: counts in-scope requests per client; over the limit answers 429.
pub async fn limit<B: MessageBody>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let Some(rate_limit) = req.app_data::<web::Data<RateLimit>>().cloned() else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    // The router's view of the path (`%61pi` is `api`), so encoding cannot dodge the limit.
    if !rate_limit.applies_to(req.method(), req.headers(), req.match_info().as_str()) {
        return Ok(next.call(req).await?.map_into_left_body());
    }
    let key = match rate_limit.extractor.extract(&req) {
        Ok(key) => key,
        Err(problem) => return Ok(req.error_response(problem).map_into_right_body()),
    };
    let limit = HeaderValue::from(rate_limit.burst);
    match rate_limit.check(key).await {
        Decision::Allowed { remaining } => {
            let mut res = next.call(req).await?;
            let headers = res.headers_mut();
            headers.insert(X_RATELIMIT_LIMIT, limit);
            headers.insert(X_RATELIMIT_REMAINING, HeaderValue::from(remaining));
            Ok(res.map_into_left_body())
        }
        Decision::Refused { wait } => {
            let secs = retry_after_secs(wait);
            let problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "too many requests from this client; retry in {secs} s (rate_limit.per_second, rate_limit.burst)"
                ),
            )
            .with_member("retry_after", secs)
            .with_header(header::RETRY_AFTER, HeaderValue::from(secs))
            .with_header(X_RATELIMIT_LIMIT, limit)
            .with_header(X_RATELIMIT_REMAINING, HeaderValue::from_static("0"));
            Ok(req.error_response(problem).map_into_right_body())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_second: u32, burst: u32) -> RateLimitSettings {
        RateLimitSettings {
            per_second,
            burst,
            ..RateLimitSettings::default()
        }
    }

    #[test]
    fn scope_follows_the_routes() {
        let cases = [
            ("/api/status", Scope::Dynamic),
            ("/api/echo", Scope::Dynamic),
            ("/api/", Scope::Dynamic),
            ("/api", Scope::Dynamic),
            ("/api/anything/deeper", Scope::Dynamic),
            ("/json", Scope::Dynamic),
            ("/socket", Scope::Dynamic),
            ("/health", Scope::Probe),
            ("/healthz", Scope::Probe),
            ("/readyz", Scope::Probe),
            ("/startupz", Scope::Probe),
            ("/", Scope::Static),
            ("/index.html", Scope::Static),
            ("/public/app.css", Scope::Static),
            ("/apiary", Scope::Static),
            ("/json/", Scope::Static),
            ("/jsonx", Scope::Static),
            ("/socket/", Scope::Static),
            ("/healthz/", Scope::Static),
            ("/public/api/x", Scope::Static),
        ];
        for (path, expected) in cases {
            assert_eq!(scope_of(path), expected, "{path}");
        }
    }

    #[test]
    fn static_files_are_limited_only_when_asked() {
        let get = Method::GET;
        let none = HeaderMap::new();
        let default = RateLimit::from_settings(&RateLimitSettings::default()).unwrap();
        assert!(default.applies_to(&get, &none, "/api/status"));
        assert!(!default.applies_to(&get, &none, "/healthz"));
        assert!(!default.applies_to(&get, &none, "/index.html"));
        let with_static = RateLimit::from_settings(&RateLimitSettings {
            static_files: true,
            ..RateLimitSettings::default()
        })
        .unwrap();
        assert!(with_static.applies_to(&get, &none, "/index.html"));
        assert!(!with_static.applies_to(&get, &none, "/readyz"));
    }

    #[test]
    fn disabled_limiting_builds_no_limiter() {
        let disabled = RateLimitSettings {
            enabled: false,
            ..RateLimitSettings::default()
        };
        assert!(RateLimit::from_settings(&disabled).is_none());
    }

    #[test]
    fn cors_preflights_are_never_counted() {
        let limiter = RateLimit::from_settings(&RateLimitSettings::default()).unwrap();
        let mut preflight = HeaderMap::new();
        preflight.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("POST"),
        );
        assert!(!limiter.applies_to(&Method::OPTIONS, &preflight, "/api/echo"));
        // A plain OPTIONS is a request like any other.
        assert!(limiter.applies_to(&Method::OPTIONS, &HeaderMap::new(), "/api/echo"));
        assert!(limiter.applies_to(&Method::POST, &preflight, "/api/echo"));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_prefix_and_mapped_ipv4_is_unwrapped_first() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases = [
            ("192.0.2.1", 64, "192.0.2.1"),
            ("192.0.2.1", 1, "192.0.2.1"),
            ("::ffff:192.0.2.1", 64, "192.0.2.1"),
            ("::ffff:192.0.2.1", 8, "192.0.2.1"),
            ("2001:db8:1:2:3:4:5:6", 64, "2001:db8:1:2::"),
            ("2001:db8:1:2:ffff::1", 64, "2001:db8:1:2::"),
            ("2001:db8:1:2:3:4:5:6", 48, "2001:db8:1::"),
            ("2001:db8:1:2:3:4:5:6", 128, "2001:db8:1:2:3:4:5:6"),
            ("2001:db8:1:2:3:4:5:6", 1, "::"),
            ("ff01::1", 0, "::"),
        ];
        for (input, prefix, expected) in cases {
            assert_eq!(key_of(ip(input), prefix), ip(expected), "{input}/{prefix}");
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_and_is_never_zero() {
        let cases = [
            (Duration::ZERO, 1),
            (Duration::from_millis(1), 1),
            (Duration::from_millis(400), 1),
            (Duration::from_millis(999), 1),
            (Duration::from_secs(1), 1),
            (Duration::from_millis(1001), 2),
            (Duration::from_secs(7), 7),
            (Duration::new(7, 1), 8),
        ];
        for (wait, expected) in cases {
            assert_eq!(retry_after_secs(wait), expected, "{wait:?}");
        }
    }

    #[test]
    fn prune_interval_follows_the_time_a_burst_takes_to_refill() {
        let cases = [
            (settings(5, 10), Duration::from_secs(2)),
            (settings(1, 2), Duration::from_secs(2)),
            (settings(100, 10), Duration::from_secs(1)),
            (settings(1, 30), Duration::from_secs(30)),
            (settings(1, 1000), Duration::from_secs(60)),
        ];
        for (settings, expected) in cases {
            assert_eq!(prune_interval(&settings), expected, "{settings:?}");
        }
    }

    #[test]
    fn the_burst_is_allowed_then_refused_and_pruning_forgets_idle_clients() {
        let limiter = RateLimit::from_settings(&settings(1, 2)).unwrap();
        let client: IpAddr = "203.0.113.1".parse().unwrap();
        let first = limiter.limiter().check_key(&client).unwrap();
        assert_eq!(first.remaining_burst_capacity(), 1);
        let second = limiter.limiter().check_key(&client).unwrap();
        assert_eq!(second.remaining_burst_capacity(), 0);
        assert!(limiter.limiter().check_key(&client).is_err());
        assert_eq!(limiter.limiter().len(), 1);
        // Still within its burst window: pruning must keep it, or the limit could be escaped.
        limiter.prune();
        assert_eq!(limiter.limiter().len(), 1);
        assert!(limiter.limiter().check_key(&client).is_err());
    }

    #[test]
    fn pruning_drops_keys_once_their_state_is_fresh_again() {
        let limiter = RateLimit::from_settings(&settings(1000, 1)).unwrap();
        for i in 0..1000u32 {
            let key = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limiter.limiter().check_key(&key);
        }
        assert_eq!(limiter.limiter().len(), 1000);
        std::thread::sleep(Duration::from_millis(20));
        limiter.prune();
        assert_eq!(limiter.limiter().len(), 0);
    }
}
