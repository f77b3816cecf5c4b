//! [`Kernels`] on an NVIDIA GPU: products on cuBLAS (strict fp32: cuBLAS's
//! default math mode, no TF32; or bf16 operands with f32 sums, through
//! `cublasGemmStridedBatchedEx`), the other steps in `kernels.cu`, compiled by
//! NVRTC when the device is opened. cudarc loads the driver, NVRTC and cuBLAS
//! at run time, so building needs no CUDA toolkit; opening a device turns a
//! library that will not load into an error (cudarc panics on one).
//!
//! Every launch is checked against its buffers' lengths on the host first:
//! a wrong stride is an error here, never a read or write outside a buffer.

use super::bounds;
use super::column_major::ColumnMajor;
use super::{Activation, Copy6, Kernels, Pool, Product, Region};
use crate::astromae::fused::FusedError;
use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, StridedBatchedConfig};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, LaunchConfig, PushKernelArg,
};
use std::sync::Arc;

const SOURCE: &str = include_str!("kernels.cu");
/// The kernels `kernels.cu` defines, as [`CudaKernels`] loads them.
const KERNELS: [&str; 8] = [
    "copy6",
    "bias_act",
    "layer_norm",
    "softmax_rows",
    "windows",
    "max_pool3",
    "avg_pool2",
    "round_bf16",
];

/// `kernels.cu` compiled to PTX by NVRTC, as opening a device compiles it.
/// Only NVRTC's library is needed, not a GPU: so the kernels' source is
/// checked on any machine that has it (CI installs it from PyPI).
pub fn compile() -> Result<cudarc::nvrtc::Ptx, FusedError> {
    unpanic(|| cudarc::nvrtc::compile_ptx(SOURCE).map_err(failed("kernel compilation")))
}

/// `f`, with cudarc's panic on a library that will not load made an error.
fn unpanic<T>(f: impl FnOnce() -> Result<T, FusedError>) -> Result<T, FusedError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("a CUDA library could not be loaded");
        Err(FusedError(why.to_string()))
    })
}
/// Threads per block for every kernel (a multiple of 32: the reductions use warps).
const THREADS: u32 = 256;

/// One GPU, its stream, cuBLAS handle and compiled kernels.
pub struct CudaKernels {
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    copy6: CudaFunction,
    bias_act: CudaFunction,
    layer_norm: CudaFunction,
    softmax_rows: CudaFunction,
    windows: CudaFunction,
    max_pool3: CudaFunction,
    avg_pool2: CudaFunction,
    round_bf16: CudaFunction,
}

fn failed<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> FusedError {
    move |e| FusedError(format!("CUDA {what}: {e:?}"))
}

/// [`Copy6`] as `kernels.cu` reads it.
#[repr(C)]
#[derive(Clone, Copy)]
struct CopyArgs {
    shape: [u64; 6],
    src: [u64; 6],
    dst: [u64; 6],
    src_offset: u64,
    dst_offset: u64,
    total: u64,
}

// SAFETY: plain integers, laid out as the kernel's `struct Copy6`.
unsafe impl DeviceRepr for CopyArgs {}

