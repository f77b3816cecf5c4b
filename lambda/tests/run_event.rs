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
