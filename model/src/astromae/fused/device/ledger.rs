//! [`Kernels`] that compute nothing: a dry run of the schedule. Each step's
//! reach is checked against its buffers as `CudaKernels` checks a launch
//! (cuBLAS's arguments and 32-bit sizes included), and the device memory the
//! buffers hold is counted. So the schedule's memory at any batch and model
//! size, and whether every step of it is in bounds there, is known on any
//! machine, in no time and next to no memory, before a GPU is asked.
//!
//! Counted: the schedule's buffers, as `CudaKernels` allocates them (a
//! buffer of `len` values takes `len.max(1)`). Not counted: what the CUDA
//! context, cuBLAS's workspace and the allocator's rounding add.

use super::bounds;
use super::column_major::ColumnMajor;
use super::{Activation, Copy6, Kernels, OnDevice, Pool, Product, Region};
use crate::astromae::fused::{FusedAstroMae, FusedError};
use std::cell::Cell;
use std::rc::Rc;

#[derive(Debug, Default)]
struct Counts {
    live: Cell<usize>,
    peak: Cell<usize>,
    launches: Cell<usize>,
}

/// The dry-run device: counts bytes held and launches made.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    counts: Rc<Counts>,
}

/// A buffer of the dry run: its length and the bytes it holds until dropped.
#[derive(Debug)]
pub struct Entry {
    len: usize,
    bytes: usize,
    counts: Rc<Counts>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.counts.live.set(self.counts.live.get() - self.bytes);
    }
}

impl Ledger {
    /// Bytes the live buffers hold now.
    pub fn live_bytes(&self) -> usize {
        self.counts.live.get()
    }

    /// The most bytes buffers held at once, since the start or the last
    /// [`Ledger::reset_peak`].
    pub fn peak_bytes(&self) -> usize {
        self.counts.peak.get()
    }

    pub fn launches(&self) -> usize {
        self.counts.launches.get()
    }

    /// Starts the peak and the launch count again from what is live now.
    pub fn reset_peak(&self) {
        self.counts.peak.set(self.counts.live.get());
        self.counts.launches.set(0);
    }

    fn entry(&self, len: usize, value_bytes: usize) -> Result<Entry, FusedError> {
        let bytes = len
            .max(1)
            .checked_mul(value_bytes)
            .ok_or_else(|| FusedError(format!("a buffer of {len} values overflows")))?;
        let c = &self.counts;
        c.live.set(c.live.get() + bytes);
        c.peak.set(c.peak.get().max(c.live.get()));
        Ok(Entry {
            len,
            bytes,
            counts: c.clone(),
        })
    }

    fn launch(&self) -> Result<(), FusedError> {
        self.counts.launches.set(self.counts.launches.get() + 1);
        Ok(())
    }
}

impl Kernels for Ledger {
    type Buf = Entry;
    type Half = Entry;

    fn upload(&self, values: &[f32]) -> Result<Entry, FusedError> {
        self.entry(values.len(), 4)
    }

    fn alloc(&self, len: usize) -> Result<Entry, FusedError> {
        self.entry(len, 4)
    }

    fn download(&self, buf: &Entry, len: usize) -> Result<Vec<f32>, FusedError> {
        bounds::values("a download", buf.len, len, len)?;
        Ok(vec![0.0; len])
    }

    fn gemm(&self, p: &Product, a: &Entry, b: &Entry, c: &mut Entry) -> Result<(), FusedError> {
        if p.ready(a.len, b.len, c.len)? {
            ColumnMajor::of(p)?;
            self.launch()?;
        }
        Ok(())
    }

    fn gemm_bf16(
        &self,
        p: &Product,
        a: &Entry,
        b: &Entry,
        c: &mut Entry,
    ) -> Result<(), FusedError> {
        self.gemm(p, a, b, c)
    }

