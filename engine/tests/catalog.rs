//! Reading SDSS catalogs: both real schemas, and every kind of row we skip.

use cosmicai_engine::catalog::{CatalogError, Schema, SkipReason, read_catalog, read_catalogs};
use cosmicai_shared::Class;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

fn assets() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../assets/catalogs")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn reads_the_bundled_skyserver_catalog() {
    let c = read_catalog(
        &assets().join("skyserver_dr14.csv.gz"),
        &mut HashSet::new(),
        |_| {},
    )
    .unwrap();
    assert_eq!(c.report.schema, Schema::Skyserver);
    assert_eq!(c.report.rows, 8443);
    assert_eq!(c.report.kept, 8443);
    let first = c.objects[0];
    assert_eq!(first.class, Class::Star);
    assert!((first.ra - 183.5313256941).abs() < 1e-9);
    assert_eq!(
        first.magnitudes,
        [19.47406, 17.0424, 15.94699, 15.50342, 15.22531]
    );
    assert!((first.redshift - -0.000008956).abs() < 1e-9);
    // Each object names the imaging field it was measured on (run 752, rerun 301,
    // camcol 4, field 267 for the first row), which `cosmicai fetch` downloads.
    assert_eq!(c.fields.len(), c.objects.len());
    assert_eq!(
        c.fields[0].map(|f| f.name()).as_deref(),
        Some("000752-4-0267")
    );
    assert!(c.fields.iter().all(Option::is_some));
}

#[test]
fn reads_the_bundled_sdss17_catalog() {
    let c = read_catalog(
        &assets().join("sdss17_star_classification.csv.gz"),
        &mut HashSet::new(),
        |_| {},
    )
    .unwrap();
    assert_eq!(c.report.schema, Schema::Sdss17);
    assert_eq!(c.report.rows, 25466);
    let galaxies = c
        .objects
        .iter()
        .filter(|o| o.class == Class::Galaxy)
        .count();
    let qsos = c.objects.iter().filter(|o| o.class == Class::Qso).count();
    assert!(
        galaxies > 10_000 && qsos > 3_000,
        "{galaxies} galaxies, {qsos} QSOs"
    );
    let first = c.objects[0];
    assert!((first.ra - 135.6891066).abs() < 1e-9 && (first.dec - 32.49463184).abs() < 1e-9);
    // SDSS17 spells the field columns run_ID, rerun_ID, cam_col, field_ID.
    assert!(c.fields.iter().all(Option::is_some));
    let distinct: HashSet<_> = c.fields.iter().flatten().collect();
    assert!(distinct.len() > 10_000, "{} fields", distinct.len());
    assert!((first.redshift - 0.6347936).abs() < 1e-6);
}

#[test]
fn the_same_object_in_two_catalogs_is_kept_once() {
    let files = [
        assets().join("sdss17_star_classification.csv.gz"),
        assets().join("skyserver_dr14.csv.gz"),
    ];
    let catalogs = read_catalogs(&files, |_, _| {}).unwrap();
    let second = &catalogs[1].report;
    let duplicates = second
        .skipped
        .get(&SkipReason::DuplicatePosition)
        .map_or(0, |s| s.rows);
    assert_eq!(second.kept + duplicates, second.rows);
    let ids: HashSet<i64> = catalogs
        .iter()
        .flat_map(|c| c.objects.iter().map(|o| o.object_id))
        .collect();
    assert_eq!(
        ids.len(),
        catalogs.iter().map(|c| c.objects.len()).sum::<usize>()
    );
}

