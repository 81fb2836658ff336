//! Packages: one `.zip` or `.tar.gz` holding the latest backup (artifact
//! and manifest) of every database marked `package: true`, streamed into
//! the store without a temporary copy, with its own retention.
//!
//! Layout: `{tenant}/_packages/{YYYY}/{MM}/package-{id}.{zip|tar.gz}` and
//! `…/package-{id}.manifest.json`, written last like a backup's manifest.

mod archive;
mod tar;
#[cfg(test)]
mod tests;
mod zip;

use backup_core::backup_ref::BackupRef;
use std::sync::Arc;

use backup_core::key::{Key, validate_id};
use backup_core::manifest::{Manifest, is_backup_id, new_backup_id};
use backup_core::store::{Created, StoreExt};
use backup_core::{BackupType, Engine, Error, Result, Store};
use bytes::Bytes;
use chrono::{DateTime, Datelike, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use archive::Archive;
use tar::TarWriter;
use zip::ZipWriter;

/// Archive format of a package.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PackageFormat {
    /// A zip file (entries stored: artifacts are already compressed).
    #[serde(rename = "zip")]
    Zip,
    /// A gzip-compressed POSIX tar file.
    #[serde(rename = "tar.gz")]
    TarGz,
}

impl PackageFormat {
    /// File extension.
    pub fn extension(self) -> &'static str {
        match self {
            PackageFormat::Zip => "zip",
            PackageFormat::TarGz => "tar.gz",
        }
    }

    /// HTTP content type.
    pub fn content_type(self) -> &'static str {
        match self {
            PackageFormat::Zip => "application/zip",
            PackageFormat::TarGz => "application/gzip",
        }
    }
}

/// One backup inside a package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageEntry {
    /// Source id.
    pub source_id: String,
    /// Backup id.
    pub backup_id: String,
    /// Path of the artifact inside the package.
    pub artifact: String,
    /// Path of its manifest inside the package.
    pub manifest: String,
    /// Artifact size.
    pub size: u64,
    /// Artifact SHA-256 (verified while packing).
    pub sha256: String,
}

/// The record of a committed package.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageManifest {
    /// Format version.
    pub manifest_version: u32,
    /// Package id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Zip or tar.gz.
    pub format: PackageFormat,
    /// Manual or scheduled.
    pub kind: String,
    /// When it was built.
    pub created_at: DateTime<Utc>,
    /// Key of the package file.
    pub artifact: String,
    /// Its size.
    pub size: u64,
    /// Its SHA-256.
    pub sha256: String,
    /// What it contains.
    pub entries: Vec<PackageEntry>,
}

fn base_key(tenant: &str, id: &str, at: DateTime<Utc>) -> String {
    format!(
        "{tenant}/_packages/{:04}/{:02}/package-{id}",
        at.year(),
        at.month()
    )
}

/// Builds a package for `tenant` from `latest` (the newest manifest of each
/// packaged database), streaming every artifact into the archive while
/// checking its SHA-256 against its manifest.
pub async fn build(
    engine: &Engine,
    tenant: &str,
    format: PackageFormat,
    kind: &str,
    latest: Vec<Arc<Manifest>>,
) -> Result<PackageManifest> {
    validate_id(tenant)?;
    let store = engine.store();
    if latest.is_empty() {
        return Err(Error::Config(format!(
            "tenant {tenant} has no backups of databases marked `package: true` to package"
        )));
    }
    let created_at = Utc::now();
    let id = new_backup_id(created_at);
    let base = base_key(tenant, &id, created_at);
    let artifact_key = Key::new(format!("{base}.{}", format.extension()))?;
    let manifest_key = Key::new(format!("{base}.manifest.json"))?;

    let (writer, reader) = tokio::io::duplex(1024 * 1024);
    let upload_store = Arc::clone(store);
    let upload_key = artifact_key.clone();
    let hashed = Arc::new(std::sync::Mutex::new(Sha256::new()));
    let hasher = Arc::clone(&hashed);
    let body = ReaderStream::with_capacity(reader, 1024 * 1024)
        .map(move |chunk| {
            let chunk = chunk.map_err(|e| Error::io("building the package", e))?;
            hasher.lock().expect("hash lock").update(&chunk);
            Ok::<Bytes, Error>(chunk)
        })
        .boxed();
    let upload = tokio::spawn(async move { upload_store.put_from_stream(&upload_key, body).await });
    let writing = write_package(engine, format, writer, &latest, created_at).await;
    let uploaded = upload
        .await
        .map_err(|e| Error::Config(format!("package upload task failed: {e}")))?;
    let entries = match (writing, uploaded) {
        (Ok(entries), Ok(meta)) => (entries, meta),
        (Err(e), uploaded) => {
            if uploaded.is_ok() {
                let _ = store.delete(&artifact_key).await;
            }
            return Err(e);
        }
        (Ok(_), Err(e)) => return Err(e),
    };
    let (entries, meta) = entries;
    let sha256 = hex::encode(hashed.lock().expect("hash lock").clone().finalize());
    let manifest = PackageManifest {
        manifest_version: 1,
        id,
        tenant: tenant.to_string(),
        format,
        kind: kind.to_string(),
        created_at,
        artifact: artifact_key.to_string(),
        size: meta.size,
        sha256,
        entries,
    };
    let json = serde_json::to_vec_pretty(&manifest).expect("package manifests serialise");
    match store.create_settled(&manifest_key, Bytes::from(json)).await {
        Created::Stored => Ok(manifest),
        // The manifest may be stored: its artifact stays.
        Created::Unknown(e) => Err(e),
        Created::Absent(e) => {
            let _ = store.delete(&artifact_key).await;
            Err(e)
        }
        Created::Taken => {
            let _ = store.delete(&artifact_key).await;
            Err(Error::AlreadyExists {
                key: manifest_key.to_string(),
            })
        }
    }
}

