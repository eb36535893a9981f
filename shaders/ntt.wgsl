// Negacyclic NTT over a batch of limbs, the twin of math::ntt (Harvey butterflies, Shoup twiddles,
// values lazily in [0, 4q) forward and [0, 2q) inverse, fully reduced at the end).
// Stages whose butterflies span more than NTT_BLOCK elements run one launch each (`*_stage`); the
// rest run in workgroup memory, one block of up to NTT_BLOCK elements per workgroup (`*_block`).
// Twiddles of prime p sit at p * 4n: forward, forward Shoup, inverse, inverse Shoup (n words each).
// Params: 3 t (stage half-width, or the block's largest), 4 log2 t, 5 scale by n^-1 (inverse),
// 8.. the prime of each limb.

@group(0) @binding(1) var<storage, read_write> data: array<u32>;
@group(0) @binding(2) var<storage, read> tw: array<u32>;
@group(0) @binding(3) var<storage, read> consts: array<u32>;

const NTT_BLOCK: u32 = 2048u;
var<workgroup> sh: array<u32, 2048>;

fn fwd_bfly(x: u32, y: u32, w: u32, ws: u32, q: u32) -> vec2<u32> {
    let two_q = 2u * q;
    let u = select(x, x - two_q, x >= two_q);
    let v = mul_shoup_lazy(y, w, ws, q);
    return vec2<u32>(u + v, u + two_q - v);
}

fn inv_bfly(x: u32, y: u32, w: u32, ws: u32, q: u32) -> vec2<u32> {
    let two_q = 2u * q;
    let s = x + y;
    return vec2<u32>(select(s, s - two_q, s >= two_q), mul_shoup_lazy(x + two_q - y, w, ws, q));
}

fn fwd_final(x: u32, q: u32) -> u32 {
    let two_q = 2u * q;
    let u = select(x, x - two_q, x >= two_q);
    return select(u, u - q, u >= q);
}

fn inv_final(x: u32, c: u32) -> u32 {
    return mul_shoup(x, consts[c + 3u], consts[c + 4u], consts[c]);
}

@compute @workgroup_size(256)
fn ntt_fwd_stage(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = prm(0u);
    let k = gid.x;
    if (k >= n / 2u) {
        return;
    }
    let t = prm(3u);
    let log_t = prm(4u);
    let p = prm(8u + gid.y);
    let c = p * CONST_STRIDE;
    let q = consts[c];
    let i = k >> log_t;
    let j = k & (t - 1u);
    let m = n / (2u * t);
    let xi = gid.y * n + 2u * i * t + j;
    let base = p * 4u * n;
    let r = fwd_bfly(data[xi], data[xi + t], tw[base + m + i], tw[base + n + m + i], q);
    data[xi] = r.x;
    data[xi + t] = r.y;
}

@compute @workgroup_size(256)
fn ntt_fwd_block(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n = prm(0u);
    let t0 = prm(3u);
    let log_t0 = prm(4u);
    let bs = 2u * t0;
    let p = prm(8u + wid.y);
    let c = p * CONST_STRIDE;
    let q = consts[c];
    let off = wid.y * n + wid.x * bs;
    let base = p * 4u * n;
    for (var i = lid.x; i < bs; i += 256u) {
        sh[i] = data[off + i];
    }
    workgroupBarrier();
    var t = t0;
    var log_t = log_t0;
    loop {
        let m = n / (2u * t);
        let groups_before = wid.x * (bs / (2u * t));
        for (var k = lid.x; k < t0; k += 256u) {
            let i = k >> log_t;
            let j = k & (t - 1u);
            let xi = 2u * i * t + j;
            let g = m + groups_before + i;
            let r = fwd_bfly(sh[xi], sh[xi + t], tw[base + g], tw[base + n + g], q);
            sh[xi] = r.x;
            sh[xi + t] = r.y;
        }
        workgroupBarrier();
        if (t == 1u) {
            break;
        }
        t = t >> 1u;
        log_t = log_t - 1u;
    }
    for (var i = lid.x; i < bs; i += 256u) {
        data[off + i] = fwd_final(sh[i], q);
    }
}

@compute @workgroup_size(256)
fn ntt_inv_stage(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = prm(0u);
    let k = gid.x;
    if (k >= n / 2u) {
        return;
    }
    let t = prm(3u);
    let log_t = prm(4u);
    let p = prm(8u + gid.y);
    let c = p * CONST_STRIDE;
    let q = consts[c];
    let i = k >> log_t;
    let j = k & (t - 1u);
    let m = n / (2u * t);
    let xi = gid.y * n + 2u * i * t + j;
    let base = p * 4u * n;
    var r = inv_bfly(data[xi], data[xi + t], tw[base + 2u * n + m + i], tw[base + 3u * n + m + i], q);
    if (prm(5u) == 1u) {
        r = vec2<u32>(inv_final(r.x, c), inv_final(r.y, c));
    }
    data[xi] = r.x;
    data[xi + t] = r.y;
}

@compute @workgroup_size(256)
fn ntt_inv_block(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n = prm(0u);
    let t0 = prm(3u);
    let bs = 2u * t0;
    let p = prm(8u + wid.y);
    let c = p * CONST_STRIDE;
    let q = consts[c];
    let off = wid.y * n + wid.x * bs;
    let base = p * 4u * n;
    for (var i = lid.x; i < bs; i += 256u) {
        sh[i] = data[off + i];
    }
    workgroupBarrier();
    var t = 1u;
    var log_t = 0u;
    loop {
        let m = n / (2u * t);
        let groups_before = wid.x * (bs / (2u * t));
        for (var k = lid.x; k < t0; k += 256u) {
            let i = k >> log_t;
            let j = k & (t - 1u);
            let xi = 2u * i * t + j;
            let g = m + groups_before + i;
            let r = inv_bfly(sh[xi], sh[xi + t], tw[base + 2u * n + g], tw[base + 3u * n + g], q);
            sh[xi] = r.x;
            sh[xi + t] = r.y;
        }
        workgroupBarrier();
        if (t == t0) {
            break;
        }
        t = t << 1u;
        log_t = log_t + 1u;
    }
    let scale = prm(5u) == 1u;
    for (var i = lid.x; i < bs; i += 256u) {
        let v = sh[i];
        data[off + i] = select(v, inv_final(v, c), scale);
    }
}
