//! R2, or any S3-compatible store, through `object_store`: SigV4 signing,
//! path-style requests, conditional writes (`If-None-Match: *`, `If-Match`),
//! and typed errors.
//!
//! R2's rules are kept: region `auto`, path-style URLs, and no
//! `x-amz-checksum-*` headers (`object_store` sends none unless asked).

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use molt_core::Secret;
use molt_core::store::{PutOutcome, RemoteErrorKind, Store, StoreError, validate_key};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};
use object_store::client::{ClientOptions, HttpClient, HttpConnector};
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, UpdateVersion,
};
use std::sync::Arc;
use std::time::Duration;

/// R2's default bucket name in Moltworker deployments.
pub const DEFAULT_BUCKET: &str = "moltbot-data";

/// How to reach a bucket.
#[derive(Clone, Debug)]
pub struct S3Config {
    /// The endpoint, such as `https://<account>.r2.cloudflarestorage.com`.
    pub endpoint: String,
    /// The signing region (`auto` for R2).
    pub region: String,
    /// The bucket.
    pub bucket: String,
    /// The access key id.
    pub access_key_id: Secret,
    /// The secret access key.
    pub secret_access_key: Secret,
    /// The limit on connecting.
    pub connect_timeout: Duration,
    /// The limit on one request, body included.
    pub request_timeout: Duration,
    /// Retries of failed requests (with backoff) before an error is returned.
    pub max_retries: usize,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum S3ConfigError {
    /// A variable is set without one it needs.
    #[error("{missing} is required when {because} is set")]
    Missing {
        /// The missing variable.
        missing: &'static str,
        /// The variable that needs it.
        because: &'static str,
    },
    /// The client could not be built.
    #[error("S3 client: {0}")]
    Client(String),
}

impl S3Config {
    /// A Cloudflare R2 bucket of `account_id`.
    pub fn r2(
        account_id: &str,
        bucket: &str,
        access_key_id: Secret,
        secret_access_key: Secret,
    ) -> Self {
        Self::at(
            &format!("https://{account_id}.r2.cloudflarestorage.com"),
            bucket,
            access_key_id,
            secret_access_key,
        )
    }

    /// A bucket of any S3-compatible store at `endpoint`.
    pub fn at(
        endpoint: &str,
        bucket: &str,
        access_key_id: Secret,
        secret_access_key: Secret,
    ) -> Self {
        Self {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: "auto".into(),
            bucket: bucket.to_string(),
            access_key_id,
            secret_access_key,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            max_retries: 3,
        }
    }

    /// The bucket named by the variables Moltworker users set, or `None` when
    /// no R2 credentials are set (local-only): `R2_ACCESS_KEY_ID`,
    /// `R2_SECRET_ACCESS_KEY`, `CF_ACCOUNT_ID`, `R2_BUCKET_NAME` (default
    /// `moltbot-data`); `S3_ENDPOINT` (any S3-compatible store, instead of
    /// `CF_ACCOUNT_ID`) and `S3_REGION` (default `auto`).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, S3ConfigError> {
        let var = |name: &str| {
            env(name)
                .map(|value| value.trim().to_string())
                .filter(|value| !value.is_empty())
        };
        let Some(access) = var("R2_ACCESS_KEY_ID") else {
            return Ok(None);
        };
        let secret = var("R2_SECRET_ACCESS_KEY").ok_or(S3ConfigError::Missing {
            missing: "R2_SECRET_ACCESS_KEY",
            because: "R2_ACCESS_KEY_ID",
        })?;
        let bucket = var("R2_BUCKET_NAME").unwrap_or_else(|| DEFAULT_BUCKET.into());
        let (access, secret) = (Secret::new(access), Secret::new(secret));
        let mut config = match (var("S3_ENDPOINT"), var("CF_ACCOUNT_ID")) {
            (Some(endpoint), _) => Self::at(&endpoint, &bucket, access, secret),
            (None, Some(account)) => Self::r2(&account, &bucket, access, secret),
            (None, None) => {
                return Err(S3ConfigError::Missing {
                    missing: "CF_ACCOUNT_ID (or S3_ENDPOINT)",
                    because: "R2_ACCESS_KEY_ID",
                });
            }
        };
        if let Some(region) = var("S3_REGION") {
            config.region = region;
        }
        Ok(Some(config))
    }

