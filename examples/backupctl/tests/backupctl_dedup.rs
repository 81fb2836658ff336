//! `backupctl` with incremental (deduplicated) backups: backup --type
//! incremental, stats --json per backup, restore, gc and check, against a
//! real PostgreSQL and the filesystem store. Runs on both majors of the
//! test matrix (`<test>::postgres_15`, `<test>::postgres_18` with
//! `--pg-bin` naming the 18 tools).

mod support;
use support::*;

backup_postgres::each_major! {
    async fn incremental_backup_stats_restore_gc_and_check(server) {
        let bin = pg_bin(server);
        let db = server.create_database("cli_dedup").await.unwrap();
        server.pgbench_init(&db, 1).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("backups");
        let store_s = store.to_str().unwrap();
        let url = server.url(&db);
        let backup = || {
            json(&with_pg_bin(
                &[
                    "backup",
                    "--pg",
                    &url,
                    "--store",
                    store_s,
                    "--type",
                    "incremental",
                    "--json",
                ],
                &bin,
            ))
        };

        let first = backup();
        assert_eq!(first["type"], "incremental");
        assert_eq!(first["dedup"]["new_chunks"], first["dedup"]["chunks"]);
        server
            .psql(
                &db,
                "UPDATE pgbench_accounts SET abalance = 1 WHERE aid <= 1000",
            )
            .await
            .unwrap();
        let second = backup();
        let (id1, id2) = (
            first["id"].as_str().unwrap(),
            second["id"].as_str().unwrap(),
        );

        let stats = json(&["stats", "--store", store_s, "--json"]);
        let backups = stats["backups"].as_array().unwrap();
        assert_eq!(backups.len(), 2);
        let row = |id: &str| backups.iter().find(|b| b["id"] == id).unwrap().clone();
        let (a, b) = (row(id1), row(id2));
        assert!(a["logical_size"].as_u64().unwrap() > 5_000_000, "{a}");
        assert!(
            b["bytes_stored"].as_u64().unwrap() * 10 < a["bytes_stored"].as_u64().unwrap(),
            "second {b} first {a}"
        );
        assert_eq!(stats["total"]["count"], 2);

        // `list` shows the type, the logical size and what each backup added,
        // not the chunk list's size as if it were the backup's.
        let table = ok(&["list", "--store", store_s]);
        let header = table.lines().next().unwrap();
        for column in ["TYPE", "SIZE", "ADDED"] {
            assert!(header.contains(column), "{table}");
        }
        let line = table.lines().find(|l| l.starts_with(id2)).unwrap();
        let human = |n: u64| backup_core::format::human_bytes(n);
        assert!(line.contains("incremental"), "{line}");
        assert!(
            line.contains(&human(b["logical_size"].as_u64().unwrap()))
                && line.contains(&human(b["bytes_stored"].as_u64().unwrap())),
            "{line} vs {b}"
        );

        let copy = format!("{db}_copy");
        ok(&with_pg_bin(
            &[
                "restore",
                id2,
                "--store",
                store_s,
                "--pg",
                &server.url(&copy),
                "--create",
            ],
            &bin,
        ));
        server.assert_same_data(&copy, &db).await;

        ok(&["delete", id1, "--store", store_s]);
        let plan = json(&[
            "gc",
            "--store",
            store_s,
            "--grace",
            "0s",
            "--dry-run",
            "--json",
        ]);
        assert_eq!(plan[0]["dry_run"], true);
        let young = json(&["gc", "--store", store_s, "--json"]);
        assert!(
            !young[0]["young_packs"].as_array().unwrap().is_empty(),
            "{young}"
        );
        let gc = json(&["gc", "--store", store_s, "--grace", "0s", "--json"]);
        assert_eq!(gc[0]["tenant"], "default");
        assert!(gc[0]["skipped"].is_null(), "{gc}");
        ok(&["verify", id2, "--store", store_s]);

        let check = json(&["check", "--store", store_s, "--json"]);
        assert_eq!(
            check["missing_chunks"].as_array().unwrap().len(),
            0,
            "{check}"
        );
        assert!(check["chunks_checked"].as_u64().unwrap() > 0);

        // Damage a pack: check fails with status 1 and names the chunk.
        let pack = walk(&store)
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "pack"))
            .unwrap();
        let mut bytes = std::fs::read(&pack).unwrap();
        let n = bytes.len();
        bytes[n - 10] ^= 0x20;
        std::fs::write(&pack, bytes).unwrap();
        let out = backupctl(&["check", "--store", store_s]);
        assert!(!out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("corrupt chunk"), "{text}");

        server.drop_database(&copy).await.unwrap();
        server.drop_database(&db).await.unwrap();
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