/// Blocks for a grid-strided loop over `total` items, `per_block` a block.
fn grid(total: usize, per_block: usize) -> LaunchConfig {
    let blocks = total.div_ceil(per_block.max(1)).clamp(1, 1 << 20) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// cuBLAS's `T` or `N`.
fn op(transposed: bool) -> cublasOperation_t {
    if transposed {
        cublasOperation_t::CUBLAS_OP_T
    } else {
        cublasOperation_t::CUBLAS_OP_N
    }
}

impl CudaKernels {
    /// GPU `ordinal`, with the kernels compiled for it.
    pub fn new(ordinal: usize) -> Result<Self, FusedError> {
        if !driver_present() {
            return Err(FusedError(
                "no NVIDIA driver here (libcuda.so.1 cannot be loaded)".into(),
            ));
        }
        // cudarc panics where NVRTC or cuBLAS cannot be loaded (a driver alone
        // is not enough): that is an error here, as a missing driver is.
        unpanic(|| Self::open(ordinal))
    }

    fn open(ordinal: usize) -> Result<Self, FusedError> {
        let ctx = CudaContext::new(ordinal).map_err(failed("device"))?;
        let stream = ctx.default_stream();
        let module = ctx.load_module(compile()?).map_err(failed("module"))?;
        let load = |name: &str| module.load_function(name).map_err(failed("kernel"));
        let [
            copy6,
            bias_act,
            layer_norm,
            softmax_rows,
            windows,
            max_pool3,
            avg_pool2,
            round_bf16,
        ] = KERNELS;
        Ok(CudaKernels {
            blas: CudaBlas::new(stream.clone()).map_err(failed("cuBLAS"))?,
            copy6: load(copy6)?,
            bias_act: load(bias_act)?,
            layer_norm: load(layer_norm)?,
            softmax_rows: load(softmax_rows)?,
            windows: load(windows)?,
            max_pool3: load(max_pool3)?,
            avg_pool2: load(avg_pool2)?,
            round_bf16: load(round_bf16)?,
            stream,
        })
    }

    /// The products on TF32 tensor cores (cuBLAS's `CUBLAS_TF32_TENSOR_OP_MATH`:
    /// inputs rounded to 10-bit mantissas, sums in fp32), as PyTorch's
    /// `allow_tf32`; the other steps stay fp32.
    pub fn with_tf32(self) -> Result<Self, FusedError> {
        use cudarc::cublas::sys::{cublasMath_t, cublasSetMathMode, cublasStatus_t};
        // SAFETY: the handle is live for as long as `self.blas`.
        let status = unsafe {
            cublasSetMathMode(
                *self.blas.handle(),
                cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH,
            )
        };
        if status != cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(FusedError(format!("CUDA TF32 math mode: {status:?}")));
        }
        Ok(self)
    }

    /// (free, total) bytes of the GPU's memory.
    pub fn memory(&self) -> Result<(usize, usize), FusedError> {
        self.stream
            .context()
            .mem_get_info()
            .map_err(failed("memory"))
    }

    /// The GPU's name, for reports.
    pub fn name(&self) -> String {
        self.stream
            .context()
            .name()
            .unwrap_or_else(|_| "an NVIDIA GPU".into())
    }
}

/// Whether the NVIDIA driver loads (cudarc would panic on its absence).
fn driver_present() -> bool {
    // SAFETY: dlopen with a constant name; the handle is closed again at once.
    unsafe {
        let handle = libc_dlopen(c"libcuda.so.1".as_ptr(), 1);
        if !handle.is_null() {
            libc_dlclose(handle);
        }
        !handle.is_null()
    }
}

unsafe extern "C" {
    #[link_name = "dlopen"]
    fn libc_dlopen(filename: *const std::ffi::c_char, flag: i32) -> *mut std::ffi::c_void;
    #[link_name = "dlclose"]
    fn libc_dlclose(handle: *mut std::ffi::c_void) -> i32;
}

impl Kernels for CudaKernels {
    type Buf = CudaSlice<f32>;
    /// bf16 bits.
    type Half = CudaSlice<u16>;

