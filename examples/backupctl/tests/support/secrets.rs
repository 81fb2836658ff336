//! Looking for secrets on disk: which files contain any of a set of
//! strings. The search runs in GNU `grep -F` (fast whatever this test
//! binary's optimisation level), the strings reach it on stdin, never on
//! its command line or in a file.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Files among `files` that contain any of `needles` (binary files
/// included). Files that vanish before they are read are skipped.
pub fn files_containing(files: &[PathBuf], needles: &[&str]) -> Vec<PathBuf> {
    assert!(
        needles.iter().all(|n| !n.is_empty() && !n.contains('\n')),
        "needles must be non-empty single lines"
    );
    let mut found = Vec::new();
    for batch in files.chunks(256) {
        let mut child = Command::new("grep")
            .args(["-l", "-F", "-a", "-s", "--null", "-f", "-", "--"])
            .args(batch)
            .env_clear()
            .env("LC_ALL", "C")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run grep");
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(needles.join("\n").as_bytes())
            .expect("write grep's patterns");
        drop(stdin);
        let out = child.wait_with_output().expect("wait for grep");
        // 0: some match, 1: none, 2: an error (a file that vanished,
        // silenced by -s) — matches are listed either way.
        assert!(
            matches!(out.status.code(), Some(0..=2)),
            "grep failed: {}",
            out.status
        );
        found.extend(
            out.stdout
                .split(|b| *b == 0)
                .filter(|name| !name.is_empty())
                .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned())),
        );
    }
    found
}
