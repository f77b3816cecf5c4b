//! `cosmicai serve` as a browser or script sees it: a real server process on a
//! free port, spoken to over TCP with plain HTTP/1.1.

mod common;
use common::asset;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

struct Server {
    child: Child,
    /// host:port to connect to.
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A data directory filled by one first start, shared by every test of this file.
/// Statics are never dropped, so a temporary directory would outlive every run (and
/// at 270 MB fill a reused CI machine): one fixed place under cargo's scratch space,
/// emptied each time, holds it instead.
fn data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-data");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        drop(start_in(&dir, "127.0.0.1:0", &[]));
        dir
    })
}

fn start_in(dir: &Path, addr: &str, envs: &[(&str, &str)]) -> Server {
    start_with(dir, addr, envs, &[])
}

fn start_with(dir: &Path, addr: &str, envs: &[(&str, &str)], args: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cosmicai"))
        .args(["serve", "--addr", addr, "--data-dir"])
        .arg(dir)
        .args(args)
        .args([
            "--assets",
            &asset(""),
            "--frontend",
            "/nonexistent-frontend",
        ])
        .envs(envs.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("listening on "))
        .map(|l| line = l)
        .expect("serve printed its address");
    let port = line.rsplit(':').next().unwrap().to_string();
    Server {
        child,
        addr: format!("127.0.0.1:{port}"),
    }
}

fn start() -> Server {
    start_in(data_dir(), "127.0.0.1:0", &[])
}

struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }
}

fn request(s: &Server, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(&s.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("host:"))
    {
        head += &format!("Host: {}\r\n", s.addr);
    }
    for h in headers {
        head += &format!("{h}\r\n");
    }
    head += "\r\n";
    // A server that refuses a body (413) may answer and close before it is
    // all sent: the write then fails, and the answer is still there to read.
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body));
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    match (sent, read) {
        (Ok(()), read) => read.map(drop).unwrap(),
        (Err(e), _) if raw.is_empty() => panic!("{method} {path}: {e}"),
        (Err(_), _) => {}
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete reply");
    let headers = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = headers[9..12].parse().unwrap();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = unchunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(std::str::from_utf8(&data[..eol]).unwrap().trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 4 + size..];
    }
    out
}

fn get(s: &Server, path: &str) -> Reply {
    request(s, "GET", path, &[], b"")
}

fn post(s: &Server, path: &str, body: &str, headers: &[&str]) -> Reply {
    let mut all = vec!["Content-Type: application/json"];
    all.extend_from_slice(headers);
    request(s, "POST", path, &all, body.as_bytes())
}

/// Every error is JSON with a message.
fn assert_json_error(r: &Reply, status: u16, needle: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let message = r.json()["error"].as_str().unwrap_or_default().to_string();
    assert!(message.contains(needle), "{message:?} lacks {needle:?}");
}

