//! `backupd`'s `config.yaml` loader on arbitrary text: a list of problems
//! or a configuration, never a panic; an accepted configuration holds only
//! values the daemon can use as they are.
#![no_main]

use std::time::Instant;

use backupd::config::load;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |name: &str| match name {
        "EMPTY" => Some(String::new()),
        "SHORT" => Some("short".to_string()),
        "TZ" => None,
        other => Some(format!("{other}-0123456789abcdef")),
    };
    if let Ok(config) = load(text, std::path::Path::new("/etc/backupd"), &env) {
        assert!(config.max_parallel_jobs >= 1);
        assert!(config.max_parallel_jobs <= tokio_max_permits());
        assert!(
            Instant::now()
                .checked_add(config.shutdown_timeout)
                .is_some()
        );
        assert!(chrono::Duration::from_std(config.stale_after).is_ok());
        for db in &config.databases {
            assert!(chrono::Duration::from_std(db.stale_after).is_ok());
            assert!(backup_core::key::validate_id(&db.id).is_ok());
            assert!(backup_core::key::validate_id(&db.tenant).is_ok());
        }
        assert!(!config.tokens.is_empty());
    }
});

/// `tokio::sync::Semaphore::MAX_PERMITS`: the scheduler's semaphore panics
/// above it.
fn tokio_max_permits() -> usize {
    usize::MAX >> 3
}
