//! Rate-limit buckets in Redis, shared by every instance that uses the same Redis
//! (docs/reference.md §6, `rate_limit.backend = "redis"`): governor's GCRA as one Lua script, run
//! atomically per request, and the health that sends requests to the in-process limiter while
//! Redis is slow or gone.
//!
//! The script is governor's `Gcra::test_and_update` with the same emission interval `t` and
//! tolerance `tau = t * (burst - 1)`, on Redis's clock (so replicas' clocks do not matter) and to
//! its resolution, the microsecond. A refusal writes nothing, as in governor. Each key expires
//! when its state equals a fresh one, so Redis holds only clients seen within the last burst.
//!
//! Requests do not call Redis one by one: a [`Batcher`] task per worker thread takes every
//! decision waiting on that thread and runs them through one script call (keys in arrival order,
//! so two requests of one client are still decided one after the other). Under load that turns
//! hundreds of round trips and script invocations into one, and only whole batches cross to the
//! connection's task on another thread; idle, a batch is one request.

use std::{
    cell::RefCell,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use redis::{
    Script,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::sync::{
    mpsc::{self, error::TrySendError},
    oneshot,
};

use crate::{
    config::{ConfigError, RateLimitSettings},
    redis_url::RedisUrl,
};

/// One decision, allowed or not, with what the response headers need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allowed { remaining: u32 },
    Refused { wait: Duration },
}

/// KEYS: one bucket per decision. ARGV[1]: `t`, ARGV[2]: `tau`, both in microseconds.
/// Returns, per key, {allowed (1/0), remaining burst, microseconds to wait}, flattened.
const GCRA: &str = r"
local now = redis.call('TIME')
local t0 = tonumber(now[1]) * 1000000 + tonumber(now[2])
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local replies = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key)) or t0
  local earliest = tat - tau
  if t0 < earliest then
    replies[3 * i - 2], replies[3 * i - 1], replies[3 * i] = 0, 0, earliest - t0
  else
    local next = math.max(tat, t0) + t
    redis.call('SET', key, string.format('%d', next), 'PX', math.ceil((next - t0) / 1000))
    replies[3 * i - 2] = 1
    replies[3 * i - 1] = math.floor(math.min(t0 + tau + t - next, tau + t) / t)
    replies[3 * i] = 0
  end
end
return replies
";

/// Most decisions in one script call: enough to absorb a burst of concurrent requests, small
/// enough that one call stays well under a millisecond of Redis time.
const MAX_BATCH: usize = 256;

/// Decisions allowed to wait for the batcher; beyond that Redis is clearly behind, and requests
/// are decided in-process rather than queued.
const MAX_WAITING: usize = 4096;

/// Where the buckets live in Redis: one string per client key.
const KEY_PREFIX: &str = "tandem:rate_limit:";

/// How long opening a connection (TCP, TLS, AUTH) may take; requests never wait for it longer
/// than `rate_limit.redis_timeout_ms`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// While Redis is lost, at most one request per interval tries it again; the rest go straight
/// to the in-process limiter and pay nothing.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The Redis side of the rate limiter.
pub(crate) struct SharedLimiter {
    /// Which limiter a worker thread's batcher belongs to (in-process tests run several).
    id: u64,
    connection: ConnectionManager,
    script: Script,
    emission_us: u64,
    tolerance_us: u64,
    url: RedisUrl,
    timeout: Duration,
    health: Arc<Health>,
}

/// One decision waiting for the batcher.
struct Pending {
    key: IpAddr,
    reply: oneshot::Sender<Result<Decision, String>>,
}