    fn gemm_bf16(
        &self,
        p: &Product,
        a: &CudaSlice<u16>,
        b: &CudaSlice<u16>,
        c: &mut CudaSlice<f32>,
    ) -> Result<(), FusedError> {
        use cudarc::cublas::sys::{cublasComputeType_t, cublasGemmAlgo_t, cudaDataType_t};
        use cudarc::driver::{DevicePtr, DevicePtrMut};
        if !p.ready(a.len(), b.len(), c.len())? {
            return Ok(());
        }
        let g = ColumnMajor::of(p)?;
        let (first, second) = (b.slice(g.a_offset..), a.slice(g.b_offset..));
        let mut out = c.slice_mut(g.c_offset..);
        let (first, _first) = first.device_ptr(&self.stream);
        let (second, _second) = second.device_ptr(&self.stream);
        let (out, _out) = out.device_ptr_mut(&self.stream);
        let (alpha, beta) = (g.alpha, g.beta);
        // SAFETY: every matrix was checked above to lie inside its buffer
        // (lengths in elements, of the types named here), and the arguments
        // to keep cuBLAS's rules; alpha and beta are host f32s, as the
        // handle's default pointer mode and CUBLAS_COMPUTE_32F read them.
        unsafe {
            cudarc::cublas::result::gemm_strided_batched_ex(
                *self.blas.handle(),
                op(g.transa),
                op(g.transb),
                g.m,
                g.n,
                g.k,
                (&alpha as *const f32).cast(),
                first as *const std::ffi::c_void,
                cudaDataType_t::CUDA_R_16BF,
                g.lda,
                g.stride_a,
                second as *const std::ffi::c_void,
                cudaDataType_t::CUDA_R_16BF,
                g.ldb,
                g.stride_b,
                (&beta as *const f32).cast(),
                out as *mut std::ffi::c_void,
                cudaDataType_t::CUDA_R_32F,
                g.ldc,
                g.stride_c,
                g.batch_count,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }
        .map_err(failed("bf16 product"))
    }

    fn upload_bf16(&self, values: &[f32]) -> Result<CudaSlice<u16>, FusedError> {
        let bits: Vec<u16> = values
            .iter()
            .map(|&v| crate::astromae::fused::bf16::round(v))
            .collect();
        self.stream.clone_htod(&bits).map_err(failed("upload"))
    }

    fn alloc_bf16(&self, len: usize) -> Result<CudaSlice<u16>, FusedError> {
        // SAFETY: any bits are a bf16, and every value read is written first.
        unsafe { self.stream.alloc::<u16>(len.max(1)) }.map_err(failed("allocation"))
    }

    fn round_bf16(
        &self,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<u16>,
        len: usize,
    ) -> Result<(), FusedError> {
        bounds::values("a rounding", x.len(), y.len(), len)?;
        if len == 0 {
            return Ok(());
        }
        let n = len as u64;
        let mut launch = self.stream.launch_builder(&self.round_bf16);
        launch.arg(x).arg(y).arg(&n);
        // SAFETY: (const float*, unsigned short*, u64), bounded above.
        unsafe { launch.launch(grid(len, THREADS as usize)) }
            .map(drop)
            .map_err(failed("rounding"))
    }

    fn upload(&self, values: &[f32]) -> Result<CudaSlice<f32>, FusedError> {
        self.stream.clone_htod(values).map_err(failed("upload"))
    }

    fn alloc(&self, len: usize) -> Result<CudaSlice<f32>, FusedError> {
        // SAFETY: any bits are an f32, and the schedule writes every value it
        // reads (the host's buffers start as NaN, so its test would show one
        // that is not); zeroing would be a pass over memory for nothing.
        unsafe { self.stream.alloc::<f32>(len.max(1)) }.map_err(failed("allocation"))
    }

    fn download(&self, buf: &CudaSlice<f32>, len: usize) -> Result<Vec<f32>, FusedError> {
        bounds::values("a download", buf.len(), len, len)?;
        let out = self
            .stream
            .clone_dtoh(&buf.slice(..len))
            .map_err(failed("download"))?;
        self.stream.synchronize().map_err(failed("synchronize"))?;
        Ok(out)
    }

    fn gemm(
        &self,
        p: &Product,
        a: &CudaSlice<f32>,
        b: &CudaSlice<f32>,
        c: &mut CudaSlice<f32>,
    ) -> Result<(), FusedError> {
        if !p.ready(a.len(), b.len(), c.len())? {
            return Ok(());
        }
        let g = ColumnMajor::of(p)?;
        let cfg = StridedBatchedConfig {
            gemm: GemmConfig {
                transa: op(g.transa),
                transb: op(g.transb),
                m: g.m,
                n: g.n,
                k: g.k,
                alpha: g.alpha,
                lda: g.lda,
                ldb: g.ldb,
                beta: g.beta,
                ldc: g.ldc,
            },
            batch_size: g.batch_count,
            stride_a: g.stride_a,
            stride_b: g.stride_b,
            stride_c: g.stride_c,
        };
        let (first, second) = (b.slice(g.a_offset..), a.slice(g.b_offset..));
        let mut out = c.slice_mut(g.c_offset..);
        // SAFETY: every matrix of the batch was checked above to lie inside its
        // buffer, and the arguments to keep cuBLAS's rules.
        unsafe {
            self.blas
                .gemm_strided_batched(cfg, &first, &second, &mut out)
        }
        .map_err(failed("product"))
    }

    fn copy(
        &self,
        c: &Copy6,
        src: &CudaSlice<f32>,
        dst: &mut CudaSlice<f32>,
    ) -> Result<(), FusedError> {
        if !c.ready(src.len(), dst.len())? {
            return Ok(());
        }
        let args = CopyArgs {
            shape: c.shape.map(|v| v as u64),
            src: c.src.map(|v| v as u64),
            dst: c.dst.map(|v| v as u64),
            src_offset: c.src_offset as u64,
            dst_offset: c.dst_offset as u64,
            total: c.len() as u64,
        };
        let mut launch = self.stream.launch_builder(&self.copy6);
        launch.arg(src).arg(dst).arg(&args);
        // SAFETY: the kernel's signature is (const float*, float*, Copy6), and
        // every index it forms was bounded above.
        unsafe { launch.launch(grid(c.len(), THREADS as usize)) }
            .map(drop)
            .map_err(failed("copy"))
    }

    fn bias_act(
        &self,
        y: &mut CudaSlice<f32>,
        at: Region,
        bias: &CudaSlice<f32>,
        per_row: bool,
        act: Activation,
    ) -> Result<(), FusedError> {
        if !at.ready(y.len(), bias.len(), per_row)? {
            return Ok(());
        }
        let [offset, rows, cols, ld] = [at.offset, at.rows, at.cols, at.ld].map(|v| v as u64);
        let (per_row, act) = (i32::from(per_row), act as i32);
        let mut launch = self.stream.launch_builder(&self.bias_act);
        launch
            .arg(y)
            .arg(bias)
            .arg(&offset)
            .arg(&rows)
            .arg(&cols)
            .arg(&ld)
            .arg(&per_row)
            .arg(&act);
        // SAFETY: (float*, const float*, u64 x4, int, int), bounded above.
        unsafe { launch.launch(grid(at.rows * at.cols, THREADS as usize)) }
            .map(drop)
            .map_err(failed("bias"))
    }

    fn layer_norm(
        &self,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
        gamma: &CudaSlice<f32>,
        beta: &CudaSlice<f32>,
        rows: usize,
        dim: usize,
        eps: f32,
    ) -> Result<(), FusedError> {
        bounds::layer_norm(x.len(), y.len(), gamma.len(), beta.len(), rows, dim)?;
        if rows == 0 {
            return Ok(());
        }
        let [r, d] = [rows, dim].map(|v| v as u64);
        let mut launch = self.stream.launch_builder(&self.layer_norm);
        launch
            .arg(x)
            .arg(y)
            .arg(gamma)
            .arg(beta)
            .arg(&r)
            .arg(&d)
            .arg(&eps);
        // SAFETY: (const float*, float*, const float*, const float*, u64, u64,
        // float); one block a row, rows bounded above.
        unsafe { launch.launch(grid(rows, 1)) }
            .map(drop)
            .map_err(failed("LayerNorm"))
    }

    fn softmax_rows(
        &self,
        x: &mut CudaSlice<f32>,
        rows: usize,
        cols: usize,
    ) -> Result<(), FusedError> {
        bounds::values("a softmax", x.len(), x.len(), rows * cols)?;
        if rows == 0 || cols == 0 {
            return Ok(());
        }
        let [r, c] = [rows, cols].map(|v| v as u64);
        let mut launch = self.stream.launch_builder(&self.softmax_rows);
        launch.arg(x).arg(&r).arg(&c);
        // SAFETY: (float*, u64, u64); a warp a row, bounded above.
        unsafe { launch.launch(grid(rows, (THREADS / 32) as usize)) }
            .map(drop)
            .map_err(failed("softmax"))
    }

    fn windows(
        &self,
        x: &CudaSlice<f32>,
        x_offset: usize,
        y: &mut CudaSlice<f32>,
        channels: usize,
        planes: usize,
        side: usize,
        k: usize,
    ) -> Result<(), FusedError> {
        let (_, total) = bounds::windows(x.len(), x_offset, y.len(), channels, planes, side, k)?;
        if total == 0 {
            return Ok(());
        }
        let [off, c, p, s, kk] = [x_offset, channels, planes, side, k].map(|v| v as u64);
        let mut launch = self.stream.launch_builder(&self.windows);
        launch
            .arg(x)
            .arg(&off)
            .arg(y)
            .arg(&c)
            .arg(&p)
            .arg(&s)
            .arg(&kk);
        // SAFETY: (const float*, u64, float*, u64 x4), bounded above.
        unsafe { launch.launch(grid(total, THREADS as usize)) }
            .map(drop)
            .map_err(failed("windows"))
    }

    fn pool(
        &self,
        pool: Pool,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
        planes: usize,
        side: usize,
    ) -> Result<(), FusedError> {
        let (_, out_len) = bounds::pool(pool, x.len(), y.len(), planes, side)?;
        if out_len == 0 {
            return Ok(());
        }
        let kernel = match pool {
            Pool::Max3 => &self.max_pool3,
            Pool::Avg2 => &self.avg_pool2,
        };
        let [p, s] = [planes, side].map(|v| v as u64);
        let mut launch = self.stream.launch_builder(kernel);
        launch.arg(x).arg(y).arg(&p).arg(&s);
        // SAFETY: (const float*, float*, u64, u64), bounded above.
        unsafe { launch.launch(grid(out_len, THREADS as usize)) }
            .map(drop)
            .map_err(failed("pool"))
    }
}

#[cfg(test)]
mod tests {
    //! These run where a GPU is (a lent machine: `cargo test -p cosmicai-model
    //! --features cuda --lib device`); elsewhere they say so and pass.
    use super::super::host::HostKernels;
    use super::super::{
        Activation, Copy6, Kernels, OnDevice, Operand, Pool, Product, Region, noise, worst,
    };
    use super::CudaKernels;
    use crate::astromae::fused::{FusedAstroMae, random_objects, values};

