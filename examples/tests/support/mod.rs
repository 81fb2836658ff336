//! Shared by test binaries that drive the real `backupctl` binary
//! (`mod support;`): running it with exactly the environment a test
//! chooses, watching and killing its process group, scanning the disk for
//! leaked secrets, and walking (and ageing) directory trees.
//!
//! Each binary uses a part of it.
#![allow(dead_code, unreachable_pub)]

pub mod cli;
pub mod files;
pub mod procs;
pub mod secrets;
