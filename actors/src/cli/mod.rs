//! Command-line parsing and dispatch.

mod bench;
mod calibrate;
mod cholesky;
mod info;
mod outofcore;
mod progress;
mod runfile;
mod selftest;
mod sim;
mod stream;
mod windows;

use clap::{Args, CommandFactory, Parser, Subcommand};
use tessera::{DType, Runtime, RuntimeError};

pub type CliResult = Result<(), Box<dyn std::error::Error>>;

#[derive(Parser, Debug)]
#[command(
    name = "tessera",
    version,
    about = "Tessera: a task runtime for heterogeneous machines"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List processors, memory spaces and plugins.
    Info(CommonArgs),
    /// Run an application.
    #[command(subcommand)]
    Run(RunCommand),
    /// Run a benchmark; `--json` prints one JSON object.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Check every op on every device kind against the CPU kernels; exits
    /// with an error if any result is wrong.
    Selftest(SelftestArgs),
    /// Simulate a task graph on a platform under a policy.
    Sim(SimArgs),
    /// Measure op times and copy links into a performance model file
    /// (--perf-model), one processor kind at a time.
    Calibrate(CalibrateArgs),
    /// Query a run file (--record) with SQL or a named query.
    Query(QueryArgs),
    /// Write a run file as a Chrome trace (Perfetto, chrome://tracing).
    Trace(TraceArgs),
    /// Write a run file as one self-contained HTML report.
    Report(ReportArgs),
}

#[derive(Args, Debug)]
pub struct CalibrateArgs {
    /// Tile orders to time each op at, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "256,512,1024")]
    pub orders: Vec<usize>,
    /// Timed runs per op, order and element type (after one warm-up).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub reps: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct QueryArgs {
    /// The run file.
    pub db: std::path::PathBuf,
    /// An SQL statement over the tables meta, processors, tasks, transfers,
    /// memory and decisions (see docs/metrics.md).
    pub sql: Option<String>,
    /// Time per op.
    #[arg(long, conflicts_with_all = ["sql", "idle", "transfers"])]
    pub top_ops: bool,
    /// Busy and idle time per processor.
    #[arg(long, conflicts_with_all = ["sql", "transfers"])]
    pub idle: bool,
    /// Copies per link.
    #[arg(long, conflicts_with = "sql")]
    pub transfers: bool,
    /// Print {"columns": [...], "rows": [[...]]}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TraceArgs {
    /// The run file.
    pub db: std::path::PathBuf,
    /// The trace to write.
    #[arg(short, long)]
    pub output: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run file.
    pub db: std::path::PathBuf,
    /// The HTML file to write.
    #[arg(short, long)]
    pub output: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// A generator: cholesky:N, lu:N, qr:N (tiles per side) or layered:N
    /// (tasks); or a graph file: STG text, or our JSON format (`.json`).
    #[arg(long)]
    pub graph: String,
    /// node-1cpu-2gpu, node-1cpu-4gpu, cluster-16x4 (12.5 GB/s between
    /// nodes), cluster-16x4-fast (200 GB/s) or cpu; or a platform file
    /// (JSON, see docs/simulator.md).
    #[arg(long, default_value = "node-1cpu-2gpu")]
    pub platform: String,
    /// eager, heft, milp (MILP over tasks ready together, with the
    /// metaheuristic as its fallback and HEFT for single tasks) or
    /// metaheuristic.
    #[arg(long, default_value = "heft")]
    pub policy: String,
    /// Weight of the price HEFT (and the list rule of milp and
    /// metaheuristic) charges for running a task away from its data's
    /// node (the node of the tile it updates, else the one holding most
    /// of its input): 0 turns it off; only clusters have one.
    #[arg(long, default_value_t = tessera_core::policy::AWAY_WEIGHT)]
    pub away_weight: f64,
    /// Also write the graph in our JSON format to this file.
    #[arg(long)]
    pub save_graph: Option<std::path::PathBuf>,
    /// Tile order of the generated graphs (f64).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub tile: u64,
    /// One JSON object with makespan, lower_bound and decision_us_per_task.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SimSuiteArgs {
    /// Tile order of the generated graphs (f64).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub tile: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct SelftestArgs {
    /// Tile order of the checks.
    #[arg(long, default_value_t = 192, value_parser = clap::value_parser!(u64).range(1..=8192))]
    pub order: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Subcommand, Debug)]
