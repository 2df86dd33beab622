//! Access log (docs/reference.md §8): one line per request, written when the response body has
//! been sent (so bytes and duration are true), as text or one JSON object; probes (from the route
//! table) only at debug level.

use std::{
    net::IpAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use actix_web::{
    body::{BodySize, BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header,
    web::Bytes,
};

use super::context::RequestContext;
use crate::{config::LogFormat, routes};

pub const TARGET: &str = "tandem::access";

/// What one access line says.
#[derive(Debug, Clone)]
pub(crate) struct AccessRecord {
    pub(crate) client_ip: IpAddr,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    pub(crate) duration_ms: f64,
    pub(crate) request_id: String,
    pub(crate) correlation_id: String,
    pub(crate) idempotency_key: Option<String>,
    pub(crate) user_agent: Option<String>,
}

impl AccessRecord {
    pub(crate) fn render(&self, format: LogFormat) -> String {
        match format {
            LogFormat::Json => serde_json::json!({
                "ts": jiff::Timestamp::now().to_string(),
                "level": "info",
                "type": "access",
                "client_ip": self.client_ip.to_string(),
                "method": self.method,
                "path": self.path,
                "status": self.status,
                "bytes": self.bytes,
                "duration_ms": (self.duration_ms * 1000.0).round() / 1000.0,
                "request_id": self.request_id,
                "correlation_id": self.correlation_id,
                "idempotency_key": self.idempotency_key,
                "user_agent": self.user_agent,
            })
            .to_string(),
            LogFormat::Text => format!(
                "{} \"{} {}\" {} {} {:.3}ms request_id={} correlation_id={}{} \"{}\"",
                self.client_ip,
                escape(&self.method),
                escape(&self.path),
                self.status,
                self.bytes,
                self.duration_ms,
                self.request_id,
                self.correlation_id,
                self.idempotency_key
                    .as_deref()
                    .map(|k| format!(" idempotency_key={k}"))
                    .unwrap_or_default(),
                escape(self.user_agent.as_deref().unwrap_or("-")),
            ),
        }
    }
}

/// Makes a value safe inside a quoted, single-line text field: quotes, backslashes and every
/// control or non-ASCII byte are escaped, so no header can break or forge a line.
pub(crate) fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            }
        }
    }
    out
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The access log's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AccessLog {
    pub(crate) format: LogFormat,
}

impl AccessLog {
    /// Starts the record of a request, or `None` when its line would not be printed anyway.
    pub(crate) fn begin(
        &self,
        req: &ServiceRequest,
        context: &RequestContext<'_>,
    ) -> Option<Box<Pending>> {
        let level = if routes::is_probe(req.path()) {
            log::Level::Debug
        } else {
            log::Level::Info
        };
        if !log::log_enabled!(target: TARGET, level) {
            return None;
        }
        let meta = context.ids.meta(req.headers());
        let path = req
            .uri()
            .path_and_query()
            .map_or(b"/".as_slice(), |p| p.as_str().as_bytes());
        let record = AccessRecord {
            client_ip: context.client_ip(req),
            method: req.method().to_string(),
            path: lossy(path),
            status: 0,
            bytes: 0,
            duration_ms: 0.0,
            request_id: meta.request_id,
            correlation_id: meta.correlation_id,
            idempotency_key: meta.idempotency_key,
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .map(|v| lossy(v.as_bytes())),
        };
        // Boxed: it waits in every request's future while the route runs, and 216 bytes there
        // would push that future past the allocator's fast path for small blocks.
        Some(Box::new(Pending {
            record,
            started: Instant::now(),
            level,
            format: self.format,
        }))
    }
}

impl Pending {
    /// Logs the request once the response's body has been sent (or abandoned).
    pub(crate) fn attach(
        mut self: Box<Self>,
        res: ServiceResponse<BoxBody>,
    ) -> ServiceResponse<BoxBody> {
        self.record.status = res.status().as_u16();
        res.map_body(move |_, body| {
            BoxBody::new(LoggedBody {
                body,
                pending: Some(self),
            })
        })
    }

    /// Logs a request answered by an error after it was gone; its body's size is not known here.
    pub(crate) fn finish_without_body(mut self: Box<Self>, status: u16) {
        self.record.status = status;
        self.finish();
    }

    fn finish(mut self: Box<Self>) {
        self.record.duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        log::log!(target: TARGET, self.level, "{}", self.record.render(self.format));
    }
}

pub(crate) struct Pending {
    record: AccessRecord,
    started: Instant,
    level: log::Level,
    format: LogFormat,
}

/// A body that counts what it sends and writes the access line when done or dropped.
struct LoggedBody {
    body: BoxBody,
    pending: Option<Box<Pending>>,
}

impl LoggedBody {
    fn finish(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.finish();
        }
    }
}

impl MessageBody for LoggedBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.as_mut().get_mut();
        let polled = Pin::new(&mut this.body).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(p) = this.pending.as_mut() {
                    p.record.bytes += chunk.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user_agent: &str) -> AccessRecord {
        AccessRecord {
            client_ip: "203.0.113.7".parse().unwrap(),
            method: "GET".into(),
            path: "/api/status?x=1".into(),
            status: 200,
            bytes: 42,
            duration_ms: 1.5,
            request_id: "req-1".into(),
            correlation_id: "corr-1".into(),
            idempotency_key: None,
            user_agent: Some(user_agent.into()),
        }
    }

    #[test]
    fn text_lines_cannot_be_broken_by_header_values() {
        let line = record("evil\r\n203.0.113.9 \"GET /forged\" 200").render(LogFormat::Text);
        assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
        assert!(line.contains("\\x0d\\x0a"), "{line}");
        assert!(line.contains("\\\"GET /forged\\\""), "{line}");
        assert!(line.starts_with("203.0.113.7 \"GET /api/status?x=1\" 200 42 "));
    }

    #[test]
    fn json_lines_are_one_object() {
        let line = record("ua \"quoted\"\nnext").render(LogFormat::Json);
        assert!(!line.contains('\n'));
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["client_ip"], "203.0.113.7");
        assert_eq!(value["status"], 200);
        assert_eq!(value["bytes"], 42);
        assert_eq!(value["request_id"], "req-1");
        assert_eq!(value["user_agent"], "ua \"quoted\"\nnext");
    }
}
