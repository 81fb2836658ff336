//! backupctl at a terminal: the real binary under a pseudo-terminal
//! (util-linux `script`, which gives the command a pty for stdin, stdout
//! and stderr and copies what it prints), against the shared PostgreSQL
//! 15. A backup, restore, verify and check draw a progress bar with bytes,
//! rate and elapsed time; `--quiet` and `--json` draw none; `list` and
//! `stats` are aligned tables with human sizes and ages. Every other
//! backupctl test runs on pipes, which is what proves that nothing of this
//! reaches a pipe.

use std::process::Command;

use backup_postgres::TestServer;
use serde_json::Value;

mod support;
use support::*;

/// The shared server's URL for `database` without the password (which
/// the tests pass in `PGPASSWORD`: at a terminal backupctl warns about a
/// password in a URL, and that warning is not what they look at).
fn url_without_password(server: &TestServer, database: &str) -> String {
    let conn = server.connection(database);
    format!(
        "postgres://{}@{}:{}/{database}",
        conn.user(),
        conn.host(),
        conn.port()
    )
}

/// `backupctl args` on a 160x50 pseudo-terminal, with the shared server's
/// password in `PGPASSWORD`: its exit status and everything it wrote there
/// (stdout and stderr interleaved as a person would see them), with the
/// pty's `\r\n` turned back into `\n`.
fn at_terminal(args: &[&str]) -> (bool, String) {
    let quoted: Vec<String> = std::iter::once(env!("CARGO_BIN_EXE_backupctl"))
        .chain(args.iter().copied())
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let shell = format!("stty cols 160 rows 50 && exec {}", quoted.join(" "));
    let out = Command::new("script")
        .args(["--quiet", "--return", "--command", &shell, "/dev/null"])
        .env(
            "PGPASSWORD",
            TestServer::shared()
                .connection("postgres")
                .password()
                .expect("the shared server has a password")
                .expose(),
        )
        .env("SHELL", "/bin/sh")
        .output()
        .expect("run `script` (util-linux) to give backupctl a terminal");
    let text = String::from_utf8_lossy(&out.stdout).replace("\r\n", "\n");
    (out.status.success(), text)
}

fn ok_at_terminal(args: &[&str]) -> String {
    let (ok, text) = at_terminal(args);
    assert!(ok, "backupctl {} failed at a terminal:\n{text}", args[0]);
    text
}

/// The last state a progress bar labelled `label` drew: the text after
/// the last `label: ` up to the padding indicatif fills the line with.
fn last_bar<'a>(text: &'a str, label: &str) -> &'a str {
    let marker = format!("{label}: ");
    let start = text
        .rfind(&marker)
        .unwrap_or_else(|| panic!("no {label} progress bar in:\n{text}"));
    let rest = &text[start + marker.len()..];
    rest.split("  ").next().unwrap_or(rest).trim_end()
}

/// `1.5 MiB`, `512 B`: a size as `human_bytes` writes it.
fn is_human_size(s: &str) -> bool {
    let Some((n, unit)) = s.split_once(' ') else {
        return false;
    };
    let number_ok = match unit {
        "B" => n.bytes().all(|b| b.is_ascii_digit()),
        "KiB" | "MiB" | "GiB" | "TiB" => n
            .split_once('.')
            .is_some_and(|(a, b)| a.parse::<u32>().is_ok() && b.len() == 1),
        _ => false,
    };
    !n.is_empty() && number_ok
}

/// Checks a bar's final text, `X read[, Y stored], R/s, H:MM:SS`: a
/// non-zero amount read, a rate and an elapsed time.
fn assert_bar(bar: &str, stored: bool) {
    let parts: Vec<&str> = bar.split(", ").collect();
    assert_eq!(parts.len(), if stored { 4 } else { 3 }, "{bar}");
    let read = parts[0].strip_suffix(" read").expect(bar);
    assert!(is_human_size(read) && read != "0 B", "{bar}");
    if stored {
        let stored = parts[1].strip_suffix(" stored").expect(bar);
        assert!(is_human_size(stored) && stored != "0 B", "{bar}");
    }
    let rate = parts[parts.len() - 2].strip_suffix("/s").expect(bar);
    assert!(rate == "- B" || is_human_size(rate), "{bar}");
    let elapsed = parts[parts.len() - 1];
    assert!(
        elapsed.len() == 7 && elapsed.bytes().filter(|b| *b == b':').count() == 2,
        "{bar}"
    );
}

