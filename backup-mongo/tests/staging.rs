//! Staging databases left by killed MongoDB restores (issue #10): found,
//! reported and dropped, never those of a restore still running; system
//! databases refused; the tools' children see no secret.
//!
//! A restore is killed with `kill -9` in a helper process: this test
//! binary started again with `STAGING_HELPER=<mode>`.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use backup_core::prelude::*;
use backup_core::testing::{
    DECOY_SECRETS, HelperProcess, process_tree, read_all, run_helper, write_from_reader,
};
use backup_core::{memory::InMemoryStore, source::DumpOptions};
use backup_mongo::*;
use support::server;

/// The archive of a sample database (dumped once per test).
async fn sample_archive(db: &str) -> Vec<u8> {
    server().create_sample(db, 5_000).await.unwrap();
    let dump = MongoSource::new(server().connection(db))
        .dump(&DumpOptions::default())
        .await
        .unwrap();
    read_all(dump.stream).await
}

async fn database_names() -> Vec<String> {
    server()
        .client()
        .await
        .unwrap()
        .list_database_names()
        .await
        .unwrap()
}

/// Held by the tests that drop staging databases with no grace period,
/// which would otherwise drop each other's.
static ZERO_GRACE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn admin_target() -> MongoTarget {
    MongoTarget::new(server().connection("admin"))
}

/// This binary as a helper running the library against the test server,
/// in mode `mode` (see [`helper_process`]).
fn start_helper(mode: &str, extra: &[(&str, &str)]) -> HelperProcess {
    let mut cmd = HelperProcess::command("helper_process");
    cmd.env("STAGING_HELPER", mode)
        .env("HELPER_URI", server().uri().expose())
        .envs(extra.iter().copied());
    HelperProcess::spawn(cmd)
}

