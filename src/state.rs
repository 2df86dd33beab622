//! What handlers share: the settings, the start time for `/api/status`'s uptime, the process's
//! lifecycle for the probes and the figures for `/api/metrics` (docs/reference.md §4). Its own
//! module so that neither the routes nor the lifecycle need `startup`.

use std::{sync::Arc, time::Instant};

use crate::{config::Settings, lifecycle::Lifecycle, metrics::Metrics};

#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) settings: Arc<Settings>,
    pub(crate) started_at: Instant,
    pub(crate) lifecycle: Arc<Lifecycle>,
    pub(crate) metrics: Arc<Metrics>,
}

impl AppState {
    /// The state of a server starting now.
    pub(crate) fn new(
        settings: &Arc<Settings>,
        lifecycle: &Arc<Lifecycle>,
        metrics: &Arc<Metrics>,
    ) -> Self {
        Self {
            settings: settings.clone(),
            started_at: Instant::now(),
            lifecycle: lifecycle.clone(),
            metrics: metrics.clone(),
        }
    }
}
