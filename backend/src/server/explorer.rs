//! The explorer's files: served from Trunk's build with a year's caching for
//! its content-named files, gzipped once beside each file (again when a build
//! lands), and a page that says the explorer is being built while it is.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the explorer is (or will be, while `make serve` builds it).
#[derive(Clone)]
pub struct Explorer {
    pub dir: PathBuf,
    pub build_log: Option<PathBuf>,
}

/// Trunk names the explorer's files by their content (`name-0123456789abcdef_bg.wasm`):
/// browsers may keep those for a year, compiled wasm included, so a return visit
/// skips the download and the compile. `index.html`, which names them, is checked
/// on every visit, so a new build shows at once. API responses set their own.
pub(super) async fn explorer_caching(request: Request, next: middleware::Next) -> Response {
    let path = request.uri().path().to_string();
    let mut response = next.run(request).await;
    if path.starts_with("/api/") || !response.status().is_success() {
        return response;
    }
    // A missing content-named file gets the page (status 200, HTML): never keep that.
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
    let value = if content_named(&path) && !html {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let headers = response.headers_mut();
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(value),
    );
    // The same path answers gzipped or not, by the request's Accept-Encoding.
    if !headers.contains_key(header::VARY) {
        headers.insert(
            header::VARY,
            header::HeaderValue::from_static("accept-encoding"),
        );
    }
    response
}

/// Whether a file name carries Trunk's content hash: 16 hex digits after its last
/// `-`, before the extension (and wasm-bindgen's `_bg`).
fn content_named(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or_default();
    let stem = name.split('.').next().unwrap_or_default();
    let Some((_, hash)) = stem.rsplit_once('-') else {
        return false;
    };
    let hash = hash.strip_suffix("_bg").unwrap_or(hash);
    // A 64-bit hash in hex without leading zeros: 16 digits but one build in 16
    // (`cosmicai-frontend-6f5438e121bcd7d_bg.wasm` failed CI), 15 or fewer.
    (12..=16).contains(&hash.len()) && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Writes `FILE.gz` beside each text or wasm file of the built explorer that
/// lacks an up-to-date one, so it is compressed once, not per request. A
/// directory that cannot be written is served uncompressed (with a warning).
pub(super) fn precompress(frontend: &std::path::Path) {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => walk(&path, out),
                Ok(t) if t.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    let mut files = Vec::new();
    walk(frontend, &mut files);
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    for file in files {
        let compressible = file
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "wasm" | "js" | "css" | "html" | "svg" | "json"));
        let gz = PathBuf::from(format!("{}.gz", file.display()));
        if !compressible || modified(&gz).is_some_and(|g| Some(g) >= modified(&file)) {
            continue;
        }
        let written = std::fs::read(&file).and_then(|bytes| {
            use std::io::Write;
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(&bytes)?;
            cosmicai_engine::partition::write_atomically(&gz, &encoder.finish()?)
        });
        if let Err(e) = written {
            crate::say!("warning: {} is served uncompressed: {e}", file.display());
        }
    }
}

/// index.html, or while there is none a page that says the explorer is being built
/// (with the build's latest log lines, reloading itself) or is not built here.
pub(super) async fn explorer_page(State(explorer): State<Arc<Explorer>>) -> Response {
    if let Ok(html) = tokio::fs::read(explorer.dir.join("index.html")).await {
        return ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    }
    let api = "<p>The API is up meanwhile: <a href=\"/api/health\">/api/health</a>, \
               <a href=\"/api/objects\">/api/objects</a>, \
               <a href=\"/api/openapi.json\">/api/openapi.json</a>.</p>";
    let Some(log) = &explorer.build_log else {
        return axum::response::Html(format!(
            "<!doctype html><title>CosmicAI</title><h1>CosmicAI</h1>\
             <p>The explorer is not built here (<code>make serve</code> builds it; see the README).</p>{api}"
        ))
        .into_response();
    };
    let tail = build_log_tail(log, 6);
    let body = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\"><title>CosmicAI: explorer building…</title>\
         <style>body{{background:#0b1020;color:#e6e9f2;font:16px system-ui;margin:3rem}}\
         pre{{background:#151b30;padding:1rem;white-space:pre-wrap}}a{{color:#8ab4ff}}</style>\
         <h1>Explorer building…</h1>\
         <p><code>make serve</code> is building the explorer beside the running server; the \
         terminal says how long it has left. This page reloads itself every 5 seconds and \
         shows the explorer once it lands.</p>{api}<p>The build's latest lines:</p><pre>{}</pre></html>",
        html_escape(&tail)
    );
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        axum::response::Html(body),
    )
        .into_response()
}

/// The last `lines` lines of a build log, read from at most its last 16 KB, with
/// terminal colour codes and carriage-return redraws taken out.
fn build_log_tail(log: &std::path::Path, lines: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut bytes = Vec::new();
    let read = std::fs::File::open(log).and_then(|mut f| {
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(16 * 1024)))?;
        f.take(16 * 1024).read_to_end(&mut bytes)
    });
    if read.is_err() {
        return "(no build log yet)".into();
    }
    let text = String::from_utf8_lossy(&bytes);
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI sequences end at a byte in '@'..='~'.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else {
            plain.push(c);
        }
    }
    let kept: Vec<&str> = plain
        .lines()
        .map(|l| l.rsplit('\r').next().unwrap_or(l).trim_end())
        .filter(|l| !l.is_empty())
        .collect();
    kept[kept.len().saturating_sub(lines)..].join("\n")
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Compresses the explorer again whenever a build lands (its index.html changes),
/// so a build that finishes while the server runs is served gzipped too.
pub(super) fn watch_explorer(dir: PathBuf) {
    let stamp = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let index = dir.join("index.html");
    let mut seen = stamp(&index);
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(2));
            let now = stamp(&index);
            if now != seen {
                // Let the build finish moving its files in.
                std::thread::sleep(Duration::from_secs(2));
                precompress(&dir);
                seen = now;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_trunks_content_named_files_are_kept_for_a_year() {
        assert!(content_named("/cosmicai-frontend-8be52423df184aca_bg.wasm"));
        assert!(content_named("/cosmicai-frontend-8be52423df184aca.js"));
        assert!(content_named("/style-62172c0f83dbf18c.css"));
        // A hash whose leading hex digit was 0, as Trunk writes it.
        assert!(content_named("/cosmicai-frontend-6f5438e121bcd7d_bg.wasm"));
        assert!(!content_named("/index.html"));
        assert!(!content_named("/"));
        assert!(!content_named("/fonts/inter-latin.woff2"));
        assert!(!content_named("/style-62172c0f83dbf18z.css"));
        assert!(!content_named("/a-0123.js"));
    }

    #[test]
    fn build_log_tail_keeps_the_last_lines_without_colour_codes() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        // Far over the 16 KB read: only the end is read, and only whole last lines kept.
        let mut text = "   Compiling filler v1.0.0\n".repeat(2000);
        text.push_str("\u{1b}[1m\u{1b}[32m   Compiling\u{1b}[0m leptos v0.8.0\n");
        text.push_str("progress 10%\rprogress 90%\n\n");
        text.push_str("<script>alert(1)</script>\n");
        std::fs::write(&log, text).unwrap();
        let tail = build_log_tail(&log, 3);
        assert_eq!(
            tail,
            "   Compiling leptos v0.8.0\nprogress 90%\n<script>alert(1)</script>"
        );
        assert!(html_escape(&tail).contains("&lt;script&gt;"));
        assert_eq!(
            build_log_tail(&dir.path().join("missing"), 3),
            "(no build log yet)"
        );
    }
}
