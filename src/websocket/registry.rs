//! The cap on open WebSockets (docs/reference.md §7, `websocket.max_connections`): one count for
//! every worker, and a guard per socket that gives its place back however the socket ends. It
//! also counts how sockets ended, by close code, for `/metrics` (§4).

use std::sync::{
    Arc,
    atomic::{AtomicU64, AtomicUsize, Ordering},
};

/// The close codes counted one by one: those tandem sends (§7) and 1005, a close frame without
/// a code. Codes a client chooses otherwise (they are echoed back) count as `other`; a socket
/// that ended without a close frame (the peer went away) counts as `none`.
pub(crate) const CLOSE_CODES: [&str; 9] = [
    "1000", "1001", "1002", "1005", "1007", "1009", "1011", "other", "none",
];

/// The index in [`CLOSE_CODES`] of a close frame's code, or of no close frame.
fn close_index(code: Option<u16>) -> usize {
    match code {
        Some(1000) => 0,
        Some(1001) => 1,
        Some(1002) => 2,
        Some(1005) => 3,
        Some(1007) => 4,
        Some(1009) => 5,
        Some(1011) => 6,
        Some(_) => 7,
        None => 8,
    }
}

/// Counts open sockets across all workers so `websocket.max_connections` is one global cap.
#[derive(Debug)]
pub(crate) struct SocketRegistry {
    open: AtomicUsize,
    max: usize,
    closes: [AtomicU64; CLOSE_CODES.len()],
}

impl SocketRegistry {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            open: AtomicUsize::new(0),
            max,
            closes: Default::default(),
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

    /// Sockets open now.
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Sockets ended so far, per [`CLOSE_CODES`] entry.
    pub(crate) fn closes(&self) -> [u64; CLOSE_CODES.len()] {
        std::array::from_fn(|i| self.closes[i].load(Ordering::Relaxed))
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

impl OpenSocket {
    /// Counts how the socket ended: the code of the close frame sent (`None`: no close frame).
    pub(crate) fn ended(&self, code: Option<u16>) {
        self.registry.closes[close_index(code)].fetch_add(1, Ordering::Relaxed);
    }
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
    fn endings_are_counted_by_close_code() {
        let registry = SocketRegistry::new(4);
        let socket = registry.try_open().unwrap();
        for code in [
            Some(1000),
            Some(1001),
            Some(1001),
            Some(4000),
            None,
            Some(1005),
        ] {
            socket.ended(code);
        }
        let closes = registry.closes();
        let count = |label| closes[CLOSE_CODES.iter().position(|c| *c == label).unwrap()];
        assert_eq!(
            [count("1000"), count("1001"), count("other"), count("none")],
            [1, 2, 1, 1]
        );
        assert_eq!((count("1005"), count("1011")), (1, 0));
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
