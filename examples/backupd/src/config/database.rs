//! `databases:` entries, from the file and from the REST API.

use std::collections::HashSet;
use std::path::Component;

use backup_core::Secret;
use backup_core::key::validate_id;

use crate::engine::Engine;
use crate::tenancy::{normalise_host, same_name};

use super::fields::{
    EnvLookup, check_range, env_var, parse_compression, parse_duration, parse_schedule, retention,
};
use super::schema::{RENAMED_FIELDS, RawDatabase};
use super::types::{BackupMode, DatabaseConfig, Defaults, MAX_INCREMENTAL_ID, Problems};
use backup_core::Schedule;

/// The `sslmode` values PostgreSQL knows.
const SSLMODES: [&str; 6] = [
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Checks one database entry; used for the file and for the REST API.
pub fn database(
    raw: &RawDatabase,
    path: &str,
    defaults: &Defaults,
    env: EnvLookup<'_>,
    problems: &mut Problems,
) -> Option<DatabaseConfig> {
    let before = problems.0.len();
    check_id(&raw.id, &format!("{path}.id"), problems);
    let engine = engine(&raw.engine, &format!("{path}.engine"), problems);
    let tenant = raw
        .tenant
        .clone()
        .unwrap_or_else(|| backup_core::manifest::DEFAULT_TENANT.to_string());
    if let Err(e) = validate_id(&tenant) {
        problems.push(format!("{path}.tenant"), e.to_string());
    } else if tenant.starts_with('_') {
        problems.push(
            format!("{path}.tenant"),
            "tenants starting with '_' are reserved",
        );
    }
    let schedule = match &raw.schedule {
        Some(s) => parse_schedule(&s.0, &format!("{path}.schedule"), problems),
        None => Some(defaults.schedule.clone()),
    };
    let compression = match &raw.compression {
        Some(c) => parse_compression(c, &format!("{path}.compression"), problems),
        None => Some(defaults.compression),
    };
    let stale_after = match &raw.stale_after {
        Some(s) => match parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                problems.push(format!("{path}.stale_after"), e);
                None
            }
        },
        None => Some(defaults.stale_after),
    };
    let limits = retention(raw.retention(), path, problems).or(defaults.retention);
    check_range(raw.port, 1, u16::MAX, &format!("{path}.port"), problems);
    let (mode, wal_slot) = physical(raw, engine, path, problems);
    let incremental = incremental(raw, engine, mode, path, problems);
    check_type(raw, mode, path, problems);
    let at = At { engine, mode, path };
    let placement = match &raw.url_var {
        _ if engine == Some(Engine::Sqlite) || raw.path.is_some() => {
            sqlite_placement(raw, engine, path, problems)
        }
        Some(var) => url_placement(raw, at, var, env, problems),
        None if raw.database_name.is_empty() => {
            problems.push(
                format!("{path}.database_name"),
                "required (or url_var naming a variable with the whole URL)",
            );
            None
        }
        None => {
            check_placement(raw, at, problems);
            Some(fields_placement(raw, engine, path, env, problems))
        }
    };
    check_pg_bin(raw, engine, path, problems);
    let drill = crate::config::drill::drill_schedule(raw, path, problems);
    let (drill_dir, drill_user) = crate::config::drill::physical_drill_place(
        raw,
        engine,
        mode,
        drill.is_some(),
        path,
        problems,
    );
    let verify_max_age = crate::config::drill::verify_max_age(raw, path, problems);
    // Drilled on a schedule: the newest verified backup is kept unless the
    // entry says otherwise.
    let keep_newest_verified = raw.keep_newest_verified.unwrap_or(drill.is_some());
    if problems.0.len() > before {
        return None;
    }
    let engine = engine?;
    let placement = placement?;
    Some(DatabaseConfig {
        id: raw.id.clone(),
        name: raw.name.clone().unwrap_or_else(|| raw.id.clone()),
        engine,
        host: placement.host,
        port: placement.port,
        database_name: placement.database_name,
        username: placement.username,
        password: placement.password,
        url_var: raw.url_var.clone(),
        username_var: raw.username_var.clone(),
        password_var: raw.password_var.clone(),
        schedule: schedule?,
        compression: compression?,
        sslmode: placement.sslmode,
        pg_bin: raw.pg_bin.clone(),
        path: raw.path.clone(),
        mode,
        wal_slot,
        incremental,
        fallback_to_full: raw.fallback_to_full,
        drill,
        drill_dir,
        drill_user,
        verify_max_age,
        keep_newest_verified,
        retention: limits,
        package: raw.package,
        tenant,
        stale_after: stale_after?,
    })
}