/// The table `text` starts with: checks every row lines up under the
/// header (left-aligned columns start where their header starts,
/// right-aligned ones end where it ends) and returns the rows as cells.
/// Columns are two or more spaces apart; a header or cell holds at most
/// single spaces (`STARTED (UTC)`, `1.5 MiB`).
fn aligned_table(text: &str, right: &[&str]) -> Vec<Vec<String>> {
    let mut lines = text.lines().take_while(|l| !l.is_empty());
    let header = lines.next().expect("a header");
    let rows: Vec<&str> = lines.collect();
    let mut cells = vec![Vec::new(); rows.len()];
    for (i, (start, name)) in columns(header).into_iter().enumerate() {
        let end = start + name.len();
        for (r, row) in rows.iter().enumerate() {
            let cell = if right.contains(&name) {
                assert!(row.len() >= end, "{row:?} ends before {name}");
                assert_ne!(&row[end - 1..end], " ", "{name} not right-aligned: {row:?}");
                assert!(row[end..].starts_with(' ') || row.len() == end, "{row:?}");
                let begin = row[..end].rfind("  ").map_or(0, |p| p + 2);
                row[begin..end].trim()
            } else {
                assert_ne!(&row[start..start + 1], " ", "{name} misaligned: {row:?}");
                assert!(
                    i == 0 || row[..start].ends_with("  "),
                    "{name} misaligned: {row:?}"
                );
                let rest = &row[start..];
                rest.split("  ").next().unwrap_or(rest)
            };
            cells[r].push(cell.to_string());
        }
    }
    cells
}

/// The header's column names and where each starts.
fn columns(header: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(skip) = header[from..].find(|c: char| c != ' ') {
        let start = from + skip;
        let len = header[start..].find("  ").unwrap_or(header.len() - start);
        out.push((start, &header[start..start + len]));
        from = start + len;
    }
    out
}

#[tokio::test]
async fn a_terminal_gets_progress_bars_and_aligned_tables_and_quiet_or_json_get_no_bar() {
    let server = TestServer::shared();
    let db = server
        .create_database_with(
            "term_sales",
            "CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 20000) g;",
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("backups");
    let store_s = store.to_str().unwrap();
    let url = url_without_password(server, &db);

    // A backup: the bar counts dump bytes read and bytes stored.
    let out = ok_at_terminal(&["backup", "--pg", &url, "--store", store_s]);
    assert_bar(last_bar(&out, "backup"), true);
    assert!(out.contains(" committed: "), "{out}");

    // --quiet: nothing at all on success; --json: the manifest, no bar.
    let out = ok_at_terminal(&["backup", "--pg", &url, "--store", store_s, "--quiet"]);
    assert_eq!(out.trim(), "", "--quiet printed something");
    let out = ok_at_terminal(&["backup", "--pg", &url, "--store", store_s, "--json"]);
    assert!(!out.contains("backup: ") && !out.contains('\x1b'), "{out}");
    let manifest: Value = serde_json::from_str(&out).expect("only JSON with --json");
    assert_eq!(manifest["source_id"], db);
    let listed = json(&["list", "--store", store_s, "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 3, "{listed}");

    // The read side: verify, check and a restore into a new database.
    let out = ok_at_terminal(&["verify", "latest", "--store", store_s]);
    assert_bar(last_bar(&out, "verify"), false);
    let out = ok_at_terminal(&["check", "--store", store_s]);
    assert_bar(last_bar(&out, "check"), false);
    let target = format!("{db}_restored");
    let out = ok_at_terminal(&[
        "restore",
        "latest",
        "--store",
        store_s,
        "--pg",
        &url_without_password(server, &target),
        "--create",
    ]);
    assert_bar(last_bar(&out, "restore"), false);
    let count = server
        .psql(&target, "SELECT count(*) FROM orders")
        .await
        .unwrap();
    assert_eq!(count.trim(), "20000");
    let out = ok_at_terminal(&["verify", "latest", "--store", store_s, "--quiet"]);
    assert_eq!(out.trim(), "", "--quiet verify printed something");

    // `list` at a terminal: an aligned table, human sizes, ages.
    let out = ok_at_terminal(&["list", "--store", store_s]);
    let rows = aligned_table(&out, &["AGE", "SIZE", "STORED"]);
    assert_eq!(rows.len(), 3, "{out}");
    for row in &rows {
        assert_eq!(row.len(), 10, "{row:?}");
        assert_eq!(row[2], db);
        assert!(row[6] == "now" || row[6].ends_with(" ago"), "{row:?}");
        assert!(is_human_size(&row[7]) && is_human_size(&row[8]), "{row:?}");
    }
    // On a pipe, the layout scripts read is unchanged.
    let piped = ok(&["list", "--store", store_s]);
    assert!(piped.starts_with("ID "), "{piped}");
    assert!(
        piped.lines().next().unwrap().contains("ARTIFACT"),
        "{piped}"
    );

    // `stats` at a terminal: per scope, then per backup.
    let out = ok_at_terminal(&["stats", "--store", store_s]);
    let scopes = aligned_table(&out, &["BACKUPS", "STORED", "NEWEST", "OLDEST"]);
    assert_eq!(scopes[0][0], "total");
    assert_eq!(scopes[0][1], "3");
    assert!(is_human_size(&scopes[0][2]), "{out}");

    server.drop_database(&db).await.unwrap();
    server.drop_database(&target).await.unwrap();
}
