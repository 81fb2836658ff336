//! `drill:` of a database entry: when restore drills run (logical
//! PostgreSQL, MySQL/MariaDB, SQLite and MongoDB entries).

use backup_core::Schedule;

use crate::engine::Engine;

use super::fields::{parse_duration, parse_schedule};
use super::schema::RawDatabase;
use super::types::{BackupMode, DRILL_JOB_PREFIX, Problems};

/// The entry's `verify_max_age`, if set and valid.
pub(super) fn verify_max_age(
    raw: &RawDatabase,
    path: &str,
    problems: &mut Problems,
) -> Option<std::time::Duration> {
    let text = raw.verify_max_age.as_ref()?;
    match parse_duration(text) {
        Ok(d) => Some(d),
        Err(e) => {
            problems.push(format!("{path}.verify_max_age"), e);
            None
        }
    }
}

/// The entry's drill schedule, if it has one that applies.
pub(super) fn drill_schedule(
    raw: &RawDatabase,
    engine: Option<Engine>,
    mode: BackupMode,
    path: &str,
    problems: &mut Problems,
) -> Option<Schedule> {
    let schedule = raw.drill.as_ref()?;
    let at = format!("{path}.drill");
    // Every engine but physical PostgreSQL: a drill restores a logical
    // dump into a scratch database (or a SQLite file into a scratch dir).
    let drillable = match engine {
        Some(Engine::Postgres) | None => mode == BackupMode::Logical,
        Some(Engine::Mysql | Engine::Mongodb | Engine::Sqlite) => true,
    };
    if !drillable {
        problems.push(
            &at,
            "restore drills are for postgres entries with logical backups and mysql/mariadb, sqlite and mongodb entries",
        );
        return None;
    }
    if raw.id.len() > 128 - DRILL_JOB_PREFIX.len() {
        problems.push(
            format!("{path}.id"),
            format!(
                "at most {} characters for an entry with restore drills",
                128 - DRILL_JOB_PREFIX.len()
            ),
        );
        return None;
    }
    parse_schedule(schedule, &at, problems)
}
