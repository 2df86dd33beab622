//! The cap on open WebSockets (docs/reference.md §7, `websocket.max_connections`): one count for
//! every worker, and a guard per socket that gives its place back however the socket ends.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

/// Counts open sockets across all workers so `websocket.max_connections` is one global cap.
#[derive(Debug)]
pub(crate) struct SocketRegistry {
    open: AtomicUsize,
    max: usize,
}

impl SocketRegistry {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
        })
    }

    /// Claims a place for one more socket, or `None` when the cap is reached. The place is given
    /// back when the returned guard drops, however the socket ends.
    pub(crate) fn try_open(self: &Arc<Self>) -> Option<OpenSocket> {
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < self.max).then_some(open + 1)
            })
            .ok()
            .map(|_| OpenSocket {
                registry: self.clone(),
            })
    }

    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

/// One claimed place in the [`SocketRegistry`].
#[derive(Debug)]
pub(crate) struct OpenSocket {
    registry: Arc<SocketRegistry>,
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.registry.open.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_never_opens_more_than_its_cap_and_reopens_after_a_drop() {
        let registry = SocketRegistry::new(2);
        let first = registry.try_open().unwrap();
        let _second = registry.try_open().unwrap();
        assert!(registry.try_open().is_none());
        assert_eq!(registry.open(), 2);
        drop(first);
        assert_eq!(registry.open(), 1);
        assert!(registry.try_open().is_some());
    }

    #[test]
    fn the_registry_count_is_exact_under_concurrent_opens_and_drops() {
        let registry = SocketRegistry::new(50);
        let start = Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (registry, start) = (registry.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    // Churn: open and drop places while the others do the same.
                    for _ in 0..2000 {
                        let guard = registry.try_open();
                        assert!(registry.open() <= 50);
                        drop(guard);
                    }
                    // Then hold as many as can be had.
                    let held: Vec<_> = (0..20).filter_map(|_| registry.try_open()).collect();
                    start.wait();
                    held.len()
                })
            })
            .collect();
        let held: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(held, 50, "160 attempts on 50 places win exactly 50");
        assert_eq!(
            registry.open(),
            0,
            "every dropped guard gave its place back"
        );
    }
}
