//! Secret hygiene of the PostgreSQL adapter (issue #10): what its child
//! processes (psql, pg_dump, pg_restore) can see, what a `kill -9` leaves
//! behind, and a `restore --create` killed halfway.
//!
//! The library runs in a helper process (this test binary started again
//! with `SECRETS_HELPER=<mode>`), whose environment holds decoy secrets
//! the way a daemon's does: an S3 secret key, an API token, an age
//! identity, a `PGPASSWORD` of another value and the variable the real
//! password was read from. The test reads `/proc/<pid>/environ` and
//! `cmdline` of the helper's children while they run.
//!
//! Every test runs on PostgreSQL 15 and 18 (`<test>::postgres_15`,
//! `<test>::postgres_18`, see `backup_postgres::each_major`); the helper
//! gets the tools of the server's version in `HELPER_PG_BIN`.

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use backup_core::prelude::*;
use backup_core::testing::{HelperProcess, read_all, run_helper, write_from_reader};
use backup_core::{memory::InMemoryStore, source::DumpOptions};
use backup_postgres::{PgConnection, PgTools, PostgresSource, PostgresTarget, TestServer};
use tokio::sync::OnceCell;

mod secrets_support;
use secrets_support::{
    assert_child_is_clean, files_containing, forbidden, url_encode, wait_for_descendant,
};

/// A password with every character a password file must escape, and the
/// URL and shell metacharacters.
const HOSTILE_PASSWORD: &str = r"p:a\ss/w?rd@x#%&' *z";

/// Held by the tests creating databases while another drops staging
/// databases with no grace period.
static ZERO_GRACE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Where `server`'s values live in the per-version statics below.
async fn slot(server: &TestServer) -> usize {
    usize::from(server.major().await.unwrap() >= 18)
}

/// A source of `conn` with `server`'s tools.
fn pg_source(server: &TestServer, conn: PgConnection) -> PostgresSource {
    PostgresSource::new(conn).with_tools(server.tools())
}

/// A target connected as `conn` with `server`'s tools.
fn pg_target(server: &TestServer, conn: PgConnection) -> PostgresTarget {
    PostgresTarget::new(conn).with_tools(server.tools())
}

/// A login role with [`HOSTILE_PASSWORD`] on `server`, created once.
async fn hostile_role(server: &TestServer) -> PgConnection {
    static ROLE: [OnceCell<String>; 2] = [const { OnceCell::const_new() }; 2];
    let name = ROLE[slot(server).await]
        .get_or_init(|| async {
            let name = format!("hostile_{:08x}", rand::random::<u32>());
            server
                .psql(
                    "postgres",
                    &format!(
                        "CREATE ROLE {name} LOGIN SUPERUSER PASSWORD '{}'",
                        HOSTILE_PASSWORD.replace('\'', "''")
                    ),
                )
                .await
                .unwrap();
            name
        })
        .await;
    let admin = server.connection("postgres");
    PgConnection::new(admin.host(), admin.port(), name.clone(), "postgres")
        .with_password(Secret::new(HOSTILE_PASSWORD))
}

fn url_of(conn: &PgConnection) -> String {
    let mut url = format!(
        "postgres://{}:{}@{}:{}/{}",
        conn.user(),
        url_encode(conn.password().unwrap().expose()),
        conn.host(),
        conn.port(),
        conn.database()
    );
    if let Some(timeout) = conn.param("connect_timeout") {
        url.push_str(&format!("?connect_timeout={timeout}"));
    }
    url
}

// ---------------------------------------------------------------------
// The helper process

/// A helper running the library with decoy secrets in its environment
/// and `TMPDIR` pointing at a fresh directory (removed after the helper
/// is killed).
struct Helper {
    process: HelperProcess,
    tmpdir: tempfile::TempDir,
}

impl Helper {
    fn start(
        server: &TestServer,
        mode: &str,
        conn: &PgConnection,
        extra: &[(&str, &str)],
    ) -> Helper {
        let tmpdir = tempfile::tempdir().unwrap();
        let mut cmd = HelperProcess::command("helper_process");
        if let Some(bin) = server.tools().bin_dir() {
            cmd.env("HELPER_PG_BIN", bin);
        }
        cmd.env("SECRETS_HELPER", mode)
            // Where backupd's `password_var` would have the password.
            .env("BACKUPD_DB_PASSWORD", conn.password().unwrap().expose())
            .env("HELPER_PG_URL", url_of(conn))
            .env("TMPDIR", tmpdir.path())
            .envs(extra.iter().copied());
        Helper {
            process: HelperProcess::spawn(cmd),
            tmpdir,
        }
    }
}

