//! The metrics step (docs/reference.md §4 `/metrics`): every request is counted once its answer
//! is known, by route class (from the route table) and status class, with its latency and body
//! bytes; a 429 of the rate limit is counted too. The counters exist from start-up, so this is
//! an index and a few atomic adds per request.

use std::{sync::Arc, time::Instant};

use actix_web::{
    body::{BodySize, BoxBody, MessageBody},
    dev::ServiceResponse,
    http::Method,
};

use crate::{
    metrics::{Metrics, class::RouteClass},
    routes::{self, Route},
};

/// The metrics step's settings: the figures, and what a path no route has counts as.
pub(crate) struct Figures {
    pub(crate) metrics: Arc<Metrics>,
    /// Static files in `app` mode, other in `nginx` mode.
    pub(crate) unrouted: RouteClass,
}

impl Figures {
    /// The route class of a request whose route (from [`routes::at`]) is `route`.
    pub(crate) fn class_of(&self, route: Option<&Route>, path: &str) -> RouteClass {
        routes::class_of(route, path, self.unrouted)
    }

    pub(crate) fn rate_limited(&self) {
        self.metrics.requests().rate_limited();
    }

    /// Counts an answered request: its status, latency and the body bytes it will send.
    pub(crate) fn answered(
        &self,
        class: RouteClass,
        res: &ServiceResponse<BoxBody>,
        started: Instant,
    ) {
        let bytes = match res.response().body().size() {
            _ if res.request().method() == Method::HEAD => 0,
            BodySize::Sized(n) => n,
            BodySize::None | BodySize::Stream => 0,
        };
        self.metrics
            .requests()
            .record(class, res.status().as_u16(), started.elapsed(), bytes);
    }

    /// Counts a request answered from an error after it was gone (its body size is not known).
    pub(crate) fn gone(&self, class: RouteClass, status: u16, started: Instant) {
        self.metrics
            .requests()
            .record(class, status, started.elapsed(), 0);
    }
}