/// A `sqlite` entry's placement: its `path` (absolute, no `..`, a valid
/// file name), and none of the fields that name a server; `path` on any
/// other engine is refused.
fn sqlite_placement(
    raw: &RawDatabase,
    engine: Option<Engine>,
    path: &str,
    problems: &mut Problems,
) -> Option<Placement> {
    let at = format!("{path}.path");
    if engine != Some(Engine::Sqlite) {
        if engine.is_some() {
            problems.push(&at, "path is for sqlite entries");
        }
        return None;
    }
    let beside = [
        ("host", raw.host.is_some()),
        ("port", raw.port.is_some()),
        ("database_name", !raw.database_name.is_empty()),
        ("url_var", raw.url_var.is_some()),
        ("username_var", raw.username_var.is_some()),
        ("password_var", raw.password_var.is_some()),
        ("sslmode", raw.sslmode.is_some()),
    ];
    for (field, _) in beside.iter().filter(|(_, set)| *set) {
        problems.push(
            format!("{path}.{field}"),
            "a sqlite entry names its file with path alone",
        );
    }
    let Some(file) = &raw.path else {
        problems.push(&at, "required for sqlite entries (the database file)");
        return None;
    };
    // Spelled exactly as its components say: no `.`, `..`, `//` or
    // trailing `/` that would make two spellings of one file.
    let plain = file.is_absolute()
        && file
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && file
            .components()
            .collect::<std::path::PathBuf>()
            .as_os_str()
            == file.as_os_str();
    if !plain {
        problems.push(
            &at,
            "must be an absolute path without `.`, `..`, `//` or a trailing `/`",
        );
        return None;
    }
    let (Some(dir), Some(name)) = (file.parent(), file.file_name().and_then(|n| n.to_str())) else {
        problems.push(&at, "must name a file with a UTF-8 name");
        return None;
    };
    let Some(dir) = dir.to_str() else {
        problems.push(&at, "its directory must be UTF-8");
        return None;
    };
    if let Err(e) = crate::tenancy::check_database_name(Engine::Sqlite, name) {
        problems.push(&at, e);
        return None;
    }
    Some(Placement {
        host: dir.to_string(),
        port: 0,
        database_name: name.to_string(),
        username: None,
        password: None,
        sslmode: None,
    })
}

/// `pg_bin`: PostgreSQL entries only, an absolute path to a directory
/// holding `pg_dump`, `pg_restore` and `psql`.
fn check_pg_bin(raw: &RawDatabase, engine: Option<Engine>, path: &str, problems: &mut Problems) {
    let Some(dir) = &raw.pg_bin else {
        return;
    };
    let at = format!("{path}.pg_bin");
    if engine.is_some_and(|e| e != Engine::Postgres) {
        problems.push(&at, "pg_bin is for postgres entries");
    } else if !dir.is_absolute() {
        problems.push(
            &at,
            format!(
                "{} is not an absolute path (e.g. /usr/lib/postgresql/18/bin)",
                dir.display()
            ),
        );
    } else if let Some(missing) = ["pg_dump", "pg_restore", "psql"]
        .into_iter()
        .find(|tool| !dir.join(tool).is_file())
    {
        problems.push(
            &at,
            format!(
                "{} has no {missing}: name the bin directory of a PostgreSQL installation",
                dir.display()
            ),
        );
    }
}

