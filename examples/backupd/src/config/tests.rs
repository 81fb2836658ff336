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
    assert_eq!((pg.retention_days, pg.max_backups), (Some(15), Some(10)));
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
