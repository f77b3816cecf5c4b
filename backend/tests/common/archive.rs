//! An SDSS archive served in the test's process (axum on 127.0.0.1), laid out
//! as the Science Archive Server lays it out and serving the bundled field
//! 2820-3-0122, with failures to inject: 503s, transfers cut off mid-file,
//! damaged files, servers that answer Range requests badly.

use super::asset;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub const FIELD_DIR: &str = "fields/2820-3-0122";

/// What the archive does to one request for a file, in order; then it serves it.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    Unavailable,
    /// Sends this many bytes of the file and breaks the connection.
    CutAt(usize),
    /// Sends the whole file with one byte changed.
    Damaged,
    /// Answers a Range request with 200 and the whole file.
    IgnoreRange,
    /// Answers a Range request with 206 and a range one byte off.
    WrongRange,
}

#[derive(Default)]
pub struct Archive {
    pub faults: HashMap<String, VecDeque<Fault>>,
    /// (file name, Range header) of every request.
    pub requests: Vec<(String, Option<String>)>,
}

pub type Shared = Arc<Mutex<Archive>>;

async fn frame(
    State(archive): State<Shared>,
    UrlPath((rerun, run, camcol, file)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let fault = {
        let mut archive = archive.lock().unwrap();
        archive.requests.push((file.clone(), range.clone()));
        archive.faults.get_mut(&file).and_then(VecDeque::pop_front)
    };
    let bundled = Path::new(&asset(FIELD_DIR)).join(&file);
    if (rerun.as_str(), run.as_str(), camcol.as_str()) != ("301", "2820", "3") || !bundled.is_file()
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut bytes = std::fs::read(bundled).unwrap();
    let start = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) => r.trim_end_matches('-').parse::<usize>().unwrap(),
        None => 0,
    };
    if start >= bytes.len() && start > 0 {
        let mut response = StatusCode::RANGE_NOT_SATISFIABLE.into_response();
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            format!("bytes */{}", bytes.len()).parse().unwrap(),
        );
        return response;
    }
    let start = if matches!(fault, Some(Fault::IgnoreRange)) {
        0
    } else {
        start
    };
    let total = bytes.len();
    match fault {
        Some(Fault::Unavailable) => return StatusCode::SERVICE_UNAVAILABLE.into_response(),
        Some(Fault::Damaged) => bytes[total / 2] ^= 0x55,
        _ => {}
    }
    let body = bytes.split_off(start);
    let length = body.len();
    let body = match fault {
        Some(Fault::CutAt(n)) => {
            let sent = Bytes::from(body[..n - start].to_vec());
            Body::from_stream(futures_util::stream::iter([
                Ok(sent),
                Err(std::io::Error::other("connection cut")),
            ]))
        }
        _ => Body::from(body),
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_LENGTH, length.into());
    if start > 0 {
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        let shown = start + usize::from(matches!(fault, Some(Fault::WrongRange)));
        response.headers_mut().insert(
            header::CONTENT_RANGE,
            format!("bytes {shown}-{}/{total}", total - 1)
                .parse()
                .unwrap(),
        );
    }
    response
}

/// Serves the archive on a free port until the test ends; its `frames/` URL.
pub fn serve(archive: Shared) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/sas/dr17/eboss/photoObj/frames/{rerun}/{run}/{camcol}/{file}",
                    axum::routing::get(frame),
                )
                .with_state(archive);
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    format!("http://{address}/sas/dr17/eboss/photoObj/frames")
}
