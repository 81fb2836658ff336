//! Tests of `config.yaml` parsing and validation.

use super::*;
use std::collections::HashMap;
use std::time::Duration;

const SEED: &str = r#"
global: {schedule: "0 2 * * *", compression: gzip, retention_days: 15,
         max_backups: 10, max_parallel_jobs: 4}
package-conf: {schedule: "0 5 * * 1", compression: zip, retention_days: 30,
               max_backups: 4}
databases:
  - {id: pg_ventas_prod, name: "PostgreSQL Ventas", engine: postgres,
     host: postgres-db, port: 5432, username_var: POSTGRES_USER,
     password_var: POSTGRES_PASSWORD, database_name: ventasdb,
     schedule: "0 3 * * *", package: true}
  - {id: mongo_logs_dev, name: "MongoDB Logs", engine: mongodb,
     host: mongo-db, port: 27017, database_name: logsdb}
storage: {type: fs, path: ./backups}
auth:
  tokens:
    - {token_var: BACKUPD_ADMIN_TOKEN, role: admin}
    - {token_var: BACKUPD_READER_TOKEN, role: reader}
    - {token_var: TENANT_A_TOKEN, role: admin, tenant: a}
"#;

fn env() -> HashMap<&'static str, &'static str> {
    HashMap::from([
        ("POSTGRES_USER", "ventas"),
        ("POSTGRES_PASSWORD", "s3cret-pw"),
        ("BACKUPD_ADMIN_TOKEN", "admin-token-0123456789"),
        ("BACKUPD_READER_TOKEN", "reader-token-0123456789"),
        ("TENANT_A_TOKEN", "tenant-a-token-0123456789"),
    ])
}

fn load_with(text: &str, vars: &HashMap<&str, &str>) -> Result<Config, Problems> {
    let lookup = |k: &str| vars.get(k).map(|v| v.to_string());
    load(text, std::path::Path::new("/etc/backupd"), &lookup)
}

#[test]
fn the_seed_config_is_accepted_as_written() {
    let c = load_with(SEED, &env()).unwrap();
    assert_eq!(c.max_parallel_jobs, 4);
    assert_eq!(c.databases.len(), 2);
    let pg = &c.databases[0];
    assert_eq!(pg.schedule.to_string(), "0 3 * * *");
    assert_eq!(pg.compression.to_string(), "gzip:6");
    // The seed spells retention the older way (`retention_days`, `max_backups`).
    assert_eq!(
        pg.retention,
        Retention {
            keep_last: Some(10),
            max_age: Some(Duration::from_secs(15 * 86_400))
        }
    );
    assert_eq!(pg.password.as_ref().unwrap().expose(), "s3cret-pw");
    assert!(pg.package);
    let mongo = &c.databases[1];
    assert_eq!(mongo.schedule.to_string(), "0 2 * * *", "global default");
    assert_eq!(mongo.engine, Engine::Mongodb);
    assert_eq!(mongo.tenant, "default");
    assert!(matches!(&c.storage, StorageConfig::Fs(p) if p.ends_with("backups")));
    assert_eq!(c.tokens.len(), 3);
    assert_eq!(c.tokens[2].tenant.as_deref(), Some("a"));
    let pc = c.packages.unwrap();
    assert_eq!(pc.format, crate::packages::PackageFormat::Zip);
    assert!(!format!("{:?}", c.databases).contains("s3cret-pw"));
}

