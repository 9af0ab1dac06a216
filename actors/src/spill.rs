//! The disk tier: host tiles evicted to files in a spill directory.
//!
//! Each runtime spills into a directory of its own, created under the
//! directory the user names and removed with everything in it when the
//! runtime ends, so no user file is ever written or removed. A tile goes
//! to disk as one file written in one call (large writes, no per-element
//! I/O) under a temporary name renamed once complete, with a CRC-32 checked when it is read back: a corrupted or
//! truncated spill file is an error naming the tile, never wrong data. A
//! full disk is an error at once, not a retry loop.
//!
//! The same tier can live in an S3-compatible bucket instead
//! ([`SpillDir::create_in_store`]): one object per spilled tile under a
//! prefix of the run's own, deleted as its tile goes.

use crate::objects::ObjectSource;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tessera_core::TileId;

/// One runtime's spill directory (or prefix in a bucket).
pub(crate) struct SpillDir {
    /// The directory, or `s3://bucket/prefix` for a store.
    path: PathBuf,
    store: Option<(Arc<ObjectSource>, String)>,
    pub written: AtomicU64,
    pub read: AtomicU64,
    /// Bytes in spill files now.
    pub on_disk: AtomicU64,
    /// Where spill writes and reads are logged for the recorder.
    transfers: std::sync::OnceLock<Arc<crate::transfers::TransferLog>>,
}

/// A tile's bytes on disk; the file goes when this does.
pub(crate) struct SpillFile {
    dir: Arc<SpillDir>,
    path: PathBuf,
    len: u64,
    crc: u32,
}

impl SpillDir {
    /// Logs spill writes and reads to `log` from now on.
    pub fn set_transfers(&self, log: Arc<crate::transfers::TransferLog>) {
        let _ = self.transfers.set(log);
    }

    /// The tier's name in transfer records.
    fn tier_name(&self) -> &'static str {
        if self.store.is_some() {
            "store"
        } else {
            "disk"
        }
    }

    fn log(&self, src: &str, dst: &str, bytes: u64, started: std::time::Instant) {
        if let Some(log) = self.transfers.get() {
            log.record(src, dst, bytes, started, std::time::Instant::now());
        }
    }

    /// Creates `parent/tessera-spill-<pid>-<n>`; an error that says why if
    /// `parent` is missing or not writable.
    pub fn create(parent: &Path) -> Result<Arc<SpillDir>, String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "tessera-spill-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = parent.join(name);
        std::fs::create_dir(&path).map_err(|e| {
            format!(
                "cannot use spill directory {}: {e} (it must exist and be writable)",
                parent.display()
            )
        })?;
        Ok(Arc::new(SpillDir {
            path,
            store: None,
            written: AtomicU64::new(0),
            read: AtomicU64::new(0),
            on_disk: AtomicU64::new(0),
            transfers: std::sync::OnceLock::new(),
        }))
    }

    /// Spills into `store` under `prefix/tessera-spill-<pid>-<n>/`.
    pub fn create_in_store(store: Arc<ObjectSource>, prefix: &str) -> Arc<SpillDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let key = format!(
            "{}/tessera-spill-{}-{}",
            prefix.trim_end_matches('/'),
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        Arc::new(SpillDir {
            path: PathBuf::from(store.url(&key)),
            store: Some((store, key)),
            written: AtomicU64::new(0),
            read: AtomicU64::new(0),
            on_disk: AtomicU64::new(0),
            transfers: std::sync::OnceLock::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `bytes` as the spill file of `tile`, in one call.
    pub fn write(self: &Arc<Self>, tile: TileId, bytes: &[u8]) -> Result<SpillFile, String> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let started = std::time::Instant::now();
        let name = format!(
            "tile-{}-{}.bin",
            tile.0,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        if let Some((store, prefix)) = &self.store {
            let key = format!("{prefix}/{name}");
            store
                .put(&key, bytes.to_vec())
                .map_err(|e| format!("spilling {tile} ({} bytes): {e}", bytes.len()))?;
            return Ok(self.account(PathBuf::from(key), bytes, started));
        }
        // Written under a temporary name and renamed when complete, so a
        // `.bin` file in the directory is always whole: a reader of the
        // directory (a test, a person looking, a crash mid-write) never
        // sees half a tile under its final name.
        let path = self.path.join(&name);
        let part = self.path.join(format!("{name}.part"));
        let result = std::fs::File::create(&part)
            .and_then(|mut f| f.write_all(bytes))
            .and_then(|()| std::fs::rename(&part, &path));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&part);
            // ENOSPC, EDQUOT, EFBIG: no room, whatever the cause.
            let hint = if matches!(e.raw_os_error(), Some(28 | 122 | 27)) {
                " (the disk is full, or a quota or file-size limit was hit: free space or choose another --spill-dir)"
            } else {
                ""
            };
            return Err(format!(
                "spilling {tile} ({} bytes) to {}: {e}{hint}",
                bytes.len(),
                self.path.display()
            ));
        }
        Ok(self.account(path, bytes, started))
    }

    /// Counts a written spill file (a path, or an object's key).
    fn account(
        self: &Arc<Self>,
        path: PathBuf,
        bytes: &[u8],
        started: std::time::Instant,
    ) -> SpillFile {
        self.log("host", self.tier_name(), bytes.len() as u64, started);
        self.written
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.on_disk
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        SpillFile {
            dir: Arc::clone(self),
            path,
            len: bytes.len() as u64,
            crc: crc32fast::hash(bytes),
        }
    }
}

