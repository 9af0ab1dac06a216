//! Performance models: how long an op takes on a processor, learned from
//! measured task times.
//!
//! Per (op, element type, processor) the model keeps the last few times in
//! each size bucket (flops, √2 apart), like StarPU's history-based models,
//! and answers with their **median**: one slow measurement (a page fault
//! storm, a preempted thread) cannot move the estimate, so it cannot send
//! every GEMM to one device, a failure reported against mean-based history
//! models. For a size it has not seen it fits `seconds = a + b·flops` by
//! least squares on the buckets' medians (StarPU's regression models).
//! A bucket counts once it holds [`TRUSTED`] samples; until then the model
//! says nothing and the caller falls back to the op's cost function at the
//! processor's peak, so a slow first run (a library loading its kernels)
//! cannot steer tasks away before it is confirmed.
//!
//! Models persist as JSON between runs ([`PerfModel::load`],
//! [`PerfModel::save`]).

use crate::dtype::DType;
use crate::op::OpName;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

/// Times kept per size bucket.
pub const PER_BUCKET: usize = 15;
/// Samples in a bucket before its median is trusted on its own.
pub const TRUSTED: usize = 3;

/// What a history is of, within one processor.
type Key = (OpName, DType);

/// The learned times of one key.
#[derive(Debug, Clone, Default)]
struct History {
    /// Size bucket → the latest times, oldest first.
    buckets: BTreeMap<i32, VecDeque<f64>>,
}

/// See the module documentation.
#[derive(Debug, Clone, Default)]
pub struct PerfModel {
    /// Processor name → its histories (two levels, so a lookup by `&str`
    /// allocates nothing on the scheduler's hot path).
    entries: HashMap<String, HashMap<Key, History>>,
    /// Measured copies between memory spaces: (source, destination) →
    /// (bytes/s, seconds of latency).
    links: std::collections::BTreeMap<(String, String), (f64, f64)>,
}

/// A measured link as stored in a model file.
#[derive(Serialize, Deserialize)]
struct FileLink {
    src: String,
    dst: String,
    bytes_per_second: f64,
    latency_seconds: f64,
}

/// One key's bucket as stored in a model file.
#[derive(Serialize, Deserialize)]
struct FileEntry {
    op: OpName,
    dtype: DType,
    processor: String,
    /// log2(flops) × 2, rounded.
    bucket: i32,
    seconds: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    format: String,
    entries: Vec<FileEntry>,
    /// Absent in files from before links were measured.
    #[serde(default)]
    links: Vec<FileLink>,
}

const FORMAT: &str = "tessera-perfmodel-1";

fn bucket(flops: f64) -> i32 {
    (flops.max(1.0).log2() * 2.0).round() as i32
}

fn bucket_flops(b: i32) -> f64 {
    (f64::from(b) / 2.0).exp2()
}

fn median(v: &VecDeque<f64>) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().collect();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

impl PerfModel {
    pub fn new() -> Self {
        PerfModel::default()
    }

    /// Records that `op` on `flops` of work took `seconds` on `processor`.
    /// Non-finite or negative times are ignored.
    pub fn record(&mut self, op: OpName, dtype: DType, processor: &str, flops: f64, seconds: f64) {
        if !(seconds.is_finite() && seconds >= 0.0) {
            return;
        }
        let times = self
            .entries
            .entry(processor.to_string())
            .or_default()
            .entry((op, dtype))
            .or_default()
            .buckets
            .entry(bucket(flops))
            .or_default();
        if times.len() == PER_BUCKET {
            times.pop_front();
        }
        times.push_back(seconds);
    }

