//! The recovery settings a restore writes into the data directory, quoted
//! for the shell and for `postgresql.conf`.

use std::path::Path;

use backup_core::{Error, Result};

use super::target::RecoveryTarget;

/// The lines appended to `postgresql.auto.conf`: `restore_command`
/// copying from `wal_dir`, the target, promotion, the timeline to follow
/// (`current` or a number),
/// and `archive_mode = off` unless `keep_archiving`.
pub(super) fn recovery_settings(
    target: &RecoveryTarget,
    timeline: &str,
    keep_archiving: bool,
    wal_dir: &Path,
) -> Result<String> {
    let wal = wal_dir
        .to_str()
        .ok_or_else(|| Error::Config(format!("{} is not valid UTF-8", wal_dir.display())))?;
    let command = format!(
        "cp {} '%p'",
        shell_quote(&format!("{}/%f", wal.replace('%', "%%")))
    );
    let mut lines = vec![
        format!("# point-in-time restore to {}", target).replace('\n', " "),
        format!("restore_command = {}", conf_quote(&command)?),
    ];
    if let Some((name, value)) = target.setting() {
        lines.push(format!("{name} = {}", conf_quote(&value)?));
    }
    lines.push("recovery_target_action = 'promote'".into());
    lines.push(format!(
        "recovery_target_timeline = {}",
        conf_quote(timeline)?
    ));
    if !keep_archiving {
        lines.push("archive_mode = 'off'".into());
    }
    Ok(lines.join("\n") + "\n")
}

/// `recovery.signal`, and `settings` appended to `postgresql.auto.conf`
/// (later lines win there, so they override earlier ones).
pub(super) fn write_settings(data_dir: &Path, settings: &str) -> Result<()> {
    use std::io::Write;
    let conf = data_dir.join("postgresql.auto.conf");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&conf)
        .map_err(|e| Error::io(format!("opening {}", conf.display()), e))?;
    file.write_all(settings.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io(format!("writing {}", conf.display()), e))?;
    let signal = data_dir.join("recovery.signal");
    std::fs::write(&signal, b"").map_err(|e| Error::io(format!("writing {}", signal.display()), e))
}

/// `s` as one POSIX shell word.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `s` as a `postgresql.conf` string value; a line break or NUL cannot be
/// written there and is refused.
fn conf_quote(s: &str) -> Result<String> {
    if s.contains(['\n', '\r', '\0']) {
        return Err(Error::Config(format!(
            "{s:?} cannot be written to postgresql.auto.conf (line break or NUL)"
        )));
    }
    Ok(format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a b/it's"), "'/a b/it'\\''s'");
        assert_eq!(conf_quote("a'b\\c").unwrap(), "'a''b\\\\c'");
        assert!(conf_quote("a\nb").is_err());
    }

    #[test]
    fn settings_quote_the_stage_path() {
        let target = RecoveryTarget::Name("it's".into());
        let text =
            recovery_settings(&target, "2", false, Path::new("/x/.data.pitr/50% o'clock")).unwrap();
        assert!(
            text.contains(
                r"restore_command = 'cp ''/x/.data.pitr/50%% o''\\''''clock/%f'' ''%p'''"
            ),
            "{text}"
        );
        assert!(text.contains("recovery_target_name = 'it''s'"), "{text}");
        assert!(text.contains("recovery_target_action = 'promote'"));
        assert!(text.contains("archive_mode = 'off'"));
        assert!(text.contains("recovery_target_timeline = '2'"), "{text}");
        assert!(
            !recovery_settings(&target, "current", true, Path::new("/w"))
                .unwrap()
                .contains("archive_mode")
        );
    }
}
