//! [`World`]: the servers, sources, stores and bookkeeping of a run, and
//! the checks every round ends with.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use backup_mongo::TestServer as MongoServer;
use backup_postgres::TestServer as PgServer;
use backup_store_s3::S3TestServer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use crate::support::cli::Cli;
use crate::support::{files, secrets};

use super::figures::Figures;
use super::store::{self, StoreUnderTest};
use super::victim::{self, KillMode, Outcome};
use super::{Config, IDENTITY_VAR, Op, StoreId, TIME_TRAVEL};

/// What a backup holds: per table (PostgreSQL: rows and an ordered md5)
/// or per collection (MongoDB: documents and a CRC-64 in `_id` order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Digest {
    /// `TestServer::fingerprint`.
    Pg(Vec<(String, u64, String)>),
    /// `TestServer::summary`.
    Mongo(BTreeMap<String, (u64, u64)>),
}

/// Everything a run works with.
pub(crate) struct World {
    /// The run's configuration.
    pub(crate) cfg: Config,
    /// The seeded random source of every choice.
    pub(crate) rng: StdRng,
    /// PostgreSQL 15 or 18 as the config says (throwaway cluster, or
    /// `BACKUP_TEST_PG_URL` / `BACKUP_TEST_PG18_*`).
    pub(crate) pg: &'static PgServer,
    /// The directory of `pg`'s tools when it names one (18), given to
    /// every `--pg` command as `--pg-bin`.
    pg_bin: Option<PathBuf>,
    /// SecantusDB (or `MONGODB_URI`).
    pub(crate) mongo: &'static MongoServer,
    s3: S3TestServer,
    scratch: tempfile::TempDir,
    /// `backupctl` with every secret in its environment.
    pub(crate) cli: Cli,
    /// The secrets no file may ever contain.
    secrets: Vec<String>,
    /// The age recipient of encrypted backups.
    pub(crate) recipient: String,
    mongo_user: String,
    /// The PostgreSQL database the backup rounds dump.
    pub(crate) pg_source: String,
    /// Its content now (the source is only written between rounds).
    pub(crate) pg_digest: Digest,
    /// A small PostgreSQL database for the many backups of the gc, prune
    /// and sweep rounds.
    pub(crate) small_source: String,
    /// Its content now.
    pub(crate) small_digest: Digest,
    /// The MongoDB source.
    pub(crate) mongo_source: String,
    /// The stores.
    pub(crate) stores: BTreeMap<StoreId, StoreUnderTest>,
    /// The content of every backup taken, by id.
    pub(crate) digests: HashMap<String, Digest>,
    /// Typical durations measured once per run, by operation.
    pub(crate) typical: HashMap<String, Duration>,
    /// What the run counted.
    pub(crate) figures: Figures,
    seq: u32,
    lap: std::time::Instant,
    /// When the run started, and what `/tmp` held then (not the run's).
    started: SystemTime,
    tmp_before: BTreeSet<std::ffi::OsString>,
}

