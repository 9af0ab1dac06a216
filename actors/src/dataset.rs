//! Datasets that live on disk: a 2-D array in a raw binary file, an `.npy`
//! file, or a directory of `.npy` files stacked along their contiguous
//! axis, read lazily block by block so any op can run over data far larger
//! than memory.
//!
//! A *block* is a tile whose columns are the array's contiguous lines, so
//! a block is one large sequential read with no reshuffling: for a
//! column-major (Fortran-order) array it is a block of columns; for a
//! row-major (C-order, NumPy's default) array it is the transpose of a
//! block of rows. [`Dataset::for_each_block`] reads blocks on threads of
//! its own, `readahead` blocks ahead of the tasks that use them, and keeps
//! at most `readahead` blocks' tasks in flight, so memory stays bounded
//! whatever the dataset's size.
//!
//! Nothing here writes to a dataset's files. Results go out with
//! [`write_npy`], through a temporary file renamed into place once whole,
//! so a failed run never leaves a partial result under the final name.

use crate::objects::ObjectSource;
use crate::{Runtime, RuntimeError, TaskHandle, Tile};
use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tessera_core::{DType, TileData, TileShape};

/// Why a dataset cannot be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("{path}: {why}")]
    File { path: PathBuf, why: String },
    #[error("dataset: {0}")]
    Invalid(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

fn file_error(path: &Path, why: impl Into<String>) -> DatasetError {
    DatasetError::File {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

/// Memory order of the array in its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// C order: each row is contiguous.
    RowMajor,
    /// Fortran order: each column is contiguous.
    ColumnMajor,
}

/// Where a segment's bytes are.
#[derive(Debug, Clone)]
enum Source {
    File(PathBuf),
    Object(Arc<ObjectSource>, String),
}

impl Source {
    fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Object(s, key) => s.url(key),
        }
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DatasetError> {
        match self {
            Source::File(path) => {
                let file =
                    std::fs::File::open(path).map_err(|e| file_error(path, e.to_string()))?;
                file.read_exact_at(buf, offset).map_err(|e| {
                    file_error(
                        path,
                        format!("reading {} bytes at {offset}: {e}", buf.len()),
                    )
                })
            }
            Source::Object(store, key) => store.read_at(key, offset, buf),
        }
    }

    fn size(&self) -> Result<u64, DatasetError> {
        match self {
            Source::File(path) => Ok(std::fs::metadata(path)
                .map_err(|e| file_error(path, e.to_string()))?
                .len()),
            Source::Object(store, key) => store.size(key),
        }
    }
}

/// One file's (or object's) share of the array: `lines` contiguous lines
/// from `offset`.
#[derive(Debug, Clone)]
struct Segment {
    source: Source,
    offset: u64,
    lines: usize,
}

/// A 2-D array on disk.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub order: Order,
    segments: Vec<Segment>,
}

impl Dataset {
    /// A raw binary file of `rows × cols` elements in `order`, native
    /// endianness, no header.
    pub fn raw(
        path: impl AsRef<Path>,
        dtype: DType,
        rows: usize,
        cols: usize,
        order: Order,
    ) -> Result<Dataset, DatasetError> {
        let ds = Dataset::single(
            Source::File(path.as_ref().to_path_buf()),
            0,
            dtype,
            rows,
            cols,
            order,
        );
        ds.check_lengths()?;
        Ok(ds)
    }

    /// [`Dataset::raw`] for an object in an S3-compatible bucket.
    pub fn raw_object(
        store: &Arc<ObjectSource>,
        key: &str,
        dtype: DType,
        rows: usize,
        cols: usize,
        order: Order,
    ) -> Result<Dataset, DatasetError> {
        let source = Source::Object(Arc::clone(store), key.to_string());
        let ds = Dataset::single(source, 0, dtype, rows, cols, order);
        ds.check_lengths()?;
        Ok(ds)
    }