async fn write_package(
    engine: &Engine,
    format: PackageFormat,
    writer: tokio::io::DuplexStream,
    latest: &[Arc<Manifest>],
    at: DateTime<Utc>,
) -> Result<Vec<PackageEntry>> {
    let io = |e: std::io::Error| Error::from_io("writing the package", e);
    match format {
        PackageFormat::Zip => {
            let mut zip = ZipWriter::new(writer, at);
            let entries = add_all(engine, latest, &mut zip).await?;
            zip.finish().await.map_err(io)?;
            Ok(entries)
        }
        PackageFormat::TarGz => {
            let gz = async_compression::tokio::write::GzipEncoder::new(writer);
            let mut tar = TarWriter::new(gz, at);
            let entries = add_all(engine, latest, &mut tar).await?;
            let mut gz = tar.finish().await.map_err(io)?;
            gz.shutdown().await.map_err(io)?;
            Ok(entries)
        }
    }
}

async fn add_all<A: Archive>(
    engine: &Engine,
    latest: &[Arc<Manifest>],
    archive: &mut A,
) -> Result<Vec<PackageEntry>> {
    let store = engine.store();
    let mut entries = Vec::new();
    for m in latest {
        let artifact_key = m.artifact_key()?;
        let incremental = m.backup_type == BackupType::Incremental;
        // An incremental backup's artifact is a chunk list: package the
        // reassembled (verified) dump instead.
        let file = if incremental {
            dump_file_name(m)
        } else {
            artifact_key.file_name().to_string()
        };
        let (size, expected_sha) = if incremental {
            (m.raw.size, &m.raw.sha256)
        } else {
            (m.stored.size, &m.stored.sha256)
        };
        let manifest_key = m.manifest_key()?;
        let artifact_path = format!("{}/{file}", m.source_id);
        let manifest_path = format!("{}/{}", m.source_id, manifest_key.file_name());
        let manifest_bytes = store.get_bytes(&manifest_key).await?;
        archive
            .add(
                &manifest_path,
                manifest_bytes.len() as u64,
                futures::stream::once(async { Ok(manifest_bytes) }).boxed(),
            )
            .await?;
        let body = if incremental {
            engine
                .open_dump(BackupRef::in_tenant(&m.tenant, &m.id))
                .await?
                .1
        } else {
            let got = store.get(&artifact_key).await?;
            if got.meta.size != m.stored.size {
                return Err(Error::Integrity {
                    what: artifact_key.to_string(),
                    detail: format!(
                        "{} bytes, manifest records {}",
                        got.meta.size, m.stored.size
                    ),
                });
            }
            got.stream
        };
        let hasher = Arc::new(std::sync::Mutex::new(Sha256::new()));
        let h = Arc::clone(&hasher);
        let stream = body
            .map(move |c| {
                if let Ok(c) = &c {
                    h.lock().expect("hash lock").update(c);
                }
                c
            })
            .boxed();
        archive.add(&artifact_path, size, stream).await?;
        let sha256 = hex::encode(hasher.lock().expect("hash lock").clone().finalize());
        if sha256 != *expected_sha {
            return Err(Error::Integrity {
                what: artifact_key.to_string(),
                detail: format!("sha256 {sha256} != recorded {expected_sha}"),
            });
        }
        entries.push(PackageEntry {
            source_id: m.source_id.clone(),
            backup_id: m.id.clone(),
            artifact: artifact_path,
            manifest: manifest_path,
            size,
            sha256,
        });
    }
    let index = serde_json::to_vec_pretty(&entries).expect("entries serialise");
    archive
        .add(
            "package.json",
            index.len() as u64,
            futures::stream::once(async { Ok(Bytes::from(index)) }).boxed(),
        )
        .await?;
    Ok(entries)
}

