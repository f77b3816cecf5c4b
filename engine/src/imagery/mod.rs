//! Images: real SDSS frames cut into cutouts, and a renderer calibrated on them.
//!
//! 1. [`frame`] opens SDSS corrected frames (`frame-{band}-RUN-CAMCOL-FIELD.fits[.bz2]`)
//!    with their own WCS per band, and groups the five bands of a field.
//! 2. [`cutout`] cuts a 5-band cutout at a sky position, registering each band
//!    through its own WCS (the bands are offset by a few pixels); outside the
//!    frame is NaN.
//! 3. [`detect`] finds sources (thresholded peaks in r) when there is no catalog.
//! 4. [`photometry`] turns nanomaggies into SDSS asinh magnitudes and back.
//! 5. [`calibrate`] measures seeing (PSF FWHM of isolated stars) and sky noise per
//!    band, on real frames and on rendered cutouts alike.
//! 6. [`synth`] renders labelled cutouts from catalog magnitudes with that
//!    calibration; everything it makes is marked synthetic.
//! 7. [`png`] encodes the RGB/grayscale views from `cosmicai_shared::display`.

pub mod calibrate;
pub mod cutout;
pub mod detect;
pub mod frame;
pub mod ingest;
pub mod photometry;
pub mod png;
pub mod synth;

use std::path::PathBuf;

/// Why frames could not be read or images made, naming the input.
#[derive(Debug, thiserror::Error)]
pub enum ImageryError {
    // `error`, not `source`: the message holds it, and a source would print
    // it twice in a chain ("…: No such file …: No such file …").
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Frame { path: PathBuf, problem: String },
    #[error("{}: {problem}", path.display())]
    Field { path: PathBuf, problem: String },
    #[error("{0}")]
    Input(String),
}
