//! A device plugin for tests: its "device memory" is host RAM and its ops
//! run on tessera-core's CPU kernels, so the runtime's device path
//! (placement, copies, replica coherence, error handling) is exercised on
//! any machine. Faults are injected through the init options, a
//! comma-separated list:
//!
//! - `fail-init`: init returns an error;
//! - `no-devices`: init succeeds with no device;
//! - `memory=BYTES`: the device has this much memory, and alloc fails past it;
//! - `fail-launch`: every launch fails;
//! - `panic-launch`: every launch panics (the SDK must turn it into an error);
//! - `devices=N`: number of devices (default 1);
//! - `f32-only`: only f32 ops are supported;
//! - `copy=N`: N copy streams (default 0), so the runtime prefetches;
//! - `no-pin`: host memory cannot be pinned (by default pinning is
//!   recorded, and overlapping registrations are refused as CUDA does);
//! - `wrong-results`: gemm results are off by 1% (a subtly broken kernel,
//!   for `tessera selftest`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tessera_core::kernels::{execute, KernelInput};
use tessera_core::op::Side;
use tessera_core::{DType, Op, TileData, TileShape};
use tessera_plugin::abi::{dtype_code, op_code};
use tessera_plugin::{DeviceDesc, DevicePlugin, OpCall, PluginError};

struct Fake {
    devices: Vec<DeviceDesc>,
    memory: u64,
    used: Mutex<Vec<u64>>,
    buffers: Mutex<HashMap<u64, Vec<u8>>>,
    next: AtomicU64,
    fail_launch: bool,
    panic_launch: bool,
    f32_only: bool,
    wrong_results: bool,
    no_pin: bool,
    /// Pinned host ranges, start → length.
    pinned: Mutex<std::collections::BTreeMap<usize, usize>>,
}

