//! Start and stop (SPEC §9): readiness state, the drain window, the bounded graceful stop, telling
//! long-lived connections (WebSockets) to leave, and the second-signal immediate exit.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use actix_web::{
    Error,
    body::MessageBody,
    dev::{ServerHandle, ServiceRequest, ServiceResponse},
    http::ConnectionType,
    middleware::Next,
    web,
};
use tokio::sync::watch;

use crate::startup::AppState;

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
    pub fn mark_started(&self) {
        self.started.store(true, Ordering::SeqCst);
    }

    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// A stop signal arrived: `/readyz` answers 503 from now on, requests are still served.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// The listener is closing: long-lived connections must say goodbye now.
    pub fn begin_stop(&self) {
        self.begin_drain();
        self.stopping.send_replace(true);
    }

    /// Resolves once [`Lifecycle::begin_stop`] was called (at once if it already was).
    pub fn stopping(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.stopping.subscribe();
        async move {
            // An error means the sender is gone, i.e. the process is tearing down: stop too.
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }
}

/// Middleware: while draining, every response closes its connection, so keep-alive clients and
/// proxies reconnect (to another instance) instead of reusing a socket that is about to close.
pub async fn close_when_draining(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let draining = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.lifecycle.is_draining());
    let mut res = next.call(req).await?;
    // A WebSocket upgrade must keep its `Connection: upgrade`; the socket hears 1001 later.
    if draining && res.status() != actix_web::http::StatusCode::SWITCHING_PROTOCOLS {
        res.response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    Ok(res)
}

/// The signal that asks for a stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopSignal {
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

/// The listening socket, seen from the stop sequence: it closes the door without dropping anyone
/// standing in the doorway.
///
/// Closing a listener resets every connection the kernel has completed but the server has not yet
/// accepted, and a listener left open while workers finish keeps queueing connections that will
/// never be served. Both lose requests a client believes were accepted. So the gate first makes
/// the kernel ignore new SYNs (a socket filter), lets the accept loop take what is queued, and
/// only then shuts the socket: late clients retry their SYN and find the port closed.
#[derive(Debug)]
pub struct ListenerGate(std::net::TcpListener);

impl ListenerGate {
    pub fn new(listener: std::net::TcpListener) -> Self {
        Self(listener)
    }

    /// New connection attempts (SYN without ACK) are dropped; established ones are untouched.
    pub fn refuse_new_connections(&self) -> std::io::Result<()> {
        use socket2::{SockFilter, SockRef};
        // Classic BPF over the TCP header: load the flags byte, keep SYN and ACK, drop a bare SYN.
        const BPF_LD_B_ABS: u16 = 0x30;
        const BPF_ALU_AND_K: u16 = 0x54;
        const BPF_JMP_JEQ_K: u16 = 0x15;
        const BPF_RET_K: u16 = 0x06;
        let program = [
            SockFilter::new(BPF_LD_B_ABS, 0, 0, 13),
            SockFilter::new(BPF_ALU_AND_K, 0, 0, 0x12),
            SockFilter::new(BPF_JMP_JEQ_K, 0, 1, 0x02),
            SockFilter::new(BPF_RET_K, 0, 0, 0),
            SockFilter::new(BPF_RET_K, 0, 0, u32::MAX),
        ];
        SockRef::from(&self.0).attach_filter(&program)
    }

    /// Stops listening: from now on connection attempts are refused.
    pub fn close(&self) -> std::io::Result<()> {
        socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Both)
    }
}

/// Runs the SPEC §9 stop sequence when a signal arrives; a second signal exits at once.
pub struct StopSequence {
    pub drain: Duration,
    pub timeout: Duration,
    pub gate: Option<ListenerGate>,
}

/// Time the accept loop gets to take connections the kernel already queued.
const ACCEPT_QUEUE_GRACE: Duration = Duration::from_millis(50);

impl StopSequence {
    /// Installs the signal handlers now (so no signal is missed) and returns the task to spawn.
    pub fn install(
        self,
        lifecycle: std::sync::Arc<Lifecycle>,
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
                log::info!("closing the listener and asking open WebSockets to leave");
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
