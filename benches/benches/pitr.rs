//! Restore to a point in time: ours (`Engine::restore` into a
//! `DataDirTarget`, then `PointInTimeRestore` from the WAL archive in the
//! store) against doing it by hand (issue #14's figures).
//!
//! ```text
//! cargo bench -p backup-benches --bench pitr [-- --json results.json]
//! ```
//!
//! Starts a throwaway PostgreSQL cluster, fills it with `pgbench -i -s
//! BENCH_PGBENCH_SCALE`, starts our `WalArchiver` into a `WalArchive` over
//! an `FsStore`, takes our base backup (`BaseBackupSource`, into the same
//! store) and the shell's (`pg_basebackup -D - -Ft -X fetch | zstd -1`),
//! runs `pgbench -n -c 2 -j 2 -T BENCH_PITR_SECONDS` and notes the time T
//! halfway through; then, once everything is archived, restores to T:
//!
//! - ours: `Engine::restore` into a new directory, `PointInTimeRestore`
//!   with the archive as its `WalSource` (segments fetched from the store
//!   with their digests checked) and `StartOptions` (the server started,
//!   waited for until promoted at T, then stopped);
//! - by hand: `zstd -dc base | tar -x`, the same segments (exported from
//!   the archive beforehand, untimed) copied into a directory,
//!   `recovery.signal`, `restore_command = 'cp ...'`,
//!   `recovery_target_time = T`, `pg_ctl start` with `hot_standby=off`
//!   (as ours starts it: recovery with hot standby refuses settings below
//!   the original's, and the throwaway cluster runs with
//!   `max_connections=200`), `psql` polled until `pg_is_in_recovery()` is
//!   false, `pg_ctl stop`.
//!
//! The WAL replayed is read from each server's log (`redo starts at` to
//! `redo done at`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use backup_benches::{
    BenchArgs, BenchServer, Measurement, Report, env_u64, human_bytes, human_duration,
    load_average, machine_meta, measure_shell, quoted,
};
use backup_core::testing::server::{free_port, temp_dir};
use backup_core::{BackupRequest, Engine, RestoreOptions};
use backup_postgres::{
    ArchiverOptions, BaseBackupSource, DataDirTarget, Lsn, PointInTimeRestore, RecoveryTarget,
    StartOptions, WalArchive, WalArchiver, WalSource,
};
use backup_store_fs::FsStore;

