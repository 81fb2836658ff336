//! Child processes (`pg_dump`, `mongorestore`, ...): started from a
//! cleared environment plus an allow-list, with secrets handed over in an
//! anonymous in-memory file that only that child inherits.
//!
//! Why not the parent's environment: a daemon's environment holds its own
//! secrets (API tokens, S3 keys, the variable a password was read from),
//! and a child's environment is readable in `/proc/<pid>/environ` by
//! the same user for the child's whole life. Why not a temporary file: a
//! `kill -9` of the parent leaves it on disk. A [`SecretFile`] is a
//! `memfd`: no path, gone when the last process holding it exits, mapped
//! into one child as `/dev/fd/N` and close-on-exec everywhere else, so
//! children started concurrently never see it.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// Variables a child inherits from this process; everything else is
/// dropped. None of them holds a secret: the search path, the home
/// directory (libpq looks for `~/.postgresql/root.crt` there), the
/// character set and time zone, and the system CA bundle overrides that
/// TLS clients honour. Whatever a tool needs besides these, its adapter
/// sets explicitly.
pub const ENV_ALLOW_LIST: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "LC_CTYPE",
    "TZ",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// The [`ENV_ALLOW_LIST`] variables present in this process's environment.
pub fn allowed_env() -> Vec<(OsString, OsString)> {
    ENV_ALLOW_LIST
        .iter()
        .filter_map(|name| std::env::var_os(name).map(|v| (OsString::from(name), v)))
        .collect()
}

/// A command for `program` with a cleared environment plus
/// [`allowed_env`], killed when its handle is dropped.
pub fn cleared_command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(program);
    cmd.env_clear().envs(allowed_env()).kill_on_drop(true);
    cmd
}

/// [`cleared_command`] for blocking code (`std::process`).
pub fn cleared_std_command(program: impl AsRef<OsStr>) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    cmd.env_clear().envs(allowed_env());
    cmd
}

/// A secret (a password file, a tool's config file) in an anonymous
/// in-memory file: mode 0600, sealed against changes, close-on-exec in
/// this process. [`SecretFile::pass_to`] maps it into one child as
/// `/dev/fd/N`, a path the child can open like any file; nothing is ever
/// written to disk, so no crash can leave it behind.
pub struct SecretFile {
    #[cfg(target_os = "linux")]
    fd: std::os::fd::OwnedFd,
}

impl SecretFile {
    /// A sealed in-memory file holding `contents`; `name` shows in
    /// `/proc/<pid>/fd` (`/memfd:<name>`), so make it descriptive, never
    /// secret.
    #[cfg(target_os = "linux")]
    pub fn new(name: &str, contents: &[u8]) -> Result<SecretFile> {
        use std::io::Write;
        use std::os::unix::fs::PermissionsExt;

        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        use nix::sys::memfd::{MFdFlags, memfd_create};

        let io = |what: &str, e: std::io::Error| Error::io(format!("{what} a memfd for {name}"), e);
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)
            .map_err(|e| io("creating", e.into()))?;
        let mut file = std::fs::File::from(fd);
        // A memfd starts with mode 0777; libpq ignores a password file
        // that the group or others could read.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("restricting", e))?;
        file.write_all(contents).map_err(|e| io("writing", e))?;
        let fd = std::os::fd::OwnedFd::from(file);
        let seals = SealFlag::F_SEAL_SEAL
            | SealFlag::F_SEAL_SHRINK
            | SealFlag::F_SEAL_GROW
            | SealFlag::F_SEAL_WRITE;
        fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)).map_err(|e| io("sealing", e.into()))?;
        Ok(SecretFile { fd })
    }

    /// Not available: secret files need Linux's `memfd_create`.
    #[cfg(not(target_os = "linux"))]
    pub fn new(name: &str, _contents: &[u8]) -> Result<SecretFile> {
        Err(Error::Config(format!(
            "cannot hand {name} to a child process: in-memory secret files need Linux"
        )))
    }

    /// Maps the file into the child `cmd` will start, as file descriptor
    /// `child_fd` (3 or more), and returns the path the child opens it by
    /// (`/dev/fd/<child_fd>`). Only that child gets it: the descriptor is
    /// duplicated onto `child_fd` between fork and exec. Call once per
    /// command.
    #[cfg(target_os = "linux")]
    pub fn pass_to(
        &self,
        cmd: &mut tokio::process::Command,
        child_fd: std::os::fd::RawFd,
    ) -> Result<PathBuf> {
        use command_fds::{CommandFdExt, FdMapping};
        if child_fd < 3 {
            return Err(Error::Config(format!(
                "a secret file cannot replace the child's standard stream {child_fd}; use 3 or more"
            )));
        }
        let parent_fd = self
            .fd
            .try_clone()
            .map_err(|e| Error::io("duplicating a secret file descriptor", e))?;
        cmd.fd_mappings(vec![FdMapping {
            parent_fd,
            child_fd,
        }])
        .map_err(|e| {
            Error::io(
                "mapping a secret file into a child",
                std::io::Error::other(e),
            )
        })?;
        Ok(PathBuf::from(format!("/dev/fd/{child_fd}")))
    }

    /// Not available: secret files need Linux.
    #[cfg(not(target_os = "linux"))]
    pub fn pass_to(&self, _cmd: &mut tokio::process::Command, _child_fd: i32) -> Result<PathBuf> {
        Err(Error::Config(
            "in-memory secret files need Linux".to_string(),
        ))
    }
}

impl fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretFile").finish_non_exhaustive()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_allow_list_and_the_mapped_file_reach_the_child() {
        let secret = SecretFile::new("test-secret", b"hunter2\n").unwrap();
        let mut cmd = cleared_command("sh");
        cmd.args(["-c", "stat -L -c %a /dev/fd/3; cat /dev/fd/3; env"]);
        let path = secret.pass_to(&mut cmd, 3).unwrap();
        assert_eq!(path, PathBuf::from("/dev/fd/3"));
        let out = cmd.output().await.unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("600"));
        assert_eq!(lines.next(), Some("hunter2"));
        for line in lines.by_ref().take_while(|l| l.contains('=')) {
            let name = line.split('=').next().unwrap();
            assert!(
                ENV_ALLOW_LIST.contains(&name) || name == "PWD" || name == "SHLVL" || name == "_",
                "{name} leaked into the child"
            );
        }
    }

    #[test]
    fn sealed_and_private() {
        use std::io::Write;
        use std::os::fd::AsFd;
        let secret = SecretFile::new("test-secret", b"x").unwrap();
        let mut file = std::fs::File::from(secret.fd.as_fd().try_clone_to_owned().unwrap());
        assert!(file.write_all(b"more").is_err(), "sealed against writes");
        assert!(format!("{secret:?}").starts_with("SecretFile"));
    }
}

/// Drains a child's stderr concurrently (so the child never blocks on a
/// full pipe), keeping only its last `keep` bytes, for error messages.
pub fn drain_stderr(
    stderr: impl tokio::io::AsyncRead + Unpin + Send + 'static,
    keep: usize,
) -> tokio::task::JoinHandle<String> {
    use tokio::io::AsyncReadExt;
    tokio::spawn(async move {
        let mut stderr = stderr;
        let mut kept: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 8192];
        loop {
            match stderr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    kept.extend_from_slice(&buf[..n]);
                    if kept.len() > keep.saturating_mul(2) {
                        kept.drain(..kept.len() - keep);
                    }
                }
            }
        }
        if kept.len() > keep {
            kept.drain(..kept.len() - keep);
        }
        String::from_utf8_lossy(&kept).trim().to_string()
    })
}
