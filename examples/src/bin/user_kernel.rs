//! `cargo run --release -p tessera-examples --bin user_kernel`: an axpy
//! written once in CUDA C and once in WGSL, registered as a user kernel and
//! run as tasks on whichever device compiled it, then the catalogue's
//! `axpy` on the same tiles and its `sum` over the result; checked on the host.

use tessera::kernel::KernelSource;
use tessera::{Runtime, RuntimeError, Task, TileData, TileShape};

const CUDA: &str = r#"
extern "C" __global__ void axpy(const float* x, float* y, double a, double n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < (long long)n) y[i] += (float)a * x[i];
}"#;

const WGSL: &str = r#"
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<uniform> s: array<vec4<f32>, 1>;
@compute @workgroup_size(256)
fn axpy(@builtin(global_invocation_id) g: vec3<u32>) {
    if (f32(g.x) < s[0].y) { y[g.x] = y[g.x] + s[0].x * x[g.x]; }
}"#;

fn main() {
    if let Err(e) = run() {
        eprintln!("user_kernel: error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), RuntimeError> {
    let rt = Runtime::builder().build()?;
    let axpy = rt.kernel(&KernelSource {
        entry: "axpy".into(),
        cuda: Some(CUDA.into()),
        wgsl: Some(WGSL.into()),
    })?;
    let n = 1 << 20;
    let x = rt.tile(
        TileData::F32((0..n).map(|i| (i % 100) as f32).collect()),
        TileShape::new(n, 1),
    )?;
    let y = rt.tile(TileData::F32(vec![1.0; n]), TileShape::new(n, 1))?;
    for a in [2.0, 0.5] {
        rt.submit(
            Task::kernel(&axpy, [n as u32, 1, 256])
                .read(&x)
                .read_write(&y)
                .scalars(&[a, n as f64]),
        )?;
    }
    // And the catalogue's own axpy on the same tiles (cuBLAS on CUDA,
    // WGSL on wgpu, faer's zip on a CPU): y += 0.5·x once more.
    rt.submit(
        Task::op(tessera::Op::Axpy { alpha: 0.5 })
            .read(&x)
            .read_write(&y),
    )?;
    let TileData::F32(out) = rt.fetch(&y)? else {
        return Err(RuntimeError::Start("expected f32".into()));
    };
    let wrong = out
        .iter()
        .enumerate()
        .filter(|(i, v)| **v != 1.0 + 3.0 * (i % 100) as f32)
        .count();
    let bad = rt.kernel(&KernelSource {
        entry: "broken".into(),
        cuda: Some("__global__ void broken( {".into()),
        wgsl: Some("fn broken( {".into()),
    });
    println!(
        "axpy on {} elements: {} wrong; a broken source gives: {}",
        n,
        wrong,
        bad.err()
            .map_or("no error (BUG)".to_string(), |e| e.to_string())
    );
    if wrong > 0 {
        return Err(RuntimeError::Start(format!("{wrong} wrong elements")));
    }
    // Finally the catalogue's reduction over the result.
    let total = rt.tile(TileData::F32(vec![f32::NAN]), TileShape::new(1, 1))?;
    rt.submit(Task::op(tessera::Op::Sum).read(&y).write(&total))?;
    let got = rt.fetch(&total)?.get(1, 0, 0);
    let want: f64 = (0..n).map(|i| 1.0 + 3.0 * (i % 100) as f64).sum();
    let rel = (got - want).abs() / want;
    println!("sum: {got} (exact {want}, relative error {rel:.1e})");
    if rel.is_nan() || rel >= 1e-5 {
        return Err(RuntimeError::Start(format!("sum off by {rel:e}")));
    }
    Ok(())
}
