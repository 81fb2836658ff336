//! [`WalArchive`]: WAL files of one PostgreSQL source in a backup store.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use backup_core::engine::{SealOptions, SealedRecord};
use backup_core::key::{Key, validate_id};
use backup_core::store::{ByteStream, Created, StoreExt};
use backup_core::{Engine, Error, Result};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use super::leftovers::Leftovers;
use super::name::{WalFileKind, WalFileName};

/// The reserved directory of WAL archives under a tenant.
pub const WAL_DIR: &str = "_wal";

/// Version of [`WalRecord`].
const RECORD_VERSION: u32 = 1;

/// The record that makes a WAL file exist in the archive, stored as
/// `{name}.json` beside the directory of its data: written after the data
/// object, deleted before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalRecord {
    /// Format version (1).
    pub version: u32,
    /// The WAL file's name.
    pub name: String,
    /// The data object's name in `{name}/` (16 hex digits, unique per push).
    pub data: String,
    /// How the data is stored and what it hashes to.
    pub sealed: SealedRecord,
}

impl WalRecord {
    /// SHA-256 (hex) of the WAL file itself.
    pub fn sha256(&self) -> &str {
        &self.sealed.raw.sha256
    }

    /// Size of the WAL file itself.
    pub fn size(&self) -> u64 {
        self.sealed.raw.size
    }
}

/// What [`WalArchive::push`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use = "a Conflict must be reported: the file was not archived"]
pub enum PushOutcome {
    /// Stored now.
    Archived(WalRecord),
    /// Already stored with the same SHA-256: nothing was written.
    AlreadyArchived(WalRecord),
    /// Already stored with different content: nothing was written and the
    /// stored file was left as it is.
    Conflict(WalConflict),
}

/// A WAL file pushed with content other than what the archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalConflict {
    /// The file's name.
    pub name: String,
    /// SHA-256 of the archived file.
    pub archived_sha256: String,
    /// SHA-256 of the file pushed.
    pub pushed_sha256: String,
}

impl PushOutcome {
    /// The record stored, or [`Error::AlreadyExists`] naming the file for
    /// a conflict.
    pub fn into_result(self) -> Result<WalRecord> {
        match self {
            PushOutcome::Archived(r) | PushOutcome::AlreadyArchived(r) => Ok(r),
            PushOutcome::Conflict(c) => Err(Error::AlreadyExists {
                key: format!(
                    "WAL file {} in the archive with other content (archived sha256 {}, pushed {}); \
                     it was not overwritten: is another server archiving into the same source?",
                    c.name, c.archived_sha256, c.pushed_sha256
                ),
            }),
        }
    }
}

/// What [`WalArchive::prune_before`] removed (or would remove).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct WalPruneReport {
    /// Nothing was deleted.
    pub dry_run: bool,
    /// Names of the files removed (or that would be), in order.
    pub removed: Vec<String>,
    /// Stored bytes freed.
    pub freed_bytes: u64,
}

/// The WAL archive of one PostgreSQL source (cluster) in the engine's
/// store: complete segments, timeline history files and backup history
/// files, each compressed, hashed and (when the engine encrypts)
/// encrypted like a backup artifact.
///
/// # Layout
///
/// ```text
/// {tenant}/_wal/{source_id}/{TTTTTTTT}/{name}.json               the record: the file exists
/// {tenant}/_wal/{source_id}/{TTTTTTTT}/{name}/{16 hex}.data      its data (sealed object)
/// ```
///
/// `TTTTTTTT` is the file's timeline. The `_wal` segment is reserved
/// (tenant and source ids cannot start with `_`), so the catalog, sweep,
/// check, prune and garbage collection never take these keys for backups,
/// orphans or chunks.
///
/// # Contract
///
/// - The data object is written first, under a name unique to the push,
///   then the record, create-only: a file exists exactly when its record
///   does, and a record's data is never overwritten. A push interrupted
///   before its record leaves a data object without a record; the next
///   push of the same file writes its own and then removes it, when it is
///   the first push of this instance (and its clones) or retries a push
///   that did not settle in it: other pushes list nothing (see
///   `wal/leftovers.rs` for why that is where leftovers can be).
/// - A file already archived is never replaced: the same content is
///   [`PushOutcome::AlreadyArchived`], other content
///   [`PushOutcome::Conflict`].
/// - Reads are verified (stored and raw sizes and digests) before the
///   last bytes are released; [`WalArchive::fetch`] writes a temporary
///   file beside the destination and renames it only once verified.
/// - Deleting removes the record first, then the data.
/// - Memory is flat: files are streamed, never read whole.
#[derive(Debug, Clone)]
pub struct WalArchive {
    engine: Arc<Engine>,
    prefix: Key,
    leftovers: Arc<Leftovers>,
}

