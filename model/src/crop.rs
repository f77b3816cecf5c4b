//! Models see the centre 32x32 of each cutout; partitions store 64x64.

use burn::prelude::*;

/// Side of the crop the image models read.
pub const CROP: usize = 32;

/// The centre `size`x`size` of `[N, C, H, W]` images (the input itself when it already fits).
pub fn centre_crop<B: Backend>(images: Tensor<B, 4>, size: usize) -> Tensor<B, 4> {
    let [n, c, h, w] = images.dims();
    if h == size && w == size {
        return images;
    }
    let (top, left) = ((h - size) / 2, (w - size) / 2);
    images.slice([0..n, 0..c, top..top + size, left..left + size])
}

/// The centre `side`x`side` of each `h`x`w` plane of `pixels` (bands of
/// objects, one after another), as flat values: the crop [`centre_crop`]
/// takes, for code that holds pixels rather than tensors. `side` is at most
/// `h` and `w`; trailing values short of a plane are left out.
pub fn centre_crop_planes(pixels: &[f32], [h, w]: [usize; 2], side: usize) -> Vec<f32> {
    if (h, w) == (side, side) {
        return pixels.to_vec();
    }
    let (top, left) = ((h - side) / 2, (w - side) / 2);
    let planes = pixels.len() / (h * w).max(1);
    let mut out = Vec::with_capacity(planes * side * side);
    for plane in pixels.chunks_exact(h * w) {
        for row in plane[top * w..(top + side) * w].chunks_exact(w) {
            out.extend_from_slice(&row[left..left + side]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_are_cropped_at_their_centre() {
        // Two 4x4 planes valued by position; their centre 2x2.
        let pixels: Vec<f32> = (0..32).map(|v| v as f32).collect();
        assert_eq!(
            centre_crop_planes(&pixels, [4, 4], 2),
            [5.0, 6.0, 9.0, 10.0, 21.0, 22.0, 25.0, 26.0]
        );
        // A 3x5 plane to 1x1 (odd margins round down), and a crop of the whole.
        let odd: Vec<f32> = (0..15).map(|v| v as f32).collect();
        assert_eq!(centre_crop_planes(&odd, [3, 5], 1), [7.0]);
        assert_eq!(centre_crop_planes(&pixels, [4, 4], 4), pixels);
    }
}
