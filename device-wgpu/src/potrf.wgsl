// Tessera's in-place lower Cholesky for wgpu, f32, on one column-major
// n x n tile. A module of its own: its bindings differ from kernels.wgsl.

struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    alpha: f32,
    beta: f32,
    lda: u32,
    ldb: u32,
};

@group(0) @binding(2) var<storage, read_write> c: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

// In-place lower Cholesky of the n x n tile in binding c, by one workgroup.
// status[0] becomes k + 1 if pivot k is not positive.
@group(0) @binding(1) var<storage, read_write> status: array<u32>;
var<workgroup> failed: u32;

@compute @workgroup_size(256)
fn potrf(@builtin(local_invocation_index) t: u32) {
    let n = p.n;
    if (t == 0u) { failed = 0u; }
    workgroupBarrier();
    for (var k = 0u; k < n; k++) {
        if (t == 0u) {
            let d = c[k + k * n];
            if (d > 0.0) {
                c[k + k * n] = sqrt(d);
            } else {
                failed = k + 1u;
                status[0] = k + 1u;
            }
        }
        storageBarrier();
        workgroupBarrier();
        if (workgroupUniformLoad(&failed) != 0u) { break; }
        let dkk = c[k + k * n];
        for (var i = k + 1u + t; i < n; i += 256u) {
            c[i + k * n] = c[i + k * n] / dkk;
        }
        storageBarrier();
        workgroupBarrier();
        for (var j = k + 1u; j < n; j++) {
            let cjk = c[j + k * n];
            for (var i = j + t; i < n; i += 256u) {
                c[i + j * n] -= c[i + k * n] * cjk;
            }
        }
        storageBarrier();
        workgroupBarrier();
    }
}
