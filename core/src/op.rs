//! The op catalogue: every op Tessera knows, its signature and its cost.
//!
//! An op is declared once; each processor kind states which ops it
//! implements (see [`crate::processor::ProcessorDesc`]). Cost functions give
//! floating-point operations and bytes touched from the tile shapes alone, so
//! schedulers can reason about a task before it runs.
//!
//! The dense ops follow BLAS/LAPACK conventions on column-major tiles and use
//! the lower triangle where a triangle is meant.
//!
//! ```
//! use tessera_core::op::Op;
//! use tessera_core::{Access, DType, TileId, TileMeta, TileShape};
//!
//! let t = |id, r, c| TileMeta { id: TileId(id), shape: TileShape::new(r, c), dtype: DType::F64 };
//! let gemm = Op::gemm_nt(-1.0, 1.0); // C = C - A·Bᵀ
//! let args = [(Access::Read, t(0, 4, 8)), (Access::Read, t(1, 5, 8)), (Access::ReadWrite, t(2, 4, 5))];
//! gemm.check(&args).unwrap();
//! assert_eq!(gemm.flops(&args), 2.0 * 4.0 * 5.0 * 8.0);
//! ```

use crate::access::Access;
use crate::error::CoreError;
use crate::tile::{TileMeta, TileShape};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::fmt;

/// Which side a triangular matrix multiplies from in [`Op::Trsm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    /// Solve `op(L)·X = alpha·B`.
    Left,
    /// Solve `X·op(L) = alpha·B`.
    Right,
}

/// The name of an op, as processors declare support and metrics label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum OpName {
    Gemm,
    Syrk,
    Trsm,
    Potrf,
    Axpy,
    Sum,
    Getrf,
    Geqrf,
    /// A user closure: runs on CPU processors only.
    Closure,
    /// A user kernel compiled from source by a device plugin.
    Kernel,
}

impl OpName {
    pub const ALL: [OpName; 10] = [
        OpName::Gemm,
        OpName::Syrk,
        OpName::Trsm,
        OpName::Potrf,
        OpName::Axpy,
        OpName::Sum,
        OpName::Getrf,
        OpName::Geqrf,
        OpName::Closure,
        OpName::Kernel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OpName::Gemm => "gemm",
            OpName::Syrk => "syrk",
            OpName::Trsm => "trsm",
            OpName::Potrf => "potrf",
            OpName::Axpy => "axpy",
            OpName::Sum => "sum",
            OpName::Getrf => "getrf",
            OpName::Geqrf => "geqrf",
            OpName::Closure => "closure",
            OpName::Kernel => "kernel",
        }
    }
}

impl fmt::Display for OpName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One op with its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// `C = alpha·op(A)·op(B) + beta·C`; arguments `A` (read), `B` (read), `C`.
    Gemm {
        trans_a: bool,
        trans_b: bool,
        alpha: f64,
        beta: f64,
    },
    /// Lower triangle of `C = alpha·A·Aᵀ + beta·C`; arguments `A` (read), `C`.
    Syrk { alpha: f64, beta: f64 },
    /// Triangular solve with the lower triangle of `L`, in place in `B`;
    /// arguments `L` (read), `B` (read-write).
    Trsm { side: Side, trans: bool, alpha: f64 },
    /// Cholesky factorisation `A = L·Lᵀ` of the lower triangle, in place.
    Potrf,
    /// Elementwise `Y = alpha·X + Y` on tiles of one shape; arguments `X`
    /// (read), `Y` (read-write).
    Axpy { alpha: f64 },
    /// The sum of every element of `X` into the 1×1 tile `S`; arguments
    /// `X` (read), `S` (write).
    Sum,
    /// LU factorisation with partial pivoting `P·A = L·U`, in place, as
    /// LAPACK's `getrf`; arguments `A` (read-write, m×n) and `P` (write,
    /// min(m,n)×1), where `P[i]` is the 0-based row swapped with row `i`,
    /// in order.
    Getrf,
    /// QR factorisation `A = Q·R`, in place, as LAPACK's `geqrf`: `R` on and
    /// above the diagonal, Householder vectors below it; arguments `A`
    /// (read-write, m×n) and `T` (write, min(m,n)×1), the reflectors'
    /// scalar factors, with `Hᵢ = I − Tᵢ·vᵢ·vᵢᵀ`.
    Geqrf,
    /// A user closure with its own label and an optional flop estimate.
    Closure {
        label: Cow<'static, str>,
        flops: f64,
    },
    /// A user kernel registered with the runtime. Boxed: it is rare, and
    /// every task moves an `Op` through the scheduler's channels.
    Kernel(Box<KernelCall>),
}

