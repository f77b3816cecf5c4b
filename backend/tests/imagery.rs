//! `cosmicai ingest`, `calibrate` and `synth` as users call them, on the bundled
//! real field and catalogs. (Pixel-level checks against independent reference
//! cutouts are in tests/python/test_imagery.py; the renderer's calibration test
//! is engine/tests/imagery.rs.)

mod common;
use common::{asset, failure, ok_json};

#[test]
fn ingest_detects_real_cutouts_on_the_bundled_field() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("real");
    let report = ok_json(&[
        "ingest",
        "--frames",
        &asset("fields/2820-3-0122"),
        "--detect",
        "--max-sources",
        "50",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(report["fields"][0]["field"], "002820-3-0122");
    assert_eq!(report["fields"][0]["objects"], 50);
    let inspect = ok_json(&["inspect", out.to_str().unwrap(), "--json"]);
    assert_eq!(inspect["provenance"]["real"], 50);
    assert_eq!(inspect["images"]["height"], 64);
    // A second ingest into the same directory refuses and keeps what is there.
    let again = failure(&[
        "ingest",
        "--frames",
        &asset("fields/2820-3-0122"),
        "--detect",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(again.contains("already"), "{again}");
    assert_eq!(
        ok_json(&["inspect", out.to_str().unwrap(), "--json"])["objects"],
        50
    );
}

/// Neighbouring SDSS fields overlap: an object on two fields is cut once. (Here
/// the bundled field under a second name stands for its neighbour.)
#[test]
fn ingest_cuts_an_object_on_two_fields_once() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = tmp.path().join("frames");
    std::fs::create_dir(&frames).unwrap();
    for band in ['u', 'g', 'r', 'i', 'z'] {
        let bundled = std::path::Path::new(&asset("fields/2820-3-0122"))
            .join(format!("frame-{band}-002820-3-0122.fits.bz2"));
        for field in ["0122", "0123"] {
            std::fs::copy(
                &bundled,
                frames.join(format!("frame-{band}-002820-3-{field}.fits.bz2")),
            )
            .unwrap();
        }
    }
    let out = tmp.path().join("real");
    let report = ok_json(&[
        "ingest",
        "--frames",
        frames.to_str().unwrap(),
        "--detect",
        "--max-sources",
        "20",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(report["fields"][0]["objects"], 20, "{report}");
    assert_eq!(report["fields"][1]["objects"], 0, "{report}");
    assert_eq!(
        ok_json(&["inspect", out.to_str().unwrap(), "--json"])["objects"],
        20
    );
}

#[test]
fn synth_marks_every_object_synthetic() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("synth");
    let report = ok_json(&[
        "synth",
        "--catalog",
        &asset("catalogs/skyserver_dr14.csv.gz"),
        "--objects",
        "300",
        "--size",
        "32",
        "--seed",
        "5",
        "--objects-per-file",
        "128",
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(report["objects"], 300);
    assert_eq!(report["synthetic"], true);
    assert_eq!(report["partitions"], 3);
    let inspect = ok_json(&["inspect", out.to_str().unwrap(), "--json"]);
    assert_eq!(inspect["objects"], 300);
    assert_eq!(inspect["provenance"]["synthetic"], 300);
    assert!(inspect["provenance"].get("real").is_none_or(|v| v == 0));
    assert_eq!(inspect["images"]["width"], 32);
}

#[test]
fn bad_imagery_input_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    let out = out.to_str().unwrap();
    let empty = tmp.path().to_str().unwrap();
    let e = failure(&["ingest", "--frames", empty, "--detect", "--out", out]);
    assert!(e.contains("no SDSS frames"), "{e}");
    let e = failure(&[
        "ingest",
        "--frames",
        &asset("fields/2820-3-0122"),
        "--out",
        out,
    ]);
    assert!(e.contains("--catalog") && e.contains("--detect"), "{e}");
    let e = failure(&[
        "ingest",
        "--frames",
        &asset("fields/2820-3-0122"),
        "--detect",
        "--size",
        "4",
        "--out",
        out,
    ]);
    assert!(e.contains("--size 4"), "{e}");
    let e = failure(&["synth", "--catalog", "/nonexistent.csv", "--out", out]);
    assert!(e.contains("/nonexistent.csv"), "{e}");
    let e = failure(&["calibrate", "--frames", "/nonexistent-dir"]);
    assert!(e.contains("/nonexistent-dir"), "{e}");
}
