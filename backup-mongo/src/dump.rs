//! [`MongoSource`]: a database dumped through the driver into the
//! mongodump archive format, streamed from a producer task.

use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use backup_core::fingerprint::{Fingerprint, TableFingerprint};
use backup_core::{
    DumpSource, Error, Result, source::DumpOptions, source::DumpStream, source::SourceInfo,
    source::Versions,
};
use bson::{RawDocumentBuf, doc};
use bytes::Bytes;
use futures::Stream;
use mongodb::{Client, ClientSession};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::archive::{ArchiveHeader, ArchiveWriter, CollectionMetadata, CollectionType, Namespace};
use crate::conn::MongoConnection;
use crate::error::{Side, classify};
use crate::fingerprint::{Accumulator, counted};
use crate::server::{CollectionSpec, ServerInfo, plan_dump, server_info};
use crate::tools::Method;

mod mongodump;

/// The format name recorded in manifests: mongodump's `--archive` format.
pub const FORMAT: &str = "archive";

/// Default size of the chunks the dump stream yields.
pub const DEFAULT_CHUNK_SIZE: usize = 1024 * 1024;

/// Default number of chunks buffered between the producer task and the
/// stream's consumer.
pub const DEFAULT_QUEUE_DEPTH: usize = 4;

/// MongoDB's `SnapshotTooOld`.
const SNAPSHOT_TOO_OLD: i32 = 239;

/// How consistent a dump must be across collections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Consistency {
    /// A snapshot when the server supports one (replica set or sharded
    /// cluster, MongoDB 5.0 or later); plain reads otherwise, with a
    /// warning in the log.
    #[default]
    Auto,
    /// A snapshot, or fail before dumping anything.
    Snapshot,
    /// Plain reads: each collection reflects the moment it was read.
    Plain,
}

/// Dumps one MongoDB database, or some of its collections, as a mongodump
/// `--archive` stream.
///
/// With [`Method::Driver`] (the default) the official driver reads each
/// collection through a cursor and copies the raw BSON of every document
/// into an [`ArchiveWriter`] without decoding it; a producer task feeds a
/// bounded channel ([`DEFAULT_QUEUE_DEPTH`] chunks of
/// [`DEFAULT_CHUNK_SIZE`] bytes), so memory stays flat whatever the size of
/// the database and a slow store slows the reads down. Dropping the stream
/// stops the producer and closes its cursor. The archive is what
/// `mongodump --archive` writes: `mongorestore --archive` can restore it.
///
/// What the archive holds per collection: its options from
/// `listCollections` (capped, validator, collation, view pipeline, ...) as
/// canonical Extended JSON, its indexes from `listIndexes`, its type
/// (collection or view) and UUID. `system.*` collections are not dumped
/// (unless named in [`DumpOptions::only`]); timeseries collections are
/// refused with an error rather than silently skipped.
///
/// # Content fingerprint
///
/// Unless [`DumpOptions::skip_fingerprint`], the dump records in the
/// manifest a fingerprint of what it wrote
/// ([`FINGERPRINT_METHOD`](crate::FINGERPRINT_METHOD)): per collection
/// (not views, not `system.*`) the document count and the sum of a
/// SHA-256-based hash of each document's raw BSON, computed on the bytes
/// as they pass into the archive (one hash per document, no extra read,
/// nothing buffered). A restore drill ([`crate::MongoDrill`]) compares it
/// with the restored copy. [`Method::Tools`] (mongodump) records none.
///
/// # Consistency
///
/// On a replica set or sharded cluster running MongoDB 5.0 or later, all
/// documents are read in one snapshot session: every collection is read
/// at the same cluster time, chosen by the first read, so the dump is
/// point-in-time for documents. Not covered by the snapshot: the list of
/// collections and their indexes and options, read just before (a
/// collection created, dropped or re-indexed at that moment may or may not
/// appear). The server keeps snapshot history for
/// `minSnapshotHistoryWindowInSeconds` (300 s by default): a dump that
/// takes longer can fail with `SnapshotTooOld`; raise that parameter or
/// use [`Consistency::Plain`]. On a standalone server (or with
/// [`Consistency::Plain`]) each collection is read with ordinary reads and
/// reflects the moment it was read; writes during the dump can make
/// collections inconsistent with each other, and a document moved by an
/// update during a collection scan can be seen twice or not at all.
#[derive(Debug, Clone)]
pub struct MongoSource {
    conn: MongoConnection,
    consistency: Consistency,
    method: Method,
    chunk_size: usize,
    queue_depth: usize,
    allow_system: bool,
}

