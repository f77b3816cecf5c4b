//! Runs through the API: admission and the memory budget, event streams, progress to a scatter, selections as datasets, cancel, data in the bucket, and launches sent again with their Idempotency-Key.

use super::*;

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
    // Its row says why, with none of the host's paths.
    let why = refused["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("already holds the results") && !why.contains(&*data_dir().to_string_lossy()),
        "{refused}"
    );
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
    // The stream's last word is the registry's: cancelled.
    let status = get(&s, &format!("/api/runs/{id}")).json()["run"]["status"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(status, "cancelled");
    assert!(
        text.contains(&format!(r#""status":"{status}""#)),
        "{status}: {text}"
    );

    // Resumed: its ranks without results run again, under the same id; a
    // second resume while it runs is refused.
    let detail = get(&s, &format!("/api/runs/{id}")).json();
    assert_eq!(detail["run"]["resumable"], true, "{detail}");
    assert_eq!(
        post(&s, &format!("/api/runs/{id}/resume"), "", &[]).status,
        202
    );
    let again = post(&s, &format!("/api/runs/{id}/resume"), "", &[]);
    assert_eq!(again.status, 409);
    assert!(
        String::from_utf8_lossy(&again.body).contains("is running"),
        "{}",
        String::from_utf8_lossy(&again.body)
    );
    let text =
        String::from_utf8_lossy(&get(&s, &format!("/api/runs/{id}/events")).body).into_owned();
    assert!(text.contains(r#""status":"succeeded""#), "{text}");
    let detail = get(&s, &format!("/api/runs/{id}")).json();
    assert_eq!(detail["run"]["status"], "succeeded", "{detail}");
    assert!(detail["run"].get("resumable").is_none(), "{detail}");
    let done = post(&s, &format!("/api/runs/{id}/resume"), "", &[]);
    assert_eq!(done.status, 409);
    assert!(
        String::from_utf8_lossy(&done.body).contains("nothing to resume"),
        "{}",
        String::from_utf8_lossy(&done.body)
    );
    assert_eq!(
        post(&s, "/api/runs/run-0-0-000000/resume", "", &[]).status,
        404
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
            "s3://Cai_Bucket/data",
            "bucket 'Cai_Bucket' holds characters S3 refuses",
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