impl SharedLimiter {
    /// Prepares the connection without waiting for it: tandem starts (and stays ready) whether or
    /// not Redis is up. Must run inside the Tokio runtime that will drive the connection.
    pub(crate) fn connect(settings: &RateLimitSettings) -> Result<Self, ConfigError> {
        let url = settings.redis_url.clone();
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(ConfigError::new(
                "the Redis rate limiter must be built inside the server's runtime",
            ));
        }
        let client = redis::Client::open(url.expose()).map_err(|_| {
            ConfigError::new(format!(
                "configuration key `rate_limit.redis_url` is {url}, which is not a usable Redis URL"
            ))
        })?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            // Not the per-request bound (that is `timeout`, below): this one fails the commands
            // of a connection that went silent, which makes the manager reconnect.
            .set_response_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection =
            ConnectionManager::new_lazy_with_config(client, config).map_err(|err| {
                ConfigError::new(format!(
                    "cannot prepare the Redis connection to {url}: {}",
                    url.scrub(&err.to_string())
                ))
            })?;
        let (emission_us, tolerance_us) = gcra_parameters(settings.per_second, settings.burst);
        log::info!(
            "rate limit: shared through Redis at {url} (answers within {} ms, else limited in this instance)",
            settings.redis_timeout_ms
        );
        let health = Arc::new(Health::new());
        // Connect now, not on the first request, which would otherwise pay for the TCP and TLS
        // handshakes and likely find Redis "too slow".
        let (mut warm, warm_health, warm_url) = (connection.clone(), health.clone(), url.clone());
        tokio::spawn(async move {
            let ping_cmd = redis::cmd("PING");
            let ping = ping_cmd.query_async::<()>(&mut warm);
            match tokio::time::timeout(CONNECT_TIMEOUT, ping).await {
                Ok(Ok(())) => warm_health.mark_reachable(&warm_url),
                Ok(Err(err)) => warm_health.mark_lost(&warm_url, &warm_url.scrub(&err.to_string())),
                Err(_) => warm_health.mark_lost(&warm_url, "no answer to PING at start-up"),
            }
        });
        Ok(Self {
            id: NEXT_LIMITER_ID.fetch_add(1, Ordering::Relaxed),
            connection,
            script: Script::new(GCRA),
            emission_us,
            tolerance_us,
            url,
            timeout: Duration::from_millis(settings.redis_timeout_ms),
            health,
        })
    }

    /// Redis's decision for `key`, or `None` when Redis cannot give one in time (the caller then
    /// decides in-process).
    pub(crate) async fn check(&self, key: IpAddr) -> Option<Decision> {
        if !self.health.worth_trying() {
            return None;
        }
        let (reply, answer) = oneshot::channel();
        if let Err(err) = self.queue().try_send(Pending { key, reply }) {
            if matches!(err, TrySendError::Full(_)) {
                self.health.mark_lost(
                    &self.url,
                    &format!("{MAX_WAITING} decisions already waiting for it"),
                );
            }
            return None;
        }
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(Ok(decision))) => {
                self.health.mark_reachable(&self.url);
                Some(decision)
            }
            Ok(Ok(Err(reason))) => {
                self.health.mark_lost(&self.url, &self.url.scrub(&reason));
                None
            }
            // The batcher is gone: the server is shutting down.
            Ok(Err(_)) => None,
            Err(_) => {
                self.health.mark_lost(
                    &self.url,
                    &format!("no answer within {} ms", self.timeout.as_millis()),
                );
                None
            }
        }
    }
}

static NEXT_LIMITER_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// This thread's batcher queue per limiter. One batcher per worker thread keeps the hand-off
    /// of each request on its own thread; only a whole batch crosses to the connection's task.
    static QUEUES: RefCell<Vec<(u64, mpsc::Sender<Pending>)>> = const { RefCell::new(Vec::new()) };
}

impl SharedLimiter {
    /// The calling worker thread's batcher queue, started on first use on this thread's runtime.
    fn queue(&self) -> mpsc::Sender<Pending> {
        QUEUES.with_borrow_mut(|queues| {
            queues.retain(|(_, queue)| !queue.is_closed());
            if let Some((_, queue)) = queues.iter().find(|(id, _)| *id == self.id) {
                return queue.clone();
            }
            let (queue, waiting) = mpsc::channel(MAX_WAITING);
            tokio::spawn(
                Batcher {
                    connection: self.connection.clone(),
                    script: self.script.clone(),
                    emission_us: self.emission_us,
                    tolerance_us: self.tolerance_us,
                    waiting,
                }
                .run(),
            );
            queues.push((self.id, queue.clone()));
            queue
        })
    }
}

/// The task that turns waiting decisions into script calls, one batch at a time.
struct Batcher {
    connection: ConnectionManager,
    script: Script,
    emission_us: u64,
    tolerance_us: u64,
    waiting: mpsc::Receiver<Pending>,
}

