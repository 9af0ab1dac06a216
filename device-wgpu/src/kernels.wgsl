// Tessera tile kernels for wgpu, f32, column-major tiles:
// element (i, j) of a tile with `rows` rows sits at i + j * rows.

struct Params {
    m: u32,      // rows of the output
    n: u32,      // columns of the output
    k: u32,      // inner dimension (gemm, syrk)
    flags: u32,  // 1: transpose A, 2: transpose B (or L for trsm), 4: L on the right, 8: lower triangle only
    alpha: f32,
    beta: f32,
    lda: u32,
    ldb: u32,
};

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

const TS: u32 = 16u;
var<workgroup> a_tile: array<f32, 256>;
var<workgroup> b_tile: array<f32, 256>;

fn op_a(i: u32, q: u32) -> f32 {
    if ((p.flags & 1u) != 0u) { return a[q + i * p.lda]; }
    return a[i + q * p.lda];
}

fn op_b(q: u32, j: u32) -> f32 {
    if ((p.flags & 2u) != 0u) { return b[j + q * p.ldb]; }
    return b[q + j * p.ldb];
}

// C = alpha op(A) op(B) + beta C; with flag 8 only the lower triangle
// (syrk binds A as both A and B with B transposed).
@compute @workgroup_size(16, 16)
fn gemm(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let i = wid.x * TS + lid.x;
    let j = wid.y * TS + lid.y;
    var acc = 0.0;
    for (var t = 0u; t < p.k; t += TS) {
        let qa = t + lid.y;
        let qb = t + lid.x;
        var va = 0.0;
        var vb = 0.0;
        if (i < p.m && qa < p.k) { va = op_a(i, qa); }
        if (j < p.n && qb < p.k) { vb = op_b(qb, j); }
        a_tile[lid.x + lid.y * TS] = va;
        b_tile[lid.x + lid.y * TS] = vb;
        workgroupBarrier();
        for (var q = 0u; q < TS; q++) {
            acc += a_tile[lid.x + q * TS] * b_tile[q + lid.y * TS];
        }
        workgroupBarrier();
    }
    if (i < p.m && j < p.n && ((p.flags & 8u) == 0u || i >= j)) {
        let idx = i + j * p.m;
        var old = 0.0;
        if (p.beta != 0.0) { old = p.beta * c[idx]; }
        c[idx] = p.alpha * acc + old;
    }
}

// Triangular solve with the lower triangle of L (binding a) in place in B
// (binding c, m x n). Each invocation solves one independent row (L on the
// right) or column (L on the left) by substitution.
@compute @workgroup_size(64)
fn trsm(@builtin(global_invocation_id) gid: vec3<u32>) {
    let right = (p.flags & 4u) != 0u;
    let trans = (p.flags & 2u) != 0u;
    let line = gid.x;
    var count = p.n;
    var len = p.m;
    if (right) { count = p.m; len = p.n; }
    if (line >= count) { return; }
    // x(q): element q of this line of B.
    for (var q = 0u; q < len; q++) {
        var idx = q + line * p.m;
        if (right) { idx = line + q * p.m; }
        c[idx] = p.alpha * c[idx];
    }
    // Forward when the effective triangle is lower, backward when upper.
    let forward = (right && trans) || (!right && !trans);
    for (var s = 0u; s < len; s++) {
        var q = s;
        if (!forward) { q = len - 1u - s; }
        var idx = q + line * p.m;
        if (right) { idx = line + q * p.m; }
        var sum = c[idx];
        for (var r = 0u; r < len; r++) {
            var before = r < q;
            if (!forward) { before = r > q; }
            if (!before) { continue; }
            var ridx = r + line * p.m;
            if (right) { ridx = line + r * p.m; }
            // Coefficient of x(r) in equation q.
            var coef: f32;
            if (right && trans) { coef = a[q + r * p.lda]; }        // X Lᵀ = B: L[q, r]
            else if (right) { coef = a[r + q * p.lda]; }            // X L = B:  L[r, q]
            else if (trans) { coef = a[r + q * p.lda]; }            // Lᵀ X = B: L[r, q]
            else { coef = a[q + r * p.lda]; }                       // L X = B:  L[q, r]
            sum -= coef * c[ridx];
        }
        c[idx] = sum / a[q + q * p.lda];
    }
}


// Y = alpha X + Y, elementwise over m * n elements (X in a, Y in c).
@compute @workgroup_size(256)
fn axpy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if (i < p.m * p.n) {
        c[i] = p.alpha * a[i] + c[i];
    }
}

// c[0] = sum of the m * n elements of a, by one workgroup: strided partial
// sums, then a tree in workgroup memory.
var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn sum(@builtin(local_invocation_index) t: u32) {
    // Kahan-compensated partial sums: f32 is all WGSL has, and a plain
    // running sum of thousands of values loses digits.
    let count = p.m * p.n;
    var acc = 0.0;
    var carry = 0.0;
    for (var i = t; i < count; i += 256u) {
        let y = a[i] - carry;
        let next = acc + y;
        carry = (next - acc) - y;
        acc = next;
    }
    partial[t] = acc;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if (t < stride) {
            partial[t] += partial[t + stride];
        }
        workgroupBarrier();
    }
    if (t == 0u) {
        c[0] = partial[0];
    }
}
