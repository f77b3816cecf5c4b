//! Source detection: thresholded, isolated peaks of a smoothed band.

use super::frame::Frame;

/// A detected source, in zero-based pixels of the frame it was found in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peak {
    pub x: usize,
    pub y: usize,
    /// The 3×3 mean at the peak, nanomaggies per pixel.
    pub smoothed: f32,
}

/// Robust standard deviation (1.4826 × median absolute deviation) of the finite
/// values, from at most ~200k of them evenly spaced (frames hold 3M pixels).
pub fn robust_sigma(values: &[f32]) -> f32 {
    let step = (values.len() / 200_000).max(1);
    let mut sample: Vec<f32> = values
        .iter()
        .step_by(step)
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if sample.is_empty() {
        return f32::NAN;
    }
    let median = median_of(&mut sample);
    let mut deviations: Vec<f32> = sample.iter().map(|v| (v - median).abs()).collect();
    1.4826 * median_of(&mut deviations)
}

fn median_of(values: &mut [f32]) -> f32 {
    let mid = values.len() / 2;
    *values.select_nth_unstable_by(mid, f32::total_cmp).1
}

/// 3×3 box mean (edges use the pixels that exist); NaN counts as 0.
pub fn smooth3(pixels: &[f32], width: usize, height: usize) -> Vec<f32> {
    let get = |x: usize, y: usize| {
        let v = pixels[y * width + x];
        if v.is_finite() { v } else { 0.0 }
    };
    let mut out = vec![0.0; pixels.len()];
    for y in 0..height {
        for x in 0..width {
            let (mut sum, mut n) = (0.0, 0.0);
            for yy in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for xx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    sum += get(xx, yy);
                    n += 1.0;
                }
            }
            out[y * width + x] = sum / n;
        }
    }
    out
}

/// How to find sources.
#[derive(Debug, Clone, Copy)]
pub struct DetectOptions {
    /// Peak height of the 3×3 mean in units of the frame's robust noise.
    pub threshold_sigma: f32,
    /// A peak must be the maximum within this many pixels.
    pub min_separation: usize,
    /// Peaks closer than this to the frame edge are dropped.
    pub edge_margin: usize,
}

impl Default for DetectOptions {
    fn default() -> Self {
        DetectOptions {
            threshold_sigma: 8.0,
            min_separation: 15,
            edge_margin: 4,
        }
    }
}

/// Peaks of `frame`, brightest first.
pub fn detect(frame: &Frame, options: DetectOptions) -> Vec<Peak> {
    let (w, h) = (frame.width, frame.height);
    let smooth = smooth3(&frame.pixels, w, h);
    // The mean of 9 independent pixels has a third of their noise.
    let threshold = options.threshold_sigma * robust_sigma(&frame.pixels) / 3.0;
    let r = options.min_separation as i64;
    let m = options.edge_margin;
    let mut peaks = Vec::new();
    for y in m..h.saturating_sub(m) {
        for x in m..w.saturating_sub(m) {
            let v = smooth[y * w + x];
            if v.is_nan() || v <= threshold {
                continue;
            }
            let is_max = (-r..=r).all(|dy| {
                (-r..=r).all(|dx| {
                    let (xx, yy) = (x as i64 + dx, y as i64 + dy);
                    if (dx == 0 && dy == 0) || xx < 0 || yy < 0 || xx >= w as i64 || yy >= h as i64
                    {
                        return true;
                    }
                    let other = smooth[yy as usize * w + xx as usize];
                    // Ties go to the first pixel in scan order, so a flat top gives one peak.
                    other < v || (other == v && (dy, dx) > (0, 0))
                })
            });
            if is_max {
                peaks.push(Peak { x, y, smoothed: v });
            }
        }
    }
    peaks.sort_by(|a, b| b.smoothed.total_cmp(&a.smoothed));
    peaks
}
