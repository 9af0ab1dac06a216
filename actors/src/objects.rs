//! The object-store tier: datasets in an S3-compatible store, read through
//! the `object_store` crate with ranged GETs.
//!
//! `object_store` is async; the runtime's threads are not, so each store
//! gets a small tokio runtime of its own and readers block on it. Requests
//! are retried with backoff by `object_store` (transient errors, 5xx,
//! timeouts) up to [`ObjectStoreConfig::retries`]; what still fails is an
//! error naming the object, and no block is ever handed out short.

use crate::dataset::DatasetError;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

/// Where an S3-compatible bucket is and how to sign for it.
#[derive(Debug, Clone)]
pub struct ObjectStoreConfig {
    /// e.g. `http://127.0.0.1:9000`
    pub endpoint: String,
    pub bucket: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    /// Retries of a failed request before it is an error.
    pub retries: usize,
    /// Time limit of one request.
    pub timeout: Duration,
}

impl ObjectStoreConfig {
    pub fn new(endpoint: &str, bucket: &str, access_key: &str, secret_key: &str) -> Self {
        ObjectStoreConfig {
            endpoint: endpoint.to_string(),
            bucket: bucket.to_string(),
            access_key: access_key.to_string(),
            secret_key: secret_key.to_string(),
            region: "us-east-1".to_string(),
            retries: 5,
            timeout: Duration::from_secs(30),
        }
    }

    /// Connects (lazily: the first request is the first contact).
    pub fn connect(&self) -> Result<Arc<ObjectSource>, DatasetError> {
        let store = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .with_region(&self.region)
            .with_virtual_hosted_style_request(false)
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(50),
                    max_backoff: Duration::from_secs(2),
                    base: 2.0,
                },
                max_retries: self.retries,
                retry_timeout: Duration::from_secs(60),
            })
            .with_client_options(
                // Replaces every client option, so plain HTTP is allowed here.
                ClientOptions::new()
                    .with_allow_http(self.endpoint.starts_with("http://"))
                    .with_timeout(self.timeout)
                    .with_connect_timeout(Duration::from_secs(5)),
            )
            .build()
            .map_err(|e| DatasetError::Invalid(format!("object store {}: {e}", self.endpoint)))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tessera-objects")
            .enable_all()
            .build()
            .map_err(|e| {
                DatasetError::Invalid(format!("cannot start the object-store client: {e}"))
            })?;
        Ok(Arc::new(ObjectSource {
            store: Arc::new(store),
            rt,
            name: format!("s3://{}", self.bucket),
        }))
    }
}

/// A connected bucket.
pub struct ObjectSource {
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
    name: String,
}

impl std::fmt::Debug for ObjectSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectSource({})", self.name)
    }
}

impl ObjectSource {
    /// `s3://bucket/key`, for messages.
    pub fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.name)
    }

    fn error(&self, key: &str, what: &str, e: impl std::fmt::Display) -> DatasetError {
        DatasetError::Invalid(format!("{} ({what}): {e}", self.url(key)))
    }

    /// The object's size in bytes.
    pub fn size(&self, key: &str) -> Result<u64, DatasetError> {
        let path = ObjectPath::from(key);
        self.rt
            .block_on(self.store.head(&path))
            .map(|m| m.size)
            .map_err(|e| self.error(key, "head", e))
    }

    /// Fills `buf` with the bytes from `offset`; a short answer is an error.
    pub fn read_at(&self, key: &str, offset: u64, buf: &mut [u8]) -> Result<(), DatasetError> {
        let path = ObjectPath::from(key);
        let range = offset..offset + buf.len() as u64;
        let bytes = self
            .rt
            .block_on(self.store.get_range(&path, range.clone()))
            .map_err(|e| self.error(key, &format!("bytes {range:?}"), e))?;
        if bytes.len() != buf.len() {
            return Err(self.error(
                key,
                &format!("bytes {range:?}"),
                format!("got {} bytes", bytes.len()),
            ));
        }
        buf.copy_from_slice(&bytes);
        Ok(())
    }

    /// Deletes `key` (missing is fine).
    pub fn delete(&self, key: &str) -> Result<(), DatasetError> {
        let path = ObjectPath::from(key);
        match self.rt.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, "delete", e)),
        }
    }

    /// Stores `bytes` as `key` (one PUT).
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), DatasetError> {
        let path = ObjectPath::from(key);
        self.rt
            .block_on(self.store.put(&path, bytes.into()))
            .map(|_| ())
            .map_err(|e| self.error(key, "put", e))
    }
}