    /// [`Dataset::npy`] for an object in an S3-compatible bucket.
    pub fn npy_object(store: &Arc<ObjectSource>, key: &str) -> Result<Dataset, DatasetError> {
        Dataset::npy_from(Source::Object(Arc::clone(store), key.to_string()))
    }

    /// An `.npy` file holding a 2-D (or 1-D, as one column) array of
    /// little-endian `f4` or `f8`.
    pub fn npy(path: impl AsRef<Path>) -> Result<Dataset, DatasetError> {
        Dataset::npy_from(Source::File(path.as_ref().to_path_buf()))
    }

    fn npy_from(source: Source) -> Result<Dataset, DatasetError> {
        let header = read_npy_header(&source)?;
        let ds = Dataset::single(
            source,
            header.data_offset,
            header.dtype,
            header.rows,
            header.cols,
            header.order,
        );
        ds.check_lengths()?;
        Ok(ds)
    }

    /// Every `.npy` file of `dir`, in name order, stacked along their
    /// contiguous axis: row-major files on top of each other, column-major
    /// ones side by side. They must agree on element type, order and the
    /// other dimension.
    pub fn npy_dir(dir: impl AsRef<Path>) -> Result<Dataset, DatasetError> {
        let dir = dir.as_ref();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| file_error(dir, e.to_string()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "npy"))
            .collect();
        files.sort();
        let Some(first) = files.first() else {
            return Err(file_error(dir, "no .npy files in this directory"));
        };
        let mut ds = Dataset::npy(first)?;
        for path in &files[1..] {
            let next = Dataset::npy(path)?;
            if next.dtype != ds.dtype || next.order != ds.order || next.minor() != ds.minor() {
                return Err(file_error(
                    path,
                    format!(
                        "{} {}x{} {:?} does not stack with {} {}x{} {:?}",
                        next.dtype,
                        next.rows,
                        next.cols,
                        next.order,
                        ds.dtype,
                        ds.rows,
                        ds.cols,
                        ds.order
                    ),
                ));
            }
            match ds.order {
                Order::RowMajor => ds.rows += next.rows,
                Order::ColumnMajor => ds.cols += next.cols,
            }
            ds.segments.extend(next.segments);
        }
        Ok(ds)
    }

    fn single(
        source: Source,
        offset: u64,
        dtype: DType,
        rows: usize,
        cols: usize,
        order: Order,
    ) -> Dataset {
        let lines = match order {
            Order::RowMajor => rows,
            Order::ColumnMajor => cols,
        };
        Dataset {
            dtype,
            rows,
            cols,
            order,
            segments: vec![Segment {
                source,
                offset,
                lines,
            }],
        }
    }

    /// Length of a contiguous line.
    pub fn minor(&self) -> usize {
        match self.order {
            Order::RowMajor => self.cols,
            Order::ColumnMajor => self.rows,
        }
    }

    /// Number of contiguous lines.
    pub fn lines(&self) -> usize {
        match self.order {
            Order::RowMajor => self.rows,
            Order::ColumnMajor => self.cols,
        }
    }

    /// Bytes of array data.
    pub fn bytes(&self) -> u64 {
        (self.rows * self.cols * self.dtype.size_bytes()) as u64
    }

    /// Files and byte ranges of the array, for baselines that read it raw
    /// (segments in an object store are left out).
    pub fn extents(&self) -> Vec<(PathBuf, u64, u64)> {
        let line = (self.minor() * self.dtype.size_bytes()) as u64;
        self.segments
            .iter()
            .filter_map(|s| match &s.source {
                Source::File(p) => Some((p.clone(), s.offset, s.lines as u64 * line)),
                Source::Object(..) => None,
            })
            .collect()
    }

    /// A truncated file or object is an error now, not a short read later.
    fn check_lengths(&self) -> Result<(), DatasetError> {
        let line = (self.minor() * self.dtype.size_bytes()) as u64;
        for seg in &self.segments {
            let len = seg.lines as u64 * line;
            let have = seg.source.size()?;
            if have < seg.offset + len {
                return Err(DatasetError::Invalid(format!(
                    "{}: truncated: the array needs {len} bytes from offset {}, there are {have}",
                    seg.source.name(),
                    seg.offset
                )));
            }
        }
        Ok(())
    }

    /// Blocks of `lines_per_block` lines (the last may be shorter).
    pub fn block_count(&self, lines_per_block: usize) -> usize {
        self.lines().div_ceil(lines_per_block.max(1))
    }

    /// The shape of block `b`: `minor × lines in the block`.
    pub fn block_shape(&self, b: usize, lines_per_block: usize) -> TileShape {
        let per = lines_per_block.max(1);
        let start = b * per;
        TileShape::new(self.minor(), per.min(self.lines().saturating_sub(start)))
    }

    /// Reads block `b` (one positioned read per file it spans).
    pub fn read_block(&self, b: usize, lines_per_block: usize) -> Result<TileData, DatasetError> {
        let mut data = TileData::zeros(self.dtype, TileShape::new(0, 0));
        self.read_block_into(b, lines_per_block, &mut data)?;
        Ok(data)
    }

    /// Reads block `b` into `data`, reusing its buffer when it has the
    /// block's size and type.
    pub fn read_block_into(
        &self,
        b: usize,
        lines_per_block: usize,
        data: &mut TileData,
    ) -> Result<(), DatasetError> {
        let shape = self.block_shape(b, lines_per_block);
        if shape.cols == 0 {
            return Err(DatasetError::Invalid(format!(
                "block {b} is past the end ({} blocks)",
                self.block_count(lines_per_block)
            )));
        }
        if data.len() != shape.len() || data.dtype() != self.dtype {
            *data = TileData::zeros(self.dtype, shape);
        }
        let line = self.minor() * self.dtype.size_bytes();
        let buf = data.as_bytes_mut();
        let mut first = b * lines_per_block.max(1); // global line index
        let mut filled = 0;
        let mut seg_start = 0;
        for seg in &self.segments {
            let seg_end = seg_start + seg.lines;
            if first < seg_end && filled < buf.len() {
                let local = first - seg_start;
                let take = (seg_end - first).min((buf.len() - filled) / line);
                seg.source.read_at(
                    seg.offset + (local * line) as u64,
                    &mut buf[filled..filled + take * line],
                )?;
                filled += take * line;
                first += take;
            }
            seg_start = seg_end;
        }
        if filled != buf.len() {
            return Err(DatasetError::Invalid(format!(
                "block {b}: read {filled} of {} bytes",
                buf.len()
            )));
        }
        Ok(())
    }

    /// Calls `submit` with each block as a tile, in order, reading up to
    /// `readahead` blocks ahead on two threads of its own. `submit` returns the
    /// last task that uses the block; at most `readahead` such tasks are in
    /// flight (older ones are waited for first), so memory holds about
    /// 2 × `readahead` blocks. Stops at the first error: a read error, a
    /// failed task, or one from `submit`.
    pub fn for_each_block(
        &self,
        rt: &Runtime,
        lines_per_block: usize,
        readahead: usize,
        mut submit: impl FnMut(usize, Tile) -> Result<TaskHandle, RuntimeError>,
    ) -> Result<(), DatasetError> {
        let readahead = readahead.max(1);
        let count = self.block_count(lines_per_block);
        // Two readers keep the device's queue deeper than one (block b is
        // read by reader b % READERS); blocks are used in order.
        const READERS: usize = 2;
        let per_reader = readahead.div_ceil(READERS).max(1);
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..READERS)
            .map(|_| crossbeam_channel::bounded(per_reader))
            .unzip();
        // Buffers of finished blocks go back to the readers.
        let (back_tx, back_rx) = crossbeam_channel::bounded::<TileData>(readahead + READERS);
        std::thread::scope(|s| -> Result<(), DatasetError> {
            // Owned here, so an early return drops them and unblocks the
            // readers before the scope joins them.
            let rxs = rxs;
            for (k, tx) in txs.into_iter().enumerate() {
                let back_rx = back_rx.clone();
                s.spawn(move || {
                    for b in (k..count).step_by(READERS) {
                        let mut data = back_rx
                            .try_recv()
                            .unwrap_or_else(|_| TileData::zeros(self.dtype, TileShape::new(0, 0)));
                        let block = self
                            .read_block_into(b, lines_per_block, &mut data)
                            .map(|()| data);
                        let failed = block.is_err();
                        if tx.send(block).is_err() || failed {
                            return;
                        }
                    }
                });
            }
            let mut in_flight: VecDeque<(TaskHandle, Tile)> = VecDeque::new();
            let retire = |(h, tile): (TaskHandle, Tile)| -> Result<(), DatasetError> {
                rt.wait(&h)?;
                if let Some(data) = tile.into_data() {
                    let _ = back_tx.try_send(data);
                }
                Ok(())
            };
            for b in 0..count {
                let data = rxs[b % READERS]
                    .recv()
                    .map_err(|_| DatasetError::Invalid("the reader stopped".into()))??;
                while in_flight.len() >= readahead {
                    if let Some(done) = in_flight.pop_front() {
                        retire(done)?;
                    }
                }
                let tile = rt.tile(data, self.block_shape(b, lines_per_block))?;
                in_flight.push_back((submit(b, tile.clone())?, tile));
            }
            for done in in_flight {
                retire(done)?;
            }
            Ok(())
        })
    }
}