#[test]
fn bad_rows_are_skipped_and_counted_by_reason() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "OBJID,RA,Dec,U,G,R,I,Z,Class,Redshift\n\
        1,10.0,1.0,19,18,17,16.5,16,GALAXY,0.1\n\
        2,10.1,1.0,-9999,18,17,16.5,16,GALAXY,0.1\n\
        3,10.2,1.0,19,18,0,16.5,16,STAR,0.0\n\
        4,10.3,1.0,19,18,17,16.5,40,QSO,2.0\n\
        5,10.4,1.0,19,18,17,16.5,16,,0.2\n\
        6,10.5,1.0,19,18,17,16.5,16,COMET,0.2\n\
        7,400,1.0,19,18,17,16.5,16,GALAXY,0.2\n\
        8,10.6,1.0,19,18,abc,16.5,16,GALAXY,0.2\n\
        9,10.7,1.0,19,18\n\
        10,10.0,1.0,19,18,17,16.5,16,GALAXY,0.1\n\
        11,10.8,1.0,19,18,17,16.5,16,qso,\n";
    let path = write(dir.path(), "mixed.csv", csv);
    let c = read_catalog(&path, &mut HashSet::new(), |_| {}).unwrap();
    let r = &c.report;
    assert_eq!((r.rows, r.kept, r.skipped_rows()), (11, 2, 9));
    let count = |reason| r.skipped.get(&reason).map_or(0, |s| s.rows);
    assert_eq!(count(SkipReason::SentinelMagnitude), 1);
    assert_eq!(count(SkipReason::ImpossibleMagnitude), 2);
    assert_eq!(count(SkipReason::MissingClass), 1);
    assert_eq!(count(SkipReason::UnknownClass), 1);
    assert_eq!(count(SkipReason::BadCoordinates), 1);
    assert_eq!(count(SkipReason::UnreadableMagnitude), 1);
    assert_eq!(count(SkipReason::ShortRow), 1);
    assert_eq!(count(SkipReason::DuplicatePosition), 1);
    assert_eq!(r.skipped[&SkipReason::SentinelMagnitude].first_line, 3);
    // An empty redshift is kept as unknown, not skipped.
    assert_eq!(r.unknown_redshift, 1);
    assert_eq!(c.objects[1].class, Class::Qso);
    assert!(c.objects[1].redshift.is_nan());
}

#[test]
fn a_missing_required_column_names_the_column_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "no_class.csv",
        "obj_ID,alpha,delta,u,g,r,i,z,redshift\n1,1,1,19,18,17,16,15,0.1\n",
    );
    let e = read_catalog(&path, &mut HashSet::new(), |_| {}).unwrap_err();
    assert!(
        matches!(e, CatalogError::MissingColumn { ref column, .. } if column == "class"),
        "{e}"
    );
    let text = e.to_string();
    assert!(
        text.contains("no_class.csv") && text.contains("`class`"),
        "{text}"
    );

    let path = write(dir.path(), "no_ra.csv", "objid,dec,u,g,r,i,z,class\n");
    let text = read_catalog(&path, &mut HashSet::new(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("`ra` or `alpha`") && text.contains("no_ra.csv"),
        "{text}"
    );
}

#[test]
fn empty_and_missing_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "empty.csv", "");
    let text = read_catalog(&path, &mut HashSet::new(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(text.contains("empty.csv"), "{text}");
    let missing = dir.path().join("missing.csv");
    let text = read_catalog(&missing, &mut HashSet::new(), |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("missing.csv") && text.contains("cannot read"),
        "{text}"
    );
}

#[test]
fn a_gzip_of_several_members_is_read_whole() {
    // `cat a.gz b.gz` (or bgzip) makes one file of two gzip members: a reader
    // that stopped after the first would keep half the catalog, silently.
    use flate2::{Compression, read::GzDecoder, write::GzEncoder};
    use std::io::{Read, Write};
    let mut text = String::new();
    GzDecoder::new(std::fs::File::open(assets().join("skyserver_dr14.csv.gz")).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let half = text[..text.len() / 2].rfind('\n').unwrap() + 1;
    let mut joined = Vec::new();
    for part in [&text[..half], &text[half..]] {
        let mut member = GzEncoder::new(Vec::new(), Compression::fast());
        member.write_all(part.as_bytes()).unwrap();
        joined.extend(member.finish().unwrap());
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("joined.csv.gz");
    std::fs::write(&path, joined).unwrap();
    let c = read_catalog(&path, &mut HashSet::new(), |_| {}).unwrap();
    assert_eq!(c.report.rows, 8443);
    assert_eq!(c.report.kept, 8443);
}
