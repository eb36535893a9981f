// Pointwise ring operations over a batch of limbs: one invocation per (coefficient, limb).
// Params: 8.. the prime of each limb; scalar kernels read their per-limb constants after them
// (8 + limbs: c_i, 8 + 2 limbs: Shoup(c_i)).

@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> src_a: array<u32>;
@group(0) @binding(3) var<storage, read> src_b: array<u32>;
@group(0) @binding(4) var<storage, read> consts: array<u32>;

struct Lane {
    idx: u32,
    c: u32,
    q: u32,
    ok: bool,
}

fn lane(gid: vec3<u32>) -> Lane {
    let n = prm(0u);
    let c = prm(8u + gid.y) * CONST_STRIDE;
    return Lane(gid.y * n + gid.x, c, consts[c], gid.x < n);
}

// dst += a
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = lane(gid);
    if (!l.ok) { return; }
    dst[l.idx] = add_mod(dst[l.idx], src_a[l.idx], l.q);
}

// dst -= a
@compute @workgroup_size(256)
fn sub(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = lane(gid);
    if (!l.ok) { return; }
    dst[l.idx] = sub_mod(dst[l.idx], src_a[l.idx], l.q);
}

// dst = -dst
@compute @workgroup_size(256)
fn neg(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = lane(gid);
    if (!l.ok) { return; }
    let x = dst[l.idx];
    dst[l.idx] = select(l.q - x, 0u, x == 0u);
}

// dst = a * b
@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = lane(gid);
    if (!l.ok) { return; }
    dst[l.idx] = mul_mod(src_a[l.idx], src_b[l.idx], l.c);
}

// dst *= a
@compute @workgroup_size(256)
fn mul_assign(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = lane(gid);
    if (!l.ok) { return; }
    dst[l.idx] = mul_mod(dst[l.idx], src_a[l.idx], l.c);
}

// dst += a * b
@compute @workgroup_size(256)
fn mul_add(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = lane(gid);
    if (!l.ok) { return; }
    dst[l.idx] = add_mod(dst[l.idx], mul_mod(src_a[l.idx], src_b[l.idx], l.c), l.q);
}

// dst *= c_limb
@compute @workgroup_size(256)
fn mul_scalar(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = lane(gid);
    if (!l.ok) { return; }
    let limbs = prm(2u);
    dst[l.idx] = mul_shoup(dst[l.idx], prm(8u + limbs + gid.y), prm(8u + 2u * limbs + gid.y), l.q);
}

// dst += c_limb
@compute @workgroup_size(256)
fn add_scalar(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = lane(gid);
    if (!l.ok) { return; }
    dst[l.idx] = add_mod(dst[l.idx], prm(8u + prm(2u) + gid.y), l.q);
}

// dst = (a - b) * c_limb: the last step of an exact division (rescale, ModDown).
@compute @workgroup_size(256)
fn sub_mul_scalar(@builtin(global_invocation_id) gid: vec3<u32>) {
    let l = lane(gid);
    if (!l.ok) { return; }
    let limbs = prm(2u);
    let d = src_a[l.idx] + l.q - src_b[l.idx];
    dst[l.idx] = mul_shoup(d, prm(8u + limbs + gid.y), prm(8u + 2u * limbs + gid.y), l.q);
}
