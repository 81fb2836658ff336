//! Moving a verified restore from its staging database into the target,
//! and cleaning up after a failed one.

use std::collections::BTreeSet;

use backup_core::{Error, Result};
use bson::{Document, doc};
use mongodb::Client;

use crate::archive::CollectionType;
use crate::conn::MongoConnection;
use crate::error::{NAMESPACE_NOT_FOUND, Side, classify};

/// A collection or view restored into the staging database (or, for
/// views, only described: they are created in the target at promotion).
#[derive(Debug, Clone)]
pub(crate) struct StagedItem {
    pub(crate) name: String,
    pub(crate) kind: CollectionType,
    /// Collection options; for a view `viewOn`, `pipeline`, `collation`.
    pub(crate) options: Document,
}

/// What to undo if a session ends without committing.
#[derive(Debug, Clone)]
pub(crate) enum Cleanup {
    /// Drop the whole staging database.
    DropDatabase(String),
    /// Drop these collections (and views) of the target database: what a
    /// direct restore created.
    DropCollections(String, Vec<String>),
}

impl Cleanup {
    pub(crate) async fn run(&self, client: &Client) {
        match self {
            Cleanup::DropDatabase(db) => match client.database(db).drop().await {
                Ok(()) => tracing::info!(database = %db, "staging database dropped"),
                Err(e) => {
                    tracing::warn!(database = %db, error = %e, "could not drop the staging database; drop it by hand")
                }
            },
            Cleanup::DropCollections(db, names) => {
                for name in names {
                    if let Err(e) = client
                        .database(db)
                        .collection::<Document>(name)
                        .drop()
                        .await
                    {
                        tracing::warn!(database = %db, collection = %name, error = %e, "could not drop a collection of the failed restore");
                    }
                }
                if !names.is_empty() {
                    tracing::info!(database = %db, collections = names.len(), "collections of the failed restore dropped");
                }
            }
        }
    }
}

/// Names of the collections and views in `db`.
pub(crate) async fn existing_names(
    client: &Client,
    db: &str,
    conn: &MongoConnection,
) -> Result<BTreeSet<String>> {
    let names = client
        .database(db)
        .list_collection_names()
        .await
        .map_err(|e| {
            classify(
                &e,
                Side::Restore,
                &format!("listing collections of {db}"),
                conn,
            )
        })?;
    Ok(names.into_iter().collect())
}

/// Fails if any of `names` already exists in `target` (a restore without
/// `clean` never overwrites).
pub(crate) async fn check_conflicts<'a>(
    client: &Client,
    target: &str,
    names: impl IntoIterator<Item = &'a str>,
    conn: &MongoConnection,
) -> Result<()> {
    let existing = existing_names(client, target, conn).await?;
    let clashes: Vec<&str> = names
        .into_iter()
        .filter(|n| existing.contains(*n))
        .collect();
    if clashes.is_empty() {
        return Ok(());
    }
    Err(Error::Restore {
        engine: "mongodb",
        detail: format!(
            "{} already exist(s) in database {target:?}; restore with clean to replace them, or into another database; nothing was changed",
            clashes.join(", ")
        ),
    })
}

/// Creates a view `name` in `db` from its stored options.
pub(crate) async fn create_view(
    client: &Client,
    db: &str,
    name: &str,
    options: &Document,
    conn: &MongoConnection,
) -> Result<()> {
    let mut command = doc! { "create": name };
    for (key, value) in options {
        command.insert(key.clone(), value.clone());
    }
    client
        .database(db)
        .run_command(command)
        .await
        .map_err(|e| {
            classify(
                &e,
                Side::Restore,
                &format!("creating view {db}.{name}"),
                conn,
            )
        })?;
    Ok(())
}

/// Why a promotion failed.
#[derive(Debug)]
pub(crate) enum PromoteError {
    /// Nothing was moved; the staging database can be dropped.
    NothingMoved(Error),
    /// Some collections were moved; the rest stay in the staging database,
    /// which is kept for inspection.
    Partial(Error),
}

impl PromoteError {
    pub(crate) fn into_error(self) -> Error {
        match self {
            PromoteError::NothingMoved(e) | PromoteError::Partial(e) => e,
        }
    }
}

/// Moves everything restored into `staging` to `target`, then drops
/// `staging`.
///
/// Collections move with `renameCollection` (`dropTarget` when `clean`):
/// each rename is atomic, the set of them is not. Views are (re)created
/// in the target from their definitions. If a rename fails, the error
/// names what was moved and what is still in the staging database, which
/// is left in place for inspection.
pub(crate) async fn promote(
    client: &Client,
    conn: &MongoConnection,
    staging: &str,
    token: &str,
    target: &str,
    clean: bool,
    items: &[StagedItem],
) -> std::result::Result<(), PromoteError> {
    if !super::staging::still_ours(client, conn, staging, token)
        .await
        .map_err(PromoteError::NothingMoved)?
    {
        return Err(PromoteError::NothingMoved(super::staging::vanished(
            staging,
        )));
    }
    if !clean {
        check_conflicts(client, target, items.iter().map(|i| i.name.as_str()), conn)
            .await
            .map_err(PromoteError::NothingMoved)?;
    }
    let admin = client.database("admin");
    let mut moved: Vec<&str> = Vec::new();
    let collections = items.iter().filter(|i| i.kind != CollectionType::View);
    for item in collections {
        let rename = doc! {
            "renameCollection": format!("{staging}.{}", item.name),
            "to": format!("{target}.{}", item.name),
            "dropTarget": clean,
        };
        if let Err(e) = admin.run_command(rename).await {
            let cause = classify(&e, Side::Restore, "renameCollection", conn);
            let remaining: Vec<&str> = items
                .iter()
                .filter(|i| i.kind != CollectionType::View && !moved.contains(&i.name.as_str()))
                .map(|i| i.name.as_str())
                .collect();
            let error = Error::Restore {
                engine: "mongodb",
                detail: format!(
                    "moving {} from staging database {staging:?} into {target:?} failed ({cause}); already moved: [{}]; still in {staging:?}, left there for inspection: [{}]",
                    item.name,
                    moved.join(", "),
                    remaining.join(", ")
                ),
            };
            return Err(if moved.is_empty() {
                PromoteError::NothingMoved(error)
            } else {
                PromoteError::Partial(error)
            });
        }
        moved.push(&item.name);
    }
    for view in items.iter().filter(|i| i.kind == CollectionType::View) {
        let created = async {
            if clean {
                drop_if_exists(client, target, &view.name, conn).await?;
            }
            create_view(client, target, &view.name, &view.options, conn).await
        };
        if let Err(e) = created.await {
            return Err(if moved.is_empty() {
                PromoteError::NothingMoved(e)
            } else {
                PromoteError::Partial(e)
            });
        }
    }
    Cleanup::DropDatabase(staging.to_string()).run(client).await;
    tracing::info!(%target, collections = moved.len(), "restore moved into the target database");
    Ok(())
}

/// Drops `db.name` (collection or view); a missing one is fine.
pub(crate) async fn drop_if_exists(
    client: &Client,
    db: &str,
    name: &str,
    conn: &MongoConnection,
) -> Result<()> {
    match client.database(db).run_command(doc! { "drop": name }).await {
        Ok(_) => Ok(()),
        Err(e) if crate::error::code(&e) == Some(NAMESPACE_NOT_FOUND) => Ok(()),
        Err(e) => Err(classify(
            &e,
            Side::Restore,
            &format!("dropping {db}.{name}"),
            conn,
        )),
    }
}