impl MongoSource {
    /// A source dumping `conn.database()` through the driver.
    pub fn new(conn: MongoConnection) -> Self {
        MongoSource {
            conn,
            consistency: Consistency::Auto,
            method: Method::Driver,
            chunk_size: DEFAULT_CHUNK_SIZE,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            allow_system: false,
        }
    }

    /// Allows dumping `admin`, `local` and `config` (refused by default:
    /// they hold users, roles and the oplog, not an application's data).
    pub fn allow_system_databases(mut self, yes: bool) -> Self {
        self.allow_system = yes;
        self
    }

    /// Sets how consistent the dump must be.
    pub fn with_consistency(mut self, consistency: Consistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Dumps with the driver (default) or with `mongodump --archive`.
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// Sets the chunk size and how many chunks may wait between the
    /// producer and the consumer (both at least 1).
    pub fn with_buffering(mut self, chunk_size: usize, queue_depth: usize) -> Self {
        self.chunk_size = chunk_size.max(1);
        self.queue_depth = queue_depth.max(1);
        self
    }

    /// The connection parameters (credentials hidden in `Debug`).
    pub fn connection(&self) -> &MongoConnection {
        &self.conn
    }
}

/// The tool version recorded in manifests and archive headers.
pub(crate) fn tool_version() -> String {
    format!(
        "backup-mongo {} (mongodb driver {})",
        env!("CARGO_PKG_VERSION"),
        env!("BACKUP_MONGO_DRIVER_VERSION")
    )
}

#[async_trait]
impl DumpSource for MongoSource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            engine: "mongodb".into(),
            database: self.conn.database().unwrap_or_default().to_string(),
            format: FORMAT.into(),
            extension: "archive".into(),
            magic: Some(crate::archive::MAGIC.to_vec()),
        }
    }

    async fn dump(&self, opts: &DumpOptions) -> Result<DumpStream> {
        let database = self.conn.require_database("a MongoDB dump")?.to_string();
        crate::server::validate_database_name(&database)?;
        if !self.allow_system {
            crate::server::check_not_system(&database, "dump")?;
        }
        let client = self.conn.client().await?;
        let server = server_info(&client, &self.conn, Side::Dump).await?;
        if let Method::Tools(tools) = &self.method {
            return mongodump::dump(tools, &client, &self.conn, &database, &opts.only, &server)
                .await;
        }
        let snapshot = match (self.consistency, server.snapshot_reads) {
            (Consistency::Plain, _) => false,
            (_, true) => true,
            (Consistency::Snapshot, false) => {
                return Err(Error::Dump {
                    engine: "mongodb",
                    detail: format!(
                        "a snapshot dump needs a replica set or sharded cluster on MongoDB 5.0 or later; the server is a {} running {}",
                        server.topology, server.version
                    ),
                });
            }
            (Consistency::Auto, false) => {
                tracing::warn!(topology = %server.topology, version = %server.version, "no snapshot reads on this server: each collection is dumped as of the moment it is read");
                false
            }
        };
        let specs = plan_dump(&client, &database, &opts.only, &self.conn).await?;
        tracing::debug!(%database, collections = specs.len(), snapshot, "mongodb dump started");
        let (tx, rx) = mpsc::channel(self.queue_depth);
        let (fingerprint, promised) = if opts.skip_fingerprint {
            (None, None)
        } else {
            let (sender, receiver) = oneshot::channel();
            (Some(sender), Some(receiver))
        };
        let producer = Producer {
            client,
            conn: self.conn.clone(),
            database,
            specs,
            snapshot,
            chunk_size: self.chunk_size,
            tx,
            fingerprint,
        };
        let task = tokio::spawn(producer.run(server.clone()));
        let dump = DumpStream::new(
            Box::pin(ProducerStream {
                rx,
                task,
                done: false,
            }),
            Versions {
                tool: Some(tool_version()),
                server: Some(server.version),
            },
        );
        Ok(match promised {
            Some(receiver) => dump.with_fingerprint(receiver),
            None => dump,
        })
    }
}

