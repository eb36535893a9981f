// Fast base conversion (the twin of math::rns::BaseConverter): x mod B = b_0..b_{m-1} ->
// x mod p_i. y_j = [x_j (B/b_j)^-1]_{b_j}; v = floor(sum_j y_j floor(2^64 / b_j) / 2^64) from an
// exact 96-bit fixed-point sum, so that every backend gets the same v; out = sum_j y_j [B/b_j]_p
// - v [B]_p. One invocation per (coefficient, target prime).
// Table: 4 words per source prime (inverse, Shoup, frac lo, frac hi), then [B/b_j]_{p_i} row by
// row, then [-B]_{p_i}. Params: 3 m, 4 first source limb of src, 8.. target primes, 8 + t.. source
// primes (t = limbs of dst).

@group(0) @binding(1) var<storage, read_write> dst: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<u32>;
@group(0) @binding(3) var<storage, read> table: array<u32>;
@group(0) @binding(4) var<storage, read> consts: array<u32>;

@compute @workgroup_size(256)
fn convert_basis(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = prm(0u);
    let t = prm(2u);
    let m = prm(3u);
    let first = prm(4u);
    let idx = gid.x;
    if (idx >= n) { return; }
    let i = gid.y;
    let c = prm(8u + i) * CONST_STRIDE;
    let q = consts[c];
    var acc = 0u;
    var w0 = 0u;
    var w1 = 0u;
    var w2 = 0u;
    for (var j = 0u; j < m; j++) {
        let qj = consts[prm(8u + t + j) * CONST_STRIDE];
        let y = mul_shoup(src[(first + j) * n + idx], table[4u * j], table[4u * j + 1u], qj);
        let lo = mul_wide(y, table[4u * j + 2u]);
        let hi = mul_wide(y, table[4u * j + 3u]);
        // (w2 w1 w0) += lo + hi 2^32
        let s0 = w0 + lo.x;
        let c0 = select(0u, 1u, s0 < w0);
        w0 = s0;
        let s1a = w1 + lo.y;
        let c1a = select(0u, 1u, s1a < w1);
        let s1b = s1a + hi.x;
        let c1b = select(0u, 1u, s1b < s1a);
        let s1c = s1b + c0;
        let c1c = select(0u, 1u, s1c < s1b);
        w1 = s1c;
        w2 = w2 + hi.y + c1a + c1b + c1c;
        acc = add_mod(acc, reduce_wide(mul_wide(y, table[4u * m + i * m + j]), c), q);
    }
    let negb = table[4u * m + t * m + i];
    acc = add_mod(acc, reduce_wide(mul_wide(w2, negb), c), q);
    dst[i * n + idx] = acc;
}
