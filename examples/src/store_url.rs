//! One place that turns where a store lives (a directory, or
//! `s3://bucket/prefix`, plus how to reach the S3 server) into a
//! [`Store`]: `backupctl --store`, backupd's `storage:` and `quickstart` all
//! open their store here.

use std::path::PathBuf;
use std::sync::Arc;

use backup_core::key::Key;
use backup_core::store::StoreExt;
use backup_core::{Error, Result, Secret, Store};
use backup_store_fs::FsStore;
use backup_store_s3::{S3Store, S3StoreBuilder};

/// Where a store lives.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// A directory, created if missing ([`FsStore`]).
    Dir(PathBuf),
    /// A bucket and an optional prefix on an S3-compatible server
    /// ([`S3Store`]), validated as [`S3StoreBuilder::build`] does.
    S3(Box<S3StoreBuilder>),
}

impl StoreLocation {
    /// Parses a command-line spec: `s3://bucket[/prefix]`, or anything
    /// without a scheme as a directory path. Refuses an empty spec and any
    /// other scheme (`gs://`, `file://`...), which would otherwise become a
    /// directory of that name.
    pub fn parse(spec: &str) -> Result<StoreLocation> {
        if spec.is_empty() {
            return Err(Error::Config("--store must not be empty".into()));
        }
        if spec.starts_with("s3://") {
            return Ok(StoreLocation::S3(Box::new(S3Store::builder_from_url(
                spec,
            )?)));
        }
        if let Some((scheme, _)) = spec.split_once("://") {
            return Err(Error::Config(format!(
                "unsupported store scheme {scheme}:// (expected a directory path or s3://bucket/prefix)"
            )));
        }
        Ok(StoreLocation::Dir(PathBuf::from(spec)))
    }

    /// A bucket and an optional prefix (checked when the store is opened).
    pub fn s3(bucket: impl Into<String>, prefix: Option<String>) -> StoreLocation {
        let builder = S3Store::builder(bucket);
        StoreLocation::S3(Box::new(match prefix {
            Some(prefix) => builder.prefix(prefix),
            None => builder,
        }))
    }
}

/// How to reach an S3-compatible server. What is unset here comes from the
/// standard `AWS_*` environment (endpoint, region, credentials, as the AWS
/// SDKs read them); what is set wins over it. Ignored for a directory.
///
/// `Debug` shows the secret key as `***`.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// Endpoint of an S3-compatible server (MinIO, R2, Supabase...); AWS when unset.
    pub endpoint: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Path-style (`true`) or virtual-hosted (`false`) requests; by default
    /// path-style with an endpoint, virtual-hosted on AWS.
    pub path_style: Option<bool>,
    /// Allow (or forbid) a plain-HTTP endpoint; by default allowed exactly
    /// for an `http://` endpoint.
    pub allow_http: Option<bool>,
    /// Static credentials instead of the environment's.
    pub credentials: Option<S3Credentials>,
}

/// A static S3 access key.
#[derive(Debug, Clone)]
pub struct S3Credentials {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key (only handed to the request signer).
    pub secret_access_key: Secret,
}

/// Opens the store at `location`; a directory is created if missing.
pub fn open_store(location: StoreLocation, s3: &S3Settings) -> Result<Arc<dyn Store>> {
    match location {
        StoreLocation::Dir(path) => Ok(Arc::new(FsStore::new(path)?)),
        StoreLocation::S3(builder) => {
            let mut builder = builder.from_env();
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.endpoint(endpoint);
            }
            if let Some(region) = &s3.region {
                builder = builder.region(region);
            }
            if let Some(path_style) = s3.path_style {
                builder = builder.path_style(path_style);
            }
            if let Some(allow) = s3.allow_http {
                builder = builder.allow_http(allow);
            }
            if let Some(c) = &s3.credentials {
                builder = builder.credentials(c.access_key_id.clone(), c.secret_access_key.clone());
            }
            Ok(Arc::new(builder.build()?))
        }
    }
}

/// The object that marks a store as one of ours (`_store.json`, in the
/// reserved `_` namespace): written by the first writer
/// ([`open_store_for_writing`]), looked for by
/// [`open_existing_store`].
pub const STORE_MARKER: &str = "_store.json";

/// What [`STORE_MARKER`] holds: a format name and version, nothing secret.
const MARKER_BODY: &str = "{\"format\":\"dbbackup-store\",\"version\":1}\n";

/// Opens the store at `location` for a command that writes backups into
/// it: a directory is created if missing and the store is marked
/// ([`STORE_MARKER`], create-only, so a concurrent first writer is fine).
pub async fn open_store_for_writing(
    location: StoreLocation,
    s3: &S3Settings,
) -> Result<Arc<dyn Store>> {
    init_store(location, s3).await.map(|(store, _)| store)
}

/// Creates (a directory) and marks the store at `location` if it is not
/// marked yet; `true` when this call wrote the mark (`backupctl init`).
pub async fn init_store(
    location: StoreLocation,
    s3: &S3Settings,
) -> Result<(Arc<dyn Store>, bool)> {
    let store = open_store(location, s3)?;
    let marker = Key::new(STORE_MARKER)?;
    match store
        .create_best_effort(&marker, bytes::Bytes::from_static(MARKER_BODY.as_bytes()))
        .await
    {
        Ok(_) => Ok((store, true)),
        Err(Error::AlreadyExists { .. }) => Ok((store, false)),
        Err(e) => Err(e),
    }
}

/// Opens a store that must already exist, for every command but `backup`
/// (restic's "repository does not exist"): a directory that is missing or
/// not a directory, or a store (directory or bucket prefix) with neither
/// [`STORE_MARKER`] nor any object, is refused with an error naming it, and
/// nothing is created. Stores written before the marker existed are
/// recognised by their objects.
pub async fn open_existing_store(
    location: StoreLocation,
    s3: &S3Settings,
) -> Result<Arc<dyn Store>> {
    let shown = location.to_string();
    if let StoreLocation::Dir(path) = &location {
        match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::Config(format!(
                    "store {shown} is not a directory; check --store"
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Config(format!(
                    "store {shown} does not exist; check --store (only `backupctl backup` creates a store)"
                )));
            }
            Err(e) => return Err(Error::io(format!("opening store {shown}"), e)),
        }
    }
    let store = open_store(location, s3)?;
    let marker = Key::new(STORE_MARKER)?;
    if store.exists(&marker).await? {
        return Ok(store);
    }
    let mut listing = store.list(None);
    match futures::StreamExt::next(&mut listing).await {
        Some(Ok(_)) => Ok(store),
        Some(Err(e)) => Err(e),
        None => Err(Error::Config(format!(
            "store {shown} holds no backups (no {STORE_MARKER} and no objects); check --store (only `backupctl backup` creates a store)"
        ))),
    }
}

impl std::fmt::Display for StoreLocation {
    /// The directory, or `s3://bucket/prefix`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Dir(path) => write!(f, "{}", path.display()),
            StoreLocation::S3(builder) => write!(f, "{}", builder.location()),
        }
    }
}

/// Opens the store named on a command line ([`StoreLocation::parse`]),
/// configured from the `AWS_*` environment.
pub fn open_store_spec(spec: &str) -> Result<Arc<dyn Store>> {
    open_store(StoreLocation::parse(spec)?, &S3Settings::default())
}