impl WalArchive {
    /// The archive of `source_id` in `tenant`. Both are ids as backups use
    /// them; ids starting with `_` are reserved and refused.
    pub fn new(engine: Arc<Engine>, tenant: &str, source_id: &str) -> Result<WalArchive> {
        for id in [tenant, source_id] {
            validate_id(id)?;
            if id.starts_with('_') {
                return Err(Error::InvalidKey {
                    key: id.to_string(),
                    reason: "tenant and source ids starting with '_' are reserved",
                });
            }
        }
        Ok(WalArchive {
            engine,
            prefix: Key::new(format!("{tenant}/{WAL_DIR}/{source_id}"))?,
            leftovers: Arc::default(),
        })
    }

    /// The key prefix of this archive.
    pub fn prefix(&self) -> &Key {
        &self.prefix
    }

    fn timeline_dir(&self, timeline: u32) -> Result<Key> {
        self.prefix.join(&format!("{timeline:08X}"))
    }

    fn record_key(&self, name: &WalFileName) -> Result<Key> {
        self.timeline_dir(name.timeline())?
            .join(&format!("{}.json", name.as_str()))
    }

    fn data_dir(&self, name: &WalFileName) -> Result<Key> {
        self.timeline_dir(name.timeline())?.join(name.as_str())
    }

    fn data_key(&self, name: &WalFileName, token: &str) -> Result<Key> {
        self.data_dir(name)?.join(&format!("{token}.data"))
    }

    /// The record of `name`, or `None` when it is not archived.
    pub async fn record(&self, name: &str) -> Result<Option<WalRecord>> {
        let name = WalFileName::parse(name)?;
        self.load_record(&name).await
    }

