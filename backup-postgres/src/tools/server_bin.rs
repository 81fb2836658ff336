//! [`PgTools::server_bin_dir`]: where the server binaries of one major
//! version are, for starting a server on a data directory of that version.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use backup_core::child::cleared_command;
use backup_core::{Error, Result};

use super::{PgTools, parse_major, which};

/// The binaries a server on a restored data directory is run with.
const SERVER_TOOLS: [&str; 2] = ["postgres", "pg_ctl"];

impl PgTools {
    /// The directory of the PostgreSQL server binaries (`postgres`,
    /// `pg_ctl`) of the major version of `server_version` (as a server or
    /// a manifest reports it, `15.18 (Debian 15.18-0+deb12u1)`, or a bare
    /// major, `15`), for starting a server on a data directory of that
    /// version: the directory given to [`PgTools::in_dir`], else
    /// `/usr/lib/postgresql/<major>/bin`, else the directory of
    /// `postgres` on `$PATH`.
    ///
    /// Unlike the client tools, a server reads only data directories of
    /// its own major version: another version is refused. When none is
    /// found, [`Error::ToolNotFound`] names the major version and the
    /// setting that names a directory ([`PgTools::configured_by`]).
    pub async fn server_bin_dir(&self, server_version: &str) -> Result<PathBuf> {
        let major = parse_major(server_version).ok_or_else(|| {
            Error::Config(format!(
                "cannot tell the PostgreSQL major version of {server_version:?}"
            ))
        })?;
        let not_found = |detail: String| Error::ToolNotFound {
            tool: format!("PostgreSQL {major} server (postgres, pg_ctl)"),
            hint: format!(
                "{detail}; install PostgreSQL {major} (Debian: apt-get install postgresql-{major}) or name its bin directory ({})",
                self.setting()
            ),
        };
        if let Some(dir) = self.bin_dir() {
            return match server_major(dir).await {
                Some(found) if found == major => Ok(dir.to_path_buf()),
                Some(found) => Err(not_found(format!(
                    "{} holds the PostgreSQL {found} server, not {major}",
                    dir.display()
                ))),
                None => Err(not_found(format!(
                    "{} holds no runnable postgres and pg_ctl",
                    dir.display()
                ))),
            };
        }
        let exact = self.versioned_root().join(major.to_string()).join("bin");
        let on_path = which("postgres").and_then(|p| p.parent().map(Path::to_path_buf));
        for dir in [Some(exact.clone()), on_path].into_iter().flatten() {
            if server_major(&dir).await == Some(major) {
                return Ok(dir);
            }
        }
        Err(not_found(format!(
            "neither {} nor $PATH holds it",
            exact.display()
        )))
    }
}

/// The major version of the server binaries in `dir`, when both are
/// there and `postgres --version` answers.
async fn server_major(dir: &Path) -> Option<u32> {
    if !SERVER_TOOLS.iter().all(|t| dir.join(t).is_file()) {
        return None;
    }
    let out = cleared_command(dir.join("postgres"))
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .ok()?;
    parse_major(&String::from_utf8_lossy(&out.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_directory_without_a_server_is_refused_naming_the_version() {
        let dir = tempfile::tempdir().unwrap();
        let tools = PgTools::in_dir(dir.path()).configured_by("--pg-bin DIR");
        let err = tools
            .server_bin_dir("16.4 (Debian 16.4-1)")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PostgreSQL 16 server") && err.contains("--pg-bin DIR"),
            "{err}"
        );
        let empty_root = PgTools {
            search_root: Some(dir.path().to_path_buf()),
            ..PgTools::default()
        };
        let err = empty_root
            .server_bin_dir("99")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("PostgreSQL 99 server"), "{err}");
        assert!(matches!(
            PgTools::auto().server_bin_dir("devel").await,
            Err(Error::Config(_))
        ));
    }
}
