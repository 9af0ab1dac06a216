//! Helpers shared by Tessera's integration tests: an HTTP scrape and a
//! parser for the Prometheus text exposition format, so tests check what a
//! real Prometheus server would read.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// GETs `path` from `addr` over plain HTTP/1.0; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, body.to_string()))
}

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub value: f64,
}

/// A parsed exposition: the declared type of each family and every sample.
#[derive(Debug, Default)]
pub struct Exposition {
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the first sample named `name` whose labels include all of `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| {
                s.name == name
                    && labels
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|s| s.value)
    }

    /// Sum over every sample named `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.value)
            .sum()
    }
}

/// Parses the Prometheus text format (version 0.0.4), strictly enough that
/// a malformed line is an error naming it.
pub fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                return Err(format!("line {}: bad TYPE line `{line}`", n + 1));
            };
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(format!("line {}: unknown type `{kind}`", n + 1));
            }
            out.types.insert(name.to_string(), kind.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .ok_or_else(|| format!("line {}: no value in `{line}`", n + 1))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .map_err(|_| format!("line {}: bad value `{v}`", n + 1))?,
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), HashMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .ok_or_else(|| format!("line {}: unclosed labels in `{line}`", n + 1))?;
                let mut labels = HashMap::new();
                for pair in body.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("line {}: bad label `{pair}`", n + 1))?;
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .ok_or_else(|| format!("line {}: unquoted label value `{v}`", n + 1))?;
                    labels.insert(k.to_string(), v.to_string());
                }
                (name.to_string(), labels)
            }
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            return Err(format!("line {}: bad metric name `{name}`", n + 1));
        }
        out.samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    Ok(out)
}

/// The path of a plugin library built by this `cargo test`. The plugins are
/// dev-dependencies of this package, so cargo builds their cdylib beside the
/// test binaries (in target/<profile>/deps) in the same build, with the same
/// dependency features: no second cargo, no second copy of wgpu on disk.
pub fn built_plugin(package: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("target/<profile>/deps");
    let file = format!(
        "{}{}{}",
        std::env::consts::DLL_PREFIX,
        package.replace('-', "_"),
        std::env::consts::DLL_SUFFIX
    );
    let path = deps.join(&file);
    assert!(
        path.is_file(),
        "{} is missing: {package} is built as a dev-dependency of tessera-tests; run the tests through `cargo test`",
        path.display()
    );
    path
}

/// A real S3-compatible server (`s3s-fs`, installed by `.ci/run`) serving a
/// fresh directory on 127.0.0.1, with signature authentication. Killed and
/// its directory removed on drop.
pub struct S3Server {
    child: std::process::Child,
    pub root: std::path::PathBuf,
    pub endpoint: String,
}

pub const S3_ACCESS_KEY: &str = "tessera";
pub const S3_SECRET_KEY: &str = "tessera-secret-key";

impl S3Server {
    /// Starts a server with bucket `bucket`, or `None` (the test skips)
    /// when `s3s-fs` is not installed outside CI; under CI that panics.
    pub fn start(bucket: &str) -> Option<S3Server> {
        let exe = which("s3s-fs");
        let Some(exe) = exe else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the object-store tests: install s3s-fs (see .ci/run)"
            );
            eprintln!(
                "SKIPPED: s3s-fs not installed (cargo install s3s-fs@0.14.1 --features binary)"
            );
            return None;
        };
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "tessera-s3-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(root.join(bucket)).expect("server root");
        let port = free_port();
        let child = std::process::Command::new(exe)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(&root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start s3s-fs");
        let server = S3Server {
            child,
            root,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "s3s-fs did not start");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Some(server)
    }

    /// Stops the server now (the directory stays until drop).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A real Prometheus server (Debian's `prometheus`, installed by
/// `.ci/run`) on 127.0.0.1, scraping `target` every second into a fresh
/// directory. Killed and its directory removed on drop.
pub struct PrometheusServer {
    child: std::process::Child,
    root: std::path::PathBuf,
    pub addr: std::net::SocketAddr,
}

impl PrometheusServer {
    /// Starts a server, or `None` (the test skips) when `prometheus` is not
    /// installed outside CI; under CI that panics.
    pub fn start(target: std::net::SocketAddr) -> Option<PrometheusServer> {
        let Some(exe) = which("prometheus") else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the Prometheus test: install prometheus (see .ci/run)"
            );
            eprintln!("SKIPPED: prometheus not installed (apt-get install prometheus)");
            return None;
        };
        let root = std::env::temp_dir().join(format!(
            "tessera-prom-{}-{}",
            std::process::id(),
            target.port()
        ));
        std::fs::create_dir_all(&root).expect("server root");
        let config = root.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tessera\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("config");
        let port = free_port();
        let child = std::process::Command::new(exe)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                root.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start prometheus");
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        let server = PrometheusServer { child, root, addr };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !http_get(addr, "/-/ready").is_ok_and(|(s, _)| s == 200) {
            assert!(
                std::time::Instant::now() < deadline,
                "prometheus did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Some(server)
    }

    /// The JSON answer of an instant query through the HTTP API.
    pub fn query(&self, promql: &str) -> serde_json::Value {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) =
            http_get(self.addr, &format!("/api/v1/query?query={encoded}")).expect("query");
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")))
    {
        dirs.push(home.join("bin"));
    }
    dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file())
}