enum RunCommand {
    /// Tiled Cholesky factorisation of a random SPD matrix.
    Cholesky(CholeskyArgs),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Per-task overhead: independent empty tasks and a dependent chain.
    Overhead(OverheadArgs),
    /// Tiled Cholesky against a library's own Cholesky (faer on CPU,
    /// cuSOLVER with a CUDA device), same matrix, same run.
    Cholesky(CholeskyBenchArgs),
    /// Streaming GEMM over host tiles on one device: the stream pool against
    /// one stream, copies alone and kernels alone.
    Multistream(MultistreamArgs),
    /// Tiled Cholesky with a host budget a fraction of the matrix, spilling
    /// to disk, against the same run in RAM; checked by residual.
    Outofcore(OutOfCoreArgs),
    /// Column sums over an .npy dataset on disk within a host budget,
    /// against reading the same bytes alone (page cache dropped first).
    Stream(StreamArgs),
    /// Every policy on the fixed simulation suite: makespan against the
    /// lower bound, decision latency.
    Sim(SimSuiteArgs),
    /// Tiled Cholesky with everything observable on (metrics endpoint,
    /// run file, trace) against the same with it off, alternating.
    Observe(CholeskyBenchArgs),
    /// The window policies (MILP with its fallback, the metaheuristic) on
    /// random windows: decision time against their budgets, and what
    /// their plans gain over the list plan.
    Windows(WindowsArgs),
}

#[derive(Args, Debug)]
pub struct WindowsArgs {
    /// How many windows.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    pub windows: u64,
    /// Tasks per window.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(2..=512))]
    pub tasks: u64,
    /// Seed of the random windows.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StreamArgs {
    /// The dataset: a row-major f64 .npy file.
    #[arg(long)]
    pub dataset: std::path::PathBuf,
    /// Generate the dataset first, this many GiB, if it does not exist.
    #[arg(long)]
    pub make_gib: Option<f64>,
    /// Columns of a generated dataset.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub cols: u64,
    /// Block size in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub block_mib: u64,
    /// Read the dataset from this S3-compatible endpoint instead of the
    /// file system (`--dataset` is then the object's key); credentials
    /// from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
    #[arg(long)]
    pub s3: Option<String>,
    /// The bucket, with --s3.
    #[arg(long, default_value = "data")]
    pub bucket: String,
    /// With --s3: upload this local file as the object first (one PUT, so
    /// the server stores its checksum and ranged GETs need not rehash it).
    #[arg(long)]
    pub upload: Option<std::path::PathBuf>,
    /// Blocks read ahead (and tasks in flight).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..))]
    pub readahead: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct OutOfCoreArgs {
    #[command(flatten)]
    pub matrix: MatrixArgs,
    /// Host budget as a fraction of the matrix's bytes.
    #[arg(long, default_value_t = 0.25)]
    pub fraction: f64,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct MultistreamArgs {
    /// Plugin device to measure.
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// Tile order (f64 tiles).
    #[arg(long, default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..))]
    pub tile: u64,
    /// Independent GEMMs, each on three fresh tiles.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub tiles: u64,
    /// Compute streams in the pool.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub streams: u32,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// CPU processors (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub workers: Option<u64>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Processor kinds to use, comma-separated: cpu and plugin names
    /// (wgpu, cuda, ...). Default: cpu and every plugin found.
    #[arg(long, value_delimiter = ',')]
    pub devices: Option<Vec<String>>,
    /// Load this plugin library too (repeatable).
    #[arg(long = "plugin")]
    pub plugins: Vec<std::path::PathBuf>,
    /// Options a plugin starts with, as NAME:OPTIONS (repeatable), e.g.
    /// `cuda:streams=2,copy=2` for two compute and two copy streams.
    #[arg(long = "plugin-options", value_name = "NAME:OPTIONS", value_parser = parse_plugin_options)]
    pub plugin_options: Vec<(String, String)>,
    /// Host memory budget for tile data, e.g. 4GiB (default: 3/4 of RAM).
    #[arg(long, value_parser = parse_size)]
    pub host_mem: Option<u64>,
    /// Spill tiles beyond the host budget to files under this directory
    /// (a directory of the run's own, removed at the end).
    #[arg(long)]
    pub spill_dir: Option<std::path::PathBuf>,
    /// Memory budget per device, e.g. 2GiB (default: the device's memory).
    #[arg(long, value_parser = parse_size)]
    pub gpu_mem: Option<u64>,
    /// Milliseconds of estimated work a GPU may have queued before ready
    /// tasks wait in the scheduler instead (default 1).
    #[arg(long, value_name = "MS", value_parser = parse_positive_ms)]
    pub gpu_queue_ms: Option<f64>,
    /// Pinned host memory for tiles copied to devices, e.g. 32GiB
    /// (default: a quarter of the host budget; 0 turns pinning off).
    #[arg(long, value_parser = parse_size_or_zero)]
    pub pinned_mem: Option<u64>,
    /// Learn op times into this file (read at start, written at the end),
    /// so later runs place tasks by measured times from the first task.
    #[arg(long)]
    pub perf_model: Option<std::path::PathBuf>,
    /// Write every completed task as a span to this Chrome-trace JSON file
    /// at the end (open it in ui.perfetto.dev).
    #[arg(long)]
    pub trace: Option<std::path::PathBuf>,
    /// Scheduling policy: heft (default), eager, milp or metaheuristic.
    #[arg(long)]
    pub policy: Option<String>,
    /// Record the run (tasks, copies, memory, decisions) to this SQLite
    /// file for `tessera query`, `trace` and `report`.
    #[arg(long)]
    pub record: Option<std::path::PathBuf>,
}

/// `NAME:OPTIONS` of `--plugin-options`.
fn parse_plugin_options(text: &str) -> Result<(String, String), String> {
    match text.split_once(':') {
        Some((name, options)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), options.trim().to_string()))
        }
        _ => Err(format!(
            "`{text}` is not NAME:OPTIONS (try cuda:streams=2,copy=2)"
        )),
    }
}

