//! Shared by `secrets.rs`: what must never show up in a child process,
//! and reading children's arguments, environment and password files
//! under `/proc`.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use backup_core::testing::{DECOY_SECRETS, ProcessView, process_tree};
use backup_postgres::PgConnection;

/// Environment variables a libpq tool may get: the allow-list plus what
/// the adapter sets itself.
pub(crate) const PG_CHILD_VARS: &[&str] = &[
    "PGHOST",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGAPPNAME",
    "PGCONNECT_TIMEOUT",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCRL",
    "PGTARGETSESSIONATTRS",
    "PGPASSFILE",
    "LC_MESSAGES",
];

/// `s` percent-encoded for a URL's user info.
pub(crate) fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Everything that must never show up in a child's environment or
/// arguments.
pub(crate) fn forbidden(conn: &PgConnection) -> Vec<String> {
    let mut out: Vec<String> = DECOY_SECRETS.iter().map(|(_, v)| v.to_string()).collect();
    out.push(conn.password().unwrap().expose().to_string());
    out.push(url_encode(conn.password().unwrap().expose()));
    out
}

/// A running descendant of `root` whose command name is `name`.
pub(crate) fn descendant(root: u32, name: &str) -> Option<ProcessView> {
    // Not the `--version` probe that precedes each tool's first use, nor
    // one that exited while it was read (its argv then reads empty).
    process_tree(root)
        .into_iter()
        .find(|p| p.comm == name && !p.argv.is_empty() && !p.argv.contains("--version"))
}

/// Waits until `root` has a descendant `name` (a condition, with a
/// generous limit so a broken build fails instead of hanging).
pub(crate) fn wait_for_descendant(root: u32, name: &str) -> ProcessView {
    let started = Instant::now();
    loop {
        if let Some(child) = descendant(root, name) {
            return child;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no {name} below process {root}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Checks a running child: no secret in its arguments or environment,
/// nothing but allowed variables, and the password file (if any) an
/// in-memory file it inherited, private to it.
pub(crate) fn assert_child_is_clean(child: &ProcessView, kind: &str, conn: &PgConnection) {
    let pid = child.pid;
    let cmdline = child.command_line();
    let environ = &child.environ;
    for secret in forbidden(conn) {
        assert!(
            !cmdline.contains(&secret),
            "{kind}: a secret in its arguments: {cmdline}"
        );
        assert!(
            !environ.contains(&secret),
            "{kind}: a secret in its environment"
        );
    }
    let mut passfile = None;
    for var in child.variables() {
        let (name, value) = var.split_once('=').unwrap_or((var, ""));
        assert!(
            backup_core::child::ENV_ALLOW_LIST.contains(&name) || PG_CHILD_VARS.contains(&name),
            "{kind}: inherited {name}, which is not on the allow-list"
        );
        if name == "PGPASSFILE" {
            passfile = Some(value.to_string());
        }
    }
    let passfile = passfile.unwrap_or_else(|| panic!("{kind} has no PGPASSFILE"));
    let fd = passfile
        .strip_prefix("/dev/fd/")
        .unwrap_or_else(|| panic!("{kind}: PGPASSFILE={passfile} is a file on disk"));
    let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
    assert!(
        link.to_string_lossy().starts_with("/memfd:"),
        "{kind}: password file {} is not an in-memory file",
        link.display()
    );
    let meta = std::fs::metadata(format!("/proc/{pid}/fd/{fd}")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        meta.permissions().mode() & 0o077,
        0,
        "{kind}: passfile mode"
    );
    let text = std::fs::read_to_string(format!("/proc/{pid}/fd/{fd}")).unwrap();
    assert!(text.starts_with("*:*:*:*:"), "{kind}: passfile format");
}

/// Regular files under `dir` (recursively) containing `needle`.
pub(crate) fn files_containing(dir: &Path, needle: &str, since: Option<SystemTime>) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        if meta.is_dir() && since.is_none() {
            found.extend(files_containing(&entry.path(), needle, since));
        } else if meta.is_file() && meta.len() < (1 << 20) {
            if since.is_some_and(|t| meta.modified().is_ok_and(|m| m < t)) {
                continue;
            }
            if let Ok(bytes) = std::fs::read(entry.path())
                && String::from_utf8_lossy(&bytes).contains(needle)
            {
                found.push(entry.path().display().to_string());
            }
        }
    }
    found
}
