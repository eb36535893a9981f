// Shared prelude of every Umbra kernel module (prepended at load time, so that NVRTC needs no
// include path). The twin of shaders/common.wgsl: same constants, same arithmetic, native 64-bit
// products instead of the emulated ones.

typedef unsigned int u32;
typedef unsigned long long u64;

// Launch parameters (256 words), passed by value: 0 n, 1 log_n, 2 limbs, 3..8 kernel-specific,
// 8.. per-limb arrays.
struct Params {
    u32 v[256];
};
#define prm(i) (P.v[(i)])

// Per-prime constants, 8 words: q, mu (Barrett), bits, n^-1, Shoup(n^-1), 2^32 mod q, its Shoup
// companion, Shoup(1).
#define CONST_STRIDE 8u
#define GROUP 256u

__device__ __forceinline__ u32 add_mod(u32 a, u32 b, u32 q) {
    u32 s = a + b;
    return s >= q ? s - q : s;
}

__device__ __forceinline__ u32 sub_mod(u32 a, u32 b, u32 q) {
    u32 s = a + q - b;
    return s >= q ? s - q : s;
}

__device__ __forceinline__ u32 mul_shoup_lazy(u32 a, u32 w, u32 ws, u32 q) {
    return a * w - __umulhi(a, ws) * q;
}

__device__ __forceinline__ u32 mul_shoup(u32 a, u32 w, u32 ws, u32 q) {
    u32 r = mul_shoup_lazy(a, w, ws, q);
    return r >= q ? r - q : r;
}

// a * b mod q for a, b < q (Barrett, as Modulus::reduce_product).
__device__ __forceinline__ u32 mul_mod(u32 a, u32 b, const u32* __restrict__ consts, u32 c) {
    u32 q = consts[c], mu = consts[c + 1], bits = consts[c + 2];
    u64 x = (u64)a * b;
    u32 xs = (u32)(x >> (bits - 1));
    u32 t = (u32)(((u64)xs * mu) >> (bits + 1));
    u32 r = (u32)x - t * q;
    r = r >= q ? r - q : r;
    r = r >= q ? r - q : r;
    return r;
}

// x mod q for any 64-bit x (as ShoupReducer::reduce).
__device__ __forceinline__ u32 reduce_wide(u64 x, const u32* __restrict__ consts, u32 c) {
    u32 q = consts[c];
    u32 a = mul_shoup((u32)(x >> 32), consts[c + 5], consts[c + 6], q);
    u32 b = mul_shoup((u32)x, 1u, consts[c + 7], q);
    return add_mod(a, b, q);
}
