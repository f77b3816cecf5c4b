//! `cosmicai run` end to end on the bundled real catalogs: CAI's result layout,
//! the registry, bad requests refused up front, workers and coordinators killed.

mod common;
use common::{cosmicai, dataset, last_json_line, ok_json, same_json, workers};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn a_run_writes_cai_results_and_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = cosmicai(&[
        "run",
        "--data",
        &data,
        "--world-size",
        "3",
        "--batch-size",
        "500",
        "--result-path",
        "results/r1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = last_json_line(&out);
    assert_eq!(s["status"], "succeeded");
    assert_eq!(
        (s["ranks"].as_u64(), s["objects"].as_u64()),
        (Some(3), Some(8443))
    );
    assert_eq!(s["failed_ranks"].as_array().unwrap().len(), 0);
    assert!(s["duration_s"].as_f64().unwrap() > 0.0 && s["samples_per_s"].as_f64().unwrap() > 0.0);
    assert!(s["cost_usd"].as_f64().unwrap() > 0.0);
    // The breakdown too, with the data's storage a month beside the total.
    assert_eq!(s["cost"]["total_usd"], s["cost_usd"]);
    assert!(s["cost"]["data_bytes"].as_u64().unwrap() > 0);
    assert!(s["cost"]["storage_usd_month"].as_f64().unwrap() > 0.0);
    assert_eq!(s["result_path"], "results/r1");
    assert!(s["metrics"]["galaxy"]["nmad"].as_f64().unwrap() < 0.03);
    // The validation split, which the shipped PhotoZ never trained on, scored
    // apart: about a fifth of the galaxies.
    let (held, all) = (
        s["metrics"]["held_out"]["galaxy"]["n"].as_u64().unwrap(),
        s["metrics"]["galaxy"]["n"].as_u64().unwrap(),
    );
    assert!(held * 6 > all && held * 4 < all, "{held} of {all}");
    assert!(s["metrics"]["held_out"]["galaxy"]["nmad"].as_f64().unwrap() > 0.0);

    let results = PathBuf::from(&data).join("results/r1");
    for f in [
        "payload.json",
        "0.json",
        "1.json",
        "2.json",
        "combined_data.json",
        "summary.json",
        "predictions/0.safetensors",
    ] {
        assert!(results.join(f).exists(), "{f} missing");
    }
    // 4 files over 3 ranks, CAI's split (ceil of files left / ranks left): 2, 1, 1.
    let payload: Value =
        serde_json::from_slice(&std::fs::read(results.join("payload.json")).unwrap()).unwrap();
    let planned: Vec<usize> = payload["ranks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().len())
        .collect();
    assert_eq!(planned, [2, 1, 1]);
    let rank0: Value =
        serde_json::from_slice(&std::fs::read(results.join("0.json")).unwrap()).unwrap();
    for key in [
        "total_cpu_time (seconds)",
        "total_cpu_memory (MB)",
        "execution_time (seconds/batch)",
        "num_batches",
        "batch_size",
        "device",
        "throughput_bps",
        "sample_persec",
        "data_path",
    ] {
        assert!(!rank0[key].is_null(), "0.json lacks {key}");
    }
    // Two files of 2200 objects, batches of 500 across them, as CAI's one
    // DataLoader makes them: ceil(4400 / 500) = 9 (per file it was 5 + 5).
    assert_eq!(rank0["num_batches"].as_u64(), Some(9));
    // CAI's time per batch: the time over samples / batch_size (4400 / 500 = 8.8).
    let per_batch = rank0["execution_time (seconds/batch)"].as_f64().unwrap();
    let total = rank0["total_cpu_time (seconds)"].as_f64().unwrap();
    assert!(
        (per_batch - total / 8.8).abs() <= 1e-9 * total.max(1.0),
        "{rank0}"
    );
    assert!(rank0["system"]["cores"].as_u64().unwrap() >= 1);
    let combined: Value =
        serde_json::from_slice(&std::fs::read(results.join("combined_data.json")).unwrap())
            .unwrap();
    let combined = combined.as_array().unwrap();
    assert_eq!(combined.len(), 3);
    // combined_data.json is the rank files, in rank order; each rank's count is
    // its predictions file's, and each file is this run's.
    let run_id = s["run_id"].as_str().unwrap();
    let mut predictions = Vec::new();
    for (rank, entry) in combined.iter().enumerate() {
        let file: Value =
            serde_json::from_slice(&std::fs::read(results.join(format!("{rank}.json"))).unwrap())
                .unwrap();
        assert!(
            same_json(entry, &file),
            "combined_data.json[{rank}] is not {rank}.json: {entry} vs {file}"
        );
        assert_eq!(file["rank"].as_u64(), Some(rank as u64), "{file}");
        assert_eq!(file["run_id"], run_id, "{file}");
        let p = cosmicai_engine::pipeline::read_predictions(
            &std::fs::read(results.join(format!("predictions/{rank}.safetensors"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            file["objects"].as_u64(),
            Some(p.object_id.len() as u64),
            "rank {rank}"
        );
        predictions.push(p);
    }

    // The bill, from run_cost's documented counts (engine/src/cost.rs): 3 ranks
    // planned 2, 1 and 1 of the 4 files, CPU ranks in EXPRESS children, and
    // Initialize and Summarize on Lambda beside the ranks.
    let cost = &s["cost"];
    let per_rank = s["per_rank"].as_array().unwrap();
    assert_eq!(per_rank.len(), 3, "{s}");
    let attempts: u64 = per_rank
        .iter()
        .map(|m| m["attempts"].as_u64().unwrap().max(1))
        .sum();
    // A Lambda request an attempt, and one each for the two stages.
    assert_eq!(
        cost["lambda_requests"].as_u64(),
        Some(attempts + 2),
        "{cost}"
    );
    // The parent's 4 transitions and one a child; an EXPRESS execution a rank.
    assert_eq!(
        (
            cost["state_transitions"].as_u64(),
            cost["express_executions"].as_u64()
        ),
        (Some(4 + 3), Some(3)),
        "{cost}"
    );
    // PUT/LIST: one LIST page and payload.json and plan.json, 3 a rank, 2 by
    // Summarize. GET: the 4 partitions and a payload a rank, then Summarize's 3
    // a rank (local ranks count no GETs of their own).
    assert_eq!(
        cost["s3_put_list"].as_u64(),
        Some((1 + 2) + 3 * 3 + 2),
        "{cost}"
    );
    assert_eq!(cost["s3_get"].as_u64(), Some((4 + 3) + 3 * 3), "{cost}");
    // An EXPRESS child lasts as long as its rank, billed in 100 ms steps at 64 MB.
    let billed_ms: Vec<u64> = per_rank
        .iter()
        .map(|m| m["billed_duration_ms"].as_u64().unwrap())
        .collect();
    let express_s: f64 = billed_ms
        .iter()
        .map(|&ms| ms.div_ceil(100) as f64 / 10.0)
        .sum();
    let express_gb_s = cost["express_gb_s"].as_f64().unwrap();
    assert!(
        (express_gb_s - express_s * 64.0 / 1024.0).abs() < 1e-9,
        "{cost}"
    );
    // Lambda GB-s: the ranks' billed time and the two stages' (at least 1 ms
    // each), at the run's memory.
    let summary_file: Value =
        serde_json::from_slice(&std::fs::read(results.join("summary.json")).unwrap()).unwrap();
    let gb = summary_file["memory_mb"].as_f64().unwrap() / 1024.0;
    let ranks_s: f64 = billed_ms.iter().map(|&ms| ms as f64 / 1000.0).sum();
    assert!(
        cost["lambda_gb_s"].as_f64().unwrap() >= (ranks_s + 0.002) * gb - 1e-9,
        "{cost} vs {ranks_s} s of ranks at {gb} GB"
    );
    for m in s["per_rank"].as_array().unwrap() {
        assert!(m["billed_duration_ms"].as_u64().unwrap() >= 1);
        assert!(
            m["peak_rss_mb"].as_f64().unwrap() > 1.0 && m["cpu_time_s"].as_f64().unwrap() >= 0.0
        );
    }

    let out = cosmicai(&["runs", "--data", &data, "--json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["objects"].as_u64(), Some(8443));

    // Every object's prediction as one table, by partition and row.
    let id = runs[0]["id"].as_str().unwrap();
    let csv = tmp.path().join("z.csv");
    let csv_arg = csv.display().to_string();
    let export = |more: &[&str]| {
        let args = [
            "runs",
            "--data",
            &data,
            "--predictions",
            id,
            "--out",
            &csv_arg,
        ];
        cosmicai(&[&args[..], more].concat())
    };
    let out = export(&[]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("8443 objects from 3 ranks"), "{said}");
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(
        header[..7],
        [
            "rank",
            "partition",
            "row",
            "object_id",
            "class",
            "redshift",
            "predicted_redshift"
        ]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 8443);
    assert!(rows.iter().all(|r| r.len() == header.len()));
    assert!(rows.iter().all(|r| r[6].parse::<f32>().is_ok()));
    // Row for row, the ranks' predictions files in rank order: the object and
    // its predicted redshift.
    assert_eq!(
        predictions.iter().map(|p| p.object_id.len()).sum::<usize>(),
        rows.len()
    );
    let mut at = 0;
    for (rank, p) in predictions.iter().enumerate() {
        for (i, (id, q)) in p.object_id.iter().zip(&p.predicted).enumerate() {
            let r = &rows[at + i];
            assert_eq!(r[0], rank.to_string(), "row {}", at + i);
            assert_eq!(r[3].parse::<i64>().unwrap(), *id, "row {}", at + i);
            assert!(q.redshift.is_finite(), "rank {rank} object {id}");
            let z: f32 = r[6].parse().unwrap();
            assert!(
                (z - q.redshift).abs() <= 1e-4,
                "row {}: {z} vs {}",
                at + i,
                q.redshift
            );
        }
        at += p.object_id.len();
    }
    // Rank 0 read two partitions: its rows count up through the first, then
    // start again at the second.
    let keys = rank0["data_path"].as_array().unwrap();
    let first = keys[0].as_str().unwrap();
    let second = keys[1].as_str().unwrap();
    let in_first = rows.iter().filter(|r| r[1] == first).count();
    assert_eq!((rows[0][0], rows[0][1], rows[0][2]), ("0", first, "0"));
    assert_eq!(rows[in_first - 1][2], (in_first - 1).to_string());
    assert_eq!((rows[in_first][1], rows[in_first][2]), (second, "0"));
    let e = common::failure(&["runs", "--data", &data, "--predictions", "run-0-0-0"]);
    assert!(e.contains("run run-0-0-0: not in the registry"), "{e}");
    // The file written is not written over unasked; it is with --force.
    std::fs::write(&csv, "mine\n").unwrap();
    let refused = export(&[]);
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && e.contains("exists; pass --force"),
        "{e}"
    );
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), "mine\n");
    assert!(export(&["--force"]).status.success());
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), text);
}

#[test]
fn bad_requests_are_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    for (args, needle) in [
        (
            vec!["--world-size", "0", "--batch-size", "10"],
            "world_size",
        ),
        (vec!["--world-size", "1", "--batch-size", "0"], "batch_size"),
        (
            vec![
                "--world-size",
                "1",
                "--batch-size",
                "10",
                "--result-path",
                "../escape",
            ],
            "result_path",
        ),
        (
            vec![
                "--world-size",
                "1",
                "--batch-size",
                "10",
                "--result-path",
                "/tmp/abs",
            ],
            "result_path",
        ),
        (
            vec![
                "--world-size",
                "1",
                "--batch-size",
                "10",
                "--memory-mb",
                "64",
            ],
            "memory_mb",
        ),
        (
            vec![
                "--world-size",
                "1",
                "--batch-size",
                "10",
                "--concurrency",
                "0",
            ],
            "--concurrency",
        ),
        (
            vec!["--world-size", "1", "--batch-size", "10", "--timeout", "0"],
            "timeout_s 0: give more than 0",
        ),
        (
            vec![
                "--world-size",
                "1",
                "--batch-size",
                "10",
                "--device",
                "cuda",
            ],
            "cuda",
        ),
        (
            vec![
                "--world-size",
                "1",
                "--batch-size",
                "10",
                "--file-limit",
                "0",
            ],
            "file_limit",
        ),
        (
            vec![
                "--world-size",
                "1",
                "--batch-size",
                "10",
                "--precision",
                "bf16",
            ],
            "precision bf16 on device cpu runs AstroMAE only",
        ),
        (
            vec![
                "--world-size",
                "1",
                "--batch-size",
                "10",
                "--precision",
                "f16",
            ],
            "precision f16 runs on device cuda only",
        ),
    ] {
        let mut full = vec!["run", "--data", &data];
        full.extend(args);
        let out = cosmicai(&full);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && e.contains(needle) && !e.contains("panicked"),
            "{needle}: {e}"
        );
    }
    assert!(
        !PathBuf::from(&data).join("results").exists(),
        "a refused run wrote results"
    );
    assert!(!Path::new("/tmp/abs").exists());
    // Refused runs are not recorded; one that fails as it is planned (no
    // partitions to plan) is, with its error.
    let runs = |data: &str| ok_json(&["runs", "--data", data, "--json"]);
    assert_eq!(runs(&data), serde_json::json!([]));
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let empty = empty.display().to_string();
    let out = cosmicai(&[
        "run",
        "--data",
        &empty,
        "--world-size",
        "1",
        "--batch-size",
        "10",
    ]);
    assert!(!out.status.success());
    let listed = runs(&empty);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["status"], "failed", "{listed}");
}

