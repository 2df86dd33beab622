//! Logger set-up: env_logger with `RUST_LOG` (default `info`), in `text` or `json` (SPEC §3, §8).

use std::io::Write;

use crate::{config::LogFormat, pipeline::access_log};

/// `info`, except actix-http's WebSocket codec, which logs every malformed client frame at ERROR:
/// any client could fill the log. tandem reports those violations itself, as close codes.
pub const DEFAULT_FILTER: &str = "info,actix_http::ws::codec=off";

/// Installs the global logger once; later calls are ignored (tests start many servers).
pub fn init(format: LogFormat) {
    let mut builder =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(DEFAULT_FILTER));
    match format {
        LogFormat::Text => builder.format(|buf, record| {
            writeln!(
                buf,
                "{} {:<5} {}: {}",
                buf.timestamp_millis(),
                record.level(),
                record.target(),
                record.args()
            )
        }),
        LogFormat::Json => builder.format(|buf, record| {
            if record.target() == access_log::TARGET {
                // Access records render themselves as a complete JSON object.
                writeln!(buf, "{}", record.args())
            } else {
                let line = serde_json::json!({
                    "ts": jiff::Timestamp::now().to_string(),
                    "level": record.level().as_str().to_ascii_lowercase(),
                    "target": record.target(),
                    "message": record.args().to_string(),
                });
                writeln!(buf, "{line}")
            }
        }),
    };
    let _ = builder.try_init();
}
