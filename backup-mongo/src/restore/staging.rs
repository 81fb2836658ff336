//! Staging databases of staged restores (and a drill's scratch databases,
//! see [`crate::drill`]): marked as ours with a heartbeat while the restore
//! runs, and found and dropped once a killed restore has left one behind.

use std::time::Duration;

use backup_core::{
    Error, Result, source::Candidate, source::Leftover, source::LeftoverReport, source::Removal,
};
use bson::{DateTime, Document, doc};
use mongodb::Client;
use tokio::task::JoinHandle;

use crate::conn::MongoConnection;
use crate::error::{Side, classify};

/// How long a staging database's heartbeat must have been silent before
/// it counts as left behind: a running restore refreshes it every 30 s,
/// so only a restore that died (or a process frozen that long) misses it.
pub const DEFAULT_STAGING_GRACE: Duration = Duration::from_secs(10 * 60);

/// How often a running restore refreshes its staging database's marker.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);

/// The collection of a staging database holding its marker document.
/// An archive holding a collection of that name cannot be staged.
pub(crate) const MARKER_COLLECTION: &str = "_backup_mongo_staging";

/// How one kind of marked database is named and marked.
#[derive(Debug)]
pub(crate) struct Marking {
    /// The collection holding the marker document.
    pub(crate) collection: &'static str,
    /// The marker document's `_id`.
    pub(crate) id: &'static str,
    /// Whether a database name has the shape of this kind's names.
    pub(crate) is_name: fn(&str) -> bool,
}

/// Staging databases `<target>__restore_<8 hex>`.
pub(crate) static STAGING: Marking = Marking {
    collection: MARKER_COLLECTION,
    id: "staging",
    is_name: is_staging_name,
};

/// `<target>__restore_<8 hex>`: the suffix.
pub(crate) const SUFFIX: &str = "__restore_";

