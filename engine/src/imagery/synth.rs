//! The renderer: labelled 5-band cutouts from catalog magnitudes, with the
//! seeing and sky noise measured on real frames ([`super::calibrate`]).
//!
//! Stars and quasars are the PSF (a Gaussian of the measured FWHM per band);
//! galaxies are Sérsic profiles (exponential discs or de Vaucouleurs spheroids,
//! picked by colour) whose half-light radius follows a size–luminosity relation
//! at the object's redshift, convolved with each band's PSF. Fluxes are the
//! object's own asinh magnitudes turned into nanomaggies; sky noise is Gaussian
//! with the measured sigma. Every cutout made here is synthetic and must be
//! marked so (see `cosmicai synth`).
//!
//! Not modelled: colour gradients inside galaxies, photon noise of the source,
//! neighbours, saturation and PSF wings.

use super::calibrate::{Calibration, FWHM_PER_SIGMA};
use super::photometry::nanomaggies;
use crate::partition::ObjectRow;
use cosmicai_shared::{BANDS, Class};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;

/// Renders cutouts of one size with one calibration.
pub struct Renderer {
    size: usize,
    /// PSF sigma per band, pixels.
    psf_sigma: [f64; 5],
    sky_sigma: [f32; 5],
    pixel_scale_arcsec: f64,
    seed: u64,
}

/// Reusable buffers, so rendering allocates nothing per object.
#[derive(Default)]
pub struct Scratch {
    profile: Vec<f32>,
    blurred: Vec<f32>,
    row: Vec<f32>,
    kernel: Vec<f32>,
}

