//! `cosmicai fetch` against an SDSS archive served in this process
//! (`common::archive`), with failures injected: 503s, transfers cut off
//! mid-file (resumed with HTTP Range), damaged files, absent fields.

mod common;

use common::archive::{FIELD_DIR, Fault, Shared, serve};
use common::{asset, cosmicai, ok_json};
use cosmicai_engine::archive::fetch::{FetchOptions, FrameJob, Outcome, fetch};
use cosmicai_engine::archive::{FrameCache, SdssField};
use cosmicai_engine::partition::read_partition;
use cosmicai_shared::Band;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A DR14-style catalog: three labelled galaxies on field 2820-3-0122 (RA
/// 38.248–38.412, Dec −0.220–+0.006), one row naming that field under another
/// rerun (off its pixels: the same frame files), and one object on field 752-4-267.
fn catalog(dir: &Path) -> PathBuf {
    let path = dir.join("objects.csv");
    std::fs::write(
        &path,
        "objid,ra,dec,u,g,r,i,z,run,rerun,camcol,field,specobjid,class,redshift\n\
         1,38.30,-0.10,20.1,19.0,18.2,17.8,17.5,2820,301,3,122,0,GALAXY,0.11\n\
         2,38.35,-0.05,21.0,19.9,19.1,18.7,18.4,2820,301,3,122,0,GALAXY,0.23\n\
         3,38.38,-0.15,19.5,18.4,17.9,17.6,17.4,2820,301,3,122,0,STAR,0.0001\n\
         4,183.5,0.09,19.4,17.0,15.9,15.5,15.2,752,301,4,267,0,STAR,0.0\n\
         5,40.0,0.5,20.0,19.0,18.5,18.2,18.0,2820,302,3,122,0,GALAXY,0.05\n",
    )
    .unwrap();
    path
}

/// The Range headers of each request the archive saw for `band`'s frame.
fn ranges_asked(requests: &[(String, Option<String>)], band: char) -> Vec<Option<String>> {
    requests
        .iter()
        .filter(|(f, _)| *f == frame_name(band))
        .map(|(_, r)| r.clone())
        .collect()
}

fn frame_name(band: char) -> String {
    format!("frame-{band}-002820-3-0122.fits.bz2")
}

fn images(dataset: &Path) -> Vec<f32> {
    let mut pixels = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dataset)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    for file in files {
        pixels.extend(read_partition(&file).unwrap().images.unwrap().pixels);
    }
    pixels
}

