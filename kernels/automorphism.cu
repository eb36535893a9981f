// X -> X^g in the NTT domain, permutation computed on the fly: the twin of
// shaders/automorphism.wgsl. Params: 3 g mod 2n.

extern "C" __global__ void automorphism(u32* __restrict__ dst, const u32* __restrict__ src, Params P) {
    u32 n = prm(0), log_n = prm(1), i = blockIdx.x * GROUP + threadIdx.x;
    if (i >= n) return;
    u32 e = 2u * (__brev(i) >> (32u - log_n)) + 1u;
    u32 f = (e * prm(3)) & (2u * n - 1u);
    u32 from = __brev((f - 1u) / 2u) >> (32u - log_n);
    u64 row = (u64)blockIdx.y * n;
    dst[row + i] = src[row + from];
}
