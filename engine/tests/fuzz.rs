//! Fuzzing on the stable toolchain: every reader of outside bytes (the targets
//! of `cosmicai_engine::fuzz`) gets inputs mutated from real seeds (bit flips, interesting integers, cuts, splices) for a
//! fixed time budget, in a process held to 2 GB of data. A panic fails the test
//! and saves its input under `target/fuzz-crashes/`; an allocation past the
//! limit aborts the process, which fails it too. Not coverage-guided (cargo-fuzz
//! runs the same targets that way on nightly: `make fuzz`): a bounded,
//! repeatable smoke test of the error paths, and the seeds' home.
//!
//! Budget per target: `COSMICAI_FUZZ_SECONDS` (default 3). Each target prints
//! its execution count (`cargo test --test fuzz -- --nocapture`).

use cosmicai_engine::fuzz as targets;
use cosmicai_engine::imagery::frame::Frame;
use cosmicai_engine::partition::{
    Images, ObjectRow, Partition, PartitionMeta, Source, write_partition,
};
use cosmicai_engine::pipeline::{RankPredictions, encode_predictions, read_predictions};
use cosmicai_shared::model::Prediction;
use cosmicai_shared::{Band, Class, Provenance};
use std::io::{Read, Write};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The mutations' random source: seeded by the target's name, so a run is
/// repeatable.
struct Rng(rand::rngs::SmallRng);

impl Rng {
    fn next(&mut self) -> u64 {
        rand::RngCore::next_u64(&mut self.0)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u64; 10] = [
    0,
    1,
    0x7f,
    0xff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    i64::MAX as u64,
    u64::MAX,
];

/// One to four mutations of a random seed.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING[rng.below(4)] as u8;
            }
            2 if len >= 8 => {
                let i = rng.below(len - 7);
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let width = [1, 2, 4, 8][rng.below(4)];
                data[i..i + width].copy_from_slice(&v[..width]);
            }
            3 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(256)).min(len);
                data.drain(start..end);
            }
            4 => {
                let at = rng.below(len + 1);
                let bytes: Vec<u8> = (0..1 + rng.below(64)).map(|_| rng.next() as u8).collect();
                data.splice(at..at, bytes);
            }
            5 if len > 0 => {
                let start = rng.below(len);
                let end = (start + 1 + rng.below(256)).min(len);
                let copy = data[start..end].to_vec();
                let at = rng.below(len + 1);
                data.splice(at..at, copy);
            }
            6 => data.truncate(rng.below(len + 1)),
            _ => {
                let other = &seeds[rng.below(seeds.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
        }
    }
    data
}

/// Holds this test process to 2 GB of heap and anonymous memory.
fn limit_memory() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let limit = libc::rlimit {
            rlim_cur: 2 << 30,
            rlim_max: 2 << 30,
        };
        // SAFETY: setrlimit reads the struct it is given.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) }, 0);
    });
}

/// Runs `target` on the seeds, then on mutations until the budget is spent.
fn fuzz(name: &str, seeds: &[Vec<u8>], target: impl Fn(&[u8])) {
    limit_memory();
    let budget = std::env::var("COSMICAI_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(3), Duration::from_secs_f64);
    let mut rng = Rng(rand::SeedableRng::seed_from_u64(
        name.bytes()
            .fold(0, |h: u64, b| h.rotate_left(5) ^ u64::from(b)),
    ));
    // The seeds are cargo-fuzz's corpus too (`make fuzz`).
    let corpus = root()
        .join("target/fuzz-corpus")
        .join(name.replace('-', "_"));
    if std::fs::create_dir_all(&corpus).is_ok() {
        for (i, seed) in seeds.iter().enumerate() {
            let _ = std::fs::write(corpus.join(format!("seed-{i}")), seed);
        }
    }
    let started = Instant::now();
    let mut executions = 0usize;
    let mut inputs = seeds.iter().cloned();
    loop {
        let input = match inputs.next() {
            Some(seed) => seed,
            None if started.elapsed() < budget => mutate(&mut rng, seeds),
            None => break,
        };
        if std::panic::catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            let dir = root().join("target/fuzz-crashes");
            let _ = std::fs::create_dir_all(&dir);
            let saved = dir.join(format!("{name}-{executions}.bin"));
            let _ = std::fs::write(&saved, &input);
            panic!(
                "fuzz {name}: execution {executions} panicked; input saved to {}",
                saved.display()
            );
        }
        executions += 1;
    }
    eprintln!(
        "fuzz {name}: {executions} executions in {:.1} s, no panic",
        started.elapsed().as_secs_f64()
    );
}

