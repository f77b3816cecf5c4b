// The elementwise steps of astromae::fused::device on an NVIDIA GPU, compiled
// at run time by NVRTC (no headers). Each follows the host reference in
// host.rs; products go to cuBLAS. Loops are grid-strided: any grid covers
// any size.

typedef unsigned long long u64;

#define FOR_EACH(i, total) \
    for (u64 i = blockIdx.x * (u64)blockDim.x + threadIdx.x; i < (total); \
         i += (u64)gridDim.x * blockDim.x)

// Laid out as the Rust side's `CopyArgs` (#[repr(C)]).
struct Copy6 {
    u64 shape[6];
    u64 src[6];
    u64 dst[6];
    u64 src_offset;
    u64 dst_offset;
    u64 total;
};

extern "C" __global__ void copy6(const float *__restrict__ src, float *__restrict__ dst, Copy6 c) {
    FOR_EACH(i, c.total) {
        u64 rest = i, from = c.src_offset, to = c.dst_offset;
        for (int d = 5; d >= 0; --d) {
            u64 at = rest % c.shape[d];
            rest /= c.shape[d];
            from += at * c.src[d];
            to += at * c.dst[d];
        }
        dst[to] = src[from];
    }
}

// bf16 by rounding to nearest, ties to even, as bf16.rs's `round`; a NaN stays one.
extern "C" __global__ void round_bf16(const float *__restrict__ x, unsigned short *__restrict__ y,
                                      u64 len) {
    FOR_EACH(i, len) {
        unsigned bits = __float_as_uint(x[i]);
        if ((bits & 0x7fffffffu) > 0x7f800000u) {
            y[i] = (unsigned short)((bits >> 16) | 0x0040u);
        } else {
            y[i] = (unsigned short)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
        }
    }
}

extern "C" __global__ void bias_act(float *y, const float *__restrict__ bias, u64 offset, u64 rows,
                                    u64 cols, u64 ld, int per_row, int act) {
    FOR_EACH(i, rows * cols) {
        u64 r = i / cols, c = i % cols;
        float *p = y + offset + r * ld + c;
        float v = *p + bias[per_row ? r : c];
        if (act == 1) {
            v = fmaxf(v, 0.0f);
        } else if (act == 2) {
            v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        }
        *p = v;
    }
}

// The sum of `v` over the block (blockDim.x a multiple of 32, at most 1024).
__device__ float block_sum(float v, float *part) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? part[lane] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
        if (lane == 0) part[0] = v;
    }
    __syncthreads();
    float total = part[0];
    __syncthreads();  // `part` is reused by the next call
    return total;
}

// One block per row.
extern "C" __global__ void layer_norm(const float *__restrict__ x, float *__restrict__ y,
                                      const float *__restrict__ gamma,
                                      const float *__restrict__ beta, u64 rows, u64 dim,
                                      float eps) {
    __shared__ float part[32];
    for (u64 row = blockIdx.x; row < rows; row += gridDim.x) {
        const float *xr = x + row * dim;
        float *yr = y + row * dim;
        float s = 0.0f;
        for (u64 j = threadIdx.x; j < dim; j += blockDim.x) s += xr[j];
        float mean = block_sum(s, part) / (float)dim;
        float q = 0.0f;
        for (u64 j = threadIdx.x; j < dim; j += blockDim.x) {
            float d = xr[j] - mean;
            q += d * d;
        }
        float inv = 1.0f / sqrtf(block_sum(q, part) / (float)dim + eps);
        for (u64 j = threadIdx.x; j < dim; j += blockDim.x)
            yr[j] = (xr[j] - mean) * inv * gamma[j] + beta[j];
    }
}

// One warp per row (blockDim.x a multiple of 32).
extern "C" __global__ void softmax_rows(float *x, u64 rows, u64 cols) {
    u64 warps = (u64)gridDim.x * (blockDim.x >> 5);
    int lane = threadIdx.x & 31;
    for (u64 row = (blockIdx.x * (u64)blockDim.x + threadIdx.x) >> 5; row < rows; row += warps) {
        float *r = x + row * cols;
        float m = -__int_as_float(0x7f800000);  // -inf
        for (u64 j = lane; j < cols; j += 32) m = fmaxf(m, r[j]);
        for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
        float s = 0.0f;
        for (u64 j = lane; j < cols; j += 32) {
            float e = expf(r[j] - m);
            r[j] = e;
            s += e;
        }
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        float inv = 1.0f / s;
        for (u64 j = lane; j < cols; j += 32) r[j] *= inv;
    }
}

// y [channels * k * k, planes * side²]: each pixel's zero-padded k x k window.
extern "C" __global__ void windows(const float *__restrict__ x, u64 x_offset, float *__restrict__ y,
                                   u64 channels, u64 planes, u64 side, u64 k) {
    u64 area = side * side, plane = planes * area;
    long long pad = (long long)(k / 2), s = (long long)side;
    FOR_EACH(i, channels * k * k * plane) {
        u64 col = i % plane, row = i / plane;
        u64 kx = row % k, ky = (row / k) % k, ch = row / (k * k);
        u64 obj = col / area, pix = col % area;
        long long sy = (long long)(pix / side) + (long long)ky - pad;
        long long sx = (long long)(pix % side) + (long long)kx - pad;
        float v = 0.0f;
        if (sy >= 0 && sy < s && sx >= 0 && sx < s)
            v = x[x_offset + ch * plane + obj * area + (u64)sy * side + (u64)sx];
        y[i] = v;
    }
}

extern "C" __global__ void max_pool3(const float *__restrict__ x, float *__restrict__ y,
                                     u64 planes, u64 side) {
    u64 area = side * side;
    FOR_EACH(i, planes * area) {
        u64 p = i / area, pix = i % area;
        long long py = (long long)(pix / side), px = (long long)(pix % side), s = (long long)side;
        const float *plane = x + p * area;
        float m = plane[pix];
        for (long long dy = -1; dy <= 1; ++dy)
            for (long long dx = -1; dx <= 1; ++dx) {
                long long yy = py + dy, xx = px + dx;
                if (yy >= 0 && yy < s && xx >= 0 && xx < s) m = fmaxf(m, plane[yy * s + xx]);
            }
        y[i] = m;
    }
}

extern "C" __global__ void avg_pool2(const float *__restrict__ x, float *__restrict__ y,
                                     u64 planes, u64 side) {
    u64 half = side / 2, out_area = half * half;
    FOR_EACH(i, planes * out_area) {
        u64 p = i / out_area, pix = i % out_area;
        u64 oy = pix / half, ox = pix % half;
        const float *a = x + p * side * side + 2 * oy * side + 2 * ox;
        y[i] = (a[0] + a[1] + a[side] + a[side + 1]) * 0.25f;
    }
}