    /// An `object_store` client for the bucket: path-style, SigV4, conditional
    /// puts by ETag, no checksum headers.
    pub fn object_store(&self) -> Result<Arc<dyn ObjectStore>, S3ConfigError> {
        let retry = RetryConfig {
            max_retries: self.max_retries,
            retry_timeout: self.request_timeout * 3,
            ..RetryConfig::default()
        };
        let store = AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(self.endpoint.starts_with("http://"))
            .with_region(&self.region)
            .with_bucket_name(&self.bucket)
            .with_access_key_id(self.access_key_id.expose())
            .with_secret_access_key(self.secret_access_key.expose())
            .with_virtual_hosted_style_request(false)
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .with_retry(retry)
            .with_http_connector(RustlsConnector {
                connect_timeout: self.connect_timeout,
                request_timeout: self.request_timeout,
            })
            .build()
            .map_err(|err| S3ConfigError::Client(err.to_string()))?;
        Ok(Arc::new(store))
    }
}

/// reqwest with rustls on *ring* and Mozilla's roots: no OpenSSL, no system
/// CA bundle, no second crypto library.
#[derive(Debug)]
struct RustlsConnector {
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl HttpConnector for RustlsConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        let crypto = Arc::new(rustls::crypto::ring::default_provider());
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let generic = |err: String| object_store::Error::Generic {
            store: "S3",
            source: err.into(),
        };
        let mut tls = rustls::ClientConfig::builder_with_provider(crypto)
            .with_safe_default_protocol_versions()
            .map_err(|err| generic(err.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(self.connect_timeout)
            .timeout(self.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| generic(err.to_string()))?;
        Ok(HttpClient::new(client))
    }
}

/// The version of a stored object, for conditional replacement (its ETag).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version(String);

impl Version {
    /// The ETag as the store gave it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A [`Store`] over a bucket, under an optional key prefix.
#[derive(Clone, Debug)]
pub struct S3Store {
    objects: Arc<dyn ObjectStore>,
    prefix: String,
}

impl S3Store {
    /// A store over `config`'s bucket.
    pub fn new(config: &S3Config) -> Result<Self, S3ConfigError> {
        Ok(Self::over(config.object_store()?))
    }

    /// A store over any `object_store` (an in-memory one in tests, say).
    pub fn over(objects: Arc<dyn ObjectStore>) -> Self {
        Self {
            objects,
            prefix: String::new(),
        }
    }

    /// The same bucket with every key under `prefix/`.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.trim_matches('/').to_string();
        self
    }

    /// The underlying `object_store`.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    fn path(&self, key: &str) -> Result<Path, StoreError> {
        validate_key(key)?;
        Ok(match self.prefix.is_empty() {
            true => Path::from(key),
            false => Path::from(format!("{}/{key}", self.prefix)),
        })
    }

    /// The object at `key` and its version, if any.
    pub async fn get_versioned(&self, key: &str) -> Result<Option<(Bytes, Version)>, StoreError> {
        let path = self.path(key)?;
        let result = match self.objects.get(&path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { source, .. })
                if !bucket_missing(&source.to_string()) =>
            {
                return Ok(None);
            }
            Err(err) => return Err(remote_error(key, err)),
        };
        let version = Version(result.meta.e_tag.clone().unwrap_or_default());
        let bytes = result.bytes().await.map_err(|err| remote_error(key, err))?;
        Ok(Some((bytes, version)))
    }

    /// Replaces the object at `key` only if it is still at `expected`
    /// (`If-Match`); `AlreadyExists` means another writer got there first.
    pub async fn put_if_match(
        &self,
        key: &str,
        value: Bytes,
        expected: &Version,
    ) -> Result<PutOutcome, StoreError> {
        let mode = PutMode::Update(UpdateVersion {
            e_tag: Some(expected.0.clone()),
            version: None,
        });
        self.put_with(key, value, mode).await
    }

    async fn put_with(
        &self,
        key: &str,
        value: Bytes,
        mode: PutMode,
    ) -> Result<PutOutcome, StoreError> {
        let path = self.path(key)?;
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .objects
            .put_opts(&path, PutPayload::from_bytes(value), options)
            .await
        {
            Ok(_) => Ok(PutOutcome::Created),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(PutOutcome::AlreadyExists),
            Err(err) => Err(remote_error(key, err)),
        }
    }
}

