//! How survey pixels become screen pixels, the same in the browser and on the server.
//!
//! [`lupton_rgb`] is the asinh colour composite of Lupton et al. (2004), the rule of
//! astropy's `make_lupton_rgb` and SkyServer: one asinh stretch of the mean
//! intensity scales all three channels alike (colours are kept), channels below
//! zero are clipped, and a pixel whose largest channel saturates is scaled down by
//! that channel so its hue survives. [`asinh_gray`] is the per-band view.

/// Stretch parameters: `stretch` is the linear range near zero, `q` the asinh softening.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stretch {
    pub minimum: f32,
    pub stretch: f32,
    pub q: f32,
}

impl Default for Stretch {
    /// astropy's defaults for `make_lupton_rgb`, which suit SDSS frames in nanomaggies.
    fn default() -> Self {
        Stretch {
            minimum: 0.0,
            stretch: 5.0,
            q: 8.0,
        }
    }
}

impl Stretch {
    /// f(I)/I of astropy's `LuptonAsinhStretch`, normalised so 1.0 is full scale.
    /// Precisions follow astropy 8 on float32 images: all f32 but the slope product.
    fn factor(&self, i: f32) -> f32 {
        let q = if self.q.abs() < 1.0 / 8_388_608.0 {
            0.1
        } else {
            f64::from(self.q).min(1e10)
        };
        let slope = 0.1 / (0.1 * q).asinh();
        let soften = (q / f64::from(self.stretch)) as f32;
        // asinh in f64, rounded once to f32: as accurate as the C library asinhf NumPy calls.
        let f = (f64::from(f64::from(i * soften).asinh() as f32) * slope) as f32;
        if i <= 0.0 || !i.is_finite() {
            0.0
        } else {
            f / i
        }
    }
}

/// RGB bytes (`3 * len`, row-major) of three equally sized bands: red, green, blue.
/// For SDSS, red = i, green = r, blue = g. Non-finite pixels (outside a frame) are black.
pub fn lupton_rgb(red: &[f32], green: &[f32], blue: &[f32], s: Stretch) -> Vec<u8> {
    let mut out = Vec::with_capacity(red.len() * 3);
    for ((&r, &g), &b) in red.iter().zip(green).zip(blue) {
        let (r, g, b) = (r - s.minimum, g - s.minimum, b - s.minimum);
        let fac = s.factor((r + g + b) / 3.0);
        let scaled =
            [r * fac, g * fac, b * fac].map(|c| if c.is_finite() && c > 0.0 { c } else { 0.0 });
        // Saturation: a pixel brighter than full scale is divided by its largest channel.
        let max = scaled.into_iter().fold(0.0f32, f32::max);
        out.extend(scaled.map(|c| (if max > 1.0 { c / max } else { c } * 255.0) as u8));
    }
    out
}

/// Gray bytes of one band with the same asinh stretch.
pub fn asinh_gray(band: &[f32], s: Stretch) -> Vec<u8> {
    band.iter()
        .map(|&v| {
            let v = v - s.minimum;
            let c = v * s.factor(v);
            if c.is_finite() && c > 0.0 {
                (c.min(1.0) * 255.0) as u8
            } else {
                0
            }
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::excessive_precision)] // the exact values astropy was given
mod tests {
    use super::*;

    // Inputs and outputs of astropy 8.0.2 `make_lupton_rgb(r, g, b, minimum, stretch, Q)`
    // on float32 nanomaggy-like values: bright, saturated, coloured and sky-noise pixels.
    const R: [f32; 12] = [
        0.5,
        2.0,
        10.0,
        40.0,
        100.0,
        300.0,
        1000.0,
        5.0,
        -0.04326065257191658,
        0.16614997386932373,
        0.011289330199360847,
        -0.017631540074944496,
    ];
    const G: [f32; 12] = [
        0.4000000059604645,
        1.0,
        20.0,
        30.0,
        80.0,
        500.0,
        10.0,
        0.10000000149011612,
        0.07953201234340668,
        -0.05956133455038071,
        0.0177265964448452,
        -0.052420277148485184,
    ];
    const B: [f32; 12] = [
        0.10000000149011612,
        3.0,
        5.0,
        50.0,
        60.0,
        200.0,
        100.0,
        9.0,
        -0.015257221646606922,
        -0.022623393684625626,
        0.024233244359493256,
        -0.03507477790117264,
    ];
    const ASTROPY_DEFAULT: [u8; 36] = [
        26, 21, 5, 65, 32, 98, 108, 216, 54, 168, 126, 211, 241, 192, 144, 153, 255, 102, 255, 2,
        25, 100, 2, 180, 0, 4, 0, 9, 0, 0, 0, 0, 1, 0, 0, 0,
    ];
    const ASTROPY_TIGHT: [u8; 36] = [
        112, 90, 22, 126, 63, 190, 127, 255, 63, 203, 152, 255, 255, 204, 152, 152, 255, 102, 255,
        2, 25, 141, 2, 255, 0, 45, 0, 91, 0, 0, 6, 10, 13, 0, 0, 0,
    ];

    #[test]
    fn matches_astropy_make_lupton_rgb() {
        assert_eq!(lupton_rgb(&R, &G, &B, Stretch::default()), ASTROPY_DEFAULT);
        let tight = Stretch {
            minimum: 0.0,
            stretch: 0.5,
            q: 10.0,
        };
        assert_eq!(lupton_rgb(&R, &G, &B, tight), ASTROPY_TIGHT);
    }

    #[test]
    fn saturated_pixels_keep_their_hue_and_missing_pixels_are_black() {
        let rgb = lupton_rgb(
            &[1000.0, f32::NAN],
            &[10.0, 1.0],
            &[100.0, 1.0],
            Stretch::default(),
        );
        assert_eq!(&rgb[..3], &[255, 2, 25]);
        assert_eq!(&rgb[3..], &[0, 0, 0]);
    }

    #[test]
    fn gray_view_is_monotonic_and_clipped() {
        let g = asinh_gray(
            &[-1.0, 0.0, 0.1, 1.0, 10.0, 1e6, f32::NAN],
            Stretch::default(),
        );
        assert_eq!((g[0], g[1], g[5], g[6]), (0, 0, 255, 0));
        assert!(g[2] < g[3] && g[3] < g[4]);
    }
}
