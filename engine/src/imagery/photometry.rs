//! SDSS asinh magnitudes ("luptitudes") and nanomaggies.
//!
//! SDSS catalog magnitudes are asinh magnitudes (Lupton, Gunn & Szalay 1999):
//! m = -(2.5/ln 10) [asinh((f/f0)/(2b)) + ln b], with a softening b per band.
//! They stay finite for zero and negative fluxes, which is why catalogs hold them.

use cosmicai_shared::Band;

/// Softening parameter b per band (SDSS photometric flux calibration page).
pub const SOFTENING: [f64; 5] = [1.4e-10, 0.9e-10, 1.2e-10, 1.8e-10, 7.4e-10];

const POGSON: f64 = 2.5 / std::f64::consts::LN_10;

/// Nanomaggies (f/f0 × 1e9) of an asinh magnitude.
pub fn nanomaggies(magnitude: f64, band: Band) -> f64 {
    let b = SOFTENING[band.index()];
    2.0 * b * (-magnitude / POGSON - b.ln()).sinh() * 1e9
}

/// Asinh magnitude of a flux in nanomaggies (finite for any finite flux).
pub fn asinh_magnitude(nanomaggies: f64, band: Band) -> f64 {
    let b = SOFTENING[band.index()];
    -POGSON * ((nanomaggies * 1e-9 / (2.0 * b)).asinh() + b.ln())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cosmicai_shared::BANDS;

    #[test]
    fn round_trip_and_pogson_limit() {
        for band in BANDS {
            for m in [14.0, 18.0, 22.0, 25.0] {
                let back = asinh_magnitude(nanomaggies(m, band), band);
                assert!((back - m).abs() < 1e-9, "{band:?} {m} -> {back}");
            }
        }
        // Bright objects: asinh and Pogson magnitudes agree (22.5 - 2.5 log10 f).
        let f = nanomaggies(16.0, Band::R);
        assert!((22.5 - 2.5 * f.log10() - 16.0).abs() < 1e-4, "{f}");
        // Zero and negative flux stay finite.
        assert!(asinh_magnitude(0.0, Band::U).is_finite());
        assert!(asinh_magnitude(-1.0, Band::G).is_finite());
    }
}
