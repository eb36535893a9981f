// Key-switch inner product, one digit per launch: the twin of shaders/keyswitch.wgsl.
// Params: 3 first digit (1: overwrite), 8.. primes of the limbs, 8 + limbs.. key limb of each limb.

extern "C" __global__ void keyswitch_accumulate(u32* __restrict__ acc0, u32* __restrict__ acc1,
                                                const u32* __restrict__ digit,
                                                const u32* __restrict__ key_b,
                                                const u32* __restrict__ key_a,
                                                const u32* __restrict__ consts, Params P) {
    u32 n = prm(0), limbs = prm(2), idx = blockIdx.x * GROUP + threadIdx.x;
    if (idx >= n) return;
    u32 k = blockIdx.y, c = prm(8 + k) * CONST_STRIDE, q = consts[c];
    u64 o = (u64)k * n + idx;
    u64 kl = (u64)prm(8 + limbs + k) * n + idx;
    u32 d = digit[o];
    u32 pb = mul_mod(d, key_b[kl], consts, c);
    u32 pa = mul_mod(d, key_a[kl], consts, c);
    if (prm(3) == 1u) {
        acc0[o] = pb;
        acc1[o] = pa;
    } else {
        acc0[o] = add_mod(acc0[o], pb, q);
        acc1[o] = add_mod(acc1[o], pa, q);
    }
}
