//! libpq's service files (`pg_service.conf`): where they are and what a
//! section holds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use backup_core::{Error, Result};

use super::env::LibpqEnv;

/// The default system configuration directory of Debian's libpq, where a
/// system-wide `pg_service.conf` lives (`PGSYSCONFDIR` overrides it).
const DEFAULT_SYSCONFDIR: &str = "/etc/postgresql-common";

/// One `[service]` section of a `pg_service.conf`.
#[derive(Default)]
pub(super) struct Service {
    pub(super) name: String,
    pub(super) file: PathBuf,
    values: BTreeMap<String, String>,
}

impl Service {
    pub(super) fn get(&self, keyword: &str) -> Option<&str> {
        self.values.get(keyword).map(String::as_str)
    }
}

/// Keywords a service file may set here.
const SERVICE_KEYWORDS: &[&str] = &[
    "host",
    "port",
    "user",
    "dbname",
    "password",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "target_session_attrs",
    "connect_timeout",
    "application_name",
];

/// Finds service `name` the way libpq does: `PGSERVICEFILE` (else
/// `~/.pg_service.conf`), then `PGSYSCONFDIR/pg_service.conf`. A service
/// named but defined nowhere is an error, as in libpq.
pub(super) fn load_service(name: &str, env: &LibpqEnv) -> Result<Service> {
    let user_file = env
        .get("PGSERVICEFILE")
        .map(PathBuf::from)
        .or_else(|| env.home.as_ref().map(|h| h.join(".pg_service.conf")));
    let system_file =
        Path::new(env.get("PGSYSCONFDIR").unwrap_or(DEFAULT_SYSCONFDIR)).join("pg_service.conf");
    for file in user_file.into_iter().chain([system_file]) {
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("reading {}", file.display()), e)),
        };
        if let Some(service) = parse_service(&text, name, &file)? {
            return Ok(service);
        }
    }
    Err(Error::Config(format!(
        "definition of PostgreSQL service {name:?} not found (looked in PGSERVICEFILE or ~/.pg_service.conf, then PGSYSCONFDIR/pg_service.conf)"
    )))
}

fn parse_service(text: &str, name: &str, file: &Path) -> Result<Option<Service>> {
    let mut current: Option<Service> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let syntax = |why: &str| {
            Error::Config(format!(
                "syntax error in service file {} line {}: {why}",
                file.display(),
                n + 1
            ))
        };
        if let Some(section) = line.strip_prefix('[') {
            if current.is_some() {
                break; // the section we wanted has ended
            }
            let section = section
                .strip_suffix(']')
                .ok_or_else(|| syntax("a section header ends with ']'"))?;
            if section == name {
                current = Some(Service {
                    name: name.to_string(),
                    file: file.to_path_buf(),
                    values: BTreeMap::new(),
                });
            }
            continue;
        }
        let Some(service) = current.as_mut() else {
            continue;
        };
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| syntax("expected keyword=value"))?;
        let key = key.trim();
        if !SERVICE_KEYWORDS.contains(&key) {
            return Err(syntax(&format!(
                "unsupported keyword {key:?} (supported: {})",
                SERVICE_KEYWORDS.join(", ")
            )));
        }
        service
            .values
            .insert(key.to_string(), value.trim().to_string());
    }
    Ok(current)
}
