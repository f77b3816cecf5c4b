//! Real cutouts from a field: at catalog positions, or at detected sources.

use super::cutout::cut;
use super::detect::{DetectOptions, detect};
use super::frame::Field;
use super::photometry::asinh_magnitude;
use crate::partition::{ObjectRow, object_id};
use cosmicai_shared::{BANDS, Band, Class};

/// One real cutout and the catalog values that go with it.
pub struct Cutout {
    pub row: ObjectRow,
    /// `[5, size, size]` nanomaggies, NaN outside the frames.
    pub pixels: Vec<f32>,
    /// Share of the pixels inside the frames.
    pub valid_fraction: f32,
}

/// Radius of the aperture for detected sources' magnitudes: 3 arcsec.
pub const APERTURE_RADIUS_PX: f64 = 3.0 / 0.396;

/// Cutouts of the catalog objects whose position falls on the field's r frame.
pub fn cut_catalog(field: &Field, objects: &[ObjectRow], size: usize) -> Vec<Cutout> {
    let r = field.band(Band::R);
    objects
        .iter()
        .filter(|o| {
            r.pixel_of(o.ra, o.dec).is_some_and(|(x, y)| {
                x >= -0.5 && y >= -0.5 && x < r.width as f64 - 0.5 && y < r.height as f64 - 0.5
            })
        })
        .filter_map(|o| {
            cut(field, o.ra, o.dec, size).map(|(pixels, valid_fraction)| Cutout {
                row: *o,
                pixels,
                valid_fraction,
            })
        })
        .collect()
}

/// Cutouts of the sources found in the r band; unlabelled (class unknown, no
/// redshift), with 3" aperture asinh magnitudes measured in every band.
pub fn cut_detections(
    field: &Field,
    size: usize,
    options: DetectOptions,
    limit: usize,
) -> Vec<Cutout> {
    let r = field.band(Band::R);
    detect(r, options)
        .into_iter()
        .take(limit)
        .filter_map(|peak| {
            let (ra, dec) = r.sky_of(peak.x as f64, peak.y as f64)?;
            let (pixels, valid_fraction) = cut(field, ra, dec, size)?;
            Some(Cutout {
                row: ObjectRow {
                    object_id: object_id(ra, dec),
                    ra,
                    dec,
                    magnitudes: aperture_magnitudes(field, ra, dec),
                    redshift: f32::NAN,
                    class: Class::Unknown,
                },
                pixels,
                valid_fraction,
            })
        })
        .collect()
}

/// Asinh magnitudes of the light within [`APERTURE_RADIUS_PX`] of (ra, dec), per band.
pub fn aperture_magnitudes(field: &Field, ra: f64, dec: f64) -> [f32; 5] {
    BANDS.map(|band| {
        let frame = field.band(band);
        let Some((x, y)) = frame.pixel_of(ra, dec) else {
            return asinh_magnitude(0.0, band) as f32;
        };
        let r = APERTURE_RADIUS_PX;
        let mut flux = 0.0f64;
        for yy in (y - r).floor() as i64..=(y + r).ceil() as i64 {
            for xx in (x - r).floor() as i64..=(x + r).ceil() as i64 {
                let (dx, dy) = (xx as f64 - x, yy as f64 - y);
                if dx * dx + dy * dy <= r * r {
                    flux += frame.at(xx, yy).filter(|v| v.is_finite()).unwrap_or(0.0) as f64;
                }
            }
        }
        asinh_magnitude(flux, band) as f32
    })
}
