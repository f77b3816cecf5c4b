//! A CAI user's path on the command line: `model import` of both `.pt` forms, then
//! `run --model astromae:…` (world size 2, worker processes) reproducing PyTorch's
//! redshifts, read back from the predictions and CAI's `combined_data.json`.

mod common;
use common::{
    astromae_expected, astromae_fixture, astromae_partitions, cosmicai, failure, last_json_line,
    ok_json, predicted_redshifts,
};
use cosmicai_model::weights::Weights;

#[test]
fn model_import_reads_both_pt_forms_into_the_fixture_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = Weights::open(astromae_fixture("astromae.safetensors")).unwrap();
    for file in ["astromae_module.pt", "astromae_state_dict.pt"] {
        let out = tmp.path().join(format!("{file}.safetensors"));
        let report = ok_json(&[
            "model",
            "import",
            &astromae_fixture(file).display().to_string(),
            "--out",
            &out.display().to_string(),
            "--json",
        ]);
        assert_eq!(report["depth"], 2, "{report}");
        assert_eq!(report["embed_dim"], 24);
        let written = Weights::open(&out).unwrap();
        let (a, b) = (reference.sorted(), written.sorted());
        assert_eq!(a.len(), b.len(), "{file}");
        assert!(
            a.iter().zip(&b).all(|(x, y)| x == y),
            "{file}: tensors differ"
        );
    }
}

#[test]
fn model_import_refuses_broken_files_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.pt");
    std::fs::write(&junk, b"PK\x03\x04 no zip here").unwrap();
    let out = tmp.path().join("out.safetensors");
    let e = failure(&[
        "model",
        "import",
        &junk.display().to_string(),
        "--out",
        &out.display().to_string(),
    ]);
    assert!(e.contains("junk.pt") && e.contains("zip"), "{e}");
    assert!(!out.exists(), "nothing written");
    // A PhotoZ weight file is not an AstroMAE checkpoint.
    let e = failure(&[
        "model",
        "import",
        &common::asset("model/photoz.safetensors"),
        "--out",
        &out.display().to_string(),
    ]);
    assert!(
        e.contains("patch_embed.proj.weight") && e.contains("missing"),
        "{e}"
    );
    // A file already there is kept unless --force, and the checkpoint always.
    let checkpoint = tmp.path().join("m.pt");
    std::fs::copy(astromae_fixture("astromae_module.pt"), &checkpoint).unwrap();
    let before = std::fs::read(&checkpoint).unwrap();
    let (ck, kept) = (
        checkpoint.display().to_string(),
        tmp.path().join("kept.safetensors"),
    );
    std::fs::write(&kept, b"mine").unwrap();
    let e = failure(&["model", "import", &ck, "--out", &kept.display().to_string()]);
    assert!(e.contains("exists; pass --force"), "{e}");
    assert_eq!(std::fs::read(&kept).unwrap(), b"mine");
    let e = failure(&["model", "import", &ck, "--out", &ck, "--force"]);
    assert!(e.contains("is the checkpoint itself"), "{e}");
    // It writes safetensors: a `.pt` name would be read back as a pickle.
    let named_pt = tmp.path().join("converted.pt").display().to_string();
    let e = failure(&["model", "import", &ck, "--out", &named_pt]);
    assert!(e.contains("name it NAME.safetensors"), "{e}");
    assert!(!tmp.path().join("converted.pt").exists());
    assert_eq!(std::fs::read(&checkpoint).unwrap(), before);
    ok_json(&[
        "model",
        "import",
        &ck,
        "--out",
        &kept.display().to_string(),
        "--force",
        "--json",
    ]);
    assert_ne!(std::fs::read(&kept).unwrap(), b"mine");
}

