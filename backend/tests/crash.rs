//! The crash harness: runs whose coordinator or a worker is SIGKILLed at a
//! random moment, again and again (bounded: 8 runs). Afterwards every run is
//! either `succeeded` with complete, mutually consistent files (registry row =
//! `summary.json` = rank files = predictions), or not succeeded at all; and no
//! worker is left alive.

mod common;
use common::{cosmicai, dataset, same_json, workers};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const RUNS: u64 = 8;

/// xorshift64, seeded: the same kill points on every run of the test.
fn random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn runs_killed_at_random_points_never_succeed_with_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = dataset(tmp.path());
    let mut seed = 16;
    for i in 0..RUNS {
        // Workers pause 0.3 to 1.5 s before their first batch, so kills land mid-run.
        let pause = 300 + random(&mut seed) % 1200;
        let mut run = Command::new(env!("CARGO_BIN_EXE_cosmicai"))
            .args([
                "run",
                "--data",
                &data,
                "--world-size",
                "2",
                "--batch-size",
                "256",
            ])
            .args([
                "--retries",
                "1",
                "--result-path",
                &format!("results/crash-{i}"),
            ])
            .env("COSMICAI_WORKER_PAUSE_MS", pause.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(random(&mut seed) % 1200));
        if random(&mut seed).is_multiple_of(2) {
            run.kill().unwrap(); // the coordinator, by SIGKILL
        } else if let Some(&pid) = workers(&data).first() {
            // SAFETY: signalling a worker of the run this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        run.wait().unwrap();
    }

    // No worker outlives its coordinator (they get SIGKILL when it dies).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !workers(&data).is_empty() {
        assert!(
            Instant::now() < deadline,
            "workers left alive: {:?}",
            workers(&data)
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = cosmicai(&["runs", "--data", &data, "--json"]);
    let runs: Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = runs.as_array().unwrap();
    // A coordinator killed before it planned its run leaves no row.
    assert!(!runs.is_empty() && runs.len() as u64 <= RUNS, "{runs:?}");
    let mut succeeded = 0;
    for run in runs {
        let status = run["status"].as_str().unwrap();
        assert!(
            ["succeeded", "partial", "failed", "interrupted"].contains(&status),
            "{run}"
        );
        if status != "succeeded" {
            continue;
        }
        succeeded += 1;
        let dir = Path::new(&data).join(run["result_path"].as_str().unwrap());
        let summary: Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["status"], "succeeded", "{}", dir.display());
        assert_eq!(summary["objects"], run["objects"], "{}", dir.display());
        let mut objects = 0;
        let mut results = Vec::new();
        for rank in 0..2 {
            let result: Value =
                serde_json::from_slice(&std::fs::read(dir.join(format!("{rank}.json"))).unwrap())
                    .unwrap();
            assert!(result.is_object(), "{}: rank {rank}", dir.display());
            let predictions =
                std::fs::read(dir.join(format!("predictions/{rank}.safetensors"))).unwrap();
            let count = cosmicai_engine::pipeline::read_predictions(&predictions)
                .unwrap()
                .object_id
                .len();
            // The rank file is this run's, and counts its own predictions.
            assert_eq!(
                result["objects"].as_u64(),
                Some(count as u64),
                "{}: rank {rank}",
                dir.display()
            );
            assert_eq!(
                result["run_id"],
                run["id"],
                "{}: rank {rank}",
                dir.display()
            );
            assert_eq!(result["rank"].as_u64(), Some(rank), "{}", dir.display());
            objects += count;
            results.push(result);
        }
        assert_eq!(
            Some(objects as u64),
            run["objects"].as_u64(),
            "{}",
            dir.display()
        );
        let combined: Value =
            serde_json::from_slice(&std::fs::read(dir.join("combined_data.json")).unwrap())
                .unwrap();
        assert_eq!(
            combined.as_array().map(Vec::len),
            Some(2),
            "{}",
            dir.display()
        );
        // combined_data.json is the rank files, in rank order.
        for (rank, result) in results.iter().enumerate() {
            assert!(
                same_json(&combined[rank], result),
                "{}: combined_data.json[{rank}] {} vs {rank}.json {result}",
                dir.display(),
                combined[rank]
            );
        }
        // No half-written file is left behind.
        for entry in walk(&dir) {
            let name = Path::new(&entry).file_name().unwrap().to_string_lossy();
            assert!(!name.starts_with(".tmp"), "{entry}");
        }
    }
    let statuses: Vec<&str> = runs.iter().map(|r| r["status"].as_str().unwrap()).collect();
    eprintln!("crash harness: {RUNS} runs: {statuses:?}");
    assert!(succeeded < RUNS, "no kill landed mid-run: {statuses:?}");
    // And the file checks above ran on something: a killed worker is retried.
    assert!(succeeded >= 1, "no run succeeded to check: {statuses:?}");
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path.display().to_string());
        }
    }
    out
}
