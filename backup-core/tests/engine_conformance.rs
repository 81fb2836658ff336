//! The engine conformance suites against a toy engine: it passes them
//! as written, and each deliberately broken variant (one property
//! violated) makes them fail, so every check can fail.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use backup_core::testing::{
    EngineCapabilities, EngineHarness, pattern, source_conformance, target_conformance,
};
use backup_core::{
    DumpSource, Error, RestoreOptions, RestoreTarget, Result, Secret, source::Candidate,
    source::DumpOptions, source::DumpStream, source::Leftover, source::LeftoverReport,
    source::Removal, source::RestoreReport, source::RestoreSession, source::SourceInfo,
    source::Versions,
};
use bytes::Bytes;
use futures::StreamExt;

const MAGIC: &[u8] = b"TOY1";
const PASSWORD: &str = "toy-password-0123";
const CHUNK: usize = 64 * 1024;

/// The one property a toy engine violates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Break {
    Nothing,
    MissingDatabaseStreams,
    MissingDatabaseWrongError,
    BadPasswordAccepted,
    PasswordInError,
    PasswordInDebug,
    PasswordInArgv,
    NoMagic,
    KilledDumpEndsOk,
    CommitDiscards,
    AbortApplies,
    DropApplies,
    MustBeNewIgnored,
    LeftoverNotListed,
    FreshLeftoverRemoved,
    DeadLeftoverKept,
}

#[derive(Debug)]
struct Staged {
    target: String,
    created: Instant,
    alive: bool,
}

#[derive(Debug, Default)]
struct Server {
    databases: HashMap<String, Vec<u8>>,
    kills: HashMap<String, Arc<AtomicBool>>,
    staging: HashMap<String, Staged>,
}

#[derive(Clone)]
struct Toy {
    server: Arc<Mutex<Server>>,
    broken: Break,
}

impl std::fmt::Debug for Toy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.broken == Break::PasswordInDebug {
            write!(f, "Toy {{ password: {PASSWORD} }}")
        } else {
            write!(f, "Toy {{ password: *** }}")
        }
    }
}

#[derive(Debug)]
struct ToySource {
    toy: Toy,
    database: String,
    password: Secret,
}

#[async_trait]
impl DumpSource for ToySource {
    fn info(&self) -> SourceInfo {
        SourceInfo {
            engine: "toy".into(),
            database: self.database.clone(),
            format: "toy".into(),
            extension: "toy".into(),
            magic: Some(MAGIC.to_vec()),
        }
    }

