//! # backup-store-fs
//!
//! A [`Store`](backup_core::Store) over a local directory: [`FsStore`].
//!
//! Each object is a file below the root, the key's segments becoming
//! directories (`tenant/db/2025/11/x.dump.zst` is
//! `{root}/tenant/db/2025/11/x.dump.zst`). Writes go to a hidden temporary
//! file that is fsynced and renamed into place, so an object is either
//! absent or complete, even across a crash; create-only puts use a hard
//! link, which the filesystem refuses atomically when the key exists (on a
//! filesystem without hard links they fail with `Unsupported`). See
//! [`FsStore`] for the details and the few limits of a filesystem (a key
//! cannot be both an object and a directory; names starting with `.` are
//! reserved).
//!
//! ## Example
//!
//! ```
//! use backup_core::{key::Key, store::PutOptions, Store, store::StoreExt};
//! use backup_store_fs::FsStore;
//! use bytes::Bytes;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("backups");
//! let store = FsStore::new(path)?;
//!
//! // Small objects in one call; create-only for leases and manifests.
//! let lease = Key::new("tenant/lease.json")?;
//! store.put(&lease, Bytes::from_static(b"{}"), PutOptions::create()).await?;
//! assert!(store.put(&lease, Bytes::new(), PutOptions::create()).await.is_err());
//!
//! // Large objects stream in; nothing is visible until `complete`.
//! let dump = Key::new("tenant/db/2025/11/full.dump")?;
//! let mut upload = store.put_stream(&dump).await?;
//! upload.write(Bytes::from(vec![0u8; 1 << 20])).await?;
//! assert!(!store.exists(&dump).await?);
//! upload.complete().await?;
//!
//! let listed = store.list_all(Some(&Key::new("tenant")?)).await?;
//! assert_eq!(listed.len(), 2);
//! assert_eq!(store.head(&dump).await?.size, 1 << 20);
//!
//! store.delete_many(&[lease, dump]).await?;
//! assert!(store.list_all(None).await?.is_empty());
//!
//! // After a crash, sweep the temporary files it left.
//! store.remove_stale_temp_files(std::time::Duration::from_secs(24 * 3600)).await?;
//! # Ok::<(), backup_core::Error>(()) }).unwrap();
//! ```
#![warn(missing_docs, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

mod links;
mod root;
mod store;
mod temp;
mod upload;
mod walk;

pub use store::FsStore;
