//! Checks of factorisations by reconstruction, for tests and for
//! `tessera selftest`: two correct LU or QR factorisations of one matrix may
//! differ (ties between pivots, sign conventions), but both rebuild it.
//! Matrices are column-major `f64` slices; residuals are relative to the
//! largest entry of the original matrix.

/// `max|P·A − L·U| / max|A|` for `getrf`'s output: `lu` holds `L` (unit
/// diagonal, below) and `U` (on and above), `pivots` LAPACK's 0-based row
/// swaps, applied in order. A pivot that is not a row index at or below its
/// step is an error.
pub fn lu_residual(
    a: &[f64],
    lu: &[f64],
    pivots: &[f64],
    m: usize,
    n: usize,
) -> Result<f64, String> {
    let k = m.min(n);
    if a.len() != m * n || lu.len() != m * n || pivots.len() != k {
        return Err(format!("lu_residual: sizes do not match a {m}x{n} matrix"));
    }
    let mut pa = rows(a, m, n);
    for (i, p) in pivots.iter().enumerate() {
        if p.fract() != 0.0 || *p < i as f64 || *p >= m as f64 {
            return Err(format!("pivot {i} is {p}, not a row in {i}..{m}"));
        }
        pa.swap(i, *p as usize);
    }
    let mut worst = 0.0f64;
    for (i, row) in pa.iter().enumerate() {
        for (j, want) in row.iter().enumerate() {
            let mut s = 0.0;
            for q in 0..k.min(i + 1).min(j + 1) {
                let l = if q == i { 1.0 } else { lu[i + q * m] };
                s += l * lu[q + j * m];
            }
            worst = worst.max((s - want).abs());
        }
    }
    Ok(worst / max_abs(a))
}

/// `max|Q·R − A| / max|A|` for `geqrf`'s output: `f` holds `R` (on and
/// above the diagonal) and the Householder vectors (below, unit leading
/// entry implied), `tau` the reflectors' factors, `Hᵢ = I − τᵢ·vᵢ·vᵢᵀ`.
pub fn qr_residual(a: &[f64], f: &[f64], tau: &[f64], m: usize, n: usize) -> Result<f64, String> {
    let k = m.min(n);
    if a.len() != m * n || f.len() != m * n || tau.len() != k {
        return Err(format!("qr_residual: sizes do not match a {m}x{n} matrix"));
    }
    // X = R, then X = H_j·X for j = k-1 down to 0; X by columns.
    let mut x: Vec<Vec<f64>> = (0..n)
        .map(|j| {
            (0..m)
                .map(|i| if i <= j { f[i + j * m] } else { 0.0 })
                .collect()
        })
        .collect();
    for j in (0..k).rev() {
        let v: Vec<f64> = (0..m)
            .map(|i| match i.cmp(&j) {
                std::cmp::Ordering::Less => 0.0,
                std::cmp::Ordering::Equal => 1.0,
                std::cmp::Ordering::Greater => f[i + j * m],
            })
            .collect();
        for column in x.iter_mut() {
            let dot: f64 = v.iter().zip(column.iter()).map(|(a, b)| a * b).sum();
            for (xi, vi) in column.iter_mut().zip(&v) {
                *xi -= tau[j] * vi * dot;
            }
        }
    }
    let worst = x
        .iter()
        .flatten()
        .zip(a)
        .map(|(got, want)| (got - want).abs())
        .fold(0.0, f64::max);
    Ok(worst / max_abs(a))
}

/// `max|got − want| / max|want|`: the error measure of `tessera selftest`.
pub fn relative_error(got: &[f64], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| {
            if g.is_nan() {
                f64::INFINITY
            } else {
                (g - w).abs()
            }
        })
        .fold(0.0, f64::max);
    worst / max_abs(want)
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter()
        .fold(0.0f64, |m, x| m.max(x.abs()))
        .max(f64::MIN_POSITIVE)
}

/// The rows of a column-major `m×n` matrix.
fn rows(v: &[f64], m: usize, n: usize) -> Vec<Vec<f64>> {
    (0..m)
        .map(|i| (0..n).map(|j| v[i + j * m]).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wrong_factorisation_has_a_large_residual() {
        // A = [[4, 3], [6, 3]]: pivot row 1 first, L = [[1, 0], [2/3, 1]],
        // U = [[6, 3], [0, 1]].
        let a = [4.0, 6.0, 3.0, 3.0];
        let lu = [6.0, 2.0 / 3.0, 3.0, 1.0];
        assert!(lu_residual(&a, &lu, &[1.0, 1.0], 2, 2).unwrap() < 1e-15);
        assert!(lu_residual(&a, &lu, &[0.0, 1.0], 2, 2).unwrap() > 0.1);
        assert!(lu_residual(&a, &lu, &[0.5, 1.0], 2, 2).is_err());
        assert!(lu_residual(&a, &lu, &[2.0, 1.0], 2, 2).is_err());
        // The identity is its own QR with no reflections.
        let id = [1.0, 0.0, 0.0, 1.0];
        assert!(qr_residual(&id, &id, &[0.0, 0.0], 2, 2).unwrap() < 1e-15);
        assert!(qr_residual(&id, &id, &[1.0, 0.0], 2, 2).unwrap() > 0.1);
        assert_eq!(relative_error(&[1.0, f64::NAN], &[1.0, 2.0]), f64::INFINITY);
        assert!((relative_error(&[1.0, 2.5], &[1.0, 2.0]) - 0.25).abs() < 1e-15);
    }
}