#[test]
fn helper_process() {
    run_helper("STAGING_HELPER", |mode| async move {
        let uri = std::env::var("HELPER_URI").unwrap();
        let conn = MongoConnection::from_uri(&uri).unwrap();
        match mode.as_str() {
            // A staged restore of what arrives on stdin.
            "restore" => {
                let target = std::env::var("HELPER_TARGET").unwrap();
                let mut session = MongoTarget::new(conn)
                    .begin(&RestoreOptions::into_database(&target))
                    .await
                    .unwrap();
                println!("HELPER restoring");
                write_from_reader(&mut *session, std::io::stdin(), 64 * 1024, |n| {
                    println!("HELPER wrote {n}")
                })
                .await;
                session.commit().await.unwrap();
            }
            // mongodump left blocked on its full stdout pipe.
            "tools-dump" => {
                let db = std::env::var("HELPER_DB").unwrap();
                let _dump = MongoSource::new(conn.with_database(&db))
                    .with_method(Method::Tools(MongoTools::from_path()))
                    .dump(&DumpOptions::default())
                    .await
                    .unwrap();
                println!("HELPER dumping");
                let mut line = String::new();
                let _ = std::io::stdin().read_line(&mut line);
            }
            other => panic!("unknown helper mode {other}"),
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_a_killed_restore_leaves_a_staging_database_that_is_found_and_dropped() {
    let _serial = ZERO_GRACE.lock().await;
    let source = TestServer::unique_name("killed_src");
    let archive = sample_archive(&source).await;
    let target = TestServer::unique_name("killed_dst");
    let mut helper = start_helper("restore", &[("HELPER_TARGET", &target)]);
    assert_eq!(helper.expect_line(), "restoring");
    // Half the archive, written and acknowledged, then kill -9.
    let half = archive.len() / 2;
    helper.stdin().write_all(&archive[..half]).unwrap();
    let mut written = 0;
    while written < half {
        let line = helper.expect_line();
        written += line
            .strip_prefix("wrote ")
            .and_then(|n| n.parse::<usize>().ok())
            .unwrap_or(0);
    }
    helper.kill9();

    let leftovers: Vec<String> = database_names()
        .await
        .into_iter()
        .filter(|n| n.starts_with(&format!("{target}__restore_")))
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    let leftover = leftovers[0].clone();
    assert!(!database_names().await.contains(&target));

    // Reported with its target.
    let found = admin_target().leftovers().await.unwrap();
    let entry = found.iter().find(|s| s.name == leftover).expect("found");
    assert_eq!(entry.target.as_deref(), Some(target.as_str()));

    // The next restore of that target within the grace period leaves it
    // alone (it could be a restore still running) and succeeds.
    let engine = Engine::new(std::sync::Arc::new(InMemoryStore::new()));
    let m = engine
        .backup(
            &MongoSource::new(server().connection(&source)),
            &BackupRequest::new("again"),
        )
        .await
        .unwrap();
    engine
        .restore(
            &m.id,
            &admin_target(),
            &RestoreOptions::into_database(&target),
        )
        .await
        .unwrap();
    assert!(database_names().await.contains(&leftover));
    let report = admin_target()
        .remove_leftovers(DEFAULT_STAGING_GRACE)
        .await
        .unwrap();
    assert!(
        report.too_recent.iter().any(|s| s.name == leftover),
        "{report:?}"
    );

    // Past the grace period (zero here), dropped; the next restore of the
    // target also does it by itself.
    let report = admin_target()
        .remove_leftovers(Duration::ZERO)
        .await
        .unwrap();
    assert!(
        report.removed.iter().any(|s| s.name == leftover),
        "{report:?}"
    );
    assert!(!database_names().await.contains(&leftover));
    server().drop_database(&source).await.unwrap();
    server().drop_database(&target).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_a_running_restore_keeps_its_staging_and_fails_if_it_is_dropped_under_it() {
    let _serial = ZERO_GRACE.lock().await;
    let source = TestServer::unique_name("running_src");
    let archive = sample_archive(&source).await;
    let target = TestServer::unique_name("running_dst");
    let mut session = admin_target()
        .begin(&RestoreOptions::into_database(&target))
        .await
        .unwrap();
    session
        .write(bytes::Bytes::copy_from_slice(&archive))
        .await
        .unwrap();
    // Another host's start-up cleanup with the default grace: kept.
    let report = admin_target()
        .remove_leftovers(DEFAULT_STAGING_GRACE)
        .await
        .unwrap();
    let mine: Vec<_> = report
        .too_recent
        .iter()
        .filter(|s| s.target.as_deref() == Some(target.as_str()))
        .collect();
    assert_eq!(mine.len(), 1, "{report:?}");
    let staging = mine[0].name.clone();
    assert!(report.removed.iter().all(|s| s.name != staging));

    // A cleanup with no grace at all drops it: the commit then refuses to
    // move whatever is left, instead of committing part of the data.
    admin_target()
        .remove_leftovers(Duration::ZERO)
        .await
        .unwrap();
    let err = session.commit().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("was dropped while the restore ran"),
        "{err}"
    );
    assert!(!database_names().await.contains(&target));
    let started = Instant::now();
    while database_names().await.contains(&staging) {
        assert!(started.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server().drop_database(&source).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_system_databases_are_refused_unless_allowed() {
    for name in ["admin", "local", "config", "ADMIN", "Config"] {
        let err = admin_target()
            .begin(&RestoreOptions::into_database(name))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("system database"), "{name}: {err}");
        let err = MongoSource::new(server().connection(name))
            .dump(&DumpOptions::default())
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(err.to_string().contains("system database"), "{name}: {err}");
        assert!(is_system_database(name));
    }
    assert!(!is_system_database("administration"));
    // Allowed explicitly: dumping admin works.
    let dump = MongoSource::new(server().connection("admin"))
        .allow_system_databases(true)
        .dump(&DumpOptions::default())
        .await;
    assert!(
        !matches!(&dump, Err(e) if e.to_string().contains("system database")),
        "{:?}",
        dump.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_mongodump_sees_no_secret() {
    if let Err(e) = MongoTools::from_path().locate("mongodump").await {
        eprintln!("SKIPPED tools_mongodump_sees_no_secret: {e}");
        return;
    }
    let source = TestServer::unique_name("tools_env");
    server().create_sample(&source, 20_000).await.unwrap();
    let helper = start_helper("tools-dump", &[("HELPER_DB", &source)]);
    assert_eq!(helper.expect_line(), "dumping");
    let pid = helper.pid();
    let child = process_tree(pid)
        .into_iter()
        .find(|p| p.ppid == pid && p.comm == "mongodump")
        .expect("a running mongodump");
    let cmdline = child.command_line();
    let environ = &child.environ;
    let uri = server().uri().expose().to_string();
    for (_, secret) in DECOY_SECRETS {
        assert!(!cmdline.contains(secret) && !environ.contains(secret));
    }
    assert!(!cmdline.contains(&uri) && !environ.contains(&uri));
    for var in child.variables() {
        let name = var.split('=').next().unwrap();
        assert!(
            backup_core::child::ENV_ALLOW_LIST.contains(&name),
            "{name} inherited"
        );
    }
    let config = cmdline
        .split(' ')
        .find_map(|a| a.strip_prefix("--config="))
        .expect("--config");
    let fd = config.strip_prefix("/dev/fd/").expect("an inherited fd");
    let link = std::fs::read_link(format!("/proc/{}/fd/{fd}", child.pid)).unwrap();
    assert!(
        link.to_string_lossy().starts_with("/memfd:"),
        "{}",
        link.display()
    );
    drop(helper);
    server().drop_database(&source).await.unwrap();
}
