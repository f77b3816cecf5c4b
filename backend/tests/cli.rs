//! The `cosmicai` commands as users (and independent checks) call them:
//! `catalog import`, `partition`, `inspect`, on the bundled real catalogs.

mod common;
use common::{cosmicai, failure, ok_json};
use std::path::{Path, PathBuf};

fn catalogs() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/catalogs");
    ["sdss17_star_classification.csv.gz", "skyserver_dr14.csv.gz"]
        .iter()
        .map(|f| dir.join(f).display().to_string())
        .collect()
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn import_partition_inspect_on_the_bundled_catalogs() {
    let tmp = tempfile::tempdir().unwrap();
    let (catalog, parts) = (tmp.path().join("catalog"), tmp.path().join("parts"));
    let cats = catalogs();

    let import = ok_json(&[
        "catalog",
        "import",
        &cats[0],
        &cats[1],
        "--out",
        &s(&catalog),
        "--json",
    ]);
    let objects = import["objects"].as_u64().unwrap();
    let rows: u64 = import["catalogs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, 25466 + 8443);
    assert!(objects > 33_800 && objects <= rows, "{objects}");

    let split = ok_json(&[
        "partition",
        "--input",
        &s(&catalog),
        "--objects",
        "5000",
        "--out",
        &s(&parts),
        "--json",
    ]);
    assert_eq!(split["objects"].as_u64(), Some(objects));
    assert_eq!(
        split["partitions"].as_array().unwrap().len() as u64,
        objects.div_ceil(5000)
    );

    let summary = ok_json(&["inspect", &s(&parts), "--json"]);
    assert_eq!(summary["objects"].as_u64(), Some(objects));
    assert_eq!(summary["provenance"]["real"].as_u64(), Some(objects));
    assert_eq!(summary["provenance"]["synthetic"].as_u64(), Some(0));
    let classes: u64 = ["GALAXY", "STAR", "QSO"]
        .iter()
        .map(|c| summary["classes"][c].as_u64().unwrap())
        .sum();
    assert_eq!(classes, objects);
    let bytes: u64 = std::fs::read_dir(&parts)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(summary["bytes"].as_u64(), Some(bytes));
    assert!(summary["redshift"]["max"].as_f64().unwrap() > 5.0);

    // A single file can be inspected too, and the human report names what it found.
    let first = parts.join("part-000000.safetensors");
    assert_eq!(
        ok_json(&["inspect", &s(&first), "--json"])["objects"].as_u64(),
        Some(5000)
    );
    let out = cosmicai(&["inspect", &s(&parts)]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("GALAXY") && text.contains("real") && text.contains("objects"),
        "{text}"
    );
}

#[test]
fn partition_by_size_uses_decimal_megabytes() {
    let tmp = tempfile::tempdir().unwrap();
    let (catalog, parts) = (tmp.path().join("catalog"), tmp.path().join("parts"));
    ok_json(&[
        "catalog",
        "import",
        &catalogs()[1],
        "--out",
        &s(&catalog),
        "--json",
    ]);
    let split = ok_json(&[
        "partition",
        "--input",
        &s(&catalog),
        "--size",
        "0.1MB",
        "--out",
        &s(&parts),
        "--json",
    ]);
    let files = split["partitions"].as_array().unwrap();
    assert!(files.len() >= 4, "{}", files.len());
    assert!(
        files
            .iter()
            .all(|f| f["bytes"].as_u64().unwrap() <= 100_000)
    );
}

#[test]
fn import_reports_skipped_rows_by_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("bad.csv");
    std::fs::write(&csv, "objid,ra,dec,u,g,r,i,z,class,redshift\n1,1,1,-9999,18,17,16,15,GALAXY,0.1\n2,2,1,19,18,17,16,15,,0.1\n3,3,1,19,18,17,16,15,STAR,0\n").unwrap();
    let report = ok_json(&[
        "catalog",
        "import",
        &s(&csv),
        "--out",
        &s(&tmp.path().join("out")),
        "--json",
    ]);
    assert_eq!(report["objects"].as_u64(), Some(1));
    let skipped = &report["catalogs"][0]["skipped"];
    assert_eq!(skipped["sentinel_magnitude"]["rows"].as_u64(), Some(1));
    assert_eq!(skipped["missing_class"]["rows"].as_u64(), Some(1));

    let out = cosmicai(&[
        "catalog",
        "import",
        &s(&csv),
        "--out",
        &s(&tmp.path().join("out2")),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("sentinel magnitude") && text.contains("missing class"),
        "{text}"
    );
}

#[test]
fn bad_input_is_a_clear_error_and_nothing_stored_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let catalog = tmp.path().join("catalog");
    ok_json(&[
        "catalog",
        "import",
        &catalogs()[1],
        "--out",
        &s(&catalog),
        "--json",
    ]);
    let stored: Vec<PathBuf> = std::fs::read_dir(&catalog)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();

    // Writing into a dataset that exists is refused; its files are untouched.
    let e = failure(&["catalog", "import", &catalogs()[0], "--out", &s(&catalog)]);
    assert!(e.contains("already holds partition files"), "{e}");
    let e = failure(&[
        "partition",
        "--input",
        &s(&catalog),
        "--objects",
        "10",
        "--out",
        &s(&catalog),
    ]);
    assert!(e.contains("already holds partition files"), "{e}");
    assert_eq!(std::fs::read_dir(&catalog).unwrap().count(), stored.len());

    // A corrupt partition is named with its field.
    let broken = tmp.path().join("broken.safetensors");
    std::fs::write(&broken, &std::fs::read(&stored[0]).unwrap()[..100]).unwrap();
    let e = failure(&["inspect", &s(&broken)]);
    assert!(
        e.contains("broken.safetensors") && e.contains("header"),
        "{e}"
    );

    let missing_column = tmp.path().join("nomag.csv");
    std::fs::write(
        &missing_column,
        "ra,dec,u,g,r,i,class\n1,1,19,18,17,16,STAR\n",
    )
    .unwrap();
    let e = failure(&[
        "catalog",
        "import",
        &s(&missing_column),
        "--out",
        &s(&tmp.path().join("x")),
    ]);
    assert!(e.contains("nomag.csv") && e.contains("`z`"), "{e}");

    let e = failure(&[
        "partition",
        "--input",
        &s(&catalog),
        "--size",
        "25XB",
        "--out",
        &s(&tmp.path().join("y")),
    ]);
    assert!(e.contains("25XB"), "{e}");
    let e = failure(&[
        "partition",
        "--input",
        &s(&catalog),
        "--out",
        &s(&tmp.path().join("z")),
    ]);
    assert!(e.contains("--size") && e.contains("--objects"), "{e}");
    let e = failure(&["inspect", &s(&tmp.path().join("nowhere"))]);
    assert!(e.contains("nowhere"), "{e}");
    // The system's words once, not twice in a chain.
    assert_eq!(e.matches("os error 2").count(), 1, "{e}");
    // A mistyped folder for the run history is named, and not made.
    let e = failure(&["runs", "--data", &s(&tmp.path().join("nowhere"))]);
    assert!(e.contains("nowhere") && e.contains("no such folder"), "{e}");
    assert!(!tmp.path().join("nowhere").exists());
    assert_eq!(
        ok_json(&["runs", "--data", &s(&catalog), "--json"]),
        serde_json::json!([])
    );
    assert!(!catalog.join("cosmicai.sqlite").exists());
    // Nor does following a run there.
    let e = failure(&["runs", "--data", &s(&catalog), "--follow", "r-1"]);
    assert!(e.contains("no run registry"), "{e}");
    assert!(!catalog.join("cosmicai.sqlite").exists());

    // Two datasets under one --data (a catalog and a re-split of it) would
    // count every object twice: refused, both named.
    ok_json(&[
        "partition",
        "--input",
        &s(&catalog),
        "--objects",
        "5000",
        "--out",
        &s(&tmp.path().join("parts")),
        "--json",
    ]);
    let e = failure(&[
        "run",
        "--data",
        &s(tmp.path()),
        "--world-size",
        "1",
        "--batch-size",
        "512",
        "--estimate",
    ]);
    // (the broken file above lies at the top, a third)
    assert!(e.contains("3 folders ('./', 'catalog/', 'parts/')"), "{e}");
}