#[test]
fn replicas_default_to_many_and_refuse_other_values() {
    let c = load_with(SEED, &env()).unwrap();
    assert_eq!(c.replicas, Replicas::Many, "leases unless told otherwise");
    let c = load_with(&format!("{SEED}replicas: one\n"), &env()).unwrap();
    assert_eq!(c.replicas, Replicas::One);
    let problems = load_with(&format!("{SEED}replicas: two\n"), &env()).unwrap_err();
    assert!(
        problems.0.iter().any(|p| p.contains("replicas")),
        "{problems:?}"
    );
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let text = SEED
        .replace(r#"schedule: "0 3 * * *""#, r#"schedule: "0 25 * * *""#)
        .replace("engine: mongodb", "engine: oracle")
        .replace("compression: gzip", "compression: brotli");
    let mut vars = env();
    vars.remove("POSTGRES_PASSWORD");
    let problems = load_with(&text, &vars).unwrap_err().0;
    let want = [
        r#"databases[0].schedule: invalid cron "0 25 * * *": hour out of range"#,
        "databases[0].password_var: environment variable POSTGRES_PASSWORD is not set",
        r#"databases[1].engine: unknown engine "oracle""#,
        r#"global.compression: unknown compression "brotli""#,
    ];
    for w in want {
        assert!(
            problems.iter().any(|p| p.contains(w)),
            "missing {w:?} in {problems:#?}"
        );
    }
}

#[test]
fn presets_and_storage_forms() {
    let text = r#"
timezone: Europe/Madrid
storage: {type: s3, bucket: b, prefix: p, endpoint: "http://127.0.0.1:9000", region: us-east-1, access_key_var: AK, secret_key_var: SK}
auth: {tokens: [{token_var: T, role: admin}]}
databases:
  - {id: a, engine: postgres, database_name: x, schedule: {preset: daily, time: "03:00"}}
  - {id: b, engine: postgres, database_name: x, schedule: {preset: every_12h, base: "15:00"}}
  - {id: c, engine: postgres, database_name: x, schedule: {preset: weekly, weekday: mon, time: "04:00"}}
  - {id: d, engine: postgres, database_name: x, schedule: {preset: monthly, day: 1, time: "05:00"}}
  - {id: e, engine: postgres, database_name: x, schedule: {preset: scheduled, at: "2030-01-01T03:00"}}
  - {id: f, engine: postgres, database_name: x, schedule: disabled}
  - {id: g, engine: postgres, database_name: y, schedule: "every_6h 15:00", tenant: a}
"#;
    let vars = HashMap::from([
        ("AK", "ak"),
        ("SK", "sk-secret"),
        ("T", "token-0123456789abcdef"),
    ]);
    let c = load_with(text, &vars).unwrap();
    let schedules: Vec<String> = c.databases.iter().map(|d| d.schedule.to_string()).collect();
    assert_eq!(
        schedules,
        [
            "0 3 * * *",
            "0 3,15 * * *",
            "0 4 * * 1",
            "0 5 1 * *",
            "once 2030-01-01T03:00",
            "disabled",
            "0 3,9,15,21 * * *"
        ]
    );
    assert_eq!(c.tz.name(), "Europe/Madrid");
    assert!(
        matches!(&c.storage, StorageConfig::S3 { bucket, path_style: true, .. } if bucket == "b")
    );
    assert!(!format!("{:?}", c.storage).contains("sk-secret"));
    // Unknown fields and short tokens are refused.
    let bad = text.replace(
        "timezone: Europe/Madrid",
        "timezone: Mars/Olympus\nbogus: 1",
    );
    assert!(load_with(&bad, &vars).is_err());
    let short = HashMap::from([("AK", "ak"), ("SK", "sk"), ("T", "short")]);
    let problems = load_with(text, &short).unwrap_err().0;
    assert!(
        problems.iter().any(|p| p.contains("shorter than 16")),
        "{problems:?}"
    );
}

#[test]
fn durations_use_checked_arithmetic() {
    assert_eq!(parse_duration("90m").unwrap(), Duration::from_secs(5400));
    assert_eq!(parse_duration("100y").unwrap().as_secs(), MAX_DURATION_SECS);
    for bad in [
        "213503982334602d",
        "18446744073709551616s",
        "101y",
        "0h",
        "h",
        "-1d",
        "1.5h",
        "1 d",
        "1D",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn numbers_out_of_range_name_their_field() {
    let cases = [
        (
            "max_parallel_jobs: 4}",
            "max_parallel_jobs: 0}",
            "global.max_parallel_jobs",
        ),
        (
            "max_parallel_jobs: 4}",
            "max_parallel_jobs: 100000}",
            "global.max_parallel_jobs",
        ),
        (
            "retention_days: 15,",
            "retention_days: 0,",
            "global.retention_days",
        ),
        ("max_backups: 10,", "max_backups: 0,", "global.max_backups"),
        (
            "retention_days: 30,",
            "retention_days: 4000000000,",
            "package-conf.retention_days",
        ),
        ("port: 5432,", "port: 0,", "databases[0].port"),
        (
            "database_name: ventasdb,",
            "database_name: template1,",
            "databases[0].database_name",
        ),
        (
            "database_name: logsdb}",
            "database_name: Admin}",
            "databases[1].database_name",
        ),
        (
            "database_name: logsdb}",
            "database_name: LOCAL}",
            "databases[1].database_name",
        ),
        (
            "package: true}",
            "package: true, stale_after: 213503982334602d}",
            "databases[0].stale_after",
        ),
        (
            "package: true}",
            "package: true, sslmode: sometimes}",
            "databases[0].sslmode",
        ),
    ];
    for (from, to, field) in cases {
        let text = SEED.replacen(from, to, 1);
        assert_ne!(text, SEED, "{from}");
        let problems = load_with(&text, &env()).unwrap_err().0;
        assert!(
            problems.iter().any(|p| p.starts_with(field)),
            "{field} missing in {problems:?}"
        );
    }
    let text = format!("{SEED}shutdown_timeout_seconds: 18446744073709551615\n");
    let problems = load_with(&text, &env()).unwrap_err().0;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("shutdown_timeout_seconds"))
    );
}

#[test]
fn tenants_metrics_and_one_owner_per_database() {
    let text = format!(
        "{SEED}tenants:\n  a: {{allowed_hosts: [\"db.internal:5432\", \"[fd00::1]\"], allowed_databases: [\"a_*\"]}}\nmetrics: {{token_var: M}}\nmetrics_listen: 127.0.0.1:9100\n"
    );
    let mut vars = env();
    vars.insert("M", "metrics-token-0123456789");
    let c = load_with(&text, &vars).unwrap();
    let a = &c.tenants["a"];
    assert!(a.allows_host("DB.internal", 5432));
    assert!(!a.allows_host("db.internal", 5433));
    assert!(a.allows_database("a_1") && !a.allows_database("b_1"));
    assert_eq!(c.metrics_listen.as_deref(), Some("127.0.0.1:9100"));
    assert!(!format!("{:?}", c).contains("metrics-token-0123456789"));
    // The metrics token must not double as an API token.
    vars.insert("M", "admin-token-0123456789");
    assert!(load_with(&text, &vars).is_err());
    // One database, two tenants: refused, whatever the host spelling.
    let text = SEED.replace(
            "host: mongo-db, port: 27017, database_name: logsdb}",
            "host: mongo-db, port: 27017, database_name: logsdb}\n  - {id: other, engine: mongodb, host: MONGO-DB., database_name: LogsDB, tenant: b}",
        );
    let problems = load_with(&text, &env()).unwrap_err().0;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("databases[2]") && p.contains("one tenant")),
        "{problems:?}"
    );
    // Same tenant, same database: allowed (two schedules of one database).
    let text = SEED.replace(
            "host: mongo-db, port: 27017, database_name: logsdb}",
            "host: mongo-db, port: 27017, database_name: logsdb}\n  - {id: other, engine: mongodb, host: mongo-db, database_name: logsdb}",
        );
    assert!(load_with(&text, &env()).is_ok());
}

