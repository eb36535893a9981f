// Negacyclic NTT over a batch of limbs: the twin of shaders/ntt.wgsl (and of math::ntt).
// Stages whose butterflies span more than NTT_BLOCK elements run one launch each (`*_stage`); the
// rest run in shared memory, one block of up to NTT_BLOCK elements per thread block (`*_block`).
// Twiddles of prime p sit at p * 4n: forward, forward Shoup, inverse, inverse Shoup.
// Params: 3 t, 4 log2 t, 5 scale by n^-1 (inverse), 8.. the prime of each limb.

#define NTT_BLOCK 2048u

__device__ __forceinline__ void fwd_bfly(u32& x, u32& y, u32 w, u32 ws, u32 q) {
    u32 two_q = 2u * q;
    u32 u = x >= two_q ? x - two_q : x;
    u32 v = mul_shoup_lazy(y, w, ws, q);
    x = u + v;
    y = u + two_q - v;
}

__device__ __forceinline__ void inv_bfly(u32& x, u32& y, u32 w, u32 ws, u32 q) {
    u32 two_q = 2u * q;
    u32 u = x, v = y;
    u32 s = u + v;
    x = s >= two_q ? s - two_q : s;
    y = mul_shoup_lazy(u + two_q - v, w, ws, q);
}

__device__ __forceinline__ u32 fwd_final(u32 x, u32 q) {
    u32 two_q = 2u * q;
    u32 u = x >= two_q ? x - two_q : x;
    return u >= q ? u - q : u;
}

__device__ __forceinline__ u32 inv_final(u32 x, const u32* consts, u32 c) {
    return mul_shoup(x, consts[c + 3], consts[c + 4], consts[c]);
}

extern "C" __global__ void ntt_fwd_stage(u32* __restrict__ data, const u32* __restrict__ tw,
                                         const u32* __restrict__ consts, Params P) {
    u32 n = prm(0), k = blockIdx.x * GROUP + threadIdx.x, limb = blockIdx.y;
    if (k >= n / 2u) return;
    u32 t = prm(3), log_t = prm(4), p = prm(8 + limb), c = p * CONST_STRIDE, q = consts[c];
    u32 i = k >> log_t, j = k & (t - 1u), m = n / (2u * t);
    u64 xi = (u64)limb * n + 2u * i * t + j;
    u64 base = (u64)p * 4u * n;
    u32 x = data[xi], y = data[xi + t];
    fwd_bfly(x, y, tw[base + m + i], tw[base + n + m + i], q);
    data[xi] = x;
    data[xi + t] = y;
}

extern "C" __global__ void ntt_fwd_block(u32* __restrict__ data, const u32* __restrict__ tw,
                                         const u32* __restrict__ consts, Params P) {
    __shared__ u32 sh[NTT_BLOCK];
    u32 n = prm(0), t0 = prm(3), log_t0 = prm(4), bs = 2u * t0, limb = blockIdx.y;
    u32 p = prm(8 + limb), c = p * CONST_STRIDE, q = consts[c];
    u64 off = (u64)limb * n + (u64)blockIdx.x * bs;
    u64 base = (u64)p * 4u * n;
    for (u32 i = threadIdx.x; i < bs; i += GROUP) sh[i] = data[off + i];
    __syncthreads();
    u32 t = t0, log_t = log_t0;
    while (true) {
        u32 m = n / (2u * t), before = blockIdx.x * (bs / (2u * t));
        for (u32 k = threadIdx.x; k < t0; k += GROUP) {
            u32 i = k >> log_t, j = k & (t - 1u), xi = 2u * i * t + j, g = m + before + i;
            fwd_bfly(sh[xi], sh[xi + t], tw[base + g], tw[base + n + g], q);
        }
        __syncthreads();
        if (t == 1u) break;
        t >>= 1;
        log_t -= 1;
    }
    for (u32 i = threadIdx.x; i < bs; i += GROUP) data[off + i] = fwd_final(sh[i], q);
}

extern "C" __global__ void ntt_inv_stage(u32* __restrict__ data, const u32* __restrict__ tw,
                                         const u32* __restrict__ consts, Params P) {
    u32 n = prm(0), k = blockIdx.x * GROUP + threadIdx.x, limb = blockIdx.y;
    if (k >= n / 2u) return;
    u32 t = prm(3), log_t = prm(4), p = prm(8 + limb), c = p * CONST_STRIDE, q = consts[c];
    u32 i = k >> log_t, j = k & (t - 1u), m = n / (2u * t);
    u64 xi = (u64)limb * n + 2u * i * t + j;
    u64 base = (u64)p * 4u * n;
    u32 x = data[xi], y = data[xi + t];
    inv_bfly(x, y, tw[base + 2u * n + m + i], tw[base + 3u * n + m + i], q);
    if (prm(5) == 1u) {
        x = inv_final(x, consts, c);
        y = inv_final(y, consts, c);
    }
    data[xi] = x;
    data[xi + t] = y;
}

extern "C" __global__ void ntt_inv_block(u32* __restrict__ data, const u32* __restrict__ tw,
                                         const u32* __restrict__ consts, Params P) {
    __shared__ u32 sh[NTT_BLOCK];
    u32 n = prm(0), t0 = prm(3), bs = 2u * t0, limb = blockIdx.y;
    u32 p = prm(8 + limb), c = p * CONST_STRIDE, q = consts[c];
    u64 off = (u64)limb * n + (u64)blockIdx.x * bs;
    u64 base = (u64)p * 4u * n;
    for (u32 i = threadIdx.x; i < bs; i += GROUP) sh[i] = data[off + i];
    __syncthreads();
    u32 t = 1u, log_t = 0u;
    while (true) {
        u32 m = n / (2u * t), before = blockIdx.x * (bs / (2u * t));
        for (u32 k = threadIdx.x; k < t0; k += GROUP) {
            u32 i = k >> log_t, j = k & (t - 1u), xi = 2u * i * t + j, g = m + before + i;
            inv_bfly(sh[xi], sh[xi + t], tw[base + 2u * n + g], tw[base + 3u * n + g], q);
        }
        __syncthreads();
        if (t == t0) break;
        t <<= 1;
        log_t += 1;
    }
    bool scale = prm(5) == 1u;
    for (u32 i = threadIdx.x; i < bs; i += GROUP) {
        u32 v = sh[i];
        data[off + i] = scale ? inv_final(v, consts, c) : v;
    }
}
