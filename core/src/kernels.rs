//! CPU implementations of the tile ops, on faer.
//!
//! Each kernel runs sequentially on one core: parallelism comes from running
//! many tasks at once, one per CPU processor, which is what makes a tiled
//! algorithm scale. The dense work is faer's (its GEMM micro-kernels, its
//! blocked Cholesky and triangular solves); this module only maps Tessera's
//! ops and column-major tiles onto faer's views.

use crate::error::KernelError;
use crate::op::{Op, Side};
use crate::tile::{TileData, TileShape};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::{cholesky_in_place, cholesky_in_place_scratch};
use faer::linalg::matmul::triangular::BlockStructure;
use faer::linalg::triangular_solve::{
    solve_lower_triangular_in_place, solve_upper_triangular_in_place,
};
use faer::{Accum, MatMut, MatRef, Par};

/// The element types the kernels are written once for.
pub trait Real: faer::traits::RealField + Copy {
    fn from_f64(x: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
}

impl Real for f64 {
    fn from_f64(x: f64) -> Self {
        x
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// An input tile for a kernel.
pub struct KernelInput<'a> {
    pub data: &'a TileData,
    pub shape: TileShape,
}

/// Runs a built-in `op` on the CPU: `inputs` are read, `output` (the op's
/// last argument) is updated in place. Shapes were checked at submission by
/// [`Op::check`]; they are checked again here because a kernel must never
/// index out of bounds, whoever calls it.
pub fn execute(
    op: &Op,
    inputs: &[KernelInput<'_>],
    output: &mut TileData,
    out_shape: TileShape,
) -> Result<(), KernelError> {
    if output.len() != out_shape.len() || inputs.iter().any(|i| i.data.len() != i.shape.len()) {
        return Err(KernelError::Invalid(
            "tile data does not match its shape".into(),
        ));
    }
    match output {
        TileData::F32(out) => execute_typed::<f32>(op, inputs, out, out_shape, |d| match d {
            TileData::F32(v) => Some(v.as_slice()),
            TileData::F64(_) => None,
        }),
        TileData::F64(out) => execute_typed::<f64>(op, inputs, out, out_shape, |d| match d {
            TileData::F64(v) => Some(v.as_slice()),
            TileData::F32(_) => None,
        }),
    }
}

fn execute_typed<T: Real>(
    op: &Op,
    inputs: &[KernelInput<'_>],
    out: &mut [T],
    out_shape: TileShape,
    slice_of: impl Fn(&TileData) -> Option<&[T]>,
) -> Result<(), KernelError> {
    let mut views = Vec::with_capacity(inputs.len());
    for input in inputs {
        let slice = slice_of(input.data)
            .ok_or_else(|| KernelError::Invalid("input element type differs from output".into()))?;
        views.push(MatRef::from_column_major_slice(
            slice,
            input.shape.rows,
            input.shape.cols,
        ));
    }
    let c = MatMut::from_column_major_slice_mut(out, out_shape.rows, out_shape.cols);
    let arg = |i: usize| {
        views
            .get(i)
            .copied()
            .ok_or_else(|| KernelError::Invalid(format!("`{}` is missing input {i}", op.name())))
    };
    match op {
        Op::Gemm {
            trans_a,
            trans_b,
            alpha,
            beta,
        } => {
            let a = if *trans_a {
                arg(0)?.transpose()
            } else {
                arg(0)?
            };
            let b = if *trans_b {
                arg(1)?.transpose()
            } else {
                arg(1)?
            };
            if a.ncols() != b.nrows() || a.nrows() != c.nrows() || b.ncols() != c.ncols() {
                return Err(KernelError::Invalid("gemm shapes do not agree".into()));
            }
            gemm(c, a, b, *alpha, *beta);
        }
        Op::Syrk { alpha, beta } => {
            let a = arg(0)?;
            if a.nrows() != c.nrows() || !out_shape.is_square() {
                return Err(KernelError::Invalid("syrk shapes do not agree".into()));
            }
            syrk(c, a, *alpha, *beta);
        }
        Op::Trsm { side, trans, alpha } => {
            let l = arg(0)?;
            let n = match side {
                Side::Left => c.nrows(),
                Side::Right => c.ncols(),
            };
            if l.nrows() != n || l.ncols() != n {
                return Err(KernelError::Invalid("trsm shapes do not agree".into()));
            }
            trsm(c, l, *side, *trans, *alpha);
        }
        Op::Potrf => potrf(c)?,
        Op::Axpy { alpha } => {
            let x = arg(0)?;
            if x.nrows() != c.nrows() || x.ncols() != c.ncols() {
                return Err(KernelError::Invalid("axpy shapes do not agree".into()));
            }
            let alpha = T::from_f64(*alpha);
            faer::zip!(c, x).for_each(|faer::unzip!(y, x)| *y = alpha * *x + *y);
        }
        Op::Sum => {
            let x = arg(0)?;
            if c.nrows() != 1 || c.ncols() != 1 {
                return Err(KernelError::Invalid("sum writes a 1x1 tile".into()));
            }
            // Accumulate in f64 whatever the tile's type: a long f32 sum
            // loses digits fast.
            let mut total = 0.0f64;
            faer::zip!(x).for_each(|faer::unzip!(v)| total += v.to_f64());
            let mut c = c;
            c[(0, 0)] = T::from_f64(total);
        }
        Op::Getrf | Op::Geqrf => {
            return Err(KernelError::Invalid(format!(
                "`{}` writes two tiles: run it with execute_factor",
                op.name()
            )));
        }
        Op::Closure { .. } | Op::Kernel(_) => {
            return Err(KernelError::Invalid(format!(
                "`{}` has no CPU kernel",
                op.name()
            )));
        }
    }
    Ok(())
}

/// Runs an op that factors its first tile in place and writes a second
/// (see [`Op::factors_first_argument`]): `getrf` (pivots) or `geqrf`
/// (reflector factors), with LAPACK's conventions for both.
pub fn execute_factor(
    op: &Op,
    a: &mut TileData,
    a_shape: TileShape,
    out: &mut TileData,
    out_shape: TileShape,
) -> Result<(), KernelError> {
    let k = a_shape.rows.min(a_shape.cols);
    if a.len() != a_shape.len() || out.len() != out_shape.len() || out_shape != TileShape::new(k, 1)
    {
        return Err(KernelError::Invalid(
            "tile data does not match its shape".into(),
        ));
    }
    match (a, out) {
        (TileData::F32(a), TileData::F32(o)) => factor_typed::<f32>(op, a, a_shape, o),
        (TileData::F64(a), TileData::F64(o)) => factor_typed::<f64>(op, a, a_shape, o),
        _ => Err(KernelError::Invalid(
            "both tiles must have one element type".into(),
        )),
    }
}

fn factor_typed<T: Real>(
    op: &Op,
    a: &mut [T],
    shape: TileShape,
    out: &mut [T],
) -> Result<(), KernelError> {
    let (m, n) = (shape.rows, shape.cols);
    let k = m.min(n);
    let a = MatMut::from_column_major_slice_mut(a, m, n);
    match op {
        Op::Getrf => {
            use faer::linalg::lu::partial_pivoting::factor::{lu_in_place, lu_in_place_scratch};
            let mut perm = vec![0usize; m];
            let mut perm_inv = vec![0usize; m];
            let mut buf = MemBuffer::new(lu_in_place_scratch::<usize, T>(
                m,
                n,
                Par::Seq,
                Default::default(),
            ));
            lu_in_place(
                a,
                &mut perm,
                &mut perm_inv,
                Par::Seq,
                MemStack::new(&mut buf),
                Default::default(),
            );
            // faer applies LAPACK-order transpositions and reports the final
            // permutation; replaying it recovers each step's swap.
            let mut at: Vec<usize> = (0..m).collect(); // original row at each position
            let mut pos: Vec<usize> = (0..m).collect(); // position of each original row
            for (i, slot) in out.iter_mut().enumerate().take(k) {
                let j = pos[perm[i]];
                *slot = T::from_f64(j as f64);
                let (ri, rj) = (at[i], at[j]);
                at.swap(i, j);
                pos[ri] = j;
                pos[rj] = i;
            }
        }
        Op::Geqrf => {
            use faer::linalg::qr::no_pivoting::factor::{qr_in_place, qr_in_place_scratch};
            let mut coeff = faer::Mat::<T>::zeros(1, k);
            let mut buf = MemBuffer::new(qr_in_place_scratch::<T>(
                m,
                n,
                1,
                Par::Seq,
                Default::default(),
            ));
            qr_in_place(
                a,
                coeff.as_mut(),
                Par::Seq,
                MemStack::new(&mut buf),
                Default::default(),
            );
            // faer writes H = I - v vᵀ / τ; LAPACK's factor is 1/τ (0 for H = I).
            for (j, slot) in out.iter_mut().enumerate().take(k) {
                let t = coeff[(0, j)].to_f64();
                *slot = T::from_f64(if t.is_finite() && t != 0.0 {
                    1.0 / t
                } else {
                    0.0
                });
            }
        }
        other => {
            return Err(KernelError::Invalid(format!(
                "`{}` is not a factorisation with two outputs",
                other.name()
            )));
        }
    }
    Ok(())
}

fn scale<T: Real>(mut c: MatMut<'_, T>, beta: f64, lower_only: bool) {
    let beta = T::from_f64(beta);
    for j in 0..c.ncols() {
        let start = if lower_only { j } else { 0 };
        for i in start..c.nrows() {
            let v = c[(i, j)];
            c[(i, j)] = v * beta;
        }
    }
}

/// `C = alpha·A·B + beta·C`.
fn gemm<T: Real>(mut c: MatMut<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, alpha: f64, beta: f64) {
    let accum = accumulate(c.rb_mut(), beta, false);
    faer::linalg::matmul::matmul(c, accum, a, b, T::from_f64(alpha), Par::Seq);
}

/// Lower triangle of `C = alpha·A·Aᵀ + beta·C`.
fn syrk<T: Real>(mut c: MatMut<'_, T>, a: MatRef<'_, T>, alpha: f64, beta: f64) {
    let accum = accumulate(c.rb_mut(), beta, true);
    faer::linalg::matmul::triangular::matmul(
        c,
        BlockStructure::TriangularLower,
        accum,
        a,
        BlockStructure::Rectangular,
        a.transpose(),
        BlockStructure::Rectangular,
        T::from_f64(alpha),
        Par::Seq,
    );
}

/// Prepares `C` for `beta` and says whether the product adds to it.
fn accumulate<T: Real>(c: MatMut<'_, T>, beta: f64, lower_only: bool) -> Accum {
    if beta == 0.0 {
        Accum::Replace
    } else {
        if beta != 1.0 {
            scale(c, beta, lower_only);
        }
        Accum::Add
    }
}

/// `B = alpha·op(L)⁻¹·B` (left) or `B = alpha·B·op(L)⁻¹` (right), `L` lower.
fn trsm<T: Real>(mut b: MatMut<'_, T>, l: MatRef<'_, T>, side: Side, trans: bool, alpha: f64) {
    if alpha != 1.0 {
        scale(b.rb_mut(), alpha, false);
    }
    match (side, trans) {
        // L·X = B
        (Side::Left, false) => solve_lower_triangular_in_place(l, b, Par::Seq),
        // Lᵀ·X = B
        (Side::Left, true) => solve_upper_triangular_in_place(l.transpose(), b, Par::Seq),
        // X·Lᵀ = B  ⇔  L·Xᵀ = Bᵀ
        (Side::Right, true) => solve_lower_triangular_in_place(l, b.transpose_mut(), Par::Seq),
        // X·L = B  ⇔  Lᵀ·Xᵀ = Bᵀ
        (Side::Right, false) => {
            solve_upper_triangular_in_place(l.transpose(), b.transpose_mut(), Par::Seq)
        }
    }
}

/// In-place lower Cholesky; the strict upper triangle is left as it was.
fn potrf<T: Real>(a: MatMut<'_, T>) -> Result<(), KernelError> {
    let n = a.nrows();
    let mut buf = MemBuffer::new(cholesky_in_place_scratch::<T>(
        n,
        Par::Seq,
        Default::default(),
    ));
    let stack = MemStack::new(&mut buf);
    cholesky_in_place(a, Default::default(), Par::Seq, stack, Default::default())
        .map(|_| ())
        .map_err(|e| match e {
            faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index } => {
                KernelError::NotPositiveDefinite { pivot: index }
            }
        })
}

use faer::reborrow::ReborrowMut;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;
    use rand::{Rng, SeedableRng};

    /// Column-major random matrix.
    fn random(rng: &mut rand::rngs::StdRng, r: usize, c: usize) -> Vec<f64> {
        (0..r * c).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    fn at(v: &[f64], rows: usize, i: usize, j: usize) -> f64 {
        v[i + j * rows]
    }

    /// Reference product with explicit loops: `op(A)·op(B)`. Each operand
    /// as a test writes it (data, rows, columns, transposed).
    #[allow(clippy::too_many_arguments)]
    fn reference_product(
        a: &[f64],
        ar: usize,
        ac: usize,
        ta: bool,
        b: &[f64],
        br: usize,
        bc: usize,
        tb: bool,
    ) -> (Vec<f64>, usize, usize) {
        let (m, k) = if ta { (ac, ar) } else { (ar, ac) };
        let n = if tb { br } else { bc };
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0;
                for p in 0..k {
                    let x = if ta { at(a, ar, p, i) } else { at(a, ar, i, p) };
                    let y = if tb { at(b, br, j, p) } else { at(b, br, p, j) };
                    s += x * y;
                }
                out[i + j * m] = s;
            }
        }
        (out, m, n)
    }

