//! One run of `pg_receivewal`: preflight, slot, start, wait, stop.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use backup_core::{Error, Result};
use tokio::process::Child;
use tokio_util::sync::CancellationToken;

use crate::conn::PgConnection;
use crate::tools::{
    PassFile, PgTools, Step, ToolPath, classify, drain_stderr, pg_command, preflight, psql,
    quote_literal, replication_refusal,
};

const ENGINE: &str = "postgres";

/// What a run needs: the server, the tools, the slot and the spool.
pub(super) struct Receiver<'a> {
    pub(super) conn: &'a PgConnection,
    pub(super) tools: &'a PgTools,
    pub(super) slot: &'a str,
    pub(super) spool: &'a Path,
}

/// How long a stopped `pg_receivewal` gets to exit after `SIGINT` before
/// it is killed.
const STOP_GRACE: Duration = Duration::from_secs(30);

/// How a run ended.
pub(super) enum Ended {
    /// Stopped on request (cleanly, or killed after [`STOP_GRACE`]).
    Stopped,
    /// It could not start (`ran` false: preflight, slot or spawn failed)
    /// or exited on its own (`ran` true): why.
    Failed {
        /// Why, without secrets.
        error: Error,
        /// Whether `pg_receivewal` itself ran.
        ran: bool,
    },
}

/// Checks the server, makes sure the slot exists, runs `pg_receivewal`
/// until it exits or `stop` is cancelled, telling `set_pid` its process id
/// while it runs.
pub(super) async fn run(
    ctx: &Receiver<'_>,
    stop: &CancellationToken,
    set_pid: impl Fn(Option<u32>),
) -> Ended {
    let tool = tokio::select! {
        _ = stop.cancelled() => return Ended::Stopped,
        tool = prepare(ctx) => tool,
    };
    let tool = match tool {
        Ok(tool) => tool,
        Err(error) => return Ended::Failed { error, ran: false },
    };
    let (mut child, stderr) = match spawn(ctx, &tool) {
        Ok(started) => started,
        Err(error) => return Ended::Failed { error, ran: false },
    };
    set_pid(child.id());
    tracing::debug!(pid = child.id(), slot = %ctx.slot, "pg_receivewal started");
    let ended = tokio::select! {
        status = child.wait() => {
            let status = match status {
                Ok(s) => s.to_string(),
                Err(e) => format!("waiting for it failed: {e}"),
            };
            let stderr = stderr.await.unwrap_or_default();
            Ended::Failed { error: exited(ctx, &stderr, &status), ran: true }
        }
        _ = stop.cancelled() => {
            interrupt(&mut child).await;
            Ended::Stopped
        }
    };
    set_pid(None);
    ended
}

/// Preflight (reachable, credentials, replication allowed), the tool of
/// the server's major version or newer, and the slot.
async fn prepare(ctx: &Receiver<'_>) -> Result<ToolPath> {
    let (tools, conn) = (ctx.tools, ctx.conn);
    let server = preflight(tools, conn).await?;
    if let Some(why) = replication_refusal(tools, conn).await? {
        return Err(Error::Dump {
            engine: ENGINE,
            detail: format!("cannot archive WAL: {why}"),
        });
    }
    let tool = tools.resolve("pg_receivewal", Some(server.major)).await?;
    create_slot(ctx).await?;
    Ok(tool)
}

/// Creates the physical slot if it is missing, reserving WAL from now on
/// (`immediately_reserve`): `pg_receivewal --create-slot` does not, so the
/// WAL written until it first connects would not be kept for it, and
/// would be missing from the archive.
async fn create_slot(ctx: &Receiver<'_>) -> Result<()> {
    let slot = quote_literal(ctx.slot);
    psql(
        ctx.tools,
        ctx.conn,
        &format!(
            "SELECT pg_create_physical_replication_slot({slot}, true) \
             WHERE NOT EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = {slot})"
        ),
    )
    .await
    .map(|_| ())
}

fn spawn(ctx: &Receiver<'_>, tool: &ToolPath) -> Result<(Child, tokio::task::JoinHandle<String>)> {
    let passfile = PassFile::create(ctx.conn)?;
    let mut cmd = pg_command(&tool.path, ctx.conn, &passfile)?;
    cmd.arg("--directory")
        .arg(ctx.spool)
        .arg("--slot")
        .arg(ctx.slot)
        .args(["--no-loop", "--no-password"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", tool.path.display()), e))?;
    let stderr = drain_stderr(child.stderr.take().expect("stderr is piped"));
    Ok((child, stderr))
}

/// Why `pg_receivewal` exited, as specific as its messages allow.
fn exited(ctx: &Receiver<'_>, stderr: &str, status: &str) -> Error {
    match classify(Step::Connect, stderr, status, ctx.conn) {
        Error::Dump { detail, .. } => Error::Dump {
            engine: ENGINE,
            detail: format!("pg_receivewal exited: {detail}"),
        },
        other => other,
    }
}

/// Asks `pg_receivewal` to stop (`SIGINT`: it closes the segment it is
/// writing, which stays `.partial`, and exits), killing it if it does not
/// within [`STOP_GRACE`].
async fn interrupt(child: &mut Child) {
    if let Some(pid) = child.id() {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        tracing::warn!("pg_receivewal did not exit after SIGINT; killing it");
        let _ = child.kill().await;
    }
}
