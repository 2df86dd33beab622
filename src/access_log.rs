//! Access log (SPEC §8): one line per request, written when the response body has been sent (so
//! bytes and duration are true), as text or one JSON object; probes only at debug level.

use std::{
    net::IpAddr,
    pin::Pin,
    task::{Context, Poll},
    time::Instant,
};

use actix_web::{
    Error, HttpMessage,
    body::{BodySize, BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header,
    middleware::Next,
    web::Bytes,
};

use crate::{
    client_ip::client_ip_of,
    config::LogFormat,
    request_id::{RequestMeta, meta_of},
};

pub const TARGET: &str = "tandem::access";

/// Paths whose requests are logged at debug level only.
pub const PROBES: [&str; 4] = ["/health", "/healthz", "/readyz", "/startupz"];

/// What one access line says.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    pub client_ip: IpAddr,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub bytes: u64,
    pub duration_ms: f64,
    pub request_id: String,
    pub correlation_id: String,
    pub idempotency_key: Option<String>,
    pub user_agent: Option<String>,
}

impl AccessRecord {
    pub fn render(&self, format: LogFormat) -> String {
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
pub fn escape(value: &str) -> String {
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

/// Middleware: measures the request and logs it once its body is finished (or abandoned).
pub async fn log_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let probe = PROBES.contains(&req.path());
    let level = if probe {
        log::Level::Debug
    } else {
        log::Level::Info
    };
    if !log::log_enabled!(target: TARGET, level) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let format = req
        .app_data::<actix_web::web::Data<LogFormat>>()
        .map(|f| *f.get_ref())
        .unwrap_or(LogFormat::Text);
    let started = Instant::now();
    let method = req.method().to_string();
    let path = lossy(
        req.uri()
            .path_and_query()
            .map_or(b"/", |p| p.as_str().as_bytes()),
    );
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .map(|v| lossy(v.as_bytes()));
    let meta = req.extensions().get::<RequestMeta>().cloned();
    let client_ip = client_ip_of(req.request());
    let res = match next.call(req).await {
        Ok(res) => res,
        Err(err) => {
            // The response is built from the error after this point; its size is not known here.
            let meta = meta.unwrap_or_else(|| RequestMeta::from_headers(None, None, None));
            let record = AccessRecord {
                client_ip,
                method,
                path,
                status: err.as_response_error().status_code().as_u16(),
                bytes: 0,
                duration_ms: started.elapsed().as_secs_f64() * 1000.0,
                request_id: meta.request_id,
                correlation_id: meta.correlation_id,
                idempotency_key: meta.idempotency_key,
                user_agent,
            };
            log::log!(target: TARGET, level, "{}", record.render(format));
            return Err(err);
        }
    };
    let meta = meta_of(res.request());
    let record = AccessRecord {
        client_ip: client_ip_of(res.request()),
        method,
        path,
        status: res.status().as_u16(),
        bytes: 0,
        duration_ms: 0.0,
        request_id: meta.request_id,
        correlation_id: meta.correlation_id,
        idempotency_key: meta.idempotency_key,
        user_agent,
    };
    Ok(res.map_body(move |_, body| {
        BoxBody::new(LoggedBody {
            body: body.boxed(),
            pending: Some(Pending {
                record,
                started,
                level,
                format,
            }),
        })
    }))
}

struct Pending {
    record: AccessRecord,
    started: Instant,
    level: log::Level,
    format: LogFormat,
}

/// A body that counts what it sends and writes the access line when done or dropped.
struct LoggedBody {
    body: BoxBody,
    pending: Option<Pending>,
}

impl LoggedBody {
    fn finish(&mut self) {
        if let Some(mut p) = self.pending.take() {
            p.record.duration_ms = p.started.elapsed().as_secs_f64() * 1000.0;
            log::log!(target: TARGET, p.level, "{}", p.record.render(p.format));
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
