//! A self-test of processors: every catalogue op the runtime's processors
//! offer, in each element type they take, run through the runtime on
//! pseudo-random tiles and compared with the CPU kernels (or, for the
//! factorisations, checked by rebuilding the matrix). `tessera selftest`
//! runs it once per device kind, so a new plugin or driver is checked in
//! seconds before it carries real work.

use crate::{Runtime, RuntimeError, Task};
use tessera_core::kernels::{execute, KernelInput};
use tessera_core::op::Side;
use tessera_core::verify::{lu_residual, qr_residual, relative_error};
use tessera_core::{DType, Op, TileData, TileShape};

/// The outcome of one op in one element type.
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpCheck {
    /// The op and its variant, e.g. `trsm right trans`.
    pub case: String,
    pub dtype: DType,
    /// Relative error against the reference (or reconstruction residual);
    /// `None` when no processor offers the op.
    pub error: Option<f64>,
    pub tolerance: f64,
    /// Why the check failed: an error above tolerance or a failed task.
    pub failure: Option<String>,
}

impl OpCheck {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
    pub fn ran(&self) -> bool {
        self.error.is_some() || self.failure.is_some()
    }
}

/// Deterministic values in [-1, 1): a self-test must fail the same way twice.
pub(crate) fn values(seed: u64, len: usize) -> Vec<f64> {
    let mut random = tessera_core::seeded::Seeded::new(seed);
    (0..len).map(|_| 2.0 * random.unit() - 1.0).collect()
}

pub(crate) fn data(dtype: DType, v: &[f64]) -> TileData {
    match dtype {
        DType::F32 => TileData::F32(v.iter().map(|x| *x as f32).collect()),
        DType::F64 => TileData::F64(v.to_vec()),
    }
}

fn as_f64(d: &TileData) -> Vec<f64> {
    match d {
        TileData::F32(v) => v.iter().map(|x| f64::from(*x)).collect(),
        TileData::F64(v) => v.clone(),
    }
}

/// A lower-triangular `n×n` matrix with a dominant diagonal (well
/// conditioned for trsm) or, `spd`, a symmetric positive definite one.
fn structured(n: usize, seed: u64, spd: bool) -> Vec<f64> {
    let r = values(seed, n * n);
    let mut m = vec![0.0; n * n];
    for j in 0..n {
        for i in 0..n {
            m[i + j * n] = if spd {
                (r[i + j * n] + r[j + i * n]) * 0.5
            } else if i >= j {
                r[i + j * n]
            } else {
                0.0
            };
        }
        m[j + j * n] += n as f64;
    }
    m
}

/// Keeps the lower triangle (the part syrk and potrf define).
fn lower(v: &[f64], n: usize) -> Vec<f64> {
    (0..n * n)
        .map(|k| if k % n >= k / n { v[k] } else { 0.0 })
        .collect()
}

/// One case: the op, its inputs, the tile it writes, and how to compare.
pub(crate) struct Case {
    pub name: &'static str,
    pub op: Op,
    pub inputs: Vec<(Vec<f64>, TileShape)>,
    pub output: (Vec<f64>, TileShape),
    lower_only: bool,
}

pub(crate) fn cases(n: usize) -> Vec<Case> {
    let sq = TileShape::new(n, n);
    let g = |seed| (values(seed, n * n), sq);
    let trsm = |name, side, trans| Case {
        name,
        op: Op::Trsm {
            side,
            trans,
            alpha: 0.5,
        },
        inputs: vec![(structured(n, 7, false), sq)],
        output: g(8),
        lower_only: false,
    };
    vec![
        Case {
            name: "gemm",
            op: Op::gemm(1.5, 0.5),
            inputs: vec![g(1), g(2)],
            output: g(3),
            lower_only: false,
        },
        Case {
            name: "gemm transposed",
            op: Op::Gemm {
                trans_a: true,
                trans_b: true,
                alpha: -1.0,
                beta: 1.0,
            },
            inputs: vec![g(4), g(5)],
            output: g(6),
            lower_only: false,
        },
        Case {
            name: "syrk",
            op: Op::Syrk {
                alpha: -1.0,
                beta: 1.0,
            },
            inputs: vec![g(9)],
            output: (structured(n, 10, true), sq),
            lower_only: true,
        },
        trsm("trsm left", Side::Left, false),
        trsm("trsm left trans", Side::Left, true),
        trsm("trsm right", Side::Right, false),
        trsm("trsm right trans", Side::Right, true),
        Case {
            name: "potrf",
            op: Op::Potrf,
            inputs: vec![],
            output: (structured(n, 11, true), sq),
            lower_only: true,
        },
        Case {
            name: "axpy",
            op: Op::Axpy { alpha: -2.0 },
            inputs: vec![g(12)],
            output: g(13),
            lower_only: false,
        },
        Case {
            name: "sum",
            op: Op::Sum,
            inputs: vec![g(14)],
            output: (vec![0.0], TileShape::new(1, 1)),
            lower_only: false,
        },
        Case {
            name: "getrf",
            op: Op::Getrf,
            inputs: vec![],
            output: g(15),
            lower_only: false,
        },
        Case {
            name: "geqrf",
            op: Op::Geqrf,
            inputs: vec![],
            output: g(16),
            lower_only: false,
        },
    ]
}

