//! [`FusedAstroMae`]'s computation as a schedule of a few device kernels, for
//! accelerators.
//!
//! The CPU path runs a batch as slices on threads, each slice in cache. A GPU
//! wants the opposite: whole batches, each step one launch over every object.
//! [`OnDevice`] holds the same weights in a [`Kernels`] implementation's
//! buffers and runs the same steps as whole-batch launches of eight
//! operations: batched matrix products (the layers, every object's attention
//! a head at a time, the convolutions as products over their windows, the
//! token mean), a strided copy (crops, patches, layouts, flatten), bias with
//! an activation, LayerNorm, row softmax, the convolutions' windows, and the
//! Inception branch's two poolings.
//!
//! [`host::HostKernels`] runs them on the CPU, reusing the fused path's
//! kernels, so the schedule (shapes, strides, offsets, the order of steps) is
//! tested against [`FusedAstroMae::forward`] on any machine. With the `cuda`
//! feature, `cuda::CudaKernels` runs them on cuBLAS and a handful of NVRTC
//! kernels; its tests need a GPU and compare each operation with the host's.

use super::{Conv, Dense, FusedAstroMae, FusedError, InceptionBlock, Norm};
use crate::crop::CROP;

mod bounds;
pub mod column_major;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod host;
mod inception;
pub mod ledger;
mod operations;
mod vit;

pub use operations::{Activation, Copy6, Kernels, Operand, Pool, Product, Region};

/// A linear layer's weights on the device.
struct DeviceDense<K: Kernels> {
    weight: DeviceWeight<K>,
    bias: K::Buf,
    d_in: usize,
    d_out: usize,
}

/// A layer's weight matrix, in the number format its products take.
enum DeviceWeight<K: Kernels> {
    F32(K::Buf),
    Bf16(K::Half),
}

struct DeviceConv<K: Kernels> {
    weight: K::Buf,
    bias: K::Buf,
    c_in: usize,
    c_out: usize,
    k: usize,
}

struct DeviceNorm<K: Kernels> {
    gamma: K::Buf,
    beta: K::Buf,
}

struct DeviceLayer<K: Kernels> {
    norm1: DeviceNorm<K>,
    qkv: DeviceDense<K>,
    out: DeviceDense<K>,
    norm2: DeviceNorm<K>,
    mlp_in: DeviceDense<K>,
    mlp_out: DeviceDense<K>,
}

struct DeviceBlock<K: Kernels> {
    entry: DeviceConv<K>,
    width: usize,
    b3: DeviceConv<K>,
    b5: Option<DeviceConv<K>>,
    pool_proj: DeviceConv<K>,
}

/// AstroMAE's weights on a device, run a whole batch at a time.
pub struct OnDevice<K: Kernels> {
    kernels: K,
    bands: usize,
    dim: usize,
    heads: usize,
    patch: usize,
    patch_weight: K::Buf,
    start: K::Buf,
    layers: Vec<DeviceLayer<K>>,
    fc_norm: DeviceNorm<K>,
    vit_head: DeviceDense<K>,
    vit_block: [DeviceDense<K>; 2],
    stem: DeviceConv<K>,
    blocks: Vec<DeviceBlock<K>>,
    inception_mlp: [DeviceDense<K>; 2],
    magnitudes: Vec<DeviceDense<K>>,
    head: [DeviceDense<K>; 2],
    /// `1 / (tokens - 1)`-weighted ones: the token mean as a product.
    ones: K::Buf,
}

impl<K: Kernels> OnDevice<K> {
    /// `model`'s weights, uploaded through `kernels`, every product in fp32.
    /// `model` must hold fp32 weights (not switched to bf16: the packed copy
    /// has no f32 weights left).
    pub fn new(model: &FusedAstroMae, kernels: K) -> Result<Self, FusedError> {
        Self::with(model, kernels, false)
    }

