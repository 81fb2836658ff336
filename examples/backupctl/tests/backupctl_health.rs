//! `backupctl health` and `forget-source` the way an operator meets them:
//! the real binary, a real PostgreSQL, one mistyped database name. Runs
//! on both majors of the test matrix (`<test>::postgres_15`,
//! `<test>::postgres_18` with `--pg-bin` naming the 18 tools): the
//! "does not exist" a health record keeps is the server's own message.

use serde_json::Value;

mod support;
use support::*;

/// `health --json` and whether it exited 0.
fn health(store: &str) -> (bool, Value) {
    let out = backupctl(&["health", "--store", store, "--json"]);
    let v = serde_json::from_slice(&out.stdout).unwrap();
    (out.status.success(), v)
}

fn statuses(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                format!(
                    "{}/{}",
                    h["tenant"].as_str().unwrap(),
                    h["source_id"].as_str().unwrap()
                ),
                h["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

backup_postgres::each_major! {
    async fn a_mistyped_database_can_be_forgotten_and_its_backups_are_never_touched(server) {
        let bin = pg_bin(server);
        let db = server.create_database("fs_sales").await.unwrap();
        server.pgbench_init(&db, 1).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("backups");
        let store_s = store.to_str().unwrap();

        let m = json(&with_pg_bin(
            &[
                "backup",
                "--pg",
                &server.url(&db),
                "--store",
                store_s,
                "--json",
            ],
            &bin,
        ));
        let (ok_, h) = health(store_s);
        assert!(ok_, "{h}");
        assert_eq!(statuses(&h), [(format!("default/{db}"), "healthy".into())]);

        // One mistyped name: the error says which source the failure was
        // recorded for and how to forget it.
        let typo = format!("{db}z");
        let err = fails(&with_pg_bin(
            &["backup", "--pg", &server.url(&typo), "--store", store_s],
            &bin,
        ));
        assert!(err.contains("does not exist"), "{err}");
        assert!(err.contains(&format!("source default/{typo}")), "{err}");
        assert!(
            err.contains(&format!(
                "backupctl forget-source {typo} --tenant default --store {store_s}"
            )),
            "{err}"
        );
        let (ok_, h) = health(store_s);
        assert!(!ok_, "a failing source fails health");
        assert_eq!(
            statuses(&h),
            [
                (format!("default/{db}"), "healthy".into()),
                (format!("default/{typo}"), "failing".into())
            ]
        );
        let out = backupctl(&["health", "--store", store_s]);
        let hint = String::from_utf8_lossy(&out.stderr);
        assert!(hint.contains("forget-source"), "{hint}");

        // Forgetting it clears health for good.
        let said = ok(&["forget-source", &typo, "--store", store_s]);
        assert!(said.contains(&format!("default/{typo}")), "{said}");
        assert!(said.contains("does not exist"), "{said}");
        assert!(said.contains("backups were not touched"), "{said}");
        let (ok_, h) = health(store_s);
        assert!(ok_, "{h}");
        assert_eq!(statuses(&h), [(format!("default/{db}"), "healthy".into())]);

        // A source without a record is refused, clearly.
        let err = fails(&["forget-source", &typo, "--store", store_s]);
        assert!(
            err.contains(&format!("default/{typo}")) && err.contains("nothing to forget"),
            "{err}"
        );
        let err = fails(&["forget-source", "../etc", "--store", store_s]);
        assert!(err.contains("invalid"), "{err}");

        // Forgetting a source with backups removes its record only.
        let forgotten = json(&["forget-source", &db, "--store", store_s, "--json"]);
        assert_eq!(forgotten["succeeded"], true);
        assert_eq!(forgotten["backup_id"], m["id"]);
        let listed = json(&["list", "--store", store_s, "--json"]);
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(listed[0]["id"], m["id"]);
        ok(&["verify", m["id"].as_str().unwrap(), "--store", store_s]);
        let (ok_, h) = health(store_s);
        assert!(ok_, "{h}");
        assert_eq!(statuses(&h), [(format!("default/{db}"), "healthy".into())]);

        // --tenant: each tenant's record is forgotten in that tenant only.
        fails(&with_pg_bin(
            &[
                "backup",
                "--pg",
                &server.url(&typo),
                "--store",
                store_s,
                "--tenant",
                "acme",
            ],
            &bin,
        ));
        let err = fails(&["forget-source", &typo, "--store", store_s]);
        assert!(err.contains("nothing to forget"), "{err}");
        ok(&[
            "forget-source",
            &typo,
            "--store",
            store_s,
            "--tenant",
            "acme",
        ]);
        assert!(health(store_s).0);

        // A mistyped store is an error, and is not created.
        let nostore = dir.path().join("nostore");
        fails(&["forget-source", &typo, "--store", nostore.to_str().unwrap()]);
        assert!(!nostore.exists());

        // The help says what it removes and what it keeps.
        let help = ok(&["forget-source", "--help"]);
        assert!(
            help.contains("last-run.json") && help.contains("never deleted"),
            "{help}"
        );

        server.drop_database(&db).await.unwrap();
    }
}
