//! [`LibpqEnv`]: the part of the environment libpq reads, captured once.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// The part of a process's environment libpq reads: `PG*` variables, the
/// home directory (for `~/.pgpass` and `~/.pg_service.conf`) and the
/// operating-system user name (the default role). Captured once, so tests
/// can build one without touching the process environment.
#[derive(Clone, Default)]
pub struct LibpqEnv {
    pub(super) vars: BTreeMap<String, String>,
    pub(super) home: Option<PathBuf>,
    pub(super) os_user: Option<String>,
}

impl std::fmt::Debug for LibpqEnv {
    /// Names only: `PGPASSWORD`'s value never shows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibpqEnv")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("home", &self.home)
            .field("os_user", &self.os_user)
            .finish()
    }
}

impl LibpqEnv {
    /// This process's environment: every `PG*` variable, `HOME` and the
    /// name of the user it runs as.
    pub fn from_process() -> LibpqEnv {
        let vars = std::env::vars()
            .filter(|(k, _)| k.starts_with("PG"))
            .collect();
        let os_user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.name)
            .or_else(|| std::env::var("USER").ok());
        LibpqEnv {
            vars,
            home: std::env::var_os("HOME").map(PathBuf::from),
            os_user,
        }
    }

    /// An empty environment: no variables, no home, no user name.
    pub fn empty() -> LibpqEnv {
        LibpqEnv::default()
    }

    /// Sets a variable.
    pub fn var(mut self, name: &str, value: impl Into<String>) -> LibpqEnv {
        self.vars.insert(name.to_string(), value.into());
        self
    }

    /// Sets the home directory.
    pub fn home(mut self, home: impl Into<PathBuf>) -> LibpqEnv {
        self.home = Some(home.into());
        self
    }

    /// Sets the operating-system user name (libpq's default role).
    pub fn os_user(mut self, user: impl Into<String>) -> LibpqEnv {
        self.os_user = Some(user.into());
        self
    }

    /// A variable's value; an empty value counts as unset, as in libpq.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}
