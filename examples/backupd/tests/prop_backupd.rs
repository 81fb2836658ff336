//! Property tests of `backupd`'s parsers (fuzz targets: `backupd_config`,
//! `api_bodies`): `config.yaml` text gives a list of one-line problems or a
//! configuration the daemon can use as it is (counts and durations near
//! their types' limits are refused, not wrapped or saturated); every
//! request body gives a 4xx error or a value; a database registered or
//! changed by a tenant-bound token always stays in that token's tenant.

use std::path::Path;
use std::time::Instant;

use backupd::config::{Config, Problems, load};
use backupd::http::{ApiError, fuzzing};
use proptest::prelude::*;
use serde_json::{Value, json};

fn env(name: &str) -> Option<String> {
    match name {
        "EMPTY" => Some(String::new()),
        "SHORT" => Some("short".into()),
        "TZ" => None,
        other => Some(format!("{other}-0123456789abcdef")),
    }
}

fn load_text(text: &str) -> Result<Config, Problems> {
    load(text, Path::new("/etc/backupd"), &env)
}

/// What the daemon does with the values: none of this may panic or wrap.
fn check_usable(config: &Config) {
    assert!(config.max_parallel_jobs >= 1);
    assert!(
        config.max_parallel_jobs <= tokio::sync::Semaphore::MAX_PERMITS,
        "max_parallel_jobs {} would panic the scheduler's semaphore",
        config.max_parallel_jobs
    );
    assert!(
        Instant::now()
            .checked_add(config.shutdown_timeout)
            .is_some()
    );
    assert!(chrono::Duration::from_std(config.shutdown_timeout).is_ok());
    assert!(chrono::Duration::from_std(config.stale_after).is_ok());
    for db in &config.databases {
        assert!(chrono::Duration::from_std(db.stale_after).is_ok());
        assert!(backup_core::key::validate_id(&db.id).is_ok());
        assert!(backup_core::key::validate_id(&db.tenant).is_ok());
        assert!(!db.id.starts_with('_') && !db.tenant.starts_with('_'));
    }
}

fn check(text: &str) -> Result<Config, Problems> {
    let result = load_text(text);
    match &result {
        Ok(config) => check_usable(config),
        Err(problems) => {
            assert!(!problems.0.is_empty());
            for p in &problems.0 {
                assert!(!p.contains('\n'), "multi-line problem: {p:?}");
            }
        }
    }
    result
}

const BASE: &str = r#"
timezone: UTC
global: {schedule: "0 2 * * *", compression: gzip, retention_days: 15, max_backups: 10, max_parallel_jobs: 4, stale_after: 24h}
storage: {type: fs, path: ./backups}
auth:
  tokens:
    - {token_var: ADMIN, role: admin}
    - {token_var: TENANT_A, role: admin, tenant: a}
databases:
  - {id: pg_main, engine: postgres, host: db, port: 5432, database_name: app, password_var: PGPASS, schedule: "0 3 * * *", stale_after: 36h}
"#;

fn near_limit() -> impl Strategy<Value = String> {
    let limits: Vec<u128> = vec![
        u64::MAX as u128,
        u64::MAX as u128 + 1,
        i64::MAX as u128,
        (i64::MAX / 1000) as u128,
        (usize::MAX >> 3) as u128,
        u32::MAX as u128,
        u32::MAX as u128 + 1,
        u16::MAX as u128 + 1,
        0,
        1,
    ];
    (prop::sample::select(limits), -2i64..=2)
        .prop_map(|(l, d)| l.saturating_add_signed(d as i128).to_string())
}

