//! The `rate_limit.redis_url` setting: a Redis URL whose password never leaves the process
//! (docs/reference.md §3, §6). Logs, `tandem check` and every error see [`RedisUrl::masked`];
//! only the connection itself reads [`RedisUrl::expose`].

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// What replaces a password wherever the URL is shown.
const MASK: &str = "***";

/// A `redis://` or `rediss://` URL, possibly with credentials (`rediss://:PASSWORD@host:6379`).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct RedisUrl(String);

impl RedisUrl {
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }

    /// The URL with its password replaced by `***`, for anything a person or a log may read.
    pub fn masked(&self) -> String {
        masked(&self.0)
    }

    /// The real URL, for opening the connection and nothing else.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Why this URL cannot be used, in words that never contain its password.
    pub(crate) fn problem(&self) -> Option<String> {
        let url = self.0.trim();
        if url.is_empty() {
            return Some(
                "is empty; set it to redis://HOST:6379 or rediss://:PASSWORD@HOST:6380".into(),
            );
        }
        let scheme = url.split_once("://").map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("redis" | "rediss")) {
            return Some(format!(
                "is {}, which is neither a redis:// nor a rediss:// URL",
                self.masked()
            ));
        }
        // The redis crate's own parser decides what it can connect to; its error is not shown
        // because it may quote the URL.
        redis::Client::open(url).err().map(|_| {
            format!(
                "is {}, which is not a usable Redis URL (expected redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB])",
                self.masked()
            )
        })
    }

    /// `text` with every occurrence of the password replaced, for error messages that come from
    /// the Redis client and might echo what they were given.
    pub(crate) fn scrub(&self, text: &str) -> String {
        match password_of(&self.0) {
            Some(password) if !password.is_empty() => text.replace(password, MASK),
            _ => text.to_string(),
        }
    }
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("RedisUrl").field(&self.masked()).finish()
    }
}

impl fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Serialised masked: this is what `tandem check` prints.
impl Serialize for RedisUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.masked())
    }
}

/// The user-info part of a URL (between `//` and the last `@` of the authority), if any.
fn user_info(url: &str) -> Option<(usize, &str)> {
    let start = url.find("://")? + 3;
    let rest = &url[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@')?;
    Some((start, &rest[..at]))
}

fn password_of(url: &str) -> Option<&str> {
    user_info(url).map(|(_, info)| info.split_once(':').map_or(info, |(_, password)| password))
}

/// `redis://user:secret@host` → `redis://user:***@host`. A user-info without `:` is masked
/// whole: Redis reads it as a user name, but people put passwords there, and a name is not
/// worth leaking a password for.
fn masked(url: &str) -> String {
    match user_info(url) {
        None => url.to_string(),
        Some((start, info)) => {
            let shown = match info.split_once(':') {
                Some((user, _)) => format!("{user}:{MASK}"),
                None => MASK.to_string(),
            };
            format!("{}{shown}{}", &url[..start], &url[start + info.len()..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked_and_nothing_else_changes() {
        let cases = [
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            (
                "redis://:s3cret@127.0.0.1:6379/0",
                "redis://:***@127.0.0.1:6379/0",
            ),
            (
                "rediss://app:s3cret@cache:6380",
                "rediss://app:***@cache:6380",
            ),
            ("rediss://s3cret@cache", "rediss://***@cache"),
            ("redis://:p@ss:w0rd@host", "redis://:***@host"),
            ("redis://host/0?x=a@b", "redis://host/0?x=a@b"),
            ("not a url :secret@", "not a url :secret@"),
            ("", ""),
        ];
        for (url, expected) in cases {
            assert_eq!(masked(url), expected, "{url}");
        }
    }

    #[test]
    fn debug_display_and_serialisation_never_show_the_password() {
        let url = RedisUrl::new("rediss://:hunter2@cache:6380");
        for shown in [
            format!("{url:?}"),
            url.to_string(),
            serde_json::to_string(&url).unwrap(),
            url.problem().unwrap_or_default(),
            url.scrub("AUTH hunter2 failed"),
        ] {
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        assert_eq!(url.expose(), "rediss://:hunter2@cache:6380");
    }

    #[test]
    fn only_usable_redis_urls_pass() {
        assert_eq!(RedisUrl::new("redis://127.0.0.1:6379").problem(), None);
        assert_eq!(RedisUrl::new("rediss://:pw@cache:6380/2").problem(), None);
        for bad in ["", "  ", "http://:pw@cache", "cache:6379", "redis://:pw@"] {
            let problem = RedisUrl::new(bad).problem();
            assert!(problem.is_some(), "{bad:?} accepted");
            assert!(!problem.unwrap_or_default().contains("pw@"), "{bad:?}");
        }
    }
}