    async fn dump(&self, _opts: &DumpOptions) -> Result<DumpStream> {
        let broken = self.toy.broken;
        if self.password.expose() != PASSWORD && broken != Break::BadPasswordAccepted {
            let detail = match broken {
                Break::PasswordInError => format!("password {} refused", self.password.expose()),
                _ => "password refused".to_string(),
            };
            return Err(Error::Authentication {
                engine: "toy",
                detail,
            });
        }
        let (content, killed) = {
            let mut server = self.toy.server.lock().unwrap();
            let content = server.databases.get(&self.database).cloned();
            let killed = Arc::new(AtomicBool::new(false));
            server
                .kills
                .insert(self.database.clone(), Arc::clone(&killed));
            (content, killed)
        };
        let content = match (content, broken) {
            (Some(c), _) => c,
            (None, Break::MissingDatabaseStreams) => Vec::new(),
            (None, Break::MissingDatabaseWrongError) => {
                return Err(Error::Dump {
                    engine: "toy",
                    detail: "no such thing".into(),
                });
            }
            (None, _) => {
                return Err(Error::DatabaseMissing {
                    engine: "toy",
                    database: self.database.clone(),
                });
            }
        };
        // A child process, as a tool-based engine runs one.
        let secret_arg = match broken {
            Break::PasswordInArgv => format!("--password={PASSWORD}"),
            _ => "--config=/dev/fd/3".to_string(),
        };
        let child = tokio::process::Command::new("sh")
            .args(["-c", "sleep 60; :", "toy-dump", &secret_arg])
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::io("starting the toy dump", e))?;
        let mut bytes = if broken == Break::NoMagic {
            Vec::new()
        } else {
            MAGIC.to_vec()
        };
        bytes.extend_from_slice(&content);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(1);
        tokio::spawn(async move {
            let _child = child;
            for chunk in bytes.chunks(CHUNK) {
                if killed.load(Ordering::SeqCst) {
                    if broken != Break::KilledDumpEndsOk {
                        let _ = tx
                            .send(Err(Error::Dump {
                                engine: "toy",
                                detail: "killed".into(),
                            }))
                            .await;
                    }
                    return;
                }
                if tx.send(Ok(Bytes::copy_from_slice(chunk))).await.is_err() {
                    return;
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed();
        Ok(DumpStream::new(stream, Versions::default()))
    }
}

#[derive(Debug)]
struct ToyTarget {
    toy: Toy,
}

#[derive(Debug)]
struct ToySession {
    toy: Toy,
    database: String,
    staging: Option<String>,
    clean: bool,
    received: Vec<u8>,
    /// Committed or aborted.
    done: bool,
}

impl ToySession {
    fn apply(&mut self) {
        let mut server = self.toy.server.lock().unwrap();
        let content = self.received.strip_prefix(MAGIC).unwrap_or(&self.received);
        let entry = server.databases.entry(self.database.clone()).or_default();
        if self.clean {
            entry.clear();
        }
        entry.extend_from_slice(content);
    }

    fn finish(&mut self) {
        if let Some(staging) = self.staging.take() {
            self.toy.server.lock().unwrap().staging.remove(&staging);
        }
    }
}

#[async_trait]
impl RestoreSession for ToySession {
    async fn write(&mut self, data: Bytes) -> Result<()> {
        self.received.extend_from_slice(&data);
        if self.toy.broken == Break::AbortApplies {
            // Applies as it goes, like a restore outside a transaction.
            let data = data.strip_prefix(MAGIC).unwrap_or(&data).to_vec();
            let mut server = self.toy.server.lock().unwrap();
            let entry = server.databases.entry(self.database.clone()).or_default();
            if self.clean {
                entry.clear();
                self.clean = false;
            }
            entry.extend_from_slice(&data);
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<RestoreReport> {
        if self.toy.broken != Break::CommitDiscards && self.toy.broken != Break::AbortApplies {
            self.apply();
        }
        self.done = true;
        self.finish();
        Ok(RestoreReport {
            database: self.database.clone(),
            warnings: Vec::new(),
        })
    }

    async fn abort(mut self: Box<Self>) -> Result<()> {
        self.done = true;
        self.finish();
        Ok(())
    }
}

impl Drop for ToySession {
    fn drop(&mut self) {
        if !self.done && self.toy.broken == Break::DropApplies {
            // Commits what it had, like a tool reaching the end of its
            // input when its stdin closes.
            self.apply();
        }
        self.finish();
    }
}

#[async_trait]
impl RestoreTarget for ToyTarget {
    fn engine(&self) -> &str {
        "toy"
    }

    fn accepts_format(&self, format: &str) -> bool {
        format == "toy"
    }

    async fn begin(&self, opts: &RestoreOptions) -> Result<Box<dyn RestoreSession>> {
        let database = opts.database.clone().expect("the suites name the database");
        let mut server = self.toy.server.lock().unwrap();
        let exists = server.databases.contains_key(&database);
        if exists && opts.must_be_new && self.toy.broken != Break::MustBeNewIgnored {
            return Err(Error::AlreadyExists {
                key: format!("toy database {database:?}"),
            });
        }
        let staging = (!exists && opts.create).then(|| {
            let name = format!("{database}__restore_{:08x}", rand::random::<u32>());
            server.staging.insert(
                name.clone(),
                Staged {
                    target: database.clone(),
                    created: Instant::now(),
                    alive: true,
                },
            );
            name
        });
        Ok(Box::new(ToySession {
            toy: self.toy.clone(),
            database,
            staging,
            clean: opts.clean,
            received: Vec::new(),
            done: false,
        }))
    }

    async fn leftovers(&self) -> Result<Vec<Leftover>> {
        if self.toy.broken == Break::LeftoverNotListed {
            return Ok(Vec::new());
        }
        let server = self.toy.server.lock().unwrap();
        Ok(server
            .staging
            .iter()
            .map(|(name, s)| Leftover::new(name, Some(s.target.clone()), Some(s.created.elapsed())))
            .collect())
    }

    async fn remove_leftovers(&self, older_than: Duration) -> Result<LeftoverReport> {
        if self.toy.broken == Break::DeadLeftoverKept {
            return Ok(LeftoverReport::default());
        }
        let found: Vec<Candidate> = self
            .leftovers()
            .await?
            .into_iter()
            .map(Candidate::Marked)
            .collect();
        let older_than = match self.toy.broken {
            Break::FreshLeftoverRemoved => Duration::ZERO,
            _ => older_than,
        };
        let server = &self.toy.server;
        let broken = self.toy.broken;
        Ok(
            LeftoverReport::apply(found, older_than, None, |l| async move {
                let mut server = server.lock().unwrap();
                let alive = server.staging.get(&l.name).map(|s| s.alive);
                match alive {
                    None => Removal::Vanished,
                    Some(true) if broken != Break::FreshLeftoverRemoved => {
                        Removal::Refused("in use".into())
                    }
                    Some(_) => {
                        server.staging.remove(&l.name);
                        Removal::Removed
                    }
                }
            })
            .await,
        )
    }
}

#[async_trait]
impl EngineHarness for Toy {
    async fn create_database(&self, seed: u64) -> Result<String> {
        let name = format!("toy_{:08x}", rand::random::<u32>());
        self.server
            .lock()
            .unwrap()
            .databases
            .insert(name.clone(), pattern(5 * CHUNK + 7, seed));
        Ok(name)
    }

    async fn digest(&self, database: &str) -> Result<Option<String>> {
        Ok(self
            .server
            .lock()
            .unwrap()
            .databases
            .get(database)
            .map(|c| {
                let mut h = DefaultHasher::new();
                c.hash(&mut h);
                format!("{:016x}", h.finish())
            }))
    }

    async fn drop_database(&self, database: &str) -> Result<()> {
        self.server.lock().unwrap().databases.remove(database);
        Ok(())
    }

    fn source(&self, database: &str) -> Box<dyn DumpSource> {
        Box::new(ToySource {
            toy: self.clone(),
            database: database.into(),
            password: Secret::new(PASSWORD),
        })
    }

    fn source_with_bad_credentials(&self, database: &str) -> Option<(Box<dyn DumpSource>, Secret)> {
        let wrong = "toy-wrong-password-9876".to_string();
        Some((
            Box::new(ToySource {
                toy: self.clone(),
                database: database.into(),
                password: Secret::new(wrong.clone()),
            }),
            Secret::new(wrong),
        ))
    }

    fn target(&self) -> Box<dyn RestoreTarget> {
        Box::new(ToyTarget { toy: self.clone() })
    }

    async fn kill_dump(&self, database: &str) -> Result<()> {
        if let Some(flag) = self.server.lock().unwrap().kills.get(database) {
            flag.store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    async fn kill_restore(&self, target: &str) -> Result<()> {
        for staged in self.server.lock().unwrap().staging.values_mut() {
            if staged.target == target {
                staged.alive = false;
            }
        }
        Ok(())
    }

    fn secrets(&self) -> Vec<Secret> {
        vec![Secret::new(PASSWORD)]
    }
}

fn caps() -> EngineCapabilities {
    EngineCapabilities::default()
        .credentials(true)
        .children(true)
        .staging(true)
        .settle(Duration::from_secs(2))
}

fn toy(broken: Break) -> Arc<Toy> {
    Arc::new(Toy {
        server: Arc::default(),
        broken,
    })
}

/// Whether the suite `which` panics against a toy broken as said.
async fn fails(broken: Break, which: &'static str) -> bool {
    let toy = toy(broken);
    let run = tokio::spawn(async move {
        match which {
            "source" => source_conformance(toy.as_ref(), caps()).await,
            _ => target_conformance(toy.as_ref(), caps()).await,
        }
    });
    match run.await {
        Ok(()) => false,
        Err(e) => e.is_panic(),
    }
}

/// One test, not three: the suites look at every child process of the
/// test binary, so a broken toy's children must not overlap a good one's.
#[tokio::test]
async fn the_suites_pass_a_conforming_engine_and_fail_each_violation() {
    let toy = toy(Break::Nothing);
    source_conformance(toy.as_ref(), caps()).await;
    target_conformance(toy.as_ref(), caps()).await;
    for broken in [
        Break::MissingDatabaseStreams,
        Break::MissingDatabaseWrongError,
        Break::BadPasswordAccepted,
        Break::PasswordInError,
        Break::PasswordInDebug,
        Break::PasswordInArgv,
        Break::NoMagic,
        Break::KilledDumpEndsOk,
    ] {
        assert!(
            fails(broken, "source").await,
            "the source suite passed an engine with {broken:?}"
        );
    }
    for broken in [
        Break::CommitDiscards,
        Break::AbortApplies,
        Break::DropApplies,
        Break::MustBeNewIgnored,
        Break::LeftoverNotListed,
        Break::FreshLeftoverRemoved,
        Break::DeadLeftoverKept,
        Break::PasswordInDebug,
    ] {
        assert!(
            fails(broken, "target").await,
            "the target suite passed an engine with {broken:?}"
        );
    }
}
