//! The manifest: the record that makes a backup exist, and the key layout
//! artifacts and manifests are stored under.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::compression::Algorithm;
use crate::error::{Error, Result};
use crate::format::sanitize_name;
use crate::key::{Key, validate_id};
use crate::source::Versions;

/// Version written into every new manifest. Readers refuse newer versions.
pub const MANIFEST_VERSION: u32 = 1;

/// Suffix of manifest keys.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";

/// Tenant used when the caller names none.
pub const DEFAULT_TENANT: &str = "default";

/// Who started a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupKind {
    /// On demand (API, CLI, `backup_now`); retention keeps these unless told
    /// otherwise.
    Manual,
    /// Started by a schedule.
    Scheduled,
}

impl BackupKind {
    /// The name used in keys and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Manual => "manual",
            BackupKind::Scheduled => "scheduled",
        }
    }
}

impl fmt::Display for BackupKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for BackupKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "manual" => Ok(BackupKind::Manual),
            "scheduled" | "auto" | "automatic" => Ok(BackupKind::Scheduled),
            other => Err(Error::Config(format!(
                "unknown backup kind {other:?} (expected manual or scheduled)"
            ))),
        }
    }
}

/// What a backup stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackupType {
    /// A complete, self-contained dump.
    Full,
    /// Only data not already stored by earlier backups (deduplicated); still
    /// restorable on its own.
    Incremental,
}

impl BackupType {
    /// The name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupType::Full => "full",
            BackupType::Incremental => "incremental",
        }
    }
}

impl fmt::Display for BackupType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for BackupType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "full" => Ok(BackupType::Full),
            "incremental" => Ok(BackupType::Incremental),
            other => Err(Error::Config(format!(
                "unknown backup type {other:?} (expected full or incremental)"
            ))),
        }
    }
}

/// What a deduplicated ([`BackupType::Incremental`]) backup stored, recorded
/// in its manifest. The artifact of such a backup is its chunk list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DedupInfo {
    /// How the dump was cut: `fastcdc2020/{min}/{avg}/{max}` (bytes).
    pub chunker: String,
    /// Chunks in the dump, in order (the chunk list's length).
    pub chunks: u64,
    /// Chunks this backup stored because no earlier backup of the tenant
    /// had them.
    pub new_chunks: u64,
    /// Dump bytes in those new chunks (before compression).
    pub new_raw_bytes: u64,
    /// Bytes this backup added to the store: its packs and pack indexes
    /// (the chunk list is [`Manifest::stored`]).
    pub stored_bytes: u64,
    /// Packs this backup wrote.
    pub packs: u64,
    /// Size of the dump (the same as [`Manifest::raw`]'s size).
    pub logical_size: u64,
}

/// Compression recorded in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressionInfo {
    /// The algorithm; restore decodes with it.
    pub algorithm: Algorithm,
    /// Level used, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i32>,
}

/// Encryption recorded in a manifest: public recipient ids only, never key
/// material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionInfo {
    /// Scheme, e.g. `age`.
    pub scheme: String,
    /// Public recipient identifiers (`age1...`).
    pub recipients: Vec<String>,
}

/// Checksums of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    /// Length in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
    /// Lower-case hex MD5 (for tools and stores that speak only MD5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
}

/// The record of one committed backup, stored as JSON beside its artifact
/// and written last: a backup exists exactly when its manifest does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version ([`MANIFEST_VERSION`]).
    pub manifest_version: u32,
    /// Unique backup id, e.g. `20251126T030000Z-1a2b3c4d`.
    pub id: String,
    /// Tenant the backup belongs to.
    pub tenant: String,
    /// The configured source (database entry) id.
    pub source_id: String,
    /// Engine: `postgres`, `mongodb`.
    pub engine: String,
    /// Database name that was dumped.
    pub database: String,
    /// Manual or scheduled.
    pub kind: BackupKind,
    /// Full or incremental.
    #[serde(rename = "type")]
    pub backup_type: BackupType,
    /// Dump format (`pgdump`, `archive`).
    pub format: String,
    /// Compression applied before storing.
    pub compression: CompressionInfo,
    /// Encryption applied after compression, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionInfo>,
    /// When the dump started (UTC).
    pub started_at: DateTime<Utc>,
    /// When the artifact was committed (UTC).
    pub finished_at: DateTime<Utc>,
    /// Key of the artifact, relative to the store root.
    pub artifact: String,
    /// Digests of the bytes as stored (what `sha256sum` of the artifact
    /// prints).
    pub stored: Digests,
    /// Digests of the dump before compression and encryption, checked at
    /// the end of a restore.
    pub raw: Digests,
    /// Tool and server versions.
    pub versions: Versions,
    /// Backup this one depends on, for incrementals that need one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Who asked for the backup (`cli`, `scheduler`, `api:admin`), never a
    /// secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Free-form labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Chunk figures of a deduplicated backup; absent for full backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<DedupInfo>,
    /// Facts the source learned while streaming
    /// ([`Details`](crate::source::Details)), keys namespaced by engine
    /// (`postgres.start_lsn`); empty (and absent from the JSON) for
    /// sources that deliver none. Engines offer typed views of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub details: BTreeMap<String, String>,
    /// Row counts and content checksums per table, taken inside the
    /// dump's snapshot, for restore drills to compare against; absent
    /// when the source records none (optional field of version 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<crate::fingerprint::Fingerprint>,
}