/// One launch of a user kernel: its tiles are the buffer arguments in
/// order, `scalars` follow them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KernelCall {
    /// The runtime's id of the registered kernel.
    pub kernel: u64,
    pub label: Cow<'static, str>,
    /// Global size in x and y, and threads per block (workgroup) in x.
    pub grid: [u32; 3],
    pub scalars: Vec<f64>,
    pub flops: f64,
}

impl Op {
    /// `C = alpha·A·Bᵀ + beta·C`, the update of a right-looking Cholesky.
    pub fn gemm_nt(alpha: f64, beta: f64) -> Op {
        Op::Gemm {
            trans_a: false,
            trans_b: true,
            alpha,
            beta,
        }
    }

    /// `C = alpha·A·B + beta·C`.
    pub fn gemm(alpha: f64, beta: f64) -> Op {
        Op::Gemm {
            trans_a: false,
            trans_b: false,
            alpha,
            beta,
        }
    }

    /// A closure task labelled `label` for metrics and traces; a static
    /// label costs no allocation per task.
    pub fn closure(label: impl Into<Cow<'static, str>>) -> Op {
        Op::Closure {
            label: label.into(),
            flops: 0.0,
        }
    }

    pub fn name(&self) -> OpName {
        match self {
            Op::Gemm { .. } => OpName::Gemm,
            Op::Syrk { .. } => OpName::Syrk,
            Op::Trsm { .. } => OpName::Trsm,
            Op::Potrf => OpName::Potrf,
            Op::Axpy { .. } => OpName::Axpy,
            Op::Sum => OpName::Sum,
            Op::Getrf => OpName::Getrf,
            Op::Geqrf => OpName::Geqrf,
            Op::Closure { .. } => OpName::Closure,
            Op::Kernel(_) => OpName::Kernel,
        }
    }

    /// Whether the op's last argument is read before it is written (so it
    /// is passed read-write, not write-only).
    pub fn output_is_read(&self) -> bool {
        match self {
            Op::Gemm { beta, .. } | Op::Syrk { beta, .. } => *beta != 0.0,
            Op::Trsm { .. } | Op::Potrf | Op::Axpy { .. } => true,
            Op::Sum | Op::Getrf | Op::Geqrf | Op::Closure { .. } | Op::Kernel(_) => false,
        }
    }

    /// Whether the op factors its first argument in place and writes a
    /// second output (pivots, reflector factors) as its last.
    pub fn factors_first_argument(&self) -> bool {
        matches!(self, Op::Getrf | Op::Geqrf)
    }

    /// Number of tile arguments, or `None` for closures (any number).
    pub fn arity(&self) -> Option<usize> {
        match self {
            Op::Gemm { .. } => Some(3),
            Op::Syrk { .. }
            | Op::Trsm { .. }
            | Op::Axpy { .. }
            | Op::Sum
            | Op::Getrf
            | Op::Geqrf => Some(2),
            Op::Potrf => Some(1),
            Op::Closure { .. } | Op::Kernel(_) => None,
        }
    }

    /// Checks arity, access modes, element types and shapes, so that a bad
    /// task is rejected at submission rather than failing inside a kernel.
    pub fn check(&self, args: &[(Access, TileMeta)]) -> Result<(), CoreError> {
        let op = self.name();
        let Some(arity) = self.arity() else {
            return Ok(());
        };
        if args.len() != arity {
            return Err(CoreError::Arity {
                op,
                expected: arity,
                got: args.len(),
            });
        }
        let (inputs, output) = args.split_at(arity - 1);
        for (index, (access, _)) in inputs.iter().enumerate() {
            if self.factors_first_argument() {
                if *access != Access::ReadWrite {
                    return Err(CoreError::AccessMode {
                        op,
                        index,
                        expected: "ReadWrite",
                        got: *access,
                    });
                }
                continue;
            }
            if *access != Access::Read {
                return Err(CoreError::AccessMode {
                    op,
                    index,
                    expected: "Read",
                    got: *access,
                });
            }
        }
        let out_access = output[0].0;
        let out_ok = if self.output_is_read() {
            out_access == Access::ReadWrite
        } else {
            out_access.writes()
        };
        if !out_ok {
            return Err(CoreError::AccessMode {
                op,
                index: arity - 1,
                expected: if self.output_is_read() {
                    "ReadWrite"
                } else {
                    "Write or ReadWrite"
                },
                got: out_access,
            });
        }
        let dtype = args[0].1.dtype;
        for (index, (_, meta)) in args.iter().enumerate() {
            if meta.dtype != dtype {
                return Err(CoreError::DTypeMismatch {
                    op,
                    index,
                    expected: dtype,
                    got: meta.dtype,
                });
            }
        }
        let shapes: Vec<TileShape> = args.iter().map(|(_, m)| m.shape).collect();
        check_shapes(self, &shapes).map_err(|detail| CoreError::Shape { op, detail })
    }

