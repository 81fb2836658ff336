//! Holding the WAL a base backup needs while it runs.
//!
//! `pg_basebackup -X fetch` (the only WAL method that writes one tar
//! archive to stdout) asks for the backup's WAL at its end, from the
//! server's `pg_wal`. A checkpoint in between (another base backup's
//! `--checkpoint=fast`, heavy writes, `max_wal_size` reached) may recycle
//! those segments first, and the backup then fails with "requested WAL
//! segment ... has already been removed" after having sent the whole
//! cluster. `pg_basebackup` can only hold WAL with a replication slot for
//! `-X stream`. So before it starts, a `psql` session creates a
//! *temporary* physical slot that reserves WAL at once
//! (`pg_create_physical_replication_slot(name, true, true)`): every
//! segment from before the backup's start checkpoint is kept until the
//! session ends. The session ends when the backup's stream ends or is
//! dropped (psql is killed), and also when this process dies (the server
//! drops a temporary slot with its session), so no slot outlives a crash
//! and keeps WAL forever.
//!
//! The slot takes one of `max_replication_slots` and the session one
//! connection. When either is unavailable the backup runs without the
//! hold, as before, with a warning naming why.

use backup_core::Error;

use crate::conn::PgConnection;
use crate::fingerprint::Session;
use crate::tools::{PgTools, quote_literal};

/// The start of every hold's slot name.
pub const HOLD_SLOT_PREFIX: &str = "backup_hold_";

/// A temporary slot holding WAL; dropping it ends the session that owns
/// the slot (the server then drops the slot).
pub(crate) struct WalHold {
    _session: Session,
    slot: String,
}

impl std::fmt::Debug for WalHold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalHold").field("slot", &self.slot).finish()
    }
}

/// Creates the hold on the server of `conn`, or says why not (logged)
/// and returns `None`: the backup can still succeed without it.
pub(crate) async fn hold(tools: &PgTools, conn: &PgConnection) -> Option<WalHold> {
    let slot = format!("{HOLD_SLOT_PREFIX}{:016x}", rand::random::<u64>());
    let created = async {
        let mut session = Session::connect(tools, conn).await?;
        session
            .send(&format!(
                "SELECT 'held ' || lsn FROM pg_create_physical_replication_slot({}, true, true);\n",
                quote_literal(&slot)
            ))
            .await?;
        let line = session.line().await?;
        if !line.starts_with("held ") {
            return Err(Error::Dump {
                engine: "postgres",
                detail: format!(
                    "unexpected answer creating the slot: {:?}",
                    line.chars().take(200).collect::<String>()
                ),
            });
        }
        tracing::debug!(%slot, at = %&line[5..], "WAL held for the base backup");
        Ok(session)
    };
    match created.await {
        Ok(session) => Some(WalHold {
            _session: session,
            slot,
        }),
        Err(e) => {
            tracing::warn!(error = %e, "could not create a temporary replication slot to hold the base backup's WAL; backing up without it (a checkpoint during the backup may remove WAL it needs)");
            None
        }
    }
}
