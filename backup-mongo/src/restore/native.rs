//! The native restore session: archive events → collections, unordered
//! insert batches, indexes, and a staged commit.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use backup_core::{Error, Result, source::RestoreReport, source::RestoreSession};
use bson::{Bson, Document, RawDocumentBuf, doc};
use bytes::Bytes;
use tokio::task::JoinSet;

use super::promote::{self, Cleanup, PromoteError, StagedItem};
use super::{SessionPlan, Tuning};
use crate::archive::{
    ArchiveError, ArchiveEvent, ArchiveReader, CollectionType, MetadataDocument, Prelude,
};
use crate::error::{Side, classify};

/// One collection or view of the archive.
#[derive(Debug)]
struct Entry {
    kind: CollectionType,
    metadata: MetadataDocument,
    selected: bool,
    documents: u64,
}

/// A running native restore.
pub(crate) struct NativeSession {
    plan: SessionPlan,
    tuning: Tuning,
    reader: ArchiveReader,
    /// The database the archive was dumped from (from its prelude).
    source_db: Option<String>,
    /// Archive collections by name, in prelude order in `order`.
    entries: HashMap<String, Entry>,
    order: Vec<String>,
    /// The namespace the next documents belong to, if restored.
    current: Option<String>,
    batch: Vec<RawDocumentBuf>,
    batch_bytes: usize,
    batch_collection: Option<String>,
    inflight: JoinSet<Result<u64>>,
    inserted: u64,
    /// What to undo on abort or drop; `None` once committed.
    cleanup: Option<Cleanup>,
    failed: bool,
}

impl fmt::Debug for NativeSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeSession")
            .field("target", &self.plan.target)
            .field("staging", &self.plan.staging)
            .field("source_db", &self.source_db)
            .field("inserted", &self.inserted)
            .finish_non_exhaustive()
    }
}

impl NativeSession {
    pub(crate) fn new(plan: SessionPlan, tuning: Tuning) -> Self {
        let cleanup = Some(match &plan.staging {
            Some(staging) => Cleanup::DropDatabase(staging.clone()),
            None => Cleanup::DropCollections(plan.target.clone(), Vec::new()),
        });
        NativeSession {
            plan,
            tuning,
            reader: ArchiveReader::new(),
            source_db: None,
            entries: HashMap::new(),
            order: Vec::new(),
            current: None,
            batch: Vec::new(),
            batch_bytes: 0,
            batch_collection: None,
            inflight: JoinSet::new(),
            inserted: 0,
            cleanup,
            failed: false,
        }
    }

    fn restore_error(&self, detail: impl Into<String>) -> Error {
        Error::Restore {
            engine: "mongodb",
            detail: detail.into(),
        }
    }

    fn archive_error(&self, err: ArchiveError) -> Error {
        super::integrity_error(err, &self.plan)
    }

    async fn on_event(&mut self, event: ArchiveEvent) -> Result<()> {
        match event {
            ArchiveEvent::Prelude(prelude) => self.on_prelude(prelude).await,
            ArchiveEvent::NamespaceStart { namespace, .. } => {
                // Buckets of a timeseries collection left out by `only`
                // (a selected one was refused at the prelude).
                if let Some(owner) = namespace.collection.strip_prefix("system.buckets.")
                    && self.entries.get(owner).is_some_and(|e| !e.selected)
                {
                    self.current = None;
                    return Ok(());
                }
                if self.source_db.as_deref() != Some(namespace.db.as_str())
                    || !self.entries.contains_key(&namespace.collection)
                {
                    return Err(self.restore_error(format!(
                        "the archive has data for {namespace}, which its prelude does not list; not supported"
                    )));
                }
                let selected = self.entries[&namespace.collection].selected;
                self.current = selected.then(|| namespace.collection.clone());
                Ok(())
            }
            ArchiveEvent::Document(raw) => {
                let Some(collection) = self.current.clone() else {
                    return Ok(());
                };
                if self.batch_collection.as_deref() != Some(collection.as_str()) {
                    self.flush().await?;
                    self.batch_collection = Some(collection);
                }
                self.batch_bytes += raw.len();
                self.batch.push(
                    RawDocumentBuf::from_bytes(raw.to_vec())
                        .map_err(|e| self.restore_error(format!("unreadable document: {e}")))?,
                );
                if self.batch_bytes >= self.tuning.batch_bytes
                    || self.batch.len() >= self.tuning.batch_documents
                {
                    self.flush().await?;
                }
                Ok(())
            }
            ArchiveEvent::NamespaceEnd(summary) => {
                self.current = None;
                let name = summary.namespace.collection;
                let Some(entry) = self.entries.get_mut(&name) else {
                    return Ok(());
                };
                entry.documents = summary.documents;
                if entry.selected && entry.kind != CollectionType::View {
                    self.flush().await?;
                    self.drain().await?;
                    self.build_indexes(&name).await?;
                }
                Ok(())
            }
        }
    }