impl World {
    /// Starts (or finds) the servers and fills the sources.
    pub(crate) async fn start(cfg: Config) -> World {
        let started = SystemTime::now();
        let tmp_before = std::fs::read_dir("/tmp")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        let pg = match cfg.pg_major {
            15 => tokio::task::spawn_blocking(PgServer::shared).await,
            18 => tokio::task::spawn_blocking(PgServer::shared_pg18).await,
            other => panic!("no PostgreSQL {other} server for the crash harness"),
        }
        .expect("PostgreSQL");
        assert_eq!(
            pg.major().await.expect("server version"),
            cfg.pg_major,
            "the PostgreSQL server of the run"
        );
        let pg_bin = pg.tools().bin_dir().map(PathBuf::from);
        let mongo = tokio::task::spawn_blocking(MongoServer::shared)
            .await
            .expect("MongoDB stand-in");
        let s3 = tokio::task::spawn_blocking(S3TestServer::start)
            .await
            .expect("s3s-fs")
            .unwrap_or_else(|e| panic!("the crash harness needs a local s3s-fs: {e}"));
        let scratch = tempfile::Builder::new()
            .prefix("crash-harness-")
            .tempdir()
            .expect("scratch directory");
        let (_, recipient, age_secret) = backup_core::crypto::AgeIdentities::generate();

        // A MongoDB user, so the victim authenticates with MONGODB_PASSWORD.
        let mongo_user = format!("crash_{:08x}", rand::random::<u32>());
        let mongo_password = format!("mpw-{:016x}", rand::random::<u64>());
        mongo
            .client()
            .await
            .expect("MongoDB client")
            .database("admin")
            .run_command(bson::doc! {
                "createUser": &mongo_user,
                "pwd": &mongo_password,
                "roles": [{ "role": "root", "db": "admin" }],
            })
            .await
            .expect("create the MongoDB user");

        let pg_password = pg
            .connection("postgres")
            .password()
            .expect("the test server has a password")
            .expose()
            .to_string();
        let s3_secret = s3.secret_access_key().expose().to_string();
        let home = scratch.path().join("cli-home");
        let tmp = scratch.path().join("cli-tmp");
        for d in [&home, &tmp] {
            std::fs::create_dir_all(d).expect("cli directories");
        }
        let cli = Cli::new()
            .env("HOME", &home)
            .env("TMPDIR", &tmp)
            .env("PGPASSWORD", &pg_password)
            .env("MONGODB_PASSWORD", &mongo_password)
            .env("AWS_ACCESS_KEY_ID", s3.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", &s3_secret)
            .env("AWS_ENDPOINT_URL", s3.endpoint())
            .env(IDENTITY_VAR, age_secret.expose());

        let prefix = format!("crash-{:08x}", rand::random::<u32>());
        let data = s3.data_dir().expect("a local s3s-fs").to_path_buf();
        let mut stores = BTreeMap::new();
        for (id, dir) in [
            (StoreId::Fs, "fs"),
            (StoreId::Mongo, "mongo"),
            (StoreId::Maint, "maint"),
        ] {
            let root = scratch.path().join(dir);
            stores.insert(
                id,
                StoreUnderTest {
                    spec: root.to_str().expect("UTF-8 path").to_string(),
                    root,
                    uploads: None,
                },
            );
        }
        stores.insert(
            StoreId::S3,
            StoreUnderTest {
                spec: format!("s3://{}/{prefix}", s3.bucket()),
                root: data.join(s3.bucket()).join(&prefix),
                uploads: Some(data),
            },
        );

        let pg_source = pg.create_database("crash_src").await.expect("source db");
        if cfg.pgbench_scale > 0 {
            pg.pgbench_init(&pg_source, cfg.pgbench_scale)
                .await
                .expect("pgbench -i");
        }
        pg.psql(
            &pg_source,
            &format!(
                "CREATE TABLE crash_noise AS SELECT g AS id, encode(decode(md5(random()::text) || md5(random()::text) || md5(random()::text) || md5(random()::text), 'hex'), 'base64') AS t FROM generate_series(1, {}) g; ALTER TABLE crash_noise ADD PRIMARY KEY (id); CREATE TABLE crash_a AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g; CREATE TABLE crash_b AS SELECT * FROM crash_a; CREATE TABLE crash_c AS SELECT * FROM crash_a",
                cfg.noise_rows
            ),
        )
        .await
        .expect("noise table");
        let small_source = pg.create_database("crash_small").await.expect("small db");
        pg.psql(
            &small_source,
            "CREATE TABLE items AS SELECT g AS id, md5(g::text) || repeat('x', 200) AS t FROM generate_series(1, 3000) g; ALTER TABLE items ADD PRIMARY KEY (id)",
        )
        .await
        .expect("small table");
        let mongo_source = MongoServer::unique_name("crash_mongo");
        mongo
            .create_sample(&mongo_source, cfg.mongo_docs)
            .await
            .expect("MongoDB sample");

        let pg_digest = Digest::Pg(pg.fingerprint(&pg_source).await.expect("fingerprint"));
        let small_digest = Digest::Pg(pg.fingerprint(&small_source).await.expect("fingerprint"));
        // Every store exists before the first victim runs, as `backupctl
        // init` makes it: a backup killed before it could create its store
        // must still leave one that list, sweep and gc accept.
        for store in stores.values() {
            cli.ok(&["init", "--store", &store.spec]);
        }
        let seed = cfg.seed;
        World {
            rng: StdRng::seed_from_u64(seed),
            cfg,
            pg,
            pg_bin,
            mongo,
            s3,
            scratch,
            cli,
            secrets: vec![
                pg_password,
                mongo_password,
                s3_secret,
                age_secret.expose().to_string(),
            ],
            recipient,
            mongo_user,
            pg_source,
            pg_digest,
            small_source,
            small_digest,
            mongo_source,
            stores,
            digests: HashMap::new(),
            typical: HashMap::new(),
            figures: Figures {
                seed,
                ..Figures::default()
            },
            seq: 0,
            lap: std::time::Instant::now(),
            started,
            tmp_before,
        }
    }

    /// Logs how long the step since the previous lap took.
    pub(crate) fn lap(&mut self, step: &str) {
        let now = std::time::Instant::now();
        eprintln!("    {step}: {} ms", (now - self.lap).as_millis());
        self.lap = now;
    }

    /// Runs every round of the plan.
    pub(crate) async fn run(&mut self) {
        let plan = self.cfg.plan.clone();
        for (i, op) in plan.iter().enumerate() {
            let since = SystemTime::now();
            self.lap = std::time::Instant::now();
            eprintln!(
                "crash harness (seed {}): round {}/{}: {}",
                self.cfg.seed,
                i + 1,
                plan.len(),
                op.name()
            );
            match *op {
                Op::Backup {
                    store,
                    incremental,
                    encrypted,
                } => super::backups::round(self, store, incremental, encrypted).await,
                Op::RestorePgCreate => super::restores::pg_create(self).await,
                Op::RestorePgClean => super::restores::pg_clean(self).await,
                Op::RestoreMongoNew => super::restores::mongo_new(self).await,
                Op::RestoreMongoClean => super::restores::mongo_clean(self).await,
                Op::Gc => super::maintenance::gc(self).await,
                Op::Prune => super::maintenance::prune(self).await,
                Op::Sweep => super::maintenance::sweep(self).await,
            }
            self.scan_secrets(since, false);
            self.lap("scan for secrets");
        }
    }

    /// Scans everything the run wrote for secrets, then drops what it
    /// created on the servers.
    pub(crate) async fn finish(self) -> Figures {
        self.scan_secrets(self.started, true);
        self.pg.drop_database(&self.pg_source).await.expect("drop");
        self.pg
            .drop_database(&self.small_source)
            .await
            .expect("drop");
        self.mongo
            .drop_database(&self.mongo_source)
            .await
            .expect("drop");
        self.figures
    }

    // --- naming and random choices -----------------------------------

    /// A name unique in this run.
    pub(crate) fn unique(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}_{}_{:04x}", self.seq, self.rng.random::<u16>())
    }