/// `redo starts at` and `redo done at` of a server log, as LSNs.
fn replayed(log: &str) -> Option<(u64, u64)> {
    let after = |key: &str| {
        log.lines().rev().find_map(|l| {
            let (_, rest) = l.split_once(key)?;
            rest.split_whitespace()
                .next()?
                .parse::<Lsn>()
                .ok()
                .map(|l| l.0)
        })
    };
    Some((after("redo starts at ")?, after("redo done at ")?))
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn main() {
    let args = BenchArgs::from_env();
    let scale = env_u64("BENCH_PGBENCH_SCALE", 10);
    let seconds = env_u64("BENCH_PITR_SECONDS", 30);
    let rows = env_u64("BENCH_WAL_ROWS", 100);
    // The server runs as `postgres` when this is root: it must reach in.
    let work = temp_dir("bench-pitr-", 0o755).expect("work directory");
    let mut report = Report::new("postgres: restore to a point in time");
    machine_meta(&mut report);
    let server = BenchServer::start();
    let rt = server.rt();
    let db = rt
        .block_on(server.server().create_database("pgbench"))
        .expect("creating the database");
    eprintln!("pgbench -i -s {scale} ...");
    let started = Instant::now();
    rt.block_on(server.server().pgbench_init(&db, scale as u32))
        .expect("pgbench -i");
    server.psql(&db, "CHECKPOINT");
    report.meta(
        "data",
        format!(
            "pgbench -i -s {scale} ({} on disk, {} to load), then pgbench -n -c 2 -j 2 -T {seconds} (TPC-B-like and INSERT of {rows} rows in turn), T at half time",
            human_bytes(
                server
                    .psql(&db, "SELECT pg_database_size(current_database())")
                    .parse()
                    .unwrap_or(0)
            ),
            human_duration(started.elapsed())
        ),
    );
    let bin = server
        .server()
        .cluster()
        .map(|c| c.bin_dir().to_path_buf())
        .or_else(|| server.bin_dir("pg_ctl"))
        .expect("the server binaries");
    let prefix = format!("{}/", bin.display());
    report.meta("server", server.describe(&prefix));
    let env = server.env(&db);
    let tools = server.server().tools();

    // The archive, streaming from before the base backups.
    let engine = Arc::new(Engine::new(Arc::new(
        FsStore::new(work.join("store")).expect("store"),
    )));
    let archive = Arc::new(WalArchive::new(engine.clone(), "default", "bench").expect("archive"));
    let options = ArchiverOptions::new("bench_pitr", work.join("spool"))
        .tools(tools.clone())
        .status_interval(Duration::from_secs(1));
    let archiver = {
        let _guard = rt.enter();
        WalArchiver::new(server.connection(&db), archive.clone(), options)
            .expect("the archiver")
            .start()
    };
    eprintln!("base backups ...");
    let manifest = rt
        .block_on(engine.backup(
            &BaseBackupSource::new(server.connection(&db)).with_tools(tools.clone()),
            &BackupRequest::new("bench"),
        ))
        .expect("our base backup");
    let base = work.join("base.tar.zst");
    measure_shell(
        &env,
        "shell base backup",
        format!(
            "{prefix}pg_basebackup -D - -Ft -X fetch --checkpoint=fast | zstd -q -1 -T0 > {}",
            quoted(&base)
        ),
        0,
        None,
    );

    eprintln!("pgbench for {seconds} s ...");
    let mut pgbench = std::process::Command::new(bin.join("pgbench"))
        .env_clear()
        .envs(env.vars().iter().map(|(k, v)| (k, v)))
        .args(server.pgbench_load(&db, &work, rows, seconds))
        .arg(&db)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("pgbench");
    std::thread::sleep(Duration::from_secs(seconds / 2));
    let t = server.psql("postgres", "SELECT clock_timestamp()");
    assert!(pgbench.wait().expect("pgbench").success(), "pgbench failed");
    let last = server.psql("postgres", "SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = Instant::now() + Duration::from_secs(300);
    while archiver.status().last_segment.as_deref() < Some(last.as_str()) {
        assert!(Instant::now() < deadline, "{last} was not archived");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = rt.block_on(archiver.stop());
    let _ = server.psql("postgres", "SELECT pg_drop_replication_slot('bench_pitr')");

    // The same segments as plain files, for the hand-made restore.
    let plain = work.join("wal-plain");
    std::fs::create_dir(&plain).expect("wal-plain");
    let segments = rt
        .block_on(WalSource::list(archive.as_ref(), 1))
        .expect("listing the archive");
    for name in &segments {
        rt.block_on(WalSource::fetch(archive.as_ref(), name, &plain.join(name)))
            .expect("exporting a segment");
    }
    report.meta(
        "archive",
        format!(
            "{} segments archived ({} files handed over, {} restarts); recovery target time {t}",
            segments.len(),
            status.archived,
            status.restarts
        ),
    );

    eprintln!("restore, ours ...");
    let ours_dir = work.join("ours");
    let started = Instant::now();
    rt.block_on(engine.restore(
        &manifest.id,
        &DataDirTarget::new(&ours_dir).with_tools(tools.clone()),
        &RestoreOptions::default(),
    ))
    .expect("our base restore");
    let base_restore = started.elapsed();
    let recovery = rt
        .block_on(
            PointInTimeRestore::new(
                &ours_dir,
                archive.clone(),
                RecoveryTarget::time(&t).expect("a target time"),
                &bin,
            )
            .start_server(StartOptions::on_port(free_port().expect("a port")))
            .run(),
        )
        .expect("our point-in-time restore");
    let ours_wall = started.elapsed();
    let ours_log =
        std::fs::read_to_string(recovery.work_dir.join("server.log")).unwrap_or_default();
    let ours_replayed = replayed(&ours_log);

    eprintln!("restore, by hand ...");
    let hand = work.join("hand");
    let hand_wal = work.join("hand-wal");
    let sock = work.join("hand-sock");
    // Written by the server, which runs as `postgres` when this is root.
    let log = sock.join("hand.log");
    let port = free_port().expect("a port");
    let as_postgres = if is_root() {
        "setpriv --reuid=postgres --regid=postgres --init-groups --"
    } else {
        ""
    };
    let chown = if is_root() {
        format!(
            "chown -R postgres:postgres {} {} {}",
            quoted(&hand),
            quoted(&hand_wal),
            quoted(&sock)
        )
    } else {
        "true".to_string()
    };
    let script = format!(
        r#"set -e
mkdir -m 700 {hand} {hand_wal} {sock}
zstd -dc {base} | tar -x -C {hand}
cp {plain}/* {hand_wal}/
touch {hand}/recovery.signal
cat >> {hand}/postgresql.auto.conf <<'EOF'
restore_command = 'cp {hand_wal_raw}/%f %p'
recovery_target_time = '{t}'
recovery_target_action = 'promote'
EOF
{chown}
{as_postgres} {prefix}pg_ctl -D {hand} -l {log} -o "-p {port} -k {sock} -c listen_addresses='' -c hot_standby=off" -w -t 3600 start > /dev/null
until [ "$({prefix}psql -X -A -t -h {sock} -p {port} -U postgres -d postgres -c 'SELECT pg_is_in_recovery()')" = f ]; do
  {as_postgres} {prefix}pg_ctl -D {hand} status > /dev/null || {{ cat {log} >&2; exit 1; }}
  sleep 0.1
done
{as_postgres} {prefix}pg_ctl -D {hand} -m fast -w stop > /dev/null
"#,
        hand = quoted(&hand),
        hand_wal = quoted(&hand_wal),
        hand_wal_raw = hand_wal.display(),
        sock = quoted(&sock),
        base = quoted(&base),
        plain = quoted(&plain),
        log = quoted(&log),
    );
    let by_hand = measure_shell(
        &env,
        "by hand: zstd -dc | tar -x, cp WAL, restore_command cp, pg_ctl start, wait for promotion, stop",
        script,
        0,
        None,
    );
    let hand_replayed = replayed(&std::fs::read_to_string(&log).unwrap_or_default());

    let replay_note = |r: Option<(u64, u64)>| {
        r.map_or_else(
            || "WAL replayed: not in the log".to_string(),
            |(from, to)| {
                format!(
                    "WAL replayed {} ({:X}/{:X} to {:X}/{:X})",
                    human_bytes(to.saturating_sub(from)),
                    from >> 32,
                    from & 0xffff_ffff,
                    to >> 32,
                    to & 0xffff_ffff
                )
            },
        )
    };
    let bytes = |r: Option<(u64, u64)>| r.map_or(0, |(from, to)| to.saturating_sub(from));
    report.push(
        Measurement::new(
            "ours: Engine::restore (DataDirTarget) + PointInTimeRestore to T",
            bytes(ours_replayed),
            ours_wall,
        )
        .note(format!(
            "{}; base restore {:.2} s (extract + pg_verifybackup), WAL staging + replay + promotion + stop {:.2} s; {} segments staged ({})",
            replay_note(ours_replayed),
            base_restore.as_secs_f64(),
            (ours_wall - base_restore).as_secs_f64(),
            recovery.staged_segments,
            human_bytes(recovery.staged_bytes)
        )),
    );
    let by_hand = Measurement {
        input: bytes(hand_replayed),
        note: format!(
            "{}; {} segments copied; RSS: largest process; CPU: the script (not the server)",
            replay_note(hand_replayed),
            segments.len()
        ),
        ..by_hand
    };
    let x = ours_wall.as_secs_f64() / by_hand.wall.as_secs_f64().max(1e-9);
    report.push(by_hand);
    report.line(format!(
        "ours / by hand: {x:.2}x; MB/s: WAL replayed per second of the whole restore"
    ));
    report.meta("load average at end", load_average());
    server.drop_database(&db);
    drop(server);
    let _ = std::fs::remove_dir_all(&work);
    println!("{report}");
    if let Some(path) = &args.json {
        report.write_json(path).expect("writing the JSON report");
        eprintln!("wrote {}", path.display());
    }
}
