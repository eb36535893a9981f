// X -> X^g in the NTT domain: a permutation of the bit-reversed evaluation order, computed on the
// fly (no table). Params: 3 g mod 2n.

@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<u32>;
// Not bound by this module's entry point; declared for the shared prelude.
@group(0) @binding(3) var<storage, read> consts: array<u32>;

fn bitrev(i: u32, bits: u32) -> u32 {
    return reverseBits(i) >> (32u - bits);
}

@compute @workgroup_size(256)
fn automorphism(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = prm(0u);
    let log_n = prm(1u);
    let i = gid.x;
    if (i >= n) { return; }
    let e = 2u * bitrev(i, log_n) + 1u;
    let f = (e * prm(3u)) & (2u * n - 1u);
    let k = bitrev((f - 1u) / 2u, log_n);
    dst[gid.y * n + i] = src[gid.y * n + k];
}