    async fn on_prelude(&mut self, prelude: Prelude) -> Result<()> {
        let selection = super::select(&self.plan, &prelude)?;
        self.source_db = Some(selection.source_db);
        for item in selection.items {
            self.order.push(item.name.clone());
            self.entries.insert(
                item.name,
                Entry {
                    kind: item.kind,
                    metadata: item.metadata,
                    selected: item.selected,
                    documents: 0,
                },
            );
        }
        let selected: Vec<String> = self
            .order
            .iter()
            .filter(|n| self.entries[*n].selected)
            .cloned()
            .collect();
        let client = self.plan.client.clone();
        let target = self.plan.target.clone();
        super::prepare_target(&client, &self.plan, &target, &selected).await?;
        for name in &selected {
            self.create(name).await?;
        }
        Ok(())
    }

    /// Creates a collection (with its options) or, in a direct restore, a
    /// view, in the data database. Views of a staged restore are created
    /// in the target at commit.
    async fn create(&mut self, name: &str) -> Result<()> {
        let entry = &self.entries[name];
        let data_db = self.plan.data_db().to_string();
        if entry.kind == CollectionType::View {
            if self.plan.staging.is_none() {
                let options = entry.metadata.options.clone();
                self.track_created(name);
                promote::create_view(&self.plan.client, &data_db, name, &options, &self.plan.conn)
                    .await?;
            }
            return Ok(());
        }
        let mut command = doc! { "create": name };
        for (key, value) in &entry.metadata.options {
            command.insert(key.clone(), value.clone());
        }
        self.track_created(name);
        self.plan
            .client
            .database(&data_db)
            .run_command(command)
            .await
            .map_err(|e| {
                classify(
                    &e,
                    Side::Restore,
                    &format!("creating collection {data_db}.{name}"),
                    &self.plan.conn,
                )
            })?;
        Ok(())
    }

    fn track_created(&mut self, name: &str) {
        if let Some(Cleanup::DropCollections(_, names)) = &mut self.cleanup {
            names.push(name.to_string());
        }
    }

