//! Helpers shared by the CLI tests: run `cosmicai`, read its JSON, find assets.
#![allow(dead_code)] // each test file uses its own subset

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

pub fn cosmicai(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cosmicai"))
        .args(args)
        .output()
        .expect("run cosmicai")
}

/// Runs a command that must succeed and print one JSON object.
pub fn ok_json(args: &[&str]) -> Value {
    let out = cosmicai(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

/// The last stdout line of `out`, as JSON.
pub fn last_json_line(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_else(|| {
        panic!(
            "no output; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

/// Path of a file under `assets/`.
pub fn asset(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../assets")
        .join(name)
        .display()
        .to_string()
}

/// Runs a command that must fail without a panic; its stderr.
pub fn failure(args: &[&str]) -> String {
    let out = cosmicai(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}
