//! The engine conformance suites: [`source_conformance`] and
//! [`target_conformance`], which every engine adapter (PostgreSQL,
//! MongoDB, and MySQL/MariaDB, SQLite, physical PostgreSQL to come) runs
//! against its real server through an [`EngineHarness`], the way every
//! store runs [`store_conformance`](super::store_conformance).

use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use super::processes::descendant_processes;
use crate::error::{Error, Result};
use crate::secret::Secret;
use crate::source::{DumpOptions, DumpSource, RestoreOptions, RestoreSession, RestoreTarget};

/// What the engine under test can be checked for beyond the required
/// contract.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct EngineCapabilities {
    /// The engine authenticates (a source with wrong credentials exists).
    pub credentials: bool,
    /// Dumps and restores run child processes (`pg_dump`, `mongodump`),
    /// whose argv and environment are checked for secrets; the suites
    /// insist on seeing at least one while a dump runs.
    pub children: bool,
    /// Restores that create their database stage it and leave a
    /// [`Leftover`](crate::source::Leftover) when the host dies.
    pub staging: bool,
    /// How long the server may take to notice that a killed restore's
    /// session ended (default 60 s); the suite polls until then.
    pub settle: Duration,
}

impl Default for EngineCapabilities {
    fn default() -> Self {
        EngineCapabilities {
            credentials: false,
            children: false,
            staging: false,
            settle: Duration::from_secs(60),
        }
    }
}

impl EngineCapabilities {
    /// Sets [`EngineCapabilities::settle`].
    pub fn settle(mut self, limit: Duration) -> Self {
        self.settle = limit;
        self
    }

    /// Sets [`EngineCapabilities::credentials`].
    pub fn credentials(mut self, yes: bool) -> Self {
        self.credentials = yes;
        self
    }

    /// Sets [`EngineCapabilities::children`].
    pub fn children(mut self, yes: bool) -> Self {
        self.children = yes;
        self
    }

    /// Sets [`EngineCapabilities::staging`].
    pub fn staging(mut self, yes: bool) -> Self {
        self.staging = yes;
        self
    }
}

/// What an engine's test provides to the suites: databases with known
/// content on its real server, and the engine's sources and target.
#[async_trait]
pub trait EngineHarness: Send + Sync {
    /// Creates a new database whose content depends on `seed` (two seeds,
    /// two different digests), large enough that a dump outlasts the
    /// adapter's buffers (a few MB), and returns its name.
    async fn create_database(&self, seed: u64) -> Result<String>;

    /// A digest of everything in `database`; `None` when it does not
    /// exist. Equal digests mean equal content.
    async fn digest(&self, database: &str) -> Result<Option<String>>;

    /// Drops `database` if it exists.
    async fn drop_database(&self, database: &str) -> Result<()>;

    /// A source dumping `database` with the harness's credentials.
    fn source(&self, database: &str) -> Box<dyn DumpSource>;

    /// A source dumping `database` with a wrong password, and that
    /// password; `None` without [`EngineCapabilities::credentials`].
    fn source_with_bad_credentials(&self, database: &str) -> Option<(Box<dyn DumpSource>, Secret)>;

    /// A target on the server, restoring into
    /// [`RestoreOptions::database`].
    fn target(&self) -> Box<dyn RestoreTarget>;

    /// Ends the running dump of `database` from outside, as an operator
    /// or the OOM killer would (terminate its server session, kill its
    /// child process).
    async fn kill_dump(&self, database: &str) -> Result<()>;

    /// Ends whatever a restore into `target` that this process abandoned
    /// (its session forgotten, as if the host had died) left running: its
    /// child process, its server sessions.
    async fn kill_restore(&self, target: &str) -> Result<()>;

    /// The secrets that must never show: the harness's passwords.
    fn secrets(&self) -> Vec<Secret>;
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{:08x}", rand::random::<u32>())
}