fn small_partition(images: bool) -> Vec<u8> {
    let mut partition = Partition::new(
        PartitionMeta::default(),
        vec![Source {
            name: "fuzz".into(),
            provenance: Provenance::Synthetic,
            detail: "fuzz seed".into(),
        }],
    );
    for i in 0..2 {
        partition.push(
            ObjectRow {
                object_id: 7 + i,
                ra: 10.0,
                dec: -1.0,
                magnitudes: [19.0, 18.0, 17.5, 17.2, 17.0],
                redshift: 0.1,
                class: Class::Galaxy,
            },
            0,
        );
    }
    if images {
        partition.images = Some(Images {
            height: 32,
            width: 32,
            pixels: (0..2 * 5 * 32 * 32).map(|i| i as f32 / 100.0).collect(),
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.safetensors");
    write_partition(&path, &partition).unwrap();
    std::fs::read(path).unwrap()
}

#[test]
fn fuzz_partition_reader() {
    let seeds = [small_partition(true), small_partition(false)];
    fuzz("partition", &seeds, targets::partition);
}

/// A 16 x 16 FITS frame with the bundled real frame's header (its WCS).
fn small_fits() -> Vec<u8> {
    let frame = root().join("assets/fields/2820-3-0122/frame-r-002820-3-0122.fits.bz2");
    let mut bytes = Vec::new();
    bzip2::read::BzDecoder::new(std::fs::File::open(frame).unwrap())
        .take(1 << 20)
        .read_to_end(&mut bytes)
        .unwrap();
    let mut header = Vec::new();
    for card in bytes.chunks(80) {
        let text = String::from_utf8_lossy(card);
        let card = if text.starts_with("NAXIS1  =") || text.starts_with("NAXIS2  =") {
            format!("{:<80}", format!("{}= {:>20}", &text[..8], 16))
        } else {
            text.into_owned()
        };
        header.extend_from_slice(card.as_bytes());
        if card.starts_with("END ") {
            break;
        }
    }
    header.resize(header.len().div_ceil(2880) * 2880, b' ');
    for i in 0..16 * 16 {
        header.extend_from_slice(&(i as f32 / 10.0).to_be_bytes());
    }
    header.resize(header.len().div_ceil(2880) * 2880, 0);
    header
}

fn bz2(bytes: &[u8]) -> Vec<u8> {
    let mut out = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    out.write_all(bytes).unwrap();
    out.finish().unwrap()
}

#[test]
fn fuzz_fits_frames() {
    let seed = small_fits();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("seed.fits"), &seed).unwrap();
    let opened = Frame::open(&dir.path().join("seed.fits"), Band::R);
    assert!(opened.is_ok(), "the seed must be a valid frame");
    fuzz("fits", std::slice::from_ref(&seed), targets::fits);
    fuzz("fits-bz2", &[bz2(&seed)], targets::fits_bz2);
}

/// The first 40 lines of each bundled catalog.
fn catalog_heads() -> Vec<Vec<u8>> {
    ["sdss17_star_classification.csv.gz", "skyserver_dr14.csv.gz"]
        .iter()
        .map(|name| {
            let file = std::fs::File::open(root().join("assets/catalogs").join(name)).unwrap();
            let mut text = String::new();
            flate2::read::GzDecoder::new(file)
                .take(64 << 10)
                .read_to_string(&mut text)
                .unwrap();
            let head: Vec<&str> = text.lines().take(40).collect();
            (head.join("\n") + "\n").into_bytes()
        })
        .collect()
}

#[test]
fn fuzz_catalog_csv() {
    let seeds = catalog_heads();
    fuzz("csv", &seeds, targets::catalog_csv);
    let gz: Vec<Vec<u8>> = seeds
        .iter()
        .map(|s| {
            let mut out = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            out.write_all(s).unwrap();
            out.finish().unwrap()
        })
        .collect();
    fuzz("csv-gz", &gz, targets::catalog_csv_gz);
}

#[test]
fn fuzz_predictions_reader() {
    let p = RankPredictions {
        object_id: vec![1, 2, 3],
        redshift: vec![0.1, f32::NAN, 2.0],
        class: vec![Class::Galaxy, Class::Star, Class::Qso],
        predicted: vec![
            Prediction::redshift_only(0.12),
            Prediction::redshift_only(0.0),
            Prediction::redshift_only(1.9),
        ],
        synthetic: vec![false, false, true],
        partition: vec![0, 0, 1],
        row: vec![0, 1, 0],
    };
    let seed = encode_predictions(&p).unwrap();
    assert_eq!(read_predictions(&seed).unwrap().object_id, p.object_id);
    fuzz("predictions", &[seed], targets::predictions);
}

#[test]
fn fuzz_weight_loaders() {
    type B = burn::backend::NdArray<f32>;
    let fixtures = root().join("model/tests/fixtures/astromae_small");
    let seeds: Vec<Vec<u8>> = [
        root().join("assets/model/photoz.safetensors"),
        fixtures.join("astromae.safetensors"),
        fixtures.join("astromae_state_dict.pt"),
        fixtures.join("astromae_module.pt"),
    ]
    .iter()
    .map(|p| std::fs::read(p).unwrap())
    .collect();
    fuzz("weights", &seeds, targets::weights::<B>);
}

#[test]
fn fuzz_cai_partitions() {
    let seed =
        std::fs::read(root().join("model/tests/fixtures/astromae_small/partition.pt")).unwrap();
    fuzz("cai-partition", &[seed], targets::cai_partition);
}

#[test]
fn fuzz_stage_events_and_api_bodies() {
    let events = [
        r#"{"stage":"initialize","run_id":"run-1","request":{"bucket":"b","data_prefix":"data","batch_size":512,"world_size":4,"result_path":"results/run-1","model":"astromae:models/a.safetensors"}}"#,
        r#"{"stage":"infer","run_id":"run-1","bucket":"b","result_path":"results/run-1","rank":3,"device":"cpu"}"#,
        r#"{"stage":"summarize","run_id":"run-1","bucket":"b","result_path":"results/run-1","world_size":4,"started_at_ms":1}"#,
    ];
    let seeds: Vec<Vec<u8>> = events.iter().map(|e| e.as_bytes().to_vec()).collect();
    fuzz("stage-events", &seeds, targets::stage_events);
    let bodies = [
        r#"{"world_size":2,"batch_size":512,"data_prefix":"catalog","file_limit":3,"device":"cpu","memory_mb":2048,"retries":1,"model":"photoz","timeout_s":60}"#,
        r#"{"world_sizes":[1,2,4],"batch_size":512,"devices":["cpu","cuda"],"model":"astromae:x.pt"}"#,
    ];
    let seeds: Vec<Vec<u8>> = bodies.iter().map(|e| e.as_bytes().to_vec()).collect();
    fuzz("api-bodies", &seeds, targets::api_bodies);
}
