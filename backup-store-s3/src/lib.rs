//! # backup-store-s3
//!
//! The S3-compatible [`Store`](backup_core::Store) (AWS S3, MinIO, R2,
//! Supabase Storage, Garage) built on `object_store`'s S3 client, with
//! streamed multipart uploads that are aborted on any failure.
//!
//! Not implemented yet: this crate is a placeholder in the workspace layout
//! until the S3 issue lands. Use `backup-store-fs` meanwhile.
#![warn(missing_docs, unreachable_pub)]