fn option<'a>(options: &'a str, key: &str) -> Option<&'a str> {
    options.split(',').find_map(|kv| {
        kv.trim()
            .strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

impl Fake {
    fn read_tile(
        &self,
        buffer: u64,
        dtype: DType,
        shape: TileShape,
    ) -> Result<TileData, PluginError> {
        let buffers = self
            .buffers
            .lock()
            .map_err(|_| PluginError::new("lock poisoned"))?;
        let bytes = buffers
            .get(&buffer)
            .ok_or_else(|| PluginError::new(format!("unknown buffer {buffer}")))?;
        let n = shape.len();
        Ok(match dtype {
            DType::F32 => TileData::F32(
                bytes
                    .chunks_exact(4)
                    .take(n)
                    .map(|c| f32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            ),
            DType::F64 => TileData::F64(
                bytes
                    .chunks_exact(8)
                    .take(n)
                    .map(|c| f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect(),
            ),
        })
    }

    fn write_tile(&self, buffer: u64, data: &TileData) -> Result<(), PluginError> {
        let mut buffers = self
            .buffers
            .lock()
            .map_err(|_| PluginError::new("lock poisoned"))?;
        let bytes = buffers
            .get_mut(&buffer)
            .ok_or_else(|| PluginError::new(format!("unknown buffer {buffer}")))?;
        match data {
            TileData::F32(v) => v
                .iter()
                .flat_map(|x| x.to_ne_bytes())
                .zip(bytes.iter_mut())
                .for_each(|(s, d)| *d = s),
            TileData::F64(v) => v
                .iter()
                .flat_map(|x| x.to_ne_bytes())
                .zip(bytes.iter_mut())
                .for_each(|(s, d)| *d = s),
        }
        Ok(())
    }
}

impl DevicePlugin for Fake {
    const NAME: &'static str = "fake";

    fn init(options: &str) -> Result<Self, PluginError> {
        if options.split(',').any(|o| o.trim() == "fail-init") {
            return Err(PluginError::new("injected init failure"));
        }
        let count = if options.contains("no-devices") {
            0
        } else {
            option(options, "devices")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1)
        };
        let memory = option(options, "memory")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1 << 30);
        let copy_streams = option(options, "copy")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let compute_streams = option(options, "streams")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        let devices = (0..count)
            .map(|i| DeviceDesc {
                name: format!("fake{i}"),
                kind: 0,
                memory_bytes: memory,
                compute_streams,
                copy_streams,
                gflops_f32: 1000.0,
                gflops_f64: 1000.0,
                h2d_bandwidth: 1e12,
            })
            .collect();
        Ok(Fake {
            devices,
            memory,
            used: Mutex::new(vec![0; count]),
            buffers: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
            fail_launch: options.contains("fail-launch"),
            panic_launch: options.contains("panic-launch"),
            f32_only: options.contains("f32-only"),
            wrong_results: options.contains("wrong-results"),
            no_pin: options.contains("no-pin"),
            pinned: Mutex::new(std::collections::BTreeMap::new()),
        })
    }

    fn devices(&self) -> &[DeviceDesc] {
        &self.devices
    }

    fn supports(&self, _device: u32, op: u32, dtype: u32) -> bool {
        (1..=4).contains(&op)
            && (dtype == dtype_code::F32 || (dtype == dtype_code::F64 && !self.f32_only))
    }

    fn alloc(&self, device: u32, bytes: u64) -> Result<u64, PluginError> {
        let mut used = self
            .used
            .lock()
            .map_err(|_| PluginError::new("lock poisoned"))?;
        let u = used
            .get_mut(device as usize)
            .ok_or_else(|| PluginError::new(format!("no device {device}")))?;
        if *u + bytes > self.memory {
            return Err(PluginError::new(format!(
                "out of device memory: {bytes} bytes asked, {} of {} in use",
                *u, self.memory
            )));
        }
        *u += bytes;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let size = usize::try_from(bytes).map_err(|_| PluginError::new("too large"))?;
        self.buffers
            .lock()
            .map_err(|_| PluginError::new("lock poisoned"))?
            .insert(id, vec![0; size]);
        Ok(id)
    }

    fn free(&self, device: u32, buffer: u64) {
        let removed = self.buffers.lock().ok().and_then(|mut b| b.remove(&buffer));
        if let (Some(bytes), Ok(mut used)) = (removed, self.used.lock()) {
            if let Some(u) = used.get_mut(device as usize) {
                *u = u.saturating_sub(bytes.len() as u64);
            }
        }
    }

    unsafe fn copy_h2d(
        &self,
        _device: u32,
        _stream: u32,
        dst: u64,
        src: *const u8,
        bytes: u64,
    ) -> Result<(), PluginError> {
        let mut buffers = self
            .buffers
            .lock()
            .map_err(|_| PluginError::new("lock poisoned"))?;
        let buf = buffers
            .get_mut(&dst)
            .ok_or_else(|| PluginError::new(format!("unknown buffer {dst}")))?;
        let n = usize::try_from(bytes).map_err(|_| PluginError::new("too large"))?;
        if n > buf.len() {
            return Err(PluginError::new("copy larger than the buffer"));
        }
        std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), n);
        Ok(())
    }

    unsafe fn copy_d2h(
        &self,
        _device: u32,
        _stream: u32,
        dst: *mut u8,
        src: u64,
        bytes: u64,
    ) -> Result<(), PluginError> {
        let buffers = self
            .buffers
            .lock()
            .map_err(|_| PluginError::new("lock poisoned"))?;
        let buf = buffers
            .get(&src)
            .ok_or_else(|| PluginError::new(format!("unknown buffer {src}")))?;
        let n = usize::try_from(bytes).map_err(|_| PluginError::new("too large"))?;
        if n > buf.len() {
            return Err(PluginError::new("copy larger than the buffer"));
        }
        std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, n);
        Ok(())
    }

    fn launch(
        &self,
        _device: u32,
        _stream: u32,
        call: &OpCall,
        args: &[u64],
    ) -> Result<(), PluginError> {
        if self.panic_launch {
            panic!("injected panic in launch");
        }
        if self.fail_launch {
            return Err(PluginError::new("injected launch failure"));
        }
        let dtype = if call.dtype == dtype_code::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let op = match call.op {
            op_code::GEMM => Op::Gemm {
                trans_a: call.trans_a(),
                trans_b: call.trans_b(),
                alpha: call.alpha,
                beta: call.beta,
            },
            op_code::SYRK => Op::Syrk {
                alpha: call.alpha,
                beta: call.beta,
            },
            op_code::TRSM => Op::Trsm {
                side: if call.side_right() {
                    Side::Right
                } else {
                    Side::Left
                },
                trans: call.trans_b(),
                alpha: call.alpha,
            },
            op_code::POTRF => Op::Potrf,
            other => return Err(PluginError::new(format!("unknown op {other}"))),
        };
        if args.len() != call.shapes.len() || args.is_empty() {
            return Err(PluginError::new("argument count does not match shapes"));
        }
        let shape =
            |i: usize| TileShape::new(call.shapes[i].rows as usize, call.shapes[i].cols as usize);
        let last = args.len() - 1;
        let inputs: Vec<TileData> = (0..last)
            .map(|i| self.read_tile(args[i], dtype, shape(i)))
            .collect::<Result<_, _>>()?;
        let views: Vec<KernelInput<'_>> = inputs
            .iter()
            .enumerate()
            .map(|(i, d)| KernelInput {
                data: d,
                shape: shape(i),
            })
            .collect();
        let mut out = self.read_tile(args[last], dtype, shape(last))?;
        execute(&op, &views, &mut out, shape(last)).map_err(|e| PluginError::new(e.to_string()))?;
        if self.wrong_results && call.op == op_code::GEMM {
            match &mut out {
                TileData::F32(v) => v.iter_mut().for_each(|x| *x *= 1.01),
                TileData::F64(v) => v.iter_mut().for_each(|x| *x *= 1.01),
            }
        }
        self.write_tile(args[last], &out)
    }

    fn copy_d2d(
        &self,
        _device: u32,
        _stream: u32,
        dst: u64,
        _src_device: u32,
        src: u64,
        bytes: u64,
    ) -> Result<(), PluginError> {
        let mut buffers = self
            .buffers
            .lock()
            .map_err(|_| PluginError::new("lock poisoned"))?;
        let from = buffers
            .get(&src)
            .ok_or_else(|| PluginError::new(format!("unknown buffer {src}")))?
            .clone();
        let to = buffers
            .get_mut(&dst)
            .ok_or_else(|| PluginError::new(format!("unknown buffer {dst}")))?;
        let n = bytes as usize;
        if from.len() < n || to.len() < n {
            return Err(PluginError::new("copy past the end of a buffer"));
        }
        to[..n].copy_from_slice(&from[..n]);
        Ok(())
    }

    unsafe fn host_register(&self, ptr: *mut u8, bytes: u64) -> Result<(), PluginError> {
        if self.no_pin {
            return Err(PluginError::new("fake: pinning is off"));
        }
        let mut pinned = self
            .pinned
            .lock()
            .map_err(|_| PluginError::new("lock poisoned"))?;
        let (start, end) = (ptr as usize, ptr as usize + bytes as usize);
        if pinned.iter().any(|(s, l)| *s < end && start < s + l) {
            return Err(PluginError::new("fake: range already pinned"));
        }
        pinned.insert(start, bytes as usize);
        Ok(())
    }

    fn host_unregister(&self, ptr: *mut u8) {
        if let Ok(mut p) = self.pinned.lock() {
            p.remove(&(ptr as usize));
        }
    }

    fn stream_sync(&self, _device: u32, _stream: u32) -> Result<(), PluginError> {
        Ok(())
    }

    fn memory_info(&self, device: u32) -> Result<(u64, u64), PluginError> {
        let used = self
            .used
            .lock()
            .map_err(|_| PluginError::new("lock poisoned"))?;
        let u = used.get(device as usize).copied().unwrap_or(0);
        Ok((self.memory - u, self.memory))
    }
}

tessera_plugin::export_plugin!(Fake);
