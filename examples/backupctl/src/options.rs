//! The global options of `backupctl`: how to reach an S3-compatible
//! server and which keys encrypt new backups or decrypt old ones.

use std::sync::Arc;

use backup_core::{Error, Result, Store};
use backup_examples::{
    S3Settings, StoreLocation, init_store, open_existing_store, open_store_for_writing,
};

/// How to reach an S3-compatible server, for `--store s3://bucket/prefix`.
/// Each setting is a global flag of `backupctl` or comes from the standard
/// AWS variable; credentials come only from the environment
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, or
/// the other sources the AWS SDKs read), never from the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct S3Options {
    /// S3 endpoint of an S3-compatible server (MinIO, R2, Supabase...); AWS when unset.
    #[arg(
        long = "s3-endpoint",
        env = "AWS_ENDPOINT_URL",
        global = true,
        value_name = "URL"
    )]
    pub endpoint: Option<String>,
    /// S3 region.
    #[arg(
        long = "s3-region",
        env = "AWS_REGION",
        global = true,
        value_name = "REGION"
    )]
    pub region: Option<String>,
    /// Path-style (true) or virtual-hosted (false) requests; by default
    /// path-style with --s3-endpoint, virtual-hosted on AWS.
    #[arg(long = "s3-path-style", global = true, value_name = "BOOL")]
    pub path_style: Option<bool>,
    /// Allow a plain-HTTP endpoint (implied by an http:// endpoint).
    #[arg(long = "s3-allow-http", global = true)]
    pub allow_http: bool,
}

/// Encryption flags shared by the commands: recipients for new backups,
/// identities for restoring and verifying encrypted ones. Key material is
/// read from files or environment variables, never from the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CryptoOptions {
    /// Encrypt new backups to this age recipient (age1..., repeatable).
    #[arg(long = "encrypt-to", global = true, value_name = "AGE_RECIPIENT")]
    pub encrypt_to: Vec<String>,
    /// Age identity file for restore/verify (AGE-SECRET-KEY-1..., repeatable).
    #[arg(long = "identity", global = true, value_name = "FILE")]
    pub identity: Vec<std::path::PathBuf>,
    /// Environment variable holding an age identity (AGE-SECRET-KEY-1...).
    #[arg(long = "identity-env", global = true, value_name = "VAR")]
    pub identity_env: Option<String>,
    /// Environment variable holding a passphrase (for humans; encrypts new
    /// backups and decrypts passphrase-encrypted ones).
    #[arg(long = "passphrase-env", global = true, value_name = "VAR")]
    pub passphrase_env: Option<String>,
}

impl S3Options {
    /// The settings these flags give (unset ones come from the environment).
    pub fn settings(&self) -> S3Settings {
        S3Settings {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            path_style: self.path_style,
            allow_http: self.allow_http.then_some(true),
            credentials: None,
        }
    }

    /// Opens the store named by `--store`, which must exist (every command
    /// but `backup`).
    pub async fn open_existing(&self, spec: &str) -> Result<Arc<dyn Store>> {
        open_existing_store(StoreLocation::parse(spec)?, &self.settings()).await
    }

    /// Creates and marks the store named by `--store` unless it is marked
    /// already; `true` when this call marked it.
    pub async fn init(&self, spec: &str) -> Result<bool> {
        init_store(StoreLocation::parse(spec)?, &self.settings())
            .await
            .map(|(_, created)| created)
    }

    /// Opens (creating and marking it if need be) the store named by
    /// `--store`, for `backup`.
    pub async fn open_for_writing(&self, spec: &str) -> Result<Arc<dyn Store>> {
        open_store_for_writing(StoreLocation::parse(spec)?, &self.settings()).await
    }
}

impl CryptoOptions {
    /// Applies the flags to an engine.
    pub fn apply(&self, mut engine: backup_core::Engine) -> Result<backup_core::Engine> {
        use backup_core::{Secret, crypto::AgeIdentities, crypto::AgeRecipients};
        let env = |var: &str| {
            std::env::var(var)
                .map(Secret::new)
                .map_err(|_| Error::Config(format!("environment variable {var} is not set")))
        };
        let passphrase = self.passphrase_env.as_deref().map(env).transpose()?;
        if !self.encrypt_to.is_empty() && passphrase.is_some() {
            return Err(Error::Config(
                "use either --encrypt-to or --passphrase-env, not both".into(),
            ));
        }
        if !self.encrypt_to.is_empty() {
            engine = engine.with_encryption(AgeRecipients::parse(&self.encrypt_to)?);
        }
        if let Some(p) = &passphrase {
            engine = engine
                .with_encryption(AgeRecipients::passphrase(p))
                .with_identities(AgeIdentities::passphrase(p));
        }
        let mut texts = Vec::new();
        for path in &self.identity {
            texts.push(
                std::fs::read_to_string(path).map_err(|e| {
                    Error::io(format!("reading identity file {}", path.display()), e)
                })?,
            );
        }
        if let Some(var) = &self.identity_env {
            texts.push(env(var)?.expose().to_string());
        }
        if !texts.is_empty() {
            engine = engine.with_identities(AgeIdentities::parse(&Secret::new(texts.join("\n")))?);
        }
        Ok(engine)
    }
}
