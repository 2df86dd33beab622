//! The label values of `/metrics` (docs/reference.md §4 `/metrics`): which kind of route answered
//! and which class its status is in. Fixed, small sets, so every combination is created once at
//! start-up and a request only picks one by index.

/// The kind of route that answered a request; each route of the table names its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteClass {
    /// A file of the static roots, or a path no route has in `app` mode.
    Static,
    /// The JSON API, and any path under `/api`.
    Api,
    /// `/health`, `/healthz`, `/readyz`, `/startupz`.
    Probe,
    /// The WebSocket handshake.
    Socket,
    /// Anything else: a path no route has in `nginx` mode.
    Other,
}

impl RouteClass {
    pub(crate) const ALL: [RouteClass; 5] = [
        RouteClass::Static,
        RouteClass::Api,
        RouteClass::Probe,
        RouteClass::Socket,
        RouteClass::Other,
    ];

    pub(crate) fn label(self) -> &'static str {
        match self {
            RouteClass::Static => "static",
            RouteClass::Api => "api",
            RouteClass::Probe => "probe",
            RouteClass::Socket => "socket",
            RouteClass::Other => "other",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// `1xx` to `5xx`, the status classes of RFC 9110 §15.
pub(crate) const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The index in [`STATUS_CLASSES`] of `status` (100-999; anything above 599 counts as 5xx).
pub(crate) fn status_class(status: u16) -> usize {
    usize::from((status / 100).clamp(1, 5) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_its_own_index_and_statuses_fall_in_their_hundred() {
        for (i, class) in RouteClass::ALL.iter().enumerate() {
            assert_eq!(class.index(), i, "{}", class.label());
        }
        assert_eq!(status_class(101), 0);
        assert_eq!(status_class(200), 1);
        assert_eq!(status_class(304), 2);
        assert_eq!(status_class(429), 3);
        assert_eq!(status_class(599), 4);
        assert_eq!(status_class(999), 4);
    }
}
