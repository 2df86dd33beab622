//! The content codings tandem serves (`docs/reference.md §5`, `§4`): what a coding is called, where a
//! precompressed sibling lives, which files are worth compressing, and the one encoder and decoder
//! of each coding. The server, `tandem check` and `tandem precompress` all answer these questions
//! here, so they cannot disagree.

use std::{
    io::{self, Read},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// A content coding tandem can serve precompressed or produce on the fly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Br,
    Zstd,
    Gzip,
}

impl Encoding {
    pub const ALL: [Encoding; 3] = [Encoding::Br, Encoding::Zstd, Encoding::Gzip];

    /// The token used in `Accept-Encoding` and `Content-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    /// The file-name suffix of a precompressed sibling (`F.br`, `F.zst`, `F.gz`).
    pub fn extension(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Zstd => "zst",
            Encoding::Gzip => "gz",
        }
    }

    /// The same coding as actix-http names it, for the dynamic-response encoder.
    pub fn content_encoding(self) -> actix_web::http::header::ContentEncoding {
        use actix_web::http::header::ContentEncoding;
        match self {
            Encoding::Br => ContentEncoding::Brotli,
            Encoding::Zstd => ContentEncoding::Zstd,
            Encoding::Gzip => ContentEncoding::Gzip,
        }
    }

    /// Position in [`Encoding::ALL`], for per-encoding arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Encoding::Br => 0,
            Encoding::Zstd => 1,
            Encoding::Gzip => 2,
        }
    }
}

/// How hard to compress: once, ahead of time, or while a client waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effort {
    /// `tandem precompress`: the smallest output the format offers (brotli 11, zstd 19, gzip 9).
    Precompress,
    /// A copy made on a worker thread for a cached file, once per file version.
    OnTheFly,
}

impl Effort {
    fn level(self, encoding: Encoding) -> u32 {
        match (self, encoding) {
            (Effort::Precompress, Encoding::Br) => 11,
            (Effort::Precompress, Encoding::Zstd) => 19,
            (Effort::Precompress, Encoding::Gzip) => 9,
            (Effort::OnTheFly, Encoding::Br) => 5,
            (Effort::OnTheFly, Encoding::Zstd | Encoding::Gzip) => 6,
        }
    }
}

/// Extensions of formats that are already compressed: compressing them again wastes time for
/// nothing, whatever their media type says.
const ALREADY_COMPRESSED: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "webp", "avif", "heic", "heif", "jxl", "woff", "woff2", "zip",
    "gz", "tgz", "br", "zst", "zstd", "xz", "bz2", "lz", "lz4", "lzma", "7z", "rar", "jar", "apk",
    "mp4", "m4v", "m4a", "mov", "webm", "mkv", "avi", "mp3", "ogg", "oga", "ogv", "opus", "flac",
    "aac", "pdf", "docx", "xlsx", "pptx", "odt", "epub",
];

/// True for media types worth compressing (text, JSON, JavaScript, XML, SVG, wasm, ...).
pub(crate) fn is_compressible(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence.starts_with("text/")
        || essence.ends_with("+json")
        || essence.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/javascript"
                | "application/xml"
                | "application/wasm"
                | "image/svg+xml"
                | "image/x-icon"
                | "image/vnd.microsoft.icon"
                | "font/ttf"
                | "font/otf"
                | "application/vnd.ms-fontobject"
        )
}

/// True when a file called `name` is worth compressing: not a dotfile, not an already-compressed
/// format, and of a compressible media type. Decides which files get siblings and which are
/// compressed on the fly.
pub(crate) fn is_compressible_file(name: &str) -> bool {
    if name.starts_with('.') {
        return false;
    }
    let Some((_, extension)) = name.rsplit_once('.') else {
        return false;
    };
    if ALREADY_COMPRESSED.contains(&extension.to_ascii_lowercase().as_str()) {
        return false;
    }
    mime_guess::from_path(name)
        .first()
        .is_some_and(|mime| is_compressible(mime.essence_str()))
}

/// The sibling of `source` in `encoding`: `F` becomes `F.br`, `F.zst` or `F.gz`.
pub(crate) fn sibling_path(source: &Path, encoding: Encoding) -> PathBuf {
    let mut name = source.as_os_str().to_os_string();
    name.push(".");
    name.push(encoding.extension());
    PathBuf::from(name)
}

