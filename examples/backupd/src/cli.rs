//! The `backupd` command line: arguments, logging, the configuration file,
//! listeners, and serving until a signal.
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config;
use crate::daemon::Daemon;
use clap::Parser;

#[derive(Parser)]
#[command(
    name = "backupd",
    version,
    about = "Scheduled database backups with a REST API"
)]
struct Args {
    /// Configuration file (YAML).
    #[arg(long, short)]
    config: PathBuf,
    /// Address to listen on (default: the file's `listen`, else 127.0.0.1:8000).
    #[arg(long)]
    listen: Option<String>,
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Runs the daemon as the `backupd` binary does, with `args` as its
/// command line (program name first): parses the arguments (exiting with
/// clap's message and status on a bad one), starts a Tokio runtime and
/// serves until SIGINT or SIGTERM.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let args = Args::parse_from(args);
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => {
            eprintln!("backupd: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BACKUP_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let text = match std::fs::read_to_string(&args.config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("backupd: cannot read {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    let base = args
        .config
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let env = |k: &str| std::env::var(k).ok();
    let config = match config::load(&text, &base, &env) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("backupd: {}: {p}", args.config.display());
            }
            eprintln!(
                "backupd: refusing to start ({} problem(s))",
                problems.0.len()
            );
            return ExitCode::from(2);
        }
    };
    let listen = args
        .listen
        .or_else(|| config.listen.clone())
        .unwrap_or_else(|| "127.0.0.1:8000".into());
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("backupd: cannot listen on {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    let metrics_listener = match &config.metrics_listen {
        Some(addr) => match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("backupd: cannot listen on {addr} (metrics_listen): {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    // Every failure to start comes from the configuration or what it
    // points at (storage, audit log, databases): status 2, like a
    // refused file.
    let daemon = match Daemon::start(config).await {
        Ok(d) => d,
        Err(e) => {
            eprintln!("backupd: cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or(listen);
    tracing::info!(%addr, "backupd listening");
    println!("backupd listening on http://{addr}");
    match daemon
        .serve(listener, metrics_listener, shutdown_signal())
        .await
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("backupd: server error: {e}");
            ExitCode::FAILURE
        }
    }
}
