//! The `/metrics` endpoint: Prometheus text exposition over HTTP.
//!
//! It reads the registry the [`Metrics`](crate::metrics::Metrics) actor
//! writes; serving a scrape never blocks the actors. It lives as long as the
//! runtime and stops with it.

use crate::error::RuntimeError;
use prometheus::{Encoder, Registry, TextEncoder};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

pub(crate) struct MetricsServer {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` now, so a port in use is an error at start-up.
    pub fn start(addr: &str, registry: Registry) -> Result<MetricsServer, RuntimeError> {
        let bind_error = |reason: String| RuntimeError::MetricsBind {
            addr: addr.to_string(),
            reason,
        };
        let server = tiny_http::Server::http(addr).map_err(|e| bind_error(e.to_string()))?;
        let bound = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| bind_error("not an IP address".into()))?;
        let server = Arc::new(server);
        let serving = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("tessera-metrics-http".into())
            .spawn(move || serve(&serving, &registry))
            .map_err(|e| bind_error(e.to_string()))?;
        Ok(MetricsServer {
            server,
            thread: Some(thread),
            addr: bound,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve(server: &tiny_http::Server, registry: &Registry) {
    for request in server.incoming_requests() {
        let response = if request.url() == "/metrics" {
            let mut body = Vec::new();
            let encoder = TextEncoder::new();
            match encoder.encode(&registry.gather(), &mut body) {
                Ok(()) => {
                    let header = tiny_http::Header::from_bytes(
                        &b"Content-Type"[..],
                        encoder.format_type().as_bytes(),
                    );
                    let mut r = tiny_http::Response::from_data(body);
                    if let Ok(h) = header {
                        r = r.with_header(h);
                    }
                    r
                }
                Err(e) => {
                    tiny_http::Response::from_data(e.to_string().into_bytes()).with_status_code(500)
                }
            }
        } else {
            tiny_http::Response::from_data(b"not found: try /metrics\n".to_vec())
                .with_status_code(404)
        };
        // A client that hung up mid-response is not our problem.
        let _ = request.respond(response);
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
