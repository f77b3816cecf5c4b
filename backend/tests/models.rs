//! `cosmicai train` and `cosmicai eval` as users call them, with the shipped
//! PhotoZ weights scored on the real validation split.

mod common;
use common::{asset, cosmicai, failure, ok_json, ok_json_with_env};
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
    // σ_z: about 68% of galaxies within 1σ and 95% within 2σ, and the objects the
    // model flags as risky hold the outliers.
    let c = &report["galaxy_calibration"];
    let (one, two) = (
        c["within_1_sigma"].as_f64().unwrap(),
        c["within_2_sigma"].as_f64().unwrap(),
    );
    // Calibrated: 68% ± 3 points within 1σ and 95% ± 2 within 2σ (DR14 validation).
    assert!(
        (0.653..0.713).contains(&one) && (0.93..0.97).contains(&two),
        "{c}"
    );
    assert_eq!(c["n"], galaxy["n"], "every galaxy has a σ_z: {c}");
    let low = c["low_risk"]["outlier_frac_0_15"].as_f64().unwrap();
    assert!(low < 0.01, "{c}");
    assert!(c["low_risk"]["n"].as_u64().unwrap() > c["high_risk"]["n"].as_u64().unwrap());
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
fn cross_validation_scores_every_fold_and_writes_no_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("cv");
    let (catalog, out_dir) = (
        asset("catalogs/skyserver_dr14.csv.gz"),
        out.display().to_string(),
    );
    // 3 folds of a small, one-epoch PhotoZ, with `extra` options.
    let cross_validate = |extra: &[&str]| {
        let base = [
            "train",
            "--catalog",
            &catalog,
            "--out",
            &out_dir,
            "--cross-validate",
            "3",
            "--epochs",
            "1",
            "--width",
            "32",
            "--json",
        ];
        ok_json(&[&base[..], extra].concat())
    };
    let report = cross_validate(&[]);
    let dr14 = &report["catalogs"]["skyserver_dr14.csv.gz"];
    let folds = dr14["folds"].as_array().unwrap();
    assert_eq!(folds.len(), 3, "{report}");
    for f in folds {
        assert!(f["class_accuracy"].as_f64().unwrap() > 0.5, "{f}");
        let one = f["within_1_sigma"].as_f64().unwrap();
        assert!(
            one > 0.0 && one <= f["within_2_sigma"].as_f64().unwrap(),
            "{f}"
        );
    }
    let accuracies: Vec<f64> = folds
        .iter()
        .map(|f| f["class_accuracy"].as_f64().unwrap())
        .collect();
    let mean = accuracies.iter().sum::<f64>() / 3.0;
    assert!((dr14["mean"]["class_accuracy"].as_f64().unwrap() - mean).abs() < 1e-9);
    // The sample standard deviation (n - 1) of the folds' accuracies.
    let sd = (accuracies.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / 2.0).sqrt();
    assert!(
        (dr14["sd"]["class_accuracy"].as_f64().unwrap() - sd).abs() < 1e-9,
        "{} vs {sd}",
        dr14["sd"]
    );
    assert!(out.join("photoz.cv.json").exists());
    assert!(!out.join("photoz.safetensors").exists());
    // Another repeat's folds (`--first-repeat`): other objects held out, other figures.
    let later = cross_validate(&["--first-repeat", "2"]);
    assert_eq!(later["first_repeat"], 2);
    let later_folds = &later["catalogs"]["skyserver_dr14.csv.gz"]["folds"];
    assert_eq!(later_folds.as_array().map(Vec::len), Some(3));
    assert_ne!(later_folds, &dr14["folds"]);
    // Images are not cross-validated.
    let refused = cosmicai(&[
        "train",
        "--catalog",
        &asset("catalogs/skyserver_dr14.csv.gz"),
        "--out",
        &out.display().to_string(),
        "--cross-validate",
        "3",
        "--synthetic-cutouts",
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--synthetic-cutouts"));
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
    // The card names its weights by hash, so a card beside other weights shows.
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("photoz.card.json")).unwrap()).unwrap();
    let hex = card["weights_sha256"].as_str().unwrap();
    assert_eq!(hex.len(), 64);
    let digest = <sha2::Sha256 as sha2::Digest>::digest(weights(&a));
    let expected: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, expected);

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

