//! What a hostile caller meets: paths that leave the data directory, the bearer token, pages of other sites and host names, bad bodies, headers trickled in, errors that name where the data lives; and the OpenAPI document of every endpoint.

use super::*;

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
        ("/api/runs/run-x/resume", ""),
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
fn bad_bodies_get_json_errors() {
    let s = start();
    assert_json_error(&post(&s, "/api/runs", "{not json", &[]), 400, "JSON");
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
    assert_json_error(
        &post(
            &s,
            "/api/runs",
            r#"{"world_size":1,"batch_size":100000}"#,
            &[],
        ),
        422,
        "batch_size 100000 is more than 16384 objects",
    );
    // A selection's filters are checked as a listing's: a mistyped key would
    // select every object; a page's keys mean nothing there.
    assert_json_error(
        &post(&s, "/api/selections?clas=STAR", "{}", &[]),
        400,
        "clas: not a parameter",
    );
    assert_json_error(
        &post(&s, "/api/selections?class=STAR&limit=5", "{}", &[]),
        400,
        "limit: a selection holds every object its filters pass",
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
fn the_openapi_document_lists_every_endpoint() {
    let s = start();
    let doc = get(&s, "/api/openapi.json").json();
    let paths = doc["paths"].as_object().unwrap();
    // Every route the router serves under /api, read from its source, is documented.
    let router = include_str!("../../src/server/mod.rs");
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
fn a_client_that_trickles_its_headers_is_cut_off() {
    // The production bound is 30 s; the same hyper timer at 1 s here.
    let s = start_in(
        data_dir(),
        "127.0.0.1:0",
        &[("COSMICAI_HEADER_READ_TIMEOUT_S", "1")],
    );
    let mut slow = TcpStream::connect(&s.addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    slow.write_all(b"GET /api/health HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = std::time::Instant::now();
    // The headers never end: the server answers 408 or closes, within seconds.
    let mut reply = Vec::new();
    let _ = slow.read_to_end(&mut reply);
    let reply = String::from_utf8_lossy(&reply);
    // Cut at the bound: not at once, not never.
    assert!(
        started.elapsed() >= Duration::from_millis(900)
            && started.elapsed() < Duration::from_secs(10)
            && (reply.is_empty() || reply.starts_with("HTTP/1.1 408")),
        "{:?} after {:?}",
        reply,
        started.elapsed()
    );
    // A client that sends its request whole is answered as ever.
    assert_eq!(get(&s, "/api/health").status, 200);
}

#[test]
fn one_client_cannot_hold_every_connection() {
    // A quarter of the 1,024 connections per client (fewer where the process
    // may open fewer files): the caller (here, all of loopback) holding its
    // share of idle ones is refused the next, closed at once without a reply,
    // and served again once it lets one go.
    let s = start_in(data_dir(), "127.0.0.1:0", &[]);
    let try_health = || {
        let mut extra = TcpStream::connect(&s.addr).unwrap();
        extra
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let _ = extra
            .write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
        let mut reply = Vec::new();
        let _ = extra.read_to_end(&mut reply);
        reply
    };
    // Held open, each answering a request (so the server has surely taken it),
    // until one is refused.
    let mut held: Vec<TcpStream> = Vec::new();
    let refused = loop {
        assert!(held.len() <= 256, "more than a quarter of 1,024 held");
        let mut c = TcpStream::connect(&s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = c.write_all(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let mut first = [0u8; 12];
        match c.read_exact(&mut first) {
            Ok(()) => {
                assert_eq!(&first, b"HTTP/1.1 200");
                held.push(c);
            }
            Err(_) => break held.len(),
        }
    };
    assert!(refused >= 8, "only {refused} connections for one client");
    assert!(try_health().is_empty(), "a connection past the share");
    held.pop();
    let started = std::time::Instant::now();
    let served = loop {
        let reply = try_health();
        if !reply.is_empty() || started.elapsed() > Duration::from_secs(10) {
            break reply;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        served.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&served)
    );
}

#[test]
fn a_trusted_proxy_holds_no_share_of_the_connections() {
    // Behind --trusted-proxy every user comes through one address: it may hold
    // more than one client's 256 connections.
    let s = start_with(
        data_dir(),
        "127.0.0.1:0",
        &[],
        &["--trusted-proxy", "127.0.0.1"],
    );
    let held: Vec<TcpStream> = (0..300)
        .map(|i| {
            let mut c = TcpStream::connect(&s.addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(
                b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
            )
            .unwrap();
            let mut first = [0u8; 12];
            c.read_exact(&mut first)
                .unwrap_or_else(|e| panic!("connection {i}: {e}"));
            assert_eq!(&first, b"HTTP/1.1 200", "connection {i}");
            c
        })
        .collect();
    assert_eq!(held.len(), 300);
}
