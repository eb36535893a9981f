// Key-switch inner product, one digit per launch: acc0 (+)= d * b, acc1 (+)= d * a over the
// extended basis; limb k reads key limb key_limbs[k] (keys hold only the limbs of their level).
// Params: 3 first digit (1: overwrite), 8.. primes of the limbs, 8 + limbs.. key limb of each limb.

@group(0) @binding(1) var<storage, read_write> acc0: array<u32>;
@group(0) @binding(2) var<storage, read_write> acc1: array<u32>;
@group(0) @binding(3) var<storage, read> digit: array<u32>;
@group(0) @binding(4) var<storage, read> key_b: array<u32>;
@group(0) @binding(5) var<storage, read> key_a: array<u32>;
@group(0) @binding(6) var<storage, read> consts: array<u32>;

@compute @workgroup_size(256)
fn keyswitch_accumulate(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = prm(0u);
    let limbs = prm(2u);
    let idx = gid.x;
    if (idx >= n) { return; }
    let k = gid.y;
    let c = prm(8u + k) * CONST_STRIDE;
    let q = consts[c];
    let o = k * n + idx;
    let kl = prm(8u + limbs + k) * n + idx;
    let d = digit[o];
    let pb = mul_mod(d, key_b[kl], c);
    let pa = mul_mod(d, key_a[kl], c);
    if (prm(3u) == 1u) {
        acc0[o] = pb;
        acc1[o] = pa;
    } else {
        acc0[o] = add_mod(acc0[o], pb, q);
        acc1[o] = add_mod(acc1[o], pa, q);
    }
}
