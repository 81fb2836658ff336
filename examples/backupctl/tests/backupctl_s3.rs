//! `backupctl` with `--store s3://bucket/prefix`: the real binary, a real
//! PostgreSQL (throwaway cluster or `BACKUP_TEST_PG_URL`) and an
//! S3-compatible server (a local `s3s-fs` or `BACKUP_TEST_S3_ENDPOINT`).
//! Credentials reach the binary only through `AWS_*` variables.
//!
//! The round trip runs on both majors of the test matrix
//! (`<test>::postgres_15`, `<test>::postgres_18` with `--pg-bin`); the
//! wrong-credentials test fails at the store, before any PostgreSQL
//! call, and runs once.

use std::process::Output;

use backup_postgres::TestServer;
use backup_store_s3::S3TestServer;
use serde_json::Value;

mod support;
use support::*;

struct Cli<'a> {
    s3: &'a S3TestServer,
    secret: String,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Output {
        let mut command = backupctl_command();
        // Only what the test sets: no stray AWS configuration from the
        // environment (and no instance-metadata lookups).
        for (name, _) in std::env::vars() {
            if name.starts_with("AWS_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .env("AWS_ACCESS_KEY_ID", self.s3.access_key_id())
            .env("AWS_SECRET_ACCESS_KEY", &self.secret)
            .env("AWS_ENDPOINT_URL", self.s3.endpoint())
            .output()
            .expect("run backupctl")
    }

    fn ok(&self, args: &[&str]) -> String {
        succeeded(args, self.run(args))
    }

    fn fails(&self, args: &[&str]) -> String {
        failed(args, self.run(args))
    }
}

backup_postgres::each_major! {
    async fn backup_list_verify_restore_delete_on_s3(pg) {
        let bin = pg_bin(pg);
        let s3 = S3TestServer::from_env_or_start()
            .unwrap_or_else(|e| panic!("no S3 server for the tests: {e}"));
        let cli = Cli {
            s3: &s3,
            secret: s3.secret_access_key().expose().to_string(),
        };
        let db = pg.create_database("cli_s3").await.unwrap();
        pg.pgbench_init(&db, 1).await.unwrap();
        let store = format!("s3://{}/cli-{:08x}", s3.bucket(), rand_suffix());

        let m: Value = serde_json::from_str(&cli.ok(&with_pg_bin(
            &[
                "backup",
                "--pg",
                &pg.url(&db),
                "--store",
                &store,
                "--tenant",
                "acme",
                "--json",
            ],
            &bin,
        )))
        .unwrap();
        let id = m["id"].as_str().unwrap().to_string();

        let listed: Value =
            serde_json::from_str(&cli.ok(&["list", "--store", &store, "--json"])).unwrap();
        assert_eq!(listed.as_array().unwrap().len(), 1);
        assert_eq!(listed[0]["id"], id.as_str());

        let verified = cli.ok(&["verify", &id, "--store", &store]);
        assert!(
            verified.contains(m["stored"]["sha256"].as_str().unwrap()),
            "{verified}"
        );

        let target = format!("{db}_restored");
        cli.ok(&with_pg_bin(
            &[
                "restore",
                &id,
                "--store",
                &store,
                "--pg",
                &pg.url(&target),
                "--create",
            ],
            &bin,
        ));
        pg.assert_same_data(&db, &target).await;

        // Flags win over the environment: a wrong endpoint flag is used.
        let err = cli.fails(&["list", "--store", &store, "--s3-endpoint", "ftp://nowhere"]);
        assert!(err.contains("invalid S3 endpoint"), "{err}");

        cli.ok(&["delete", &id, "--store", &store]);
        let listed: Value =
            serde_json::from_str(&cli.ok(&["list", "--store", &store, "--json"])).unwrap();
        assert!(listed.as_array().unwrap().is_empty());
        cli.ok(&["sweep", "--store", &store, "--grace-minutes", "0"]);

        pg.drop_database(&db).await.unwrap();
        pg.drop_database(&target).await.unwrap();
    }
}

#[tokio::test]
async fn wrong_s3_credentials_fail_before_the_dump() {
    let pg = TestServer::shared();
    let s3 = S3TestServer::from_env_or_start()
        .unwrap_or_else(|e| panic!("no S3 server for the tests: {e}"));
    let cli = Cli {
        s3: &s3,
        secret: "definitely-wrong-secret-5e1f".into(),
    };
    let store = format!("s3://{}/cli-{:08x}", s3.bucket(), rand_suffix());
    // The database does not even exist: the store is checked first.
    let err = cli.fails(&[
        "backup",
        "--pg",
        &pg.url("no_such_database_for_s3_test"),
        "--store",
        &store,
    ]);
    assert!(err.contains("access denied"), "{err}");
    assert!(err.contains("AWS_SECRET_ACCESS_KEY"), "{err}");
    assert!(!err.contains(&cli.secret), "secret leaked: {err}");

    let err = cli.fails(&["backup", "--pg", &pg.url("x"), "--store", "s3://"]);
    assert!(err.contains("bucket name is missing"), "{err}");
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id()
}