    fn max_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    fn to_f64(d: &TileData) -> Vec<f64> {
        match d {
            TileData::F32(v) => v.iter().map(|x| f64::from(*x)).collect(),
            TileData::F64(v) => v.clone(),
        }
    }

    fn tile(v: &[f64], dtype: DType) -> TileData {
        match dtype {
            DType::F32 => TileData::F32(v.iter().map(|x| *x as f32).collect()),
            DType::F64 => TileData::F64(v.to_vec()),
        }
    }

    fn tol(dtype: DType) -> f64 {
        match dtype {
            DType::F32 => 1e-4,
            DType::F64 => 1e-11,
        }
    }

    /// A well-conditioned SPD matrix: M·Mᵀ + n·I.
    fn spd(rng: &mut rand::rngs::StdRng, n: usize) -> Vec<f64> {
        let m = random(rng, n, n);
        let (mut a, _, _) = reference_product(&m, n, n, false, &m, n, n, true);
        for i in 0..n {
            a[i + i * n] += n as f64;
        }
        a
    }

    #[test]
    fn gemm_matches_reference_in_both_precisions_and_all_transposes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        for dtype in [DType::F32, DType::F64] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let (m, n, k) = (7, 5, 9);
                let (ar, ac) = if ta { (k, m) } else { (m, k) };
                let (br, bc) = if tb { (n, k) } else { (k, n) };
                let a = random(&mut rng, ar, ac);
                let b = random(&mut rng, br, bc);
                let c0 = random(&mut rng, m, n);
                let (alpha, beta) = (-1.5, 0.5);
                let (ab, _, _) = reference_product(&a, ar, ac, ta, &b, br, bc, tb);
                let expect: Vec<f64> = ab
                    .iter()
                    .zip(&c0)
                    .map(|(p, c)| alpha * p + beta * c)
                    .collect();
                let mut c = tile(&c0, dtype);
                let op = Op::Gemm {
                    trans_a: ta,
                    trans_b: tb,
                    alpha,
                    beta,
                };
                let ins = [
                    KernelInput {
                        data: &tile(&a, dtype),
                        shape: TileShape::new(ar, ac),
                    },
                    KernelInput {
                        data: &tile(&b, dtype),
                        shape: TileShape::new(br, bc),
                    },
                ];
                execute(&op, &ins, &mut c, TileShape::new(m, n)).unwrap();
                assert!(
                    max_diff(&to_f64(&c), &expect) < tol(dtype) * 10.0,
                    "{dtype} {ta} {tb}"
                );
            }
        }
    }

    #[test]
    fn syrk_updates_only_the_lower_triangle() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        for dtype in [DType::F32, DType::F64] {
            let (n, k) = (6, 4);
            let a = random(&mut rng, n, k);
            let c0 = random(&mut rng, n, n);
            let (aat, _, _) = reference_product(&a, n, k, false, &a, n, k, true);
            let mut c = tile(&c0, dtype);
            let ins = [KernelInput {
                data: &tile(&a, dtype),
                shape: TileShape::new(n, k),
            }];
            execute(
                &Op::Syrk {
                    alpha: -1.0,
                    beta: 1.0,
                },
                &ins,
                &mut c,
                TileShape::new(n, n),
            )
            .unwrap();
            let got = to_f64(&c);
            for j in 0..n {
                for i in 0..n {
                    let expect = if i >= j {
                        c0[i + j * n] - aat[i + j * n]
                    } else {
                        c0[i + j * n]
                    };
                    assert!(
                        (got[i + j * n] - expect).abs() < tol(dtype) * 10.0,
                        "{dtype} ({i},{j})"
                    );
                }
            }
        }
    }

    #[test]
    fn trsm_solves_on_both_sides() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for dtype in [DType::F32, DType::F64] {
            for side in [Side::Left, Side::Right] {
                for trans in [false, true] {
                    let n = 5;
                    let (br, bc) = match side {
                        Side::Left => (n, 3),
                        Side::Right => (3, n),
                    };
                    let mut l = random(&mut rng, n, n);
                    for j in 0..n {
                        for i in 0..j {
                            l[i + j * n] = 0.0;
                        }
                        l[j + j * n] = 2.0 + l[j + j * n].abs();
                    }
                    let b0 = random(&mut rng, br, bc);
                    let mut x = tile(&b0, dtype);
                    let ins = [KernelInput {
                        data: &tile(&l, dtype),
                        shape: TileShape::new(n, n),
                    }];
                    execute(
                        &Op::Trsm {
                            side,
                            trans,
                            alpha: 2.0,
                        },
                        &ins,
                        &mut x,
                        TileShape::new(br, bc),
                    )
                    .unwrap();
                    let xv = to_f64(&x);
                    // Multiply back: op(L)·X (left) or X·op(L) (right) must equal 2·B.
                    let (back, _, _) = match side {
                        Side::Left => reference_product(&l, n, n, trans, &xv, br, bc, false),
                        Side::Right => reference_product(&xv, br, bc, false, &l, n, n, trans),
                    };
                    let expect: Vec<f64> = b0.iter().map(|v| 2.0 * v).collect();
                    assert!(
                        max_diff(&back, &expect) < tol(dtype) * 100.0,
                        "{dtype} {side:?} {trans}"
                    );
                }
            }
        }
    }

    #[test]
    fn potrf_factors_spd_and_rejects_indefinite() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for dtype in [DType::F32, DType::F64] {
            let n = 8;
            let a = spd(&mut rng, n);
            let mut f = tile(&a, dtype);
            execute(&Op::Potrf, &[], &mut f, TileShape::new(n, n)).unwrap();
            let mut l = to_f64(&f);
            for j in 0..n {
                for i in 0..j {
                    l[i + j * n] = 0.0;
                }
            }
            let (llt, _, _) = reference_product(&l, n, n, false, &l, n, n, true);
            let rel = max_diff(&llt, &a) / a.iter().map(|x| x.abs()).fold(0.0, f64::max);
            assert!(rel < tol(dtype), "{dtype}: {rel}");
        }
        let mut not_spd = TileData::F64(vec![1.0, 2.0, 2.0, 1.0]);
        assert_eq!(
            execute(&Op::Potrf, &[], &mut not_spd, TileShape::new(2, 2)),
            Err(KernelError::NotPositiveDefinite { pivot: 1 })
        );
    }

    #[test]
    fn axpy_and_sum_match_references() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for dtype in [DType::F32, DType::F64] {
            let (r, c) = (7, 3);
            let x = random(&mut rng, r, c);
            let y0 = random(&mut rng, r, c);
            let mut y = tile(&y0, dtype);
            let ins = [KernelInput {
                data: &tile(&x, dtype),
                shape: TileShape::new(r, c),
            }];
            execute(
                &Op::Axpy { alpha: -2.0 },
                &ins,
                &mut y,
                TileShape::new(r, c),
            )
            .unwrap();
            let want: Vec<f64> = x.iter().zip(&y0).map(|(a, b)| -2.0 * a + b).collect();
            assert!(max_diff(&to_f64(&y), &want) < tol(dtype) * 10.0);
            let mut s = TileData::zeros(dtype, TileShape::new(1, 1));
            execute(&Op::Sum, &ins, &mut s, TileShape::new(1, 1)).unwrap();
            let total: f64 = x.iter().sum();
            assert!(
                (s.get(1, 0, 0) - total).abs() < tol(dtype) * 100.0,
                "{dtype}"
            );
        }
    }

    #[test]
    fn getrf_gives_lapack_pivots_with_p_a_equal_to_l_u() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        for dtype in [DType::F32, DType::F64] {
            for (m, n) in [(9, 9), (12, 7), (6, 10)] {
                let a0 = random(&mut rng, m, n);
                let k = m.min(n);
                let mut a = tile(&a0, dtype);
                let mut p = TileData::zeros(dtype, TileShape::new(k, 1));
                execute_factor(
                    &Op::Getrf,
                    &mut a,
                    TileShape::new(m, n),
                    &mut p,
                    TileShape::new(k, 1),
                )
                .unwrap();
                let worst =
                    crate::verify::lu_residual(&a0, &to_f64(&a), &to_f64(&p), m, n).unwrap();
                assert!(worst < tol(dtype) * 100.0, "{dtype} {m}x{n}: {worst}");
            }
        }
    }

    #[test]
    fn geqrf_gives_lapack_reflectors_with_q_r_equal_to_a() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for dtype in [DType::F32, DType::F64] {
            for (m, n) in [(8, 8), (11, 5), (5, 9)] {
                let a0 = random(&mut rng, m, n);
                let k = m.min(n);
                let mut a = tile(&a0, dtype);
                let mut t = TileData::zeros(dtype, TileShape::new(k, 1));
                execute_factor(
                    &Op::Geqrf,
                    &mut a,
                    TileShape::new(m, n),
                    &mut t,
                    TileShape::new(k, 1),
                )
                .unwrap();
                let worst =
                    crate::verify::qr_residual(&a0, &to_f64(&a), &to_f64(&t), m, n).unwrap();
                assert!(worst < tol(dtype) * 100.0, "{dtype} {m}x{n}: {worst}");
            }
        }
    }

    #[test]
    fn mismatched_inputs_are_errors_not_panics() {
        let mut c = TileData::F64(vec![0.0; 4]);
        let a = TileData::F32(vec![0.0; 4]);
        let ins = [
            KernelInput {
                data: &a,
                shape: TileShape::new(2, 2),
            },
            KernelInput {
                data: &a,
                shape: TileShape::new(2, 2),
            },
        ];
        assert!(execute(&Op::gemm(1.0, 0.0), &ins, &mut c, TileShape::new(2, 2)).is_err());
        let b = TileData::F64(vec![0.0; 6]);
        let ins = [
            KernelInput {
                data: &b,
                shape: TileShape::new(3, 2),
            },
            KernelInput {
                data: &b,
                shape: TileShape::new(3, 2),
            },
        ];
        assert!(execute(&Op::gemm(1.0, 0.0), &ins, &mut c, TileShape::new(2, 2)).is_err());
    }
}