impl Dataset {
    /// The sums of the array's contiguous lines' elements position by
    /// position, as a `minor × 1` tile: column sums of a row-major array
    /// (row sums of a column-major one), computed as `y += block · 1` gemm
    /// tasks on whatever processors the runtime has, streaming the blocks.
    pub fn line_sums(
        &self,
        rt: &Runtime,
        lines_per_block: usize,
        readahead: usize,
    ) -> Result<TileData, DatasetError> {
        let minor = self.minor();
        let per = lines_per_block.max(1);
        let y = rt.tile(
            TileData::zeros(self.dtype, TileShape::new(minor, 1)),
            TileShape::new(minor, 1),
        )?;
        let ones = |n: usize| -> Result<Tile, RuntimeError> {
            let data = match self.dtype {
                DType::F32 => TileData::F32(vec![1.0; n]),
                DType::F64 => TileData::F64(vec![1.0; n]),
            };
            rt.tile(data, TileShape::new(n, 1))
        };
        let full = ones(per)?;
        self.for_each_block(rt, per, readahead, |_, block| {
            let lines = block.shape().cols;
            let ones = if lines == per {
                full.clone()
            } else {
                ones(lines)?
            };
            rt.submit(
                crate::Task::op(tessera_core::Op::gemm(1.0, 1.0))
                    .read(&block)
                    .read(&ones)
                    .read_write(&y),
            )
        })?;
        Ok(rt.fetch(&y)?)
    }
}