fn assert_no_secret(what: &str, text: &str, secrets: &[Secret]) {
    for secret in secrets.iter().filter(|s| s.expose().len() >= 4) {
        assert!(
            !text.contains(secret.expose()),
            "a secret shows in {what}: {}",
            text.replace(secret.expose(), "<SECRET>")
        );
    }
}

/// Checks a [`DumpSource`] of the engine against the contract, on the
/// harness's server:
///
/// - a missing database fails [`DumpSource::dump`] itself, with
///   [`Error::DatabaseMissing`];
/// - wrong credentials fail it with [`Error::Authentication`], the
///   password nowhere in the error;
/// - a complete dump ends without error, is not empty and starts with
///   [`SourceInfo::magic`](crate::source::SourceInfo::magic);
/// - a dump killed from outside ([`EngineHarness::kill_dump`]) ends its
///   stream with an error, never as if complete;
/// - the harness's secrets are absent from the source's `Debug`, its
///   info, its errors, and the argv and environment of its children.
///
/// Panics on the first violation.
pub async fn source_conformance(harness: &dyn EngineHarness, caps: EngineCapabilities) {
    let secrets = harness.secrets();
    let missing = unique("conformance_missing");
    match harness.source(&missing).dump(&DumpOptions::default()).await {
        Ok(_) => panic!("dumping the missing database {missing:?} started a stream"),
        Err(e) => {
            assert_no_secret("a missing-database error", &e.to_string(), &secrets);
            assert!(
                matches!(e, Error::DatabaseMissing { .. }),
                "dumping a missing database: expected DatabaseMissing, got {e:?}"
            );
        }
    }

    let database = harness
        .create_database(1)
        .await
        .expect("creating a database");
    if caps.credentials {
        let (bad, password) = harness
            .source_with_bad_credentials(&database)
            .expect("EngineCapabilities::credentials needs source_with_bad_credentials");
        let mut secrets = secrets.clone();
        secrets.push(password);
        assert_no_secret("a source's Debug", &format!("{bad:?}"), &secrets);
        match bad.dump(&DumpOptions::default()).await {
            Ok(_) => panic!("a dump with a wrong password started a stream"),
            Err(e) => {
                assert_no_secret("an authentication error", &format!("{e} {e:?}"), &secrets);
                assert!(
                    matches!(e, Error::Authentication { .. }),
                    "dumping with a wrong password: expected Authentication, got {e:?}"
                );
            }
        }
    }

    let source = harness.source(&database);
    let info = source.info();
    assert_no_secret("a source's Debug", &format!("{source:?}"), &secrets);
    assert_no_secret("a source's info", &format!("{info:?}"), &secrets);
    let mut dump = source
        .dump(&DumpOptions::default())
        .await
        .expect("dumping an existing database");
    assert_no_secret("the dump's versions", &format!("{dump:?}"), &secrets);
    let first = dump
        .stream
        .next()
        .await
        .expect("a dump yields bytes")
        .expect("the first bytes of a dump");
    if caps.children {
        let children = descendant_processes();
        assert!(
            !children.is_empty(),
            "no child process while a dump runs, but EngineCapabilities::children says there is one"
        );
        for (pid, argv, environ) in &children {
            assert_no_secret(&format!("the argv of child {pid}"), argv, &secrets);
            assert_no_secret(
                &format!("the environment of child {pid}"),
                environ,
                &secrets,
            );
        }
    }
    let mut bytes = first.to_vec();
    while let Some(item) = dump.stream.next().await {
        match item {
            Ok(b) => bytes.extend_from_slice(&b),
            Err(e) => panic!("a complete dump ended with an error: {e}"),
        }
    }
    assert!(!bytes.is_empty(), "a complete dump is empty");
    if let Some(magic) = &info.magic {
        assert!(
            bytes.starts_with(magic),
            "a dump does not start with its format's magic {magic:?}"
        );
    }

    // A dump killed from outside ends with an error.
    let mut dump = source
        .dump(&DumpOptions::default())
        .await
        .expect("dumping an existing database");
    dump.stream
        .next()
        .await
        .expect("a dump yields bytes")
        .expect("the first bytes of a dump");
    harness
        .kill_dump(&database)
        .await
        .expect("killing the dump");
    let mut ended_with_error = false;
    while let Some(item) = dump.stream.next().await {
        if let Err(e) = item {
            assert_no_secret("a killed dump's error", &e.to_string(), &secrets);
            ended_with_error = true;
            break;
        }
    }
    assert!(
        ended_with_error,
        "a dump killed midway ended as if it were complete"
    );
    harness.drop_database(&database).await.expect("dropping");
}