/// When `name` is a precompressed sibling (`app.js.br`), its source's name and the encoding.
/// Only a compressible file has siblings, so `backup.tar.gz` and `photo.png.br` are files of their
/// own.
pub(crate) fn sibling_source(name: &str) -> Option<(&str, Encoding)> {
    Encoding::ALL.into_iter().find_map(|encoding| {
        let source = name.strip_suffix(encoding.extension())?.strip_suffix('.')?;
        is_compressible_file(source).then_some((source, encoding))
    })
}

/// Compresses `data` completely.
pub(crate) fn compress(encoding: Encoding, effort: Effort, data: &[u8]) -> io::Result<Vec<u8>> {
    let level = effort.level(encoding);
    let mut out = Vec::with_capacity(data.len() / 3);
    match encoding {
        // 22 is brotli's default window (4 MiB), as every browser accepts.
        Encoding::Br => {
            brotli::CompressorReader::new(data, 64 * 1024, level, 22).read_to_end(&mut out)?
        }
        Encoding::Zstd => {
            zstd::stream::read::Encoder::new(data, level as i32)?.read_to_end(&mut out)?
        }
        Encoding::Gzip => {
            // The builder's header has no timestamp, so output is the same on every machine.
            flate2::read::GzEncoder::new(data, flate2::Compression::new(level))
                .read_to_end(&mut out)?
        }
    };
    Ok(out)
}

/// A reader that yields the decoded bytes of `encoded`.
pub(crate) fn decoder<'r>(
    encoding: Encoding,
    encoded: impl Read + 'r,
) -> io::Result<Box<dyn Read + 'r>> {
    Ok(match encoding {
        Encoding::Br => Box::new(brotli::Decompressor::new(encoded, 64 * 1024)),
        Encoding::Zstd => Box::new(zstd::stream::read::Decoder::new(encoded)?),
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(encoded)),
    })
}

/// True when `sibling` decodes to exactly the bytes of `source`: the one freshness rule.
///
/// Both are streamed and compared block by block, so memory stays small and a sibling that
/// decodes to more than the source (a decompression bomb) stops being read one block past it.
/// A sibling that is not valid in its encoding does not match.
pub(crate) fn decodes_to(
    encoding: Encoding,
    sibling: impl Read,
    mut source: impl Read,
) -> io::Result<bool> {
    let Ok(mut decoded) = decoder(encoding, sibling) else {
        return Ok(false);
    };
    let mut want = vec![0; 64 * 1024];
    let mut got = vec![0; 64 * 1024];
    loop {
        let n = read_full(&mut source, &mut want)?;
        let Ok(m) = read_full(&mut decoded, &mut got[..n.max(1)]) else {
            return Ok(false);
        };
        if n == 0 {
            return Ok(m == 0);
        }
        if m != n || want[..n] != got[..n] {
            return Ok(false);
        }
    }
}