/// The README's one-command configuration, with its two variables.
const LOCAL: &str = include_str!("../../config.local.yaml");

#[test]
fn the_local_config_takes_the_whole_url_from_one_variable() {
    let vars = HashMap::from([
        (
            "SALES_DATABASE_URL",
            "postgres://app:p%40ss@localhost:6543/sales?sslmode=disable",
        ),
        ("BACKUPD_ADMIN_TOKEN", "admin-token-0123456789"),
    ]);
    let c = load_with(LOCAL, &vars).unwrap();
    let db = &c.databases[0];
    assert_eq!(
        (db.host.as_str(), db.port, db.database_name.as_str()),
        ("localhost", 6543, "sales")
    );
    assert_eq!(db.username.as_deref(), Some("app"));
    assert_eq!(db.password.as_ref().unwrap().expose(), "p@ss");
    assert_eq!(db.sslmode.as_deref(), Some("disable"));
    assert_eq!(db.url_var.as_deref(), Some("SALES_DATABASE_URL"));
    assert!(!format!("{c:?}").contains("p@ss") && !format!("{c:?}").contains("p%40ss"));
    let view = serde_json::to_string(&DatabaseView::from(db)).unwrap();
    assert!(
        view.contains("SALES_DATABASE_URL") && !view.contains("p@ss"),
        "{view}"
    );
}

