//! The server itself: stopped by signals, serving the explorer (precompressed, and while Trunk still builds it), and a first start cut short.

use super::*;

#[test]
fn a_signal_stops_the_server_and_a_second_one_ends_it_at_once() {
    let dir = tempfile::tempdir().unwrap();
    copy_datasets(dir.path());
    let mut s = start_in(
        dir.path(),
        "127.0.0.1:0",
        &[("COSMICAI_WORKER_PAUSE_MS", "5000")],
    );
    let id = accepted_id(&post(
        &s,
        "/api/runs",
        r#"{"world_size":2,"batch_size":8}"#,
        &[],
    ));
    // Both ranks started (the worker then pauses 5 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let detail = get(&s, &format!("/api/runs/{id}")).json();
        let started = detail["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["event"] == "rank_started")
            .count();
        if started == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{detail}");
        std::thread::sleep(Duration::from_millis(50));
    }
    // An event stream held open (its headers read, its events never): the
    // first signal's graceful stop waits on it.
    let mut stream = TcpStream::connect(&s.addr).unwrap();
    write!(
        stream,
        "GET /api/runs/{id}/events HTTP/1.1\r\nHost: {}\r\n\r\n",
        s.addr
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let pid = s.child.id() as i32;
    // SAFETY: signalling the server this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        s.child.try_wait().unwrap().is_none(),
        "the stream keeps it up"
    );
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still up after a second signal"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(130));
    drop(stream);
    // Its run, cut short, is interrupted at the next start, and says why.
    let again = start_in(dir.path(), "127.0.0.1:0", &[]);
    let run = get(&again, &format!("/api/runs/{id}")).json()["run"].clone();
    assert_eq!(run["status"], "interrupted", "{run}");
    let why = run["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("its coordinator (the server or the CLI that ran it) stopped before it ended"),
        "{run}"
    );
    // A page opened on it now (or a live one whose stream comes back) hears
    // its ranks as recorded, both started and never ended, then its status.
    let events: Vec<Value> = sse_events(&get(&again, &format!("/api/runs/{id}/events")).body)
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    assert_eq!(
        events,
        [
            serde_json::json!({"event": "rank_started", "rank": 0, "attempt": 1}),
            serde_json::json!({"event": "rank_started", "rank": 1, "attempt": 1}),
            serde_json::json!({"event": "finished", "status": "interrupted"}),
        ]
    );
}

/// The explorer's files go out gzipped to browsers that take gzip (the wasm is
/// about 12 MB, 2 MB compressed), and as they are to the rest.
#[test]
fn the_explorer_is_served_precompressed() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(
        site.path().join("index.html"),
        "<!doctype html><title>x</title>",
    )
    .unwrap();
    let wasm: Vec<u8> = (0..400_000u32)
        .flat_map(|i| (i % 97).to_le_bytes())
        .collect();
    std::fs::write(site.path().join("app.wasm"), &wasm).unwrap();
    let s = start_serving(site.path(), &[]);
    assert!(site.path().join("app.wasm.gz").is_file());
    let gzipped = request(&s, "GET", "/app.wasm", &["Accept-Encoding: gzip"], b"");
    assert_eq!(gzipped.status, 200);
    assert_eq!(gzipped.header("content-encoding").as_deref(), Some("gzip"));
    assert!(
        gzipped.body.len() * 10 < wasm.len(),
        "{} bytes",
        gzipped.body.len()
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&gzipped.body[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, wasm);
    let plain = get(&s, "/app.wasm");
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.body, wasm);
}

/// `make serve` starts the server before the explorer is built: `/` says it is
/// building, with the build log's latest lines, and serves the explorer (gzipped
/// too) once the build lands, without a restart.
#[test]
fn the_explorer_lands_while_serving() {
    let site = tempfile::tempdir().unwrap();
    let dist = site.path().join("dist");
    let log = site.path().join("explorer-build.log");
    std::fs::write(
        &log,
        "   Compiling leptos v0.8.0\n   Compiling <cosmicai-frontend>\n",
    )
    .unwrap();
    let s = start_serving(&dist, &["--frontend-log".as_ref(), log.as_os_str()]);
    let building = get(&s, "/");
    assert_eq!(building.status, 503);
    assert!(
        building
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let page = String::from_utf8_lossy(&building.body).to_string();
    assert!(page.contains("Explorer building"), "{page}");
    assert!(
        page.contains("Compiling &lt;cosmicai-frontend&gt;"),
        "{page}"
    );
    // The API answers meanwhile, with the fingerprint of the types it was
    // built with (the explorer compares its own).
    let health = get(&s, "/api/health");
    assert_eq!(health.status, 200);
    let health: cosmicai_shared::api::Health = serde_json::from_slice(&health.body).unwrap();
    assert_eq!(health.api, cosmicai_shared::API_FINGERPRINT);
    assert_eq!(health.api.len(), 16, "{}", health.api);
    // The build lands: index.html and a wasm module, no restart.
    std::fs::create_dir_all(&dist).unwrap();
    let wasm: Vec<u8> = (0..200_000u32)
        .flat_map(|i| (i % 13).to_le_bytes())
        .collect();
    std::fs::write(dist.join("app_bg.wasm"), &wasm).unwrap();
    std::fs::write(
        dist.join("index.html"),
        "<!doctype html><title>explorer</title>",
    )
    .unwrap();
    let landed = get(&s, "/");
    assert_eq!(landed.status, 200);
    assert_eq!(
        String::from_utf8_lossy(&landed.body),
        "<!doctype html><title>explorer</title>"
    );
    // Routes that are no file get the explorer too (it routes by hash).
    assert_eq!(get(&s, "/some/page").status, 200);
    // Within a few seconds the server has compressed the new build.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !dist.join("app_bg.wasm.gz").is_file() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let gzipped = request(&s, "GET", "/app_bg.wasm", &["Accept-Encoding: gzip"], b"");
    assert_eq!(gzipped.header("content-encoding").as_deref(), Some("gzip"));
}

/// A server on the shared data directory with the explorer from `frontend`.
fn start_serving(frontend: &Path, more: &[&std::ffi::OsStr]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cosmicai"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir())
        .args(["--assets", &asset(""), "--frontend"])
        .arg(frontend)
        .args(more)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = common::serving_addr(&mut child);
    Server { child, addr }
}

#[test]
fn a_first_start_cut_short_is_built_again_and_an_empty_dataset_is_no_error() {
    // A first start killed while rendering left `.tmp-synthetic` (datasets are
    // built aside and renamed whole), and `serve --archive` left an empty
    // `fetched/`: the next start rebuilds the one and serves the other as empty.
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&data_dir().join("catalog"), &dir.path().join("catalog"));
    let cut_short = dir.path().join(".tmp-synthetic");
    std::fs::create_dir_all(&cut_short).unwrap();
    std::fs::write(
        cut_short.join("part-000000.safetensors"),
        b"half a partition",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("fetched")).unwrap();
    let s = start_in(dir.path(), "127.0.0.1:0", &[]);
    assert_eq!(get(&s, "/api/health").status, 200);
    assert!(!cut_short.exists());
    let synthetic = get(&s, "/api/objects?provenance=synthetic&limit=1").json();
    assert_eq!(synthetic["total"], 3000, "{synthetic}");
}