/// `cosmicai fetch` of `catalog` from the archive at `url` into `cache`, then `extra`.
fn fetch_args<'a>(
    catalog: &'a Path,
    url: &'a str,
    cache: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec![
        "fetch",
        "--catalog",
        catalog.to_str().unwrap(),
        "--archive",
        url,
        "--out",
        cache.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn fetch_gets_a_fields_frames_once_through_failures_and_ingest_cuts_the_same_pixels() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = catalog(dir.path());
    let cache = dir.path().join("cache");
    let archive = Shared::default();
    let r_size = std::fs::metadata(Path::new(&asset(FIELD_DIR)).join(frame_name('r')))
        .unwrap()
        .len() as usize;
    {
        let mut a = archive.lock().unwrap();
        // r: a 503, then the transfer cut at 40%: the next try must resume there.
        a.faults.insert(
            frame_name('r'),
            [Fault::Unavailable, Fault::CutAt(r_size * 2 / 5)].into(),
        );
        // g: a whole file that is not the frame: it must be checked and fetched afresh.
        a.faults.insert(frame_name('g'), [Fault::Damaged].into());
    }
    let url = serve(archive.clone());
    let fetch = |extra: &[&str]| {
        let mut args = fetch_args(&catalog, &url, &cache, &["--backoff-ms", "1", "--json"]);
        args.extend_from_slice(extra);
        ok_json(&args)
    };

    // --fields 1 takes the field with the most labelled objects: 2820-3-0122.
    let report = fetch(&["--fields", "1"]);
    // Reruns 301 and 302 of 2820-3-0122 are one field: their frames are one file.
    assert_eq!(report["fields_named"], 2, "{report}");
    assert_eq!(report["fields_chosen"], 1, "{report}");
    assert_eq!(report["objects_covered"], 4, "{report}");
    assert_eq!(
        (report["downloaded"].as_u64(), report["failed"].as_u64()),
        (Some(5), Some(0)),
        "{report}"
    );
    for band in ['u', 'g', 'r', 'i', 'z'] {
        let name = frame_name(band);
        assert_eq!(
            std::fs::read(cache.join(&name)).unwrap(),
            std::fs::read(Path::new(&asset(FIELD_DIR)).join(&name)).unwrap(),
            "{name} differs from the archive's"
        );
    }
    let requests = archive.lock().unwrap().requests.clone();
    let of = |band: char| ranges_asked(&requests, band);
    assert_eq!(requests.len(), 5 + 2 + 1, "{requests:?}");
    assert_eq!(
        of('r'),
        [None, None, Some(format!("bytes={}-", r_size * 2 / 5))]
    );
    assert_eq!(
        of('g'),
        [None, None],
        "a damaged frame is fetched again from its start"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".fits.bz2") && n != ".lock")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A second fetch asks the archive for nothing.
    let again = fetch(&["--fields", "1"]);
    assert_eq!(
        (again["cached"].as_u64(), again["downloaded"].as_u64()),
        (Some(5), Some(0))
    );
    assert_eq!(archive.lock().unwrap().requests.len(), requests.len());

    // The cache is a frames directory: ingest cuts the same pixels from it as from
    // the bundled field.
    let from_cache = dir.path().join("from-cache");
    let from_assets = dir.path().join("from-assets");
    for (frames, out) in [
        (cache.clone(), &from_cache),
        (PathBuf::from(asset(FIELD_DIR)), &from_assets),
    ] {
        ok_json(&[
            "ingest",
            "--frames",
            frames.to_str().unwrap(),
            "--catalog",
            catalog.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--json",
        ]);
    }
    let (a, b) = (images(&from_cache), images(&from_assets));
    assert_eq!(a.len(), 3 * 5 * 64 * 64);
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()) && a.len() == b.len());

    // A field a fetch left short of bands is skipped, named, and the rest cut.
    std::fs::copy(
        cache.join(frame_name('r')),
        cache.join("frame-r-000752-4-0267.fits.bz2"),
    )
    .unwrap();
    let out = cosmicai(&[
        "ingest",
        "--frames",
        cache.to_str().unwrap(),
        "--catalog",
        catalog.to_str().unwrap(),
        "--out",
        dir.path().join("with-short-field").to_str().unwrap(),
        "--json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("field 000752-4-0267 skipped: it has no ugiz frame"),
        "{stderr}"
    );
    assert_eq!(images(&dir.path().join("with-short-field")), a);

    // One fetch at a time per cache: a second is refused while the first holds it.
    let held = FrameCache::open(&cache).unwrap().lock().unwrap();
    assert!(held.is_some());
    let out = cosmicai(&fetch_args(&catalog, &url, &cache, &["--fields", "1"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("another cosmicai fetch is writing to"),
        "{stderr}"
    );
    drop(held);
    assert_eq!(fetch(&["--fields", "1"])["cached"], 5);
}

/// Parts a killed fetch left behind meet servers that answer Range requests
/// badly: each frame still ends whole and byte-identical.
#[test]
fn resumed_parts_survive_servers_that_ignore_or_garble_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = catalog(dir.path());
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let bundled =
        |band: char| std::fs::read(Path::new(&asset(FIELD_DIR)).join(frame_name(band))).unwrap();
    let part = |band: char| cache.join(format!("{}.part", frame_name(band)));
    // u: the whole file, never checked (killed before its rename): a 416.
    std::fs::write(part('u'), bundled('u')).unwrap();
    // g and r: 1000 bytes, then a 200 with the whole file, or a range one byte off.
    std::fs::write(part('g'), &bundled('g')[..1000]).unwrap();
    std::fs::write(part('r'), &bundled('r')[..1000]).unwrap();
    let archive = Shared::default();
    {
        let mut a = archive.lock().unwrap();
        a.faults
            .insert(frame_name('g'), [Fault::IgnoreRange].into());
        a.faults.insert(frame_name('r'), [Fault::WrongRange].into());
    }
    let url = serve(archive.clone());
    let report = ok_json(&fetch_args(
        &catalog,
        &url,
        &cache,
        &["--fields", "1", "--backoff-ms", "1", "--json"],
    ));
    assert_eq!(report["downloaded"], 5, "{report}");
    for band in ['u', 'g', 'r', 'i', 'z'] {
        assert_eq!(
            std::fs::read(cache.join(frame_name(band))).unwrap(),
            bundled(band),
            "{band}"
        );
        assert!(!part(band).exists(), "{band}: its part is left");
    }
    let requests = archive.lock().unwrap().requests.clone();
    let of = |band: char| ranges_asked(&requests, band);
    let u_size = bundled('u').len();
    assert_eq!(of('u'), [Some(format!("bytes={u_size}-"))]);
    assert_eq!(of('g'), [Some("bytes=1000-".to_string())]);
    assert_eq!(of('r'), [Some("bytes=1000-".to_string()), None]);
}

/// The budget holds while transfers run, not only in the plan: a frame whose
/// real size does not fit is not taken, and the same file asked twice is one
/// transfer.
#[test]
fn the_budget_holds_at_run_time_and_a_file_is_fetched_once() {
    let dir = tempfile::tempdir().unwrap();
    let archive = Shared::default();
    let url = serve(archive.clone());
    let field = SdssField::parse("2820", "301", "3", "122").unwrap();
    let jobs: Vec<FrameJob> = [Band::U, Band::G, Band::U]
        .into_iter()
        .map(|band| FrameJob { field, band })
        .collect();
    let cache = FrameCache::open(&dir.path().join("cache")).unwrap();
    let options = |budget| FetchOptions {
        archive: url.clone(),
        backoff: std::time::Duration::from_millis(1),
        budget,
        ..FetchOptions::default()
    };
    let none = Arc::new(|_| {});
    let report = fetch(&cache, &jobs, &options(1_000_000), none.clone()).unwrap();
    assert!(
        report.frames.iter().all(|(_, o)| *o == Outcome::OverBudget),
        "{:?}",
        report.frames
    );
    assert_eq!(cache.bytes(), 0);

    let report = fetch(&cache, &jobs, &options(u64::MAX), none).unwrap();
    let outcomes: Vec<_> = report.frames.iter().map(|(_, o)| o.clone()).collect();
    assert!(
        matches!(outcomes[0], Outcome::Downloaded { .. }),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[1], Outcome::Downloaded { .. }),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[2], outcomes[0], "u asked twice shares one outcome");
    let asked = archive.lock().unwrap().requests.len();
    assert_eq!(
        asked,
        2 + 2,
        "u and g refused by the budget after their headers, then fetched"
    );
    assert_eq!(
        std::fs::read(cache.dir().join(frame_name('u'))).unwrap(),
        std::fs::read(Path::new(&asset(FIELD_DIR)).join(frame_name('u'))).unwrap()
    );
}

