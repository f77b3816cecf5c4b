//! The Inception branch as device launches: the convolutions as products over
//! their windows, the poolings, and the flatten burn's layout expects.

use super::{
    Activation, Copy6, DeviceBlock, DeviceConv, Kernels, OnDevice, Operand, Pool, Product, Region,
};
use crate::astromae::fused::FusedError;
use crate::crop::CROP;

impl<K: Kernels> OnDevice<K> {
    /// `[n, bands, 32, 32]` -> the Inception blocks' output flattened as burn
    /// flattens `[n, c, h, w]`: `[n, c * h * w]`.
    pub(super) fn inception(&self, crop: &K::Buf, n: usize) -> Result<K::Buf, FusedError> {
        let k = &self.kernels;
        let (bands, area) = (self.bands, CROP * CROP);
        // [n, bands, area] -> channel-major [bands, n * area].
        let mut x = k.alloc(n * bands * area)?;
        k.copy(
            &Copy6::new(
                &[bands, n, area],
                &[area, bands * area, 1],
                &[n * area, area, 1],
            ),
            crop,
            &mut x,
        )?;
        let mut stem = k.alloc(self.stem.c_out * n * area)?;
        self.conv(&self.stem, &x, 0, n, CROP, &mut stem, 0, Activation::None)?;
        let mut side = CROP / 2;
        let mut x = k.alloc(self.stem.c_out * n * side * side)?;
        k.pool(Pool::Avg2, &stem, &mut x, self.stem.c_out * n, CROP)?;
        drop(stem);
        let mut channels = self.stem.c_out;
        for (i, block) in self.blocks.iter().enumerate() {
            x = self.block(block, &x, channels, n, side)?;
            channels = block.width * if block.b5.is_some() { 4 } else { 3 };
            if i % 2 == 1 {
                let mut pooled = k.alloc(channels * n * (side / 2) * (side / 2))?;
                k.pool(Pool::Avg2, &x, &mut pooled, channels * n, side)?;
                x = pooled;
                side /= 2;
            }
        }
        // [c, n, area] -> [n, c * area].
        let area = side * side;
        let mut flat = k.alloc(channels * n * area)?;
        k.copy(
            &Copy6::new(
                &[n, channels, area],
                &[area, n * area, 1],
                &[channels * area, area, 1],
            ),
            &x,
            &mut flat,
        )?;
        Ok(flat)
    }

    /// One Inception block: `x [c_in, n * side²]` -> `[out channels, n * side²]`.
    fn block(
        &self,
        b: &DeviceBlock<K>,
        x: &K::Buf,
        c_in: usize,
        n: usize,
        side: usize,
    ) -> Result<K::Buf, FusedError> {
        let k = &self.kernels;
        let plane = n * side * side;
        let w = b.width;
        let branches = if b.b5.is_some() { 4 } else { 3 };
        let mut entry = k.alloc(b.entry.c_out * plane)?;
        self.conv(&b.entry, x, 0, n, side, &mut entry, 0, Activation::Relu)?;
        let mut out = k.alloc(branches * w * plane)?;
        k.copy(&Copy6::new(&[w * plane], &[1], &[1]), &entry, &mut out)?;
        self.conv(
            &b.b3,
            &entry,
            w * plane,
            n,
            side,
            &mut out,
            w * plane,
            Activation::Relu,
        )?;
        let mut next = 2;
        if let Some(b5) = &b.b5 {
            self.conv(
                b5,
                &entry,
                2 * w * plane,
                n,
                side,
                &mut out,
                2 * w * plane,
                Activation::Relu,
            )?;
            next = 3;
        }
        drop(entry);
        let mut pooled = k.alloc(c_in * plane)?;
        k.pool(Pool::Max3, x, &mut pooled, c_in * n, side)?;
        self.conv(
            &b.pool_proj,
            &pooled,
            0,
            n,
            side,
            &mut out,
            next * w * plane,
            Activation::Relu,
        )?;
        Ok(out)
    }

    /// A convolution of `x [c_in, n * side²]` (from `x_offset`) into `y
    /// [c_out, n * side²]` (from `y_offset`), as one product over its windows.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &self,
        c: &DeviceConv<K>,
        x: &K::Buf,
        x_offset: usize,
        n: usize,
        side: usize,
        y: &mut K::Buf,
        y_offset: usize,
        act: Activation,
    ) -> Result<(), FusedError> {
        let k = &self.kernels;
        let plane = n * side * side;
        let depth = c.c_in * c.k * c.k;
        let product = |b_offset: usize| Product {
            m: c.c_out,
            n: plane,
            k: depth,
            batch: 1,
            alpha: 1.0,
            beta: 0.0,
            a: Operand::rows(0, depth, 0),
            b: Operand::rows(b_offset, plane, 0),
            c: Operand::rows(y_offset, plane, 0),
        };
        if c.k == 1 {
            k.gemm(&product(x_offset), &c.weight, x, y)?;
        } else {
            let mut windows = k.alloc(depth * plane)?;
            k.windows(x, x_offset, &mut windows, c.c_in, n, side, c.k)?;
            k.gemm(&product(0), &c.weight, &windows, y)?;
        }
        k.bias_act(
            y,
            Region {
                offset: y_offset,
                rows: c.c_out,
                cols: plane,
                ld: plane,
            },
            &c.bias,
            true,
            act,
        )
    }
}
