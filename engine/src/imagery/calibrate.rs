//! Seeing and sky noise per band, measured the same way on real frames and on
//! rendered cutouts, so the renderer can be both calibrated and checked.
//!
//! Seeing: adaptive Gaussian second moments (the weight's width follows the
//! source until they agree, as in SDSS's own adaptive moments) of bright,
//! round, isolated sources; stars all share the PSF, so their sizes pile up in
//! the narrowest dense window of the size distribution while galaxies spread
//! above it. Noise: 1.4826 × MAD of neighbouring-pixel differences (see
//! [`difference_sigma`]).

use super::ImageryError;
use super::detect::{DetectOptions, detect, robust_sigma};
use super::frame::Field;
use cosmicai_shared::{BANDS, Band};
use serde::{Deserialize, Serialize};

/// Gaussian FWHM per standard deviation.
pub const FWHM_PER_SIGMA: f64 = 2.354_820_045;

/// One band's seeing and noise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BandCalibration {
    pub band: Band,
    /// PSF full width at half maximum, pixels.
    pub psf_fwhm_px: f64,
    /// Background noise per pixel, nanomaggies.
    pub sky_sigma_nmgy: f64,
    /// Sources in the stellar locus the FWHM comes from.
    pub stars: usize,
}

/// Seeing and noise of every band, and where they were measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// What was measured, e.g. `SDSS frames 002820-3-0122`.
    pub measured_on: String,
    pub pixel_scale_arcsec: f64,
    /// u, g, r, i, z.
    pub bands: Vec<BandCalibration>,
}

impl Calibration {
    /// The calibration measured on the bundled Stripe 82 field (see `cosmicai calibrate`).
    pub fn bundled() -> Calibration {
        serde_json::from_str(include_str!("../../../assets/imagery/calibration.json"))
            .expect("the bundled calibration is valid JSON")
    }

    pub fn band(&self, band: Band) -> &BandCalibration {
        &self.bands[band.index()]
    }
}

/// Adaptive moments of a source near (x0, y0): (sigma px, flux, ellipticity).
pub fn adaptive_moments(
    pixels: &[f32],
    width: usize,
    height: usize,
    x0: f64,
    y0: f64,
) -> Option<(f64, f64, f64)> {
    const RADIUS: i64 = 12;
    let (mut cx, mut cy, mut w2) = (x0, y0, 2.0f64);
    let (mut mxx, mut myy) = (0.0, 0.0);
    for _ in 0..60 {
        let (mut s, mut sx, mut sy, mut sxx, mut syy) = (0.0f64, 0.0, 0.0, 0.0, 0.0);
        let (xc, yc) = (cx.round() as i64, cy.round() as i64);
        for y in (yc - RADIUS).max(0)..=(yc + RADIUS).min(height as i64 - 1) {
            for x in (xc - RADIUS).max(0)..=(xc + RADIUS).min(width as i64 - 1) {
                let v = pixels[y as usize * width + x as usize] as f64;
                if !v.is_finite() {
                    continue;
                }
                let (dx, dy) = (x as f64 - cx, y as f64 - cy);
                let wv = (-(dx * dx + dy * dy) / (2.0 * w2)).exp() * v;
                s += wv;
                sx += wv * dx;
                sy += wv * dy;
                sxx += wv * dx * dx;
                syy += wv * dy * dy;
            }
        }
        if s.is_nan() || s <= 0.0 {
            return None;
        }
        let (ox, oy) = (sx / s, sy / s);
        mxx = sxx / s - ox * ox;
        myy = syy / s - oy * oy;
        cx += ox.clamp(-1.0, 1.0);
        cy += oy.clamp(-1.0, 1.0);
        let next = (mxx + myy).clamp(0.1, 100.0);
        let done = (next - w2).abs() < 1e-7 && ox.abs() < 1e-5 && oy.abs() < 1e-5;
        w2 = next;
        if done {
            break;
        }
    }
    if (cx - x0).abs() > 3.0 || (cy - y0).abs() > 3.0 || w2 >= 100.0 {
        return None;
    }
    // Flux inside a 3-sigma aperture, for the signal-to-noise cut.
    let r = 3.0 * w2.sqrt();
    let mut flux = 0.0;
    let (xc, yc) = (cx.round() as i64, cy.round() as i64);
    let ri = r.ceil() as i64;
    for y in (yc - ri).max(0)..=(yc + ri).min(height as i64 - 1) {
        for x in (xc - ri).max(0)..=(xc + ri).min(width as i64 - 1) {
            let (dx, dy) = (x as f64 - cx, y as f64 - cy);
            let v = pixels[y as usize * width + x as usize] as f64;
            if dx * dx + dy * dy <= r * r && v.is_finite() {
                flux += v;
            }
        }
    }
    let e = (mxx - myy).abs() / (mxx + myy);
    Some((w2.sqrt(), flux, e))
}

/// Pixel noise from differences of horizontal neighbours: 1.4826 × MAD / √2,
/// clipped at 3 sigma.
/// Smooth light (sky gradients, the wings of galaxies) cancels in a difference,
/// so a cutout filled by a bright galaxy and a frame of mostly empty sky are
/// measured alike.
pub fn difference_sigma(pixels: &[f32], width: usize) -> f64 {
    let differences: Vec<f32> = pixels
        .chunks(width)
        .flat_map(|row| row.windows(2).map(|w| w[1] - w[0]))
        .collect();
    // Clip at 3 sigma twice: steep cores of bright objects are outliers, not noise.
    let mut kept = differences;
    let mut sigma = robust_sigma(&kept);
    for _ in 0..2 {
        kept.retain(|d| d.abs() < 3.0 * sigma);
        sigma = robust_sigma(&kept);
    }
    sigma as f64 / std::f64::consts::SQRT_2
}