#[test]
fn every_command_has_help_with_an_example() {
    // Every command and subcommand the help lists, found by walking it.
    let mut pending: Vec<Vec<String>> = vec![Vec::new()];
    let (mut checked, mut lacking) = (0, Vec::new());
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = cosmicai(&args);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        checked += 1;
        if !text.contains("Example") {
            lacking.push(path.join(" "));
        }
        let commands = text
            .split_once("Commands:\n")
            .map_or("", |(_, rest)| rest.split("\n\n").next().unwrap_or(""));
        for line in commands.lines() {
            let Some(name) = line.split_whitespace().next() else {
                continue;
            };
            if name != "help" && line.starts_with("  ") {
                pending.push(path.iter().cloned().chain([name.to_string()]).collect());
            }
        }
    }
    assert!(checked > 15, "only {checked} commands found");
    assert!(lacking.is_empty(), "no example in the help of: {lacking:?}");
}

#[test]
fn project_plans_sizes_like_cai_and_flags_ranks_past_the_express_limit() {
    let report = ok_json(&[
        "project",
        "--size",
        "12.6GB",
        "--size",
        "1000GB",
        "--model",
        "photoz",
        "--world-size",
        "1",
        "--samples",
        "256",
        "--json",
    ]);
    assert!(report["measured_objects_per_core_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["precision"], "fp32");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    // 12.6 GB in 25 MB partitions, all on the one rank.
    assert_eq!(rows[0]["partitions"], 504);
    assert_eq!(rows[0]["files_per_rank"], 504);
    // One rank downloading 1,000 GB cannot finish inside an Express child.
    assert_eq!(rows[1]["fits_express"], false);
    assert!(rows[1]["cost_usd"].as_f64().unwrap() > rows[0]["cost_usd"].as_f64().unwrap());
    // Keeping 1,000 GB (931.3 binary GB, as S3 bills) in S3 Standard a month,
    // beside the run: $21.42.
    let storage = rows[1]["cost"]["storage_usd_month"].as_f64().unwrap();
    assert!((storage - 21.42).abs() < 0.005, "{storage}");
    assert_eq!(rows[1]["cost"]["data_bytes"], 1_000_000_000_000u64);
    let e = failure(&["project", "--size", "1GB", "--world-size", "0"]);
    assert!(e.contains("--world-size"), "{e}");
    // PhotoZ has no bf16 CPU path: the projection says so instead of timing fp32.
    let e = failure(&[
        "project",
        "--size",
        "1GB",
        "--model",
        "photoz",
        "--precision",
        "bf16",
    ]);
    assert!(e.contains("--precision bf16"), "{e}");
}
