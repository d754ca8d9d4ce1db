//! A real S3-compatible server for the tests: `s3s-fs` on loopback, checking
//! SigV4 signatures against one access key.

#![allow(dead_code)]

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use molt_core::Secret;
use molt_storage::S3Config;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::task::JoinSet;

pub const ACCESS_KEY: &str = "AKIAMOLTTESTKEY00001";
pub const SECRET_KEY: &str = "molt-test-secret-key-that-signs-requests";

/// A running `s3s-fs` server, stopped when dropped.
pub struct S3Server {
    pub address: SocketAddr,
    pub root: PathBuf,
    /// Requests served so far (benchmarks count what each tool asks for).
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    tasks: JoinSet<()>,
}

impl S3Server {
    /// Starts a server over `root` (buckets are its subdirectories) on a free port.
    pub async fn start(root: &Path) -> Self {
        Self::start_on(root, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts a server over `root` on `address` (to come back on the same port).
    pub async fn start_on(root: &Path, address: SocketAddr) -> Self {
        let fs = s3s_fs::FileSystem::new(root).unwrap();
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = builder.build();
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut tasks = JoinSet::new();
        let requests = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = requests.clone();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let service = service.clone();
                let counter = counter.clone();
                let counted = hyper::service::service_fn(move |request| {
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    hyper::service::Service::call(&service, request)
                });
                connections.spawn(async move {
                    let connection = ConnectionBuilder::new(TokioExecutor::new());
                    let _ = connection
                        .serve_connection(TokioIo::new(socket), counted)
                        .await;
                });
            }
        });
        Self {
            address,
            root: root.to_path_buf(),
            requests,
            tasks,
        }
    }

    /// Creates a bucket.
    pub fn bucket(&self, name: &str) {
        std::fs::create_dir_all(self.root.join(name)).unwrap();
    }

    /// Stops serving: the port refuses connections until a restart.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A client configuration for `bucket`, with quick retries.
    pub fn config(&self, bucket: &str) -> S3Config {
        let mut config = S3Config::at(
            &self.endpoint(),
            bucket,
            Secret::new(ACCESS_KEY),
            Secret::new(SECRET_KEY),
        );
        config.region = "us-east-1".into();
        config.max_retries = 1;
        config.connect_timeout = std::time::Duration::from_secs(2);
        config.request_timeout = std::time::Duration::from_secs(10);
        config
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}
