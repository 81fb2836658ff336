//! Runs every shell block of the README marked runnable, as written.
//!
//! A block is runnable when the line before its ```` ```bash ```` fence is
//! `<!-- runnable -->` (run to completion; it must exit 0) or
//! `<!-- runnable: background, port N -->` (a server: started, awaited
//! until 127.0.0.1:N accepts connections, left running for the blocks
//! after it, stopped at the end).
//!
//! What the blocks find, the way an operator's shell would have it:
//! - a PostgreSQL 15 on `localhost` at `$PGPORT` (a throwaway cluster this
//!   test starts, or the server of `BACKUP_TEST_PG_URL`, which must then be
//!   on localhost) with a role `app` (may create databases) whose password
//!   is in `~/.pgpass` only, and a database `sales` of `app`'s with a few
//!   tables, a view and a sequence;
//! - `SALES_DATABASE_URL` naming that database with `app`'s password (the
//!   variable the README's backupd block documents above the command);
//! - `backupctl` and `backupd` on `PATH`, and `cargo run --release
//!   (-p NAME | --example NAME) -- ARGS` served by the binaries this
//!   `cargo test` built (a `cargo` shim on `PATH`: the commands stay as
//!   written, only the build profile differs; no second, release build);
//! - a fresh home and working directory per run, with copies of
//!   `examples/backupd/*.yaml` at the same relative paths.
//!
//! Exported variables of a background block (tokens) are seen by the
//! blocks after it, as in one terminal session.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use backup_core::child::cleared_std_command;
use backup_core::testing::server::{ServerProcess, Watcher, temp_dir};
use backup_postgres::TestServer;

/// One runnable block.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Block {
    /// 1-based line of the opening fence in README.md.
    line: usize,
    /// `Some(port)` for a background block.
    background: Option<u16>,
    script: String,
}

const MARKER: &str = "<!-- runnable";

/// The runnable blocks of `readme`; a marker not followed by a ```` ```bash ````
/// block, or with a form this harness does not know, is an error (so a
/// typo cannot silently drop a block from the test).
fn runnable_blocks(readme: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = readme.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if !line.starts_with(MARKER) {
            i += 1;
            continue;
        }
        let marker_line = i + 1;
        let spec = line
            .strip_prefix(MARKER)
            .and_then(|s| s.strip_suffix("-->"))
            .ok_or_else(|| format!("README.md:{marker_line}: malformed marker {line:?}"))?
            .trim();
        let background = match spec {
            "" => None,
            _ => {
                let port = spec
                    .strip_prefix(": background, port ")
                    .and_then(|p| p.trim().parse::<u16>().ok())
                    .ok_or_else(|| {
                        format!(
                            "README.md:{marker_line}: unknown marker {line:?} (known: `<!-- runnable -->`, `<!-- runnable: background, port N -->`)"
                        )
                    })?;
                Some(port)
            }
        };
        if lines.get(i + 1).map(|l| l.trim()) != Some("```bash") {
            return Err(format!(
                "README.md:{marker_line}: a runnable marker must be followed by a ```bash block"
            ));
        }
        let mut script = String::new();
        let mut j = i + 2;
        loop {
            match lines.get(j) {
                None => return Err(format!("README.md:{}: unterminated block", i + 2)),
                Some(l) if l.trim() == "```" => break,
                Some(l) => {
                    script.push_str(l);
                    script.push('\n');
                }
            }
            j += 1;
        }
        blocks.push(Block {
            line: i + 2,
            background,
            script,
        });
        i = j + 1;
    }
    Ok(blocks)
}

/// `cargo run [--release] (-p NAME | --example NAME) [-- ARGS]`, served by
/// the binaries under `$README_BIN_DIR`; anything else is refused.
const CARGO_SHIM: &str = r#"#!/bin/sh
# The README test's stand-in for `cargo run`: runs the binary `cargo test` built.
set -eu
[ "${1:-}" = run ] || { echo "README test: only 'cargo run' is served here, got: cargo $*" >&2; exit 97; }
shift
bin=""
while [ $# -gt 0 ]; do
    case "$1" in
        --release) shift ;;
        -p|--package) bin="$README_BIN_DIR/$2"; shift 2 ;;
        --example) bin="$README_BIN_DIR/examples/$2"; shift 2 ;;
        --) shift; break ;;
        *) echo "README test: unsupported cargo argument $1" >&2; exit 97 ;;
    esac