    /// When the record of `name` was stored (the store's clock): when the
    /// file became part of the archive. `None` when it is not archived.
    pub async fn archived_at(&self, name: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>> {
        let name = WalFileName::parse(name)?;
        match self.engine.store().head(&self.record_key(&name)?).await {
            Ok(meta) => Ok(Some(meta.last_modified)),
            Err(Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn load_record(&self, name: &WalFileName) -> Result<Option<WalRecord>> {
        let key = self.record_key(name)?;
        let bytes = match self.engine.store().get_bytes(&key).await {
            Ok(b) => b,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |detail: String| Error::Manifest {
            key: key.to_string(),
            detail,
        };
        let record: WalRecord =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("not a WAL record: {e}")))?;
        if record.version != RECORD_VERSION {
            return Err(bad(format!("unknown record version {}", record.version)));
        }
        if record.name != name.as_str() {
            return Err(bad(format!("records {} under another name", record.name)));
        }
        if !is_token(&record.data) {
            return Err(bad(format!(
                "data name {:?} is not 16 hex digits",
                record.data
            )));
        }
        Ok(Some(record))
    }

    /// Archives the file at `path` under its file name (what
    /// `archive_command`'s `%p` names). Returns only once the record is
    /// stored (or was already).
    pub async fn push(&self, path: &Path) -> Result<PushOutcome> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Config(format!("{} names no WAL file", path.display())))?;
        let name = WalFileName::parse(name)?;
        let open = || async {
            tokio::fs::File::open(path)
                .await
                .map_err(|e| Error::from_io(format!("opening {}", path.display()), e))
        };
        if let Some(existing) = self.load_record(&name).await? {
            let digest = sha256_of(open().await?, path).await?;
            return self.compare(&name, existing, digest).await;
        }
        let file = open().await?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
            .map(|r| r.map_err(|e| Error::from_io("reading the WAL file", e)))
            .boxed();
        self.push_stream(&name, stream).await
    }

    /// Archives `data` as the WAL file `name` (for archivers that hold the
    /// file as a stream). Same contract as [`WalArchive::push`].
    pub async fn push_stream(&self, name: &WalFileName, data: ByteStream) -> Result<PushOutcome> {
        let token = format!("{:016x}", rand::random::<u64>());
        let data_key = self.data_key(name, &token)?;
        let look = self.leftovers.start(name.as_str());
        let sealed = self
            .engine
            .put_sealed(&data_key, data, &SealOptions::default())
            .await?;
        let record = WalRecord {
            version: RECORD_VERSION,
            name: name.as_str().to_string(),
            data: token,
            sealed,
        };
        let body = Bytes::from(serde_json::to_vec_pretty(&record).expect("serialisable record"));
        let record_key = self.record_key(name)?;
        let store = self.engine.store();
        match store.create_settled(&record_key, body).await {
            Created::Stored => {
                if !look || self.remove_leftovers(name, &record.data).await {
                    self.leftovers.settled(name.as_str());
                }
                Ok(PushOutcome::Archived(record))
            }
            Created::Taken => {
                // Another push of the same file won the record: ours is
                // not needed, whatever it holds.
                let _ = store.delete(&data_key).await;
                self.leftovers.settled(name.as_str());
                let existing = self.load_record(name).await?.ok_or_else(|| {
                    Error::not_found(format!(
                        "WAL file {name} (its record vanished during the push)"
                    ))
                })?;
                let digest = record.sealed.raw.sha256.clone();
                self.compare(name, existing, digest).await
            }
            Created::Absent(e) => {
                if store.delete(&data_key).await.is_ok() {
                    self.leftovers.settled(name.as_str());
                }
                Err(e)
            }
            // The record may be there: keep its data (if not, the next
            // push of the file removes it).
            Created::Unknown(e) => Err(e),
        }
    }

    /// Same name, stored already: the same digest is success, another a
    /// conflict. The archived data must still be there.
    async fn compare(
        &self,
        name: &WalFileName,
        existing: WalRecord,
        pushed_sha256: String,
    ) -> Result<PushOutcome> {
        if existing.sealed.raw.sha256 != pushed_sha256 {
            return Ok(PushOutcome::Conflict(WalConflict {
                name: name.as_str().to_string(),
                archived_sha256: existing.sealed.raw.sha256,
                pushed_sha256,
            }));
        }
        let data_key = self.data_key(name, &existing.data)?;
        match self.engine.store().head(&data_key).await {
            Ok(meta) if meta.size == existing.sealed.stored.size => {
                Ok(PushOutcome::AlreadyArchived(existing))
            }
            Ok(meta) => Err(Error::Integrity {
                what: format!("WAL file {name}"),
                detail: format!(
                    "its data {data_key} is {} bytes, its record says {}: run backupctl check",
                    meta.size, existing.sealed.stored.size
                ),
            }),
            Err(Error::NotFound { .. }) => Err(Error::Integrity {
                what: format!("WAL file {name}"),
                detail: format!("recorded but its data {data_key} is missing"),
            }),
            Err(e) => Err(e),
        }
    }

    /// Removes data objects of `name` other than `keep` (pushes interrupted
    /// before their record); whether all went. Best effort: a failure only
    /// leaves garbage.
    async fn remove_leftovers(&self, name: &WalFileName, keep: &str) -> bool {
        let Ok(dir) = self.data_dir(name) else {
            return false;
        };
        let store = self.engine.store();
        match store.list_all(Some(&dir)).await {
            Ok(objects) => {
                let mut all = true;
                for o in objects {
                    if o.key.file_name() != format!("{keep}.data") {
                        tracing::info!(key = %o.key, "removing the data of an interrupted WAL push");
                        all &= store.delete(&o.key).await.is_ok();
                    }
                }
                all
            }
            Err(e) => {
                tracing::warn!(%dir, error = %e, "could not list leftovers of earlier pushes");
                false
            }
        }
    }

    /// The plaintext of WAL file `name`, verified as it streams: the last
    /// item is an error instead of the last bytes if anything differs from
    /// its record. [`Error::NotFound`] naming the file when it is not
    /// archived.
    pub async fn open(&self, name: &str) -> Result<(WalRecord, ByteStream)> {
        let parsed = WalFileName::parse(name)?;
        let record = self
            .load_record(&parsed)
            .await?
            .ok_or_else(|| Error::not_found(format!("WAL file {name} (not in the archive)")))?;
        let key = self.data_key(&parsed, &record.data)?;
        let stream = self
            .engine
            .open_sealed(&key, &record.sealed)
            .await
            .map_err(|e| name_it(name, e))?;
        let name = name.to_string();
        let stream = stream
            .map(move |item| item.map_err(|e| name_it(&name, e)))
            .boxed();
        Ok((record, stream))
    }

    /// Restores WAL file `name` to `dest` (what `restore_command`'s `%f`
    /// and `%p` name): written to a temporary file beside `dest`, synced,
    /// and renamed over `dest` only once every digest matched. On any
    /// failure nothing is left at `dest` (nor beside it) and the error
    /// names the file.
    pub async fn fetch(&self, name: &str, dest: &Path) -> Result<WalRecord> {
        let (record, mut stream) = self.open(name).await?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let io = |what: &str, e: std::io::Error| {
            Error::from_io(format!("{what} for WAL file {name}"), e)
        };
        let temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .tempfile_in(&dir)
            .map_err(|e| io("creating a temporary file", e))?;
        let (file, temp_path) = temp.into_parts();
        let mut file = tokio::fs::File::from_std(file);
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk?)
                .await
                .map_err(|e| io("writing", e))?;
        }
        file.flush().await.map_err(|e| io("writing", e))?;
        file.sync_all().await.map_err(|e| io("syncing", e))?;
        drop(file);
        temp_path
            .persist(dest)
            .map_err(|e| io(&format!("renaming into {}", dest.display()), e.error))?;
        Ok(record)
    }

    /// Names of the archived files of `timeline`, sorted (segments in WAL
    /// order, each history file after the segments that precede it).
    pub async fn list(&self, timeline: u32) -> Result<Vec<String>> {
        let dir = self.timeline_dir(timeline)?;
        let depth = dir.segments().count() + 1;
        let mut names = Vec::new();
        for o in self.engine.store().list_all(Some(&dir)).await? {
            if o.key.segments().count() == depth
                && let Some(name) = o.key.file_name().strip_suffix(".json")
                && WalFileName::parse(name).is_ok_and(|n| n.timeline() == timeline)
            {
                names.push(name.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The timelines with at least one archived file, ascending.
    pub async fn timelines(&self) -> Result<Vec<u32>> {
        let all = self.all_files().await?;
        let set: BTreeSet<u32> = all.iter().map(WalFileName::timeline).collect();
        Ok(set.into_iter().collect())
    }

    /// The timelines with a history file (`TTTTTTTT.history`) in the
    /// archive, ascending.
    pub async fn history_timelines(&self) -> Result<Vec<u32>> {
        let all = self.all_files().await?;
        let set: BTreeSet<u32> = all
            .iter()
            .filter(|n| n.kind() == WalFileKind::History)
            .map(WalFileName::timeline)
            .collect();
        Ok(set.into_iter().collect())
    }

    /// Every archived file, of every timeline.
    async fn all_files(&self) -> Result<Vec<WalFileName>> {
        let depth = self.prefix.segments().count() + 2;
        let mut out = Vec::new();
        for o in self.engine.store().list_all(Some(&self.prefix)).await? {
            if o.key.segments().count() == depth
                && let Some(name) = o.key.file_name().strip_suffix(".json")
                && let Ok(n) = WalFileName::parse(name)
            {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Deletes the segments of `timeline` before `segment` (and the backup
    /// history files named for them): record first, then data. History
    /// files and other timelines are never touched. `dry_run` only reports.
    pub async fn prune_before(
        &self,
        timeline: u32,
        segment: &str,
        dry_run: bool,
    ) -> Result<WalPruneReport> {
        let cut = WalFileName::parse(segment)?;
        if cut.kind() != WalFileKind::Segment || cut.timeline() != timeline {
            return Err(Error::Config(format!(
                "{segment} is not a segment of timeline {timeline:08X}"
            )));
        }
        self.prune_timeline(timeline, None, Some(&cut), dry_run)
            .await
    }

    /// Deletes the segments of `timeline` (and the backup history files
    /// named for them) that are before `cut` when given, and were
    /// archived before `archived_before` when given (both must hold):
    /// record first, then data. History files are never touched.
    pub(crate) async fn prune_timeline(
        &self,
        timeline: u32,
        archived_before: Option<chrono::DateTime<chrono::Utc>>,
        cut: Option<&WalFileName>,
        dry_run: bool,
    ) -> Result<WalPruneReport> {
        let mut report = WalPruneReport {
            dry_run,
            ..WalPruneReport::default()
        };
        let store = self.engine.store();
        for name in self.list(timeline).await? {
            let parsed = WalFileName::parse(&name)?;
            let before = parsed
                .segment()
                .is_some_and(|s| cut.is_none_or(|cut| s < cut.as_str()));
            if parsed.kind() == WalFileKind::History || !before {
                continue;
            }
            if let Some(limit) = archived_before {
                match self.archived_at(&name).await? {
                    Some(at) if at < limit => {}
                    _ => continue,
                }
            }
            let Some(record) = self.load_record(&parsed).await? else {
                continue; // deleted meanwhile
            };
            report.freed_bytes = report.freed_bytes.saturating_add(record.sealed.stored.size);
            if !dry_run {
                store.delete(&self.record_key(&parsed)?).await?;
                let data: Vec<Key> = store
                    .list_all(Some(&self.data_dir(&parsed)?))
                    .await?
                    .into_iter()
                    .map(|o| o.key)
                    .collect();
                store.delete_many(&data).await?;
                tracing::info!(wal = %name, "pruned WAL file");
            }
            report.removed.push(name);
        }
        Ok(report)
    }
}

/// Whether `s` is a data object name: 16 lower-case hex digits.
fn is_token(s: &str) -> bool {
    s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Puts the WAL file's name into an error that lacks it.
fn name_it(name: &str, e: Error) -> Error {
    match e {
        Error::Integrity { what, detail } if !what.contains(name) => Error::Integrity {
            what: format!("WAL file {name} ({what})"),
            detail,
        },
        Error::Integrity { what, detail } => Error::Integrity {
            what: format!("WAL file {what}"),
            detail,
        },
        Error::NotFound { what } => Error::not_found(format!("WAL file {name} ({what})")),
        other => other,
    }
}

/// SHA-256 (hex) of a file, streamed.
async fn sha256_of(file: tokio::fs::File, path: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::from_io(format!("reading {}", path.display()), e))?;
        hasher.update(&chunk);
    }
    Ok(hex::encode(hasher.finalize()))
}
