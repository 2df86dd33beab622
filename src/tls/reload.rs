//! Certificate reload without restart (docs/reference.md §3 `tls.reload_check_secs`, §9): on
//! SIGHUP, and when the files' content changes (polled every `tls.reload_check_secs`), the pair
//! is loaded and checked first; a good one replaces the slot's for every new handshake, a bad
//! one leaves the current certificate in place. Either way one log line says what happened.
//! Connections already open keep the certificate they were made with.

use std::{sync::Arc, time::Duration};

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{
    certificates::{LoadedPair, PairError, PemFiles, PemPaths},
    slot::CertificateSlot,
};

/// What made tandem look at the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Hangup,
    Changed,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Hangup => "SIGHUP",
            Trigger::Changed => "the certificate files changed",
        }
    }
}

/// The files, the slot they fill, and the content last looked at.
pub(crate) struct FileReload {
    paths: PemPaths,
    slot: Arc<CertificateSlot>,
    every: Option<Duration>,
    /// The fingerprint of the content last loaded or refused, so a bad pair is reported once,
    /// not at every poll.
    seen: u64,
    /// Why the files could not be read at the last look, reported once for the same reason.
    unreadable: Option<PairError>,
}

/// The task that keeps the served certificate current (this file reload, or the ACME client);
/// dropping it stops the task.
pub(crate) struct CertificateTask(pub(super) tokio::task::JoinHandle<()>);

impl Drop for CertificateTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl FileReload {
    /// `loaded` is the content the slot holds now; `every` is the poll interval (`None`: SIGHUP
    /// only).
    pub(crate) fn new(
        paths: PemPaths,
        loaded: &PemFiles,
        slot: Arc<CertificateSlot>,
        every: Option<Duration>,
    ) -> Self {
        Self {
            paths,
            slot,
            every,
            seen: loaded.fingerprint(),
            unreadable: None,
        }
    }

    /// Installs the SIGHUP handler now (so no signal is missed, and SIGHUP no longer ends the
    /// process) and spawns the task on the current runtime.
    pub(crate) fn spawn(self) -> std::io::Result<CertificateTask> {
        let hangup = signal(SignalKind::hangup())?;
        Ok(CertificateTask(tokio::spawn(self.run(hangup))))
    }

    async fn run(mut self, mut hangup: Signal) {
        let mut poll = self.every.map(|every| {
            let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            poll
        });
        loop {
            let trigger = tokio::select! {
                Some(()) = hangup.recv() => Trigger::Hangup,
                _ = async {
                    match poll.as_mut() {
                        Some(poll) => poll.tick().await,
                        None => std::future::pending().await,
                    }
                } => Trigger::Changed,
            };
            self.look(trigger).await;
        }
    }

    /// Reads the files off the runtime's thread (they may sit on a slow disk) and acts on them.
    async fn look(&mut self, trigger: Trigger) {
        let paths = self.paths.clone();
        let read = tokio::task::spawn_blocking(move || {
            let files = paths.read()?;
            let fingerprint = files.fingerprint();
            Ok::<_, PairError>((fingerprint, files.parse(&paths)))
        })
        .await;
        let outcome = match read {
            Ok(Ok((fingerprint, _))) if trigger == Trigger::Changed && fingerprint == self.seen => {
                self.unreadable = None;
                return;
            }
            Ok(Ok((fingerprint, parsed))) => {
                self.seen = fingerprint;
                self.unreadable = None;
                parsed
            }
            Ok(Err(unreadable)) => {
                if trigger == Trigger::Changed && self.unreadable.as_ref() == Some(&unreadable) {
                    return;
                }
                self.unreadable = Some(unreadable.clone());
                Err(unreadable)
            }
            Err(err) => {
                log::error!(
                    "{}: cannot read the certificate files: {err}",
                    trigger.as_str()
                );
                return;
            }
        };
        self.install(trigger, outcome);
    }

    fn install(&self, trigger: Trigger, outcome: Result<LoadedPair, PairError>) {
        match outcome {
            Ok(loaded) => {
                let leaf = loaded
                    .chain
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                self.slot.replace(loaded.key);
                log::info!(
                    "{}: new connections get the certificate from {}: {leaf}",
                    trigger.as_str(),
                    self.paths.cert_file.display()
                );
            }
            Err(err) => log::error!(
                "{}: kept the current certificate, the new pair is refused: {err}",
                trigger.as_str()
            ),
        }
    }
}
