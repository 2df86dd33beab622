//! `Cache-Control` and `Content-Type` of a static file (docs/reference.md §5 "Cache-Control", "Headers").

use actix_web::http::header::HeaderValue;

use super::resolve::Root;
use crate::config::StaticSettings;

/// A year, the longest lifetime caches honour: fingerprinted names change when content does.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// True when a file name carries a content hash between two dots: 8 or more hex digits, as in
/// `app.3f9a2c1b.js` or `app.3f9a2c1b.min.js`.
pub fn has_content_hash(file_name: &str) -> bool {
    let parts: Vec<&str> = file_name.split('.').collect();
    parts.len() >= 3
        && parts[1..parts.len() - 1]
            .iter()
            .any(|p| p.len() >= 8 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The three `Cache-Control` values, built once from the settings.
#[derive(Debug, Clone)]
pub struct CachePolicy {
    immutable: HeaderValue,
    asset: HeaderValue,
    html: HeaderValue,
}

impl CachePolicy {
    pub fn from_settings(settings: &StaticSettings) -> Self {
        Self {
            immutable: HeaderValue::from_static(IMMUTABLE),
            asset: HeaderValue::from_str(&format!(
                "public, max-age={}",
                settings.public_max_age_secs
            ))
            .unwrap_or_else(|_| HeaderValue::from_static("public, max-age=3600")),
            html: HeaderValue::from_str(&settings.html_cache_control)
                .unwrap_or_else(|_| HeaderValue::from_static("no-cache")),
        }
    }

    /// Fingerprinted files under `/public/` are immutable; HTML documents follow
    /// `static.html_cache_control`; everything else is an asset.
    pub fn for_file(&self, root: Root, file_name: &str, is_html: bool) -> HeaderValue {
        if root == Root::Public && has_content_hash(file_name) {
            self.immutable.clone()
        } else if is_html {
            self.html.clone()
        } else {
            self.asset.clone()
        }
    }
}

/// The `Content-Type` of a file name: text and JavaScript declare UTF-8. Returns the value and
/// whether it is an HTML document.
pub fn content_type(file_name: &str) -> (String, bool) {
    let mime = mime_guess::from_path(file_name).first_or_octet_stream();
    let essence = mime.essence_str().to_string();
    let is_html = essence == "text/html" || essence == "application/xhtml+xml";
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            essence.as_str(),
            "application/javascript" | "application/ecmascript" | "application/x-javascript"
        );
    if textual && mime.get_param("charset").is_none() {
        (format!("{essence}; charset=utf-8"), is_html)
    } else {
        (mime.to_string(), is_html)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hash_segments_table() {
        let cases = [
            ("app.3f9a2c1b.js", true),
            ("app.3F9A2C1B.css", true),
            ("app.3f9a2c1b.min.js", true),
            ("vendor.0123456789abcdef.js", true),
            ("app.3f9a2c1.js", false),
            ("3f9a2c1b.js", false),
            ("app.js.3f9a2c1b", false),
            ("app.3f9a2c1g.js", false),
            ("app.js", false),
            ("deadbeefcafe", false),
        ];
        for (name, expected) in cases {
            assert_eq!(has_content_hash(name), expected, "{name}");
        }
    }

    #[test]
    fn cache_control_by_root_name_and_kind() {
        let settings = StaticSettings {
            public_max_age_secs: 120,
            html_cache_control: "no-cache, must-revalidate".into(),
            ..StaticSettings::default()
        };
        let policy = CachePolicy::from_settings(&settings);
        let cases = [
            (Root::Public, "app.3f9a2c1b.js", false, IMMUTABLE),
            (Root::Public, "app.js", false, "public, max-age=120"),
            (Root::Public, "page.html", true, "no-cache, must-revalidate"),
            (
                Root::Htdocs,
                "app.3f9a2c1b.js",
                false,
                "public, max-age=120",
            ),
            (
                Root::Htdocs,
                "index.html",
                true,
                "no-cache, must-revalidate",
            ),
            (Root::Htdocs, "robots.txt", false, "public, max-age=120"),
        ];
        for (root, name, html, expected) in cases {
            assert_eq!(policy.for_file(root, name, html), expected, "{name}");
        }
    }

    #[test]
    fn text_and_javascript_declare_utf8() {
        let cases = [
            ("index.html", "text/html; charset=utf-8", true),
            ("app.js", "text/javascript; charset=utf-8", false),
            ("mod.mjs", "application/javascript; charset=utf-8", false),
            ("site.css", "text/css; charset=utf-8", false),
            ("robots.txt", "text/plain; charset=utf-8", false),
            ("logo.png", "image/png", false),
            ("data.json", "application/json", false),
            ("blob", "application/octet-stream", false),
        ];
        for (name, expected, html) in cases {
            assert_eq!(content_type(name), (expected.to_string(), html), "{name}");
        }
    }
}