    fn upload_bf16(&self, values: &[f32]) -> Result<Entry, FusedError> {
        self.entry(values.len(), 2)
    }

    fn alloc_bf16(&self, len: usize) -> Result<Entry, FusedError> {
        self.entry(len, 2)
    }

    fn round_bf16(&self, x: &Entry, y: &mut Entry, len: usize) -> Result<(), FusedError> {
        bounds::values("a rounding", x.len, y.len, len)?;
        self.launch()
    }

    fn copy(&self, c: &Copy6, src: &Entry, dst: &mut Entry) -> Result<(), FusedError> {
        if !c.ready(src.len, dst.len)? {
            return Ok(());
        }
        self.launch()
    }

    fn bias_act(
        &self,
        y: &mut Entry,
        at: Region,
        bias: &Entry,
        per_row: bool,
        _act: Activation,
    ) -> Result<(), FusedError> {
        if !at.ready(y.len, bias.len, per_row)? {
            return Ok(());
        }
        self.launch()
    }

    fn layer_norm(
        &self,
        x: &Entry,
        y: &mut Entry,
        gamma: &Entry,
        beta: &Entry,
        rows: usize,
        dim: usize,
        _eps: f32,
    ) -> Result<(), FusedError> {
        bounds::layer_norm(x.len, y.len, gamma.len, beta.len, rows, dim)?;
        self.launch()
    }

    fn softmax_rows(&self, x: &mut Entry, rows: usize, cols: usize) -> Result<(), FusedError> {
        bounds::values("a softmax", x.len, x.len, rows * cols)?;
        self.launch()
    }

    fn windows(
        &self,
        x: &Entry,
        x_offset: usize,
        y: &mut Entry,
        channels: usize,
        planes: usize,
        side: usize,
        k: usize,
    ) -> Result<(), FusedError> {
        bounds::windows(x.len, x_offset, y.len, channels, planes, side, k)?;
        self.launch()
    }

    fn pool(
        &self,
        pool: Pool,
        x: &Entry,
        y: &mut Entry,
        planes: usize,
        side: usize,
    ) -> Result<(), FusedError> {
        bounds::pool(pool, x.len, y.len, planes, side)?;
        self.launch()
    }
}

/// The device memory of [`OnDevice`] for one model, precision and image
/// size, from a dry run: every buffer of a batch scales with its objects, so
/// a batch of `n` holds at most `weights + n * per_object` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// The weights (and constants), held for as long as the model is.
    pub weights: usize,
    /// What each object of a batch adds at the schedule's fullest moment.
    pub per_object: usize,
    /// Kernel launches (products included) a batch takes, whatever its size.
    pub launches: usize,
}

impl Footprint {
    /// The dry run of `model` (fp32 weights) on `[height, width]` images, its
    /// transformer products in bf16 where `bf16`.
    pub fn of(model: &FusedAstroMae, bf16: bool, image: [usize; 2]) -> Result<Self, FusedError> {
        let (ledger, on) = on_ledger(model, bf16)?;
        let weights = ledger.live_bytes();
        let (peak, launches) = dry_run(&on, &ledger, 1, image)?;
        Ok(Footprint {
            weights,
            per_object: peak - weights,
            launches,
        })
    }

    /// (peak bytes, launches) of a dry run of a whole batch of `objects`:
    /// every step's reach checked at that size. Its inputs are zeros never
    /// written (pages the system need not back), but they are allocated.
    pub fn dry_run(
        model: &FusedAstroMae,
        bf16: bool,
        image: [usize; 2],
        objects: usize,
    ) -> Result<(usize, usize), FusedError> {
        let (ledger, on) = on_ledger(model, bf16)?;
        dry_run(&on, &ledger, objects, image)
    }

    /// Bytes a batch of `objects` holds at its fullest, weights included.
    pub fn peak(&self, objects: usize) -> usize {
        self.weights
            .saturating_add(self.per_object.saturating_mul(objects))
    }