/// What an `.npy` header says.
struct NpyHeader {
    dtype: DType,
    rows: usize,
    cols: usize,
    order: Order,
    data_offset: u64,
}

fn read_npy_header(source: &Source) -> Result<NpyHeader, DatasetError> {
    let name = source.name();
    let bad = |why: String| DatasetError::Invalid(format!("{name}: {why}"));
    let size = source.size()?;
    let mut pre = [0u8; 12];
    let n = size.min(12) as usize;
    source.read_at(0, &mut pre[..n])?;
    if n < 10 || &pre[..6] != b"\x93NUMPY" {
        return Err(bad("not an .npy file (no \\x93NUMPY magic)".into()));
    }
    let (header_len, start) = match pre[6] {
        1 => (u64::from(u16::from_le_bytes([pre[8], pre[9]])), 10u64),
        2 | 3 if n >= 12 => (
            u64::from(u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]])),
            12u64,
        ),
        v => return Err(bad(format!("unsupported .npy version {v}"))),
    };
    if start + header_len > size {
        return Err(bad("truncated .npy header".into()));
    }
    let mut text = vec![0u8; header_len as usize];
    source.read_at(start, &mut text)?;
    let text = String::from_utf8_lossy(&text);
    let field = |key: &str| -> Option<String> {
        let at = text.find(&format!("'{key}'"))?;
        let rest = text[at + key.len() + 2..].trim_start().strip_prefix(':')?;
        let rest = rest.trim_start();
        let end = if rest.starts_with('(') {
            rest.find(')')? + 1
        } else {
            rest.find([',', '}'])?
        };
        Some(rest[..end].trim().to_string())
    };
    let descr = field("descr").ok_or_else(|| bad("header has no 'descr'".into()))?;
    let dtype = match descr.trim_matches(|c| c == '\'' || c == '"') {
        "<f8" | "|f8" => DType::F64,
        "<f4" | "|f4" => DType::F32,
        other => {
            return Err(bad(format!(
                "element type {other} is not supported (little-endian f4 or f8 only)"
            )))
        }
    };
    let order = match field("fortran_order").as_deref() {
        Some("True") => Order::ColumnMajor,
        Some("False") => Order::RowMajor,
        _ => return Err(bad("header has no fortran_order".into())),
    };
    let shape = field("shape").ok_or_else(|| bad("header has no 'shape'".into()))?;
    let dims: Vec<usize> = shape
        .trim_matches(|c| c == '(' || c == ')')
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| bad(format!("shape {shape} is not a tuple of sizes")))?;
    let (rows, cols) = match dims[..] {
        [n] => (n, 1),
        [r, c] => (r, c),
        _ => return Err(bad(format!("shape {shape}: only 1-D and 2-D arrays"))),
    };
    Ok(NpyHeader {
        dtype,
        rows,
        cols,
        order,
        data_offset: start + header_len,
    })
}