    /// As [`OnDevice::new`], with the transformer blocks' four products in
    /// bf16 (f32 sums), as the CPU path's `--precision bf16`: the same
    /// products, so the same accuracy; the rest stays fp32.
    pub fn with_bf16_products(model: &FusedAstroMae, kernels: K) -> Result<Self, FusedError> {
        Self::with(model, kernels, true)
    }

    fn with(model: &FusedAstroMae, kernels: K, bf16: bool) -> Result<Self, FusedError> {
        if model.kernels() != "fp32" {
            return Err(FusedError(format!(
                "the device schedule takes fp32 weights, not {}",
                model.kernels()
            )));
        }
        let k = &kernels;
        let v = &model.vit;
        let dense_as = |d: &Dense, half: bool| -> Result<DeviceDense<K>, FusedError> {
            Ok(DeviceDense {
                weight: if half {
                    DeviceWeight::Bf16(k.upload_bf16(&d.weight)?)
                } else {
                    DeviceWeight::F32(k.upload(&d.weight)?)
                },
                bias: k.upload(&d.bias)?,
                d_in: d.d_in,
                d_out: d.d_out,
            })
        };
        let dense = |d: &Dense| dense_as(d, false);
        let conv = |c: &Conv| -> Result<DeviceConv<K>, FusedError> {
            Ok(DeviceConv {
                weight: k.upload(&c.weight)?,
                bias: k.upload(&c.bias)?,
                c_in: c.c_in,
                c_out: c.c_out,
                k: c.k,
            })
        };
        let norm = |n: &Norm| -> Result<DeviceNorm<K>, FusedError> {
            Ok(DeviceNorm {
                gamma: k.upload(&n.gamma)?,
                beta: k.upload(&n.beta)?,
            })
        };
        let block = |b: &InceptionBlock| -> Result<DeviceBlock<K>, FusedError> {
            Ok(DeviceBlock {
                entry: conv(&b.entry)?,
                width: b.width,
                b3: conv(&b.b3)?,
                b5: b.b5.as_ref().map(conv).transpose()?,
                pool_proj: conv(&b.pool_proj)?,
            })
        };
        let tokens = (CROP / v.patch).pow(2) + 1;
        let on = OnDevice {
            bands: model.bands,
            dim: v.dim,
            heads: v.heads,
            patch: v.patch,
            patch_weight: k.upload(&v.patch_weight)?,
            start: k.upload(&v.start)?,
            layers: v
                .layers
                .iter()
                .map(|l| {
                    Ok(DeviceLayer {
                        norm1: norm(&l.norm1)?,
                        qkv: dense_as(&l.qkv, bf16)?,
                        out: dense_as(&l.out, bf16)?,
                        norm2: norm(&l.norm2)?,
                        mlp_in: dense_as(&l.mlp_in, bf16)?,
                        mlp_out: dense_as(&l.mlp_out, bf16)?,
                    })
                })
                .collect::<Result<_, FusedError>>()?,
            fc_norm: norm(&v.fc_norm)?,
            vit_head: dense(&v.head)?,
            vit_block: [dense(&model.vit_block[0])?, dense(&model.vit_block[1])?],
            stem: conv(&model.inception.stem)?,
            blocks: model
                .inception
                .blocks
                .iter()
                .map(block)
                .collect::<Result<_, _>>()?,
            inception_mlp: [
                dense(&model.inception.mlp[0])?,
                dense(&model.inception.mlp[1])?,
            ],
            magnitudes: model
                .magnitudes
                .iter()
                .map(dense)
                .collect::<Result<_, _>>()?,
            head: [dense(&model.head[0])?, dense(&model.head[1])?],
            ones: k.upload(&vec![1.0 / (tokens - 1) as f32; tokens - 1])?,
            kernels,
        };
        Ok(on)
    }

    pub fn kernels(&self) -> &K {
        &self.kernels
    }

