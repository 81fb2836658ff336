//! Leases: several processes sharing a store run each trigger once.

use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::job::Trigger;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::store::{PutOptions, Store, StoreExt};

/// Where leases live: `_locks/{job id}/{trigger time}.json`.
pub(super) const LOCKS: &str = "_locks";

/// Attempts at taking a lease before its trigger is skipped.
const LEASE_ATTEMPTS: u32 = 3;

/// Pause before the second attempt, doubled before each further one.
const LEASE_RETRY_DELAY: Duration = Duration::from_millis(250);

/// Claims `trigger` in the store: the first process to create the lease
/// object (create-only, so exclusive) runs it. Retryable failures are
/// retried briefly; any other failure, including a store without exclusive
/// create-only puts ([`Error::Unsupported`]), is returned so the caller
/// skips the trigger. A lease found after a failed attempt is ours only if
/// it carries this attempt's random token (the failed put may have been
/// written). Leases of the same job older than a week are removed.
pub(super) async fn acquire_lease(
    store: &dyn Store,
    trigger: &Trigger,
    now: DateTime<Utc>,
) -> Result<bool> {
    let at = trigger.scheduled_for.unwrap_or(now);
    let prefix = Key::new(format!("{LOCKS}/{}", trigger.job_id))?;
    let key = prefix.join(&format!("{}.json", at.format("%Y%m%dT%H%M%SZ")))?;
    let token = format!("{:032x}", rand::random::<u128>());
    let body = Bytes::from(
        serde_json::json!({
            "job_id": trigger.job_id,
            "scheduled_for": at,
            "holder": format!("{}:{}", hostname(), std::process::id()),
            "acquired_at": now,
            "token": token,
        })
        .to_string(),
    );
    let mut attempt = 1;
    let mut delay = LEASE_RETRY_DELAY;
    loop {
        match store.put(&key, body.clone(), PutOptions::create()).await {
            Ok(_) => break,
            Err(Error::AlreadyExists { .. }) if attempt == 1 => return Ok(false),
            Err(Error::AlreadyExists { .. }) => {
                let lease = store.get_bytes(&key).await?;
                let holder = serde_json::from_slice::<serde_json::Value>(&lease)
                    .ok()
                    .and_then(|v| v.get("token").and_then(|t| t.as_str()).map(str::to_owned));
                if holder.as_deref() != Some(token.as_str()) {
                    return Ok(false);
                }
                break;
            }
            Err(e) if e.is_retryable() && attempt < LEASE_ATTEMPTS => {
                tracing::info!(%key, attempt, error = %e, "taking a lease failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
                delay *= 2;
            }
            Err(e) => return Err(e),
        }
    }
    let week = chrono::Duration::days(7);
    if let Ok(old) = store.list_all(Some(&prefix)).await {
        let stale: Vec<Key> = old
            .into_iter()
            .filter(|m| now - m.last_modified > week)
            .map(|m| m.key)
            .collect();
        if !stale.is_empty() {
            let _ = store.delete_many(&stale).await;
        }
    }
    Ok(true)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".into())
}
