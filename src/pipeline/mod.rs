//! The request's way in (docs/reference.md §4, §6, §8, §9): one layer around every route that
//! applies each concern in a fixed order, each concern built with its own settings in
//! `startup.rs`. One layer rather than one per concern, because each actix layer costs a boxed
//! future and an indirect call per request whether its concern applies or not; the concerns
//! themselves live one per file.
//!
//! The order, as a request meets it:
//! 1. context: IDs and client address, decided once ([`context`]);
//! 2. access log: the record starts ([`access_log`]);
//! 3. rate limit: counted, or answered 429 ([`rate_limit`]);
//! 4. head and body limits: an oversized request target or header section is answered 414 or
//!    431 ([`head_limit`]), a declared body over the limit 413 ([`body_limit`]);
//! 5. the route, with panics caught: a panicking handler answers 500 and the worker lives on;
//! 6. error shape: any status of 400 or more becomes problem+json or the 404 page, once
//!    ([`errors`]);
//! 7. IDs and quota echoed, `Strict-Transport-Security` when HTTPS has HSTS configured,
//!    `Connection: close` while draining ([`drain`]), after an oversized head, or after an error
//!    answer that left a chunked body unread ([`body_limit`]); and the access line written when
//!    the body is sent, which is also when the request stops counting as in flight for its
//!    connection's watchdog ([`crate::lifecycle::connection_watch`]);
//! 8. the request counted for `/metrics` by route class and status class ([`figures`]).
//!
//! A static cache hit takes the short way through: its IDs stay header values (no strings, no
//! request extensions: those are filled only for a route's extractors), its client address is
//! resolved only when the rate limit or the access log asks for it, steps 3 and 4 are a few
//! comparisons when they do not apply, step 6 is skipped below 400, and nothing is allocated
//! for the access log when its line would not be printed. When the route table is the only
//! source of routes (no extra routes were registered), a path the table does not know goes to
//! the static files directly in step 5, without actix's router trying every route first.

pub(crate) mod access_log;
mod body_limit;
mod context;
mod drain;
mod errors;
mod figures;
mod head_limit;
mod rate_limit;

use std::{
    future::{Ready, ready},
    panic::AssertUnwindSafe,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use actix_web::{
    Error, HttpRequest,
    body::{BoxBody, MessageBody},
    dev::{Service, ServiceRequest, ServiceResponse, Transform},
    http::{
        StatusCode,
        header::{HeaderValue, STRICT_TRANSPORT_SECURITY},
    },
    web,
};
use futures_util::{FutureExt, future::LocalBoxFuture};

use self::body_limit::UnreadBody;
pub(crate) use self::{
    access_log::AccessLog, body_limit::BodyLimit, errors::ErrorPages, figures::Figures,
};
use self::{context::RequestContext, errors::Rendered};
use crate::{
    client_ip::TrustedProxies,
    lifecycle::{
        Lifecycle,
        connection_watch::{InFlight, WatchedBody},
    },
    problem::Problem,
    rate_limit::RateLimit,
    request_id::Ids,
    routes,
    static_files::{self, StaticFiles},
};

/// Every concern's settings, fixed when the server is built.
pub(crate) struct Pipeline {
    pub(crate) proxies: TrustedProxies,
    pub(crate) access_log: AccessLog,
    pub(crate) rate_limit: Option<Arc<RateLimit>>,
    pub(crate) body_limit: BodyLimit,
    pub(crate) error_pages: ErrorPages,
    pub(crate) lifecycle: Arc<Lifecycle>,
    /// The static files, to answer a path no route has without asking the router; `None` when
    /// other routes than the table's exist (tests), or in nginx mode.
    pub(crate) direct_static: Option<web::Data<StaticFiles>>,
    pub(crate) figures: Figures,
    /// `Strict-Transport-Security` for every response, when HTTPS with HSTS is configured.
    pub(crate) hsts: Option<HeaderValue>,
}

/// The pipeline as an actix layer; cloned into every worker.
#[derive(Clone)]
pub(crate) struct PipelineLayer(Arc<Pipeline>);

impl PipelineLayer {
    pub(crate) fn new(pipeline: Pipeline) -> Self {
        Self(Arc::new(pipeline))
    }
}

impl<S, B> Transform<S, ServiceRequest> for PipelineLayer
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<WatchedBody>;
    type Error = Error;
    type Transform = PipelineService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(PipelineService(Rc::new(Worker {
            service,
            pipeline: self.0.clone(),
        }))))
    }
}

