// Pointwise ring operations over a batch of limbs: the twin of shaders/pointwise.wgsl.
// Params: 8.. the prime of each limb; scalar kernels read c_i at 8 + limbs, Shoup(c_i) at
// 8 + 2 limbs.

#define LANE                                                        \
    u32 n = prm(0), x_ = blockIdx.x * GROUP + threadIdx.x;          \
    if (x_ >= n) return;                                            \
    u32 limb = blockIdx.y, c = prm(8 + limb) * CONST_STRIDE;        \
    u32 q = consts[c];                                              \
    u64 idx = (u64)limb * n + x_;                                   \
    (void)q;

extern "C" __global__ void add(u32* __restrict__ dst, const u32* __restrict__ src_a,
                               const u32* __restrict__ consts, Params P) {
    LANE
    dst[idx] = add_mod(dst[idx], src_a[idx], q);
}

extern "C" __global__ void sub(u32* __restrict__ dst, const u32* __restrict__ src_a,
                               const u32* __restrict__ consts, Params P) {
    LANE
    dst[idx] = sub_mod(dst[idx], src_a[idx], q);
}

extern "C" __global__ void neg(u32* __restrict__ dst, const u32* __restrict__ consts, Params P) {
    LANE
    u32 x = dst[idx];
    dst[idx] = x == 0u ? 0u : q - x;
}

extern "C" __global__ void mul(u32* __restrict__ dst, const u32* src_a, const u32* src_b,
                               const u32* __restrict__ consts, Params P) {
    LANE
    dst[idx] = mul_mod(src_a[idx], src_b[idx], consts, c);
}

extern "C" __global__ void mul_assign(u32* __restrict__ dst, const u32* __restrict__ src_a,
                                      const u32* __restrict__ consts, Params P) {
    LANE
    dst[idx] = mul_mod(dst[idx], src_a[idx], consts, c);
}

extern "C" __global__ void mul_add(u32* __restrict__ dst, const u32* src_a, const u32* src_b,
                                   const u32* __restrict__ consts, Params P) {
    LANE
    dst[idx] = add_mod(dst[idx], mul_mod(src_a[idx], src_b[idx], consts, c), q);
}

extern "C" __global__ void mul_scalar(u32* __restrict__ dst, const u32* __restrict__ consts, Params P) {
    LANE
    u32 limbs = prm(2);
    dst[idx] = mul_shoup(dst[idx], prm(8 + limbs + limb), prm(8 + 2 * limbs + limb), q);
}

extern "C" __global__ void add_scalar(u32* __restrict__ dst, const u32* __restrict__ consts, Params P) {
    LANE
    dst[idx] = add_mod(dst[idx], prm(8 + prm(2) + limb), q);
}

// dst = (a - b) * c_limb: the last step of an exact division (rescale, ModDown).
extern "C" __global__ void sub_mul_scalar(u32* __restrict__ dst, const u32* src_a, const u32* src_b,
                                          const u32* __restrict__ consts, Params P) {
    LANE
    u32 limbs = prm(2);
    u32 d = src_a[idx] + q - src_b[idx];
    dst[idx] = mul_shoup(d, prm(8 + limbs + limb), prm(8 + 2 * limbs + limb), q);
}