impl Batcher {
    async fn run(mut self) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while self.waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
            // A request that stopped waiting was decided in-process: counting it in Redis too
            // would charge its client twice.
            batch.retain(|pending: &Pending| !pending.reply.is_closed());
            if !batch.is_empty() {
                match self.decide(&batch).await {
                    Ok(decisions) => {
                        for (pending, decision) in batch.drain(..).zip(decisions) {
                            let _ = pending.reply.send(Ok(decision));
                        }
                    }
                    Err(reason) => {
                        for pending in batch.drain(..) {
                            let _ = pending.reply.send(Err(reason.clone()));
                        }
                    }
                }
            }
            batch.clear();
        }
    }

    async fn decide(&mut self, batch: &[Pending]) -> Result<Vec<Decision>, String> {
        let mut invocation = self.script.prepare_invoke();
        for pending in batch {
            invocation.key(format!("{KEY_PREFIX}{}", pending.key));
        }
        invocation.arg(self.emission_us).arg(self.tolerance_us);
        let flat: Vec<u64> = invocation
            .invoke_async(&mut self.connection)
            .await
            .map_err(|err| err.to_string())?;
        if flat.len() != 3 * batch.len() {
            return Err(format!(
                "the script answered {} numbers for {} keys",
                flat.len(),
                batch.len()
            ));
        }
        Ok(flat
            .chunks_exact(3)
            .map(|reply| decision_of((reply[0], reply[1], reply[2])))
            .collect())
    }
}

/// governor's `t` and `tau` for `per_second` and `burst`, in whole microseconds (at least 1).
pub(crate) fn gcra_parameters(per_second: u32, burst: u32) -> (u64, u64) {
    let emission = (1_000_000 / u64::from(per_second.max(1))).max(1);
    (emission, emission * u64::from(burst.max(1) - 1))
}

fn decision_of((allowed, remaining, wait_us): (u64, u64, u64)) -> Decision {
    if allowed == 1 {
        Decision::Allowed {
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        }
    } else {
        Decision::Refused {
            wait: Duration::from_micros(wait_us),
        }
    }
}

/// Whether Redis answered last time, and when a lost Redis may be tried again. Transitions are
/// logged once each, so an outage is two lines, not one per request.
struct Health {
    state: AtomicU8,
    origin: Instant,
    /// Milliseconds after `origin` before which a lost Redis is not tried.
    retry_at_ms: AtomicU64,
}

/// Not contacted yet.
const UNKNOWN: u8 = 0;
const REACHABLE: u8 = 1;
const LOST: u8 = 2;

impl Health {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(UNKNOWN),
            origin: Instant::now(),
            retry_at_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Always unless lost; while lost, true for one caller per [`RETRY_EVERY`].
    fn worth_trying(&self) -> bool {
        if self.state.load(Ordering::Acquire) != LOST {
            return true;
        }
        let now = self.now_ms();
        let retry_at = self.retry_at_ms.load(Ordering::Acquire);
        now >= retry_at
            && self
                .retry_at_ms
                .compare_exchange(
                    retry_at,
                    now + RETRY_EVERY.as_millis() as u64,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn mark_lost(&self, url: &RedisUrl, reason: &str) {
        self.retry_at_ms.store(
            self.now_ms() + RETRY_EVERY.as_millis() as u64,
            Ordering::Release,
        );
        if self.state.swap(LOST, Ordering::AcqRel) != LOST {
            log::warn!(
                "rate limit: Redis at {url} is unreachable ({reason}); each instance limits on its own until it is back"
            );
        }
    }

    fn mark_reachable(&self, url: &RedisUrl) {
        match self.state.swap(REACHABLE, Ordering::AcqRel) {
            LOST => log::info!("rate limit: Redis at {url} is back; limits are shared again"),
            UNKNOWN => log::info!("rate limit: connected to Redis at {url}"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_parameters_follow_governor_to_the_microsecond() {
        assert_eq!(gcra_parameters(5, 10), (200_000, 1_800_000));
        assert_eq!(gcra_parameters(1, 1), (1_000_000, 0));
        assert_eq!(gcra_parameters(3, 2), (333_333, 333_333));
        assert_eq!(gcra_parameters(2_000_000, 4), (1, 3));
    }

    #[test]
    fn a_lost_redis_is_tried_by_one_request_per_interval_and_forgiven_on_success() {
        let health = Health::new();
        let url = RedisUrl::new("redis://127.0.0.1:1");
        assert!(health.worth_trying());
        health.mark_reachable(&url);
        assert!(health.worth_trying());
        health.mark_lost(&url, "test");
        assert!(!health.worth_trying());
        // Once the interval has passed, exactly one caller gets through.
        health.retry_at_ms.store(0, Ordering::Release);
        assert!(health.worth_trying());
        assert!(!health.worth_trying());
        health.mark_reachable(&url);
        assert!(health.worth_trying());
        assert!(health.worth_trying());
    }

    #[test]
    fn script_replies_become_decisions() {
        assert_eq!(decision_of((1, 4, 0)), Decision::Allowed { remaining: 4 });
        assert_eq!(
            decision_of((0, 0, 1_500_000)),
            Decision::Refused {
                wait: Duration::from_millis(1500)
            }
        );
    }
}
