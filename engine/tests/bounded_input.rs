//! Hostile files get a clear error naming the file and the limit, never an
//! allocation sized by their headers: bzip2 bombs, FITS sizes that wrap or lie,
//! endless CSV lines and gzip bombs.

use cosmicai_engine::catalog::read_catalogs;
use cosmicai_engine::imagery::frame::Frame;
use cosmicai_shared::Band;
use std::io::Write;

/// A primary FITS header (2880-byte block) with these cards, then `data`.
fn fits(cards: &[&str], data: &[u8]) -> Vec<u8> {
    let mut header = String::new();
    for card in cards.iter().chain(&["END"]) {
        header += &format!("{card:<80}");
    }
    let mut bytes = header.into_bytes();
    bytes.resize(bytes.len().div_ceil(2880) * 2880, b' ');
    bytes.extend_from_slice(data);
    bytes.resize(bytes.len().div_ceil(2880) * 2880, 0);
    bytes
}

fn frame_error(name: &str, bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    match Frame::open(&path, Band::R) {
        Ok(_) => panic!("{name} opened"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_bzip2_bomb_stops_at_the_frame_limit() {
    // 300 MiB of zeros compress to a few hundred bytes.
    let mut bomb = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..300 {
        bomb.write_all(&zeros).unwrap();
    }
    let bomb = bomb.finish().unwrap();
    assert!(bomb.len() < 100_000, "{} bytes", bomb.len());
    let error = frame_error("frame-r-000001-1-0001.fits.bz2", &bomb);
    assert!(
        error.contains("frame-r-000001-1-0001.fits.bz2") && error.contains("more than 256 MiB"),
        "{error}"
    );
}

#[test]
fn fits_sizes_that_wrap_or_exceed_the_file_are_refused() {
    let common = [
        "SIMPLE  =                    T",
        "BITPIX  =                  -32",
        "NAXIS   =                    2",
    ];
    for (w, h) in [(1u64 << 32, 1u64 << 32), (100_000, 100_000), (4, 1 << 40)] {
        let (nx, ny) = (format!("NAXIS1  = {w:>20}"), format!("NAXIS2  = {h:>20}"));
        let mut cards: Vec<&str> = common.to_vec();
        cards.push(&nx);
        cards.push(&ny);
        let error = frame_error("huge.fits", &fits(&cards, &[0u8; 64]));
        assert!(
            error.contains("huge.fits") && error.contains("more than its"),
            "{w} x {h}: {error}"
        );
    }
}

#[test]
fn an_endless_csv_line_is_refused_with_its_limit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("endless.csv");
    let mut text = b"objid,ra,dec,u,g,r,i,z,class,redshift\n1,".to_vec();
    text.resize(text.len() + (3 << 20), b'9');
    std::fs::write(&path, &text).unwrap();
    let error = read_catalogs(&[path], |_, _| {}).unwrap_err().to_string();
    assert!(
        error.contains("endless.csv") && error.contains("longer than 1 MiB"),
        "{error}"
    );
}

#[test]
fn a_gzip_bomb_catalog_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.csv.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(b"objid,ra,dec,u,g,r,i,z,class,redshift\n")
        .unwrap();
    // Blank lines: valid CSV, and they compress about a thousandfold.
    let blank = vec![b'\n'; 1 << 20];
    for _ in 0..300 {
        gz.write_all(&blank).unwrap();
    }
    std::fs::write(&path, gz.finish().unwrap()).unwrap();
    let error = read_catalogs(&[path], |_, _| {}).unwrap_err().to_string();
    assert!(
        error.contains("bomb.csv.gz") && error.contains("expands more than"),
        "{error}"
    );
}

/// Found by `tests/fuzz.rs`: a CTYPE with a non-ASCII byte made wcs-rs panic
/// (it slices the string at a byte offset inside a character), and a card
/// holding a lone quote made fitsrs panic (it slices between the quotes).
#[test]
fn headers_that_crashed_the_fits_readers_are_errors() {
    for (name, expected) in [
        ("fits-non-ascii-ctype.fits", "printable ASCII"),
        // Its lone quote is BZERO's value: named before fitsrs reads it.
        ("fits-lone-quote.fits", "BZERO is not a number"),
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fuzz")
            .join(name);
        let error = match Frame::open(&path, Band::R) {
            Ok(_) => panic!("{name} opened"),
            Err(e) => e.to_string(),
        };
        assert!(error.contains(name) && error.contains(expected), "{error}");
    }
}
