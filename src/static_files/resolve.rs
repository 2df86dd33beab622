//! From a raw request path to a place under one of the two roots (docs/reference.md §5 "Safety" and
//! "Directories"). Pure: decides on the bytes of the path alone, before any file is touched, so
//! nothing outside `static.htdocs` and `static.public` can even be named.

/// Which document root a path lives under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Root {
    /// `static.htdocs`, served at `/`.
    Htdocs,
    /// `static.public`, served at `/public/`.
    Public,
}

/// A validated request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub root: Root,
    /// Decoded segments below the root: none empty, none starting with `.`, none containing
    /// `/`, `\`, NUL or control characters.
    pub segments: Vec<String>,
    /// The path ended in `/`: only the directory's `index.html` may answer.
    pub directory: bool,
}

/// Why a path is refused before the file system is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed or hostile (traversal, encoded separators, NUL, invalid UTF-8): 400.
    BadRequest(&'static str),
    /// Well-formed but never served (dotfiles, dot-directories): 404.
    Hidden,
}

/// Validates `raw_path` (as received, still percent-encoded, without the query).
pub fn resolve(raw_path: &str) -> Result<Target, Refusal> {
    let rest = raw_path
        .strip_prefix('/')
        .ok_or(Refusal::BadRequest("the request path must start with /"))?;
    let directory = raw_path.ends_with('/');
    let mut segments = Vec::new();
    // Splitting before decoding keeps `%2f` inside its segment, where it is refused below.
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        let decoded = percent_decode(raw).ok_or(Refusal::BadRequest(
            "the request path has a malformed percent-escape",
        ))?;
        let segment = String::from_utf8(decoded)
            .map_err(|_| Refusal::BadRequest("the request path is not valid UTF-8"))?;
        if segment == "." || segment == ".." {
            return Err(Refusal::BadRequest(
                "the request path may not contain . or .. segments",
            ));
        }
        if segment.contains(['/', '\\']) {
            return Err(Refusal::BadRequest(
                "the request path may not contain encoded slashes or backslashes",
            ));
        }
        if segment.chars().any(char::is_control) {
            return Err(Refusal::BadRequest(
                "the request path may not contain NUL or control characters",
            ));
        }
        if segment.starts_with('.') {
            return Err(Refusal::Hidden);
        }
        segments.push(segment);
    }
    let root = if segments.first().is_some_and(|s| s == "public") {
        segments.remove(0);
        Root::Public
    } else {
        Root::Htdocs
    };
    Ok(Target {
        root,
        segments,
        directory: directory || (root == Root::Htdocs && rest.is_empty()),
    })
}

impl Target {
    /// The key the cache files this target under, whatever spelling the request used. It starts
    /// with NUL, which no raw request path (the cache's other keys) can contain.
    pub(crate) fn cache_key(&self) -> String {
        let root = match self.root {
            Root::Htdocs => "\0h",
            Root::Public => "\0p",
        };
        let mut key = String::from(root);
        for segment in &self.segments {
            key.push('/');
            key.push_str(segment);
        }
        if self.directory {
            key.push('/');
        }
        key
    }

    /// The canonical URL path of this target as a directory (`/dir/`), percent-encoded where
    /// needed: the `Location` of a redirect, built from validated segments so it can never
    /// point at another host (`//evil.example`).
    pub fn directory_url(&self) -> String {
        let mut url = String::from("/");
        if self.root == Root::Public {
            url.push_str("public/");
        }
        for segment in &self.segments {
            percent_encode_into(segment, &mut url);
            url.push('/');
        }
        url
    }
}

fn percent_decode(raw: &str) -> Option<Vec<u8>> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

fn percent_encode_into(segment: &str, out: &mut String) {
    for &b in segment.as_bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(root: Root, segments: &[&str], directory: bool) -> Result<Target, Refusal> {
        Ok(Target {
            root,
            segments: segments.iter().map(|s| s.to_string()).collect(),
            directory,
        })
    }

    #[test]
    fn request_paths_map_onto_roots_or_are_refused() {
        use Root::*;
        let bad = |_: &str| Err::<Target, _>(Refusal::BadRequest(""));
        let cases: Vec<(&str, Result<Target, Refusal>)> = vec![
            ("/", ok(Htdocs, &[], true)),
            ("/index.html", ok(Htdocs, &["index.html"], false)),
            ("/dir", ok(Htdocs, &["dir"], false)),
            ("/dir/", ok(Htdocs, &["dir"], true)),
            ("//dir//a.txt", ok(Htdocs, &["dir", "a.txt"], false)),
            ("/public", ok(Public, &[], false)),
            ("/public/", ok(Public, &[], true)),
            ("/public/app.js", ok(Public, &["app.js"], false)),
            ("/publicity.html", ok(Htdocs, &["publicity.html"], false)),
            ("/a%20b.txt", ok(Htdocs, &["a b.txt"], false)),
            ("/caf%C3%A9.txt", ok(Htdocs, &["café.txt"], false)),
            ("/%70ublic/app.js", ok(Public, &["app.js"], false)),
            ("/..", bad("")),
            ("/../etc/passwd", bad("")),
            ("/public/../../etc/passwd", bad("")),
            ("/%2e%2e/etc/passwd", bad("")),
            ("/%2E%2E/etc/passwd", bad("")),
            ("/.%2e/x", bad("")),
            ("/./index.html", bad("")),
            ("/a%2fb", bad("")),
            ("/a%2F..%2Fb", bad("")),
            ("/..%5c..%5cwindows", bad("")),
            ("/a\\b", bad("")),
            ("/a%00.html", bad("")),
            ("/a%0a.html", bad("")),
            ("/%ff%fe", bad("")),
            ("/%zz", bad("")),
            ("/%4", bad("")),
            ("relative", bad("")),
            ("/.env", Err(Refusal::Hidden)),
            ("/.git/config", Err(Refusal::Hidden)),
            ("/public/.secret/x.js", Err(Refusal::Hidden)),
            ("/%2egit/config", Err(Refusal::Hidden)),
        ];
        for (path, expected) in cases {
            let got = resolve(path);
            match (&got, &expected) {
                (Err(Refusal::BadRequest(_)), Err(Refusal::BadRequest(_))) => {}
                _ => assert_eq!(got, expected, "{path}"),
            }
        }
    }

    #[test]
    fn directory_urls_are_local_and_encoded() {
        let t = resolve("//evil.example").unwrap();
        assert_eq!(t.directory_url(), "/evil.example/");
        let t = resolve("/public/a%20b").unwrap();
        assert_eq!(t.directory_url(), "/public/a%20b/");
        let t = resolve("/docs").unwrap();
        assert_eq!(t.directory_url(), "/docs/");
    }
}
