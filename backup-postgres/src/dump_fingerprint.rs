//! The fingerprint of a logical dump ([`crate::fingerprint`]): a snapshot
//! exported before `pg_dump` starts, counted concurrently with the dump,
//! kept until the dump ended.

use backup_core::source::{DumpOptions, DumpStream};
use futures::StreamExt;
use tokio::sync::oneshot;

use crate::conn::PgConnection;
use crate::fingerprint::{MIN_MAJOR, Session};
use crate::tools::{PgTools, ServerInfo};

/// A session holding an exported snapshot, and its id, when `opts` want a
/// fingerprint and the server can give one; `None` (logged) otherwise: a
/// dump without a fingerprint is still a good dump.
pub(crate) async fn start(
    tools: &PgTools,
    conn: &PgConnection,
    opts: &DumpOptions,
    server: &ServerInfo,
) -> Option<(Session, String)> {
    if opts.skip_fingerprint {
        return None;
    }
    if !opts.only.is_empty() {
        tracing::info!("no content fingerprint for a dump of selected tables");
        return None;
    }
    if server.major < MIN_MAJOR {
        tracing::info!(
            major = server.major,
            "no content fingerprint before PostgreSQL {MIN_MAJOR}"
        );
        return None;
    }
    let opened = async {
        let mut session = Session::open(tools, conn).await?;
        let id = session.export_snapshot().await?;
        Ok::<_, backup_core::Error>((session, id))
    };
    match opened.await {
        Ok(found) => Some(found),
        Err(e) => {
            tracing::warn!(error = %e, "could not export a snapshot for the content fingerprint; dumping without one");
            None
        }
    }
}

/// Counts in `session` while `dump` streams, ends the transaction once the
/// dump's stream ended (pg_dump no longer needs the snapshot) and promises
/// the fingerprint to the engine. A dump dropped early ends the session
/// without a fingerprint.
pub(crate) fn attach(dump: DumpStream, mut session: Session) -> DumpStream {
    let (fingerprint_tx, fingerprint_rx) = oneshot::channel();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let counted = session.count().await;
        let dumped = done_rx.await.is_ok();
        let finished = session.finish().await;
        match (counted, dumped, finished) {
            (Ok(fingerprint), true, Ok(())) => {
                let _ = fingerprint_tx.send(fingerprint);
            }
            (Err(e), _, _) | (_, _, Err(e)) => {
                tracing::warn!(error = %e, "content fingerprint failed; the backup is recorded without one");
            }
            (Ok(_), false, Ok(())) => {}
        }
    });
    let done = futures::stream::once(async move {
        let _ = done_tx.send(());
        None
    })
    .filter_map(futures::future::ready);
    dump.map_stream(|stream| stream.chain(done).boxed())
        .with_fingerprint(fingerprint_rx)
}
