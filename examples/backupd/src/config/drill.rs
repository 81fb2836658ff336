//! `drill:` of a database entry: when restore drills run (every engine;
//! physical PostgreSQL entries also name `drill_dir`, and may name
//! `drill_user`).

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
    path: &str,
    problems: &mut Problems,
) -> Option<Schedule> {
    let schedule = raw.drill.as_ref()?;
    let at = format!("{path}.drill");
    // Every engine: a scratch database, a scratch directory for SQLite
    // files and physical PostgreSQL clusters (`drill_dir`).
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

/// A physical entry's `drill_dir` (required with `drill:`: absolute, no
/// `..`) and `drill_user` (1 to 63 characters); both refused on other
/// entries and without `drill:`, where they would do nothing.
pub(super) fn physical_drill_place(
    raw: &RawDatabase,
    engine: Option<Engine>,
    mode: BackupMode,
    drilled: bool,
    path: &str,
    problems: &mut Problems,
) -> (Option<std::path::PathBuf>, Option<String>) {
    let physical = engine == Some(Engine::Postgres) && mode == BackupMode::Physical;
    for (key, given) in [
        ("drill_dir", raw.drill_dir.is_some()),
        ("drill_user", raw.drill_user.is_some()),
    ] {
        if given && !physical {
            problems.push(
                format!("{path}.{key}"),
                "only for postgres entries with mode: physical (other entries drill into scratch databases on their own server)",
            );
        } else if given && !drilled {
            problems.push(
                format!("{path}.{key}"),
                "only with a drill: schedule (it says where drills run)",
            );
        }
    }
    if !physical || !drilled {
        return (None, None);
    }
    let dir = match raw.drill_dir.as_deref() {
        None => {
            problems.push(
                format!("{path}.drill_dir"),
                "required for a physical entry with drill: the directory scratch data directories are restored into (room for the whole cluster)",
            );
            None
        }
        Some(text) => {
            let dir = std::path::PathBuf::from(text);
            let parent_dir = dir
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir));
            if !dir.is_absolute() || parent_dir || text.contains('\0') {
                problems.push(
                    format!("{path}.drill_dir"),
                    "must be an absolute path without `..`",
                );
                None
            } else {
                Some(dir)
            }
        }
    };
    let user = match raw.drill_user.as_deref() {
        Some(user) if user.is_empty() || user.len() > 63 || user.contains('\0') => {
            problems.push(
                format!("{path}.drill_user"),
                "must be a role name of 1 to 63 characters",
            );
            None
        }
        other => other.map(str::to_string),
    };
    (dir, user)
}