/// Reads until `buf` is full or the reader ends; the count read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_types() {
        for ct in [
            "text/html; charset=utf-8",
            "application/json",
            "application/problem+json",
            "application/javascript",
            "image/svg+xml",
        ] {
            assert!(is_compressible(ct), "{ct}");
        }
        for ct in ["image/png", "font/woff2", "application/zip", "video/mp4"] {
            assert!(!is_compressible(ct), "{ct}");
        }
    }

    #[test]
    fn compressible_files_are_compressible_types_that_are_not_already_compressed() {
        let cases: &[(&str, bool)] = &[
            ("index.html", true),
            ("app.3f9a2c1b.css", true),
            ("app.js", true),
            ("data.json", true),
            ("logo.svg", true),
            ("favicon.ico", true),
            ("robots.txt", true),
            ("font.ttf", true),
            ("module.wasm", true),
            ("photo.png", false),
            ("photo.JPG", false),
            ("font.woff2", false),
            ("archive.zip", false),
            ("app.js.gz", false),
            ("app.js.br", false),
            ("app.js.zst", false),
            ("doc.pdf", false),
            ("movie.mp4", false),
            ("LICENSE", false),
            ("blob.bin", false),
            (".hidden.css", false),
            (".env", false),
        ];
        for (name, expected) in cases {
            assert_eq!(is_compressible_file(name), *expected, "{name}");
        }
    }

    #[test]
    fn siblings_are_recognised_only_for_compressible_sources() {
        let cases: &[(&str, Option<(&str, Encoding)>)] = &[
            ("app.js.br", Some(("app.js", Encoding::Br))),
            ("index.html.gz", Some(("index.html", Encoding::Gzip))),
            ("style.css.zst", Some(("style.css", Encoding::Zstd))),
            // A real archive is not a sibling: `archive.tar` is not something tandem compresses.
            ("archive.tar.gz", None),
            ("photo.png.br", None),
            ("notes.gz", None),
            ("app.js.zstd", None),
            ("app.jsgz", None),
        ];
        for (name, expected) in cases {
            assert_eq!(sibling_source(name), *expected, "{name}");
        }
    }

    #[test]
    fn sibling_paths_append_the_encoding_extension() {
        let source = Path::new("htdocs/app.3f9a2c1b.js");
        for (encoding, expected) in [
            (Encoding::Br, "htdocs/app.3f9a2c1b.js.br"),
            (Encoding::Zstd, "htdocs/app.3f9a2c1b.js.zst"),
            (Encoding::Gzip, "htdocs/app.3f9a2c1b.js.gz"),
        ] {
            assert_eq!(sibling_path(source, encoding), Path::new(expected));
            let name = expected.rsplit('/').next().unwrap_or_default();
            assert_eq!(sibling_source(name), Some(("app.3f9a2c1b.js", encoding)));
        }
    }

    #[test]
    fn indexes_follow_all() {
        for (i, encoding) in Encoding::ALL.into_iter().enumerate() {
            assert_eq!(encoding.index(), i);
        }
    }

    #[test]
    fn every_encoding_round_trips_at_every_effort() {
        let text = "tandem serves precompressed siblings. ".repeat(200);
        for encoding in Encoding::ALL {
            for effort in [Effort::Precompress, Effort::OnTheFly] {
                let compressed = compress(encoding, effort, text.as_bytes()).unwrap();
                assert!(compressed.len() < text.len() / 10, "{encoding:?}");
                let mut decoded = Vec::new();
                decoder(encoding, &compressed[..])
                    .unwrap()
                    .read_to_end(&mut decoded)
                    .unwrap();
                assert_eq!(decoded, text.as_bytes(), "{encoding:?} {effort:?}");
            }
        }
    }

    #[test]
    fn a_sibling_matches_only_the_exact_source() {
        let text = "tandem serves precompressed siblings. ".repeat(5000);
        let longer = format!("{text}!");
        for encoding in Encoding::ALL {
            let sibling = compress(encoding, Effort::OnTheFly, text.as_bytes()).unwrap();
            let matches = |source: &[u8]| decodes_to(encoding, &sibling[..], source).unwrap();
            assert!(matches(text.as_bytes()), "{encoding:?}");
            assert!(!matches(&text.as_bytes()[1..]), "{encoding:?} shorter");
            assert!(!matches(longer.as_bytes()), "{encoding:?} longer");
            assert!(!matches(b"something else"), "{encoding:?}");
            assert!(!matches(b""), "{encoding:?} empty source");
            assert!(
                !decodes_to(encoding, &b"not compressed at all"[..], text.as_bytes()).unwrap(),
                "{encoding:?} garbage"
            );
        }
    }

    #[test]
    fn a_decompression_bomb_is_read_only_as_far_as_its_source() {
        // 1,000 gzip members of 1 MiB of zeros each: 1 GiB once decoded.
        let member = compress(Encoding::Gzip, Effort::OnTheFly, &vec![0u8; 1 << 20]).unwrap();
        let mut bomb = Members {
            member: &member,
            left: 999,
            at: 0,
            read: 0,
        };
        let source = vec![0u8; 3 << 20];
        assert!(!decodes_to(Encoding::Gzip, &mut bomb, &source[..]).unwrap());
        // Reading stopped about three members in, not at the end of the stream.
        assert!(bomb.read < 10 * member.len(), "read {} bytes", bomb.read);
    }

    /// `member` repeated `left` times, produced as it is read.
    struct Members<'a> {
        member: &'a [u8],
        left: usize,
        at: usize,
        read: usize,
    }

    impl Read for Members<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.at == self.member.len() {
                if self.left == 0 {
                    return Ok(0);
                }
                self.left -= 1;
                self.at = 0;
            }
            let n = (&self.member[self.at..]).read(buf)?;
            self.at += n;
            self.read += n;
            Ok(n)
        }
    }

    #[test]
    fn compression_is_deterministic() {
        // Committed siblings must not churn when regenerated on another machine.
        let text = "deterministic output ".repeat(100);
        for encoding in Encoding::ALL {
            let a = compress(encoding, Effort::Precompress, text.as_bytes()).unwrap();
            let b = compress(encoding, Effort::Precompress, text.as_bytes()).unwrap();
            assert_eq!(a, b, "{encoding:?}");
        }
    }
}