impl SpillDir {
    /// Removes the directory and every spill file in it (objects in a
    /// store go one by one, as their tiles do).
    pub fn remove_now(&self) {
        if self.store.is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

impl Drop for SpillDir {
    fn drop(&mut self) {
        self.remove_now();
    }
}

impl SpillFile {
    /// Reads the file into `buf` (exactly its size) and checks its CRC.
    pub fn read_into(&self, tile: TileId, buf: &mut [u8]) -> Result<(), String> {
        let bad = |why: String| format!("reading {tile} back from {}: {why}", self.path.display());
        let started = std::time::Instant::now();
        if buf.len() as u64 != self.len {
            return Err(bad(format!(
                "{} bytes expected, {} asked",
                self.len,
                buf.len()
            )));
        }
        if let Some((store, _)) = &self.dir.store {
            store
                .read_at(&self.path.to_string_lossy(), 0, buf)
                .map_err(|e| bad(e.to_string()))?;
        } else {
            let mut f = std::fs::File::open(&self.path).map_err(|e| bad(e.to_string()))?;
            f.read_exact(buf)
                .map_err(|e| bad(format!("{e} (the file is truncated)")))?;
            if f.read(&mut [0u8; 1]).map_err(|e| bad(e.to_string()))? != 0 {
                return Err(bad("the file is longer than the tile".into()));
            }
        }
        if crc32fast::hash(buf) != self.crc {
            return Err(bad("checksum mismatch: the spill file is corrupted".into()));
        }
        self.dir.read.fetch_add(self.len, Ordering::Relaxed);
        self.dir
            .log(self.dir.tier_name(), "host", self.len, started);
        Ok(())
    }

    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SpillFile {
    fn drop(&mut self) {
        match &self.dir.store {
            Some((store, _)) => {
                let _ = store.delete(&self.path.to_string_lossy());
            }
            None => {
                let _ = std::fs::remove_file(&self.path);
            }
        }
        self.dir.on_disk.fetch_sub(self.len, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs in a child process with a 64 KiB file-size limit (see below).
    #[test]
    #[ignore = "run by a_full_disk_is_a_clear_error_and_leaves_no_file"]
    fn full_disk_child() {
        let dir = SpillDir::create(&std::env::temp_dir()).unwrap();
        let err = dir.write(TileId(7), &vec![1u8; 1 << 20]).err().unwrap();
        assert!(
            err.contains("tile#7") && err.contains("disk is full"),
            "{err}"
        );
        // No partial file is left behind, and small writes still work.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(dir.write(TileId(8), &[1u8; 100]).is_ok());
    }

    #[test]
    fn a_full_disk_is_a_clear_error_and_leaves_no_file() {
        use std::os::unix::process::CommandExt;
        let exe = std::env::current_exe().unwrap();
        let mut cmd = std::process::Command::new(exe);
        cmd.args([
            "--exact",
            "spill::tests::full_disk_child",
            "--ignored",
            "--nocapture",
        ]);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                // Writes past the limit fail with EFBIG instead of killing
                // the process, as a full disk fails them with ENOSPC.
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                let limit = libc::rlimit {
                    rlim_cur: 64 << 10,
                    rlim_max: 64 << 10,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("1 passed"), "{text}");
    }

    #[test]
    fn spill_files_round_trip_detect_corruption_and_vanish() {
        let parent = std::env::temp_dir();
        let dir = SpillDir::create(&parent).unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        let f = dir.write(TileId(3), &data).unwrap();
        // Only the final name is left: the temporary one was renamed.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(names, vec![f.path().to_path_buf()]);
        assert!(f.path().to_string_lossy().ends_with(".bin"));
        let mut back = vec![0u8; data.len()];
        f.read_into(TileId(3), &mut back).unwrap();
        assert_eq!(back, data);
        assert_eq!(dir.on_disk.load(Ordering::Relaxed), 10_000);
        // Flip one byte: the checksum catches it.
        let mut raw = std::fs::read(f.path()).unwrap();
        raw[1234] ^= 1;
        std::fs::write(f.path(), &raw).unwrap();
        let err = f.read_into(TileId(3), &mut back).unwrap_err();
        assert!(err.contains("corrupted"), "{err}");
        // Truncated.
        std::fs::write(f.path(), &raw[..100]).unwrap();
        assert!(f
            .read_into(TileId(3), &mut back)
            .unwrap_err()
            .contains("truncated"));
        let path = f.path().to_path_buf();
        drop(f);
        assert!(!path.exists());
        assert_eq!(dir.on_disk.load(Ordering::Relaxed), 0);
        let root = dir.path().to_path_buf();
        drop(dir);
        assert!(!root.exists());
        assert!(SpillDir::create(Path::new("/nonexistent/x"))
            .err()
            .unwrap()
            .contains("must exist"));
    }
}