impl Manifest {
    /// Parses and checks a manifest read from `key`.
    pub fn from_json(key: &Key, bytes: &[u8]) -> Result<Manifest> {
        #[derive(Deserialize)]
        struct VersionOnly {
            manifest_version: u32,
        }
        let bad = |e: serde_json::Error| Error::Manifest {
            key: key.to_string(),
            detail: e.to_string(),
        };
        let version = serde_json::from_slice::<VersionOnly>(bytes)
            .map_err(bad)?
            .manifest_version;
        if version == 0 || version > MANIFEST_VERSION {
            return Err(Error::Manifest {
                key: key.to_string(),
                detail: format!(
                    "manifest_version {version} is not supported (this build reads up to {MANIFEST_VERSION})"
                ),
            });
        }
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(bad)?;
        validate_id(&manifest.id)?;
        Key::new(manifest.artifact.as_str())?;
        Ok(manifest)
    }

    /// Serialises the manifest as pretty JSON.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(self).expect("manifest serialises");
        out.push(b'\n');
        out
    }

    /// The artifact key.
    pub fn artifact_key(&self) -> Result<Key> {
        Key::new(self.artifact.as_str())
    }

    /// The manifest's own key, derived from the artifact key.
    pub fn manifest_key(&self) -> Result<Key> {
        let layout = Layout::from_artifact(&self.artifact).ok_or_else(|| Error::Manifest {
            key: self.artifact.clone(),
            detail: "artifact key does not follow the backup naming scheme".into(),
        })?;
        layout.manifest_key()
    }

    /// Bytes this backup added to the store: the artifact, plus the packs
    /// and pack indexes a deduplicated backup wrote.
    pub fn bytes_stored(&self) -> u64 {
        self.stored.size + self.dedup.as_ref().map_or(0, |d| d.stored_bytes)
    }

    /// Wall time between start and commit.
    pub fn duration(&self) -> chrono::Duration {
        self.finished_at - self.started_at
    }
}

/// Creates a fresh backup id for a backup started at `at`:
/// `YYYYMMDDTHHMMSSZ-` plus 8 random hex digits. Ids sort by start time.
pub fn new_backup_id(at: DateTime<Utc>) -> String {
    format!(
        "{}-{:08x}",
        at.format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>()
    )
}

/// Where one backup's artifact and manifest live:
///
/// ```text
/// {tenant}/{source_id}/{YYYY}/{MM}/{kind}-{format}-{database}-{id}.{ext}[.zst|.gz]
/// {tenant}/{source_id}/{YYYY}/{MM}/{kind}-{format}-{database}-{id}.manifest.json
/// ```
///
/// The id (`YYYYMMDDTHHMMSSZ-xxxxxxxx`) ends every base name, so a backup
/// can be found by id from a key listing alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    base: String,
    id: String,
}

impl Layout {
    /// The layout of a new backup.
    pub fn new(
        tenant: &str,
        source_id: &str,
        kind: BackupKind,
        format: &str,
        database: &str,
        id: &str,
        started_at: DateTime<Utc>,
    ) -> Result<Layout> {
        validate_id(tenant)?;
        validate_id(source_id)?;
        validate_id(id)?;
        let base = format!(
            "{tenant}/{source_id}/{:04}/{:02}/{kind}-{}-{}-{id}",
            started_at.year(),
            started_at.month(),
            sanitize_name(format),
            sanitize_name(database),
        );
        Key::new(base.as_str())?;
        Ok(Layout {
            base,
            id: id.to_string(),
        })
    }

    /// Recognises a manifest key; `None` for any other key.
    pub fn from_manifest_key(key: &str) -> Option<Layout> {
        let base = key.strip_suffix(MANIFEST_SUFFIX)?;
        let id = id_suffix(base)?;
        Some(Layout {
            base: base.to_string(),
            id,
        })
    }

