//! `backupd`, the standalone backupper: `config.yaml`, the scheduler, a
//! REST API with bearer tokens, roles and tenants, Prometheus metrics,
//! packages, webhooks and an audit log — all on the library's public API,
//! so host applications can copy what they need.
//!
//! Run it with `cargo run --release -p backupd -- --config config.yaml`.

pub mod auth;
pub mod body;
mod cli;
pub mod config;
pub mod console;
pub mod daemon;
pub mod drill_metrics;
pub mod engine;
pub mod error;
pub mod http;
pub mod leftovers;
pub mod metrics;
pub mod mongo;
pub mod mysql;
pub mod openapi;
pub mod packages;
pub mod routes;
pub mod state;
pub mod tenancy;

pub use cli::main_with_args;
pub use daemon::{Daemon, open_storage};