#[async_trait]
impl Store for S3Store {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        Ok(self.get_versioned(key).await?.map(|(bytes, _)| bytes))
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), StoreError> {
        self.put_with(key, value, PutMode::Overwrite)
            .await
            .map(|_| ())
    }

    async fn put_if_absent(&self, key: &str, value: Bytes) -> Result<PutOutcome, StoreError> {
        self.put_with(key, value, PutMode::Create).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        if !prefix.is_empty() {
            validate_key(prefix.trim_end_matches('/'))?;
        }
        let full = match (self.prefix.is_empty(), prefix.is_empty()) {
            (true, _) => prefix.to_string(),
            (false, true) => format!("{}/", self.prefix),
            (false, false) => format!("{}/{prefix}", self.prefix),
        };
        // List under the enclosing "directory", then keep the keys that start with the prefix.
        let directory = full.rfind('/').map(|end| Path::from(&full[..end]));
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut keys: Vec<String> = self
            .objects
            .list(directory.as_ref())
            .map_ok(|meta| meta.location.to_string())
            .try_filter(|location| std::future::ready(location.starts_with(&full)))
            .map_ok(|location| location[strip..].to_string())
            .try_collect()
            .await
            .map_err(|err| remote_error(prefix, err))?;
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match self.objects.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(err) => Err(remote_error(key, err)),
        }
    }
}

fn bucket_missing(message: &str) -> bool {
    message.contains("NoSuchBucket")
}

/// The HTTP status a store answered with, as `object_store` words it
/// ("… status code: 503 Service Unavailable …"); its error type is not public.
/// A bare number elsewhere in the message (a port, a size) is not a status.
fn response_status(message: &str) -> Option<u16> {
    let (_, rest) = message.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

/// An `object_store` error as a typed store error; the message never carries credentials.
pub fn remote_error(key: &str, err: object_store::Error) -> StoreError {
    let message = err.to_string();
    let kind = match &err {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => RemoteErrorKind::Auth,
        object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. } => {
            RemoteErrorKind::PreconditionFailed
        }
        _ if bucket_missing(&message) => RemoteErrorKind::BucketMissing,
        _ if message.contains("<Code>SlowDown</Code>")
            || matches!(response_status(&message), Some(429 | 503)) =>
        {
            RemoteErrorKind::Throttled
        }
        _ if is_network(&err) => RemoteErrorKind::Network,
        _ => RemoteErrorKind::Other,
    };
    StoreError::Remote {
        key: key.to_string(),
        kind,
        message,
    }
}

/// Whether the error chain holds a transport failure (connect, timeout, reset).
fn is_network(err: &object_store::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(current) = source {
        if let Some(http) = current.downcast_ref::<object_store::client::HttpError>() {
            use object_store::client::HttpErrorKind;
            return matches!(
                http.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
            );
        }
        source = current.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_found(body: &str) -> object_store::Error {
        object_store::Error::NotFound {
            path: "a".into(),
            source: format!("Server returned non-2xx status code: 404 Not Found: {body}").into(),
        }
    }

    fn kind_of(error: object_store::Error) -> RemoteErrorKind {
        match remote_error("a", error) {
            StoreError::Remote { kind, .. } => kind,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn s3_error_bodies_become_typed_kinds() {
        // The bodies R2 and S3 document for these failures.
        let missing = "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist.</Message></Error>";
        assert_eq!(kind_of(not_found(missing)), RemoteErrorKind::BucketMissing);
        assert!(bucket_missing(&not_found(missing).to_string()));
        assert!(!bucket_missing(
            &not_found("<Error><Code>NoSuchKey</Code></Error>").to_string()
        ));
        let slow = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>".into(),
        };
        assert_eq!(kind_of(slow), RemoteErrorKind::Throttled);
        let too_many = object_store::Error::Generic {
            store: "S3",
            source: "Server returned non-2xx status code: 429 Too Many Requests: ".into(),
        };
        assert_eq!(kind_of(too_many), RemoteErrorKind::Throttled);
        // A stopped server on a port that holds the digits 429 or 503 is not throttling.
        for port in ["42953", "15034"] {
            let refused = object_store::Error::Generic {
                store: "S3",
                source: format!(
                    "Error performing PUT http://127.0.0.1:{port}/bucket/a in 2ms - error sending request"
                )
                .into(),
            };
            assert_eq!(kind_of(refused), RemoteErrorKind::Other, "port {port}");
        }
        let denied = object_store::Error::PermissionDenied {
            path: "a".into(),
            source: "SignatureDoesNotMatch".into(),
        };
        assert_eq!(kind_of(denied), RemoteErrorKind::Auth);
    }
}