impl Renderer {
    pub fn new(calibration: &Calibration, size: usize, seed: u64) -> Renderer {
        Renderer {
            size,
            psf_sigma: std::array::from_fn(|b| calibration.bands[b].psf_fwhm_px / FWHM_PER_SIGMA),
            sky_sigma: std::array::from_fn(|b| calibration.bands[b].sky_sigma_nmgy as f32),
            pixel_scale_arcsec: calibration.pixel_scale_arcsec,
            seed,
        }
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Renders object number `index` into `out` (`[5, size, size]`). The same
    /// (seed, index, object) always gives the same pixels, in any order or thread.
    pub fn render(&self, index: u64, object: &ObjectRow, scratch: &mut Scratch, out: &mut [f32]) {
        let n = self.size;
        let plane = n * n;
        let mut rng = SmallRng::seed_from_u64(splitmix(self.seed ^ splitmix(index)));
        // The true position lies within half a pixel of the centre pixel, as in a
        // nearest-pixel cutout of a real frame.
        let centre = (n / 2) as f64;
        let (cx, cy) = (
            centre + rng.random_range(-0.5..0.5),
            centre + rng.random_range(-0.5..0.5),
        );
        let flux: [f32; 5] = std::array::from_fn(|b| {
            nanomaggies(object.magnitudes[b] as f64, BANDS[b]).max(0.0) as f32
        });
        match object.class {
            Class::Galaxy => {
                let shape = GalaxyShape::draw(object, self.pixel_scale_arcsec, &mut rng);
                shape.paint(n, cx, cy, &mut scratch.profile);
                for b in 0..5 {
                    let band = &mut out[b * plane..(b + 1) * plane];
                    blur(
                        &scratch.profile,
                        n,
                        self.psf_sigma[b],
                        &mut scratch.blurred,
                        &mut scratch.row,
                        &mut scratch.kernel,
                    );
                    for (o, v) in band.iter_mut().zip(&scratch.blurred) {
                        *o = flux[b] * v;
                    }
                }
            }
            _ => {
                for b in 0..5 {
                    let band = &mut out[b * plane..(b + 1) * plane];
                    gaussian_1d(n, cx, self.psf_sigma[b], &mut scratch.kernel);
                    gaussian_1d(n, cy, self.psf_sigma[b], &mut scratch.row);
                    for y in 0..n {
                        let fy = flux[b] * scratch.row[y];
                        for x in 0..n {
                            band[y * n + x] = fy * scratch.kernel[x];
                        }
                    }
                }
            }
        }
        for b in 0..5 {
            let sigma = self.sky_sigma[b];
            for v in &mut out[b * plane..(b + 1) * plane] {
                let z: f32 = rng.sample(StandardNormal);
                *v += sigma * z;
            }
        }
    }
}

/// A pixel-sampled 1-D Gaussian normalised to sum 1.
fn gaussian_1d(n: usize, centre: f64, sigma: f64, out: &mut Vec<f32>) {
    out.clear();
    let k = -0.5 / (sigma * sigma);
    out.extend((0..n).map(|i| {
        let d = i as f64 - centre;
        (k * d * d).exp() as f32
    }));
    let sum: f32 = out.iter().sum();
    out.iter_mut().for_each(|v| *v /= sum);
}

/// Separable Gaussian blur of an `n`×`n` image (zero outside), kernel normalised.
fn blur(
    src: &[f32],
    n: usize,
    sigma: f64,
    out: &mut Vec<f32>,
    tmp: &mut Vec<f32>,
    kernel: &mut Vec<f32>,
) {
    let radius = (3.0 * sigma).ceil() as usize;
    kernel.clear();
    kernel.extend((0..=2 * radius).map(|i| {
        let d = i as f64 - radius as f64;
        (-0.5 * d * d / (sigma * sigma)).exp() as f32
    }));
    let sum: f32 = kernel.iter().sum();
    kernel.iter_mut().for_each(|v| *v /= sum);
    tmp.clear();
    tmp.resize(n * n, 0.0);
    out.clear();
    out.resize(n * n, 0.0);
    let r = radius as isize;
    for y in 0..n {
        for x in 0..n {
            let mut acc = 0.0;
            for (k, w) in kernel.iter().enumerate() {
                let xx = x as isize + k as isize - r;
                if xx >= 0 && (xx as usize) < n {
                    acc += w * src[y * n + xx as usize];
                }
            }
            tmp[y * n + x] = acc;
        }
    }
    for y in 0..n {
        for (k, w) in kernel.iter().enumerate() {
            let yy = y as isize + k as isize - r;
            if yy < 0 || yy as usize >= n {
                continue;
            }
            let (dst, srow) = (
                &mut out[y * n..(y + 1) * n],
                &tmp[yy as usize * n..(yy as usize + 1) * n],
            );
            for (d, s) in dst.iter_mut().zip(srow) {
                *d += w * s;
            }
        }
    }
}

/// A galaxy's intrinsic light profile.
struct GalaxyShape {
    /// Sérsic index: 1 (disc) or 4 (spheroid).
    sersic_n: f64,
    /// Half-light radius along the major axis, pixels.
    r_e: f64,
    /// Axis ratio b/a.
    q: f64,
    /// Position angle, radians.
    angle: f64,
}

impl GalaxyShape {
    fn draw(object: &ObjectRow, pixel_scale_arcsec: f64, rng: &mut SmallRng) -> GalaxyShape {
        let [_, g, r, _, _] = object.magnitudes;
        // Red galaxies are mostly spheroids, blue ones discs.
        let p_spheroid = 1.0 / (1.0 + (-(f64::from(g - r) - 0.8) / 0.1).exp());
        let spheroid = rng.random::<f64>() < p_spheroid;
        let z = if object.redshift.is_finite() {
            object.redshift as f64
        } else {
            0.1
        };
        let scatter: f64 = rng.sample::<f64, _>(StandardNormal) * 0.15;
        let r_e_arcsec = half_light_radius_arcsec(r as f64, z, scatter);
        GalaxyShape {
            sersic_n: if spheroid { 4.0 } else { 1.0 },
            r_e: r_e_arcsec / pixel_scale_arcsec,
            q: if spheroid {
                rng.random_range(0.6..1.0)
            } else {
                rng.random_range(0.25..1.0)
            },
            angle: rng.random_range(0.0..std::f64::consts::PI),
        }
    }

