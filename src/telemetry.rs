//! Logger set-up: env_logger with `RUST_LOG` (default `info`), in `text` or `json`, with
//! actix-http's WebSocket codec kept quiet (docs/reference.md §3, §8).

use std::io::Write;

use crate::{config::LogFormat, pipeline::access_log};

/// The filter when `RUST_LOG` is unset or blank (env_logger alone would read a blank one as
/// "errors only").
const DEFAULT_FILTER: &str = "info";

/// actix-http's WebSocket codec logs a fragmented control frame from the client at ERROR (through
/// `tracing`, whose `log` feature hands the event to env_logger under this target), so any client
/// could fill the log. tandem already answers the violation with close 1002. Silenced before
/// `RUST_LOG` is read, so an operator's `RUST_LOG=info` keeps it silent; a `RUST_LOG` that names
/// this target itself replaces the directive and wins.
const WEBSOCKET_CODEC_TARGET: &str = "actix_http::ws::codec";

/// Installs the global logger once; later calls are ignored (tests start many servers).
pub fn init(format: LogFormat) {
    let mut builder = env_logger::Builder::new();
    builder.filter_module(WEBSOCKET_CODEC_TARGET, log::LevelFilter::Off);
    let filters = std::env::var("RUST_LOG")
        .ok()
        .filter(|filters| !filters.trim().is_empty());
    builder.parse_filters(filters.as_deref().unwrap_or(DEFAULT_FILTER));
    if let Ok(style) = std::env::var("RUST_LOG_STYLE") {
        builder.parse_write_style(&style);
    }
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