    /// Redshifts of `n` objects: `images` `[n, bands, height, width]` (at least
    /// 32x32; the centre 32x32 is read) and `magnitudes` `[n, bands]`, the
    /// whole batch at once.
    pub fn forward(
        &self,
        images: &[f32],
        magnitudes: &[f32],
        n: usize,
        [height, width]: [usize; 2],
    ) -> Result<Vec<f32>, FusedError> {
        let bands = self.bands;
        super::check_batch(bands, images, magnitudes, n, [height, width])?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let k = &self.kernels;
        let area = CROP * CROP;
        let full = k.upload(images)?;
        let mut crop = k.alloc(n * bands * area)?;
        let (top, left) = ((height - CROP) / 2, (width - CROP) / 2);
        k.copy(
            &Copy6::new(
                &[n * bands, CROP, CROP],
                &[height * width, width, 1],
                &[area, CROP, 1],
            )
            .at(top * width + left, 0),
            &full,
            &mut crop,
        )?;
        drop(full);

        let joined_width = self.vit_block[1].d_out
            + self.inception_mlp[1].d_out
            + self.magnitudes.last().map_or(0, |l| l.d_out);
        let mut joined = k.alloc(n * joined_width)?;
        let vit = self.vit(&crop, n)?;
        let hidden = self.dense(&self.vit_block[0], &vit, n, Activation::Relu)?;
        drop(vit);
        self.dense_into(
            &self.vit_block[1],
            &hidden,
            n,
            &mut joined,
            0,
            joined_width,
            false,
            Activation::None,
        )?;
        let mut column = self.vit_block[1].d_out;
        let flat = self.inception(&crop, n)?;
        let hidden = self.dense(&self.inception_mlp[0], &flat, n, Activation::Relu)?;
        drop(flat);
        self.dense_into(
            &self.inception_mlp[1],
            &hidden,
            n,
            &mut joined,
            column,
            joined_width,
            false,
            Activation::None,
        )?;
        column += self.inception_mlp[1].d_out;
        let mut x = k.upload(magnitudes)?;
        let last = self.magnitudes.len() - 1;
        for (i, layer) in self.magnitudes.iter().enumerate() {
            if i < last {
                x = self.dense(layer, &x, n, Activation::Relu)?;
            } else {
                self.dense_into(
                    layer,
                    &x,
                    n,
                    &mut joined,
                    column,
                    joined_width,
                    false,
                    Activation::None,
                )?;
            }
        }
        let hidden = self.dense(&self.head[0], &joined, n, Activation::Relu)?;
        let z = self.dense(&self.head[1], &hidden, n, Activation::None)?;
        k.download(&z, n)
    }

    /// `x [rows, d_in] -> act(x W + b) [rows, d_out]` in a new buffer.
    fn dense(
        &self,
        d: &DeviceDense<K>,
        x: &K::Buf,
        rows: usize,
        act: Activation,
    ) -> Result<K::Buf, FusedError> {
        let mut y = self.kernels.alloc(rows * d.d_out)?;
        self.dense_into(d, x, rows, &mut y, 0, d.d_out, false, act)?;
        Ok(y)
    }

    /// `x W + b` into the columns of `y` from `column`, rows `ld` apart; added
    /// to what is there when `accumulate` (a residual).
    #[allow(clippy::too_many_arguments)]
    fn dense_into(
        &self,
        d: &DeviceDense<K>,
        x: &K::Buf,
        rows: usize,
        y: &mut K::Buf,
        column: usize,
        ld: usize,
        accumulate: bool,
        act: Activation,
    ) -> Result<(), FusedError> {
        let k = &self.kernels;
        let product = Product {
            m: rows,
            n: d.d_out,
            k: d.d_in,
            batch: 1,
            alpha: 1.0,
            beta: if accumulate { 1.0 } else { 0.0 },
            a: Operand::rows(0, d.d_in, 0),
            b: Operand::rows(0, d.d_out, 0),
            c: Operand::rows(column, ld, 0),
        };
        match &d.weight {
            DeviceWeight::F32(w) => k.gemm(&product, x, w, y)?,
            DeviceWeight::Bf16(w) => {
                let mut half = k.alloc_bf16(rows * d.d_in)?;
                k.round_bf16(x, &mut half, rows * d.d_in)?;
                k.gemm_bf16(&product, &half, w, y)?;
            }
        }
        k.bias_act(
            y,
            Region {
                offset: column,
                rows,
                cols: d.d_out,
                ld,
            },
            &d.bias,
            false,
            act,
        )
    }