impl std::ops::Deref for Helper {
    type Target = HelperProcess;
    fn deref(&self) -> &HelperProcess {
        &self.process
    }
}

impl std::ops::DerefMut for Helper {
    fn deref_mut(&mut self) -> &mut HelperProcess {
        &mut self.process
    }
}

/// The helper's side: runs only when started by [`Helper::start`].
#[test]
fn helper_process() {
    run_helper(
        "SECRETS_HELPER",
        |mode| async move { helper_main(&mode).await },
    );
}

async fn helper_main(mode: &str) {
    let url = std::env::var("HELPER_PG_URL").unwrap();
    let conn = PgConnection::from_url(&url).unwrap();
    let tools = std::env::var_os("HELPER_PG_BIN").map_or_else(PgTools::auto, PgTools::in_dir);
    match mode {
        // Start a dump and leave pg_dump blocked on its full stdout pipe.
        "dump" => {
            let dump = PostgresSource::new(conn)
                .with_tools(tools)
                .dump(&DumpOptions::default())
                .await
                .unwrap();
            println!("HELPER dumping");
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            drop(dump);
        }
        // Restore (creating the target) what arrives on stdin.
        "restore" => {
            let target = std::env::var("HELPER_TARGET").unwrap();
            let mut opts = RestoreOptions::into_database(&target).create(true);
            opts.must_be_new = true;
            let mut session = PostgresTarget::new(conn)
                .with_tools(tools)
                .begin(&opts)
                .await
                .unwrap();
            println!("HELPER restoring");
            write_from_reader(&mut *session, std::io::stdin(), 64 * 1024, |_| {}).await;
            let report = session.commit().await.unwrap();
            println!("HELPER committed {}", report.database);
        }
        // A preflight against a server that never answers.
        "preflight" => {
            let err = PostgresSource::new(conn)
                .with_tools(tools)
                .dump(&DumpOptions::default())
                .await
                .unwrap_err();
            println!("HELPER failed {err} | {err:?}");
        }
        other => panic!("unknown helper mode {other}"),
    }
}

// ---------------------------------------------------------------------
// The tests

/// A pgbench database on `server` (13 MB dumped: more than a pipe holds)
/// and its dump.
async fn source_and_dump(server: &TestServer) -> &'static (String, Vec<u8>) {
    static SOURCE: [OnceCell<(String, Vec<u8>)>; 2] = [const { OnceCell::const_new() }; 2];
    SOURCE[slot(server).await]
        .get_or_init(|| async {
            let db = server.create_database("secrets_src").await.unwrap();
            server.pgbench_init(&db, 1).await.unwrap();
            let dump = pg_source(server, server.connection(&db))
                .dump(&DumpOptions::default())
                .await
                .unwrap();
            let dump = read_all(dump.stream).await;
            (db, dump)
        })
        .await
}

/// Log lines written by this test binary's tracing subscriber.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || CaptureWriter(writer.clone()))
            .init();
        logs
    })
    .clone()
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CaptureWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

