//! Tests of `mysql` and `sqlite` database entries.

use super::*;

const BASE: &str = r#"
storage: {type: fs, path: ./backups}
auth: {tokens: [{token_var: ADMIN_TOKEN, role: admin}]}
databases:
"#;

fn load_entries(entries: &str) -> Result<Config, Problems> {
    let lookup = |k: &str| match k {
        "ADMIN_TOKEN" => Some("admin-token-0123456789".to_string()),
        "DB_USER" => Some("backup".to_string()),
        _ => None,
    };
    load(
        &format!("{BASE}{entries}"),
        std::path::Path::new("/etc/backupd"),
        &lookup,
    )
}

/// The problems of loading `entries`, which must fail.
fn problems(entries: &str) -> Vec<String> {
    load_entries(entries).expect_err(entries).0
}

fn says(problems: &[String], at: &str, text: &str) -> bool {
    problems
        .iter()
        .any(|p| p.starts_with(at) && p.contains(text))
}

#[test]
fn a_sqlite_entry_is_placed_by_its_absolute_path_alone() {
    let config =
        load_entries("  - {id: app, engine: sqlite, path: /var/lib/app/app.db}\n").unwrap();
    let app = &config.databases[0];
    assert_eq!(app.engine, Engine::Sqlite);
    assert_eq!(app.database_name, "app.db");
    assert_eq!(app.host, "/var/lib/app");
    assert_eq!(
        app.path.as_deref(),
        Some(std::path::Path::new("/var/lib/app/app.db"))
    );

    for (path, text) in [
        ("app.db", "absolute path"),
        ("/var/lib/../etc/app.db", "absolute path"),
        ("/var/lib/./app.db", "absolute path"),
        ("/var//lib/app.db", "absolute path"),
        ("/var/lib/app/.hidden.db", "plain SQLite file name"),
        ("/var/lib/app/app.db-wal", "plain SQLite file name"),
        ("/", "must name a file"),
    ] {
        let found = problems(&format!(
            "  - {{id: app, engine: sqlite, path: {path:?}}}\n"
        ));
        assert!(says(&found, "databases[0].path", text), "{path}: {found:?}");
    }
    let found = problems("  - {id: app, engine: sqlite}\n");
    assert!(says(&found, "databases[0].path", "required"), "{found:?}");
    let found = problems(
        "  - {id: app, engine: sqlite, path: /d/app.db, host: h, port: 1, database_name: x, password_var: P}\n",
    );
    for field in ["host", "port", "database_name", "password_var"] {
        assert!(
            says(&found, &format!("databases[0].{field}"), "path alone"),
            "{field}: {found:?}"
        );
    }
    let found = problems("  - {id: pg, engine: postgres, database_name: shop, path: /d/app.db}\n");
    assert!(
        says(&found, "databases[0].path", "sqlite entries"),
        "{found:?}"
    );
    let found = problems("  - {id: app, engine: sqlite, path: /d/app.db, mode: physical}\n");
    assert!(!found.is_empty());
}

#[test]
fn a_mysql_entry_defaults_to_port_3306_and_refuses_sslmode_and_system_names() {
    let config = load_entries(
        "  - {id: shop, engine: mariadb, host: db, database_name: shop, username_var: DB_USER}\n",
    )
    .unwrap();
    let shop = &config.databases[0];
    assert_eq!((shop.engine, shop.port), (Engine::Mysql, 3306));
    assert_eq!(shop.username.as_deref(), Some("backup"));

    let found = problems(
        "  - {id: shop, engine: mysql, host: db, database_name: shop, sslmode: require}\n",
    );
    assert!(
        says(&found, "databases[0].sslmode", "postgres entries"),
        "{found:?}"
    );
    for name in [
        "mysql",
        "Performance_Schema",
        "_backup_staging_01",
        "a.b",
        "a/b",
    ] {
        let found = problems(&format!(
            "  - {{id: shop, engine: mysql, host: db, database_name: {name:?}}}\n"
        ));
        assert!(
            says(&found, "databases[0].database_name", ""),
            "{name}: {found:?}"
        );
    }
    let found =
        problems("  - {id: shop, engine: mysql, host: db, database_name: shop, url_var: U}\n");
    assert!(!found.is_empty());
}
