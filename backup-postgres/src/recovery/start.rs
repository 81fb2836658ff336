//! Starting the server on the prepared directory ([`StartOptions`]) and
//! the server that comes out of recovery ([`RecoveredServer`]).

use std::path::PathBuf;
use std::time::Duration;

use backup_core::Result;

use super::server::Server;

/// Starting the server on the restored directory once it is prepared.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StartOptions {
    /// The port (TCP, and the name of the Unix socket).
    pub port: u16,
    /// `listen_addresses`; empty (the default): Unix socket only.
    pub listen_addresses: String,
    /// The Unix socket directory; `None`: the work directory beside the
    /// data directory (`.<name>.pitr`).
    pub socket_dir: Option<PathBuf>,
    /// Leave the promoted server running ([`RecoveredServer::stop`] stops
    /// it); by default it is stopped once recovery is confirmed.
    pub leave_running: bool,
    /// How long recovery may take before it is given up (default 1 h).
    pub timeout: Duration,
}

impl StartOptions {
    /// Start on `port`, Unix socket only, stop when confirmed.
    pub fn on_port(port: u16) -> StartOptions {
        StartOptions {
            port,
            listen_addresses: String::new(),
            socket_dir: None,
            leave_running: false,
            timeout: Duration::from_secs(3600),
        }
    }
}

/// The server that replayed the WAL, promoted.
#[derive(Debug)]
#[non_exhaustive]
pub struct RecoveredServer {
    /// Where replay ended (`redo done at`: the last record replayed).
    pub end_lsn: Option<String>,
    /// Why replay ended, for [`RecoveryTarget::Latest`](super::RecoveryTarget::Latest) (the message
    /// logged before `redo done`, e.g. `invalid record length at ...`:
    /// the end of the WAL).
    pub end_reason: Option<String>,
    /// The record recovery stopped at, for a time, LSN or name target
    /// (PostgreSQL's `recovery stopping ...` line).
    pub stopped_at: Option<String>,
    /// The commit time of the last transaction replayed.
    pub last_transaction: Option<String>,
    /// The port it listens on.
    pub port: u16,
    /// Its Unix socket directory.
    pub socket_dir: PathBuf,
    /// Its log file.
    pub log: PathBuf,
    pub(super) running: Option<Server>,
}

impl RecoveredServer {
    /// Whether it was left running ([`StartOptions::leave_running`]).
    pub fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// The process id of a server left running.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().and_then(Server::pid)
    }

    /// Stops a server left running (fast shutdown); nothing otherwise.
    pub async fn stop(&mut self) -> Result<()> {
        match self.running.take() {
            Some(server) => server.stop("fast").await,
            None => Ok(()),
        }
    }
}