backup_postgres::each_major! {
    async fn psql_sees_no_secret(server) {
        // A listener that accepts and never answers: psql waits on it (up to
        // PGCONNECT_TIMEOUT) while its environment is read.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let role = hostile_role(server).await;
        // A long connect timeout: on a loaded machine psql must still be
        // waiting when its environment is read (dropping the listener below
        // ends the wait at once).
        let silent = PgConnection::new("127.0.0.1", port, role.user(), "postgres")
            .with_password(Secret::new(HOSTILE_PASSWORD))
            .with_param("connect_timeout", "600")
            .unwrap();
        let helper = Helper::start(server, "preflight", &silent, &[]);
        let psql = wait_for_descendant(helper.pid(), "psql");
        assert_child_is_clean(&psql, "psql", &silent);
        drop(listener);
        let line = helper.expect_line();
        assert!(line.starts_with("failed "), "{line}");
        for secret in forbidden(&silent) {
            assert!(!line.contains(&secret), "a secret in the error: {line}");
        }
    }

    async fn pg_dump_sees_no_secret_and_kill_9_leaves_no_password_file(server) {
        let (db, _) = source_and_dump(server).await;
        let conn = hostile_role(server).await.with_database(db);
        let started = SystemTime::now() - Duration::from_secs(1);
        let mut helper = Helper::start(server, "dump", &conn, &[]);
        assert_eq!(helper.expect_line(), "dumping");
        let pg_dump = wait_for_descendant(helper.pid(), "pg_dump");
        assert_child_is_clean(&pg_dump, "pg_dump", &conn);

        helper.kill9();
        let left = files_containing(helper.tmpdir.path(), HOSTILE_PASSWORD, None);
        assert!(
            left.is_empty(),
            "password files left after kill -9: {left:?}"
        );
        let escaped = HOSTILE_PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
        let left = files_containing(helper.tmpdir.path(), &escaped, None);
        assert!(
            left.is_empty(),
            "password files left after kill -9: {left:?}"
        );
        let left = files_containing(Path::new("/tmp"), &escaped, Some(started));
        assert!(left.is_empty(), "password files left in /tmp: {left:?}");
    }

    async fn pg_restore_sees_no_secret_and_a_killed_create_leaves_no_target(server) {
        let _serial = ZERO_GRACE.lock().await;
        let (db, dump) = source_and_dump(server).await;
        let conn = hostile_role(server).await;
        let target = format!("killed_{:08x}", rand::random::<u32>());
        let mut helper = Helper::start(server, "restore", &conn, &[("HELPER_TARGET", &target)]);
        assert_eq!(helper.expect_line(), "restoring");
        let pg_restore = wait_for_descendant(helper.pid(), "pg_restore");
        assert_child_is_clean(&pg_restore, "pg_restore", &conn);

        // Half the archive, then kill -9 mid-restore.
        let stdin = helper.stdin();
        stdin.write_all(&dump[..dump.len() / 2]).unwrap();
        stdin.flush().unwrap();
        helper.kill9();

        let exists = |name: String| async move { server.database_exists(&name).await.unwrap() };
        assert!(
            !exists(target.clone()).await,
            "a killed restore --create left database {target} behind"
        );

        // The leftover is recognised as a staging database of that target.
        let admin = pg_target(server, server.connection("postgres"));
        let found = admin.leftovers().await.unwrap();
        let leftover = found
            .iter()
            .find(|s| s.target.as_deref() == Some(target.as_str()))
            .unwrap_or_else(|| panic!("no staging database for {target} in {found:?}"))
            .name
            .clone();
        // Young leftovers are kept (a concurrent restore may own them)...
        let report = admin
            .remove_leftovers(Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(
            report.removed.iter().all(|s| s.name != leftover),
            "{report:?}"
        );
        assert!(exists(leftover.clone()).await);
        // ...old ones dropped (once the orphaned pg_restore has gone).
        let started = Instant::now();
        while exists(leftover.clone()).await {
            let report = admin.remove_leftovers(Duration::ZERO).await.unwrap();
            if report.removed.iter().any(|s| s.name == leftover) {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "{report:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(!exists(leftover).await);

        // A retry under "new database only" works, and restores everything.
        let engine = Engine::new(Arc::new(InMemoryStore::new()));
        let m = engine
            .backup(
                &pg_source(server, server.connection(db)),
                &BackupRequest::new("retry"),
            )
            .await
            .unwrap();
        engine
            .restore(&m.id, &pg_target(server, conn.clone()), &{
                let mut opts = RestoreOptions::into_database(&target).create(true);
                opts.must_be_new = true;
                opts
            })
            .await
            .unwrap();
        server.assert_same_data(&target, db).await;
        let comment = server
            .psql(
                "postgres",
                &format!(
                    "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = '{target}'"
                ),
            )
            .await
            .unwrap();
        assert_eq!(comment, "", "the staging marker is gone after the rename");
        server.drop_database(&target).await.unwrap();
    }

    async fn logs_errors_and_manifests_never_hold_the_password(server) {
        let _serial = ZERO_GRACE.lock().await;
        let logs = captured_logs();
        let (db, _) = source_and_dump(server).await;
        let conn = hostile_role(server).await.with_database(db);
        let engine = Engine::new(Arc::new(InMemoryStore::new()));
        let source = pg_source(server, conn.clone());
        let m = engine
            .backup(&source, &BackupRequest::new("hygiene"))
            .await
            .unwrap();
        let target = format!("hygiene_{:08x}", rand::random::<u32>());
        let report = engine
            .restore(
                &m.id,
                &pg_target(server, conn.clone()),
                &RestoreOptions::into_database(&target).create(true),
            )
            .await
            .unwrap();
        let mut shown = vec![
            serde_json::to_string(&m).unwrap(),
            format!("{report:?} {source:?} {conn:?} {conn}"),
        ];
        // Errors: wrong password, missing database, unreachable server.
        let wrong = conn.clone().with_password(Secret::new("wrong-Pw-0xdead"));
        for (what, c) in [
            ("wrong password", wrong),
            ("missing database", conn.with_database("no_such_db_x")),
            (
                "unreachable",
                PgConnection::new("127.0.0.1", 1, "u", "d")
                    .with_password(Secret::new(HOSTILE_PASSWORD)),
            ),
        ] {
            let err = engine
                .backup(&pg_source(server, c), &BackupRequest::new("x"))
                .await
                .unwrap_err();
            shown.push(format!("{what}: {err} {err:?}"));
        }
        for url in [
            format!("postgres://u:{HOSTILE_PASSWORD}@h:notaport/db"),
            format!("postgres://u:{HOSTILE_PASSWORD}@h/db"),
            format!(
                "postgres://u:{}@h:1/db?bogus=1",
                url_encode(HOSTILE_PASSWORD)
            ),
        ] {
            shown.push(match PgConnection::from_url(&url) {
                Ok(c) => format!("{c} {c:?}"),
                Err(e) => format!("{e} {e:?}"),
            });
            shown.push(backup_postgres::redact_url(&url));
        }
        shown.push(String::from_utf8_lossy(&logs.lock().unwrap()).to_string());
        let escaped = HOSTILE_PASSWORD.replace('\\', "\\\\").replace(':', "\\:");
        for text in &shown {
            for secret in [HOSTILE_PASSWORD, &escaped, &url_encode(HOSTILE_PASSWORD)] {
                assert!(!text.contains(secret), "the password shows in: {text}");
            }
        }
        server.drop_database(&target).await.unwrap();
    }

    /// A `restore --create` killed between `CREATE DATABASE` and the statement
    /// marking it (found by the crash harness, examples/backupctl/tests/crash.rs) leaves
    /// a staging database without comment. It was created refusing
    /// connections, which tells it apart from a user's database of a similar
    /// name: `leftovers` reports it, a cleanup with a grace period dates it
    /// (and keeps it), one without drops it. An unmarked database that
    /// accepts connections is never touched.
    async fn a_create_killed_before_marking_leaves_a_staging_database_cleanup_drops(server) {
        let _serial = ZERO_GRACE.lock().await;
        let admin = pg_target(server, server.connection("postgres"));
        let unborn = format!("unborn_{:08x}__restore_0a1b2c3d", rand::random::<u32>());
        let users = format!("users_{:08x}__restore_0a1b2c3d", rand::random::<u32>());
        // The state the first of the two statements leaves.
        server
            .psql(
                "postgres",
                &format!("CREATE DATABASE \"{unborn}\" ALLOW_CONNECTIONS false"),
            )
            .await
            .unwrap();
        server
            .psql("postgres", &format!("CREATE DATABASE \"{users}\""))
            .await
            .unwrap();
        let exists = |name: String| async move { server.database_exists(&name).await.unwrap() };

        let found = admin.leftovers().await.unwrap();
        assert!(
            found.iter().any(|s| s.name == unborn && s.target.is_none()),
            "leftovers() does not see {unborn}: {found:?}"
        );
        assert!(found.iter().all(|s| s.name != users), "{found:?}");

        // With a grace period it is dated, not dropped.
        let report = admin
            .remove_leftovers(Duration::from_secs(3600))
            .await
            .unwrap();
        assert!(
            report.too_recent.iter().any(|s| s.name == unborn),
            "{report:?}"
        );
        assert!(report.unmarked.contains(&users), "{report:?}");
        assert!(exists(unborn.clone()).await);
        let dated = admin.leftovers().await.unwrap();
        let dated = dated.iter().find(|s| s.name == unborn).unwrap();
        assert!(dated.idle.is_some(), "{dated:?}");

        // Without one it is dropped; the user's database stays.
        let report = admin.remove_leftovers(Duration::ZERO).await.unwrap();
        assert!(
            report.removed.iter().any(|s| s.name == unborn),
            "{report:?}"
        );
        assert!(!exists(unborn).await);
        assert!(exists(users.clone()).await);
        server.drop_database(&users).await.unwrap();
    }
}
