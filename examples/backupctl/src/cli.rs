//! The command line: global options, one subcommand each, and how the
//! outcome becomes the exit status.

use std::process::ExitCode;

use backup_core::{Error, Result};
use clap::{Parser, Subcommand};

use crate::commands::{
    Context, Outcome, backup, check, delete, drill, forget_source, gc, health, init, list,
    pitr_window, prune, restore, show, stats, sweep, verify, wal_archive, wal_fetch, wal_push,
};
use crate::options::{CryptoOptions, S3Options};

#[derive(Parser)]
#[command(
    name = "backupctl",
    version,
    about = "Back up, verify and restore databases"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    s3: S3Options,
    #[command(flatten)]
    crypto: CryptoOptions,
    /// Print no progress bar and none of the success summaries of backup,
    /// restore, verify and gc (their exit status says it): a cron job then
    /// prints nothing unless it fails. What a command is asked to show
    /// (list, show, stats, check's findings, health...) is still printed,
    /// and errors always go to stderr. A progress bar (bytes read and
    /// stored, rate, elapsed) is drawn only when stderr is a terminal and
    /// never with --json.
    #[arg(long, short = 'q', global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create and mark a store (`backup` also does this on first use; every
    /// other command refuses a store that does not exist).
    Init(init::InitArgs),
    /// Take a backup of a PostgreSQL or MongoDB database.
    Backup(backup::BackupArgs),
    /// List committed backups, newest first.
    List(list::ListArgs),
    /// Re-read a backup and check its size, SHA-256 and MD5.
    Verify(verify::VerifyArgs),
    /// Show one backup's manifest (a base backup's timeline, LSNs and WAL
    /// range included).
    Show(show::ShowArgs),
    /// Restore a backup into the database named by --pg.
    Restore(restore::RestoreArgs),
    /// Restore drill: restore a PostgreSQL backup into a scratch database
    /// on the --pg server, compare per-table row counts and checksums with
    /// those recorded at dump time, drop it, store the result beside the
    /// backup. Exit status 1 when the drill failed.
    Drill(drill::DrillArgs),
    /// Delete a backup (manifest first, then artifact).
    Delete(delete::DeleteArgs),
    /// Apply retention: delete backups no policy keeps (manual ones are kept
    /// unless --include-manual; the newest of each source always is).
    Prune(prune::PruneArgs),
    /// Count, total size, newest and oldest backup, per tenant and source.
    Stats(stats::StatsArgs),
    /// Health per source: healthy, stale (no success within the threshold)
    /// or failing (last attempt failed). Exit status 1 unless all healthy.
    Health(health::HealthArgs),
    /// Forget a source's last-run record, so a failed attempt (a mistyped
    /// --pg database, a source removed for good) no longer makes `health`
    /// report it failing. Removes only `<tenant>/<source>/last-run.json`:
    /// backups are never deleted (`delete` and `prune` do that), and a
    /// source with backups is then healthy or stale by its newest one.
    /// Refused when the source has no record.
    ForgetSource(forget_source::ForgetSourceArgs),
    /// Remove chunks no incremental backup references any more (after
    /// deleting or pruning backups). Backs off while a backup is running.
    Gc(gc::GcArgs),
    /// Read everything and report missing, corrupt and orphaned objects.
    /// Exit status 1 if anything is missing or corrupt.
    Check(check::CheckArgs),
    /// Remove what failed and crashed backups left: artifacts without a
    /// manifest, stale in-progress markers, temporary files of killed
    /// uploads, packs without index. Running backups are never touched.
    Sweep(sweep::SweepArgs),
    /// Store one WAL file in the source's WAL archive: PostgreSQL's
    /// archive_command (`backupctl wal-push %p --store S --source ID`).
    /// Exit 0 only once it is stored, or already was with the same
    /// content; other content under the same name is refused, never
    /// overwritten.
    WalPush(wal_push::WalPushArgs),
    /// Write one archived WAL file, verified, where recovery wants it:
    /// PostgreSQL's restore_command (`backupctl wal-fetch %f %p --store S
    /// --source ID`). Exit 1 when the archive does not hold it, 126 (stops
    /// recovery) when it is corrupt or cannot be read.
    WalFetch(wal_fetch::WalFetchArgs),
    /// Archive a cluster's WAL continuously into the store over the
    /// replication protocol (pg_receivewal from a physical slot,
    /// restarted when it exits) until Ctrl-C or SIGTERM.
    WalArchive(wal_archive::WalArchiveArgs),
    /// From when to when a PostgreSQL source can be restored: per base
    /// backup, its end and the end of the WAL archived after it without a
    /// gap. Exit 1 when it has no base backup.
    PitrWindow(pitr_window::PitrWindowArgs),
}

async fn run(cli: Cli) -> Result<Outcome> {
    let ctx = Context {
        s3: &cli.s3,
        crypto: &cli.crypto,
        quiet: cli.quiet,
        meter: Default::default(),
    };
    match cli.command {
        Command::Init(args) => init::run(args, &ctx).await,
        Command::Backup(args) => backup::run(args, &ctx).await,
        Command::List(args) => list::run(args, &ctx).await,
        Command::Verify(args) => verify::run(args, &ctx).await,
        Command::Show(args) => show::run(args, &ctx).await,
        Command::Restore(args) => restore::run(args, &ctx).await,
        Command::Drill(args) => drill::run(args, &ctx).await,
        Command::Delete(args) => delete::run(args, &ctx).await,
        Command::Prune(args) => prune::run(args, &ctx).await,
        Command::Stats(args) => stats::run(args, &ctx).await,
        Command::Health(args) => health::run(args, &ctx).await,
        Command::ForgetSource(args) => forget_source::run(args, &ctx).await,
        Command::Gc(args) => gc::run(args, &ctx).await,
        Command::Check(args) => check::run(args, &ctx).await,
        Command::Sweep(args) => sweep::run(args, &ctx).await,
        Command::WalPush(args) => wal_push::run(args, &ctx).await,
        Command::WalFetch(args) => wal_fetch::run(args, &ctx).await,
        Command::WalArchive(args) => wal_archive::run(args, &ctx).await,
        Command::PitrWindow(args) => pitr_window::run(args, &ctx).await,
    }
}

/// Runs `backupctl` with `args` as its command line (program name first):
/// parses it (exiting with clap's message and status 2 on a bad one), runs
/// the subcommand and returns the exit status: 0 on success, 1 with a
/// one-line error on stderr, or 1 when `check` or `health` find a problem.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BACKUP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, never in files, pipes
        // or journald, and never with NO_COLOR set (https://no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("backupctl: error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Unhealthy) => ExitCode::FAILURE,
        Ok(Outcome::Fatal) => ExitCode::from(126),
        Err(e) => {
            let mut line = format!("backupctl: error: {e}");
            if let (Error::Authentication { .. }, Some(hint)) = (&e, crate::connect::auth_hint()) {
                line.push_str(&format!("; {hint}"));
            }
            if let Some(hint) = backup::failed_record_hint() {
                line.push_str(&format!("; {hint}"));
            }
            eprintln!("{line}");
            ExitCode::FAILURE
        }
    }
}
