//! Records the version of the `mongodb` driver this crate was built with
//! (read from the workspace's Cargo.lock), for the manifests' tool version.

use std::path::Path;

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let lock = Path::new(&manifest_dir).join("..").join("Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let version = std::fs::read_to_string(&lock)
        .ok()
        .and_then(|text| driver_version(&text))
        .unwrap_or_else(|| "3".to_string());
    println!("cargo:rustc-env=BACKUP_MONGO_DRIVER_VERSION={version}");
}

/// The `version` line following `name = "mongodb"` in a Cargo.lock.
fn driver_version(lock: &str) -> Option<String> {
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"mongodb\"" {
            let next = lines.next()?.trim();
            return next
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_string);
        }
    }
    None
}
