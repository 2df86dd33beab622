//! Per-client rate limiting (docs/reference.md §6): actix-governor's GCRA limiter keyed by the resolved
//! [`ClientIp`](crate::client_ip::ClientIp) (IPv6 by `rate_limit.ipv6_prefix`), the 429 problem
//! response, and the pruning that keeps its memory bounded.
//!
//! Wiring: the pipeline's rate-limit step decides per request whether it is in scope with the
//! pure [`scope_of`] (the path as the router sees it, against the route table): limited routes
//! and everything under `/api` always; probes never; everything else is the default service
//! (static files in app mode, the 404 fallback in nginx mode), limited only with
//! `rate_limit.static`. It asks [`RateLimit::decide`] for the verdict.
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
    dev::ServiceRequest,
    http::{
        Method, StatusCode,
        header::{self, HeaderMap, HeaderName},
    },
};

use crate::{
    client_ip::{canonical, client_ip_of},
    config::{ConfigError, RateLimitBackend, RateLimitSettings},
    problem::Problem,
    routes,
    shared_limit::{self, SharedLimiter},
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
    let api = routes::is_under_api(path);
    match routes::at(path) {
        Some(route) if route.probe => Scope::Probe,
        Some(route) if route.limited => Scope::Dynamic,
        _ if api => Scope::Dynamic,
        _ => Scope::Static,
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
        client_ip_of(req.request())
            .map(|ip| key_of(ip, self.ipv6_prefix))
            .map_err(|err| {
                Problem::from_status(StatusCode::INTERNAL_SERVER_ERROR, Some(err.to_string()))
            })
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

/// The limiter's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allowed { limit: u32, remaining: u32 },
    Refused { limit: u32, wait: Duration },
}

impl RateLimit {
    /// Counts one request of `client` (the resolved address; keyed here by prefix).
    /// Redis decides when the limit is shared and it answers in time; else this process does.
    pub(crate) async fn decide(&self, client: IpAddr) -> Decision {
        let key = key_of(client, self.extractor.ipv6_prefix);
        if let Some(shared) = &self.shared
            && let Some(decision) = shared.check(key).await
        {
            return match decision {
                shared_limit::Decision::Allowed { remaining } => Decision::Allowed {
                    limit: self.burst,
                    remaining,
                },
                shared_limit::Decision::Refused { wait } => Decision::Refused {
                    limit: self.burst,
                    wait,
                },
            };
        }
        match self.limiter.check_key(&key) {
            Ok(snapshot) => Decision::Allowed {
                limit: self.burst,
                remaining: snapshot.remaining_burst_capacity(),
            },
            Err(not_until) => Decision::Refused {
                limit: self.burst,
                wait: not_until.wait_time_from(DefaultClock::default().now()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

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