/// Real labelled cutouts, as a user gets them with `fetch` then `ingest --catalog`:
/// here from the one bundled field. No labelled catalog object lies on it, so 60 of
/// its detections stand in as galaxies with made-up redshifts: this checks how
/// cutouts reach the image branch and the card, not what they are worth.
#[test]
fn train_takes_real_labelled_cutouts_and_scores_them_with_and_without() {
    use std::io::{BufRead, BufReader, Write};
    let tmp = tempfile::tempdir().unwrap();
    let field = asset("fields/2820-3-0122");
    let detections = tmp.path().join("detections");
    ok_json(&[
        "ingest",
        "--frames",
        &field,
        "--detect",
        "--max-sources",
        "60",
        "--out",
        detections.to_str().unwrap(),
        "--json",
    ]);
    let mut positions = Vec::new();
    for path in cosmicai_engine::dataset::list_partitions(&detections).unwrap() {
        let part = cosmicai_engine::partition::read_partition(&path).unwrap();
        positions.extend(part.ra.iter().copied().zip(part.dec.iter().copied()));
    }
    assert_eq!(positions.len(), 60);
    // 300 real DR14 objects, then the stand-ins.
    let catalog = tmp.path().join("with-stand-ins.csv");
    let gz = std::fs::File::open(asset("catalogs/skyserver_dr14.csv.gz")).unwrap();
    let mut out = std::fs::File::create(&catalog).unwrap();
    for line in BufReader::new(flate2::read::GzDecoder::new(gz))
        .lines()
        .take(301)
    {
        writeln!(out, "{}", line.unwrap()).unwrap();
    }
    for (k, (ra, dec)) in positions.iter().enumerate() {
        let z = 0.05 + 0.002 * k as f64;
        writeln!(
            out,
            "{k},{ra},{dec},19.5,18.2,17.6,17.3,17.1,2820,301,3,122,{k},GALAXY,{z},0,0,0"
        )
        .unwrap();
    }
    drop(out);
    let catalog = catalog.to_str().unwrap();
    let labelled = tmp.path().join("labelled");
    ok_json(&[
        "ingest",
        "--frames",
        &field,
        "--catalog",
        catalog,
        "--out",
        labelled.to_str().unwrap(),
        "--json",
    ]);
    let model = tmp.path().join("model");
    let card = ok_json(&[
        "train",
        "--catalog",
        catalog,
        "--out",
        model.to_str().unwrap(),
        "--epochs",
        "1",
        "--width",
        "32",
        "--real-cutouts",
        labelled.to_str().unwrap(),
        "--json",
    ]);
    let real = &card["real_cutouts"];
    assert!(
        real["source"].as_str().unwrap().starts_with("real"),
        "{real}"
    );
    assert!(
        card.get("cutouts").is_none(),
        "no synthetic figures beside real ones"
    );
    let read = real["read"].as_u64().unwrap();
    let (train, validation) = (
        real["train"].as_u64().unwrap(),
        real["validation"].as_u64().unwrap(),
    );
    assert!(read >= 50 && train + validation == read, "{real}");
    assert!(train > 0 && validation > 0, "{real}");
    for key in ["validation_with_cutouts", "validation_magnitudes_only"] {
        assert_eq!(
            real[key]["objects"].as_u64(),
            Some(validation),
            "{key}: {real}"
        );
    }
    let weights = std::fs::read(model.join("photoz.safetensors")).unwrap();
    assert!(weights.windows(11).any(|s| s == b"cutout.join"));
    // Cutouts of objects no given catalog holds: refused before any training.
    let refused = failure(&[
        "train",
        "--catalog",
        &asset("catalogs/skyserver_dr14.csv.gz"),
        "--out",
        tmp.path().join("m2").to_str().unwrap(),
        "--real-cutouts",
        labelled.to_str().unwrap(),
    ]);
    assert!(refused.contains("has a real cutout"), "{refused}");
}

