//! The stop sequence (docs/reference.md §9): SIGTERM or SIGINT starts the drain, then the
//! listener closes, in-flight requests get their time, WebSockets are told to leave; a second
//! signal exits at once.

use std::{sync::Arc, time::Duration};

use actix_web::dev::ServerHandle;

use super::{Lifecycle, listener_gate::ListenerGate};

/// The signal that asks for a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StopSignal {
    Terminate,
    Interrupt,
}

impl StopSignal {
    fn name(self) -> &'static str {
        match self {
            StopSignal::Terminate => "SIGTERM",
            StopSignal::Interrupt => "SIGINT",
        }
    }
}

/// Listens for SIGTERM and SIGINT.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> StopSignal {
        tokio::select! {
            _ = self.term.recv() => StopSignal::Terminate,
            _ = self.int.recv() => StopSignal::Interrupt,
        }
    }
}

/// Runs the stop sequence when a signal arrives; a second signal exits at once.
pub(crate) struct StopSequence {
    pub(crate) drain: Duration,
    pub(crate) timeout: Duration,
    pub(crate) gate: Option<ListenerGate>,
}

/// Time the accept loop gets to take connections the kernel already queued.
const ACCEPT_QUEUE_GRACE: Duration = Duration::from_millis(50);

impl StopSequence {
    /// Installs the signal handlers now (so no signal is missed) and returns the task to spawn.
    pub(crate) fn install(
        self,
        lifecycle: Arc<Lifecycle>,
        server: ServerHandle,
    ) -> std::io::Result<impl Future<Output = ()>> {
        let mut signals = Signals::install()?;
        Ok(async move {
            let first = signals.next().await;
            lifecycle.begin_drain();
            log::info!(
                "{} received: /readyz now answers 503; draining for {}s, then closing the listener (in-flight requests get {}s); a second signal exits at once",
                first.name(),
                self.drain.as_secs(),
                self.timeout.as_secs()
            );
            let stop = async {
                if !self.drain.is_zero() {
                    tokio::time::sleep(self.drain).await;
                }
                self.close_listener(&lifecycle, &server).await;
            };
            tokio::select! {
                () = stop => {}
                second = signals.next() => {
                    log::warn!("{} received again: exiting now without waiting for in-flight requests", second.name());
                    std::process::exit(1);
                }
            }
        })
    }

    /// Ends accepting, then stops the server and waits for in-flight requests (up to the
    /// timeout). An owned socket is filtered and shut (see [`ListenerGate`]); a shared one only
    /// stops being accepted from: actix pauses its accept loop first, so no connection is taken
    /// from the queue after that, and what is left there waits for the next process.
    async fn close_listener(&self, lifecycle: &Lifecycle, server: &ServerHandle) {
        let shared = self.gate.as_ref().is_some_and(ListenerGate::is_shared);
        if shared {
            log::info!(
                "no longer accepting on the inherited socket, which stays open: new connections wait in its queue for the next process; asking open WebSockets to leave"
            );
            server.pause().await;
        } else {
            log::info!("closing the listener and asking open WebSockets to leave");
        }
        if let Some(gate) = &self.gate
            && let Err(err) = gate.refuse_new_connections()
        {
            log::warn!("cannot filter new connections before closing the listener: {err}");
        }
        tokio::time::sleep(ACCEPT_QUEUE_GRACE).await;
        lifecycle.begin_stop();
        let stopped = server.stop(true);
        tokio::time::sleep(ACCEPT_QUEUE_GRACE).await;
        if let Some(gate) = &self.gate
            && let Err(err) = gate.close()
        {
            log::warn!("cannot close the listener: {err}");
        }
        stopped.await;
    }
}