/// Whether `name` has the shape of a staging database name.
pub(crate) fn is_staging_name(name: &str) -> bool {
    let Some(at) = name.rfind(SUFFIX) else {
        return false;
    };
    let hex = &name[at + SUFFIX.len()..];
    hex.len() == 8 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn marker(client: &Client, kind: &Marking, db: &str) -> mongodb::Collection<Document> {
    client.database(db).collection(kind.collection)
}

/// Creates `staging` with its marker: the target (if any), a token naming
/// this restore, and the server's time as creation time and first
/// heartbeat.
pub(crate) async fn mark(
    client: &Client,
    conn: &MongoConnection,
    kind: &Marking,
    staging: &str,
    target: Option<&str>,
    token: &str,
) -> Result<()> {
    let mut set = doc! { "token": token, "by": "backup-mongo" };
    if let Some(target) = target {
        set.insert("target", target);
    }
    marker(client, kind, staging)
        .update_one(
            doc! { "_id": kind.id },
            doc! {
                "$set": set,
                "$currentDate": { "created": true, "heartbeat": true },
            },
        )
        .upsert(true)
        .await
        .map_err(|e| {
            classify(
                &e,
                Side::Restore,
                &format!("marking staging database {staging}"),
                conn,
            )
        })?;
    Ok(())
}

/// Refreshes a staging database's heartbeat until dropped.
#[derive(Debug)]
pub(crate) struct Heartbeat(JoinHandle<()>);

impl Heartbeat {
    pub(crate) fn start(client: Client, kind: &'static Marking, staging: String) -> Heartbeat {
        Heartbeat(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_INTERVAL);
            tick.tick().await; // the first tick is immediate
            loop {
                tick.tick().await;
                let beat = marker(&client, kind, &staging)
                    .update_one(
                        doc! { "_id": kind.id },
                        doc! { "$currentDate": { "heartbeat": true } },
                    )
                    .await;
                if let Err(e) = beat {
                    tracing::debug!(%staging, error = %e, "staging heartbeat failed");
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether `staging` still carries this restore's marker: false if a
/// cleanup dropped it meanwhile (its collections may then have been
/// recreated, incomplete, by later inserts).
pub(crate) async fn still_ours(
    client: &Client,
    conn: &MongoConnection,
    staging: &str,
    token: &str,
) -> Result<bool> {
    let found = marker(client, &STAGING, staging)
        .find_one(doc! { "_id": STAGING.id })
        .await
        .map_err(|e| {
            classify(
                &e,
                Side::Restore,
                &format!("reading the marker of {staging}"),
                conn,
            )
        })?;
    Ok(found.is_some_and(|m| m.get_str("token") == Ok(token)))
}

/// The server's clock (`hello.localTime`), or this host's if the server
/// does not say.
async fn server_now(client: &Client) -> DateTime {
    match client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
    {
        Ok(hello) => hello
            .get_datetime("localTime")
            .copied()
            .unwrap_or_else(|_| DateTime::now()),
        Err(_) => DateTime::now(),
    }
}

/// Every database named like one of `kind`, with its marker parsed.
async fn find_all(
    client: &Client,
    conn: &MongoConnection,
    kind: &Marking,
) -> Result<Vec<Candidate>> {
    let names = client
        .list_database_names()
        .await
        .map_err(|e| classify(&e, Side::Restore, "listing databases", conn))?;
    let now = server_now(client).await;
    let mut found = Vec::new();
    for name in names.into_iter().filter(|n| (kind.is_name)(n)) {
        let document = marker(client, kind, &name)
            .find_one(doc! { "_id": kind.id })
            .await
            .map_err(|e| {
                classify(
                    &e,
                    Side::Restore,
                    &format!("reading the marker of {name}"),
                    conn,
                )
            })?;
        let marked = document
            .filter(|m| m.get_str("by") == Ok("backup-mongo"))
            .map(|m| {
                let idle = m.get_datetime("heartbeat").ok().and_then(|beat| {
                    let ms = now
                        .timestamp_millis()
                        .checked_sub(beat.timestamp_millis())?;
                    u64::try_from(ms).ok().map(Duration::from_millis)
                });
                Leftover::new(
                    name.clone(),
                    m.get_str("target").ok().map(str::to_string),
                    idle,
                )
            });
        found.push(marked.map_or(Candidate::Unmarked(name), Candidate::Marked));
    }
    Ok(found)
}

/// The marked databases of `kind` on the server.
pub(crate) async fn find(
    client: &Client,
    conn: &MongoConnection,
    kind: &Marking,
) -> Result<Vec<Leftover>> {
    Ok(Candidate::marked(find_all(client, conn, kind).await?))
}

/// Drops the marked databases of `kind` idle for `older_than` or more
/// (only those of `target`, if given). An idle time the clocks cannot
/// tell counts as alive.
pub(crate) async fn cleanup(
    client: &Client,
    conn: &MongoConnection,
    kind: &Marking,
    older_than: Duration,
    target: Option<&str>,
) -> Result<LeftoverReport> {
    let found = find_all(client, conn, kind).await?;
    Ok(
        LeftoverReport::apply(found, older_than, target, |staging| async move {
            match client.database(&staging.name).drop().await {
                Ok(()) => Removal::Removed,
                Err(e) => {
                    Removal::Refused(classify(&e, Side::Restore, "dropping", conn).to_string())
                }
            }
        })
        .await,
    )
}

/// The error when a staging database vanished under a running restore.
pub(crate) fn vanished(staging: &str) -> Error {
    Error::Restore {
        engine: "mongodb",
        detail: format!(
            "staging database {staging:?} was dropped while the restore ran (a remove_leftovers with too short a grace period?); nothing was moved into the target, restore again"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_names() {
        assert!(is_staging_name("sales__restore_0a1b2c3d"));
        assert!(!is_staging_name("sales__restore_0A1B2C3D"));
        assert!(!is_staging_name("sales__restore_0a1b2c3"));
        assert!(!is_staging_name("sales"));
        let name = super::super::staging_name("sales");
        assert!(is_staging_name(&name), "{name}");
    }
}