    /// Floating-point operations of one execution.
    pub fn flops(&self, args: &[(Access, TileMeta)]) -> f64 {
        let dim = |i: usize| args.get(i).map(|(_, m)| m.shape);
        let f = |x: usize| x as f64;
        match self {
            Op::Gemm { trans_a, .. } => match (dim(0), dim(2)) {
                (Some(a), Some(c)) => {
                    let k = if *trans_a { a.rows } else { a.cols };
                    2.0 * f(c.rows) * f(c.cols) * f(k)
                }
                _ => 0.0,
            },
            Op::Syrk { .. } => match dim(0) {
                Some(a) => f(a.rows) * f(a.rows + 1) * f(a.cols),
                None => 0.0,
            },
            Op::Trsm { side, .. } => match dim(1) {
                Some(b) => match side {
                    Side::Right => f(b.rows) * f(b.cols) * f(b.cols),
                    Side::Left => f(b.cols) * f(b.rows) * f(b.rows),
                },
                None => 0.0,
            },
            Op::Potrf => match dim(0) {
                Some(a) => {
                    let n = f(a.rows);
                    n * n * n / 3.0 + n * n / 2.0 + n / 6.0
                }
                None => 0.0,
            },
            Op::Axpy { .. } => dim(0).map_or(0.0, |x| 2.0 * f(x.len())),
            Op::Sum => dim(0).map_or(0.0, |x| f(x.len())),
            // LAPACK's operation counts for m >= n (and by symmetry otherwise).
            Op::Getrf => dim(0).map_or(0.0, |a| {
                let (m, n) = (f(a.rows.max(a.cols)), f(a.rows.min(a.cols)));
                m * n * n - n * n * n / 3.0
            }),
            Op::Geqrf => dim(0).map_or(0.0, |a| {
                let (m, n) = (f(a.rows.max(a.cols)), f(a.rows.min(a.cols)));
                2.0 * m * n * n - 2.0 * n * n * n / 3.0
            }),
            Op::Closure { flops, .. } => *flops,
            Op::Kernel(k) => k.flops,
        }
    }

    /// Bytes read plus bytes written by one execution.
    pub fn bytes(&self, args: &[(Access, TileMeta)]) -> f64 {
        args.iter()
            .map(|(access, meta)| {
                let b = meta.bytes() as f64;
                b * (f64::from(u8::from(access.reads())) + f64::from(u8::from(access.writes())))
            })
            .sum()
    }
}

