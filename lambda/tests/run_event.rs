//! `bootstrap run-event`, the AWS Batch entry point, refuses bad input with a
//! message that names it. (Building this test also makes `cargo test --workspace`
//! build `bootstrap` with the workspace's features, which the AWS tests run.)

use std::process::Command;

fn run_event(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bootstrap"))
        .arg("run-event")
        .args(args)
        // No model to preload and no S3 endpoint: the event is read first.
        .env_remove("COSMICAI_MODEL")
        .output()
        .expect("run bootstrap");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_event_gets_the_usage() {
    let (ok, stderr) = run_event(&[]);
    assert!(!ok);
    assert!(stderr.contains("usage: bootstrap run-event"), "{stderr}");
}

#[test]
fn text_that_is_neither_a_stage_event_nor_a_rank_item_is_named() {
    let (ok, stderr) = run_event(&[r#"{"stage": "launch"}"#]);
    assert!(!ok);
    assert!(
        stderr.contains("not a stage event or a rank item"),
        "{stderr}"
    );
    assert!(
        stderr.contains("launch"),
        "the unknown stage is named: {stderr}"
    );
}

/// The template always sets `COSMICAI_MODEL` and `COSMICAI_MODEL_BUCKET`, so a
/// container preloads its model before its first event. That preload connects
/// an S3 store, which once panicked inside the async main ("Cannot start a
/// runtime from within a runtime") at every cold start.
#[test]
fn a_container_started_as_the_template_starts_it_reaches_its_handler() {
    let item = r#"{"run_id": "r", "bucket": "data", "result_path": "results/r", "rank": 0}"#;
    let out = Command::new(env!("CARGO_BIN_EXE_bootstrap"))
        .args(["run-event", item])
        .env("COSMICAI_MODEL", "photoz")
        .env("COSMICAI_MODEL_BUCKET", "data")
        // Nothing listens here: the preload finds no weights, the handler no payload.
        .env("COSMICAI_S3_ENDPOINT", "http://127.0.0.1:9")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .expect("run bootstrap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_ne!(out.status.code(), Some(101), "{stderr}");
    assert!(
        stderr.contains("payload.json"),
        "the handler ran and named what it could not read: {stderr}"
    );
}