/// `mode`, `wal_archiving` and `slot`: physical backups and WAL archiving
/// are for PostgreSQL entries; WAL is archived for physical entries only,
/// from a slot with a valid name.
fn physical(
    raw: &RawDatabase,
    engine: Option<Engine>,
    path: &str,
    problems: &mut Problems,
) -> (BackupMode, Option<String>) {
    let mode = match raw.mode.as_deref() {
        None | Some("logical") => BackupMode::Logical,
        Some("physical") => BackupMode::Physical,
        Some(other) => {
            problems.push(
                format!("{path}.mode"),
                format!("unknown mode {other:?} (expected logical or physical)"),
            );
            return (BackupMode::Logical, None);
        }
    };
    if mode == BackupMode::Physical && engine.is_some_and(|e| e != Engine::Postgres) {
        problems.push(
            format!("{path}.mode"),
            "physical backups are for postgres entries",
        );
    }
    if !raw.wal_archiving {
        if raw.slot.is_some() {
            problems.push(format!("{path}.slot"), "a slot is for wal_archiving: true");
        }
        return (mode, None);
    }
    if mode != BackupMode::Physical {
        problems.push(
            format!("{path}.wal_archiving"),
            "WAL archiving continues base backups: set mode: physical",
        );
        return (mode, None);
    }
    let slot = raw.slot.clone().unwrap_or_else(|| {
        let id: String = raw
            .id
            .chars()
            .map(|c| match c.to_ascii_lowercase() {
                c @ ('a'..='z' | '0'..='9' | '_') => c,
                _ => '_',
            })
            .collect();
        format!("backupd_{id}").chars().take(63).collect()
    });
    let valid = (1..=63).contains(&slot.len())
        && slot
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !valid {
        problems.push(
            format!("{path}.slot"),
            format!(
                "{slot:?} is not a replication slot name (1 to 63 lower-case letters, digits, _)"
            ),
        );
    }
    (mode, Some(slot))
}

/// `incremental` and `fallback_to_full`: block-level incremental base
/// backups are for physical PostgreSQL entries, on a schedule of the
/// grammar of `schedule`; the fallback goes with them.
fn incremental(
    raw: &RawDatabase,
    engine: Option<Engine>,
    mode: BackupMode,
    path: &str,
    problems: &mut Problems,
) -> Option<Schedule> {
    let Some(schedule) = &raw.incremental else {
        if raw.fallback_to_full {
            problems.push(
                format!("{path}.fallback_to_full"),
                "fallback_to_full goes with an incremental schedule",
            );
        }
        return None;
    };
    let at = format!("{path}.incremental");
    if engine.is_some_and(|e| e != Engine::Postgres) || mode != BackupMode::Physical {
        problems.push(
            &at,
            "incremental base backups are for postgres entries with mode: physical",
        );
        return None;
    }
    if raw.id.len() > MAX_INCREMENTAL_ID {
        problems.push(
            format!("{path}.id"),
            format!(
                "at most {MAX_INCREMENTAL_ID} characters for an entry with incremental backups"
            ),
        );
    }
    parse_schedule(schedule, &at, problems)
}

/// `type`: not an entry setting (see [`RawDatabase::backup_type`]).
/// `type: incremental` beside `mode: physical` or `incremental:` is a
/// contradiction (deduplicated logical dumps against block-level base
/// backups) and says so; any other `type` says where a backup's type is
/// chosen.
fn check_type(raw: &RawDatabase, mode: BackupMode, path: &str, problems: &mut Problems) {
    let Some(kind) = &raw.backup_type else {
        return;
    };
    let at = format!("{path}.type");
    let physical = if raw.incremental.is_some() {
        Some("incremental:")
    } else {
        (mode == BackupMode::Physical).then_some("mode: physical")
    };
    match physical {
        Some(setting) if kind == "incremental" => problems.push(
            &at,
            format!(
                "type: incremental (deduplicated chunks of a logical dump) contradicts {setting} (block-level incremental base backups of the whole cluster): remove type; this entry's incrementals are taken on its incremental: schedule, or on request with base_backup: incremental"
            ),
        ),
        _ => problems.push(
            &at,
            format!(
                "an entry has no type ({kind:?}): a backup's type is chosen per request (POST /api/v1/backups {{\"type\": \"incremental\"}}, backupctl backup --type incremental)"
            ),
        ),
    }
}

/// Where an entry's database is and who connects to it.
struct Placement {
    host: String,
    port: u16,
    database_name: String,
    username: Option<String>,
    password: Option<Secret>,
    sslmode: Option<String>,
}