/// Runs every case the runtime's processors offer on `order×order` tiles.
/// Failed tasks are reported in the checks, not as an error: the runtime
/// stays usable and the remaining cases run.
pub fn selftest(rt: &Runtime, order: usize) -> Result<Vec<OpCheck>, RuntimeError> {
    let order = order.max(1);
    let mut checks = Vec::new();
    for dtype in [DType::F32, DType::F64] {
        for case in cases(order) {
            let tolerance = match dtype {
                DType::F32 => 2e-3,
                DType::F64 => 1e-10,
            };
            let offered = rt
                .processors()
                .iter()
                .any(|p| p.supports(case.op.name(), Some(dtype)));
            let mut check = OpCheck {
                case: case.name.to_string(),
                dtype,
                error: None,
                tolerance,
                failure: None,
            };
            if offered {
                match run_case(rt, &case, dtype) {
                    Ok(e) => {
                        check.error = Some(e);
                        if e.is_nan() || e > tolerance {
                            check.failure = Some(format!("error {e:.2e} above {tolerance:.0e}"));
                        }
                    }
                    Err(CaseError::Failed(why)) => check.failure = Some(why),
                    Err(CaseError::Runtime(e)) => return Err(e),
                }
            }
            checks.push(check);
        }
    }
    Ok(checks)
}

/// Why a case has no error measure.
enum CaseError {
    /// The case failed: its task did, or its result is malformed.
    Failed(String),
    /// The runtime cannot go on (shut down, say).
    Runtime(RuntimeError),
}

impl From<RuntimeError> for CaseError {
    fn from(e: RuntimeError) -> Self {
        match e {
            RuntimeError::Task(failed) => CaseError::Failed(failed.cause.to_string()),
            other => CaseError::Runtime(other),
        }
    }
}

/// Runs one case through the runtime and returns its error measure.
fn run_case(rt: &Runtime, case: &Case, dtype: DType) -> Result<f64, CaseError> {
    let mut task = Task::op(case.op.clone());
    let mut keep = Vec::new();
    for (v, shape) in &case.inputs {
        let t = rt.tile(data(dtype, v), *shape)?;
        task = task.read(&t);
        keep.push(t);
    }
    let (out0, out_shape) = &case.output;
    let out = rt.tile(data(dtype, out0), *out_shape)?;
    let k = out_shape.rows.min(out_shape.cols);
    let second = if case.op.factors_first_argument() {
        let t = rt.tile(
            TileData::zeros(dtype, TileShape::new(k, 1)),
            TileShape::new(k, 1),
        )?;
        task = task.read_write(&out).write(&t);
        Some(t)
    } else if case.op.output_is_read() {
        task = task.read_write(&out);
        None
    } else {
        task = task.write(&out);
        None
    };
    let handle = rt.submit(task)?;
    rt.wait(&handle)?;
    let got = as_f64(&rt.fetch(&out)?);
    let (m, n) = (out_shape.rows, out_shape.cols);
    // The reference starts from the values as the device saw them (rounded
    // to f32 where the tiles are f32).
    let start = as_f64(&data(dtype, out0));
    match (&case.op, &second) {
        (Op::Getrf, Some(p)) => {
            lu_residual(&start, &got, &as_f64(&rt.fetch(p)?), m, n).map_err(CaseError::Failed)
        }
        (Op::Geqrf, Some(t)) => {
            qr_residual(&start, &got, &as_f64(&rt.fetch(t)?), m, n).map_err(CaseError::Failed)
        }
        _ => {
            let inputs: Vec<TileData> = case.inputs.iter().map(|(v, _)| data(dtype, v)).collect();
            let refs: Vec<KernelInput<'_>> = inputs
                .iter()
                .zip(&case.inputs)
                .map(|(d, (_, shape))| KernelInput {
                    data: d,
                    shape: *shape,
                })
                .collect();
            let mut want = data(dtype, out0);
            execute(&case.op, &refs, &mut want, *out_shape)
                .map_err(|e| CaseError::Failed(format!("reference kernel: {e}")))?;
            let want = as_f64(&want);
            Ok(if case.lower_only {
                relative_error(&lower(&got, m), &lower(&want, m))
            } else {
                relative_error(&got, &want)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_kernels_pass_their_own_selftest_and_factorisations_rebuild() {
        let rt = Runtime::builder().cpu_workers(2).build().unwrap();
        let checks = selftest(&rt, 24).unwrap();
        assert_eq!(checks.len(), 2 * cases(24).len());
        for c in &checks {
            assert!(c.ran() && c.passed(), "{c:?}");
        }
        // The factorisations were checked by reconstruction, not skipped.
        let getrf = checks.iter().find(|c| c.case == "getrf").unwrap();
        assert!(getrf.error.unwrap() < 1e-5);
    }

    #[test]
    fn structured_matrices_are_what_the_cases_need() {
        let n = 5;
        let l = structured(n, 3, false);
        assert!((0..n).all(|j| (0..j).all(|i| l[i + j * n] == 0.0)));
        let s = structured(n, 3, true);
        assert!((0..n).all(|j| (0..n).all(|i| s[i + j * n] == s[j + i * n])));
        assert!(values(1, 1000).iter().all(|x| (-1.0..1.0).contains(x)));
    }
}