    /// A fresh directory for one victim (its TMPDIR, HOME and output).
    pub(crate) fn victim_dir(&mut self) -> PathBuf {
        self.seq += 1;
        let dir = self.scratch.path().join(format!("victim-{}", self.seq));
        std::fs::create_dir_all(&dir).expect("victim directory");
        dir
    }

    /// A scratch path that does not exist yet.
    pub(crate) fn scratch_path(&mut self, name: &str) -> PathBuf {
        self.seq += 1;
        self.scratch.path().join(format!("{name}-{}", self.seq))
    }

    /// A kill delay drawn uniformly over `[0, typical]`.
    /// Runs `backupctl args...` and kills it after a random delay up to
    /// about `typical`, in a random [`KillMode`] (see
    /// [`victim::run_and_kill`]); then [`victim_ended`](Self::victim_ended).
    pub(crate) fn kill_run(&mut self, what: &str, typical: Duration, args: &[&str]) -> Outcome {
        let delay = self.pick_delay(typical);
        let mode = self.pick_mode();
        let dir = self.victim_dir();
        let ports = self.server_ports();
        let outcome = victim::run_and_kill(self.command(args), &dir, delay, mode, &ports);
        self.victim_ended(what, &outcome);
        outcome
    }

    /// Reports how a victim ended, notes the lap, and asserts that it was
    /// killed or succeeded (`what` names it in the message).
    pub(crate) fn victim_ended(&mut self, what: &str, outcome: &Outcome) {
        eprintln!(
            "  killed {} after {:?} ({:?}, io {:?}): {}",
            outcome.killed,
            outcome.delay,
            outcome.mode,
            outcome.io,
            outcome.stderr.trim()
        );
        self.lap("victim");
        assert!(
            outcome.killed || outcome.success,
            "{what} failed without a kill: {}",
            outcome.stderr
        );
    }

