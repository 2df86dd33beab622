//! The routes (docs/reference.md §4) in one table, [`ROUTES`]. Registration, the 405 answers
//! with `Allow`, the access log's probe list, the rate limiter's scope and `tandem check`'s
//! shadowed-file warnings and the `/metrics` route classes are all read from it, so a route added
//! here is added everywhere.

pub(crate) mod api;
pub(crate) mod health;

use actix_web::{HttpResponse, guard, middleware::from_fn, web};

use crate::{compression, metrics::class::RouteClass, problem::Problem, websocket};

/// The methods a route answers; anything else gets 405 with this `Allow`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Methods {
    /// GET, and HEAD answered like it without a body.
    GetHead,
    /// GET only: a WebSocket handshake has no HEAD.
    Get,
    Post,
}

impl Methods {
    pub(crate) fn allow(self) -> &'static str {
        match self {
            Methods::GetHead => "GET, HEAD",
            Methods::Get => "GET",
            Methods::Post => "POST",
        }
    }

    fn route(self) -> actix_web::Route {
        match self {
            Methods::GetHead => web::route().guard(guard::Any(guard::Get()).or(guard::Head())),
            Methods::Get => web::get(),
            Methods::Post => web::post(),
        }
    }
}

/// One route: where, how, and what the other concerns make of it.
#[derive(Clone, Copy)]
pub(crate) struct Route {
    pub(crate) path: &'static str,
    pub(crate) methods: Methods,
    /// Registers the handler on the route `methods` built.
    handler: fn(actix_web::Route) -> actix_web::Route,
    /// A probe: never rate limited, logged at debug level only.
    pub(crate) probe: bool,
    /// Counts against the client's rate limit.
    pub(crate) limited: bool,
    /// Large dynamic answers are compressed on the fly.
    pub(crate) compressed: bool,
    /// What `/metrics` counts its requests as.
    pub(crate) class: RouteClass,
}

const fn route(
    path: &'static str,
    methods: Methods,
    handler: fn(actix_web::Route) -> actix_web::Route,
) -> Route {
    Route {
        path,
        methods,
        handler,
        probe: false,
        limited: true,
        compressed: true,
        class: RouteClass::Api,
    }
}

const fn probe(path: &'static str, handler: fn(actix_web::Route) -> actix_web::Route) -> Route {
    Route {
        path,
        methods: Methods::GetHead,
        handler,
        probe: true,
        limited: false,
        compressed: false,
        class: RouteClass::Probe,
    }
}

/// Every route. Paths not listed fall to the static files (or a 404 in nginx mode).
pub(crate) const ROUTES: &[Route] = &[
    probe("/health", |r| r.to(health::health)),
    probe("/healthz", |r| r.to(health::healthz)),
    probe("/readyz", |r| r.to(health::readyz)),
    probe("/startupz", |r| r.to(health::startupz)),
    route("/api/status", Methods::GetHead, |r| r.to(api::status)),
    route("/json", Methods::GetHead, |r| r.to(api::hello)),
    route("/api/echo", Methods::Post, |r| r.to(api::echo)),
    route("/api/metrics", Methods::GetHead, |r| r.to(api::metrics)),
    // An upgrade's answer is a 101 with no body: nothing to compress.
    Route {
        compressed: false,
        class: RouteClass::Socket,
        ..route("/socket", Methods::Get, |r| r.to(websocket::socket))
    },
];

/// Where the API lives: every path under it counts against the rate limit, routed or not, so
/// probing for API paths costs quota too.
pub(crate) const API_PREFIX: &str = "/api";

/// The route at exactly `path`, if any.
pub(crate) fn at(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|route| route.path == path)
}

/// What `/metrics` counts a request for `path` as, given its route (from [`at`]): the route's
/// class, else API under [`API_PREFIX`] (as the rate limit sees it), else `unrouted` (static
/// files in `app` mode).
pub(crate) fn class_of(route: Option<&Route>, path: &str, unrouted: RouteClass) -> RouteClass {
    match route {
        Some(route) => route.class,
        None if is_under_api(path) => RouteClass::Api,
        None => unrouted,
    }
}

/// Whether `path` is [`API_PREFIX`] or below it.
pub(crate) fn is_under_api(path: &str) -> bool {
    path.strip_prefix(API_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether requests for `path` are probes (the access log lowers them to debug).
pub(crate) fn is_probe(path: &str) -> bool {
    at(path).is_some_and(|route| route.probe)
}

/// Registers every route of [`ROUTES`].
pub(crate) fn register(cfg: &mut web::ServiceConfig) {
    for route in ROUTES {
        let allow = route.methods.allow();
        let resource = web::resource(route.path)
            .route((route.handler)(route.methods.route()))
            .default_service(web::to(move || async move {
                Err::<HttpResponse, _>(Problem::method_not_allowed(allow))
            }));
        if route.compressed {
            cfg.service(resource.wrap(from_fn(compression::compress_dynamic)));
        } else {
            cfg.service(resource);
        }
    }
}

/// Marks a non-2xx response whose body is part of the contract (probe answers), so the error
/// layer leaves it as it is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeepBody;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_routed_once_and_probes_are_never_limited() {
        for (i, route) in ROUTES.iter().enumerate() {
            assert!(
                ROUTES[i + 1..].iter().all(|other| other.path != route.path),
                "{} is declared twice",
                route.path
            );
            assert!(!(route.probe && route.limited), "{}", route.path);
        }
        assert!(is_probe("/healthz") && !is_probe("/json") && !is_probe("/nothing"));
    }

    #[test]
    fn route_classes_come_from_the_table() {
        let class = |path| class_of(at(path), path, RouteClass::Static);
        assert_eq!(class("/healthz"), RouteClass::Probe);
        assert_eq!(class("/json"), RouteClass::Api);
        assert_eq!(class("/socket"), RouteClass::Socket);
        assert_eq!(class("/api/nothing"), RouteClass::Api);
        assert_eq!(class("/apiary"), RouteClass::Static);
        assert_eq!(
            class_of(None, "/index.html", RouteClass::Other),
            RouteClass::Other
        );
    }
}