    /// GPU 0, or `None` (the test says so and passes) where there is none.
    /// Where `COSMICAI_REQUIRE_GPU` is set (the GPU check), its absence fails
    /// the test instead: a check on a GPU must not pass by skipping.
    fn gpu() -> Option<CudaKernels> {
        match CudaKernels::new(0) {
            Ok(k) => Some(k),
            Err(e) if std::env::var_os("COSMICAI_REQUIRE_GPU").is_none() => {
                eprintln!("skipped (set COSMICAI_REQUIRE_GPU to require it): {e}");
                None
            }
            Err(e) => panic!("no GPU: {e}"),
        }
    }

    /// Needs only NVRTC's library, no GPU. Where `COSMICAI_REQUIRE_NVRTC` is
    /// set (CI, which installs it), its absence fails the test.
    #[test]
    fn the_kernels_compile_with_nvrtc() {
        let ptx = match super::compile() {
            Ok(ptx) => ptx.to_src(),
            Err(e) if std::env::var_os("COSMICAI_REQUIRE_NVRTC").is_none() => {
                eprintln!("skipped (set COSMICAI_REQUIRE_NVRTC to require it): {e}");
                return;
            }
            Err(e) => panic!("NVRTC: {e}"),
        };
        for name in super::KERNELS {
            assert!(
                ptx.contains(&format!(".entry {name}(")),
                "no kernel {name} in the PTX:\n{ptx}"
            );
        }
        // What each launch passes must be what each kernel takes: the PTX
        // lists every kernel's parameters, and a count that differs from the
        // arguments `CudaKernels` pushes would be read as garbage.
        for (name, params) in [
            ("copy6", 3),
            ("bias_act", 8),
            ("layer_norm", 7),
            ("softmax_rows", 3),
            ("windows", 7),
            ("max_pool3", 4),
            ("avg_pool2", 4),
            ("round_bf16", 3),
        ] {
            let start = ptx.find(&format!(".entry {name}(")).unwrap();
            let list = &ptx[start..start + ptx[start..].find(')').unwrap()];
            assert_eq!(list.matches(".param").count(), params, "{name}: {list}");
        }
    }