/// Whether a measured source is good enough to stand for the PSF.
fn usable(flux: f64, sigma: f64, e: f64, noise: f64) -> bool {
    let aperture_pixels = std::f64::consts::PI * (3.0 * sigma).powi(2);
    flux / (noise * aperture_pixels.sqrt()) > 30.0 && e < 0.2
}

/// The stellar locus: median of the densest window of sizes no wider than 10%.
pub fn stellar_locus(sizes: &mut [f64]) -> Option<(f64, usize)> {
    sizes.sort_by(f64::total_cmp);
    let (mut best, mut best_range) = (0, 0..0);
    let mut j = 0;
    for i in 0..sizes.len() {
        j = j.max(i);
        while j < sizes.len() && sizes[j] <= sizes[i] * 1.1 {
            j += 1;
        }
        if j - i > best {
            best = j - i;
            best_range = i..j;
        }
    }
    if best < 5 {
        return None;
    }
    let window = &sizes[best_range];
    Some((window[window.len() / 2], window.len()))
}

/// A band's calibration from the sizes of its candidate stars, or how many there were.
fn band_calibration(band: Band, mut sizes: Vec<f64>, noise: f64) -> Result<BandCalibration, usize> {
    let (sigma, stars) = stellar_locus(&mut sizes).ok_or(sizes.len())?;
    Ok(BandCalibration {
        band,
        psf_fwhm_px: sigma * FWHM_PER_SIGMA,
        sky_sigma_nmgy: noise,
        stars,
    })
}

/// Measures seeing and noise on the five frames of a real field.
pub fn measure_field(field: &Field) -> Result<Calibration, ImageryError> {
    let bands = BANDS
        .into_iter()
        .map(|band| {
            let frame = field.band(band);
            let noise = difference_sigma(&frame.pixels, frame.width);
            let options = DetectOptions {
                threshold_sigma: 20.0,
                min_separation: 20,
                edge_margin: 15,
            };
            let sizes: Vec<f64> = detect(frame, options)
                .iter()
                .filter_map(|p| {
                    adaptive_moments(
                        &frame.pixels,
                        frame.width,
                        frame.height,
                        p.x as f64,
                        p.y as f64,
                    )
                })
                .filter(|&(sigma, flux, e)| usable(flux, sigma, e, noise))
                .map(|(sigma, _, _)| sigma)
                .collect();
            band_calibration(band, sizes, noise).map_err(|found| ImageryError::Frame {
                path: frame.path.clone(),
                problem: format!("too few isolated stars ({found}) to measure the seeing"),
            })
        })
        .collect::<Result<Vec<_>, ImageryError>>()?;
    Ok(Calibration {
        measured_on: format!("SDSS frames {}", field.name),
        pixel_scale_arcsec: 0.396,
        bands,
    })
}

/// Measures the same statistics on cutouts (`[N, 5, size, size]`): seeing from the
/// objects flagged in `is_star`, each measured at the cutout centre; noise from all pixels.
pub fn measure_cutouts(
    pixels: &[f32],
    size: usize,
    is_star: &[bool],
    measured_on: &str,
) -> Result<Calibration, ImageryError> {
    let plane = size * size;
    let bands = BANDS
        .into_iter()
        .map(|band| {
            let centre = (size / 2) as f64;
            let band_pixels: Vec<f32> = pixels
                .chunks(5 * plane)
                .flat_map(|c| &c[band.index() * plane..(band.index() + 1) * plane])
                .copied()
                .collect();
            let noise = difference_sigma(&band_pixels, size);
            let sizes: Vec<f64> = band_pixels
                .chunks(plane)
                .zip(is_star)
                .filter(|(_, star)| **star)
                .filter_map(|(p, _)| adaptive_moments(p, size, size, centre, centre))
                .filter(|&(sigma, flux, e)| usable(flux, sigma, e, noise))
                .map(|(sigma, _, _)| sigma)
                .collect();
            band_calibration(band, sizes, noise).map_err(|found| {
                ImageryError::Input(format!(
                    "{measured_on}: too few bright stars ({found}) in band {} to measure the seeing",
                    band.letter()
                ))
            })
        })
        .collect::<Result<Vec<_>, ImageryError>>()?;
    Ok(Calibration {
        measured_on: measured_on.to_string(),
        pixel_scale_arcsec: 0.396,
        bands,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pixel-sampled Gaussian of known sigma is measured at that sigma.
    #[test]
    fn adaptive_moments_recover_a_gaussian() {
        let (size, sigma) = (41usize, 1.6f64);
        let c = 20.3;
        let pixels: Vec<f32> = (0..size * size)
            .map(|i| {
                let (x, y) = ((i % size) as f64 - c, (i / size) as f64 - c);
                (100.0 * (-(x * x + y * y) / (2.0 * sigma * sigma)).exp()) as f32
            })
            .collect();
        let (s, flux, e) = adaptive_moments(&pixels, size, size, 20.0, 20.0).unwrap();
        assert!((s - sigma).abs() < 0.01, "sigma {s}");
        assert!(e < 0.01 && flux > 0.0);
    }

    #[test]
    fn stellar_locus_finds_the_tight_cluster() {
        let mut sizes = vec![1.50, 1.52, 1.49, 1.51, 1.53, 1.50, 2.1, 2.9, 3.5, 4.0, 2.4];
        let (s, n) = stellar_locus(&mut sizes).unwrap();
        assert!((s - 1.51).abs() < 0.02 && n == 6, "{s} {n}");
        assert!(stellar_locus(&mut [1.0, 2.0]).is_none());
    }
}