#[test]
fn a_url_var_is_refused_unless_it_says_everything_exactly() {
    let admin = ("BACKUPD_ADMIN_TOKEN", "admin-token-0123456789");
    let refused = |url: Option<&'static str>, entry_extra: &str, expect: &str| {
        let mut vars = HashMap::from([admin]);
        if let Some(u) = url {
            vars.insert("SALES_DATABASE_URL", u);
        }
        let text = match entry_extra.strip_prefix(", engine: ") {
            Some(engine) => LOCAL.replace("engine: postgres", &format!("engine: {engine}")),
            None => LOCAL.replace(
                "url_var: SALES_DATABASE_URL}",
                &format!("url_var: SALES_DATABASE_URL{entry_extra}}}"),
            ),
        };
        let problems = load_with(&text, &vars).unwrap_err();
        let all = problems.0.join("\n");
        assert!(all.contains(expect), "expected {expect:?} in:\n{all}");
        assert!(all.contains("databases[0]"), "{all}");
        assert!(!all.contains("hunter2"), "a password in an error: {all}");
    };
    refused(None, "", "SALES_DATABASE_URL is not set");
    refused(
        Some("postgres://app:hunter2@db/sales"),
        ", host: other",
        "remove host or url_var",
    );
    refused(
        Some("postgres://app:hunter2@db/sales"),
        ", password_var: X",
        "remove password_var or url_var",
    );
    refused(
        Some("postgres://:hunter2@db/sales"),
        "",
        "must name the user",
    );
    refused(
        Some("postgres://app:hunter2@db"),
        "",
        "must name the database",
    );
    refused(
        Some("postgres://app:hunter2@db/sales?connect_timeout=3"),
        "",
        "\"connect_timeout\" is not supported here",
    );
    refused(
        Some("mysql://app:hunter2@db/sales"),
        "",
        "scheme must be postgres",
    );
    refused(
        Some("postgres://app:hunter2@db/sales"),
        ", engine: mongodb",
        "url_var is supported for postgres entries",
    );
    // Without url_var the database name is still required.
    let text = LOCAL.replace("url_var: SALES_DATABASE_URL}", "host: db, username_var: U}");
    let problems = load_with(&text, &HashMap::from([admin, ("U", "app")])).unwrap_err();
    assert!(
        problems
            .0
            .iter()
            .any(|p| p.contains("databases[0].database_name: required")),
        "{problems:?}"
    );
}