/// What the producer sends.
pub(crate) enum Message {
    Data(Bytes),
    /// The archive is complete.
    Done,
    Failed(Error),
}

/// The consumer side: yields the producer's chunks, reports a producer
/// that stopped without saying `Done` (a panic) as an error, and stops
/// the producer when dropped.
pub(crate) struct ProducerStream {
    pub(crate) rx: mpsc::Receiver<Message>,
    pub(crate) task: JoinHandle<()>,
    pub(crate) done: bool,
}

impl Stream for ProducerStream {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Message::Data(bytes))) => Poll::Ready(Some(Ok(bytes))),
            Poll::Ready(Some(Message::Done)) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Message::Failed(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(Some(Err(Error::Dump {
                    engine: "mongodb",
                    detail: "the dump task stopped before the end of the archive".to_string(),
                })))
            }
        }
    }
}

impl Drop for ProducerStream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The task reading collections into the archive writer.
struct Producer {
    client: Client,
    conn: MongoConnection,
    database: String,
    specs: Vec<CollectionSpec>,
    snapshot: bool,
    chunk_size: usize,
    tx: mpsc::Sender<Message>,
    /// Where the content fingerprint goes once the archive is complete
    /// (`None`: not wanted).
    fingerprint: Option<oneshot::Sender<Fingerprint>>,
}

/// Why the producer stopped early.
enum Stop {
    /// The consumer went away; nobody to tell.
    Gone,
    Failed(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Failed(e)
    }
}

impl From<crate::archive::ArchiveError> for Stop {
    fn from(e: crate::archive::ArchiveError) -> Self {
        Stop::Failed(Error::Dump {
            engine: "mongodb",
            detail: e.to_string(),
        })
    }
}

impl Producer {
    async fn run(mut self, server: ServerInfo) {
        let tx = self.tx.clone();
        match self.write_archive(&server).await {
            Ok(()) => {
                let _ = tx.send(Message::Done).await;
            }
            Err(Stop::Failed(e)) => {
                tracing::warn!(database = %self.database, error = %e, "mongodb dump failed");
                let _ = tx.send(Message::Failed(e)).await;
            }
            Err(Stop::Gone) => {
                tracing::debug!(database = %self.database, "dump stream dropped; producer stopped");
            }
        }
    }