#[test]
fn objects_filter_page_and_show_images() {
    let s = start();
    let all = get(&s, "/api/objects?limit=5").json();
    let galaxies = get(&s, "/api/objects?class=GALAXY&limit=1000").json();
    assert_eq!(all["counts"]["galaxy"], galaxies["total"]);
    assert!(
        galaxies["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["class"] == "GALAXY")
    );
    let slice = get(
        &s,
        "/api/objects?z_min=0.1&z_max=0.2&r_max=17&limit=1000&sort=redshift",
    )
    .json();
    let zs: Vec<f64> = slice["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["redshift"].as_f64().unwrap())
        .collect();
    assert!(!zs.is_empty() && zs.iter().all(|z| (0.1..=0.2).contains(&(*z as f32 as f64))));
    assert!(zs.windows(2).all(|w| w[0] <= w[1]), "sorted by redshift");
    // A range that holds nothing is named, not answered with an empty page.
    assert_json_error(
        &get(&s, "/api/objects?z_min=0.5&z_max=0.2"),
        400,
        "z_min=0.5 is above z_max=0.2",
    );
    // The other orders, and paging through them: a page continues where the last stopped.
    let column = |query: &str, field: &dyn Fn(&serde_json::Value) -> f64| -> Vec<f64> {
        get(&s, query).json()["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(field)
            .collect()
    };
    let z = |o: &serde_json::Value| o["redshift"].as_f64().unwrap_or(f64::NAN);
    let r = |o: &serde_json::Value| o["magnitudes"][2].as_f64().unwrap();
    let desc = column("/api/objects?class=QSO&sort=-redshift&limit=40", &z);
    let next = column(
        "/api/objects?class=QSO&sort=-redshift&limit=40&offset=40",
        &z,
    );
    assert!(desc.len() == 40 && next.len() == 40);
    let both: Vec<f64> = desc.iter().chain(&next).copied().collect();
    assert!(
        both.windows(2).all(|w| w[0] >= w[1]),
        "descending redshift: {both:?}"
    );
    let by_r = column("/api/objects?provenance=real&sort=r&limit=200", &r);
    assert!(
        by_r.windows(2).all(|w| w[0] <= w[1]),
        "sorted by r magnitude"
    );
    // The showcase order: a first page of labelled objects with images, every
    // class on it, classes taking turns; unlabelled detections come last.
    let objects = |query: &str| get(&s, query).json()["objects"].as_array().unwrap().clone();
    let first = objects("/api/objects?sort=showcase&limit=60");
    let classes: Vec<&str> = first.iter().map(|o| o["class"].as_str().unwrap()).collect();
    assert_eq!(&classes[..3], ["GALAXY", "STAR", "QSO"], "{classes:?}");
    assert!(!classes.contains(&"UNKNOWN"), "{classes:?}");
    assert!(first.iter().all(|o| o["has_image"] == true));
    let total = get(&s, "/api/objects?limit=1").json()["total"]
        .as_u64()
        .unwrap();
    let last = objects(&format!(
        "/api/objects?sort=showcase&limit=1&offset={}",
        total - 1
    ));
    assert_eq!(last[0]["class"], "UNKNOWN");
    let counted = get(&s, "/api/objects?z_max=0.3&r_min=15&limit=1").json();
    let sum: u64 = ["galaxy", "star", "qso", "unknown"]
        .iter()
        .map(|k| counted["counts"][k].as_u64().unwrap())
        .sum();
    assert_eq!(
        counted["total"].as_u64().unwrap(),
        sum,
        "counts add up to the total"
    );
    // Colour cuts (a box drawn on the explorer's colour plots): every object in
    // range, fewer than without, and the counts still add up.
    let cut = get(
        &s,
        "/api/objects?ug_min=1&ug_max=2&gr_min=0.3&gr_max=0.8&limit=1000",
    )
    .json();
    let in_cut = cut["objects"].as_array().unwrap();
    assert!(!in_cut.is_empty());
    for o in in_cut {
        let m = |k: usize| o["magnitudes"][k].as_f64().unwrap() as f32;
        // Cut on colours to a thousandth of a magnitude, as the plots draw them.
        let (ug, gr) = (m(0) - m(1), m(1) - m(2));
        assert!(
            (0.9995..=2.0005).contains(&ug) && (0.2995..=0.8005).contains(&gr),
            "{o}"
        );
    }
    assert!(cut["total"].as_u64().unwrap() < total);
    assert_json_error(&get(&s, "/api/objects?ri_max=lots"), 400, "ri_max");
    let synthetic = get(&s, "/api/objects?provenance=synthetic&limit=3").json();
    assert_eq!(synthetic["total"], 3000);
    let real_images = get(&s, "/api/objects?provenance=real&has_image=true&limit=2").json();
    assert!(real_images["total"].as_u64().unwrap() > 300);
    let id = real_images["objects"][0]["id"].as_i64().unwrap();

    let detail = get(&s, &format!("/api/objects/{id}")).json();
    assert_eq!(detail["image_size"], 64);
    assert_eq!(detail["object"]["provenance"], "real");
    assert!(detail["valid_fraction"].as_f64().unwrap() > 0.0);
    assert_eq!(detail["predictions"][0]["model"], "photoz (shipped)");

    let png = get(
        &s,
        &format!("/api/objects/{id}/image.png?view=gri&stretch=0.5&q=8"),
    );
    assert_eq!(png.status, 200);
    assert!(png.body.starts_with(b"\x89PNG\r\n\x1a\n"));
    assert!(png.header("cache-control").unwrap().contains("max-age"));
    let etag = png.header("etag").unwrap();
    let again = request(
        &s,
        "GET",
        &format!("/api/objects/{id}/image.png?view=gri&stretch=0.5&q=8"),
        &[&format!("If-None-Match: {etag}")],
        b"",
    );
    assert_eq!(again.status, 304);
    assert_eq!(
        get(&s, &format!("/api/objects/{id}/image.png?view=r")).status,
        200
    );

    let cut = get(
        &s,
        &format!(
            "/api/cutouts?ids={id},{}&crop=32",
            real_images["objects"][1]["id"]
        ),
    );
    assert_eq!(cut.status, 200);
    assert_eq!(cut.body.len(), 8 + 2 * (8 + 5 * 32 * 32 * 4));
    assert_eq!(u32::from_le_bytes(cut.body[0..4].try_into().unwrap()), 2);
    assert_eq!(i64::from_le_bytes(cut.body[8..16].try_into().unwrap()), id);
    // Hostile lists: one object many times, or more than one reply holds (each
    // reply is held in memory until its client has taken it).
    assert_json_error(
        &get(&s, &format!("/api/cutouts?ids={id},{id}")),
        400,
        "given twice",
    );
    let side = get(&s, &format!("/api/objects/{id}")).json()["image_size"]
        .as_u64()
        .unwrap();
    assert!(
        256 * 5 * 4 * side * side > 8 << 20,
        "{side}x{side} cutouts fit anyway"
    );
    let many: Vec<String> = std::iter::once(id)
        .chain(1..256)
        .map(|i| i.to_string())
        .collect();
    let many = format!("/api/cutouts?ids={}", many.join(","));
    assert_json_error(&get(&s, &many), 400, "give crop");
    // Cropped, they would fit: the next id (made up) is the trouble.
    assert_json_error(&get(&s, &format!("{many}&crop=32")), 404, "object 1");

    assert_json_error(&get(&s, "/api/objects?limit=abc"), 400, "limit");
    assert_json_error(&get(&s, "/api/objects?class=COMET"), 400, "class");
    assert_json_error(&get(&s, "/api/objects/12345"), 404, "no such object");
    assert_json_error(
        &get(&s, &format!("/api/objects/{id}/image.png?view=x")),
        400,
        "view",
    );
    let catalog_only = get(&s, "/api/objects?has_image=false&limit=1").json()["objects"][0]["id"]
        .as_i64()
        .unwrap();
    assert_json_error(
        &get(&s, &format!("/api/objects/{catalog_only}/image.png")),
        404,
        "no image",
    );
    assert_json_error(&get(&s, "/api/nothing-here"), 404, "no such endpoint");

    let model = get(&s, "/api/model").json();
    let weights = get(&s, model["weights_url"].as_str().unwrap());
    assert_eq!(weights.body.len() as u64, model["bytes"].as_u64().unwrap());
    assert!(
        weights
            .header("cache-control")
            .unwrap()
            .contains("immutable")
    );
}

#[test]
fn no_request_path_leaves_the_data_directory() {
    let s = start();
    let refused = [
        "../",
        "../../etc",
        "/etc",
        "/tmp",
        "catalog/../../x",
        "..\\\\x",
        "",
        "nonexistent",
        // Spellings that would read the whole data directory, or a selection
        // by another name than the one that keeps it from going.
        ".",
        "./catalog",
        "selections//sel-x",
        "results",
    ];
    for prefix in refused {
        let r = post(
            &s,
            "/api/runs",
            &format!(r#"{{"world_size":1,"batch_size":64,"data_prefix":"{prefix}"}}"#),
            &[],
        );
        assert_eq!(
            r.status,
            422,
            "{prefix}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.json()["error"].as_str().unwrap().contains("data_prefix"));
        let e = post(
            &s,
            "/api/estimate",
            &format!(r#"{{"world_size":1,"batch_size":64,"data_prefix":"{prefix}"}}"#),
            &[],
        );
        assert_eq!(e.status, 422, "{prefix}");
    }
    for path in [
        "/api/objects/..%2F..%2Fetc%2Fpasswd",
        "/api/runs/..%2F..%2Fetc%2Fpasswd",
        "/api/runs/..%2F..%2Fetc/results",
        "/api/runs/%2Fetc%2Fpasswd/events",
        "/api/../../etc/passwd",
    ] {
        let r = get(&s, path);
        assert!(matches!(r.status, 400 | 404), "{path}: {}", r.status);
        assert!(
            !String::from_utf8_lossy(&r.body).contains("root:"),
            "{path}"
        );
    }
    // Nothing was started by any of those (other tests share the data directory
    // and start runs of their own).
    assert_eq!(
        get(&s, "/api/runs")
            .json()
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                refused
                    .iter()
                    .any(|p| r["data_prefix"] == *p || r["data_prefix"] == p.trim_matches('/'))
            })
            .count(),
        0
    );
}

const TOKEN: &str = "0123456789abcdef-s3cret";

#[test]
fn off_loopback_starting_runs_needs_the_token() {
    let s = start_in(data_dir(), "0.0.0.0:0", &[("COSMICAI_TOKEN", TOKEN)]);
    let body = r#"{"world_size":1,"batch_size":4096,"file_limit":1}"#;
    assert_json_error(&post(&s, "/api/runs", body, &[]), 401, "Bearer");
    assert_json_error(
        &post(&s, "/api/runs", body, &["Authorization: Bearer wrong"]),
        401,
        "Bearer",
    );
    // Reading needs no token.
    assert_eq!(get(&s, "/api/objects?limit=1").status, 200);
    // Estimates cost a calibration and a walk of the data: guarded too.
    assert_json_error(&post(&s, "/api/estimate", body, &[]), 401, "Bearer");
    // Every route that starts, stops or writes anything: its guard is its
    // router's, and a route moved out of it would be open.
    for (route, body) in [
        ("/api/runs/run-x/cancel", ""),
        ("/api/sweeps", r#"{"world_sizes":[1],"batch_size":8}"#),
        ("/api/sweeps/sweep-x/cancel", ""),
        ("/api/selections", r#"{"ids":[1]}"#),
        ("/api/objects/1/fetch", ""),
    ] {
        assert_json_error(&post(&s, route, body, &[]), 401, "Bearer");
    }
    let ok = post(
        &s,
        "/api/runs",
        body,
        &[&format!("Authorization: Bearer {TOKEN}")],
    );
    assert_eq!(ok.status, 202, "{}", String::from_utf8_lossy(&ok.body));
}

#[test]
fn a_loopback_server_takes_a_token_when_given_and_refuses_short_ones() {
    let s = start_with(data_dir(), "127.0.0.1:0", &[], &["--token", TOKEN]);
    let body = r#"{"world_size":1,"batch_size":4096,"file_limit":1}"#;
    assert_json_error(&post(&s, "/api/runs", body, &[]), 401, "Bearer");
    let bearer = format!("Authorization: Bearer {TOKEN}");
    assert_eq!(post(&s, "/api/estimate", body, &[&bearer]).status, 200);

    let out = Command::new(env!("CARGO_BIN_EXE_cosmicai"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--token",
            "short",
            "--data-dir",
        ])
        .arg(data_dir())
        .args(["--assets", &asset("")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("at least 16 characters"),
        "{stderr}"
    );
}

#[test]
fn a_page_on_another_host_name_cannot_reach_a_loopback_server() {
    // DNS rebinding: evil.example resolves to 127.0.0.1, and the browser sends
    // its own name as Host.
    let s = start_with(
        data_dir(),
        "127.0.0.1:0",
        &[],
        &["--allowed-host", "cosmic.example.org"],
    );
    for path in ["/api/health", "/api/runs", "/"] {
        assert_json_error(
            &request(&s, "GET", path, &["Host: evil.example:8080"], b""),
            421,
            "not a name of this server",
        );
    }
    let proxied = request(&s, "GET", "/api/health", &["Host: cosmic.example.org"], b"");
    assert_eq!(proxied.status, 200);
    assert_eq!(get(&s, "/api/health").status, 200);
}

#[test]
fn a_page_of_another_site_cannot_start_or_stop_work_on_a_server_with_no_token() {
    // A page anywhere can make the browser post to 127.0.0.1 without a CORS
    // preflight (no body, or a form's): the Host check passes, and a loopback
    // server has no token unless given one.
    let s = start();
    let cancel = "/api/runs/run-0-0-0/cancel";
    for header in [
        "Sec-Fetch-Site: cross-site",
        "Sec-Fetch-Site: same-site",
        "Origin: https://evil.example",
        "Origin: null",
    ] {
        let r = request(&s, "POST", cancel, &[header], b"");
        assert_json_error(&r, 403, "another site");
        let launch = post(
            &s,
            "/api/runs",
            r#"{"world_size":1,"batch_size":8}"#,
            &[header],
        );
        assert_json_error(&launch, 403, "another site");
    }
    // The explorer's own requests, and the CLI's (no such headers), get through.
    let own = format!("Origin: http://{}", s.addr);
    for headers in [&["Sec-Fetch-Site: same-origin", own.as_str()][..], &[]] {
        assert_json_error(&request(&s, "POST", cancel, headers, b""), 404, "run-0-0-0");
    }
}

#[test]
fn runs_past_the_admission_cap_are_refused_with_retry_after() {
    let s = std::sync::Arc::new(start_with(
        data_dir(),
        "127.0.0.1:0",
        &[],
        &["--max-runs", "2"],
    ));
    // Slow runs (tiny batches over the whole catalog), 50 at once.
    let replies: Vec<Reply> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                let s = s.clone();
                scope
                    .spawn(move || post(&s, "/api/runs", r#"{"world_size":4,"batch_size":8}"#, &[]))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let accepted: Vec<String> = replies
        .iter()
        .filter(|r| r.status == 202)
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status == 429).collect();
    assert_eq!(
        accepted.len(),
        2,
        "statuses {:?}",
        replies.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert_eq!(refused.len(), 48);
    for r in &refused {
        assert!(r.header("retry-after").is_some(), "{}", r.headers);
        assert_json_error(r, 429, "try again later");
    }
    // The host answers while the admitted runs go, and sweeps share the cap.
    assert_eq!(get(&s, "/api/health").status, 200);
    assert_json_error(
        &post(
            &s,
            "/api/sweeps",
            r#"{"world_sizes":[1],"batch_size":8}"#,
            &[],
        ),
        429,
        "try again later",
    );
    for id in &accepted {
        assert_eq!(
            post(&s, &format!("/api/runs/{id}/cancel"), "", &[]).status,
            202
        );
        get(&s, &format!("/api/runs/{id}/events")); // to its end
    }
    // Their slots are free again.
    let again = post(
        &s,
        "/api/runs",
        r#"{"world_size":1,"batch_size":4096,"file_limit":1}"#,
        &[],
    );
    assert_eq!(
        again.status,
        202,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
}

/// The id in a 202 reply (a run or sweep created).
fn accepted_id(reply: &Reply) -> String {
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    reply.json()["id"].as_str().unwrap().to_string()
}

/// Each SSE event of `body` as (id, data).
fn sse_events(body: &[u8]) -> Vec<(Option<usize>, Value)> {
    let text = String::from_utf8_lossy(body);
    let mut events = Vec::new();
    let mut id = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = v.parse().ok();
        } else if let Some(v) = line.strip_prefix("data: ") {
            events.push((id.take(), serde_json::from_str(v).unwrap()));
        }
    }
    events
}

#[test]
fn runs_share_a_memory_budget_and_run_fewer_ranks_at_once_when_it_is_short() {
    let s = start_with(
        data_dir(),
        "127.0.0.1:0",
        &[],
        &["--memory-budget-mb", "3000"],
    );
    // Two ranks of 2000 MB do not fit in 3000: they run one at a time.
    let created = post(
        &s,
        "/api/runs",
        r#"{"world_size":2,"batch_size":4096,"memory_mb":2000}"#,
        &[],
    );
    let id = accepted_id(&created);
    // While it runs, 1000 MB are free: a run of 2000 MB ranks is refused, one of 1000 is not.
    let refused = post(
        &s,
        "/api/runs",
        r#"{"world_size":1,"batch_size":4096,"memory_mb":2000}"#,
        &[],
    );
    assert_json_error(
        &refused,
        429,
        "1000 MB of this server's 3000 MB budget are free",
    );
    assert!(refused.header("retry-after").is_some());
    assert_json_error(
        &post(
            &s,
            "/api/sweeps",
            r#"{"world_sizes":[1],"batch_size":4096,"memory_mb":2000}"#,
            &[],
        ),
        429,
        "budget",
    );
    let small = post(
        &s,
        "/api/runs",
        r#"{"world_size":1,"batch_size":4096,"file_limit":1,"memory_mb":1000}"#,
        &[],
    );
    assert_eq!(
        small.status,
        202,
        "{}",
        String::from_utf8_lossy(&small.body)
    );
    let events = sse_events(&get(&s, &format!("/api/runs/{id}/events")).body);
    let mut running = 0;
    for (_, e) in &events {
        match e["event"].as_str() {
            Some("rank_started") => {
                running += 1;
                assert_eq!(running, 1, "two ranks at once: {events:?}");
            }
            Some("rank_finished") => running -= 1,
            _ => {}
        }
    }
    assert_eq!(
        events.last().unwrap().1,
        serde_json::json!({"event": "finished", "status": "succeeded"})
    );
    // Its memory is free again.
    let small_id = small.json()["id"].as_str().unwrap().to_string();
    get(&s, &format!("/api/runs/{small_id}/events"));
    let again = post(
        &s,
        "/api/runs",
        r#"{"world_size":1,"batch_size":4096,"file_limit":1,"memory_mb":2900}"#,
        &[],
    );
    assert_eq!(
        again.status,
        202,
        "{}",
        String::from_utf8_lossy(&again.body)
    );
}

#[test]
fn event_streams_resume_after_last_event_id_and_end_when_idle() {
    let s = start_with(data_dir(), "127.0.0.1:0", &[], &["--stream-idle-s", "1"]);
    let id = post(
        &s,
        "/api/runs",
        r#"{"world_size":1,"batch_size":4096,"file_limit":1}"#,
        &[],
    )
    .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/api/runs/{id}/events");
    // A stream idle for a second closes, also while the run is still going (a
    // loaded machine can leave a rank silent that long): read on as a browser
    // does, resuming after the last event seen, until the run has finished.
    let mut all = sse_events(&get(&s, &path).body);
    for _ in 0..300 {
        if all.last().is_some_and(|(_, e)| e["event"] == "finished") {
            break;
        }
        let after = all
            .last()
            .and_then(|(id, _)| *id)
            .map(|i| format!("Last-Event-ID: {i}"));
        let headers: Vec<&str> = after.iter().map(String::as_str).collect();
        all.extend(sse_events(&request(&s, "GET", &path, &headers, b"").body));
    }
    assert_eq!(all.last().unwrap().1["event"], "finished", "{all:?}");
    assert!(all.len() > 3, "{all:?}");
    for (i, (id, _)) in all.iter().enumerate() {
        assert_eq!(*id, Some(i), "{all:?}");
    }
    // A browser reconnecting after event 2 gets the rest, once.
    let rest = sse_events(&request(&s, "GET", &path, &["Last-Event-ID: 2"], b"").body);
    assert_eq!(rest, all[3..]);
    // Past the end of a finished run nothing comes.
    let none = request(&s, "GET", &path, &["Last-Event-ID: 999999"], b"");
    assert_eq!(none.status, 200);
    assert!(sse_events(&none.body).is_empty());
}

#[test]
fn a_finished_runs_stream_ends_at_once_and_holds_no_slot() {
    // One stream at a time, idle for up to 10 minutes: a stream that waited for
    // an event past the end of a finished run would outlast the reply's 2-minute
    // read timeout, and hold the only slot meanwhile.
    let s = start_with(data_dir(), "127.0.0.1:0", &[], &["--max-streams", "1"]);
    let id = accepted_id(&post(
        &s,
        "/api/runs",
        r#"{"world_size":1,"batch_size":4096,"file_limit":1}"#,
        &[],
    ));
    let path = format!("/api/runs/{id}/events");
    // Live: the one slot, until the run finishes.
    let all = sse_events(&get(&s, &path).body);
    assert_eq!(all.last().unwrap().1["event"], "finished", "{all:?}");
    for last in [
        "999999",
        "18446744073709551615",
        &(all.len() - 1).to_string(),
    ] {
        let none = request(&s, "GET", &path, &[&format!("Last-Event-ID: {last}")], b"");
        assert_eq!(none.status, 200, "Last-Event-ID {last}");
        assert!(sse_events(&none.body).is_empty(), "Last-Event-ID {last}");
    }
    let rest = sse_events(&request(&s, "GET", &path, &["Last-Event-ID: 1"], b"").body);
    assert_eq!(rest, all[2..]);
}

#[test]
fn a_run_streams_its_progress_and_ends_in_a_scatter() {
    let s = start();
    let estimate = post(
        &s,
        "/api/estimate",
        r#"{"world_size":2,"batch_size":4096}"#,
        &[],
    )
    .json();
    assert_eq!(estimate["ranks"], 2);
    assert!(estimate["cost_usd"].as_f64().unwrap() > 0.0);
    let created = post(
        &s,
        "/api/runs",
        r#"{"world_size":2,"batch_size":4096}"#,
        &[],
    );
    assert_eq!(created.status, 202);
    let id = created.json()["id"].as_str().unwrap().to_string();
    let events = get(&s, &format!("/api/runs/{id}/events"));
    assert_eq!(
        events.header("content-type").as_deref(),
        Some("text/event-stream")
    );
    let text = String::from_utf8_lossy(&events.body);
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "rank_started")
            .count(),
        2
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| e["event"] == "rank_finished")
            .count(),
        2
    );
    assert_eq!(
        events.last().unwrap(),
        &serde_json::json!({"event": "finished", "status": "succeeded"})
    );

    // The run's page lists the same events, from any number on.
    let detail = get(&s, &format!("/api/runs/{id}")).json();
    assert_eq!(detail["events"].as_array().unwrap(), &events);
    assert_eq!(detail["events_total"], events.len());
    assert_eq!(detail["next_events_from"], Value::Null);
    let rest = get(&s, &format!("/api/runs/{id}?events_from=3")).json();
    assert_eq!(rest["events"].as_array().unwrap(), &events[3..]);
    let past = get(
        &s,
        &format!("/api/runs/{id}?events_from=18446744073709551615"),
    )
    .json();
    assert_eq!(past["events"], serde_json::json!([]));
    assert_eq!(past["events_total"], events.len());

    let results = get(&s, &format!("/api/runs/{id}/results")).json();
    assert_eq!(results["summary"]["status"], "succeeded");
    assert_eq!(results["summary"]["objects"], 33884);
    // An even sample over both ranks (every 2nd of 33,884 objects), not the
    // first 20,000, which would all be rank 0's 16,942 and some of rank 1's.
    let scatter = results["scatter"].as_array().unwrap().len();
    assert!((16_000..=16_942).contains(&scatter), "{scatter}");
    // A finished run's results are read once: looked at again, with its
    // predictions gone, the same.
    let predictions = data_dir()
        .join(results["summary"]["result_path"].as_str().unwrap())
        .join("predictions");
    std::fs::remove_dir_all(&predictions).unwrap();
    let again = get(&s, &format!("/api/runs/{id}/results")).json();
    assert_eq!(again, results);
    let listed = get(&s, "/api/runs").json();
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str() && r["status"] == "succeeded")
    );
    assert_json_error(
        &post(&s, &format!("/api/runs/{id}/cancel"), "", &[]),
        409,
        "already finished",
    );
    assert_json_error(&get(&s, "/api/runs/run-unknown"), 404, "no such run");
}

#[test]
fn a_selection_becomes_a_dataset_that_a_run_takes() {
    let s = start();
    let cuts = "class=GALAXY&ug_min=1&ug_max=2&gr_min=0.3&gr_max=0.8";
    let listed = get(&s, &format!("/api/objects?{cuts}&limit=1")).json();
    let expected = listed["total"].as_u64().unwrap();
    assert!(expected > 100, "{expected}");
    // A crashed write's leftover goes when the next selection is written.
    let leftover = data_dir().join("selections/.tmp-sel-crashed-1");
    std::fs::create_dir_all(&leftover).unwrap();
    let two_hours_ago = std::time::SystemTime::now() - Duration::from_secs(7200);
    std::fs::File::open(&leftover)
        .unwrap()
        .set_modified(two_hours_ago)
        .unwrap();
    // A neighbour's write in progress (recent) is left alone.
    let neighbour = data_dir().join("selections/.tmp-sel-writing-2");
    std::fs::create_dir_all(&neighbour).unwrap();
    let made = post(&s, &format!("/api/selections?{cuts}"), "{}", &[]);
    assert_eq!(made.status, 201, "{}", String::from_utf8_lossy(&made.body));
    let made = made.json();
    assert_eq!(made["objects"].as_u64(), Some(expected));
    assert_eq!(made["counts"]["galaxy"].as_u64(), Some(expected));
    assert_eq!(made["counts"]["star"], 0);
    let prefix = made["data_prefix"].as_str().unwrap().to_string();
    assert!(prefix.starts_with("selections/sel-"), "{prefix}");
    assert!(
        !leftover.exists(),
        "the leftover temporary folder is removed"
    );
    assert!(neighbour.exists(), "a recent temporary folder is not");
    std::fs::remove_dir(&neighbour).unwrap();
    let files = std::fs::read_dir(data_dir().join(&prefix)).unwrap().count();
    assert_eq!(Some(files as u64), made["partitions"].as_u64());
    assert!(files >= 8, "spread over at least 8 partitions: {files}");
    // The same selection again: the same dataset, not a second one.
    let again = post(&s, &format!("/api/selections?{cuts}"), "{}", &[]).json();
    assert_eq!(again["data_prefix"], prefix.as_str());

    // A box on the sky sends ids: each counted once, unknown ones left out.
    let some = get(&s, "/api/objects?limit=5").json();
    let ids: Vec<i64> = some["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    let with_repeats = [ids.clone(), vec![ids[0], 42]].concat();
    let body = serde_json::json!({ "ids": with_repeats });
    let by_ids = post(&s, "/api/selections", &body.to_string(), &[]).json();
    assert_eq!(by_ids["objects"], 5);
    assert_ne!(by_ids["data_prefix"], prefix.as_str());

    // Bad selections: clear errors, nothing written.
    assert_json_error(
        &post(&s, "/api/selections", r#"{"ids":[]}"#, &[]),
        422,
        "no objects",
    );
    assert_json_error(
        &post(&s, "/api/selections?class=PLANET", "{}", &[]),
        400,
        "class",
    );
    assert_json_error(
        &post(&s, "/api/selections?ids=1,2", r#"{"ids":[3]}"#, &[]),
        400,
        "not both",
    );
    let unknown = post(&s, "/api/selections", r#"{"idz":[1]}"#, &[]);
    assert!((400..500).contains(&unknown.status), "{}", unknown.status);
    let huge = format!("{{\"ids\":[{}1]}}", "1,".repeat(2_200_000));
    assert_eq!(post(&s, "/api/selections", &huge, &[]).status, 413);

    // A run on the selection predicts exactly its objects.
    let launch = serde_json::json!({"world_size": 2, "batch_size": 512, "data_prefix": prefix});
    let created = post(&s, "/api/runs", &launch.to_string(), &[]);
    assert_eq!(
        created.status,
        202,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    let id = created.json()["id"].as_str().unwrap().to_string();
    // Its row is there as soon as its id is given out.
    assert_eq!(get(&s, &format!("/api/runs/{id}")).status, 200);
    let events = get(&s, &format!("/api/runs/{id}/events"));
    assert!(String::from_utf8_lossy(&events.body).contains(r#""status":"succeeded""#));
    // A finished run's events, again: all of them, in pages, numbered.
    let lines = |body: &[u8]| -> Vec<String> {
        String::from_utf8_lossy(body)
            .lines()
            .filter(|l| l.starts_with("id:") || l.starts_with("data:"))
            .map(str::to_string)
            .collect()
    };
    let again = get(&s, &format!("/api/runs/{id}/events"));
    assert_eq!(lines(&again.body), lines(&events.body));
    let results = get(&s, &format!("/api/runs/{id}/results")).json();
    assert_eq!(results["summary"]["objects"].as_u64(), Some(expected));

    // Renderings and real objects in one run: the renderings are counted and
    // left out of the metrics and the scatter (their labels drew them).
    let ids_of = |provenance: &str| -> Vec<i64> {
        get(
            &s,
            &format!("/api/objects?provenance={provenance}&class=GALAXY&limit=4"),
        )
        .json()["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_i64().unwrap())
            .collect()
    };
    let (synthetic, real) = (ids_of("synthetic"), ids_of("real"));
    assert_eq!((synthetic.len(), real.len()), (4, 4));
    let both = [synthetic.clone(), real.clone()].concat();
    let body = serde_json::json!({ "ids": both });
    let mixed = post(&s, "/api/selections", &body.to_string(), &[]).json();
    let launch =
        serde_json::json!({"world_size": 1, "batch_size": 64, "data_prefix": mixed["data_prefix"]});
    let id = accepted_id(&post(&s, "/api/runs", &launch.to_string(), &[]));
    let events = get(&s, &format!("/api/runs/{id}/events"));
    assert!(String::from_utf8_lossy(&events.body).contains(r#""status":"succeeded""#));
    let results = get(&s, &format!("/api/runs/{id}/results")).json();
    let metrics = &results["summary"]["metrics"];
    assert_eq!(results["summary"]["objects"], 8, "{results}");
    assert_eq!(metrics["synthetic"], 4, "{metrics}");
    assert_eq!(metrics["galaxy"]["n"], 4, "{metrics}");
    let plotted: Vec<i64> = results["scatter"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().unwrap())
        .collect();
    assert!(
        plotted.iter().all(|i| real.contains(i)) && plotted.len() == 4,
        "{plotted:?}"
    );

    // A CLI run given this run's result_path is refused, and its row (which
    // names that path) shows no results but its own: none.
    let request = data_dir().join(format!("clash-{id}.json"));
    let payload = serde_json::json!({"data_prefix": "catalog", "batch_size": 64, "world_size": 1,
        "result_path": format!("results/{id}")});
    std::fs::write(&request, payload.to_string()).unwrap();
    let clash = Command::new(env!("CARGO_BIN_EXE_cosmicai"))
        .args(["run", "--data"])
        .arg(data_dir())
        .arg("--request")
        .arg(&request)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&clash.stderr);
    assert!(said.contains("already holds the results"), "{said}");
    assert!(!clash.status.success());
    let runs = get(&s, "/api/runs?limit=500").json();
    let refused = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["result_path"] == format!("results/{id}") && r["id"] != id.as_str())
        .expect("the refused run's row")
        .clone();
    assert_json_error(
        &get(
            &s,
            &format!("/api/runs/{}/results", refused["id"].as_str().unwrap()),
        ),
        409,
        &format!("holds run {id}'s"),
    );
}

#[test]
fn a_cancelled_run_stops() {
    // Workers that wait 5 s after loading the model: the run is still going when
    // the cancel comes, whatever this machine's speed (no guessed sleep).
    let s = start_in(
        data_dir(),
        "127.0.0.1:0",
        &[("COSMICAI_WORKER_PAUSE_MS", "5000")],
    );
    let id = accepted_id(&post(
        &s,
        "/api/runs",
        r#"{"world_size":4,"batch_size":8}"#,
        &[],
    ));
    // A rank with its model loaded, in its pause: the cancel stops running work.
    let waited = std::time::Instant::now();
    while !String::from_utf8_lossy(&get(&s, &format!("/api/runs/{id}")).body).contains("rank_ready")
    {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "no rank of {id} got ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        post(&s, &format!("/api/runs/{id}/cancel"), "", &[]).status,
        202
    );
    let text =
        String::from_utf8_lossy(&get(&s, &format!("/api/runs/{id}/events")).body).into_owned();
    assert!(text.contains("cancelled"), "{text}");
    assert!(
        text.contains(r#""event":"finished""#) && !text.contains(r#""status":"succeeded""#),
        "{text}"
    );
    // The stream's last word is the registry's.
    let status = get(&s, &format!("/api/runs/{id}")).json()["run"]["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        text.contains(&format!(r#""status":"{status}""#)),
        "{status}: {text}"
    );
}

#[test]
fn bad_bodies_get_json_errors() {
    let s = start();
    assert_json_error(&post(&s, "/api/runs", "{not json", &[]), 400, "");
    assert_json_error(
        &post(
            &s,
            "/api/runs",
            r#"{"world_size":1,"batch_size":1,"bogus":1}"#,
            &[],
        ),
        422,
        "bogus",
    );
    assert_json_error(
        &post(&s, "/api/runs", r#"{"world_size":0,"batch_size":1}"#, &[]),
        422,
        "world_size",
    );
    // CAI's rank-per-file world sizes are for AWS; here each rank is a process.
    assert_json_error(
        &post(
            &s,
            "/api/runs",
            r#"{"world_size":40000,"batch_size":1}"#,
            &[],
        ),
        422,
        "world_size 40000: at most 10000 ranks on this machine",
    );
    assert_json_error(
        &post(
            &s,
            "/api/runs",
            r#"{"world_size":1,"batch_size":1,"target":"aws"}"#,
            &[],
        ),
        422,
        "aws",
    );
    let big = format!(
        r#"{{"world_size":1,"batch_size":1,"data_prefix":"{}"}}"#,
        "a".repeat(100_000)
    );
    assert_json_error(
        &post(&s, "/api/runs", &big, &[]),
        413,
        "POST /api/runs: the body is larger than the 64 KB this endpoint takes",
    );
}

#[test]
fn data_already_in_the_bucket_is_named_checked_and_never_estimated() {
    let s = start();
    // s3_data is the AWS deployment's bucket: refused for a local run, and for an
    // estimate (made from the data here).
    let in_bucket = r#"{"world_size":1,"batch_size":1,"s3_data":"cai-data"}"#;
    assert_json_error(
        &post(&s, "/api/runs", in_bucket, &[]),
        422,
        "give target aws",
    );
    assert_json_error(&post(&s, "/api/estimate", in_bucket, &[]), 422, "s3_data");
    // A server with a deployment (never reached: the folder is refused first).
    let aws = start_in(
        data_dir(),
        "127.0.0.1:0",
        &[
            ("COSMICAI_AWS_BUCKET", "stack-bucket"),
            (
                "COSMICAI_STATE_MACHINE_ARN",
                "arn:aws:states:us-east-1:123456789012:stateMachine:cosmicai",
            ),
            // Nothing listens there: the accepted run fails at once, offline.
            ("COSMICAI_AWS_ENDPOINT", "http://127.0.0.1:1"),
            ("AWS_ACCESS_KEY_ID", "test"),
            ("AWS_SECRET_ACCESS_KEY", "test"),
        ],
    );
    let launch = |s3_data: &str| {
        format!(r#"{{"world_size":1,"batch_size":1,"target":"aws","s3_data":"{s3_data}"}}"#)
    };
    for (given, said) in [
        (
            "s3://cai-bucket/data",
            "aws s3 sync s3://cai-bucket/data s3://stack-bucket/data",
        ),
        ("s3://stack-bucket/", "names the whole bucket"),
        ("/", "names the whole bucket"),
        ("../data", "s3_data '../data'"),
    ] {
        assert_json_error(&post(&aws, "/api/runs", &launch(given), &[]), 422, said);
    }
    // Data in the bucket needs no dataset here: accepted with none of that name.
    let accepted = post(
        &aws,
        "/api/runs",
        r#"{"world_size":1,"batch_size":1,"target":"aws","s3_data":"cai-data","data_prefix":"not-here"}"#,
        &[],
    );
    assert_eq!(
        accepted.status,
        202,
        "{}",
        String::from_utf8_lossy(&accepted.body)
    );
}

#[test]
fn the_openapi_document_lists_every_endpoint() {
    let s = start();
    let doc = get(&s, "/api/openapi.json").json();
    let paths = doc["paths"].as_object().unwrap();
    // Every route the router serves under /api, read from its source, is documented.
    let router = include_str!("../src/server/mod.rs");
    let routes: std::collections::BTreeSet<&str> = router
        .split(".route(")
        .skip(1)
        .filter_map(|r| r.trim_start().strip_prefix('"')?.split('"').next())
        .filter(|p| p.starts_with("/api/") && *p != "/api/openapi.json" && !p.contains("{*"))
        .collect();
    assert!(routes.len() >= 21, "{routes:?}");
    for p in &routes {
        assert!(paths.contains_key(*p), "{p} is served but not documented");
    }
    // And the launches document their Idempotency-Key.
    let launch = &doc["paths"]["/api/runs"]["post"];
    assert!(launch.to_string().contains("Idempotency-Key"), "{launch}");
    let home = get(&s, "/");
    assert_eq!(home.status, 200);
    assert!(String::from_utf8_lossy(&home.body).contains("/api/openapi.json"));
}

#[test]
fn a_sweep_runs_every_world_size_and_reports_each() {
    let s = start();
    assert_json_error(
        &post(
            &s,
            "/api/sweeps",
            r#"{"world_sizes":[],"batch_size":512}"#,
            &[],
        ),
        422,
        "world_sizes",
    );
    assert_json_error(
        &post(
            &s,
            "/api/sweeps",
            r#"{"world_sizes":[1,100],"batch_size":512}"#,
            &[],
        ),
        422,
        "100",
    );
    assert_json_error(
        &post(
            &s,
            "/api/sweeps",
            r#"{"world_sizes":[1],"batch_size":512,"data_prefix":"../x"}"#,
            &[],
        ),
        422,
        "data_prefix",
    );
    let created = post(
        &s,
        "/api/sweeps",
        r#"{"world_sizes":[1,2],"batch_size":4096,"file_limit":4}"#,
        &[],
    );
    let id = accepted_id(&created);
    let info = sweep_when_over(&s, &id);
    assert_eq!(info["state"], "finished", "{info}");
    let first = (id.clone(), info.clone());
    // Listed, to be found again without its link.
    let listed = get(&s, "/api/sweeps").json();
    assert_eq!(listed[0], info, "{listed}");
    let rows = info["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["world_size"], 1);
    assert_eq!(rows[1]["world_size"], 2);
    assert!(
        rows.iter()
            .all(|r| r["status"] == "succeeded" && r["objects"] == 4 * 4096)
    );
    // Each of its runs streams its events to its page, as a run started alone
    // does, and is stopped through its sweep.
    let run = rows[1]["run_id"].as_str().unwrap();
    let events = sse_events(&get(&s, &format!("/api/runs/{run}/events")).body);
    let finished = events
        .iter()
        .filter(|(_, e)| e["event"] == "rank_finished")
        .count();
    assert_eq!(finished, 2, "{events:?}");
    assert_eq!(
        events.last().unwrap().1["status"],
        "succeeded",
        "{events:?}"
    );
    assert_json_error(
        &post(&s, &format!("/api/runs/{run}/cancel"), "", &[]),
        409,
        "already finished",
    );
    assert_json_error(&get(&s, "/api/sweeps/sweep-nope"), 404, "no such sweep");
    assert_json_error(
        &post(&s, &format!("/api/sweeps/{id}/cancel"), "", &[]),
        409,
        "already over",
    );

    // A slow sweep, cancelled: its running run stops and no more start.
    let slow = post(
        &s,
        "/api/sweeps",
        r#"{"world_sizes":[4,4,4],"batch_size":8}"#,
        &[],
    );
    let id = slow.json()["id"].as_str().unwrap().to_string();
    // Its running run is stopped through the sweep, never alone. (Asked of the
    // sweep: other tests' runs of the same shape share this server's registry.)
    let running = running_run_of(&s, &id);
    assert_json_error(
        &post(&s, &format!("/api/runs/{running}/cancel"), "", &[]),
        409,
        &format!("part of sweep {id}"),
    );
    // Its page names the sweep, whose cancel stops it.
    assert_eq!(
        get(&s, &format!("/api/runs/{running}")).json()["sweep"],
        id.as_str()
    );
    assert_eq!(
        post(&s, &format!("/api/sweeps/{id}/cancel"), "", &[]).status,
        202
    );
    let info = sweep_when_over(&s, &id);
    assert_eq!(info["state"], "cancelled", "{info}");
    assert!(info["rows"].as_array().unwrap().len() <= 1, "{info}");

    // The server stops during a sweep: another one started on the same data
    // finds every sweep again, the one running then interrupted.
    let stopped = accepted_id(&post(
        &s,
        "/api/sweeps",
        r#"{"world_sizes":[4,4,4],"batch_size":8}"#,
        &[],
    ));
    running_run_of(&s, &stopped);
    drop(s);
    let s = start();
    let info = get(&s, &format!("/api/sweeps/{stopped}")).json();
    assert_eq!(info["state"], "interrupted", "{info}");
    assert_eq!(info["running"], Value::Null, "{info}");
    assert_json_error(
        &post(&s, &format!("/api/sweeps/{stopped}/cancel"), "", &[]),
        409,
        "not running on this server (it is interrupted)",
    );
    assert!(
        info["error"].as_str().unwrap().contains("server stopped"),
        "{info}"
    );
    assert_eq!(get(&s, &format!("/api/sweeps/{}", first.0)).json(), first.1);
    let listed = get(&s, "/api/sweeps").json();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert!(
        [stopped.as_str(), id.as_str(), first.0.as_str()]
            .iter()
            .all(|i| ids.contains(i)),
        "{ids:?}"
    );
}

/// Sweep `id`'s info once it is no longer running.
fn sweep_when_over(s: &Server, id: &str) -> Value {
    let started = std::time::Instant::now();
    loop {
        let info = get(s, &format!("/api/sweeps/{id}")).json();
        if info["state"] != "running" {
            return info;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "sweep {id} still running: {info}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The id of the run sweep `id` is running now, once it runs one.
fn running_run_of(s: &Server, id: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let info = get(s, &format!("/api/sweeps/{id}")).json();
        if let Some(run) = info["running"].as_str() {
            return run.to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60) && info["state"] == "running",
            "no run of sweep {id} running: {info}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

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
    // Its run, cut short, is interrupted at the next start.
    let again = start_in(dir.path(), "127.0.0.1:0", &[]);
    assert_eq!(
        get(&again, &format!("/api/runs/{id}")).json()["run"]["status"],
        "interrupted"
    );
}

/// The shared data's datasets, copied into `to` for a server of its own: not
/// its registry or results, which other tests' runs write to meanwhile (a file
/// renamed away mid-copy would fail the copy).
fn copy_datasets(to: &Path) {
    for folder in ["catalog", "real", "synthetic"] {
        copy_tree(&data_dir().join(folder), &to.join(folder));
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A partition of galaxies `ids` with `height x width` cutouts at `path`.
fn write_test_partition(path: &Path, ids: &[i64], (height, width): (usize, usize)) {
    use cosmicai_engine::partition::{
        Images, ObjectRow, Partition, PartitionMeta, Source, write_partition,
    };
    let mut partition = Partition::new(
        PartitionMeta::default(),
        vec![Source {
            name: "test".into(),
            provenance: cosmicai_shared::Provenance::Real,
            detail: "a partition written by a test".into(),
        }],
    );
    for &object_id in ids {
        let row = ObjectRow {
            object_id,
            ra: 10.0,
            dec: 1.0,
            magnitudes: [19.0, 18.0, 17.5, 17.2, 17.0],
            redshift: 0.1,
            class: cosmicai_shared::Class::Galaxy,
        };
        partition.push(row, 0);
    }
    partition.images = Some(Images {
        height,
        width,
        pixels: vec![1.0; ids.len() * 5 * height * width],
    });
    write_partition(path, &partition).unwrap();
}

#[test]
fn objects_with_non_square_cutouts_are_served_without_an_image() {
    let dir = tempfile::tempdir().unwrap();
    copy_datasets(dir.path());
    // One object whose cutouts are 32 x 40: the partition reader accepts them.
    let path = dir.path().join("real/part-odd.safetensors");
    write_test_partition(&path, &[4242], (32, 40));
    let s = start_in(dir.path(), "127.0.0.1:0", &[]);
    let detail = get(&s, "/api/objects/4242");
    assert_eq!(detail.status, 200);
    assert_eq!(
        detail.json()["object"]["has_image"],
        false,
        "{}",
        detail.json()
    );
    for path in ["/api/objects/4242/image.png", "/api/cutouts?ids=4242"] {
        let r = get(&s, path);
        assert_eq!(r.status, 404, "{path}");
        assert!(
            r.json()["error"].as_str().unwrap().contains("no image"),
            "{path}"
        );
    }
    // The server is still up.
    assert_eq!(get(&s, "/api/health").status, 200);
}

#[test]
fn errors_name_paths_inside_the_data_directory_never_where_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_datasets(dir);
    let broken = dir.join("broken-partitions");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("0.safetensors"), b"not a partition at all").unwrap();
    let s = start_in(dir, "127.0.0.1:0", &[]);
    let created = post(
        &s,
        "/api/runs",
        r#"{"world_size":1,"batch_size":8,"data_prefix":"broken-partitions"}"#,
        &[],
    );
    let text = match created.status {
        202 => {
            let id = created.json()["id"].as_str().unwrap().to_string();
            String::from_utf8_lossy(&get(&s, &format!("/api/runs/{id}/events")).body).into_owned()
        }
        _ => String::from_utf8_lossy(&created.body).into_owned(),
    };
    assert!(text.contains("broken-partitions"), "{text}");
    let absolute = std::fs::canonicalize(dir).unwrap().display().to_string();
    assert!(!text.contains(&absolute), "{text}");
}

#[test]
fn a_partition_rewritten_under_the_server_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    copy_datasets(dir.path());
    let path = dir.path().join("synthetic/part-rewritten.safetensors");
    let ids: Vec<i64> = (5_000..5_064).collect();
    write_test_partition(&path, &ids, (32, 32));
    let s = start_in(dir.path(), "127.0.0.1:0", &[]);
    assert_eq!(get(&s, "/api/objects/5063/image.png").status, 200);
    // `cp new.safetensors x.safetensors`: the same file, cut short in place.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(4096)
        .unwrap();
    for path in ["/api/objects/5063/image.png", "/api/cutouts?ids=5063"] {
        assert_json_error(&get(&s, path), 500, "changed since it was opened");
    }
    assert_eq!(get(&s, "/api/health").status, 200);
}

/// `serve --archive`: a catalog object without a cutout gets one, cut from its
/// field's frames fetched from the archive (served in this process), the same
/// pixels `ingest` cuts from the same frames; it survives a restart.
#[test]
fn a_catalog_objects_real_cutout_is_fetched_from_the_archive_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    // The bundled catalogs hold no object on the bundled field: a catalog that
    // does, with real/ and synthetic/ from the shared data directory.
    copy_tree(&data_dir().join("real"), &dir.path().join("real"));
    copy_tree(&data_dir().join("synthetic"), &dir.path().join("synthetic"));
    let csv = dir.path().join("objects.csv");
    std::fs::write(
        &csv,
        "objid,ra,dec,u,g,r,i,z,run,rerun,camcol,field,specobjid,class,redshift\n\
         1,38.30,-0.10,20.1,19.0,18.2,17.8,17.5,2820,301,3,122,0,GALAXY,0.11\n\
         4,183.5,0.09,19.4,17.0,15.9,15.5,15.2,752,301,4,267,0,STAR,0.0\n",
    )
    .unwrap();
    let csv_arg = csv.to_str().unwrap();
    common::ok_json(&[
        "catalog",
        "import",
        csv_arg,
        "--out",
        dir.path().join("catalog").to_str().unwrap(),
        "--json",
    ]);
    let archive = common::archive::Shared::default();
    let url = common::archive::serve(archive.clone());
    let s = start_with(
        dir.path(),
        "127.0.0.1:0",
        &[],
        &["--archive", &url, "--archive-catalog", csv_arg],
    );
    let galaxy = cosmicai_engine::partition::object_id(38.30, -0.10);
    let detail = get(&s, &format!("/api/objects/{galaxy}")).json();
    assert_eq!(detail["object"]["has_image"], false);
    assert_eq!(
        detail["archive"],
        serde_json::json!({"field": "002820-3-0122", "state": "available"})
    );
    assert_eq!(
        get(&s, &format!("/api/objects/{galaxy}/image.png")).status,
        404
    );

    let asked = post(&s, &format!("/api/objects/{galaxy}/fetch"), "", &[]);
    assert_eq!(
        asked.status,
        202,
        "{}",
        String::from_utf8_lossy(&asked.body)
    );
    let detail = archive_outcome(&s, galaxy);
    assert_eq!(detail["archive"]["state"], "ready", "{detail}");
    assert_eq!(detail["object"]["has_image"], true);
    assert_eq!(detail["object"]["provenance"], "real");
    assert_eq!(detail["image_size"], 64);
    let png = get(&s, &format!("/api/objects/{galaxy}/image.png?view=r"));
    assert_eq!(png.status, 200);
    assert_eq!(&png.body[..4], b"\x89PNG");
    // Exactly the field's five frames were asked for; asking again fetches nothing.
    assert_eq!(archive.lock().unwrap().requests.len(), 5);
    assert_eq!(
        post(&s, &format!("/api/objects/{galaxy}/fetch"), "", &[]).json()["state"],
        "ready"
    );
    assert_eq!(archive.lock().unwrap().requests.len(), 5);

    // The pixels are those `ingest` cuts from the same frames.
    let served = get(&s, &format!("/api/cutouts?ids={galaxy}"));
    let served = cosmicai_shared::cutouts::decode(&served.body).unwrap();
    let ingested = dir.path().join("ingested");
    common::ok_json(&[
        "ingest",
        "--frames",
        &asset(common::archive::FIELD_DIR),
        "--catalog",
        csv_arg,
        "--out",
        ingested.to_str().unwrap(),
        "--json",
    ]);
    let listed = cosmicai_engine::dataset::list_partitions(&ingested).unwrap();
    let cut = cosmicai_engine::partition::read_partition(&listed[0]).unwrap();
    let row = cut.object_id.iter().position(|&id| id == galaxy).unwrap();
    let plane = 5 * 64 * 64;
    let same = |a: f32, b: f32| a == b || (a.is_nan() && b.is_nan());
    let ingested_pixels = &cut.images.unwrap().pixels[row * plane..(row + 1) * plane];
    assert!(
        served[0]
            .pixels
            .iter()
            .zip(ingested_pixels)
            .all(|(a, b)| same(*a, *b))
    );

    // An object whose field the archive lacks fails, saying which frame.
    let star = cosmicai_engine::partition::object_id(183.5, 0.09);
    post(&s, &format!("/api/objects/{star}/fetch"), "", &[]);
    let detail = archive_outcome(&s, star);
    assert_eq!(detail["archive"]["state"], "failed", "{detail}");
    let error = detail["archive"]["error"].as_str().unwrap();
    assert!(error.contains("frame-u-000752-4-0267.fits.bz2"), "{error}");

    // After a restart without --archive the cutout is still the object's image.
    drop(s);
    let s = start_with(dir.path(), "127.0.0.1:0", &[], &[]);
    let detail = get(&s, &format!("/api/objects/{galaxy}")).json();
    assert_eq!(detail["object"]["has_image"], true, "{detail}");
    assert_eq!(detail["object"]["source"], "SDSS archive");
    assert!(detail.get("archive").is_none());
    assert_json_error(
        &post(&s, &format!("/api/objects/{star}/fetch"), "", &[]),
        404,
        "--archive",
    );
}

/// Object `id`'s detail once its archive fetch is over (ready or failed).
fn archive_outcome(s: &Server, id: i64) -> Value {
    for _ in 0..600 {
        let detail = get(s, &format!("/api/objects/{id}")).json();
        if matches!(
            detail["archive"]["state"].as_str(),
            Some("ready" | "failed")
        ) {
            return detail;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("object {id}: the archive fetch did not end in 60 s");
}

#[test]
fn settings_name_the_skyserver_and_a_bad_address_is_refused() {
    let s = start();
    let settings = get(&s, "/api/settings").json();
    assert_eq!(
        settings,
        serde_json::json!({
            "skyserver_jpeg": "https://skyserver.sdss.org/dr17/SkyServerWS/ImgCutout/getjpeg",
            "archive": false
        })
    );
    for bad in [
        "javascript:alert(1)",
        "https://sky.example/jpeg?x=\"><script>",
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_cosmicai"))
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--skyserver",
                bad,
                "--data-dir",
            ])
            .arg(data_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("--skyserver"),
            "{stderr}"
        );
    }
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

#[test]
fn the_sky_lists_every_placed_object_and_a_selection_comes_back_by_ids() {
    let s = start();
    let sky = get(&s, "/api/sky").json();
    let ids = sky["ids"].as_array().unwrap();
    let n = ids.len();
    let total = get(&s, "/api/objects?limit=1").json()["total"]
        .as_u64()
        .unwrap() as usize;
    // Catalog objects all have positions; only a few renderings or detections may not.
    assert!(n > 30_000 && n <= total, "{n} of {total}");
    for column in ["ra", "dec", "redshift", "r", "colours"] {
        assert_eq!(sky[column].as_array().unwrap().len(), n, "{column}");
    }
    // The colour plots' columns agree with the objects' magnitudes.
    let first = get(&s, &format!("/api/objects?ids={}", ids[0])).json()["objects"][0].clone();
    let m: Vec<f64> = (0..5)
        .map(|k| first["magnitudes"][k].as_f64().unwrap())
        .collect();
    let c = &sky["colours"][0];
    for (k, want) in [m[0] - m[1], m[1] - m[2], m[2] - m[3]]
        .into_iter()
        .enumerate()
    {
        assert!(
            (c[k].as_f64().unwrap() - want).abs() < 2e-3,
            "colour {k}: {c} vs {m:?}"
        );
    }
    let classes = sky["classes"].as_str().unwrap();
    assert_eq!(classes.len(), n);
    assert!(classes.chars().all(|c| "GSQU".contains(c)));
    assert!(["G", "S", "Q"].iter().all(|c| classes.contains(c)));
    assert!(
        sky["ra"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| (0.0..360.0).contains(&v.as_f64().unwrap()))
    );
    assert!(
        sky["dec"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| (-90.0..=90.0).contains(&v.as_f64().unwrap()))
    );
    // A selection on the map, fetched back in its order, with the other filters applied.
    let pick: Vec<i64> = [7, 3, 500, 0]
        .iter()
        .map(|&i| ids[i].as_i64().unwrap())
        .collect();
    let list = pick
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let page = get(
        &s,
        &format!("/api/objects?ids={list},999999999999&limit=1000"),
    )
    .json();
    let got: Vec<i64> = page["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(got, pick, "unknown ids are skipped, the order kept");
    assert_eq!(page["total"], 4);
    let c = classes.as_bytes()[7] as char;
    let class = match c {
        'G' => "GALAXY",
        'S' => "STAR",
        'Q' => "QSO",
        _ => "UNKNOWN",
    };
    let filtered = get(&s, &format!("/api/objects?ids={list}&class={class}")).json();
    assert!(
        filtered["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["class"] == class)
    );
    assert!(filtered["objects"][0]["id"] == pick[0] || class != "GALAXY" || c != 'G');
    // Hostile lists: too many ids, or not numbers.
    let many = (0..1001)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",");
    for (query, says) in [
        (many.as_str(), "at most 1000"),
        ("1,two,3", "\"two\" is not an object id"),
    ] {
        assert_json_error(&get(&s, &format!("/api/objects?ids={query}")), 400, says);
    }
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
    // The API answers meanwhile.
    assert_eq!(get(&s, "/api/health").status, 200);
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
    let line = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("listening on "))
        .unwrap();
    Server {
        child,
        addr: format!("127.0.0.1:{}", line.rsplit(':').next().unwrap()),
    }
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

#[test]
fn a_launch_sent_again_with_its_idempotency_key_starts_nothing_new() {
    let dir = tempfile::tempdir().unwrap();
    copy_datasets(dir.path());
    let s = start_with(dir.path(), "127.0.0.1:0", &[], &["--max-runs", "8"]);
    let body = r#"{"world_size":1,"batch_size":8}"#;
    let key = "Idempotency-Key: 5f0c-launch-1";
    let first = accepted_id(&post(&s, "/api/runs", body, &[key]));
    // The same launch again (a client that lost the answer), in other spacing too.
    assert_eq!(accepted_id(&post(&s, "/api/runs", body, &[key])), first);
    let respaced = r#"{ "batch_size": 8, "world_size": 1 }"#;
    assert_eq!(accepted_id(&post(&s, "/api/runs", respaced, &[key])), first);
    // Another launch with the key: refused, naming it.
    let other = r#"{"world_size":2,"batch_size":8}"#;
    assert_json_error(&post(&s, "/api/runs", other, &[key]), 422, "5f0c-launch-1");
    // A key is 1 to 255 visible characters.
    for bad in [
        "Idempotency-Key: a b",
        &format!("Idempotency-Key: {}", "k".repeat(256)),
    ] {
        assert_json_error(&post(&s, "/api/runs", body, &[bad]), 400, "Idempotency-Key");
    }
    // A refused launch holds no key: sent again mended, it starts.
    let mend = "Idempotency-Key: mend-me";
    let refused = post(
        &s,
        "/api/runs",
        r#"{"world_size":0,"batch_size":8}"#,
        &[mend],
    );
    assert_eq!(refused.status, 422);
    let mended = accepted_id(&post(&s, "/api/runs", body, &[mend]));
    assert_ne!(mended, first);
    // Sweeps keep their own keys.
    let sweep_body = r#"{"world_sizes":[1],"batch_size":8}"#;
    let sweep = accepted_id(&post(&s, "/api/sweeps", sweep_body, &[key]));
    assert_eq!(
        accepted_id(&post(&s, "/api/sweeps", sweep_body, &[key])),
        sweep
    );
    // Keys outlive a restart (once the sweep's run has its row: a sweep starts
    // its runs from its own thread).
    let three_runs = || get(&s, "/api/runs").json().as_array().unwrap().len() == 3;
    let waited = std::time::Instant::now();
    while !three_runs() {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the sweep's run never listed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(s);
    let again = start_in(dir.path(), "127.0.0.1:0", &[]);
    assert_eq!(accepted_id(&post(&again, "/api/runs", body, &[key])), first);
    // One run for each key, whatever the retries: the first, the mended one and the sweep's.
    let runs = get(&again, "/api/runs").json();
    let ids: Vec<&str> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.iter().filter(|id| **id == first).count(), 1);
    assert_eq!(ids.len(), 3, "{ids:?}");
}
