//! Incremental backups by content-defined deduplication, garbage
//! collection and store checks.
//!
//! An incremental ([`BackupType::Incremental`](crate::BackupType)) backup
//! cuts the *uncompressed* dump into chunks with FastCDC (2020), names each
//! chunk by the SHA-256 of its plaintext, and stores only the chunks its
//! tenant does not have yet. Each backup is still restorable on its own:
//! "incremental" describes what it stores, not a chain to replay.
//!
//! # Store layout
//!
//! ```text
//! {tenant}/{source}/{YYYY}/{MM}/{kind}-{format}-{db}-{id}.{ext}.chunks   chunk list (the artifact)
//! {tenant}/{source}/{YYYY}/{MM}/{kind}-{format}-{db}-{id}.manifest.json  manifest
//! {tenant}/_chunks/packs/{xx}/{pack id}.pack                            chunks, back to back
//! {tenant}/_chunks/packs/{xx}/{pack id}.idx                             where each chunk is in the pack
//! {tenant}/_chunks/inflight/{backup id}                                 a backup is running
//! {tenant}/_chunks/gc-running                                           a garbage collection is running
//! ```
//!
//! Chunks are never shared across tenants. `_` segments are reserved, so
//! the catalog never mistakes these objects for backups.
//!
//! # Formats (version 1, little-endian)
//!
//! - **Chunk list**: `"DBCL" u32:1`, then per chunk in dump order
//!   `sha256[32] u32:raw_len`. Streamed; the manifest's `stored` digests
//!   cover it and its `raw` digests cover the whole dump, so a restore
//!   checks both.
//! - **Pack**: `"DBPK" u32:1`, then encoded chunks back to back. A chunk is
//!   compressed on its own (one zstd/gzip frame) and then, if the backup is
//!   encrypted, encrypted on its own as a complete age file: any chunk can
//!   be read with one range read, and `age -d | zstd -d` decodes it.
//!   Packs are closed at about [`DedupOptions::pack_size`] (16 MiB).
//! - **Pack index**: `"DBPI" u32:1 u32:header_len`, a JSON header (pack id
//!   and size, compression, sorted age recipients, time, writer), `u32:count`,
//!   `count × (sha256[32] u64:offset u32:stored_len u32:raw_len)`, and a
//!   SHA-256 of everything before it. An index is written only after its
//!   pack is complete.
//!
//! Chunks are shared only between backups with the same age recipients
//! (plaintext with plaintext): a plaintext backup never points at chunks it
//! cannot read, and an encrypted one never at plaintext chunks. Chunk ids
//! and lengths are not encrypted (a backup must look chunks up without a
//! key): someone who can read the store can test whether it holds a chunk
//! they can guess in full, as with any convergent deduplication.
//!
//! # Garbage collection and concurrent backups
//!
//! Manifests reference chunk ids, not packs, so packs can be rewritten
//! without touching backups. [`Engine::gc`](crate::Engine::gc) deletes packs
//! none of whose chunks is referenced by a manifest of the tenant, and
//! repacks packs whose unreferenced bytes exceed
//! [`DedupOptions::repack_threshold`] (live chunks copied verbatim into a
//! new pack and index, then the old index and pack deleted). Of several
//! copies of a chunk (two backups that stored it at once, or a GC killed
//! between writing its new packs and deleting the old ones) one is kept: a
//! copy in a pack the GC leaves in place if there is one, else the first in
//! pack id order. So after any crash one GC (once the grace has passed)
//! leaves nothing for the next to do. The protocol:
//!
//! 1. A backup writes `_chunks/inflight/{id}` before it reads any index,
//!    then looks for `_chunks/gc-running`. If a fresh one exists it
//!    withdraws its marker, waits ([`DedupOptions::poll_interval`]) and
//!    tries again, up to [`DedupOptions::gc_wait`], then fails with
//!    [`Error::Busy`](crate::Error::Busy). It rewrites its marker every few
//!    minutes and deletes it after its manifest is written (or on failure).
//! 2. A GC writes `_chunks/gc-running` holding a random token, then lists
//!    `_chunks/inflight/`: any fresh marker makes it remove its own and
//!    back off (reported, nothing deleted). Markers older than
//!    [`DedupOptions::inflight_expiry`] (24 h) are from crashed backups and
//!    are removed.
//!
//!    Each side writes its marker (a plain overwrite is enough) before
//!    reading the other's, so with a store that reads its own writes
//!    (every supported store) at least one of them sees the other: a backup
//!    never runs while a GC deletes. This part needs no create-only put.
//! 3. One GC per tenant: the GC marker is written create-only, so of two
//!    GCs starting at once one backs off. Where that cannot be atomic (a
//!    store answering [`Error::Unsupported`](crate::Error::Unsupported),
//!    such as an S3 server that ignores `If-None-Match`, or when taking
//!    over a stale marker) the GC instead checks that no fresh marker
//!    exists, overwrites it with its token, waits
//!    [`DedupOptions::gc_lock_settle`] (30 s) and reads it back: of GCs
//!    racing this way only the last writer finds its own token, the others
//!    back off. In every mode the GC reads the marker back before each
//!    deletion and stops ([`Error::Busy`](crate::Error::Busy)) if its token
//!    is gone, and removes the marker at the end only if it still holds
//!    its token.
//!
//!    The limit of the fallback: it assumes that a request reaches the
//!    store within the settle delay of being sent. A GC that checks its
//!    token and then stalls for longer before its deletion lands (a
//!    process paused mid-request, a request stuck in the network) can
//!    delete after another GC has taken over and planned; the second GC
//!    then works from a listing that is out of date, which with a grace
//!    period shorter than a GC run can cost chunks that a repack had just
//!    copied. Keep one GC per tenant on such stores (for example a single
//!    cron job) and the grace period at its default of an hour or more.
//!    Backups are not exposed to this: they are kept apart from GCs by
//!    step 2.
//! 4. Belt and braces: the GC checks for in-flight markers again before
//!    every deletion and stops if one appeared; it never deletes a pack
//!    younger than the grace period it is given; and a backup, before
//!    writing its manifest, checks that every pack it reused still exists
//!    and fails (instead of committing a broken backup) if not.
//! 5. A crashed GC leaves its marker: backups ignore one older than
//!    [`DedupOptions::gc_marker_expiry`] (1 h; a running GC rewrites it
//!    every few minutes).
//!
//! A failed backup leaves the packs it completed (another backup may
//! already use them); they are garbage for the next GC.

mod backup;
mod check;
mod chunker;
mod codec;
pub(crate) mod format;
mod gc;
mod leftovers;
mod lock;
mod options;
pub(crate) mod packs;
mod restore;

pub(crate) use backup::{DedupBackup, Started as DedupStarted};
pub(crate) use check::check;
pub use check::{CheckReport, CorruptChunk, MissingChunk, Problem};
pub(crate) use codec::{ChunkCodec, group_of};
pub use gc::GcReport;
pub(crate) use gc::collect;
pub(crate) use leftovers::sweep_chunk_store;
pub(crate) use lock::{Inflight, inflight_markers};
pub use options::DedupOptions;
pub(crate) use packs::ChunkMap;
pub(crate) use restore::{precheck, pump_chunks};