    /// Recognises an artifact key (a base name plus extensions); `None` for
    /// keys that do not follow the naming scheme or are manifests.
    pub fn from_artifact(key: &str) -> Option<Layout> {
        if key.ends_with(MANIFEST_SUFFIX) {
            return None;
        }
        let (dir, file) = key.rsplit_once('/')?;
        // The id is `YYYYMMDDTHHMMSSZ-xxxxxxxx`, then the first `.` starts
        // the extensions.
        let stem = file.split_once('.').map_or(file, |(s, _)| s);
        let id = id_suffix(stem)?;
        Some(Layout {
            base: format!("{dir}/{stem}"),
            id,
        })
    }

    /// The backup id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Key of the manifest.
    pub fn manifest_key(&self) -> Result<Key> {
        Key::new(format!("{}{MANIFEST_SUFFIX}", self.base))
    }

    /// Key of the artifact with the given extensions (`"dump.zst"`).
    pub fn artifact_key(&self, extensions: &str) -> Result<Key> {
        Key::new(format!("{}.{extensions}", self.base))
    }

    /// The base key both share.
    pub fn base(&self) -> &str {
        &self.base
    }
}

/// Extracts a trailing `YYYYMMDDTHHMMSSZ-xxxxxxxx` id from a base name.
fn id_suffix(base: &str) -> Option<String> {
    const ID_LEN: usize = 16 + 1 + 8;
    let file = base.rsplit('/').next()?;
    // `get` rather than `split_at`: a multi-byte character before the id
    // must make the name unrecognised, not panic.
    let split = file.len().checked_sub(ID_LEN).filter(|at| *at > 0)?;
    let (head, id) = (file.get(..split)?, file.get(split..)?);
    if !head.ends_with('-') || !is_backup_id(id) {
        return None;
    }
    Some(id.to_string())
}

/// Whether `id` has the shape of a backup id made by [`new_backup_id`].
pub fn is_backup_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 25
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[17..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 11, 26, 3, 0, 0).unwrap()
    }

    #[test]
    fn ids_have_a_fixed_shape() {
        let id = new_backup_id(at());
        assert!(id.starts_with("20251126T030000Z-"), "{id}");
        assert!(is_backup_id(&id));
        assert!(!is_backup_id("20251126T030000Z-1234567"));
        assert!(!is_backup_id("../../etc/passwd"));
    }

    #[test]
    fn layout_round_trips_through_keys() {
        let id = "20251126T030000Z-0badf00d";
        let l = Layout::new(
            "acme",
            "pg_sales",
            BackupKind::Scheduled,
            "pgdump",
            "sales db/ü",
            id,
            at(),
        )
        .unwrap();
        let artifact = l.artifact_key("dump.zst").unwrap();
        assert_eq!(
            artifact.as_str(),
            "acme/pg_sales/2025/11/scheduled-pgdump-sales_db__-20251126T030000Z-0badf00d.dump.zst"
        );
        let manifest = l.manifest_key().unwrap();
        assert_eq!(Layout::from_manifest_key(manifest.as_str()).unwrap(), l);
        assert_eq!(Layout::from_artifact(artifact.as_str()).unwrap(), l);
        assert_eq!(Layout::from_artifact(manifest.as_str()), None);
        assert_eq!(Layout::from_artifact("acme/chunks/ab/cdef"), None);
    }

    #[test]
    fn dots_in_database_names_do_not_hide_the_id() {
        let id = "20251126T030000Z-0badf00d";
        let l = Layout::new("t", "s", BackupKind::Manual, "pgdump", "shop.eu", id, at()).unwrap();
        let artifact = l.artifact_key("dump.zst").unwrap();
        assert!(artifact.as_str().contains("shop_eu"), "{artifact}");
        assert_eq!(Layout::from_artifact(artifact.as_str()).unwrap().id(), id);
    }

    #[test]
    fn layout_rejects_traversal_in_ids() {
        assert!(
            Layout::new(
                "..",
                "x",
                BackupKind::Manual,
                "f",
                "d",
                "20251126T030000Z-0badf00d",
                at()
            )
            .is_err()
        );
        assert!(
            Layout::new(
                "t",
                "a/b",
                BackupKind::Manual,
                "f",
                "d",
                "20251126T030000Z-0badf00d",
                at()
            )
            .is_err()
        );
    }

    #[test]
    fn refuses_future_manifest_versions() {
        let key = Key::new("a/b.manifest.json").unwrap();
        let err = Manifest::from_json(&key, br#"{"manifest_version": 99}"#).unwrap_err();
        assert!(err.to_string().contains("manifest_version 99"), "{err}");
    }
}
