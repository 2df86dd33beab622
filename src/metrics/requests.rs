//! The per-request figures of `/metrics` (docs/reference.md §4): requests by route class and
//! status class, their latency, body bytes sent, and requests refused by the rate limit. Every
//! label combination is created at start-up, so recording a request is an index into an array
//! and a few atomic adds: no lock, no allocation, no label hashing.

use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

use super::class::{RouteClass, STATUS_CLASSES, status_class};

/// Upper bounds of the latency buckets, in seconds: from a cache hit (tens of µs) to a slow
/// upstream (seconds).
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5, 10.0,
];

/// The request figures, one counter per label combination.
pub(crate) struct RequestFigures {
    /// `[route class][status class]`, flattened.
    requests: Vec<IntCounter>,
    /// Per route class.
    latency: Vec<Histogram>,
    body_bytes: Vec<IntCounter>,
    rate_limited: IntCounter,
}

impl RequestFigures {
    pub(crate) fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                "tandem_http_requests_total",
                "Requests answered, by the kind of route that answered and the status class.",
            ),
            &["route_class", "status_class"],
        )?;
        let latency = prometheus::HistogramVec::new(
            HistogramOpts::new(
                "tandem_http_request_duration_seconds",
                "Time from a request's arrival to its response head (body transfer not included).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route_class"],
        )?;
        let body_bytes = IntCounterVec::new(
            Opts::new(
                "tandem_http_response_body_bytes_total",
                "Body bytes of responses whose length was known when answered (HEAD, 1xx and streamed bodies of unknown length count 0).",
            ),
            &["route_class"],
        )?;
        let rate_limited = IntCounter::new(
            "tandem_rate_limited_requests_total",
            "Requests refused with 429 by the rate limit.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(body_bytes.clone()))?;
        registry.register(Box::new(rate_limited.clone()))?;
        let mut figures = Self {
            requests: Vec::new(),
            latency: Vec::new(),
            body_bytes: Vec::new(),
            rate_limited,
        };
        for class in RouteClass::ALL {
            for status in STATUS_CLASSES {
                figures
                    .requests
                    .push(requests.get_metric_with_label_values(&[class.label(), status])?);
            }
            figures
                .latency
                .push(latency.get_metric_with_label_values(&[class.label()])?);
            figures
                .body_bytes
                .push(body_bytes.get_metric_with_label_values(&[class.label()])?);
        }
        Ok(figures)
    }

    /// Counts one answered request.
    pub(crate) fn record(&self, class: RouteClass, status: u16, took: Duration, body_bytes: u64) {
        let at = class.index() * STATUS_CLASSES.len() + status_class(status);
        if let Some(counter) = self.requests.get(at) {
            counter.inc();
        }
        if let Some(latency) = self.latency.get(class.index()) {
            latency.observe(took.as_secs_f64());
        }
        if body_bytes > 0
            && let Some(bytes) = self.body_bytes.get(class.index())
        {
            bytes.inc_by(body_bytes);
        }
    }

    /// Counts one request refused by the rate limit (it is counted as a 429 by [`Self::record`]
    /// too).
    pub(crate) fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// Requests answered so far per status class, every route class together.
    pub(crate) fn by_status_class(&self) -> [u64; STATUS_CLASSES.len()] {
        let mut totals = [0; STATUS_CLASSES.len()];
        for (i, counter) in self.requests.iter().enumerate() {
            totals[i % STATUS_CLASSES.len()] += counter.get();
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_moves_its_own_counter_and_no_other() {
        let registry = Registry::new();
        let figures = RequestFigures::register(&registry).unwrap();
        figures.record(RouteClass::Static, 200, Duration::from_micros(30), 6000);
        figures.record(RouteClass::Api, 429, Duration::from_millis(2), 0);
        figures.record(RouteClass::Api, 404, Duration::from_millis(2), 120);
        assert_eq!(figures.by_status_class(), [0, 1, 0, 2, 0]);
        let static_ok = &figures.requests[RouteClass::Static.index() * 5 + 1];
        assert_eq!(static_ok.get(), 1);
        assert_eq!(figures.body_bytes[RouteClass::Static.index()].get(), 6000);
        assert_eq!(figures.body_bytes[RouteClass::Api.index()].get(), 120);
        assert_eq!(
            figures.latency[RouteClass::Api.index()].get_sample_count(),
            2
        );
    }
}
