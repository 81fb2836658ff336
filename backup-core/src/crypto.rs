//! Encryption with the [age](https://age-encryption.org) format: X25519
//! recipients for machines, a passphrase for humans.
//!
//! Encrypted artifacts are plain age files (compressed inside), so they can
//! be read without this library: `age -d -i key.txt x.dump.zst.age | zstd
//! -d | pg_restore -d db`. Manifests record the recipients' public ids,
//! never key material.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use age::secrecy::SecretString;
use tokio::io::AsyncRead;
use tokio_util::compat::{
    FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt, TokioAsyncReadCompatExt,
    TokioAsyncWriteCompatExt,
};

use crate::compression::BoxWrite;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Scheme name recorded in manifests.
pub const AGE_SCHEME: &str = "age";

/// Who can decrypt new backups: one or more age recipients.
#[derive(Clone)]
pub struct AgeRecipients {
    recipients: Vec<Arc<dyn age::Recipient + Send + Sync>>,
    ids: Vec<String>,
}

impl fmt::Debug for AgeRecipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AgeRecipients").field(&self.ids).finish()
    }
}

impl AgeRecipients {
    /// X25519 recipients (`age1...`), as printed by `age-keygen -y`.
    ///
    /// ```
    /// use backup_core::{crypto::AgeIdentities, crypto::AgeRecipients};
    /// let (_identities, recipient, _secret) = AgeIdentities::generate();
    /// assert!(AgeRecipients::parse([recipient.as_str()]).is_ok());
    /// assert!(AgeRecipients::parse(["not-a-key"]).is_err());
    /// ```
    pub fn parse<I, S>(ids: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut recipients: Vec<Arc<dyn age::Recipient + Send + Sync>> = Vec::new();
        let mut names = Vec::new();
        for id in ids {
            let id = id.as_ref().trim();
            let r: age::x25519::Recipient = id.parse().map_err(|e: &str| {
                Error::Config(format!(
                    "invalid age recipient {id:?}: {e} (expected age1...)"
                ))
            })?;
            recipients.push(Arc::new(r));
            names.push(id.to_string());
        }
        if recipients.is_empty() {
            return Err(Error::Config(
                "encryption needs at least one recipient".into(),
            ));
        }
        Ok(AgeRecipients {
            recipients,
            ids: names,
        })
    }

    /// A passphrase (scrypt), for humans; machines should use keys.
    pub fn passphrase(passphrase: &Secret) -> Self {
        let r = age::scrypt::Recipient::new(SecretString::from(passphrase.expose().to_string()));
        AgeRecipients {
            recipients: vec![Arc::new(r)],
            ids: vec!["scrypt passphrase".into()],
        }
    }

    /// Public ids, as recorded in manifests.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Whether this is a passphrase (scrypt) recipient, which costs about a
    /// second of CPU per encryption and decryption.
    pub(crate) fn is_passphrase(&self) -> bool {
        self.ids.iter().any(|id| !id.starts_with("age1"))
    }

    /// Encrypts one small object (a deduplicated chunk) into a complete age
    /// file, in memory.
    pub(crate) fn encrypt_blob(&self, plain: &[u8]) -> Result<Vec<u8>> {
        use std::io::Write;
        let encryptor = age::Encryptor::with_recipients(
            self.recipients
                .iter()
                .map(|r| r.as_ref() as &dyn age::Recipient),
        )
        .map_err(|e| Error::Config(format!("cannot encrypt to these recipients: {e}")))?;
        let mut out = Vec::with_capacity(plain.len() + 256);
        let mut writer = encryptor
            .wrap_output(&mut out)
            .map_err(|e| Error::from_io("encrypting a chunk", e))?;
        writer
            .write_all(plain)
            .and_then(|_| writer.finish().map(|_| ()))
            .map_err(|e| Error::from_io("encrypting a chunk", e))?;
        Ok(out)
    }

    /// Wraps `inner` so that what is written is encrypted into it.
    pub(crate) async fn encrypt(&self, inner: BoxWrite) -> Result<BoxWrite> {
        let encryptor = age::Encryptor::with_recipients(
            self.recipients
                .iter()
                .map(|r| r.as_ref() as &dyn age::Recipient),
        )
        .map_err(|e| Error::Config(format!("cannot encrypt to these recipients: {e}")))?;
        let writer = encryptor
            .wrap_async_output(inner.compat_write())
            .await
            .map_err(|e| Error::from_io("writing the age header", e))?;
        Ok(Box::pin(writer.compat_write()))
    }
}