    async fn write_archive(&mut self, server: &ServerInfo) -> std::result::Result<(), Stop> {
        let entries: Vec<CollectionMetadata> = self
            .specs
            .iter()
            .map(|spec| {
                CollectionMetadata::new(
                    Namespace::new(&self.database, &spec.name),
                    spec.kind.clone(),
                    spec.metadata.to_extended_json(),
                )
            })
            .collect();
        let mut writer = ArchiveWriter::new(
            &ArchiveHeader::new(&server.version, tool_version()),
            &entries,
        )?;
        self.send(writer.take()).await?;
        let mut session = if self.snapshot {
            Some(
                self.client
                    .start_session()
                    .snapshot(true)
                    .await
                    .map_err(|e| self.error(&e, "starting a snapshot session"))?,
            )
        } else {
            None
        };
        let specs = std::mem::take(&mut self.specs);
        let mut tables: Vec<TableFingerprint> = Vec::new();
        for spec in &specs {
            writer.begin_namespace(&self.database, &spec.name)?;
            if spec.kind != CollectionType::View {
                let mut sum = (self.fingerprint.is_some() && counted(&spec.name, &spec.kind))
                    .then(Accumulator::default);
                let count = self
                    .copy_collection(&spec.name, session.as_mut(), &mut writer, sum.as_mut())
                    .await?;
                tables.extend(sum.map(|s| s.finish(&spec.name)));
                tracing::debug!(collection = %spec.name, documents = count, "collection dumped");
            }
            writer.end_namespace()?;
            if writer.buffered() >= self.chunk_size {
                self.send(writer.take()).await?;
            }
        }
        if let Some(time) = session.as_ref().and_then(|s| s.snapshot_time()) {
            tracing::info!(database = %self.database, snapshot = ?time, "mongodb dump read at one cluster time");
        }
        let tail = writer.finish()?;
        self.send(tail).await?;
        if let Some(sender) = self.fingerprint.take() {
            // Before `Done`: the engine waits for it after the last byte.
            let _ = sender.send(crate::fingerprint::fingerprint(tables));
        }
        Ok(())
    }

    /// Streams one collection's documents into the writer, sending a chunk
    /// whenever the writer holds `chunk_size` bytes and adding each
    /// document to `sum`, if given. Returns the count.
    async fn copy_collection(
        &self,
        name: &str,
        session: Option<&mut ClientSession>,
        writer: &mut ArchiveWriter,
        mut sum: Option<&mut Accumulator>,
    ) -> std::result::Result<u64, Stop> {
        let coll = self
            .client
            .database(&self.database)
            .collection::<RawDocumentBuf>(name);
        let context = format!("reading {}.{name}", self.database);
        let mut count = 0u64;
        match session {
            Some(session) => {
                let mut cursor = coll
                    .find(doc! {})
                    .session(&mut *session)
                    .await
                    .map_err(|e| self.error(&e, &context))?;
                while cursor
                    .advance(&mut *session)
                    .await
                    .map_err(|e| self.error(&e, &context))?
                {
                    let raw = cursor.current().as_bytes();
                    writer.document(raw)?;
                    if let Some(sum) = sum.as_deref_mut() {
                        sum.add(raw);
                    }
                    count += 1;
                    if writer.buffered() >= self.chunk_size {
                        self.send(writer.take()).await?;
                    }
                }
            }
            None => {
                let mut cursor = coll
                    .find(doc! {})
                    .await
                    .map_err(|e| self.error(&e, &context))?;
                while cursor
                    .advance()
                    .await
                    .map_err(|e| self.error(&e, &context))?
                {
                    let raw = cursor.current().as_bytes();
                    writer.document(raw)?;
                    if let Some(sum) = sum.as_deref_mut() {
                        sum.add(raw);
                    }
                    count += 1;
                    if writer.buffered() >= self.chunk_size {
                        self.send(writer.take()).await?;
                    }
                }
            }
        }
        Ok(count)
    }

    fn error(&self, err: &mongodb::error::Error, context: &str) -> Stop {
        let mut e = classify(err, Side::Dump, context, &self.conn);
        if crate::error::code(err) == Some(SNAPSHOT_TOO_OLD)
            && let Error::Dump { detail, .. } = &mut e
        {
            detail.push_str(
                " (the dump outlived the server's snapshot history: raise minSnapshotHistoryWindowInSeconds or dump with Consistency::Plain)",
            );
        }
        Stop::Failed(e)
    }

    async fn send(&self, bytes: Bytes) -> std::result::Result<(), Stop> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Message::Data(bytes))
            .await
            .map_err(|_| Stop::Gone)
    }
}