#[test]
fn schedule_mistakes_name_the_field_and_the_accepted_forms() {
    let base = "storage: {type: fs, path: ./b}\nauth: {tokens: [{token_var: BACKUPD_ADMIN_TOKEN, role: admin}]}\ndatabases:\n";
    let entry = |schedule: &str| {
        format!("{base}  - {{id: a, engine: postgres, database_name: x, schedule: {schedule}}}\n")
    };
    let cases = [
        (
            r#"{preset: every_12h, time: "15:00"}"#,
            "databases[0].schedule: every_12h has no time of day: give `base`",
        ),
        (
            r#"{preset: dayly, time: "03:00"}"#,
            r#"databases[0].schedule: unknown preset "dayly"; expected a schedule"#,
        ),
        (
            r#"{preset: daily}"#,
            r#"databases[0].schedule: daily needs `time`; expected e.g. {preset: daily, time: "03:00"}"#,
        ),
        (
            r#"{preset: weekly, time: "04:00"}"#,
            "databases[0].schedule: weekly needs `weekday`",
        ),
        (
            r#"{preset: daily, time: "03:00", day: 3}"#,
            "databases[0].schedule: daily takes no `day`",
        ),
        (
            r#""daily""#,
            "databases[0].schedule: invalid schedule \"daily\": expected daily HH:MM (e.g. daily 03:00)",
        ),
        (
            r#""dayly 03:00""#,
            r#"databases[0].schedule: unknown schedule "dayly"; expected a crontab line"#,
        ),
        (
            "3",
            "databases[0].schedule: invalid type: integer `3`, expected a schedule: a string",
        ),
        (
            r#"{preset: daily, tme: "03:00"}"#,
            "databases[0].schedule: unknown field `tme`",
        ),
    ];
    for (schedule, want) in cases {
        let err = load_with(&entry(schedule), &env()).unwrap_err().to_string();
        assert!(err.contains(want), "{schedule}: want {want:?} in:\n{err}");
        assert!(!err.contains("untagged"), "{schedule}: {err}");
        assert!(
            !err.contains("wrong number of arguments"),
            "{schedule}: {err}"
        );
    }
    let ok = [
        (r#"{preset: every_12h, base: "15:00"}"#, "0 3,15 * * *"),
        (r#"{preset: daily, time: "03:00"}"#, "0 3 * * *"),
        (
            r#"{preset: weekly, weekday: mon, time: "04:00"}"#,
            "0 4 * * 1",
        ),
        (r#"{preset: monthly, day: 1, time: "05:00"}"#, "0 5 1 * *"),
        (
            r#"{preset: once, at: "2026-01-01T03:00"}"#,
            "once 2026-01-01T03:00",
        ),
        (r#"{preset: disabled}"#, "disabled"),
    ];
    for (schedule, shown) in ok {
        let c = load_with(&entry(schedule), &env()).unwrap_or_else(|e| panic!("{schedule}: {e}"));
        assert_eq!(c.databases[0].schedule.to_string(), shown, "{schedule}");
    }
}

#[test]
fn retention_names_and_their_older_spellings() {
    let text = |global: &str, db: &str| {
        format!(
            "global: {{{global}}}\nstorage: {{type: fs, path: ./b}}\nauth: {{tokens: [{{token_var: BACKUPD_ADMIN_TOKEN, role: admin}}]}}\ndatabases:\n  - {{id: a, engine: postgres, database_name: x{db}}}\n"
        )
    };
    let week = Some(Duration::from_secs(7 * 86_400));
    let cases = [
        ("keep_last: 3, max_age: 7d", "", Some(3), week),
        ("max_backups: 3, retention_days: 7", "", Some(3), week),
        (
            "keep_last: 9",
            ", keep_last: 3, max_age: 36h",
            Some(3),
            Some(Duration::from_secs(36 * 3600)),
        ),
        ("", ", max_backups: 3, retention_days: 7", Some(3), week),
    ];
    for (global, db, keep_last, max_age) in cases {
        let c =
            load_with(&text(global, db), &env()).unwrap_or_else(|e| panic!("{global}{db}: {e}"));
        assert_eq!(
            c.databases[0].retention,
            Retention { keep_last, max_age },
            "{global}{db}"
        );
        let view = serde_json::to_value(DatabaseView::from(&c.databases[0])).unwrap();
        assert_eq!(view["keep_last"], serde_json::json!(keep_last), "{view}");
        assert_eq!(view["max_backups"], serde_json::json!(keep_last), "{view}");
        assert_eq!(view["stale_after"], "1d", "{view}");
        assert_eq!(view["stale_after_hours"], 24.0, "{view}");
        assert!(view.get("password").is_none(), "{view}");
    }
    for (global, db, want) in [
        (
            "keep_last: 3, max_backups: 3",
            "",
            "global.max_backups: max_backups is the older spelling of keep_last; give only keep_last",
        ),
        (
            "",
            ", max_age: 7d, retention_days: 7",
            "databases[0].retention_days: retention_days is the older spelling of max_age; give only max_age",
        ),
        ("max_age: 7", "", r#"global.max_age: invalid duration "7""#),
        (
            "",
            ", keep_last: 0",
            "databases[0].keep_last: 0 is out of range",
        ),
    ] {
        let err = load_with(&text(global, db), &env())
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{global}{db}: want {want:?} in:\n{err}");
    }
}

/// `pg_bin` names the client tools of one entry: an absolute directory
/// with pg_dump, pg_restore and psql, for PostgreSQL entries only.
#[test]
fn pg_bin_is_an_absolute_directory_of_postgres_tools() {
    let tools = tempfile::tempdir().unwrap();
    for tool in ["pg_dump", "pg_restore", "psql"] {
        std::fs::write(tools.path().join(tool), "").unwrap();
    }
    let with = |value: &str| {
        SEED.replacen(
            "database_name: ventasdb,",
            &format!("database_name: ventasdb, pg_bin: {value:?},"),
            1,
        )
    };
    let good = load_with(&with(tools.path().to_str().unwrap()), &env()).unwrap();
    assert_eq!(good.databases[0].pg_bin.as_deref(), Some(tools.path()));
    assert!(
        good.databases[1].pg_bin.is_none(),
        "the other entries keep discovery"
    );

    let empty = tempfile::tempdir().unwrap();
    for (value, says) in [
        ("usr/lib/postgresql/18/bin", "is not an absolute path"),
        (empty.path().to_str().unwrap(), "has no pg_dump"),
    ] {
        let problems = load_with(&with(value), &env()).unwrap_err().0;
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("databases[0].pg_bin") && p.contains(says)),
            "{value}: {problems:?}"
        );
    }
    // The database of a physical entry is only where it connects: a system
    // database is fine there, not for a logical entry.
    let on = |fields: &str| SEED.replacen("database_name: ventasdb,", fields, 1);
    let c = load_with(&on("database_name: postgres, mode: physical,"), &env()).unwrap();
    assert!(c.databases[0].check_database_name().is_ok());
    let problems = load_with(&on("database_name: postgres,"), &env())
        .unwrap_err()
        .0;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("databases[0].database_name") && p.contains("system")),
        "{problems:?}"
    );
    let mut logical = c.databases[0].clone();
    logical.mode = BackupMode::Logical;
    assert!(logical.check_database_name().is_err());
    let mongo = SEED.replacen(
        "database_name: logsdb}",
        &format!("database_name: logsdb, pg_bin: {:?}}}", tools.path()),
        1,
    );
    let problems = load_with(&mongo, &env()).unwrap_err().0;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("databases[1].pg_bin") && p.contains("postgres entries")),
        "{problems:?}"
    );
}