    pub(crate) fn pick_delay(&mut self, typical: Duration) -> Duration {
        let ms = u64::try_from(typical.as_millis()).expect("a sane duration");
        Duration::from_millis(self.rng.random_range(0..=ms))
    }

    /// The victim alone or its whole group, half and half.
    pub(crate) fn pick_mode(&mut self) -> KillMode {
        if self.rng.random_bool(0.5) {
            KillMode::Victim
        } else {
            KillMode::Group
        }
    }

    // --- running backupctl -----------------------------------------------

    /// `args` plus the identity flag (every command may need to decrypt)
    /// and, for a `--pg` command, the server's tools when it names them.
    pub(crate) fn args(&self, args: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        out.extend(["--identity-env".to_string(), IDENTITY_VAR.to_string()]);
        if let Some(bin) = self.pg_bin.as_ref().filter(|_| args.contains(&"--pg")) {
            out.extend(["--pg-bin".to_string(), bin.display().to_string()]);
        }
        out
    }

    /// `backupctl args...` (with the identity), not started.
    pub(crate) fn command(&self, args: &[&str]) -> std::process::Command {
        let args = self.args(args);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli.command(&refs)
    }

    /// `backupctl args... --json`, which must succeed.
    pub(crate) fn ctl_json(&self, args: &[&str]) -> Value {
        let args = self.args(args);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli.json(&refs)
    }

    /// `backupctl args...`, which must succeed.
    pub(crate) fn ctl_ok(&self, args: &[&str]) -> String {
        let args = self.args(args);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.cli.ok(&refs)
    }

    /// The loopback ports of the servers victims talk to (those whose
    /// address names no port are left out).
    pub(crate) fn server_ports(&self) -> Vec<u16> {
        fn port_of(url: &str) -> Option<u16> {
            let rest = url.split_once("://")?.1;
            let authority = rest.split(['/', '?']).next()?;
            let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            host_port.rsplit_once(':')?.1.parse().ok()
        }
        let mut ports = vec![self.pg.connection("postgres").port()];
        ports.extend(port_of(self.mongo.uri().expose()));
        ports.extend(port_of(self.s3.endpoint()));
        ports
    }

    /// The `--store` argument of `id`.
    pub(crate) fn spec(&self, id: StoreId) -> String {
        self.stores[&id].spec.clone()
    }

    /// A `postgres://` URL for `database` without the password (the
    /// victim has it in `PGPASSWORD`).
    pub(crate) fn pg_url(&self, database: &str) -> String {
        let conn = self.pg.connection(database);
        format!(
            "postgres://{}@{}:{}/{database}",
            conn.user(),
            conn.host(),
            conn.port()
        )
    }

    /// A `mongodb://` URI for `database` naming the harness's user,
    /// without its password (the victim has it in `MONGODB_PASSWORD`).
    pub(crate) fn mongo_uri(&self, database: &str) -> String {
        let uri = self.mongo.uri_for(database).expose().to_string();
        let (scheme, rest) = uri.split_once("://").expect("a mongodb:// URI");
        let rest = if rest.contains('?') {
            format!("{rest}&authSource=admin")
        } else {
            format!("{rest}?authSource=admin")
        };
        format!("{scheme}://{}@{rest}", self.mongo_user)
    }

    /// The arguments of a PostgreSQL backup.
    pub(crate) fn pg_backup_args(
        &self,
        store: StoreId,
        database: &str,
        incremental: bool,
        encrypted: bool,
    ) -> Vec<String> {
        let mut args = vec![
            "backup".to_string(),
            "--pg".into(),
            self.pg_url(database),
            "--store".into(),
            self.spec(store),
            "--source-id".into(),
            database.split('_').take(2).collect::<Vec<_>>().join("_"),
            "--json".into(),
        ];
        if incremental {
            args.extend(["--type".into(), "incremental".into()]);
        }
        if encrypted {
            args.extend(["--encrypt-to".into(), self.recipient.clone()]);
        }
        args
    }

