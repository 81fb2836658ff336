//! `backupctl`: one-shot backup, list, verify, restore, delete and sweep
//! over the library, for operators and cron jobs.
//!
//! ```text
//! backupctl backup  --pg postgres://user@host/db --store ./backups [--compression zstd|gzip|none] [--tenant T] [--json]
//! backupctl backup  --mongo mongodb://user@host/db --store ./backups [...]
//! backupctl backup  --sqlite /var/lib/app/app.db --store ./backups [...]
//! backupctl backup  --mysql mysql://user@host:3306/db --store ./backups [...]   # password: MYSQL_PWD or --password-file
//! backupctl list    --store ./backups [--tenant T] [--json]
//! backupctl verify  <backup-id> --store ./backups
//! backupctl restore <backup-id> --store ./backups --pg postgres://user@host/target [--create] [--clean] [--no-owner] [--table T]...
//! backupctl backup  ... --encrypt-to age1...            # age encryption (repeatable); --passphrase-env VAR for humans
//! backupctl restore|verify ... --identity key.txt       # or --identity-env VAR
//! backupctl restore <backup-id> --store ./backups --mongo mongodb://user@host/ --target-db name [--clean] [--table C]...
//! backupctl restore <backup-id> --store ./backups --sqlite /var/lib/app/new.db [--clean]   # --clean: replace an existing file
//! backupctl restore <backup-id> --store ./backups --mysql mysql://user@host/ --target-db name [--create] [--clean] [--table T]...
//! backupctl delete  <backup-id> --store ./backups
//! backupctl sweep   --store ./backups [--grace 1h]    # orphans, stale markers, temp files, packs without index
//! backupctl prune   --store ./backups [--keep-last N] [--max-age 30d] [--keep-daily N --keep-weekly N --keep-monthly N --keep-yearly N] [--include-manual] [--dry-run] [--json]
//! backupctl stats   --store ./backups [--json]
//! backupctl health  --store ./backups [--stale-after 24h] [--json]   # exit 0 only if every source is healthy
//! backupctl backup  ... --type incremental              # deduplicated: stores only chunks the tenant lacks
//! backupctl gc      --store ./backups [--tenant T] [--grace 1h] [--dry-run] [--json]
//! backupctl prune   ... --gc-grace 1h                   # then collect garbage as `gc` does
//! backupctl check   --store ./backups [--tenant T] [--json]        # exit 0 only if nothing is missing or corrupt
//! backupctl init    --store ./backups                            # create and mark a store; every command but backup refuses a missing one
//! backupctl wal-push  %p --store ./backups --source ID [--tenant T]      # archive_command: exit 0 once stored (or already, same content)
//! backupctl wal-fetch %f %p --store ./backups --source ID [--tenant T]   # restore_command: exit 1 if not archived, 126 if corrupt
//! ```
//!
//! `--store` is a directory or `s3://bucket/prefix`. For S3, credentials come
//! from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (or the other AWS
//! sources), the endpoint and region from `--s3-endpoint` / `--s3-region` or
//! `AWS_ENDPOINT_URL` / `AWS_REGION` (see `--help`).
//!
//! PostgreSQL connections follow libpq's conventions, as `pg_dump` with the
//! same URL and environment would: what the URL leaves out comes from the
//! service file (`?service=`/`PGSERVICE`), then `PGHOST`, `PGPORT`,
//! `PGUSER`, `PGDATABASE`, `PGSSLMODE`..., then libpq's defaults; the
//! password from the URL, `--password-file`, the service, `PGPASSWORD`, then
//! `PGPASSFILE` or `~/.pgpass` (ignored, with a warning, when others can read
//! it). backupd is stricter on purpose: credentials only from its config.
//!
//! Passwords: keep them out of the URL (it is visible in `ps` and shell
//! history). PostgreSQL: `~/.pgpass`, `PGPASSWORD` or `--password-file`; MongoDB:
//! `MONGODB_PASSWORD` or `--password-file` (with the user name in the
//! connection string). pg_dump/pg_restore/psql get the password through a
//! password file that exists only in memory, never on their command line
//! or in their environment; a MongoDB password stays in the driver. System
//! databases (MongoDB `admin`, `local`, `config`; PostgreSQL `template0`,
//! `template1`, and `postgres` with `--clean`) are refused unless
//! `--allow-system-db`. Exit status 0 on success; 1 and a one-line error on
//! stderr when the command fails (or `check`/`health` find a problem); 2
//! for a command line that cannot be parsed (unknown flag, missing
//! argument), with clap's usage message. Logs (`BACKUP_LOG=info`) are
//! coloured only on a terminal and never with `NO_COLOR` set. At a terminal,
//! backup, restore, verify, check and gc draw a progress bar on stderr and
//! `list`/`stats` print aligned tables with human sizes and ages; pipes get
//! the usual output, and `--json` or `--quiet` (also: no success
//! summaries) draw no bar.

use std::process::ExitCode;

fn main() -> ExitCode {
    backupctl::main_with_args(std::env::args_os())
}