#[test]
fn a_local_run_with_a_cai_checkpoint_reproduces_pytorch() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    astromae_partitions(&data, true);
    let model = format!(
        "astromae:{}",
        astromae_fixture("astromae_module.pt").display()
    );
    let out = cosmicai(&[
        "run",
        "--data",
        &data.display().to_string(),
        "--world-size",
        "2",
        "--batch-size",
        "3",
        "--model",
        &model,
        "--result-path",
        "results/cai",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = last_json_line(&out);
    assert_eq!(summary["status"], "succeeded", "{summary}");
    assert_eq!(summary["objects_with_cutouts"], 4);
    assert_eq!(summary["predicts_class"], false);
    let expected = astromae_expected();
    let results = data.join("results/cai");
    let predicted = predicted_redshifts(&results, 2);
    assert_eq!(predicted.len(), 4);
    for (id, z) in predicted {
        let want = expected[(id - 1) as usize];
        assert!(
            (z - want).abs() <= 1e-4,
            "object {id}: {z} vs PyTorch {want}"
        );
    }
    let combined: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("combined_data.json")).unwrap())
            .unwrap();
    let ranks = combined.as_array().unwrap();
    assert_eq!(ranks.len(), 2);
    for r in ranks {
        assert_eq!(r["objects"], 2);
        assert!(r["model"].as_str().unwrap().starts_with("astromae:"), "{r}");
        assert!(r["sample_persec"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn a_partition_without_cutouts_is_named_before_any_rank_starts() {
    // Its rank would fail, paid for: the plan reads the partitions' headers.
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    astromae_partitions(&data, false);
    let model = format!(
        "astromae:{}",
        astromae_fixture("astromae.safetensors").display()
    );
    let e = failure(&[
        "run",
        "--data",
        &data.display().to_string(),
        "--world-size",
        "2",
        "--batch-size",
        "4",
        "--model",
        &model,
        "--json",
    ]);
    assert!(
        e.contains("part-1.safetensors holds no cutouts (a catalog's magnitudes alone), and AstroMAE predicts from images"),
        "{e}"
    );
    assert!(
        !data.join("results").exists(),
        "a refused plan writes no results"
    );
}

#[test]
fn a_missing_checkpoint_is_named_before_any_rank_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    astromae_partitions(&data, true);
    let e = failure(&[
        "run",
        "--data",
        &data.display().to_string(),
        "--world-size",
        "1",
        "--batch-size",
        "4",
        "--model",
        "astromae:nowhere.pt",
    ]);
    assert!(e.contains("nowhere.pt"), "{e}");
    assert!(!data.join("results").exists(), "no run was started");
    // A file that holds another model: named once, before any rank starts.
    let e = failure(&[
        "run",
        "--data",
        &data.display().to_string(),
        "--world-size",
        "2",
        "--batch-size",
        "4",
        "--model",
        &format!("astromae:{}", astromae_fixture("io.safetensors").display()),
    ]);
    assert!(
        e.contains("patch_embed.proj.weight: missing tensor") && e.contains("no rank was started"),
        "{e}"
    );
    assert!(!data.join("results").exists(), "no run was started");
}

#[test]
fn cai_pt_partitions_import_bit_for_bit_and_run_with_astromae() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("imported");
    let args = [
        "partition".to_string(),
        "import".into(),
        astromae_fixture("partition.pt").display().to_string(),
        "--out".into(),
        out.display().to_string(),
        "--json".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = ok_json(&args);
    assert_eq!(
        (report["written"].clone(), report["objects"].clone()),
        (1.into(), 4.into())
    );
    // Images and magnitudes equal the fixture's, bit for bit; redshift is the label.
    let file =
        cosmicai_engine::partition::PartitionFile::open(out.join("partition.safetensors")).unwrap();
    let io = Weights::open(astromae_fixture("io.safetensors")).unwrap();
    assert_eq!(file.image_size(), Some((32, 32)));
    let same = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
    assert!(same(&file.images(0..4), io.values("images").unwrap()));
    let catalog = file.catalog();
    assert!(same(
        catalog.magnitudes.as_flattened(),
        io.values("magnitudes").unwrap()
    ));
    assert!(same(&catalog.redshift, io.values("redshift").unwrap()));
    // A second import converts nothing.
    let again = ok_json(&args);
    assert_eq!(
        (again["written"].clone(), again["skipped"].clone()),
        (0.into(), 1.into())
    );

    // A folder of CAI .pt files is a dataset for `run`: converted once, then run.
    let cai = tmp.path().join("cai");
    std::fs::create_dir_all(&cai).unwrap();
    std::fs::copy(astromae_fixture("partition.pt"), cai.join("partition_0.pt")).unwrap();
    let model = format!(
        "astromae:{}",
        astromae_fixture("astromae_state_dict.pt").display()
    );
    let data = cai.display().to_string();
    let run = |result_path: &str, more: &[&str]| {
        let args = [
            "run",
            "--data",
            &data,
            "--world-size",
            "1",
            "--batch-size",
            "2",
            "--model",
            &model,
            "--result-path",
            result_path,
        ];
        cosmicai(&[&args[..], more].concat())
    };
    let out = run("results/r", &["--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last_json_line(&out)["objects"], 4);
    // CAI's files carry no class: the text report scores every object with a redshift.
    let text = run("results/text", &[]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(text.status.success(), "{stdout}");
    assert!(
        stdout.contains("objects with a spectroscopic redshift (no class known")
            && stdout.contains(": n 4 NMAD"),
        "{stdout}"
    );
    // What computed it, in the report and in the summary.
    assert!(
        stdout.contains("  on cpu in fp32: fused CPU, fp32\n"),
        "{stdout}"
    );
    assert_eq!(last_json_line(&out)["kernels"], "fused CPU, fp32");
    let expected = astromae_expected();
    let predicted = predicted_redshifts(&cai.join("results/r"), 1);
    assert_eq!(predicted.len(), 4);
    for (id, z) in predicted {
        let row = (0..4)
            .position(|r| cosmicai_engine::cai::cai_object_id("partition_0.pt", r) == id)
            .unwrap();
        assert!(
            (z - expected[row]).abs() <= 1e-4,
            "row {row}: {z} vs {}",
            expected[row]
        );
    }
}

#[test]
fn files_that_are_not_cai_partitions_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o").display().to_string();
    let e = failure(&[
        "partition",
        "import",
        &astromae_fixture("astromae_module.pt").display().to_string(),
        "--out",
        &out,
    ]);
    assert!(
        e.contains("astromae_module.pt") && e.contains("not a TensorDataset"),
        "{e}"
    );
    let cut = tmp.path().join("cut.pt");
    let bytes = std::fs::read(astromae_fixture("partition.pt")).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = failure(&[
        "partition",
        "import",
        &cut.display().to_string(),
        "--out",
        &out,
    ]);
    assert!(e.contains("cut.pt"), "{e}");
}

#[test]
fn an_astromae_estimate_is_measured_on_astromae() {
    // The calibration runs the run's own model on cutouts (it ran PhotoZ on
    // magnitudes whatever the model, about a hundred times too fast for AstroMAE).
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    astromae_partitions(&data, true);
    let model = format!(
        "astromae:{}",
        astromae_fixture("astromae.safetensors").display()
    );
    let data = data.display().to_string();
    let args = [
        "run",
        "--data",
        &data,
        "--world-size",
        "2",
        "--batch-size",
        "4",
        "--estimate",
        "--json",
    ];
    let mut with_model = args.to_vec();
    with_model.extend(["--model", &model]);
    let e = ok_json(&with_model);
    assert!(
        e["calibration_samples_per_s"].as_f64().unwrap() > 0.0,
        "{e}"
    );
    assert_eq!(e["objects"], 4, "{e}");
}