    /// Estimated seconds of `op` on `flops` of work on `processor`, or
    /// `None` when nothing was measured for it.
    pub fn estimate(&self, op: OpName, dtype: DType, processor: &str, flops: f64) -> Option<f64> {
        let h = self.entries.get(processor)?.get(&(op, dtype))?;
        let b = bucket(flops);
        if let Some(times) = h.buckets.get(&b).filter(|t| t.len() >= TRUSTED) {
            return Some(median(times));
        }
        // Only confirmed buckets: a first measurement alone may be a
        // library's lazy start (cuBLAS loads its kernels on first use),
        // and trusting it would send every such task elsewhere for good,
        // where no later sample could correct it.
        let points: Vec<(f64, f64)> = h
            .buckets
            .iter()
            .filter(|(_, t)| t.len() >= TRUSTED)
            .map(|(b, t)| (bucket_flops(*b), median(t)))
            .collect();
        match points.len() {
            0 => None,
            1 => Some(points[0].1 * flops.max(1.0) / points[0].0),
            _ => {
                // Least squares for seconds = a + c·flops.
                let n = points.len() as f64;
                let (sx, sy) = points
                    .iter()
                    .fold((0.0, 0.0), |(x, y), p| (x + p.0, y + p.1));
                let (mx, my) = (sx / n, sy / n);
                let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(xy, xx), p| {
                    (xy + (p.0 - mx) * (p.1 - my), xx + (p.0 - mx) * (p.0 - mx))
                });
                let c = if sxx > 0.0 { (sxy / sxx).max(0.0) } else { 0.0 };
                let a = (my - c * mx).max(0.0);
                Some(a + c * flops.max(0.0))
            }
        }
    }

    /// Records a measured link from space `src` to `dst` (names as the
    /// runtime gives them: `host`, a device's name). Non-positive or
    /// non-finite bandwidths are ignored.
    pub fn record_link(&mut self, src: &str, dst: &str, bytes_per_second: f64, latency: f64) {
        if bytes_per_second.is_finite() && bytes_per_second > 0.0 && latency.is_finite() {
            self.links.insert(
                (src.to_string(), dst.to_string()),
                (bytes_per_second, latency.max(0.0)),
            );
        }
    }

    /// The measured (bytes/s, latency) from `src` to `dst`, if any.
    pub fn link(&self, src: &str, dst: &str) -> Option<(f64, f64)> {
        self.links.get(&(src.to_string(), dst.to_string())).copied()
    }

    /// Every measured link: (source, destination, bytes/s, latency).
    pub fn links(&self) -> Vec<(String, String, f64, f64)> {
        self.links
            .iter()
            .map(|((a, b), (bw, lat))| (a.clone(), b.clone(), *bw, *lat))
            .collect()
    }

    /// The median time and sample count of every bucket, for reports:
    /// (processor, op, dtype, flops, seconds, samples), sorted.
    pub fn table(&self) -> Vec<(String, OpName, DType, f64, f64, usize)> {
        let mut rows: Vec<_> = self
            .entries
            .iter()
            .flat_map(|(p, keys)| {
                keys.iter().flat_map(move |((op, dt), h)| {
                    h.buckets
                        .iter()
                        .filter(|(_, t)| !t.is_empty())
                        .map(move |(b, t)| {
                            (p.clone(), *op, *dt, bucket_flops(*b), median(t), t.len())
                        })
                })
            })
            .collect();
        rows.sort_by(|a, b| {
            (a.0.as_str(), a.1.as_str(), a.2.name())
                .cmp(&(b.0.as_str(), b.1.as_str(), b.2.name()))
                .then(a.3.total_cmp(&b.3))
        });
        rows
    }

    /// Measured times held, over every key.
    pub fn samples(&self) -> usize {
        self.entries
            .values()
            .flat_map(HashMap::values)
            .flat_map(|h| h.buckets.values())
            .map(VecDeque::len)
            .sum()
    }

    /// Reads a model file; a malformed one is an error that says where.
    pub fn load(path: &Path) -> Result<PerfModel, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading performance model {}: {e}", path.display()))?;
        let file: FileFormat = serde_json::from_str(&text)
            .map_err(|e| format!("performance model {}: {e}", path.display()))?;
        if file.format != FORMAT {
            return Err(format!(
                "performance model {}: format `{}`, expected `{FORMAT}`",
                path.display(),
                file.format
            ));
        }
        let mut model = PerfModel::new();
        for e in file.entries {
            let mut times: VecDeque<f64> = e
                .seconds
                .into_iter()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .collect();
            while times.len() > PER_BUCKET {
                times.pop_front();
            }
            model
                .entries
                .entry(e.processor)
                .or_default()
                .entry((e.op, e.dtype))
                .or_default()
                .buckets
                .insert(e.bucket, times);
        }
        for l in file.links {
            model.record_link(&l.src, &l.dst, l.bytes_per_second, l.latency_seconds);
        }
        Ok(model)
    }

    /// Writes the model, through a temporary file renamed into place.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        let mut entries: Vec<FileEntry> = self
            .entries
            .iter()
            .flat_map(|(processor, keys)| {
                keys.iter().flat_map(move |((op, dtype), h)| {
                    h.buckets.iter().map(move |(b, t)| FileEntry {
                        op: *op,
                        dtype: *dtype,
                        processor: processor.clone(),
                        bucket: *b,
                        seconds: t.iter().copied().collect(),
                    })
                })
            })
            .collect();
        entries.sort_by(|a, b| {
            (a.processor.as_str(), a.op.as_str(), a.bucket).cmp(&(
                b.processor.as_str(),
                b.op.as_str(),
                b.bucket,
            ))
        });
        let links = self
            .links()
            .into_iter()
            .map(|(src, dst, bytes_per_second, latency_seconds)| FileLink {
                src,
                dst,
                bytes_per_second,
                latency_seconds,
            })
            .collect();
        let text = serde_json::to_string_pretty(&FileFormat {
            format: FORMAT.to_string(),
            entries,
            links,
        })
        .map_err(|e| e.to_string())?;
        let tmp = path.with_extension("partial");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| format!("writing performance model {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_outlier_does_not_move_the_estimate() {
        let mut m = PerfModel::new();
        for _ in 0..9 {
            m.record(OpName::Gemm, DType::F64, "cuda0", 1e9, 1e-3);
        }
        m.record(OpName::Gemm, DType::F64, "cuda0", 1e9, 1.0);
        let e = m.estimate(OpName::Gemm, DType::F64, "cuda0", 1e9).unwrap();
        assert!((e - 1e-3).abs() < 1e-12, "{e}");
        // Other keys know nothing.
        assert_eq!(m.estimate(OpName::Gemm, DType::F32, "cuda0", 1e9), None);
        assert_eq!(m.estimate(OpName::Gemm, DType::F64, "cpu0", 1e9), None);
    }

    #[test]
    fn a_first_slow_sample_is_not_trusted_until_confirmed() {
        let mut m = PerfModel::new();
        // A library's lazy start: the first trsm on a device takes 0.5 s.
        m.record(OpName::Trsm, DType::F64, "cuda0", 8e9, 0.5);
        assert_eq!(m.estimate(OpName::Trsm, DType::F64, "cuda0", 8e9), None);
        assert_eq!(m.estimate(OpName::Trsm, DType::F64, "cuda0", 1e9), None);
        m.record(OpName::Trsm, DType::F64, "cuda0", 8e9, 2e-4);
        m.record(OpName::Trsm, DType::F64, "cuda0", 8e9, 2e-4);
        assert_eq!(
            m.estimate(OpName::Trsm, DType::F64, "cuda0", 8e9),
            Some(2e-4)
        );
    }

    #[test]
    fn unseen_sizes_come_from_a_fit_and_old_times_age_out() {
        let mut m = PerfModel::new();
        // seconds = 1e-5 + flops / 1e10
        for flops in [1e6, 1e8, 1e10] {
            for _ in 0..3 {
                m.record(OpName::Syrk, DType::F32, "cpu0", flops, 1e-5 + flops / 1e10);
            }
        }
        let e = m.estimate(OpName::Syrk, DType::F32, "cpu0", 1e9).unwrap();
        assert!((e / (1e-5 + 0.1) - 1.0).abs() < 0.2, "{e}");
        // A bucket remembers only its latest PER_BUCKET times.
        for _ in 0..PER_BUCKET {
            m.record(OpName::Syrk, DType::F32, "cpu0", 1e6, 5.0);
        }
        assert_eq!(m.estimate(OpName::Syrk, DType::F32, "cpu0", 1e6), Some(5.0));
    }

    #[test]
    fn models_round_trip_through_a_file_and_bad_files_say_why() {
        let mut m = PerfModel::new();
        m.record(OpName::Potrf, DType::F64, "cpu3", 2e8, 0.02);
        m.record(OpName::Potrf, DType::F64, "cpu3", 2e8, 0.03);
        m.record(OpName::Potrf, DType::F64, "cpu3", 2e8, 0.01);
        m.record_link("host", "cuda0", 25e9, 8e-6);
        m.record_link("host", "cuda1", f64::NAN, 0.0);
        let dir = std::env::temp_dir().join(format!("tessera-pm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("model.json");
        m.save(&path).unwrap();
        let back = PerfModel::load(&path).unwrap();
        assert_eq!(back.samples(), 3);
        assert_eq!(
            back.estimate(OpName::Potrf, DType::F64, "cpu3", 2e8),
            Some(0.02)
        );
        assert_eq!(back.link("host", "cuda0"), Some((25e9, 8e-6)));
        assert_eq!(back.links().len(), 1, "a NaN bandwidth is never kept");
        assert_eq!(back.table()[0].4, 0.02);
        // Files from before links were measured still load.
        std::fs::write(
            &path,
            "{\"format\": \"tessera-perfmodel-1\", \"entries\": []}",
        )
        .unwrap();
        assert!(PerfModel::load(&path).unwrap().links().is_empty());
        std::fs::write(
            &path,
            "{\"format\": \"tessera-perfmodel-1\",\n \"entries\": [1,",
        )
        .unwrap();
        let err = PerfModel::load(&path).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        std::fs::write(&path, "{\"format\": \"other\", \"entries\": []}").unwrap();
        assert!(PerfModel::load(&path).unwrap_err().contains("expected"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
