//! [`Inner`]: what every handle of one [`S3Store`](crate::S3Store) and
//! its uploads share, built by [`S3StoreBuilder`](crate::S3StoreBuilder).

use std::sync::Arc;

use backup_core::key::Key;
use object_store::aws::AmazonS3;
use object_store::path::Path;

use crate::error::ErrorContext;
use crate::parts::PartPlan;

/// What every handle of one store shares.
pub(crate) struct Inner {
    pub(crate) client: Arc<AmazonS3>,
    /// Validated prefix without leading or trailing `/`.
    pub(crate) prefix: Option<String>,
    pub(crate) ctx: ErrorContext,
    pub(crate) region: String,
    pub(crate) virtual_hosted: bool,
    pub(crate) plan: PartPlan,
    pub(crate) conditional_put: ConditionalPut,
}

/// Whether create-only puts can use a conditional PUT on this server.
#[derive(Debug)]
pub(crate) enum ConditionalPut {
    /// Turned off by [`S3StoreBuilder::conditional_put`](crate::S3StoreBuilder::conditional_put).
    Disabled,
    /// Found out by [`S3Store::supports_conditional_put`](crate::S3Store::supports_conditional_put), once per store
    /// (an error leaves it unknown, to be asked again).
    Probed(tokio::sync::OnceCell<Probe>),
}

impl ConditionalPut {
    pub(crate) fn probe() -> Self {
        ConditionalPut::Probed(tokio::sync::OnceCell::new())
    }
}

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// A second conditional PUT of the probe object was refused (412).
    Honoured,
    /// A second conditional PUT of the probe object succeeded.
    Ignored,
    /// The server answered the first one with 501 Not Implemented.
    Refused,
}

impl Inner {
    /// The store key of an object location, or `None` for objects outside
    /// the prefix or with names that are not valid keys.
    pub(crate) fn key_of(&self, location: &Path) -> Option<Key> {
        let raw = location.as_ref();
        let relative = match &self.prefix {
            Some(prefix) => raw.strip_prefix(prefix.as_str())?.strip_prefix('/')?,
            None => raw,
        };
        match Key::new(relative) {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::debug!(location = raw, error = %e, "skipping object whose name is not a valid key");
                None
            }
        }
    }
}
