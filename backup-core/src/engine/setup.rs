//! The [`Engine`] itself: what it holds and how it is configured.

use std::sync::Arc;

use crate::catalog::Catalog;
use crate::compression::Compression;
use crate::crypto::{AGE_SCHEME, AgeIdentities, AgeRecipients};
use crate::dedup::DedupOptions;
use crate::error::{Error, Result};
use crate::events::EventBus;
use crate::manifest::{EncryptionInfo, Manifest};
use crate::meter::{Meter, MeteredStore};
use crate::pipeline::PipelineOptions;
use crate::store::Store;

/// The library's front door: takes, lists, verifies, restores and prunes
/// backups in one [`Store`].
///
/// ```
/// # use std::sync::Arc;
/// # use backup_core::{Engine, memory::InMemoryStore, Compression};
/// let engine = Engine::new(Arc::new(InMemoryStore::new()))
///     .with_compression(Compression::gzip(6));
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    pub(super) store: Arc<dyn Store>,
    pub(super) catalog: Arc<Catalog>,
    pub(super) compression: Compression,
    pub(super) options: PipelineOptions,
    pub(super) events: EventBus,
    pub(super) encryption: Option<AgeRecipients>,
    pub(super) identities: AgeIdentities,
    pub(super) dedup: DedupOptions,
}

impl Engine {
    /// An engine over `store` with the default compression and buffering.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Engine {
            catalog: Arc::new(Catalog::new(Arc::clone(&store))),
            store,
            compression: Compression::default(),
            options: PipelineOptions::default(),
            events: EventBus::default(),
            encryption: None,
            identities: AgeIdentities::default(),
            dedup: DedupOptions::default(),
        }
    }

    /// Sets chunking, packing and garbage-collection options of
    /// incremental (deduplicated) backups.
    pub fn with_dedup(mut self, options: DedupOptions) -> Self {
        self.dedup = options;
        self
    }

    /// The options of incremental backups.
    pub fn dedup_options(&self) -> &DedupOptions {
        &self.dedup
    }

    /// Encrypts new backups to these age recipients (after compression).
    pub fn with_encryption(mut self, recipients: AgeRecipients) -> Self {
        self.encryption = Some(recipients);
        self
    }

    /// Keys for restoring and verifying encrypted backups.
    pub fn with_identities(mut self, identities: AgeIdentities) -> Self {
        self.identities = identities;
        self
    }

    /// The identities for an encrypted manifest, or an error saying that
    /// one is needed.
    pub(super) fn identities_for(&self, manifest: &Manifest) -> Result<Option<AgeIdentities>> {
        self.identities_for_info(&manifest.artifact, manifest.encryption.as_ref())
    }

    /// The identities for an object of `encryption` (`what` names it in
    /// errors), or an error saying that one is needed.
    pub(super) fn identities_for_info(
        &self,
        what: &str,
        encryption: Option<&EncryptionInfo>,
    ) -> Result<Option<AgeIdentities>> {
        match encryption {
            None => Ok(None),
            Some(_) if self.identities.is_empty() => Err(Error::Decryption {
                what: what.to_string(),
                detail: "the object is encrypted and no identity was supplied".into(),
            }),
            Some(e) if e.scheme != AGE_SCHEME => Err(Error::Decryption {
                what: what.to_string(),
                detail: format!("unknown encryption scheme {:?}", e.scheme),
            }),
            Some(_) => Ok(Some(self.identities.clone())),
        }
    }

    /// Publishes events on `bus` (started, progress, succeeded, failed,
    /// pruned). By default the engine has a bus of its own.
    pub fn with_events(mut self, bus: EventBus) -> Self {
        self.events = bus;
        self
    }

    /// The event bus backups report to.
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// Compresses new backups with `compression` (restores use what each
    /// manifest recorded).
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// [`Engine::with_compression`] for callers holding an `Arc`.
    pub fn with_compressor(self, compression: Arc<Compression>) -> Self {
        self.with_compression(*compression)
    }

    /// The compression of new backups.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Sets buffering, stall watchdog and cancellation.
    pub fn with_options(mut self, options: PipelineOptions) -> Self {
        self.options = options;
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// This engine with the bytes of its store counted into `meter`
    /// ([`MeteredStore`]): one operation's progress when the engine is
    /// shared. The catalog (and its cache) stays the one of `self`, and
    /// its reads of manifests are not counted.
    pub fn metered(&self, meter: Arc<Meter>) -> Engine {
        let mut engine = self.clone();
        engine.store = Arc::new(MeteredStore::new(Arc::clone(&self.store), meter));
        engine
    }

    /// The catalog of committed backups.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The pipeline options.
    pub fn options(&self) -> &PipelineOptions {
        &self.options
    }
}