    #[test]
    fn each_operation_matches_the_host() {
        let Some(gpu) = gpu() else { return };
        let host = HostKernels;
        let x = noise(4 * 9 * 64, 1);
        let (hx, gx) = (host.upload(&x).unwrap(), gpu.upload(&x).unwrap());
        let check = |what: &str, h: &Vec<f32>, g: &cudarc::driver::CudaSlice<f32>, tol: f32| {
            let got = gpu.download(g, h.len()).unwrap();
            let off = worst(&got, h);
            assert!(off <= tol, "{what}: off by {off}");
        };
        // A batched product with a transposed, offset operand and accumulation.
        let p = Product {
            m: 5,
            n: 7,
            k: 6,
            batch: 3,
            alpha: 0.5,
            beta: 1.0,
            a: Operand::rows(3, 8, 60),
            b: Operand::rows(200, 6, 50).transposed(),
            c: Operand::rows(1, 9, 50),
        };
        let c0 = noise(200, 2);
        let (mut hc, mut gc) = (c0.clone(), gpu.upload(&c0).unwrap());
        host.gemm(&p, &hx, &hx, &mut hc).unwrap();
        gpu.gemm(&p, &gx, &gx, &mut gc).unwrap();
        check("gemm", &hc, &gc, 1e-5);
        // A transposed and B shared by the batch (stride 0), C overwritten.
        let p = Product {
            a: Operand::rows(0, 5, 40).transposed(),
            b: Operand::rows(300, 7, 0),
            beta: 0.0,
            ..p
        };
        let (mut hc, mut gc) = (c0.clone(), gpu.upload(&c0).unwrap());
        host.gemm(&p, &hx, &hx, &mut hc).unwrap();
        gpu.gemm(&p, &gx, &gx, &mut gc).unwrap();
        check("gemm, A transposed", &hc, &gc, 1e-5);
        // bf16 operands: rounded alike on both sides, so only the order of
        // the f32 sums differs.
        let (mut hh, mut gh) = (
            host.alloc_bf16(x.len()).unwrap(),
            gpu.alloc_bf16(x.len()).unwrap(),
        );
        host.round_bf16(&hx, &mut hh, x.len()).unwrap();
        gpu.round_bf16(&gx, &mut gh, x.len()).unwrap();
        let (hw, gw) = (host.upload_bf16(&x).unwrap(), gpu.upload_bf16(&x).unwrap());
        let (mut hc, mut gc) = (c0.clone(), gpu.upload(&c0).unwrap());
        host.gemm_bf16(&p, &hh, &hw, &mut hc).unwrap();
        gpu.gemm_bf16(&p, &gh, &gw, &mut gc).unwrap();
        check("bf16 gemm", &hc, &gc, 1e-5);
        // Rounding, bit for bit, where it is easiest to get wrong.
        let edges = [
            f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            f32::from_bits(0x7f7f_8000),
            f32::from_bits(0x3f80_8000),
            f32::from_bits(0x3f81_8000),
            -0.0,
            f32::from_bits(1),
        ];
        let mut bits = gpu.alloc_bf16(edges.len()).unwrap();
        gpu.round_bf16(&gpu.upload(&edges).unwrap(), &mut bits, edges.len())
            .unwrap();
        let got = gpu.stream.clone_dtoh(&bits.slice(..edges.len())).unwrap();
        let want: Vec<u16> = edges
            .iter()
            .map(|&v| crate::astromae::fused::bf16::round(v))
            .collect();
        assert_eq!(got, want, "round_bf16 on {edges:?}");
        let copy = Copy6::new(&[2, 3, 4, 5], &[1, 40, 10, 2], &[60, 20, 5, 1]).at(7, 0);
        let (mut hy, mut gy) = (host.alloc(120).unwrap(), gpu.alloc(120).unwrap());
        host.copy(&copy, &hx, &mut hy).unwrap();
        gpu.copy(&copy, &gx, &mut gy).unwrap();
        check("copy", &hy, &gy, 0.0);
        let bias = noise(9, 3);
        let (hb, gb) = (host.upload(&bias).unwrap(), gpu.upload(&bias).unwrap());
        for (per_row, act) in [
            (false, Activation::None),
            (true, Activation::Relu),
            (false, Activation::Gelu),
        ] {
            let at = Region {
                offset: 5,
                rows: 7,
                cols: 9,
                ld: 11,
            };
            let (mut h, mut g) = (x.clone(), gpu.upload(&x).unwrap());
            host.bias_act(&mut h, at, &hb, per_row, act).unwrap();
            gpu.bias_act(&mut g, at, &gb, per_row, act).unwrap();
            // erff against the host's polynomial erf: each within about 5e-7.
            check("bias", &h, &g, 4e-6);
        }
        let (rows, dim) = (6, 96);
        let (gamma, beta) = (noise(dim, 4), noise(dim, 5));
        let (hg, hbeta) = (host.upload(&gamma).unwrap(), host.upload(&beta).unwrap());
        let (gg, gbeta) = (gpu.upload(&gamma).unwrap(), gpu.upload(&beta).unwrap());
        let (mut h, mut g) = (
            host.alloc(rows * dim).unwrap(),
            gpu.alloc(rows * dim).unwrap(),
        );
        host.layer_norm(&hx, &mut h, &hg, &hbeta, rows, dim, 1e-6)
            .unwrap();
        gpu.layer_norm(&gx, &mut g, &gg, &gbeta, rows, dim, 1e-6)
            .unwrap();
        check("LayerNorm", &h, &g, 1e-5);
        let (mut h, mut g) = (x.clone(), gpu.upload(&x).unwrap());
        host.softmax_rows(&mut h, 17, 65).unwrap();
        gpu.softmax_rows(&mut g, 17, 65).unwrap();
        check("softmax", &h, &g, 1e-6);
        for k in [1, 3, 5] {
            let len = 2 * k * k * 3 * 16;
            let (mut h, mut g) = (host.alloc(len).unwrap(), gpu.alloc(len).unwrap());
            host.windows(&hx, 10, &mut h, 2, 3, 4, k).unwrap();
            gpu.windows(&gx, 10, &mut g, 2, 3, 4, k).unwrap();
            check("windows", &h, &g, 0.0);
        }
        for pool in [Pool::Max3, Pool::Avg2] {
            let len = 6 * pool.out_side(8).pow(2);
            let (mut h, mut g) = (host.alloc(len).unwrap(), gpu.alloc(len).unwrap());
            host.pool(pool, &hx, &mut h, 6, 8).unwrap();
            gpu.pool(pool, &gx, &mut g, 6, 8).unwrap();
            check("pool", &h, &g, 0.0);
        }
        // Out of bounds is an error, not a launch.
        let past = Copy6::new(&[x.len() + 1], &[1], &[1]);
        let mut big = gpu.alloc(x.len() + 1).unwrap();
        assert!(gpu.copy(&past, &gx, &mut big).is_err());
    }

