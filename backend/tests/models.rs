//! `cosmicai train` and `cosmicai eval` as users call them, with the shipped
//! PhotoZ weights scored on the real validation split.

mod common;
use common::{asset, cosmicai, ok_json};
use serde_json::Value;
use std::path::Path;

#[test]
fn shipped_photoz_meets_its_card_on_the_real_validation_split() {
    let card: Value =
        serde_json::from_str(&std::fs::read_to_string(asset("model/photoz.card.json")).unwrap())
            .unwrap();
    let report = ok_json(&[
        "eval",
        "--catalog",
        &asset("catalogs/skyserver_dr14.csv.gz"),
        "--split",
        "validation",
        "--json",
    ]);
    let galaxy = &report["galaxy"];
    for key in [
        "n",
        "nmad",
        "bias",
        "outlier_frac_0_05",
        "outlier_frac_0_15",
        "mae",
        "mse",
        "r2",
    ] {
        assert!(galaxy[key].is_number(), "galaxy.{key} missing: {report}");
    }
    assert!(report["objects"].as_u64().unwrap() > 1500);
    let nmad = galaxy["nmad"].as_f64().unwrap();
    let accuracy = report["class_accuracy"].as_f64().unwrap();
    assert!(nmad < 0.018, "DR14 galaxy NMAD {nmad}");
    assert!(accuracy > 0.97, "DR14 class accuracy {accuracy}");
    // The card was measured the same way (its split differs only by cross-catalog duplicates).
    let card_nmad = card["validation"]["skyserver_dr14.csv.gz"]["galaxy"]["nmad"]
        .as_f64()
        .unwrap();
    assert!(
        (card_nmad - nmad).abs() < 0.002,
        "card {card_nmad} vs eval {nmad}"
    );
}

#[test]
fn eval_on_all_objects_and_the_train_split_differs_from_validation() {
    let all = ok_json(&[
        "eval",
        "--catalog",
        &asset("catalogs/skyserver_dr14.csv.gz"),
        "--json",
    ]);
    let train = ok_json(&[
        "eval",
        "--catalog",
        &asset("catalogs/skyserver_dr14.csv.gz"),
        "--split",
        "train",
        "--json",
    ]);
    let valid = ok_json(&[
        "eval",
        "--catalog",
        &asset("catalogs/skyserver_dr14.csv.gz"),
        "--split",
        "validation",
        "--json",
    ]);
    let n = |v: &Value| v["objects"].as_u64().unwrap();
    assert_eq!(n(&all), n(&train) + n(&valid));
    assert_eq!(n(&all), 8443);
}

#[test]
fn train_writes_weights_and_a_card_deterministically() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let catalog = asset("catalogs/skyserver_dr14.csv.gz");
    for out in [&a, &b] {
        let card = ok_json(&[
            "train",
            "--catalog",
            &catalog,
            "--out",
            &out.display().to_string(),
            "--epochs",
            "2",
            "--width",
            "32",
            "--json",
        ]);
        assert_eq!(card["epochs_run"].as_u64(), Some(2));
        assert!(
            card["validation"]["skyserver_dr14.csv.gz"]["class_accuracy"]
                .as_f64()
                .unwrap()
                > 0.5
        );
        assert!(card["data"][0]["validation"].as_u64().unwrap() > 1000);
    }
    let weights = |d: &Path| std::fs::read(d.join("photoz.safetensors")).unwrap();
    assert!(weights(&a) == weights(&b), "same seed, different weights");

    // The trained weights are usable by eval.
    let model = a.join("photoz.safetensors").display().to_string();
    let report = ok_json(&["eval", "--catalog", &catalog, "--model", &model, "--json"]);
    assert!(report["galaxy"]["nmad"].as_f64().unwrap().is_finite());

    // Existing weights are kept unless --force.
    let out = cosmicai(&[
        "train",
        "--catalog",
        &catalog,
        "--out",
        &a.display().to_string(),
        "--epochs",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    assert!(weights(&a) == weights(&b));
}

#[test]
fn eval_errors_name_the_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("noclass.csv");
    std::fs::write(&csv, "ra,dec,u,g,r,i,z,redshift\n1,1,19,18,17,16,15,0.1\n").unwrap();
    let out = cosmicai(&["eval", "--catalog", &csv.display().to_string()]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("noclass.csv") && e.contains("`class`"),
        "{e}"
    );

    let junk = tmp.path().join("junk.safetensors");
    std::fs::write(&junk, b"junk").unwrap();
    let out = cosmicai(&[
        "eval",
        "--catalog",
        &asset("catalogs/skyserver_dr14.csv.gz"),
        "--model",
        &junk.display().to_string(),
    ]);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && e.contains("junk.safetensors") && !e.contains("panicked"),
        "{e}"
    );
}

#[test]
fn eval_plot_writes_a_png_of_the_scatter() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("inference.png");
    ok_json(&[
        "eval",
        "--catalog",
        &asset("catalogs/skyserver_dr14.csv.gz"),
        "--split",
        "validation",
        "--plot",
        &png.display().to_string(),
        "--json",
    ]);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        bytes.len() > 20_000,
        "{} bytes: an empty plot?",
        bytes.len()
    );
}

#[test]
fn bench_infer_prints_figures() {
    for backend in ["flex", "ndarray"] {
        let figures = ok_json(&[
            "bench",
            "infer",
            "--model",
            "photoz",
            "--batch-size",
            "64",
            "--samples",
            "128",
            "--threads",
            "1",
            "--backend",
            backend,
            "--json",
        ]);
        assert_eq!(figures["samples"].as_u64(), Some(128));
        assert!(figures["samples_per_s"].as_f64().unwrap() > 0.0);
        assert!(figures["peak_rss_mb"].as_f64().unwrap() > 0.0);
    }
}