/// A positive, finite number of milliseconds.
fn parse_positive_ms(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(ms) if ms.is_finite() && ms > 0.0 => Ok(ms),
        _ => Err(format!(
            "`{text}` is not a positive number of milliseconds (try 5)"
        )),
    }
}

/// [`parse_size`], where 0 is allowed.
pub fn parse_size_or_zero(text: &str) -> Result<u64, String> {
    if text.trim() == "0" {
        Ok(0)
    } else {
        parse_size(text)
    }
}

/// Parses a size: bytes, or a number with KiB, MiB, GiB, TiB (powers of
/// two) or KB, MB, GB, TB (powers of ten).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a size (try 512MiB or 4GiB)"))?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" | "k" => 1024.0,
        "mib" | "m" => 1024f64.powi(2),
        "gib" | "g" => 1024f64.powi(3),
        "tib" | "t" => 1024f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        other => {
            return Err(format!(
            "unknown size unit `{other}` in `{text}` (use KiB, MiB, GiB, TiB, KB, MB, GB or TB)"
        ))
        }
    };
    let bytes = value * scale;
    if !(1.0..1.8e19).contains(&bytes) {
        return Err(format!("`{text}` is not a usable size"));
    }
    Ok(bytes as u64)
}

/// The matrix of the Cholesky commands.
#[derive(Args, Debug)]
pub struct MatrixArgs {
    /// Matrix order.
    #[arg(long, default_value_t = 8192, value_parser = clap::value_parser!(u64).range(1..))]
    pub n: u64,
    /// Tile order.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    pub tile: u64,
    /// Element type: f32 or f64.
    #[arg(long, default_value = "f64")]
    pub dtype: DType,
}

impl MatrixArgs {
    /// Order and tile as sizes, or a usage error if the tile does not fit.
    pub fn sizes(&self) -> Result<(usize, usize), std::num::TryFromIntError> {
        check_sizes(self.n, self.tile);
        Ok((usize::try_from(self.n)?, usize::try_from(self.tile)?))
    }
}