done
[ -n "$bin" ] || { echo "README test: cargo run without -p or --example" >&2; exit 97; }
[ -x "$bin" ] || { echo "README test: $bin is not built (cargo build --workspace --examples)" >&2; exit 97; }
if [ -n "${README_ENV_OUT:-}" ]; then export -p > "$README_ENV_OUT"; fi
exec "$bin" "$@"
"#;

/// target/debug, from this test's own path (target/debug/deps/readme-*).
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_path_buf()
}

fn write_executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The operator's world: a server with `app` and `sales`, a home with
/// `~/.pgpass`, a PATH with the binaries and the cargo shim.
struct World {
    _server: TestServer,
    root: PathBuf,
    home: PathBuf,
    work: PathBuf,
    bin: PathBuf,
    port: u16,
    database_url: String,
    env_file: PathBuf,
}

impl World {
    async fn start() -> World {
        let server = tokio::task::spawn_blocking(TestServer::from_env_or_throwaway)
            .await
            .unwrap()
            .expect("a PostgreSQL server for the README blocks");
        let admin = server.connection("postgres");
        assert!(
            matches!(admin.host(), "localhost" | "127.0.0.1" | "::1"),
            "the README's commands connect to localhost; BACKUP_TEST_PG_URL names {}",
            admin.host()
        );
        let port = admin.port();
        let password = format!("app-{:016x}", rand::random::<u64>());
        for sql in [
            "DROP DATABASE IF EXISTS sales_copy".to_string(),
            "DROP DATABASE IF EXISTS sales".to_string(),
            "DROP ROLE IF EXISTS app".to_string(),
            format!("CREATE ROLE app LOGIN CREATEDB PASSWORD '{password}'"),
            "CREATE DATABASE sales OWNER app".to_string(),
        ] {
            server.psql("postgres", &sql).await.unwrap();
        }
        server
            .psql(
                "sales",
                "SET ROLE app;
                 CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
                 INSERT INTO customers SELECT i, 'customer ' || i FROM generate_series(1, 500) i;
                 CREATE TABLE orders (id bigserial PRIMARY KEY, customer_id int REFERENCES customers,
                                      total numeric(10,2), placed_at timestamptz DEFAULT now());
                 INSERT INTO orders (customer_id, total) SELECT 1 + i % 500, i / 7.0
                   FROM generate_series(1, 5000) i;
                 CREATE VIEW big_orders AS SELECT * FROM orders WHERE total > 500;",
            )
            .await
            .unwrap();

        let root = temp_dir("readme-", 0o700).unwrap();
        Watcher::new().remove(&root).spawn();
        let (home, work, bin) = (root.join("home"), root.join("work"), root.join("bin"));
        for d in [&home, &work, &bin] {
            std::fs::create_dir(d).unwrap();
        }
        let pgpass = home.join(".pgpass");
        std::fs::write(&pgpass, format!("localhost:{port}:*:app:{password}\n")).unwrap();
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();

        // The blocks' configuration files, copied: backupd resolves the
        // relative paths in a file against its directory, so its backups
        // and audit log land in this run's directory, not the checkout.
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("backupd");
        let copies = work.join("examples/backupd");
        std::fs::create_dir_all(&copies).unwrap();
        for entry in std::fs::read_dir(&configs).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                std::fs::copy(&path, copies.join(path.file_name().unwrap())).unwrap();
            }
        }
        let built = build_dir();
        for name in ["backupctl", "backupd"] {
            let target = built.join(name);
            assert!(
                target.is_file(),
                "{} is not built: run `cargo build -p backupctl -p backupd --example quickstart` \
                 (`cargo test --workspace` builds it)",
                target.display()
            );
            std::os::unix::fs::symlink(&target, bin.join(name)).unwrap();
        }
        write_executable(&bin.join("cargo"), CARGO_SHIM);
        World {
            _server: server,
            database_url: format!("postgres://app:{password}@localhost:{port}/sales"),
            env_file: root.join("exported.env"),
            root,
            home,
            work,
            bin,
            port,
        }
    }

    /// `bash` for one block: cleared environment plus what a terminal
    /// session would have, and the variables exported by earlier
    /// background blocks.
    fn bash(&self, block: &Block) -> Command {
        let mut script = String::from("set -euo pipefail\n");
        if self.env_file.exists() {
            script.push_str(&format!(
                "source '{}' 2>/dev/null || true\n",
                self.env_file.display()
            ));
        }
        script.push_str(&block.script);
        let mut cmd = cleared_std_command("bash");
        cmd.args(["-c", &script])
            .current_dir(&self.work)
            .env(
                "PATH",
                format!("{}:/usr/local/bin:/usr/bin:/bin", self.bin.display()),
            )
            .env("HOME", &self.home)
            .env("PGPORT", self.port.to_string())
            .env("SALES_DATABASE_URL", &self.database_url)
            .env("README_BIN_DIR", build_dir())
            .env("NO_COLOR", "1");
        if block.background.is_some() {
            cmd.env("README_ENV_OUT", &self.env_file);
        }
        cmd
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[test]
fn the_readme_marks_its_runnable_blocks() {
    let readme = include_str!("../../README.md");
    let blocks = runnable_blocks(readme).unwrap();
    let text: Vec<&str> = blocks.iter().map(|b| b.script.as_str()).collect();
    for needed in [
        "cargo run --release --example quickstart",
        "backupctl backup",
        "backupctl restore",
        "cargo run --release -p backupd",
    ] {
        assert!(
            text.iter().any(|t| t.contains(needed)),
            "no runnable README block runs `{needed}`"
        );
    }
    assert!(blocks.iter().any(|b| b.background.is_some()));
}

#[test]
fn markers_that_cannot_be_run_are_refused() {
    assert!(runnable_blocks("<!-- runnable -->\n```text\nx\n```\n").is_err());
    assert!(runnable_blocks("<!-- runnable: forever -->\n```bash\nx\n```\n").is_err());
    assert!(runnable_blocks("<!-- runnable -->\n```bash\nx\n").is_err());
    let ok = runnable_blocks("a\n<!-- runnable: background, port 8000 -->\n```bash\nrun it\n```\n")
        .unwrap();
    assert_eq!(
        ok,
        vec![Block {
            line: 3,
            background: Some(8000),
            script: "run it\n".into()
        }]
    );
}

/// The README's runnable blocks, in order, against a real PostgreSQL and
/// the real binaries (see the module doc for what they find).
#[tokio::test(flavor = "multi_thread")]
async fn every_runnable_readme_block_runs_as_written() {
    let readme = include_str!("../../README.md");
    let blocks = runnable_blocks(readme).unwrap();
    let world = World::start().await;
    let mut servers: Vec<ServerProcess> = Vec::new();
    for block in &blocks {
        let log = world.root.join(format!("block-{}.log", block.line));
        match block.background {
            Some(port) => {
                let server = ServerProcess::spawn(
                    world.bash(block),
                    port,
                    &log,
                    None,
                    Duration::from_secs(60),
                )
                .unwrap_or_else(|e| panic!("README.md:{}: {e}", block.line));
                servers.push(server);
                // The shim writes the session's exports just before exec.
                let waited = std::time::Instant::now();
                while !world.env_file.exists() && waited.elapsed() < Duration::from_secs(10) {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            None => {
                let out = tokio::task::spawn_blocking({
                    let mut cmd = world.bash(block);
                    move || cmd.stdin(Stdio::null()).output().expect("starting bash")
                })
                .await
                .unwrap();
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                println!("README.md:{} ->\n{stdout}{stderr}", block.line);
                assert!(
                    out.status.success(),
                    "README.md:{}: the block failed ({}):\n{}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                    block.line,
                    out.status,
                    block.script
                );
            }
        }
    }
    for mut server in servers {
        server.terminate(Duration::from_secs(10));
    }
}