    /// The largest batch whose buffers fit in `bytes` beside the weights
    /// (already held), at least 1.
    pub fn objects_within(&self, bytes: usize) -> usize {
        (bytes / self.per_object.max(1)).max(1)
    }
}

fn on_ledger(model: &FusedAstroMae, bf16: bool) -> Result<(Ledger, OnDevice<Ledger>), FusedError> {
    let ledger = Ledger::default();
    let on = if bf16 {
        OnDevice::with_bf16_products(model, ledger.clone())?
    } else {
        OnDevice::new(model, ledger.clone())?
    };
    Ok((ledger, on))
}

/// (peak bytes, launches) of one batch of `n` objects through `on`.
fn dry_run(
    on: &OnDevice<Ledger>,
    ledger: &Ledger,
    n: usize,
    [height, width]: [usize; 2],
) -> Result<(usize, usize), FusedError> {
    let bands = on.bands;
    let images = vec![0.0; n * bands * height * width];
    let magnitudes = vec![0.0; n * bands];
    ledger.reset_peak();
    on.forward(&images, &magnitudes, n, [height, width])?;
    Ok((ledger.peak_bytes(), ledger.launches()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::astromae::fused::random_objects;

    #[test]
    fn a_batch_holds_the_weights_and_a_share_per_object() {
        let (model, _, _) = random_objects(2, 1, [32, 32], 1);
        let fused = FusedAstroMae::new(&model).unwrap();
        let f = Footprint::of(&fused, false, [40, 36]).unwrap();
        assert!(f.weights > 0 && f.per_object > 0 && f.launches > 0, "{f:?}");
        // Exactly linear: measured at other sizes, the same line.
        let ledger = Ledger::default();
        let on = OnDevice::new(&fused, ledger.clone()).unwrap();
        assert_eq!(ledger.live_bytes(), f.weights);
        for n in [2, 7, 64] {
            let (peak, launches) = dry_run(&on, &ledger, n, [40, 36]).unwrap();
            assert_eq!(peak, f.peak(n), "{n} objects");
            assert_eq!(launches, f.launches, "{n} objects");
        }
        // Every buffer of the batch was given back.
        assert_eq!(ledger.live_bytes(), f.weights);
        // bf16 weights take half the bytes of the four products' matrices.
        let half = Footprint::of(&fused, true, [40, 36]).unwrap();
        assert!(half.weights < f.weights, "{half:?} vs {f:?}");
        // Larger images take more while they are uploaded.
        let big = Footprint::of(&fused, false, [256, 256]).unwrap();
        assert!(big.per_object > f.per_object);
        assert_eq!(f.objects_within(f.per_object * 3 + 1), 3);
        assert_eq!(f.objects_within(0), 1);
    }

    #[test]
    fn a_step_out_of_bounds_is_found_without_running_it() {
        let ledger = Ledger::default();
        let (a, mut c) = (ledger.alloc(10).unwrap(), ledger.alloc(4).unwrap());
        let p = Product {
            m: 2,
            n: 2,
            k: 3,
            batch: 1,
            alpha: 1.0,
            beta: 0.0,
            a: super::super::Operand::rows(0, 3, 0),
            b: super::super::Operand::rows(0, 2, 0),
            c: super::super::Operand::rows(0, 2, 0),
        };
        ledger.gemm(&p, &a, &a, &mut c).unwrap();
        let short = ledger.alloc(5).unwrap();
        assert!(ledger.gemm(&p, &short, &a, &mut c).is_err());
        assert_eq!(ledger.launches(), 1);
        assert!(ledger.softmax_rows(&mut c, 3, 2).is_err());
        // 16 + 40 + 20 bytes live, and a peak that remembers the most.
        assert_eq!(ledger.live_bytes(), 76);
        drop(short);
        assert_eq!((ledger.live_bytes(), ledger.peak_bytes()), (56, 76));
    }
}
