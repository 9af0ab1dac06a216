//! The kernels against straightforward references, on whatever adapter
//! wgpu finds: lavapipe in CI, where a missing adapter is a failure.

use super::*;
use tessera_plugin::abi::{Shape, FLAG_SIDE_RIGHT, FLAG_TRANS_A, FLAG_TRANS_B};

fn plugin() -> Option<WgpuPlugin> {
    match WgpuPlugin::init("") {
        Ok(p) => Some(p),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED wgpu kernel tests: {e}");
            None
        }
        Err(e) => panic!("CI must run the wgpu tests for real: {e}"),
    }
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut x = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2000) as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn upload(p: &WgpuPlugin, data: &[f32]) -> u64 {
    let b = p.alloc(0, (data.len() * 4) as u64).unwrap();
    unsafe {
        p.copy_h2d(0, 0, b, data.as_ptr().cast(), (data.len() * 4) as u64)
            .unwrap()
    };
    b
}

fn download(p: &WgpuPlugin, b: u64, len: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; len];
    unsafe {
        p.copy_d2h(0, 0, out.as_mut_ptr().cast(), b, (len * 4) as u64)
            .unwrap()
    };
    out
}

fn shape(rows: usize, cols: usize) -> Shape {
    Shape {
        rows: rows as u64,
        cols: cols as u64,
    }
}

fn call(op: u32, flags: u32, alpha: f64, beta: f64, shapes: Vec<Shape>) -> OpCall {
    OpCall {
        op,
        dtype: dtype_code::F32,
        flags,
        alpha,
        beta,
        shapes,
    }
}

fn at(v: &[f32], rows: usize, i: usize, j: usize) -> f64 {
    f64::from(v[i + j * rows])
}

fn max_rel(got: &[f32], want: &[f64]) -> f64 {
    let scale = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| (f64::from(*g) - w).abs() / scale)
        .fold(0.0, f64::max)
}

#[test]
fn gemm_with_every_transpose_and_ragged_sizes() {
    let Some(p) = plugin() else { return };
    let (m, n, k) = (37, 21, 45);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let (ar, ac) = if ta { (k, m) } else { (m, k) };
        let (br, bc) = if tb { (n, k) } else { (k, n) };
        let a = values(ar * ac, 1);
        let b = values(br * bc, 2);
        let c0 = values(m * n, 3);
        let (alpha, beta) = (-1.0, 0.5);
        let mut want = vec![0.0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for q in 0..k {
                    let x = if ta {
                        at(&a, ar, q, i)
                    } else {
                        at(&a, ar, i, q)
                    };
                    let y = if tb {
                        at(&b, br, j, q)
                    } else {
                        at(&b, br, q, j)
                    };
                    s += x * y;
                }
                want[i + j * m] = alpha * s + beta * f64::from(c0[i + j * m]);
            }
        }
        let (ba, bb, bc_) = (upload(&p, &a), upload(&p, &b), upload(&p, &c0));
        let flags = (if ta { FLAG_TRANS_A } else { 0 }) | (if tb { FLAG_TRANS_B } else { 0 });
        p.launch(
            0,
            0,
            &call(
                op_code::GEMM,
                flags,
                alpha,
                beta,
                vec![shape(ar, ac), shape(br, bc), shape(m, n)],
            ),
            &[ba, bb, bc_],
        )
        .unwrap();
        p.stream_sync(0, 0).unwrap();
        let got = download(&p, bc_, m * n);
        assert!(
            max_rel(&got, &want) < 1e-5,
            "ta={ta} tb={tb}: {}",
            max_rel(&got, &want)
        );
    }
}

#[test]
fn syrk_touches_only_the_lower_triangle() {
    let Some(p) = plugin() else { return };
    let (n, k) = (33, 17);
    let a = values(n * k, 4);
    let c0 = values(n * n, 5);
    let (ba, bc) = (upload(&p, &a), upload(&p, &c0));
    p.launch(
        0,
        0,
        &call(op_code::SYRK, 0, -1.0, 1.0, vec![shape(n, k), shape(n, n)]),
        &[ba, bc],
    )
    .unwrap();
    p.stream_sync(0, 0).unwrap();
    let got = download(&p, bc, n * n);
    let mut want = vec![0.0f64; n * n];
    for j in 0..n {
        for i in 0..n {
            let mut s = 0.0;
            for q in 0..k {
                s += at(&a, n, i, q) * at(&a, n, j, q);
            }
            want[i + j * n] = if i >= j {
                f64::from(c0[i + j * n]) - s
            } else {
                f64::from(c0[i + j * n])
            };
        }
    }
    assert!(max_rel(&got, &want) < 1e-5);
}

