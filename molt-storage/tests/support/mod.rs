//! A real S3-compatible server for the tests: `s3s-fs` on loopback, checking
//! SigV4 signatures against one access key.

#![allow(dead_code)]

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnectionBuilder;
use molt_core::Secret;
use molt_storage::S3Config;
use s3s::auth::SimpleAuth;
use s3s::dto::*;
use s3s::service::S3ServiceBuilder;
use s3s::{S3, S3Request, S3Response, S3Result};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::task::JoinSet;

/// `s3s-fs` with two departures from S3 put right, so that other clients
/// (rclone) see what AWS S3 and R2 would answer:
/// - an empty `delimiter=` means no delimiter (s3s-fs groups on "", one
///   common prefix per first character);
/// - a key that names a directory of the file system (a "folder" prefix) is
///   no object: `NoSuchKey` (s3s-fs fails with a 500 after tens of seconds).
///
/// It also notes the size of every multipart part it receives.
struct StandardFs {
    inner: s3s_fs::FileSystem,
    root: PathBuf,
    part_sizes: Arc<Mutex<Vec<u64>>>,
}

impl StandardFs {
    fn is_folder(&self, bucket: &str, key: &str) -> bool {
        self.root.join(bucket).join(key).is_dir()
    }
}

fn no_empty_delimiter(delimiter: &mut Option<String>) {
    if delimiter.as_deref() == Some("") {
        *delimiter = None;
    }
}

/// Implements `S3` for `StandardFs`: the methods given here, and the listed
/// ones delegated to s3s-fs unchanged (inside one impl, for `async_trait`).
macro_rules! standard_fs {
    ($($method:ident: $input:ty => $output:ty;)*) => {
        #[async_trait::async_trait]
        impl S3 for StandardFs {
            async fn list_objects(
                &self,
                mut req: S3Request<ListObjectsInput>,
            ) -> S3Result<S3Response<ListObjectsOutput>> {
                no_empty_delimiter(&mut req.input.delimiter);
                self.inner.list_objects(req).await
            }

            async fn list_objects_v2(
                &self,
                mut req: S3Request<ListObjectsV2Input>,
            ) -> S3Result<S3Response<ListObjectsV2Output>> {
                no_empty_delimiter(&mut req.input.delimiter);
                self.inner.list_objects_v2(req).await
            }

            async fn head_object(
                &self,
                req: S3Request<HeadObjectInput>,
            ) -> S3Result<S3Response<HeadObjectOutput>> {
                if self.is_folder(&req.input.bucket, &req.input.key) {
                    return Err(s3s::s3_error!(NoSuchKey));
                }
                self.inner.head_object(req).await
            }

            async fn upload_part(
                &self,
                req: S3Request<UploadPartInput>,
            ) -> S3Result<S3Response<UploadPartOutput>> {
                let size = req.input.content_length.unwrap_or_default();
                self.part_sizes.lock().unwrap().push(size as u64);
                self.inner.upload_part(req).await
            }

            async fn get_object(
                &self,
                req: S3Request<GetObjectInput>,
            ) -> S3Result<S3Response<GetObjectOutput>> {
                if self.is_folder(&req.input.bucket, &req.input.key) {
                    return Err(s3s::s3_error!(NoSuchKey));
                }
                self.inner.get_object(req).await
            }

            $(
                async fn $method(&self, req: S3Request<$input>) -> S3Result<S3Response<$output>> {
                    self.inner.$method(req).await
                }
            )*
        }
    };
}

standard_fs! {
    create_bucket: CreateBucketInput => CreateBucketOutput;
    copy_object: CopyObjectInput => CopyObjectOutput;
    delete_bucket: DeleteBucketInput => DeleteBucketOutput;
    delete_object: DeleteObjectInput => DeleteObjectOutput;
    delete_objects: DeleteObjectsInput => DeleteObjectsOutput;
    get_bucket_location: GetBucketLocationInput => GetBucketLocationOutput;
    head_bucket: HeadBucketInput => HeadBucketOutput;
    list_buckets: ListBucketsInput => ListBucketsOutput;
    put_object: PutObjectInput => PutObjectOutput;
    create_multipart_upload: CreateMultipartUploadInput => CreateMultipartUploadOutput;
    upload_part_copy: UploadPartCopyInput => UploadPartCopyOutput;
    list_parts: ListPartsInput => ListPartsOutput;
    complete_multipart_upload: CompleteMultipartUploadInput => CompleteMultipartUploadOutput;
    abort_multipart_upload: AbortMultipartUploadInput => AbortMultipartUploadOutput;
}

pub const ACCESS_KEY: &str = "AKIAMOLTTESTKEY00001";
pub const SECRET_KEY: &str = "molt-test-secret-key-that-signs-requests";

/// A running `s3s-fs` server, stopped when dropped.
pub struct S3Server {
    pub address: SocketAddr,
    pub root: PathBuf,
    /// Requests served so far (benchmarks count what each tool asks for).
    pub requests: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// The size of each multipart part received, in order of arrival.
    pub part_sizes: Arc<Mutex<Vec<u64>>>,
    tasks: JoinSet<()>,
}

impl S3Server {
    /// Starts a server over `root` (buckets are its subdirectories) on a free port.
    pub async fn start(root: &Path) -> Self {
        Self::start_on(root, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Starts a server over `root` on `address` (to come back on the same port).
    pub async fn start_on(root: &Path, address: SocketAddr) -> Self {
        let part_sizes = Arc::default();
        let fs = StandardFs {
            inner: s3s_fs::FileSystem::new(root).unwrap(),
            root: root.to_path_buf(),
            part_sizes: Arc::clone(&part_sizes),
        };
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
                // As any production server does: without it, a response
                // written in pieces waits on the client's delayed ACK (40 ms).
                let _ = socket.set_nodelay(true);
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
            part_sizes,
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

/// A server with the bucket `moltbot-data`, and the folder it keeps it in.
pub async fn server_with_bucket() -> (tempfile::TempDir, S3Server) {
    let root = tempfile::tempdir().unwrap();
    let server = S3Server::start(root.path()).await;
    server.bucket("moltbot-data");
    (root, server)
}

/// The bucket `moltbot-data` of `server`, as an object store.
pub fn remote(server: &S3Server) -> std::sync::Arc<dyn object_store::ObjectStore> {
    server.config("moltbot-data").object_store().unwrap()
}
