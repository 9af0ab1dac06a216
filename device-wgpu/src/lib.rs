//! # tessera-device-wgpu: the wgpu device plugin
//!
//! Runs the tile ops (`gemm`, `syrk`, `trsm`, `potrf`, f32) as WGSL compute
//! kernels on any GPU wgpu reaches through Vulkan, Metal or DX12, and on
//! Mesa's lavapipe, a Vulkan driver that runs on the CPU, which is how CI
//! tests it for real.
//!
//! wgpu gives one queue per device, so the plugin offers one compute stream
//! and no copy streams: everything is ordered on that queue. Host-to-device
//! copies are staged at call time (`Queue::write_buffer`), and
//! device-to-host copies complete before they return; kernel launches are
//! asynchronous and their errors (a non-positive pivot) surface at
//! `stream_sync`.
//!
//! Options (comma-separated): `memory=BYTES` sets the device budget
//! (default 1 GiB: wgpu does not report device memory).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use tessera_plugin::abi::{dtype_code, op_code};
use tessera_plugin::{DeviceDesc, DevicePlugin, OpCall, PluginError};
use wgpu::util::DeviceExt;

/// Uniform parameters of every kernel; matches `Params` in the WGSL.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    flags: u32,
    alpha: f32,
    beta: f32,
    lda: u32,
    ldb: u32,
}

const LOWER_ONLY: u32 = 8;

struct Gpu {
    device: wgpu::Device,
    queue: wgpu::Queue,
    gemm: wgpu::ComputePipeline,
    trsm: wgpu::ComputePipeline,
    axpy: wgpu::ComputePipeline,
    sum: wgpu::ComputePipeline,
    potrf: wgpu::ComputePipeline,
    /// `status[0]` of the last potrf, and a staging buffer to read it.
    status: wgpu::Buffer,
    status_read: wgpu::Buffer,
}

/// What `stream_sync` must check once the queue drains.
struct PendingPotrf {
    tile_rows: u64,
}

pub struct WgpuPlugin {
    gpu: Gpu,
    desc: Vec<DeviceDesc>,
    buffers: Mutex<HashMap<u64, wgpu::Buffer>>,
    pending: Mutex<Vec<PendingPotrf>>,
    /// User kernels: compiled pipelines by handle.
    kernels: Mutex<HashMap<u64, wgpu::ComputePipeline>>,
    next: AtomicU64,
}

fn err(context: &str, e: impl std::fmt::Display) -> PluginError {
    PluginError::new(format!("{context}: {e}"))
}

fn pipeline(
    device: &wgpu::Device,
    module: &wgpu::ShaderModule,
    entry: &str,
) -> wgpu::ComputePipeline {
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(entry),
        layout: None,
        module,
        entry_point: Some(entry),
        compilation_options: Default::default(),
        cache: None,
    })
}

impl WgpuPlugin {
    fn buffer(&self, id: u64) -> Result<wgpu::Buffer, PluginError> {
        self.buffers
            .lock()
            .map_err(|_| PluginError::new("buffer table lock poisoned"))?
            .get(&id)
            .cloned()
            .ok_or_else(|| PluginError::new(format!("unknown buffer {id}")))
    }

    /// Buffer `id`, if a copy of `bytes` fits it (wgpu copies whole words).
    fn copy_buffer(&self, id: u64, bytes: u64) -> Result<wgpu::Buffer, PluginError> {
        let buf = self.buffer(id)?;
        if bytes % 4 != 0 || bytes > buf.size() {
            return Err(PluginError::new(format!(
                "a copy of {bytes} bytes does not fit buffer {id} ({} bytes, whole words only)",
                buf.size()
            )));
        }
        Ok(buf)
    }

    fn wait(&self) -> Result<(), PluginError> {
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| err("waiting for the GPU", e))
    }

    /// A uniform buffer holding `bytes`.
    fn uniform(&self, bytes: &[u8]) -> wgpu::Buffer {
        self.gpu
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("uniform"),
                contents: bytes,
                usage: wgpu::BufferUsages::UNIFORM,
            })
    }

    /// Binds `bindings` to group 0 of `pipeline` and queues one dispatch
    /// of `groups` workgroups.
    fn dispatch(
        &self,
        pipeline: &wgpu::ComputePipeline,
        bindings: &[(u32, &wgpu::Buffer)],
        groups: (u32, u32),
    ) {
        let g = &self.gpu;
        let entries: Vec<wgpu::BindGroupEntry<'_>> = bindings
            .iter()
            .map(|(binding, buf)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: buf.as_entire_binding(),
            })
            .collect();
        let group = g.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        let mut encoder = g
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(groups.0.max(1), groups.1.max(1), 1);
        }
        g.queue.submit([encoder.finish()]);
    }

    fn read_status(&self) -> Result<u32, PluginError> {
        let g = &self.gpu;
        let mut encoder = g
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        encoder.copy_buffer_to_buffer(&g.status, 0, &g.status_read, 0, 4);
        g.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        g.status_read.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|e| err("reading potrf status", e))?
            .map_err(|e| err("reading potrf status", e))?;
        let value = {
            let view = g
                .status_read
                .get_mapped_range(..)
                .map_err(|e| err("reading potrf status", e))?;
            u32::from_ne_bytes([view[0], view[1], view[2], view[3]])
        };
        g.status_read.unmap();
        Ok(value)
    }
}

