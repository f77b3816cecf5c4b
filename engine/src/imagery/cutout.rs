//! 5-band cutouts at a sky position, each band registered through its own WCS.

use super::frame::{Field, Frame};

/// Nearest-pixel centre of a zero-based position (the rule SDSS cutout tools and
/// our reference cutouts use: no resampling, so pixels stay the survey's own).
fn nearest(v: f64) -> i64 {
    (v + 0.5).floor() as i64
}

/// One band's `size`×`size` window centred on (ra, dec): NaN outside the frame.
/// `None` when the position does not project onto this frame's plane at all.
pub fn cut_band(frame: &Frame, ra: f64, dec: f64, size: usize, out: &mut [f32]) -> Option<()> {
    let (x, y) = frame.pixel_of(ra, dec)?;
    // Far off the frame (a malformed WCS can put it at 1e300) it misses it, and
    // the window's pixel arithmetic below stays far from i64's ends.
    const FAR: f64 = 1e9;
    if !(x.abs() < FAR && y.abs() < FAR) {
        return None;
    }
    let half = (size / 2) as i64;
    let (x0, y0) = (nearest(x) - half, nearest(y) - half);
    for row in 0..size {
        for col in 0..size {
            out[row * size + col] = frame
                .at(x0 + col as i64, y0 + row as i64)
                .unwrap_or(f32::NAN);
        }
    }
    Some(())
}

/// The `[5, size, size]` cutout at (ra, dec) and the fraction of its pixels inside
/// the frames; `None` when the position misses every band's frame entirely.
pub fn cut(field: &Field, ra: f64, dec: f64, size: usize) -> Option<(Vec<f32>, f32)> {
    let plane = size * size;
    let mut pixels = vec![f32::NAN; 5 * plane];
    for frame in &field.frames {
        let band = frame.band.index();
        cut_band(
            frame,
            ra,
            dec,
            size,
            &mut pixels[band * plane..(band + 1) * plane],
        );
    }
    let valid = valid_fraction(&pixels);
    (valid > 0.0).then_some((pixels, valid))
}

/// Fraction of finite pixels: what share of a cutout lies inside the frames.
pub fn valid_fraction(pixels: &[f32]) -> f32 {
    if pixels.is_empty() {
        return 0.0;
    }
    pixels.iter().filter(|v| v.is_finite()).count() as f32 / pixels.len() as f32
}
