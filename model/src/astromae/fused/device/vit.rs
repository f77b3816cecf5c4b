//! The ViT branch as device launches: patches, the encoder's blocks (LayerNorm,
//! attention a head at a time, the MLP), the final norm and the head.

use super::{Activation, Copy6, Kernels, OnDevice, Operand, Product};
use crate::astromae::fused::{EPS, FusedError};
use crate::crop::CROP;

impl<K: Kernels> OnDevice<K> {
    /// `[n, bands, 32, 32]` -> the ViT's head output `[n, head width]`.
    pub(super) fn vit(&self, crop: &K::Buf, n: usize) -> Result<K::Buf, FusedError> {
        let k = &self.kernels;
        let (p, dim, bands) = (self.patch, self.dim, self.bands);
        let side = CROP / p;
        let patches = side * side;
        let tokens = patches + 1;
        let depth = bands * p * p;
        let rows = n * tokens;
        // Each patch's pixels as a row, in the kernel's (band, row, column) order.
        let mut columns = k.alloc(n * patches * depth)?;
        k.copy(
            &Copy6::new(
                &[n, side, side, bands, p, p],
                &[bands * CROP * CROP, p * CROP, p, CROP * CROP, CROP, 1],
                &[patches * depth, side * depth, depth, p * p, p, 1],
            ),
            crop,
            &mut columns,
        )?;
        let mut x = k.alloc(rows * dim)?;
        k.copy(
            &Copy6::new(&[n, tokens * dim], &[0, 1], &[tokens * dim, 1]),
            &self.start,
            &mut x,
        )?;
        k.gemm(
            &Product {
                m: patches,
                n: dim,
                k: depth,
                batch: n,
                alpha: 1.0,
                beta: 1.0,
                a: Operand::rows(0, depth, patches * depth),
                b: Operand::rows(0, dim, 0),
                c: Operand::rows(dim, dim, tokens * dim),
            },
            &columns,
            &self.patch_weight,
            &mut x,
        )?;
        drop(columns);

        let mut normed = k.alloc(rows * dim)?;
        let hidden_width = self
            .layers
            .iter()
            .map(|l| l.mlp_in.d_out)
            .max()
            .unwrap_or(0);
        let mut qkv = k.alloc(rows * 3 * dim)?;
        let mut scores = k.alloc(n * tokens * tokens)?;
        let mut attended = k.alloc(rows * dim)?;
        let mut hidden = k.alloc(rows * hidden_width)?;
        let (h, d) = (self.heads, dim / self.heads);
        // Columns of query (0), key (1) or value (2) for `head`, in each object's qkv rows.
        let part =
            |i: usize, head: usize| Operand::rows(i * dim + head * d, 3 * dim, tokens * 3 * dim);
        for l in &self.layers {
            k.layer_norm(
                &x,
                &mut normed,
                &l.norm1.gamma,
                &l.norm1.beta,
                rows,
                dim,
                EPS,
            )?;
            self.dense_into(
                &l.qkv,
                &normed,
                rows,
                &mut qkv,
                0,
                3 * dim,
                false,
                Activation::None,
            )?;
            // Head by head (AstroMAE has 3), every object's attention in one
            // batched product, read in place: no copy into a per-head layout.
            for head in 0..h {
                k.gemm(
                    &Product {
                        m: tokens,
                        n: tokens,
                        k: d,
                        batch: n,
                        alpha: 1.0 / (d as f32).sqrt(),
                        beta: 0.0,
                        a: part(0, head),
                        b: part(1, head).transposed(),
                        c: Operand::rows(0, tokens, tokens * tokens),
                    },
                    &qkv,
                    &qkv,
                    &mut scores,
                )?;
                k.softmax_rows(&mut scores, n * tokens, tokens)?;
                k.gemm(
                    &Product {
                        m: tokens,
                        n: d,
                        k: tokens,
                        batch: n,
                        alpha: 1.0,
                        beta: 0.0,
                        a: Operand::rows(0, tokens, tokens * tokens),
                        b: part(2, head),
                        c: Operand::rows(head * d, dim, tokens * dim),
                    },
                    &scores,
                    &qkv,
                    &mut attended,
                )?;
            }
            self.dense_into(
                &l.out,
                &attended,
                rows,
                &mut x,
                0,
                dim,
                true,
                Activation::None,
            )?;
            k.layer_norm(
                &x,
                &mut normed,
                &l.norm2.gamma,
                &l.norm2.beta,
                rows,
                dim,
                EPS,
            )?;
            self.dense_into(
                &l.mlp_in,
                &normed,
                rows,
                &mut hidden,
                0,
                l.mlp_in.d_out,
                false,
                Activation::Gelu,
            )?;
            self.dense_into(
                &l.mlp_out,
                &hidden,
                rows,
                &mut x,
                0,
                dim,
                true,
                Activation::None,
            )?;
        }
        drop((qkv, scores, attended, hidden));
        // The mean of each object's patch tokens (the class token left out).
        let mut pooled = k.alloc(n * dim)?;
        k.gemm(
            &Product {
                m: 1,
                n: dim,
                k: patches,
                batch: n,
                alpha: 1.0,
                beta: 0.0,
                a: Operand::rows(0, patches, 0),
                b: Operand::rows(dim, dim, tokens * dim),
                c: Operand::rows(0, dim, dim),
            },
            &self.ones,
            &x,
            &mut pooled,
        )?;
        k.layer_norm(
            &pooled,
            &mut normed,
            &self.fc_norm.gamma,
            &self.fc_norm.beta,
            n,
            dim,
            EPS,
        )?;
        self.dense(&self.vit_head, &normed, n, Activation::None)
    }
}