fn div_ceil(a: u64, b: u64) -> u32 {
    u32::try_from(a.div_ceil(b)).unwrap_or(u32::MAX)
}

impl DevicePlugin for WgpuPlugin {
    const NAME: &'static str = "wgpu";

    fn init(options: &str) -> Result<Self, PluginError> {
        let memory = options
            .split(',')
            .find_map(|kv| kv.trim().strip_prefix("memory="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(1u64 << 30);
        let instance =
            wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            ..Default::default()
        }))
        .map_err(|e| err("no GPU adapter (on Linux, `apt-get install mesa-vulkan-drivers libvulkan1` provides a CPU one)", e))?;
        let info = adapter.get_info();
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("tessera"),
            required_features: wgpu::Features::empty(),
            required_limits: adapter.limits(),
            experimental_features: wgpu::ExperimentalFeatures::disabled(),
            memory_hints: wgpu::MemoryHints::Performance,
            trace: wgpu::Trace::Off,
        }))
        .map_err(|e| err("cannot open the GPU", e))?;
        let kernels = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("kernels"),
            source: wgpu::ShaderSource::Wgsl(include_str!("kernels.wgsl").into()),
        });
        let potrf_module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("potrf"),
            source: wgpu::ShaderSource::Wgsl(include_str!("potrf.wgsl").into()),
        });
        let status = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("potrf status"),
            size: 4,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let status_read = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("potrf status read"),
            size: 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let cpu = info.device_type == wgpu::DeviceType::Cpu;
        let gpu = Gpu {
            gemm: pipeline(&device, &kernels, "gemm"),
            trsm: pipeline(&device, &kernels, "trsm"),
            axpy: pipeline(&device, &kernels, "axpy"),
            sum: pipeline(&device, &kernels, "sum"),
            potrf: pipeline(&device, &potrf_module, "potrf"),
            device,
            queue,
            status,
            status_read,
        };
        let desc = vec![DeviceDesc {
            name: format!("{} ({:?})", info.name, info.backend),
            kind: 2,
            memory_bytes: memory,
            compute_streams: 1,
            copy_streams: 0,
            // Rough sustained rates of these simple kernels: a CPU driver is
            // far slower than a native CPU kernel, a real GPU far faster.
            gflops_f32: if cpu { 2.0 } else { 500.0 },
            gflops_f64: 0.0,
            h2d_bandwidth: if cpu { 5e9 } else { 10e9 },
        }];
        Ok(WgpuPlugin {
            gpu,
            desc,
            buffers: Mutex::new(HashMap::new()),
            pending: Mutex::new(Vec::new()),
            kernels: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        })
    }

    fn devices(&self) -> &[DeviceDesc] {
        &self.desc
    }

    fn supports(&self, device: u32, op: u32, dtype: u32) -> bool {
        device == 0
            && dtype == dtype_code::F32
            && matches!(
                op,
                op_code::GEMM
                    | op_code::SYRK
                    | op_code::TRSM
                    | op_code::POTRF
                    | op_code::AXPY
                    | op_code::SUM
            )
    }

    fn alloc(&self, _device: u32, bytes: u64) -> Result<u64, PluginError> {
        let limits = self.gpu.device.limits();
        if bytes > limits.max_storage_buffer_binding_size || bytes > limits.max_buffer_size {
            return Err(PluginError::new(format!(
                "a {bytes}-byte tile exceeds this GPU's largest storage buffer ({} bytes): use smaller tiles",
                limits.max_storage_buffer_binding_size
            )));
        }
        let buffer = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes.max(4).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.buffers
            .lock()
            .map_err(|_| PluginError::new("buffer table lock poisoned"))?
            .insert(id, buffer);
        Ok(id)
    }

    fn free(&self, _device: u32, buffer: u64) {
        if let Ok(mut b) = self.buffers.lock() {
            if let Some(buf) = b.remove(&buffer) {
                buf.destroy();
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
        let buf = self.copy_buffer(dst, bytes)?;
        let data = std::slice::from_raw_parts(src, bytes as usize);
        // write_buffer stages the bytes now: `src` is free once this returns.
        self.gpu.queue.write_buffer(&buf, 0, data);
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
        let buf = self.copy_buffer(src, bytes)?;
        let g = &self.gpu;
        let staging = g.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("download"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = g
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        encoder.copy_buffer_to_buffer(&buf, 0, &staging, 0, bytes);
        g.queue.submit([encoder.finish()]);
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|e| err("download", e))?
            .map_err(|e| err("download", e))?;
        {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| err("download", e))?;
            std::ptr::copy_nonoverlapping(view.as_ptr(), dst, bytes as usize);
        }
        staging.unmap();
        Ok(())
    }

    fn launch(
        &self,
        _device: u32,
        _stream: u32,
        call: &OpCall,
        args: &[u64],
    ) -> Result<(), PluginError> {
        if call.dtype != dtype_code::F32 {
            return Err(PluginError::new("the wgpu plugin runs f32 tiles only"));
        }
        if args.len() != call.shapes.len() {
            return Err(PluginError::new("argument count does not match shapes"));
        }
        let shape = |i: usize| call.shapes.get(i).copied().unwrap_or_default();
        let u = |x: u64| u32::try_from(x).unwrap_or(u32::MAX);
        match call.op {
            op_code::GEMM | op_code::SYRK => {
                let syrk = call.op == op_code::SYRK;
                let (a, b, c) = if syrk {
                    (args[0], args[0], args[1])
                } else {
                    (args[0], args[1], args[2])
                };
                let sa = shape(0);
                let sc = shape(if syrk { 1 } else { 2 });
                let sb = if syrk { sa } else { shape(1) };
                let (trans_a, trans_b) = if syrk {
                    (false, true)
                } else {
                    (call.trans_a(), call.trans_b())
                };
                let k = if trans_a { sa.rows } else { sa.cols };
                let mut flags = u32::from(trans_a) | (u32::from(trans_b) << 1);
                if syrk {
                    flags |= LOWER_ONLY;
                }
                let params = Params {
                    m: u(sc.rows),
                    n: u(sc.cols),
                    k: u(k),
                    flags,
                    alpha: call.alpha as f32,
                    beta: call.beta as f32,
                    lda: u(sa.rows),
                    ldb: u(sb.rows),
                };
                let (ba, bb, bc) = (self.buffer(a)?, self.buffer(b)?, self.buffer(c)?);
                {
                    let u = self.uniform(bytemuck::bytes_of(&params));
                    self.dispatch(
                        &self.gpu.gemm,
                        &[(0, &ba), (1, &bb), (2, &bc), (3, &u)],
                        (div_ceil(sc.rows, 16), div_ceil(sc.cols, 16)),
                    );
                }
            }
            op_code::TRSM => {
                let (sl, sb) = (shape(0), shape(1));
                let right = call.side_right();
                let flags = (u32::from(call.trans_b()) << 1) | if right { 4 } else { 0 };
                let params = Params {
                    m: u(sb.rows),
                    n: u(sb.cols),
                    k: 0,
                    flags,
                    alpha: call.alpha as f32,
                    beta: 0.0,
                    lda: u(sl.rows),
                    ldb: 0,
                };
                let lines = if right { sb.rows } else { sb.cols };
                let (bl, bx) = (self.buffer(args[0])?, self.buffer(args[1])?);
                {
                    let u = self.uniform(bytemuck::bytes_of(&params));
                    self.dispatch(
                        &self.gpu.trsm,
                        &[(0, &bl), (2, &bx), (3, &u)],
                        (div_ceil(lines, 64), 1),
                    );
                }
            }
            op_code::POTRF => {
                let s = shape(0);
                let params = Params {
                    m: u(s.rows),
                    n: u(s.cols),
                    k: 0,
                    flags: 0,
                    alpha: 1.0,
                    beta: 0.0,
                    lda: u(s.rows),
                    ldb: 0,
                };
                self.gpu
                    .queue
                    .write_buffer(&self.gpu.status, 0, &0u32.to_ne_bytes());
                let a = self.buffer(args[0])?;
                {
                    let u = self.uniform(bytemuck::bytes_of(&params));
                    self.dispatch(
                        &self.gpu.potrf,
                        &[(1, &self.gpu.status), (2, &a), (3, &u)],
                        (1, 1),
                    );
                }
                self.pending
                    .lock()
                    .map_err(|_| PluginError::new("pending lock poisoned"))?
                    .push(PendingPotrf { tile_rows: s.rows });
                // One status buffer: check it before another potrf reuses it.
                self.stream_sync(0, 0)?;
            }
            op_code::AXPY | op_code::SUM => {
                let s = shape(0);
                let params = Params {
                    m: u(s.rows),
                    n: u(s.cols),
                    k: 0,
                    flags: 0,
                    alpha: call.alpha as f32,
                    beta: 0.0,
                    lda: u(s.rows),
                    ldb: 0,
                };
                let (bx, by) = (self.buffer(args[0])?, self.buffer(args[1])?);
                let uniform = self.uniform(bytemuck::bytes_of(&params));
                if call.op == op_code::AXPY {
                    // Rows of 65535 workgroups at most, as WebGPU allows.
                    let groups = div_ceil(s.rows * s.cols, 256);
                    let (gx, gy) = (groups.min(65535), groups.div_ceil(65535));
                    self.dispatch(
                        &self.gpu.axpy,
                        &[(0, &bx), (2, &by), (3, &uniform)],
                        (gx, gy),
                    );
                } else {
                    self.dispatch(&self.gpu.sum, &[(0, &bx), (2, &by), (3, &uniform)], (1, 1));
                }
            }
            other => return Err(PluginError::new(format!("unsupported op code {other}"))),
        }
        Ok(())
    }

    fn stream_sync(&self, _device: u32, _stream: u32) -> Result<(), PluginError> {
        self.wait()?;
        let pending: Vec<PendingPotrf> = std::mem::take(
            &mut *self
                .pending
                .lock()
                .map_err(|_| PluginError::new("pending lock poisoned"))?,
        );
        for p in pending {
            let status = self.read_status()?;
            if status != 0 {
                return Err(PluginError::new(format!(
                    "matrix is not positive definite: pivot {} of {} is not positive",
                    status - 1,
                    p.tile_rows
                )));
            }
        }
        Ok(())
    }

    fn memory_info(&self, _device: u32) -> Result<(u64, u64), PluginError> {
        let total = self.desc.first().map_or(0, |d| d.memory_bytes);
        Ok((total, total))
    }

    /// WGSL user kernels: buffers bind to group 0 in argument order
    /// (`@binding(0)`, `@binding(1)`, ...), scalars follow as one uniform
    /// `array<vec4<f32>, N>` at the next binding (f64 is not in WGSL).
    fn compile_kernel(&self, _device: u32, source: &str, entry: &str) -> Result<u64, PluginError> {
        let device = &self.gpu.device;
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(entry),
            source: wgpu::ShaderSource::Wgsl(source.into()),
        });
        let pipeline = pipeline(device, &module, entry);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(PluginError::new(format!(
                "kernel `{entry}` does not compile: {e}"
            )));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.kernels
            .lock()
            .map_err(|_| PluginError::new("kernel table lock poisoned"))?
            .insert(id, pipeline);
        Ok(id)
    }

    fn launch_kernel(
        &self,
        _device: u32,
        _stream: u32,
        kernel: u64,
        grid: [u32; 3],
        args: &[u64],
        scalars: &[u8],
    ) -> Result<(), PluginError> {
        let pipeline = self
            .kernels
            .lock()
            .map_err(|_| PluginError::new("kernel table lock poisoned"))?
            .get(&kernel)
            .cloned()
            .ok_or_else(|| PluginError::new(format!("unknown kernel {kernel}")))?;
        let buffers: Vec<wgpu::Buffer> = args
            .iter()
            .map(|a| self.buffer(*a))
            .collect::<Result<_, _>>()?;
        // Scalars arrive as f64; WGSL gets them as f32 in vec4 slots.
        let mut values: Vec<f32> = scalars
            .chunks_exact(8)
            .map(|c| f64::from_ne_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect();
        let uniform = (!values.is_empty()).then(|| {
            values.resize(values.len().next_multiple_of(4), 0.0);
            self.uniform(bytemuck::cast_slice(&values))
        });
        let mut bindings: Vec<(u32, &wgpu::Buffer)> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u32, b))
            .collect();
        if let Some(u) = &uniform {
            bindings.push((buffers.len() as u32, u));
        }
        let scope = self
            .gpu
            .device
            .push_error_scope(wgpu::ErrorFilter::Validation);
        let block = grid[2].max(1);
        self.dispatch(&pipeline, &bindings, (grid[0].div_ceil(block), grid[1]));
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(PluginError::new(format!(
                "user kernel launch rejected: {e}"
            )));
        }
        Ok(())
    }
}

tessera_plugin::export_plugin!(WgpuPlugin);

#[cfg(test)]
mod tests;