/// The pipeline on one worker: a request's future holds this by an `Rc`, one count that is not
/// atomic, rather than the service's `Rc` and the pipeline's `Arc` apart.
pub(crate) struct PipelineService<S>(Rc<Worker<S>>);

struct Worker<S> {
    service: S,
    pipeline: Arc<Pipeline>,
}

impl<S, B> Service<ServiceRequest> for PipelineService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<WatchedBody>;
    type Error = Error;
    type Future = LocalBoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.service.poll_ready(cx)
    }

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let worker = self.0.clone();
        // In flight from its complete head until its body is sent, for the connection's
        // watchdog; an error answer rendered by actix ends it when the future is done.
        let in_flight = InFlight::begin(&req);
        // A request's one allocation of its own. Keep it under 1 KiB: glibc's per-thread cache
        // serves blocks up to 1,032 bytes, and a larger future (it was 1,736 bytes) sent every
        // request through malloc's slow path (BENCHMARKS.md, "Second pass on the static hit").
        Box::pin(async move {
            let res = worker.pipeline.handle(req, &worker.service).await?;
            Ok(res.map_body(|_, body| in_flight.until_sent(body)))
        })
    }
}

impl Pipeline {
    async fn handle<S, B>(
        &self,
        mut req: ServiceRequest,
        service: &S,
    ) -> Result<ServiceResponse<BoxBody>, Error>
    where
        S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
        B: MessageBody + 'static,
    {
        let started = Instant::now();
        let context = context::enter(&req, &self.proxies);
        let log = self.access_log.begin(&req, &context);
        // The router's view of the path, looked up once for the static shortcut and the figures.
        let route = routes::at(req.match_info().as_str());
        let class = self.figures.class_of(route, req.match_info().as_str());
        // Only the quota waits for the route (in the request's future); a refusal is answered
        // before it.
        let (quota, refusal) =
            match rate_limit::count(self.rate_limit.as_deref(), &req, &context).await {
                Err(problem) => {
                    self.figures.rate_limited();
                    (None, Some(problem))
                }
                Ok(quota) => (
                    quota,
                    head_limit::refusal(&req).or_else(|| self.body_limit.refusal(req.headers())),
                ),
            };
        let unread = UnreadBody::share(&mut req);
        let answered = match (refusal, self.static_files_for(route)) {
            (Some(problem), _) => Ok(Answer::Refused(req.into_parts().0, problem)),
            (None, Some(files)) => caught(serve_static(req, files, started), &context).await,
            (None, None) => {
                context.store(&req);
                caught(call_routes(service, req), &context)
                    .await
                    .map(Answer::Response)
            }
        };
        let res = match answered {
            Ok(Answer::Response(res)) if errors::needs_rendering(&res) => {
                self.error_pages.render(res, &context.ids)
            }
            Ok(Answer::Response(res)) => res,
            Ok(Answer::Refused(req, problem)) => {
                self.error_pages.render_problem(req, &problem, &context.ids)
            }
            Err(problem) => {
                self.figures.gone(class, problem.status().as_u16(), started);
                return Err(self.gone(problem, context.ids, log));
            }
        };
        let res = self.decorate(res, context.ids, quota, unread);
        self.figures.answered(class, &res, started);
        Ok(match log {
            Some(log) => log.attach(res),
            None => res,
        })
    }

