//! `tessera bench stream`: column sums over an `.npy` dataset on disk,
//! streamed through the runtime within a host budget, against reading the
//! same bytes sequentially with nothing else, before and after (the faster
//! of the two is the baseline), in the same run. The file's pages are
//! dropped from the page cache before each pass, so all read from the disk.

use super::{runtime, CliResult, StreamArgs};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::Instant;
use tessera::dataset::{npy_header, Dataset, Order};
use tessera::objects::ObjectStoreConfig;
use tessera::{DType, TileData, TileShape};

/// Element (i, j) of the generated dataset.
fn value(i: usize, j: usize) -> f64 {
    (i % 7) as f64 + 0.5 * j as f64
}

/// Exact column sums of the generated dataset's first `rows` rows.
fn expected_sum(rows: usize, j: usize) -> f64 {
    let cycle = 21 * (rows / 7) + (0..rows % 7).sum::<usize>();
    cycle as f64 + 0.5 * j as f64 * rows as f64
}

/// Writes a row-major f64 dataset of about `gib` GiB with `cols` columns.
fn make(path: &Path, gib: f64, cols: usize) -> Result<(), Box<dyn std::error::Error>> {
    let rows = ((gib * f64::from(1u32 << 30)) / (cols * 8) as f64) as usize;
    let tmp = path.with_extension("npy.partial");
    let mut f = std::io::BufWriter::with_capacity(64 << 20, std::fs::File::create(&tmp)?);
    f.write_all(&npy_header(DType::F64, rows, cols, Order::RowMajor))?;
    let mut row = vec![0u8; cols * 8];
    for i in 0..rows {
        for (j, chunk) in row.chunks_exact_mut(8).enumerate() {
            chunk.copy_from_slice(&value(i, j).to_le_bytes());
        }
        f.write_all(&row)?;
        if i % (rows / 20).max(1) == 0 {
            eprint!("\rwriting {}: {:>3}%", path.display(), i * 100 / rows);
        }
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    eprintln!("\rwrote {} ({rows} x {cols} f64)      ", path.display());
    Ok(())
}

/// Drops the files' pages from the page cache (they are clean: synced).
fn drop_cache(ds: &Dataset) -> Result<(), Box<dyn std::error::Error>> {
    for (path, _, _) in ds.extents() {
        let f = std::fs::File::open(&path)?;
        f.sync_all()?;
        // SAFETY: a valid descriptor; advice only, no memory is touched.
        let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(format!("posix_fadvise on {}: error {rc}", path.display()).into());
        }
    }
    Ok(())
}

/// Reads every byte of the array in `block`-byte reads: the baseline.
fn read_raw(ds: &Dataset, block: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut buf = vec![0u8; block];
    for (path, offset, len) in ds.extents() {
        let f = std::fs::File::open(&path)?;
        let mut at = 0;
        while at < len {
            let n = (len - at).min(block as u64) as usize;
            f.read_exact_at(&mut buf[..n], offset + at)?;
            at += n as u64;
        }
    }
    Ok(())
}

