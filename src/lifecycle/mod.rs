//! Where the process is in its life (docs/reference.md §4 probes, §9 start and stop): started,
//! draining, stopping. The signals that move it are in [`signals`], the listener's closing in
//! [`listener_gate`], sockets inherited from a service manager in [`inherited`], the watchdog
//! for trickled later request heads in [`connection_watch`].

pub(crate) mod connection_watch;
pub(crate) mod inherited;
pub(crate) mod listener_gate;
pub(crate) mod signals;

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

/// Where the process is in its life, as the probes report it.
#[derive(Debug)]
pub struct Lifecycle {
    started: AtomicBool,
    draining: AtomicBool,
    stopping: watch::Sender<bool>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            stopping: watch::channel(false).0,
        }
    }
}

impl Lifecycle {
    /// Start-up work is done: `/startupz` answers 200 from now on.
    pub(crate) fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// A stop signal arrived: `/readyz` answers 503 from now on, requests are still served.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The listener is closing: long-lived connections must say goodbye now.
    pub fn begin_stop(&self) {
        self.begin_drain();
        self.stopping.send_replace(true);
    }

    /// Resolves once [`Lifecycle::begin_stop`] was called (at once if it already was).
    pub(crate) fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stopping.subscribe();
        async move {
            // An error means the sender is gone, i.e. the process is tearing down: stop too.
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stopping_resolves_for_subscribers_made_before_and_after_the_stop() {
        let lifecycle = Lifecycle::default();
        let early = tokio::spawn(lifecycle.stopping());
        assert!(!lifecycle.is_draining());
        lifecycle.begin_stop();
        assert!(lifecycle.is_draining());
        early.await.unwrap();
        lifecycle.stopping().await;
    }
}