/// `mode: physical` is for PostgreSQL entries, `wal_archiving` for
/// physical ones, `slot` for archiving ones; the slot defaults from the id.
#[test]
fn physical_entries_and_wal_archiving() {
    let entry = |fields: &str| {
        SEED.replacen(
            "database_name: ventasdb,",
            &format!("database_name: ventasdb, {fields},"),
            1,
        )
    };
    let c = load_with(&entry("mode: physical, wal_archiving: true"), &env()).unwrap();
    let db = &c.databases[0];
    assert_eq!(db.mode, BackupMode::Physical);
    assert_eq!(db.wal_slot.as_deref(), Some("backupd_pg_ventas_prod"));
    assert_eq!(c.databases[1].mode, BackupMode::Logical);
    assert!(c.wal_spool.ends_with("wal-spool"));
    let c = load_with(
        &entry("mode: physical, wal_archiving: true, slot: ventas_wal"),
        &env(),
    )
    .unwrap();
    assert_eq!(c.databases[0].wal_slot.as_deref(), Some("ventas_wal"));

    for (fields, field, says) in [
        ("mode: physcal", "mode", "unknown mode"),
        ("wal_archiving: true", "wal_archiving", "mode: physical"),
        ("mode: physical, slot: x", "slot", "wal_archiving"),
        (
            "mode: physical, wal_archiving: true, slot: Bad-Slot",
            "slot",
            "not a replication slot name",
        ),
    ] {
        let problems = load_with(&entry(fields), &env()).unwrap_err().0;
        let at = format!("databases[0].{field}");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&at) && p.contains(says)),
            "{fields}: {problems:?}"
        );
    }
    let mongo = SEED.replacen(
        "database_name: logsdb}",
        "database_name: logsdb, mode: physical}",
        1,
    );
    let problems = load_with(&mongo, &env()).unwrap_err().0;
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("databases[1].mode") && p.contains("postgres entries")),
        "{problems:?}"
    );
}