    // --- sources -------------------------------------------------------

    /// Changes every table of the PostgreSQL source a little (so backups
    /// differ table by table, and a half-done restore shows) and records
    /// its new content.
    pub(crate) async fn touch_pg_source(&mut self) {
        let row = self.rng.random_range(1..=self.cfg.noise_rows);
        let small = self.rng.random_range(1..=1000);
        let mut sql = format!(
            "UPDATE crash_noise SET t = md5(random()::text) WHERE id = {row}; UPDATE crash_a SET v = md5(random()::text) WHERE id = {small}; UPDATE crash_b SET v = md5(random()::text) WHERE id = {small}; UPDATE crash_c SET v = md5(random()::text) WHERE id = {small}"
        );
        if self.cfg.pgbench_scale > 0 {
            sql.push_str("; UPDATE pgbench_branches SET bbalance = bbalance + 1");
        }
        self.pg
            .psql(&self.pg_source, &sql)
            .await
            .expect("touch the source");
        self.pg_digest = Digest::Pg(
            self.pg
                .fingerprint(&self.pg_source)
                .await
                .expect("fingerprint"),
        );
        self.lap("touch source");
    }

    /// Changes the small source and records its new content.
    pub(crate) async fn touch_small_source(&mut self) {
        let row = self.rng.random_range(1..=3000);
        self.pg
            .psql(
                &self.small_source,
                &format!(
                    "UPDATE items SET t = md5(random()::text) || repeat('y', 150) WHERE id = {row}"
                ),
            )
            .await
            .expect("touch the small source");
        self.small_digest = Digest::Pg(
            self.pg
                .fingerprint(&self.small_source)
                .await
                .expect("fingerprint"),
        );
    }

    /// Changes the MongoDB source (one more document) and returns its
    /// content.
    pub(crate) async fn touch_mongo_source(&mut self) -> Digest {
        let n = self.rng.random::<u32>();
        self.mongo
            .client()
            .await
            .expect("client")
            .database(&self.mongo_source)
            .collection::<bson::Document>("items")
            .insert_one(bson::doc! { "crash": i64::from(n), "note": format!("touch {n}") })
            .await
            .expect("touch the MongoDB source");
        self.mongo_digest().await
    }

    /// The MongoDB source's content.
    pub(crate) async fn mongo_digest(&self) -> Digest {
        Digest::Mongo(
            self.mongo
                .summary(&self.mongo_source)
                .await
                .expect("summary"),
        )
    }

    /// The content of `database` in the same form as `like`.
    pub(crate) async fn content(&self, like: &Digest, database: &str) -> Digest {
        match like {
            Digest::Pg(_) => Digest::Pg(self.pg.fingerprint(database).await.expect("fingerprint")),
            Digest::Mongo(_) => Digest::Mongo(self.mongo.summary(database).await.expect("summary")),
        }
    }

    /// Whether a PostgreSQL database exists.
    pub(crate) async fn pg_exists(&self, database: &str) -> bool {
        self.pg
            .database_exists(database)
            .await
            .expect("query pg_database")
    }

    // --- stores ----------------------------------------------------------

    /// `backupctl list --json` of a store.
    pub(crate) fn list(&self, id: StoreId) -> Vec<Value> {
        let spec = self.spec(id);
        match self.ctl_json(&["list", "--store", &spec, "--json"]) {
            Value::Array(v) => v,
            other => panic!("list printed {other}"),
        }
    }

    /// Ids listed in a store.
    pub(crate) fn ids(&self, id: StoreId) -> BTreeSet<String> {
        self.list(id)
            .iter()
            .filter_map(|m| m["id"].as_str().map(str::to_string))
            .collect()
    }

    /// Records the content of a backup just taken (its manifest printed by
    /// `backup --json`).
    pub(crate) fn record(&mut self, manifest: &str, digest: Digest) -> String {
        let m: Value = serde_json::from_str(manifest)
            .unwrap_or_else(|e| panic!("backup printed no manifest ({e}): {manifest}"));
        let id = m["id"].as_str().expect("manifest id").to_string();
        self.digests.insert(id.clone(), digest);
        id
    }