/// The placement from `host`, `port`, `database_name`, `username_var`,
/// `password_var` and `sslmode`.
fn fields_placement(
    raw: &RawDatabase,
    engine: Option<Engine>,
    path: &str,
    env: EnvLookup<'_>,
    problems: &mut Problems,
) -> Placement {
    let username = raw
        .username_var
        .as_ref()
        .and_then(|v| env_var(v, &format!("{path}.username_var"), env, problems));
    let password = raw
        .password_var
        .as_ref()
        .and_then(|v| env_var(v, &format!("{path}.password_var"), env, problems))
        .map(Secret::new);
    Placement {
        host: raw.host.clone().unwrap_or_else(|| "localhost".into()),
        port: raw.port.unwrap_or(match engine {
            Some(Engine::Mongodb) => 27017,
            Some(Engine::Mysql) => backup_mysql::DEFAULT_PORT,
            Some(Engine::Sqlite) => 0,
            _ => 5432,
        }),
        database_name: raw.database_name.clone(),
        username,
        password,
        sslmode: raw.sslmode.clone(),
    }
}

/// The placement from the URL in the variable `url_var` names: every
/// part given in the URL (user and database included, so nothing comes
/// from the daemon's own `PG*` variables), `sslmode` its only parameter,
/// and none of the fields it replaces beside it.
fn url_placement(
    raw: &RawDatabase,
    at_entry: At<'_>,
    var: &str,
    env: EnvLookup<'_>,
    problems: &mut Problems,
) -> Option<Placement> {
    let At { engine, path, .. } = at_entry;
    let at = format!("{path}.url_var");
    let beside = [
        ("host", raw.host.is_some()),
        ("port", raw.port.is_some()),
        ("database_name", !raw.database_name.is_empty()),
        ("username_var", raw.username_var.is_some()),
        ("password_var", raw.password_var.is_some()),
        ("sslmode", raw.sslmode.is_some()),
    ];
    let given: Vec<&str> = beside
        .iter()
        .filter(|(_, set)| *set)
        .map(|(k, _)| *k)
        .collect();
    if !given.is_empty() {
        problems.push(
            &at,
            format!(
                "the URL names the server, database and credentials: remove {} or url_var",
                given.join(", ")
            ),
        );
        return None;
    }
    if engine.is_some_and(|e| e != Engine::Postgres) {
        problems.push(
            &at,
            "url_var is supported for postgres entries; use host, port, database_name, username_var and password_var",
        );
        return None;
    }
    let url = env_var(var, &at, env, problems)?;
    let conn = match backup_postgres::PgConnection::from_url(&url) {
        Ok(c) => c,
        Err(e) => {
            problems.push(&at, format!("{var}: {e}"));
            return None;
        }
    };
    let parsed = url::Url::parse(&url).ok();
    let named = |part: &str| match (&parsed, part) {
        (Some(u), "user") => !u.username().is_empty() || u.query_pairs().any(|(k, _)| k == "user"),
        (Some(u), _) => {
            !u.path().trim_start_matches('/').is_empty()
                || u.query_pairs().any(|(k, _)| k == "dbname")
        }
        (None, _) => false,
    };
    for (part, example) in [("user", "app@"), ("database", "/sales")] {
        if !named(part) {
            problems.push(
                &at,
                format!("{var} must name the {part} (e.g. postgres://{example}...); it is not taken from the daemon's environment"),
            );
        }
    }
    if let Some(u) = &parsed
        && let Some((k, _)) = u
            .query_pairs()
            .find(|(k, _)| !matches!(&**k, "sslmode" | "host" | "port" | "user" | "dbname"))
    {
        problems.push(
            &at,
            format!("{var}: parameter {k:?} is not supported here (only sslmode)"),
        );
    }
    let placement = Placement {
        host: conn.host().to_string(),
        port: conn.port(),
        database_name: conn.database().to_string(),
        username: Some(conn.user().to_string()),
        password: conn.password().cloned(),
        sslmode: conn.sslmode().map(str::to_string),
    };
    let mut as_fields = raw.clone();
    as_fields.host = Some(placement.host.clone());
    as_fields.sslmode = placement.sslmode.clone();
    as_fields.database_name = placement.database_name.clone();
    check_placement(&as_fields, at_entry, problems);
    Some(placement)
}

fn check_id(id: &str, path: &str, problems: &mut Problems) {
    if let Err(e) = validate_id(id) {
        problems.push(path, e.to_string());
    } else if id.starts_with('_') {
        problems.push(path, "ids starting with '_' are reserved");
    }
}

fn engine(name: &str, path: &str, problems: &mut Problems) -> Option<Engine> {
    match name {
        "postgres" | "postgresql" => Some(Engine::Postgres),
        "mongodb" | "mongo" => Some(Engine::Mongodb),
        "mysql" | "mariadb" => Some(Engine::Mysql),
        "sqlite" => Some(Engine::Sqlite),
        other => {
            problems.push(
                path,
                format!(
                    "unknown engine {other:?} (expected postgres, mongodb, mysql, mariadb or sqlite)"
                ),
            );
            None
        }
    }
}

