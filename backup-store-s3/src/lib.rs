//! # backup-store-s3
//!
//! A [`Store`](backup_core::Store) over an S3 bucket: [`S3Store`], for AWS
//! S3 and S3-compatible servers (MinIO, Cloudflare R2, Supabase Storage's
//! S3 endpoint, Garage, Ceph), built on `object_store`'s S3 client.
//!
//! - **Streamed multipart uploads** with bounded memory: a backup is cut
//!   into parts (16 MiB, doubling every 1,000 parts up to 128 MiB, so the
//!   10,000 parts S3 allows hold 984 GiB), up to 4 of them uploading at
//!   once; a stream smaller than one part goes in a single PUT. All of it
//!   configurable on [`S3StoreBuilder`].
//! - **Nothing half-written**: S3 shows an object only once it is complete,
//!   and a failed, aborted or dropped upload aborts its multipart upload.
//!   Uploads killed with the process leave invisible parts behind: give
//!   the bucket a lifecycle rule that aborts incomplete multipart uploads
//!   after a day.
//! - **Create-only puts are checked, not trusted**: before the first one
//!   the store asks the server, once, whether it really refuses a second
//!   conditional PUT (`If-None-Match: *`) of a probe object; on servers
//!   that ignore the header (Garage, reported) create-only puts fail with
//!   `Unsupported` instead of overwriting. See [`S3Store`].
//! - **Bucket names and prefixes are validated** by the S3 naming rules
//!   before any request (see [`S3Store::builder`]).
//! - **Clear errors before any data flows**: every streamed upload first
//!   checks that the bucket exists and the credentials work, so a backup
//!   with a wrong key fails before the database is read.
//! - **Credentials** from the builder (the secret as a
//!   [`Secret`](backup_core::Secret)) or from the standard `AWS_*`
//!   environment; never in `Debug`, `Display` or error messages.
//!
//! ## Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use backup_core::{BackupRequest, Engine, Secret, Store};
//! use backup_store_s3::S3Store;
//!
//! # async fn run(source: &dyn backup_core::DumpSource) -> backup_core::Result<()> {
//! // MinIO (or any S3-compatible server) on its default port.
//! let store = S3Store::builder("backups")
//!     .prefix("prod")
//!     .endpoint("http://127.0.0.1:9000")
//!     .credentials("minioadmin", Secret::new("minioadmin"))
//!     .build()?;
//!
//! // AWS, with everything from AWS_REGION, AWS_ACCESS_KEY_ID, ...
//! let aws = S3Store::builder_from_url("s3://my-backups/prod")?.from_env().build()?;
//! # let _ = aws;
//!
//! let engine = Engine::new(Arc::new(store));
//! let manifest = engine.backup(source, &BackupRequest::new("sales")).await?;
//! engine.verify(&manifest.id).await?;
//! # Ok(()) }
//! ```
//!
//! ## Testing
//!
//! The feature `throwaway` adds [`S3TestServer`], which runs an `s3s-fs`
//! server on a loopback port for the duration of a test (or uses the
//! server named by `BACKUP_TEST_S3_ENDPOINT`).
#![warn(missing_docs, unreachable_pub)]
#![deny(rustdoc::broken_intra_doc_links)]

mod config;
mod error;
mod inner;
mod parts;
#[cfg(feature = "throwaway")]
mod server;
mod store;
mod upload;

pub use config::S3StoreBuilder;
pub use parts::{
    DEFAULT_CONCURRENCY, DEFAULT_MAX_PART_SIZE, DEFAULT_PART_SIZE, MAX_PART_SIZE, MAX_PARTS,
    MIN_PART_SIZE, PARTS_PER_DOUBLING,
};
#[cfg(feature = "throwaway")]
pub use server::{
    S3S_FS_INSTALL, S3TestServer, TEST_ACCESS_KEY_VAR, TEST_BUCKET_VAR, TEST_ENDPOINT_VAR,
    TEST_SECRET_KEY_VAR,
};
pub use store::S3Store;