    /// Sends the current batch as one unordered insert, waiting first if
    /// the most batches allowed are already in flight.
    async fn flush(&mut self) -> Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        while self.inflight.len() >= self.tuning.concurrency {
            self.join_one().await?;
        }
        let docs = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        let name = self.batch_collection.clone().unwrap_or_default();
        let data_db = self.plan.data_db().to_string();
        let coll = self
            .plan
            .client
            .database(&data_db)
            .collection::<RawDocumentBuf>(&name);
        let conn = self.plan.conn.clone();
        self.inflight.spawn(async move {
            let count = docs.len() as u64;
            coll.insert_many(docs)
                .ordered(false)
                .bypass_document_validation(true)
                .await
                .map_err(|e| {
                    classify(
                        &e,
                        Side::Restore,
                        &format!("inserting into {data_db}.{name}"),
                        &conn,
                    )
                })?;
            Ok(count)
        });
        Ok(())
    }

    async fn join_one(&mut self) -> Result<()> {
        match self.inflight.join_next().await {
            None => Ok(()),
            Some(Ok(Ok(count))) => {
                self.inserted += count;
                Ok(())
            }
            Some(Ok(Err(e))) => Err(e),
            Some(Err(e)) => Err(self.restore_error(format!("insert task failed: {e}"))),
        }
    }

    /// Waits for every insert in flight.
    async fn drain(&mut self) -> Result<()> {
        while !self.inflight.is_empty() {
            self.join_one().await?;
        }
        Ok(())
    }

    /// Builds the collection's secondary indexes from their stored
    /// specifications (the `_id` index comes with the collection).
    async fn build_indexes(&self, name: &str) -> Result<()> {
        let specs: Vec<Bson> = self.entries[name]
            .metadata
            .indexes
            .iter()
            .filter(|spec| {
                spec.get_str("name") != Ok("_id_")
                    && !matches!(spec.get("clustered"), Some(Bson::Boolean(true)))
            })
            .map(|spec| {
                let mut spec: Document = spec.clone();
                spec.remove("ns");
                Bson::Document(spec)
            })
            .collect();
        if specs.is_empty() {
            return Ok(());
        }
        let data_db = self.plan.data_db();
        self.plan
            .client
            .database(data_db)
            .run_command(doc! { "createIndexes": name, "indexes": specs })
            .await
            .map_err(|e| {
                classify(
                    &e,
                    Side::Restore,
                    &format!("building indexes of {data_db}.{name}"),
                    &self.plan.conn,
                )
            })?;
        Ok(())
    }

    async fn feed(&mut self, data: &[u8]) -> Result<()> {
        self.reader.feed(data);
        loop {
            let event = match self.reader.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.archive_error(e)),
            };
            self.on_event(event).await?;
        }
    }

    /// Ends the restore; an error says whether the staging database must
    /// be kept (a partial promotion).
    async fn finish(&mut self) -> std::result::Result<RestoreReport, PromoteError> {
        if let Err(e) = self.reader.finish() {
            return Err(PromoteError::NothingMoved(self.archive_error(e)));
        }
        self.flush().await.map_err(PromoteError::NothingMoved)?;
        self.drain().await.map_err(PromoteError::NothingMoved)?;
        let restored: Vec<StagedItem> = self
            .order
            .iter()
            .filter(|n| self.entries[*n].selected)
            .map(|n| StagedItem {
                name: n.clone(),
                kind: self.entries[n].kind.clone(),
                options: self.entries[n].metadata.options.clone(),
            })
            .collect();
        if let Some(staging) = &self.plan.staging {
            promote::promote(
                &self.plan.client,
                &self.plan.conn,
                staging,
                self.plan.token.as_deref().unwrap_or_default(),
                &self.plan.target,
                self.plan.clean,
                &restored,
            )
            .await?;
        }
        tracing::info!(
            target = %self.plan.target,
            collections = restored.len(),
            documents = self.inserted,
            "mongodb restore committed"
        );
        Ok(RestoreReport {
            database: self.plan.target.clone(),
            warnings: Vec::new(),
        })
    }

    async fn undo(&mut self) {
        self.inflight.abort_all();
        while self.inflight.join_next().await.is_some() {}
        if let Some(cleanup) = self.cleanup.take() {
            cleanup.run(&self.plan.client).await;
        }
    }
}

#[async_trait]
impl RestoreSession for NativeSession {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        if self.failed {
            return Err(self.restore_error("the restore already failed"));
        }
        let result = self.feed(&data).await;
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    async fn commit(mut self: Box<Self>) -> Result<RestoreReport> {
        if self.failed {
            self.undo().await;
            return Err(self.restore_error("the restore already failed"));
        }
        match self.finish().await {
            Ok(report) => {
                self.cleanup = None;
                Ok(report)
            }
            Err(PromoteError::NothingMoved(e)) => {
                self.undo().await;
                Err(e)
            }
            Err(PromoteError::Partial(e)) => {
                // Keep the staging database: its error lists what is left.
                self.cleanup = None;
                Err(e)
            }
        }
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.undo().await;
        tracing::info!(target = %self.plan.target, "mongodb restore aborted; {}", self.plan.abort_note());
        Ok(())
    }
}

impl Drop for NativeSession {
    fn drop(&mut self) {
        // Dropped without commit or abort (a cancelled future): undo in
        // the background if a runtime is still there.
        if let Some(cleanup) = self.cleanup.take() {
            self.inflight.abort_all();
            let client = self.plan.client.clone();
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move { cleanup.run(&client).await });
            }
        }
    }
}