/// Checks a [`RestoreTarget`] of the engine against the contract, on the
/// harness's server:
///
/// - a committed restore into a new database reproduces the dumped
///   content;
/// - a restore aborted midway, or dropped without commit or abort, leaves
///   an existing target exactly as it was and creates no new one;
/// - [`RestoreOptions::must_be_new`] refuses an existing target with
///   [`Error::AlreadyExists`], leaving it unchanged;
/// - with [`EngineCapabilities::staging`], what an abandoned restore (the
///   host died) leaves is listed by [`RestoreTarget::leftovers`], kept by
///   [`RestoreTarget::remove_leftovers`] within its grace, and removed
///   once its restore is gone;
/// - the harness's secrets are absent from the target's `Debug` and its
///   errors.
///
/// Panics on the first violation.
pub async fn target_conformance(harness: &dyn EngineHarness, caps: EngineCapabilities) {
    let secrets = harness.secrets();
    let target = harness.target();
    assert_no_secret("a target's Debug", &format!("{target:?}"), &secrets);
    let original = harness.create_database(1).await.expect("creating");
    let expected = harness.digest(&original).await.expect("digest");
    assert!(
        expected.is_some(),
        "digest of a database that exists is None"
    );
    let chunks = full_dump(harness, &original).await;

    // Commit applies.
    let fresh = unique("conformance_new");
    let session = target
        .begin(&RestoreOptions::into_database(&fresh).create(true))
        .await
        .expect("starting a restore into a new database");
    feed(session, &chunks, chunks.len())
        .await
        .expect("feeding a restore")
        .commit()
        .await
        .expect("committing a restore");
    assert_eq!(
        harness.digest(&fresh).await.expect("digest"),
        expected,
        "a committed restore does not reproduce the dumped database"
    );
    harness.drop_database(&fresh).await.expect("dropping");

    // must_be_new refuses an existing database.
    let existing = harness.create_database(2).await.expect("creating");
    let before = harness.digest(&existing).await.expect("digest");
    assert_ne!(before, expected, "two seeds gave the same content");
    let opts = RestoreOptions::into_database(&existing).new_database_only(true);
    let refused = match target.begin(&opts).await {
        Err(e) => Err(e),
        Ok(session) => match feed(session, &chunks, chunks.len()).await {
            Err(e) => Err(e),
            Ok(session) => session.commit().await.map(|_| ()),
        },
    };
    match refused {
        Ok(()) => panic!("a must_be_new restore into an existing database succeeded"),
        Err(e) => {
            assert_no_secret("a restore error", &format!("{e} {e:?}"), &secrets);
            assert!(
                matches!(e, Error::AlreadyExists { .. }),
                "must_be_new into an existing database: expected AlreadyExists, got {e:?}"
            );
        }
    }
    assert_eq!(
        harness.digest(&existing).await.expect("digest"),
        before,
        "a refused must_be_new restore changed the existing database"
    );

    // Aborted and dropped restores change nothing.
    let half = chunks.len().div_ceil(2);
    for (how, abort) in [("aborted", true), ("dropped", false)] {
        for (into, opts) in [
            (
                existing.clone(),
                RestoreOptions::into_database(&existing).clean(true),
            ),
            (
                fresh.clone(),
                RestoreOptions::into_database(&fresh).create(true),
            ),
        ] {
            let session = target.begin(&opts).await.expect("starting a restore");
            let session = feed(session, &chunks, half).await.expect("feeding");
            if abort {
                session.abort().await.expect("aborting a restore");
            } else {
                drop(session);
            }
            let after = harness.digest(&into).await.expect("digest");
            let was = if into == existing { &before } else { &None };
            assert_eq!(
                &after, was,
                "a restore {how} midway changed database {into:?}"
            );
        }
    }

    if caps.staging {
        leftovers_conformance(harness, target.as_ref(), &chunks, caps.settle).await;
    }
    for db in [&original, &existing, &fresh] {
        harness.drop_database(db).await.expect("dropping");
    }
}