/// What [`check_placement`] needs to know of the entry besides its raw
/// fields: its engine (if valid), its mode, and where it is in the file.
#[derive(Clone, Copy)]
struct At<'a> {
    engine: Option<Engine>,
    mode: BackupMode,
    path: &'a str,
}

/// Where the database is: host, sslmode, database name, display name.
fn check_placement(raw: &RawDatabase, at: At<'_>, problems: &mut Problems) {
    let At { engine, mode, path } = at;
    if let Some(h) = &raw.host
        && (h.trim().is_empty()
            || h.len() > 253
            || h.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        problems.push(
            format!("{path}.host"),
            "must be a host name or address (1 to 253 characters, no spaces)",
        );
    }
    if raw.sslmode.is_some() && engine == Some(Engine::Mysql) {
        problems.push(
            format!("{path}.sslmode"),
            "sslmode is for postgres entries; MySQL entries connect without TLS (use a local or tunnelled server)",
        );
    } else if let Some(mode) = &raw.sslmode
        && !SSLMODES.contains(&mode.as_str())
    {
        problems.push(
            format!("{path}.sslmode"),
            format!("unknown sslmode {mode:?} (expected disable, allow, prefer, require, verify-ca or verify-full)"),
        );
    }
    if let Some(engine) = engine
        && let Err(e) = mode.check_database_name(engine, &raw.database_name)
    {
        problems.push(format!("{path}.database_name"), e);
    }
    if raw
        .name
        .as_ref()
        .is_some_and(|n| n.len() > 200 || n.chars().any(char::is_control))
    {
        problems.push(
            format!("{path}.name"),
            "must be at most 200 printable characters",
        );
    }
}

/// The `databases:` section: each entry checked, ids unique, and each
/// database owned by one tenant.
pub(super) fn databases(
    raw: &[RawDatabase],
    defaults: &Defaults,
    env: EnvLookup<'_>,
    problems: &mut Problems,
) -> Vec<DatabaseConfig> {
    let mut databases: Vec<(usize, DatabaseConfig)> = Vec::new();
    let mut seen = HashSet::new();
    for (i, d) in raw.iter().enumerate() {
        let path = format!("databases[{i}]");
        if !seen.insert(d.id.clone()) {
            problems.push(format!("{path}.id"), format!("duplicate id {:?}", d.id));
        }
        if let Some(db) = database(d, &path, defaults, env, problems) {
            // A database belongs to one tenant.
            if let Some((j, other)) = databases
                .iter()
                .find(|(_, o)| o.tenant != db.tenant && same_database_by_name(o, &db))
            {
                problems.push(
                    &path,
                    format!(
                        "database {:?} on {}:{} is already databases[{j}] ({:?}) of tenant {}: a database belongs to one tenant",
                        db.database_name, db.host, db.port, other.id, other.tenant
                    ),
                );
            }
            databases.push((i, db));
        }
    }
    databases.into_iter().map(|(_, d)| d).collect()
}

/// Before the fields of a `PATCH` body are laid over the entry it starts
/// from (`base`, as JSON): a field the body gives under its older name
/// (`max_backups`) or its newer one (`keep_last`) removes the other
/// spelling from `base`, so the body's value wins instead of clashing.
pub fn drop_renamed_fields(
    base: &mut serde_json::Map<String, serde_json::Value>,
    body: &serde_json::Map<String, serde_json::Value>,
) {
    for (old, new) in RENAMED_FIELDS {
        if body.contains_key(old) {
            base.remove(new);
        }
        if body.contains_key(new) {
            base.remove(old);
        }
    }
}

/// Whether two entries certainly name one database, without DNS (for
/// the configuration file, checked before the daemon starts).
pub fn same_database_by_name(a: &DatabaseConfig, b: &DatabaseConfig) -> bool {
    let whole_server = a.mode == BackupMode::Physical || b.mode == BackupMode::Physical;
    a.engine == b.engine
        && a.port == b.port
        && (whole_server || same_name(&a.database_name, &b.database_name))
        && normalise_host(&a.host) == normalise_host(&b.host)
}
