//! The S3 store against a real S3-compatible server that checks SigV4 signatures.

mod support;

use bytes::Bytes;
use futures::StreamExt;
use molt_core::Secret;
use molt_core::store::{PutOutcome, RemoteErrorKind, Store, StoreError};
use molt_storage::{S3Config, S3Store};
use support::{S3Server, SECRET_KEY};

async fn server() -> (tempfile::TempDir, S3Server) {
    let root = tempfile::tempdir().unwrap();
    let server = S3Server::start(root.path()).await;
    server.bucket("moltbot-data");
    (root, server)
}

fn kind(error: StoreError) -> RemoteErrorKind {
    match error {
        StoreError::Remote { kind, .. } => kind,
        other => panic!("not a remote error: {other:?}"),
    }
}

#[tokio::test]
async fn objects_round_trip_under_a_prefix() {
    let (_root, server) = server().await;
    let store = S3Store::new(&server.config("moltbot-data"))
        .unwrap()
        .with_prefix("openclaw");
    assert_eq!(store.get("pairing/telegram.json").await.unwrap(), None);
    store
        .put(
            "pairing/telegram.json",
            Bytes::from_static(b"{\"codes\":[]}"),
        )
        .await
        .unwrap();
    store
        .put("transcripts/a.jsonl", Bytes::from_static(b"one\n"))
        .await
        .unwrap();
    store
        .put(
            "pairing/telegram.json",
            Bytes::from_static(b"{\"codes\":[1]}"),
        )
        .await
        .unwrap();
    assert_eq!(
        store.get("pairing/telegram.json").await.unwrap().unwrap(),
        Bytes::from_static(b"{\"codes\":[1]}")
    );
    assert_eq!(
        store.list("pairing/").await.unwrap(),
        ["pairing/telegram.json"]
    );
    assert_eq!(
        store.list("").await.unwrap(),
        ["pairing/telegram.json", "transcripts/a.jsonl"]
    );
    assert_eq!(store.list("trans").await.unwrap(), ["transcripts/a.jsonl"]);
    // The prefix is real: the object sits under openclaw/ in the bucket.
    assert!(
        server
            .root
            .join("moltbot-data/openclaw/pairing/telegram.json")
            .exists()
    );
    store.delete("pairing/telegram.json").await.unwrap();
    store.delete("pairing/telegram.json").await.unwrap();
    assert_eq!(store.get("pairing/telegram.json").await.unwrap(), None);
    assert!(matches!(
        store.get("../escape").await,
        Err(StoreError::InvalidKey { .. })
    ));
}

#[tokio::test]
async fn conditional_writes_never_overwrite_blindly() {
    let (_root, server) = server().await;
    let store = S3Store::new(&server.config("moltbot-data")).unwrap();
    let first = store
        .put_if_absent("manifests/0001.json", Bytes::from_static(b"a"))
        .await
        .unwrap();
    let second = store
        .put_if_absent("manifests/0001.json", Bytes::from_static(b"b"))
        .await
        .unwrap();
    assert_eq!(
        (first, second),
        (PutOutcome::Created, PutOutcome::AlreadyExists)
    );
    assert_eq!(
        store.get("manifests/0001.json").await.unwrap().unwrap(),
        Bytes::from_static(b"a")
    );
    // If-Match: the current version wins once; a stale one loses.
    let (_, version) = store
        .get_versioned("manifests/0001.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .put_if_match("manifests/0001.json", Bytes::from_static(b"c"), &version)
            .await
            .unwrap(),
        PutOutcome::Created
    );
    assert_eq!(
        store
            .put_if_match("manifests/0001.json", Bytes::from_static(b"d"), &version)
            .await
            .unwrap(),
        PutOutcome::AlreadyExists
    );
    assert_eq!(
        store.get("manifests/0001.json").await.unwrap().unwrap(),
        Bytes::from_static(b"c")
    );
}

#[tokio::test]
async fn listing_follows_pagination_past_a_thousand_keys() {
    let (_root, server) = server().await;
    let store = S3Store::new(&server.config("moltbot-data")).unwrap();
    let keys: Vec<String> = (0..1_050).map(|n| format!("many/{n:05}")).collect();
    futures::stream::iter(keys.iter())
        .map(|key| store.put(key, Bytes::from_static(b"x")))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    assert_eq!(store.list("many/").await.unwrap(), keys);
}

#[tokio::test]
async fn a_wrong_secret_is_an_auth_error_that_does_not_show_the_secret() {
    let (_root, server) = server().await;
    let mut config = server.config("moltbot-data");
    config.secret_access_key = Secret::new("not-the-secret-at-all");
    let store = S3Store::new(&config).unwrap();
    let error = store.put("a", Bytes::from_static(b"x")).await.unwrap_err();
    let text = error.to_string();
    assert_eq!(kind(error), RemoteErrorKind::Auth, "{text}");
    assert!(
        !text.contains("not-the-secret-at-all") && !text.contains(SECRET_KEY),
        "{text}"
    );
    let error = store.get("a").await.unwrap_err();
    assert_eq!(kind(error), RemoteErrorKind::Auth);
    assert!(!format!("{config:?}").contains(SECRET_KEY));
}

#[tokio::test]
async fn an_unreachable_server_is_a_network_error() {
    // (s3s-fs creates buckets on write and answers NoSuchKey for a missing one,
    // so R2's NoSuchBucket is checked against its documented body in the unit tests.)
    let (_root, mut server) = server().await;
    let store = S3Store::new(&server.config("moltbot-data")).unwrap();
    server.stop();
    let error = store.get("a").await.unwrap_err();
    assert_eq!(kind(error), RemoteErrorKind::Network);
}

#[test]
fn the_environment_names_an_r2_bucket_or_nothing() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    assert!(S3Config::from_env(env(&[])).unwrap().is_none());
    let config = S3Config::from_env(env(&[
        ("R2_ACCESS_KEY_ID", "ak"),
        ("R2_SECRET_ACCESS_KEY", "sk"),
        ("CF_ACCOUNT_ID", "acct"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(
        (
            config.endpoint.as_str(),
            config.bucket.as_str(),
            config.region.as_str()
        ),
        (
            "https://acct.r2.cloudflarestorage.com",
            "moltbot-data",
            "auto"
        )
    );
    let error = S3Config::from_env(env(&[
        ("R2_ACCESS_KEY_ID", "ak"),
        ("CF_ACCOUNT_ID", "acct"),
    ]))
    .unwrap_err();
    assert!(
        error.to_string().contains("R2_SECRET_ACCESS_KEY"),
        "{error}"
    );
    let config = S3Config::from_env(env(&[
        ("R2_ACCESS_KEY_ID", "ak"),
        ("R2_SECRET_ACCESS_KEY", "sk"),
        ("S3_ENDPOINT", "http://127.0.0.1:9000/"),
        ("R2_BUCKET_NAME", "mine"),
    ]))
    .unwrap()
    .unwrap();
    assert_eq!(
        (config.endpoint.as_str(), config.bucket.as_str()),
        ("http://127.0.0.1:9000", "mine")
    );
    assert!(!format!("{config:?}").contains("sk\""));
}