/// An abandoned restore's leftover is listed, kept within the grace and
/// removed once its restore is gone.
async fn leftovers_conformance(
    harness: &dyn EngineHarness,
    target: &dyn RestoreTarget,
    chunks: &[Bytes],
    settle: Duration,
) {
    let abandoned = unique("conformance_abandoned");
    let session = target
        .begin(&RestoreOptions::into_database(&abandoned).create(true))
        .await
        .expect("starting a restore");
    let session = feed(session, chunks, chunks.len().div_ceil(2))
        .await
        .expect("feeding");
    // The host dies: nothing of the session's clean-up runs.
    std::mem::forget(session);
    let ours = |found: &[crate::source::Leftover]| {
        found
            .iter()
            .find(|l| l.target.as_deref() == Some(abandoned.as_str()))
            .cloned()
    };
    let found = target.leftovers().await.expect("listing leftovers");
    let leftover = ours(&found).unwrap_or_else(|| {
        panic!("an abandoned restore into {abandoned:?} left nothing listed: {found:?}")
    });
    let report = target
        .remove_leftovers(Duration::from_secs(3600))
        .await
        .expect("removing leftovers");
    assert!(
        !report.removed.iter().any(|l| l.name == leftover.name),
        "a fresh leftover was removed within the grace: {report:?}"
    );
    assert!(
        ours(&target.leftovers().await.expect("listing")).is_some(),
        "a fresh leftover vanished within the grace"
    );
    harness
        .kill_restore(&abandoned)
        .await
        .expect("ending the abandoned restore");
    // The server may take a moment to notice its session ended.
    let started = Instant::now();
    loop {
        let report = target
            .remove_leftovers(Duration::ZERO)
            .await
            .expect("removing leftovers");
        if report.removed.iter().any(|l| l.name == leftover.name)
            || ours(&target.leftovers().await.expect("listing")).is_none()
        {
            break;
        }
        assert!(
            started.elapsed() < settle,
            "the leftover of a dead restore is not removed: {report:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        ours(&target.leftovers().await.expect("listing")).is_none(),
        "a removed leftover is still listed"
    );
    assert_eq!(
        harness.digest(&abandoned).await.expect("digest"),
        None,
        "an abandoned restore created its target"
    );
}

/// The whole dump of `database`, in the chunks the source yielded.
async fn full_dump(harness: &dyn EngineHarness, database: &str) -> Vec<Bytes> {
    let mut dump = harness
        .source(database)
        .dump(&DumpOptions::default())
        .await
        .expect("dumping");
    let mut chunks = Vec::new();
    while let Some(item) = dump.stream.next().await {
        chunks.push(item.expect("a complete dump"));
    }
    assert!(
        chunks.len() >= 2,
        "the harness's database dumps in one chunk: make it larger"
    );
    chunks
}

async fn feed(
    mut session: Box<dyn RestoreSession>,
    chunks: &[Bytes],
    count: usize,
) -> Result<Box<dyn RestoreSession>> {
    for chunk in &chunks[..count] {
        session.write(chunk.clone()).await?;
    }
    Ok(session)
}