#[test]
fn the_image_branch_trains_on_synthetic_cutouts_and_still_runs_on_magnitudes() {
    use std::io::{BufRead, BufReader, Write};
    // The first 300 DR14 objects and one epoch: convolution gradients are slow in a
    // debug build, so this checks the plumbing; the accuracy figures come from release runs.
    let tmp = tempfile::tempdir().unwrap();
    let small = tmp.path().join("dr14-300.csv");
    let gz = std::fs::File::open(asset("catalogs/skyserver_dr14.csv.gz")).unwrap();
    let mut out = std::fs::File::create(&small).unwrap();
    for line in BufReader::new(flate2::read::GzDecoder::new(gz))
        .lines()
        .take(301)
    {
        writeln!(out, "{}", line.unwrap()).unwrap();
    }
    drop(out);
    let small = small.display().to_string();
    let dir = tmp.path().join("model");
    let train = |extra: &[&str]| {
        let out = dir.join(extra.len().to_string()).display().to_string();
        let args = [
            &[
                "train",
                "--catalog",
                &small,
                "--out",
                &out,
                "--epochs",
                "1",
                "--width",
                "32",
                "--json",
            ],
            extra,
        ]
        .concat();
        (
            ok_json(&args),
            std::fs::read(Path::new(&out).join("photoz.safetensors")).unwrap(),
        )
    };
    let (plain, plain_weights) = train(&[]);
    let (card, weights) = train(&["--synthetic-cutouts"]);
    assert!(plain.get("cutouts").is_none());
    let cutouts = &card["cutouts"];
    assert!(
        cutouts["source"].as_str().unwrap().starts_with("synthetic"),
        "{cutouts}"
    );
    assert_eq!(cutouts["side"], 32);
    assert_eq!(
        cutouts["train"].as_u64().unwrap() + cutouts["validation"].as_u64().unwrap(),
        300
    );
    for key in [
        "validation_class_accuracy_with_synthetic_cutouts",
        "validation_class_accuracy_magnitudes_only",
    ] {
        let a = cutouts[key].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&a), "{key} = {a}");
    }
    // The image branch is in the weights (and only there).
    let has_branch = |w: &[u8]| w.windows(11).any(|s| s == b"cutout.join");
    assert!(has_branch(&weights) && !has_branch(&plain_weights));
    // Real-label metrics stay magnitudes-only, and eval runs the weights on magnitudes.
    assert!(card["validation"]["dr14-300.csv"]["class_accuracy"].is_number());
    let model = dir.join("1/photoz.safetensors").display().to_string();
    let report = ok_json(&["eval", "--catalog", &small, "--model", &model, "--json"]);
    assert_eq!(report["objects"], 300);

    // A run over partitions with cutouts: the image branch reads them; the plain model does not.
    let data = tmp.path().join("synth").display().to_string();
    ok_json(&[
        "synth",
        "--catalog",
        &small,
        "--objects",
        "40",
        "--size",
        "48",
        "--seed",
        "3",
        "--objects-per-file",
        "20",
        "--out",
        &data,
        "--json",
    ]);
    let run = |weights: &str, result_path: &str| {
        let model = format!("photoz:{weights}");
        let args = [
            "run",
            "--data",
            &data,
            "--world-size",
            "2",
            "--batch-size",
            "16",
            "--model",
            &model,
            "--result-path",
            result_path,
            "--json",
        ];
        let out = cosmicai(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        common::last_json_line(&out)
    };
    let with_branch = run(&model, "results/branch");
    let plain = run(
        &dir.join("0/photoz.safetensors").display().to_string(),
        "results/plain",
    );
    assert_eq!(
        (with_branch["objects"].as_u64(), plain["objects"].as_u64()),
        (Some(40), Some(40))
    );
    let used = with_branch["objects_with_cutouts"].as_u64().unwrap();
    assert!(used > 0 && used <= 40, "{with_branch}");
    assert_eq!(plain["objects_with_cutouts"], 0);
    // Per-rank results say the same, in CAI's layout.
    let ranks: u64 = (0..2)
        .map(|r| {
            let f = Path::new(&data).join(format!("results/branch/{r}.json"));
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(f).unwrap()).unwrap();
            v["objects_with_cutouts"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(ranks, used);
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
fn eval_plot_writes_pngs_of_the_scatter_and_of_sigma_coverage() {
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
    // The scatter, and beside it the coverage of σ_z (PhotoZ has a distribution).
    for png in [png.clone(), tmp.path().join("inference-coverage.png")] {
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            bytes.len() > 20_000,
            "{}: {} bytes, an empty plot?",
            png.display(),
            bytes.len()
        );
    }
}

#[test]
fn bench_gemm_measures_both_precisions() {
    let args = |p| {
        [
            "bench",
            "gemm",
            "--size",
            "96",
            "--threads",
            "1",
            "--seconds",
            "0.1",
            "--json",
            "--precision",
            p,
        ]
    };
    let fp32 = ok_json(&args("fp32"));
    assert_eq!(fp32["precision"], "fp32");
    assert!(fp32["gflops_per_s"].as_f64().unwrap() > 0.0, "{fp32}");
    // bf16 runs where the CPU has AVX-512 BF16, and says why not elsewhere.
    let out = cosmicai(&args("bf16"));
    if out.status.success() {
        let bf16: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(bf16["precision"], "bf16");
        assert!(bf16["gflops_per_s"].as_f64().unwrap() > 0.0, "{bf16}");
    } else {
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(
            e.contains("no AVX-512 BF16") && !e.contains("panicked"),
            "{e}"
        );
    }
}

#[test]
fn bench_device_memory_counts_the_gpu_schedule_without_a_gpu() {
    let lines = |precision: &str| -> Vec<Value> {
        let out = cosmicai(&[
            "bench",
            "device-memory",
            "--batch-size",
            "1",
            "--batch-size",
            "4096",
            "--precision",
            precision,
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let fp32 = lines("fp32");
    assert_eq!(fp32.len(), 2);
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
    let (one, big) = (&fp32[0], &fp32[1]);
    assert_eq!(big["batch_size"], 4096);
    // The weights plus a share per object, the same share at both sizes.
    let want = f(big, "weights_mb") + 4096.0 * f(big, "per_object_kb") / 1e3;
    assert!((f(big, "peak_mb") - want).abs() < 1e-3, "{big}");
    assert!(f(one, "peak_mb") > f(one, "weights_mb"), "{one}");
    assert_eq!(one["launches"], big["launches"]);
    // bf16 holds the transformer's weights in half the bytes, and rounds
    // their inputs in launches of its own.
    let bf16 = lines("bf16");
    assert!(
        f(&bf16[0], "weights_mb") < f(one, "weights_mb"),
        "{}",
        bf16[0]
    );
    assert!(bf16[0]["launches"].as_u64() > one["launches"].as_u64());
    for (args, why) in [
        (&["--batch-size", "0"][..], "--batch-size 0: must be 1 to"),
        (&["--image", "16"][..], "--image 16: must be 32 to"),
        (&["--precision", "f16"][..], "runs fp32 or bf16"),
    ] {
        let e = failure(&[&["bench", "device-memory"][..], args].concat());
        assert!(e.contains(why), "{e}");
    }
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
    // Full-size AstroMAE with random weights, a batch of 6 in slices of 4 (the last one short).
    let figures = ok_json(&[
        "bench",
        "infer",
        "--model",
        "astromae",
        "--batch-size",
        "6",
        "--samples",
        "6",
        "--threads",
        "2",
        "--slice",
        "4",
        "--json",
    ]);
    assert_eq!(
        (figures["samples"].as_u64(), figures["slice"].as_u64()),
        (Some(6), Some(4))
    );
    // AstroMAE runs fused by default, and says how much arithmetic it did.
    assert_eq!(figures["backend"], "fused");
    assert_eq!(figures["precision"], "fp32");
    assert_eq!(figures["kernels"], "fp32 (gemm)");
    let gflops = figures["gflops_per_s"].as_f64().unwrap();
    let per_object = gflops * 1e9 / figures["samples_per_s"].as_f64().unwrap();
    assert!(
        (per_object / 1e9 - 0.765).abs() < 0.005,
        "{per_object} FLOP per object"
    );
    // bf16 runs on the fused path, on this CPU's best kernels, and says which.
    let bf16_args = [
        "bench",
        "infer",
        "--model",
        "astromae",
        "--batch-size",
        "6",
        "--samples",
        "6",
        "--precision",
        "bf16",
        "--json",
    ];
    let bf16 = ok_json(&bf16_args);
    assert_eq!(bf16["precision"], "bf16");
    assert!(
        bf16["kernels"]
            .as_str()
            .is_some_and(|k| k.starts_with("bf16 (")),
        "{bf16}"
    );
    // COSMICAI_CPU_BF16=off takes the path of a CPU without AVX-512 BF16.
    let forced = ok_json_with_env(&bf16_args, &[("COSMICAI_CPU_BF16", "off")]);
    assert_eq!(
        forced["kernels"], "bf16 (rounded, on fp32 kernels)",
        "{forced}"
    );
    // f16 does not run on the CPU.
    let e = failure(&[
        "bench",
        "infer",
        "--model",
        "astromae",
        "--precision",
        "f16",
        "--samples",
        "6",
    ]);
    assert!(e.contains("f16 runs on --backend cuda"), "{e}");
    // The fused path runs AstroMAE only.
    let e = failure(&[
        "bench",
        "infer",
        "--model",
        "photoz",
        "--backend",
        "fused",
        "--samples",
        "8",
    ]);
    assert!(e.contains("--backend fused runs AstroMAE only"), "{e}");
    // TF32 is a mode of the GPU's products only.
    let e = failure(&[
        "bench",
        "infer",
        "--model",
        "astromae",
        "--tf32",
        "--samples",
        "8",
    ]);
    assert!(
        e.contains("--tf32 runs on --backend cuda-fused only"),
        "{e}"
    );
}
