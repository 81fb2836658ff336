//! A store under test, seen from outside: the files that hold its
//! objects (the fs store's directory, or the `s3s-fs` bucket directory
//! under the store's prefix), and what each file is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::files;

/// A store the harness runs `backupctl` against.
#[derive(Debug)]
pub(crate) struct StoreUnderTest {
    /// `--store` argument.
    pub(crate) spec: String,
    /// Directory whose files are the store's objects (key = relative path).
    pub(crate) root: PathBuf,
    /// For S3: the `s3s-fs` data directory, where the parts of unfinished
    /// multipart uploads live (outside every bucket).
    pub(crate) uploads: Option<PathBuf>,
}

/// What one file of a store is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Object {
    /// `….manifest.json` of backup `id`.
    Manifest(String),
    /// Any other object named after backup `id` (an artifact).
    Artifact(String),
    /// `{tenant}/{source}/last-run.json`.
    RunRecord,
    /// `_store.json`, the mark `backup` leaves on a store it writes to.
    StoreMarker,
    /// `{tenant}/_chunks/packs/{xx}/{id}.pack`.
    Pack(String),
    /// `{tenant}/_chunks/packs/{xx}/{id}.idx`.
    Index(String),
    /// `{tenant}/_inflight/{id}`.
    Marker,
    /// `{tenant}/_chunks/inflight/{id}`.
    ChunkMarker,
    /// `{tenant}/_chunks/gc-running`.
    GcMarker,
    /// `.{name}.tmp-{16 hex}` (the fs store's temporary files) and
    /// `_probe/conditional-put-{16 hex}` (the S3 store's probe object).
    Temporary,
    /// Anything else.
    Unknown,
}

impl StoreUnderTest {
    /// The store's files (relative paths).
    pub(crate) fn files(&self) -> BTreeSet<PathBuf> {
        files::walk(&self.root).into_iter().collect()
    }

    /// Parts and records of unfinished multipart uploads in `s3s-fs`.
    pub(crate) fn upload_leftovers(&self) -> Vec<PathBuf> {
        let Some(dir) = &self.uploads else {
            return Vec::new();
        };
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(".upload_id-") || n.starts_with(".upload-"))
            })
            .collect()
    }
}

/// The id at the end of a backup file's base name
/// (`…-YYYYMMDDTHHMMSSZ-xxxxxxxx`).
fn backup_id_in(base: &str) -> Option<String> {
    let id = base.get(base.len().checked_sub(25)?..)?;
    (backup_core::manifest::is_backup_id(id)
        && base.len() > 25
        && base.as_bytes()[base.len() - 26] == b'-')
        .then(|| id.to_string())
}

/// What the file at `rel` is.
pub(crate) fn classify(rel: &Path) -> Object {
    let segments: Vec<&str> = rel.iter().filter_map(|s| s.to_str()).collect();
    let Some(name) = segments.last().copied() else {
        return Object::Unknown;
    };
    if name.starts_with('.') && name.contains(".tmp-") {
        return Object::Temporary;
    }
    match segments.as_slice() {
        // The S3 store's conditional-PUT probe, left by a kill mid-probe.
        ["_probe", probe] if probe.starts_with("conditional-put-") => {
            return Object::Temporary;
        }
        ["_store.json"] => return Object::StoreMarker,
        [_, "_inflight", _] => return Object::Marker,
        [_, "_chunks", "inflight", _] => return Object::ChunkMarker,
        [_, "_chunks", "gc-running"] => return Object::GcMarker,
        [_, "_chunks", "packs", _, file] => {
            if let Some(id) = file.strip_suffix(".pack") {
                return Object::Pack(id.to_string());
            }
            if let Some(id) = file.strip_suffix(".idx") {
                return Object::Index(id.to_string());
            }
            return Object::Unknown;
        }
        [_, _, "last-run.json"] => return Object::RunRecord,
        [tenant, source, _, _, _] if !tenant.starts_with('_') && !source.starts_with('_') => {}
        _ => return Object::Unknown,
    }
    if let Some(base) = name.strip_suffix(".manifest.json") {
        return backup_id_in(base).map_or(Object::Unknown, Object::Manifest);
    }
    // An artifact: `{base}.{ext...}` where base ends with the id.
    let mut base = name;
    while let Some((head, _)) = base.rsplit_once('.') {
        base = head;
        if let Some(id) = backup_id_in(base) {
            return Object::Artifact(id);
        }
    }
    Object::Unknown
}

/// Everything in `files` that is not a committed backup (a manifest of a
/// listed backup or its artifact), a run record, the store marker, or a
/// pack with its index: what a kill left and a sweep must remove. `listed` is
/// `backupctl list --json`.
pub(crate) fn leftovers(files: &BTreeSet<PathBuf>, listed: &[Value]) -> BTreeMap<PathBuf, Object> {
    let ids: BTreeSet<&str> = listed.iter().filter_map(|m| m["id"].as_str()).collect();
    let artifacts: BTreeSet<&str> = listed
        .iter()
        .filter_map(|m| m["artifact"].as_str())
        .collect();
    let classified: Vec<(PathBuf, Object)> =
        files.iter().map(|f| (f.clone(), classify(f))).collect();
    let packs: BTreeSet<String> = classified
        .iter()
        .filter_map(|(_, o)| match o {
            Object::Pack(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    let indexes: BTreeSet<String> = classified
        .iter()
        .filter_map(|(_, o)| match o {
            Object::Index(id) => Some(id.clone()),
            _ => None,
        })
        .collect();
    classified
        .into_iter()
        .filter(|(path, object)| match object {
            Object::Manifest(id) => !ids.contains(id.as_str()),
            Object::Artifact(_) => !artifacts.contains(path.to_str().unwrap_or_default()),
            Object::RunRecord | Object::StoreMarker => false,
            Object::Pack(id) => !indexes.contains(id),
            Object::Index(id) => !packs.contains(id),
            _ => true,
        })
        .collect()
}

/// A short name for a leftover's kind, for the figures.
pub(crate) fn kind_name(object: &Object) -> &'static str {
    match object {
        Object::Manifest(_) => "manifests without listing",
        Object::Artifact(_) => "artifacts without manifest",
        Object::RunRecord => "run records",
        Object::StoreMarker => "store markers",
        Object::Pack(_) => "packs without index",
        Object::Index(_) => "indexes without pack",
        Object::Marker => "in-progress markers",
        Object::ChunkMarker => "chunk in-flight markers",
        Object::GcMarker => "gc markers",
        Object::Temporary => "temporary files",
        Object::Unknown => "unknown files",
    }
}