#[test]
fn trsm_on_both_sides_with_and_without_transpose() {
    let Some(p) = plugin() else { return };
    let n = 19;
    let mut l = values(n * n, 6);
    for j in 0..n {
        for i in 0..j {
            l[i + j * n] = 0.0;
        }
        l[j + j * n] = 2.0 + l[j + j * n].abs();
    }
    for right in [false, true] {
        for trans in [false, true] {
            let (br, bc) = if right { (7, n) } else { (n, 7) };
            let b0 = values(br * bc, 7);
            let (bl, bx) = (upload(&p, &l), upload(&p, &b0));
            let flags =
                (if trans { FLAG_TRANS_B } else { 0 }) | (if right { FLAG_SIDE_RIGHT } else { 0 });
            p.launch(
                0,
                0,
                &call(
                    op_code::TRSM,
                    flags,
                    2.0,
                    0.0,
                    vec![shape(n, n), shape(br, bc)],
                ),
                &[bl, bx],
            )
            .unwrap();
            p.stream_sync(0, 0).unwrap();
            let x = download(&p, bx, br * bc);
            // Multiply back: op(L)·X or X·op(L) must give 2·B.
            let opl = |i: usize, j: usize| {
                if trans {
                    at(&l, n, j, i)
                } else {
                    at(&l, n, i, j)
                }
            };
            let mut back = vec![0.0f64; br * bc];
            for i in 0..br {
                for j in 0..bc {
                    let mut s = 0.0;
                    for q in 0..n {
                        s += if right {
                            at(&x, br, i, q) * opl(q, j)
                        } else {
                            opl(i, q) * at(&x, br, q, j)
                        };
                    }
                    back[i + j * br] = s;
                }
            }
            let want: Vec<f64> = b0.iter().map(|v| 2.0 * f64::from(*v)).collect();
            let got: Vec<f32> = back.iter().map(|v| *v as f32).collect();
            assert!(max_rel(&got, &want) < 1e-4, "right={right} trans={trans}");
        }
    }
}

#[test]
fn potrf_factors_spd_tiles_and_reports_the_failing_pivot() {
    let Some(p) = plugin() else { return };
    let n = 40;
    let m = values(n * n, 8);
    let mut a = vec![0.0f32; n * n];
    for i in 0..n {
        for j in 0..n {
            let mut s = 0.0;
            for q in 0..n {
                s += m[i + q * n] * m[j + q * n];
            }
            a[i + j * n] = s + if i == j { n as f32 } else { 0.0 };
        }
    }
    let b = upload(&p, &a);
    p.launch(
        0,
        0,
        &call(op_code::POTRF, 0, 1.0, 0.0, vec![shape(n, n)]),
        &[b],
    )
    .unwrap();
    p.stream_sync(0, 0).unwrap();
    let f = download(&p, b, n * n);
    let mut want = vec![0.0f64; n * n];
    let mut got = vec![0.0f32; n * n];
    for i in 0..n {
        for j in 0..=i {
            let mut s = 0.0;
            for q in 0..=j {
                s += at(&f, n, i, q) * at(&f, n, j, q);
            }
            got[i + j * n] = s as f32;
            want[i + j * n] = f64::from(a[i + j * n]);
        }
    }
    assert!(max_rel(&got, &want) < 1e-5, "{}", max_rel(&got, &want));

    let mut bad = a.clone();
    bad[5 + 5 * n] = -1.0;
    let b = upload(&p, &bad);
    let e = p
        .launch(
            0,
            0,
            &call(op_code::POTRF, 0, 1.0, 0.0, vec![shape(n, n)]),
            &[b],
        )
        .unwrap_err();
    assert!(
        e.0.contains("not positive definite") && e.0.contains("pivot 5"),
        "{e}"
    );
    // The device stays usable.
    let b = upload(&p, &a);
    p.launch(
        0,
        0,
        &call(op_code::POTRF, 0, 1.0, 0.0, vec![shape(n, n)]),
        &[b],
    )
    .unwrap();
}

#[test]
fn f64_is_refused_and_oversized_buffers_are_errors() {
    let Some(p) = plugin() else { return };
    assert!(!p.supports(0, op_code::GEMM, dtype_code::F64));
    assert!(p.supports(0, op_code::POTRF, dtype_code::F32));
    assert!(p.alloc(0, u64::MAX / 2).is_err());
}

#[test]
fn axpy_and_sum_over_a_ragged_tile() {
    let Some(p) = plugin() else { return };
    let (r, c) = (333, 7);
    let x = values(r * c, 9);
    let y0 = values(r * c, 10);
    let (bx, by) = (upload(&p, &x), upload(&p, &y0));
    p.launch(
        0,
        0,
        &call(op_code::AXPY, 0, 3.0, 0.0, vec![shape(r, c), shape(r, c)]),
        &[bx, by],
    )
    .unwrap();
    p.stream_sync(0, 0).unwrap();
    let got = download(&p, by, r * c);
    let want: Vec<f64> = x
        .iter()
        .zip(&y0)
        .map(|(a, b)| 3.0 * f64::from(*a) + f64::from(*b))
        .collect();
    assert!(max_rel(&got, &want) < 1e-6);
    let s = upload(&p, &[f32::NAN]);
    p.launch(
        0,
        0,
        &call(op_code::SUM, 0, 1.0, 0.0, vec![shape(r, c), shape(1, 1)]),
        &[bx, s],
    )
    .unwrap();
    p.stream_sync(0, 0).unwrap();
    let total: f64 = x.iter().map(|v| f64::from(*v)).sum();
    let got = f64::from(download(&p, s, 1)[0]);
    assert!(
        (got - total).abs() < 1e-3 * total.abs().max(1.0),
        "{got} vs {total}"
    );
}

#[test]
fn a_long_f32_sum_keeps_its_digits() {
    let Some(p) = plugin() else { return };
    let n = 1 << 20;
    let x: Vec<f32> = (0..n).map(|i| 1.0 + 3.0 * (i % 100) as f32).collect();
    let bx = upload(&p, &x);
    let s = upload(&p, &[f32::NAN]);
    p.launch(
        0,
        0,
        &call(op_code::SUM, 0, 1.0, 0.0, vec![shape(n, 1), shape(1, 1)]),
        &[bx, s],
    )
    .unwrap();
    p.stream_sync(0, 0).unwrap();
    let want: f64 = x.iter().map(|v| f64::from(*v)).sum();
    let got = f64::from(download(&p, s, 1)[0]);
    assert!((got - want).abs() / want < 1e-6, "{got} vs {want}");
}
