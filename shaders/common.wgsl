// Shared prelude of every Umbra shader (prepended to each module at load time; WGSL has no include).
// u32 arithmetic only: the 32x32 -> 64 product is emulated from 16-bit halves, so that no shader
// needs SHADER_INT64 and every module runs on Metal, DX12 and any Vulkan GPU.

// Launch parameters (256 words): 0 n, 1 log_n, 2 limbs, 3..8 kernel-specific, 8.. per-limb arrays.
@group(0) @binding(0) var<uniform> P: array<vec4<u32>, 64>;

fn prm(i: u32) -> u32 {
    return P[i >> 2u][i & 3u];
}

// Per-prime constants, 8 words: q, mu (Barrett), bits, n^-1, Shoup(n^-1), 2^32 mod q, its Shoup
// companion, Shoup(1).
const CONST_STRIDE: u32 = 8u;

// Full 32x32 -> 64 product as (lo, hi).
fn mul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let lo = (p00 & 0xffffu) | (mid << 16u);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(lo, hi);
}

fn mul_hi(a: u32, b: u32) -> u32 {
    return mul_wide(a, b).y;
}

fn add_mod(a: u32, b: u32, q: u32) -> u32 {
    let s = a + b;
    return select(s, s - q, s >= q);
}

fn sub_mod(a: u32, b: u32, q: u32) -> u32 {
    let s = a + q - b;
    return select(s, s - q, s >= q);
}

// a * w mod q in [0, 2q) for any a, with ws = floor(w 2^32 / q) (Shoup).
fn mul_shoup_lazy(a: u32, w: u32, ws: u32, q: u32) -> u32 {
    return a * w - mul_hi(a, ws) * q;
}

fn mul_shoup(a: u32, w: u32, ws: u32, q: u32) -> u32 {
    let r = mul_shoup_lazy(a, w, ws, q);
    return select(r, r - q, r >= q);
}

// a * b mod q for a, b < q (Barrett with mu = floor(2^(2 bits) / q), as Modulus::reduce_product).
fn mul_mod(a: u32, b: u32, c: u32) -> u32 {
    let q = consts[c];
    let mu = consts[c + 1u];
    let bits = consts[c + 2u];
    let x = mul_wide(a, b);
    let s = bits - 1u;
    let xs = (x.x >> s) | (x.y << (32u - s));
    let tw = mul_wide(xs, mu);
    let sh = bits + 1u;
    let t = (tw.x >> sh) | (tw.y << (32u - sh));
    var r = x.x - t * q;
    r = select(r, r - q, r >= q);
    r = select(r, r - q, r >= q);
    return r;
}

// (hi 2^32 + lo) mod q for any 64-bit value (as ShoupReducer::reduce).
fn reduce_wide(x: vec2<u32>, c: u32) -> u32 {
    let q = consts[c];
    let a = mul_shoup(x.y, consts[c + 5u], consts[c + 6u], q);
    let b = mul_shoup(x.x, 1u, consts[c + 7u], q);
    return add_mod(a, b, q);
}
