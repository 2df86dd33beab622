//! The last few minutes of the figures, for the status page's chart (docs/reference.md §4
//! `/api/metrics`): a task samples the requests per status class and the open WebSockets every
//! [`INTERVAL`], and keeps [`SAMPLES`] of them. Sampling reads atomics; requests never wait on it.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};

use super::{Metrics, class::STATUS_CLASSES};

/// Time between two samples.
pub(crate) const INTERVAL: Duration = Duration::from_secs(2);
/// Samples kept: five minutes of rates.
pub(crate) const SAMPLES: usize = 151;

/// One sample: cumulative requests per status class, and the sockets open at that moment.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at_ms: i64,
    requests: [u64; STATUS_CLASSES.len()],
    sockets: usize,
}

/// The samples, oldest first.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    fn push(&self, sample: Sample) {
        if let Ok(mut samples) = self.samples.lock() {
            if samples.len() == SAMPLES {
                samples.pop_front();
            }
            samples.push_back(sample);
        }
    }

    /// Takes a sample of `metrics` now.
    pub(crate) fn sample(&self, metrics: &Metrics) {
        self.push(Sample {
            at_ms: jiff::Timestamp::now().as_millisecond(),
            requests: metrics.requests().by_status_class(),
            sockets: metrics.open_sockets(),
        });
    }

    /// The JSON of `/api/metrics`: the totals now, and per interval between two samples the
    /// requests per second of each status class and the sockets open at its end.
    pub(crate) fn summary(&self, metrics: &Metrics) -> Value {
        let samples: Vec<Sample> = match self.samples.lock() {
            Ok(samples) => samples.iter().copied().collect(),
            Err(_) => Vec::new(),
        };
        let points: Vec<Value> = samples
            .windows(2)
            .map(|pair| {
                let secs = ((pair[1].at_ms - pair[0].at_ms) as f64 / 1000.0).max(0.001);
                let rates: serde_json::Map<String, Value> = STATUS_CLASSES
                    .iter()
                    .enumerate()
                    .map(|(i, class)| {
                        let delta = pair[1].requests[i].saturating_sub(pair[0].requests[i]);
                        let rate = (delta as f64 / secs * 100.0).round() / 100.0;
                        ((*class).to_string(), json!(rate))
                    })
                    .collect();
                json!({
                    "at": pair[1].at_ms,
                    "requests_per_sec": rates,
                    "websockets_open": pair[1].sockets,
                })
            })
            .collect();
        let totals: serde_json::Map<String, Value> = STATUS_CLASSES
            .iter()
            .zip(metrics.requests().by_status_class())
            .map(|(class, n)| ((*class).to_string(), json!(n)))
            .collect();
        json!({
            "interval_secs": INTERVAL.as_secs(),
            "requests_total": totals,
            "websockets_open": metrics.open_sockets(),
            "points": points,
        })
    }
}

/// The sampling task; it stops when this is dropped, i.e. with the server it belongs to.
#[derive(Debug)]
pub(crate) struct Sampler(tokio::task::JoinHandle<()>);

impl Sampler {
    pub(crate) fn spawn(metrics: Arc<Metrics>) -> Self {
        Self(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                metrics.history.sample(&metrics);
            }
        }))
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::{
        lifecycle::Lifecycle,
        metrics::{Sources, class::RouteClass},
        websocket::SocketRegistry,
    };

    #[test]
    fn points_are_request_rates_per_status_class_between_samples() {
        let sockets = SocketRegistry::new(4);
        let metrics = Metrics::new(Sources {
            sockets: sockets.clone(),
            static_files: None,
            lifecycle: Arc::new(Lifecycle::default()),
        })
        .unwrap();
        let history = History::default();
        history.push(Sample {
            at_ms: 0,
            requests: [0; 5],
            sockets: 0,
        });
        for _ in 0..6 {
            metrics
                .requests()
                .record(RouteClass::Api, 200, Duration::ZERO, 10);
        }
        metrics
            .requests()
            .record(RouteClass::Static, 404, Duration::ZERO, 10);
        let _open = sockets.try_open().unwrap();
        history.push(Sample {
            at_ms: 2000,
            requests: metrics.requests().by_status_class(),
            sockets: metrics.open_sockets(),
        });
        let summary = history.summary(&metrics);
        let point = &summary["points"][0];
        assert_eq!(summary["points"].as_array().unwrap().len(), 1);
        assert_eq!(point["requests_per_sec"]["2xx"], 3.0);
        assert_eq!(point["requests_per_sec"]["4xx"], 0.5);
        assert_eq!(point["websockets_open"], 1);
        assert_eq!(summary["requests_total"]["2xx"], 6);
    }

    #[test]
    fn only_the_last_minutes_are_kept() {
        let history = History::default();
        for i in 0..(SAMPLES as u64 + 10) {
            history.push(Sample {
                at_ms: i as i64 * 2000,
                requests: [0, 10 * i, 0, i, 0],
                sockets: i as usize,
            });
        }
        let samples = history.samples.lock().unwrap();
        assert_eq!(samples.len(), SAMPLES);
        assert_eq!(samples[0].at_ms, 10 * 2000);
    }
}
