//! Helpers shared by the CLI tests: run `cosmicai`, read its JSON, find assets.
#![allow(dead_code)] // each test file uses its own subset

pub mod archive;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

pub fn cosmicai(args: &[&str]) -> Output {
    cosmicai_with_env(args, &[])
}

/// [`cosmicai`] with environment variables set for it.
pub fn cosmicai_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cosmicai"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run cosmicai")
}

/// Runs a command that must succeed and print one JSON object.
pub fn ok_json(args: &[&str]) -> Value {
    ok_json_with_env(args, &[])
}

/// [`ok_json`] with environment variables set for it.
pub fn ok_json_with_env(args: &[&str], env: &[(&str, &str)]) -> Value {
    let out = cosmicai_with_env(args, env);
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

/// A file of the small AstroMAE fixture (made by the PyTorch peer, see its README).
pub fn astromae_fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../model/tests/fixtures/astromae_small")
        .join(name)
}

/// PyTorch's redshifts for the fixture's four objects (object ids 1 to 4).
pub fn astromae_expected() -> Vec<f32> {
    let io = cosmicai_model::weights::Weights::open(astromae_fixture("io.safetensors")).unwrap();
    io.values("redshift").unwrap().to_vec()
}

/// The fixture's four objects as two partitions in `dir` (32x32 cutouts, the
/// labels PyTorch's redshifts); `images: false` leaves the second one without cutouts.
pub fn astromae_partitions(dir: &Path, images: bool) {
    use cosmicai_engine::partition::{
        Images, ObjectRow, Partition, PartitionMeta, Source, write_partition,
    };
    let io = cosmicai_model::weights::Weights::open(astromae_fixture("io.safetensors")).unwrap();
    let (pixels, mags, z) = (
        io.values("images").unwrap(),
        io.values("magnitudes").unwrap(),
        io.values("redshift").unwrap(),
    );
    std::fs::create_dir_all(dir).unwrap();
    let per = 5 * 32 * 32;
    for (part, range) in [0..2usize, 2..4].into_iter().enumerate() {
        let mut p = Partition::new(
            PartitionMeta::default(),
            vec![Source {
                name: "astromae fixture".into(),
                provenance: cosmicai_shared::Provenance::Synthetic,
                detail: "random inputs of the PyTorch peer".into(),
            }],
        );
        for i in range.clone() {
            let m = &mags[i * 5..i * 5 + 5];
            p.push(
                ObjectRow {
                    object_id: i as i64 + 1,
                    ra: f64::NAN,
                    dec: f64::NAN,
                    magnitudes: [m[0], m[1], m[2], m[3], m[4]],
                    redshift: z[i],
                    class: cosmicai_shared::Class::Galaxy,
                },
                0,
            );
        }
        if images || part == 0 {
            p.images = Some(Images {
                height: 32,
                width: 32,
                pixels: pixels[range.start * per..range.end * per].to_vec(),
            });
        }
        write_partition(dir.join(format!("part-{part}.safetensors")), &p).unwrap();
    }
}

/// Every object's predicted redshift in a local run's predictions, by object id.
pub fn predicted_redshifts(result_dir: &Path, ranks: usize) -> Vec<(i64, f32)> {
    let mut out = Vec::new();
    for rank in 0..ranks {
        let bytes =
            std::fs::read(result_dir.join(format!("predictions/{rank}.safetensors"))).unwrap();
        let p = cosmicai_engine::pipeline::read_predictions(&bytes).unwrap();
        out.extend(
            p.object_id
                .iter()
                .copied()
                .zip(p.predicted.iter().map(|q| q.redshift)),
        );
    }
    out
}

/// The DR14 catalog in 4 partitions (2,200 objects each) under `dir/data`.
pub fn dataset(dir: &Path) -> String {
    let catalog =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/catalogs/skyserver_dr14.csv.gz");
    let data = dir.join("data");
    let out = cosmicai(&[
        "catalog",
        "import",
        &catalog.display().to_string(),
        "--out",
        &data.display().to_string(),
        "--objects",
        "2200",
    ]);
    assert!(out.status.success());
    data.display().to_string()
}

/// Pids of `cosmicai worker` processes of the run whose data directory is `data`.
pub fn workers(data: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if args.contains(&&b"worker"[..]) && args.contains(&data.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether two JSON values are the same, numbers with a float's last digits
/// aside (a rank file's figures are read and written again into
/// combined_data.json, and serde_json's parsing may move a float by an ulp).
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
            match (x.as_f64(), y.as_f64()) {
                (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-12 * x.abs().max(y.abs()),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// The address (`127.0.0.1:PORT`) `cosmicai serve` spawned as `child` (its
/// stdout piped) listens on, once it says so.
pub fn serving_addr(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let line = std::io::BufReader::new(child.stdout.take().expect("serve's stdout piped"))
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("listening on "))
        .expect("serve printed its address");
    format!("127.0.0.1:{}", line.rsplit(':').next().unwrap_or_default())
}