    /// Step 7: the headers every answer carries, and whether its connection ends after it.
    fn decorate(
        &self,
        mut res: ServiceResponse<BoxBody>,
        ids: Ids,
        quota: Option<rate_limit::Quota>,
        unread: Option<UnreadBody>,
    ) -> ServiceResponse<BoxBody> {
        ids.echo(res.headers_mut());
        if let Some(hsts) = &self.hsts {
            res.headers_mut()
                .insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
        if let Some(quota) = quota {
            quota.write(res.headers_mut());
        }
        if let Some(unread) = unread.filter(|_| res.status().as_u16() >= 400) {
            res = res.map_body(|_, body| unread.hold_until_sent(body));
        }
        if drain::must_close(&self.lifecycle, res.status())
            || head_limit::closes_connection(res.status())
        {
            res.response_mut()
                .head_mut()
                .set_connection_type(drain::CLOSE);
        }
        res
    }

    /// The answer for a request that is gone: actix renders it from the returned error.
    fn gone(&self, problem: Problem, ids: Ids, log: Option<Box<access_log::Pending>>) -> Error {
        let status = problem.status();
        if let Some(log) = log {
            log.finish_without_body(status.as_u16());
        }
        let close = drain::must_close(&self.lifecycle, status);
        let problem = match &self.hsts {
            Some(hsts) => problem.with_header(STRICT_TRANSPORT_SECURITY, hsts.clone()),
            None => problem,
        };
        Rendered::new(problem, ids, close).into()
    }
}

impl Pipeline {
    /// The static files, when they are certainly the request's route: the router's view of the
    /// path (`/%6Ason` is `/json`) names no route of the table (`route`), and no other routes
    /// exist.
    fn static_files_for(&self, route: Option<&routes::Route>) -> Option<&StaticFiles> {
        let files = self.direct_static.as_ref()?;
        route.is_none().then_some(&**files)
    }
}

/// The routes, through actix's router.
async fn call_routes<S, B>(
    service: &S,
    req: ServiceRequest,
) -> Result<ServiceResponse<BoxBody>, Error>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody + 'static,
{
    Ok(service.call(req).await?.map_into_boxed_body())
}

/// What step 5 hands to the error step: a response, or a problem no response was made for yet
/// (a refusal of steps 3 and 4, or the static files' own), which the error step renders
/// without building an intermediate response first.
enum Answer {
    Response(ServiceResponse<BoxBody>),
    Refused(HttpRequest, Problem),
}

/// The static files' answer, as the router's default service would give it.
async fn serve_static(
    req: ServiceRequest,
    files: &StaticFiles,
    started: Instant,
) -> Result<Answer, Error> {
    let (req, _payload) = req.into_parts();
    Ok(match static_files::answer(&req, files, started).await {
        Ok(res) => Answer::Response(ServiceResponse::new(req, res)),
        Err(problem) => Answer::Refused(req, problem),
    })
}

/// Runs the route with panics caught. `Err` means the request is gone: a handler panicked (the
/// worker lives on) or a route's own layer failed.
async fn caught<T>(
    answer: impl Future<Output = Result<T, Error>>,
    context: &RequestContext<'_>,
) -> Result<T, Problem> {
    match AssertUnwindSafe(answer).catch_unwind().await {
        Ok(Ok(res)) => Ok(res),
        Ok(Err(err)) => Err(match err.as_error::<Problem>() {
            Some(problem) => problem.clone(),
            None => {
                let status = err.as_response_error().status_code();
                // The access line says which request this was; the ID ties the two together.
                let request_id = context.ids.request_id();
                log::error!("{status} for request {request_id}: {err}");
                Problem::from_status(status, Some(err.to_string()))
            }
        }),
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let request_id = context.ids.request_id();
            log::error!("a handler panicked on request {request_id}: {why}");
            Err(Problem::from_status(
                StatusCode::INTERNAL_SERVER_ERROR,
                None,
            ))
        }
    }
}