    /// As [`OnDevice::forward`], at most `max_objects` at a time: a batch
    /// larger than the device's memory holds goes through in parts (each
    /// part's memory is [`ledger::Footprint::peak`] of its objects).
    pub fn forward_in_parts(
        &self,
        images: &[f32],
        magnitudes: &[f32],
        n: usize,
        [height, width]: [usize; 2],
        max_objects: usize,
    ) -> Result<Vec<f32>, FusedError> {
        let bands = self.bands;
        let pixels = super::check_batch(bands, images, magnitudes, n, [height, width])?;
        let part = max_objects.max(1);
        let mut z = Vec::with_capacity(n);
        for start in (0..n).step_by(part) {
            let m = part.min(n - start);
            z.extend(self.forward(
                &images[start * pixels..(start + m) * pixels],
                &magnitudes[start * bands..(start + m) * bands],
                m,
                [height, width],
            )?);
        }
        Ok(z)
    }
}

/// The largest difference between two tests' outputs of the same length.
#[cfg(test)]
fn worst(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Test values in [-2, 2) from a fixed sequence.
#[cfg(test)]
fn noise(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::host::HostKernels;
    use super::*;
    use crate::astromae::fused::{random_objects, values};

    #[test]
    fn the_device_schedule_computes_what_the_fused_path_computes() {
        let n = 5;
        let (model, images, mags) = random_objects(2, n, [40, 36], 11);
        let (images, mags) = (values(images), values(mags));
        let fused = FusedAstroMae::new(&model).unwrap();
        let want = fused.forward(&images, &mags, n, [40, 36], 2).unwrap();
        let on = OnDevice::new(&fused, HostKernels).unwrap();
        let got = on.forward(&images, &mags, n, [40, 36]).unwrap();
        assert_eq!(got.len(), n);
        let spread = want.iter().fold(0f32, |m, z| m.max((z - want[0]).abs()));
        assert!(spread > 1e-3, "objects should differ: {want:?}");
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() < 1e-5,
                "device schedule {got:?} vs fused {want:?}"
            );
        }
        // In parts of 2, 2 and 1: the same redshifts.
        let parts = on.forward_in_parts(&images, &mags, n, [40, 36], 2).unwrap();
        assert_eq!(parts.len(), n);
        assert!(worst(&parts, &got) < 1e-6, "{parts:?} vs {got:?}");
        assert!(
            on.forward_in_parts(&images[1..], &mags, n, [40, 36], 2)
                .is_err()
        );
        assert!(on.forward(&images, &mags, n, [20, 36]).is_err());
        assert!(on.forward(&images[1..], &mags, n, [40, 36]).is_err());
        // bf16: the same products as the CPU path's bf16 on its fp32 kernels.
        let half = OnDevice::with_bf16_products(&fused, HostKernels).unwrap();
        let got = half.forward(&images, &mags, n, [40, 36]).unwrap();
        let rounded = fused.clone().with_bf16(false);
        let want_half = rounded.forward(&images, &mags, n, [40, 36], 2).unwrap();
        assert!(worst(&got, &want_half) < 1e-5, "{got:?} vs {want_half:?}");
        assert!(worst(&got, &want) > 0.0, "bf16 should round something");
        assert!(OnDevice::new(&rounded, HostKernels).is_err());
    }
}
