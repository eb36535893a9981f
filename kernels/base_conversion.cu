// Fast base conversion with an exact fixed-point overflow count v: the twin of
// shaders/base_conversion.wgsl (see there for the table layout and params).

extern "C" __global__ void convert_basis(u32* __restrict__ dst, const u32* __restrict__ src,
                                         const u32* __restrict__ table,
                                         const u32* __restrict__ consts, Params P) {
    u32 n = prm(0), t = prm(2), m = prm(3), first = prm(4);
    u32 idx = blockIdx.x * GROUP + threadIdx.x;
    if (idx >= n) return;
    u32 i = blockIdx.y, c = prm(8 + i) * CONST_STRIDE, q = consts[c];
    u32 acc = 0u;
    // 96-bit sum of y_j * frac_j: low 64 bits in s, high word in w2.
    u64 s = 0;
    u32 w2 = 0;
    for (u32 j = 0; j < m; j++) {
        u32 qj = consts[prm(8 + t + j) * CONST_STRIDE];
        u32 y = mul_shoup(src[(u64)(first + j) * n + idx], table[4 * j], table[4 * j + 1], qj);
        u64 frac = ((u64)table[4 * j + 3] << 32) | table[4 * j + 2];
        u64 lo = (u64)y * (u32)frac;
        u64 hi = (u64)y * (u32)(frac >> 32);
        u64 s1 = s + lo;
        w2 += s1 < s ? 1u : 0u;
        u64 s2 = s1 + (hi << 32);
        w2 += s2 < s1 ? 1u : 0u;
        w2 += (u32)(hi >> 32);
        s = s2;
        acc = add_mod(acc, reduce_wide((u64)y * table[4 * m + i * m + j], consts, c), q);
    }
    u32 negb = table[4 * m + t * m + i];
    acc = add_mod(acc, reduce_wide((u64)w2 * negb, consts, c), q);
    dst[(u64)i * n + idx] = acc;
}