    /// Every listed backup of a store is one the harness knows the content
    /// of, and `backupctl verify` accepts it.
    pub(crate) fn verify_all(&mut self, id: StoreId) -> Vec<Value> {
        let spec = self.spec(id);
        let listed = self.list(id);
        for m in &listed {
            let backup = m["id"].as_str().expect("id");
            assert!(
                self.digests.contains_key(backup),
                "store {spec} lists a backup nobody took: {m}"
            );
            let v = self.ctl_json(&["verify", backup, "--store", &spec, "--json"]);
            assert_eq!(v["verified"], true, "{v}");
            self.figures.verified += 1;
        }
        self.lap("verify all");
        listed
    }

    /// Counts what a kill left in a store (before any sweep), by kind.
    pub(crate) fn count_leftovers(&mut self, id: StoreId) -> usize {
        let listed = self.list(id);
        let store = &self.stores[&id];
        let left = store::leftovers(&store.files(), &listed);
        let uploads = store.upload_leftovers().len();
        for object in left.values() {
            self.figures.leftover(store::kind_name(object), 1);
        }
        left.len() + uploads
    }

    /// Lets time pass (moves every file of the store three days into the
    /// past: see the crate docs) and checks that `sweep`, then `gc`, leave
    /// only committed backups, their chunks and run records, and that
    /// `check` finds every backup intact and nothing left over.
    pub(crate) fn settle(&mut self, id: StoreId) {
        let spec = self.spec(id);
        files::backdate(&self.stores[&id].root, TIME_TRAVEL);
        let sweep = self.ctl_json(&["sweep", "--store", &spec, "--grace", "0s", "--json"]);
        for c in sweep["chunk_stores"].as_array().into_iter().flatten() {
            assert!(
                c["skipped"].is_null(),
                "sweep backed off with nothing running: {sweep}"
            );
        }
        assert!(
            sweep["in_progress"].as_array().is_none_or(Vec::is_empty)
                && sweep["too_recent"].as_array().is_none_or(Vec::is_empty)
                && sweep["temporary_too_recent"]
                    .as_array()
                    .is_none_or(Vec::is_empty),
            "after the grace, sweep kept leftovers: {sweep}"
        );
        let gc = self.ctl_json(&["gc", "--store", &spec, "--grace", "0s", "--json"]);
        for r in gc.as_array().expect("gc reports") {
            assert!(
                r["skipped"].is_null(),
                "gc backed off with nothing running: {r}"
            );
            assert_eq!(r["missing_chunks"], 0, "gc found missing chunks: {r}");
            for field in ["dangling_indexes", "unreadable_indexes", "young_packs"] {
                assert!(
                    r[field].as_array().is_none_or(Vec::is_empty),
                    "gc: {field}: {r}"
                );
            }
        }
        let again = self.ctl_json(&[
            "gc",
            "--store",
            &spec,
            "--grace",
            "0s",
            "--dry-run",
            "--json",
        ]);
        for r in again.as_array().expect("gc reports") {
            for field in ["deleted_packs", "repacked_packs", "orphaned_packs"] {
                assert!(
                    r[field].as_array().is_none_or(Vec::is_empty),
                    "a second gc would still remove {field}: {r}"
                );
            }
        }
        let check = self.ctl_json(&["check", "--store", &spec, "--json"]);
        for field in [
            "missing_chunks",
            "corrupt_chunks",
            "corrupt_objects",
            "damaged_backups",
            "dangling_indexes",
            "orphaned_packs",
            "orphaned_artifacts",
            "in_progress",
            "stale_markers",
            "temporary_objects",
        ] {
            assert!(
                check[field].as_array().is_some_and(Vec::is_empty),
                "check after sweep and gc: {field} not empty: {check}"
            );
        }
        assert_eq!(check["unverified_chunks"], 0, "{check}");
        self.figures.checks += 1;
        let listed = self.list(id);
        let store = &self.stores[&id];
        let left = store::leftovers(&store.files(), &listed);
        assert!(
            left.is_empty(),
            "after sweep and gc the store {spec} still holds more than committed backups, their chunks and run records: {left:?}"
        );
        // Parts of multipart uploads killed with their process stay until a
        // bucket lifecycle rule removes them (documented in S3Store); count
        // them, then remove them as that rule would.
        for path in store.upload_leftovers() {
            self.figures.s3_upload_leftovers += 1;
            let _ = std::fs::remove_file(path);
        }
        self.lap("settle (sweep, gc, check)");
    }