#[test]
fn missing_frames_budget_and_bad_input_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = catalog(dir.path());
    let cache = dir.path().join("cache");
    let archive = Shared::default();
    let url = serve(archive.clone());
    let base = |extra: &[&str]| {
        let mut args = vec![
            "fetch".to_string(),
            "--catalog".into(),
            catalog.display().to_string(),
            "--out".into(),
            cache.display().to_string(),
            "--backoff-ms".into(),
            "1".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let run = |args: Vec<String>| cosmicai(&args.iter().map(String::as_str).collect::<Vec<_>>());

    // Both fields: the archive lacks 752-4-267, which is reported (404, not
    // retried), and the frames that arrived stay.
    // No selection: refused, with the size of --all named.
    let out = run(base(&["--archive", &url]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--all") && stderr.contains("2 fields"),
        "{stderr}"
    );
    assert!(!cache.exists(), "refused before the cache is made");
    let out = run(base(&["--archive", &url, "--json", "--all"]));
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["downloaded"].as_u64(), report["missing"].as_u64()),
        (Some(5), Some(5)),
        "{report}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("5 of 10 frames did not arrive"), "{stderr}");
    assert!(
        report["failures"][0]
            .as_str()
            .unwrap()
            .contains("frame-u-000752-4-0267.fits.bz2: not in the archive (HTTP 404)"),
        "{report}"
    );
    let asked_752 = archive
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|(f, _)| f.contains("000752"))
        .count();
    assert_eq!(asked_752, 5, "a 404 is not retried");

    // A budget smaller than one more field plans nothing beyond what is cached.
    let planned = ok_json(
        &base(&[
            "--archive",
            &url,
            "--json",
            "--dry-run",
            "--all",
            "--budget",
            "17MB",
        ])
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>(),
    );
    assert_eq!(
        (
            planned["fields_chosen"].as_u64(),
            planned["fields_over_budget"].as_u64()
        ),
        (Some(1), Some(1)),
        "{planned}"
    );
    // The same fetch for real keeps what fits and fails on what did not.
    let out = run(base(&["--archive", &url, "--all", "--budget", "17MB"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("1 fields and 0 frames did not fit --budget"),
        "{stderr}"
    );

    // Bad input names the input.
    let no_fields = dir.path().join("no-fields.csv");
    std::fs::write(
        &no_fields,
        "ra,dec,u,g,r,i,z,class,redshift\n38.3,-0.1,20,19,18,17,17,GALAXY,0.1\n",
    )
    .unwrap();
    for (args, expected) in [
        (
            vec![
                "--archive".to_string(),
                "ftp://example.org/frames".into(),
                "--all".into(),
            ],
            "not an http(s) URL",
        ),
        (
            vec![
                "--archive".to_string(),
                url.clone(),
                "--bands".into(),
                "gx".into(),
            ],
            "'x' is not an SDSS band",
        ),
    ] {
        let out = run(base(&args.iter().map(String::as_str).collect::<Vec<_>>()));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(expected),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = cosmicai(&[
        "fetch",
        "--catalog",
        no_fields.to_str().unwrap(),
        "--out",
        cache.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("names its SDSS field") && stderr.contains("no-fields.csv"),
        "{stderr}"
    );
}