#[derive(Args, Debug)]
pub struct CholeskyArgs {
    #[command(flatten)]
    pub matrix: MatrixArgs,
    /// Check the residual ‖A − L·Lᵀ‖/‖A‖.
    #[arg(long)]
    pub check: bool,
    /// Serve Prometheus metrics at this address while running.
    #[arg(long)]
    pub metrics: Option<String>,
    /// Seed of the random matrix.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Order of the updates: right-looking (each panel updates the whole
    /// trailing matrix; the most parallel), left-looking (each column
    /// takes its updates, then is done; fewer write-backs when the matrix
    /// exceeds device or host memory), or auto: left-looking when the
    /// matrix spills past the host budget or exceeds the devices' memory,
    /// right-looking otherwise.
    #[arg(long, default_value = "auto", value_parser = ["auto", "right", "left"])]
    pub variant: String,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct OverheadArgs {
    /// Independent empty tasks.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub tasks: u64,
    /// Length of the chain of dependent empty tasks.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub chain: u64,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct CholeskyBenchArgs {
    #[command(flatten)]
    pub matrix: MatrixArgs,
    /// Repetitions of each side; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    pub reps: u64,
    /// With a device: copy the matrix to it before timing, on both sides,
    /// so only the factorisation is timed.
    #[arg(long)]
    pub resident: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Rejects a tile larger than the matrix with the usage hint clap gives.
pub(crate) fn check_sizes(n: u64, tile: u64) {
    if tile > n {
        Cli::command()
            .error(
                clap::error::ErrorKind::ValueValidation,
                format!("--tile {tile} is larger than --n {n}: the tile must fit in the matrix"),
            )
            .exit();
    }
}

pub(crate) fn runtime(common: &CommonArgs, metrics: Option<&str>) -> Result<Runtime, RuntimeError> {
    build(common, metrics, Runtime::builder())
}

/// A runtime whose plugin `name` starts with `options`.
pub(crate) fn runtime_with_options(
    common: &CommonArgs,
    name: &str,
    options: &str,
) -> Result<Runtime, RuntimeError> {
    build(
        common,
        None,
        Runtime::builder().plugin_options(name, options),
    )
}

pub(crate) fn build(
    common: &CommonArgs,
    metrics: Option<&str>,
    mut b: tessera::RuntimeBuilder,
) -> Result<Runtime, RuntimeError> {
    if let Some(w) = common.workers {
        b = b.cpu_workers(usize::try_from(w).unwrap_or(usize::MAX));
    }
    if let Some(addr) = metrics {
        b = b.metrics(addr);
    }
    if let Some(kinds) = &common.devices {
        b = b.devices(kinds);
    }
    for p in &common.plugins {
        b = b.plugin(p);
    }
    for (name, options) in &common.plugin_options {
        b = b.plugin_options(name, options);
    }
    if let Some(bytes) = common.host_mem {
        b = b.host_memory(bytes);
    }
    if let Some(dir) = &common.spill_dir {
        b = b.spill_dir(dir);
    }
    if let Some(bytes) = common.gpu_mem {
        b = b.device_memory(bytes);
    }
    if let Some(ms) = common.gpu_queue_ms {
        b = b.device_queue_horizon(ms / 1e3);
    }
    if let Some(bytes) = common.pinned_mem {
        b = b.pinned_memory(bytes);
    }
    if let Some(path) = &common.perf_model {
        b = b.perf_model(path);
    }
    if let Some(path) = &common.trace {
        b = b.trace(path);
    }
    if let Some(name) = &common.policy {
        b = b.policy(name);
    }
    if let Some(path) = &common.record {
        b = b.record(path);
    }
    let rt = b.build()?;
    // Plugins found but unusable here (no driver, say) are worth a warning
    // when devices were asked for; `tessera info` always lists them.
    if common.devices.is_some() {
        for why in rt.skipped_plugins() {
            eprintln!("tessera: warning: plugin skipped: {why}");
        }
    }
    Ok(rt)
}

impl Cli {
    /// Whether the command only computes and prints (no runtime, no
    /// sockets, no files it must finish): a closed pipe may then end it
    /// quietly, as it does `grep` or `sort` (`tessera sim ... | head -1`
    /// panicked with a backtrace).
    pub fn prints_only(&self) -> bool {
        matches!(
            self.command,
            Command::Sim(_)
                | Command::Query(_)
                | Command::Bench(BenchCommand::Sim(_))
                | Command::Bench(BenchCommand::Windows(_))
        )
    }
}

pub fn run(cli: Cli) -> CliResult {
    match cli.command {
        Command::Info(args) => info::run(&args),
        Command::Selftest(args) => selftest::run(&args),
        Command::Sim(args) => sim::run(&args),
        Command::Calibrate(args) => calibrate::run(&args),
        Command::Query(args) => runfile::query(&args),
        Command::Trace(args) => runfile::trace(&args),
        Command::Report(args) => runfile::report(&args),
        Command::Bench(BenchCommand::Sim(args)) => sim::suite(&args),
        Command::Bench(BenchCommand::Observe(args)) => bench::observe(&args),
        Command::Bench(BenchCommand::Windows(args)) => windows::run(&args),
        Command::Run(RunCommand::Cholesky(args)) => cholesky::run(&args),
        Command::Bench(BenchCommand::Overhead(args)) => bench::overhead(&args),
        Command::Bench(BenchCommand::Cholesky(args)) => bench::cholesky(&args),
        Command::Bench(BenchCommand::Multistream(args)) => bench::multistream(&args),
        Command::Bench(BenchCommand::Outofcore(args)) => outofcore::run(&args),
        Command::Bench(BenchCommand::Stream(args)) => stream::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5 MiB"), Ok(3 << 19));
        assert_eq!(parse_size("3GB"), Ok(3_000_000_000));
        assert!(parse_size("12 parsecs")
            .unwrap_err()
            .contains("unknown size unit"));
        assert!(parse_size("GiB").is_err());
        assert!(parse_size("0").is_err());
    }
}
