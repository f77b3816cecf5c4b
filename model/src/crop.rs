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
