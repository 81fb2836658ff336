//! libpq's password file (`PGPASSFILE`, `~/.pgpass`): which file, whether
//! it may be used, and which line matches a connection.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;

use backup_core::{Error, Result, Secret};

use super::env::LibpqEnv;
use crate::conn::PgConnection;

/// Splits one passfile field off `line` (up to an unescaped `:`), with
/// `\:` and `\\` unescaped; the rest after the colon.
fn passfile_field(line: &str) -> (String, Option<&str>) {
    let mut out = String::new();
    let mut chars = line.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => out.push(escaped),
                None => out.push('\\'),
            },
            ':' => return (out, Some(&line[i + 1..])),
            c => out.push(c),
        }
    }
    (out, None)
}

/// The password a libpq passfile line gives for this connection, if the
/// line matches (`*` matches anything).
fn passfile_match(line: &str, wanted: [&str; 4]) -> Option<String> {
    let mut rest = line;
    for want in wanted {
        let (field, next) = passfile_field(rest);
        let next = next?;
        // libpq compares the raw field: an escaped `\*` is a literal star.
        let wildcard = rest.starts_with("*:");
        if !wildcard && field != want {
            return None;
        }
        rest = next;
    }
    Some(passfile_field(rest).0)
}

/// The password for `conn` from the caller's password file
/// (`PGPASSFILE`, else `~/.pgpass`), following libpq: a file other users
/// can read is ignored with a warning, a Unix-socket host matches
/// `localhost`, the first matching line wins.
pub(super) fn passfile_password(
    conn: &PgConnection,
    env: &LibpqEnv,
    warnings: &mut Vec<String>,
) -> Result<Option<(Secret, PathBuf)>> {
    let Some(path) = env
        .get("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env.home.as_ref().map(|h| h.join(".pgpass")))
    else {
        return Ok(None);
    };
    let meta = match std::fs::metadata(&path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
    };
    if !meta.is_file() && !meta.file_type().is_fifo() {
        warnings.push(format!(
            "password file {} is not a plain file; ignored (as libpq does)",
            path.display()
        ));
        return Ok(None);
    }
    if meta.permissions().mode() & 0o077 != 0 {
        warnings.push(format!(
            "password file {} has group or world access; permissions should be u=rw (0600) or less; ignored (as libpq does)",
            path.display()
        ));
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let host = if conn.host().is_empty() || conn.host().starts_with('/') {
        "localhost"
    } else {
        conn.host()
    };
    let port = conn.port().to_string();
    let wanted = [host, port.as_str(), conn.database(), conn.user()];
    let found = text
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|l| passfile_match(l, wanted))
        .filter(|p| !p.is_empty());
    Ok(found.map(|p| (Secret::new(p), path)))
}