/// Writes `data` (`rows × cols`, column-major as every tile) as an `.npy`
/// file in Fortran order, through a temporary file renamed into place.
pub fn write_npy(
    path: impl AsRef<Path>,
    data: &TileData,
    rows: usize,
    cols: usize,
) -> Result<(), DatasetError> {
    let path = path.as_ref();
    let header = npy_result_header(data, rows, cols)?;
    let tmp = path.with_extension("npy.partial");
    let write = || -> std::io::Result<()> {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        f.write_all(&header)?;
        f.write_all(data.as_bytes())?;
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        file_error(path, format!("writing: {e}"))
    })
}

/// Writes `data` as [`write_npy`] does, as object `key` of a bucket: one
/// PUT, which the store makes visible whole or not at all.
pub fn write_npy_object(
    store: &ObjectSource,
    key: &str,
    data: &TileData,
    rows: usize,
    cols: usize,
) -> Result<(), DatasetError> {
    let mut bytes = npy_result_header(data, rows, cols)?;
    bytes.extend_from_slice(data.as_bytes());
    store.put(key, bytes)
}

/// The header of a result array, once its size is checked.
fn npy_result_header(data: &TileData, rows: usize, cols: usize) -> Result<Vec<u8>, DatasetError> {
    if data.len() != rows * cols {
        return Err(DatasetError::Invalid(format!(
            "{} elements are not a {rows}x{cols} array",
            data.len()
        )));
    }
    Ok(npy_header(data.dtype(), rows, cols, Order::ColumnMajor))
}

/// The `.npy` header (version 1.0) of a `rows × cols` array of `dtype` in
/// `order`, padded so the data that follows starts 64-byte aligned.
pub fn npy_header(dtype: DType, rows: usize, cols: usize, order: Order) -> Vec<u8> {
    let descr = match dtype {
        DType::F32 => "<f4",
        DType::F64 => "<f8",
    };
    let fortran = if order == Order::ColumnMajor {
        "True"
    } else {
        "False"
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {fortran}, 'shape': ({rows}, {cols}), }}");
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out
}