    /// Restores backup `backup` of store `id` into a new database and
    /// compares the content with the source's at backup time.
    pub(crate) async fn restore_and_compare(&mut self, id: StoreId, backup: &str) {
        let digest = self.digests[backup].clone();
        let spec = self.spec(id);
        match &digest {
            Digest::Pg(_) => {
                let target = self.unique("crash_chk");
                let url = self.pg_url(&target);
                self.ctl_ok(&[
                    "restore", backup, "--store", &spec, "--pg", &url, "--create",
                ]);
                assert_eq!(
                    self.content(&digest, &target).await,
                    digest,
                    "backup {backup} restored into {target} differs from its source"
                );
                self.pg.drop_database(&target).await.expect("drop");
            }
            Digest::Mongo(_) => {
                let target = self.unique("crash_mchk");
                let uri = self.mongo_uri("admin");
                self.ctl_ok(&[
                    "restore",
                    backup,
                    "--store",
                    &spec,
                    "--mongo",
                    &uri,
                    "--target-db",
                    &target,
                ]);
                assert_eq!(
                    self.content(&digest, &target).await,
                    digest,
                    "backup {backup} restored into {target} differs from its source"
                );
                self.mongo.drop_database(&target).await.expect("drop");
            }
        }
        self.figures.restores_compared += 1;
        self.lap("restore and compare");
    }

    /// Deletes the oldest backups of a store beyond `keep` (the next
    /// settle collects their chunks).
    pub(crate) fn housekeep(&mut self, id: StoreId, keep: usize) {
        let spec = self.spec(id);
        for m in self.list(id).iter().skip(keep) {
            let backup = m["id"].as_str().expect("id");
            self.ctl_ok(&["delete", backup, "--store", &spec]);
        }
    }

    /// No file written since `since` holds a secret, and no libpq password
    /// file exists: in the scratch directory (victims' `TMPDIR` and
    /// `HOME`, the stores) and in whatever appeared in `/tmp` since the run
    /// started. The servers' data directories (PostgreSQL, SecantusDB,
    /// `s3s-fs`, all below `/tmp`) are large and rewritten all the time:
    /// they are scanned once, at the end of the run (`everything`).
    pub(crate) fn scan_secrets(&self, since: SystemTime, everything: bool) {
        let tmp = PathBuf::from("/tmp");
        let mut roots: Vec<PathBuf> = vec![self.scratch.path().to_path_buf()];
        let env_tmp = std::env::temp_dir();
        if env_tmp != tmp {
            roots.push(env_tmp);
        }
        for entry in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let path = entry.path();
            let server = ["backup-pg-", "backup-secantus-", "backup-s3-"]
                .iter()
                .any(|p| name.to_string_lossy().starts_with(p));
            if self.tmp_before.contains(&name)
                || path.starts_with(self.scratch.path())
                || (server && !everything)
            {
                continue;
            }
            roots.push(path);
        }
        let mut candidates: BTreeSet<PathBuf> = BTreeSet::new();
        for root in &roots {
            if root.is_file() {
                if std::fs::metadata(root)
                    .and_then(|m| m.modified())
                    .is_ok_and(|m| m >= since)
                {
                    candidates.insert(root.clone());
                }
                continue;
            }
            candidates.extend(files::modified_since(&[root.as_path()], since));
        }
        let candidates: Vec<PathBuf> = candidates.into_iter().collect();
        let needles: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        let leaked = secrets::files_containing(&candidates, &needles);
        assert!(
            leaked.is_empty(),
            "files written during the run contain a secret: {leaked:?}"
        );
        let pgpass: Vec<&PathBuf> = candidates
            .iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("pgpass"))
            })
            .collect();
        assert!(pgpass.is_empty(), "password files on disk: {pgpass:?}");
    }
}