pub fn run(args: &StreamArgs) -> CliResult {
    let store = match &args.s3 {
        Some(endpoint) => {
            let key = |name: &str| {
                std::env::var(name).map_err(|_| format!("--s3 needs {name} in the environment"))
            };
            let config = ObjectStoreConfig::new(
                endpoint,
                &args.bucket,
                &key("AWS_ACCESS_KEY_ID")?,
                &key("AWS_SECRET_ACCESS_KEY")?,
            );
            Some(config.connect()?)
        }
        None => None,
    };
    let key = args.dataset.to_string_lossy().to_string();
    let ds = match &store {
        Some(store) => {
            if let Some(local) = &args.upload {
                eprintln!("uploading {} as {key}", local.display());
                store.put(&key, std::fs::read(local)?)?;
            }
            Dataset::npy_object(store, &key)?
        }
        None => {
            if !args.dataset.exists() {
                match args.make_gib {
                    Some(gib) => make(&args.dataset, gib, usize::try_from(args.cols)?)?,
                    None => {
                        return Err(format!(
                            "{} does not exist: pass --make-gib N to generate it",
                            args.dataset.display()
                        )
                        .into())
                    }
                }
            }
            Dataset::npy(&args.dataset)?
        }
    };
    if ds.order != Order::RowMajor || ds.dtype != DType::F64 {
        return Err("the stream bench expects a row-major f64 dataset it generated".into());
    }
    let line_bytes = ds.minor() * 8;
    let per_block = ((args.block_mib << 20) as usize / line_bytes).max(1);
    let block_bytes = per_block * line_bytes;

    // The baseline: from files, large positioned reads with the page cache
    // dropped; from a store, the same ranged GETs one after another.
    let baseline = || -> Result<f64, Box<dyn std::error::Error>> {
        let start = Instant::now();
        if store.is_some() {
            let mut buf = TileData::zeros(DType::F64, TileShape::new(0, 0));
            for b in 0..ds.block_count(per_block) {
                ds.read_block_into(b, per_block, &mut buf)?;
            }
        } else {
            drop_cache(&ds)?;
            let start = Instant::now();
            read_raw(&ds, block_bytes)?;
            return Ok(start.elapsed().as_secs_f64());
        }
        Ok(start.elapsed().as_secs_f64())
    };
    let bytes = ds.bytes();
    let raw_seconds = baseline()?;

    if store.is_none() {
        drop_cache(&ds)?;
    }
    let rt = runtime(&args.common, None)?;
    let cols = ds.minor();
    let start = Instant::now();
    let sums = ds.line_sums(&rt, per_block, usize::try_from(args.readahead)?)?;
    let stream_seconds = start.elapsed().as_secs_f64();
    // The raw read again, after: the faster of the two is the baseline, so
    // no cache left behind by a pass flatters the runtime.
    let raw_seconds = raw_seconds.min(baseline()?);
    let worst = (0..cols)
        .map(|j| {
            let want = expected_sum(ds.rows, j);
            (sums.get(cols, j, 0) - want).abs() / want.abs().max(1.0)
        })
        .fold(0.0, f64::max);
    let host = rt.host_usage();
    let gb = |s: f64| bytes as f64 / s / 1e9;
    let ratio = raw_seconds / stream_seconds;
    if args.common.json {
        println!(
            "{}",
            serde_json::json!({
                "dataset": args.dataset, "bytes": bytes, "block_bytes": block_bytes,
                "readahead": args.readahead,
                "raw_read_seconds": raw_seconds, "raw_read_gbps": gb(raw_seconds),
                "stream_seconds": stream_seconds, "stream_gbps": gb(stream_seconds),
                "ratio": ratio, "max_relative_error": worst, "host": host,
            })
        );
    } else {
        println!("{:<40} {:>9} {:>8}", "pass", "seconds", "GB/s");
        println!(
            "{:<40} {:>9.2} {:>8.2}",
            if store.is_some() {
                "ranged GETs alone"
            } else {
                "sequential read alone"
            },
            raw_seconds,
            gb(raw_seconds)
        );
        println!(
            "{:<40} {:>9.2} {:>8.2}",
            "column sums through the runtime",
            stream_seconds,
            gb(stream_seconds)
        );
        println!(
            "ratio {ratio:.3} (target ≥ 0.8); {:.1} GiB in {:.0} MiB blocks, host budget {:.2} GiB (peak {:.2}); max relative error {worst:.1e}",
            bytes as f64 / f64::from(1u32 << 30),
            block_bytes as f64 / f64::from(1u32 << 20),
            host.budget as f64 / f64::from(1u32 << 30),
            host.peak as f64 / f64::from(1u32 << 30),
        );
    }
    if worst > 1e-9 {
        return Err(format!("column sums are off by {worst:.2e}").into());
    }
    Ok(())
}