    /// The profile at pixel centres, normalised to sum 1.
    fn paint(&self, n: usize, cx: f64, cy: f64, out: &mut Vec<f32>) {
        // b_n so that r_e holds half the light (Ciotti & Bertin 1999).
        let b = 2.0 * self.sersic_n - 1.0 / 3.0 + 4.0 / (405.0 * self.sersic_n);
        let (sin, cos) = self.angle.sin_cos();
        let inv_re = 1.0 / self.r_e.max(0.3);
        let inv_q = 1.0 / self.q;
        out.clear();
        out.extend((0..n * n).map(|i| {
            let (dx, dy) = ((i % n) as f64 - cx, (i / n) as f64 - cy);
            let (u, v) = (dx * cos + dy * sin, (-dx * sin + dy * cos) * inv_q);
            // Half a pixel of softening keeps the cusp of small spheroids finite.
            let rr = ((u * u + v * v + 0.25).sqrt() * inv_re) as f32;
            let t = if self.sersic_n == 4.0 {
                rr.sqrt().sqrt()
            } else {
                rr
            };
            (-(b as f32) * (t - 1.0)).exp()
        }));
        let sum: f32 = out.iter().sum();
        out.iter_mut().for_each(|v| *v /= sum);
    }
}

/// Half-light radius on the sky: a size–luminosity relation (R_e ∝ L^0.3, about
/// 3 kpc at M_r = -21) at the object's angular-diameter distance (flat ΛCDM,
/// H0 = 70, Ωm = 0.3), with `scatter` in dex. No K-correction.
pub fn half_light_radius_arcsec(r_mag: f64, z: f64, scatter: f64) -> f64 {
    let z = z.clamp(0.005, 7.0);
    let comoving_mpc = comoving_distance_mpc(z);
    let luminosity_mpc = comoving_mpc * (1.0 + z);
    let angular_mpc = comoving_mpc / (1.0 + z);
    let absolute = r_mag - 5.0 * (luminosity_mpc * 1e5).log10();
    let r_e_kpc = 10f64.powf(0.5 - 0.12 * (absolute + 21.0) + scatter);
    let arcsec = r_e_kpc / (angular_mpc * 1000.0) * 206_264.806;
    arcsec.clamp(0.2, 20.0)
}

/// Line-of-sight comoving distance in Mpc (Simpson's rule, 64 steps).
fn comoving_distance_mpc(z: f64) -> f64 {
    const HUBBLE_DISTANCE_MPC: f64 = 299_792.458 / 70.0;
    let e = |z: f64| 1.0 / (0.3 * (1.0 + z).powi(3) + 0.7).sqrt();
    let steps = 64;
    let h = z / steps as f64;
    let mut sum = e(0.0) + e(z);
    for i in 1..steps {
        sum += e(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
    }
    HUBBLE_DISTANCE_MPC * sum * h / 3.0
}

/// SplitMix64 finaliser: spreads seeds so neighbouring indexes get unrelated streams.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imagery::calibrate::Calibration;

    fn object(class: Class, r: f32, z: f32) -> ObjectRow {
        ObjectRow {
            object_id: 1,
            ra: 10.0,
            dec: 0.0,
            magnitudes: [r + 1.5, r + 0.6, r, r - 0.3, r - 0.5],
            redshift: z,
            class,
        }
    }

    #[test]
    fn flux_matches_the_magnitudes_and_is_deterministic() {
        let cal = Calibration::bundled();
        let renderer = Renderer::new(&cal, 64, 7);
        let mut scratch = Scratch::default();
        for class in [Class::Star, Class::Galaxy] {
            let o = object(class, 17.0, 0.1);
            let mut a = vec![0.0; 5 * 64 * 64];
            let mut b = vec![0.0; 5 * 64 * 64];
            renderer.render(3, &o, &mut scratch, &mut a);
            renderer.render(3, &o, &mut scratch, &mut b);
            assert_eq!(a, b);
            let r_flux: f32 = a[2 * 4096..3 * 4096].iter().sum();
            let expected = nanomaggies(17.0, cosmicai_shared::Band::R) as f32;
            // Noise adds ~sqrt(4096) * sigma; the profile may lose a little off the edge.
            assert!(
                (r_flux - expected).abs() < 0.05 * expected,
                "{class:?}: {r_flux} vs {expected}"
            );
            renderer.render(4, &o, &mut scratch, &mut b);
            assert_ne!(a, b, "another index draws other noise");
        }
    }

    #[test]
    fn galaxies_shrink_with_distance() {
        let near = half_light_radius_arcsec(17.0, 0.05, 0.0);
        let far = half_light_radius_arcsec(17.0, 0.3, 0.0);
        assert!(near > 1.0 && near < 10.0, "{near}");
        // At fixed apparent magnitude a farther galaxy is more luminous, so
        // bigger in kpc, but the distance wins.
        assert!(far < near, "{far} vs {near}");
    }
}