fn check_shapes(op: &Op, s: &[TileShape]) -> Result<(), String> {
    match op {
        Op::Gemm {
            trans_a, trans_b, ..
        } => {
            let (m, ka) = if *trans_a {
                (s[0].cols, s[0].rows)
            } else {
                (s[0].rows, s[0].cols)
            };
            let (kb, n) = if *trans_b {
                (s[1].cols, s[1].rows)
            } else {
                (s[1].rows, s[1].cols)
            };
            if ka != kb || s[2].rows != m || s[2].cols != n {
                return Err(format!(
                    "op(A) is {m}x{ka}, op(B) is {kb}x{n}, C is {}",
                    s[2]
                ));
            }
        }
        Op::Syrk { .. } => {
            if !s[1].is_square() || s[1].rows != s[0].rows {
                return Err(format!(
                    "A is {}, C is {} (C must be square with A's rows)",
                    s[0], s[1]
                ));
            }
        }
        Op::Trsm { side, .. } => {
            let needed = match side {
                Side::Left => s[1].rows,
                Side::Right => s[1].cols,
            };
            if !s[0].is_square() || s[0].rows != needed {
                return Err(format!(
                    "L is {}, B is {} (L must be square, {needed} wide)",
                    s[0], s[1]
                ));
            }
        }
        Op::Potrf => {
            if !s[0].is_square() {
                return Err(format!("A is {} but must be square", s[0]));
            }
        }
        Op::Axpy { .. } => {
            if s[0] != s[1] {
                return Err(format!("X is {}, Y is {} (they must match)", s[0], s[1]));
            }
        }
        Op::Sum => {
            if s[1] != TileShape::new(1, 1) {
                return Err(format!("the sum goes into a 1x1 tile, not {}", s[1]));
            }
        }
        Op::Getrf | Op::Geqrf => {
            let k = s[0].rows.min(s[0].cols);
            if s[1] != TileShape::new(k, 1) {
                return Err(format!(
                    "A is {}, so its second output must be {k}x1, not {}",
                    s[0], s[1]
                ));
            }
        }
        Op::Closure { .. } | Op::Kernel(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, TileId};

    fn t(r: usize, c: usize) -> TileMeta {
        TileMeta {
            id: TileId(0),
            shape: TileShape::new(r, c),
            dtype: DType::F32,
        }
    }

    #[test]
    fn gemm_shapes_are_checked_with_transposes() {
        let op = Op::gemm_nt(1.0, 1.0);
        let ok = [
            (Access::Read, t(4, 3)),
            (Access::Read, t(5, 3)),
            (Access::ReadWrite, t(4, 5)),
        ];
        assert!(op.check(&ok).is_ok());
        let bad = [
            (Access::Read, t(4, 3)),
            (Access::Read, t(3, 5)),
            (Access::ReadWrite, t(4, 5)),
        ];
        assert!(matches!(
            op.check(&bad),
            Err(CoreError::Shape {
                op: OpName::Gemm,
                ..
            })
        ));
    }

    #[test]
    fn output_that_is_read_needs_read_write() {
        let op = Op::Potrf;
        assert!(matches!(
            op.check(&[(Access::Write, t(4, 4))]),
            Err(CoreError::AccessMode { index: 0, .. })
        ));
        let zero_beta = Op::gemm(1.0, 0.0);
        let args = [
            (Access::Read, t(2, 2)),
            (Access::Read, t(2, 2)),
            (Access::Write, t(2, 2)),
        ];
        assert!(zero_beta.check(&args).is_ok());
    }

    #[test]
    fn mixed_dtypes_and_arity_are_rejected() {
        let mut b = t(4, 4);
        b.dtype = DType::F64;
        let op = Op::Trsm {
            side: Side::Right,
            trans: true,
            alpha: 1.0,
        };
        assert!(matches!(
            op.check(&[(Access::Read, t(4, 4)), (Access::ReadWrite, b)]),
            Err(CoreError::DTypeMismatch { index: 1, .. })
        ));
        assert!(matches!(
            op.check(&[(Access::Read, t(4, 4))]),
            Err(CoreError::Arity { .. })
        ));
    }

    #[test]
    fn cost_functions_match_textbook_counts() {
        let n = 10usize;
        let potrf = Op::Potrf.flops(&[(Access::ReadWrite, t(n, n))]);
        assert!((potrf - (1000.0 / 3.0 + 50.0 + 10.0 / 6.0)).abs() < 1e-9);
        let trsm = Op::Trsm {
            side: Side::Right,
            trans: true,
            alpha: 1.0,
        };
        assert_eq!(
            trsm.flops(&[(Access::Read, t(n, n)), (Access::ReadWrite, t(7, n))]),
            700.0
        );
        let syrk = Op::Syrk {
            alpha: -1.0,
            beta: 1.0,
        };
        assert_eq!(
            syrk.flops(&[(Access::Read, t(n, 4)), (Access::ReadWrite, t(n, n))]),
            440.0
        );
        // bytes: A read once (4*4*4), C read and written (2*4*4*4).
        let gemm = Op::gemm(1.0, 1.0);
        let args = [
            (Access::Read, t(4, 4)),
            (Access::Read, t(4, 4)),
            (Access::ReadWrite, t(4, 4)),
        ];
        assert_eq!(gemm.bytes(&args), 64.0 * 4.0);
    }
}