fn duration_text() -> impl Strategy<Value = String> {
    (
        near_limit(),
        prop::sample::select(vec!["s", "m", "h", "d", "w", "y", ""]),
    )
        .prop_map(|(n, u)| format!("{n}{u}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn numbers_near_their_limits_are_refused_or_usable(
        jobs in near_limit(),
        shutdown in near_limit(),
        stale in duration_text(),
        db_stale in duration_text(),
        retention in near_limit(),
        max_backups in near_limit(),
        port in near_limit(),
    ) {
        let text = BASE
            .replace("max_parallel_jobs: 4", &format!("max_parallel_jobs: {jobs}"))
            .replace("stale_after: 24h", &format!("stale_after: {stale}"))
            .replace("stale_after: 36h", &format!("stale_after: {db_stale}"))
            .replace("retention_days: 15", &format!("retention_days: {retention}"))
            .replace("max_backups: 10", &format!("max_backups: {max_backups}"))
            .replace("port: 5432", &format!("port: {port}"))
            + &format!("shutdown_timeout_seconds: {shutdown}\n");
        let _ = check(&text);
    }

    #[test]
    fn arbitrary_yaml_never_panics(text in prop_oneof![
        any::<String>(),
        // The base file with one byte changed, removed or repeated.
        (any::<prop::sample::Index>(), any::<char>(), 0u8..3).prop_map(|(at, c, how)| {
            let mut s: Vec<char> = BASE.chars().collect();
            let i = at.index(s.len());
            match how {
                0 => s[i] = c,
                1 => { s.remove(i); }
                _ => s.insert(i, s[i]),
            }
            s.into_iter().collect()
        }),
    ]) {
        let _ = check(&text);
    }
}

#[test]
fn the_base_config_loads() {
    let config = check(BASE).unwrap();
    assert_eq!(config.databases.len(), 1);
}

#[test]
fn regressions() {
    // Accepted before the fixes: the scheduler's semaphore panics above
    // tokio's MAX_PERMITS, and a shutdown timeout this long cannot be
    // added to any instant.
    let jobs = BASE.replace(
        "max_parallel_jobs: 4",
        &format!("max_parallel_jobs: {}", u64::MAX),
    );
    assert!(check(&jobs).is_err());
    let shutdown = format!("{BASE}shutdown_timeout_seconds: {}\n", u64::MAX);
    assert!(check(&shutdown).is_err());
    let stale = BASE.replace("stale_after: 24h", "stale_after: 18446744073709551615y");
    assert!(check(&stale).is_err());
}

// ---- request bodies ----

fn client_error(e: &ApiError) {
    let (status, code, message) = fuzzing::describe(e);
    assert!((400..500).contains(&status), "{status} {code}: {message}");
    assert!(!message.is_empty());
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof!["\\PC{0,12}", "[a-z_]{1,10}", duration_text(), near_limit()]
            .prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 12, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const DATABASE_FIELDS: [&str; 20] = [
    "id",
    "name",
    "engine",
    "host",
    "port",
    "database_name",
    "username_var",
    "password_var",
    "schedule",
    "compression",
    "retention_days",
    "max_backups",
    "package",
    "tenant",
    "stale_after",
    "sslmode",
    "username",
    "password",
    "bogus",
    "type",
];

fn database_body() -> impl Strategy<Value = Value> {
    let field_value = prop_oneof![
        3 => json_value(),
        2 => prop::sample::select(vec![
            json!("pg_x"), json!("postgres"), json!("mongodb"), json!("acme"), json!("other"),
            json!("_reserved"), json!("../etc"), json!("0 3 * * *"), json!("zstd"), json!(5432),
            json!(70000), json!("30d"), json!(u64::MAX), json!(-1),
        ]),
    ];
    prop::collection::btree_map(
        prop::sample::select(DATABASE_FIELDS.to_vec()),
        field_value,
        0..10,
    )
    .prop_map(|m| {
        let mut obj: serde_json::Map<String, Value> =
            m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        obj.entry("id").or_insert(json!("pg_x"));
        obj.entry("engine").or_insert(json!("postgres"));
        obj.entry("database_name").or_insert(json!("app"));
        Value::Object(obj)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn small_bodies_give_values_or_client_errors(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            json_value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        ],
        query in prop_oneof!["\\PC{0,40}", "(tenant|kind|type|since|until|offset|limit|wait|bogus)=[a-z0-9:%+-]{0,25}(&(offset|limit|wait)=[0-9a-z]{0,22})?"],
    ) {
        for result in [
            fuzzing::create_backup(&body),
            fuzzing::restore(&body),
            fuzzing::cleanup(&body),
            fuzzing::queries(&query),
        ] {
            if let Err(e) = result {
                client_error(&e);
            }
        }
    }

    #[test]
    fn databases_stay_in_the_callers_tenant(
        body in database_body(),
        bound in any::<bool>(),
        patch in any::<bool>(),
    ) {
        let bytes = serde_json::to_vec(&body).unwrap();
        let tenant = bound.then_some("acme");
        let base = fuzzing::sample_base();
        match fuzzing::database(&bytes, &fuzzing::sample_defaults(), tenant, patch.then_some(&base)) {
            Ok(db) => {
                let checked = fuzzing::check_registered(&db, tenant);
                prop_assert!(checked.is_ok(), "{:?}", checked);
            }
            Err(e) => client_error(&e),
        }
    }
}