    #[test]
    fn the_gpu_schedule_computes_what_the_fused_path_computes() {
        let Some(gpu) = gpu() else { return };
        let n = 6;
        let (model, images, mags) = random_objects(2, n, [48, 48], 3);
        let (images, mags) = (values(images), values(mags));
        let fused = FusedAstroMae::new(&model).unwrap();
        let want = fused.forward(&images, &mags, n, [48, 48], 4).unwrap();
        let on = OnDevice::new(&fused, gpu).unwrap();
        let got = on.forward(&images, &mags, n, [48, 48]).unwrap();
        assert!(worst(&got, &want) < 1e-4, "GPU {got:?} vs fused {want:?}");
        // bf16: against the CPU path's bf16 on its fp32 kernels (the same products).
        let half = OnDevice::with_bf16_products(&fused, CudaKernels::new(0).unwrap()).unwrap();
        let got = half.forward(&images, &mags, n, [48, 48]).unwrap();
        let want_half = fused
            .clone()
            .with_bf16(false)
            .forward(&images, &mags, n, [48, 48], 4)
            .unwrap();
        // Nearer the CPU's bf16 than bf16 is to fp32: the products did round.
        let (apart, gap) = (worst(&got, &want_half), worst(&want_half, &want));
        eprintln!("GPU bf16 vs CPU bf16: {apart:e}; CPU bf16 vs CPU fp32: {gap:e}");
        assert!(
            apart < 1e-4 && apart < 0.25 * gap,
            "GPU bf16 {got:?} vs fused bf16 {want_half:?}"
        );
    }
}