fn start_paused_run(data: &str, extra: &[&str]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cosmicai"));
    // SIGINT as a terminal gives it: a test run as a background job (`make
    // test &`) inherits SIGINT ignored, which the run rightly keeps ignoring.
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    command
        .args([
            "run",
            "--data",
            data,
            "--world-size",
            "2",
            "--batch-size",
            "256",
            "--json",
        ])
        .args(extra)
        .env("COSMICAI_WORKER_PAUSE_MS", "1500")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn kill_one_worker(data: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(&pid) = workers(data).first() {
            // Give it time to load the model and pause, then kill it mid-run.
            std::thread::sleep(Duration::from_millis(300));
            // SAFETY: signalling a worker of the run this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            return pid;
        }
        assert!(Instant::now() < deadline, "no worker appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_worker_is_retried_and_the_run_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = start_paused_run(&data, &["--retries", "1", "--concurrency", "1"]);
    kill_one_worker(&data);
    let out = run.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = last_json_line(&out);
    assert_eq!(s["status"], "succeeded");
    assert_eq!(s["objects"].as_u64(), Some(8443));
    let attempts: Vec<u64> = s["per_rank"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(
        attempts.iter().sum::<u64>(),
        3,
        "one rank needed a second attempt: {attempts:?}"
    );
    // The killed attempt (300 ms and more) is billed too, as a retried call is.
    let retried = s["per_rank"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["attempts"] == 2)
        .unwrap();
    let own_ms = retried["duration_s"].as_f64().unwrap() * 1000.0;
    assert!(
        retried["billed_duration_ms"].as_f64().unwrap() >= own_ms + 300.0,
        "{retried}"
    );
}

#[test]
fn without_retries_a_killed_worker_fails_its_rank_and_keeps_the_others() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = start_paused_run(&data, &["--concurrency", "1", "--result-path", "results/k"]);
    kill_one_worker(&data);
    let out = run.wait_with_output().unwrap();
    // The summary, then exit code 3 (partial), so that a script stops there.
    assert_eq!(out.status.code(), Some(3));
    let s = last_json_line(&out);
    assert_eq!(s["status"], "partial");
    assert_eq!(s["failed_ranks"], serde_json::json!([0]));
    let error = s["per_rank"][0]["error"].as_str().unwrap();
    assert!(error.contains("killed by signal 9"), "{error}");
    // Its time until the kill is billed: the run's cost counts it, and its
    // row shows it.
    assert!(s["per_rank"][0]["billed_duration_ms"].as_u64().unwrap() >= 300);
    assert!(
        s["per_rank"][0]["duration_s"].as_f64().unwrap() >= 0.3,
        "{s}"
    );
    assert_eq!(s["objects"].as_u64(), Some(8443 - 4400));
    let results = PathBuf::from(&data).join("results/k");
    let combined: Value =
        serde_json::from_slice(&std::fs::read(results.join("combined_data.json")).unwrap())
            .unwrap();
    let combined = combined.as_array().unwrap();
    assert_eq!(combined.len(), 1);
    // Only rank 1's result, as its file has it, counting its predictions.
    assert_eq!(combined[0]["rank"], 1, "{}", combined[0]);
    let rank1: Value =
        serde_json::from_slice(&std::fs::read(results.join("1.json")).unwrap()).unwrap();
    assert!(
        same_json(&combined[0], &rank1),
        "{} vs {rank1}",
        combined[0]
    );
    assert_eq!(rank1["run_id"], s["run_id"], "{rank1}");
    let p = cosmicai_engine::pipeline::read_predictions(
        &std::fs::read(results.join("predictions/1.safetensors")).unwrap(),
    )
    .unwrap();
    assert_eq!(rank1["objects"].as_u64(), Some(p.object_id.len() as u64));

    // Resumed, and the resume killed in its turn: interrupted, not closed
    // from the partial summary it replaces.
    let id = s["run_id"].as_str().unwrap();
    let mut resume = Command::new(env!("CARGO_BIN_EXE_cosmicai"))
        .args(["run", "--data", &data, "--resume", id, "--json"])
        .env("COSMICAI_WORKER_PAUSE_MS", "5000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while workers(&data).is_empty() {
        assert!(Instant::now() < deadline, "no worker appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    resume.kill().unwrap();
    resume.wait().unwrap();
    let runs = ok_json(&["runs", "--data", &data, "--json"]);
    assert_eq!(runs[0]["status"], "interrupted", "{runs}");
    assert_eq!(runs[0]["resumable"], true, "{runs}");
    // Resumed again: rank 1 kept; rank 0 billed for its killed attempt too.
    let out = cosmicai(&["run", "--data", &data, "--resume", id, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let done = last_json_line(&out);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["objects"].as_u64(), Some(8443), "{done}");
    assert_eq!(done["resumed_ranks"], 1, "{done}");
    let rank0 = &done["per_rank"][0];
    assert_eq!(rank0["attempts"], 2, "{rank0}");
    let own_ms = rank0["duration_s"].as_f64().unwrap() * 1000.0;
    assert!(
        rank0["billed_duration_ms"].as_f64().unwrap() >= own_ms + 300.0,
        "{rank0}"
    );
    // (Read back through JSON: a float may move by its last bit.)
    for field in ["objects", "duration_s", "billed_duration_ms"] {
        let (now, then) = (&done["per_rank"][1][field], &s["per_rank"][1][field]);
        assert!(
            (now.as_f64().unwrap() - then.as_f64().unwrap()).abs() <= 1.0,
            "rank 1 as it ran first: {field} {now} vs {then}"
        );
    }

    // Every rank out of time: the run failed, and says so by its exit code too.
    let out = cosmicai(&[
        "run",
        "--data",
        &data,
        "--world-size",
        "2",
        "--batch-size",
        "512",
        "--timeout",
        "0.05",
        "--result-path",
        "results/late",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(last_json_line(&out)["status"], "failed");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ended failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_run_whose_coordinator_dies_is_marked_interrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let mut run = start_paused_run(&data, &[]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while workers(&data).is_empty() {
        assert!(Instant::now() < deadline, "no worker appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    let out = cosmicai(&["runs", "--data", &data, "--json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(runs[0]["status"], "interrupted", "{runs}");
    // It says why, and what to do.
    let why = runs[0]["error"].as_str().unwrap_or_default();
    assert!(why.contains("stopped before it ended"), "{runs}");
    assert!(why.contains("--resume ID"), "{runs}");
    let table = cosmicai(&["runs", "--data", &data]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("why: its coordinator"), "{table}");
    // Which model, and when (UTC).
    let row = table.lines().nth(1).unwrap_or_default();
    assert!(row.contains(" photoz "), "{table}");
    assert!(
        row.split_whitespace()
            .nth(1)
            .is_some_and(|d| d.len() == 10 && d.starts_with("20")),
        "{table}"
    );
    assert_eq!(runs[0]["model"], "photoz", "{runs}");
}

#[test]
fn an_interrupted_run_is_resumed_keeping_its_finished_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let results = PathBuf::from(&data).join("results/again");
    let mut run = start_paused_run(
        &data,
        &["--concurrency", "1", "--result-path", "results/again"],
    );
    // Rank 0 finished (its measures kept beside its results), rank 1 not:
    // then the coordinator dies, and its workers with it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !results.join("measures/0.json").exists() {
        assert!(Instant::now() < deadline, "rank 0 never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    run.kill().unwrap();
    run.wait().unwrap();
    // Rank 1 waits 1.5 s after loading its model: it very likely had not
    // finished, but the test holds either way.
    let finished = (0..2)
        .filter(|r| results.join(format!("measures/{r}.json")).exists())
        .count();
    let listed = ok_json(&["runs", "--data", &data, "--json"]);
    assert_eq!(listed[0]["status"], "interrupted", "{listed}");
    assert_eq!(listed[0]["resumable"], true, "{listed}");
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let modified = |file: &str| {
        std::fs::metadata(results.join(file))
            .and_then(|m| m.modified())
            .unwrap()
    };
    let rank0 = modified("0.json");

    // A partition gone since the plan: refused, nothing run.
    let partition = std::fs::read_dir(&data)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .unwrap();
    let aside = partition.with_extension("aside");
    std::fs::rename(&partition, &aside).unwrap();
    let out = cosmicai(&["run", "--data", &data, "--resume", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is gone since the run was planned"),
        "{stderr}"
    );
    std::fs::rename(&aside, &partition).unwrap();

    let out = cosmicai(&["run", "--data", &data, "--resume", &id, "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let said = if finished == 1 {
        "keeping the results of 1 rank that finished before; running 1 rank"
    } else {
        "keeping the results of 2 ranks that finished before; running 0 ranks"
    };
    assert!(stderr.contains(said), "{stderr}");
    let s = last_json_line(&out);
    assert_eq!(s["run_id"], id.as_str(), "{s}");
    assert_eq!(s["status"], "succeeded", "{s}");
    assert_eq!(s["objects"].as_u64(), Some(8443), "{s}");
    assert_eq!(s["resumed_ranks"], finished, "{s}");
    // Rank 0 did not run again; both ranks are in the combined results, and
    // both are billed (rank 0 as it ran the first time).
    assert_eq!(modified("0.json"), rank0);
    let combined: Value =
        serde_json::from_slice(&std::fs::read(results.join("combined_data.json")).unwrap())
            .unwrap();
    assert_eq!(combined.as_array().map(Vec::len), Some(2), "{combined}");
    assert!(
        s["per_rank"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["billed_duration_ms"].as_u64() > Some(0)),
        "{s}"
    );
    let listed = ok_json(&["runs", "--data", &data, "--json"]);
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "one run, resumed: {listed}"
    );
    assert_eq!(listed[0]["status"], "succeeded", "{listed}");
    assert!(listed[0].get("resumable").is_none(), "{listed}");
    let table = cosmicai(&["run", "--data", &data, "--resume", &id]);
    assert!(!table.status.success());
    assert!(
        String::from_utf8_lossy(&table.stderr).contains("nothing to resume"),
        "{}",
        String::from_utf8_lossy(&table.stderr)
    );

    // A run that is not there, and flags a resume does not take.
    let out = cosmicai(&["run", "--data", &data, "--resume", "run-0-0-000000"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("run run-0-0-000000: not in the registry"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cosmicai(&["run", "--data", &data, "--resume", &id, "--world-size", "3"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_local_run_is_watched_from_another_terminal_to_its_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = start_paused_run(&data, &["--concurrency", "1"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while workers(&data).is_empty() {
        assert!(Instant::now() < deadline, "no worker appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    let listed = ok_json(&["runs", "--data", &data, "--json"]);
    assert_eq!(listed[0]["status"], "running", "{listed}");
    let id = listed[0]["id"].as_str().unwrap().to_string();
    // Waits for the run's end (its coordinator is the other process), then
    // prints the summary that process wrote.
    let watched = cosmicai(&["runs", "--data", &data, "--follow", &id, "--json"]);
    let out = run.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        watched.status.success(),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    let seen: Value = serde_json::from_slice(&watched.stdout).unwrap();
    assert_eq!(seen["run_id"], id.as_str(), "{seen}");
    assert_eq!(seen["status"], "succeeded", "{seen}");
    assert_eq!(seen["objects"], last_json_line(&out)["objects"], "{seen}");
    // An ended run's summary comes at once; one with none says why.
    let again = ok_json(&["runs", "--data", &data, "--follow", &id, "--json"]);
    assert_eq!(again["status"], "succeeded", "{again}");
    let mut killed = start_paused_run(&data, &["--result-path", "results/cut"]);
    while workers(&data).is_empty() {
        assert!(
            Instant::now() < deadline + Duration::from_secs(40),
            "no worker appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    let cut = ok_json(&["runs", "--data", &data, "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = cosmicai(&["runs", "--data", &data, "--follow", &cut]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ended interrupted without a summary"),
        "{stderr}"
    );
}

#[test]
fn ctrl_c_stops_the_run_summarizes_what_finished_and_closes_its_row() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let run = start_paused_run(&data, &["--concurrency", "1", "--result-path", "results/c"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while workers(&data).is_empty() {
        assert!(Instant::now() < deadline, "no worker appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling the coordinator this test started.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let s = last_json_line(&out);
    assert_eq!(s["status"], "cancelled", "{s}");
    assert!(PathBuf::from(&data).join("results/c/summary.json").exists());
    assert!(workers(&data).is_empty(), "no worker outlives its run");
    let runs = ok_json(&["runs", "--data", &data, "--json"]);
    assert_eq!(runs[0]["status"], s["status"], "{runs}");
    // Resumed, the cancelled run ends with every rank's results.
    let id = s["run_id"].as_str().unwrap();
    let out = cosmicai(&["run", "--data", &data, "--resume", id, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resumed = last_json_line(&out);
    assert_eq!(resumed["status"], "succeeded", "{resumed}");
    assert_eq!(resumed["objects"].as_u64(), Some(8443), "{resumed}");
    assert_eq!(resumed["failed_ranks"], serde_json::json!([]), "{resumed}");
}

#[test]
fn a_second_ctrl_c_ends_the_run_at_once_and_an_ignored_one_is_left_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let wait_for_workers = || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while workers(&data).is_empty() {
            assert!(Instant::now() < deadline, "no worker appeared");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    // Two signals: the second does not wait for what the first started.
    let run = start_paused_run(
        &data,
        &["--concurrency", "1", "--result-path", "results/twice"],
    );
    wait_for_workers();
    // The second comes before the first has been acted on (its watcher looks
    // every 50 ms): only the immediate exit leaves no summary.
    for _ in 0..2 {
        // SAFETY: signalling the coordinator this test started.
        unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = run.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !PathBuf::from(&data)
            .join("results/twice/summary.json")
            .exists(),
        "a second signal does not wait for the summary"
    );
    let runs = ok_json(&["runs", "--data", &data, "--json"]);
    assert_eq!(runs[0]["status"], "interrupted", "{runs}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !workers(&data).is_empty() {
        assert!(
            Instant::now() < deadline,
            "a worker outlived its coordinator"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Started with SIGINT ignored (`nohup`, a script's background job): a
    // SIGINT changes nothing and the run ends as it would have.
    let mut command = Command::new(env!("CARGO_BIN_EXE_cosmicai"));
    command
        .args([
            "run",
            "--data",
            &data,
            "--world-size",
            "2",
            "--batch-size",
            "256",
        ])
        .args(["--result-path", "results/ignored", "--json"])
        .env("COSMICAI_WORKER_PAUSE_MS", "800")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            Ok(())
        });
    }
    let run = command.spawn().unwrap();
    wait_for_workers();
    // SAFETY: signalling the coordinator this test started.
    unsafe { libc::kill(run.id() as i32, libc::SIGINT) };
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(last_json_line(&out)["status"], "succeeded", "{stderr}");
}

#[test]
fn estimate_then_sweep_with_a_chart_and_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = cosmicai(&[
        "run",
        "--data",
        &data,
        "--world-size",
        "2",
        "--batch-size",
        "500",
        "--estimate",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = last_json_line(&out);
    assert_eq!(e["objects"].as_u64(), Some(8443));
    assert_eq!(e["objects_per_rank"], serde_json::json!([4400, 4043]));
    assert!(e["duration_s"].as_f64().unwrap() > 0.0 && e["cost_usd"].as_f64().unwrap() > 0.0);
    // Its bill by run_cost's documented counts (engine/src/cost.rs) for 2 ranks
    // planned 2 files each, CPU ranks in EXPRESS children: a request a rank and
    // one each for Initialize and Summarize; the parent's 4 transitions and one
    // a child; PUT/LIST: a LIST page, 2 PUTs, 3 a rank, 2; GET: the 4 files and
    // a payload a rank, then 3 a rank.
    let c = &e["cost"];
    assert_eq!(c["lambda_requests"].as_u64(), Some(2 + 2), "{c}");
    assert_eq!(
        (
            c["state_transitions"].as_u64(),
            c["express_executions"].as_u64()
        ),
        (Some(4 + 2), Some(2)),
        "{c}"
    );
    assert_eq!(c["s3_put_list"].as_u64(), Some((1 + 2) + 3 * 2 + 2), "{c}");
    assert_eq!(c["s3_get"].as_u64(), Some((4 + 2) + 3 * 2), "{c}");
    // GB-s (estimate's doc): each rank takes cold_start_s + objects / rate, and
    // the two stages a cold start each, each billed up to the next millisecond,
    // at --memory-mb's default 2048 MB.
    let (rate, cold) = (
        e["calibration_samples_per_s"].as_f64().unwrap(),
        e["cold_start_s"].as_f64().unwrap(),
    );
    // Each rank's inference keeps its threads busy (the cores over the 2 ranks
    // at once): at 2048 MB, a Lambda of 2048/1769 vCPUs takes longer where
    // they are more.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / cores.min(2)).max(1) as f64;
    let slower = (threads / (2048.0 / 1769.0)).max(1.0);
    let exact_s = (cold + 4400.0 / rate * slower) + (cold + 4043.0 / rate * slower) + 2.0 * cold;
    let gb_s = c["lambda_gb_s"].as_f64().unwrap();
    assert!(
        gb_s >= 2.0 * exact_s - 1e-9 && gb_s <= 2.0 * (exact_s + 0.004) + 1e-9,
        "{gb_s} GB-s for {exact_s} s at 2 GB: {e}"
    );
    assert!(
        !PathBuf::from(&data).join("results").exists(),
        "an estimate must not run anything"
    );

    let sweep_dir = tmp.path().join("sweep");
    let out = cosmicai(&[
        "sweep",
        "--data",
        &data,
        "--world-sizes",
        "1,2",
        "--batch-size",
        "1000",
        "--out",
        &sweep_dir.display().to_string(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(sweep_dir.join("sweep.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(
        lines[1].starts_with("1,cpu,")
            && lines[2].starts_with("2,cpu,")
            && lines[2].contains("succeeded")
    );
    let png = std::fs::read(sweep_dir.join("sweep.png")).unwrap();
    assert_eq!(&png[..4], b"\x89PNG");
    // Its table is not written over by another sweep unasked (refused before
    // any run), and is with --force.
    let again = |more: &[&str]| {
        let sweep_out = sweep_dir.display().to_string();
        let args = [
            "sweep",
            "--data",
            &data,
            "--world-sizes",
            " 1",
            "--batch-size",
            "1000",
        ];
        cosmicai(&[&args[..], &["--out", &sweep_out], more].concat())
    };
    let refused = again(&[]);
    let e = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && e.contains("holds an earlier sweep") && e.contains("--force"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(sweep_dir.join("sweep.csv")).unwrap(),
        csv
    );
    let forced = again(&["--force"]);
    assert!(
        forced.status.success(),
        "{}",
        String::from_utf8_lossy(&forced.stderr)
    );
    // " 1" (spaces about a world size) reads as 1.
    assert_eq!(
        std::fs::read_to_string(sweep_dir.join("sweep.csv"))
            .unwrap()
            .lines()
            .count(),
        2
    );

    let out = cosmicai(&[
        "sweep",
        "--data",
        &data,
        "--world-sizes",
        "1",
        "--devices",
        "cpu,cuda",
    ]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("cuda"));
    // Nor is a CUDA run estimated on a machine that cannot start it.
    let out = cosmicai(&[
        "run",
        "--data",
        &data,
        "--world-size",
        "1",
        "--batch-size",
        "64",
        "--device",
        "cuda",
        "--estimate",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("device cuda:"),
        "{stderr}"
    );
}

#[test]
fn bench_pipeline_prints_its_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = cosmicai(&[
        "bench", "pipeline", "--data", &data, "--copies", "2", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = last_json_line(&out);
    assert_eq!(f["objects"].as_u64(), Some(2 * 8443));
    for key in [
        "pure_inference_s",
        "world_1_s",
        "world_2_s",
        "overhead_pct",
        "scaling_efficiency_pct",
        "cold_start_ms",
    ] {
        assert!(f[key].is_number(), "{key}: {f}");
    }
    assert!(f["cold_start_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn ranks_planned_no_file_start_no_worker() {
    // CAI's payloads set world_size to file_limit: 40 ranks over 4 files.
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    // Its estimate, one rank at a time: four cold starts, not forty.
    let out = cosmicai(&[
        "run",
        "--data",
        &data,
        "--world-size",
        "40",
        "--batch-size",
        "1000",
        "--concurrency",
        "1",
        "--estimate",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = last_json_line(&out);
    let (cold, rate) = (
        e["cold_start_s"].as_f64().unwrap(),
        e["calibration_samples_per_s"].as_f64().unwrap(),
    );
    let one_at_a_time = 4.0 * cold + 8443.0 / rate;
    let duration = e["duration_s"].as_f64().unwrap();
    assert!(
        (duration - one_at_a_time).abs() <= 1e-6 * one_at_a_time && cold > 0.0,
        "{e}"
    );
    let out = cosmicai(&[
        "run",
        "--data",
        &data,
        "--world-size",
        "40",
        "--batch-size",
        "1000",
        "--result-path",
        "results/wide",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = last_json_line(&out);
    assert_eq!(
        (
            s["status"].as_str(),
            s["ranks"].as_u64(),
            s["objects"].as_u64()
        ),
        (Some("succeeded"), Some(40), Some(8443)),
        "{s}"
    );
    // Tried once each where there was a file; never where there was none.
    let attempts: Vec<u64> = s["per_rank"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["attempts"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts[..4], [1, 1, 1, 1]);
    assert!(attempts[4..].iter().all(|&a| a == 0), "{attempts:?}");
    assert_eq!(s["per_rank"][39]["run_id"], s["run_id"]);
    // As on AWS: no rank file where nothing was read.
    let results = PathBuf::from(&data).join("results/wide");
    assert!(results.join("3.json").exists());
    assert!(!results.join("4.json").exists());
    let combined: Value =
        serde_json::from_slice(&std::fs::read(results.join("combined_data.json")).unwrap())
            .unwrap();
    assert_eq!(combined.as_array().map(Vec::len), Some(4));
}

#[test]
fn a_cai_payload_file_runs_and_unknown_fields_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let write = |name: &str, json: &str| {
        let path = tmp.path().join(name);
        std::fs::write(&path, json).unwrap();
        path.display().to_string()
    };
    let good = write(
        "good.json",
        r#"{"bucket": "local", "data_prefix": "", "file_limit": 2, "batch_size": 1000, "world_size": 2, "result_path": "results/req", "retries": 1}"#,
    );
    let out = cosmicai(&["run", "--data", &data, "--request", &good, "--json"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    // It names no model: it runs PhotoZ, and says so (a CAI payload trimmed
    // to these keys would otherwise run it unawares).
    assert!(
        said.contains("model not given: photoz, the default"),
        "{said}"
    );
    let s = last_json_line(&out);
    assert_eq!(
        (s["result_path"].as_str(), s["objects"].as_u64()),
        (Some("results/req"), Some(4400))
    );

    // CAI's own payload file, as its demo input has it: buckets and script
    // settings set aside with a note, counts as strings, world_size from file_limit.
    let cai = write(
        "cai.json",
        r#"{"bucket": "cosmicai2", "file_limit": "2", "batch_size": 512, "object_type": "folder",
            "S3_object_name": "scripts/Anomaly Detection", "script": "/tmp/scripts/inference.py",
            "result_path": "result/run 1", "data_bucket": "cosmicai-data", "data_prefix": ""}"#,
    );
    // It names no model (CAI runs AstroMAE): refused by name, not run on PhotoZ.
    let out = cosmicai(&["run", "--data", &data, "--request", &cai, "--json"]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("model not given") && said.contains("--model"),
        "{said}"
    );
    let with_model = [
        "run",
        "--data",
        &data,
        "--request",
        &cai,
        "--model",
        "photoz",
        "--json",
    ];
    let out = cosmicai(&with_model);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("data_bucket \"cosmicai-data\"") && said.contains("world_size not given"),
        "{said}"
    );
    let s = last_json_line(&out);
    assert_eq!(
        (s["result_path"].as_str(), s["ranks"].as_u64()),
        (Some("result/run 1"), Some(2))
    );
    // The same payload again: its one result_path is taken, and --result-path
    // gives the second run its own.
    let said = String::from_utf8_lossy(&cosmicai(&with_model).stderr).into_owned();
    assert!(
        said.contains("already holds the results") && said.contains("--result-path"),
        "{said}"
    );
    // Its row names the taken path: the other run's predictions are not its own.
    let runs = common::ok_json(&["runs", "--data", &data, "--json"]);
    let refused = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "failed" && r["result_path"] == "result/run 1")
        .unwrap_or_else(|| panic!("{runs}"))["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The row says why, in the listing and in its table.
    let row = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == refused.as_str())
        .unwrap();
    assert!(
        row["error"]
            .as_str()
            .is_some_and(|e| e.contains("already holds the results")),
        "{row}"
    );
    let table = cosmicai(&["runs", "--data", &data]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.lines().any(|l| l.trim_start().starts_with("why: ") && l.contains("already holds the results")),
        "{table}"
    );
    assert!(
        runs.as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] == "succeeded")
            .all(|r| r.get("error").is_none()),
        "{runs}"
    );
    let e = common::failure(&["runs", "--data", &data, "--predictions", &refused]);
    assert!(
        e.contains(&format!(
            "run {refused} has no predictions: its result_path 'result/run 1' holds run "
        )),
        "{e}"
    );
    let out = cosmicai(&[&with_model[..], &["--result-path", "result/run 2"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last_json_line(&out)["result_path"], "result/run 2");

    for (name, json, needle) in [
        (
            "typo.json",
            r#"{"batch_size": 10, "worldsize": 2, "result_path": "r"}"#,
            "unknown field `worldsize`",
        ),
        (
            "s3.json",
            r#"{"bucket": "my-bucket", "batch_size": 10, "world_size": 2, "result_path": "r"}"#,
            "bucket 'my-bucket'",
        ),
        (
            "zero.json",
            r#"{"batch_size": 10, "world_size": 0, "result_path": "r"}"#,
            "world_size must be at least 1",
        ),
        (
            "broken.json",
            r#"{"batch_size": 10,"#,
            "not a valid run request",
        ),
        (
            "string.json",
            r#"{"batch_size": 10, "world_size": "4", "result_path": "r"}"#,
            "read as CAI's payload (its keys are ones CAI's initializer reads, with world_size written as a string",
        ),
    ] {
        let path = write(name, json);
        let out = cosmicai(&["run", "--data", &data, "--request", &path]);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && e.contains(needle) && e.contains(name),
            "{name}: {e}"
        );
    }
    // CAI's payload stripped of its script's keys, its counts as CAI writes
    // them, its model given by --model: read by CAI's rules.
    let shaped = write(
        "shaped.json",
        r#"{"bucket": "cosmicai2", "file_limit": "2", "batch_size": 512, "result_path": "result/shaped", "data_prefix": ""}"#,
    );
    let out = cosmicai(&[
        "run",
        "--data",
        &data,
        "--request",
        &shaped,
        "--model",
        "photoz",
        "--json",
    ]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("read as CAI's payload (its keys are ones CAI's initializer reads, with file_limit written as a string")
            && said.contains("world_size not given: 2"),
        "{said}"
    );
    assert_eq!(last_json_line(&out)["ranks"].as_u64(), Some(2));
    // Another world size and batch size without editing the file, read from
    // standard input, a Notepad byte-order mark and all.
    let mut run = Command::new(env!("CARGO_BIN_EXE_cosmicai"))
        .args([
            "run",
            "--data",
            &data,
            "--request",
            "-",
            "--world-size",
            "3",
            "--batch-size",
            "7",
        ])
        .args(["--result-path", "results/req3", "--json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let payload = std::fs::read_to_string(&good).unwrap();
    {
        use std::io::Write;
        let mut stdin = run.stdin.take().unwrap();
        stdin
            .write_all(format!("\u{feff}{payload}").as_bytes())
            .unwrap();
    }
    let out = run.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = last_json_line(&out);
    assert_eq!(
        (s["ranks"].as_u64(), s["result_path"].as_str()),
        (Some(3), Some("results/req3"))
    );
    let payload: Value = serde_json::from_slice(
        &std::fs::read(PathBuf::from(&data).join("results/req3/payload.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        (
            payload["request"]["batch_size"].as_u64(),
            payload["request"]["file_limit"].as_u64()
        ),
        (Some(7), Some(2)),
        "{payload}"
    );
    // --model fills a payload's missing model, and is refused beside another.
    let named = write(
        "named.json",
        r#"{"batch_size": 10, "world_size": 2, "result_path": "r", "model": "photoz"}"#,
    );
    let out = cosmicai(&[
        "run",
        "--data",
        &data,
        "--request",
        &named,
        "--model",
        "astromae:x.pt",
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("names model \"photoz\", and --model astromae:x.pt"),
        "{e}"
    );
}

#[test]
fn bench_summarize_scores_every_object_it_wrote() {
    // It read nothing (and failed) once Summarize skipped ranks planned no file.
    let out = cosmicai(&[
        "bench",
        "summarize",
        "--objects",
        "5000",
        "--ranks",
        "7",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let f = last_json_line(&out);
    assert_eq!(
        (f["objects"].as_u64(), f["ranks"].as_u64()),
        (Some(5000), Some(7))
    );
    assert!(f["peak_rss_after_mb"].as_f64().unwrap() >= f["peak_rss_before_mb"].as_f64().unwrap());
}

#[test]
fn more_ranks_than_files_are_said_once_not_a_line_a_rank() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let out = cosmicai(&[
        "run",
        "--data",
        &data,
        "--world-size",
        "7",
        "--batch-size",
        "512",
        "--concurrency",
        "2",
    ]);
    let (said, printed) = (
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
    );
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(
            "note: world_size 7 over 4 partition files: 3 ranks planned none and read nothing"
        ),
        "{said}"
    );
    // Ranks 0 to 3 a line each, the three that read nothing one line.
    assert!(
        printed.contains("ranks 4-6: planned no file, so none read anything (3 ranks)"),
        "{printed}"
    );
    let rank_lines = printed
        .lines()
        .filter(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<usize>().is_ok())
        })
        .count();
    assert_eq!(rank_lines, 5, "{printed}");
}

#[test]
fn a_run_whose_reader_went_away_goes_on_unheard() {
    // `cosmicai run ... 2>&1 | head -1`: once head has gone, every line the run
    // writes meets a closed pipe, which is no panic (exit 101) but silence.
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let unheard = |args: &[&str]| {
        let mut run = Command::new(env!("CARGO_BIN_EXE_cosmicai"))
            .args(["run", "--data", &data])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(run.stdout.take());
        drop(run.stderr.take());
        run.wait().unwrap().code()
    };
    // It notes the ranks planned none (on stderr), then its summary (stdout).
    let args = [
        "--world-size",
        "7",
        "--batch-size",
        "512",
        "--result-path",
        "results/unheard",
    ];
    assert_eq!(unheard(&args), Some(0));
    assert!(
        PathBuf::from(&data)
            .join("results/unheard/summary.json")
            .is_file()
    );
    // Refused: its error goes nowhere, and the exit code says it all the same.
    assert_eq!(
        unheard(&["--world-size", "2", "--batch-size", "0"]),
        Some(1)
    );
}