/// Keys that can decrypt backups: age identities (`AGE-SECRET-KEY-1...`)
/// from a file, a string (an environment variable), or a passphrase.
#[derive(Clone, Default)]
pub struct AgeIdentities {
    identities: Vec<Arc<dyn age::Identity + Send + Sync>>,
}

impl fmt::Debug for AgeIdentities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgeIdentities({} key(s))", self.identities.len())
    }
}

impl AgeIdentities {
    /// Identities from an age identity file (as written by `age-keygen`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading identity file {}", path.display()), e))?;
        Self::parse(&Secret::new(text)).map_err(|e| match e {
            Error::Config(m) => Error::Config(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Identities from text: one `AGE-SECRET-KEY-1...` per line, `#`
    /// comments allowed.
    pub fn parse(text: &Secret) -> Result<Self> {
        let mut identities: Vec<Arc<dyn age::Identity + Send + Sync>> = Vec::new();
        for (n, line) in text.expose().lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let id: age::x25519::Identity = line.parse().map_err(|_| {
                Error::Config(format!(
                    "line {}: not an age identity (expected AGE-SECRET-KEY-1...)",
                    n + 1
                ))
            })?;
            identities.push(Arc::new(id));
        }
        if identities.is_empty() {
            return Err(Error::Config("no age identity found".into()));
        }
        Ok(AgeIdentities { identities })
    }

    /// A passphrase identity (for backups encrypted with
    /// [`AgeRecipients::passphrase`]).
    pub fn passphrase(passphrase: &Secret) -> Self {
        let id = age::scrypt::Identity::new(SecretString::from(passphrase.expose().to_string()));
        AgeIdentities {
            identities: vec![Arc::new(id)],
        }
    }

    /// A new X25519 key pair: the identities, the public recipient
    /// (`age1...`) and the secret key text to store somewhere safe.
    pub fn generate() -> (AgeIdentities, String, Secret) {
        use age::secrecy::ExposeSecret;
        let id = age::x25519::Identity::generate();
        let recipient = id.to_public().to_string();
        let secret = Secret::new(id.to_string().expose_secret().to_string());
        (
            AgeIdentities {
                identities: vec![Arc::new(id)],
            },
            recipient,
            secret,
        )
    }

    /// Whether there is any key.
    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    /// Decrypts one small age file (a deduplicated chunk) in memory.
    pub(crate) fn decrypt_blob(&self, data: &[u8], what: &str) -> Result<Vec<u8>> {
        use std::io::Read;
        let decryptor = age::Decryptor::new(data).map_err(|e| decrypt_error(e, what))?;
        let mut reader = decryptor
            .decrypt(
                self.identities
                    .iter()
                    .map(|i| i.as_ref() as &dyn age::Identity),
            )
            .map_err(|e| decrypt_error(e, what))?;
        let mut out = Vec::with_capacity(data.len());
        reader.read_to_end(&mut out).map_err(|e| Error::Integrity {
            what: what.to_string(),
            detail: format!("cannot decrypt: {e}"),
        })?;
        Ok(out)
    }

    /// Decrypts `input` (an age file) into a reader of the plaintext.
    pub(crate) async fn decrypt(
        &self,
        input: impl tokio::io::AsyncBufRead + Send + Unpin + 'static,
        what: &str,
    ) -> Result<std::pin::Pin<Box<dyn AsyncRead + Send>>> {
        let decryptor = age::Decryptor::new_async_buffered(input.compat())
            .await
            .map_err(|e| decrypt_error(e, what))?;
        let reader = decryptor
            .decrypt_async(
                self.identities
                    .iter()
                    .map(|i| i.as_ref() as &dyn age::Identity),
            )
            .map_err(|e| decrypt_error(e, what))?;
        Ok(Box::pin(reader.compat()))
    }
}

fn decrypt_error(e: age::DecryptError, what: &str) -> Error {
    match e {
        age::DecryptError::NoMatchingKeys => Error::Decryption {
            what: what.to_string(),
            detail: "none of the supplied identities can decrypt it (wrong key?)".into(),
        },
        age::DecryptError::Io(io) => Error::Integrity {
            what: what.to_string(),
            detail: format!("cannot read the age header: {io}"),
        },
        other => Error::Decryption {
            what: what.to_string(),
            detail: other.to_string(),
        },
    }
}
