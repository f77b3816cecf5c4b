//! Sweeps over world sizes through the API.

use super::*;

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