/// File name of an incremental backup's reassembled dump: the artifact's
/// name with the chunk-list extension replaced by the dump's own.
pub fn dump_file_name(m: &Manifest) -> String {
    let file = m.artifact.rsplit('/').next().unwrap_or(&m.artifact);
    let stem = file.split_once('.').map_or(file, |(s, _)| s);
    let ext = if m.engine == "mongodb" {
        "archive"
    } else {
        "dump"
    };
    format!("{stem}.{ext}")
}

/// Committed packages of `tenant` (all tenants when `None`), newest first.
pub async fn list(store: &Arc<dyn Store>, tenant: Option<&str>) -> Result<Vec<PackageManifest>> {
    let prefix = match tenant {
        Some(t) => {
            validate_id(t)?;
            Some(Key::new(format!("{t}/_packages"))?)
        }
        None => None,
    };
    let mut out = Vec::new();
    for meta in store.list_all(prefix.as_ref()).await? {
        let segments: Vec<&str> = meta.key.segments().collect();
        if segments.get(1) != Some(&"_packages") || !meta.key.as_str().ends_with(".manifest.json") {
            continue;
        }
        match store.get_bytes(&meta.key).await {
            Ok(bytes) => match serde_json::from_slice::<PackageManifest>(&bytes) {
                Ok(m) => out.push(m),
                Err(e) => {
                    tracing::warn!(key = %meta.key, error = %e, "unreadable package manifest")
                }
            },
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| b.id.cmp(&a.id))
    });
    Ok(out)
}

/// One package by id, within `tenant` if given.
pub async fn get(
    store: &Arc<dyn Store>,
    id: &str,
    tenant: Option<&str>,
) -> Result<PackageManifest> {
    if !is_backup_id(id) {
        return Err(Error::InvalidKey {
            key: id.chars().take(200).collect(),
            reason: "not a package id (expected YYYYMMDDTHHMMSSZ-xxxxxxxx)",
        });
    }
    list(store, tenant)
        .await?
        .into_iter()
        .find(|p| p.id == id)
        .ok_or_else(|| Error::not_found(format!("package {id}")))
}

/// Deletes a package: manifest first, then the file.
pub async fn delete(store: &Arc<dyn Store>, package: &PackageManifest) -> Result<()> {
    let base = package
        .artifact
        .strip_suffix(&format!(".{}", package.format.extension()))
        .ok_or_else(|| Error::Config("package artifact key has an unexpected extension".into()))?;
    store
        .delete(&Key::new(format!("{base}.manifest.json"))?)
        .await?;
    store.delete(&Key::new(package.artifact.as_str())?).await
}

/// Applies count and age limits to a tenant's packages (keeping the union
/// and always the newest); returns the ids deleted.
pub async fn prune(
    store: &Arc<dyn Store>,
    tenant: &str,
    max: Option<usize>,
    max_age: Option<std::time::Duration>,
    now: DateTime<Utc>,
) -> Result<Vec<String>> {
    if max.is_none() && max_age.is_none() {
        return Ok(Vec::new());
    }
    let packages = list(store, Some(tenant)).await?;
    let mut deleted = Vec::new();
    for (i, p) in packages.iter().enumerate() {
        let by_count = max.is_some_and(|n| i < n);
        let by_age = max_age.is_some_and(|age| {
            // Ages beyond chrono's range keep everything.
            match chrono::Duration::from_std(age) {
                Ok(age) => now - p.created_at <= age,
                Err(_) => true,
            }
        });
        if i == 0 || by_count || by_age {
            continue;
        }
        delete(store, p).await?;
        deleted.push(p.id.clone());
    }
    Ok(deleted)
}
