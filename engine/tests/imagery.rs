//! The renderer against the real frames it is calibrated on: the same
//! measurements (PSF FWHM of isolated stars, sky noise) on real frames and on
//! rendered cutouts agree within 20% in every band.

use cosmicai_engine::catalog::read_catalogs;
use cosmicai_engine::imagery::calibrate::{Calibration, measure_cutouts, measure_field};
use cosmicai_engine::imagery::frame::open_fields;
use cosmicai_engine::imagery::synth::{Renderer, Scratch};
use cosmicai_shared::Class;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn check_renderer_against(frames: &Path) {
    let field = open_fields(frames).unwrap().remove(0);
    let real = measure_field(&field).unwrap();
    let catalog = root().join("assets/catalogs/skyserver_dr14.csv.gz");
    let objects: Vec<_> = read_catalogs(&[catalog], |_, _| {})
        .unwrap()
        .remove(0)
        .objects
        .into_iter()
        .take(3000)
        .collect();
    let size = 32;
    let renderer = Renderer::new(&real, size, 11);
    let mut pixels = vec![0.0; objects.len() * 5 * size * size];
    let mut scratch = Scratch::default();
    for (i, (o, out)) in objects
        .iter()
        .zip(pixels.chunks_mut(5 * size * size))
        .enumerate()
    {
        renderer.render(i as u64, o, &mut scratch, out);
    }
    let is_star: Vec<bool> = objects.iter().map(|o| o.class == Class::Star).collect();
    let rendered = measure_cutouts(&pixels, size, &is_star, "rendered").unwrap();
    for (r, s) in real.bands.iter().zip(&rendered.bands) {
        let fwhm = s.psf_fwhm_px / r.psf_fwhm_px;
        let noise = s.sky_sigma_nmgy / r.sky_sigma_nmgy;
        eprintln!(
            "{} {:?}: FWHM real {:.3} rendered {:.3} px; noise real {:.4} rendered {:.4}",
            field.name, r.band, r.psf_fwhm_px, s.psf_fwhm_px, r.sky_sigma_nmgy, s.sky_sigma_nmgy
        );
        assert!(
            (0.8..=1.2).contains(&fwhm),
            "{:?} FWHM ratio {fwhm}",
            r.band
        );
        assert!(
            (0.8..=1.2).contains(&noise),
            "{:?} noise ratio {noise}",
            r.band
        );
        // Seeing in SDSS is about 1-2 arcsec; anything else means a broken measurement.
        let arcsec = r.psf_fwhm_px * real.pixel_scale_arcsec;
        assert!(
            (0.7..2.5).contains(&arcsec),
            "{:?} seeing {arcsec}\"",
            r.band
        );
    }
}

#[test]
fn renderer_matches_the_bundled_field() {
    let frames = root().join("assets/fields/2820-3-0122");
    check_renderer_against(&frames);
    // The committed calibration is what `cosmicai calibrate` measures on these frames.
    let field = open_fields(&frames).unwrap().remove(0);
    let (measured, bundled) = (measure_field(&field).unwrap(), Calibration::bundled());
    assert_eq!(measured.measured_on, bundled.measured_on);
    for (m, b) in measured.bands.iter().zip(&bundled.bands) {
        assert_eq!((m.band, m.stars), (b.band, b.stars));
        assert!(
            (m.psf_fwhm_px - b.psf_fwhm_px).abs() < 1e-9
                && (m.sky_sigma_nmgy - b.sky_sigma_nmgy).abs() < 1e-9
        );
    }
}

#[test]
fn renderer_matches_the_second_real_field() {
    let frames = root().join("../shared/sdss/fields/2583-2-0136/frames");
    if !frames.exists() {
        eprintln!("skipped: {} not present", frames.display());
        return;
    }
    check_renderer_against(&frames);
}

#[test]
fn a_directory_without_frames_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = open_fields(dir.path()).err().unwrap().to_string();
    assert!(err.contains("no SDSS frames"), "{err}");
    std::fs::write(dir.path().join("frame-r-000001-1-0001.fits"), b"garbage").unwrap();
    let err = open_fields(dir.path()).err().unwrap().to_string();
    assert!(err.contains("has no u frame"), "{err}");
    for band in ["u", "g", "i", "z"] {
        std::fs::write(
            dir.path().join(format!("frame-{band}-000001-1-0001.fits")),
            b"x",
        )
        .unwrap();
    }
    let err = open_fields(dir.path()).err().unwrap().to_string();
    assert!(
        err.contains("frame-u-000001-1-0001.fits") && err.contains("FITS"),
        "{err}"
    );
}
