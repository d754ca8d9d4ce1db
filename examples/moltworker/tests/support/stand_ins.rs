//! What the Worker's Node tests and bench run against, besides the Worker:
//! a bucket on an S3 server that checks SigV4, and the strict Anthropic fake.
//! Included (with `#[path]`) where `fake` and `s3` are modules of the crate.

use crate::{fake, s3};

/// The S3 server (with the `moltbot-data` bucket) and the model fake, served until dropped.
pub struct StandIns {
    root: tempfile::TempDir,
    s3: s3::S3Server,
    model: fake::FakeProvider,
}

impl StandIns {
    /// Starts both on loopback.
    pub async fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let s3 = s3::S3Server::start(root.path()).await;
        s3.bucket("moltbot-data");
        let model = fake::FakeProvider::start().await;
        Self { root, s3, model }
    }

    /// The environment that points the Node side, and the gateways it
    /// starts, at them (`S3_ROOT` lets a test make buckets of its own).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("S3_ENDPOINT", self.s3.endpoint()),
            ("S3_ROOT", self.root.path().display().to_string()),
            ("R2_ACCESS_KEY_ID", s3::ACCESS_KEY.to_owned()),
            ("R2_SECRET_ACCESS_KEY", s3::SECRET_KEY.to_owned()),
            ("ANTHROPIC_API_KEY", fake::ANTHROPIC_KEY.to_owned()),
            ("ANTHROPIC_BASE_URL", self.model.anthropic_url()),
        ]
    }
}
